"""Every Lua code sample in README.md and docs/*.md runs here, so the docs
cannot rot; so does the nginx configuration of docs/proxies.md (in front
of the showcase, when nginx is installed); JavaScript samples must parse
(node --check); and every relative link in the docs and the examples'
READMEs must lead to a file and, with a #fragment, to a heading.

Each fenced ```lua block is one of:

- **a whole app** (its last line is `return app`): written to a fresh
  folder (with the folders its `app:static` calls name, holding an
  index.html), checked with `moonwire --check`, started with the real
  binary, asked something, and stopped: it must exit 0 with nothing
  logged at [error] level. It is asked what the `<!-- check: ... -->`
  comments right after the block say, else every literal GET route and
  WebSocket route it has is tried (a 5xx, a WebSocket closed with 1011, or
  an error in the log fails it; a request still held after 2 s, a long
  poll, is fine).
- **a module** (`<!-- file: NAME.lua -->` right before the block): written
  beside every whole app of the same page that comes after it.
- **a fragment** (anything else): wrapped in a minimal app and loaded with
  `moonwire --check`; first at the top level, where it really runs (`mw`
  and `app` are real; a global the fragment names but does not define is
  a stub function), and if that fails, as the body of a handler
  `function(req, res)`, where it must at least compile.
- **not runnable**: `<!-- not-runnable: why -->` right before the block.

The check comment is `<!-- check: METHOD PATH [BODY] -> STATUS [TEXT] -->`,
where BODY and TEXT are JSON strings (BODY may be followed by `*N` to
repeat it) and TEXT must appear in the response's body. Several run in
order."""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import types
from pathlib import Path

import pytest
import requests
import websockets

from conftest import ROOT, run_moonwire

DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LINKED = DOCS + sorted((ROOT / "examples").glob("*/README.md"))
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
COMMENT = re.compile(r"^\s*<!--\s*(not-runnable|file|check)\s*:\s*(.*?)\s*-->\s*$")


