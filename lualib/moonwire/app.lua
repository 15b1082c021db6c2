--- The app object: routes, middleware, error handling, and the dispatcher
-- the runtime calls for every request.
--
-- The runtime starts `app:_dispatch(req, res, segments, trailing)` in a new
-- coroutine once a request's headers are in. Everything after that (route
-- lookup, middleware, the handler, error pages) happens here, in Lua.
local core = require "moonwire.core"
local Router = require "moonwire.router"
require "moonwire.request" -- req:json, res:redirect, res:cookie

local M = {}
local App = {}
App.__index = App

local abort, new_status_error = core.abort, core.new_status_error
local is_status_error, is_closed = core.is_status_error, core.is_closed
local traceback, xpcall, type, error = debug.traceback, xpcall, type, error
local log = core.log

-- Options of mw.app{...}: name -> check. Sizes in bytes, times in seconds.
local APP_OPTIONS = {
  max_header_bytes = "bytes", max_body_bytes = "bytes", max_queued_bytes = "bytes",
  max_message = "bytes", header_timeout = "seconds", idle_timeout = "seconds",
  send_timeout = "seconds", shutdown_timeout = "seconds",
}
local ROUTE_OPTIONS = { max_body_bytes = "bytes" }

local function check_options(given, known, what, level)
  if given == nil then return {} end
  if type(given) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(given)), level + 1)
  end
  local out = {}
  for k, v in pairs(given) do
    local kind = known[k]
    if not kind then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("%s: unknown option %q (known: %s)"):format(what, tostring(k), table.concat(names, ", ")),
        level + 1)
    end
    if type(v) ~= "number" or v < 0 or (kind == "bytes" and math.type(v) ~= "integer") then
      error(("%s: option %s must be a %s, got %s"):format(what, k,
        kind == "bytes" and "non-negative integer (bytes)" or "non-negative number (seconds)",
        tostring(v)), level + 1)
    end
    out[k] = v
  end
  return out
end

--- mw.app(options) -> app
-- (`limits`, not `options`: that name is app:options, the route method.)
function M.new(options)
  return setmetatable({
    limits = check_options(options, APP_OPTIONS, "mw.app", 2),
    router = Router.new(),
    middleware = {},
  }, App)
end

--- app:route(method, pattern, [opts,] handler)
-- Errors name the app's line: app:get and friends tail-call this, so level
-- 2 is the app's code whichever way it was called.
function App:route(method, pattern, opts, handler)
  if handler == nil and type(opts) ~= "table" then opts, handler = nil, opts end
  if type(method) ~= "string" or not method:match("^[%u]+$") then
    error(("app:route: method must be upper-case like \"GET\", got %s"):format(tostring(method)), 2)
  end
  if type(handler) ~= "function" then
    error(("route %s %s: the handler must be a function(req, res), got %s"):format(method,
      tostring(pattern), type(handler)), 2)
  end
  opts = check_options(opts, ROUTE_OPTIONS, ("route %s %s"):format(method, tostring(pattern)), 2)
  self.router:add(method, pattern, { handler = handler, opts = opts })
  return self
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "options" } do
  local method = m:upper()
  App[m] = function(self, pattern, opts, handler)
    return App.route(self, method, pattern, opts, handler)
  end
end

