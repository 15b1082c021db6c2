/* lua_sse.c - res:sse{...} and the `stream` object.
 *
 * A stream handle is a userdata holding (request, generation) like req and
 * res, plus two user values: the `last_event_id` string and, once one is
 * registered, the table of on_close
 * callbacks. While the stream is open the handle is anchored in the
 * registry, so callbacks run even if the app dropped every reference. */
#include "conn.h"
#include "http.h"
#include "log.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "lua_req.h"
#include "lua_sse.h"
#include "lua_vm.h"
#include "server.h"
#include "sse.h"
#include "stream.h"

#include <lauxlib.h>
#include <string.h>

#define STREAM_MT "moonwire.stream"
#define CHANNEL_MT "moonwire.channel"

static char stream_mt_key;

struct stream_handle {
    struct mw_req *req;
    uint32_t gen;
};

/* The open stream, or NULL when it is closed or its request is over. */
static struct mw_stream *get_stream(lua_State *L)
{
    struct stream_handle *h = luaL_checkudata(L, 1, STREAM_MT);
    if (h->req->gen != h->gen || !h->req->stream || h->req->stream->closed) return NULL;
    return h->req->stream;
}

static struct mw_req *check_res_arg(lua_State *L)
{
    struct mw_req *req = mw_lua_check_res(L, 1);
    return req;
}

static void add_header(struct mw_req *req, const char *name, const char *value, int replace)
{
    mw_response_add(&req->res, name, strlen(name), value, strlen(value), replace);
}

/* res:sse{ heartbeat = 15 } -> stream */
static int res_sse(lua_State *L)
{
    struct mw_req *req = check_res_arg(L);
    lua_Number heartbeat = 15;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "heartbeat");
        if (!lua_isnil(L, -1)) {
            heartbeat = luaL_checknumber(L, -1);
            /* bounded: seconds * 1000 must fit the integer it becomes */
            luaL_argcheck(L, heartbeat >= 0 && heartbeat <= 86400, 2,
                          "heartbeat must be 0..86400 seconds");
        }
        lua_pop(L, 1);
    }
    if (req->res_state != MW_RES_NONE) return luaL_error(L, "res:sse() after the response started");
    int gone = !req->conn; /* the app still gets a stream: a closed one, whose methods say so */
    /* the client's resume point: the header, else ?lastEventId= */
    struct mw_buf lei;
    mw_buf_init(&lei);
    if (!mw_req_header(req, "last-event-id", 13, &lei)) mw_req_query_value(req, "lastEventId", &lei);
    mw_buf_appendc(&lei, '\0');

    /* stack: res, opts, handle */
    struct stream_handle *h = lua_newuserdatauv(L, sizeof *h, 2);
    h->req = req;
    h->gen = req->gen;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &stream_mt_key);
    lua_setmetatable(L, -2);
    lua_pushstring(L, lei.data);
    lua_setiuservalue(L, -2, 1);

    if (gone) {
        mw_buf_free(&lei);
        return 1;
    }
    add_header(req, "Content-Type", "text/event-stream; charset=utf-8", 1);
    add_header(req, "Cache-Control", "no-cache", 1);
    add_header(req, "X-Accel-Buffering", "no", 1);
    struct mw_stream *s = mw_req_start_stream(req, (uint32_t)(heartbeat * 1000), lei.data);
    mw_buf_free(&lei);
    /* the handle is anchored only once an on_close needs it: an idle
     * stream costs Lua nothing after its handler returns */
    /* HEAD gets the head only: the stream ends before it starts, so what
     * the handler sends goes nowhere (send returns false) */
    if (req->is_head) mw_stream_close(s, 1);
    return 1;
}

static int stream_index(lua_State *L)
{
    /* stack: stream, key */
    if (mw_lua_push_method(L)) return 1;
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "last_event_id") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    return 0;
}

static int raise_field(lua_State *L, const char *what)
{
    return luaL_error(L, "stream:send: %s must not contain CR, LF or NUL", what);
}

/* stream:send(data | { data =, event =, id =, retry = }) -> true | false */
static int stream_send(lua_State *L)
{
    struct mw_stream *s = get_stream(L);
    struct mw_sse_event ev = {.retry_ms = -1};
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "data");
        lua_getfield(L, 2, "event");
        lua_getfield(L, 2, "id");
        lua_getfield(L, 2, "retry");
        /* stack: stream, t, data, event, id, retry */
        if (!lua_isnil(L, 3)) ev.data = luaL_checklstring(L, 3, &ev.data_len);
        if (!lua_isnil(L, 4)) {
            ev.event = luaL_checklstring(L, 4, &ev.event_len);
            if (!mw_sse_field_ok(ev.event, ev.event_len)) return raise_field(L, "event");
        }
        if (!lua_isnil(L, 5)) {
            ev.id = luaL_checklstring(L, 5, &ev.id_len);
            if (!mw_sse_field_ok(ev.id, ev.id_len)) return raise_field(L, "id");
        }
        if (!lua_isnil(L, 6)) {
            lua_Integer r = luaL_checkinteger(L, 6);
            luaL_argcheck(L, r >= 0, 2, "retry must be >= 0 milliseconds");
            ev.retry_ms = r;
        }
        if (!ev.data && !ev.event && !ev.id && ev.retry_ms < 0)
            return luaL_argerror(L, 2, "an event needs data, event, id or retry");
    } else {
        ev.data = luaL_checklstring(L, 2, &ev.data_len);
    }
    if (!s) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct mw_buf out;
    mw_buf_init(&out);
    mw_sse_encode(&out, &ev);
    int rc = mw_stream_write(s, out.data, out.len);
    mw_buf_free(&out);
    lua_pushboolean(L, rc == MW_STREAM_OK);
    return 1;
}

