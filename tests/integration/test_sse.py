"""Server-Sent Events end to end (DESIGN.md, "SSE"), read through the
strict WHATWG parser in sse_client.py: headers, send with every field,
multi-line data, refused fields, comments, heartbeats, last_event_id,
hub subscriptions with replay and resume (one channel and several),
binary data, closed/on_close/close, releasing a client that leaves, and
the slow-consumer rule. The app is tests/apps/sse/app.lua."""
import base64
import re
import socket
import threading
import time
from functools import partial

import pytest
import requests

import conftest
from conftest import APPS
from sse_client import SSEClient, parse

APP = "sse/app.lua"
APP_SOURCE = (APPS / APP).read_text()


def line_of(text):
    for i, line in enumerate(APP_SOURCE.splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in the app")


pub = conftest.publish


def stats(srv):
    s = requests.get(srv.url + "/stats", timeout=10).json()
    # cjson writes an empty table as an empty array
    return {k: (v if v != [] else {}) for k, v in s.items()}


wait_for = partial(conftest.wait_for, timeout=5.0, interval=0.01)


def subscribe(srv, query, **kw):
    """Opens /sub?query and waits for the stream's "subscribed" comment,
    which comes after every subscription (and its replay) is done; returns
    (client, events replayed before it)."""
    c = SSEClient(srv, "/sub?" + query, **kw)
    replayed = []
    while True:
        kind, x = c.next_item()
        if kind == "comment" and x.strip() == "subscribed":
            return c, replayed
        if kind == "event":
            replayed.append(x)


def ids(events):
    return [e.last_event_id for e in events]


# ------------------------------------------------------------ the parser

def test_parser_follows_the_whatwg_rules():
    """The client's parser on the spec's own examples and the edge cases,
    fed whole and split at every byte."""
    def check(data, want, retry=None, last_id=None):
        for pieces in [None] + [[i] for i in range(len(data) + 1)]:
            p = parse(data, pieces)
            got = [(e.type, e.data, e.last_event_id) for e in p.events]
            assert got == want, (data, pieces, got)
            assert p.retry == retry
            if last_id is not None:
                assert p.last_event_id == last_id

    check(b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10", "")])
    check(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
          b"data:  third event\n\n",
          [("message", "first event", "1"), ("message", "second event", ""),
           ("message", " third event", "")])
    check(b"data\n\ndata\ndata\n\ndata:", [("message", "", ""), ("message", "\n", "")])
    check(b"data:test\n\ndata: test\n\n", [("message", "test", ""), ("message", "test", "")])
    # CR, LF and CRLF line ends (a CRLF split across reads is one line end)
    check(b"data: a\rdata: b\r\n\rdata: c\n\r\n", [("message", "a\nb", ""), ("message", "c", "")])
    # one BOM at the start is dropped, a later one is part of a field name
    check(b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n", [("message", "a", "")])
    # an id with NUL is ignored; an id alone still sets lastEventId
    check(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid: 9\n\n",
          [("message", "a", "1"), ("message", "b", "1")], last_id="9")
    # retry: digits only
    check(b"retry: 1000\nretry: 10x\nretry:  5\nretry: -1\n\n", [], retry=1000)
    # event type for one event only; empty data is not dispatched
    check(b"event: x\ndata: 1\n\nevent: y\n\ndata: 2\n\n", [("x", "1", ""), ("message", "2", "")])
    # an incomplete event at the end is dropped
    check(b"data: a\n\ndata: b\n", [("message", "a", "")])
    p = parse(b"foo: bar\nDATA: x\n\n")
    assert p.unknown_fields == ["foo: bar", "DATA: x"] and p.events == []
    # strict UTF-8: an invalid byte is a failure, not a replacement
    with pytest.raises(UnicodeDecodeError):
        parse(b"data: \xff\n\n")


# --------------------------------------------------------- send, comment

def test_send_every_field_and_multiline_data(start):
    srv = start(APP)
    c = SSEClient(srv, "/send")
    assert c.header("content-type") == "text/event-stream; charset=utf-8"
    events = c.wait_closed()
    got = [(e.type, e.data, e.last_event_id) for e in events]
    assert got == [
        ("message", "plain", ""),
        ("update", "with fields", "7"),
        ("message", "a\nb\nc\nd", "7"),      # CRLF, CR and LF each start a data line
        ("message", "trailing\n", "7"),      # a trailing newline survives
        ("message", "", "7"),                # empty data is an event
        ("message", "\n", "7"),
        ("message", "  two spaces kept", "7"),
        ("message", "after the comment", ""),  # an empty id resets lastEventId
        ("utf8", "caf\u00e9 \u2713", "8"),     # an event with no data still set the id
    ]
    p = c.parser
    assert [x.strip() for x in p.comments] == ["a comment", "in two lines"]
    assert p.retry == 0  # 2500, then 0
    assert p.unknown_fields == []
    # on the wire: LF line ends only, one "data:" line per line of data
    assert b"\r" not in c.body
    assert b"data: a\ndata: b\ndata: c\ndata: d\n\n" in c.body
    assert b"data: trailing\ndata: \n\n" in c.body
    assert b"id: 7\nevent: update\nretry: 2500\ndata: with fields\n\n" in c.body
    assert b": a comment\n: in two lines\n\n" in c.body
    assert b"id: 8\nevent: no-data\n\n" in c.body


def test_head_gets_the_head_and_no_events(start):
    srv = start(APP)
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"HEAD /send HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: text/event-stream" in head
    assert body == b""
    # a stream opened for HEAD is closed from the start
    c, _ = subscribe(srv, "ch=h&name=live")
    pub(srv, "h", "x")
    assert [e.data for e in c.events(1)] == ["x"]
    c.close()


@pytest.mark.parametrize("what", ["event_lf", "event_cr", "event_crlf", "event_nul", "id_lf",
                                  "id_cr", "id_nul"])
def test_cr_lf_in_event_or_id_is_a_lua_error(start, what):
    srv = start(APP)
    c = SSEClient(srv, "/bad/" + what)
    events = c.wait_closed()
    # what was sent before stays; nothing of the refused event, nothing after
    assert [e.data for e in events] == ["before"]
    assert c.body == b"data: before\n\n"
    # logged as a handler error (the 500 class; the 200 head had gone out,
    # so the response is cut short rather than turned into a 500 page)
    srv.wait_log(r"\[error\] req \S+ GET /bad/" + what + r": .*must not contain CR, LF or NUL")
    assert "stack traceback:" in srv.log()
    # the traceback names the app's line
    line = line_of("stream:send(BAD[req.params.what]) -- raises")
    srv.wait_log(rf"app\.lua:{line}:")
    # and the server goes on serving
    assert requests.get(srv.url + "/stats", timeout=10).status_code == 200


def test_refused_fields_raise_before_anything_is_queued(start):
    srv = start(APP)
    c = SSEClient(srv, "/bad/pcall")
    got = {e.type: e.data for e in c.wait_closed()}
    for name in ["event_lf", "event_cr", "event_crlf", "event_nul", "id_lf", "id_cr", "id_nul"]:
        assert "must not contain CR, LF or NUL" in got[name], (name, got[name])
    assert "an event needs data, event, id or retry" in got["empty"]
    assert "retry must be >= 0" in got["negative_retry"]
    assert "must not contain CR, LF or NUL" in got["subscribe_event_lf"]
    assert "since must be a message id (an integer >= 0), got 1.5" in got["subscribe_since_fraction"]
    for name in ["huge", "negative", "nan"]:
        assert "heartbeat must be 0..86400 seconds" in got["heartbeat_" + name]
    assert b"accepted" not in c.body
    # the refused events left no bytes: every event on the wire is a report
    assert len(c.parser.events) == 14


# ------------------------------------------------------------ heartbeats

def test_heartbeat_comments(start):
    srv = start(APP)
    c = SSEClient(srv, "/heartbeat?hb=0.2")
    assert c.next_event().data == "open"
    t0 = time.time()
    for _ in range(3):
        assert c.next_comment(timeout=2) == ""  # ":\n\n"
    assert time.time() - t0 >= 0.4  # three beats, 0.2 s apart (no faster)
    assert c.parser.events[-1].data == "open" and c.parser.unknown_fields == []
    assert b":\n\n" in c.body
    c.close()


def test_heartbeat_zero_is_off(start):
    srv = start(APP)
    c = SSEClient(srv, "/heartbeat?hb=0")
    assert c.next_event().data == "open"
    assert c.quiet_for(0.7)
    c.close()


def test_writes_postpone_the_heartbeat(start):
    srv = start(APP)
    c = SSEClient(srv, "/heartbeat?hb=0.4&chatty=0.05")
    deadline = time.time() + 1.0
    while time.time() < deadline:
        kind, x = c.next_item(timeout=1)
        assert kind == "event", f"a heartbeat came although events flowed: {x!r}"
    assert len(c.parser.events) > 5
    c.close()
    # the timer holds the stream after the client left: send returns false
    wait_for(lambda: stats(srv).get("chatty_stopped") == 1, timeout=2, what="the timer to stop")
    assert stats(srv)["chatty_closed"] is True


# ------------------------------------------------------- last_event_id

@pytest.mark.parametrize("target,header,want", [
    ("/lei", None, ""),
    ("/lei", "42", "42"),
    ("/lei?lastEventId=17", None, "17"),
    ("/lei?lastEventId=a%2Cb", None, "a,b"),
    ("/lei?lastEventId=17", "42", "42"),  # the header wins
    ("/lei", "3,9", "3,9"),
])
def test_last_event_id(start, target, header, want):
    srv = start(APP)
    c = SSEClient(srv, target, last_event_id=header)
    [ev] = c.wait_closed()
    assert (ev.type, ev.data) == ("string", want)


# ------------------------------------------------ subscribe and resume

def test_subscribe_gets_new_messages_only(start):
    srv = start(APP)
    pub(srv, "news", "old")
    c, replayed = subscribe(srv, "ch=news")
    assert replayed == []
    for i in range(2, 5):
        assert pub(srv, "news", f"m{i}") == i
    events = c.events(3)
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("message", "m2", "2"), ("message", "m3", "3"), ("message", "m4", "4")]
    assert c.quiet_for(0.2)
    c.close()


def test_resume_from_last_event_id_has_no_gap_and_no_duplicate(start):
    srv = start(APP)
    a, _ = subscribe(srv, "ch=r")
    for i in range(1, 4):
        pub(srv, "r", f"m{i}")
    assert ids(a.events(3)) == ["1", "2", "3"]
    a.close()
    # published while the client is away
    pub(srv, "r", "m4")
    pub(srv, "r", "m5")
    b, replayed = subscribe(srv, "ch=r", last_event_id=a.parser.last_event_id)
    assert [(e.data, e.last_event_id) for e in replayed] == [("m4", "4"), ("m5", "5")]
    pub(srv, "r", "m6")
    assert [(e.data, e.last_event_id) for e in b.events(1)] == [("m6", "6")]
    assert b.quiet_for(0.2)
    b.close()

    # the same through ?lastEventId= (for clients that cannot set headers)
    c, replayed = subscribe(srv, "ch=r&lastEventId=4")
    assert ids(replayed) == ["5", "6"]
    c.close()
    # an explicit since wins over Last-Event-ID
    d, replayed = subscribe(srv, "ch=r&since=1", last_event_id="5")
    assert ids(replayed) == ["2", "3", "4", "5", "6"]
    d.close()
    # up to date: nothing replayed
    e, replayed = subscribe(srv, "ch=r", last_event_id="6")
    assert replayed == []
    pub(srv, "r", "m7")
    assert ids(e.events(1)) == ["7"]
    e.close()


def test_a_resume_id_with_a_line_break_is_not_echoed(start):
    """Last-Event-ID entries beyond the subscribed channels are echoed in
    id lines; one with a line break (possible through ?lastEventId=) must
    not inject fields into the stream: it is no resume point at all."""
    srv = start(APP)
    pub(srv, "inj", "old")
    c, replayed = subscribe(srv, "ch=inj&lastEventId=0,5%0Aevent:%20evil%0Adata:%20injected")
    assert replayed == []  # not a resume point: only new messages
    pub(srv, "inj", "hello")
    [ev] = c.events(1)
    assert (ev.type, ev.data, ev.last_event_id) == ("message", "hello", "2")
    assert b"evil" not in c.body and b"injected" not in c.body
    c.close()


def test_since_older_than_history_replays_what_is_retained(start):
    srv = start(APP)
    for i in range(1, 11):
        pub(srv, "short", f"m{i}")  # history 5: 6..10 retained
    c, replayed = subscribe(srv, "ch=short", last_event_id="2")
    # all retained; the ids show the gap (the client had 2, the next is 6)
    assert [(e.data, e.last_event_id) for e in replayed] == [(f"m{i}", str(i)) for i in range(6, 11)]
    # and a comment says so
    assert any("3 message(s) of short after id 2 are no longer retained" in x
               for x in c.parser.comments), c.parser.comments
    c.close()

    c, replayed = subscribe(srv, "ch=short&since=0")
    assert ids(replayed) == ["6", "7", "8", "9", "10"]
    assert any("5 message(s)" in x for x in c.parser.comments)
    c.close()

    # an id above the channel's last (the server restarted): all retained
    c, replayed = subscribe(srv, "ch=short", last_event_id="500")
    assert ids(replayed) == ["6", "7", "8", "9", "10"]
    assert not any("no longer retained" in x for x in c.parser.comments)
    pub(srv, "short", "m11")
    assert ids(c.events(1)) == ["11"]
    c.close()

    # the history route agrees
    h = requests.get(srv.url + "/history/short?since=2", timeout=10).json()
    assert [m["id"] for m in h["list"]] == [7, 8, 9, 10, 11] and h["missed"] == 4


def test_several_channels_share_one_comma_joined_id(start):
    srv = start(APP)
    pub(srv, "cb", "b-old")  # cb's last id is 1 before the stream starts
    c, _ = subscribe(srv, "ch=ca,cb")
    pub(srv, "ca", "a1")
    pub(srv, "cb", "b2")
    pub(srv, "ca", "a2")
    got = [(e.data, e.last_event_id) for e in c.events(3)]
    assert got == [("a1", "1,1"), ("b2", "1,2"), ("a2", "2,2")]
    c.close()

    # resume per position: ca from 1, cb from 1
    pub(srv, "cb", "b3")
    d, replayed = subscribe(srv, "ch=ca,cb", last_event_id="1,1")
    assert [(e.data, e.last_event_id) for e in replayed] == [
        ("a2", "2,1"), ("b2", "2,2"), ("b3", "2,3")]
    pub(srv, "ca", "a3")
    assert [(e.data, e.last_event_id) for e in d.events(1)] == [("a3", "3,3")]
    d.close()

    # fewer entries than channels: the rest get only new messages (a
    # replay names only the channels subscribed so far)
    e, replayed = subscribe(srv, "ch=ca,cb", last_event_id="2")
    assert [(x.data, x.last_event_id) for x in replayed] == [("a3", "3")]
    pub(srv, "cb", "b4")
    assert [(x.data, x.last_event_id) for x in e.events(1)] == [("b4", "3,4")]
    e.close()

    # an up-to-date id replays nothing
    f, replayed = subscribe(srv, "ch=ca,cb", last_event_id="3,4")
    assert replayed == []
    pub(srv, "cb", "b5")
    assert ids(f.events(1)) == ["3,5"]
    f.close()


def test_binary_messages_arrive_base64(start):
    srv = start(APP)
    c, _ = subscribe(srv, "ch=bin")
    payloads = [bytes(range(256)), b"", b"\n\r\x00", b"\xff" * 1000]
    for p in payloads:
        pub(srv, "bin", p, kind="binary")
    pub(srv, "bin", "text\r\nlines\rand\nmore")
    events = c.events(len(payloads) + 1)
    for p, e in zip(payloads, events):
        assert base64.b64decode(e.data, validate=True) == p
        assert "\n" not in e.data
    assert events[-1].data == "text\nlines\nand\nmore"
    assert ids(events) == ["1", "2", "3", "4", "5"]
    c.close()


def test_event_option_names_the_events(start):
    srv = start(APP)
    c, _ = subscribe(srv, "ch=named&event=tick")
    pub(srv, "named", "x")
    pub(srv, "named", "y", kind="binary")
    events = c.events(2)
    assert [(e.type, e.data) for e in events] == [("tick", "x"), ("tick", "eQ==")]
    # without the option, the same message is a plain "message" elsewhere
    d, replayed = subscribe(srv, "ch=named&since=0")
    assert [(e.type, e.data) for e in replayed] == [("message", "x"), ("message", "eQ==")]
    c.close()
    d.close()


# ------------------------------------------------ closed, on_close, close

def test_on_close_runs_once_promptly_when_the_client_leaves(start):
    srv = start(APP)
    c = SSEClient(srv, "/watch/w1")  # default heartbeat: 15 s
    ev = c.next_event()
    assert (ev.type, ev.data) == ("closed", "false")
    c.close()
    t0 = time.time()
    # noticed at once, not at the next write (15 s away)
    wait_for(lambda: stats(srv)["on_close"].get("w1") == 1, timeout=1.0, what="on_close")
    assert time.time() - t0 < 1.0
    wait_for(lambda: stats(srv)["closed_seen"].get("w1"), timeout=1.0, what="closed() true")
    time.sleep(0.2)
    s = stats(srv)
    assert s["on_close"]["w1"] == 1 and s["on_close"]["w1#2"] == 1


def test_close_ends_the_response(start):
    srv = start(APP)
    c = SSEClient(srv, "/close-after?n=3&name=ca")
    events = c.wait_closed(timeout=5)
    assert [(e.data, e.last_event_id) for e in events] == [("e1", "1"), ("e2", "2"), ("e3", "3")]
    assert c.body.endswith(b"data: e3\n\n")
    s = stats(srv)
    after = s["after_close"]["ca"]
    assert after["closed"] is True
    assert after["send"] is False and after["comment"] is False and after["subscribe"] is False
    assert after["tostring"] == "moonwire.stream (closed)"
    assert s["on_close"]["ca"] == 1
    assert s["late_on_close"]["ca"] == 1


def test_close_from_another_request(start):
    srv = start(APP)
    c, _ = subscribe(srv, "ch=x&name=remote")
    assert requests.post(srv.url + "/close/remote", timeout=10).json() == {"closed": True}
    assert c.wait_closed(timeout=5) == []
    wait_for(lambda: stats(srv)["on_close"].get("remote") == 1, what="on_close")
    time.sleep(0.1)
    assert stats(srv)["on_close"]["remote"] == 1


def subscribers(srv, ch):
    return requests.get(f"{srv.url}/subscribers/{ch}", timeout=10).json()["subscribers"]


def test_a_client_that_leaves_releases_its_subscriptions(start):
    srv = start(APP)
    a, _ = subscribe(srv, "ch=rel1,rel2&name=a")
    b, _ = subscribe(srv, "ch=rel2&name=b")
    assert (subscribers(srv, "rel1"), subscribers(srv, "rel2")) == (1, 2)
    pub(srv, "rel1", "x")
    assert [e.data for e in a.events(1)] == ["x"]
    a.close()
    # released at once, not at the next write
    wait_for(lambda: subscribers(srv, "rel1") == 0 and subscribers(srv, "rel2") == 1,
             timeout=1.0, what="a's subscriptions released")
    assert stats(srv)["on_close"] == {"a": 1}
    b.close()
    wait_for(lambda: subscribers(srv, "rel2") == 0, timeout=1.0, what="b's subscription released")
    # the channels still work for newcomers
    c, _ = subscribe(srv, "ch=rel2")
    pub(srv, "rel2", "y")
    assert [e.data for e in c.events(1)] == ["y"]
    c.close()


def test_client_leaving_mid_stream_while_messages_flow(start):
    """Clients come and go while a burst is published: the ones that stay
    get everything, the server stays clean (checked at exit)."""
    srv = start(APP)
    stay, _ = subscribe(srv, "ch=long&name=stay")
    leavers = [subscribe(srv, f"ch=long&name=l{i}")[0] for i in range(5)]
    t = threading.Thread(target=lambda: requests.post(
        srv.url + "/burst/long?n=200&size=100&batch=5", timeout=30))
    t.start()
    for i, c in enumerate(leavers):
        c.events(10 * (i + 1))
        c.close()
    events = stay.events(200, timeout=30)
    t.join(30)
    assert ids(events) == [str(i) for i in range(1, 201)]
    wait_for(lambda: all(stats(srv)["on_close"].get(f"l{i}") == 1 for i in range(5)),
             what="every leaver's on_close")
    stay.close()


def test_a_fan_out_wider_than_one_sweep_reaches_every_stream_in_order(start):
    """The server writes to at most 256 connections per slice of its loop
    (MW_SWEEP_BUDGET) and goes on in the next turn without sleeping. With
    1,000 streams (more than the three slices a turn can take before it
    would sleep): one publish reaches all of them with nothing else going
    on, a burst published while the slices are under way reaches all in
    order, and a plain request is answered in between."""
    conftest.need_fds(2048)
    srv = start(APP)
    clients = [subscribe(srv, "ch=wide")[0] for _ in range(1000)]
    # the publisher's answer comes last, so it waits in another thread
    t = threading.Thread(target=pub, args=(srv, "wide", "first"))
    t.start()
    for c in clients:
        # a slice left behind would wait for some timer, 10 s or more
        assert ids(c.events(1, timeout=5)) == ["1"]
    t.join(10)

    t = threading.Thread(target=lambda: requests.post(
        srv.url + "/burst/wide?n=60&size=40&batch=3", timeout=30))
    t.start()
    r = requests.get(srv.url + "/subscribers/wide", timeout=10)
    assert r.json()["subscribers"] == 1000
    want = [str(i) for i in range(2, 62)]
    for c in clients:
        events = c.events(60, timeout=10)
        assert ids(events) == want
        assert all(e.data.startswith(e.last_event_id + ":") for e in events)
    t.join(30)
    for c in clients:
        c.close()
    wait_for(lambda: requests.get(srv.url + "/subscribers/wide", timeout=10).json()["subscribers"] == 0,
             what="every stream released")


# --------------------------------------------------------- slow consumers

def test_slow_consumer_is_dropped_and_resumes_from_history(start):
    srv = start(APP, env={"SSE_MAX_QUEUED_BYTES": str(64 * 1024)})
    # a client that stops reading, with a small receive window: the kernel
    # still holds a few MB for it (socket buffers), so the burst is larger
    slow, _ = subscribe(srv, "ch=long&name=slow", rcvbuf=4096)
    fast, _ = subscribe(srv, "ch=long&name=fast")
    n, size = 400, 16000
    done = {}
    t = threading.Thread(target=lambda: done.update(requests.post(
        srv.url + f"/burst/long?n={n}&size={size}&batch=2&pause=0.002", timeout=60).json()))
    t.start()
    events = fast.events(n, timeout=60)
    t.join(60)
    assert done == {"last": n}
    # the reader got everything, in order, each once
    assert ids(events) == [str(i) for i in range(1, n + 1)]
    assert all(e.data.startswith(f"{i}:") and len(e.data) == size for i, e in enumerate(events, 1))
    srv.wait_log(r"\[warn\] req \S+: SSE client fell more than 65536 bytes behind; dropping it")
    assert len(re.findall("fell more than", srv.log())) == 1
    s = stats(srv)
    assert s["on_close"].get("slow") == 1 and "fast" not in s["on_close"]
    assert subscribers(srv, "long") == 1

    # the slow one reads what reached it, then the end
    got = slow.wait_closed(timeout=30)
    k = len(got)
    assert 0 < k < n
    assert ids(got) == [str(i) for i in range(1, k + 1)]
    slow.close()
    # and resumes from history where it left off: the replay is far larger
    # than the queue limit, so it goes out as the client reads, and the
    # client is not dropped again
    again = SSEClient(srv, "/sub?ch=long&name=again", last_event_id=slow.parser.last_event_id)
    rest = again.events(n - k, timeout=30)
    assert ids(got + rest) == [str(i) for i in range(1, n + 1)]
    assert len(re.findall("fell more than", srv.log())) == 1
    # and then it is live again
    pub(srv, "long", "live")
    assert [(e.data, e.last_event_id) for e in again.events(1)] == [("live", str(n + 1))]
    assert [(e.data, e.last_event_id) for e in fast.events(1)] == [("live", str(n + 1))]
    again.close()
    fast.close()


def test_a_message_larger_than_the_queue_limit_reaches_a_reader(start):
    """The limit is how far behind a client may fall: a single message
    larger than it still goes to a client with nothing queued."""
    srv = start(APP, env={"SSE_MAX_QUEUED_BYTES": "4096"})
    c, _ = subscribe(srv, "ch=big")
    big = "b" * 20000
    pub(srv, "big", big)
    pub(srv, "big", "small")
    assert [e.data for e in c.events(2)] == [big, "small"]
    # and a replay of several such messages goes out as the client reads
    d, _ = subscribe(srv, "ch=big&since=0")
    got = [e.data for e in d.events(2)]
    assert got == [big, "small"]
    assert "fell more than" not in srv.log()
    c.close()
    d.close()


def test_a_replay_that_fills_the_queue_does_not_drop_the_client(start):
    """A reconnecting client's replay fills the queue to the limit; a live
    message on another of its channels, in that same turn, waits in the
    history and follows, instead of dropping the client as too slow."""
    srv = start(APP, env={"SSE_MAX_QUEUED_BYTES": str(64 * 1024)})
    requests.post(srv.url + "/burst/long?n=50&size=16000&batch=50", timeout=30)
    c = SSEClient(srv, "/sub?ch=long,side&then_pub=side&then_size=20000", last_event_id="0")
    events = c.events(51, timeout=30)
    long_ids = [e.last_event_id.split(",")[0] for e in events if e.data.startswith(tuple("0123456789"))]
    side = [e for e in events if e.data.startswith("s")]
    assert long_ids == [str(i) for i in range(1, 51)]
    assert len(side) == 1 and len(side[0].data) == 20000
    assert side[0].last_event_id.endswith(",1")
    # (replayed before "side" was subscribed, an id names only "long")
    assert events[-1].last_event_id.count(",") == 1
    assert "fell more than" not in srv.log()
    # live on both afterwards
    pub(srv, "side", "s-live")
    assert [(e.data, e.last_event_id) for e in c.events(1)] == [("s-live", "50,2")]
    c.close()


def test_a_client_that_stalls_while_catching_up_is_dropped_when_history_passes_it(start):
    """A client that reconnects far behind catches up as it reads; one
    that stops reading meanwhile is dropped once the history moves past
    what it has (it is not held open forever), and told of the gap when
    it comes back."""
    srv = start(APP, env={"SSE_MAX_QUEUED_BYTES": str(64 * 1024)})
    big = 2 * 1024 * 1024
    requests.post(srv.url + f"/burst/short?n=5&size={big}&batch=1", timeout=60)  # 1..5 retained
    stalled = SSEClient(srv, "/sub?ch=short&name=stalled", last_event_id="0", rcvbuf=4096)
    assert subscribers(srv, "short") == 1
    assert "fell more than" not in srv.log()
    # 5 more: the history (5) moves past what the stalled client has
    requests.post(srv.url + f"/burst/short?n=5&size={big}&batch=1", timeout=60)
    srv.wait_log(r"SSE client fell more than 65536 bytes behind")
    wait_for(lambda: subscribers(srv, "short") == 0, timeout=5, what="the stalled client dropped")
    assert stats(srv)["on_close"] == {"stalled": 1}
    stalled.close()
    # back with the last id it had: the gap is reported, the rest replayed
    back = SSEClient(srv, "/sub?ch=short", last_event_id="2")
    assert "3 message(s) of short after id 2 are no longer retained" in back.next_comment(timeout=30)
    events = back.events(5, timeout=60)
    assert ids(events) == ["6", "7", "8", "9", "10"]
    back.close()


def test_on_close_callbacks_may_wait_and_one_failing_spares_the_others(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        local log = {}
        app:get("/s", function(req, res)
          local s = res:sse{ heartbeat = 0 }
          s:on_close(function() error("first callback fails") end)
          s:on_close(function() mw.sleep(0.05); log[#log + 1] = "waited" end)
          s:on_close(function() log[#log + 1] = "third" end)
        end)
        app:get("/log", function(req, res) res:json(mw.json.array(log)) end)
        return app
    ''')
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(1024)
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        got = requests.get(srv.url + "/log").json()
        if len(got) == 2:
            break
        time.sleep(0.02)
    assert sorted(got) == ["third", "waited"]
    srv.wait_log(r"stream on_close callback failed: .*first callback fails")


# ---------------------------------------------- subscription bookkeeping

def test_unsubscribe_and_resubscribe_keep_ids_in_subscription_order(start):
    """A stream's first subscription lives inside it and the rest in a
    list; unsubscribing and subscribing again in every order keeps the
    comma-joined id in subscription order and delivers nothing twice."""
    srv = start(APP)
    ops = "sub:ja,sub:jb,sub:jc,unsub:ja,sub:ja,sub:ja,unsub:jb,unsub:zz,unsub:jc"
    c = SSEClient(srv, "/juggle?ops=" + ops)
    seen = []
    while True:
        kind, x = c.next_item()
        assert kind == "comment", x
        if x.strip() == "subscribed":
            break
        seen.append(x.strip())
    assert seen == ["sub:ja=true", "sub:jb=true", "sub:jc=true", "unsub:ja=true", "sub:ja=true",
                    "sub:ja=error", "unsub:jb=true", "unsub:zz=false", "unsub:jc=true"]
    # one channel left: the whole event (id line included) is the shared one
    assert pub(srv, "jb", "not subscribed") == 1
    assert pub(srv, "ja", "a1") == 1
    assert [(e.data, e.last_event_id) for e in c.events(1)] == [("a1", "1")]
    c.close()

    d = SSEClient(srv, "/juggle?ops=sub:jc,sub:ja,sub:jb,unsub:jc")
    while d.next_comment().strip() != "subscribed":
        pass
    pub(srv, "jc", "c-not-subscribed")
    pub(srv, "jb", "b2")
    pub(srv, "ja", "a2")
    assert [(e.data, e.last_event_id) for e in d.events(2)] == [("b2", "1,2"), ("a2", "2,2")]
    d.close()


def test_res_write_on_a_stream_raises_and_the_stream_goes_on(start):
    srv = start(APP)
    c = SSEClient(srv, "/res-write")
    got = c.events(2)
    assert got[0].type == "write" and "event stream" in got[0].data and "stream:send" in got[0].data
    assert got[1].data == "still open"
    c.close()


def test_stream_opened_before_a_chunked_body_with_trailers(start):
    srv = start(APP)
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.sendall(b"POST /early?ch=early HTTP/1.1\r\nHost: x\r\nX-Marker: m1\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    buf = b""
    while b"subscribed" not in buf:
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    assert b"event: marker\ndata: m1\n" in buf
    # the body and its trailers arrive after the stream started: ignored
    s.sendall(b"5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n")
    pub(srv, "early", "after the body")
    while b"after the body" not in buf:
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    s.close()
    assert requests.get(srv.url + "/stats", timeout=10).status_code == 200
