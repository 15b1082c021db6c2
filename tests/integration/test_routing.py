"""Routing end to end: methods, parameters, 404/405/OPTIONS/HEAD, bad
paths, middleware order and per-route limits, over real HTTP."""
import re
import socket
import time

import pytest
import requests

from conftest import run_moonwire

API = "api/app.lua"


# ----------------------------------------------------------------- raw HTTP

def raw(srv, head, body=b"", timeout=10):
    """Sends one request as given (the request line and headers, without
    the blank line; Connection: close is added) and returns the first
    response as (status, [(name, value)], body, rest) where rest is what
    followed it before the server closed."""
    if isinstance(head, str):
        head = head.encode()
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    return parse_response(data, head.split(b" ", 1)[0] == b"HEAD")


def parse_response(data, head_only=False):
    headpart, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:300]!r}"
    lines = headpart.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    get = {k.lower(): v for k, v in headers}
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    if get.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                assert rest.startswith(b"\r\n"), f"bad chunked ending {rest[:50]!r}"
                return status, headers, body, rest[2:]
            body, rest = body + rest[:size], rest[size + 2:]
    n = int(get.get("content-length", len(rest)))
    return status, headers, rest[:n], rest[n:]


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


# ------------------------------------------------------------------ methods

METHODS_APP = '''
    local mw = require "moonwire"
    local app = mw.app()
    local function answer(name)
      return function(req, res) res:send(name .. " " .. req.method .. " " .. req.path) end
    end
    app:get("/thing", answer("get"))
    app:post("/thing", answer("post"))
    app:put("/thing", answer("put"))
    app:patch("/thing", answer("patch"))
    app:delete("/thing", answer("delete"))
    app:options("/thing", answer("options"))
    app:route("PURGE", "/thing", answer("route"))
    app:route("GET", "/routed/:x", answer("route-get"))
    app:get("/hello", function(req, res) res:header("X-Route", "hello"):send("Hello, World!") end)
    app:get("/stream", function(req, res) res:write("abc"); res:write("def") end)
    app:get("/only-get", answer("only-get"))
    app:put("/only-put", answer("only-put"))
    app:get("/", answer("root"))
    return app
'''


def test_every_method_reaches_its_route(start):
    srv = start(METHODS_APP)
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"]:
        r = requests.request(method, srv.url + "/thing")
        assert r.status_code == 200, method
        name = "route" if method == "PURGE" else method.lower()
        assert r.text == f"{name} {method} /thing"
    assert requests.get(srv.url + "/routed/7").text == "route-get GET /routed/7"
    assert requests.get(srv.url + "/").text == "root GET /"


def test_unknown_path_is_404(start):
    srv = start(METHODS_APP)
    for path in ["/nope", "/thing/extra", "/routed", "/routed/1/2", "/THING"]:
        r = requests.get(srv.url + path)
        assert r.status_code == 404, path
        assert r.text == "404 Not Found\n"
        assert r.headers["Content-Type"].startswith("text/plain")


def test_wrong_method_is_405_with_allow(start):
    srv = start(METHODS_APP)
    r = requests.delete(srv.url + "/only-get")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert r.text == "405 Method Not Allowed\n"
    r = requests.get(srv.url + "/only-put")
    assert r.status_code == 405
    assert r.headers["Allow"] == "OPTIONS, PUT"
    # HEAD on a path without GET is a 405 too, with no body
    status, headers, body, rest = raw(srv, "HEAD /only-put HTTP/1.1\r\nHost: x")
    assert status == 405 and body == b"" and rest == b""
    assert header_values(headers, "Allow") == ["OPTIONS, PUT"]


