/* lua_core.h - the `moonwire.core` module: the C half of lualib/moonwire
 * (timers, logging, status errors, JSON, files), registered by lua_vm.c. */
#ifndef MW_LUA_CORE_H
#define MW_LUA_CORE_H

#include <lua.h>

#include <lauxlib.h>

int mw_lua_open_core(lua_State *L);

/* Registers a Lua-visible type: metatable `name` (also under the light
 * key `key` when given) holding the metamethods `meta` and a `methods`
 * table, which the type's __index consults first. */
void mw_lua_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
                  void *key);
/* In an __index (stack: obj, key): pushes the type's method named key and
 * returns 1, or leaves the stack as it was and returns 0. */
int mw_lua_push_method(lua_State *L);
/* Adds a method to `res` (the core table is on top of the stack). */
void mw_lua_add_res_method(lua_State *L, const char *name, lua_CFunction fn);

/* lua_timer.c: mw.sleep, mw.after, mw.every, mw.now */
void mw_lua_open_timer(lua_State *L);
void mw_lua_timers_stop_all(lua_State *L);
/* Stops the timers an app version started (it was replaced, or failed to load). */
void mw_lua_timers_stop_version(lua_State *L, int version);

/* lua_json.c: mw.json */
void mw_lua_open_json(lua_State *L);
/* Encodes the value at idx as JSON onto a new string on the stack, or
 * raises. Arrays are tables with the array metatable or a 1..n sequence. */
void mw_lua_json_encode(lua_State *L, int idx);
/* The same into a buffer that the next encode reuses; no Lua string. */
const char *mw_lua_json_encode_scratch(lua_State *L, int idx, size_t *len);
/* Pushes the array metatable (mw.json.array_mt). */
void mw_lua_push_array_mt(lua_State *L);
/* Pushes the binary metatable (mw.json.binary_mt): a table with it whose
 * kind is "binary" has its data encoded base64. */
void mw_lua_push_binary_mt(lua_State *L);
int mw_lua_is_binary_mt(lua_State *L, int idx);
/* Decodes s; pushes the value, or nil and a message. */
int mw_lua_json_decode(lua_State *L, const char *s, size_t len);

/* Status errors (mw.abort): a table {status=, message=} with a shared
 * metatable. Pushes one. */
void mw_lua_push_status_error(lua_State *L, int status, const char *message);

#endif
