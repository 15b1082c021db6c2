-- The app behind tests/integration/test_ws_protocol.py and
-- test_ws_clients.py: WebSocket routes in every shape DESIGN.md gives
-- them, hub routes shared with SSE and long polling, and a /stats route
-- that reports what the handlers saw (close codes, drain calls, results
-- of calls made after a close), so a test can tell what happened inside.
local mw = require "moonwire"
-- the backpressure tests set a small queue limit through the environment
local app = mw.app { max_queued_bytes = tonumber(os.getenv("WS_MAX_QUEUED_BYTES")) }

local stats = { opens = {}, closes = {}, drains = {}, after_close = {}, messages = {} }

local function note(list, key, value)
  list[key] = list[key] or {}
  table.insert(list[key], value)
end

-- every route logs its close the same way: the tests read /stats
local function on_close(name)
  return function(ws, code, reason)
    note(stats.closes, name, { code = code, reason = reason })
  end
end

local function echo(ws, data, kind)
  ws:send(data, kind)
end

app:ws("/echo", { message = echo, close = on_close("echo") })
app:ws("/echo-z", { compression = true, message = echo, close = on_close("echo-z") })
app:ws("/small", { max_message = 1000, message = echo, close = on_close("small") })
app:ws("/small-z", { max_message = 1000, compression = true, message = echo, close = on_close("small-z") })

-- subprotocols: the server's order decides; the open event reports it
app:ws("/proto", {
  protocols = { "chat.v2", "chat.v1" },
  open = function(ws) ws:send("protocol=" .. ws.protocol) end,
})

-- upgrade hooks refusing with their own answer, or with none (403)
app:ws("/auth", {
  upgrade = function(req, res)
    if req.query.token ~= "good" then
      res:status(401):header("WWW-Authenticate", "Bearer"):send("who are you?")
      return false
    end
  end,
  open = function(ws) ws:send("welcome") end,
})
app:ws("/origin", {
  upgrade = function(req, res)
    if req.headers.origin ~= "http://ok.example" then
      res:status(403):send("bad origin")
      return false
    end
    return true
  end,
  open = function(ws) ws:send("origin ok") end,
})
app:ws("/refuse", { upgrade = function() return false end, open = function(ws) ws:send("never") end })

-- ws.req: route params, query, headers
app:ws("/room/:id/*rest", {
  open = function(ws, req)
    ws:send(mw.json.encode {
      id = req.params.id, rest = req.params.rest, q = req.query.q, x = req.headers["x-test"],
      same = req == ws.req, path = ws.req.path, method = req.method,
    })
  end,
})

-- ws.req for as long as the socket lives: read again after a full GC (an
-- idle socket keeps only a packed copy of the handshake; the req the app
-- saw is made again when nothing held it), with what the upgrade hook
-- stored on it; and what a handle still answers once its socket is gone
local last_closed
app:ws("/kept/:who", {
  protocols = { "kept.v1" },
  upgrade = function(req)
    if req.query.tag then req.tag = req.query.tag end
  end,
  message = function(ws, data)
    collectgarbage()
    collectgarbage()
    local r = ws.req
    ws:send(mw.json.encode {
      method = r.method, path = r.path, target = r.target, q = r.query.q, tag = r.tag or false,
      who = r.params.who,
      sid = r.cookies.sid, long = #(r.headers["x-long"] or ""), odd = r.headers["x-odd-name"],
      multi = r.headers["x-multi"], via_header = r:header("X-Odd-Name"), addr = r.remote_addr,
      version = r.http_version, id = r.id, protocol = ws.protocol, same = r == ws.req,
      text = tostring(r):match("^moonwire%.req") ~= nil,
    })
  end,
  close = function(ws) last_closed = ws end,
})
app:get("/kept/after", function(req, res)
  collectgarbage()
  local ws = last_closed
  res:json { protocol = ws.protocol, tag = ws.req.tag or false, path = ws.req.path or false,
             sent = ws:send("late"), open = tostring(ws) }
end)

-- idle peers: pinged after 0.3 s, dropped after another 0.3 s of silence
app:ws("/hb", { heartbeat = 0.3, message = echo, close = on_close("hb") })
app:ws("/nohb", { heartbeat = 0, close = on_close("nohb") })

-- handler errors
app:ws("/fail/open", {
  open = function() error("boom in open") end,
  close = on_close("fail-open"),
})
app:ws("/fail/message", {
  message = function(ws, data, kind)
    if data == "boom" then error("boom in message") end
    ws:send(data, kind)
  end,
  close = on_close("fail-message"),
})
app:ws("/fail/close", {
  message = echo,
  close = function(ws, code) note(stats.closes, "fail-close", { code = code }); error("boom in close") end,
})

