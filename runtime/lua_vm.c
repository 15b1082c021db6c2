/* lua_vm.c - the Lua state, app loading and the coroutine scheduler.
 *
 * Every handler, timer callback and event runs in a coroutine made here.
 * A binding that must wait calls mw_co_wait, which yields with a
 * continuation; whoever satisfies the wait pushes results and calls
 * mw_co_wake, which queues the coroutine. The queue drains when no resume
 * is on the C stack, so a resume never nests inside another. */
#include "lua_vm.h"
#include "buf.h"
#include "mw_limits.h"
#include "log.h"
#include "lua_alloc.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "server.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

static _Thread_local struct mw_vm *the_vm;
static char closed_marker, error_marker, closed_key;

struct mw_vm *mw_vm_of(lua_State *L)
{
    (void)L;
    return the_vm;
}

int mw_lua_ref(lua_State *L)
{
    the_vm->live_refs++;
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void mw_lua_unref(lua_State *L, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
    the_vm->live_refs--;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void mw_lua_push_closed(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &closed_key);
}

int mw_lua_is_closed(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    mw_lua_push_closed(L);
    int eq = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);
    return eq;
}

static int closed_tostring(lua_State *L)
{
    lua_pushliteral(L, "closed");
    return 1;
}

/* An error outside any protected call: nothing can recover the state. */
static int on_panic(lua_State *L)
{
    fprintf(stderr, "moonwire: unprotected Lua error: %s\n", lua_tostring(L, -1));
    abort();
}

/* ------------------------------------------------------------ lualib path */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The lualib folder: $MOONWIRE_LUALIB, else beside an installed binary
 * (<prefix>/bin/../share/moonwire/lualib), else the source tree. */
static void find_lualib(char *out, size_t size)
{
    const char *env = getenv("MOONWIRE_LUALIB");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return;
    }
    char exe[3072];
    size_t len = sizeof exe;
    if (uv_exepath(exe, &len) == 0) {
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, size, "%s/../share/moonwire/lualib", exe);
            char *real = realpath(out, NULL); /* ".../bin/../share" reads badly in errors */
            if (real && is_dir(real)) {
                snprintf(out, size, "%s", real);
                free(real);
                return;
            }
            free(real);
        }
    }
    if (is_dir(MW_INSTALL_LUALIB)) {
        snprintf(out, size, "%s", MW_INSTALL_LUALIB);
        return;
    }
    snprintf(out, size, "%s", MW_SOURCE_LUALIB);
}

static void set_paths(lua_State *L, const char *app_dir)
{
    char lualib[4096];
    find_lualib(lualib, sizeof lualib);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;", app_dir, app_dir, lualib,
                    lualib);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, lualib);
    lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.lualib");
    lua_pop(L, 1);
}

/* -------------------------------------------------------------- the state */

struct mw_vm *mw_vm_new(const char *app_path, int dev_mode)
{
    struct mw_vm *vm = mw_xcalloc(1, sizeof *vm);
    the_vm = vm;
    vm->app_path = mw_xstrndup(app_path, strlen(app_path));
    const char *slash = strrchr(app_path, '/');
    vm->app_dir = slash ? mw_xstrndup(app_path, (size_t)(slash - app_path)) : mw_xstrndup(".", 1);
    vm->app_ref = vm->dispatch_ref = LUA_NOREF;
    vm->dev_mode = dev_mode;

    lua_State *L = vm->L = lua_newstate(mw_lua_alloc, NULL);
    lua_atpanic(L, on_panic);
    /* Requests make many short-lived objects: the generational collector
     * reclaims them young, without sweeping the long-lived app state. A
     * minor collection when the young reach half the heap (Lua's default
     * is a fifth): a thousand parked long polls are objects that live a
     * few milliseconds, and fewer, larger minors let more of them die
     * young (6% less CPU per long-poll delivery, no change in memory per
     * idle connection). Apps may choose their own: collectgarbage(). */
    lua_gc(L, LUA_GCGEN, 50, 0);
    luaL_openlibs(L);
    *(struct mw_co **)lua_getextraspace(L) = NULL;
    set_paths(L, vm->app_dir);

    /* stack: closed */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, closed_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "moonwire.closed");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &closed_key);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, mw_lua_open_core);
    lua_setfield(L, -2, "moonwire.core");
    lua_pop(L, 1);
    return vm;
}

int mw_vm_version_of(lua_State *L)
{
    struct mw_vm *vm = the_vm;
    if (vm->loading_version) return vm->loading_version;
    struct mw_co *co = L ? mw_co_current(L) : NULL;
    return co && co->version ? co->version : vm->version;
}

