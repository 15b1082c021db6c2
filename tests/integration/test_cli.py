"""The command line of DESIGN.md: options, exit codes (0 clean, 1 app or
listen failure, 2 usage), --check, the listening line, and graceful
shutdown on SIGINT/SIGTERM (in-flight requests finish, new connections
are refused, shutdown_timeout bounds it, a second signal forces it)."""
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import run_moonwire, write_app
from httpraw import RawConn, request

GOOD_APP = '''
    local mw = require "moonwire"
    local app = mw.app()
    app:get("/", function(req, res) res:send("ok") end)
    return app
'''

SLEEP_APP = '''
    local mw = require "moonwire"
    local app = mw.app(OPTIONS)
    app:get("/", function(req, res) res:send("ok") end)
    app:get("/sleep/:s", function(req, res)
      mw.log.info("handler sleeping %s", req.params.s)
      mw.sleep(tonumber(req.params.s))
      res:send("slept " .. req.params.s)
    end)
    return app
'''


def sleep_app(options=""):
    return SLEEP_APP.replace("OPTIONS", "{ " + options + " }" if options else "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line message, got:\n{err}"
    return lines[0]


# ---------------------------------------------------------------- options

@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(flag):
    code, out, err = run_moonwire(flag)
    assert code == 0, err
    assert re.match(r"^moonwire \d+\.\d+\.\d+\b", out), out
    assert "Lua 5.4" in out


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_mentions_every_option(flag):
    code, out, err = run_moonwire(flag)
    assert code == 0, err
    assert "usage: moonwire" in out and "APP.lua" in out
    for opt in ("-l", "--listen", "HOST:PORT", "--reload", "--check", "-v", "--version",
                "-h", "--help"):
        assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", out), f"--help does not mention {opt}"
    assert "SIGINT" in out and "SIGTERM" in out


@pytest.mark.parametrize("args,words", [
    (["--frobnicate", "app.lua"], "--frobnicate"),
    (["-x", "app.lua"], "-x"),
    ([], "no app"),
    (["-l"], "-l"),
    (["-l", "nonsense", "app.lua"], "nonsense"),
    (["-l", "127.0.0.1:99999", "app.lua"], "99999"),
    (["a.lua", "b.lua"], "b.lua"),
])
def test_usage_errors_exit_2(args, words):
    code, out, err = run_moonwire(*args)
    assert code == 2, (code, err)
    assert words in err
    assert "--help" in err
    assert "listening" not in err


def test_missing_app_file_exits_1_with_one_line(tmp_path):
    missing = tmp_path / "nope" / "app.lua"
    code, out, err = run_moonwire(str(missing))
    assert code == 1
    line = one_line(err)
    assert str(missing) in line
    assert out == ""


# ------------------------------------------------------------------ --check

def test_check_good_app(tmp_path):
    app = write_app(tmp_path, GOOD_APP)
    t0 = time.time()
    code, out, err = run_moonwire("--check", str(app))
    assert code == 0, err
    assert "listening" not in err
    assert time.time() - t0 < 10


def test_check_syntax_error_names_file_and_line(tmp_path):
    write_app(tmp_path, '''\
        local mw = require "moonwire"
        local app = mw.app()
        app:get("/", function(req, res)
          res:send("ok"
        end)
        return app
    ''')
    code, out, err = run_moonwire("--check", "app.lua", cwd=tmp_path)
    assert code == 1
    assert re.match(r"^moonwire: app\.lua:5: ", one_line(err)), err
    assert "listening" not in err


def test_check_runtime_error_at_load_names_file_and_line(tmp_path):
    app = write_app(tmp_path, '''\
        local mw = require "moonwire"
        local app = mw.app()
        local config = nil
        local port = config.port
        return app
    ''')
    code, out, err = run_moonwire("--check", "app.lua", cwd=tmp_path)
    assert code == 1
    assert re.match(r"^moonwire: app\.lua:4: attempt to index a nil value", err), err
    # with a full path too (Lua may shorten a long one from the left)
    code, out, err = run_moonwire("--check", str(app))
    assert code == 1
    assert re.search(r"app\.lua:4: ", err), err


def test_check_error_in_required_module_names_its_file_and_line(tmp_path):
    write_app(tmp_path, '''\
        local M = {}
        error("broken helper module")
        return M
    ''', name="helper.lua")
    app = write_app(tmp_path, '''\
        local mw = require "moonwire"
        local helper = require "helper"
        return mw.app()
    ''')
    code, out, err = run_moonwire("--check", str(app))
    assert code == 1
    assert re.search(r"helper\.lua:2: broken helper module", err), err


def test_app_load_error_without_check_exits_1(tmp_path):
    write_app(tmp_path, 'error("no good")\n')
    code, out, err = run_moonwire("-l", "127.0.0.1:0", "app.lua", cwd=tmp_path)
    assert code == 1
    assert re.match(r"^moonwire: app\.lua:1: no good", err), err
    assert "listening" not in err


# -------------------------------------------------------------- listening

def test_prints_listening_line(start):
    port = free_port()
    srv = start(GOOD_APP, listen=f"127.0.0.1:{port}")
    assert f"moonwire listening on http://127.0.0.1:{port}\n" in srv.log()
    assert srv.url == f"http://127.0.0.1:{port}"
    assert requests.get(srv.url + "/").text == "ok"


def test_listen_long_option_and_localhost(start):
    port = free_port()
    srv = start(GOOD_APP, "--listen", f"localhost:{port}", listen=None)
    assert srv.url == f"http://127.0.0.1:{port}"
    assert requests.get(srv.url + "/").text == "ok"


def test_port_in_use_exits_1_with_one_line(tmp_path):
    app = write_app(tmp_path, GOOD_APP)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, out, err = run_moonwire("-l", f"127.0.0.1:{port}", str(app))
    assert code == 1
    line = one_line(err)
    assert str(port) in line and "listening" not in line


# -------------------------------------------------------- graceful shutdown

class InFlight(threading.Thread):
    """One raw request in a thread; .response or .error when done."""

    def __init__(self, srv, path):
        super().__init__(daemon=True)
        self.conn = RawConn(srv, timeout=30)
        self.path = path
        self.response = self.error = None
        self.done_at = None

    def run(self):
        try:
            self.conn.send(request("GET", self.path))
            self.response = self.conn.response(timeout=30)
            self.closed = self.conn.closed_by_peer(timeout=10)
            self.conn.close()  # or the server lingers for our FIN
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.done_at = time.time()


def connect_refused(srv, within=5):
    """True once connecting fails with ECONNREFUSED (polls for `within` s)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            socket.create_connection((srv.host, srv.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_graceful_shutdown_finishes_in_flight_request(start, sig):
    srv = start(sleep_app())
    idle = RawConn(srv)  # an idle keep-alive connection is closed at once
    idle.send(request("GET", "/"))
    assert idle.response().body == b"ok"
    inflight = InFlight(srv, "/sleep/1")
    inflight.start()
    srv.wait_log("handler sleeping 1")
    t0 = time.time()
    srv.send_signal(sig)
    srv.wait_log(rf"{sig.name}: shutting down")
    assert connect_refused(srv), "new connections still accepted during shutdown"
    assert inflight.done_at is None, "in-flight request ended before the refusal check"
    assert idle.closed_by_peer(timeout=5)
    idle.close()
    code = srv.proc.wait(10)
    assert code == 0, srv.log()
    assert time.time() - t0 < 10
    inflight.join(10)
    assert inflight.error is None, inflight.error
    r = inflight.response
    assert r.status == 200 and r.body == b"slept 1"
    assert r.header("Connection") == "close"
    assert inflight.closed
    assert "stopped" in srv.log()


def test_shutdown_timeout_bounds_graceful_shutdown(start):
    srv = start(sleep_app("shutdown_timeout = 1"))
    inflight = InFlight(srv, "/sleep/30")
    inflight.start()
    srv.wait_log("handler sleeping 30")
    t0 = time.time()
    srv.send_signal(signal.SIGTERM)
    code = srv.proc.wait(15)
    elapsed = time.time() - t0
    assert code == 0, srv.log()
    assert elapsed < 5, f"took {elapsed:.1f}s with shutdown_timeout = 1"
    assert elapsed >= 0.9, "did not wait for the in-flight request"
    inflight.join(10)
    assert inflight.response is None  # cut off: no answer
    assert "still open after 1000 ms" in srv.log()


def test_second_signal_forces_exit(start):
    srv = start(sleep_app())  # default shutdown budget: 10 s
    inflight = InFlight(srv, "/sleep/30")
    inflight.start()
    srv.wait_log("handler sleeping 30")
    srv.send_signal(signal.SIGINT)
    srv.wait_log("SIGINT: shutting down")
    t0 = time.time()
    srv.send_signal(signal.SIGINT)
    code = srv.proc.wait(15)
    elapsed = time.time() - t0
    assert code == 0, srv.log()
    assert elapsed < 5, f"second SIGINT took {elapsed:.1f}s"
    inflight.join(10)
    assert inflight.response is None
