local mw = require "moonwire"
local app = mw.app()
app:get("/", function(req, res) res:send("Hello, World!") end)
return app
