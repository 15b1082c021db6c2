-- The app behind tests/integration/test_lua_api.py and test_routing.py:
-- each route shows one part of the req / res API.
local mw = require "moonwire"
local app = mw.app()
local json = mw.json

------------------------------------------------------------------- req

-- everything a request carries, as JSON
local function describe(req)
  return {
    method = req.method, path = req.path, target = req.target, query = req.query,
    params = req.params, headers = req.headers, cookies = req.cookies, id = req.id,
    remote_addr = req.remote_addr, http_version = req.http_version,
  }
end

app:get("/req", function(req, res) res:json(describe(req)) end)
app:get("/req/:a/:b", function(req, res) res:json(describe(req)) end)
app:get("/users/:id", function(req, res) res:json { id = req.params.id } end)
app:get("/files/*path", function(req, res) res:json { path = req.params.path } end)

app:get("/query_all/:name", function(req, res)
  res:json { values = req:query_all(req.params.name), first = req.query[req.params.name] }
end)

app:get("/header/:name", function(req, res)
  res:json { value = req:header(req.params.name) or json.null }
end)

app:post("/body", function(req, res) res:send(req:body()) end)
app:post("/body/twice", function(req, res)
  local a = req:body()
  res:json { same = a == req:body(), len = #a }
end)
app:post("/json", function(req, res) res:json { got = req:json() } end)
app:post("/chunks", function(req, res)
  local n, parts = 0, {}
  for chunk in req:chunks() do
    n = n + 1
    parts[#parts + 1] = chunk
  end
  res:json { pieces = n, body = table.concat(parts) }
end)
app:post("/limited", { max_body_bytes = 10 }, function(req, res) res:send(req:body()) end)
app:post("/limited/chunks", { max_body_bytes = 10 }, function(req, res)
  local total = 0
  for chunk in req:chunks() do total = total + #chunk end
  res:send(tostring(total))
end)
app:post("/unlimited-read", function(req, res) res:send("len=" .. #req:body()) end)

------------------------------------------------------------------- res

app:get("/res/chain", function(req, res)
  local r = res:status(201):header("X-One", "first"):header("X-One", "second")
  assert(r == res, "status/header return res")
  res:header("X-List", { "a", "b", "c" })
  res:header("X-Gone", "x"):header("X-Gone", nil)
  res:add_header("X-Add", "1"):add_header("X-Add", "2")
  res:header("X-Number", 42)
  assert(res:get_header("x-one") == "second")
  res:send("chained")
end)

app:get("/res/cookie", function(req, res)
  res:cookie("plain", "v1")
  res:cookie("full", "v2", {
    path = "/app", domain = "example.com", max_age = 3600, expires = 784111777,
    secure = true, http_only = true, same_site = "Strict",
  })
  res:cookie("datestr", "v3", { expires = "Wed, 21 Oct 2015 07:28:00 GMT" })
  res:send("cookies")
end)
app:get("/res/cookie/bad", function(req, res)
  local which = req.query.which
  if which == "name" then res:cookie("bad name", "v")
  elseif which == "value" then res:cookie("n", "a;b")
  elseif which == "attr" then res:cookie("n", "v", { domain = "x.com; HttpOnly" })
  elseif which == "max_age" then res:cookie("n", "v", { max_age = 1.5 })
  elseif which == "nonascii" then res:cookie("n", "caf\xc3\xa9") end
  res:send("unreachable")
end)

app:get("/res/send", function(req, res) res:send("exactly this") end)
app:get("/res/send/empty", function(req, res) res:send() end)
app:get("/res/send/binary", function(req, res)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  res:header("Content-Type", "application/octet-stream"):send(table.concat(t):rep(4))
end)
app:get("/res/send/declared-length", function(req, res)
  res:header("Content-Length", 5):send("hello")
end)

app:get("/res/json/:which", function(req, res)
  local w = req.params.which
  if w == "empty-array" then res:json(json.array({}))
  elseif w == "empty-object" then res:json({})
  elseif w == "nested" then
    res:json { list = { 1, 2, { 3 } }, empty = json.array(), obj = {}, deep = { json.array({}) },
      null = json.null, yes = true, n = 1.5, s = "caf\xc3\xa9 \"q\"" }
  elseif w == "typed" then
    res:header("Content-Type", "application/vnd.api+json"):json { ok = true }
  elseif w == "function" then res:json { f = print }
  end
end)
app:post("/res/json/echo", function(req, res) res:json(req:json()) end)

app:get("/res/redirect", function(req, res) res:redirect("/target?x=1") end)
app:get("/res/redirect/:code", function(req, res)
  res:redirect("https://example.com/", tonumber(req.params.code))
end)

app:get("/res/stream", function(req, res)
  res:header("Content-Type", "text/plain")
  for i = 1, 5 do assert(res:write("part" .. i .. ";")) end
  res:write("")
  assert(res:finish())
end)
app:get("/res/stream/unfinished", function(req, res)
  res:write("started;")
  res:write("not finished")
end)
app:get("/res/stream/declared", function(req, res)
  res:header("Content-Length", 10)
  res:write("01234")
  res:write("56789")
  res:finish()
end)

app:get("/res/send-twice", function(req, res)
  res:send("first")
  res:send("second")
end)
app:get("/res/header-after-send", function(req, res)
  res:send("complete")
  res:header("X-Late", "1")
end)
app:get("/res/status-after-send", function(req, res)
  res:send("complete")
  res:status(404)
end)
app:get("/res/header-after-write", function(req, res)
  res:write("first bytes;")
  res:header("X-Late", "1")
end)
app:get("/res/write-after-finish", function(req, res)
  res:write("a")
  res:finish()
  res:write("b")
end)
app:get("/res/bad-header/:which", function(req, res)
  local w = req.params.which
  res:header("X-Before", "set")
  if w == "name-crlf" then res:header("X-Evil\r\nInjected", "1")
  elseif w == "value-crlf" then res:header("X-Evil", "a\r\nInjected: 1")
  elseif w == "value-lf" then res:header("X-Evil", "a\nInjected: 1")
  elseif w == "value-cr" then res:header("X-Evil", "a\rInjected: 1")
  elseif w == "value-nul" then res:header("X-Evil", "a\0b")
  elseif w == "name-nul" then res:header("X-Evil\0", "1")
  elseif w == "name-space" then res:header("X Evil", "1")
  elseif w == "name-colon" then res:header("X-Evil:", "1")
  elseif w == "name-empty" then res:header("", "1")
  elseif w == "list" then res:header("X-Evil", { "fine", "bad\r\nInjected: 1" })
  elseif w == "add" then res:add_header("X-Evil", "a\r\nInjected: 1")
  elseif w == "cookie" then res:cookie("n", "v", { path = "/\r\nInjected: 1" })
  elseif w == "redirect" then res:redirect("/x\r\nInjected: 1")
  elseif w == "type" then res:header("X-Evil", true)
  end
  res:send("unreachable")
end)
app:get("/res/no-response", function(req, res)
  res:header("X-Set-But-Never-Sent", "1")
end)

-------------------------------------------------------------- errors

app:get("/abort/:status", function(req, res)
  mw.abort(tonumber(req.params.status), req.query.msg)
end)
app:get("/abort-auth", function(req, res)
  res:header("WWW-Authenticate", 'Basic realm="api"'):header("ETag", '"v1"')
  res:header("Content-Encoding", "gzip")
  mw.abort(401)
end)
app:get("/error-after-headers", function(req, res)
  res:header("X-Prepared", "1")
  error("crashed after setting a header")
end)
app:get("/error", function(req, res)
  error("kaboom in handler")
end)
app:get("/error/table", function(req, res)
  error({ code = 7 })
end)
app:get("/error/nested", function(req, res)
  local function inner() local x = nil; return x.field end
  inner()
end)

------------------------------------------------------------- timers

app:get("/sleep", function(req, res)
  local t0 = mw.now()
  mw.sleep(tonumber(req.query.s) or 0.5)
  res:json { slept = mw.now() - t0 }
end)
app:get("/now", function(req, res) res:json { now = mw.now() } end)

return app
