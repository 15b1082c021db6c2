"""WebSocket on the wire (RFC 6455, RFC 7692), through a raw socket: the
opening handshake and its refusals, every protocol violation closing with
its exact code and then the TCP connection, UTF-8 checked as it arrives,
message size limits (compressed ones too), ping/pong, both closing
handshakes, idle peers, handler errors, backpressure, handles used after
their close, and graceful shutdown. The app is tests/apps/ws/app.lua."""
import json
import re
import signal
import struct
import threading
import time
import zlib

import pytest
import requests

from conftest import wait_for
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2, RSV3,
                   WSRaw, close_payload, deflate_message, frame, handshake_bytes, inflate_message)

APP = "ws/app.lua"


def stats(srv):
    return requests.get(srv.url + "/stats", timeout=10).json()


def closes(srv, name):
    return stats(srv)["closes"].get(name) or []


def wait_closes(srv, name, n=1, timeout=10):
    """Waits until the route's close handler ran n times; returns the calls."""
    return wait_for(lambda: len(closes(srv, name)) >= n and closes(srv, name), timeout,
                    what=f"{n} close handler call(s) on {name}")


def still_serving(srv):
    ws = WSRaw(srv, "/echo")
    ws.send_text("still here")
    assert ws.recv_text() == "still here"
    ws.send_close(1000)
    ws.expect_close(1000)
    ws.close()


# ------------------------------------------------------------ handshake

def test_handshake_with_the_rfc_sample_key(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo", key="dGhlIHNhbXBsZSBub25jZQ==")
    r = ws.response
    assert r.status == 101 and r.version == "HTTP/1.1"
    assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert r.header("upgrade") == "websocket"
    assert r.header("connection").lower() == "upgrade"
    # no extension or subprotocol that nobody asked for
    assert r.header("sec-websocket-extensions") is None
    assert r.header("sec-websocket-protocol") is None
    ws.send_text("hello")
    assert ws.recv_message() == (OP_TEXT, b"hello")
    ws.send_close(1000)
    ws.expect_close(1000)


def test_handshake_tokens_are_lists_and_case_insensitive(start):
    srv = start(APP)
    for upgrade, connection in [("WebSocket", "keep-alive, Upgrade"), ("websocket", "upgrade"),
                                ("websocket", "Upgrade,keep-alive"), ("WEBSOCKET", "  UPGRADE  ")]:
        ws = WSRaw(srv, "/echo", upgrade=upgrade, connection=connection)
        ws.send_text("ok")
        assert ws.recv_text() == "ok"
        ws.close()


def test_frames_sent_with_the_handshake_are_read(start):
    """Bytes after the request in the same packet belong to the socket."""
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    ws.key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws.send_raw(handshake_bytes("/echo", key=ws.key) + frame(OP_TEXT, b"early") +
                frame(OP_BINARY, b"\x00bird"))
    head = ws.conn.head()
    assert head[1] == 101
    assert ws.recv_message() == (OP_TEXT, b"early")
    assert ws.recv_message() == (OP_BINARY, b"\x00bird")


BAD_HANDSHAKES = [
    ("missing key", dict(omit=["Sec-WebSocket-Key"])),
    ("empty key", dict(key="")),
    ("short key", dict(key="dGhlIHNhbXBsZQ==")),
    ("key not base64", dict(key="!!!!!!!!!!!!!!!!!!!!!!==")),
    ("key of 17 bytes", dict(key="dGhlIHNhbXBsZSBub25jZTE=")),
    ("missing Upgrade", dict(omit=["Upgrade"])),
    ("Upgrade: h2c", dict(upgrade="h2c")),
    ("missing Connection", dict(omit=["Connection"])),
    ("Connection without upgrade", dict(connection="keep-alive")),
    ("Connection: upgraded", dict(connection="upgraded")),
]


@pytest.mark.parametrize("what,hs", BAD_HANDSHAKES, ids=[b[0] for b in BAD_HANDSHAKES])
def test_bad_handshake_is_400(start, what, hs):
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/echo", **hs)
    assert r.status == 400, r
    assert r.header("sec-websocket-accept") is None
    # nothing of a WebSocket follows
    ws.closed_by_peer(0.3)  # nothing of a WebSocket follows (raises on bytes)


def test_http_1_0_handshake_is_400(start):
    """RFC 6455 4.2.1: the handshake is an HTTP/1.1 (or later) GET."""
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    ws.send_raw(handshake_bytes("/echo").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1))
    r = ws.conn.response()
    assert r.status == 400, r
    assert r.header("sec-websocket-accept") is None


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8"])
def test_other_versions_get_426_naming_13(start, version):
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/echo", version=version)
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"
    assert r.header("sec-websocket-accept") is None


def test_missing_version_is_refused(start):
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/echo", omit=["Sec-WebSocket-Version"])
    assert r.status in (400, 426), r
    assert r.header("sec-websocket-accept") is None


