-- The app behind tests/integration/test_longpoll.py: long polling with
-- ch:wait, publishing (one at a time, in bursts, from a timer), and a
-- /stats route with what the app saw (waits in progress, waits ended by
-- the client leaving), so the test can tell what happened server-side.
local mw = require "moonwire"
-- one test sets a small queue limit through the environment
local app = mw.app { max_queued_bytes = tonumber(os.getenv("LP_MAX_QUEUED_BYTES")) }

local stats = { parked = 0, released = 0, answered = 0 }
local channels = {
  feed = mw.channel("feed", { history = 1000 }),
  short = mw.channel("short", { history = 5 }),
}

local function channel(name)
  return channels[name] or mw.channel(name)
end

-- GET /poll/:ch?since=&timeout= -> the list; X-Missed: the second value
app:get("/poll/:ch", function(req, res)
  local ch = channel(req.params.ch)
  local opts = {}
  if req.query.since then opts.since = tonumber(req.query.since) end
  if req.query.timeout then opts.timeout = tonumber(req.query.timeout) end
  stats.parked = stats.parked + 1
  local ok, list, missed = pcall(ch.wait, ch, opts)
  stats.parked = stats.parked - 1
  if not ok then
    if tostring(list) == "closed" then stats.released = stats.released + 1 end
    error(list, 0) -- `closed` ends the handler quietly
  end
  stats.answered = stats.answered + 1
  res:header("X-Missed", tostring(missed))
  res:json(list)
end)

-- POST /pub/:ch?kind=binary publishes the body as it is
app:post("/pub/:ch", function(req, res)
  res:json { id = channel(req.params.ch):publish(req:body(), req.query.kind) }
end)

-- n messages in one go: a parked poll gets them as one list
app:post("/burst/:ch", function(req, res)
  local ch, last = channel(req.params.ch)
  for i = 1, tonumber(req.query.n) do last = ch:publish("b" .. i) end
  res:json { last = last }
end)

-- Publishes "m<id>" to feed from a timer: `per` messages every `interval`
-- seconds until n are out. Answers at once.
app:post("/start", function(req, res)
  local n, per, interval = tonumber(req.query.n), tonumber(req.query.per), tonumber(req.query.interval)
  local ch, sent = channels.feed, 0
  local t
  t = mw.every(interval, function()
    for _ = 1, per do
      if sent == n then
        t:stop()
        return
      end
      ch:publish("m" .. (ch:last_id() + 1))
      sent = sent + 1
    end
  end)
  res:json { started = true }
end)

-- an SSE stream beside the polls (graceful shutdown ends both)
app:get("/events", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:subscribe(channel(req.query.ch))
  stream:comment("subscribed")
end)

-- A stream and a wait on the same channel in one request: when the
-- stream's client is dropped as too slow, its wait ends with it, in the
-- middle of the publish that dropped it.
app:get("/combo", function(req, res)
  local ch = channel(req.query.ch)
  local stream = res:sse { heartbeat = 0 }
  stream:subscribe(ch)
  if req.query.pre then stream:subscribe(req.query.pre) end
  stream:comment("subscribed")
  stats.parked = stats.parked + 1
  local ok, err = pcall(ch.wait, ch, { timeout = 30 })
  stats.parked = stats.parked - 1
  if not ok and tostring(err) == "closed" then stats.released = stats.released + 1 end
end)

-- n messages of `size` bytes in one loop turn (after one to ?pre=)
app:post("/flood/:ch", function(req, res)
  local ch, last = channel(req.params.ch)
  local size = tonumber(req.query.size)
  if req.query.pre then mw.publish(req.query.pre, string.rep("p", size)) end
  for i = 1, tonumber(req.query.n) do last = ch:publish(i .. string.rep("x", size)) end
  res:json { last = last }
end)

app:get("/stats", function(req, res)
  res:json(stats)
end)

app:get("/subscribers/:ch", function(req, res)
  local s = tostring(channel(req.params.ch))
  res:json { subscribers = tonumber(s:match("(%d+) subscriber")) }
end)

app:get("/history/:ch", function(req, res)
  local list, missed = channel(req.params.ch):history(tonumber(req.query.since))
  res:json { list = list, missed = missed }
end)

-- Argument checks: each bad call's error message.
app:get("/validate", function(req, res)
  local ch = mw.channel("v")
  local out = {}
  local function try(name, ...)
    local ok, err = pcall(ch.wait, ch, ...)
    out[name] = ok and "accepted" or tostring(err)
  end
  try("timeout_negative", { timeout = -1 })
  try("timeout_too_large", { timeout = 86401 })
  try("timeout_string", { timeout = "soon" })
  try("since_negative", { since = -1 })
  try("since_string", { since = "abc" })
  try("since_fraction", { since = 1.5 })
  try("not_a_table", "x")
  -- accepted: a zero timeout answers on the next turn with {}
  local ok, list = pcall(ch.wait, ch, { timeout = 0 })
  out.timeout_zero = ok and #list == 0 and "accepted" or tostring(list)
  -- in a coroutine of the app's own, waiting is refused
  local co = coroutine.create(function() return ch:wait { timeout = 0 } end)
  local cok, cerr = coroutine.resume(co)
  out.user_coroutine = cok and "accepted" or tostring(cerr)
  res:json(out)
end)

return app
