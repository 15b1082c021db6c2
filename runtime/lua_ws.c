/* lua_ws.c - WebSocket from Lua.
 *
 * Each socket has a record (struct lws) that outlives the C engine's view
 * of the connection until its close event has run. Events wait in the
 * record's inbox and run one at a time, each in its own coroutine, so a
 * message handler that waits holds back the next message, never runs
 * beside it. A full inbox pauses reading. The Lua `ws` object holds the
 * record through a cell: after the socket is gone, send returns false. */
#include "cell.h"
#include "conn.h"
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

/* A socket's Lua handle keeps what the app reads from it in user values,
 * not a table of its own: an idle socket should cost little. */
enum { WSUV_REQ = 1, WSUV_HANDLERS, WSUV_PATTERN, WSUV_PROTOCOL, WSUV_DATA, WSUV_COUNT = WSUV_DATA };
#define INBOX_MAX_BYTES (1024 * 1024) /* queued to the app before reading pauses */
#define INBOX_MAX_EVENTS 1024

enum { EV_OPEN, EV_MESSAGE, EV_CLOSE, EV_DRAIN };

struct ws_event {
    struct ws_event *next;
    int type;
    int opcode;        /* message kind, or close code */
    struct mw_buf data;
};

struct lws;

struct lws_sub {
    struct mw_sub sub; /* first: the hub hands it back */
    struct lws *rec;
    int envelope;
    uint64_t last_id;  /* the client has the channel's messages up to this one */
    int catching_up;   /* a replay waits in the history for the queue to drain */
};

struct lws {
    struct mw_ws *ws;          /* the engine; NULL once freed */
    struct mw_cell *cell;      /* shared with the Lua handle */
    struct mw_req *req;        /* the handshake request (held) */
    int self_ref;              /* anchors the Lua handle until the close event ran */
    struct ws_event *head, *tail;
    size_t inbox_bytes, inbox_events;
    int running, pumping;
    int closed;                /* the close event was queued */
    int app_drain;             /* ws:send was refused: drain(ws) is due */
    struct lws_sub **subs;
    size_t nsubs;
    struct lws *prev, *next;   /* every open socket, for shutdown */
    struct mw_task pump_task;  /* events run from the sweep, never inside the engine */
    int version;               /* the app version whose handlers it uses */
};

static _Thread_local struct lws *all;

/* --------------------------------------------------------------- helpers */

static struct lws *check_ws(lua_State *L, int idx)
{
    struct mw_cell **c = luaL_checkudata(L, idx, WS_MT);
    return *c ? (*c)->obj : NULL;
}

static struct mw_ws *live_ws(struct lws *rec)
{
    return rec && rec->ws && rec->ws->state == MW_WS_OPEN ? rec->ws : NULL;
}

static void push_handle(lua_State *L, struct lws *rec)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, rec->self_ref);
}

/* ------------------------------------------------------------ the inbox */

static void pump(struct lws *rec);

static void pump_task(struct mw_task *t)
{
    pump((struct lws *)((char *)t - offsetof(struct lws, pump_task)));
}

/* Events are run from the sweep: the engine that reported one may still
 * be on the stack, and running the close event frees the socket. */
static void schedule(struct lws *rec)
{
    mw_server_defer(mw_vm_of(NULL)->srv, &rec->pump_task, pump_task);
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
    if (rec->tail)
        rec->tail->next = e;
    else
        rec->head = e;
    rec->tail = e;
    rec->inbox_bytes += e->data.len;
    rec->inbox_events++;
    if (rec->ws && (rec->inbox_bytes > INBOX_MAX_BYTES || rec->inbox_events > INBOX_MAX_EVENTS))
        mw_ws_pause(rec->ws, 1);
    schedule(rec);
}

static void release(struct lws *rec);

static void event_done(struct mw_co *co, const char *err, void *ud)
{
    struct lws *rec = ud;
    if (err) {
        mw_log_error("WebSocket %s handler failed: %s", co->what, err);
        if (rec->ws && rec->ws->state == MW_WS_OPEN) mw_ws_fail(rec->ws, MW_WS_CLOSE_INTERNAL, "handler error");
    }
    rec->running = 0;
    if (!rec->pumping) schedule(rec);
}

