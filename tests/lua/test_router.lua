local t = require "t"
local Router = require "moonwire.router"

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

t.done()