-- the app closes: "close CODE REASON" closes with that code and reason;
-- "close" alone with the default; "ping DATA" pings
app:ws("/ctl", {
  message = function(ws, data)
    local code, reason = data:match("^close (%d+) ?(.*)$")
    if code then
      ws:close(tonumber(code), reason)
    elseif data == "close" then
      ws:close()
    elseif data:sub(1, 5) == "ping " then
      ws:send("ping=" .. tostring(ws:ping(data:sub(6))))
    elseif data == "bad close code" then
      local ok, err = pcall(ws.close, ws, 1005)
      ws:send(tostring(ok) .. " " .. tostring(err))
    else
      ws:send(data)
    end
  end,
  close = on_close("ctl"),
})

-- backpressure: "fill SIZE" sends SIZE-byte messages until send refuses,
-- then reports the count and ws:buffered(); drain reports again
app:ws("/fill", {
  message = function(ws, data)
    local size = tonumber(data:match("^fill (%d+)$"))
    if not size then return end
    local chunk = ("x"):rep(size)
    local n = 0
    while ws:send(chunk) do n = n + 1 end
    stats.filled = { count = n, buffered = ws:buffered(), refused_again = ws:send(chunk) }
  end,
  drain = function(ws)
    table.insert(stats.drains, ws:buffered())
    ws:send("drained")
  end,
  close = on_close("fill"),
})

-- a client that floods pings and reads nothing: what its queue holds
app:ws("/ping-flood", {
  message = function(ws) stats.ping_flood = ws:buffered() end,
})

-- a handle used after its close: every method is harmless
app:ws("/after", {
  close = function(ws, code)
    note(stats.closes, "after", { code = code })
    mw.after(0.05, function()
      local r = {}
      r.send = ws:send("late")
      r.ping = ws:ping("late")
      r.buffered = ws:buffered()
      r.close = pcall(ws.close, ws, 1000)
      r.subscribe = ws:subscribe("late")
      r.unsubscribe = ws:unsubscribe("late")
      r.publish = type(ws:publish("late", "x"))
      r.tostring = tostring(ws)
      r.data = type(ws.data)
      stats.after_close[#stats.after_close + 1] = r
    end)
  end,
})

-- the hub: subscribe on open (?ch=, ?since=, ?env=1), publish what arrives
app:ws("/hub", {
  open = function(ws, req)
    local opts = { since = tonumber(req.query.since), envelope = req.query.env == "1" }
    for ch in (req.query.ch or "room"):gmatch("[^,]+") do ws:subscribe(ch, opts) end
    ws.data.ch = (req.query.ch or "room"):match("^[^,]+")
    stats.opens.hub = (stats.opens.hub or 0) + 1
    ws:send("subscribed")
  end,
  message = function(ws, data, kind)
    if data == "unsubscribe" then
      ws:send("unsubscribed=" .. tostring(ws:unsubscribe(ws.data.ch)))
    else
      ws:send("id=" .. ws:publish(ws.data.ch, data, kind))
    end
  end,
  close = on_close("hub"),
})
app:ws("/hub-z", {
  compression = true,
  open = function(ws, req)
    ws:subscribe(req.query.ch or "room", { envelope = req.query.env == "1" })
    ws:send("subscribed")
  end,
  close = on_close("hub-z"),
})

-- mw.publish from plain HTTP: POST /publish/:ch?kind=binary, body = data
app:post("/publish/:ch", function(req, res)
  res:json { id = mw.publish(req.params.ch, req:body(), req.query.kind) }
end)
-- publish N messages of SIZE bytes, BATCH at a time with PAUSE seconds
-- between batches, so readers that keep up get each batch sent out
app:post("/burst/:ch", function(req, res)
  local n, size = tonumber(req.query.n), tonumber(req.query.size)
  local batch, pause = tonumber(req.query.batch) or n, tonumber(req.query.pause) or 0
  local data = ("b"):rep(size)
  local last
  for i = 1, n do
    last = mw.publish(req.params.ch, data)
    if i % batch == 0 and i < n then mw.sleep(pause) end
  end
  res:json { last = last }
end)
-- SSE and long-poll subscribers of the same channels
app:get("/sse/:ch", function(req, res)
  local stream = res:sse { heartbeat = 0 }
  stream:subscribe(req.params.ch)
  stream:comment("subscribed")
end)
app:get("/poll/:ch", function(req, res)
  res:json(mw.channel(req.params.ch):wait { since = tonumber(req.query.since), timeout = 5 })
end)

app:get("/stats", function(req, res)
  res:json(stats)
end)

return app
