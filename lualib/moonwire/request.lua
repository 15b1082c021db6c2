--- Methods of `req` and `res` written in Lua, added to the C handles'
-- method tables. Loaded once by moonwire.core's users (app.lua).
local core = require "moonwire.core"

local req_methods, res_methods = core.req_methods, core.res_methods
local json = core.json
local new_status_error = core.new_status_error

--- req:json() -> decoded body. Raises a 400 status error when the body is
-- empty or not valid JSON (and whatever req:body() raises).
function req_methods.json(req)
  local body = req:body()
  if body == "" then error(new_status_error(400, "expected a JSON body, got an empty one"), 2) end
  local value, err = json.decode(body)
  if value == nil and err then error(new_status_error(400, err), 2) end
  return value
end

--- res:redirect(url [, status]) ends the response with a redirect (302).
function res_methods.redirect(res, url, status)
  if type(url) ~= "string" then error("res:redirect: url must be a string", 2) end
  if url:find("[\r\n\0]") then error("res:redirect: url contains CR, LF or NUL", 2) end
  status = status or 302
  if math.type(status) ~= "integer" or status < 300 or status > 399 then
    error("res:redirect: status must be a 3xx code", 2)
  end
  res:status(status):header("Location", url)
  return res:send("")
end

local function check_cookie_part(what, s)
  if type(s) ~= "string" then error(("res:cookie: %s must be a string"):format(what), 3) end
end

-- An attribute value (path, domain, a date) must not end the attribute or
-- the header line early.
local function cookie_attr(name, key, v)
  if type(v) ~= "string" and type(v) ~= "number" then
    error(("res:cookie: attribute %s of %q must be a string, got %s"):format(key, name, type(v)), 3)
  end
  v = tostring(v)
  if v:find("[%c;]") then
    error(("res:cookie: attribute %s of %q contains a control character or ';'"):format(key, name), 3)
  end
  return v
end

--- res:cookie(name, value [, attrs]) adds a Set-Cookie header.
-- attrs: path, domain, max_age (seconds), expires (epoch seconds or a
-- date string), secure, http_only, same_site ("Strict", "Lax", "None").
function res_methods.cookie(res, name, value, attrs)
  check_cookie_part("name", name)
  check_cookie_part("value", value)
  if not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    error(("res:cookie: invalid cookie name %q"):format(name), 2)
  end
  if value:find("[%c%s\",;\\\127-\255]") then
    error(("res:cookie: value for %q has characters a cookie cannot hold (space, quote, comma, "
      .. "semicolon, backslash or non-ASCII); encode it first"):format(name), 2)
  end
  local parts = { name .. "=" .. value }
  attrs = attrs or {}
  if attrs.path then parts[#parts + 1] = "Path=" .. cookie_attr(name, "path", attrs.path) end
  if attrs.domain then parts[#parts + 1] = "Domain=" .. cookie_attr(name, "domain", attrs.domain) end
  if attrs.max_age then
    local n = math.tointeger(attrs.max_age)
    if not n then
      error(("res:cookie: max_age of %q must be a whole number of seconds, got %s"):format(name,
        tostring(attrs.max_age)), 2)
    end
    parts[#parts + 1] = ("Max-Age=%d"):format(n)
  end
  if attrs.expires then
    local e = attrs.expires
    parts[#parts + 1] = "Expires="
      .. (type(e) == "number" and core.http_date(math.floor(e)) or cookie_attr(name, "expires", e))
  end
  if attrs.secure then parts[#parts + 1] = "Secure" end
  if attrs.http_only then parts[#parts + 1] = "HttpOnly" end
  if attrs.same_site then
    parts[#parts + 1] = "SameSite=" .. cookie_attr(name, "same_site", attrs.same_site)
  end
  local line = table.concat(parts, "; ")
  res:add_header("Set-Cookie", line)
  return res
end

return true
