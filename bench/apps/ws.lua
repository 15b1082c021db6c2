-- Benchmark app for the "ws" section (bench/ws.sh). bench/peers/node_ws.js
-- is the same app for Node's ws.
--
--   GET  /ws               WebSocket: echoes every message back (same kind);
--                          subscribed to channel "fan" on open
--   POST /publish?data=D   mw.publish("fan", D); answers with the message id
--   GET  /                 "Hello, World!" (readiness probe)
local mw = require "moonwire"

local app = mw.app()

app:get("/", function(req, res) res:send("Hello, World!") end)

app:ws("/ws", {
  open = function(ws)
    ws:subscribe("fan")
  end,
  message = function(ws, data, kind)
    ws:send(data, kind)
  end,
})

app:post("/publish", function(req, res)
  local data = req.query.data
  if not data then mw.abort(400, "data missing") end
  res:send(tostring(mw.publish("fan", data)))
end)

return app
