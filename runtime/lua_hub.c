/* lua_hub.c - the hub from Lua: mw.publish, mw.channel, ch:publish,
 * ch:history, ch:last_id, ch:wait.
 *
 * ch:wait parks the calling coroutine as a one-shot hub subscriber with
 * its own timeout timer: nothing polls. Messages published before it
 * resumes are collected, so a burst in one loop turn arrives as one list.
 * When the waiting request's client leaves, the wait is cancelled at once
 * and the handler ends quietly.
 *
 * The list a wait (or ch:history) returns last is remembered with its
 * messages, so that mw.json can write each message table that still holds
 * what it was made with from its message's cached encoding, instead of
 * walking and escaping it again (mw_lua_hub_encode_msg). */
#include "deadline.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "lua_vm.h"
#include "server.h"
#include "utf8.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CHANNEL_MT "moonwire.channel"

struct channel_handle {
    struct mw_channel *ch; /* holds a channel ref */
};

struct waiter {
    struct mw_sub sub;      /* first: the hub hands it back */
    struct mw_co *co;
    struct mw_req *req;     /* the waiting request, if a handler waits */
    struct mw_deadline timeout;
    int woken;
    struct mw_msg **msgs;   /* collected deliveries: one, or an array */
    struct mw_msg *one;     /* where msgs points while there is one */
    size_t nmsgs;
    struct waiter *prev, *next; /* every parked waiter, for shutdown; free list */
};

static _Thread_local struct waiter *waiters;
static _Thread_local struct waiter *spare_waiters; /* freed ones, for the next wait */
static _Thread_local size_t nspare;
#ifdef MW_DEBUG
static const size_t spare_waiters_max = 0; /* ASan sees every use after the end */
#else
static const size_t spare_waiters_max = 4096;
#endif

/* The strings message tables are made of, interned: anchored in the
 * registry (so each keeps its address while the state lives) and pushed
 * from there without hashing. A short string with the same text is the
 * same object, so comparing addresses compares texts. */
enum { S_ID, S_DATA, S_KIND, S_TEXT, S_BINARY, S_COUNT };
static const char *const str_text[S_COUNT] = {"id", "data", "kind", "text", "binary"};
static _Thread_local int str_ref[S_COUNT];
static _Thread_local const char *str_addr[S_COUNT];

static void push_str(lua_State *L, int which)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, str_ref[which]);
}

/* The channel metatable's address: checking a handle compares pointers. */
static _Thread_local const void *channel_mt;

/* The list made last by ch:wait or ch:history, with its messages. */
static _Thread_local struct {
    const void *list;       /* lua_topointer of the list; NULL: none */
    struct mw_msg **msgs;   /* one reference each */
    size_t n, cap;
} last_list;

static void remember_options(lua_State *L, const char *name, size_t len);

/* --------------------------------------------------------------- helpers */

/* The channel handle at idx, or NULL. */
static struct channel_handle *test_channel(lua_State *L, int idx)
{
    void *ud = lua_touserdata(L, idx);
    if (!ud || !lua_getmetatable(L, idx)) return NULL;
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    return mt == channel_mt ? ud : NULL;
}

struct mw_channel *mw_lua_check_channel(lua_State *L, int idx, int create)
{
    struct channel_handle *h = test_channel(L, idx);
    if (h) return h->ch;
    /* the type first: lua_tolstring would turn a number into a name */
    if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "channel or channel name");
    size_t len;
    const char *name = lua_tolstring(L, idx, &len);
    if (len == 0) luaL_argerror(L, idx, "a channel name cannot be empty");
    return mw_hub_channel(name, len, create);
}

static int check_kind(lua_State *L, int idx, const char *data, size_t len)
{
    static const char *const kinds[] = {"text", "binary", NULL};
    int kind = luaL_checkoption(L, idx, "text", kinds);
    if (kind == MW_MSG_TEXT && !mw_utf8_valid(data, len))
        luaL_argerror(L, idx - 1, "text messages must be valid UTF-8 (publish it as \"binary\")");
    return kind;
}

