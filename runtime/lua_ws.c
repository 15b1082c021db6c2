/* lua_ws.c - WebSocket from Lua.
 *
 * Each socket is one allocation (struct lws): the C engine, the app's
 * inbox of events, its hub feed and a packed copy of the handshake's head
 * for ws.req. It outlives the connection until its close event has run.
 * Events wait in the inbox and run one at a time, each in its own
 * coroutine, so a message handler that waits holds back the next message,
 * never runs beside it. A full inbox pauses reading. The Lua `ws` object
 * points at the record until then; after, send returns false.
 *
 * An idle socket should cost little: the Lua side is the handle alone.
 * Its route's handlers are shared by every socket on the route, and ws.req
 * is made from the kept head when asked for (lua_req.c keeps the one the
 * app saw for as long as anything refers to it). */
#include "conn.h"
#include "feed.h"
#include "head.h"
#include "http.h"
#include "hub.h"
#include "json_text.h"
#include "log.h"
#include "lua_core.h"
#include "lua_hub.h"
#include "lua_req.h"
#include "lua_vm.h"
#include "lua_ws.h"
#include "server.h"
#include "utf8.h"
#include "ws.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_MT "moonwire.ws"

/* The handle's user values: ws.data (made on first use), and once the
 * socket is gone, what it still answers for: { req =, protocol = }. */
enum { WSUV_DATA = 1, WSUV_GONE, WSUV_COUNT = WSUV_GONE };
#define INBOX_MAX_BYTES (1024 * 1024) /* queued to the app before reading pauses */
#define INBOX_MAX_EVENTS 1024
#define MAX_KEPT_PARAMS 32   /* route parameters of a pattern, at most (a router limit in practice) */

enum { EV_OPEN, EV_MESSAGE, EV_CLOSE, EV_DRAIN };

struct ws_event {
    struct ws_event *next;
    int type;
    int opcode;        /* message kind, or close code */
    struct mw_buf data;
};

/* A route's handlers, shared by its sockets. After a reload, the first
 * event on any of them finds the new version's handlers by pattern. */
struct ws_route {
    struct ws_route *next;
    char *pattern;
    int handlers_ref;
    int version;       /* the app version the handlers are from */
    int sockets;
};

struct lws {
    struct mw_ws ws;           /* the engine; its callbacks find the record from it */
    struct ws_route *route;
    struct ws_event *inbox;    /* the newest event; its next is the oldest (a ring) */
    uint32_t inbox_bytes, inbox_events;
    int self_ref;              /* anchors the Lua handle until the close event ran */
    uint16_t protocol;         /* index in protocol_names, 0: none */
    uint8_t running, pumping;
    uint8_t closed;            /* the close event was queued */
    uint8_t app_drain;         /* ws:send was refused: drain(ws) is due */
    uint8_t due;               /* in the list of records to pump */
    struct lws *due_next;
    struct mw_feed feed;       /* hub subscriptions; sub.owner is the record */
    /* then, in the same block: the handshake's head (ws.req) */
};

/* The Lua handle. */
struct ws_handle {
    struct lws *rec;           /* NULL once the close event ran */
};

static _Thread_local struct ws_route *routes;
/* Records with events to run, pumped from the server's sweep: events
 * never run inside the engine that reported them. */
static _Thread_local struct lws *due_head, *due_tail;
static _Thread_local struct mw_task pump_due_task;
/* Negotiated subprotocol names, interned: apps name a handful. */
static _Thread_local char **protocol_names;
static _Thread_local size_t nprotocol_names;

/* --------------------------------------------------------------- helpers */

static struct lws *rec_of(struct mw_ws *ws)
{
    return (struct lws *)((char *)ws - offsetof(struct lws, ws));
}

static size_t head_offset(void)
{
    return (sizeof(struct lws) + 7) & ~(size_t)7;
}

static struct mw_head *rec_head(struct lws *rec)
{
    return (struct mw_head *)((char *)rec + head_offset());
}

static struct ws_handle *check_handle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, WS_MT);
}

static struct lws *check_ws(lua_State *L, int idx)
{
    return check_handle(L, idx)->rec;
}

static struct mw_ws *live_ws(struct lws *rec)
{
    return rec && rec->ws.state == MW_WS_OPEN && rec->ws.conn ? &rec->ws : NULL;
}

