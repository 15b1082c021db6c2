/* lua_json.c - mw.json: encode and decode with array identity kept.
 *
 * Lua has one table type, so `[]` and `{}` are the same empty table. Arrays
 * carry a metatable (mw.json.array_mt) so they encode as `[]` even when
 * empty: mw.json.array(t) sets it, and decoding sets it on every array.
 * Decoding is lua-cjson's; to tell its empty arrays from empty objects, each
 * `[]` is first rewritten to hold one string that valid UTF-8 input cannot
 * contain (an encoded surrogate, which cjson also refuses as an escape),
 * then swapped back for a marked empty table.
 *
 * JSON text is UTF-8, so strings that are not are refused. Bytes have one
 * way in: a table with the binary metatable (mw.json.binary_mt, which hub
 * messages of kind "binary" carry) whose `kind` is "binary" has its
 * `data` written base64, as WebSocket envelopes and SSE events do. */
#include "buf.h"
#include "base64.h"
#include "json_text.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "utf8.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 128
static const char SENTINEL[] = "\xED\xA0\x80";
static char decode_key; /* decode of our own cjson instance */

/* The array metatable, also under an integer key in the registry (an
 * array lookup), and its address: the encoder compares metatables by
 * pointer. The registry keeps the table, so the address stays its own. */
static _Thread_local int array_mt_ref = LUA_NOREF;
static _Thread_local const void *array_mt;
static _Thread_local int binary_mt_ref = LUA_NOREF;
static _Thread_local const void *binary_mt;

static void push_array_mt(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, array_mt_ref);
}

void mw_lua_push_array_mt(lua_State *L)
{
    push_array_mt(L);
}

void mw_lua_push_binary_mt(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, binary_mt_ref);
}

int mw_lua_is_binary_mt(lua_State *L, int idx)
{
    return lua_topointer(L, idx) == binary_mt;
}

/* ---------------------------------------------------------------- encode */

static inline void put_c(struct mw_buf *b, char c)
{
    if (b->len < b->cap)
        b->data[b->len++] = c;
    else
        mw_buf_appendc(b, c);
}

static inline void put(struct mw_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len >= n) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
    } else {
        mw_buf_append(b, s, n);
    }
}

static int enc_number(lua_State *L, struct mw_buf *b, int idx)
{
    char tmp[64];
    int n;
    if (lua_isinteger(L, idx)) {
        mw_json_append_integer(b, (long long)lua_tointeger(L, idx));
        return 0;
    }
    lua_Number v = lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) return luaL_error(L, "mw.json: cannot encode %f", (double)v);
    if (v == floor(v) && fabs(v) < 1e15) {
        n = snprintf(tmp, sizeof tmp, "%.0f", (double)v);
    } else {
        /* the shortest form that reads back as the same double: 0.1, not
         * 0.10000000000000001 */
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
            if (strtod(tmp, NULL) == v) break;
        }
    }
    put(b, tmp, (size_t)n);
    return 0;
}

/* Number of elements if t is a sequence 1..n with nothing else, else -1. */
static lua_Integer sequence_len(lua_State *L, int idx)
{
    lua_Integer max = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max) max = k;
        count++;
    }
    return count == max ? max : -1;
}

static void enc_value(lua_State *L, struct mw_buf *b, int idx, int depth);

/* JSON text is UTF-8 (RFC 8259): bytes that are not would reach a browser
 * as replacement characters, so they are refused here, loudly. */
static void enc_string(lua_State *L, struct mw_buf *b, const char *s, size_t len)
{
    if (!mw_utf8_valid(s, len))
        luaL_error(L, "mw.json: cannot encode a string that is not valid UTF-8 (encode bytes as base64 first)");
    mw_json_append_string(b, s, len);
}

