-- The showcase: what `scripts/run` starts. This first version shows the
-- plain request/response way of talking; the SSE, WebSocket and
-- long-polling panels join it as those capabilities land.
local mw = require "moonwire"

local app = mw.app()
local started = mw.now()
local hits = 0

app:use(function(req, res, next)
  hits = hits + 1
  next()
end)

-- A plain request: the browser asks, the server answers once.
app:get("/api/time", function(req, res)
  res:json {
    now = mw.now(),
    uptime = mw.now() - started,
    requests = hits,
    request_id = req.id,
  }
end)

app:post("/api/echo", function(req, res)
  res:json { you_sent = req:json(), at = mw.now() }
end)

-- A streamed answer: one response written in pieces.
app:get("/api/countdown", function(req, res)
  res:header("Content-Type", "text/plain; charset=utf-8")
  for i = 5, 1, -1 do
    res:write(i .. "...\n")
    mw.sleep(0.3)
  end
  res:write("liftoff\n")
end)

app:static("/", "public")

return app
