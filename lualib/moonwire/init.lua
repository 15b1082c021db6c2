--- moonwire: the module apps require.
--
--     local mw = require "moonwire"
--     local app = mw.app()
--     app:get("/hello/:name", function(req, res) res:send("Hello, " .. req.params.name) end)
--     return app
--
-- Everything here is a thin front for the runtime's C core
-- (`moonwire.core`) and the Lua modules beside this file.
local core = require "moonwire.core"

local M = {}

M.version = core.version

--- Makes an app. `options` changes the limits (see docs/reference.md).
---@param options table|nil
function M.app(options)
  return require("moonwire.app").new(options)
end

--- Waits `seconds` without blocking the loop (inside a handler or callback).
M.sleep = core.sleep
--- Runs `fn` once after `seconds`; returns a timer with :stop().
M.after = core.after
--- Runs `fn` every `seconds`; returns a timer with :stop().
M.every = core.every
--- Seconds since the epoch, with sub-millisecond precision.
M.now = core.now

--- Ends the current handler with an HTTP error status.
---@param status integer 400..599
---@param message string|nil
M.abort = core.abort

--- JSON that keeps arrays arrays: encode, decode, array, is_array, null.
M.json = core.json

--- Publishes to a hub channel: every subscriber (SSE streams, WebSockets,
-- parked long polls) gets it. Returns the message id.
---@param channel string|userdata a name or mw.channel(...)
---@param data string
---@param kind "text"|"binary"|nil
M.publish = core.publish

--- A hub channel: ch:publish, ch:history([since]), ch:last_id(),
-- ch:wait{ since =, timeout = }. `options.history` sets how many messages
-- it retains (default 100).
M.channel = core.channel

--- Logging to stderr: mw.log.info("..."), .warn, .error, .debug.
M.log = {}
for _, level in ipairs { "debug", "info", "warn", "error" } do
  M.log[level] = function(fmt, ...)
    core.log(level, select("#", ...) > 0 and fmt:format(...) or tostring(fmt))
  end
end

--- Middleware answering CORS preflights and marking responses.
function M.cors(options)
  return require("moonwire.cors").new(options)
end

return M
