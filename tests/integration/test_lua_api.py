"""The Lua API end to end: req fields and methods, res methods and their
errors, error handling (mw.abort, app:on_error, tracebacks, --reload
pages) and timers, driven over real HTTP against tests/apps/api/app.lua
and small inline apps."""
import json
import re
import socket
import threading
import time

import pytest
import requests

from conftest import APPS

API = "api/app.lua"
API_SOURCE = (APPS / API).read_text()


def line_of(text, source=API_SOURCE):
    """The 1-based line of the api app that contains text."""
    for i, line in enumerate(source.splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in the app")


# ----------------------------------------------------------------- raw HTTP

def raw_exchange(srv, data, timeout=10):
    """Sends bytes on a new connection; returns all bytes until the server closes."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                piece = s.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            out += piece
    return out


def raw(srv, target, method="GET", version="HTTP/1.1", headers=(), body=b""):
    """One request with Connection: close; returns (status, [(name, value)],
    payload bytes after the head, exactly as sent)."""
    lines = [f"{method} {target} {version}", "Host: test"] + list(headers) + ["Connection: close"]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = raw_exchange(srv, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no response head: {data[:200]!r}"
    hl = head.decode("latin-1").split("\r\n")
    status = int(hl[0].split(" ")[1])
    return status, [tuple(x.split(": ", 1)) for x in hl[1:]], rest


def values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def dechunk(payload):
    """Decodes a chunked body; returns (body, complete)."""
    body = b""
    while True:
        size_line, sep, payload = payload.partition(b"\r\n")
        if not sep:
            return body, False
        size = int(size_line, 16)
        if size == 0:
            return body, payload == b"\r\n"
        if len(payload) < size + 2:
            return body + payload[:size], False
        body, payload = body + payload[:size], payload[size + 2:]


# ---------------------------------------------------------------------- req

def test_req_fields(start):
    srv = start(API)
    target = "/req/x%20y/a%2Fb?q=a+b&q=2&e=%C3%A9%20%2B&flag&plus=1%2B1"
    r = requests.get(srv.url + target, headers={"X-Custom": "v", "Cookie": 'a=1; b="q"; a=2; c=x=y'})
    d = r.json()
    assert d["method"] == "GET"
    assert d["path"] == "/req/x y/a/b"
    assert d["target"] == target
    assert d["params"] == {"a": "x y", "b": "a/b"}
    assert d["query"]["q"] == "a b", "+ is a space and the first value wins"
    assert d["query"]["e"] == "é +"
    assert d["query"]["flag"] == ""
    assert d["query"]["plus"] == "1+1"
    assert d["headers"]["x-custom"] == "v"
    assert all(k == k.lower() for k in d["headers"]), d["headers"]
    assert d["headers"]["host"] == f"{srv.host}:{srv.port}"
    assert d["cookies"] == {"a": "1", "b": "q", "c": "x=y"}
    assert d["remote_addr"] == "127.0.0.1"
    assert d["http_version"] == "1.1"
    assert re.fullmatch(r"[0-9a-z]+-\d+", d["id"]), d["id"]
    d2 = requests.get(srv.url + "/req").json()
    assert d2["id"] != d["id"]
    assert d2["query"] == {} and d2["params"] == {} and d2["cookies"] == {}
    assert d2["path"] == "/req" and d2["target"] == "/req"


def test_req_repeated_headers_are_joined(start):
    srv = start(API)
    status, _, payload = raw(srv, "/req", headers=["X-Multi: 1", "x-multi: 2", "X-MULTI: three"])
    assert status == 200
    assert json.loads(payload)["headers"]["x-multi"] == "1, 2, three"
    status, _, payload = raw(srv, "/header/X-mUlTi", headers=["X-Multi: 1", "X-Multi: 2"])
    assert json.loads(payload) == {"value": "1, 2"}


def test_req_header_lookup_ignores_case(start):
    srv = start(API)
    for name in ["x-custom", "X-Custom", "X-CUSTOM"]:
        r = requests.get(srv.url + "/header/" + name, headers={"x-CuStOm": "val"})
        assert r.json() == {"value": "val"}
    assert requests.get(srv.url + "/header/missing").json() == {"value": None}


def test_req_http_version_1_0(start):
    srv = start(API)
    status, _, payload = raw(srv, "/req", version="HTTP/1.0")
    assert status == 200
    assert json.loads(payload)["http_version"] == "1.0"


def test_req_query_all(start):
    srv = start(API)
    r = requests.get(srv.url + "/query_all/a?a=1&b=2&a=x+y&a=%41&a=")
    assert r.json() == {"values": ["1", "x y", "A", ""], "first": "1"}
    # no value: an empty JSON array, not an object
    r = requests.get(srv.url + "/query_all/a?b=1")
    assert r.text == '{"values":[]}'
    r = requests.get(srv.url + "/query_all/k%20x?k+x=sp&k%20x=pct")
    assert r.json()["values"] == ["sp", "pct"]


def test_req_body(start):
    srv = start(API)
    data = bytes(range(256)) * 100
    assert requests.post(srv.url + "/body", data=data).content == data
    assert requests.post(srv.url + "/body", data=b"").content == b""
    # chunked upload: no Content-Length
    parts = [b"alpha-", b"beta-", b"gamma"]
    assert requests.post(srv.url + "/body", data=iter(parts)).content == b"".join(parts)
    # asking twice gives the same body
    assert requests.post(srv.url + "/body/twice", data=b"12345").json() == {"same": True, "len": 5}


def test_req_chunks(start):
    srv = start(API)
    r = requests.post(srv.url + "/chunks", data=iter([b"one,", b"two,", b"three"]))
    d = r.json()
    assert d["body"] == "one,two,three"
    assert d["pieces"] >= 1
    r = requests.post(srv.url + "/chunks", data=b"")
    assert r.json() == {"pieces": 0, "body": ""}
    # pieces arrive as they come: send the body in two writes, far apart
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"POST /chunks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        time.sleep(0.2)
        s.sendall(b"6\r\nsecond\r\n0\r\n\r\n")
        out = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            out += piece
    d = json.loads(out.partition(b"\r\n\r\n")[2])
    assert d == {"pieces": 2, "body": "firstsecond"}


def test_req_json(start):
    srv = start(API)
    r = requests.post(srv.url + "/json", data='{"a":[1,2],"b":{"c":null}}')
    assert r.status_code == 200
    assert r.json() == {"got": {"a": [1, 2], "b": {"c": None}}}
    r = requests.post(srv.url + "/json", data="")
    assert r.status_code == 400
    assert "empty" in r.text
    for bad in [b"{bad", b"[1,]", b"nan", b'"\xff"', b"{} extra"]:
        r = requests.post(srv.url + "/json", data=bad)
        assert r.status_code == 400, bad
        assert r.text.startswith("400 Bad Request: invalid JSON"), r.text
    # a 400 from req:json is a status error: nothing logged as an error
    assert "[error]" not in srv.log()


def test_req_fields_are_settable(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:use(function(req, res, next)
          req.user = { name = "ann" }
          req.flag = true
          req.method_seen = req.method
          next()
        end)
        app:get("/", function(req, res)
          res:json { user = req.user.name, flag = req.flag, seen = req.method_seen,
                     missing = req.nothing == nil }
        end)
        return app
    ''')
    assert requests.get(srv.url + "/").json() == {"user": "ann", "flag": True, "seen": "GET",
                                                  "missing": True}


# ---------------------------------------------------------------------- res

def test_res_status_and_headers_chain(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/chain")
    assert status == 201
    assert payload == b"chained"
    assert values(headers, "X-One") == ["second"], "header replaces"
    assert values(headers, "X-List") == ["a", "b", "c"], "a list sends one line each"
    assert values(headers, "X-Gone") == [], "nil removes"
    assert values(headers, "X-Add") == ["1", "2"], "add_header keeps earlier lines"
    assert values(headers, "X-Number") == ["42"]
    assert values(headers, "Content-Length") == ["7"]


def test_res_cookie(start):
    srv = start(API)
    status, headers, _ = raw(srv, "/res/cookie")
    assert status == 200
    assert values(headers, "Set-Cookie") == [
        "plain=v1",
        "full=v2; Path=/app; Domain=example.com; Max-Age=3600; "
        "Expires=Sun, 06 Nov 1994 08:49:37 GMT; Secure; HttpOnly; SameSite=Strict",
        "datestr=v3; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
    ]


@pytest.mark.parametrize("which, message", [
    ("name", r'invalid cookie name "bad name"'),
    ("value", r"characters a cookie cannot hold"),
    ("nonascii", r"characters a cookie cannot hold"),
    ("attr", r'attribute domain of "n" contains a control character or \';\''),
    ("max_age", r'max_age of "n" must be a whole number of seconds, got 1\.5'),
])
def test_res_cookie_refuses_bad_input(start, which, message):
    srv = start(API)
    r = requests.get(srv.url + "/res/cookie/bad?which=" + which)
    assert r.status_code == 500
    assert "Set-Cookie" not in r.headers
    srv.wait_log(r"GET /res/cookie/bad\?which=%s: \S*api/app\.lua:%d: res:cookie: .*%s"
                 % (which, line_of(f'which == "{which}"'), message))


def test_res_send(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/send")
    assert payload == b"exactly this"
    assert values(headers, "Content-Length") == ["12"]
    assert values(headers, "Content-Type") == ["text/plain; charset=utf-8"]
    assert values(headers, "Transfer-Encoding") == []
    status, headers, payload = raw(srv, "/res/send/empty")
    assert status == 200 and payload == b""
    assert values(headers, "Content-Length") == ["0"]
    r = requests.get(srv.url + "/res/send/binary")
    assert r.content == bytes(range(256)) * 4
    assert r.headers["Content-Type"] == "application/octet-stream"


def test_res_send_with_a_declared_length_sends_it_once(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/send/declared-length")
    assert payload == b"hello"
    assert values(headers, "Content-Length") == ["5"]
    status, headers, payload = raw(srv, "/res/send/declared-length", method="HEAD")
    assert payload == b""
    assert values(headers, "Content-Length") == ["5"]


def test_res_json(start):
    srv = start(API)
    r = requests.get(srv.url + "/res/json/empty-array")
    assert r.text == "[]"
    assert r.headers["Content-Type"] == "application/json"
    assert requests.get(srv.url + "/res/json/empty-object").text == "{}"
    d = requests.get(srv.url + "/res/json/nested").json()
    assert d == {"list": [1, 2, [3]], "empty": [], "obj": {}, "deep": [[]], "null": None,
                 "yes": True, "n": 1.5, "s": 'café "q"'}
    r = requests.get(srv.url + "/res/json/typed")
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    assert r.json() == {"ok": True}


def test_res_json_keeps_decoded_arrays_arrays(start):
    srv = start(API)
    for body in ['{"a":[],"b":{},"c":[[]]}', "[]", "[[],{}]", '{"x":{"y":[]}}', '[{"k":[]}]']:
        r = requests.post(srv.url + "/res/json/echo", data=body)
        assert r.status_code == 200
        assert json.loads(r.text) == json.loads(body)
        for frag in ['"a":[]', '"b":{}', '"c":[[]]', '"y":[]', '"k":[]']:
            if frag in body:
                assert frag in r.text, (body, r.text)


def test_res_json_of_a_function_is_a_500(start):
    srv = start(API)
    r = requests.get(srv.url + "/res/json/function")
    assert r.status_code == 500
    srv.wait_log(r"cannot encode a function")


def test_res_redirect(start):
    srv = start(API)
    r = requests.get(srv.url + "/res/redirect", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/target?x=1"
    for code in [301, 303, 307, 308]:
        r = requests.get(srv.url + f"/res/redirect/{code}", allow_redirects=False)
        assert r.status_code == code
        assert r.headers["Location"] == "https://example.com/"
    r = requests.get(srv.url + "/res/redirect/200", allow_redirects=False)
    assert r.status_code == 500
    srv.wait_log(r"status must be a 3xx code")


def test_res_write_streams_chunked(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/stream")
    assert status == 200
    assert values(headers, "Transfer-Encoding") == ["chunked"]
    assert values(headers, "Content-Length") == []
    body, complete = dechunk(payload)
    assert complete
    assert body == b"part1;part2;part3;part4;part5;"
    # an empty write sends no chunk (it would end the body)
    assert b"\r\n0\r\n\r\n" == payload[-7:] and payload.count(b"0\r\n\r\n") == 1


def test_res_write_with_a_declared_length(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/stream/declared")
    assert values(headers, "Content-Length") == ["10"]
    assert values(headers, "Transfer-Encoding") == []
    assert payload == b"0123456789"


def test_res_write_with_a_declared_length_on_head(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/stream/declared", method="HEAD")
    assert status == 200
    assert values(headers, "Content-Length") == ["10"]
    assert payload == b""


def test_res_write_on_http_1_0_is_close_delimited(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/stream", version="HTTP/1.0")
    assert values(headers, "Transfer-Encoding") == []
    assert payload == b"part1;part2;part3;part4;part5;"


def test_an_unfinished_write_stream_is_finished(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/stream/unfinished")
    body, complete = dechunk(payload)
    assert complete, payload
    assert body == b"started;not finished"
    assert "[error]" not in srv.log()


def first_response_then_nothing(srv, target, want_body):
    """Raw request: the client gets one complete response and no more bytes."""
    status, headers, payload = raw(srv, target)
    assert status == 200
    n = int(values(headers, "Content-Length")[0])
    assert payload[:n] == want_body
    assert payload[n:] == b"", "nothing after the first response"


def test_send_twice_raises_and_the_first_response_stands(start):
    srv = start(API)
    first_response_then_nothing(srv, "/res/send-twice", b"first")
    m = srv.wait_log(r"\[error\] req \S+ GET /res/send-twice: \S*app\.lua:(\d+): the response was already sent")
    assert int(m.group(1)) == line_of('res:send("second")')
    assert requests.get(srv.url + "/res/send").text == "exactly this"


def test_header_after_send_raises(start):
    srv = start(API)
    first_response_then_nothing(srv, "/res/header-after-send", b"complete")
    srv.wait_log(r"app\.lua:%d: header X-Late set after the response started" % line_of('"X-Late"'))
    first_response_then_nothing(srv, "/res/status-after-send", b"complete")
    srv.wait_log(r"app\.lua:%d: status set after the response started" % line_of("res:status(404)"))


def test_write_after_finish_raises(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/write-after-finish")
    body, complete = dechunk(payload)
    assert complete and body == b"a"
    srv.wait_log(r"app\.lua:%d: the response was already sent" % line_of('res:write("b")'))


def test_header_after_the_first_byte_raises_and_cuts_the_stream(start):
    srv = start(API)
    data = raw_exchange(srv, b"GET /res/header-after-write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # the connection is cut: the client gets nothing, or the started
    # response without its end, never something that looks complete
    if data:
        head, _, payload = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"X-Late" not in head
        body, complete = dechunk(payload)
        assert not complete, "a failed stream must not look complete"
        assert b"first bytes;".startswith(body)
    srv.wait_log(r"GET /res/header-after-write: \S*app\.lua:%d: header X-Late set after the response started"
                 % (line_of('res:write("first bytes;")') + 1))
    assert requests.get(srv.url + "/res/send").text == "exactly this"


def test_a_failed_stream_shows_the_client_a_truncated_body(start):
    srv = start(API)
    data = raw_exchange(srv, b"GET /res/header-after-write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    body, complete = dechunk(payload)
    assert body == b"first bytes;" and not complete


BAD_HEADERS = {
    "name-crlf": r'invalid header name "X-Evil\\x0D\\x0AInjected"',
    "name-nul": r'invalid header name "X-Evil\\x00"',
    "name-space": r'invalid header name "X Evil"',
    "name-colon": r'invalid header name "X-Evil:"',
    "name-empty": r'invalid header name ""',
    "value-crlf": r"header X-Evil: value contains CR, LF or NUL",
    "value-lf": r"header X-Evil: value contains CR, LF or NUL",
    "value-cr": r"header X-Evil: value contains CR, LF or NUL",
    "value-nul": r"header X-Evil: value contains CR, LF or NUL",
    "list": r"header X-Evil: value contains CR, LF or NUL",
    "add": r"header X-Evil: value contains CR, LF or NUL",
    "cookie": r'res:cookie: attribute path of "n" contains a control character or \';\'',
    "redirect": r"res:redirect: url contains CR, LF or NUL",
    "type": r"header value must be a string or number, got boolean",
}


@pytest.mark.parametrize("which", sorted(BAD_HEADERS))
def test_bad_header_raises_and_nothing_reaches_the_wire(start, which):
    srv = start(API)
    data = raw_exchange(srv, f"GET /res/bad-header/{which} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), data
    assert b"Injected" not in data
    assert b"X-Evil" not in data
    assert b"X-Before" not in data, "headers set before the error are dropped"
    assert b"unreachable" not in data
    assert data.count(b"HTTP/1.1 ") == 1
    m = srv.wait_log(r"\[error\] req \S+ GET /res/bad-header/%s: \S*app\.lua:(\d+): %s" % (which, BAD_HEADERS[which]))
    assert int(m.group(1)) == line_of(f'w == "{which}" then'), "the error names the app's line"
    assert "stack traceback" in srv.log()


def test_a_handler_that_does_not_respond_gets_a_500(start):
    srv = start(API)
    status, headers, payload = raw(srv, "/res/no-response")
    assert status == 500
    assert values(headers, "X-Set-But-Never-Sent") == []
    srv.wait_log(r"the handler for GET /res/no-response returned without sending a response")


# ------------------------------------------------------------------- errors

def test_abort(start):
    srv = start(API)
    r = requests.get(srv.url + "/abort/418?msg=short+and+stout")
    assert r.status_code == 418
    assert r.text == "418 I'm a teapot: short and stout\n"
    r = requests.get(srv.url + "/abort/404")
    assert r.status_code == 404 and r.text == "404 Not Found\n"
    r = requests.get(srv.url + "/abort/503")
    assert r.status_code == 503 and r.text == "503 Service Unavailable\n"
    assert "[error]" not in srv.log(), "a status error is an answer, not a failure"
    # a status outside 400..599 is a programming error
    r = requests.get(srv.url + "/abort/200")
    assert r.status_code == 500
    srv.wait_log(r"status must be 400\.\.599")


def test_an_error_is_a_500_naming_the_request_and_logged_with_a_traceback(start):
    srv = start(API)
    r = requests.get(srv.url + "/error")
    assert r.status_code == 500
    m = re.fullmatch(r"500 Internal Server Error \(request (\S+)\)\n", r.text)
    assert m, r.text
    rid = m.group(1)
    assert "kaboom" not in r.text and "app.lua" not in r.text, "no details outside --reload"
    line = line_of('error("kaboom in handler")')
    srv.wait_log(r"\[error\] req %s GET /error: \S*api/app\.lua:%d: kaboom in handler\nstack traceback:"
                 % (re.escape(rid), line))
    # a traceback names the frames: here, the nested function
    r = requests.get(srv.url + "/error/nested")
    assert r.status_code == 500
    srv.wait_log(r"api/app\.lua:%d: attempt to index a nil value.*\nstack traceback:\n(.*\n)*?.*api/app\.lua:%d:"
                 % (line_of("return x.field"), line_of("  inner()")))
    r = requests.get(srv.url + "/error/table")
    assert r.status_code == 500
    srv.wait_log(r"GET /error/table: table: 0x")


def test_reload_mode_shows_error_details(start):
    srv = start(API, "--reload")
    r = requests.get(srv.url + "/error")
    assert r.status_code == 500
    assert r.text.startswith("500 Internal Server Error (request ")
    assert "kaboom in handler" in r.text
    assert "app.lua:%d" % line_of('error("kaboom in handler")') in r.text
    assert "stack traceback" in r.text


ON_ERROR_APP = '''
    local mw = require "moonwire"
    local app = mw.app()
    app:on_error(function(req, res, err)
      local kind = req.query.on_error or "answer"
      if kind == "raise" then error("on_error itself failed") end
      if kind == "abort" then mw.abort(409) end
      if kind == "pass" then return end
      local status = type(err) == "table" and err.status or 500
      res:status(status == 500 and 503 or status)
      if type(err) == "table" and err.headers then
        res:header("X-Allow-Was", err.headers.Allow)
      end
      res:json { custom = true, status = status,
                 message = type(err) == "table" and err.message or mw.json.null,
                 text = tostring(err):match("[^\\n]*") }
    end)
    app:get("/boom", function(req, res) error("boom") end)
    app:get("/abort", function(req, res) mw.abort(422, "bad input") end)
    app:post("/json", function(req, res) res:json(req:json()) end)
    app:post("/only-post", function(req, res) res:send("ok") end)
    app:get("/ok", function(req, res) res:send("fine") end)
    return app
'''


def test_on_error_answers_handler_errors(start):
    srv = start(ON_ERROR_APP)
    r = requests.get(srv.url + "/boom")
    assert r.status_code == 503
    d = r.json()
    assert d["custom"] and d["status"] == 500
    assert re.search(r"app\.lua:\d+: boom$", d["text"]), d
    srv.wait_log(r"\[error\] req \S+ GET /boom: \S*app\.lua:\d+: boom")


def test_on_error_answers_status_errors(start):
    srv = start(ON_ERROR_APP)
    r = requests.get(srv.url + "/nowhere")
    assert r.status_code == 404
    assert r.json() == {"custom": True, "status": 404, "message": None, "text": "404 Not Found"}
    r = requests.get(srv.url + "/abort")
    assert r.status_code == 422
    assert r.json()["message"] == "bad input"
    r = requests.delete(srv.url + "/only-post")
    assert r.status_code == 405
    assert r.headers["X-Allow-Was"] == "OPTIONS, POST"
    r = requests.post(srv.url + "/json", data="{")
    assert r.status_code == 400
    assert r.json()["message"].startswith("invalid JSON")
    assert requests.get(srv.url + "/ok").text == "fine"


def test_on_error_that_does_not_answer_falls_back(start):
    srv = start(ON_ERROR_APP)
    r = requests.get(srv.url + "/nowhere?on_error=pass")
    assert r.status_code == 404 and r.text == "404 Not Found\n"
    r = requests.get(srv.url + "/boom?on_error=pass")
    assert r.status_code == 500
    assert r.text.startswith("500 Internal Server Error (request ")


@pytest.mark.parametrize("path", ["/boom", "/nowhere", "/abort"])
def test_an_error_inside_on_error_falls_back_to_the_default_500(start, path):
    srv = start(ON_ERROR_APP)
    r = requests.get(srv.url + path + "?on_error=raise")
    assert r.status_code == 500
    assert re.fullmatch(r"500 Internal Server Error \(request \S+\)\n", r.text), r.text
    srv.wait_log(r"on_error handler failed: \S*app\.lua:\d+: on_error itself failed\nstack traceback:")
    # on_error may answer by aborting with a status of its own
    r = requests.get(srv.url + path + "?on_error=abort")
    assert r.status_code == 409 and r.text == "409 Conflict\n"
    assert requests.get(srv.url + "/ok").text == "fine"


def test_on_error_headers_are_dropped_when_it_fails(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:on_error(function(req, res, err)
          res:header("X-Half-Done", "1")
          if req.query.fail then error("on_error gave up") end
          if req.query.stream then res:write("partial") end
        end)
        app:get("/boom", function(req, res) error("boom") end)
        return app
    ''')
    r = requests.get(srv.url + "/boom?fail=1")
    assert r.status_code == 500
    assert "X-Half-Done" not in r.headers
    srv.wait_log(r"on_error handler failed: .*on_error gave up")
    # an answer on_error started is finished for it
    r = requests.get(srv.url + "/boom?stream=1")
    assert r.status_code == 200 and r.text == "partial"
    assert r.headers["X-Half-Done"] == "1"


def test_status_errors_keep_headers_set_before_them(start):
    srv = start(API)
    r = requests.get(srv.url + "/abort-auth")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="api"'
    assert r.text == "401 Unauthorized\n"
    # but not those describing the body the error page replaced
    assert "ETag" not in r.headers and "Content-Encoding" not in r.headers
    # a crash drops everything the handler prepared
    r = requests.get(srv.url + "/error-after-headers")
    assert r.status_code == 500
    assert "X-Prepared" not in r.headers


def test_middleware_headers_survive_404_405_and_cors_preflights_still_work(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:use(function(req, res, next)
          res:header("X-Request-Id", req.id)
          next()
        end)
        app:use(mw.cors { origins = { "https://app.example" } })
        app:get("/data", function(req, res) res:json { ok = true } end)
        app:get("/private", function(req, res) mw.abort(401) end)
        return app
    ''')
    origin = {"Origin": "https://app.example"}
    for path, method, status in [("/nope", "GET", 404), ("/data", "DELETE", 405),
                                 ("/private", "GET", 401), ("/data", "GET", 200)]:
        r = requests.request(method, srv.url + path, headers=origin)
        assert r.status_code == status, path
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example", (path, r.headers)
        assert r.headers["X-Request-Id"], path
    r = requests.options(srv.url + "/data", headers={**origin, "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = requests.get(srv.url + "/nope", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


# ------------------------------------------------------------------- timers

def test_sleep_does_not_block_other_requests(start):
    srv = start(API)
    results = []

    def fetch():
        r = requests.get(srv.url + "/sleep?s=0.5", timeout=10)
        results.append(r.json()["slept"])

    t0 = time.time()
    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    # while both sleep, the server still answers at once
    assert requests.get(srv.url + "/now", timeout=10).status_code == 200
    quick = time.time() - t0
    for t in threads:
        t.join(10)
    total = time.time() - t0
    assert len(results) == 2
    assert all(s >= 0.49 for s in results), results
    assert quick < 0.45, "a request during the sleeps waited for them"
    assert total < 0.95, f"two 0.5 s sleeps took {total:.2f} s: they ran one after the other"


def test_now_is_epoch_seconds(start):
    srv = start(API)
    before = time.time()
    now = requests.get(srv.url + "/now").json()["now"]
    after = time.time()
    assert before - 1 <= now <= after + 1
    assert isinstance(now, float)


TIMERS_APP = '''
    local mw = require "moonwire"
    local app = mw.app()
    local after_count, every_count, stopped_at = 0, 0, nil
    mw.after(0.05, function()
      after_count = after_count + 1
      mw.log.info("after fired %d", after_count)
    end)
    local ticker
    ticker = mw.every(0.02, function()
      every_count = every_count + 1
      mw.log.info("tick %d", every_count)
      if every_count == 3 then
        stopped_at = every_count
        ticker:stop()
        -- a later timer proves the ticker stayed quiet meanwhile
        mw.after(0.15, function() mw.log.info("quiet: ticks=%d after=%d", every_count, after_count) end)
      end
    end)
    local stoppable = mw.every(0.01, function() end)
    app:get("/stop", function(req, res)
      res:json { first = stoppable:stop(), again = stoppable:stop(), active = stoppable:active() }
    end)
    local cancelled = mw.after(0.05, function() mw.log.info("cancelled timer ran") end)
    cancelled:stop()
    mw.after(0, function()
      -- a callback may wait like a handler
      mw.sleep(0.01)
      mw.log.info("slept in a timer")
    end)
    app:get("/counts", function(req, res)
      res:json { after = after_count, every = every_count }
    end)
    return app
'''


def test_after_fires_once_and_every_repeats_until_stopped(start):
    srv = start(TIMERS_APP)
    srv.wait_log(r"after fired 1")
    m = srv.wait_log(r"quiet: ticks=(\d+) after=(\d+)")
    assert m.group(1) == "3", "the ticker stopped at 3"
    assert m.group(2) == "1", "after fired once"
    assert requests.get(srv.url + "/counts").json() == {"after": 1, "every": 3}
    assert len(re.findall(r"tick \d+", srv.log())) == 3
    srv.wait_log(r"slept in a timer")
    assert "cancelled timer ran" not in srv.log()
    assert requests.get(srv.url + "/stop").json() == {"first": True, "again": False, "active": False}


def test_an_error_in_a_timer_is_logged_and_the_server_keeps_serving(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        local n = 0
        mw.after(0.01, function()
          error("timer exploded")
        end)
        local t
        t = mw.every(0.01, function()
          n = n + 1
          if n == 2 then error("tick failed") end
          if n == 4 then t:stop(); mw.log.info("ticker survived its error") end
        end)
        app:get("/", function(req, res) res:send("still here") end)
        return app
    ''')
    srv.wait_log(r"timer callback failed: \S*app\.lua:6: timer exploded\nstack traceback:")
    srv.wait_log(r"timer callback failed: \S*app\.lua:11: tick failed")
    srv.wait_log(r"ticker survived its error")
    assert requests.get(srv.url + "/").text == "still here"


def test_sleep_at_load_time_raises_a_clear_error(start):
    srv = start('''
        local mw = require "moonwire"
        mw.sleep(0.1)
        return mw.app()
    ''', wait=False)
    assert srv.proc.wait(30) == 1
    srv._reader.join(5)
    log = srv.log()
    assert re.search(r"app\.lua:3: .*can only be made inside a handler, timer callback or event", log), log


@pytest.mark.parametrize("call, message", [
    ("mw.after(-1, function() end)", r"seconds must be between 0 and 1e9"),
    ("mw.every(0, function() end)", r"an interval must be above 0"),
    ("mw.after(1, 'nope')", r"function expected"),
    ("mw.sleep('x')", r"number expected"),
])
def test_timer_arguments_are_checked(start, call, message):
    srv = start(f'''
        local mw = require "moonwire"
        {call}
        return mw.app()
    ''', wait=False)
    assert srv.proc.wait(30) == 1
    srv._reader.join(5)
    assert re.search(r"app\.lua:3: .*" + message, srv.log()), srv.log()


# ----------------------------------------------------- handles outliving

def test_req_and_res_outlive_their_request_without_crashing(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        local kept
        app:get("/keep", function(req, res)
          local _ = req.headers -- computed while the request lives
          kept = { req = req, res = res }
          res:send("kept")
        end)
        app:get("/later", function(req, res)
          local r = {}
          r.method = kept.req.method
          r.host = kept.req.headers.host ~= nil
          r.send = select(2, pcall(kept.res.send, kept.res, "again"))
          r.header = select(2, pcall(kept.res.header, kept.res, "X", "1"))
          r.req_header = select(2, pcall(kept.req.header, kept.req, "host"))
          r.text = tostring(kept.req) .. " / " .. tostring(kept.res)
          res:json(r)
        end)
        return app
    ''')
    assert requests.get(srv.url + "/keep").text == "kept"
    d = requests.get(srv.url + "/later").json()
    assert d["method"] == "GET"
    assert d["host"] is True
    assert re.search(r"already sent|finished", d["send"]), d
    assert re.search(r"after the response started|finished", d["header"]), d
    assert isinstance(d["req_header"], str)
    assert "moonwire.req" in d["text"] and "moonwire.res" in d["text"]


def test_writes_return_false_once_the_client_leaves(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:get("/forever", function(req, res)
          local n = 0
          while res:write(("x"):rep(1000) .. "\\n") do
            n = n + 1
            mw.sleep(0.01)
          end
          mw.log.info("client gone after %d writes", n)
        end)
        app:get("/", function(req, res) res:send("ok") end)
        return app
    ''')
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    srv.wait_log(r"client gone after \d+ writes")
    assert "[error]" not in srv.log()
    assert requests.get(srv.url + "/").text == "ok"


def test_a_body_wait_ends_quietly_when_the_client_leaves(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:post("/upload", function(req, res)
          mw.log.info("waiting for the body")
          local body = req:body()
          mw.log.info("got a body of %d bytes", #body)
          res:send("ok")
        end)
        app:get("/", function(req, res) res:send("ok") end)
        return app
    ''', "--log-level", "debug")
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        srv.wait_log(r"waiting for the body")
    srv.wait_log(r"conn \d+: close \(")
    assert requests.get(srv.url + "/").text == "ok"
    log = srv.log()
    assert "got a body" not in log
    assert "[error]" not in log, log