static void push_msg(lua_State *L, struct mw_msg *m)
{
    lua_createtable(L, 0, 3);
    push_str(L, S_ID);
    lua_pushinteger(L, (lua_Integer)m->id);
    lua_rawset(L, -3);
    push_str(L, S_DATA);
    lua_pushlstring(L, m->data, m->len);
    lua_rawset(L, -3);
    push_str(L, S_KIND);
    push_str(L, m->kind == MW_MSG_BINARY ? S_BINARY : S_TEXT);
    lua_rawset(L, -3);
    if (m->kind == MW_MSG_BINARY) {
        /* mw.json writes its data base64: JSON text is UTF-8 */
        mw_lua_push_binary_mt(L);
        lua_setmetatable(L, -2);
    }
}

static void new_list(lua_State *L, int n)
{
    lua_createtable(L, n, 0);
    mw_lua_push_array_mt(L);
    lua_setmetatable(L, -2);
}

static void forget_last_list(void)
{
    for (size_t i = 0; i < last_list.n; i++) mw_msg_unref(last_list.msgs[i]);
    last_list.n = 0;
    last_list.list = NULL;
}

/* Remembers the list at the top of the stack as made of msgs[0..n-1],
 * taking their references. Called once the list is complete: making it
 * allocates, and a finalizer run by that could list messages too. */
static void remember_list(lua_State *L, struct mw_msg **msgs, size_t n)
{
    forget_last_list();
    if (last_list.cap < n) {
        last_list.cap = n < 8 ? 8 : n;
        last_list.msgs = mw_xrealloc(last_list.msgs, last_list.cap * sizeof *last_list.msgs);
    }
    if (n) memcpy(last_list.msgs, msgs, n * sizeof *msgs);
    last_list.n = n;
    last_list.list = lua_topointer(L, -1);
}

#define COLLECT_INLINE 16

struct collect {
    size_t n, cap;
    struct mw_msg **msgs; /* referenced; inline while they fit */
    struct mw_msg *inline_msgs[COLLECT_INLINE];
};

static void collect_one(struct mw_msg *m, void *ud)
{
    struct collect *c = ud;
    if (c->n == c->cap) {
        c->cap *= 2;
        if (c->msgs == c->inline_msgs) {
            c->msgs = mw_xmalloc(c->cap * sizeof *c->msgs);
            memcpy(c->msgs, c->inline_msgs, sizeof c->inline_msgs);
        } else {
            c->msgs = mw_xrealloc(c->msgs, c->cap * sizeof *c->msgs);
        }
    }
    mw_msg_ref(m);
    c->msgs[c->n++] = m;
}

/* Pushes the messages after since and returns 2 (list, missed). They are
 * listed first, then made into tables: no Lua code (a finalizer that
 * publishes) runs while the history is walked. */
