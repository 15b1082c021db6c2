-- mw.json (runtime/lua_json.c): encode and decode with arrays kept arrays,
-- null, integers, strict input checking and string escaping.
local t = require "t"
local mw = require "moonwire"
local json = mw.json

local function roundtrip(s) return json.encode(assert(json.decode(s))) end

-- decode must fail with nil and a message starting "invalid JSON"
local function rejects(s, pattern, what)
  local v, err = json.decode(s)
  t.eq(v, nil, what or ("decode(%q)"):format(s))
  t.eq(type(err), "string", what or ("decode(%q) message"):format(s))
  t.ok(err:find("^invalid JSON"), ("decode(%q): %s"):format(s, err))
  if pattern then t.ok(err:find(pattern), ("decode(%q): %s"):format(s, err)) end
end

t.test("scalars encode as JSON", function()
  t.eq(json.encode(nil), "null")
  t.eq(json.encode(true), "true")
  t.eq(json.encode(false), "false")
  t.eq(json.encode(0), "0")
  t.eq(json.encode(-42), "-42")
  t.eq(json.encode(math.maxinteger), "9223372036854775807")
  t.eq(json.encode(math.mininteger), "-9223372036854775808")
  t.eq(json.encode(1.5), "1.5")
  t.eq(json.encode(3.0), "3")
  t.eq(json.encode(0.1), "0.1")
  t.eq(json.encode(-2.5e-7), "-2.5e-07")
  t.eq(json.encode(1 / 3), "0.3333333333333333")
  t.eq(json.encode("hi"), '"hi"')
  t.eq(json.encode(""), '""')
end)

t.test("floats read back as the same number", function()
  for _, v in ipairs { 0.1, 0.2, 1 / 3, 2 / 3, 1e-300, 1e300, 123456.789, -0.000123, 2 ^ 60 + 0.0,
    5e-324, 1.7976931348623157e308 } do
    local back = json.decode(json.encode(v))
    t.eq(back, v, ("%.17g -> %s"):format(v, json.encode(v)))
  end
end)

t.test("NaN and infinities cannot be encoded", function()
  t.raises(function() json.encode(0 / 0) end, "cannot encode")
  t.raises(function() json.encode(math.huge) end, "cannot encode")
  t.raises(function() json.encode({ x = -math.huge }) end, "cannot encode")
end)

t.test("tables: sequences are arrays, the rest objects", function()
  t.eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
  t.eq(json.encode({ "a", { "b" } }), '["a",["b"]]')
  t.eq(json.encode({ a = 1 }), '{"a":1}')
  t.eq(json.encode({}), "{}")
  -- holes and extra keys make an object, numeric keys as strings
  t.eq(json.decode(json.encode({ [1] = "x", [3] = "y" })), { ["1"] = "x", ["3"] = "y" })
  t.eq(json.decode(json.encode({ 1, 2, n = 2 })), { ["1"] = 1, ["2"] = 2, n = 2 })
  t.eq(json.encode({ [0] = "z" }), '{"0":"z"}')
end)

