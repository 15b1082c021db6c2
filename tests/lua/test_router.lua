-- The router (lualib/moonwire/router.lua): precedence, backtracking, rest
-- parameters, Allow lists, and the errors a bad route table raises.
local t = require "t"
local Router = require "moonwire.router"

-- A router with one route per entry: { method, pattern } -> route.id = "METHOD pattern".
local function router(routes)
  local r = Router.new()
  for _, spec in ipairs(routes) do
    r:add(spec[1], spec[2], { id = spec[1] .. " " .. spec[2] })
  end
  return r
end

-- The id of the route matched, its params, and the Allow value.
local function match(r, method, segs)
  local route, params, allow = r:match(method, segs)
  return route and route.id, params, allow
end

t.test("literal beats param beats rest", function()
  local r = Router.new()
  r:add("GET", "/users/*rest", { id = "rest" })
  r:add("GET", "/users/:id", { id = "param" })
  r:add("GET", "/users/me", { id = "literal" })
  t.eq(r:match("GET", { "users", "me" }).id, "literal")
  local route, params = r:match("GET", { "users", "42" })
  t.eq(route.id, "param")
  t.eq(params, { id = "42" })
  route, params = r:match("GET", { "users", "42", "posts" })
  t.eq(route.id, "rest")
  t.eq(params, { rest = "42/posts" })
end)

t.test("precedence does not depend on the order routes were added", function()
  local orders = {
    { "/p/me", "/p/:id", "/p/*rest" },
    { "/p/*rest", "/p/me", "/p/:id" },
    { "/p/:id", "/p/*rest", "/p/me" },
  }
  for _, order in ipairs(orders) do
    local r = Router.new()
    for _, pattern in ipairs(order) do r:add("GET", pattern, { id = pattern }) end
    t.eq(match(r, "GET", { "p", "me" }), "/p/me", table.concat(order, " "))
    t.eq(match(r, "GET", { "p", "you" }), "/p/:id", table.concat(order, " "))
    t.eq(match(r, "GET", { "p", "a", "b" }), "/p/*rest", table.concat(order, " "))
  end
end)

t.test("a literal branch that fails deeper backs up to the parameter", function()
  local r = router { { "GET", "/a/b/c" }, { "GET", "/a/:x/d" } }
  local id, params = match(r, "GET", { "a", "b", "d" })
  t.eq(id, "GET /a/:x/d")
  t.eq(params, { x = "b" })
  id, params = match(r, "GET", { "a", "b", "c" })
  t.eq(id, "GET /a/b/c")
  t.eq(params, {})
  t.eq(match(r, "GET", { "a", "b", "e" }), nil)
end)

t.test("a parameter branch that fails deeper backs up to the rest", function()
  local r = router { { "GET", "/x/:id/edit" }, { "GET", "/x/*path" } }
  local id, params = match(r, "GET", { "x", "1", "view" })
  t.eq(id, "GET /x/*path")
  t.eq(params, { path = "1/view" })
  id, params = match(r, "GET", { "x", "1", "edit" })
  t.eq(id, "GET /x/:id/edit")
  t.eq(params, { id = "1" })
end)

t.test("backtracking finds the deepest alternative several levels up", function()
  local r = router {
    { "GET", "/a/b/c/d" }, { "GET", "/a/b/:c/e" }, { "GET", "/a/:b/c/f" }, { "GET", "/:a/b/c/g" },
  }
  t.eq(match(r, "GET", { "a", "b", "c", "d" }), "GET /a/b/c/d")
  t.eq(match(r, "GET", { "a", "b", "c", "e" }), "GET /a/b/:c/e")
  t.eq(match(r, "GET", { "a", "b", "c", "f" }), "GET /a/:b/c/f")
  local id, params = match(r, "GET", { "a", "b", "c", "g" })
  t.eq(id, "GET /:a/b/c/g")
  t.eq(params, { a = "a" })
  t.eq(match(r, "GET", { "a", "b", "c", "h" }), nil)
end)

t.test("a branch without the method backs up to one that has it", function()
  local r = router { { "GET", "/u/me" }, { "POST", "/u/:id" } }
  local id, params = match(r, "POST", { "u", "me" })
  t.eq(id, "POST /u/:id")
  t.eq(params, { id = "me" })
end)