def test_a_handshake_by_post_is_refused(start):
    """The route answers GET only: another method gets the router's 405
    (DESIGN.md: "Path matches but method does not: 405 with Allow")."""
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/echo", method="POST", headers=[("Content-Length", "0")])
    assert r.status == 405, r
    assert "GET" in [m.strip() for m in r.header("allow").split(",")]
    assert r.header("sec-websocket-accept") is None


def test_a_plain_get_on_a_websocket_route_is_400(start):
    srv = start(APP)
    r = requests.get(srv.url + "/echo", timeout=10)
    assert r.status_code == 400
    assert requests.get(srv.url + "/nothing-here", timeout=10).status_code == 404


def test_subprotocol_offers_on_several_header_lines(start):
    srv = start(APP)
    ws = WSRaw(srv, "/proto", headers=[("Sec-WebSocket-Protocol", "other"),
                                       ("Sec-WebSocket-Protocol", "chat.v1")])
    assert ws.response.header("sec-websocket-protocol") == "chat.v1"
    assert ws.recv_text() == "protocol=chat.v1"


@pytest.mark.parametrize("offer,want", [
    ("chat.v1, chat.v2", "chat.v2"),   # the server's order decides
    ("chat.v2, chat.v1", "chat.v2"),
    ("chat.v1", "chat.v1"),
    ("other, chat.v1", "chat.v1"),
    ("other", None),
    (None, None),
])
def test_subprotocol_negotiation(start, offer, want):
    srv = start(APP)
    ws = WSRaw(srv, "/proto", protocols=offer)
    assert ws.response.header("sec-websocket-protocol") == want
    assert ws.recv_text() == "protocol=" + (want or "")


def test_upgrade_hook_refuses_with_its_own_answer(start):
    srv = start(APP)
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/auth")
    assert r.status == 401 and r.body == b"who are you?"
    assert r.header("www-authenticate") == "Bearer"
    assert r.header("sec-websocket-accept") is None
    ws = WSRaw(srv, "/auth?token=good")
    assert ws.recv_text() == "welcome"

    ws = WSRaw(srv, handshake=False)
    r = ws.request("/origin", headers=[("Origin", "http://evil.example")])
    assert r.status == 403 and r.body == b"bad origin"
    ws = WSRaw(srv, "/origin", headers=[("Origin", "http://ok.example")])
    assert ws.recv_text() == "origin ok"

    # refused without an answer: 403
    ws = WSRaw(srv, handshake=False)
    r = ws.request("/refuse")
    assert r.status == 403
    assert r.header("sec-websocket-accept") is None
    ws.closed_by_peer(0.3)  # nothing of a WebSocket follows (raises on bytes)


def test_upgrade_hook_that_waits(start):
    """An upgrade hook may wait (an auth lookup): frames sent meanwhile
    are kept for the socket, and a client leaving meanwhile is no harm."""
    srv = start("""
        local mw = require "moonwire"
        local app = mw.app()
        app:ws("/slowauth", {
          upgrade = function(req, res) mw.sleep(0.2) end,
          open = function(ws) ws:send("open") end,
          message = function(ws, data, kind) ws:send(data, kind) end,
        })
        return app
    """)
    ws = WSRaw(srv, handshake=False)
    ws.key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws.send_raw(handshake_bytes("/slowauth", key=ws.key) + frame(OP_TEXT, b"eager"))
    assert ws.conn.head()[1] == 101
    assert ws.recv_text() == "open"
    assert ws.recv_text() == "eager"
    # gone before the hook returns
    gone = WSRaw(srv, handshake=False)
    gone.send_raw(handshake_bytes("/slowauth"))
    gone.close()
    ws.send_text("still")
    assert ws.recv_text() == "still"
    time.sleep(0.3)  # the hook of the one that left returns now
    ws.send_text("after")
    assert ws.recv_text() == "after"


def test_ws_req_has_params_query_and_headers(start):
    srv = start(APP)
    ws = WSRaw(srv, "/room/42/a/b%20c?q=x%20y&q=z", headers=[("X-Test", "hello")])
    got = json.loads(ws.recv_text())
    assert got == {"id": "42", "rest": "a/b c", "q": "x y", "x": "hello", "same": True,
                   "path": "/room/42/a/b c", "method": "GET"}


