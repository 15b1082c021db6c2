"""HTTP/1.1 on the wire: keep-alive, pipelining, request bodies,
100-continue, HEAD, Date/Server, IPv4/IPv6 listeners, malformed requests
and handler errors. Driven by raw sockets (httpraw), curl and requests,
against tests/apps/http/protocol.lua unless a test needs its own app."""
import email.utils
import re
import socket
import subprocess
import time

import pytest
import requests

from conftest import APPS
from httpraw import IMF_FIXDATE_RE, RawConn, chunked, request

APP = "http/protocol.lua"
APP_PATH = APPS / APP


@pytest.fixture
def srv(start):
    return start(APP)


def app_line(marker):
    """The line number of the first line of the fixture app holding marker."""
    for n, line in enumerate(APP_PATH.read_text().splitlines(), 1):
        if marker in line:
            return n
    raise AssertionError(f"{marker!r} not in {APP_PATH}")


def curl(*args, timeout=20):
    p = subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args),
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


# ------------------------------------------------------------- keep-alive

def test_keep_alive_serves_many_requests_on_one_connection(srv):
    c = RawConn(srv)
    for i in range(5):
        c.send(request("GET", f"/echo/{i}"))
        r = c.response()
        assert r.status == 200
        assert r.body == f"n={i} v=1.1".encode()
        assert r.header("X-Seq") == str(i)
        assert r.header("Connection") is None  # HTTP/1.1: persistent by default
    assert c.quiet_for(0.2), "the server closed a keep-alive connection"
    c.send(request("GET", "/echo/last"))
    assert c.response().body == b"n=last v=1.1"


def test_requests_session_reuses_its_connection(srv):
    with requests.Session() as s:
        for i in range(3):
            r = s.get(f"{srv.url}/echo/{i}")
            assert r.status_code == 200 and r.text == f"n={i} v=1.1"
        # urllib3 keeps the one socket in its pool when the server keeps it open
        pool = s.get_adapter(srv.url).poolmanager.connection_from_url(srv.url)
        assert pool.num_connections == 1


def test_http10_closes_after_the_response(srv):
    c = RawConn(srv)
    c.send(request("GET", "/echo/1", version="HTTP/1.0", host=False))
    r = c.response()
    assert r.status == 200 and r.body == b"n=1 v=1.0"
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()


def test_http10_keep_alive_when_asked(srv):
    c = RawConn(srv)
    ka = [("Connection", "keep-alive")]
    for i in range(2):
        c.send(request("GET", f"/echo/{i}", ka, version="HTTP/1.0", host=False))
        r = c.response()
        assert r.body == f"n={i} v=1.0".encode()
        assert r.header("Connection") == "keep-alive"
        assert r.header("Content-Length") == str(len(r.body))
    # without the header, HTTP/1.0 closes again
    c.send(request("GET", "/echo/2", version="HTTP/1.0", host=False))
    r = c.response()
    assert r.body == b"n=2 v=1.0" and r.header("Connection") == "close"
    assert c.closed_by_peer()


def test_http10_streamed_body_is_delimited_by_close(srv):
    """HTTP/1.0 has no chunking: a streamed body ends with the connection,
    even when the client asked for keep-alive."""
    c = RawConn(srv)
    c.send(request("GET", "/stream", [("Connection", "keep-alive")], version="HTTP/1.0"))
    r = c.response()
    assert r.status == 200
    assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
    assert r.header("Connection") == "close"
    assert r.body == b"one two three"
    assert c.eof


def test_unsupported_http_version_gets_505_and_close(srv):
    for raw in (request("GET", "/", version="HTTP/2.0"), b"GET /\r\n\r\n"):
        c = RawConn(srv)
        c.send(raw + request("GET", "/echo/behind"))
        r = c.response()
        assert r.status == 505 and r.header("Connection") == "close"
        assert c.closed_by_peer()


def test_connection_close_from_client(srv):
    c = RawConn(srv)
    # a second request behind the closing one must not be answered
    c.send(request("GET", "/echo/1", [("Connection", "close")]) + request("GET", "/echo/2"))
    r = c.response()
    assert r.body == b"n=1 v=1.1"
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()