static int push_history(lua_State *L, struct mw_channel *ch, long long since)
{
    struct collect c;
    c.n = 0;
    c.cap = COLLECT_INLINE;
    c.msgs = c.inline_msgs;
    size_t missed = mw_channel_history(ch, since, collect_one, &c);
    new_list(L, (int)c.n);
    for (size_t i = 0; i < c.n; i++) {
        push_msg(L, c.msgs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    remember_list(L, c.msgs, c.n);
    if (c.msgs != c.inline_msgs) free(c.msgs);
    lua_pushinteger(L, (lua_Integer)missed);
    return 2;
}

struct mw_msg *const *mw_lua_hub_list_msgs(lua_State *L, int idx, size_t *n)
{
    if (!last_list.list || lua_topointer(L, idx) != last_list.list) return NULL;
    *n = last_list.n;
    return last_list.msgs;
}

int mw_lua_hub_encode_msg(lua_State *L, int idx, struct mw_msg *m, struct mw_buf *b)
{
    /* the table push_msg made, or what is left of it: the metatable it
     * got (binary messages: mw.json.binary_mt, so data goes out base64),
     * no key but id, data and kind, each holding the message's value.
     * Each piece goes out as the encoder's own walk would write it, in the
     * same (traversal) order, so the bytes are the same either way. */
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    int marked = 0;
    if (lua_getmetatable(L, idx)) {
        marked = mw_lua_is_binary_mt(L, -1);
        lua_pop(L, 1);
        if (!marked) return 0;
    }
    if (marked != (m->kind == MW_MSG_BINARY)) return 0;
    struct mw_shared *data = mw_msg_json_data(m);
    /* room for all of it: {"id":<20>,"data":<data>,"kind":"binary"} */
    size_t mark = b->len;
    char *out = mw_buf_reserve(b, data->len + 64), *start = out;
    *out++ = '{';
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* stack: key, value */
        if (lua_type(L, -2) != LUA_TSTRING) goto differs;
        const char *k = lua_tostring(L, -2);
        if (out - start > 1) *out++ = ',';
        if (k == str_addr[S_ID]) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != (lua_Integer)m->id) goto differs;
            memcpy(out, "\"id\":", 5);
            out += 5;
            char tmp[24], *p = mw_fmt_u64(tmp + sizeof tmp, m->id);
            memcpy(out, p, (size_t)(tmp + sizeof tmp - p));
            out += tmp + sizeof tmp - p;
        } else if (k == str_addr[S_DATA]) {
            size_t len;
            if (lua_type(L, -1) != LUA_TSTRING) goto differs;
            const char *d = lua_tolstring(L, -1, &len);
            if (len != m->len || memcmp(d, m->data, len) != 0) goto differs;
            memcpy(out, "\"data\":", 7);
            memcpy(out + 7, data->data, data->len);
            out += 7 + data->len;
        } else if (k == str_addr[S_KIND]) {
            int binary = m->kind == MW_MSG_BINARY;
            if (lua_type(L, -1) != LUA_TSTRING || lua_tostring(L, -1) != str_addr[binary ? S_BINARY : S_TEXT])
                goto differs;
            if (binary) {
                memcpy(out, "\"kind\":\"binary\"", 15);
                out += 15;
            } else {
                memcpy(out, "\"kind\":\"text\"", 13);
                out += 13;
            }
        } else {
            goto differs;
        }
        lua_pop(L, 1);
    }
    *out++ = '}';
    b->len = mark + (size_t)(out - start);
    return 1;
differs:
    lua_pop(L, 2);
    return 0;
}

long long mw_lua_opt_since(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return -1;
    if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) < 0)
        luaL_error(L, "since must be a message id (an integer >= 0), got %s", luaL_tolstring(L, idx, NULL));
    return lua_tointeger(L, idx);
}

/* ----------------------------------------------------------------- mw.* */

/* mw.publish(channel, data [, kind]) -> id */
static int l_publish(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int kind = check_kind(L, 3, data, len);
    struct mw_channel *ch = mw_lua_check_channel(L, 1, 1);
    lua_pushinteger(L, (lua_Integer)mw_hub_publish(ch, data, len, kind));
    return 1;
}

/* mw.channel(name [, { history = N }]) -> channel */
static int l_channel(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    lua_Integer history = -1;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "history") != LUA_TNIL) {
            history = luaL_checkinteger(L, -1);
            luaL_argcheck(L, history >= 0 && history <= 1000000, 2, "history must be 0..1000000");
        }
        lua_pop(L, 1);
    }
    struct channel_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->ch = NULL;
    luaL_setmetatable(L, CHANNEL_MT);
    h->ch = mw_lua_check_channel(L, 1, 1);
    mw_channel_ref(h->ch);
    if (history >= 0) {
        mw_channel_set_history(h->ch, (size_t)history);
        remember_options(L, h->ch->name, h->ch->name_len);
    }
    return 1;
}

static struct mw_channel *self_channel(lua_State *L)
{
    struct channel_handle *h = test_channel(L, 1);
    if (!h) luaL_typeerror(L, 1, CHANNEL_MT);
    return h->ch;
}

