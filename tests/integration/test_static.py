"""app:static end to end: content types, validators and 304s, index files
and the slash redirect, dotfiles, traversal in every encoding we could
think of, symlinks, HEAD, and a large streamed file. Runs on a copy of
tests/apps/static with symlinks, a .git folder and a large file added."""
import hashlib
import os
import shutil
import socket
import time
from email.utils import formatdate, parsedate_to_datetime

import pytest
import requests

from conftest import APPS

SECRET = b"TOP SECRET"


@pytest.fixture
def site(tmp_path):
    """A copy of the static fixture app with what git cannot hold."""
    root = tmp_path / "static"
    shutil.copytree(APPS / "static", root, symlinks=True)
    pub = root / "public"
    (pub / ".git").mkdir()
    (pub / ".git" / "config").write_text("[core]\n")
    os.symlink("../secret.txt", pub / "link-out.txt")       # a file outside
    os.symlink(str(root / "secret.txt"), pub / "abs-out.txt")
    os.symlink("..", pub / "up")                             # a folder outside
    os.symlink("style.css", pub / "link-in.css")             # inside: fine
    os.symlink("sub", pub / "subdir-link")
    os.symlink("missing.txt", pub / "dangling.txt")
    big = os.urandom(1536 * 1024 + 123)                      # > 1 MiB, odd size
    (pub / "big.bin").write_bytes(big)
    return root, big


@pytest.fixture
def srv(start, site):
    root, _ = site
    return start(str(root / "app.lua"))


def raw(srv, request_line, headers=(), timeout=10):
    """Sends a request exactly as given; returns (status, {lower name: value},
    body bytes as received until the server closed)."""
    data = (request_line + "\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers)
            + "Connection: close\r\n\r\n").encode("latin-1")
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            out += piece
    head, sep, body = out.partition(b"\r\n\r\n")
    assert sep, out[:200]
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(": ", 1)
        assert k.lower() not in hdrs, f"{k} sent twice: {head!r}"
        hdrs[k.lower()] = v
    return int(lines[0].split(" ")[1]), hdrs, body


# ------------------------------------------------------------- plain files