t.test("*rest takes the rest, including nothing", function()
  local r = router { { "GET", "/files/*path" }, { "GET", "/any/*" } }
  local id, params = match(r, "GET", { "files", "a", "b", "c.txt" })
  t.eq(id, "GET /files/*path")
  t.eq(params, { path = "a/b/c.txt" })
  id, params = match(r, "GET", { "files" })
  t.eq(id, "GET /files/*path")
  t.eq(params, { path = "" })
  id, params = match(r, "GET", { "files", "x" })
  t.eq(params, { path = "x" })
  -- an unnamed rest is called "rest"
  id, params = match(r, "GET", { "any", "1", "2" })
  t.eq(id, "GET /any/*")
  t.eq(params, { rest = "1/2" })
  t.eq(match(r, "GET", { "other" }), nil)
end)

t.test("a rest at the root matches every path, the root included", function()
  local r = router { { "GET", "/*all" }, { "GET", "/exact" } }
  local id, params = match(r, "GET", {})
  t.eq(id, "GET /*all")
  t.eq(params, { all = "" })
  id, params = match(r, "GET", { "x", "y" })
  t.eq(params, { all = "x/y" })
  t.eq(match(r, "GET", { "exact" }), "GET /exact")
end)

t.test("the root route and a literal under it", function()
  local r = router { { "GET", "/" }, { "GET", "/a" } }
  t.eq(match(r, "GET", {}), "GET /")
  t.eq(match(r, "GET", { "a" }), "GET /a")
  t.eq(match(r, "GET", { "b" }), nil)
end)

t.test("params carry the decoded segment as given, slashes included", function()
  -- the runtime decodes each segment after splitting, so %2F arrives as "/"
  -- inside one segment and must not reach a deeper route
  local r = router { { "GET", "/users/:id" }, { "GET", "/users/:id/x" } }
  local id, params = match(r, "GET", { "users", "a/b" })
  t.eq(id, "GET /users/:id")
  t.eq(params, { id = "a/b" })
  id, params = match(r, "GET", { "users", "caf\xc3\xa9 & co" })
  t.eq(params, { id = "caf\xc3\xa9 & co" })
  -- a literal pattern is compared with the decoded segment
  r = router { { "GET", "/a b/c" } }
  t.eq(match(r, "GET", { "a b", "c" }), "GET /a b/c")
end)

t.test("several params in one pattern", function()
  local r = router { { "GET", "/org/:org/repo/:repo/*path" } }
  local id, params = match(r, "GET", { "org", "o1", "repo", "r1", "src", "main.c" })
  t.eq(id, "GET /org/:org/repo/:repo/*path")
  t.eq(params, { org = "o1", repo = "r1", path = "src/main.c" })
end)

t.test("a trailing slash in a pattern is not significant", function()
  local r = router { { "GET", "/a/" }, { "GET", "/b/:id/" } }
  t.eq(match(r, "GET", { "a" }), "GET /a/")
  local id, params = match(r, "GET", { "b", "7" })
  t.eq(id, "GET /b/:id/")
  t.eq(params, { id = "7" })
  -- "/a" and "/a/" are the same route
  t.raises(function() r:add("GET", "/a", {}) end, "defined twice")
end)

t.test("HEAD is answered by the GET route unless it has its own", function()
  local r = router { { "GET", "/g" }, { "GET", "/h" }, { "HEAD", "/h" } }
  t.eq(match(r, "HEAD", { "g" }), "GET /g")
  t.eq(match(r, "HEAD", { "h" }), "HEAD /h")
end)

t.test("a path that matches without the method gives the Allow list", function()
  local r = router { { "GET", "/x" }, { "POST", "/x" }, { "PUT", "/y" }, { "DELETE", "/z" },
    { "OPTIONS", "/z" } }
  local id, params, allow = match(r, "DELETE", { "x" })
  t.eq(id, nil)
  t.eq(params, nil)
  t.eq(allow, "GET, HEAD, OPTIONS, POST")
  -- no GET: no HEAD; OPTIONS always
  t.eq(select(3, match(r, "GET", { "y" })), "OPTIONS, PUT")
  t.eq(select(3, match(r, "HEAD", { "y" })), "OPTIONS, PUT")
  t.eq(select(3, match(r, "OPTIONS", { "y" })), "OPTIONS, PUT")
  -- an explicit OPTIONS route is listed once, and answers OPTIONS itself
  t.eq(select(3, match(r, "GET", { "z" })), "DELETE, OPTIONS")
  t.eq(match(r, "OPTIONS", { "z" }), "OPTIONS /z")
end)

