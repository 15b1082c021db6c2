-- The app behind tests/integration/test_static.py: files from ./public.
-- The test copies this folder and adds symlinks and a large file to the copy.
local mw = require "moonwire"
local app = mw.app()
app:static("/static", "public")
app:static("/plain", "public", { index = false, cache_control = "max-age=60" })
app:get("/other", function(req, res) res:send("a route beside the files") end)
return app
