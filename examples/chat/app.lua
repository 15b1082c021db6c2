-- Chat rooms over WebSocket. Each room is a hub channel that keeps its last
-- 50 messages: a page that connects gets them first, then everything live,
-- and a page that reconnects asks for what came after the last id it saw.
--
--   scripts/run examples/chat/app.lua      then open http://127.0.0.1:8080
--
-- The page connects to /chat/ROOM?since=ID and talks JSON:
--   page -> server   {"type":"join","nick":"ann"}   {"type":"say","text":"hi"}   {"type":"typing"}
--   server -> page   {"type":"welcome",...}   {"type":"error","error":"..."}   {"type":"typing","nick":"ann"}
--                    and the room's messages as {"channel":"room:lobby","id":7,"data":"{...}"}
local mw = require "moonwire"

local app = mw.app()

local HISTORY = 50      -- messages a room keeps for joiners and reconnects
local MAX_NICK = 24     -- characters
local MAX_TEXT = 500    -- characters
local MAX_ROOMS = 1000  -- each room's history lives as long as the server

-- Who is where: room name -> { [ws] = nick }. A global, so that with
-- --reload it survives a reload along with the open sockets (the script's
-- locals start again; see docs/hot-reload.md).
CHAT_MEMBERS = CHAT_MEMBERS or {}
local members = CHAT_MEMBERS

local rooms = {} -- room name -> { name =, ch =, typing =, members = }

local function valid_room(name)
  return #name <= 32 and name:match("^[%w_-]+$") ~= nil
end

local function room(name)
  local r = rooms[name]
  if not r then
    members[name] = members[name] or {}
    r = {
      name = name,
      ch = mw.channel("room:" .. name, { history = HISTORY }),
      -- "ann is typing" is not worth keeping: a channel with no history
      typing = mw.channel("typing:" .. name, { history = 0 }),
      members = members[name],
    }
    rooms[name] = r
  end
  return r
end

local function room_count()
  local n = 0
  for _ in pairs(members) do n = n + 1 end
  return n
end

-- The nicks in the room, each once (one person may have two tabs open).
local function online(r)
  local seen, nicks = {}, mw.json.array()
  for _, nick in pairs(r.members) do
    if not seen[nick] then seen[nick] = true; nicks[#nicks + 1] = nick end
  end
  table.sort(nicks)
  return nicks
end

local function present(r, nick)
  for _, n in pairs(r.members) do if n == nick then return true end end
  return false
end

-- What everyone in the room sees, with an id, kept in the history.
local function post(r, fields)
  fields.at = mw.now()
  return r.ch:publish(mw.json.encode(fields))
end

local function reply(ws, fields)
  return ws:send(mw.json.encode(fields))
end

local function refuse(ws, why)
  reply(ws, { type = "error", error = why })
end

-- One line of 1..max characters (runs of spaces, tabs and newlines become
-- one space), or nil.
local function clean(s, max)
  if type(s) ~= "string" then return nil end
  s = s:gsub("%s+", " "):match("^ ?(.-) ?$")
  local n = utf8.len(s)   -- text frames are valid UTF-8 already; this counts characters
  if not n or n == 0 or n > max or s:find("%c") then return nil end
  return s
end

app:ws("/chat/:room", {
  max_message = 8 * 1024,   -- a bigger frame closes the socket with 1009

  -- Runs before the handshake is answered: refuse here with a status.
  upgrade = function(req, res)
    local name = req.params.room
    if not valid_room(name) then
      res:status(404):json { error = "room names are 1 to 32 letters, digits, - or _" }
      return false
    end
    if req.query.since and not req.query.since:match("^%d+$") then
      res:status(400):json { error = "since must be a message id" }
      return false
    end
    if not members[name] and room_count() >= MAX_ROOMS then
      res:status(503):json { error = "too many rooms" }
      return false
    end
  end,

  open = function(ws, req)
    local r = room(req.params.room)
    ws.data.room = r.name
    -- Sent before the replay, so the page knows the room's newest id first
    -- (an id of its own above it means the server restarted).
    reply(ws, { type = "welcome", room = req.params.room, last_id = r.ch:last_id(),
                online = online(r), max_text = MAX_TEXT })
    -- The page's last id, or 0 on a first visit: the room's recent history,
    -- then every new message, each as {"channel":..,"id":..,"data":..}.
    ws:subscribe(r.ch, { since = math.tointeger(tonumber(req.query.since)) or 0, envelope = true })
  end,

  message = function(ws, data, kind)
    if kind ~= "text" then return refuse(ws, "send JSON in text frames") end
    local msg = mw.json.decode(data)
    if type(msg) ~= "table" or mw.json.is_array(msg) then
      return refuse(ws, 'messages are JSON objects, like {"type":"say","text":"hello"}')
    end
    local r = room(ws.data.room)

    if msg.type == "join" then
      if ws.data.nick then return refuse(ws, "already joined as " .. ws.data.nick) end
      local nick = clean(msg.nick, MAX_NICK)
      if not nick then
        return refuse(ws, ("a nick is 1 to %d characters, no control characters"):format(MAX_NICK))
      end
      local again = present(r, nick)   -- another tab, or a reconnect the server
      ws.data.nick = nick              -- has not noticed the end of yet
      r.members[ws] = nick
      ws:subscribe(r.typing)           -- other people's "typing", never kept
      if not again then post(r, { type = "join", nick = nick, online = online(r) }) end

    elseif msg.type == "say" then
      if not ws.data.nick then return refuse(ws, 'join first: {"type":"join","nick":"..."}') end
      local text = clean(msg.text, MAX_TEXT)
      if not text then
        return refuse(ws, ("a message is 1 to %d characters, no control characters"):format(MAX_TEXT))
      end
      -- Published to the channel, so the sender gets it back too, with its id.
      post(r, { type = "say", nick = ws.data.nick, text = text })

    elseif msg.type == "typing" then
      if ws.data.nick then
        -- everyone but the sender
        ws:publish(r.typing, mw.json.encode { type = "typing", nick = ws.data.nick })
      end

    else
      refuse(ws, msg.type == nil and 'every message has a "type": join, say or typing'
        or ("unknown type %q (join, say or typing)"):format(tostring(msg.type)))
    end
  end,

  close = function(ws, code, reason)
    local nick = ws.data.nick
    if nick then
      local r = room(ws.data.room)
      r.members[ws] = nil
      if not present(r, nick) then post(r, { type = "leave", nick = nick, online = online(r) }) end
    end
  end,
})

-- The room's retained messages as JSON: curl http://127.0.0.1:8080/rooms/lobby/history
app:get("/rooms/:room/history", function(req, res)
  local name = req.params.room
  if not valid_room(name) then mw.abort(404, "no such room") end
  local since = req.query.since and math.tointeger(tonumber(req.query.since))
  if req.query.since and not (since and since >= 0) then mw.abort(400, "since must be a message id") end
  local r = members[name] and room(name)   -- a room nobody has opened: empty, and not made
  local list, missed = mw.json.array(), 0
  if r then list, missed = r.ch:history(since) end
  local messages = mw.json.array()
  for _, m in ipairs(list) do
    local item = mw.json.decode(m.data)
    item.id = m.id
    messages[#messages + 1] = item
  end
  res:json { room = name, last_id = r and r.ch:last_id() or 0, missed = missed,
             online = r and #online(r) or 0, messages = messages }
end)

app:static("/", "public")

return app
