-- mw.json of hub lists (runtime/lua_hub.c, mw_lua_hub_encode_msg): the list
-- ch:history or ch:wait returned last is written from each message's
-- cached encoding while its tables are as made. Whatever the app did to
-- the list or its tables, the bytes must be those of the ordinary walk:
-- each case encodes the list as the last one made, then again after
-- another list replaced it, and compares.
local t = require "t"
local mw = require "moonwire"
local json = mw.json

local ch = mw.channel("hubjson", { history = 50 })
local other = mw.channel("hubjson-other")
local texts = { "plain", 'quote " and \\ backslash', "line\nbreak\ttab\r\0nul", "caf\u{e9} \u{2713}",
  ("0123456789"):rep(10), "", "forty-one bytes: a long string in Lua 5.4" }
for _, s in ipairs(texts) do ch:publish(s) end
local n = #texts
-- binary messages carry mw.json.binary_mt: their data goes out base64
local bin = mw.channel("hubjson-bin")
bin:publish("\0\1\255 raw", "binary")
bin:publish("text beside", "text")

-- fast: the list is the one made last; slow: another list was made since
local function both(list, wrap)
  local v = wrap and wrap(list) or list
  local fast = json.encode(v)
  other:history()
  local slow = json.encode(v)
  return fast, slow
end

-- ch:history(0) with edit applied; checks fast == slow and returns the decoded answer
local function check(what, edit, wrap, from)
  local list = (from or ch):history(0)
  if edit then edit(list) end
  local fast, slow = both(list, wrap)
  t.eq(fast, slow, what)
  return json.decode(fast) or fast
end