static void enc_table(lua_State *L, struct mw_buf *b, int idx, int depth)
{
    if (depth > JSON_MAX_DEPTH) luaL_error(L, "mw.json: nested too deep (a cycle?)");
    luaL_checkstack(L, 6, "mw.json");
    int is_array = 0, binary = 0;
    lua_Integer n = 0;
    if (lua_getmetatable(L, idx)) {
        const void *mt = lua_topointer(L, -1);
        lua_pop(L, 1);
        is_array = mt == array_mt;
        if (mt == binary_mt) {
            lua_pushliteral(L, "kind");
            lua_rawget(L, idx);
            size_t kl = 0;
            const char *kind = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
            binary = kind && kl == 6 && memcmp(kind, "binary", 6) == 0;
            lua_pop(L, 1);
        }
    }
    if (is_array) {
        n = (lua_Integer)lua_rawlen(L, idx);
    } else {
        n = sequence_len(L, idx);
        is_array = n > 0;
    }
    if (is_array) {
        put_c(b, '[');
        int top = lua_gettop(L) + 1;
        /* a list from ch:wait or ch:history: each message table still as
         * made comes from the message's cached encoding */
        size_t nmsgs = 0;
        struct mw_msg *const *msgs = mw_lua_hub_list_msgs(L, idx, &nmsgs);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) put_c(b, ',');
            lua_rawgeti(L, idx, i);
            if (!msgs || (size_t)i > nmsgs || !mw_lua_hub_encode_msg(L, top, msgs[i - 1], b))
                enc_value(L, b, top, depth + 1);
            lua_pop(L, 1);
        }
        put_c(b, ']');
        return;
    }
    put_c(b, '{');
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* stack: key, value */
        int kt = lua_type(L, -2), bytes = 0;
        if (kt == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            if (!first) put_c(b, ',');
            enc_string(L, b, k, kl);
            bytes = binary && kl == 4 && memcmp(k, "data", 4) == 0 && lua_type(L, -1) == LUA_TSTRING;
        } else if (kt == LUA_TNUMBER) {
            if (!first) put_c(b, ',');
            put_c(b, '"');
            enc_number(L, b, -2);
            put_c(b, '"');
        } else {
            luaL_error(L, "mw.json: cannot encode a table key of type %s", luaL_typename(L, -2));
        }
        first = 0;
        put_c(b, ':');
        if (bytes) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            put_c(b, '"');
            mw_base64_append(b, s, len);
            put_c(b, '"');
        } else {
            enc_value(L, b, lua_gettop(L), depth + 1);
        }
        lua_pop(L, 1);
    }
    put_c(b, '}');
}

static void enc_value(lua_State *L, struct mw_buf *b, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL: put(b, "null", 4); break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(b, "true", 4);
        else
            put(b, "false", 5);
        break;
    case LUA_TNUMBER: enc_number(L, b, idx); break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        enc_string(L, b, s, len);
        break;
    }
    case LUA_TTABLE: enc_table(L, b, idx, depth); break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* cjson.null / mw.json.null */
            put(b, "null", 4);
            break;
        }
        /* fallthrough */
    default: luaL_error(L, "mw.json: cannot encode a %s", luaL_typename(L, idx));
    }
}

/* Every encode uses one scratch buffer: encoding runs no Lua code (raw
 * accesses only), so no encode can start inside another, and one that
 * raises leaves nothing to free. A response body costs no Lua string. */
#define JSON_SCRATCH_KEEP (1024 * 1024) /* larger ones are freed after use */
static _Thread_local struct mw_buf scratch;

const char *mw_lua_json_encode_scratch(lua_State *L, int idx, size_t *len)
{
    idx = lua_absindex(L, idx);
    if (scratch.cap > JSON_SCRATCH_KEEP) mw_buf_free(&scratch);
    scratch.len = 0;
    enc_value(L, &scratch, idx, 0);
    *len = scratch.len;
    return scratch.data ? scratch.data : "";
}

void mw_lua_json_encode(lua_State *L, int idx)
{
    size_t len;
    const char *s = mw_lua_json_encode_scratch(L, idx, &len);
    lua_pushlstring(L, s, len);
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    mw_lua_json_encode(L, 1);
    return 1;
}

/* ---------------------------------------------------------------- decode */

/* Marks arrays, swaps sentinels for empty arrays, and turns integral
 * floats (cjson decodes every number as a float) into integers. The value
 * at idx is replaced in place by its fixed version. */