def test_ws_req_lives_as_long_as_the_socket(start):
    """ws.req is read from a packed copy of the handshake after the exchange
    ended: every field comes back the same after full collections, long and
    uncommon headers included, with what the upgrade hook stored; once the
    socket is gone the handle still answers for its protocol and req."""
    srv = start(APP)
    long_value = "v" * 300  # a two-byte length in the packed form
    headers = [("Cookie", "sid=abc; other=1"), ("X-Long", long_value), ("X-Odd-Name", "odd"),
               ("X-Multi", "one"), ("X-Multi", "two")]
    ws = WSRaw(srv, "/kept/al%20ice?q=hello%20there&tag=t1", headers=headers, protocols="kept.v1")
    for _ in range(3):
        ws.send_text("again")
        got = json.loads(ws.recv_text())
        assert got == {"method": "GET", "path": "/kept/al ice", "who": "al ice",
                       "target": "/kept/al%20ice?q=hello%20there&tag=t1",
                       "q": "hello there", "tag": "t1", "sid": "abc", "long": 300, "odd": "odd",
                       "multi": "one, two", "via_header": "odd", "addr": "127.0.0.1",
                       "version": "1.1", "id": got["id"], "protocol": "kept.v1", "same": True,
                       "text": True}
        assert re.fullmatch(r".+-\d+", got["id"])
    ws.send_close(1000)
    ws.expect_close(1000)
    after = requests.get(srv.url + "/kept/after", timeout=10).json()
    assert after == {"protocol": "kept.v1", "tag": "t1", "path": "/kept/al ice", "sent": False,
                     "open": "moonwire.ws (closed)"}

    # without a tag nothing anchors the req: it is made again from the
    # packed head, route parameters included; after the socket is gone it
    # reads as finished, and ws.req is still a req (not nil)
    ws = WSRaw(srv, "/kept/bob", protocols="kept.v1")
    for _ in range(2):
        ws.send_text("x")
        got = json.loads(ws.recv_text())
        assert got["tag"] is False and got["who"] == "bob" and got["path"] == "/kept/bob"
    ws.send_close(1000)
    ws.expect_close(1000)
    after = requests.get(srv.url + "/kept/after", timeout=10).json()
    assert after["tag"] is False and after["protocol"] == "kept.v1"


# --------------------------------------------------------- valid traffic

def test_every_length_form_echoes(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data), n
    # lengths in longer forms than needed are accepted too
    ws.send_frame(OP_TEXT, b"abc", length_form=16)
    ws.send_frame(OP_TEXT, b"abcd", length_form=64)
    assert ws.recv_message() == (OP_TEXT, b"abc")
    assert ws.recv_message() == (OP_TEXT, b"abcd")


def test_fragments_with_control_frames_interleaved(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_raw(frame(OP_TEXT, "caf\u00e9 ", fin=False) + frame(OP_PING, b"one") +
                frame(OP_CONT, b"", fin=False) + frame(OP_PONG, b"unasked") +
                frame(OP_CONT, "\u2713".encode()[:1], fin=False) + frame(OP_PING, b"two") +
                frame(OP_CONT, "\u2713".encode()[1:], fin=True))
    # the pongs come as the pings are read, before the message is whole
    f1, f2 = ws.recv_frame(), ws.recv_frame()
    assert (f1.opcode, f1.payload, f2.opcode, f2.payload) == (OP_PONG, b"one", OP_PONG, b"two")
    assert ws.recv_message() == (OP_TEXT, "caf\u00e9 \u2713".encode())


def test_byte_by_byte_delivery(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    data = (frame(OP_BINARY, b"\x01" * 130, fin=False) + frame(OP_PING, b"p") +
            frame(OP_CONT, b"\x02" * 3) + frame(OP_TEXT, "\u20ac!".encode()))
    ws.conn.send_slowly(data, piece=1, delay=0.001)
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"p")
    assert ws.recv_message() == (OP_BINARY, b"\x01" * 130 + b"\x02" * 3)
    assert ws.recv_message() == (OP_TEXT, "\u20ac!".encode())


def test_compressed_messages_on_the_wire(start):
    """permessage-deflate byte by byte: RSV1 on a message's first frame
    only, fragments with control frames between them, small answers left
    uncompressed, and a 10-bit window honoured when the client asks."""
    srv = start(APP)
    ws = WSRaw(srv, "/echo-z", extensions="permessage-deflate; server_max_window_bits=10")
    assert ws.response.header("sec-websocket-extensions") == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10")
    text = "".join(f"{i:05d} the quick brown fox jumps over the lazy dog\n" for i in range(2000)).encode()
    z = deflate_message(text)
    third = len(z) // 3
    ws.send_raw(frame(OP_TEXT, z[:third], fin=False, rsv=RSV1) + frame(OP_PING, b"mid") +
                frame(OP_CONT, z[third:2 * third], fin=False) + frame(OP_CONT, z[2 * third:]))
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"mid")
    f = ws.recv_frame()
    assert f.opcode == OP_TEXT and f.fin and f.rsv == RSV1 and len(f.payload) < len(text) // 4
    # the server kept to the window the client asked for
    assert zlib.decompressobj(-10).decompress(f.payload + b"\x00\x00\xff\xff") == text
    # a small answer goes uncompressed, and an uncompressed message is fine
    ws.send_text("tiny")
    f = ws.recv_frame()
    assert (f.opcode, f.rsv, f.payload) == (OP_TEXT, 0, b"tiny")
    ws.send_binary(b"\x00" * 64)
    f = ws.recv_frame()
    assert f.rsv == RSV1 and inflate_message(f.payload) == b"\x00" * 64
    # an empty compressed message (one empty block)
    ws.send_raw(frame(OP_BINARY, b"\x00", rsv=RSV1))
    assert ws.recv_message() == (OP_BINARY, b"")


