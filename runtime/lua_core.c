/* lua_core.c - the `moonwire.core` module: what lualib/moonwire needs from
 * C besides the req/res handles: logging, status errors, file metadata,
 * and the tables the timer and JSON bindings add to it. */
#include "log.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "lua_sse.h"
#include "lua_ws.h"
#include "lua_req.h"
#include "lua_vm.h"
#include "response.h"

#include <errno.h>
#include <stdlib.h>
#include <lauxlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATUS_ERROR_MT "moonwire.status_error"

static int status_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "message");
    int status = (int)lua_tointeger(L, 2);
    if (lua_isstring(L, 3))
        lua_pushfstring(L, "%d %s: %s", status, mw_status_reason(status), lua_tostring(L, 3));
    else
        lua_pushfstring(L, "%d %s", status, mw_status_reason(status));
    return 1;
}

void mw_lua_push_status_error(lua_State *L, int status, const char *message)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    if (message) {
        lua_pushstring(L, message);
        lua_setfield(L, -2, "message");
    }
    luaL_setmetatable(L, STATUS_ERROR_MT);
}

/* mw.abort(status [, message]): ends the handler with a status error. */
static int l_abort(lua_State *L)
{
    lua_Integer status = luaL_checkinteger(L, 1);
    luaL_argcheck(L, status >= 400 && status <= 599, 1, "status must be 400..599");
    const char *msg = luaL_optstring(L, 2, NULL);
    mw_lua_push_status_error(L, (int)status, msg);
    return lua_error(L);
}

/* core.new_status_error(status [, message]) -> error value */
static int l_new_status_error(lua_State *L)
{
    lua_Integer status = luaL_checkinteger(L, 1);
    mw_lua_push_status_error(L, (int)status, luaL_optstring(L, 2, NULL));
    return 1;
}

/* core.is_status_error(v) -> status, message | nil */
static int l_status_error(lua_State *L)
{
    if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, STATUS_ERROR_MT);
        int is = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is) {
            lua_getfield(L, 1, "status");
            lua_getfield(L, 1, "message");
            return 2;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int l_is_closed(lua_State *L)
{
    lua_pushboolean(L, mw_lua_is_closed(L, 1));
    return 1;
}

static int l_reason(lua_State *L)
{
    lua_pushstring(L, mw_status_reason((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* core.log(level, message): level is "debug", "info", "warn" or "error". */
static int l_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *msg = luaL_checkstring(L, 2);
    mw_log((enum mw_log_level)level, "%s", msg);
    return 0;
}

/* core.stat(path) -> { type=, size=, mtime=, mtime_ns= } | nil, message */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_nsec);
    lua_setfield(L, -2, "mtime_ns");
    return 1;
}

/* core.realpath(path) -> absolute path with symlinks resolved | nil */
static int l_realpath(lua_State *L)
{
    char *p = realpath(luaL_checkstring(L, 1), NULL);
    if (!p) return 0;
    lua_pushstring(L, p);
    free(p);
    return 1;
}

/* core.http_date(epoch_seconds) -> IMF-fixdate */
static int l_http_date(lua_State *L)
{
    char buf[32];
    mw_http_date((time_t)luaL_checkinteger(L, 1), buf);
    lua_pushstring(L, buf);
    return 1;
}

void mw_lua_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
                  void *key)
{
    luaL_newmetatable(L, name);
    if (key) {
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, key);
    }
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "methods");
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}

int mw_lua_push_method(lua_State *L)
{
    /* stack: obj, key */
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_settop(L, 2);
    return 0;
}

void mw_lua_add_res_method(lua_State *L, const char *name, lua_CFunction fn)
{
    /* stack: core */
    lua_getfield(L, -1, "res_methods");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

int mw_lua_open_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"abort", l_abort},     {"is_status_error", l_status_error},
        {"new_status_error", l_new_status_error}, {"realpath", l_realpath}, {"is_closed", l_is_closed},
        {"reason", l_reason},   {"log", l_log},                   {"stat", l_stat},
        {"http_date", l_http_date}, {NULL, NULL}};
    luaL_newmetatable(L, STATUS_ERROR_MT);
    lua_pushcfunction(L, status_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, funcs);
    lua_pushliteral(L, MW_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, mw_vm_of(L)->dev_mode);
    lua_setfield(L, -2, "dev_mode");
    lua_pushstring(L, mw_vm_of(L)->app_dir);
    lua_setfield(L, -2, "app_dir");
    mw_lua_push_closed(L);
    lua_setfield(L, -2, "closed");
    mw_lua_open_timer(L);
    mw_lua_open_json(L);
    mw_lua_open_req(L);
    mw_lua_open_sse(L);
    mw_lua_open_hub(L);
    mw_lua_open_ws(L);
    return 1;
}
