"""Every app under examples/ is started with the real binary and used the
way its page and README use it: plain requests with requests, event
streams read off a socket, WebSockets with the websockets library, long
polls held and released. Each gets assertions about its behaviour, and
`moonwire --check` passes on every examples/*/app.lua.

An example added to examples/ without a test here fails
test_every_example_is_exercised."""
import asyncio
import json
import socket
import threading
import time

import pytest
import requests
import websockets

from conftest import ROOT, run_moonwire

EXAMPLES = ROOT / "examples"
ALL = sorted(p.parent.name for p in EXAMPLES.glob("*/app.lua"))
# the examples this file exercises (chat only when its folder exists)
EXERCISED = {"hello", "showcase", "live-feed", "notifications", "todo", "dashboard", "chat"}
T = 10  # seconds: the longest any single step may take


def example(name):
    return EXAMPLES / name / "app.lua"


# ---------------------------------------------------------------- clients


class SSE:
    """A Server-Sent Events client on a plain socket: sends the request,
    checks the head, then parses events as the spec says (one field per
    line, a blank line dispatches)."""

    def __init__(self, srv, target, headers=None):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=T)
        lines = [f"GET {target} HTTP/1.1", f"Host: {srv.host}:{srv.port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the stream")
        self.buf += chunk

    def _line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8")

    def event(self, timeout=T):
        """The next dispatched event as a dict (id, event, data, retry;
        only the fields it had), comments skipped."""
        self.sock.settimeout(timeout)
        ev, data = {}, []
        while True:
            line = self._line()
            if line == "":
                if data:
                    ev["data"] = "\n".join(data)
                if ev:
                    return ev
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                ev[name] = value

    def message(self, timeout=T):
        """The next event that carries data."""
        deadline = time.time() + timeout
        while True:
            ev = self.event(max(0.05, deadline - time.time()))
            if "data" in ev:
                return ev

    def close(self):
        self.sock.close()


def ws_url(srv, path):
    return f"ws://{srv.host}:{srv.port}{path}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Held:
    """A request made in a thread, to be released by something else."""

    def __init__(self, method, url, **kw):
        self.result = None
        self.error = None
        self.t0 = time.time()

        def go():
            try:
                self.result = requests.request(method, url, timeout=T * 3, **kw)
            except Exception as e:  # reported by get()
                self.error = e
            self.elapsed = time.time() - self.t0

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def get(self, timeout=T):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the held request was never answered"
        if self.error:
            raise self.error
        return self.result


# ------------------------------------------------------ every example