def test_a_flood_of_messages_to_a_slow_handler_pauses_reading(start):
    """More messages than the app's inbox holds: reading pauses and
    resumes, and every message is answered, in order."""
    srv = start("""
        local mw = require "moonwire"
        local app = mw.app()
        app:ws("/slow", { message = function(ws, data)
          if tonumber(data) % 100 == 0 then mw.sleep(0.01) end
          ws:send(data)
        end })
        return app
    """)
    ws = WSRaw(srv, "/slow")
    n = 3000
    ws.send_raw(b"".join(frame(OP_TEXT, str(i).encode()) for i in range(n)))
    for i in range(n):
        assert ws.recv_message(timeout=30) == (OP_TEXT, str(i).encode())
    ws.send_close(1000)
    ws.expect_close(1000)


def test_ping_is_answered_with_the_same_payload(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    for payload in (b"", b"x", bytes(range(125))):
        ws.send_frame(OP_PING, payload)
        f = ws.recv_frame()
        assert (f.opcode, f.payload, f.fin) == (OP_PONG, payload, 1)


def test_unsolicited_pong_is_ignored(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_frame(OP_PONG, b"who asked")
    ws.send_frame(OP_PONG, b"")
    ws.send_text("after")
    # the next frame is the echo: nothing answered the pongs
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_TEXT, b"after")


def test_app_ping(start):
    srv = start(APP)
    ws = WSRaw(srv, "/ctl")
    ws.send_text("ping hello")
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PING, b"hello")
    assert ws.recv_text() == "ping=true"


# ----------------------------------------------------------- violations

def v(name, frames, code=1002, path="/echo", offer=None):
    return pytest.param(path, frames, code, offer, id=name)


def top_bit_length():
    return struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63) + b"\x00\x00\x00\x00"