--- app:use(function(req, res, next) ... end): runs for every request.
function App:use(fn)
  if type(fn) ~= "function" then
    error(("app:use: middleware must be a function(req, res, next), got %s"):format(type(fn)), 2)
  end
  self.middleware[#self.middleware + 1] = fn
  return self
end

--- app:on_error(function(req, res, err) ... end): answers errors your way.
function App:on_error(fn)
  if type(fn) ~= "function" then
    error(("app:on_error: expects a function(req, res, err), got %s"):format(type(fn)), 2)
  end
  self.error_handler = fn
  return self
end

--- app:static(prefix, folder [, opts]): serves files from folder.
function App:static(prefix, folder, opts)
  require("moonwire.static").mount(self, prefix, folder, opts)
  return self
end

-- app:ws options, beside the handlers in the same table.
local WS_HANDLERS = { open = true, message = true, close = true, drain = true, upgrade = true }
local WS_OPTIONS = { max_message = "bytes", heartbeat = "seconds", protocols = "list",
  compression = "boolean" }

--- app:ws(pattern, { open =, message =, close =, drain =, upgrade =, options... })
function App:ws(pattern, handlers)
  if type(handlers) ~= "table" then
    error(("app:ws %s: expects a table of handlers (open, message, close, ...), got %s"):format(
      tostring(pattern), type(handlers)), 2)
  end
  for k, v in pairs(handlers) do
    if WS_HANDLERS[k] then
      if type(v) ~= "function" then
        error(("app:ws %s: handler %s must be a function, got %s"):format(pattern, k, type(v)), 2)
      end
    elseif WS_OPTIONS[k] == "bytes" or WS_OPTIONS[k] == "seconds" then
      if type(v) ~= "number" or v < 0 or (WS_OPTIONS[k] == "bytes" and math.type(v) ~= "integer") then
        error(("app:ws %s: option %s must be a non-negative %s"):format(pattern, k,
          WS_OPTIONS[k] == "bytes" and "integer (bytes)" or "number (seconds)"), 2)
      end
    elseif WS_OPTIONS[k] == "list" then
      if type(v) ~= "table" then error(("app:ws %s: protocols must be a list of names"):format(pattern), 2) end
      for _, p in ipairs(v) do
        if type(p) ~= "string" or not p:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
          error(("app:ws %s: protocol %q is not a valid token"):format(pattern, tostring(p)), 2)
        end
      end
    elseif WS_OPTIONS[k] == "boolean" then
      if type(v) ~= "boolean" then error(("app:ws %s: compression must be true or false"):format(pattern), 2) end
    else
      error(("app:ws %s: unknown field %q (handlers: open, message, close, drain, upgrade; "
        .. "options: max_message, heartbeat, protocols, compression)"):format(pattern, tostring(k)), 2)
    end
  end
  local function accept(req, res)
    if handlers.upgrade then
      local verdict = handlers.upgrade(req, res)
      if verdict == false then
        -- refused: the hook answered (or gets a 403 for it)
        if res:_state() == "none" then abort(403) end
        return
      end
    end
    res:_ws_accept(handlers, req, pattern)
  end
  self.router:add("GET", pattern, { handler = accept, opts = {}, ws = handlers })
  -- open sockets find their handlers here by pattern at every event, so
  -- after a reload they run the new version's code (or close with 1012)
  self.ws_routes = self.ws_routes or {}
  self.ws_routes[pattern] = handlers
  return self
end

------------------------------------------------------------------- dispatch

-- Keeps status errors and `closed` as they are; anything else gets a traceback.
local function on_raise(e)
  if is_closed(e) or is_status_error(e) then return e end
  return traceback(tostring(e), 2)
end

local fail -- (below) answers an error: app:on_error, else the default page

-- The router's own 404 and 405 are answered where a handler would run, so
-- next() returns to middleware after them as it does after a handler.
local function answer_error(app, err)
  return function(req, res) return fail(app, req, res, err) end
end

local function options_answer(allow)
  return function(_, res) res:status(204):header("Allow", allow):send() end
end

local function run_chain(mws, i, req, res, final)
  local fn = mws[i]
  if not fn then return final(req, res) end
  local called = false
  return fn(req, res, function()
    if called then error("next() was called twice", 2) end
    called = true
    return run_chain(mws, i + 1, req, res, final)
  end)
end

local match = Router.Router.match -- called directly: no method lookup per request

local function handle(app, req, res, method, segs, key)
  if segs == nil then abort(400, key) end
  local route, params, allow = match(app.router, method, segs, key)
  local final
  if route then
    final = route.handler
    local limit = route.opts.max_body_bytes
    if limit then req:_set_body_limit(limit) end
  elseif allow then
    if method == "OPTIONS" then
      final = options_answer(allow)
    else
      local e = new_status_error(405)
      e.headers = { Allow = allow }
      final = answer_error(app, e)
    end
  else
    final = answer_error(app, new_status_error(404))
  end
  if params then req:_set_params(params) end -- else made when asked for
  if #app.middleware == 0 then return final(req, res) end
  return run_chain(app.middleware, 1, req, res, final)
end

-- Headers describing a body that an error page replaces.
local BODY_HEADERS = { "Content-Encoding", "Content-Language", "Content-Range", "Content-Disposition",
  "Content-Location", "ETag", "Last-Modified" }

local function error_page(app, req, res, err)
  local status, message = is_status_error(err)
  if status then
    -- a status error is an answer: it keeps the headers set so far (CORS or
    -- request-id headers from middleware, WWW-Authenticate before abort(401))
    for _, name in ipairs(BODY_HEADERS) do res:header(name, nil) end
  else
    res:_reset() -- a crash: nothing the handler prepared is trusted
  end
  res:status(status or 500):header("Content-Type", "text/plain; charset=utf-8")
  if status then
    if type(err.headers) == "table" then
      for k, v in pairs(err.headers) do res:header(k, v) end
    end
    if status == 413 or status == 431 then res:_close_after() end
    res:send(("%d %s%s\n"):format(status, core.reason(status), message and (": " .. message) or ""))
  elseif core.dev_mode then
    res:send(("500 Internal Server Error (request %s)\n\n%s\n"):format(req.id, tostring(err)))
  else
    res:send(("500 Internal Server Error (request %s)\n"):format(req.id))
  end
end

function fail(app, req, res, err)
  if is_closed(err) then return end
  if not is_status_error(err) then
    log("error", ("req %s %s %s: %s"):format(req.id, req.method, req.target, tostring(err)))
  end
  local state, live = res:_state()
  if not live then return end
  if state == "streaming" or state == "stream" then
    -- a started response cannot turn into an error page: cut it short so
    -- the client sees a truncated body, not a complete one
    res:_abort()
    return
  end
  if state ~= "none" then return end
  if app.error_handler then
    local ok, e2 = xpcall(app.error_handler, on_raise, req, res, err)
    if not ok then
      if is_closed(e2) then return end
      -- on_error failing is the answer now: the default 500 (or the
      -- status it aborted with), not the page for the error it was given
      if not is_status_error(e2) then
        log("error", ("req %s: on_error handler failed: %s"):format(req.id, tostring(e2)))
      end
      err = e2
    end
    state, live = res:_state()
    if not live then return end
    if state == "streaming" then
      -- on_error started an answer: finish it like a handler's, or cut it
      if ok then res:finish() else res:_abort() end
      return
    end
    if state ~= "none" then return end
  end
  error_page(app, req, res, err)
end

--- Called by the runtime, in the request's own coroutine, with the
-- request's method, its decoded path segments (false when the router key
-- names them) and the router key (see Router:match), or nil and a message
-- when the target is malformed.
function App:_dispatch(req, res, method, segs, key)
  if core.dev_mode and key and key:find("/__moonwire/livereload", 1, true) == 1
     and require("moonwire.livereload").handle(req, res, key) then
    return
  end
  local ok, err = xpcall(handle, on_raise, self, req, res, method, segs, key)
  if not ok then return fail(self, req, res, err) end
  local state, live = res:_state()
  if not live then return end
  if state == "streaming" then
    res:finish()
  elseif state == "none" then
    fail(self, req, res, ("the handler for %s %s returned without sending a response"):format(
      req.method, req.path or req.target))
  end
end

M.App = App
return M
