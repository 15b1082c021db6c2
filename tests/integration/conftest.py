"""Shared fixtures: start the real moonwire binary with a test app and
check, when it stops, that it exited cleanly with no sanitizer report.

    def test_hello(start):
        srv = start('''
            local mw = require "moonwire"
            local app = mw.app()
            app:get("/", function(req, res) res:send("hi") end)
            return app
        ''')
        assert requests.get(srv.url + "/").text == "hi"
"""
import os
import re
import resource
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = os.environ.get("MOONWIRE_BIN", str(ROOT / "build" / "moonwire"))
SANITIZED = os.environ.get("MOONWIRE_SANITIZE") == "1"
APPS = HERE.parent / "apps"
SANITIZER_RE = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|leak check failed)")


def need_fds(n):
    """Raises this process's open-file limit to n (servers started after
    inherit it); skips the test when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


class Server:
    """A running moonwire process; its stderr is collected as it comes."""

    def __init__(self, args, cwd=None, env=None, wait=True, bin=None):
        self.args = args
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            [bin or BIN] + args, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._err = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self.url = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._out.start()
        if wait:
            if not self._listening.wait(30):
                self.proc.kill()
                raise RuntimeError("moonwire did not start:\n" + self.log())
            m = re.search(r"http://(\[[^\]]+\]|[^:]+):(\d+)", self.url)
            self.host, self.port = m.group(1).strip("[]"), int(m.group(2))

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._err.append(line)
            m = re.match(r"moonwire listening on (\S+)", line)
            if m:
                self.url = m.group(1)
                self._listening.set()

    def log(self):
        with self._lock:
            return "".join(self._err)

    def wait_log(self, pattern, timeout=10):
        """Waits until stderr matches pattern; returns the match."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError(f"log never matched {pattern!r}:\n{self.log()}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the server and returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("moonwire did not stop in time:\n" + self.log())
        self._reader.join(5)
        return code

    def check_clean(self):
        log = self.log()
        assert not SANITIZER_RE.search(log), "sanitizer report:\n" + log


def write_app(tmp_path, source, name="app.lua"):
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def start(tmp_path):
    """start(source_or_path, *args, listen="127.0.0.1:0", env=None) -> Server.
    A string with a newline is app source written to tmp_path/app.lua; else
    a path (relative ones resolve against tests/apps/)."""
    servers = []

    def _start(app, *args, listen="127.0.0.1:0", env=None, wait=True, cwd=None):
        if "\n" in str(app):
            path = write_app(tmp_path, app)
        else:
            path = Path(app)
            if not path.is_absolute():
                path = APPS / path
        argv = list(args)
        if listen:
            argv = ["-l", listen] + argv
        srv = Server(argv + [str(path)], cwd=cwd, env=env, wait=wait)
        servers.append(srv)
        return srv

    yield _start
    for srv in servers:
        if srv.proc.poll() is None:
            code = srv.stop()
            assert code == 0, f"moonwire exited with {code}:\n{srv.log()}"
        srv.check_clean()


def run_moonwire(*args, timeout=30, cwd=None):
    """Runs the binary to completion: (exit code, stdout, stderr)."""
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def publish(srv, ch, data, kind=None):
    """POST /pub/CH?kind=KIND with data as the body, as the SSE and
    long-poll test apps take it; returns the message id."""
    params = {"kind": kind} if kind else None
    r = requests.post(f"{srv.url}/pub/{ch}", data=data, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def wait_for(cond, timeout=10, interval=0.02, what="condition"):
    """Polls cond() until it returns something truthy; returns that."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