def test_options_on_a_known_path_is_204_with_allow(start):
    srv = start(METHODS_APP)
    status, headers, body, rest = raw(srv, "OPTIONS /only-get HTTP/1.1\r\nHost: x")
    assert status == 204
    assert header_values(headers, "Allow") == ["GET, HEAD, OPTIONS"]
    assert body == b"" and rest == b""
    assert header_values(headers, "Content-Length") == []
    r = requests.options(srv.url + "/routed/9")
    assert r.status_code == 204
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"
    # an app's own OPTIONS route answers instead
    assert requests.options(srv.url + "/thing").text == "options OPTIONS /thing"
    # an unknown path stays a 404
    assert requests.options(srv.url + "/nope").status_code == 404


def test_head_is_answered_by_the_get_route_without_a_body(start):
    srv = start(METHODS_APP)
    get = requests.get(srv.url + "/hello")
    status, headers, body, rest = raw(srv, "HEAD /hello HTTP/1.1\r\nHost: x")
    assert status == 200
    assert body == b"" and rest == b"", "HEAD must not send a body"
    assert header_values(headers, "Content-Length") == [str(len(get.content))]
    assert header_values(headers, "X-Route") == ["hello"]
    # a streaming GET handler: HEAD gets the head and nothing else
    status, headers, body, rest = raw(srv, "HEAD /stream HTTP/1.1\r\nHost: x")
    assert status == 200 and body == b"" and rest == b""
    # and the connection stays usable for the next request (keep-alive)
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    first, _, second = data.partition(b"\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert second.endswith(b"\r\n\r\nHello, World!")


def test_trailing_slash_is_not_significant(start):
    srv = start(METHODS_APP)
    assert requests.get(srv.url + "/hello/").text == "Hello, World!"
    r = requests.get(srv.url + "/routed/5/")
    assert r.text == "route-get GET /routed/5/"


def test_params_are_percent_decoded_and_escaped_slashes_do_not_split(start):
    srv = start(API)
    get = lambda p: requests.get(srv.url + p)
    assert get("/users/42").json() == {"id": "42"}
    assert get("/users/caf%C3%A9%20au%20lait").json() == {"id": "café au lait"}
    assert get("/users/a%2Fb").json() == {"id": "a/b"}
    assert get("/users/a%2fb%2F..%2Fc").json() == {"id": "a/b/../c"}
    assert get("/users/a+b").json() == {"id": "a+b"}, "+ is only a space in queries"
    assert get("/users/%3Fq%23f%25").json() == {"id": "?q#f%"}
    assert get("/users/42?id=other").json() == {"id": "42"}
    # %2F kept one segment: no route has /users/:id/:more
    assert get("/users/a/b").status_code == 404
    assert get("/files/a/b%2Fc/d.txt").json() == {"path": "a/b/c/d.txt"}
    assert get("/files").json() == {"path": ""}
    assert get("/files/").json() == {"path": ""}
    # dot segments resolve before routing; a literal dot-dot in a param
    # is only possible escaped inside a segment
    assert get("/users/x/../7").json() == {"id": "7"}
    assert get("/users/./8").json() == {"id": "8"}


BAD_TARGETS = [
    "/users/%zz", "/users/%4", "/users/%", "/users/%G0", "/%00", "/users/a%00b", "/files/%00",
    "/..", "/../users/1", "/users/../../etc/passwd", "/%2e%2e/users/1", "/%2E%2E", "/a/./../../b",
    "/files/%2e%2e/%2e%2e/x",
]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_bad_paths_are_400(start, target):
    srv = start(API)
    status, headers, body, rest = raw(srv, f"GET {target} HTTP/1.1\r\nHost: x")
    assert status == 400, target
    assert body.startswith(b"400 Bad Request")
    # the server keeps answering
    assert requests.get(srv.url + "/users/1").status_code == 200


def test_a_dot_dot_that_stays_inside_is_resolved(start):
    srv = start(API)
    status, _, body, _ = raw(srv, "GET /files/a/../b HTTP/1.1\r\nHost: x")
    assert status == 200 and body == b'{"path":"b"}'
    status, _, body, _ = raw(srv, "GET /files/a/%2e%2e/c HTTP/1.1\r\nHost: x")
    assert status == 200 and body == b'{"path":"c"}'


# --------------------------------------------------------------- middleware

MIDDLEWARE_APP = '''
    local mw = require "moonwire"
    local app = mw.app()
    local function trace(req, what)
      req.trace = (req.trace and req.trace .. ">" or "") .. what
    end
    app:use(function(req, res, next)
      trace(req, "m1")
      mw.log.info("m1 saw %s %s", req.method, req.path)
      if req:header("x-block") then
        return res:status(403):send("blocked by m1")
      end
      next()
      -- next() returned: the rest is done
      trace(req, "m1-after")
      mw.log.info("m1 after %s %s started=%s trace=%s", req.method, req.path,
        tostring(res:started()), req.trace)
      if not res:started() then
        res:header("X-Set-After-Next", "yes"):send(req.trace)
      end
    end)
    app:use(function(req, res, next)
      trace(req, "m2")
      req.user = { name = "ann" }
      local t0 = mw.now()
      next()
      trace(req, "m2-after")
      -- (a few ms of slack: the loop's clock has millisecond steps)
      mw.log.info("m2 after %s waited=%s", req.path, tostring(mw.now() - t0 >= 0.045))
    end)
    app:get("/", function(req, res)
      trace(req, "handler")
      mw.sleep(0.05)
      res:send(req.trace .. " user=" .. req.user.name)
    end)
    app:get("/late", function(req, res)
      trace(req, "handler")
      res:status(201) -- no response: middleware answers after next()
    end)
    app:post("/only-post", function(req, res) res:send("posted") end)
    app:get("/twice", function(req, res) res:send("x") end)
    return app
'''


def test_middleware_runs_in_order_around_the_handler(start):
    srv = start(MIDDLEWARE_APP)
    r = requests.get(srv.url + "/")
    assert r.status_code == 200
    assert r.text == "m1>m2>handler user=ann"
    # next() returned after the handler (and its sleep) finished
    srv.wait_log(r"m2 after / waited=true")
    srv.wait_log(r"m1 after GET / started=true trace=m1>m2>handler>m2-after>m1-after")


def test_middleware_can_answer_after_next(start):
    srv = start(MIDDLEWARE_APP)
    r = requests.get(srv.url + "/late")
    assert r.status_code == 201
    assert r.headers["X-Set-After-Next"] == "yes"
    assert r.text == "m1>m2>handler>m2-after>m1-after"


def test_middleware_can_short_circuit(start):
    srv = start(MIDDLEWARE_APP)
    r = requests.get(srv.url + "/", headers={"X-Block": "1"})
    assert r.status_code == 403
    assert r.text == "blocked by m1"
    r = requests.get(srv.url + "/nope", headers={"X-Block": "1"})
    assert r.status_code == 403, "middleware runs before the 404 is decided"
    assert "m2 after" not in srv.log()


def test_middleware_runs_for_404_and_405(start):
    srv = start(MIDDLEWARE_APP)
    r = requests.get(srv.url + "/nope")
    assert r.status_code == 404
    assert r.text == "404 Not Found\n"
    srv.wait_log(r"m1 saw GET /nope")
    # next() returns after the router's own answer, as after a handler
    srv.wait_log(r"m1 after GET /nope started=true trace=m1>m2>m2-after>m1-after")
    r = requests.get(srv.url + "/only-post")
    assert r.status_code == 405
    assert r.headers["Allow"] == "OPTIONS, POST"
    srv.wait_log(r"m1 saw GET /only-post")
    srv.wait_log(r"m1 after GET /only-post started=true")
    r = requests.options(srv.url + "/only-post")
    assert r.status_code == 204
    srv.wait_log(r"m1 saw OPTIONS /only-post")
    srv.wait_log(r"m1 after OPTIONS /only-post started=true")


def test_a_handler_error_propagates_out_of_next(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:use(function(req, res, next)
          local ok, err = pcall(next)
          mw.log.info("next raised: %s %s", tostring(not ok), tostring(err))
          if not ok then error(err, 0) end
        end)
        app:get("/abort", function(req, res) mw.abort(418) end)
        app:get("/crash", function(req, res) error("handler crashed") end)
        return app
    ''')
    assert requests.get(srv.url + "/abort").status_code == 418
    srv.wait_log(r"next raised: true 418 I'm a teapot")
    assert requests.get(srv.url + "/crash").status_code == 500
    srv.wait_log(r"next raised: true \S*app\.lua:\d+: handler crashed")


def test_next_called_twice_raises(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:use(function(req, res, next) next(); next() end)
        app:get("/", function(req, res) res:send("once") end)
        return app
    ''')
    r = requests.get(srv.url + "/")
    assert r.text == "once"
    srv.wait_log(r"next\(\) was called twice")


def test_an_error_in_middleware_is_a_500(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:use(function(req, res, next) error("middleware broke") end)
        app:get("/", function(req, res) res:send("never") end)
        return app
    ''')
    r = requests.get(srv.url + "/")
    assert r.status_code == 500
    assert "never" not in r.text
    srv.wait_log(r"middleware broke")


# ------------------------------------------------------------ route limits

def test_per_route_max_body_bytes(start):
    srv = start(API)
    assert requests.post(srv.url + "/limited", data=b"x" * 10).text == "x" * 10
    r = requests.post(srv.url + "/limited", data=b"x" * 11)
    assert r.status_code == 413
    assert r.text.startswith("413 Content Too Large")
    # the limit holds for a chunked body with no declared length too
    r = requests.post(srv.url + "/limited", data=iter([b"x" * 6, b"y" * 6]))
    assert r.status_code == 413
    r = requests.post(srv.url + "/limited/chunks", data=iter([b"x" * 6, b"y" * 6]))
    assert r.status_code == 413
    # other routes keep the default limit (1 MiB)
    assert requests.post(srv.url + "/unlimited-read", data=b"x" * 100000).text == "len=100000"


def test_app_wide_max_body_bytes(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app { max_body_bytes = 100 }
        app:post("/", function(req, res) res:send(#req:body() .. "") end)
        app:post("/big", { max_body_bytes = 1000 }, function(req, res) res:send(#req:body() .. "") end)
        return app
    ''')
    assert requests.post(srv.url + "/", data=b"a" * 100).text == "100"
    assert requests.post(srv.url + "/", data=b"a" * 101).status_code == 413
    assert requests.post(srv.url + "/big", data=b"a" * 1000).text == "1000"


# ------------------------------------------------------------ load errors

@pytest.mark.parametrize("line, message", [
    ('app:get("/a", h); app:get("/a/", h)', r"route GET /a/ is defined twice"),
    ('app:get("nope", h)', r"a route pattern must be a string starting with '/'"),
    ('app:get("/:id/:id", h)', r'parameter "id" appears twice'),
    ('app:get("/*rest/x", h)', r'"\*rest" must be the last segment'),
    ('app:get("/:", h)', r'bad parameter name ":"'),
    ('app:get("/x", "h")', r"the handler must be a function"),
    ('app:get("/x", { max_body_bytes = "big" }, h)', r"max_body_bytes must be"),
    ('app:options("/x", 1)', r"the handler must be a function"),
])
def test_route_errors_fail_the_load_with_file_and_line(tmp_path, line, message):
    app = tmp_path / "bad.lua"
    app.write_text('local mw = require "moonwire"\nlocal app = mw.app()\nlocal h = function() end\n'
                   + line + "\nreturn app\n")
    code, out, err = run_moonwire("--check", str(app))
    assert code == 1, err
    assert re.search(r"bad\.lua:4: ", err), err
    assert re.search(message, err), err
