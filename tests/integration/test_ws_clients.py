"""WebSocket with real clients: Python's websockets (with and without
permessage-deflate) and Node's ws package, echo and hub fan-out, one
publish reaching WebSocket, SSE and long-poll subscribers with the same
ids, and 500 concurrent clients. The app is tests/apps/ws/app.lua."""
import asyncio
import base64
import json
import os
import subprocess
import threading

import pytest
import requests
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import ROOT

APP = "ws/app.lua"
NODE_DIR = ROOT / "tests" / "node"
NODE = "/usr/bin/node"
DEFLATE_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def ws_url(srv, path):
    return f"ws://{srv.host}:{srv.port}{path}"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(srv, path, compression=None, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    return websockets.connect(ws_url(srv, path), compression=compression, **kw)


def publish(srv, ch, data, kind=None):
    params = {"kind": kind} if kind else None
    if isinstance(data, str):
        data = data.encode()
    return requests.post(srv.url + f"/publish/{ch}", data=data, params=params, timeout=10).json()["id"]


# ----------------------------------------------------------------- echo

MESSAGES = [
    "hello",
    "caf\u00e9 \u2713 \U0001F600",
    "",
    b"\x00\x01\x02\xff",
    b"",
    "x" * 200,
    "moonwire says hello; " * 50000,          # ~1 MB text, compresses well
    os.urandom(1 << 20),                      # 1 MiB binary, does not
]


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_python_websockets_echo(start, compression):
    srv = start(APP)
    path = "/echo-z" if compression else "/echo"

    async def main():
        async with connect(srv, path, compression) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            if compression:
                assert ext == DEFLATE_RESPONSE
                assert [type(e).__name__ for e in ws.extensions] == ["PerMessageDeflate"]
            else:
                assert ext is None and ws.extensions == []
            for m in MESSAGES:
                await ws.send(m)
                assert await ws.recv() == m
            # fragmented sends: an iterable is one message in several frames
            await ws.send(["frag", "mented ", "t\u00e9xt"])
            assert await ws.recv() == "fragmented t\u00e9xt"
            await ws.send([b"\x01" * 70000, b"\x02" * 10, b"\x03"])
            assert await ws.recv() == b"\x01" * 70000 + b"\x02" * 10 + b"\x03"
            # pings from the client are answered
            await asyncio.wait_for(await ws.ping(b"are you there"), 5)
            await ws.close(1000, "bye")
            assert ws.close_code == 1000
    run(main())


@pytest.mark.parametrize("offer", [
    dict(server_max_window_bits=10),
    dict(server_max_window_bits=9, server_no_context_takeover=True),
    dict(client_no_context_takeover=True, client_max_window_bits=12),
])
def test_python_websockets_deflate_parameters(start, offer):
    """Each parameter a client may offer, through a real client that checks
    the response against its offer."""
    srv = start(APP)
    factory = ClientPerMessageDeflateFactory(**offer)

    async def main():
        async with connect(srv, "/echo-z", extensions=[factory]) as ws:
            ext = ws.response_headers["Sec-WebSocket-Extensions"]
            want = DEFLATE_RESPONSE
            if "server_max_window_bits" in offer:
                want += f"; server_max_window_bits={offer['server_max_window_bits']}"
            assert ext == want
            text = "".join(f"line {i} of a long text with repeats far apart\n" for i in range(5000))
            for m in (text, text.encode(), "short"):
                await ws.send(m)
                assert await ws.recv() == m
    run(main())


def test_compression_is_off_unless_the_route_asks(start):
    srv = start(APP)

    async def main():
        async with connect(srv, "/echo", "deflate") as ws:
            assert ws.response_headers.get("Sec-WebSocket-Extensions") is None
            await ws.send("z" * 1000)
            assert await ws.recv() == "z" * 1000
    run(main())


def test_subprotocol_with_python_websockets(start):
    srv = start(APP)

    async def main():
        async with connect(srv, "/proto", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "protocol=chat.v2"
    run(main())


def test_server_close_reaches_the_client(start):
    srv = start(APP)

    async def main():
        async with connect(srv, "/ctl") as ws:
            await ws.send("close 4000 see you")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (4000, "see you")
        # a message over the limit closes with 1009, which the client sees
        async with connect(srv, "/small") as ws:
            await ws.send("y" * 2000)
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009
    run(main())


# ------------------------------------------------------------------ hub

def test_fan_out_reaches_everyone_but_the_sender(start):
    srv = start(APP)

    async def main():
        clients = []
        for _ in range(5):
            ws = await connect(srv, "/hub?ch=room")
            assert await ws.recv() == "subscribed"
            clients.append(ws)
        sender, others = clients[0], clients[1:]
        await sender.send("hello all")
        assert await sender.recv() == "id=1"
        for ws in others:
            assert await ws.recv() == "hello all"
        await others[0].send(b"\x00bin")
        assert await others[0].recv() == "id=2"
        for ws in [sender] + others[1:]:
            assert await ws.recv() == b"\x00bin"
        # the sender got nothing of its own
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sender.recv(), 0.2)
        # an unsubscribed client gets nothing more
        await others[1].send("unsubscribe")
        assert await others[1].recv() == "unsubscribed=true"
        assert publish(srv, "room", "after") == 3
        for ws in [sender, others[0], others[2], others[3]]:
            assert await ws.recv() == "after"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(others[1].recv(), 0.2)
        for ws in clients:
            await ws.close()
    run(main())


def test_fan_out_with_compression(start):
    """One publish is compressed once and shared by every deflate client;
    plain clients on the same channel get it uncompressed."""
    srv = start(APP)

    async def main():
        zs = [await connect(srv, "/hub-z?ch=mix", "deflate") for _ in range(3)]
        plain = await connect(srv, "/hub?ch=mix")
        for ws in zs + [plain]:
            assert await ws.recv() == "subscribed"
        big = "repeat after me " * 1000
        publish(srv, "mix", big)
        publish(srv, "mix", "tiny")
        publish(srv, "mix", os.urandom(100).hex())
        for ws in zs + [plain]:
            assert await ws.recv() == big
            assert await ws.recv() == "tiny"
            assert len(await ws.recv()) == 200
        for ws in zs + [plain]:
            await ws.close()
    run(main())


def test_subscribe_since_replays_history_in_envelopes(start):
    srv = start(APP)
    for i in range(1, 6):
        assert publish(srv, "news", f"n{i}") == i
    assert publish(srv, "news", b"\x00\xffraw", kind="binary") == 6

    async def main():
        # since=3: 4, 5 and 6 first, then live ones
        async with connect(srv, "/hub?ch=news&since=3&env=1") as ws:
            got = [json.loads(await ws.recv()) for _ in range(3)]
            assert got == [
                {"channel": "news", "id": 4, "data": "n4"},
                {"channel": "news", "id": 5, "data": "n5"},
                {"channel": "news", "id": 6, "data": base64.b64encode(b"\x00\xffraw").decode(),
                 "kind": "binary"},
            ]
            assert await ws.recv() == "subscribed"
            assert publish(srv, "news", "live \u00e9") == 7
            assert json.loads(await ws.recv()) == {"channel": "news", "id": 7, "data": "live \u00e9"}
        # since=0: everything retained, as frames of their own kind
        async with connect(srv, "/hub?ch=news&since=0") as ws:
            got = [await ws.recv() for _ in range(7)]
            assert got == ["n1", "n2", "n3", "n4", "n5", b"\x00\xffraw", "live \u00e9"]
            assert await ws.recv() == "subscribed"
        # no since: only new messages
        async with connect(srv, "/hub?ch=news&env=1") as ws:
            assert await ws.recv() == "subscribed"
            publish(srv, "news", "eight")
            assert json.loads(await ws.recv())["id"] == 8
        # since above the last id (the server restarted): all retained
        async with connect(srv, "/hub?ch=news&since=1000&env=1") as ws:
            assert [json.loads(await ws.recv())["id"] for _ in range(8)] == list(range(1, 9))
        # several channels, one connection
        async with connect(srv, "/hub?ch=news,other&env=1") as ws:
            assert await ws.recv() == "subscribed"
            publish(srv, "other", "o1")
            publish(srv, "news", "n9")
            got = [json.loads(await ws.recv()) for _ in range(2)]
            assert got == [{"channel": "other", "id": 1, "data": "o1"},
                           {"channel": "news", "id": 9, "data": "n9"}]
    run(main())


def sse_events(srv, ch):
    """An SSE reader of /sse/CH, subscribed when this returns: (response,
    next_event) where next_event() gives the next event's field lines."""
    r = requests.get(srv.url + f"/sse/{ch}", stream=True, timeout=10)
    lines = r.iter_lines(chunk_size=1, decode_unicode=True)
    assert next(lines) == ": subscribed"

    def next_event():
        event = []
        for line in lines:
            if line == "" and event:
                return event
            if line and not line.startswith(":"):
                event.append(line)
        raise AssertionError("the stream ended")
    return r, next_event


def test_one_publish_reaches_websocket_sse_and_long_poll_with_the_same_ids(start):
    srv = start(APP)
    publish(srv, "all", "before")  # id 1, so ids are not trivially 1

    # an SSE reader, subscribed before the publish
    sse, next_event = sse_events(srv, "all")

    # a long poll parked after id 1 (if it is not parked yet when the
    # publish lands, it returns the retained message at once: same answer)
    polled = {}
    t = threading.Thread(target=lambda: polled.update(
        r=requests.get(srv.url + "/poll/all?since=1", timeout=10).json()))
    t.start()

    async def main():
        async with connect(srv, "/hub?ch=all&env=1") as ws:
            assert await ws.recv() == "subscribed"
            async with connect(srv, "/hub-z?ch=all", "deflate") as wz:
                assert await wz.recv() == "subscribed"
                assert publish(srv, "all", "to everyone") == 2
                assert json.loads(await ws.recv()) == {"channel": "all", "id": 2, "data": "to everyone"}
                assert await wz.recv() == "to everyone"
                assert publish(srv, "all", b"\x01\x02", kind="binary") == 3
                assert json.loads(await ws.recv()) == {"channel": "all", "id": 3, "data": "AQI=",
                                                       "kind": "binary"}
                assert await wz.recv() == b"\x01\x02"
    run(main())
    t.join(10)
    assert polled["r"] == [{"id": 2, "data": "to everyone", "kind": "text"}]

    assert next_event() == ["id: 2", "data: to everyone"]
    assert next_event() == ["id: 3", "data: AQI="]
    sse.close()


def test_ws_publish_reaches_sse_and_long_poll(start):
    srv = start(APP)
    sse, next_event = sse_events(srv, "chat")

    async def main():
        async with connect(srv, "/hub?ch=chat") as ws:
            assert await ws.recv() == "subscribed"
            await ws.send("from a socket")
            assert await ws.recv() == "id=1"
    run(main())
    assert requests.get(srv.url + "/poll/chat?since=0", timeout=10).json() == [
        {"id": 1, "data": "from a socket", "kind": "text"}]
    assert next_event() == ["id: 1", "data: from a socket"]
    sse.close()


# ----------------------------------------------------------------- load

def test_500_concurrent_clients_echo(start):
    srv = start(APP)
    n = 500

    async def one(i):
        async with connect(srv, "/echo", open_timeout=60, close_timeout=30) as ws:
            for k in range(3):
                msg = f"client {i} message {k}"
                await ws.send(msg)
                assert await ws.recv() == msg
            return i

    async def main():
        # all connected at once, then all talking at once
        return await asyncio.gather(*(one(i) for i in range(n)))

    assert sorted(run(main(), timeout=120)) == list(range(n))
    s = requests.get(srv.url + "/stats", timeout=10).json()
    assert len(s["closes"]["echo"]) == n
    assert all(c["code"] == 1000 for c in s["closes"]["echo"])


# ----------------------------------------------------------------- node

def node_ready():
    return os.access(NODE, os.X_OK) and (NODE_DIR / "node_modules" / "ws").is_dir()


@pytest.mark.skipif(not node_ready(), reason="Node's ws is not installed: run scripts/setup --test")
@pytest.mark.parametrize("mode,path,ext", [
    ("plain", "/echo", None),
    ("deflate", "/echo-z", DEFLATE_RESPONSE),
    ("deflate-small", "/echo-z", DEFLATE_RESPONSE + "; server_max_window_bits=10"),
    ("deflate", "/echo", None),  # offered, not enabled on the route
])
def test_node_ws_echo(start, mode, path, ext):
    srv = start(APP)
    p = subprocess.run([NODE, "ws_echo.js", ws_url(srv, path), mode], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["results"] and all(r["ok"] for r in out["results"]), out["results"]
    assert [r["name"] for r in out["results"]] == [
        "text", "unicode", "empty", "binary", "text 1 MB", "binary 1 MB", "fragmented"]
    assert out["close"] == {"code": 1000, "reason": ""}
    # ws reports what it accepted: the extension's parameters, or nothing
    if ext is None:
        assert out["extensions"] == ""
    else:
        assert out["extensions"].startswith("permessage-deflate")
