"""Long polling with ch:wait (DESIGN.md, "Hub"): retained messages at
once, a wait for the next one, `[]` on timeout, argument checks, the
client leaving while parked, `since` older than the history (oldest
retained plus the missed count), 100 clients polling in loops while 300
messages are published (each gets every message once, in order), and
graceful shutdown. The app is tests/apps/longpoll/app.lua."""
import base64
import json
import signal
import socket
import threading
import time
from functools import partial

import requests

import conftest

from sse_client import SSEClient

APP = "longpoll/app.lua"


pub = conftest.publish


def stats(srv):
    return requests.get(srv.url + "/stats", timeout=10).json()


def subscribers(srv, ch):
    return requests.get(f"{srv.url}/subscribers/{ch}", timeout=10).json()["subscribers"]


wait_for = partial(conftest.wait_for, timeout=5.0, interval=0.01)


def poll(srv, ch, since=None, timeout=None, http_timeout=30):
    params = {}
    if since is not None:
        params["since"] = since
    if timeout is not None:
        params["timeout"] = timeout
    return requests.get(f"{srv.url}/poll/{ch}", params=params, timeout=http_timeout)


class Poller(threading.Thread):
    """One poll in the background; .result is the response."""

    def __init__(self, srv, ch, **kw):
        super().__init__(daemon=True)
        self.args = (srv, ch)
        self.kw = kw
        self.result = None
        self.error = None
        self.start()

    def run(self):
        try:
            self.result = poll(*self.args, **self.kw)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def response(self, timeout=10):
        self.join(timeout)
        assert not self.is_alive(), "the poll did not return"
        assert self.error is None, self.error
        return self.result


def ids(r):
    return [m["id"] for m in r.json()]


# --------------------------------------------------------------- answers

def test_retained_messages_come_back_at_once(start):
    srv = start(APP)
    for i in range(1, 4):
        assert pub(srv, "a", f"m{i}") == i
    t0 = time.time()
    r = poll(srv, "a", since=1, timeout=30)
    assert time.time() - t0 < 10  # not the 30 s wait
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == [{"id": 2, "data": "m2", "kind": "text"}, {"id": 3, "data": "m3", "kind": "text"}]
    assert r.headers["x-missed"] == "0"
    assert ids(poll(srv, "a", since=0, timeout=30)) == [1, 2, 3]
    # an id above the channel's last (a restart): all retained, at once
    assert ids(poll(srv, "a", since=99, timeout=30)) == [1, 2, 3]
    assert stats(srv)["parked"] == 0


def test_a_wait_gets_the_next_message(start):
    srv = start(APP)
    pub(srv, "b", "old1")
    pub(srv, "b", "old2")
    # up to date: it parks
    p = Poller(srv, "b", since=2, timeout=20)
    wait_for(lambda: stats(srv)["parked"] == 1, what="the poll to park")
    assert pub(srv, "b", "new") == 3
    r = p.response()
    assert r.json() == [{"id": 3, "data": "new", "kind": "text"}]
    # no since: only new messages, never the retained ones
    p = Poller(srv, "b", timeout=20)
    wait_for(lambda: stats(srv)["parked"] == 1, what="the poll to park")
    pub(srv, "b", "newer")
    assert ids(p.response()) == [4]


def test_one_publish_wakes_every_waiter_and_a_burst_is_one_list(start):
    srv = start(APP)
    polls = [Poller(srv, "c", since=0, timeout=20) for _ in range(10)]
    wait_for(lambda: stats(srv)["parked"] == 10, what="10 parked polls")
    assert subscribers(srv, "c") == 10
    requests.post(srv.url + "/burst/c?n=5", timeout=10)
    for p in polls:
        assert [(m["id"], m["data"]) for m in p.response().json()] == [
            (1, "b1"), (2, "b2"), (3, "b3"), (4, "b4"), (5, "b5")]
    wait_for(lambda: subscribers(srv, "c") == 0, what="the waits to be released")


def test_timeout_answers_an_empty_list(start):
    srv = start(APP)
    t0 = time.time()
    r = poll(srv, "t", timeout=0.2)
    assert time.time() - t0 >= 0.2
    assert r.status_code == 200 and r.text == "[]" and r.headers["x-missed"] == "0"
    r = poll(srv, "t", since=0, timeout=0)
    assert r.text == "[]"
    assert stats(srv)["parked"] == 0
    assert subscribers(srv, "t") == 0


