--- mw.cors{...}: Cross-Origin Resource Sharing as middleware.
--
--     app:use(mw.cors{ origins = { "https://example.com" }, credentials = true })
--
-- Answers preflight requests (OPTIONS with Access-Control-Request-Method)
-- with 204 and marks every other response from an allowed origin.
-- Options: origins ("*", a list, or function(origin) -> bool; default
-- "*"), methods (list), headers (list; default: echo the request's),
-- expose (list), credentials (bool), max_age (seconds, default 600).
local M = {}

local concat = table.concat

local function list(v, default)
  if v == nil then return default end
  if type(v) == "string" then return v end
  return concat(v, ", ")
end

function M.new(opts)
  opts = opts or {}
  local origins = opts.origins or "*"
  local allowed
  if origins == "*" then
    allowed = function() return true end
  elseif type(origins) == "function" then
    allowed = origins
  elseif type(origins) == "table" then
    local set = {}
    for _, o in ipairs(origins) do set[o] = true end
    allowed = function(o) return set[o] == true end
  else
    error("mw.cors: origins must be \"*\", a list or a function", 2)
  end
  local methods = list(opts.methods, "GET, HEAD, PUT, PATCH, POST, DELETE")
  local headers = opts.headers and list(opts.headers)
  local expose = opts.expose and list(opts.expose)
  local credentials = opts.credentials and true or false
  local max_age = tostring(opts.max_age or 600)
  local any = origins == "*" and not credentials

  return function(req, res, next)
    local origin = req:header("origin")
    if not origin or not allowed(origin) then return next() end
    res:header("Access-Control-Allow-Origin", any and "*" or origin)
    if not any then res:header("Vary", "Origin") end
    if credentials then res:header("Access-Control-Allow-Credentials", "true") end
    if req.method == "OPTIONS" and req:header("access-control-request-method") then
      res:header("Access-Control-Allow-Methods", methods)
      local wanted = headers or req:header("access-control-request-headers")
      if wanted then res:header("Access-Control-Allow-Headers", wanted) end
      res:header("Access-Control-Max-Age", max_age)
      return res:status(204):send()
    end
    if expose then res:header("Access-Control-Expose-Headers", expose) end
    return next()
  end
end

return M
