-- Fixture app for tests/integration/test_http_protocol.py: one route per
-- behaviour the HTTP layer must get right. Handlers log what they saw so
-- the tests can check the server side too.
local mw = require "moonwire"
local app = mw.app()

app:get("/", function(req, res) res:send("root") end)

-- echoes the request line parts back, for keep-alive and pipelining checks
app:get("/echo/:n", function(req, res)
  res:header("X-Seq", req.params.n):send("n=" .. req.params.n .. " v=" .. req.http_version)
end)

-- sleeps `ms` milliseconds before answering: pipelined answers must stay in order
app:get("/sleep/:ms", function(req, res)
  mw.sleep(tonumber(req.params.ms) / 1000)
  res:send("slept " .. req.params.ms)
end)

-- reads the whole body and answers with its length and the body itself
app:post("/body", function(req, res)
  local body = req:body()
  mw.log.info("body route got %d bytes", #body)
  res:header("X-Body-Length", #body):send(body)
end)

-- the same through req:chunks()
app:post("/chunks", function(req, res)
  local parts = {}
  for chunk in req:chunks() do parts[#parts + 1] = chunk end
  res:send(table.concat(parts))
end)

-- answers without reading the body (an auth check refusing early)
app:post("/deny", function(req, res)
  mw.log.info("deny route answered without reading")
  res:status(401):header("WWW-Authenticate", "Basic"):send("no")
end)

-- a small per-route body limit
app:post("/small", { max_body_bytes = 10 }, function(req, res)
  res:send(req:body())
end)

-- a fixed body for GET/HEAD comparison
app:get("/fixed", function(req, res)
  res:header("X-Custom", "yes"):header("Content-Type", "text/x-fixed"):send("0123456789abcdef")
end)

-- a streamed body (chunked on HTTP/1.1)
app:get("/stream", function(req, res)
  res:write("one ")
  res:write("two ")
  res:write("three")
end)

app:get("/nocontent", function(req, res) res:status(204):send() end)
app:get("/nocontent/json", function(req, res) res:status(204):json {} end)
app:get("/notmodified", function(req, res) res:status(304):header("ETag", '"v1"'):send() end)
app:get("/notmodified/typed", function(req, res)
  res:status(304):header("Content-Type", "text/css"):send()
end)

app:get("/addr", function(req, res) res:send(req.remote_addr) end)

-- raises: a 500 whose body names req.id, traceback in the log
app:get("/boom", function(req, res)
  mw.log.info("boom request id %s", req.id)
  local t = nil
  return t.field -- SECRET_DETAIL: indexing nil
end)

app:get("/raise", function(req, res)
  error("SECRET_DETAIL_" .. req.id)
end)

-- invalid headers from Lua: each must be refused before reaching the wire
local BAD_HEADERS = {
  crlf = { "X-Bad", "a\r\nInjected: yes" },
  lf = { "X-Bad", "a\nInjected: yes" },
  cr = { "X-Bad", "a\rInjected: yes" },
  nul = { "X-Bad", "a\0Injected: yes" },
  name = { "X-Bad\r\nInjected", "yes" },
  list = { "X-Bad", { "fine", "b\r\nInjected: yes" } },
}
app:get("/badheader/:kind", function(req, res)
  local h = BAD_HEADERS[req.params.kind]
  res:header("X-Ok", "fine")
  res:header(h[1], h[2])
  res:send("should not be sent")
end)

app:get("/secret", function(req, res)
  mw.log.info("SMUGGLED request reached /secret")
  res:send("secret")
end)

app:post("/", function(req, res)
  mw.log.info("POST / read %d bytes", #req:body())
  res:send("posted")
end)

return app