@pytest.mark.parametrize("name, ctype", [
    ("index.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("data.json", "application/json"),
    ("logo.svg", "image/svg+xml"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("SHOUT.TXT", "text/plain; charset=utf-8"),
    ("img.png", "image/png"),
    ("README", "application/octet-stream"),
    ("big.bin", "application/octet-stream"),
])
def test_content_types(srv, site, name, ctype):
    root, _ = site
    r = requests.get(f"{srv.url}/static/{name}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype
    assert r.content == (root / "public" / name).read_bytes()


def test_file_bytes_and_headers(srv, site):
    root, _ = site
    path = root / "public" / "img.png"
    status, h, body = raw(srv, "GET /static/img.png HTTP/1.1")
    assert status == 200
    assert body == path.read_bytes(), "binary content intact"
    assert h["content-length"] == str(path.stat().st_size)
    st = path.stat()
    assert h["etag"] == 'W/"%x-%x.%x"' % (st.st_size, int(st.st_mtime), st.st_mtime_ns % 1000000000)
    assert h["last-modified"] == formatdate(int(st.st_mtime), usegmt=True)
    assert h["cache-control"] == "no-cache"
    # a mount's own cache_control
    assert raw(srv, "GET /plain/img.png HTTP/1.1")[1]["cache-control"] == "max-age=60"


def test_escaped_names_and_queries(srv):
    assert requests.get(srv.url + "/static/space%20name.txt").text == "a file with a space\n"
    assert requests.get(srv.url + "/static/style.css?v=123").text == "body { color: #333; }\n"
    assert requests.get(srv.url + "/static/%73tyle.css").text == "body { color: #333; }\n"
    assert requests.get(srv.url + "/other").text == "a route beside the files"


def test_missing_files_are_404(srv):
    for path in ["/static/nope.txt", "/static/sub/nope", "/static/style.css/extra",
                 "/static/dangling.txt", "/static/%252e%252e/secret.txt"]:
        r = requests.get(srv.url + path)
        assert r.status_code == 404, path


def test_only_get_and_head(srv):
    r = requests.post(srv.url + "/static/style.css", data="x")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"


# ------------------------------------------------------------ conditionals

def test_if_none_match_gives_304(srv):
    r = requests.get(srv.url + "/static/style.css")
    etag = r.headers["ETag"]
    for value in [etag, etag[2:], f'"nope", {etag}', "*"]:
        status, h, body = raw(srv, "GET /static/style.css HTTP/1.1", [f"If-None-Match: {value}"])
        assert status == 304, value
        assert body == b""
        assert h["etag"] == etag
        assert "content-length" not in h
    status, _, body = raw(srv, "GET /static/style.css HTTP/1.1", ['If-None-Match: "other"'])
    assert status == 200 and body == b"body { color: #333; }\n"


def test_if_modified_since_gives_304(srv):
    r = requests.get(srv.url + "/static/style.css")
    lm = r.headers["Last-Modified"]
    status, h, body = raw(srv, "GET /static/style.css HTTP/1.1", [f"If-Modified-Since: {lm}"])
    assert status == 304 and body == b""
    assert h["last-modified"] == lm
    # modified since an older date: the file
    older = formatdate(parsedate_to_datetime(lm).timestamp() - 3600, usegmt=True)
    status, _, body = raw(srv, "GET /static/style.css HTTP/1.1", [f"If-Modified-Since: {older}"])
    assert status == 200 and body == b"body { color: #333; }\n"
    # If-None-Match wins over If-Modified-Since
    status, _, _ = raw(srv, "GET /static/style.css HTTP/1.1",
                       ['If-None-Match: "other"', f"If-Modified-Since: {lm}"])
    assert status == 200


def test_if_modified_since_compares_dates(srv, site):
    root, _ = site
    path = root / "public" / "notes.txt"
    now = int(time.time())
    os.utime(path, (now - 100, now - 100))
    ims = lambda t: raw(srv, "GET /static/notes.txt HTTP/1.1", [f"If-Modified-Since: {t}"])[0]
    assert ims(formatdate(now - 100, usegmt=True)) == 304, "the same second"
    assert ims(formatdate(now - 50, usegmt=True)) == 304, "a later date"
    assert ims(formatdate(now - 101, usegmt=True)) == 200, "an earlier date"
    assert ims(formatdate(now + 3600, usegmt=True)) == 200, "a date in the future is ignored"
    assert ims("yesterday") == 200
    assert ims("Sunday, 06-Nov-94 08:49:37 GMT") == 200, "obsolete formats are ignored"


def test_a_changed_file_gets_new_validators(srv, site):
    root, _ = site
    path = root / "public" / "notes.txt"
    r1 = requests.get(srv.url + "/static/notes.txt")
    path.write_text("changed text, longer than before\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    r2 = requests.get(srv.url + "/static/notes.txt", headers={"If-None-Match": r1.headers["ETag"]})
    assert r2.status_code == 200
    assert r2.text == "changed text, longer than before\n"
    assert r2.headers["ETag"] != r1.headers["ETag"]


# ----------------------------------------------------------------- folders

def test_index_html_for_a_folder(srv):
    assert requests.get(srv.url + "/static/").text.endswith("<p>static index</p>\n")
    r = requests.get(srv.url + "/static/sub/")
    assert r.text == "<p>sub index</p>\n"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert requests.get(srv.url + "/static/subdir-link/").text == "<p>sub index</p>\n"


def test_a_folder_without_its_slash_redirects(srv):
    for path, location in [("/static/sub", "/static/sub/"), ("/static", "/static/"),
                           ("/static/sub?x=1&y=2", "/static/sub/?x=1&y=2")]:
        r = requests.get(srv.url + path, allow_redirects=False)
        assert r.status_code == 301, path
        assert r.headers["Location"] == location
    assert requests.get(srv.url + "/static/sub").text == "<p>sub index</p>\n"


def test_a_folder_without_an_index_is_404(srv):
    assert requests.get(srv.url + "/static/noindex/").status_code == 404
    assert requests.get(srv.url + "/plain/sub/").status_code == 404
    assert requests.get(srv.url + "/plain/sub").status_code == 404
    assert requests.get(srv.url + "/plain/sub/page.txt").text == "sub page\n"


# -------------------------------------------------------- refused requests

@pytest.mark.parametrize("path", [
    "/static/.hidden", "/static/.git/config", "/static/.git/", "/static/sub/.env",
    "/static/%2ehidden", "/static/%2Egit/config", "/static/sub/%2eenv",
])
def test_dotfiles_are_404(srv, path):
    status, _, body = raw(srv, f"GET {path} HTTP/1.1")
    assert status == 404
    assert b"hidden" not in body and b"core" not in body and b"SECRET" not in body


TRAVERSALS = [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt", "/static/%2e./secret.txt", "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt", "/static/..%2fsecret.txt", "/static/..%2Fsecret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt", "/static/%2e%2e%2fsecret.txt",
    "/static/%2e%2e%2f%2e%2e%2fsecret.txt", "/static/..%5csecret.txt", "/static/sub%5c..%5c..%5csecret.txt",
    "/static/%2fsecret.txt", "/static/%2f%2e%2e%2fsecret.txt", "/static//../secret.txt",
    "/static/%252e%252e/secret.txt", "/static/%c0%ae%c0%ae/secret.txt", "/static/..;/secret.txt",
    "/static/.../secret.txt", "/static/up/secret.txt", "/static/up/static/secret.txt",
    "/static/link-out.txt", "/static/abs-out.txt", "/static/up/", "/static/up",
    "/static/%2e%2e", "/static/sub/..%2f..%2fsecret.txt", "/static/./../secret.txt",
    "/plain/../secret.txt", "/plain/%2e%2e/secret.txt", "/plain/link-out.txt",
    "/static/" + "..%2f" * 8 + "etc/passwd", "/static/%2fetc%2fpasswd", "/static/%2f%2fetc/passwd",
    "http://x/static/../secret.txt", "http://x/static/%2e%2e%2fsecret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_escapes(srv, target):
    status, _, body = raw(srv, f"GET {target} HTTP/1.1")
    assert SECRET not in body, f"{target} leaked the secret"
    assert b"root:" not in body, f"{target} leaked /etc/passwd"
    assert status in (400, 404), (target, status)


def test_traversal_with_curl_path_as_is(srv):
    """The same attempts from a real client that sends paths untouched."""
    import subprocess
    for target in ["/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt",
                   "/static/link-out.txt", "/static/up/secret.txt"]:
        out = subprocess.run(["curl", "-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}",
                              f"http://{srv.host}:{srv.port}{target}"],
                             capture_output=True, timeout=20).stdout
        body, _, code = out.rpartition(b"\n")
        assert SECRET not in body, target
        assert code in (b"400", b"404"), (target, code)


def test_a_symlink_inside_the_folder_is_served(srv):
    r = requests.get(srv.url + "/static/link-in.css")
    assert r.status_code == 200
    assert r.text == "body { color: #333; }\n"
    assert r.headers["Content-Type"] == "text/css; charset=utf-8"


# ---------------------------------------------------------------- HEAD, big

@pytest.mark.parametrize("name", ["style.css", "img.png", "big.bin"])
def test_head_has_the_length_and_no_body(srv, site, name):
    root, _ = site
    size = (root / "public" / name).stat().st_size
    status, h, body = raw(srv, f"HEAD /static/{name} HTTP/1.1")
    assert status == 200
    assert h["content-length"] == str(size)
    assert body == b""
    assert "etag" in h and "last-modified" in h
    get_status, get_h, _ = raw(srv, f"GET /static/{name} HTTP/1.1")
    assert get_h["content-type"] == h["content-type"]


def test_head_on_a_folder_index(srv, site):
    root, _ = site
    status, h, body = raw(srv, "HEAD /static/sub/ HTTP/1.1")
    assert status == 200
    assert h["content-length"] == str((root / "public" / "sub" / "index.html").stat().st_size)
    assert body == b""


def test_a_large_file_streams_intact(srv, site):
    _, big = site
    status, h, body = raw(srv, "GET /static/big.bin HTTP/1.1")
    assert status == 200
    assert h["content-length"] == str(len(big))
    assert "transfer-encoding" not in h
    assert len(body) == len(big)
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    # and through a keep-alive client, twice on the same connection
    with requests.Session() as s:
        for _ in range(2):
            r = s.get(srv.url + "/static/big.bin")
            assert r.content == big
    # a small read window: the server waits for the client, not the reverse
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect((srv.host, srv.port))
        s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            if len(out) < 65536:
                time.sleep(0.001)
            piece = s.recv(16384)
            if not piece:
                break
            out += piece
    assert out.partition(b"\r\n\r\n")[2] == big