class Block:
    def __init__(self, path, line, lang, code, before, after):
        self.path, self.line, self.lang, self.code = path, line, lang, code
        self.before, self.after = before, after  # [(kind, value)] of the adjacent comments

    @property
    def id(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def marked(self, kind):
        return [v for k, v in self.before if k == kind]

    @property
    def checks(self):
        return [v for k, v in self.after if k == "check"]

    @property
    def kind(self):
        if self.marked("not-runnable"):
            return "not-runnable"
        if self.marked("file"):
            return "module"
        lines = [l for l in self.code.strip().splitlines() if l.strip() and not l.strip().startswith("--")]
        return "app" if lines and lines[-1].strip() == "return app" else "fragment"


def parse(path):
    """The fenced blocks of a markdown file, with the marker comments
    directly before (and, for checks, after) each."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        code = textwrap.dedent("\n".join(l[len(indent):] if l.startswith(indent) else l
                                         for l in lines[i + 1:j])) + "\n"
        before, k = [], start - 1
        while k >= 0 and (not lines[k].strip() or COMMENT.match(lines[k])):
            c = COMMENT.match(lines[k])
            if c:
                before.insert(0, (c.group(1), c.group(2)))
            k -= 1
        after, k = [], j + 1
        while k < len(lines) and (not lines[k].strip() or COMMENT.match(lines[k])):
            c = COMMENT.match(lines[k])
            if c:
                after.append((c.group(1), c.group(2)))
            k += 1
        blocks.append(Block(path, start + 1, lang, code, before, after))
        i = j + 1
    return blocks


ALL_BLOCKS = [b for p in DOCS for b in parse(p)]
LUA = [b for b in ALL_BLOCKS if b.lang == "lua"]


def of_kind(kind):
    return [pytest.param(b, id=b.id) for b in LUA if b.kind == kind]


def modules_before(block):
    """name -> source of the modules declared on the block's page before it."""
    return {b.marked("file")[0]: b.code for b in LUA
            if b.path == block.path and b.line < block.line and b.kind == "module"}


def test_there_are_samples_and_markers_are_used_well():
    kinds = [b.kind for b in LUA]
    assert kinds.count("app") >= 20 and kinds.count("fragment") >= 5, kinds
    for b in LUA:
        for reason in b.marked("not-runnable"):
            assert len(reason) > 5, f"{b.id}: say why it cannot run"
        if b.checks:
            assert b.kind == "app", f"{b.id}: check comments only follow whole apps"
    # every marker comment belongs to a block: file and not-runnable just
    # before one, check just after one
    for p in DOCS:
        found = len(re.findall(r"<!--\s*(?:not-runnable|file|check)\s*:", p.read_text()))
        attached = sum(len([k for k, _ in b.before if k != "check"]) + len(b.checks) for b in parse(p))
        assert found == attached, f"{p.name}: a marker comment that belongs to no block"


# ------------------------------------------------------------- whole apps

CHECK = re.compile(r'^([A-Z]+)\s+(\S+)\s*(?:("(?:[^"\\]|\\.)*")(?:\*(\d+))?)?\s*->\s*(\d{3})\s*(".*")?$')


def run_check(base, check):
    m = CHECK.match(check)
    assert m, f"malformed check comment: {check!r}"
    method, path, body, times, status, text = m.groups()
    data = None
    if body is not None:
        data = json.loads(body) * int(times or 1)
    r = requests.request(method, base + path, data=data, timeout=(5, 10), stream=True)
    try:
        got = b""
        if text is not None:
            want = json.loads(text)
            deadline = time.time() + 5
            for chunk in r.iter_content(chunk_size=None):
                got += chunk
                if want.encode() in got or time.time() > deadline:
                    break
            assert want in got.decode("utf-8", "replace"), f"{check}: got {got[:500]!r}"
        assert r.status_code == int(status), f"{check}: got {r.status_code} {got[:300]!r}"
    finally:
        r.close()


def literal_routes(code):
    gets = [p for p in re.findall(r'app:get\(\s*"([^"]+)"', code) if ":" not in p and "*" not in p]
    for prefix, _folder in re.findall(r'app:static\(\s*"([^"]+)"\s*,\s*"([^"]+)"', code):
        gets.append(prefix.rstrip("/") + "/index.html")
    wss = [p for p in re.findall(r'app:ws\(\s*"([^"]+)"', code) if ":" not in p and "*" not in p]
    return gets, wss


def probe(srv, code):
    gets, wss = literal_routes(code)
    answered = held = 0
    for path in gets:
        try:
            r = requests.get(srv.url + path, timeout=(5, 2), stream=True)
        except requests.exceptions.ReadTimeout:
            held += 1  # a long poll
            continue
        with r:
            assert r.status_code < 500, f"GET {path}: {r.status_code}"
            answered += 1

    async def try_ws(path):
        # max_queue=None: keep reading while closing, or a socket that streams
        # (websocket.md's /count) would hold the close handshake up
        async with websockets.connect(f"ws://{srv.host}:{srv.port}{path}", max_queue=None,
                                      close_timeout=5) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except asyncio.TimeoutError:
                pass
            except websockets.ConnectionClosed as e:
                assert e.code != 1011, f"WebSocket {path} closed with 1011: {e.reason}"

    for path in wss:
        asyncio.run(try_ws(path))
        answered += 1
    assert answered or held or not (gets or wss)
    return answered


def app_folder(tmp_path, block):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.lua").write_text(block.code)
    for name, source in modules_before(block).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(source)
    for _prefix, sub in re.findall(r'app:static\(\s*"([^"]+)"\s*,\s*"([^"]+)"', block.code):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "index.html").write_text("<!doctype html><title>t</title><p>page</p>\n")
    return folder


@pytest.mark.parametrize("block", of_kind("app"))
def test_whole_app_runs(start, tmp_path, block):
    folder = app_folder(tmp_path, block)
    code, _, err = run_moonwire("--check", str(folder / "app.lua"))
    assert code == 0, f"{block.id}: --check failed:\n{err}"
    srv = start(str(folder / "app.lua"))
    if block.checks:
        for check in block.checks:
            run_check(srv.url, check)
    else:
        probe(srv, block.code)
    assert srv.stop() == 0, srv.log()
    assert "[error]" not in srv.log(), f"{block.id}: errors logged:\n{srv.log()}"


# -------------------------------------------------------------- fragments

TOP = """local mw = require "moonwire"
local app = mw.app()
local _ENV = setmetatable({}, { __index = function(_, name)
  local v = _G[name]
  if v == nil then v = function() end end   -- a name the sample leaves to the reader
  return v
end, __newindex = _G })
do
%s
end
return app
"""

IN_HANDLER = """local mw = require "moonwire"
local app = mw.app()
app:get("/__sample", function(req, res)
%s
end)
return app
"""


