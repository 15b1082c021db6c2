"""Headless Chromium's EventSource against a moonwire page (DESIGN.md,
"SSE"): it receives events, and when the server ends the stream with
stream:close() the browser reconnects by itself, sends Last-Event-ID and
resumes with no gap and no duplicate, messages published during the gap
included. Driven by tests/browser/sse_resume.js (playwright-core with
Debian's /usr/bin/chromium; `scripts/setup --test` installs both). A
missing browser or node module fails the test: it is never skipped."""
import json
import os
import subprocess
from pathlib import Path

import requests

from conftest import ROOT

BROWSER_DIR = ROOT / "tests" / "browser"
NODE = "/usr/bin/node"
CHROMIUM = "/usr/bin/chromium"


def test_eventsource_reconnects_and_resumes_without_gap_or_duplicate(start):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run scripts/setup --test"
    assert Path(NODE).exists(), f"{NODE} missing: run scripts/setup --test"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core missing: run scripts/setup --test (npm ci in tests/browser)"
    srv = start("browser_sse/app.lua")
    p = subprocess.run([NODE, str(BROWSER_DIR / "sse_resume.js"), srv.url], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, CHROMIUM=CHROMIUM))
    assert p.returncode == 0, f"browser script failed:\n{p.stderr}\n{p.stdout}\n{srv.log()}"
    report = json.loads(p.stdout.strip().splitlines()[-1])

    want = [("1", "m1"), ("2", "m2"), ("3", "m3"), ("4", "gap1"), ("5", "gap2"),
            ("6", "m6"), ("7", "m7"), ("8", "m8")]
    got = [(e["id"], e["data"]) for e in report["received"]]
    assert got == want  # every message once, in order, across the reconnect
    assert report["dom"] == [f"{i} {d}" for i, d in want]  # what the page shows
    assert report["opens"] == 2 and report["errors"] >= 1
    # the second connection resumed from the last id the browser had
    assert requests.get(srv.url + "/conns", timeout=10).json() == ["", "3"]
