"""Install and packaging: `cpack` makes a Debian package that, unpacked
into an empty root with dpkg-deb -x, runs on its own: the binary finds the
lualib installed beside it (not this source tree), an example app serves,
and its man page renders."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import Server

BUILD = Path(os.environ.get("MOONWIRE_BIN", "")).parent if os.environ.get("MOONWIRE_BIN") else None


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if BUILD is None or not (BUILD / "CMakeCache.txt").exists():
        pytest.fail("MOONWIRE_BIN must point into a CMake build directory")
    out = tmp_path_factory.mktemp("pkg")
    p = subprocess.run(["cpack", "-B", str(out)], cwd=BUILD, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    debs = list(out.glob("moonwire_*.deb"))
    assert len(debs) == 1, p.stdout
    info = subprocess.run(["dpkg-deb", "--info", str(debs[0])], capture_output=True, text=True)
    assert "Package: moonwire" in info.stdout and "Depends: libuv1" in info.stdout
    r = out / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(r)], check=True)
    return r


def test_version_runs_from_the_unpacked_root(root):
    p = subprocess.run([str(root / "usr/bin/moonwire"), "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("moonwire ")


def test_an_example_app_serves_with_the_installed_lualib(root, tmp_path):
    app = tmp_path / "app.lua"
    app.write_text('''
        local mw = require "moonwire"
        local app = mw.app()
        app:get("/where", function(req, res)
          res:send(package.searchpath("moonwire.app", package.path))
        end)
        return app
    ''')
    env = {k: v for k, v in os.environ.items() if k != "MOONWIRE_LUALIB"}
    binary = str(root / "usr/bin/moonwire")
    srv = Server(["-l", "127.0.0.1:0", str(app)], env=env, bin=binary)
    try:
        where = requests.get(f"http://127.0.0.1:{srv.port}/where", timeout=10).text
        assert where.startswith(str(root / "usr/share/moonwire/lualib")), where
    finally:
        assert srv.stop() == 0
    # and a shipped example runs as is
    srv = Server(["-l", "127.0.0.1:0", str(root / "usr/share/moonwire/examples/hello/app.lua")],
                 env=env, bin=binary)
    try:
        r = requests.get(f"http://127.0.0.1:{srv.port}/hello/deb", timeout=10)
        assert r.status_code == 200 and "deb" in r.text
    finally:
        assert srv.stop() == 0


def test_the_man_page_renders(root):
    page = root / "usr/share/man/man1/moonwire.1.gz"
    assert page.exists()
    if not shutil.which("man"):
        pytest.fail("man is not installed (scripts/setup --test installs man-db)")
    p = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                       env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
    assert p.returncode == 0
    for word in ("--listen", "--reload", "--check", "SIGHUP", "EXIT STATUS"):
        assert word in p.stdout
