--- A tiny test library for tests/lua: t.test(name, fn), t.eq(a, b), t.ok(v),
-- t.raises(fn, pattern). t.done() prints a summary and raises on failure.
local t = { passed = 0, failed = 0 }

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. show(v[k]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_eq(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function t.eq(got, want, what)
  if not deep_eq(got, want) then
    error(("%sexpected %s, got %s"):format(what and (what .. ": ") or "", show(want), show(got)), 2)
  end
end

function t.ok(v, what)
  if not v then error((what or "expected a true value") .. ", got " .. show(v), 2) end
end

function t.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. show(pattern), 2) end
  if pattern and not tostring(err):find(pattern) then
    error(("error %s does not match %s"):format(show(tostring(err)), show(pattern)), 2)
  end
end

function t.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    t.passed = t.passed + 1
  else
    t.failed = t.failed + 1
    io.stderr:write(("FAIL %s\n%s\n"):format(name, err))
  end
end

function t.done()
  print(("%d passed, %d failed"):format(t.passed, t.failed))
  if t.failed > 0 then error(("%d test(s) failed"):format(t.failed), 0) end
end

return t
