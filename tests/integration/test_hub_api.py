"""Argument rules of the hub's Lua API: channel names are strings (or
channel objects), errors name what was wrong, and a stream asked for
after its client left is a closed one, not nil."""
import socket
import time

import requests

APP = '''
local mw = require "moonwire"
local app = mw.app()
local function try(fn, ...)
  local ok, err = pcall(fn, ...)
  return ok and "ok" or tostring(err)
end
app:get("/number-name", function(req, res)
  res:send(try(mw.publish, 5, "x"))
end)
app:get("/since", function(req, res)
  res:send(try(function() return mw.channel("c"):wait{ since = -1 } end))
end)
app:get("/late", function(req, res)
  mw.sleep(0.3)              -- the client is gone by now
  local s = res:sse{}
  GOT = { type(s), s:closed(), s:send("x"), s:subscribe("late") }
end)
app:get("/late-result", function(req, res) res:json(GOT or mw.json.null) end)
return app
'''


def test_a_number_is_not_a_channel_name(start):
    srv = start(APP)
    assert "channel or channel name expected, got number" in requests.get(srv.url + "/number-name").text


def test_since_errors_say_what_was_wrong(start):
    srv = start(APP)
    assert "since must be a message id (an integer >= 0), got -1" in requests.get(srv.url + "/since").text


def test_res_sse_after_the_client_left_gives_a_closed_stream(start):
    srv = start(APP)
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    s.close()
    deadline = time.time() + 10
    got = None
    while time.time() < deadline:
        got = requests.get(srv.url + "/late-result").json()
        if got:
            break
        time.sleep(0.05)
    assert got == ["userdata", True, False, False]
    assert "attempt to index" not in srv.log()
