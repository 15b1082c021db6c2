"""The limits of DESIGN.md's table, each with its status and the
connection closed afterwards: max_header_bytes (431), max_body_bytes per
app and per route (413, Content-Length and chunked), header_timeout (408),
idle_timeout (close), and max_queued_bytes with send_timeout for a client
that stops reading. Times are kept short with mw.app{...} options."""
import re
import time

import pytest
import requests

from httpraw import RawConn, chunked, request

ECHO_APP = '''
    local mw = require "moonwire"
    local app = mw.app(OPTIONS)
    app:get("/", function(req, res) res:send("ok") end)
    app:post("/echo", function(req, res) res:send(req:body()) end)
    app:post("/chunks", function(req, res)
      local n = 0
      for c in req:chunks() do n = n + #c end
      res:send(tostring(n))
    end)
    app:post("/ignore", function(req, res) res:send("ignored") end)
    app:post("/small", { max_body_bytes = 10 }, function(req, res) res:send(req:body()) end)
    app:post("/large", { max_body_bytes = 5000 }, function(req, res) res:send(req:body()) end)
    -- logs how a body wait ended: normally, or unwound when the client left
    app:post("/wait", function(req, res)
      local done <close> = setmetatable({}, { __close = function(_, err)
        mw.log.info("wait handler ended: %s", tostring(err))
      end })
      mw.log.info("wait handler reading")
      res:send(req:body())
    end)
    return app
'''


def echo_app(start, options=""):
    return start(ECHO_APP.replace("OPTIONS", "{ " + options + " }" if options else ""))


def assert_refused(c, status):
    """The next response has `status`, announces the close, and the server closes."""
    r = c.response()
    assert r.status == status, r
    assert r.header("Connection") == "close"
    assert c.closed_by_peer(), f"connection left open after {status}"
    return r


# ------------------------------------------------------------ header size

def test_headers_over_default_limit_get_431(start):
    srv = echo_app(start)
    c = RawConn(srv)
    c.send(request("GET", "/", [("X-Fill", "x" * 15000)]))  # under 16 KiB: fine
    assert c.response().body == b"ok"
    c.send(request("GET", "/", [("X-Fill", "x" * 17000)]) + request("GET", "/"))
    assert_refused(c, 431)


def test_headers_over_app_limit_get_431(start):
    srv = echo_app(start, "max_header_bytes = 1024")
    c = RawConn(srv)
    c.send(request("GET", "/", [("X-Fill", "x" * 800)]))
    assert c.response().body == b"ok"
    c.send(request("GET", "/", [("X-Fill", "x" * 1100)]))
    assert_refused(c, 431)


@pytest.mark.parametrize("shape", ["many headers", "long request line", "trickled"])
def test_header_limit_counts_every_part(start, shape):
    srv = echo_app(start, "max_header_bytes = 1024")
    c = RawConn(srv)
    if shape == "many headers":
        c.send(request("GET", "/", [(f"X-H{i}", "v" * 20) for i in range(60)]))
    elif shape == "long request line":
        c.send(request("GET", "/?q=" + "a" * 1100))
    else:  # the same bytes in small writes add up just the same
        c.send_slowly(request("GET", "/", [("X-Fill", "x" * 1100)]), piece=100, delay=0.005)
    assert_refused(c, 431)


# -------------------------------------------------------------- body size

