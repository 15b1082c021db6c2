-- The showcase: the four ways a server and a browser talk, side by side.
-- `scripts/run` starts it on http://127.0.0.1:8080.
--
-- Every panel of the page listens to one hub channel, "showcase". A message
-- published from any panel (or by the server's own ticker) reaches the SSE,
-- WebSocket and long-poll panels with the same id.
local mw = require "moonwire"

local app = mw.app()
local feed = mw.channel("showcase", { history = 50 })
local started = mw.now()
local MAX_TEXT = 280

local function clean(text)
  if type(text) ~= "string" then return nil end
  text = text:gsub("%s+", " "):match("^%s*(.-)%s*$")
  if text == "" or #text > MAX_TEXT then return nil end
  return text
end

local function publish(from, text)
  return feed:publish(mw.json.encode { from = from, text = text, at = mw.now() })
end

-- The server has news of its own every 10 seconds.
local ticks, served = 0, 0
app:use(function(req, res, nxt)
  served = served + 1
  nxt()
end)
mw.every(10, function()
  ticks = ticks + 1
  publish("server", ("tick %d: %d request(s) served so far"):format(ticks, served))
end)

-- 1. A plain request: the browser asks, the server answers once.
app:get("/api/time", function(req, res)
  res:json { now = mw.now(), uptime = mw.now() - started, last_id = feed:last_id(), request = req.id }
end)

app:post("/api/publish", function(req, res)
  local body = req:json()
  local text = clean(type(body) == "table" and body.text)
  if not text then mw.abort(400, ("text must be 1..%d characters"):format(MAX_TEXT)) end
  local from = clean(type(body) == "table" and body.from) or "someone"
  res:status(201):json { id = publish(from, text) }
end)

-- 2. Server-Sent Events: the server pushes; the browser only listens.
--    EventSource reconnects by itself and resumes from Last-Event-ID.
app:get("/sse", function(req, res)
  local stream = res:sse { heartbeat = 15 }
  stream:send { retry = 2000 }
  stream:subscribe(feed)
end)

-- 3. WebSocket: both sides talk at any time over one connection.
app:ws("/ws", {
  open = function(ws, req)
    ws:subscribe(feed, { envelope = true })
  end,
  message = function(ws, data)
    local ok, msg = pcall(mw.json.decode, data)
    local text = ok and type(msg) == "table" and clean(msg.text)
    if not text then
      ws:send(mw.json.encode { error = ("text must be 1..%d characters"):format(MAX_TEXT) })
      return
    end
    publish(clean(msg.from) or "someone", text)
  end,
})

-- 4. Long polling: a plain request the server holds until there is news.
app:get("/poll", function(req, res)
  local since = tonumber(req.query.since)
  if req.query.since and not since then mw.abort(400, "since must be a message id") end
  local started_at = mw.now()
  local messages, missed = feed:wait { since = since, timeout = 20 }
  res:header("Cache-Control", "no-store")
  res:json { messages = messages, missed = missed, last_id = feed:last_id(),
             held_ms = math.floor((mw.now() - started_at) * 1000) }
end)

app:static("/", "public")

return app