/* package.searchers entry placed before Lua's own file searcher: modules
 * found in the app's folder are recorded, so a reload can load them anew
 * (lualib and system modules are left alone). */
static int app_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct mw_vm *vm = the_vm;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", vm->app_dir, vm->app_dir);
    lua_call(L, 2, 2);
    /* stack: name, package, path | nil, message */
    if (lua_isnil(L, -2)) {
        lua_pushfstring(L, "\n\tno file in the app's folder (%s)", vm->app_dir);
        return 1;
    }
    const char *path = lua_tostring(L, -2);
    if (luaL_loadfile(L, path) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path,
                          lua_tostring(L, -1));
    luaL_getsubtable(L, LUA_REGISTRYINDEX, "moonwire.app_modules");
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, -3); /* the path, as the loader's second argument */
    return 2;
}

static void install_searcher(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    /* shift entries 2.. up one and put ours at 2, after package.preload */
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, app_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

/* Moves the app's modules out of package.loaded into a table on the stack
 * (to be put back if the new version fails). */
static void unload_app_modules(lua_State *L)
{
    lua_newtable(L);
    int saved = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, "moonwire.app_modules");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    /* stack: saved, modules, loaded */
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, saved);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 2);
}

static void restore_app_modules(lua_State *L, int saved)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, saved)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
}

int mw_vm_load_app(struct mw_vm *vm, const char **err)
{
    static char msg[2048];
    static int searcher_installed;
    lua_State *L = vm->L;
    int top = lua_gettop(L);
    if (!searcher_installed) {
        install_searcher(L);
        searcher_installed = 1;
    }
    int version = vm->version + 1;
    unload_app_modules(L);
    int saved = lua_gettop(L);
    vm->loading_version = version;
    int ok = luaL_loadfile(L, vm->app_path) == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK;
    vm->loading_version = 0;
    if (ok && (!lua_istable(L, -1) || lua_getfield(L, -1, "_dispatch") != LUA_TFUNCTION)) {
        snprintf(msg, sizeof msg,
                 "%s: the script must end with `return app` (an app made by mw.app()); it returned %s",
                 vm->app_path, luaL_typename(L, saved + 1));
        ok = 0;
    } else if (!ok) {
        snprintf(msg, sizeof msg, "%s", luaL_tolstring(L, -1, NULL));
    }
    if (!ok) {
        /* the old version goes on: its modules back, the new one's timers gone */
        restore_app_modules(L, saved);
        mw_lua_timers_stop_version(L, version);
        mw_lua_hub_forget_version(L, version);
        lua_settop(L, top);
        *err = msg;
        return -1;
    }
    /* stack: saved, app, dispatch */
    mw_lua_unref(L, vm->dispatch_ref);
    vm->dispatch_ref = mw_lua_ref(L);
    mw_lua_unref(L, vm->app_ref);
    vm->app_ref = mw_lua_ref(L);
    lua_settop(L, top);
    int old = vm->version;
    vm->version = version;
    if (old) {
        mw_lua_timers_stop_version(L, old);
        mw_lua_hub_forget_version(L, old);
    }
    return 0;
}

static double opt_number(lua_State *L, int t, const char *name, double dflt)
{
    lua_getfield(L, t, name);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

void mw_vm_apply_limits(struct mw_vm *vm, struct mw_server *srv)
{
    lua_State *L = vm->L;
    struct mw_limits *l = &srv->limits;
    /* from the defaults each time: an option a reloaded version dropped
     * must not keep the old version's value */
    mw_limits_defaults(l);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->app_ref);
    lua_getfield(L, -1, "limits");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        l->max_header_bytes = (size_t)opt_number(L, t, "max_header_bytes", (double)l->max_header_bytes);
        l->max_body_bytes = (size_t)opt_number(L, t, "max_body_bytes", (double)l->max_body_bytes);
        l->header_timeout_ms =
            (uint64_t)(opt_number(L, t, "header_timeout", l->header_timeout_ms / 1000.0) * 1000);
        l->idle_timeout_ms =
            (uint64_t)(opt_number(L, t, "idle_timeout", l->idle_timeout_ms / 1000.0) * 1000);
        l->send_timeout_ms =
            (uint64_t)(opt_number(L, t, "send_timeout", l->send_timeout_ms / 1000.0) * 1000);
        l->max_queued_bytes = (size_t)opt_number(L, t, "max_queued_bytes", (double)l->max_queued_bytes);
        l->max_message_bytes = (size_t)opt_number(L, t, "max_message", (double)l->max_message_bytes);
        l->shutdown_ms =
            (uint64_t)(opt_number(L, t, "shutdown_timeout", l->shutdown_ms / 1000.0) * 1000);
    }
    lua_pop(L, 2);
}