def test_body_at_the_default_limit_passes_and_over_it_gets_413(start):
    srv = echo_app(start)
    body = b"b" * (1024 * 1024)
    r = requests.post(srv.url + "/echo", data=body)
    assert r.status_code == 200 and len(r.content) == len(body)
    # declared over 1 MiB: refused before a byte of it is sent
    c = RawConn(srv)
    c.send(request("POST", "/echo", [("Content-Length", str(1024 * 1024 + 1))]))
    assert_refused(c, 413)


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_body_over_app_limit_gets_413(start, encoding):
    srv = echo_app(start, "max_body_bytes = 1000")
    for size, status in ((1000, 200), (1001, 413)):
        body = bytes([97 + i % 26 for i in range(size)])
        c = RawConn(srv)
        if encoding == "chunked":
            pieces = [body[i:i + 300] for i in range(0, size, 300)]
            c.send(request("POST", "/echo", [("Transfer-Encoding", "chunked")], chunked(*pieces)))
        else:
            c.send(request("POST", "/echo", [("Content-Length", str(size))], body))
        if status == 200:
            r = c.response()
            assert r.status == 200 and r.body == body
        else:
            assert_refused(c, 413)


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_body_over_route_limit_gets_413(start, encoding):
    srv = echo_app(start, "max_body_bytes = 1000")
    cases = [("/small", 10, 200), ("/small", 11, 413),
             ("/large", 5000, 200), ("/large", 5001, 413)]  # a route may raise the app's limit
    for path, size, status in cases:
        body = b"z" * size
        c = RawConn(srv)
        if encoding == "chunked":
            c.send(request("POST", path, [("Transfer-Encoding", "chunked")],
                           chunked(body[:size // 2], body[size // 2:])))
        else:
            c.send(request("POST", path, [("Content-Length", str(size))], body))
        if status == 200:
            r = c.response()
            assert (r.status, r.body) == (200, body), (path, size)
        else:
            assert_refused(c, 413)


def test_chunked_body_over_limit_read_as_chunks_gets_413(start):
    srv = echo_app(start, "max_body_bytes = 1000")
    c = RawConn(srv)
    c.send(request("POST", "/chunks", [("Transfer-Encoding", "chunked")]))
    c.send(chunked(*[b"q" * 100] * 5)[:-5])  # 500 bytes, not the end yet
    c.send(chunked(*[b"q" * 100] * 6))       # and 600 more
    assert_refused(c, 413)


def test_content_length_over_limit_without_sending_body(start):
    srv = echo_app(start, "max_body_bytes = 1000")
    c = RawConn(srv)
    c.send(request("POST", "/echo", [("Content-Length", "1000000")]))
    assert_refused(c, 413)
    assert requests.get(srv.url + "/").text == "ok"


def test_ignored_body_within_limit_is_skipped_and_connection_kept(start):
    srv = echo_app(start, "max_body_bytes = 1000")
    c = RawConn(srv)
    c.send(request("POST", "/ignore", [("Content-Length", "1000")]))
    assert c.response().body == b"ignored"
    c.send(b"x" * 1000 + request("POST", "/ignore", [("Transfer-Encoding", "chunked")],
                                 chunked(b"a" * 500, b"b" * 500)))
    assert c.response().body == b"ignored"
    c.send(request("GET", "/"))
    assert c.response().body == b"ok"


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_ignored_body_over_limit_is_not_read_forever(start, encoding):
    """A handler that answers without reading the body: the server does not
    go on reading and discarding a body past the limit."""
    srv = echo_app(start, "max_body_bytes = 1000")
    c = RawConn(srv)
    if encoding == "chunked":
        c.send(request("POST", "/ignore", [("Transfer-Encoding", "chunked")]))
    else:
        c.send(request("POST", "/ignore", [("Content-Length", str(100 * 1000 * 1000))]))
    r = c.response()
    assert r.status == 200 and r.body == b"ignored"
    if encoding == "content-length":
        assert r.header("Connection") == "close"  # the declared length says it
    piece = chunked(b"y" * 10000)[:-5] if encoding == "chunked" else b"y" * 10000
    try:
        for _ in range(200):  # 2 MB, far past the limit
            c.send(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        assert c.closed_by_peer(timeout=10), "the server kept reading an over-limit body"
    except ConnectionResetError:
        pass
    assert requests.get(srv.url + "/").text == "ok"


# ---------------------------------------------------------------- timeouts

def test_header_timeout_gets_408(start):
    srv = echo_app(start, "header_timeout = 0.5")
    c = RawConn(srv)
    t0 = time.time()
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Partial: ")
    assert_refused(c, 408)
    assert time.time() - t0 >= 0.4  # not before the limit


def test_header_timeout_not_extended_by_trickling(start):
    """A slowloris client sending a byte now and then still gets 408: the
    limit is on the whole head, not between bytes."""
    srv = echo_app(start, "header_timeout = 0.5")
    c = RawConn(srv)
    c.send(b"GET / HTTP/1.1\r\n")
    t0 = time.time()
    while time.time() - t0 < 8:
        try:
            c.send(b"X")
        except (BrokenPipeError, ConnectionResetError):
            break
        if not c.quiet_for(0.1):
            break
    r = c.response()
    assert r.status == 408
    assert time.time() - t0 < 8, "trickling kept the connection open"
    assert c.closed_by_peer()


def test_header_timeout_applies_to_a_silent_connection(start):
    srv = echo_app(start, "header_timeout = 0.5")
    c = RawConn(srv)
    assert_refused(c, 408)


def test_idle_timeout_closes_idle_keep_alive_connection(start):
    srv = echo_app(start, "idle_timeout = 0.5")
    c = RawConn(srv)
    c.send(request("GET", "/"))
    assert c.response().body == b"ok"
    c.send(request("GET", "/"))  # right away: still open
    assert c.response().body == b"ok"
    t0 = time.time()
    assert c.closed_by_peer(timeout=10), "idle keep-alive connection never closed"
    assert time.time() - t0 >= 0.4
    assert requests.get(srv.url + "/").text == "ok"


def test_idle_timeout_ends_a_stalled_body(start):
    """A body that stops arriving: the connection is closed after
    idle_timeout and the handler waiting in req:body() ends quietly."""
    srv = echo_app(start, "idle_timeout = 0.5")
    c = RawConn(srv)
    c.send(request("POST", "/wait", [("Content-Length", "10")], b"12345"))
    srv.wait_log("wait handler reading")
    assert c.closed_by_peer(timeout=10)
    srv.wait_log(r"wait handler ended: closed")
    assert "[error]" not in srv.log()


# ------------------------------------------------------------ slow clients

SLOW_APP = "http/slow.lua"
FLOOD_END_RE = r"flood ended: written=(\d+) waits=(\d+) err=(\S+)"


def test_slow_reader_makes_writer_wait_then_is_dropped(start):
    """A client that stops reading: the handler's res:write waits once
    max_queued_bytes are queued (it does not run ahead), the server keeps
    serving others, and after send_timeout the client is dropped and the
    handler ends quietly."""
    srv = start(SLOW_APP)
    c = RawConn(srv, rcvbuf=4096)
    t0 = time.time()
    c.send(request("GET", "/flood"))
    srv.wait_log("flood started")
    # others are served while the flood handler waits on its client
    for _ in range(3):
        assert requests.get(srv.url + "/ping", timeout=5).text == "pong"
    assert not re.search(FLOOD_END_RE, srv.log()), "the writer never waited:\n" + srv.log()
    m = srv.wait_log(FLOOD_END_RE, timeout=20)
    elapsed = time.time() - t0
    written = int(m.group(1))
    # kernel socket buffers take a few MiB at most; the app would write 128 MiB
    assert written <= 32 * 1024 * 1024, f"writer ran ahead: {written} bytes"
    assert "flood wrote everything" not in srv.log()
    assert elapsed >= 1.9, "dropped before send_timeout"
    srv.wait_log("dropping a client that stopped reading")
    # the handler ended by `closed` (or a write returning false), not an error
    assert m.group(3) == "closed" or "flood write returned false" in srv.log()
    assert "[error]" not in srv.log()
    # the client sees a truncated chunked response, then the end
    data = b""
    try:
        data = c.read_all(timeout=15)
    except TimeoutError:
        pytest.fail("dropped client's connection never ended")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not data.endswith(b"0\r\n\r\n")
    assert requests.get(srv.url + "/ping", timeout=5).text == "pong"


def test_slow_reader_that_catches_up_gets_everything(start):
    """The writer waits while its client is behind and resumes as it reads:
    every byte arrives, in order, and memory stayed bounded meanwhile."""
    srv = start(SLOW_APP)
    c = RawConn(srv)
    c.send(request("GET", "/bulk/16"))
    srv.wait_log("bulk started")
    # wait until the writer is stuck on its client: no progress between two
    # answers from the server (which also shows it keeps serving others)
    last, deadline = -1, time.time() + 20
    while True:
        written = int(requests.get(srv.url + "/bulk_status", timeout=5).text)
        if written == last and written > 0:
            break
        assert time.time() < deadline, "the writer never stopped for its client"
        last = written
        time.sleep(0.05)
    assert written < 16 * 1024 * 1024
    r = c.response(timeout=30)
    assert r.status == 200
    assert len(r.body) == 16 * 1024 * 1024
    fill = b"y" * (16 * 1024 - 16)
    assert r.body == b"".join(b"%015d\n" % i + fill for i in range(1024))
    m = srv.wait_log(r"bulk done: waits=(\d+)")
    assert int(m.group(1)) >= 1, "the writer never waited for its client"
    assert "dropping a client" not in srv.log()


def test_write_after_client_left_returns_false(start):
    srv = start(SLOW_APP)
    c = RawConn(srv)
    c.send(request("GET", "/drip"))
    c.read_until(b"tick\n")
    srv.wait_log("drip started")
    c.close()
    srv.wait_log(r"drip write returned false after \d+ writes")
    assert "[error]" not in srv.log()
    assert requests.get(srv.url + "/ping").text == "pong"
