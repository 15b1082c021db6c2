"""Headless Chromium on the pages people see first: the showcase's four
panels (a message sent from a panel reaches the SSE, WebSocket and
long-poll panels with the same id), the chat example between two
browsers, live reload in --reload mode (the page reloads itself when
its HTML changes, and shows the load error when the script breaks), and
the todo, dashboard, live-feed and notifications examples used the way a
person would, through their own forms and buttons.
Screenshots go to tests/artifacts/. Driven by tests/browser/pages.js
(playwright-core with Debian's /usr/bin/chromium); never skipped."""
import json
import os
import re
import subprocess
from pathlib import Path

import requests

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


def example(start, name):
    ARTIFACTS.mkdir(exist_ok=True)
    return start(str(ROOT / "examples" / name / "app.lua")), ARTIFACTS / f"{name}.png"


def test_todo_page_adds_ticks_deletes_and_keeps_its_list(start):
    srv, shot = example(start, "todo")
    r = run_pages("todo", srv.url, shot)
    assert r["refused"] == "title must not be empty", r
    first, second = r["added"]
    assert not first["done"] and not second["done"] and first["id"] != second["id"], r
    # the first ticked (and struck through), the second gone
    assert r["shown"] == [dict(first, done=True, struck=True)], r
    assert r["doneFilter"] == r["shown"], r
    assert r["reloaded"] == r["shown"], r
    assert r["error"] == ""
    # the server's API says what the page shows
    api = requests.get(srv.url + "/todos", timeout=5).json()
    assert api == [{"id": t["id"], "title": t["title"], "done": t["done"]} for t in r["shown"]]
    assert requests.get(f"{srv.url}/todos/{second['id']}", timeout=5).status_code == 404
    assert requests.get(srv.url + "/todos?done=false", timeout=5).json() == []
    assert r["errors"] == []
    assert shot.stat().st_size > 10000


def test_dashboard_charts_update_live(start):
    srv, shot = example(start, "dashboard")
    r = run_pages("dashboard", srv.url, shot)
    assert r["lastId"] >= r["firstId"] + 2, r
    assert all(v != "\u2013" for v in r["values"].values()), r
    # each canvas has its line drawn, in its colour
    assert all(n > 0 for n in r["pixels"].values()), r
    assert not r["blank"]
    # every sample since the first arrived once: history, then live
    assert r["state"]["count"] == r["state"]["lastId"] and r["state"]["reconnects"] == 0, r
    assert r["loadAfter"] >= 60, r
    latest = requests.get(srv.url + "/api/metrics", timeout=5).json()
    assert latest["id"] >= r["state"]["lastId"]
    assert r["errors"] == []
    assert shot.stat().st_size > 10000


def test_live_feed_page_gets_posts_with_ids_and_resumes(start):
    srv, shot = example(start, "live-feed")
    r = run_pages("live-feed", srv.url, shot)
    assert r["cleared"], r
    assert r["outsideId"] == f"#{r['outsideAnswer']['id']}", r
    assert r["missedId"] == f"#{r['missedAnswer']['id']}", r
    # the browser reconnected by itself, from the last id it had
    assert r["lastEventIds"] == [r["lastIdAtDrop"]], r
    # every event once, in order, no gap: ids count down by one from the top
    ids = [int(row["id"].lstrip("#")) for row in r["rows"]]
    assert ids == list(range(len(ids), 0, -1)), r
    assert r["counted"] == len(ids) and r["notes"] == [], r
    held = requests.get(srv.url + "/history?since=0", timeout=5).json()["messages"]
    posts = {m["id"]: json.loads(m["data"])["text"] for m in held if json.loads(m["data"])["type"] == "post"}
    assert {f"#{i}": t for i, t in posts.items()} == {
        r["typedId"]: r["typed"], r["outsideId"]: r["outside"], r["missedId"]: r["missed"]}
    assert r["errors"] == []
    assert shot.stat().st_size > 10000


def test_notifications_page_gets_them_through_held_polls(start):
    srv, shot = example(start, "notifications")
    r = run_pages("notifications", srv.url, shot)
    texts = r["texts"]
    # all four, oldest at the bottom, each once, ids 1..4
    assert r["inbox"] == [{"id": f"#{i + 1}", "text": t} for i, t in reversed(list(enumerate(texts)))], r
    assert [a["id"] for a in r["answers"]] == [3, 4]
    # the first two were sent while a poll was open, and that poll answered
    # them: its request went out before the POST, its answer came after
    wire = r["wire"]
    for (h, url) in zip(r["held"], ["/poll?since=0", "/poll?since=1"]):
        assert h["url"] == url, r
        m = re.fullmatch(rf"GET {re.escape(url)}  held (\d+\.\d) s \u2192 1 notification\(s\)", h["line"])
        assert m and float(m.group(1)) >= 0.5, h   # the script waited 0.5 s before sending
        asked = wire.index(f"GET {url}")
        sent = wire.index("POST /notify", asked)
        assert asked < sent < wire.index(f"200 {url}"), wire
    assert r["wireLog"][0].endswith("held\u2026"), r   # and the next one is held again
    polled = requests.get(srv.url + "/poll?since=0", timeout=5).json()
    assert [m["data"] for m in polled["messages"]] == texts
    assert r["errors"] == []
    assert shot.stat().st_size > 10000