/* --------------------------------------------------------------- coroutines */

struct mw_co *mw_co_current(lua_State *L)
{
    return *(struct mw_co **)lua_getextraspace(L);
}

/* Finished coroutines are kept for reuse: a request costs no new thread.
 * The pool holds the recent peak of concurrency (a thousand parked long
 * polls answered at once come back as a thousand requests): what stayed
 * unused for a whole trim interval is freed. */
#define MW_CO_TRIM_MS 10000
static _Thread_local struct mw_co *co_pool;
static _Thread_local int co_pool_len;
static _Thread_local int co_pool_low;      /* fewest pooled since the last trim */
static _Thread_local uint64_t co_trim_at;  /* loop time of the next trim */

static void co_free(struct mw_vm *vm, struct mw_co *co)
{
    mw_lua_unref(vm->L, co->ref);
    free(co);
}

static void co_pool_trim(struct mw_vm *vm)
{
    if (!vm->srv) return;
    uint64_t now = uv_now(vm->srv->loop);
    if (now < co_trim_at) return;
    for (int n = co_pool_low; n > 0 && co_pool; n--) {
        struct mw_co *co = co_pool;
        co_pool = co->ready_next;
        co_pool_len--;
        co_free(vm, co);
    }
    co_pool_low = co_pool_len;
    co_trim_at = now + MW_CO_TRIM_MS;
}

struct mw_co *mw_co_new(struct mw_vm *vm, const char *what, mw_co_done_cb on_done, void *ud)
{
    struct mw_co *co = co_pool;
    if (co) {
        co_pool = co->ready_next;
        if (--co_pool_len < co_pool_low) co_pool_low = co_pool_len;
        lua_State *T = co->T;
        int ref = co->ref;
        memset(co, 0, sizeof *co);
        co->T = T;
        co->ref = ref;
    } else {
        co = mw_xcalloc(1, sizeof *co);
        co->T = lua_newthread(vm->L);
        co->ref = mw_lua_ref(vm->L);
    }
    co->vm = vm;
    co->what = what;
    co->on_done = on_done;
    co->ud = ud;
    co->version = vm->version;
    *(struct mw_co **)lua_getextraspace(co->T) = co;
    co->live_next = vm->live;
    if (vm->live) vm->live->live_prev = co;
    vm->live = co;
    return co;
}

static void co_finish(struct mw_co *co, const char *err)
{
    struct mw_vm *vm = co->vm;
    if (co->live_prev) co->live_prev->live_next = co->live_next;
    if (co->live_next) co->live_next->live_prev = co->live_prev;
    if (vm->live == co) vm->live = co->live_next;
    if (co->on_done) co->on_done(co, err, co->ud);
    *(struct mw_co **)lua_getextraspace(co->T) = NULL;
    if (lua_status(co->T) == LUA_OK && lua_gettop(co->T) == 0 && !vm->closing) {
        co->ready_next = co_pool;
        co_pool = co;
        co_pool_len++;
        co_pool_trim(vm);
        return;
    }
    co_free(vm, co);
}

static void co_pool_drain(struct mw_vm *vm)
{
    while (co_pool) {
        struct mw_co *co = co_pool;
        co_pool = co->ready_next;
        co_free(vm, co);
    }
    co_pool_len = co_pool_low = 0;
}

static void co_run(struct mw_co *co, int nargs)
{
    struct mw_vm *vm = co->vm;
    lua_State *T = co->T;
    int nres = 0;
    vm->depth++;
    int st = lua_resume(T, NULL, nargs, &nres);
    vm->depth--;
    if (st == LUA_YIELD) {
        lua_pop(T, nres);
        if (co->waiting) return;
        /* A bare coroutine.yield() at the top of our coroutine would leave
         * it parked forever; report it as the programming error it is. */
        lua_pushliteral(T, "coroutine.yield() called outside a coroutine of your own");
        st = LUA_ERRRUN;
        luaL_traceback(vm->L, T, lua_tostring(T, -1), 0);
        lua_resetthread(T);
    } else if (st == LUA_OK) {
        lua_settop(T, 0);
        co_finish(co, NULL);
        return;
    } else if (mw_lua_is_closed(T, -1)) {
        lua_resetthread(T);
        co_finish(co, NULL); /* the client left: ends quietly */
        return;
    } else {
        const char *msg = luaL_tolstring(T, -1, NULL);
        luaL_traceback(vm->L, T, msg, 0);
        lua_resetthread(T);
    }
    /* stack of vm->L: traceback */
    const char *tb = lua_tostring(vm->L, -1);
    co_finish(co, tb);
    lua_pop(vm->L, 1);
}