static const char *const event_names[] = {"open", "message", "close", "drain"};

/* Points the socket at its route's handlers in the app version serving
 * now (the handle on top of L). Returns 0 if that version has no such
 * route; the handlers stay as they were then. */
static int current_handlers(lua_State *L, struct lws *rec)
{
    struct mw_vm *vm = mw_vm_of(L);
    if (rec->version == vm->version) return 1;
    int found = 0;
    lua_getiuservalue(L, -1, WSUV_PATTERN);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->app_ref);
    /* stack: handle, pattern, app */
    if (lua_getfield(L, -1, "ws_routes") == LUA_TTABLE) {
        lua_pushvalue(L, -3);
        if (lua_rawget(L, -2) == LUA_TTABLE) {
            lua_setiuservalue(L, -5, WSUV_HANDLERS);
            found = 1;
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 3);
    if (found) rec->version = vm->version;
    return found;
}

/* Runs queued events one after another; a handler that waits leaves the
 * rest queued until it finishes (event_done pumps again). */
static void pump(struct lws *rec)
{
    if (rec->pumping) return;
    rec->pumping = 1;
    struct mw_vm *vm = mw_vm_of(NULL);
    while (!rec->running && rec->head) {
        struct ws_event *e = rec->head;
        rec->head = e->next;
        if (!rec->head) rec->tail = NULL;
        rec->inbox_bytes -= e->data.len;
        rec->inbox_events--;
        if (rec->ws && rec->ws->paused && rec->inbox_bytes <= INBOX_MAX_BYTES / 2 &&
            rec->inbox_events <= INBOX_MAX_EVENTS / 2)
            mw_ws_pause(rec->ws, 0);

        /* stack: the handler for this event, from the route's table */
        lua_State *L = vm->L;
        push_handle(L, rec);
        if (!current_handlers(L, rec) && e->type != EV_CLOSE) {
            /* a reload removed this socket's route: service restart */
            lua_pop(L, 1);
            event_free(e);
            if (rec->ws && rec->ws->state == MW_WS_OPEN)
                mw_ws_close(rec->ws, MW_WS_CLOSE_RESTART, "route removed by a reload", 25);
            continue;
        }
        lua_getiuservalue(L, -1, WSUV_HANDLERS);
        lua_getfield(L, -1, event_names[e->type]);
        if (lua_isfunction(L, -1)) {
            struct mw_co *co = mw_co_new(vm, event_names[e->type], event_done, rec);
            co->req = NULL;
            lua_State *T = co->T;
            lua_xmove(L, T, 1);
            push_handle(T, rec);
            int nargs = 1;
            if (e->type == EV_OPEN) {
                lua_getiuservalue(T, -1, WSUV_REQ);
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
            lua_pop(L, 2);
            int type = e->type;
            event_free(e);
            rec->running = 1;
            mw_co_start(co, nargs);
            if (type == EV_CLOSE) {
                /* the close event was the last; what it left queued is dropped */
            }
        } else {
            lua_pop(L, 3);
            event_free(e);
        }
    }
    rec->pumping = 0;
    /* a pump still queued will come back to this record: release then */
    if (!rec->running && !rec->head && rec->closed && !rec->pump_task.queued) release(rec);
}

/* ---------------------------------------------------- engine callbacks */

static void on_message(struct mw_ws *ws, int opcode, struct mw_buf *data)
{
    queue_event(ws->ud, EV_MESSAGE, opcode, data);
}

static void on_close(struct mw_ws *ws, int code, const char *reason, size_t len)
{
    struct lws *rec = ws->ud;
    if (rec->closed) return;
    rec->closed = 1;
    /* no more hub deliveries: the socket can take nothing now */
    for (size_t i = 0; i < rec->nsubs; i++) mw_hub_unsubscribe(&rec->subs[i]->sub);
    struct mw_buf r;
    mw_buf_init(&r);
    mw_buf_append(&r, reason, len);
    queue_event(rec, EV_CLOSE, code, &r);
}

static int catch_up(struct lws_sub *s);

/* The send queue drained: replays waiting for room go on, and the app
 * hears of it if one of its sends was refused. */
static void on_drain(struct mw_ws *ws)
{
    struct lws *rec = ws->ud;
    for (size_t i = 0; i < rec->nsubs && live_ws(rec); i++)
        if (rec->subs[i]->catching_up && !catch_up(rec->subs[i])) return;
    if (rec->app_drain && live_ws(rec)) {
        rec->app_drain = 0;
        queue_event(rec, EV_DRAIN, 0, NULL);
    }
}

static const struct mw_ws_events events = {on_message, on_close, on_drain};

/* After the close event ran: everything the socket held goes. */
static void release(struct lws *rec)
{
    struct mw_vm *vm = mw_vm_of(NULL);
    for (size_t i = 0; i < rec->nsubs; i++) {
        mw_hub_unsubscribe(&rec->subs[i]->sub);
        free(rec->subs[i]);
    }
    free(rec->subs);
    rec->subs = NULL;
    rec->nsubs = 0;
    if (rec->prev) rec->prev->next = rec->next;
    if (rec->next) rec->next->prev = rec->prev;
    if (all == rec) all = rec->next;
    if (rec->ws) {
        mw_ws_free(rec->ws);
        rec->ws = NULL;
    }
    if (rec->req) {
        mw_req_release(rec->req);
        rec->req = NULL;
    }
    mw_cell_clear(rec->cell, MW_CELL_DONE);
    int ref = rec->self_ref;
    free(rec);
    mw_lua_unref(vm->L, ref);
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

/* internal: res:_ws_accept(handlers) -> ws. Checks the handshake (400, or
 * 426 for another version), negotiates the subprotocol and compression,
 * answers 101, and queues the open event. */
static int res_ws_accept(lua_State *L)
{
    struct mw_req *req = mw_lua_check_res(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkudata(L, 3, "moonwire.req");
    luaL_checkstring(L, 4);
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
    const char *protocol = NULL;
    lua_getfield(L, 2, "protocols");
    if (lua_istable(L, -1)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !protocol; i++) {
            lua_rawgeti(L, -1, i);
            const char *p = lua_tostring(L, -1);
            if (p && mw_req_header_has_token(req, "sec-websocket-protocol", p)) protocol = p;
            lua_pop(L, 1);
        }
        if (protocol) mw_buf_appendf(&extra, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    }
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

    /* stack: res, handlers, req, protocols; the handle for the socket */
    struct lws *rec = mw_xcalloc(1, sizeof *rec);
    struct mw_cell **ud = lua_newuserdatauv(L, sizeof *ud, WSUV_COUNT);
    *ud = NULL;
    luaL_setmetatable(L, WS_MT);
    rec->cell = mw_cell_new(rec);
    mw_cell_ref(rec->cell);
    *ud = rec->cell;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, WSUV_REQ);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, WSUV_HANDLERS);
    lua_pushvalue(L, 4);
    lua_setiuservalue(L, -2, WSUV_PATTERN);
    lua_pushstring(L, protocol ? protocol : "");
    lua_setiuservalue(L, -2, WSUV_PROTOCOL);
    lua_pushvalue(L, -1);
    rec->self_ref = mw_lua_ref(L);
    rec->req = req;
    rec->version = mw_vm_of(L)->version;

    struct mw_conn *conn = req->conn;
    mw_req_upgrade(req, extra.data, extra.len);
    mw_buf_free(&extra);
    rec->ws = mw_ws_new(conn, &pmd, max_message, (uint64_t)(heartbeat * 1000), &events, rec);
    rec->next = all;
    if (all) all->prev = rec;
    all = rec;
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
    lua_pushinteger(L, rec && rec->ws ? (lua_Integer)mw_ws_buffered(rec->ws) : 0);
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
        if (m->kind == MW_MSG_BINARY) {
            struct mw_buf b;
            mw_buf_init(&b);
            mw_msg_append_base64(&b, m);
            mw_json_append_string(&j, b.data ? b.data : "", b.len);
            mw_buf_free(&b);
            mw_buf_appends(&j, ",\"kind\":\"binary\"}");
        } else {
            mw_json_append_string(&j, m->data, m->len);
            mw_buf_appendc(&j, '}');
        }
        f = mw_ws_make_frame(MW_WS_OP_TEXT, j.data, j.len, compress, pmd->server_window_bits);
        mw_buf_free(&j);
    } else {
        f = mw_ws_make_frame(m->kind == MW_MSG_BINARY ? MW_WS_OP_BINARY : MW_WS_OP_TEXT, m->data,
                             m->len, compress, pmd->server_window_bits);
    }
    mw_msg_set_encoding(m, tag, compress ? key : NULL, f);
    return f;
}