t.test("Allow joins the methods of every route the path matches", function()
  local r = router { { "GET", "/u/me" }, { "PATCH", "/u/:id" }, { "DELETE", "/u/*rest" } }
  t.eq(select(3, match(r, "PUT", { "u", "me" })), "DELETE, GET, HEAD, OPTIONS, PATCH")
  t.eq(select(3, match(r, "PUT", { "u", "42" })), "DELETE, OPTIONS, PATCH")
  t.eq(select(3, match(r, "PUT", { "u", "42", "x" })), "DELETE, OPTIONS")
end)

t.test("no route for the path: nothing at all", function()
  local r = router { { "GET", "/x" } }
  local id, params, allow = match(r, "GET", { "y" })
  t.eq(id, nil)
  t.eq(params, nil)
  t.eq(allow, nil)
  t.eq(match(r, "GET", { "x", "y" }), nil)
  t.eq(match(Router.new(), "GET", {}), nil)
end)

t.test("a parameter never matches an empty segment", function()
  local r = router { { "GET", "/a/:id" } }
  t.eq(match(r, "GET", { "a", "" }), nil)
  t.eq(match(r, "GET", { "a" }), nil)
end)

t.test("a duplicate route raises, whatever its parameter names", function()
  local r = router { { "GET", "/u/:id" }, { "GET", "/f/*path" } }
  t.raises(function() r:add("GET", "/u/:id", {}) end, "route GET /u/:id is defined twice")
  t.raises(function() r:add("GET", "/u/:name", {}) end, "defined twice")
  t.raises(function() r:add("GET", "/f/*other", {}) end, "defined twice")
  -- the same pattern with another method is fine
  r:add("POST", "/u/:id", { id = "post" })
  t.eq(r:match("POST", { "u", "1" }).id, "post")
  t.eq(r.count, 3)
end)

t.test("bad patterns raise with a message naming the problem", function()
  local cases = {
    { "users", "must be a string starting with '/'" },
    { "", "must be a string starting with '/'" },
    { 42, "must be a string starting with '/'" },
    { "/:", "bad parameter name \":\"" },
    { "/a/:9x", "bad parameter name \":9x\"" },
    { "/a/:x-y", "bad parameter name \":x%-y\"" },
    { "/*a b", "bad parameter name" },
    { "/:id/:id", "parameter \"id\" appears twice" },
    { "/:path/*path", "parameter \"path\" appears twice" },
    { "/files/*path/more", "\"%*path\" must be the last segment" },
  }
  for _, c in ipairs(cases) do
    local r = Router.new()
    t.raises(function() r:add("GET", c[1], {}) end, c[2])
    local steps, err = Router.parse(c[1])
    t.eq(steps, nil, tostring(c[1]))
    t.ok(err and err:find(c[2]), ("parse(%s) -> %s"):format(tostring(c[1]), tostring(err)))
    t.eq(r.count, 0)
  end
end)

t.test("route errors point at the app's line, however the route was added", function()
  local app = require("moonwire.app").new()
  local h = function() end
  local cases = {
    { function() app:get("nope", h) end, "starting with '/'" },
    { function() app:route("GET", "nope", h) end, "starting with '/'" },
    { function() app:get("/x", "nope") end, "handler must be a function" },
    { function() app:route("GET", "/x", 42) end, "handler must be a function" },
    { function() app:post("/x", { bad = 1 }, h) end, "unknown option \"bad\"" },
    { function() app:route("PUT", "/x", { max_body_bytes = 1.5 }, h) end, "non%-negative integer" },
    { function() app:get("/:a/:a", h) end, "appears twice" },
    { function() app:get("/d", h); app:get("/d", h) end, "defined twice" },
    { function() app:route("get", "/x", h) end, "upper%-case" },
    { function() app:use("nope") end, "middleware must be a function" },
    { function() require("moonwire").app { nope = 1 } end, "unknown option \"nope\"" },
    { function() require("moonwire").app { idle_timeout = -1 } end, "non%-negative number" },
  }
  for i, c in ipairs(cases) do
    local ok, err = pcall(c[1])
    t.eq(ok, false, "case " .. i)
    err = tostring(err)
    t.ok(err:find(c[2]), ("case %d: %s"):format(i, err))
    t.ok(err:find("^[^:]*test_router%.lua:%d+: "), ("case %d names no app line: %s"):format(i, err))
  end
end)