static int ch_publish(lua_State *L)
{
    struct mw_channel *ch = self_channel(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int kind = check_kind(L, 3, data, len);
    lua_pushinteger(L, (lua_Integer)mw_hub_publish(ch, data, len, kind));
    return 1;
}

/* ch:history([since]) -> list, missed */
static int ch_history(lua_State *L)
{
    struct mw_channel *ch = self_channel(L);
    return push_history(L, ch, mw_lua_opt_since(L, 2));
}

static int ch_last_id(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)self_channel(L)->last_id);
    return 1;
}

/* ------------------------------------------------------------- ch:wait */

/* Unlinks the waiter everywhere and frees it. */
static void waiter_end(struct waiter *w)
{
    mw_hub_unsubscribe(&w->sub);
    if (w->req && w->req->waiter == w->co) w->req->waiter = NULL;
    for (size_t i = 0; i < w->nmsgs; i++) mw_msg_unref(w->msgs[i]);
    if (w->msgs != &w->one) free(w->msgs);
    w->msgs = NULL;
    w->nmsgs = 0;
    if (w->prev) w->prev->next = w->next;
    if (w->next) w->next->prev = w->prev;
    if (waiters == w) waiters = w->next;
    mw_deadline_clear(&w->timeout);
    if (nspare < spare_waiters_max) {
        w->next = spare_waiters;
        spare_waiters = w;
        nspare++;
    } else {
        free(w);
    }
}

static struct waiter *waiter_new(void)
{
    struct waiter *w = spare_waiters;
    if (!w) return mw_xcalloc(1, sizeof *w);
    spare_waiters = w->next;
    nspare--;
    memset(w, 0, sizeof *w);
    return w;
}

static void wake(struct waiter *w)
{
    if (w->woken) return;
    w->woken = 1;
    mw_deadline_clear(&w->timeout);
    mw_co_wake(w->co, 0);
}

static void waiter_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct waiter *w = (struct waiter *)sub;
    if (w->nmsgs == 0) {
        w->msgs = &w->one;
    } else if (w->msgs == &w->one) {
        w->msgs = mw_xmalloc(2 * sizeof *w->msgs);
        w->msgs[0] = w->one;
    } else {
        w->msgs = mw_xrealloc(w->msgs, (w->nmsgs + 1) * sizeof *w->msgs);
    }
    mw_msg_ref(m);
    w->msgs[w->nmsgs++] = m;
    wake(w);
}

static const struct mw_sub_ops waiter_ops = {.deliver = waiter_deliver};

static void waiter_timeout(struct mw_deadline *d)
{
    struct waiter *w = (struct waiter *)((char *)d - offsetof(struct waiter, timeout));
    struct mw_server *srv = w->co->vm->srv;
    wake(w);
    mw_server_sweep(srv);
}

static void waiter_cancel(struct mw_co *co)
{
    waiter_end(co->wait_obj);
}

/* Resumed: the list of what arrived ({} on timeout or shutdown). */
static int wait_done(lua_State *L, void *obj)
{
    struct waiter *w = obj;
    new_list(L, (int)w->nmsgs);
    for (size_t i = 0; i < w->nmsgs; i++) {
        push_msg(L, w->msgs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    remember_list(L, w->msgs, w->nmsgs); /* the waiter's references move */
    w->nmsgs = 0;
    lua_pushinteger(L, 0);
    waiter_end(w);
    return 2;
}

/* ch:wait{ since = id, timeout = seconds } -> list, missed */
static int ch_wait(lua_State *L)
{
    struct mw_channel *ch = self_channel(L);
    long long since = -1;
    lua_Number timeout = 30;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "since");
        since = mw_lua_opt_since(L, -1);
        lua_getfield(L, 2, "timeout");
        if (!lua_isnil(L, -1)) {
            timeout = luaL_checknumber(L, -1);
            luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 2, "timeout must be 0..86400 seconds");
        }
        lua_pop(L, 2);
    }
    /* retained messages after since (all of them when since is older than
     * the history, or above last_id after a restart) come back at once */
    if (since >= 0 && mw_channel_has_after(ch, since)) return push_history(L, ch, since);
    struct mw_co *co = mw_co_current(L);
    struct mw_vm *vm = mw_vm_of(L);
    if (!co || co->T != L || !lua_isyieldable(L)) return mw_co_wait(L, NULL, NULL); /* raises */
    struct mw_req *req = co->req;
    if (req && !req->conn) {
        mw_lua_push_closed(L);
        return lua_error(L);
    }
    struct waiter *w = waiter_new();
    w->sub.ops = &waiter_ops;
    w->sub.owner = w;
    w->co = co;
    w->req = req;
    mw_deadline_set(&w->timeout, vm->srv->loop, (uint64_t)(timeout * 1000), waiter_timeout);
    w->next = waiters;
    if (waiters) waiters->prev = w;
    waiters = w;
    mw_hub_subscribe(ch, &w->sub);
    if (req) mw_req_park(req, co, MW_WAIT_HUB);
    return mw_co_wait_then(L, waiter_cancel, w, wait_done);
}

