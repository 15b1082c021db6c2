"""Headless Chromium on the pages people see first: the showcase's four
panels (a message sent from a panel reaches the SSE, WebSocket and
long-poll panels with the same id), the chat example between two
browsers, and live reload in --reload mode (the page reloads itself when
its HTML changes, and shows the load error when the script breaks).
Screenshots go to tests/artifacts/. Driven by tests/browser/pages.js
(playwright-core with Debian's /usr/bin/chromium); never skipped."""
import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "tests" / "artifacts"
NODE = "/usr/bin/node"
CHROMIUM = "/usr/bin/chromium"


def run_pages(*args):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run scripts/setup --test"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core missing: run scripts/setup --test"
    p = subprocess.run([NODE, str(BROWSER_DIR / "pages.js"), *map(str, args)], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, CHROMIUM=CHROMIUM))
    assert p.returncode == 0, f"browser script failed:\n{p.stderr}\n{p.stdout}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_showcase_panels_share_one_message_id(start):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "showcase.png"
    srv = start(str(ROOT / "examples" / "showcase" / "app.lua"))
    report = run_pages("showcase", srv.url, shot)
    assert len(set(report["ids"].values())) == 1, report
    assert len(set(report["ids2"].values())) == 1, report
    assert int(report["ids2"]["sse"]) > int(report["ids"]["sse"])
    assert report["errors"] == []
    assert shot.stat().st_size > 10000


def test_chat_between_two_browsers(start):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "chat.png"
    srv = start(str(ROOT / "examples" / "chat" / "app.lua"))
    report = run_pages("chat", srv.url, shot)
    assert report["seen"] and report["errors"] == []


def test_page_reloads_itself_and_shows_load_errors(start, tmp_path):
    app = tmp_path / "site"
    (app / "public").mkdir(parents=True)
    (app / "public" / "index.html").write_text("<!doctype html><html><body><h1>version one</h1></body></html>")
    (app / "app.lua").write_text(
        'local mw = require "moonwire"\nlocal app = mw.app()\napp:static("/", "public")\nreturn app\n')
    srv = start(str(app / "app.lua"), "--reload")
    report = run_pages("reload", srv.url, app)
    assert report["reloaded"] and "previous version is still serving" in report["error"]
