/* lua_timer.c - mw.sleep, mw.after, mw.every and mw.now.
 *
 * A timer's callback runs in its own coroutine, so it may wait like a
 * handler. An `every` timer skips a tick while its previous callback is
 * still running rather than piling coroutines up. Timers live until they
 * fire (after), are stopped, or the app version that made them is
 * replaced: dropping the Lua handle does not stop them, as in browsers. */
#include "cell.h"
#include "log.h"
#include "lua_core.h"
#include "lua_vm.h"
#include "server.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <sys/time.h>
#include <uv.h>

#define TIMER_MT "moonwire.timer"

struct mw_timer {
    uv_timer_t handle;
    struct mw_cell *cell;  /* shared with the Lua handle */
    int fn_ref;            /* the callback */
    int repeat;            /* mw.every */
    int running;           /* its callback's coroutine has not finished */
    int stopped;
    int version;           /* the app version that started it; a reload stops it */
    struct mw_timer *prev, *next; /* every live timer, for stop_all */
};

static _Thread_local struct mw_timer *live_timers;

/* The loop, with its clock brought up to now: libuv times a timer from the
 * time cached when this loop turn began, and a handler may run late in a
 * busy turn, so without this a sleep could end that much early. */
static uv_loop_t *vm_loop(lua_State *L)
{
    uv_loop_t *loop = mw_vm_of(L)->srv->loop;
    uv_update_time(loop);
    return loop;
}

static uint64_t to_ms(lua_State *L, int idx)
{
    lua_Number s = luaL_checknumber(L, idx);
    luaL_argcheck(L, s >= 0 && s < 1e9, idx, "seconds must be between 0 and 1e9");
    return (uint64_t)(s * 1000.0 + 0.5);
}

/* ------------------------------------------------------------------ sleep */

struct sleep {
    uv_timer_t handle;
    struct mw_co *co;
};

static void sleep_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sleep_fired(uv_timer_t *t)
{
    struct sleep *s = t->data;
    struct mw_co *co = s->co;
    uv_close((uv_handle_t *)t, sleep_closed);
    if (co) {
        mw_co_wake(co, 0);
        mw_server_sweep(co->vm->srv);
    }
}

static void sleep_cancel(struct mw_co *co)
{
    struct sleep *s = co->wait_obj;
    s->co = NULL;
    uv_close((uv_handle_t *)&s->handle, sleep_closed);
}

/* mw.sleep(seconds): waits without blocking the loop. */
static int l_sleep(lua_State *L)
{
    uint64_t ms = to_ms(L, 1);
    struct mw_co *co = mw_co_current(L);
    if (!co || !lua_isyieldable(L)) return mw_co_wait(L, NULL, NULL); /* raises */
    struct sleep *s = malloc(sizeof *s);
    if (!s) return luaL_error(L, "out of memory");
    s->co = co;
    uv_timer_init(vm_loop(L), &s->handle);
    s->handle.data = s;
    uv_timer_start(&s->handle, sleep_fired, ms, 0);
    return mw_co_wait(L, sleep_cancel, s);
}