VIOLATIONS = [
    v("unmasked", frame(OP_TEXT, b"hi", mask=False)),
    v("unmasked close", frame(OP_CLOSE, close_payload(1000), mask=False)),
    v("RSV1 without deflate", frame(OP_TEXT, b"hi", rsv=RSV1)),
    v("RSV1 when deflate was not negotiated", frame(OP_TEXT, deflate_message(b"hi"), rsv=RSV1), path="/echo-z"),
    v("RSV2", frame(OP_TEXT, b"hi", rsv=RSV2)),
    v("RSV3", frame(OP_BINARY, b"hi", rsv=RSV3)),
    v("RSV2 with deflate", frame(OP_TEXT, b"hi", rsv=RSV2), path="/echo-z", offer="permessage-deflate"),
    v("RSV1 on a continuation", frame(OP_TEXT, deflate_message(b"hi"), rsv=RSV1, fin=False) +
      frame(OP_CONT, b"", rsv=RSV1), path="/echo-z", offer="permessage-deflate"),
    v("RSV1 on a ping", frame(OP_PING, b"", rsv=RSV1), path="/echo-z", offer="permessage-deflate"),
    *[v(f"reserved opcode {op:#x}", frame(op, b"x")) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    v("ping over 125 bytes", frame(OP_PING, b"p" * 126)),
    v("pong over 125 bytes", frame(OP_PONG, b"p" * 200)),
    v("close over 125 bytes", frame(OP_CLOSE, close_payload(1000, b"r" * 124))),
    v("fragmented ping", frame(OP_PING, b"p", fin=False) + frame(OP_CONT, b"q")),
    v("fragmented close", frame(OP_CLOSE, close_payload(1000), fin=False)),
    v("continuation with nothing open", frame(OP_CONT, b"x")),
    v("continuation after the message ended", frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b") +
      frame(OP_CONT, b"c")),
    v("text inside a fragmented message", frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b")),
    v("binary inside a fragmented message", frame(OP_BINARY, b"a", fin=False) + frame(OP_BINARY, b"b", fin=False)),
    v("1-byte close payload", frame(OP_CLOSE, b"\x03")),
    v("64-bit length with the top bit set", top_bit_length()),
    *[v(f"close code {c}", frame(OP_CLOSE, close_payload(c))) for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)],
    v("close reason with invalid UTF-8", frame(OP_CLOSE, close_payload(1000, b"bad \xff")), 1007),
    v("close reason with a truncated sequence", frame(OP_CLOSE, close_payload(1000, b"\xe2\x82")), 1007),
    v("invalid UTF-8 text", frame(OP_TEXT, b"abc \xc3\x28"), 1007),
    v("overlong encoding", frame(OP_TEXT, b"\xc0\xaf"), 1007),
    v("surrogate", frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    v("above U+10FFFF", frame(OP_TEXT, b"\xf4\x90\x80\x80"), 1007),
    v("text ending mid-sequence", frame(OP_TEXT, b"ok \xe2\x82"), 1007),
    v("invalid sequence split across fragments", frame(OP_TEXT, b"\xe2\x82", fin=False) +
      frame(OP_CONT, b"\x28"), 1007),
    v("split sequence then a bad continuation", frame(OP_TEXT, b"\xf0", fin=False) +
      frame(OP_CONT, b"\x9f", fin=False) + frame(OP_CONT, b"\x98\x28"), 1007),
    v("invalid compressed text", frame(OP_TEXT, deflate_message(b"abc \xff"), rsv=RSV1), 1007,
      path="/echo-z", offer="permessage-deflate"),
    v("corrupt compressed data", frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1), 1007,
      path="/echo-z", offer="permessage-deflate"),
    v("message over max_message", frame(OP_BINARY, b"x" * 1001), 1009, path="/small"),
    v("fragments over max_message", frame(OP_TEXT, b"x" * 600, fin=False) + frame(OP_CONT, b"y" * 401),
      1009, path="/small"),
]


@pytest.mark.parametrize("path,frames,code,offer", VIOLATIONS)
def test_violation_closes_with_its_code(start, path, frames, code, offer):
    srv = start(APP)
    ws = WSRaw(srv, path, extensions=offer)
    ws.send_raw(frames)
    # whatever follows a violation is never read
    try:
        ws.send_raw(frame(OP_TEXT, b"after"))
    except OSError:
        pass
    ws.expect_close(code)


def test_violation_reaches_the_close_handler(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_text("fine")
    assert ws.recv_text() == "fine"
    ws.send_frame(OP_TEXT, b"x", mask=False)
    ws.expect_close(1002)
    assert wait_closes(srv, "echo") == [{"code": 1002, "reason": ""}]
    srv.wait_log(r"WebSocket closed with 1002 \(protocol violation\)")
    still_serving(srv)


def test_utf8_is_checked_as_it_arrives(start):
    """A first fragment with invalid bytes and no FIN is enough: the close
    comes without the rest of the message."""
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_frame(OP_TEXT, b"fine so far \xff", fin=False)
    ws.expect_close(1007)
    # also an invalid byte in the middle of a large frame, before its end:
    # the frame header promises 1 MB, only 1 KB of it is sent
    ws = WSRaw(srv, "/echo")
    bad = b"a" * 1000 + b"\xc0"
    ws.send_raw(frame(OP_TEXT, bad, length=1 << 20))
    ws.expect_close(1007)


def test_valid_sequences_split_across_fragments(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    text = "\u20ac \U0001F600 \u00e9"
    raw = text.encode()
    # cut at every byte: each cut lands inside some sequence
    for cut in range(1, len(raw)):
        ws.send_raw(frame(OP_TEXT, raw[:cut], fin=False) + frame(OP_CONT, raw[cut:]))
        assert ws.recv_message() == (OP_TEXT, raw), cut
    # one byte per fragment
    ws.send_raw(b"".join(frame(OP_TEXT if i == 0 else OP_CONT, raw[i:i + 1], fin=i == len(raw) - 1)
                         for i in range(len(raw))))
    assert ws.recv_message() == (OP_TEXT, raw)


def test_max_message_is_announced_by_the_header(start):
    """A frame whose header alone crosses the limit is refused at once."""
    srv = start(APP)
    ws = WSRaw(srv, "/small")
    ws.send_binary(b"x" * 1000)  # exactly the limit passes
    assert ws.recv_message() == (OP_BINARY, b"x" * 1000)
    ws.send_raw(frame(OP_BINARY, b"", length=1 << 40))  # no payload follows
    ws.expect_close(1009)
    assert wait_closes(srv, "small")[0]["code"] == 1009


def test_max_message_counts_inflated_bytes(start):
    srv = start(APP)
    ws = WSRaw(srv, "/small-z", extensions="permessage-deflate")
    assert ws.deflate
    ws.send_compressed(OP_TEXT, b"a" * 1000)   # 1000 bytes inflated: fits
    assert ws.recv_message() == (OP_TEXT, b"a" * 1000)
    ws.send_compressed(OP_TEXT, b"a" * 1001)   # a few bytes on the wire, too big inflated
    ws.expect_close(1009)

    # max_message counts inflated bytes only: 1000 random bytes take a few
    # more compressed (stored blocks), and still fit
    noise = bytes(range(256)) * 3 + bytes(232)
    c = zlib.compressobj(0, zlib.DEFLATED, -15)
    stored = (c.compress(noise) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(stored) > 1000
    ws = WSRaw(srv, "/small-z", extensions="permessage-deflate")
    ws.send_raw(frame(OP_BINARY, stored, rsv=RSV1))
    assert ws.recv_message() == (OP_BINARY, noise)
    ws.close()

    # a zip bomb: 1 MB of zeros in about a kilobyte
    ws = WSRaw(srv, "/small-z", extensions="permessage-deflate")
    bomb = deflate_message(b"\0" * (1 << 20))
    assert len(bomb) < 2000
    ws.send_raw(frame(OP_BINARY, bomb, rsv=RSV1))
    ws.expect_close(1009)
    # on a route with the default limit the same message is fine
    ws = WSRaw(srv, "/echo-z", extensions="permessage-deflate")
    ws.send_raw(frame(OP_BINARY, bomb, rsv=RSV1))
    assert ws.recv_message(timeout=20) == (OP_BINARY, b"\0" * (1 << 20))
    still_serving(srv)


# ------------------------------------------------------ closing handshake

def test_client_close_is_echoed_then_tcp_closes(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_close(4321, "client is done")
    ws.expect_close(4321)
    assert wait_closes(srv, "echo") == [{"code": 4321, "reason": "client is done"}]

    # a close with no code is answered with an empty one; the app sees 1005
    ws = WSRaw(srv, "/echo")
    ws.send_close()
    f = ws.recv_close()
    assert f.payload == b""
    assert ws.closed_by_peer()
    assert wait_closes(srv, "echo", 2)[1] == {"code": 1005, "reason": ""}

    # frames after a close are not answered
    ws = WSRaw(srv, "/echo")
    ws.send_raw(frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, b"late") + frame(OP_PING, b"late"))
    ws.expect_close(1000)
    assert len(wait_closes(srv, "echo", 3)) == 3


@pytest.mark.parametrize("command,code,reason", [
    ("close 4001 done here", 4001, b"done here"),
    ("close 1000", 1000, b""),
    ("close", 1000, b""),
    ("close 1008 policy", 1008, b"policy"),
])
def test_app_close_sends_its_code_and_the_handler_runs_once(start, command, code, reason):
    srv = start(APP)
    ws = WSRaw(srv, "/ctl")
    ws.send_text(command)
    f = ws.recv_close()
    assert (f.close_code, f.close_reason) == (code, reason)
    # messages sent while the server waits for our close are not answered
    ws.send_text("anyone?")
    ws.send_close(code)
    assert ws.closed_by_peer()
    calls = wait_closes(srv, "ctl")
    assert [c["code"] for c in calls] == [code]
    time.sleep(0.1)  # a second call would come right after the first
    assert len(closes(srv, "ctl")) == 1


def test_app_close_rejects_codes_a_peer_may_not_send(start):
    srv = start(APP)
    ws = WSRaw(srv, "/ctl")
    ws.send_text("bad close code")
    got = ws.recv_text()
    assert got.startswith("false ") and "close code" in got
    ws.send_text("still open")
    assert ws.recv_text() == "still open"


def test_peer_vanishing_is_1006(start):
    srv = start(APP)
    ws = WSRaw(srv, "/echo")
    ws.send_text("x")
    assert ws.recv_text() == "x"
    ws.close()
    assert wait_closes(srv, "echo") == [{"code": 1006, "reason": ""}]
    # and mid-message
    ws = WSRaw(srv, "/echo")
    ws.send_raw(frame(OP_BINARY, b"abc", fin=False) + frame(OP_CONT, b"x" * 100)[:20])
    ws.close()
    assert [c["code"] for c in wait_closes(srv, "echo", 2)] == [1006, 1006]


# ------------------------------------------------------------ liveness

def test_idle_peer_is_pinged_and_dropped_when_silent(start):
    srv = start(APP)
    ws = WSRaw(srv, "/hb")
    t0 = time.time()
    # answering every ping keeps it open well past several intervals
    pings = 0
    while time.time() - t0 < 1.5:
        f = ws.recv_frame(timeout=2)
        assert f.opcode == OP_PING, f
        pings += 1
        ws.send_frame(OP_PONG, f.payload)
    assert pings >= 2
    assert closes(srv, "hb") == []
    # any frame counts as a sign of life, not only pongs
    f = ws.recv_frame(timeout=2)
    assert f.opcode == OP_PING
    ws.send_frame(OP_PING, b"me too")
    assert ws.recv_frame().opcode == OP_PONG
    # now silence: one more ping, then the connection is dropped
    t1 = time.time()
    f = ws.recv_frame(timeout=2)
    assert f.opcode == OP_PING
    assert ws.closed_by_peer(timeout=3)
    assert time.time() - t1 < 2.5
    assert wait_closes(srv, "hb") == [{"code": 1006, "reason": ""}]
    srv.wait_log("stopped answering pings")


def test_a_peer_sending_a_long_frame_slowly_is_alive(start):
    """Bytes arriving count as life even before a frame ends: a large
    frame taking several heartbeat intervals to arrive is not cut off."""
    srv = start(APP)
    ws = WSRaw(srv, "/hb")
    data = bytes(range(30))
    raw = frame(OP_BINARY, data)
    ws.send_raw(raw[:6])
    for i in range(6, len(raw)):  # 1.5 s in all, five heartbeat intervals
        time.sleep(0.05)
        ws.send_raw(raw[i:i + 1])
    op, got = ws.recv_message()  # the pings sent meanwhile are skipped
    assert (op, got) == (OP_BINARY, data)
    assert closes(srv, "hb") == []


def test_heartbeat_zero_never_pings(start):
    srv = start(APP)
    ws = WSRaw(srv, "/nohb")
    assert ws.quiet_for(0.6)  # two heartbeats' worth at the /hb route's 0.3 s
    ws.send_close(1000)
    ws.expect_close(1000)


# ------------------------------------------------------- handler errors

@pytest.mark.parametrize("path,trigger,name,message", [
    ("/fail/open", None, "fail-open", "boom in open"),
    ("/fail/message", "boom", "fail-message", "boom in message"),
])
def test_handler_error_closes_with_1011_and_is_logged(start, path, trigger, name, message):
    srv = start(APP)
    ws = WSRaw(srv, path)
    if trigger:
        ws.send_text("fine")
        assert ws.recv_text() == "fine"
        ws.send_text(trigger)
    ws.expect_close(1011)
    # the message, then its traceback down to the handler's line
    srv.wait_log(r"WebSocket \w+ handler failed: .*" + re.escape(message) +
                 r".*\n(.*\n)*.*stack traceback:(.*\n)*.*app\.lua:\d+")
    assert wait_closes(srv, name) == [{"code": 1011, "reason": ""}]
    still_serving(srv)


def test_error_in_the_close_handler_is_logged(start):
    srv = start(APP)
    for _ in range(2):
        ws = WSRaw(srv, "/fail/close")
        ws.send_close(1000)
        ws.expect_close(1000)
    srv.wait_log(r"close handler failed: .*boom in close.*\n(.*\n)*.*stack traceback:(.*\n)*"
                 r".*boom in close.*\n(.*\n)*.*stack traceback:")
    assert [c["code"] for c in closes(srv, "fail-close")] == [1000, 1000]
    still_serving(srv)


# --------------------------------------------------------- backpressure

def test_send_refuses_over_the_limit_and_drain_follows(start):
    srv = start(APP, env={"WS_MAX_QUEUED_BYTES": str(64 * 1024)})
    ws = WSRaw(srv, "/fill")
    ws.send_text("fill 1000")
    filled = wait_for(lambda: stats(srv).get("filled"), what="the fill loop")
    n = filled["count"]
    # each frame is 1004 bytes: send refuses the one that would cross 64 KiB
    assert n == 65
    assert n * 1004 == filled["buffered"]
    assert filled["refused_again"] is False
    for _ in range(n):
        assert ws.recv_message() == (OP_TEXT, b"x" * 1000)
    assert ws.recv_text() == "drained"
    s = stats(srv)
    assert len(s["drains"]) == 1 and s["drains"][0] <= 32 * 1024
    ws.send_close(1000)
    ws.expect_close(1000)


def test_pongs_stop_queueing_for_a_client_that_reads_nothing(start):
    """13 MB of pings from a client that never reads: the server answers
    until the client is max_queued_bytes behind, then only keeps reading
    (the queue does not grow with the pings); once the client reads, the
    latest ping gets its pong. The server stays usable meanwhile."""
    srv = start(APP, env={"WS_MAX_QUEUED_BYTES": "4096"})
    ws = WSRaw(srv, "/ping-flood", rcvbuf=4096)
    batch = b"".join(frame(OP_PING, b"p" * 125) for _ in range(1000))
    for _ in range(100):
        ws.send_raw(batch)
    ws.send_raw(frame(OP_PING, b"last"))
    ws.send_text("how far behind?")
    got = wait_for(lambda: stats(srv).get("ping_flood"), what="the report")
    assert got <= 4096 + 127
    other = WSRaw(srv, "/echo")
    other.send_text("still here")
    assert other.recv_text() == "still here"
    # reading now: the pongs queued before the limit, then the one owed
    pongs = []
    while True:
        try:
            f = ws.recv_frame(timeout=1)
        except TimeoutError:
            break
        assert f.opcode == OP_PONG
        pongs.append(f.payload)
    assert pongs and pongs[-1] == b"last"
    assert len(pongs) < 50000  # what the socket buffers held, not one per ping


def test_a_message_larger_than_the_queue_limit_reaches_a_reader(start):
    """The limit is how far behind a client may fall: an empty queue takes
    any message, sent or published."""
    srv = start(APP, env={"WS_MAX_QUEUED_BYTES": "4096"})
    ws = WSRaw(srv, "/echo")
    big = b"e" * 20000
    ws.send_binary(big)
    assert ws.recv_message() == (OP_BINARY, big)
    hub = WSRaw(srv, "/hub?ch=big")
    assert hub.recv_text() == "subscribed"
    requests.post(srv.url + "/publish/big", data=big, timeout=10)
    requests.post(srv.url + "/publish/big", data=b"small", timeout=10)
    assert hub.recv_message() == (OP_TEXT, big)
    assert hub.recv_message() == (OP_TEXT, b"small")
    # and a replay of several such messages goes out as the client reads
    again = WSRaw(srv, "/hub?ch=big&since=0")
    got = [again.recv_message()[1] for _ in range(3)]
    got.remove(b"subscribed")
    assert got == [big, b"small"]
    assert "fell more than" not in srv.log()


def test_slow_subscriber_is_closed_with_1013_and_others_keep_receiving(start):
    srv = start(APP, env={"WS_MAX_QUEUED_BYTES": str(64 * 1024)})
    slow = WSRaw(srv, "/hub?ch=slow", rcvbuf=4096)
    fast = WSRaw(srv, "/hub?ch=slow")
    assert slow.recv_text() == "subscribed" and fast.recv_text() == "subscribed"
    n, size = 400, 16000
    done = {}
    t = threading.Thread(target=lambda: done.update(requests.post(
        srv.url + f"/burst/slow?n={n}&size={size}&batch=2&pause=0.002", timeout=60).json()))
    t.start()
    for _ in range(n):
        assert fast.recv_message(timeout=30) == (OP_TEXT, b"b" * size)
    t.join(60)
    assert done == {"last": n}
    srv.wait_log(r"\[warn\] conn \d+: WebSocket client fell more than 65536 bytes behind; closing it with 1013")
    assert len(re.findall("fell more than", srv.log())) == 1
    # the slow one reads what reached it, then the close
    got = 0
    while True:
        f = slow.recv_frame(timeout=30)
        if f.opcode == OP_CLOSE:
            break
        assert f.opcode == OP_TEXT and f.payload == b"b" * size
        got += 1
    assert f.close_code == 1013
    assert 0 < got < n
    assert slow.closed_by_peer()
    assert wait_closes(srv, "hub") == [{"code": 1013, "reason": ""}]
    # the fast one is still subscribed
    requests.post(srv.url + "/publish/slow", data="live", timeout=10)
    assert fast.recv_text() == "live"


# ----------------------------------------------------- handle lifetimes

def test_handle_used_after_close_is_harmless(start):
    srv = start(APP)
    ws = WSRaw(srv, "/after")
    ws.send_close(1000)
    ws.expect_close(1000)
    r = wait_for(lambda: stats(srv)["after_close"], what="the late calls")
    assert r == [{"send": False, "ping": False, "buffered": 0, "close": True, "subscribe": False,
                  "unsubscribe": False, "publish": "number", "tostring": "moonwire.ws (closed)",
                  "data": "table"}]
    still_serving(srv)


def test_buffered_is_zero_when_idle(start):
    srv = start("""
        local mw = require "moonwire"
        local app = mw.app()
        app:ws("/b", { message = function(ws) ws:send("buffered=" .. ws:buffered()) end })
        return app
    """)
    ws = WSRaw(srv, "/b")
    ws.send_text("?")
    assert ws.recv_text() == "buffered=0"


# --------------------------------------------------------------- shutdown

SHUTDOWN_APP = """
local mw = require "moonwire"
local app = mw.app()
app:ws("/echo", {
  message = function(ws, data, kind) ws:send(data, kind) end,
  close = function(ws, code, reason) mw.log.info("close handler: %d %s", code, reason) end,
})
return app
"""


def test_graceful_shutdown_closes_sockets_with_1001(start):
    srv = start(SHUTDOWN_APP)
    clients = [WSRaw(srv, "/echo") for _ in range(3)]
    for i, ws in enumerate(clients):
        ws.send_text(f"hi {i}")
        assert ws.recv_text() == f"hi {i}"
    # one is in the middle of a message
    clients[2].send_frame(OP_TEXT, b"half", fin=False)
    srv.send_signal(signal.SIGTERM)
    for ws in clients:
        f = ws.recv_close()
        assert f.close_code == 1001
        ws.send_close(1001)
        assert ws.closed_by_peer()
        ws.close()
    assert srv.proc.wait(10) == 0
    srv._reader.join(5)
    assert len(re.findall(r"close handler: 1001", srv.log())) == 3
    srv.check_clean()


def test_shutdown_does_not_wait_forever_for_a_silent_peer(start):
    srv = start(SHUTDOWN_APP)
    ws = WSRaw(srv, "/echo")
    ws.send_text("x")
    assert ws.recv_text() == "x"
    t0 = time.time()
    srv.send_signal(signal.SIGTERM)
    assert ws.recv_close().close_code == 1001
    # no answer from us: the server gives up on its own
    assert srv.proc.wait(15) == 0
    assert time.time() - t0 < 12
    srv._reader.join(5)
    assert "close handler: 1001" in srv.log()


def test_replay_larger_than_the_queue_limit_goes_out_as_the_client_reads(start):
    """A `since` replay is not a slow client: what does not fit in the
    queue follows as it drains, new messages wait behind it in order, and
    the client is not dropped."""
    srv = start(APP, env={"WS_MAX_QUEUED_BYTES": str(64 * 1024)})
    size = 10000
    for i in range(1, 21):
        requests.post(srv.url + "/publish/hist", data=f"{i}:".ljust(size, "h"), timeout=10)
    ws = WSRaw(srv, "/hub?ch=hist&since=0&env=1")
    # more arrive while the replay is still queued
    for i in range(21, 26):
        requests.post(srv.url + "/publish/hist", data=f"{i}:".ljust(size, "h"), timeout=10)
    texts = [ws.recv_text() for _ in range(26)]
    # the open handler's own send goes out beside the replay, not after it
    texts.remove("subscribed")
    got = [json.loads(t) for t in texts]
    assert [m["id"] for m in got] == list(range(1, 26))
    assert all(m["data"].startswith(f"{m['id']}:") and len(m["data"]) == size for m in got)
    requests.post(srv.url + "/publish/hist", data="live", timeout=10)
    assert json.loads(ws.recv_text()) == {"channel": "hist", "id": 26, "data": "live"}
    assert "fell more than" not in srv.log()
    # the app's drain handler is not called for the hub's own catching up
    assert not stats(srv)["drains"]
