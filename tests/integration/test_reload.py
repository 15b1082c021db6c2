"""Hot reload: --reload watches the app's folder (recursively), reloads on
a save, keeps every connection open, and never lets a broken save take the
server down. SIGHUP reloads in any mode."""
import asyncio
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import websockets

APP = '''
local mw = require "moonwire"
local app = mw.app()
local VERSION = "{version}"
mw.every(0.05, function() TICKS = (TICKS or 0) + 1 end)
app:get("/", function(req, res) res:send(VERSION) end)
app:get("/ticks", function(req, res)
  local t0 = TICKS or 0
  mw.sleep(0.5)
  res:send(tostring((TICKS or 0) - t0))
end)
app:get("/events", function(req, res)
  local s = res:sse{{ heartbeat = 0 }}
  s:subscribe("news")
end)
app:get("/poll", function(req, res)
  local msgs = mw.channel("news"):wait{{ since = tonumber(req.query.since), timeout = 10 }}
  res:json(msgs)
end)
app:post("/publish", function(req, res) res:json{{ id = mw.publish("news", req:body()) }} end)
{extra}
app:ws("/ws", {{ message = function(ws, data) ws:send(VERSION .. ":" .. data) end }})
return app
'''


def save(path: Path, text: str):
    """Saves like an editor: write a temp file, rename it over the old one."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def app_text(version, extra=""):
    return APP.format(version=version, extra=extra)


def wait_for(fn, what, timeout=10):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except requests.RequestException as e:
            last = e
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def app_dir(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "app.lua").write_text(app_text("v1"))
    return d


def start_reload(start, app_dir, *args):
    return start(str(app_dir / "app.lua"), "--reload", *args)


def test_a_route_answers_with_the_new_code_after_a_save(start, app_dir):
    srv = start_reload(start, app_dir)
    assert requests.get(srv.url + "/").text == "v1"
    save(app_dir / "app.lua", app_text("v2"))
    wait_for(lambda: requests.get(srv.url + "/").text == "v2", "v2 to answer")
    m = srv.wait_log(r"reloaded .*app\.lua \(version 2\) in ([\d.]+) ms, ([\d.]+) ms after the change")
    assert float(m.group(2)) < 100, m.group(0)


def test_ten_saves_leave_exactly_one_ticker(start, app_dir):
    srv = start_reload(start, app_dir)
    for i in range(10):
        save(app_dir / "app.lua", app_text(f"v{i + 2}"))
        time.sleep(0.12)
    wait_for(lambda: requests.get(srv.url + "/").text == "v11", "the last version")
    # a 50 ms ticker counts about 10 in 0.5 s; two tickers would count about 20
    ticks = int(requests.get(srv.url + "/ticks").text)
    assert 5 <= ticks <= 13, ticks


def test_open_websocket_gets_the_new_handler(start, app_dir):
    srv = start_reload(start, app_dir)

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            await ws.send("a")
            assert await ws.recv() == "v1:a"
            save(app_dir / "app.lua", app_text("v2"))
            await asyncio.to_thread(wait_for, lambda: requests.get(srv.url + "/").text == "v2", "v2")
            await ws.send("b")
            assert await ws.recv() == "v2:b"

    asyncio.run(run())


def test_a_websocket_whose_route_is_gone_closes_with_1012(start, app_dir):
    srv = start_reload(start, app_dir)

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            await ws.send("a")
            assert await ws.recv() == "v1:a"
            save(app_dir / "app.lua", app_text("v2").replace('app:ws("/ws"', 'app:ws("/other"'))
            await asyncio.to_thread(wait_for, lambda: requests.get(srv.url + "/").text == "v2", "v2")
            await ws.send("b")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1012

    asyncio.run(run())


def read_sse_events(sock, n, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    events = []
    while len(events) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            data = [l[6:] for l in block.split(b"\n") if l.startswith(b"data: ")]
            if data:
                events.append(b"\n".join(data).decode())
    return events


def test_sse_stream_and_parked_poll_carry_on_across_a_reload(start, app_dir):
    srv = start_reload(start, app_dir)
    sse = socket.create_connection(("127.0.0.1", srv.port))
    sse.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sse.recv(1)
    assert b"200 OK" in head
    poll_result = {}

    def poll():
        poll_result["r"] = requests.get(srv.url + "/poll?since=0", timeout=20)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)  # parked by now
    save(app_dir / "app.lua", app_text("v2"))
    wait_for(lambda: requests.get(srv.url + "/").text == "v2", "v2")
    requests.post(srv.url + "/publish", data="after the reload")
    t.join(15)
    assert poll_result["r"].status_code == 200
    assert [m["data"] for m in poll_result["r"].json()] == ["after the reload"]
    assert read_sse_events(sse, 1) == ["after the reload"]
    sse.close()


@pytest.mark.parametrize("broken, where", [
    ("local x = = 1\n", r"app\.lua:\d+:"),
    ('error("boom at load")\n', r"app\.lua:\d+: boom at load"),
])
def test_a_broken_save_keeps_the_old_version_serving(start, app_dir, broken, where):
    srv = start_reload(start, app_dir)
    good = app_text("v1")
    save(app_dir / "app.lua", broken + good)
    m = srv.wait_log(r"reload failed, the previous version keeps serving: (.*)")
    assert re.search(where, m.group(1)), m.group(1)
    assert requests.get(srv.url + "/").text == "v1"
    # ... and the old version's ticker still ticks, once
    assert 5 <= int(requests.get(srv.url + "/ticks").text) <= 13
    save(app_dir / "app.lua", app_text("v3"))
    wait_for(lambda: requests.get(srv.url + "/").text == "v3", "v3")


def test_a_module_in_a_folder_created_after_start_is_watched(start, app_dir):
    srv = start_reload(start, app_dir)
    lib = app_dir / "lib" / "deep"
    lib.mkdir(parents=True)
    (lib / "greet.lua").write_text('return { word = "hello" }\n')
    extra = 'local greet = require "lib.deep.greet"\napp:get("/greet", function(req, res) res:send(greet.word) end)'
    save(app_dir / "app.lua", app_text("v2", extra))
    wait_for(lambda: requests.get(srv.url + "/greet").text == "hello", "the module")
    # only the module changes now: the new folder must be watched for this to reload
    save(lib / "greet.lua", 'return { word = "bonjour" }\n')
    wait_for(lambda: requests.get(srv.url + "/greet").text == "bonjour", "the module's new text")


def test_sighup_reloads_without_watching(start, app_dir):
    srv = start(str(app_dir / "app.lua"))
    (app_dir / "app.lua").write_text(app_text("v2"))
    time.sleep(0.2)
    assert requests.get(srv.url + "/").text == "v1"  # no --reload: no watching
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: requests.get(srv.url + "/").text == "v2", "SIGHUP's reload")


def test_channel_options_belong_to_their_version(start, app_dir):
    extra = 'mw.channel("kept", { history = 2 })\napp:get("/hist", function(req, res) res:json(mw.channel("kept"):history()) end)'
    srv = start_reload(start, app_dir)
    save(app_dir / "app.lua", app_text("v2", extra))
    wait_for(lambda: requests.get(srv.url + "/").text == "v2", "v2")
    for i in range(5):
        requests.post(srv.url + "/publish", data=str(i))  # to "news"
    # publish to "kept" through a route of the next version
    extra3 = extra + '\napp:post("/kept", function(req, res) res:json{ id = mw.publish("kept", req:body()) } end)'
    save(app_dir / "app.lua", app_text("v3", extra3))
    wait_for(lambda: requests.get(srv.url + "/").text == "v3", "v3")
    for i in range(5):
        requests.post(srv.url + "/kept", data=str(i))
    assert [m["data"] for m in requests.get(srv.url + "/hist").json()] == ["3", "4"]
    # a version that no longer sets the option gets the default (100) back
    extra4 = 'app:get("/hist", function(req, res) res:json(mw.channel("kept"):history()) end)\napp:post("/kept", function(req, res) res:json{ id = mw.publish("kept", req:body()) } end)'
    save(app_dir / "app.lua", app_text("v4", extra4))
    wait_for(lambda: requests.get(srv.url + "/").text == "v4", "v4")
    for i in range(5, 8):
        requests.post(srv.url + "/kept", data=str(i))
    assert [m["data"] for m in requests.get(srv.url + "/hist").json()] == ["3", "4", "5", "6", "7"]


def test_live_reload_script_only_in_reload_mode(start, app_dir):
    extra = 'app:get("/page", function(req, res) res:header("Content-Type", "text/html"):send("<html><body><p>x</p></body></html>") end)'
    (app_dir / "app.lua").write_text(app_text("v1", extra))
    dev = start_reload(start, app_dir)
    page = requests.get(dev.url + "/page").text
    assert '<script src="/__moonwire/livereload.js"></script></body>' in page
    js = requests.get(dev.url + "/__moonwire/livereload.js")
    assert js.status_code == 200 and "EventSource" in js.text
    prod = start(str(app_dir / "app.lua"))
    assert "livereload" not in requests.get(prod.url + "/page").text
    assert requests.get(prod.url + "/__moonwire/livereload.js").status_code == 404


def test_live_reload_stream_tells_pages_to_reload_or_shows_the_error(start, app_dir):
    (app_dir / "public").mkdir()
    (app_dir / "public" / "index.html").write_text("<html><body>one</body></html>")
    srv = start_reload(start, app_dir)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"GET /__moonwire/livereload HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b"text/event-stream" in head
    time.sleep(0.1)
    # an HTML change: pages reload, the app does not
    save(app_dir / "public" / "index.html", "<html><body>two</body></html>")
    assert read_sse_events(sock, 1) == ["reload\n"]
    assert "reloaded" not in srv.log()
    # a broken script: pages show the error with file:line
    save(app_dir / "app.lua", "local = 1\n" + app_text("v1"))
    [event] = read_sse_events(sock, 1)
    kind, _, text = event.partition("\n")
    assert kind == "loaderror" and re.search(r"app\.lua:1:", text), event
    sock.close()


def test_a_limit_the_new_version_drops_goes_back_to_its_default(start, app_dir):
    (app_dir / "app.lua").write_text(app_text("v1").replace("mw.app()", "mw.app{ max_body_bytes = 10 }"))
    srv = start_reload(start, app_dir)
    assert requests.post(srv.url + "/publish", data="x" * 100).status_code == 413
    save(app_dir / "app.lua", app_text("v2"))
    wait_for(lambda: requests.get(srv.url + "/").text == "v2", "v2")
    assert requests.post(srv.url + "/publish", data="x" * 100).status_code == 200
