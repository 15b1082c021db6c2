-- The smallest moonwire app: run it with
--   build/moonwire examples/hello/app.lua
-- and open http://127.0.0.1:8080/hello/world
local mw = require "moonwire"

local app = mw.app()

app:get("/", function(req, res)
  res:send("Hello from moonwire! Try /hello/yourname\n")
end)

app:get("/hello/:name", function(req, res)
  res:send("Hello, " .. req.params.name .. "!\n")
end)

return app
