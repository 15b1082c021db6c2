-- An SSE live feed. The server publishes to the "feed" channel (a price
-- ticker every few seconds, and whatever anyone posts to /publish); every
-- open page receives each message once, in order, with its id.
--
--   scripts/run examples/live-feed/app.lua      then open http://127.0.0.1:8080
--   curl -N http://127.0.0.1:8080/events        the raw event stream
--   curl -d '{"text":"hello"}' http://127.0.0.1:8080/publish
local mw = require "moonwire"

local app = mw.app()

-- The channel keeps its last 50 messages: a client that reconnects within
-- 50 messages of where it left gets exactly what it missed.
local feed = mw.channel("feed", { history = 50 })

-- Server-side news: a made-up price that wanders every 3 seconds.
local price = 100.0
mw.every(3, function()
  local change = (math.random() - 0.5) * 2
  price = math.max(1, price + change)
  feed:publish(mw.json.encode {
    type = "tick",
    symbol = "MOON",
    price = math.floor(price * 100 + 0.5) / 100,
    change = math.floor(change * 100 + 0.5) / 100,
    at = mw.now(),
  })
end)

-- The stream. A browser's EventSource reconnects by itself and sends the
-- last id it saw in Last-Event-ID; subscribe() resumes from it, so the page
-- gets what it missed while it was away, with no gap and no duplicate.
app:get("/events", function(req, res)
  local stream = res:sse { heartbeat = 15 }
  stream:send { retry = 2000 }   -- ask the browser to reconnect after 2 s, not its default
  stream:subscribe(feed)
  -- Returning keeps the stream open until the client leaves.
end)

-- Anyone may post a line to the feed: {"text": "..."}.
app:post("/publish", function(req, res)
  local body = req:json()
  local text = type(body) == "table" and body.text
  if type(text) ~= "string" or text:match("^%s*$") then
    return res:status(400):json { error = 'expected {"text": "..."}' }
  end
  if #text > 500 then
    return res:status(413):json { error = "text is limited to 500 bytes" }
  end
  local id = feed:publish(mw.json.encode { type = "post", text = text, at = mw.now() })
  res:status(201):json { id = id }
end)

-- What the channel holds now, for a look with curl.
app:get("/history", function(req, res)
  local since = math.tointeger(tonumber(req.query.since or ""))
  if since and since < 0 then since = nil end
  local list, missed = feed:history(since)
  res:json { last_id = feed:last_id(), missed = missed, messages = list }
end)

app:static("/", "public")

return app