@pytest.mark.parametrize("block", of_kind("fragment"))
def test_fragment_loads(tmp_path, block):
    errors = []
    for name, wrapper in (("top level", TOP), ("handler body", IN_HANDLER)):
        path = tmp_path / name.replace(" ", "_") / "app.lua"
        path.parent.mkdir()
        path.write_text(wrapper % block.code)
        code, _, err = run_moonwire("--check", str(path))
        if code == 0:
            return
        errors.append(f"as {name}: {err.strip()}")
    pytest.fail(f"{block.id}: the sample does not load:\n" + "\n".join(errors)
                + "\n(mark it <!-- not-runnable: why --> if it cannot be)")


@pytest.mark.parametrize("block", of_kind("module"))
def test_module_compiles(tmp_path, block):
    path = tmp_path / "app.lua"
    path.write_text(IN_HANDLER % ("local function module()\n" + block.code + "\nend"))
    code, _, err = run_moonwire("--check", str(path))
    assert code == 0, f"{block.id}: {err}"
    assert any(b.kind == "app" and b.path == block.path and b.line > block.line for b in LUA), \
        f"{block.id}: a module no whole app on its page uses"


# ------------------------------------------------- the browser's side


def scripts_of(block):
    if block.lang in ("js", "javascript"):
        return [block.code]
    return re.findall(r"<script(?:\s[^>]*)?>(.*?)</script>", block.code, re.S)


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL_BLOCKS
                                   if b.lang in ("js", "javascript", "html")])
def test_browser_sample_parses(tmp_path, block):
    """JavaScript samples, and the scripts in HTML samples, at least parse."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (scripts/setup --test installs it)")
    for i, script in enumerate(scripts_of(block)):
        path = tmp_path / f"sample{i}.js"
        path.write_text(script)
        p = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
        assert p.returncode == 0, f"{block.id}:\n{p.stderr}"


# ------------------------------------------------------------------ links


def slug(heading):
    s = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


# ------------------------------------------------------- nginx, for real


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx_in_front(start):
    """The showcase behind the nginx configuration of docs/proxies.md."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    blocks = [b for b in ALL_BLOCKS if b.lang == "nginx" and b.path.name == "proxies.md"]
    assert len(blocks) == 1, "docs/proxies.md should hold one complete nginx configuration"
    conf = blocks[0].code
    assert "127.0.0.1:8080" in conf and re.search(r"listen 80;", conf)
    srv = start(str(ROOT / "examples/showcase/app.lua"))
    port = free_port()
    conf = conf.replace("127.0.0.1:8080", f"127.0.0.1:{srv.port}")
    conf = re.sub(r"listen 80;", f"listen 127.0.0.1:{port};", conf)
    prefix = Path(tempfile.mkdtemp(prefix="moonwire-nginx-"))
    os.chmod(prefix, 0o755)  # nginx's workers may run as nobody
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir()
        os.chmod(prefix / sub, 0o777)
    (prefix / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{conf}
}}
""")
    t = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                       capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield srv, f"http://127.0.0.1:{port}", port
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(prefix, ignore_errors=True)


def test_the_nginx_configuration_carries_all_four_ways(nginx_in_front):
    from test_examples import SSE, Held  # the same clients the examples are tested with

    srv, base, port = nginx_in_front

    via = types.SimpleNamespace(host="127.0.0.1", port=port)  # where SSE() connects

    # a letter
    r = requests.get(base + "/api/time", timeout=10)
    assert r.status_code == 200 and "uptime" in r.json()
    assert requests.get(base + "/", timeout=10).headers["Content-Type"].startswith("text/html")

    async def scenario():
        # a phone call: the upgrade passes through
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            # a radio: each event arrives as it is published, not when the
            # stream ends
            sse = SSE(via, "/sse")
            try:
                assert sse.status == 200 and sse.event()["retry"] == "2000"
                last = requests.get(base + "/api/time", timeout=10).json()["last_id"]
                # a held letter: parked by moonwire, through nginx
                poll = Held("GET", f"{base}/poll?since={last}")
                await asyncio.sleep(0.3)
                t0 = time.time()
                r = requests.post(base + "/api/publish", json={"from": "nginx", "text": "through"},
                                  timeout=10)
                mid = r.json()["id"]
                ev = sse.message(timeout=5)
                assert int(ev["id"]) == mid and time.time() - t0 < 3
                env = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert env["id"] == mid
                answer = poll.get().json()
                assert [m["id"] for m in answer["messages"]] == [mid] and answer["held_ms"] >= 50
            finally:
                sse.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    # a plain GET on the WebSocket location still reaches moonwire, which says what is missing
    r = requests.get(base + "/ws", timeout=10)
    assert r.status_code == 400 and "Upgrade: websocket" in r.text