t.test("an untouched list encodes as its messages", function()
  local got = check("untouched")
  t.eq(#got, n)
  for i, s in ipairs(texts) do t.eq(got[i], { id = i, data = s, kind = "text" }) end
end)

-- ch:history(0) with edit applied; checks that both ways refuse it
local function refused(what, edit, from)
  local list = (from or ch):history(0)
  edit(list)
  for _, way in ipairs { "fast", "slow" } do
    local ok, err = pcall(json.encode, list)
    t.ok(not ok and tostring(err):find("not valid UTF-8", 1, true), what .. " (" .. way .. "): " .. tostring(err))
    other:history()
  end
end

t.test("binary messages", function()
  local got = check("untouched", nil, nil, bin)
  t.eq(got, { { id = 1, data = "AAH/IHJhdw==", kind = "binary" }, { id = 2, data = "text beside", kind = "text" } })
  t.eq(getmetatable(bin:history(0)[1]), json.binary_mt)
  t.eq(getmetatable(bin:history(0)[2]), nil)
  got = check("data changed", function(l) l[1].data = "\0\1\254 raw" end, nil, bin)
  t.eq(got[1].data, "AAH+IHJhdw==")
  got = check("data made text", function(l) l[1].data = "now text" end, nil, bin)
  t.eq(got[1].data, "bm93IHRleHQ=")
  got = check("text kind changed", function(l) l[2].kind = "binary" end, nil, bin)
  t.eq(got[2], { id = 2, data = "text beside", kind = "binary" })
  got = check("a field added", function(l) l[1].extra = 1 end, nil, bin)
  t.eq(got[1], { id = 1, data = "AAH/IHJhdw==", kind = "binary", extra = 1 })
  -- without the mark, or no longer binary, the bytes are just a string
  refused("kind changed", function(l) l[1].kind = "text" end, bin)
  refused("metatable removed", function(l) setmetatable(l[1], nil) end, bin)
  refused("copied", function(l) l[1] = { id = 1, data = l[1].data, kind = "binary" } end, bin)
end)

t.test("strings that are not UTF-8 are refused", function()
  for _, v in ipairs { "\255", { "\192\128" }, { k = "\237\160\128" }, { ["\255"] = 1 } } do
    local ok, err = pcall(json.encode, v)
    t.ok(not ok and tostring(err):find("not valid UTF-8", 1, true), tostring(err))
  end
  t.eq(json.encode { "caf\u{e9} \u{1F600}" }, '["caf\u{e9} \u{1F600}"]')
  -- the mark is for tables that say kind = "binary"
  t.eq(json.decode(json.encode(setmetatable({ data = "x", kind = "text" }, json.binary_mt))),
    { data = "x", kind = "text" })
  t.eq(json.decode(json.encode(setmetatable({ data = "\0\255", kind = "binary" }, json.binary_mt))),
    { data = "AP8=", kind = "binary" })
  -- exactly "binary" and exactly "data": a longer string with a NUL is not
  for _, v in ipairs { { data = "\255", kind = "binary\0x" }, { ["data\0x"] = "\255", kind = "binary" } } do
    local ok, err = pcall(json.encode, setmetatable(v, json.binary_mt))
    t.ok(not ok and tostring(err):find("not valid UTF-8", 1, true), tostring(err))
  end
end)

t.test("the cached encoding is reused and stays right", function()
  for _ = 1, 3 do check("again") end
  -- both lists alive, the older one encoded after the newer was made
  local a = ch:history(0)
  local b = ch:history(0)
  t.eq(json.encode(a), json.encode(b))
end)

t.test("edited message tables encode as edited", function()
  local cases = {
    { "data changed, same length", function(l) l[1].data = "PLAIN" end },
    { "data changed, other length", function(l) l[1].data = "p" end },
    { "data an equal new string", function(l) l[1].data = ("pla"):rep(1) .. "in" end },
    { "data a number", function(l) l[1].data = 5 end },
    { "data removed", function(l) l[1].data = nil end },
    { "id changed", function(l) l[2].id = 99 end },
    { "id a float", function(l) l[2].id = 2.0 end },
    { "id a string", function(l) l[2].id = "2" end },
    { "kind changed", function(l) l[3].kind = "binary" end },
    { "kind removed", function(l) l[3].kind = nil end },
    { "field added", function(l) l[4].extra = true end },
    { "numeric key added", function(l) l[4][1] = "x" end },
    { "field added and removed", function(l) l[4].extra = 1; l[4].extra = nil end },
    { "all fields replaced", function(l) l[5] = { id = l[5].id, data = l[5].data, kind = l[5].kind } end },
    { "metatable set", function(l) setmetatable(l[6], { __index = { hidden = 1 } }) end },
    { "marked as array", function(l) json.array(l[6]) end },
    { "emptied", function(l) l[7].id, l[7].data, l[7].kind = nil, nil, nil end },
  }
  for _, c in ipairs(cases) do check(c[1], c[2]) end
  local got = check("data changed", function(l) l[1].data = "PLAIN" end)
  t.eq(got[1].data, "PLAIN")
  got = check("field added", function(l) l[4].extra = true end)
  t.eq(got[4].extra, true)
  got = check("kind removed", function(l) l[3].kind = nil end)
  t.eq(got[3].kind, nil)
  t.eq(got[3].data, texts[3])
end)

t.test("edited lists encode as edited", function()
  local cases = {
    { "reversed", function(l)
      for i = 1, #l // 2 do l[i], l[#l - i + 1] = l[#l - i + 1], l[i] end
    end },
    { "one appended", function(l) l[#l + 1] = { note = "mine" } end },
    { "a message appended twice", function(l) l[#l + 1] = l[1] end },
    { "first removed", function(l) table.remove(l, 1) end },
    { "last removed", function(l) l[#l] = nil end },
    { "all removed", function(l) for i = #l, 1, -1 do l[i] = nil end end },
    { "a string in place of a message", function(l) l[2] = "two" end },
    { "a message from another list", function(l) l[3] = ch:history(0)[4] end },
    { "metatable removed", function(l) setmetatable(l, nil) end },
    { "a field on the list", function(l) l.total = 3 end },
  }
  for _, c in ipairs(cases) do check(c[1], c[2]) end
  local got = check("first removed", function(l) table.remove(l, 1) end)
  t.eq(#got, n - 1)
  t.eq(got[1].data, texts[2])
end)

t.test("a list inside other values", function()
  check("in an object", nil, function(l) return { messages = l, count = #l } end)
  check("in an array", nil, function(l) return json.array { l, l } end)
  check("one message alone", nil, function(l) return l[1] end)
end)

t.test("an empty list", function()
  local list = ch:history(ch:last_id())
  t.eq(json.encode(list), "[]")
end)

-- ch:wait lists, from timer coroutines: one message, then a burst of two
local results = {}
mw.after(0, function()
  local list = ch:wait { since = ch:last_id(), timeout = 5 }
  local fast = json.encode(list)
  results.one = { fast, list }
  local l2 = ch:wait { since = ch:last_id(), timeout = 5 }
  l2[1].data = l2[1].data .. "!"
  results.two = { json.encode(l2), l2 }
end)
mw.after(0.02, function() ch:publish("waited for") end)
mw.after(0.04, function()
  ch:publish("burst 1")
  ch:publish("burst 2")
end)
mw.after(0.2, function()
  t.test("ch:wait lists encode like any list", function()
    t.ok(results.one and results.two, "both waits ended")
    local fast, list = results.one[1], results.one[2]
    other:history()
    t.eq(fast, json.encode(list))
    t.eq(json.decode(fast), { { id = n + 1, data = "waited for", kind = "text" } })
    fast, list = results.two[1], results.two[2]
    t.eq(fast, json.encode(list))
    t.eq(json.decode(fast), { { id = n + 2, data = "burst 1!", kind = "text" },
      { id = n + 3, data = "burst 2", kind = "text" } })
  end)
  local ok, err = pcall(t.done)
  if not ok then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
end)