/* Channel options belong to the app version that set them: the registry
 * table moonwire.channel_opts maps a channel name to that version. */
static void remember_options(lua_State *L, const char *name, size_t len)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, "moonwire.channel_opts");
    lua_pushlstring(L, name, len);
    lua_pushinteger(L, mw_vm_version_of(L));
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void mw_lua_hub_forget_version(lua_State *L, int version)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, "moonwire.channel_opts");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        /* stack: opts, name, version */
        if (lua_tointeger(L, -1) == version) {
            size_t len;
            const char *name = lua_tolstring(L, -2, &len);
            struct mw_channel *ch = mw_hub_channel(name, len, 0);
            if (ch) {
                mw_channel_ref(ch);
                mw_channel_set_history(ch, MW_HUB_DEFAULT_HISTORY);
                mw_channel_unref(ch);
            }
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4); /* clearing a field during traversal is allowed */
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

void mw_lua_hub_wake_all(void)
{
    for (struct waiter *w = waiters; w; w = w->next) wake(w);
}

void mw_lua_hub_release(void)
{
    forget_last_list();
    free(last_list.msgs);
    last_list.msgs = NULL;
    last_list.cap = 0;
    while (spare_waiters) {
        struct waiter *w = spare_waiters;
        spare_waiters = w->next;
        free(w);
    }
    nspare = 0;
}

static int ch_gc(lua_State *L)
{
    struct channel_handle *h = test_channel(L, 1);
    if (!h) return 0;
    if (h->ch) mw_channel_unref(h->ch);
    h->ch = NULL;
    return 0;
}

/* __index, with the methods table as upvalue: a method call (ch:wait)
 * costs one raw lookup. */
static int ch_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    struct mw_channel *ch = self_channel(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "name") == 0) {
        lua_pushlstring(L, ch->name, ch->name_len);
        return 1;
    }
    return 0;
}

static int ch_tostring(lua_State *L)
{
    struct mw_channel *ch = self_channel(L);
    lua_pushfstring(L, "moonwire.channel %s (last id %I, %I subscriber(s))", ch->name,
                    (lua_Integer)ch->last_id, (lua_Integer)ch->nsubs);
    return 1;
}

void mw_lua_open_hub(lua_State *L)
{
    static const luaL_Reg methods[] = {{"publish", ch_publish},
                                       {"history", ch_history},
                                       {"last_id", ch_last_id},
                                       {"wait", ch_wait},
                                       {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"publish", l_publish}, {"channel", l_channel}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", ch_gc}, {"__tostring", ch_tostring}, {NULL, NULL}};
    /* stack: core */
    mw_lua_class(L, CHANNEL_MT, methods, meta, NULL);
    luaL_getmetatable(L, CHANNEL_MT);
    channel_mt = lua_topointer(L, -1);
    lua_getfield(L, -1, "methods");
    lua_pushcclosure(L, ch_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    for (int i = 0; i < S_COUNT; i++) {
        lua_pushstring(L, str_text[i]);
        str_addr[i] = lua_tostring(L, -1);
        str_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    luaL_setfuncs(L, funcs, 0);
}