static void enqueue(struct mw_co *co, int nargs)
{
    struct mw_vm *vm = co->vm;
    co->nargs = nargs;
    co->queued = 1;
    co->ready_next = NULL;
    if (vm->ready_tail)
        vm->ready_tail->ready_next = co;
    else
        vm->ready_head = co;
    vm->ready_tail = co;
}

void mw_co_start(struct mw_co *co, int nargs)
{
    if (co->vm->depth == 0)
        co_run(co, nargs);
    else
        enqueue(co, nargs);
}

void mw_co_wake(struct mw_co *co, int nargs)
{
    if (!co->waiting || co->queued) return;
    co->waiting = 0;
    co->cancel = NULL;
    enqueue(co, nargs);
}

void mw_co_wake_closed(struct mw_co *co)
{
    if (!co->waiting || co->queued) return;
    lua_pushlightuserdata(co->T, &closed_marker);
    mw_co_wake(co, 1);
}

void mw_co_wake_error(struct mw_co *co)
{
    if (!co->waiting || co->queued) {
        lua_pop(co->T, 1);
        return;
    }
    lua_pushlightuserdata(co->T, &error_marker);
    lua_insert(co->T, -2);
    mw_co_wake(co, 2);
}

void mw_vm_drain(struct mw_vm *vm)
{
    if (vm->depth > 0) return;
    while (vm->ready_head) {
        struct mw_co *co = vm->ready_head;
        vm->ready_head = co->ready_next;
        if (!vm->ready_head) vm->ready_tail = NULL;
        co->queued = 0;
        co_run(co, co->nargs);
    }
}

/* Runs when a parked call is resumed: raise `closed` or a passed error,
 * else return the values the waker pushed. */
static int wait_k(lua_State *L, int status, lua_KContext ctx)
{
    int base = (int)ctx;
    int n = lua_gettop(L) - base;
    struct mw_co *co = mw_co_current(L);
    int (*then)(lua_State *, void *) = co ? co->then : NULL;
    void *obj = co ? co->wait_obj : NULL;
    if (co) {
        co->then = NULL;
        co->wait_obj = NULL;
    }
    if (n >= 1 && lua_islightuserdata(L, base + 1)) {
        void *p = lua_touserdata(L, base + 1);
        if (p == &closed_marker) {
            mw_lua_push_closed(L);
            return lua_error(L);
        }
        if (p == &error_marker) {
            lua_pushvalue(L, base + 2);
            return lua_error(L);
        }
    }
    if (then) {
        lua_settop(L, base);
        return then(L, obj);
    }
    return n;
}

static int wait_common(lua_State *L, mw_co_cancel_cb cancel, void *obj,
                       int (*then)(lua_State *L, void *obj))
{
    struct mw_co *co = mw_co_current(L);
    if (!co || co->T != L || !lua_isyieldable(L))
        return luaL_error(L, "this call waits, and can only be made inside a handler, "
                             "timer callback or event (not while the app loads)");
    co->waiting = 1;
    co->cancel = cancel;
    co->wait_obj = obj;
    co->then = then;
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), wait_k);
}

int mw_co_wait_then(lua_State *L, mw_co_cancel_cb cancel, void *obj,
                    int (*then)(lua_State *L, void *obj))
{
    return wait_common(L, cancel, obj, then);
}

int mw_co_wait(lua_State *L, mw_co_cancel_cb cancel, void *obj)
{
    return wait_common(L, cancel, obj, NULL);
}

void mw_vm_shutdown(struct mw_vm *vm)
{
    mw_lua_timers_stop_all(vm->L);
}

long mw_vm_free(struct mw_vm *vm)
{
    vm->closing = 1;
    co_pool_drain(vm);
    /* Parked coroutines will never resume: undo their waits, drop them. */
    while (vm->live) {
        struct mw_co *co = vm->live;
        if (co->cancel) co->cancel(co);
        lua_resetthread(co->T);
        co_finish(co, NULL);
    }
    mw_lua_timers_stop_all(vm->L);
    mw_lua_unref(vm->L, vm->dispatch_ref);
    mw_lua_unref(vm->L, vm->app_ref);
    long leaked = vm->live_refs;
    lua_close(vm->L);
    mw_lua_hub_release();
    mw_lua_alloc_release();
    free(vm->app_path);
    free(vm->app_dir);
    free(vm);
    the_vm = NULL;
    return leaked;
}