/* Queues one hub message: MW_WS_SENT, MW_WS_FULL, or MW_WS_CLOSED_ERR. */
static int send_hub(struct lws_sub *s, struct mw_msg *m)
{
    struct mw_ws *ws = live_ws(s->rec);
    if (!ws) return MW_WS_CLOSED_ERR;
    struct mw_channel *ch = s->sub.ch;
    struct mw_shared *f = hub_frame(m, ch ? ch->name : "", ch ? ch->name_len : 0, s->envelope, &ws->pmd);
    int rc = mw_ws_send_shared(ws, f);
    if (rc == MW_WS_SENT) s->last_id = m->id;
    return rc;
}

/* A client too slow for the hub is closed; it resumes from history when
 * it reconnects. */
static void drop_slow(struct lws *rec)
{
    struct mw_ws *ws = live_ws(rec);
    if (!ws) return;
    mw_log_warn("conn %llu: WebSocket client fell more than %zu bytes behind; closing it with "
                "1013 (it resumes from history on reconnect)",
                ws->conn ? (unsigned long long)ws->conn->id : 0ULL, mw_ws_max_queued(ws));
    mw_ws_fail(ws, MW_WS_CLOSE_TRY_AGAIN, "slow consumer");
}

struct replay {
    struct lws_sub *s;
    int rc;
};