# ------------------------------------------------------------- pipelining

def test_pipelined_requests_answered_in_order(srv):
    # handlers that sleep different times must not reorder the answers
    delays = [300, 0, 200, 50, 0, 120, 250, 0, 10, 150, 0, 80]
    batch = [request("GET", f"/sleep/{d}") for d in delays]
    batch.insert(4, request("POST", "/body", [("Content-Length", "5")], b"hello"))
    batch.insert(9, request("POST", "/chunks", [("Transfer-Encoding", "chunked")],
                            chunked("ab", "cd", "e")))
    c = RawConn(srv)
    c.send(b"".join(batch))  # one write
    bodies = [c.response().body for _ in batch]
    expected = [f"slept {d}".encode() for d in delays]
    expected.insert(4, b"hello")
    expected.insert(9, b"abcde")
    assert bodies == expected
    # and the connection is still good for more
    c.send(request("GET", "/echo/after"))
    assert c.response().body == b"n=after v=1.1"


@pytest.mark.parametrize("delays", [
    [200, 0, 0, 100, 0, 0, 50, 0, 0, 0, 0],
    [200, 0, 0, 100, 0, 0, 50, 0, 0, 0, 300],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 300],  # parsed to the end before the FIN is read
], ids=["fast-last", "slow-first-and-last", "slow-last"])
def test_pipelined_batch_then_half_close_gets_every_answer(srv, delays):
    """The client sends a batch and shuts down its sending side: every
    request is still answered, in order, then the server closes. The last
    request may be slow: a FIN behind a batch is not the client leaving."""
    c = RawConn(srv)
    c.send(b"".join(request("GET", f"/sleep/{d}") for d in delays))
    c.shut_wr()
    for d in delays:
        assert c.response().body == f"slept {d}".encode()
    assert c.closed_by_peer()


def test_pipelined_fast_requests_then_half_close(srv):
    c = RawConn(srv)
    n = 30
    c.send(b"".join(request("GET", f"/echo/{i}") for i in range(n)))
    c.shut_wr()
    for i in range(n):
        assert c.response().body == f"n={i} v=1.1".encode()
    assert c.closed_by_peer()


# ---------------------------------------------------------- request bodies

def test_content_length_body_reaches_handler(srv):
    body = bytes(range(256)) * 40
    r = requests.post(srv.url + "/body", data=body)
    assert r.status_code == 200
    assert r.headers["X-Body-Length"] == str(len(body))
    assert r.content == body


def test_chunked_body_reaches_handler(srv):
    pieces = [b"a" * 1, b"b" * 100, b"\r\n\x00binary\xff", b"c" * 5000]
    c = RawConn(srv)
    c.send(request("POST", "/body", [("Transfer-Encoding", "chunked")], chunked(*pieces)))
    r = c.response()
    assert r.status == 200
    assert r.body == b"".join(pieces)
    # requests sends a generator as chunked too
    r = requests.post(srv.url + "/body", data=iter(pieces))
    assert r.content == b"".join(pieces)


def test_chunk_extensions_and_trailers_are_accepted(srv):
    c = RawConn(srv)
    c.send(request("POST", "/body", [("Transfer-Encoding", "chunked")],
                   b"3;name=value\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"))
    r = c.response()
    assert r.status == 200 and r.body == b"abcde"
    c.send(request("GET", "/echo/1"))
    assert c.response().body == b"n=1 v=1.1"


def test_body_in_many_small_delayed_writes(srv):
    body = bytes(range(256)) * 3
    c = RawConn(srv)
    c.send_slowly(request("POST", "/body", [("Content-Length", str(len(body)))]), piece=7, delay=0.002)
    c.send_slowly(body, piece=29, delay=0.01)
    r = c.response()
    assert r.status == 200 and r.body == body