/* stream:comment(text) -> true | false */
static int stream_comment(lua_State *L)
{
    struct mw_stream *s = get_stream(L);
    size_t len;
    const char *text = luaL_optlstring(L, 2, "", &len);
    if (!s) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct mw_buf out;
    mw_buf_init(&out);
    mw_sse_comment(&out, text, len);
    mw_buf_appendc(&out, '\n');
    int rc = mw_stream_write(s, out.data, out.len);
    mw_buf_free(&out);
    lua_pushboolean(L, rc == MW_STREAM_OK);
    return 1;
}

/* stream:subscribe(channel [, { since = id, event = name }]) -> true | false */
static int stream_subscribe(lua_State *L)
{
    struct mw_stream *s = get_stream(L);
    mw_lua_check_channel(L, 2, 0); /* the argument's type; the channel is made below */
    long long since = -1;
    const char *event = NULL;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "since");
        since = mw_lua_opt_since(L, -1);
        lua_getfield(L, 3, "event");
        if (!lua_isnil(L, -1)) {
            size_t len;
            event = luaL_checklstring(L, -1, &len);
            if (!mw_sse_field_ok(event, len) || strlen(event) != len)
                return luaL_error(L, "stream:subscribe: event must not contain CR, LF or NUL");
        }
    }
    if (!s) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 1);
    int rc = mw_stream_subscribe(s, ch, since, event);
    if (rc == MW_STREAM_DUP) return luaL_error(L, "stream:subscribe: already subscribed to %s", ch->name);
    lua_pushboolean(L, rc == MW_STREAM_OK);
    return 1;
}

static int stream_unsubscribe(lua_State *L)
{
    struct mw_stream *s = get_stream(L);
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 0);
    lua_pushboolean(L, s && ch && mw_stream_unsubscribe(s, ch) == MW_STREAM_OK);
    return 1;
}

static int stream_closed(lua_State *L)
{
    lua_pushboolean(L, get_stream(L) == NULL);
    return 1;
}

/* stream:on_close(fn): fn() runs once when the stream ends for any reason. */
static int stream_on_close(lua_State *L)
{
    luaL_checkudata(L, 1, STREAM_MT);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!get_stream(L)) {
        /* already closed: run it now, like a late listener would expect.
         * Not listed: the close callbacks may not have run yet, and they
         * must not run it a second time. */
        lua_pushvalue(L, 2);
        lua_call(L, 0, 0);
        return 0;
    }
    struct mw_stream *s = get_stream(L);
    if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 2);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    if (s->lua_ref == LUA_NOREF) {
        /* from now on the callbacks must run even if the app drops the handle */
        lua_pushvalue(L, 1);
        s->lua_ref = mw_lua_ref(L);
    }
    return 0;
}

/* stream:close(): ends the stream and its response. */
static int stream_close(lua_State *L)
{
    struct mw_stream *s = get_stream(L);
    if (s) mw_stream_close(s, 1);
    return 0;
}

static int stream_tostring(lua_State *L)
{
    lua_pushstring(L, get_stream(L) ? "moonwire.stream (open)" : "moonwire.stream (closed)");
    return 1;
}

/* ------------------------------------------------------------ on close */

static void on_close_done(struct mw_co *co, const char *err, void *ud)
{
    if (err) mw_log_error("stream on_close callback failed: %s", err);
}

/* Each callback runs in its own coroutine: it may wait, and one that
 * fails does not keep the others from running. */
void mw_lua_stream_closed(struct mw_stream *s)
{
    struct mw_vm *vm = mw_vm_of(NULL);
    if (!vm || s->lua_ref == LUA_NOREF) return;
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->lua_ref);
    mw_lua_unref(L, s->lua_ref);
    s->lua_ref = LUA_NOREF;
    /* stack: handle, callbacks */
    if (lua_getiuservalue(L, -1, 2) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            struct mw_co *co = mw_co_new(vm, "on_close", on_close_done, NULL);
            lua_rawgeti(L, -1, i);
            lua_xmove(L, co->T, 1);
            mw_co_start(co, 0);
        }
    }
    lua_pop(L, 2);
}

void mw_lua_open_sse(lua_State *L)
{
    static const luaL_Reg methods[] = {{"send", stream_send},
                                       {"comment", stream_comment},
                                       {"subscribe", stream_subscribe},
                                       {"unsubscribe", stream_unsubscribe},
                                       {"closed", stream_closed},
                                       {"on_close", stream_on_close},
                                       {"close", stream_close},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__index", stream_index}, {"__tostring", stream_tostring}, {NULL, NULL}};
    mw_lua_class(L, STREAM_MT, methods, meta, &stream_mt_key);
    mw_lua_add_res_method(L, "sse", res_sse);
}