static void push_handle(lua_State *L, struct lws *rec)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, rec->self_ref);
}

static uint16_t intern_protocol(const char *name)
{
    for (size_t i = 0; i < nprotocol_names; i++)
        if (strcmp(protocol_names[i], name) == 0) return (uint16_t)(i + 1);
    if (nprotocol_names == UINT16_MAX) return 0;
    protocol_names = mw_xrealloc(protocol_names, (nprotocol_names + 1) * sizeof *protocol_names);
    protocol_names[nprotocol_names++] = mw_xstrndup(name, strlen(name));
    return (uint16_t)nprotocol_names;
}

/* --------------------------------------------------------------- routes */

/* The route for pattern, its handlers those on top of the stack (popped),
 * from app version `version`: a handshake that began before a reload
 * brings older handlers than the route may have, and leaves them. */
static struct ws_route *route_take(lua_State *L, const char *pattern, int version)
{
    struct ws_route *r = routes;
    while (r && strcmp(r->pattern, pattern) != 0) r = r->next;
    if (!r) {
        r = mw_xcalloc(1, sizeof *r);
        r->pattern = mw_xstrndup(pattern, strlen(pattern));
        r->handlers_ref = LUA_NOREF;
        r->next = routes;
        routes = r;
    }
    if (version > r->version) { /* a new route's is 0 */
        mw_lua_unref(L, r->handlers_ref);
        r->handlers_ref = mw_lua_ref(L);
        r->version = version;
    } else {
        lua_pop(L, 1);
    }
    r->sockets++;
    return r;
}

static void route_drop(lua_State *L, struct ws_route *r)
{
    if (--r->sockets > 0) return;
    struct ws_route **pp = &routes;
    while (*pp != r) pp = &(*pp)->next;
    *pp = r->next;
    mw_lua_unref(L, r->handlers_ref);
    free(r->pattern);
    free(r);
}

/* Points the route at its handlers in the app version serving now.
 * Returns 0 if that version has no such route; the handlers stay as they
 * were then. */
