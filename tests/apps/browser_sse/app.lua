-- The app behind tests/integration/test_browser_sse.py: a page whose
-- EventSource follows the "feed" channel, a route that ends every open
-- stream and publishes while the browsers are away, and a record of each
-- connection's Last-Event-ID.
local mw = require "moonwire"
local app = mw.app()

local feed = mw.channel("feed", { history = 100 })
local open = {}  -- stream -> true while open
local conns = mw.json.array {}  -- each connection's last_event_id, in order

app:static("/page", "public")

app:get("/events", function(req, res)
  local stream = res:sse { heartbeat = 5 }
  conns[#conns + 1] = stream.last_event_id
  open[stream] = true
  stream:on_close(function() open[stream] = nil end)
  stream:send { retry = 250 } -- reconnect quickly once the stream ends
  stream:subscribe(feed)      -- since: Last-Event-ID, if the browser sent one
end)

app:post("/publish", function(req, res)
  res:json { id = feed:publish(req:body()) }
end)

-- Ends every open stream (stream:close()), then publishes ?n= messages
-- before any browser can be back: they must arrive after the reconnect.
app:post("/drop", function(req, res)
  local dropped = 0
  for stream in pairs(open) do
    stream:close()
    dropped = dropped + 1
  end
  local ids = mw.json.array {}
  for i = 1, tonumber(req.query.n or 0) do ids[#ids + 1] = feed:publish("gap" .. i) end
  res:json { dropped = dropped, published = ids }
end)

app:get("/conns", function(req, res)
  res:json(conns)
end)

return app