def test_chunked_body_in_many_small_delayed_writes(srv):
    pieces = [bytes([65 + i]) * (i * 7 + 1) for i in range(15)]
    c = RawConn(srv)
    c.send(request("POST", "/chunks", [("Transfer-Encoding", "chunked")]))
    c.send_slowly(chunked(*pieces), piece=5, delay=0.005)
    r = c.response()
    assert r.status == 200 and r.body == b"".join(pieces)


# ------------------------------------------------------------ 100-continue

def test_expect_continue_when_handler_reads_body(srv):
    c = RawConn(srv)
    c.send(request("POST", "/body", [("Content-Length", "11"), ("Expect", "100-continue")]))
    interim = c.response(allow_interim=True)
    assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello world")
    r = c.response()
    assert r.status == 200 and r.body == b"hello world"
    # the connection carries on
    c.send(request("GET", "/echo/1"))
    assert c.response().body == b"n=1 v=1.1"


def test_expect_continue_with_curl(srv, tmp_path):
    data = tmp_path / "body.bin"
    data.write_bytes(b"z" * 3000)
    rc, out, err = curl("-v", "-H", "Expect: 100-continue", "--data-binary", f"@{data}",
                        srv.url + "/body")
    assert rc == 0, err
    assert "< HTTP/1.1 100 Continue" in err
    assert "< HTTP/1.1 200 OK" in err
    assert out == b"z" * 3000


def test_expect_continue_refused_without_reading(srv):
    """A handler that answers without reading the body (401) sends no 100,
    says it closes, and closes: the client never has to send the body."""
    c = RawConn(srv)
    c.send(request("POST", "/deny", [("Content-Length", "5"), ("Expect", "100-continue")]))
    r = c.response()  # fails on a 100 Continue
    assert r.status == 401 and r.body == b"no"
    assert r.header("WWW-Authenticate") == "Basic"
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()
    srv.wait_log("deny route answered without reading")


def test_expect_continue_over_route_limit_gets_413_without_100(srv):
    c = RawConn(srv)
    c.send(request("POST", "/small", [("Content-Length", "11"), ("Expect", "100-continue")]))
    r = c.response()
    assert r.status == 413
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()


def test_expect_continue_within_route_limit(srv):
    c = RawConn(srv)
    c.send(request("POST", "/small", [("Content-Length", "10"), ("Expect", "100-continue")]))
    assert c.response(allow_interim=True).status == 100
    c.send(b"0123456789")
    r = c.response()
    assert r.status == 200 and r.body == b"0123456789"


# -------------------------------------------------------------------- HEAD

def test_head_has_get_headers_and_no_body(srv):
    c = RawConn(srv)
    c.send(request("GET", "/fixed"))
    get = c.response()
    c.send(request("HEAD", "/fixed"))
    head = c.response(head_request=True)
    assert get.status == head.status == 200
    assert get.body == b"0123456789abcdef"
    strip = lambda r: [(k, v) for k, v in r.header_list if k.lower() != "date"]
    assert strip(head) == strip(get)
    assert head.header("Content-Length") == "16"
    # no body bytes follow the HEAD answer: the next response parses cleanly
    c.send(request("GET", "/echo/1"))
    assert c.response().body == b"n=1 v=1.1"


def test_head_with_curl_and_requests(srv):
    rc, out, err = curl("-I", srv.url + "/fixed")
    assert rc == 0, err
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 16\r\n" in out
    assert out.endswith(b"\r\n\r\n")
    r = requests.head(srv.url + "/fixed")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == "16"
    assert r.headers["X-Custom"] == "yes"


@pytest.mark.parametrize("path,status", [("/stream", 200), ("/nowhere", 404), ("/nocontent", 204)])
def test_head_never_sends_a_body(srv, path, status):
    c = RawConn(srv)
    c.send(request("HEAD", path))
    r = c.response(head_request=True)
    assert r.status == status
    c.send(request("GET", "/echo/1"))
    r2 = c.response()
    assert r2.body == b"n=1 v=1.1", f"bytes after the HEAD answer: {r2.raw!r}"