/* ----------------------------------------------------------- after, every */

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer_stop(lua_State *L, struct mw_timer *t)
{
    if (t->stopped) return;
    t->stopped = 1;
    uv_timer_stop(&t->handle);
    mw_lua_unref(L, t->fn_ref);
    t->fn_ref = LUA_NOREF;
    mw_cell_clear(t->cell, MW_CELL_DONE);
    if (t->prev) t->prev->next = t->next;
    if (t->next) t->next->prev = t->prev;
    if (live_timers == t) live_timers = t->next;
    if (!t->running) uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void callback_done(struct mw_co *co, const char *err, void *ud)
{
    struct mw_timer *t = ud;
    if (err) mw_log_error("timer callback failed: %s", err);
    t->running = 0;
    if (t->stopped) uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_fired(uv_timer_t *h)
{
    struct mw_timer *t = h->data;
    struct mw_vm *vm = mw_vm_of(NULL);
    lua_State *L = vm->L;
    if (t->running) return; /* previous tick still busy */
    struct mw_co *co = mw_co_new(vm, "timer", callback_done, t);
    co->version = t->version;
    lua_rawgeti(co->T, LUA_REGISTRYINDEX, t->fn_ref);
    t->running = 1;
    if (!t->repeat) timer_stop(L, t);
    mw_co_start(co, 0);
    mw_server_sweep(vm->srv);
}

static int new_timer(lua_State *L, int repeat)
{
    uint64_t ms = to_ms(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (repeat && ms == 0) return luaL_argerror(L, 1, "an interval must be above 0");
    struct mw_cell **ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = NULL;
    luaL_setmetatable(L, TIMER_MT);
    /* stack: timer; nothing below can raise once memory is taken */
    struct mw_timer *t = calloc(1, sizeof *t);
    if (!t) return luaL_error(L, "out of memory");
    t->cell = mw_cell_new(t);
    mw_cell_ref(t->cell);
    *ud = t->cell;
    lua_pushvalue(L, 2);
    t->fn_ref = mw_lua_ref(L);
    t->repeat = repeat;
    t->version = mw_vm_version_of(L);
    uv_timer_init(vm_loop(L), &t->handle);
    t->handle.data = t;
    uv_timer_start(&t->handle, timer_fired, ms, repeat ? ms : 0);
    t->next = live_timers;
    if (live_timers) live_timers->prev = t;
    live_timers = t;
    /* code of a replaced version, still finishing a request, starts
     * nothing that outlives it */
    if (t->version < mw_vm_of(L)->version) timer_stop(L, t);
    return 1;
}

/* mw.after(seconds, fn) -> timer */
static int l_after(lua_State *L)
{
    return new_timer(L, 0);
}

/* mw.every(seconds, fn) -> timer */
static int l_every(lua_State *L)
{
    return new_timer(L, 1);
}

static struct mw_cell *check_timer(lua_State *L)
{
    return *(struct mw_cell **)luaL_checkudata(L, 1, TIMER_MT);
}

/* timer:stop(): idempotent; true if it was still pending. */
static int timer_m_stop(lua_State *L)
{
    struct mw_cell *c = check_timer(L);
    if (!c || !c->obj) {
        lua_pushboolean(L, 0);
        return 1;
    }
    timer_stop(L, c->obj);
    lua_pushboolean(L, 1);
    return 1;
}

static int timer_m_active(lua_State *L)
{
    struct mw_cell *c = check_timer(L);
    lua_pushboolean(L, c && c->obj != NULL);
    return 1;
}

static int timer_gc(lua_State *L)
{
    struct mw_cell **ud = luaL_checkudata(L, 1, TIMER_MT);
    if (*ud) mw_cell_unref(*ud);
    *ud = NULL;
    return 0;
}

static int timer_tostring(lua_State *L)
{
    struct mw_cell *c = check_timer(L);
    lua_pushstring(L, c && c->obj ? "moonwire.timer (active)" : "moonwire.timer (stopped)");
    return 1;
}

void mw_lua_timers_stop_all(lua_State *L)
{
    while (live_timers) timer_stop(L, live_timers);
}

void mw_lua_timers_stop_version(lua_State *L, int version)
{
    struct mw_timer *next;
    for (struct mw_timer *t = live_timers; t; t = next) {
        next = t->next;
        if (t->version == version) timer_stop(L, t);
    }
}

/* mw.now(): seconds since the epoch, with sub-millisecond precision. */
static int l_now(lua_State *L)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

void mw_lua_open_timer(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"stop", timer_m_stop}, {"active", timer_m_active}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", timer_gc}, {"__tostring", timer_tostring}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"sleep", l_sleep}, {"after", l_after}, {"every", l_every}, {"now", l_now}, {NULL, NULL}};
    luaL_newmetatable(L, TIMER_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0); /* into the core table on top */
}
