-- A live dashboard: the radio of the four ways to talk. Once a second the
-- server samples a few numbers and publishes them to the "metrics"
-- channel; every open page listens with EventSource and draws them.
--
--   scripts/run examples/dashboard/app.lua        then open http://127.0.0.1:8080
--   curl -N http://127.0.0.1:8080/metrics         the raw event stream
--   curl -N -H 'Last-Event-ID: 10' http://127.0.0.1:8080/metrics
--                                                 resume after sample 10
local mw = require "moonwire"

local app = mw.app()

-- Two minutes of samples at one a second: a page that opens (or comes
-- back within two minutes) draws the recent past at once.
local metrics = mw.channel("metrics", { history = 120 })

local requests = 0   -- requests served since the app started
local streams = 0    -- open /metrics streams
local load = 0.35    -- a made-up load, 0..1, that wanders
local spike_until = 0

-- Middleware runs for every request (the streams' own included).
app:use(function(req, res, next)
  requests = requests + 1
  next()
end)

local last_requests = 0
local function sample()
  -- the simulated load: a random walk, pulled back towards 35 %, and
  -- high while a spike (POST /spike) lasts
  local target = mw.now() < spike_until and 0.9 or 0.35
  load = load + (target - load) * 0.25 + (math.random() - 0.5) * 0.12
  load = math.max(0, math.min(1, load))
  local s = {
    at = mw.now(),
    requests = requests,
    rps = requests - last_requests,          -- requests in the last second
    streams = streams,
    lua_kib = collectgarbage("count"),       -- the Lua heap, in KiB
    load = math.floor(load * 1000 + 0.5) / 1000,
  }
  last_requests = requests
  return s
end

-- The sampler. A timer started by the app belongs to this version of it:
-- a hot reload stops it and the new version starts its own.
local latest = { id = 0 }
mw.every(1, function()
  local s = sample()
  s.id = metrics:publish(mw.json.encode(s))
  latest = s
end)

-- The stream. EventSource reconnects by itself with the last id it saw
-- (Last-Event-ID); subscribe() replays what came after it, then goes live.
-- The page opens /metrics?lastEventId=0 so that its first connection gets
-- the whole history too; the header wins on reconnections.
app:get("/metrics", function(req, res)
  local stream = res:sse { heartbeat = 15 }
  if not stream then return end   -- the client left already
  streams = streams + 1
  stream:on_close(function() streams = streams - 1 end)
  stream:send { retry = 2000 }
  stream:subscribe(metrics)
end)

-- The newest sample (and its message id) as a plain request, for scripts
-- and health checks.
app:get("/api/metrics", function(req, res)
  res:header("Cache-Control", "no-store")
  res:json(latest)
end)

-- POST /spike: the simulated load jumps for ten seconds.
app:post("/spike", function(req, res)
  spike_until = mw.now() + 10
  res:json { spike_until = spike_until }
end)

app:static("/", "public")

return app