@pytest.mark.parametrize("path,status,ctype", [
    ("/nocontent", 204, None),
    ("/nocontent/json", 204, None),
    ("/notmodified", 304, None),
    ("/notmodified/typed", 304, "text/css"),  # set by the app: kept
])
def test_bodyless_statuses_carry_no_default_type_or_length(srv, path, status, ctype):
    """RFC 9110: no Content-Length on a 204 (nor a 304 of nothing), and no
    body; a type describes content, so none is made up for them."""
    c = RawConn(srv)
    c.send(request("GET", path))
    r = c.response(head_request=True)  # read the head only: no body may follow
    assert r.status == status
    assert r.header("Content-Type") == ctype, r.raw
    assert r.header("Content-Length") is None, r.raw
    assert r.header("Transfer-Encoding") is None, r.raw
    c.send(request("GET", "/echo/1"))
    assert c.response().body == b"n=1 v=1.1"


# ---------------------------------------------------------- Date and Server

def check_date_server(r):
    date = r.header("Date")
    assert date and IMF_FIXDATE_RE.match(date), f"bad Date {date!r} in {r.raw[:200]!r}"
    when = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(when - time.time()) < 300, date
    assert r.header("Server") and r.header("Server").startswith("moonwire/"), r.raw[:200]
    assert r.names().count("date") == 1 and r.names().count("server") == 1


@pytest.mark.parametrize("raw,status,head", [
    (request("GET", "/echo/1"), 200, False),
    (request("GET", "/stream"), 200, False),
    (request("GET", "/nocontent"), 204, False),
    (request("HEAD", "/fixed"), 200, True),
    (request("GET", "/nowhere"), 404, False),
    (request("DELETE", "/fixed"), 405, False),
    (request("GET", "/raise"), 500, False),
    (request("GET", "/a%zz"), 400, False),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, False),
    (request("POST", "/small", [("Content-Length", "100")]), 413, False),
    (request("GET", "/", [("X-Big", "x" * 20000)]), 431, False),
    (request("GET", "/", version="HTTP/2.0"), 505, False),
])
def test_date_and_server_on_every_response(srv, raw, status, head):
    c = RawConn(srv)
    c.send(raw)
    r = c.response(head_request=head)
    assert r.status == status
    check_date_server(r)


# ---------------------------------------------------------------- listening

def test_ipv4_listen(srv):
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    assert requests.get(srv.url + "/addr").text == "127.0.0.1"


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 is not configured on this machine")
def test_ipv6_listen(start):
    srv = start(APP, listen="[::1]:0")
    assert srv.url == f"http://[::1]:{srv.port}"
    assert srv.host == "::1"
    rc, out, err = curl("-g", f"http://[::1]:{srv.port}/addr")
    assert rc == 0, err
    assert out == b"::1"
    c = RawConn("::1", srv.port)
    c.send(request("GET", "/echo/6"))
    assert c.response().body == b"n=6 v=1.1"


# ------------------------------------------------------- malformed requests

