-- The app behind tests/integration/test_sse.py: SSE streams in every
-- shape DESIGN.md gives them, hub publishing, and a /stats route that
-- reports what the app saw (on_close calls, closed() observations), so
-- the test can tell what happened on the server side.
local mw = require "moonwire"
-- the slow-consumer test sets a small queue limit through the environment
local app = mw.app { max_queued_bytes = tonumber(os.getenv("SSE_MAX_QUEUED_BYTES")) }

local stats = { on_close = {}, closed_seen = {}, after_close = {}, late_on_close = {} }
local streams = {} -- name -> open stream, for /close/:name

-- channels whose history the tests need longer or shorter than the default
mw.channel("long", { history = 1000 })
mw.channel("short", { history = 5 })

local function bump(t, k)
  t[k] = (t[k] or 0) + 1
end

local function split(s)
  local out = {}
  for part in (s or ""):gmatch("[^,]+") do out[#out + 1] = part end
  return out
end

-- Events with every field, multi-line data in all its line-end forms, a
-- comment, then the end of the stream.
app:get("/send", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:send("plain")
  stream:send { data = "with fields", event = "update", id = "7", retry = 2500 }
  stream:send { data = "a\r\nb\rc\nd" }
  stream:send { data = "trailing\n" }
  stream:send { data = "" }
  stream:send { data = "\n" }
  stream:send { data = "  two spaces kept" }
  stream:comment("a comment\nin two lines")
  stream:send { data = "after the comment", id = "" }
  stream:send { event = "no-data", id = "8" } -- dispatches nothing, but the id sticks
  stream:send { data = "caf\u{e9} \u{2713}", event = "utf8" }
  stream:send { retry = 0 }
  stream:close()
end)

-- A field with CR, LF or NUL raises; the pcall variant reports the errors
-- as events, the raw one lets the handler fail.
local BAD = {
  event_lf = { data = "x", event = "a\nb" },
  event_cr = { data = "x", event = "a\rb" },
  event_crlf = { data = "x", event = "a\r\nb" },
  event_nul = { data = "x", event = "a\0b" },
  id_lf = { data = "x", id = "1\n2" },
  id_cr = { data = "x", id = "1\r" },
  id_nul = { data = "x", id = "1\0" },
}

app:get("/bad/pcall", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  local names = {}
  for name in pairs(BAD) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local ok, err = pcall(stream.send, stream, BAD[name])
    stream:send { event = name, data = ok and "accepted" or tostring(err) }
  end
  local ok, err = pcall(stream.send, stream, {})
  stream:send { event = "empty", data = ok and "accepted" or tostring(err) }
  ok, err = pcall(stream.send, stream, { data = "x", retry = -5 })
  stream:send { event = "negative_retry", data = ok and "accepted" or tostring(err) }
  ok, err = pcall(stream.subscribe, stream, "c", { event = "a\nb" })
  stream:send { event = "subscribe_event_lf", data = ok and "accepted" or tostring(err) }
  ok, err = pcall(stream.subscribe, stream, "c", { since = 1.5 })
  stream:send { event = "subscribe_since_fraction", data = ok and "accepted" or tostring(err) }
  for name, hb in pairs { huge = 1e300, negative = -1, nan = 0 / 0 } do
    ok, err = pcall(res.sse, res, { heartbeat = hb })
    stream:send { event = "heartbeat_" .. name, data = ok and "accepted" or tostring(err) }
  end
  stream:close()
end)

app:get("/bad/:what", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:send("before")
  stream:send(BAD[req.params.what]) -- raises
  stream:send("never")
end)

-- Stays open with the heartbeat asked for.
app:get("/heartbeat", function(req, res)
  local hb = tonumber(req.query.hb)
  local stream = res:sse { heartbeat = hb }
  stream:send("open")
  if req.query.chatty then
    -- a write postpones the next heartbeat
    local t
    t = mw.every(tonumber(req.query.chatty), function()
      -- the handle outlives the client: send returns false, no error
      if not stream:send("tick") then
        t:stop()
        stats.chatty_stopped = (stats.chatty_stopped or 0) + 1
        stats.chatty_closed = stream:closed()
      end
    end)
  end
end)

app:get("/lei", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:send { data = stream.last_event_id, event = type(stream.last_event_id) }
  stream:close()
end)

-- Subscribes to the channels in ?ch=a,b with the options given: since
-- (one value for all), event. Stays open until the client leaves.
app:get("/sub", function(req, res)
  local stream = res:sse { heartbeat = tonumber(req.query.hb) or 0 }
  local name = req.query.name
  if name then streams[name] = stream end
  stream:on_close(function()
    bump(stats.on_close, name or "?")
    if name and streams[name] == stream then streams[name] = nil end
  end)
  for _, ch in ipairs(split(req.query.ch)) do
    local opts = {}
    if req.query.since then opts.since = tonumber(req.query.since) end
    if req.query.event then opts.event = req.query.event end
    assert(stream:subscribe(ch, opts) == true)
  end
  if req.query.then_pub then
    -- in the same turn as the replay that filled the queue
    mw.publish(req.query.then_pub, string.rep("s", tonumber(req.query.then_size)))
  end
  stream:comment("subscribed")
end)

-- Runs ?ops=sub:a,sub:b,unsub:a,... in order, reporting each result as a
-- comment, then says "subscribed" and stays open.
app:get("/juggle", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  for _, op in ipairs(split(req.query.ops)) do
    local verb, ch = op:match("^(%a+):(.+)$")
    local ok, res = pcall(verb == "sub" and stream.subscribe or stream.unsubscribe, stream, ch)
    stream:comment(op .. "=" .. (ok and tostring(res) or "error"))
  end
  stream:comment("subscribed")
end)

-- An event stream is written through the stream: res:write and res:finish
-- on it raise (reported as events), and the stream goes on.
app:get("/res-write", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  local ok, err = pcall(res.write, res, "raw bytes")
  stream:send { event = "write", data = ok and "accepted" or tostring(err) }
  stream:send("still open")
  stream:close()
end)

-- A stream opened before the request body (chunked, with trailers) is read.
app:post("/early", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:send { data = req.headers["x-marker"] or "none", event = "marker" }
  stream:subscribe(req.query.ch)
  stream:comment("subscribed")
end)

-- Publishes the body; ?kind=binary for binary.
app:post("/pub/:ch", function(req, res)
  res:json { id = mw.publish(req.params.ch, req:body(), req.query.kind) }
end)

-- Publishes n messages of `size` bytes ("<id>:" then filler), a few per
-- loop turn, so a client that reads keeps up and one that does not falls
-- behind.
app:post("/burst/:ch", function(req, res)
  local ch = mw.channel(req.params.ch)
  local n, size, batch = tonumber(req.query.n), tonumber(req.query.size), tonumber(req.query.batch or 4)
  local last
  for i = 1, n do
    local head = tostring(ch:last_id() + 1) .. ":"
    last = ch:publish(head .. string.rep("x", size - #head))
    if i % batch == 0 then mw.sleep(tonumber(req.query.pause or 0.001)) end
  end
  res:json { last = last }
end)

-- How many subscribers a channel has, from its tostring
-- ("moonwire.channel NAME (last id N, K subscriber(s))").
app:get("/subscribers/:ch", function(req, res)
  local s = tostring(mw.channel(req.params.ch))
  res:json { subscribers = tonumber(s:match("(%d+) subscriber")), text = s }
end)

-- closed() seen turning true by a handler that polls it.
app:get("/watch/:name", function(req, res)
  local name = req.params.name
  local stream = res:sse()
  stream:on_close(function() bump(stats.on_close, name) end)
  stream:on_close(function() bump(stats.on_close, name .. "#2") end)
  stream:send { data = tostring(stream:closed()), event = "closed" }
  while not stream:closed() do mw.sleep(0.02) end
  stats.closed_seen[name] = true
end)

-- n events, then close(): the response ends; what the handle does after.
app:get("/close-after", function(req, res)
  local name = req.query.name or "close-after"
  local stream = res:sse { heartbeat = 0 }
  stream:on_close(function() bump(stats.on_close, name) end)
  for i = 1, tonumber(req.query.n) do stream:send { data = "e" .. i, id = tostring(i) } end
  stream:close()
  stream:close() -- twice is harmless
  stats.after_close[name] = {
    closed = stream:closed(),
    send = stream:send("late"),
    comment = stream:comment("late"),
    subscribe = stream:subscribe("late"),
    tostring = tostring(stream),
  }
  -- a callback registered after the end runs at once
  stream:on_close(function() bump(stats.late_on_close, name) end)
end)

-- close() from elsewhere (another request)
app:post("/close/:name", function(req, res)
  local s = streams[req.params.name]
  if s then s:close() end
  res:json { closed = s ~= nil }
end)

app:get("/stats", function(req, res)
  res:json(stats)
end)

app:get("/history/:ch", function(req, res)
  local list, missed = mw.channel(req.params.ch):history(tonumber(req.query.since))
  res:json { list = list, missed = missed, last_id = mw.channel(req.params.ch):last_id() }
end)

return app