def test_default_timeout_and_argument_checks(start):
    srv = start(APP)
    got = requests.get(srv.url + "/validate", timeout=10).json()
    assert "timeout must be 0..86400 seconds" in got["timeout_negative"]
    assert "timeout must be 0..86400 seconds" in got["timeout_too_large"]
    assert "number expected" in got["timeout_string"]
    assert "since must be a message id (an integer >= 0), got -1" in got["since_negative"]
    assert "since must be a message id (an integer >= 0), got abc" in got["since_string"]
    assert "since must be a message id (an integer >= 0)" in got["since_fraction"]
    assert "table expected" in got["not_a_table"]
    assert got["timeout_zero"] == "accepted"
    assert "can only be made inside a handler" in got["user_coroutine"]
    # the default timeout (30 s) keeps a poll parked
    p = Poller(srv, "d", since=0)
    wait_for(lambda: stats(srv)["parked"] == 1, what="the poll to park")
    time.sleep(0.5)
    assert p.is_alive()
    pub(srv, "d", "x")
    assert ids(p.response()) == [1]


def test_a_client_leaving_while_parked_is_released_at_once(start):
    srv = start(APP)
    socks = []
    for _ in range(20):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(b"GET /poll/gone?timeout=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        socks.append(s)
    wait_for(lambda: stats(srv)["parked"] == 20, what="20 parked polls")
    assert subscribers(srv, "gone") == 20
    for s in socks:
        s.close()
    # at once: long before any timeout
    wait_for(lambda: stats(srv)["released"] == 20, timeout=1.0, what="the waits to end")
    st = stats(srv)
    assert st["parked"] == 0 and st["answered"] == 0
    assert subscribers(srv, "gone") == 0
    # the channel works on
    p = Poller(srv, "gone", timeout=10)
    wait_for(lambda: stats(srv)["parked"] == 1, what="a new poll")
    pub(srv, "gone", "still here")
    assert ids(p.response()) == [1]


def test_since_older_than_history_returns_the_oldest_retained_and_the_missed_count(start):
    srv = start(APP)
    for i in range(1, 11):
        pub(srv, "short", f"m{i}")  # history 5: 6..10 retained
    r = poll(srv, "short", since=2, timeout=30)
    assert ids(r) == [6, 7, 8, 9, 10]
    assert r.headers["x-missed"] == "3"  # 3, 4 and 5 are gone
    r = poll(srv, "short", since=0, timeout=30)
    assert ids(r) == [6, 7, 8, 9, 10] and r.headers["x-missed"] == "5"
    r = poll(srv, "short", since=5, timeout=30)
    assert ids(r) == [6, 7, 8, 9, 10] and r.headers["x-missed"] == "0"
    r = poll(srv, "short", since=8, timeout=30)
    assert ids(r) == [9, 10] and r.headers["x-missed"] == "0"
    h = requests.get(srv.url + "/history/short?since=1", timeout=10).json()
    assert [m["id"] for m in h["list"]] == [6, 7, 8, 9, 10] and h["missed"] == 4


def test_a_dropped_stream_takes_its_wait_along_without_harming_the_others(start):
    """The stream and the wait of one request sit next to each other in the
    channel's subscriber list. The stream falls too far behind during a
    publish and is dropped; its wait ends with it, in the middle of that
    publish. Every other subscriber still gets every message."""
    srv = start(APP, env={"LP_MAX_QUEUED_BYTES": "4096"})
    # the stream also follows k2: a message there, in the same turn, fills
    # its queue, so the first message of k drops it while its wait (next
    # in k's list) is still parked
    combo = SSEClient(srv, "/combo?ch=k&pre=k2", rcvbuf=4096)
    assert combo.next_comment().strip() == "subscribed"
    wait_for(lambda: stats(srv)["parked"] == 1, what="the combo's wait")
    others = [Poller(srv, "k", since=0, timeout=20) for _ in range(3)]
    wait_for(lambda: stats(srv)["parked"] == 4, what="3 more polls")
    assert subscribers(srv, "k") == 5
    requests.post(srv.url + "/flood/k?n=3&size=3000&pre=k2", timeout=10)
    for p in others:
        assert ids(p.response()) == [1, 2, 3]
    srv.wait_log(r"SSE client fell more than 4096 bytes behind")
    wait_for(lambda: stats(srv)["released"] == 1, timeout=1.0, what="the combo's wait to end")
    assert stats(srv)["parked"] == 0
    wait_for(lambda: subscribers(srv, "k") == 0, what="all released")
    combo.close()


def test_text_messages_must_be_utf8(start):
    srv = start(APP)
    r = requests.post(f"{srv.url}/pub/u", data=b"caf\xe9", timeout=10)
    assert r.status_code == 500
    srv.wait_log(r"text messages must be valid UTF-8")
    assert poll(srv, "u", since=0, timeout=0).text == "[]"  # nothing was published
    assert pub(srv, "u", "caf\u00e9".encode()) == 1
    assert poll(srv, "u", since=0, timeout=0).json() == [{"id": 1, "data": "caf\u00e9", "kind": "text"}]


def test_binary_messages_arrive_base64_in_valid_json(start):
    """JSON text is UTF-8: a binary message's data comes base64 (standard
    alphabet, padded), with "kind": "binary", to a parked poll and from
    the history alike; text beside it stays as it is."""
    srv = start(APP)
    raw = bytes(range(256))
    p = Poller(srv, "bin", since=0, timeout=10)
    wait_for(lambda: subscribers(srv, "bin") == 1, what="the poll parked")
    assert pub(srv, "bin", raw, kind="binary") == 1
    r = p.response()
    r.content.decode("utf-8")  # strictly: raises on a byte that is not
    assert r.json() == [{"id": 1, "data": base64.b64encode(raw).decode(), "kind": "binary"}]

    assert pub(srv, "bin", "caf\u00e9".encode()) == 2
    assert pub(srv, "bin", b"", kind="binary") == 3
    r = poll(srv, "bin", since=0, timeout=0)
    r.content.decode("utf-8")
    got = r.json()
    assert [base64.b64decode(m["data"]) if m["kind"] == "binary" else m["data"] for m in got] == \
        [raw, "caf\u00e9", b""]
    assert [m["kind"] for m in got] == ["binary", "text", "binary"]


# ------------------------------------------------- 100 clients, 300 msgs

class KeepAliveClient:
    """HTTP/1.1 GETs on one kept-alive raw socket, JSON bodies."""

    def __init__(self, srv):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _read(self, cond):
        while not cond():
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.buf += data

    def get_json(self, target):
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        self._read(lambda: b"\r\n\r\n" in self.buf)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 200 "), lines[0]
        length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
        self._read(lambda: len(self.buf) >= length)
        body, self.buf = self.buf[:length], self.buf[length:]
        return json.loads(body)

    def close(self):
        self.sock.close()


def test_100_clients_polling_in_loops_get_every_message_once_in_order(start):
    srv = start(APP)
    n_clients, n_msgs = 100, 300
    results = [None] * n_clients
    errors = []
    ready = threading.Barrier(n_clients + 1, timeout=30)

    def client(k):
        try:
            c = KeepAliveClient(srv)
            got, last = [], 0
            ready.wait()
            deadline = time.time() + 60
            while last < n_msgs and time.time() < deadline:
                for m in c.get_json(f"/poll/feed?since={last}&timeout=10"):
                    got.append((m["id"], m["data"]))
                    last = m["id"]
            c.close()
            results[k] = got
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(n_clients)]
    for t in threads:
        t.start()
    ready.wait()
    # every client parked on its first poll before the first message
    wait_for(lambda: stats(srv)["parked"] == n_clients, timeout=30, what="100 parked polls")
    requests.post(srv.url + "/start", params={"n": n_msgs, "per": 3, "interval": 0.01}, timeout=10)
    for t in threads:
        t.join(90)
    assert not errors, errors[:3]
    want = [(i, f"m{i}") for i in range(1, n_msgs + 1)]
    for k, got in enumerate(results):
        assert got == want, f"client {k}: {len(got)} messages, first wrong at " + str(
            next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(got)))
    st = stats(srv)
    assert st["parked"] == 0 and st["released"] == 0
    wait_for(lambda: subscribers(srv, "feed") == 0, what="every wait released")


# ------------------------------------------------------------- shutdown

def test_graceful_shutdown_answers_parked_waits_and_ends_streams(start):
    srv = start(APP)
    streams = [SSEClient(srv, "/events?ch=s") for _ in range(3)]
    for c in streams:
        assert c.next_comment().strip() == "subscribed"
    polls = [Poller(srv, "s", timeout=30), Poller(srv, "s", since=0, timeout=30)]
    wait_for(lambda: stats(srv)["parked"] == 2, what="2 parked polls")
    assert subscribers(srv, "s") == 5
    t0 = time.time()
    srv.send_signal(signal.SIGTERM)
    for p in polls:
        r = p.response(timeout=10)
        assert r.status_code == 200 and r.text == "[]"
        assert r.headers.get("connection", "").lower() == "close"
    for c in streams:
        assert c.wait_closed(timeout=10) == []
    # it exits by itself (a second signal would force the end), and
    # stop() then only collects the exit code and the rest of the log
    srv.proc.wait(10)
    assert srv.stop() == 0
    assert time.time() - t0 < 10  # well inside the shutdown budget
    assert "still open after" not in srv.log()