static int current_handlers(lua_State *L, struct ws_route *r)
{
    struct mw_vm *vm = mw_vm_of(L);
    if (r->version == vm->version) return 1;
    int found = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->app_ref);
    if (lua_getfield(L, -1, "ws_routes") == LUA_TTABLE) {
        if (lua_getfield(L, -1, r->pattern) == LUA_TTABLE) {
            mw_lua_unref(L, r->handlers_ref);
            r->handlers_ref = mw_lua_ref(L);
            r->version = vm->version;
            found = 1;
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    return found;
}

/* ------------------------------------------------------------ the inbox */

static void pump(struct lws *rec);

static void pump_due(struct mw_task *t)
{
    (void)t;
    while (due_head) {
        struct lws *rec = due_head;
        due_head = rec->due_next;
        if (!due_head) due_tail = NULL;
        rec->due = 0;
        pump(rec);
    }
}

/* Events are run from the sweep: the engine that reported one may still
 * be on the stack, and running the close event frees the socket. */
static void schedule(struct lws *rec)
{
    if (rec->due) return;
    rec->due = 1;
    rec->due_next = NULL;
    if (due_tail)
        due_tail->due_next = rec;
    else
        due_head = rec;
    due_tail = rec;
    mw_server_defer(mw_vm_of(NULL)->srv, &pump_due_task, pump_due);
}

static void event_free(struct ws_event *e)
{
    mw_buf_free(&e->data);
    free(e);
}

static void queue_event(struct lws *rec, int type, int opcode, struct mw_buf *data)
{
    struct ws_event *e = mw_xcalloc(1, sizeof *e);
    e->type = type;
    e->opcode = opcode;
    if (data) {
        e->data = *data;
        mw_buf_init(data);
    }
    if (rec->inbox) {
        e->next = rec->inbox->next;
        rec->inbox->next = e;
    } else {
        e->next = e;
    }
    rec->inbox = e;
    rec->inbox_bytes += (uint32_t)(e->data.len < INBOX_MAX_BYTES * 2 ? e->data.len : INBOX_MAX_BYTES * 2);
    rec->inbox_events++;
    if (rec->inbox_bytes > INBOX_MAX_BYTES || rec->inbox_events > INBOX_MAX_EVENTS) mw_ws_pause(&rec->ws, 1);
    schedule(rec);
}

static void release(struct lws *rec);

static void event_done(struct mw_co *co, const char *err, void *ud)
{
    struct lws *rec = ud;
    if (err) {
        mw_log_error("WebSocket %s handler failed: %s", co->what, err);
        if (rec->ws.state == MW_WS_OPEN) mw_ws_fail(&rec->ws, MW_WS_CLOSE_INTERNAL, "handler error");
    }
    rec->running = 0;
    if (!rec->pumping) schedule(rec);
}

static const char *const event_names[] = {"open", "message", "close", "drain"};

/* Runs queued events one after another; a handler that waits leaves the
 * rest queued until it finishes (event_done pumps again). */
static void pump(struct lws *rec)
{
    if (rec->pumping) return;
    rec->pumping = 1;
    struct mw_vm *vm = mw_vm_of(NULL);
    while (!rec->running && rec->inbox) {
        struct ws_event *e = rec->inbox->next;
        if (e == rec->inbox)
            rec->inbox = NULL;
        else
            rec->inbox->next = e->next;
        rec->inbox_bytes -= (uint32_t)(e->data.len < INBOX_MAX_BYTES * 2 ? e->data.len : INBOX_MAX_BYTES * 2);
        rec->inbox_events--;
        if (rec->ws.paused && rec->inbox_bytes <= INBOX_MAX_BYTES / 2 && rec->inbox_events <= INBOX_MAX_EVENTS / 2)
            mw_ws_pause(&rec->ws, 0);

        lua_State *L = vm->L;
        if (!current_handlers(L, rec->route) && e->type != EV_CLOSE) {
            /* a reload removed this socket's route: service restart */
            event_free(e);
            if (rec->ws.state == MW_WS_OPEN) mw_ws_close(&rec->ws, MW_WS_CLOSE_RESTART, "route removed by a reload", 25);
            continue;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, rec->route->handlers_ref);
        lua_getfield(L, -1, event_names[e->type]);
        lua_remove(L, -2);
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            event_free(e);
            continue;
        }
        struct mw_co *co = mw_co_new(vm, event_names[e->type], event_done, rec);
        co->req = NULL;
        lua_State *T = co->T;
        lua_xmove(L, T, 1);
        push_handle(T, rec);
        int nargs = 1;
        if (e->type == EV_OPEN) {
            mw_lua_req_push_kept(T, rec_head(rec));
            nargs = 2;
        } else if (e->type == EV_MESSAGE) {
            lua_pushlstring(T, e->data.data ? e->data.data : "", e->data.len);
            lua_pushstring(T, e->opcode == MW_WS_OP_BINARY ? "binary" : "text");
            nargs = 3;
        } else if (e->type == EV_CLOSE) {
            lua_pushinteger(T, e->opcode);
            lua_pushlstring(T, e->data.data ? e->data.data : "", e->data.len);
            nargs = 3;
        }
        event_free(e);
        rec->running = 1;
        mw_co_start(co, nargs);
    }
    rec->pumping = 0;
    /* a pump still queued will come back to this record: release then */
    if (!rec->running && !rec->inbox && rec->closed && !rec->due) release(rec);
}

/* ---------------------------------------------------- engine callbacks */

static void on_message(struct mw_ws *ws, int opcode, struct mw_buf *data)
{
    queue_event(rec_of(ws), EV_MESSAGE, opcode, data);
}

static void on_close(struct mw_ws *ws, int code, const char *reason, size_t len)
{
    struct lws *rec = rec_of(ws);
    if (rec->closed) return;
    rec->closed = 1;
    /* no more hub deliveries: the socket can take nothing now */
    mw_feed_leave_all(&rec->feed);
    struct mw_buf r;
    mw_buf_init(&r);
    mw_buf_append(&r, reason, len);
    queue_event(rec, EV_CLOSE, code, &r);
}

/* The send queue drained: replays waiting for room go on, and the app
 * hears of it if one of its sends was refused. */
static void on_drain(struct mw_ws *ws)
{
    struct lws *rec = rec_of(ws);
    if (!mw_feed_drained(&rec->feed)) return;
    if (rec->app_drain && live_ws(rec)) {
        rec->app_drain = 0;
        queue_event(rec, EV_DRAIN, 0, NULL);
    }
}