static void replay_one(struct mw_msg *m, void *ud)
{
    struct replay *r = ud;
    if (r->rc == MW_WS_SENT) r->rc = send_hub(r->s, m);
}

/* Queues the retained messages after s->last_id while the queue has room
 * (an empty queue takes any one); the rest follows as it drains, and new
 * messages wait in the history meanwhile. A client still catching up when
 * the history moves past what it has is too slow after all: it is
 * dropped. Returns 0 when it was. */
static int catch_up(struct lws_sub *s)
{
    uint64_t oldest = mw_channel_oldest_id(s->sub.ch);
    if (s->catching_up && oldest && s->last_id + 1 < oldest) {
        drop_slow(s->rec);
        return 0;
    }
    struct replay r = {s, MW_WS_SENT};
    mw_channel_history(s->sub.ch, (long long)s->last_id, replay_one, &r);
    s->catching_up = r.rc == MW_WS_FULL;
    if (s->catching_up) s->rec->ws->want_drain = 1; /* on_drain picks it up again */
    return 1;
}

static int rec_catching_up(const struct lws *rec)
{
    for (size_t i = 0; i < rec->nsubs; i++)
        if (rec->subs[i]->catching_up) return 1;
    return 0;
}

static void hub_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct lws_sub *s = (struct lws_sub *)sub;
    if (!live_ws(s->rec)) return;
    if (s->catching_up) {
        catch_up(s); /* m is in the history already, after what is still to replay */
        return;
    }
    if (send_hub(s, m) != MW_WS_FULL) return;
    if (rec_catching_up(s->rec)) {
        /* a replay filled the queue, not the client: wait in history too */
        s->catching_up = 1;
        s->rec->ws->want_drain = 1;
    } else {
        drop_slow(s->rec);
    }
}