static void fix_value(lua_State *L, int idx, int depth)
{
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) {
        lua_Number v = lua_tonumber(L, idx);
        lua_Integer i;
        if (v == floor(v) && fabs(v) < 9007199254740992.0 && lua_numbertointeger(v, &i)) {
            lua_pushinteger(L, i);
            lua_replace(L, idx);
        }
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || depth > 1000) return;
    luaL_checkstack(L, 4, "mw.json");
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 1 && lua_rawgeti(L, idx, 1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (len == 3 && memcmp(s, SENTINEL, 3) == 0) {
            lua_pop(L, 1);
            lua_newtable(L);
            push_array_mt(L);
            lua_setmetatable(L, -2);
            lua_replace(L, idx);
            return;
        }
        lua_pop(L, 1);
    } else if (n == 1) {
        lua_pop(L, 1);
    }
    if (n > 0) {
        push_array_mt(L);
        lua_setmetatable(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            fix_value(L, lua_gettop(L), depth + 1);
            lua_rawseti(L, idx, i);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* stack: key, value */
        fix_value(L, lua_gettop(L), depth + 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, idx); /* assigning an existing key during next is allowed */
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The end of the JSON number starting at i, or 0 if it is malformed:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and nothing number-like
 * after it. (cjson hands numbers to strtod, which also takes "1." and "-.5".) */
static size_t number_end(const char *s, size_t len, size_t i)
{
    if (i < len && s[i] == '-') i++;
    if (i >= len || !is_digit(s[i])) return 0;
    if (s[i] == '0')
        i++;
    else
        while (i < len && is_digit(s[i])) i++;
    if (i < len && s[i] == '.') {
        if (++i >= len || !is_digit(s[i])) return 0;
        while (i < len && is_digit(s[i])) i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= len || !is_digit(s[i])) return 0;
        while (i < len && is_digit(s[i])) i++;
    }
    if (i < len && (is_digit(s[i]) || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+' ||
                    s[i] == '-'))
        return 0;
    return i;
}

/* Checks what cjson lets through (control characters inside strings,
 * malformed numbers) and rewrites every `[` ws* `]` outside strings.
 * Returns 1 if any was rewritten, 0 if not, -1 with *bad (0-based) and
 * *why set if the input is not JSON. */
static int prepare(const char *s, size_t len, struct mw_buf *out, size_t *bad, const char **why)
{
    int in_str = 0, found = 0;
    size_t copied = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if ((unsigned char)c < 0x20) {
                *bad = i;
                *why = "unescaped control character in a string";
                return -1;
            } else if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '-' || is_digit(c)) {
            size_t j = number_end(s, len, i);
            if (!j) {
                *bad = i;
                *why = "malformed number";
                return -1;
            }
            i = j - 1;
        } else if (c == '[') {
            size_t j = i + 1;
            while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
            if (j < len && s[j] == ']') {
                found = 1;
                mw_buf_append(out, s + copied, i - copied);
                mw_buf_appends(out, "[\"");
                mw_buf_appends(out, SENTINEL);
                mw_buf_appends(out, "\"]");
                copied = j + 1;
                i = j;
            }
        }
    }
    if (found) mw_buf_append(out, s + copied, len - copied);
    return found;
}

/* The decoder's working copy lives in a userdata, so an error mid-decode
 * frees nothing by hand: the collector takes it. */
static int buf_gc(lua_State *L)
{
    mw_buf_free(lua_touserdata(L, 1));
    return 0;
}

int mw_lua_json_decode(lua_State *L, const char *s, size_t len)
{
    if (!mw_utf8_valid(s, len)) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid JSON: not valid UTF-8");
        return 2;
    }
    struct mw_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    mw_buf_init(b);
    luaL_setmetatable(L, "moonwire.jsonbuf");
    /* stack: buf */
    size_t bad = 0;
    const char *why = NULL;
    int found = prepare(s, len, b, &bad, &why);
    if (found < 0) {
        mw_buf_free(b);
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON: %s at character %I", why, (lua_Integer)bad + 1);
        return 2;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &decode_key);
    if (found)
        lua_pushlstring(L, b->data, b->len);
    else
        lua_pushlstring(L, s, len);
    mw_buf_free(b);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON: %s", msg ? msg : "?");
        lua_remove(L, -4);
        lua_remove(L, -3);
        return 2;
    }
    lua_remove(L, -2);
    fix_value(L, lua_gettop(L), 0);
    return 1;
}

/* mw.json.decode(s) -> value | nil, message */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    return mw_lua_json_decode(L, s, len);
}

/* mw.json.array([t]) -> t, marked to encode as an array */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_is_array(lua_State *L)
{
    int r = 0;
    if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
        push_array_mt(L);
        r = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, r);
    return 1;
}

void mw_lua_open_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"encode", l_encode},
                                     {"decode", l_decode},
                                     {"array", l_array},
                                     {"is_array", l_is_array},
                                     {NULL, NULL}};
    luaL_newmetatable(L, "moonwire.jsonbuf");
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushliteral(L, "moonwire.json.array");
    lua_setfield(L, -2, "__name");
    array_mt = lua_topointer(L, -1);
    lua_pushvalue(L, -1);
    array_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.json.array_mt");

    lua_newtable(L);
    lua_pushliteral(L, "moonwire.json.binary");
    lua_setfield(L, -2, "__name");
    binary_mt = lua_topointer(L, -1);
    binary_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* An instance of our own (cjson.new), so strict settings do not change
     * the cjson an app may require: no NaN, Infinity, hex or leading zeros. */
    lua_getglobal(L, "require"); /* cjson is in package.preload */
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "decode");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &decode_key);
    lua_pop(L, 2);

    /* stack: core */
    luaL_newlib(L, funcs);
    push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    mw_lua_push_binary_mt(L);
    lua_setfield(L, -2, "binary_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
}