static const struct mw_ws_events events = {on_message, on_close, on_drain};

/* After the close event ran: everything the socket held goes. The handle
 * keeps ws.data, and ws.req if it still lives. */
static void release(struct lws *rec)
{
    lua_State *L = mw_vm_of(NULL)->L;
    mw_feed_free(&rec->feed);
    mw_ws_fini(&rec->ws);
    push_handle(L, rec);
    ((struct ws_handle *)lua_touserdata(L, -1))->rec = NULL;
    int has_req = mw_lua_req_drop_kept(L, rec_head(rec));
    if (has_req || rec->protocol) {
        /* stack: handle, req? */
        lua_createtable(L, 0, 2);
        if (has_req) {
            lua_insert(L, -2);
            lua_setfield(L, -2, "req");
        }
        if (rec->protocol) {
            lua_pushstring(L, protocol_names[rec->protocol - 1]);
            lua_setfield(L, -2, "protocol");
        }
        lua_setiuservalue(L, -2, WSUV_GONE);
    }
    lua_pop(L, 1);
    route_drop(L, rec->route);
    mw_lua_unref(L, rec->self_ref);
    free(rec);
}

/* ------------------------------------------------------------ handshake */

static int refuse(lua_State *L, int status, const char *why)
{
    mw_lua_push_status_error(L, status, why);
    if (status == 426) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "13");
        lua_setfield(L, -2, "Sec-WebSocket-Version");
        lua_setfield(L, -2, "headers");
    }
    return lua_error(L);
}

/* A valid key is base64 for 16 bytes. */
static int key_ok(const char *k, size_t len)
{
    if (len != 24 || k[22] != '=' || k[23] != '=') return 0;
    unsigned char out[18];
    return EVP_DecodeBlock(out, (const unsigned char *)k, 24) == 18;
}