t.test("the exact-path shortcut finds what the tree walk finds", function()
  -- the runtime passes a key (the decoded path without its trailing slash)
  -- so all-literal routes resolve with one lookup; it must never change
  -- the answer
  local r = router {
    { "GET", "/" }, { "GET", "/a" }, { "POST", "/a" }, { "GET", "/a/b" }, { "GET", "/a/:x" },
    { "PUT", "/a/:x" }, { "GET", "/a/*rest" }, { "HEAD", "/h/:x" }, { "GET", "/h/lit" },
    { "DELETE", "/d/lit" }, { "GET", "/d/:x" }, { "GET", "/p/:x/q" }, { "GET", "/p/lit/z" },
    { "OPTIONS", "/o" }, { "GET", "/*all" },
  }
  local paths = {
    {}, { "a" }, { "a", "b" }, { "a", "c" }, { "a", "b", "c" }, { "h", "lit" }, { "h", "x" },
    { "d", "lit" }, { "d", "x" }, { "p", "lit", "q" }, { "p", "lit", "z" }, { "o" }, { "zz" },
    { "a", "" }, { "", "a" },
  }
  for _, segs in ipairs(paths) do
    local key = "/" .. table.concat(segs, "/")
    for _, m in ipairs { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH" } do
      local id1, params1, allow1 = match(r, m, segs)
      local what = m .. " " .. key
      -- with the segments, and with only the key (the runtime's usual call)
      for _, s in ipairs { segs, false } do
        local route, params2, allow2 = r:match(m, s, key)
        t.eq(route and route.id, id1, what)
        t.eq(params2 or (route and {}), params1, what) -- nil for an all-literal route
        t.eq(allow2, allow1, what)
      end
    end
  end
  -- a segment holding "/" has no key: the walk decides
  local id, params = match(r, "GET", { "a", "b/c" })
  t.eq(id, "GET /a/:x")
  t.eq(params, { x = "b/c" })
end)

t.test("parse gives literal, param and rest steps", function()
  t.eq(Router.parse("/a/:b/*c"), {
    { kind = "literal", text = "a" }, { kind = "param", name = "b" }, { kind = "rest", name = "c" },
  })
  t.eq(Router.parse("/"), {})
  t.eq(Router.parse("//a//b/"), { { kind = "literal", text = "a" }, { kind = "literal", text = "b" } })
end)

t.test("the app's route methods register through the router", function()
  local app = require("moonwire.app").new()
  local h = function() end
  app:get("/r", h):post("/r", h):put("/r", h):patch("/r", h):delete("/r", h):options("/r", h)
  app:route("PURGE", "/r", h)
  t.eq(select(3, app.router:match("TRACE", { "r" })), "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PURGE, PUT")
  t.eq(app.router:match("PURGE", { "r" }).handler, h)
  t.raises(function() app:get("/r", h) end, "defined twice")
  t.raises(function() app:route("get", "/x", h) end, "upper%-case")
  t.raises(function() app:get("/x", "not a function") end, "handler must be a function")
  t.raises(function() app:get("/x", { max_body_bytes = -1 }, h) end, "max_body_bytes must be")
  t.raises(function() app:get("/x", { nope = 1 }, h) end, "unknown option \"nope\"")
  t.raises(function() app:get("bad", h) end, "starting with '/'")
  app:post("/limited", { max_body_bytes = 10 }, h)
  t.eq(app.router:match("POST", { "limited" }).opts, { max_body_bytes = 10 })
end)

t.done()

t.test("a router key names its segments", function()
  t.eq(Router.split_key("/"), {})
  t.eq(Router.split_key("*"), {})
  t.eq(Router.split_key("/a"), { "a" })
  t.eq(Router.split_key("/a/b c"), { "a", "b c" })
  t.eq(Router.split_key("/a//b"), { "a", "", "b" })
  t.eq(Router.split_key("//"), { "", "" })
end)

t.test("with only a key, a miss on the literal routes walks the split key", function()
  local r = Router.new()
  r:add("GET", "/users/:id", { id = "param" })
  r:add("GET", "/users/me", { id = "literal" })
  r:add("POST", "/users/me", { id = "post" })
  local route, params = r:match("GET", false, "/users/me")
  t.eq(route.id, "literal")
  t.eq(params, nil)
  route, params = r:match("GET", false, "/users/42")
  t.eq(route.id, "param")
  t.eq(params, { id = "42" })
  local _, _, allow = r:match("PUT", false, "/users/me")
  t.eq(allow, "GET, HEAD, OPTIONS, POST")
  t.eq(r:match("GET", false, "/nope"), nil)
end)
