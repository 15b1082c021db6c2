-- Benchmark app for the "sse" and "longpoll" sections (bench/sse.sh,
-- bench/longpoll.sh): one hub channel, fed over HTTP, read as an SSE stream
-- or by long polling. bench/peers/node_pubsub.js is the same app for Node.
--
--   GET  /events           SSE stream subscribed to channel "bench"
--                          (resumes from Last-Event-ID like any stream)
--   GET  /poll?since=ID    long poll: JSON list of {id, data, kind}, 30 s timeout
--   POST /publish?data=D   publishes D; answers with the message id
--   GET  /                 "Hello, World!" (readiness probe)
--
-- BENCH_HISTORY (environment) sets the channel's history; the default is
-- the hub's (100).
local mw = require "moonwire"

local app = mw.app()
local history = tonumber(os.getenv("BENCH_HISTORY") or "")
local ch = mw.channel("bench", history and { history = history } or nil)

app:get("/", function(req, res) res:send("Hello, World!") end)

app:get("/events", function(req, res)
  res:sse():subscribe(ch)
end)

app:get("/poll", function(req, res)
  local since = tonumber(req.query.since)
  local list = ch:wait{ since = since, timeout = 30 }
  res:json(list)
end)

app:post("/publish", function(req, res)
  local data = req.query.data
  if not data then mw.abort(400, "data missing") end
  res:send(tostring(ch:publish(data)))
end)

return app