def test_every_example_is_exercised():
    assert set(ALL) - EXERCISED == set(), "an example without a test in test_examples.py"
    assert {"hello", "showcase", "live-feed", "notifications", "todo", "dashboard"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_check_passes(name):
    code, _, err = run_moonwire("--check", str(example(name)))
    assert code == 0, err
    assert err.strip().endswith(": ok")


@pytest.mark.parametrize("name", ALL)
def test_readme_has_the_run_command(name):
    readme = EXAMPLES / name / "README.md"
    assert readme.exists(), f"examples/{name} has no README.md"
    assert f"scripts/run examples/{name}/app.lua" in readme.read_text()


@pytest.mark.parametrize("name", [n for n in ALL if (EXAMPLES / n / "public").is_dir()])
def test_the_page_is_served(start, name):
    srv = start(str(example(name)))
    r = requests.get(srv.url + "/", timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text.lower() and "</script>" in r.text
    # and nothing but the page's own folder: no dotfiles, no app source
    assert requests.get(srv.url + "/app.lua", timeout=T).status_code == 404
    assert requests.get(srv.url + "/../app.lua", timeout=T).status_code in (400, 404)


# ------------------------------------------------------------------ hello


def test_hello(start):
    srv = start(str(example("hello")))
    r = requests.get(srv.url + "/", timeout=T)
    assert r.status_code == 200 and "Hello from moonwire" in r.text
    r = requests.get(srv.url + "/hello/world", timeout=T)
    assert r.text == "Hello, world!\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    # the parameter is decoded
    assert requests.get(srv.url + "/hello/caf%C3%A9", timeout=T).text == "Hello, café!\n"
    assert requests.get(srv.url + "/nope", timeout=T).status_code == 404


# --------------------------------------------------------------- showcase


def test_showcase_plain_request(start):
    srv = start(str(example("showcase")))
    r = requests.get(srv.url + "/api/time", timeout=T)
    body = r.json()
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert abs(body["now"] - time.time()) < 60 and body["uptime"] >= 0
    assert body["last_id"] == 0 and body["request"]
    # the page's script and style are served beside it
    for path, kind in (("/showcase.js", "text/javascript"), ("/showcase.css", "text/css")):
        r = requests.get(srv.url + path, timeout=T)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(kind)
    # publish validates its input
    for bad in ({}, {"text": ""}, {"text": "x" * 281}, {"text": 5}):
        r = requests.post(srv.url + "/api/publish", json=bad, timeout=T)
        assert r.status_code == 400, bad
    assert requests.post(srv.url + "/api/publish", data="{", timeout=T).status_code == 400


def test_showcase_one_publish_reaches_sse_websocket_and_long_poll_with_one_id(start):
    srv = start(str(example("showcase")))
    base = srv.url

    async def scenario():
        async with websockets.connect(ws_url(srv, "/ws")) as ws:
            sse = SSE(srv, "/sse")
            try:
                assert sse.status == 200
                assert sse.headers["content-type"].startswith("text/event-stream")
                assert sse.event()["retry"] == "2000"
                # a long poll for what comes after the current last id
                last = requests.get(base + "/api/time", timeout=T).json()["last_id"]
                poll = Held("GET", f"{base}/poll?since={last}")
                await asyncio.sleep(0.3)  # held: nothing is newer yet

                # 1. a publish by plain request ...
                r = requests.post(base + "/api/publish", json={"from": "ann", "text": "hello  all "},
                                  timeout=T)
                assert r.status_code == 201
                mid = r.json()["id"]
                assert mid == last + 1

                # ... reaches the long poll,
                answer = poll.get().json()
                assert [m["id"] for m in answer["messages"]] == [mid]
                assert answer["held_ms"] >= 50 and answer["missed"] == 0  # held, not answered at once
                polled = json.loads(answer["messages"][0]["data"])
                assert polled["from"] == "ann" and polled["text"] == "hello all"
                # the SSE stream,
                ev = sse.message()
                assert int(ev["id"]) == mid and json.loads(ev["data"]) == polled
                # and the WebSocket, in an envelope, with the same id and data
                env = json.loads(await asyncio.wait_for(ws.recv(), T))
                assert env["channel"] == "showcase" and env["id"] == mid
                assert json.loads(env["data"]) == polled

                # 2. a message sent over the WebSocket is published the same way
                await ws.send(json.dumps({"from": "bob", "text": "from the socket"}))
                env = json.loads(await asyncio.wait_for(ws.recv(), T))
                assert env["id"] == mid + 1 and json.loads(env["data"])["from"] == "bob"
                ev = sse.message()
                assert int(ev["id"]) == mid + 1
                assert json.loads(ev["data"])["text"] == "from the socket"
                answer = requests.get(f"{base}/poll?since={mid}", timeout=T).json()
                assert [m["id"] for m in answer["messages"]] == [mid + 1]
                assert answer["held_ms"] < 1000  # it was there already: answered at once

                # a bad frame gets an error frame, and publishes nothing
                await ws.send("not json")
                err = json.loads(await asyncio.wait_for(ws.recv(), T))
                assert "error" in err
                assert requests.get(base + "/api/time", timeout=T).json()["last_id"] == mid + 1
            finally:
                sse.close()

        # 3. a stream that comes back with Last-Event-ID gets what it missed
        sse = SSE(srv, "/sse", {"Last-Event-ID": str(mid)})
        try:
            ev = sse.message()
            assert int(ev["id"]) == mid + 1
        finally:
            sse.close()

    run(scenario())


def test_showcase_poll_validates_since(start):
    srv = start(str(example("showcase")))
    assert requests.get(srv.url + "/poll?since=abc", timeout=T).status_code == 400


# -------------------------------------------------------------- live-feed


def test_live_feed_streams_posts_and_resumes(start):
    srv = start(str(example("live-feed")))
    base = srv.url
    sse = SSE(srv, "/events")
    try:
        assert sse.status == 200
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert sse.headers["cache-control"] == "no-cache"
        assert sse.event()["retry"] == "2000"
        ids = []
        for text in ("one", "two", "three"):
            r = requests.post(base + "/publish", json={"text": text}, timeout=T)
            assert r.status_code == 201
            ids.append(r.json()["id"])
        got = {}
        # the price ticker may interleave its own events every 3 s
        while len(got) < 3:
            ev = sse.message()
            msg = json.loads(ev["data"])
            assert msg["type"] in ("post", "tick")
            if msg["type"] == "post":
                got[int(ev["id"])] = msg["text"]
        assert got == dict(zip(ids, ("one", "two", "three")))
    finally:
        sse.close()

    # a reconnection with Last-Event-ID replays what came after it, in order
    sse = SSE(srv, "/events", {"Last-Event-ID": str(ids[0])})
    try:
        replayed = [int(sse.message()["id"]) for _ in range(2)]
        assert replayed == [ids[0] + 1, ids[0] + 2]
    finally:
        sse.close()

    # what the channel holds, as JSON
    h = requests.get(base + "/history?since=0", timeout=T).json()
    assert h["missed"] == 0 and h["last_id"] >= ids[-1]
    assert [m["id"] for m in h["messages"]] == list(range(1, h["last_id"] + 1))

    # validation
    assert requests.post(base + "/publish", json={}, timeout=T).status_code == 400
    assert requests.post(base + "/publish", json={"text": "   "}, timeout=T).status_code == 400
    assert requests.post(base + "/publish", json={"text": "x" * 501}, timeout=T).status_code == 413
    assert requests.post(base + "/publish", data="nope", timeout=T).status_code == 400


# ---------------------------------------------------------- notifications


def test_notifications_long_poll_is_held_then_released(start):
    srv = start(str(example("notifications")))
    base = srv.url
    r = requests.post(base + "/notify", json={"text": "Backup finished"}, timeout=T)
    assert r.status_code == 201 and r.json()["id"] == 1

    # since=0: what the server holds, at once
    t0 = time.time()
    body = requests.get(base + "/poll?since=0", timeout=T).json()
    assert time.time() - t0 < 2
    assert body == {"messages": [{"id": 1, "data": "Backup finished", "kind": "text"}],
                    "missed": 0, "last_id": 1}

    # since=last: held until the next notification
    poll = Held("GET", base + "/poll?since=1")
    time.sleep(0.4)
    assert poll.thread.is_alive(), "the poll was answered before there was news"
    requests.post(base + "/notify", json={"text": "Deploy done"}, timeout=T)
    r = poll.get()
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json() == {"messages": [{"id": 2, "data": "Deploy done", "kind": "text"}],
                        "missed": 0, "last_id": 2}
    assert poll.elapsed >= 0.35

    # without since: only the next one, not the history
    poll = Held("GET", base + "/poll")
    time.sleep(0.3)
    requests.post(base + "/notify", json={"text": "third"}, timeout=T)
    assert [m["id"] for m in poll.get().json()["messages"]] == [3]

    # a client that gives up while parked does not break the next ones
    s = socket.create_connection((srv.host, srv.port), timeout=T)
    s.sendall(b"GET /poll?since=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    s.close()
    time.sleep(0.1)
    poll = Held("GET", base + "/poll?since=3")
    time.sleep(0.2)
    requests.post(base + "/notify", json={"text": "fourth"}, timeout=T)
    assert [m["data"] for m in poll.get().json()["messages"]] == ["fourth"]


def test_notifications_validation(start):
    srv = start(str(example("notifications")))
    base = srv.url
    for since in ("abc", "-1", "1.5"):
        assert requests.get(f"{base}/poll?since={since}", timeout=T).status_code == 400, since
    assert requests.post(base + "/notify", json={}, timeout=T).status_code == 400
    assert requests.post(base + "/notify", json={"text": " "}, timeout=T).status_code == 400
    assert requests.post(base + "/notify", json={"text": "x" * 501}, timeout=T).status_code == 413


# ------------------------------------------------------------------- todo


def test_todo_crud(start):
    srv = start(str(example("todo")))
    url = srv.url + "/todos"
    r = requests.get(url, timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.text == "[]"

    r = requests.post(url, json={"title": "  Water the plants "}, timeout=T)
    assert r.status_code == 201 and r.headers["Location"] == "/todos/1"
    assert r.json() == {"id": 1, "title": "Water the plants", "done": False}
    r = requests.post(url, json={"title": "Buy milk", "done": True}, timeout=T)
    assert r.json() == {"id": 2, "title": "Buy milk", "done": True}

    assert requests.get(url + "/1", timeout=T).json()["title"] == "Water the plants"
    assert [t["id"] for t in requests.get(url, timeout=T).json()] == [1, 2]
    assert [t["id"] for t in requests.get(url + "?done=true", timeout=T).json()] == [2]
    assert [t["id"] for t in requests.get(url + "?done=false", timeout=T).json()] == [1]

    r = requests.patch(url + "/1", json={"done": True}, timeout=T)
    assert r.status_code == 200 and r.json() == {"id": 1, "title": "Water the plants", "done": True}
    r = requests.patch(url + "/1", json={"title": "Water the ferns"}, timeout=T)
    assert r.json() == {"id": 1, "title": "Water the ferns", "done": True}

    r = requests.delete(url + "/1", timeout=T)
    assert r.status_code == 204 and r.content == b""
    assert requests.get(url + "/1", timeout=T).status_code == 404
    assert requests.get(url, timeout=T).json() == [{"id": 2, "title": "Buy milk", "done": True}]
    # ids are not reused
    assert requests.post(url, json={"title": "again"}, timeout=T).json()["id"] == 3


def test_todo_errors_are_json(start):
    srv = start(str(example("todo")))
    url = srv.url + "/todos"
    requests.post(url, json={"title": "one"}, timeout=T)

    def err(r, status, text=None):
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"] == "application/json"
        body = r.json()
        assert body["status"] == status and isinstance(body["error"], str) and body["error"]
        if text:
            assert text in body["error"], body
        return body

    err(requests.post(url, data="", timeout=T), 400, "empty")
    err(requests.post(url, data="{nope", timeout=T), 400)
    err(requests.post(url, json=[1, 2], timeout=T), 400, "JSON object")
    err(requests.post(url, json={}, timeout=T), 400, "title is required")
    err(requests.post(url, json={"title": "   "}, timeout=T), 400, "must not be empty")
    err(requests.post(url, json={"title": 7}, timeout=T), 400, "must be a string")
    err(requests.post(url, json={"title": "é" * 201}, timeout=T), 400, "at most 200")
    err(requests.post(url, json={"title": "x", "done": "yes"}, timeout=T), 400, "true or false")
    err(requests.post(url, json={"titel": "typo"}, timeout=T), 400, 'unknown field "titel"')
    err(requests.patch(url + "/1", json={}, timeout=T), 400, "nothing to change")
    err(requests.get(url + "?done=maybe", timeout=T), 400)
    # 200 characters is fine, counted as characters, not bytes
    assert requests.post(url, json={"title": "é" * 200}, timeout=T).status_code == 201

    err(requests.get(url + "/99", timeout=T), 404, 'no todo with id "99"')
    err(requests.get(url + "/abc", timeout=T), 404)
    err(requests.patch(url + "/99", json={"done": True}, timeout=T), 404)
    err(requests.delete(url + "/99", timeout=T), 404)
    err(requests.get(srv.url + "/no/such/page", timeout=T), 404)

    r = requests.put(url + "/1", json={"title": "x"}, timeout=T)
    err(r, 405)
    assert "PATCH" in r.headers["Allow"] and "DELETE" in r.headers["Allow"]

    # the per-route body limit: 16 KiB
    r = requests.post(url, json={"title": "x" * 20000}, timeout=T)
    err(r, 413)
    # nothing changed by all that
    assert [t["id"] for t in requests.get(url, timeout=T).json()] == [1, 2]


def test_todo_page_uses_the_api(start):
    srv = start(str(example("todo")))
    page = requests.get(srv.url + "/", timeout=T).text
    for call in ("fetch(", "'/todos'", "'PATCH'", "'DELETE'", "'POST'"):
        assert call in page, call


# -------------------------------------------------------------- dashboard


def test_dashboard_streams_samples_and_resumes(start):
    srv = start(str(example("dashboard")))
    base = srv.url
    page = requests.get(base + "/", timeout=T).text
    assert "<canvas" in page and "new EventSource('/metrics?lastEventId=0')" in page

    sse = SSE(srv, "/metrics?lastEventId=0")
    try:
        assert sse.status == 200 and sse.headers["content-type"].startswith("text/event-stream")
        assert sse.event()["retry"] == "2000"
        first = sse.message(timeout=5)  # one sample a second
        sample = json.loads(first["data"])
        assert set(sample) == {"at", "requests", "rps", "streams", "lua_kib", "load"}
        assert abs(sample["at"] - time.time()) < 30
        assert sample["lua_kib"] > 0 and 0 <= sample["load"] <= 1
        # a sample taken while this stream is open counts it, and the
        # requests so far (the page and this stream)
        ev = first
        while json.loads(ev["data"])["streams"] < 1:
            ev = sse.message(timeout=5)
        last = json.loads(ev["data"])
        assert last["streams"] == 1 and last["requests"] >= 2
        seen = int(ev["id"])
    finally:
        sse.close()

    # the newest sample by plain request; our stream is gone by the next one
    deadline = time.time() + 5
    while True:
        latest = requests.get(base + "/api/metrics", timeout=T).json()
        if latest["streams"] == 0 and latest["id"] > seen:
            break
        assert time.time() < deadline, f"the closed stream is still counted: {latest}"
        time.sleep(0.2)

    # resume: Last-Event-ID wins over the query, the next sample is seen + 1
    sse = SSE(srv, "/metrics?lastEventId=0", {"Last-Event-ID": str(seen)})
    try:
        ids = [int(sse.message()["id"]) for _ in range(2)]
        assert ids == [seen + 1, seen + 2]
    finally:
        sse.close()

    # the spike makes the simulated load climb
    r = requests.post(base + "/spike", timeout=T)
    assert r.status_code == 200 and r.json()["spike_until"] > time.time()


# ------------------------------------------------------------------- chat


@pytest.mark.skipif(not example("chat").exists(), reason="examples/chat is not there yet")
def test_chat_rooms_talk_both_ways_and_resume(start):
    srv = start(str(example("chat")))

    async def frame(ws):
        return json.loads(await asyncio.wait_for(ws.recv(), T))

    async def room_message(ws):
        """The next room message (an envelope), its data decoded."""
        while True:
            f = await frame(ws)
            if "channel" in f:
                return f["id"], json.loads(f["data"])

    async def scenario():
        ann = await websockets.connect(ws_url(srv, "/chat/lobby?since=0"))
        bob = await websockets.connect(ws_url(srv, "/chat/lobby?since=0"))
        for ws in (ann, bob):
            hello = await frame(ws)
            assert hello["type"] == "welcome" and hello["room"] == "lobby" and hello["last_id"] == 0

        # saying before joining is refused with an error frame, not a close
        await ann.send(json.dumps({"type": "say", "text": "hi"}))
        assert (await frame(ann))["type"] == "error"
        await ann.send("not json")
        assert (await frame(ann))["type"] == "error"

        await ann.send(json.dumps({"type": "join", "nick": "ann"}))
        for ws in (ann, bob):
            mid, data = await room_message(ws)
            assert mid == 1 and data["type"] == "join" and data["nick"] == "ann"
        await bob.send(json.dumps({"type": "join", "nick": "bob"}))
        for ws in (ann, bob):
            mid, data = await room_message(ws)
            assert mid == 2 and data["nick"] == "bob" and data["online"] == ["ann", "bob"]
        await ann.send(json.dumps({"type": "say", "text": "hello,   bob"}))
        for ws in (ann, bob):  # the sender gets its own message back, with its id
            mid, data = await room_message(ws)
            assert mid == 3 and data == {**data, "type": "say", "nick": "ann", "text": "hello, bob"}

        # typing reaches the others only
        await bob.send(json.dumps({"type": "typing"}))
        assert await frame(ann) == {"type": "typing", "nick": "bob"}

        # another room hears nothing of this one
        other = await websockets.connect(ws_url(srv, "/chat/kitchen?since=0"))
        assert (await frame(other))["last_id"] == 0

        # a page that comes back with ?since=1 gets what came after, in order
        late = await websockets.connect(ws_url(srv, "/chat/lobby?since=1"))
        assert (await frame(late))["last_id"] == 3
        assert [(await room_message(late))[0] for _ in range(2)] == [2, 3]

        # leaving is news too
        await bob.close()
        mid, data = await room_message(ann)
        assert mid == 4 and data["type"] == "leave" and data["nick"] == "bob"

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.recv(), 0.3)
        for ws in (ann, other, late):
            await ws.close()

        # a bad room name is refused before the upgrade
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(ws_url(srv, "/chat/no%20spaces"))
        assert e.value.status_code == 404

    run(scenario())

    deadline = time.time() + T
    while True:  # ann's leaving is posted when the server has seen her socket close
        h = requests.get(srv.url + "/rooms/lobby/history?since=2", timeout=T).json()
        if len(h["messages"]) >= 3 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert h["room"] == "lobby" and h["missed"] == 0
    # ann's message, bob's leaving, and ann's when her socket closed
    assert [(m["id"], m["type"]) for m in h["messages"]] == [(3, "say"), (4, "leave"), (5, "leave")]
    assert h["messages"][0]["text"] == "hello, bob"
