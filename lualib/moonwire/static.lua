--- app:static(prefix, folder [, opts]): files from a folder.
--
-- The folder is relative to the app's own folder. Only regular files
-- inside it are served: no dotfiles, no path that leaves it (segments are
-- already decoded and ".." resolved by the runtime; symlinks pointing
-- outside are refused too). Responses carry ETag and Last-Modified and
-- answer conditional requests with 304.
local core = require "moonwire.core"

local M = {}

local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  map = "application/json", txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  csv = "text/csv; charset=utf-8", xml = "application/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", avif = "image/avif", ico = "image/x-icon", wasm = "application/wasm",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  pdf = "application/pdf", mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav",
  mp4 = "video/mp4", webm = "video/webm", zip = "application/zip", gz = "application/gzip",
}
M.types = TYPES

local SMALL_FILE_BYTES = 256 * 1024 -- read whole; larger files stream
local CHUNK_BYTES = 64 * 1024

local function content_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
  Oct = 10, Nov = 11, Dec = 12 }

-- An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as epoch seconds, or nil.
local function parse_http_date(s)
  local d, mon, y, h, mi, sec = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = mon and MONTHS[mon]
  if not m then return nil end
  y = tonumber(y)
  if m <= 2 then y = y - 1 end
  -- days from 1970-01-01 (the civil-from-days inverse, proleptic Gregorian)
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((m + 9) % 12) + 2) // 5 + tonumber(d) - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end
M.parse_http_date = parse_http_date

local function is_inside(real, root)
  return real == root or real:sub(1, #root + 1) == root .. "/"
end

local function send_file(req, res, path, st, opts)
  -- nanoseconds too: a same-size edit within the same second (an editor's
  -- quick save) must not look unchanged
  local etag = ('W/"%x-%x.%x"'):format(st.size, st.mtime, st.mtime_ns or 0)
  local modified = core.http_date(st.mtime)
  res:header("ETag", etag):header("Last-Modified", modified)
     :header("Cache-Control", opts.cache_control)
  local inm = req:header("if-none-match")
  if inm then
    for tag in inm:gmatch("[^,%s]+") do
      if tag == etag or tag == "*" or tag == etag:sub(3) then return res:status(304):send() end
    end
  else
    -- not modified since a date at or after the file's (and not in the future)
    local since = req:header("if-modified-since")
    local t = since and parse_http_date(since)
    if t and st.mtime <= t and t <= os.time() then return res:status(304):send() end
  end
  res:header("Content-Type", content_type(path))
  if req.method == "HEAD" then
    return res:header("Content-Length", st.size):send()
  end
  local f, err = io.open(path, "rb")
  if not f then
    core.log("warn", ("static: cannot open %s: %s"):format(path, err))
    core.abort(404)
  end
  if st.size <= SMALL_FILE_BYTES then
    local data = f:read("a")
    f:close()
    return res:send(data)
  end
  res:header("Content-Length", st.size)
  local ok, e = pcall(function()
    while true do
      local chunk = f:read(CHUNK_BYTES)
      if not chunk then break end
      if not res:write(chunk) then break end
    end
  end)
  f:close()
  if not ok then error(e, 0) end
  return res:finish()
end

function M.mount(app, prefix, folder, opts)
  if type(prefix) ~= "string" or prefix:sub(1, 1) ~= "/" then
    error("app:static: prefix must be a path starting with '/'", 3)
  end
  if type(folder) ~= "string" then error("app:static: folder must be a string", 3) end
  opts = opts or {}
  local dir = folder:sub(1, 1) == "/" and folder or (core.app_dir .. "/" .. folder)
  local root = core.realpath(dir)
  if not root then error(("app:static: folder %q does not exist"):format(dir), 3) end
  local st = core.stat(root)
  if not st or st.type ~= "directory" then
    error(("app:static: %q is not a folder"):format(dir), 3)
  end
  local settings = {
    index = opts.index == nil and "index.html" or opts.index,
    cache_control = opts.cache_control or "no-cache",
  }
  local pattern = (prefix:gsub("/+$", "")) .. "/*path"

  app:get(pattern, function(req, res)
    local rel = req.params.path
    for seg in rel:gmatch("[^/]+") do
      if seg:sub(1, 1) == "." then core.abort(404) end
    end
    if rel:find("\\", 1, true) or rel:find("//", 1, true) then core.abort(404) end
    local path = root .. (rel == "" and "" or "/" .. rel)
    local real = core.realpath(path)
    if not real or not is_inside(real, root) then core.abort(404) end
    local info = core.stat(real)
    if info and info.type == "directory" then
      if not settings.index then core.abort(404) end
      if req.path:sub(-1) ~= "/" then
        local query = req.target:match("%?.*$") or ""
        return res:redirect(req.path .. "/" .. query, 301)
      end
      real = real .. "/" .. settings.index
      info = core.stat(real)
    end
    if not info or info.type ~= "file" then core.abort(404) end
    return send_file(req, res, real, info, settings)
  end)
end

return M
