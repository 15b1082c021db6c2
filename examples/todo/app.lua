-- A REST JSON API with an in-memory store: the letters of the four ways to
-- talk. The browser asks, the server answers once.
--
--   scripts/run examples/todo/app.lua           then open http://127.0.0.1:8080
--   curl http://127.0.0.1:8080/todos
--   curl -d '{"title":"Water the plants"}' http://127.0.0.1:8080/todos
--   curl -X PATCH -d '{"done":true}' http://127.0.0.1:8080/todos/1
--   curl -X DELETE http://127.0.0.1:8080/todos/1
--
-- The store is a Lua table in the server's memory: it lasts as long as the
-- process (and across hot reloads of other files, not of this one).
local mw = require "moonwire"

local app = mw.app()

local MAX_TITLE = 200
-- A todo is a few hundred bytes of JSON: refuse anything much bigger
-- before reading it (413), per route.
local SMALL_BODY = { max_body_bytes = 16 * 1024 }

local todos = {}   -- id -> { id =, title =, done = }
local next_id = 1

-- Every error, ours (mw.abort) or the runtime's (404, 405, a malformed or
-- too-large body), becomes JSON: {"error": "...", "status": 400}.
local REASONS = { [400] = "bad request", [404] = "not found", [405] = "method not allowed",
                  [413] = "body too large" }

app:on_error(function(req, res, err)
  if type(err) == "table" and err.status then
    for name, value in pairs(err.headers or {}) do res:header(name, value) end -- 405's Allow
    res:status(err.status):json { error = err.message or REASONS[err.status] or "error",
                                  status = err.status }
  else
    -- a bug in a handler: the log has the traceback, the client gets the id
    res:status(500):json { error = "internal error", status = 500, request = req.id }
  end
end)

-- Reads and checks a todo from the request body. `partial` (PATCH) makes
-- every field optional; POST needs a title.
local FIELDS = { title = true, done = true }

local function read_todo(req, partial)
  local body = req:json()   -- an empty or malformed body is a 400 already
  if type(body) ~= "table" or mw.json.is_array(body) then
    mw.abort(400, 'expected a JSON object like {"title": "...", "done": false}')
  end
  for k in pairs(body) do
    if not FIELDS[k] then mw.abort(400, ("unknown field %q (allowed: title, done)"):format(tostring(k))) end
  end
  local title, done = body.title, body.done
  if title ~= nil then
    if type(title) ~= "string" then mw.abort(400, "title must be a string") end
    title = title:match("^%s*(.-)%s*$")
    if title == "" then mw.abort(400, "title must not be empty") end
    if utf8.len(title) > MAX_TITLE then
      mw.abort(400, ("title must be at most %d characters"):format(MAX_TITLE))
    end
  elseif not partial then
    mw.abort(400, "title is required")
  end
  if done ~= nil and type(done) ~= "boolean" then mw.abort(400, "done must be true or false") end
  if partial and title == nil and done == nil then
    mw.abort(400, "nothing to change: send title and/or done")
  end
  return title, done
end

-- The todo named by the route's :id, or a 404.
local function find(req)
  local id = req.params.id:match("^%d+$") and math.tointeger(tonumber(req.params.id))
  local todo = id and todos[id]
  if not todo then mw.abort(404, ("no todo with id %q"):format(req.params.id)) end
  return todo
end

-- GET /todos[?done=true|false] -> [ {id, title, done}, ... ], oldest first
app:get("/todos", function(req, res)
  local want = req.query.done
  if want ~= nil and want ~= "true" and want ~= "false" then
    mw.abort(400, "done must be true or false")
  end
  local list = mw.json.array()   -- [] even when empty
  for id = 1, next_id - 1 do
    local todo = todos[id]
    if todo and (want == nil or tostring(todo.done) == want) then list[#list + 1] = todo end
  end
  res:json(list)
end)

-- POST /todos {"title": "...", "done": false} -> 201 and the new todo
app:post("/todos", SMALL_BODY, function(req, res)
  local title, done = read_todo(req, false)
  local todo = { id = next_id, title = title, done = done or false }
  todos[todo.id] = todo
  next_id = next_id + 1
  res:status(201):header("Location", "/todos/" .. todo.id):json(todo)
end)

-- GET /todos/:id -> the todo
app:get("/todos/:id", function(req, res)
  res:json(find(req))
end)

-- PATCH /todos/:id {"done": true} -> the changed todo
app:patch("/todos/:id", SMALL_BODY, function(req, res)
  local todo = find(req)
  local title, done = read_todo(req, true)
  if title ~= nil then todo.title = title end
  if done ~= nil then todo.done = done end
  res:json(todo)
end)

-- DELETE /todos/:id -> 204
app:delete("/todos/:id", function(req, res)
  local todo = find(req)
  todos[todo.id] = nil
  res:status(204):send()
end)

app:static("/", "public")

return app