t.test("empty array and empty object stay apart", function()
  t.eq(json.encode(json.array()), "[]")
  t.eq(json.encode(json.array({})), "[]")
  t.eq(json.encode(json.array({ 1, 2 })), "[1,2]")
  t.eq(json.encode({}), "{}")
  local arr = json.decode("[]")
  t.eq(#arr, 0)
  t.ok(json.is_array(arr), "decoded [] is marked")
  t.eq(json.encode(arr), "[]")
  local obj = json.decode("{}")
  t.ok(not json.is_array(obj), "decoded {} is not marked")
  t.eq(json.encode(obj), "{}")
  t.eq(json.encode(json.decode("[ \n\t ]")), "[]")
  t.ok(not json.is_array({}), "a plain table is not marked")
  t.ok(not json.is_array("x"), "a string is not an array")
end)

t.test("nested empty arrays and objects round-trip exactly", function()
  for _, s in ipairs {
    "[[]]", "[[],[[]],{}]", '[{"x":[]},{"y":{}}]', '{"a":{"b":{"c":[]}}}', "[[[[[]]]]]",
    '[1,[],"[]",{"k":"[]"}]', '["a\\"[]",[]]', '{"empty":[],"list":[[],[1]]}',
  } do
    local back = roundtrip(s)
    if s:find("^%[") then
      t.eq(back, s)
    else
      t.eq(json.decode(back), json.decode(s), s)
      -- an object's key order is not kept; compare each value's encoding
      for k, v in pairs(json.decode(s)) do
        t.eq(json.encode(json.decode(back)[k]), json.encode(v), s .. " ." .. k)
      end
    end
  end
  local d = json.decode('{"a":[],"b":{}}')
  t.ok(json.is_array(d.a), "a is an array")
  t.ok(not json.is_array(d.b), "b is an object")
  t.eq(json.encode({ a = d.a }), '{"a":[]}')
  t.eq(json.encode({ b = d.b }), '{"b":{}}')
end)

t.test("decoded arrays are marked and hold their values", function()
  local v = json.decode('[1,"two",[3],{"four":4},true,false]')
  t.ok(json.is_array(v), "outer")
  t.ok(json.is_array(v[3]), "inner")
  t.eq(v[2], "two")
  t.eq(v[4].four, 4)
  t.eq(v[5], true)
  t.eq(v[6], false)
  t.eq(#v, 6)
  -- a marked array encodes as one even after elements are removed
  v = json.decode("[1]")
  table.remove(v)
  t.eq(json.encode(v), "[]")
end)

t.test("null: mw.json.null decodes and encodes", function()
  t.eq(json.decode("null"), json.null)
  t.eq(json.encode(json.null), "null")
  local v = json.decode('{"a":null,"b":[null,1]}')
  t.eq(v.a, json.null)
  t.eq(v.b[1], json.null)
  t.eq(v.b[2], 1)
  t.eq(json.encode(json.decode("[null,null]")), "[null,null]")
  t.eq(json.encode({ json.null, 2 }), "[null,2]")
  t.eq(json.encode({ k = json.null }), '{"k":null}')
  t.ok(json.null ~= nil, "null is a value a table can hold")
end)

t.test("integers stay integers after decode", function()
  for _, s in ipairs { "0", "7", "-7", "1234567890123", "-9007199254740991" } do
    local v = json.decode(s)
    t.eq(math.type(v), "integer", s)
    t.eq(json.encode(v), s)
  end
  local v = json.decode('{"n":42,"list":[1,2,3],"f":2.5,"e":1e2}')
  t.eq(math.type(v.n), "integer")
  t.eq(math.type(v.list[3]), "integer")
  t.eq(math.type(v.f), "float")
  t.eq(v.f, 2.5)
  t.eq(v.e, 100)
  t.eq(json.encode(v.n), "42")
  t.eq(json.encode(v.list), "[1,2,3]")
  t.eq(math.type(json.decode("1.5")), "float")
  t.eq(json.decode("-0"), 0)
  -- every form of the JSON number grammar
  t.eq(json.decode("[0,-0,10,-0.5e-3,1E+2,2e2,0.0,1.25E-1]"), { 0, 0, 10, -0.0005, 100, 200, 0, 0.125 })
end)

t.test("strings: decode escapes, unicode included", function()
  t.eq(json.decode('"a\\"b\\\\c\\/d\\n\\r\\t\\b\\f"'), 'a"b\\c/d\n\r\t\b\f')
  t.eq(json.decode('"\\u0041\\u00e9\\u20ac"'), "A\xc3\xa9\xe2\x82\xac")
  t.eq(json.decode('"\\ud83d\\ude00"'), "\xf0\x9f\x98\x80")
  t.eq(json.decode('"\\u0000"'), "\0")
  t.eq(json.decode('"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"'), "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80")
end)

t.test("strings: encode escapes quotes, backslashes and control characters", function()
  t.eq(json.encode('say "hi"'), '"say \\"hi\\""')
  t.eq(json.encode("back\\slash"), '"back\\\\slash"')
  t.eq(json.encode("a\nb\rc\td\be\ff"), '"a\\nb\\rc\\td\\be\\ff"')
  t.eq(json.encode("\0\1\31"), '"\\u0000\\u0001\\u001f"')
  t.eq(json.encode("\127 /"), '"\127 /"')
  -- UTF-8 passes through unescaped
  t.eq(json.encode("caf\xc3\xa9 \xf0\x9f\x98\x80"), '"caf\xc3\xa9 \xf0\x9f\x98\x80"')
  -- keys are escaped the same way
  t.eq(json.encode({ ['k"\n'] = 1 }), '{"k\\"\\n":1}')
  -- every byte below 128 survives a round trip
  local all = {}
  for b = 0, 127 do all[#all + 1] = string.char(b) end
  all = table.concat(all)
  t.eq(json.decode(json.encode(all)), all)
  t.eq(json.decode(json.encode({ [all] = all }))[all], all)
end)

t.test("invalid UTF-8 input gives nil and a message", function()
  for _, s in ipairs {
    '"\xff"',             -- never valid
    '"\xc3"',             -- truncated
    '"\xc0\xaf"',         -- overlong "/"
    '"\xe0\x80\xaf"',     -- overlong, three bytes
    '"\xed\xa0\x80"',     -- a surrogate (also the decoder's own empty-array marker)
    '["\xed\xa0\x80"]',
    '"\xf4\x90\x80\x80"', -- above U+10FFFF
    '{"k\x80":1}',
  } do
    rejects(s, "UTF%-8")
  end
end)

t.test("malformed JSON gives nil and a message", function()
  for _, s in ipairs {
    "", " ", "{", "}", "[", "[1,]", "[1 2]", '{"a":1,}', '{"a" 1}', "{a:1}", "{'a':1}", "'s'",
    "nul", "tru", "[1] x", '"unterminated', '"bad \\x escape"', '"\\ud800"', '["\\ud800"]',
    '"\\udc00"', "NaN", "nan", "Infinity", "-Infinity", "0x10", "01", "00", "-01", "+1", ".5", "1.", "-.5",
    "1.e5", "1e", "1e+", "-", "1.5.5", "1e5e5", "[1,-]", "[1.]", '{"a":2.}', "--1",
    '"raw\ttab"', '"raw\nnewline"', '{"k\1":1}',
  } do
    rejects(s)
  end
  rejects('"a\1"', "control character")
  -- not a string at all
  t.raises(function() json.decode(nil) end, "string expected")
end)

t.test("deep nesting is refused on decode, not a crash", function()
  rejects(string.rep("[", 5000) .. string.rep("]", 5000))
  local ok = json.decode(string.rep("[", 100) .. string.rep("]", 100))
  t.ok(json.is_array(ok), "100 levels decode")
end)

t.test("cycles raise instead of looping", function()
  local a = {}
  a.self = a
  t.raises(function() json.encode(a) end, "nested too deep")
  local b = json.array()
  b[1] = b
  t.raises(function() json.encode(b) end, "nested too deep")
  local c, d = {}, {}
  c.d, d.c = d, c
  t.raises(function() json.encode({ c }) end, "nested too deep")
  -- deep but acyclic nesting below the limit is fine
  local deep = {}
  local cur = deep
  for _ = 1, 100 do cur.x = {}; cur = cur.x end
  t.ok(json.encode(deep):find('^{"x":{"x":'), "100 levels encode")
end)

t.test("values JSON cannot hold raise", function()
  t.raises(function() json.encode(print) end, "cannot encode a function")
  t.raises(function() json.encode({ f = print }) end, "cannot encode a function")
  t.raises(function() json.encode({ [true] = 1 }) end, "table key of type boolean")
  t.raises(function() json.encode(coroutine.create(print)) end, "cannot encode a thread")
  t.raises(function() json.encode() end, "value expected")
end)

t.test("json.array marks in place and checks its argument", function()
  local list = { 1, 2 }
  t.eq(json.array(list), list)
  t.ok(json.is_array(list), "marked")
  t.raises(function() json.array("x") end, "table expected")
  t.eq(json.encode({ items = json.array() }), '{"items":[]}')
end)

t.test("decode does not change the cjson an app can require", function()
  -- moonwire's decoder is strict; cjson's defaults belong to the app
  local cjson = require "cjson"
  local v = cjson.decode("[1]")
  t.eq(v[1], 1)
  rejects("nan")
end)

t.done()
