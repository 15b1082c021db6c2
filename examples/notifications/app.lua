-- Notifications by long polling. The browser asks "anything after id N?";
-- the server answers at once if it has something, otherwise holds the
-- request until a notification arrives or 25 seconds pass. Then the
-- browser asks again with the newest id it has.
--
--   scripts/run examples/notifications/app.lua     then open http://127.0.0.1:8080
--   curl 'http://127.0.0.1:8080/poll?since=0'      everything the server still holds
--   curl -d '{"text":"Backup finished"}' http://127.0.0.1:8080/notify
local mw = require "moonwire"

local app = mw.app()

-- The last 100 notifications are kept, so a client that was away for
-- fewer than 100 of them gets exactly the ones it missed.
local inbox = mw.channel("notifications", { history = 100 })

-- Held requests are answered within 25 s: below the 60 s most proxies and
-- browsers wait before giving up on a quiet response.
local POLL_TIMEOUT = 25

-- GET /poll?since=ID  ->  { messages = [...], missed = N, last_id = ID }
--   messages: notifications with an id above `since`, oldest first, each
--             {"id": 7, "data": "...", "kind": "text"}; [] when it timed out
--   missed:   how many after `since` the server no longer holds (0 normally)
--   last_id:  what to send as `since` next time
-- Without `since`, it waits for the next notification only.
app:get("/poll", function(req, res)
  local since
  if req.query.since then
    since = math.tointeger(tonumber(req.query.since))
    if not since or since < 0 then mw.abort(400, "since must be a message id (0 or more)") end
  end
  local messages, missed = inbox:wait { since = since, timeout = POLL_TIMEOUT }
  local last_id
  if #messages > 0 then
    last_id = messages[#messages].id
  elseif since then
    last_id = math.min(since, inbox:last_id()) -- lower only after a restart
  else
    last_id = inbox:last_id()
  end
  res:header("Cache-Control", "no-store")
  res:json { messages = messages, missed = missed, last_id = last_id }
end)

-- POST /notify with {"text": "..."} publishes a notification.
app:post("/notify", function(req, res)
  local body = req:json()
  local text = type(body) == "table" and body.text
  if type(text) ~= "string" or text:match("^%s*$") then
    return res:status(400):json { error = 'expected {"text": "..."}' }
  end
  if #text > 500 then
    return res:status(413):json { error = "text is limited to 500 bytes" }
  end
  res:status(201):json { id = inbox:publish(text) }
end)

app:static("/", "public")

return app