static double opt_field_number(lua_State *L, int t, const char *name, double dflt)
{
    lua_getfield(L, t, name);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* internal: res:_ws_accept(handlers, req, pattern) -> ws. Checks the
 * handshake (400, or 426 for another version), negotiates the subprotocol
 * and compression, answers 101, and queues the open event. */
static int res_ws_accept(lua_State *L)
{
    struct mw_req *req = mw_lua_check_res(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkudata(L, 3, "moonwire.req");
    const char *pattern = luaL_checkstring(L, 4);
    if (req->res_state != MW_RES_NONE) return luaL_error(L, "the handshake was already answered");
    if (!req->conn) {
        mw_lua_push_closed(L);
        return lua_error(L);
    }
    if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
        return refuse(L, 400, "a WebSocket handshake needs HTTP/1.1");
    if (!req->upgrade || !mw_req_header_has_token(req, "upgrade", "websocket"))
        return refuse(L, 400, "a WebSocket route needs an Upgrade: websocket request");
    if (!mw_req_header_has_token(req, "connection", "upgrade"))
        return refuse(L, 400, "the handshake lacks Connection: Upgrade");
    struct mw_buf v;
    mw_buf_init(&v);
    if (!mw_req_header(req, "sec-websocket-version", 21, &v) || v.len != 2 || memcmp(v.data, "13", 2)) {
        mw_buf_free(&v);
        return refuse(L, 426, "WebSocket version 13 is required");
    }
    v.len = 0;
    if (!mw_req_header(req, "sec-websocket-key", 17, &v) || !key_ok(v.data, v.len)) {
        mw_buf_free(&v);
        return refuse(L, 400, "missing or malformed Sec-WebSocket-Key");
    }
    char accept[29];
    mw_ws_accept_key(v.data, v.len, accept);

    struct mw_buf extra;
    mw_buf_init(&extra);
    mw_buf_appendf(&extra, "Sec-WebSocket-Accept: %s\r\n", accept);

    /* subprotocol: the first of ours, in our order, that the client offers */
    uint16_t protocol = 0;
    lua_getfield(L, 2, "protocols");
    if (lua_istable(L, -1)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !protocol; i++) {
            lua_rawgeti(L, -1, i);
            const char *p = lua_tostring(L, -1);
            if (p && mw_req_header_has_token(req, "sec-websocket-protocol", p)) {
                protocol = intern_protocol(p);
                mw_buf_appendf(&extra, "Sec-WebSocket-Protocol: %s\r\n", p);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    struct mw_pmd pmd = {0};
    lua_getfield(L, 2, "compression");
    if (lua_toboolean(L, -1)) {
        v.len = 0;
        if (mw_req_header(req, "sec-websocket-extensions", 24, &v)) {
            struct mw_buf resp;
            mw_buf_init(&resp);
            if (mw_pmd_negotiate(v.data, v.len, &pmd, &resp)) {
                mw_buf_appends(&extra, "Sec-WebSocket-Extensions: ");
                mw_buf_append(&extra, resp.data, resp.len);
                mw_buf_appends(&extra, "\r\n");
            }
            mw_buf_free(&resp);
        }
    }
    lua_pop(L, 1);
    mw_buf_free(&v);
    size_t max_message = (size_t)opt_field_number(L, 2, "max_message",
                                                  (double)req->srv->limits.max_message_bytes);
    double heartbeat = opt_field_number(L, 2, "heartbeat", 30);

    /* one block: the record, then the handshake's head with the route's
     * parameters (the Lua strings stay on the stack while packed) */
    struct mw_hdr params[MAX_KEPT_PARAMS];
    size_t nparams = 0;
    int unpacked = 0; /* parameters the head cannot carry: the req stays as it is */
    if (mw_lua_req_push_params(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (nparams < MAX_KEPT_PARAMS && lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                struct mw_hdr *p = &params[nparams++];
                p->name = lua_tolstring(L, -2, &p->nlen);
                p->value = lua_tolstring(L, -1, &p->vlen);
            } else {
                unpacked = 1;
            }
            lua_pop(L, 1);
        }
    } else {
        lua_pushnil(L);
    }
    struct lws *rec = mw_xcalloc(1, head_offset() + mw_head_size(req, params, nparams));
    struct mw_head *head = mw_head_pack(rec_head(rec), req, params, nparams);
    lua_pop(L, 1); /* the params table */
    head->conn_at = &rec->ws.conn;
    lua_pushvalue(L, 2);
    rec->route = route_take(L, pattern, mw_vm_version_of(L));

    /* stack: res, handlers, req, pattern; the handle for the socket */
    struct ws_handle *h = lua_newuserdatauv(L, sizeof *h, WSUV_COUNT);
    h->rec = rec;
    rec->protocol = protocol;
    luaL_setmetatable(L, WS_MT);
    lua_pushvalue(L, -1);
    rec->self_ref = mw_lua_ref(L);
    mw_lua_req_keep(L, 3, head, unpacked);

    struct mw_conn *conn = req->conn;
    mw_req_upgrade(req, extra.data, extra.len);
    mw_buf_free(&extra);
    mw_ws_init(&rec->ws, conn, &pmd, max_message, (uint64_t)(heartbeat * 1000), &events);
    queue_event(rec, EV_OPEN, 0, NULL);
    return 1;
}

/* --------------------------------------------------------------- methods */

static int kind_opcode(lua_State *L, int idx)
{
    static const char *const kinds[] = {"text", "binary", NULL};
    return luaL_checkoption(L, idx, "text", kinds) ? MW_WS_OP_BINARY : MW_WS_OP_TEXT;
}

/* ws:send(data [, "binary"]) -> true when queued; false, dropping it, when
 * closed or over max_queued_bytes (drain(ws) follows once it empties). */
static int ws_send(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int opcode = kind_opcode(L, 3);
    if (opcode == MW_WS_OP_TEXT && !mw_utf8_valid(data, len))
        return luaL_argerror(L, 2, "text must be valid UTF-8 (send it as \"binary\")");
    struct mw_ws *ws = live_ws(rec);
    int rc = ws ? mw_ws_send(ws, opcode, data, len) : MW_WS_CLOSED_ERR;
    if (rc == MW_WS_FULL) rec->app_drain = 1;
    lua_pushboolean(L, rc == MW_WS_SENT);
    return 1;
}

static int ws_ping(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    size_t len = 0;
    const char *data = luaL_optlstring(L, 2, "", &len);
    luaL_argcheck(L, len <= 125, 2, "a ping carries at most 125 bytes");
    struct mw_ws *ws = live_ws(rec);
    lua_pushboolean(L, ws && mw_ws_ping(ws, data, len) == MW_WS_SENT);
    return 1;
}

/* ws:close([code [, reason]]): starts the closing handshake. */
static int ws_close(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t len = 0;
    const char *reason = luaL_optlstring(L, 3, "", &len);
    luaL_argcheck(L, mw_ws_close_code_ok((unsigned)code), 2,
                  "a close code must be 1000-1003, 1007-1014 or 3000-4999");
    luaL_argcheck(L, len <= 123, 3, "a close reason is at most 123 bytes");
    luaL_argcheck(L, mw_utf8_valid(reason, len), 3, "a close reason must be UTF-8");
    struct mw_ws *ws = live_ws(rec);
    if (ws) mw_ws_close(ws, (int)code, reason, len);
    return 0;
}

static int ws_buffered(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    lua_pushinteger(L, rec ? (lua_Integer)mw_ws_buffered(&rec->ws) : 0);
    return 1;
}

/* ----------------------------------------------------------------- hub */

static struct mw_shared *hub_frame(struct mw_msg *m, const char *channel, size_t clen, int envelope,
                                   const struct mw_pmd *pmd)
{
    int compress = pmd->enabled && m->len >= 64;
    /* compressed bytes depend on the window bits: they are part of the key */
    char key[8] = "";
    if (compress) snprintf(key, sizeof key, "z%d", pmd->server_window_bits);
    int tag = envelope ? MW_ENC_WS_ENVELOPE : MW_ENC_WS;
    struct mw_shared *f = mw_msg_encoding(m, tag, compress ? key : NULL);
    if (f) return f;
    if (envelope) {
        struct mw_buf j;
        mw_buf_init(&j);
        mw_buf_appends(&j, "{\"channel\":");
        mw_json_append_string(&j, channel, clen);
        mw_buf_appendf(&j, ",\"id\":%llu,\"data\":", (unsigned long long)m->id);
        struct mw_shared *data = mw_msg_json_data(m);
        mw_buf_append(&j, data->data, data->len);
        mw_buf_appends(&j, m->kind == MW_MSG_BINARY ? ",\"kind\":\"binary\"}" : "}");
        f = mw_ws_make_frame(MW_WS_OP_TEXT, j.data, j.len, compress, pmd->server_window_bits);
        mw_buf_free(&j);
    } else {
        f = mw_ws_make_frame(m->kind == MW_MSG_BINARY ? MW_WS_OP_BINARY : MW_WS_OP_TEXT, m->data,
                             m->len, compress, pmd->server_window_bits);
    }
    mw_msg_set_encoding(m, tag, compress ? key : NULL, f);
    return f;
}

/* Queues one hub message. */
static int send_hub(struct mw_feed_sub *fs, struct mw_msg *m)
{
    struct mw_ws *ws = live_ws(fs->sub.owner);
    if (!ws) return MW_FEED_CLOSED;
    struct mw_channel *ch = fs->sub.ch;
    struct mw_shared *f = hub_frame(m, ch ? ch->name : "", ch ? ch->name_len : 0, fs->envelope, &ws->pmd);
    int rc = mw_ws_send_shared(ws, f);
    if (rc != MW_WS_SENT) return rc == MW_WS_FULL ? MW_FEED_FULL : MW_FEED_CLOSED; /* on_drain follows a FULL */
    fs->last_id = m->id;
    return MW_FEED_OK;
}

/* A client too slow for the hub is closed; it resumes from history when
 * it reconnects. */
static void drop_slow(struct mw_feed_sub *fs)
{
    struct mw_ws *ws = live_ws(fs->sub.owner);
    if (!ws) return;
    mw_log_warn("conn %llu: WebSocket client fell more than %zu bytes behind; closing it with "
                "1013 (it resumes from history on reconnect)",
                (unsigned long long)ws->conn->id, mw_ws_max_queued(ws));
    mw_ws_fail(ws, MW_WS_CLOSE_TRY_AGAIN, "slow consumer");
}

static struct mw_feed *feed_of(struct mw_feed_sub *fs)
{
    return &((struct lws *)fs->sub.owner)->feed;
}

static const struct mw_feed_ops feed_ops = {{mw_feed_deliver}, send_hub, drop_slow, feed_of};

/* ws:subscribe(channel [, { since = id, envelope = true }]) -> true | false */
static int ws_subscribe(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 0); /* made once it is needed */
    long long since = -1;
    int envelope = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "since");
        since = mw_lua_opt_since(L, -1);
        lua_getfield(L, 3, "envelope");
        envelope = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    if (!live_ws(rec)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!ch) ch = mw_lua_check_channel(L, 2, 1);
    if (mw_feed_find(&rec->feed, ch)) return luaL_error(L, "ws:subscribe: already subscribed to %s", ch->name);
    struct mw_feed_sub *fs = mw_feed_add(&rec->feed, &feed_ops, rec, ch, since);
    fs->envelope = (uint8_t)envelope;
    /* the replay goes out as the queue has room; a drop unsubscribes fs */
    int ok = since < 0 || mw_feed_catch_up(fs);
    lua_pushboolean(L, ok && live_ws(rec) != NULL);
    return 1;
}

static int ws_unsubscribe(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 0);
    lua_pushboolean(L, rec && ch && mw_feed_remove(&rec->feed, ch));
    return 1;
}

/* ws:publish(channel, data [, kind]) -> id: to every subscriber but ws. */
static int ws_publish(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    mw_lua_check_channel(L, 2, 0); /* its type; made after the other checks */
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    static const char *const kinds[] = {"text", "binary", NULL};
    int kind = luaL_checkoption(L, 4, "text", kinds);
    if (kind == MW_MSG_TEXT && !mw_utf8_valid(data, len))
        return luaL_argerror(L, 3, "text messages must be valid UTF-8 (publish it as \"binary\")");
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 1);
    lua_pushinteger(L, (lua_Integer)mw_hub_publish_except(ch, data, len, kind, rec));
    return 1;
}