MALFORMED = {
    "garbage request line": b"HELLO WORLD\r\n\r\n",
    "bad version": b"GET / HTTP/1.x\r\nHost: t\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost: t\r\nX-Name : v\r\n\r\n",
    "tab before colon": b"GET / HTTP/1.1\r\nHost: t\r\nX-Name\t: v\r\n\r\n",
    "bad header name": b"GET / HTTP/1.1\r\nHost: t\r\nBad(Name): x\r\n\r\n",
    "bare LF in header value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    "invalid chunk size": request("POST", "/body", [("Transfer-Encoding", "chunked")],
                                  b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk size overflow": request("POST", "/body", [("Transfer-Encoding", "chunked")],
                                   b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "chunk without CRLF": request("POST", "/body", [("Transfer-Encoding", "chunked")],
                                  b"3\r\nabcX0\r\n\r\n"),
    "negative content-length": request("POST", "/body", [("Content-Length", "-1")]),
    "two content-lengths": request("POST", "/body", [("Content-Length", "3"),
                                                      ("Content-Length", "4")], b"abcd"),
    "bad percent-escape": request("GET", "/echo/%zz"),
    "truncated percent-escape": request("GET", "/echo/%2"),
    "%00 in path": request("GET", "/echo/a%00b"),
    "dot-dot above root": request("GET", "/../x"),
    "dot-dot above root, deeper": request("GET", "/echo/../../x"),
    "escaped dot-dot above root": request("GET", "/%2e%2e/x"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_400_and_close(srv, name):
    c = RawConn(srv)
    # a good request behind the bad one must not be answered
    c.send(MALFORMED[name] + request("GET", "/echo/behind"))
    r = c.response()
    assert r.status == 400, r
    assert r.header("Connection") == "close"
    assert c.closed_by_peer(), "connection left open after a 400"
    # the server is fine
    assert requests.get(srv.url + "/echo/1").text == "n=1 v=1.1"


@pytest.mark.parametrize("te", ["chunked", "gzip, chunked"])
def test_content_length_with_transfer_encoding_is_refused(srv, te):
    """Request smuggling: a front end honouring Content-Length would see one
    request, a back end honouring chunked two. Refuse, and never answer the
    request hidden in the body."""
    hidden = request("GET", "/secret")
    body = b"0\r\n\r\n" + hidden
    c = RawConn(srv)
    c.send(request("POST", "/", [("Content-Length", str(len(body))), ("Transfer-Encoding", te)], body))
    r = c.response()
    assert r.status == 400
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()
    assert requests.get(srv.url + "/echo/1").status_code == 200
    assert "SMUGGLED" not in srv.log()
    assert "POST / read" not in srv.log()


# ----------------------------------------------------------- handler errors

ID_RE = re.compile(rb"^500 Internal Server Error \(request ([0-9a-f]+-\d+)\)\n$")


@pytest.mark.parametrize("path,marker", [("/raise", 'error("SECRET_DETAIL_"'),
                                         ("/boom", "return t.field")])
def test_handler_error_is_a_500_naming_the_request_id(srv, path, marker):
    c = RawConn(srv)
    c.send(request("GET", path))
    r = c.response()
    assert r.status == 500
    m = ID_RE.match(r.body)
    assert m, f"500 body does not name the request id: {r.body!r}"
    rid = m.group(1).decode()
    assert b"SECRET" not in r.raw and b"nil" not in r.body and b"lua" not in r.body
    # the traceback, with file:line of the failing line, is in the log
    line = app_line(marker)
    srv.wait_log(rf"\[error\] .*{re.escape(rid)}.*protocol\.lua:{line}:")
    srv.wait_log(r"stack traceback:")
    srv.wait_log(rf"protocol\.lua:{line}: in ")
    # another connection is served normally
    r2 = requests.get(srv.url + "/echo/2")
    assert r2.status_code == 200 and r2.text == "n=2 v=1.1"


def test_handler_error_details_shown_with_reload(start):
    srv = start(APP, "--reload")
    r = requests.get(srv.url + "/raise")
    assert r.status_code == 500
    m = re.search(r"\(request ([0-9a-f]+-\d+)\)", r.text)
    assert m
    assert f"SECRET_DETAIL_{m.group(1)}" in r.text
    assert f"protocol.lua:{app_line('SECRET_DETAIL_')}" in r.text


@pytest.mark.parametrize("kind", ["crlf", "lf", "cr", "nul", "name", "list"])
def test_bad_header_from_lua_is_a_500_and_never_reaches_the_wire(srv, kind):
    c = RawConn(srv)
    c.send(request("GET", f"/badheader/{kind}"))
    r = c.response()
    assert r.status == 500
    assert ID_RE.match(r.body), r.body
    assert b"Injected" not in r.raw and b"X-Bad" not in r.raw
    assert b"should not be sent" not in r.raw
    # exactly one response, and the connection still parses
    c.send(request("GET", "/echo/1"))
    assert c.response().body == b"n=1 v=1.1"
    srv.wait_log(rf"protocol\.lua:{app_line('res:header(h[1], h[2])')}:")
