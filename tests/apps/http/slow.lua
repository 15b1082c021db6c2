-- Fixture app for the slow-client tests in test_http_limits.py: handlers
-- stream to clients that read slowly or not at all. The queue limit is
-- small so writers must wait early, and send_timeout short so a client
-- that reads nothing is dropped fast. Handlers log their progress.
local mw = require "moonwire"
local app = mw.app { max_queued_bytes = 64 * 1024, send_timeout = 2 }

local CHUNK = string.rep("x", 16 * 1024)
local LIMIT = 128 * 1024 * 1024 -- a writer that never waits stops here

app:get("/ping", function(req, res) res:send("pong") end)

-- writes until the client is dropped
app:get("/flood", function(req, res)
  local written, waits = 0, 0
  -- runs however the handler ends: returned, or unwound by `closed`
  local done <close> = setmetatable({}, { __close = function(_, err)
    mw.log.info("flood ended: written=%d waits=%d err=%s", written, waits, tostring(err))
  end })
  mw.log.info("flood started")
  while written < LIMIT do
    local t0 = mw.now()
    local ok = res:write(CHUNK)
    if mw.now() - t0 > 0.05 then waits = waits + 1 end
    if not ok then
      mw.log.info("flood write returned false: written=%d", written)
      return
    end
    written = written + #CHUNK
  end
  mw.log.info("flood wrote everything")
end)

-- writes `mb` MiB in numbered 16 KiB chunks for a client that reads late;
-- /bulk_status tells how far it got (it can only answer while the writer
-- waits: Lua runs one coroutine at a time)
local bulk_written = 0
local FILL = string.rep("y", 16 * 1024 - 16)
app:get("/bulk/:mb", function(req, res)
  local chunks = tonumber(req.params.mb) * 64
  res:header("Content-Length", chunks * 16 * 1024)
  mw.log.info("bulk started")
  local waits = 0
  bulk_written = 0
  for i = 0, chunks - 1 do
    local t0 = mw.now()
    assert(res:write(("%015d\n"):format(i) .. FILL), "client left")
    if mw.now() - t0 > 0.05 then waits = waits + 1 end
    bulk_written = bulk_written + 16 * 1024
  end
  res:finish()
  mw.log.info("bulk done: waits=%d", waits)
end)

app:get("/bulk_status", function(req, res) res:send(tostring(bulk_written)) end)

-- writes, sleeps, writes again: the client leaves during a sleep
app:get("/drip", function(req, res)
  local n = 0
  while true do
    local ok = res:write("tick\n")
    if not ok then
      mw.log.info("drip write returned false after %d writes", n)
      return
    end
    n = n + 1
    if n == 1 then mw.log.info("drip started") end
    mw.sleep(0.05)
  end
end)

return app