/* Pushes field k of a closed handle's leftovers (at index 1); 0 if none. */
static int gone_field(lua_State *L, const char *k)
{
    if (lua_getiuservalue(L, 1, WSUV_GONE) == LUA_TTABLE && lua_getfield(L, -1, k) != LUA_TNIL) {
        lua_remove(L, -2);
        return 1;
    }
    lua_settop(L, 2);
    return 0;
}

static int ws_index(lua_State *L)
{
    /* stack: ws, key */
    if (mw_lua_push_method(L)) return 1;
    struct ws_handle *h = check_handle(L, 1);
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (strcmp(k, "req") == 0) {
        if (h->rec) {
            mw_lua_req_push_kept(L, rec_head(h->rec));
        } else if (!gone_field(L, "req")) {
            /* the socket is gone, and nothing kept its request */
            mw_lua_req_push_finished(L);
            if (lua_getiuservalue(L, 1, WSUV_GONE) != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_createtable(L, 0, 1);
                lua_pushvalue(L, -1);
                lua_setiuservalue(L, 1, WSUV_GONE);
            }
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "req");
            lua_pop(L, 1);
        }
    } else if (strcmp(k, "protocol") == 0) {
        if (h->rec)
            lua_pushstring(L, h->rec->protocol ? protocol_names[h->rec->protocol - 1] : "");
        else if (!gone_field(L, "protocol"))
            lua_pushliteral(L, "");
    } else if (strcmp(k, "data") == 0) {
        /* made on first use: most sockets never need one */
        if (lua_getiuservalue(L, 1, WSUV_DATA) == LUA_TNIL) {
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, WSUV_DATA);
        }
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int ws_tostring(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    lua_pushstring(L, live_ws(rec) ? "moonwire.ws (open)" : "moonwire.ws (closed)");
    return 1;
}

void mw_lua_ws_close_all(int code)
{
    for (struct mw_conn *c = mw_vm_of(NULL)->srv->conns; c; c = c->next)
        if (c->ws && c->ws->state == MW_WS_OPEN) mw_ws_close(c->ws, code, "server shutting down", 20);
}

void mw_lua_open_ws(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"send", ws_send},           {"ping", ws_ping},         {"close", ws_close},
        {"buffered", ws_buffered},   {"subscribe", ws_subscribe}, {"unsubscribe", ws_unsubscribe},
        {"publish", ws_publish},     {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__index", ws_index}, {"__tostring", ws_tostring}, {NULL, NULL}};
    mw_lua_class(L, WS_MT, methods, meta, NULL);
    mw_lua_add_res_method(L, "_ws_accept", res_ws_accept);
}