static const struct mw_sub_ops hub_ops = {.deliver = hub_deliver};

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
        if (!lua_isnil(L, -1)) {
            lua_Integer v = luaL_checkinteger(L, -1);
            luaL_argcheck(L, v >= 0, 3, "since must be an id >= 0");
            since = v;
        }
        lua_getfield(L, 3, "envelope");
        envelope = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    if (!live_ws(rec)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!ch) ch = mw_lua_check_channel(L, 2, 1);
    for (size_t i = 0; i < rec->nsubs; i++)
        if (rec->subs[i]->sub.ch == ch) return luaL_error(L, "ws:subscribe: already subscribed to %s", ch->name);
    struct lws_sub *s = mw_xcalloc(1, sizeof *s);
    s->sub.ops = &hub_ops;
    s->sub.owner = rec;
    s->rec = rec;
    s->envelope = envelope;
    /* The client has everything up to last_id: with no since, the newest
     * message; else since, or when that is older than the history or
     * above the newest (a restart), just before the oldest retained. */
    s->last_id = ch->last_id;
    if (since >= 0) {
        uint64_t oldest = mw_channel_oldest_id(ch);
        uint64_t floor = oldest ? oldest - 1 : ch->last_id;
        int keep = (uint64_t)since <= ch->last_id && (uint64_t)since >= floor;
        s->last_id = keep ? (uint64_t)since : floor;
    }
    rec->subs = mw_xrealloc(rec->subs, (rec->nsubs + 1) * sizeof *rec->subs);
    rec->subs[rec->nsubs++] = s;
    mw_hub_subscribe(ch, &s->sub);
    /* the replay goes out as the queue has room; a drop unsubscribes s */
    int ok = since < 0 || catch_up(s);
    lua_pushboolean(L, ok && live_ws(rec) != NULL);
    return 1;
}

static int ws_unsubscribe(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    struct mw_channel *ch = mw_lua_check_channel(L, 2, 0);
    for (size_t i = 0; rec && ch && i < rec->nsubs; i++) {
        if (rec->subs[i]->sub.ch != ch) continue;
        mw_hub_unsubscribe(&rec->subs[i]->sub);
        free(rec->subs[i]);
        memmove(rec->subs + i, rec->subs + i + 1, (rec->nsubs - i - 1) * sizeof *rec->subs);
        rec->nsubs--;
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
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

static int ws_index(lua_State *L)
{
    /* stack: ws, key */
    if (mw_lua_push_method(L)) return 1;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (strcmp(k, "req") == 0) {
        lua_getiuservalue(L, 1, WSUV_REQ);
    } else if (strcmp(k, "protocol") == 0) {
        lua_getiuservalue(L, 1, WSUV_PROTOCOL);
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

static int ws_gc(lua_State *L)
{
    struct mw_cell **c = luaL_checkudata(L, 1, WS_MT);
    if (*c) mw_cell_unref(*c);
    *c = NULL;
    return 0;
}

static int ws_tostring(lua_State *L)
{
    struct lws *rec = check_ws(L, 1);
    lua_pushstring(L, live_ws(rec) ? "moonwire.ws (open)" : "moonwire.ws (closed)");
    return 1;
}

void mw_lua_ws_close_all(int code)
{
    for (struct lws *rec = all; rec; rec = rec->next)
        if (live_ws(rec)) mw_ws_close(rec->ws, code, "server shutting down", 20);
}

void mw_lua_open_ws(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"send", ws_send},           {"ping", ws_ping},         {"close", ws_close},
        {"buffered", ws_buffered},   {"subscribe", ws_subscribe}, {"unsubscribe", ws_unsubscribe},
        {"publish", ws_publish},     {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__index", ws_index}, {"__gc", ws_gc}, {"__tostring", ws_tostring}, {NULL, NULL}};
    mw_lua_class(L, WS_MT, methods, meta, NULL);
    mw_lua_add_res_method(L, "_ws_accept", res_ws_accept);
}
