--- The router: patterns in a tree of path segments.
--
-- Patterns are literal segments, `:name` (one segment) and `*name` (the
-- rest, possibly empty), matched against the request's decoded segments.
-- At every level a literal beats a parameter, which beats a rest; when a
-- branch fails deeper down, matching backs up and tries the next one. A
-- trailing slash is not significant. Pure Lua: no I/O.
local M = {}
local Router = {}
Router.__index = Router

local concat, sort = table.concat, table.sort

function M.new()
  -- `exact` maps the path of every all-literal pattern ("/a/b", "/") to its
  -- node's routes: most requests resolve with one table lookup.
  return setmetatable({ root = { literal = {} }, exact = {}, count = 0 }, Router)
end

--- Parses "/users/:id/*rest" into steps { {kind, text} ... }.
---@return table|nil steps, string|nil error
function M.parse(pattern)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    return nil, "a route pattern must be a string starting with '/'"
  end
  local steps, seen = {}, {}
  local parts = {}
  for seg in pattern:gmatch("[^/]+") do parts[#parts + 1] = seg end
  for i, seg in ipairs(parts) do
    local first = seg:sub(1, 1)
    if first == ":" or first == "*" then
      local name = seg:sub(2)
      if name == "" and first == "*" then name = "rest" end
      if not name:match("^[%a_][%w_]*$") then
        return nil, ("bad parameter name %q in pattern %q"):format(seg, pattern)
      end
      if seen[name] then
        return nil, ("parameter %q appears twice in pattern %q"):format(name, pattern)
      end
      seen[name] = true
      if first == "*" and i ~= #parts then
        return nil, ("%q must be the last segment of pattern %q"):format(seg, pattern)
      end
      steps[#steps + 1] = { kind = first == ":" and "param" or "rest", name = name }
    else
      steps[#steps + 1] = { kind = "literal", text = seg }
    end
  end
  return steps
end

--- Adds a route. Raises on a bad pattern or a duplicate method+pattern.
---@param method string upper-case HTTP method
---@param pattern string
---@param route table { handler =, opts = } stored as given, with .names added
function Router:add(method, pattern, route)
  local steps, err = M.parse(pattern)
  if not steps then error(err, 3) end
  local node, names, literal = self.root, {}, true
  for _, step in ipairs(steps) do
    if step.kind ~= "literal" then literal = false end
    if step.kind == "literal" then
      local child = node.literal[step.text]
      if not child then
        child = { literal = {} }
        node.literal[step.text] = child
      end
      node = child
    elseif step.kind == "param" then
      node.param = node.param or { literal = {} }
      node = node.param
      names[#names + 1] = step.name
    else
      node.rest = node.rest or { literal = {} }
      node = node.rest
      node.is_rest = true
      names[#names + 1] = step.name
    end
  end
  node.routes = node.routes or {}
  if node.routes[method] then
    error(("route %s %s is defined twice"):format(method, pattern), 3)
  end
  route.names, route.pattern, route.method = names, pattern, method
  node.routes[method] = route
  if literal then
    local texts = {}
    for i, step in ipairs(steps) do texts[i] = step.text end
    self.exact["/" .. concat(texts, "/")] = node.routes
  end
  self.count = self.count + 1
  return route
end

-- Depth-first in precedence order; calls visit(node, values) for every
-- node that ends a match, stopping when it returns true.
local function walk(node, segs, i, n, values, visit)
  if i > n then
    if node.routes and visit(node, values) then return true end
    -- an empty rest also matches: /files/*path matches /files
    local rest = node.rest
    if rest and rest.routes then
      values[#values + 1] = ""
      if visit(rest, values) then return true end
      values[#values] = nil
    end
    return false
  end
  local seg = segs[i]
  local child = node.literal[seg]
  if child and walk(child, segs, i + 1, n, values, visit) then return true end
  child = node.param
  if child and seg ~= "" then
    values[#values + 1] = seg
    if walk(child, segs, i + 1, n, values, visit) then return true end
    values[#values] = nil
  end
  child = node.rest
  if child and child.routes then
    values[#values + 1] = concat(segs, "/", i, n)
    if visit(child, values) then return true end
    values[#values] = nil
  end
  return false
end

local function route_for(routes, method)
  return routes[method] or (method == "HEAD" and routes.GET) or nil
end

-- The segments a router key names: "/a//b" -> { "a", "", "b" }, "/" -> {}.
local function split_key(key)
  local segs = {}
  if key:byte(1) ~= 47 or #key == 1 then return segs end
  local i = 2
  while true do
    local j = key:find("/", i, true)
    segs[#segs + 1] = key:sub(i, j and j - 1 or -1)
    if not j then return segs end
    i = j + 1
  end
end
M.split_key = split_key

--- Finds the route for a method and decoded segments.
---@param segs table|false the decoded segments; false: split them from key
---@param key string|nil the decoded path without a trailing slash, when no
-- segment holds a "/" (then it names the segments unambiguously)
---@return table|nil route, table|nil params, string|nil allow
-- On a match: route and its params (nil for an all-literal route). When the path matches but no route
-- has the method: nil, nil, and the Allow header value. Else nothing.
function Router:match(method, segs, key)
  if key then
    -- an all-literal route takes the literal branch at every level, so
    -- when one has this method it is what the walk would find first
    -- (route_for, inline: this is every request's path)
    local routes = self.exact[key]
    if routes then
      local route = routes[method] or (method == "HEAD" and routes.GET)
      if route then return route end
    end
  end
  segs = segs or split_key(key)
  local found, params
  local methods
  walk(self.root, segs, 1, #segs, {}, function(node, values)
    local route = route_for(node.routes, method)
    if route then
      found = route
      params = {}
      for k, name in ipairs(route.names) do params[name] = values[k] end
      return true
    end
    methods = methods or {}
    for m in pairs(node.routes) do methods[m] = true end
    return false
  end)
  if found then return found, params end
  if not methods then return nil end
  if methods.GET then methods.HEAD = true end
  methods.OPTIONS = true
  local list = {}
  for m in pairs(methods) do list[#list + 1] = m end
  sort(list)
  return nil, nil, concat(list, ", ")
end

M.Router = Router
return M
