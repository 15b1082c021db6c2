/* lua_req.c - the `req` and `res` handles.
 *
 * Both are userdata holding (request, generation): requests are pooled and
 * never freed while Lua runs, and a handle whose generation no longer
 * matches belongs to a request that is over. So they may outlive the
 * connection: after the client leaves, writes return false and a call
 * waiting for the client raises `closed`. A WebSocket's req reads the head
 * kept with the socket instead (head.h), through a slot checked on every
 * read. Fields (method, path, headers, query, ...) are computed on first
 * use and cached in a user value table, where apps may add their own.
 * Methods live in tables that lualib extends with the Lua-written ones. */
#include "conn.h"
#include "head.h"
#include "http.h"
#include "log.h"
#include "lua_core.h"
#include "lua_req.h"
#include "lua_vm.h"
#include "server.h"

#include <ctype.h>
#include <lauxlib.h>
#include <string.h>
#include <strings.h>

#define REQ_MT "moonwire.req"
#define RES_MT "moonwire.res"

/* ------------------------------------------------------------- accessors */

struct handle {
    union {
        struct mw_req *req;   /* a live request (NULL: none) */
        struct mw_head *head; /* req: the head kept with a WebSocket (kept = 1) */
    } u;
    uint32_t gen;
    uint8_t app_fields;  /* req: the app stored a field on it */
    uint8_t method;      /* req: llhttp_method_t + 1 (0: unknown), for req.method once it is over */
    uint8_t kept;
};

/* The metatables' addresses (the registry keeps both tables): every
 * method call checks its receiver, by comparing pointers. */
static _Thread_local const void *req_mt_addr, *res_mt_addr;

/* A req handle's user values: the field table, made when a field is first
 * cached or set, and req.query, which most handlers read and nothing else:
 * in a slot of its own, so reading it makes one table, not two. */
enum { REQUV_FIELDS = 1, REQUV_QUERY, REQUV_COUNT = REQUV_QUERY };

/* A req handle reads either a live request or, for a WebSocket's ws.req,
 * the head kept with the socket (head.h), once the exchange is over. */
struct req_handle {
    struct handle h;
    uint32_t slot, serial; /* a kept head is read while serials[slot] matches */
};

/* Each slot's serial, bumped when its head goes (see "kept heads" below). */
static _Thread_local uint32_t *serials;
static _Thread_local size_t serials_cap;
static _Thread_local uint32_t *free_slots;
static _Thread_local size_t nfree, free_cap;
static _Thread_local uint32_t next_slot;

static struct mw_head *kept_head(const struct req_handle *rh)
{
    return rh->h.kept && serials[rh->slot] == rh->serial ? rh->h.u.head : NULL;
}

static struct handle *to_handle(lua_State *L, int idx, const char *mt)
{
    const void *want = mt[11] == 'q' ? req_mt_addr : res_mt_addr; /* moonwire.re[qs] */
    struct handle *ud = lua_touserdata(L, idx);
    int ok = 0;
    if (ud && lua_getmetatable(L, idx)) {
        ok = lua_topointer(L, -1) == want;
        lua_pop(L, 1);
    }
    if (!ok) luaL_typeerror(L, idx, mt);
    return ud;
}

/* The live request a handle is for; NULL when it is over or a kept head. */
static struct mw_req *live_req(const struct handle *ud)
{
    return !ud->kept && ud->u.req && ud->u.req->gen == ud->gen ? ud->u.req : NULL;
}

static struct mw_req *get_req(lua_State *L, int idx, const char *mt)
{
    return live_req(to_handle(L, idx, mt));
}

/* The head of the req handle at idx, live or kept; 0 when it is gone. */
static int get_view(lua_State *L, int idx, struct mw_head_view *v)
{
    struct req_handle *rh = (struct req_handle *)to_handle(L, idx, REQ_MT);
    if (rh->h.kept) {
        struct mw_head *head = kept_head(rh);
        if (!head) return 0;
        mw_head_view_packed(v, head);
        return 1;
    }
    struct mw_req *req = live_req(&rh->h);
    if (!req) return 0;
    mw_head_view_req(v, req);
    return 1;
}

static void check_view(lua_State *L, struct mw_head_view *v)
{
    if (!get_view(L, 1, v)) luaL_error(L, "this request is finished (its handler returned)");
}

/* The request, or a raised error if its record is gone (only after the
 * handler finished and the connection moved on). */
struct mw_req *mw_lua_check_res(lua_State *L, int idx)
{
    struct mw_req *req = get_req(L, idx, RES_MT);
    if (!req) luaL_error(L, "this response is finished (its handler returned)");
    return req;
}

static struct mw_req *check_res(lua_State *L)
{
    return mw_lua_check_res(L, 1);
}

static struct mw_req *check_req(lua_State *L)
{
    struct mw_req *req = get_req(L, 1, REQ_MT);
    if (!req) luaL_error(L, "this request is finished (its handler returned)");
    return req;
}

/* The metatables, under integer keys in the registry (an array lookup,
 * no hashing), for handles made per request. */
static _Thread_local int req_mt_ref, res_mt_ref;

static struct handle *push_handle(lua_State *L, struct mw_req *req, int mt_ref)
{
    int is_req = mt_ref == req_mt_ref;
    struct handle *ud = lua_newuserdatauv(L, is_req ? sizeof(struct req_handle) : sizeof *ud,
                                          is_req ? REQUV_COUNT : 0);
    ud->u.req = req;
    ud->kept = 0;
    ud->gen = req ? req->gen : 0;
    ud->app_fields = 0;
    ud->method = req ? (uint8_t)(req->method_code + 1) : 0;
    if (is_req) ((struct req_handle *)ud)->slot = ((struct req_handle *)ud)->serial = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
    lua_setmetatable(L, -2);
    return ud;
}

/* ---------------------------------------------------------- waking waits */

void mw_lua_req_notify(struct mw_req *req)
{
    struct mw_co *co = req->waiter;
    if (!co) return;
    lua_State *T = co->T;
    int wait = req->wait;
    if (!req->conn) {
        /* undo the wait where it was registered (a hub subscription, a
         * timer), then make the waiting call raise `closed` */
        req->waiter = NULL;
        if (co->cancel) co->cancel(co);
        mw_co_wake_closed(co);
        return;
    }
    switch (wait) {
    case MW_WAIT_BODY:
    case MW_WAIT_CHUNK:
        if (req->body_too_large) {
            req->waiter = NULL;
            mw_lua_push_status_error(T, 413, "request body too large");
            mw_co_wake_error(co);
        } else if (wait == MW_WAIT_BODY && req->message_done) {
            req->waiter = NULL;
            lua_pushlstring(T, req->body.data ? req->body.data : "", req->body.len);
            mw_co_wake(co, 1);
        } else if (wait == MW_WAIT_CHUNK && (req->body.len || req->message_done)) {
            req->waiter = NULL;
            if (req->body.len) {
                lua_pushlstring(T, req->body.data, req->body.len);
                req->body.len = 0;
            } else {
                lua_pushnil(T);
            }
            mw_co_wake(co, 1);
        }
        break;
    case MW_WAIT_DRAIN:
        if (req->conn->wq.queued_bytes <= req->srv->limits.max_queued_bytes / 2) {
            req->waiter = NULL;
            mw_conn_set_timer(req->conn, MW_TIMER_NONE, 0);
            lua_pushboolean(T, 1);
            mw_co_wake(co, 1);
        }
        break;
    }
}

static void wait_cancel(struct mw_co *co)
{
    struct mw_req *req = co->wait_obj;
    if (req->waiter == co) req->waiter = NULL;
}

static int park(lua_State *L, struct mw_req *req, int wait)
{
    struct mw_co *co = mw_co_current(L);
    if (!co) return mw_co_wait(L, NULL, NULL); /* raises with the reason */
    mw_req_park(req, co, wait);
    return mw_co_wait(L, wait_cancel, req);
}

/* ------------------------------------------------------------------- req */

static int raise_too_large(lua_State *L, struct mw_req *req)
{
    req->close_after = 1;
    mw_lua_push_status_error(L, 413, "request body too large");
    return lua_error(L);
}

/* Raises if the body can never come: too large, or the client left. */
static void check_body_possible(lua_State *L, struct mw_req *req)
{
    if (req->body_too_large ||
        (req->content_length >= 0 && (size_t)req->content_length > req->body_limit))
        raise_too_large(L, req);
    if (!req->conn && !req->message_done) {
        mw_lua_push_closed(L);
        lua_error(L);
    }
}

/* req:body() -> string. Waits for the whole body. Raises a 413 status
 * error past the route's limit, `closed` if the client leaves. */
static int req_body(lua_State *L)
{
    struct mw_req *req = check_req(L);
    if (req->body_taken) return luaL_error(L, "the body was already read with req:chunks()");
    check_body_possible(L, req);
    if (req->message_done) {
        lua_pushlstring(L, req->body.data ? req->body.data : "", req->body.len);
        return 1;
    }
    mw_req_continue(req);
    return park(L, req, MW_WAIT_BODY);
}

/* The iterator req:chunks() returns: the next piece of body, or nil. */
static int chunks_next(lua_State *L)
{
    struct mw_req *req = get_req(L, lua_upvalueindex(1), REQ_MT);
    if (!req) return 0;
    check_body_possible(L, req);
    if (req->body.len) {
        lua_pushlstring(L, req->body.data, req->body.len);
        req->body.len = 0;
        return 1;
    }
    if (req->message_done) return 0;
    mw_req_continue(req);
    return park(L, req, MW_WAIT_CHUNK);
}

/* req:chunks() -> iterator over body pieces as they arrive. */
static int req_chunks(lua_State *L)
{
    struct mw_req *req = check_req(L);
    req->body_taken = 1;
    lua_settop(L, 1);
    lua_pushcclosure(L, chunks_next, 1);
    return 1;
}

/* req:header(name) -> value | nil (any case; repeats joined by ", ") */
static int req_header(lua_State *L)
{
    struct mw_head_view hv;
    check_view(L, &hv);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    char lname[256];
    if (len >= sizeof lname) return 0;
    for (size_t i = 0; i < len; i++) lname[i] = (char)tolower((unsigned char)name[i]);
    struct mw_buf v;
    mw_buf_init(&v);
    int found = mw_head_header(&hv, lname, len, &v);
    if (found) lua_pushlstring(L, v.data ? v.data : "", v.len);
    mw_buf_free(&v);
    return found;
}

static void push_decoded(lua_State *L, const char *s, size_t len)
{
    if (!memchr(s, '%', len) && !memchr(s, '+', len)) { /* nothing to decode */
        lua_pushlstring(L, s, len);
        return;
    }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len + 1);
    size_t n;
    mw_url_decode(s, len, out, &n, 1, 0);
    luaL_pushresultsize(&b, n);
}

static const char *target_query(const struct mw_head_view *v, size_t *qlen)
{
    return mw_url_query(v->target, v->target_len, qlen);
}

/* req:query_all(name) -> { values... } in order */
static int req_query_all(lua_State *L)
{
    struct mw_head_view hv;
    check_view(L, &hv);
    size_t nlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    size_t qlen, pos = 0;
    const char *qs = target_query(&hv, &qlen);
    lua_newtable(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "moonwire.json.array_mt");
    lua_setmetatable(L, -2);
    int n = 0;
    struct mw_span k, v;
    while (qs && mw_query_next(qs, qlen, &pos, &k, &v)) {
        push_decoded(L, qs + k.off, k.len);
        size_t kl;
        const char *ks = lua_tolstring(L, -1, &kl);
        int match = kl == nlen && memcmp(ks, name, nlen) == 0;
        lua_pop(L, 1);
        if (!match) continue;
        push_decoded(L, qs + v.off, v.len);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static void push_fields(lua_State *L, int idx);

/* internal: req:_set_params(t), the router's match: cached like a computed
 * field, not counted as one the app stored (a WebSocket keeps them packed) */
static int req_set_params(lua_State *L)
{
    to_handle(L, 1, REQ_MT);
    luaL_checktype(L, 2, LUA_TTABLE);
    push_fields(L, 1);
    lua_pushliteral(L, "params");
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);
    return 0;
}

/* internal: req:_set_body_limit(bytes), from the route's options */
static int req_set_body_limit(lua_State *L)
{
    struct mw_req *req = check_req(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "limit must be >= 0");
    req->body_limit = (size_t)n;
    if (req->body_received > req->body_limit) {
        req->body_too_large = 1;
        mw_buf_free(&req->body);
    }
    return 0;
}

static void push_headers(lua_State *L, const struct mw_head_view *v)
{
    struct mw_hdr_iter it;
    struct mw_hdr h;
    lua_createtable(L, 0, v->req ? (int)v->req->nhdrs : 8);
    mw_hdr_iter_init(&it, v);
    while (mw_hdr_next(&it, &h)) {
        lua_pushlstring(L, h.name, h.nlen);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            /* stack: t, name, old */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h.value, h.vlen);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h.value, h.vlen);
        }
        lua_rawset(L, -3);
    }
}

static void push_query(lua_State *L, const struct mw_head_view *hv)
{
    size_t qlen, pos = 0;
    const char *qs = target_query(hv, &qlen);
    int n = 0; /* parameters, at most: sized once, not grown key by key */
    for (size_t i = 0; qs && i < qlen && n < 64; i++) n += qs[i] == '&';
    lua_createtable(L, 0, qs && qlen ? n + 1 : 0);
    struct mw_span k, v;
    while (qs && mw_query_next(qs, qlen, &pos, &k, &v)) {
        push_decoded(L, qs + k.off, k.len);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) != LUA_TNIL) { /* first value wins */
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        push_decoded(L, qs + v.off, v.len);
        lua_rawset(L, -3);
    }
}

static void push_cookies(lua_State *L, const struct mw_head_view *hv)
{
    struct mw_buf v;
    mw_buf_init(&v);
    lua_newtable(L);
    if (mw_head_header(hv, "cookie", 6, &v)) {
        size_t i = 0;
        while (i < v.len) {
            while (i < v.len && (v.data[i] == ' ' || v.data[i] == ';' || v.data[i] == ',')) i++;
            size_t ks = i;
            while (i < v.len && v.data[i] != '=' && v.data[i] != ';') i++;
            size_t ke = i;
            while (ke > ks && v.data[ke - 1] == ' ') ke--;
            if (i >= v.len || v.data[i] != '=') continue;
            size_t vs = ++i;
            while (i < v.len && v.data[i] != ';') i++;
            size_t ve = i;
            while (ve > vs && v.data[ve - 1] == ' ') ve--;
            if (ve - vs >= 2 && v.data[vs] == '"' && v.data[ve - 1] == '"') vs++, ve--;
            if (ke == ks) continue;
            lua_pushlstring(L, v.data + ks, ke - ks);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) != LUA_TNIL) {
                lua_pop(L, 2);
                continue;
            }
            lua_pop(L, 1);
            lua_pushlstring(L, v.data + vs, ve - vs);
            lua_rawset(L, -3);
        }
    }
    mw_buf_free(&v);
}

static int push_remote_addr(lua_State *L, struct mw_conn *conn)
{
    if (!conn) return 0;
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[64];
    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&sa, &len) != 0) return 0;
    if (sa.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
    else
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
    lua_pushstring(L, ip);
    return 1;
}

static _Thread_local struct mw_path scratch_path;

/* Computes a lazy field; returns 1 with it pushed, or 0. */
static int compute_field(lua_State *L, const struct mw_head_view *v, const char *k)
{
    if (strcmp(k, "headers") == 0) {
        push_headers(L, v);
    } else if (strcmp(k, "params") == 0) {
        /* the router sets them when the route has any; a kept head has
         * them packed; otherwise the route has none */
        lua_newtable(L);
        struct mw_hdr p;
        for (const uint8_t *it = v->params; (it = mw_head_next_param(v, it, &p));) {
            lua_pushlstring(L, p.name, p.nlen);
            lua_pushlstring(L, p.value, p.vlen);
            lua_rawset(L, -3);
        }
    } else if (strcmp(k, "query") == 0) {
        push_query(L, v);
    } else if (strcmp(k, "cookies") == 0) {
        push_cookies(L, v);
    } else if (strcmp(k, "target") == 0) {
        lua_pushlstring(L, v->target, v->target_len);
    } else if (strcmp(k, "method") == 0) {
        lua_pushlstring(L, v->method, v->method_len);
    } else if (strcmp(k, "path") == 0) {
        if (mw_path_parse(&scratch_path, v->target, v->target_len) != MW_URL_OK) return 0;
        lua_pushlstring(L, scratch_path.text.data, scratch_path.text.len);
    } else if (strcmp(k, "id") == 0) {
        lua_pushstring(L, mw_req_id_of(mw_vm_of(L)->srv, v->seq));
    } else if (strcmp(k, "http_version") == 0) {
        lua_pushfstring(L, "%d.%d", v->http_major, v->http_minor);
    } else if (strcmp(k, "remote_addr") == 0) {
        return push_remote_addr(L, v->conn);
    } else {
        return 0;
    }
    return 1;
}

/* The handle's field table (made when first needed: a kept head's handle
 * starts without one), pushed. */
static void push_fields(lua_State *L, int idx)
{
    if (lua_getiuservalue(L, idx, REQUV_FIELDS) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, REQUV_FIELDS);
}

/* A closure over the methods table and the string "query" (upvalues),
 * so the lookups every field read makes start without registry lookups. */
static int req_index(lua_State *L)
{
    /* stack: req, key */
    int query = lua_rawequal(L, 2, lua_upvalueindex(2));
    if (!query) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_settop(L, 2);
    }
    if (lua_getiuservalue(L, 1, REQUV_FIELDS) == LUA_TTABLE) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    }
    lua_settop(L, 2);
    struct mw_head_view v;
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    if (query) {
        if (lua_getiuservalue(L, 1, REQUV_QUERY) == LUA_TTABLE) return 1;
        lua_pop(L, 1);
    }
    if (!get_view(L, 1, &v)) {
        /* over: what was read while it lived is cached; the method is kept */
        struct handle *h = to_handle(L, 1, REQ_MT);
        if (!h->method || strcmp(lua_tostring(L, 2), "method") != 0) return 0;
        lua_pushstring(L, llhttp_method_name((llhttp_method_t)(h->method - 1)));
        return 1;
    }
    if (!compute_field(L, &v, lua_tostring(L, 2))) return 0;
    if (query) {
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, REQUV_QUERY);
        return 1;
    }
    push_fields(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

static int req_newindex(lua_State *L)
{
    /* stack: req, key, value */
    struct req_handle *rh = (struct req_handle *)to_handle(L, 1, REQ_MT);
    rh->h.app_fields = 1;
    struct mw_head *head = kept_head(rh);
    if (head && head->lua_ref == LUA_NOREF) {
        /* a kept head's handle now holds what only the app knows: it
         * lives as long as the socket */
        lua_pushvalue(L, 1);
        head->lua_ref = mw_lua_ref(L);
    }
    push_fields(L, 1);
    lua_insert(L, 2);
    lua_rawset(L, 2);
    return 0;
}

static int req_tostring(lua_State *L)
{
    struct mw_head_view v;
    if (!get_view(L, 1, &v)) {
        lua_pushliteral(L, "moonwire.req (finished)");
        return 1;
    }
    /* lua_pushfstring has no %.*s */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "moonwire.req ");
    luaL_addstring(&b, mw_req_id_of(mw_vm_of(L)->srv, v.seq));
    luaL_addchar(&b, ' ');
    luaL_addlstring(&b, v.target, v.target_len);
    if (!v.conn) luaL_addstring(&b, " (client gone)");
    luaL_pushresult(&b);
    return 1;
}

/* ------------------------------------------------------------------- res */

static int raise_state(lua_State *L, int rc)
{
    switch (rc) {
    case MW_EDONE: return luaL_error(L, "the response was already sent");
    case MW_ESTARTED:
        return luaL_error(L, "the response already started (res:write); end it with res:finish()");
    case MW_ELENGTH: return luaL_error(L, "more bytes written than the declared Content-Length");
    case MW_ESTREAM: return luaL_error(L, "the response is an event stream: use stream:send()");
    }
    return luaL_error(L, "response error %d", rc);
}

static int res_status(lua_State *L)
{
    struct mw_req *req = check_res(L);
    lua_Integer code = luaL_checkinteger(L, 2);
    luaL_argcheck(L, code >= 100 && code <= 999, 2, "status must be 100..999");
    if (req->res_state != MW_RES_NONE) return luaL_error(L, "status set after the response started");
    req->res.status = (int)code;
    lua_settop(L, 1);
    return 1;
}

/* Raises for a name that is not an RFC 9110 token, quoting it with control
 * and non-ASCII bytes escaped so the message stays one printable line. */
static int raise_bad_name(lua_State *L, const char *name, size_t nlen)
{
    static const char hex[] = "0123456789ABCDEF";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < nlen && i < 64; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            luaL_addchar(&b, (char)c);
        } else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            luaL_addlstring(&b, esc, 4);
        }
    }
    if (nlen > 64) luaL_addstring(&b, "...");
    luaL_pushresult(&b);
    return luaL_error(L, "invalid header name \"%s\" (a name is letters, digits and !#$%%&'*+-.^_`|~)",
                      lua_tostring(L, -1));
}

static void check_header(lua_State *L, const char *name, size_t nlen, const char *value,
                         size_t vlen)
{
    if (!mw_header_name_ok(name, nlen)) raise_bad_name(L, name, nlen);
    if (!mw_header_value_ok(value, vlen))
        luaL_error(L, "header %s: value contains CR, LF or NUL", name);
}

static const char *tostr_value(lua_State *L, int idx, size_t *len)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "header value must be a string or number, got %s", luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/* res:header(name, value | {values}) -> res. Replaces earlier values;
 * a list sends one line each; nil removes. Raises on invalid input
 * before anything is stored. */
static int res_header(lua_State *L)
{
    struct mw_req *req = check_res(L);
    size_t nlen, vlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    if (req->res_state != MW_RES_NONE) return luaL_error(L, "header %s set after the response started", name);
    if (lua_istable(L, 3)) {
        lua_Integer n = (lua_Integer)luaL_len(L, 3);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 3, i);
            const char *v = tostr_value(L, -1, &vlen);
            check_header(L, name, nlen, v, vlen);
            lua_pop(L, 1);
        }
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 3, i);
            const char *v = lua_tolstring(L, -1, &vlen);
            mw_response_add(&req->res, name, nlen, v, vlen, i == 1);
            lua_pop(L, 1);
        }
        if (n == 0) mw_response_remove(&req->res, name);
    } else if (lua_isnil(L, 3)) {
        if (!mw_header_name_ok(name, nlen)) return raise_bad_name(L, name, nlen);
        mw_response_remove(&req->res, name);
    } else {
        const char *v = tostr_value(L, 3, &vlen);
        check_header(L, name, nlen, v, vlen);
        mw_response_add(&req->res, name, nlen, v, vlen, 1);
    }
    lua_settop(L, 1);
    return 1;
}

/* res:add_header(name, value) -> res: adds a line, keeping earlier ones. */
static int res_add_header(lua_State *L)
{
    struct mw_req *req = check_res(L);
    size_t nlen, vlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    const char *v = tostr_value(L, 3, &vlen);
    if (req->res_state != MW_RES_NONE) return luaL_error(L, "header %s set after the response started", name);
    check_header(L, name, nlen, v, vlen);
    mw_response_add(&req->res, name, nlen, v, vlen, 0);
    lua_settop(L, 1);
    return 1;
}

/* res:get_header(name) -> value | nil */
static int res_get_header(lua_State *L)
{
    struct mw_req *req = check_res(L);
    size_t vlen;
    const char *v = mw_response_get(&req->res, luaL_checkstring(L, 2), &vlen);
    if (!v) return 0;
    lua_pushlstring(L, v, vlen);
    return 1;
}

/* A 204, 304 or 1xx has no content to describe: only a type the app set
 * itself goes out with it. */
static void default_type(struct mw_req *req, const char *ctype)
{
    if (!mw_status_bodyless(req->res.status) && !mw_response_get(&req->res, "content-type", NULL))
        mw_response_add(&req->res, "Content-Type", 12, ctype, strlen(ctype), 1);
}

/* send frames the body itself, so a Content-Length the app set would go
 * out twice, perhaps disagreeing: it is dropped. Except on HEAD with no
 * body given, where it says how long the GET body is (app:static does
 * this): that length is sent instead (mw_req_send copies no body bytes
 * for HEAD). */
static int finish_send(lua_State *L, struct mw_req *req, const char *body, size_t len)
{
    size_t vlen;
    const char *cl = mw_response_get(&req->res, "content-length", &vlen);
    if (cl) {
        if (req->is_head && len == 0) {
            size_t n = 0, i = 0;
            while (i < vlen && cl[i] >= '0' && cl[i] <= '9' && n < ((size_t)1 << 52))
                n = n * 10 + (size_t)(cl[i++] - '0');
            if (i == vlen && vlen > 0) len = n;
        }
        mw_response_remove(&req->res, "content-length");
    }
    int rc = mw_req_send(req, body, len);
    if (rc == MW_EGONE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc) return raise_state(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int is_html(struct mw_req *req)
{
    size_t vlen;
    const char *ct = mw_response_get(&req->res, "content-type", &vlen);
    return ct && vlen >= 9 && strncasecmp(ct, "text/html", 9) == 0;
}

/* --reload: HTML gets the live-reload script, before its last </body>
 * (or at its end), so open pages follow the app's changes. */
static int send_with_livereload(lua_State *L, struct mw_req *req, const char *body, size_t len)
{
    static const char tag[] = "<script src=\"/__moonwire/livereload.js\"></script>";
    size_t at = len;
    for (size_t i = len; i >= 7; i--) {
        if (strncasecmp(body + i - 7, "</body>", 7) == 0) {
            at = i - 7;
            break;
        }
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, body, at);
    luaL_addlstring(&b, tag, sizeof tag - 1);
    luaL_addlstring(&b, body + at, len - at);
    luaL_pushresult(&b);
    size_t n;
    const char *out = lua_tolstring(L, -1, &n);
    return finish_send(L, req, out, n);
}

/* res:send([body]) -> true, or false if the client left. Raises if the
 * response was already sent or started. */
static int res_send(lua_State *L)
{
    struct mw_req *req = check_res(L);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 2, "", &len);
    if (req->res_state == MW_RES_DONE) return raise_state(L, MW_EDONE);
    if (req->res_state == MW_RES_STREAMING) return raise_state(L, MW_ESTARTED);
    default_type(req, "text/plain; charset=utf-8");
    if (req->srv->dev_mode && is_html(req)) return send_with_livereload(L, req, body, len);
    return finish_send(L, req, body, len);
}

/* res:json(value) -> like send, with the value encoded (mw.json). */
static int res_json(lua_State *L)
{
    struct mw_req *req = check_res(L);
    luaL_checkany(L, 2);
    if (req->res_state == MW_RES_DONE) return raise_state(L, MW_EDONE);
    if (req->res_state == MW_RES_STREAMING) return raise_state(L, MW_ESTARTED);
    size_t len;
    const char *body = mw_lua_json_encode_scratch(L, 2, &len);
    default_type(req, "application/json");
    return finish_send(L, req, body, len);
}

/* res:write(chunk) -> true, or false if the client left. Waits while more
 * than max_queued_bytes are queued to a slow client; outside a coroutine
 * that can wait, such a client is dropped instead. */
static int res_write(lua_State *L)
{
    struct mw_req *req = check_res(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (req->res_state == MW_RES_NONE) default_type(req, "text/plain; charset=utf-8");
    int rc = mw_req_write(req, data, len);
    if (rc == MW_EGONE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc) return raise_state(L, rc);
    if (mw_req_queue_full(req)) {
        struct mw_co *co = mw_co_current(L);
        if (!co || co->T != L || !lua_isyieldable(L)) {
            mw_log_warn("req %s: client fell more than %zu bytes behind; dropping it", mw_req_id(req),
                        req->srv->limits.max_queued_bytes);
            mw_conn_close(req->conn, "client too slow");
            lua_pushboolean(L, 0);
            return 1;
        }
        /* push what is queued now, so draining can start */
        mw_server_sweep(req->srv);
        if (req->conn && mw_req_queue_full(req)) return park(L, req, MW_WAIT_DRAIN);
        if (!req->conn) {
            lua_pushboolean(L, 0);
            return 1;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* res:finish() -> true, or false if the client left. */
static int res_finish(lua_State *L)
{
    struct mw_req *req = check_res(L);
    if (req->res_state == MW_RES_DONE) return raise_state(L, MW_EDONE);
    if (req->res_state == MW_RES_NONE) {
        default_type(req, "text/plain; charset=utf-8");
        return finish_send(L, req, "", 0); /* nothing written: an empty send */
    }
    int rc = mw_req_finish(req);
    if (rc == MW_EGONE || rc == MW_ELENGTH) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc) return raise_state(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* res:started() -> true once the head was sent */
static int res_started(lua_State *L)
{
    struct mw_req *req = check_res(L);
    lua_pushboolean(L, req->res_state != MW_RES_NONE);
    return 1;
}

/* internal: res:_state() -> "none" | "streaming" | "done" */
static int res_state(lua_State *L)
{
    struct mw_req *req = get_req(L, 1, RES_MT);
    static const char *names[] = {"none", "streaming", "done"};
    if (req && req->stream && req->res_state == MW_RES_STREAMING)
        lua_pushliteral(L, "stream"); /* an event stream outlives its handler */
    else
        lua_pushstring(L, req ? names[req->res_state] : "done");
    lua_pushboolean(L, req && req->conn);
    return 2;
}

/* internal: res:_reset() drops status and headers before an error page */
static int res_reset(lua_State *L)
{
    struct mw_req *req = check_res(L);
    if (req->res_state == MW_RES_NONE) mw_response_reset(&req->res);
    return 0;
}

/* internal: res:_abort() cuts a started response short */
static int res_abort(lua_State *L)
{
    struct mw_req *req = get_req(L, 1, RES_MT);
    if (req) mw_req_abort(req);
    return 0;
}

/* internal: res:_close_after() closes the connection after this response */
static int res_close_after(lua_State *L)
{
    struct mw_req *req = check_res(L);
    req->close_after = 1;
    return 0;
}

static int res_tostring(lua_State *L)
{
    struct mw_req *req = get_req(L, 1, RES_MT);
    static const char *names[] = {"not started", "streaming", "sent"};
    if (!req)
        lua_pushliteral(L, "moonwire.res (finished)");
    else
        lua_pushfstring(L, "moonwire.res %s (%s%s)", mw_req_id(req), names[req->res_state],
                        req->conn ? "" : ", client gone");
    return 1;
}

/* ------------------------------------------------------------ kept heads */

/* Handles of kept heads, by slot, in a table with weak values: an idle
 * socket whose app never looks at ws.req costs a slot, not a handle and
 * its field table. Slots are handed out here, not by luaL_ref: a slot
 * whose handle was collected is still taken. Each slot has a serial,
 * bumped when its head goes: a handle reads its head only while the
 * serials match, whatever became of the weak table's entry (a finalizer
 * may bring a handle back after it). */
static char kept_key;
static uint32_t slot_take(void)
{
    if (nfree) return free_slots[--nfree];
    uint32_t slot = ++next_slot;
    if (slot >= serials_cap) {
        size_t cap = serials_cap ? serials_cap * 2 : 64;
        serials = mw_xrealloc(serials, cap * sizeof *serials);
        memset(serials + serials_cap, 0, (cap - serials_cap) * sizeof *serials);
        serials_cap = cap;
    }
    return slot;
}

static void slot_give(uint32_t slot)
{
    if (nfree == free_cap) {
        free_cap = free_cap ? free_cap * 2 : 64;
        free_slots = mw_xrealloc(free_slots, free_cap * sizeof *free_slots);
    }
    free_slots[nfree++] = slot;
}

static void hold(struct req_handle *rh, struct mw_head *head)
{
    rh->h.kept = 1;
    rh->h.u.head = head;
    rh->slot = (uint32_t)head->lua_slot;
    rh->serial = serials[rh->slot];
}

void mw_lua_req_keep(lua_State *L, int idx, struct mw_head *head, int anchor)
{
    idx = lua_absindex(L, idx);
    struct req_handle *rh = (struct req_handle *)to_handle(L, idx, REQ_MT);
    if (rh->h.app_fields || anchor) {
        lua_pushvalue(L, idx);
        head->lua_ref = mw_lua_ref(L);
    } else {
        /* only what the head says: made again when asked for */
        lua_pushnil(L);
        lua_setiuservalue(L, idx, REQUV_FIELDS);
        lua_pushnil(L);
        lua_setiuservalue(L, idx, REQUV_QUERY);
    }
    uint32_t slot = slot_take();
    head->lua_slot = (int)slot;
    hold(rh, head);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kept_key);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, slot);
    lua_pop(L, 1);
}

void mw_lua_req_push_kept(lua_State *L, struct mw_head *head)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kept_key);
    if (lua_rawgeti(L, -1, head->lua_slot) == LUA_TNIL) {
        lua_pop(L, 1);
        struct req_handle *rh = (struct req_handle *)push_handle(L, NULL, req_mt_ref);
        hold(rh, head);
        rh->h.method = HTTP_GET + 1; /* a WebSocket handshake's */
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, head->lua_slot);
    }
    lua_remove(L, -2);
}

int mw_lua_req_drop_kept(lua_State *L, struct mw_head *head)
{
    int found = 0;
    if (head->lua_slot) {
        uint32_t slot = (uint32_t)head->lua_slot;
        serials[slot]++; /* every handle of it reads as finished now */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &kept_key);
        found = lua_rawgeti(L, -1, slot) != LUA_TNIL;
        lua_pushnil(L);
        lua_rawseti(L, -3, slot);
        lua_remove(L, -2);
        if (!found) lua_pop(L, 1);
        slot_give(slot);
        head->lua_slot = 0;
    }
    mw_lua_unref(L, head->lua_ref);
    head->lua_ref = LUA_NOREF;
    return found;
}

int mw_lua_req_push_params(lua_State *L, int idx)
{
    to_handle(L, idx, REQ_MT);
    if (lua_getiuservalue(L, idx, REQUV_FIELDS) == LUA_TTABLE) {
        lua_pushliteral(L, "params");
        if (lua_rawget(L, -2) == LUA_TTABLE) {
            lua_remove(L, -2);
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

void mw_lua_req_push_finished(lua_State *L)
{
    push_handle(L, NULL, req_mt_ref)->method = HTTP_GET + 1; /* a WebSocket handshake's */
}

/* ------------------------------------------------------------- dispatch */

static void handler_done(struct mw_co *co, const char *err, void *ud)
{
    struct mw_req *req = ud;
    if (err) {
        /* The dispatcher catches handler errors; this is its own failure. */
        mw_log_error("req %s: dispatcher failed: %s", mw_req_id(req), err);
        if (req->conn && req->res_state == MW_RES_NONE) {
            mw_response_reset(&req->res);
            req->res.status = 500;
            req->close_after = 1;
            default_type(req, "text/plain; charset=utf-8");
            mw_req_send(req, "500 Internal Server Error\n", 26);
        } else if (req->conn && req->res_state == MW_RES_STREAMING) {
            mw_req_abort(req);
        }
    }
    mw_req_handler_done(req);
}

void mw_lua_req_dispatch(struct mw_req *req)
{
    struct mw_vm *vm = mw_vm_of(NULL);
    struct mw_co *co = mw_co_new(vm, "handler", handler_done, req);
    co->req = req;
    lua_State *T = co->T;
    lua_rawgeti(T, LUA_REGISTRYINDEX, vm->dispatch_ref);
    lua_rawgeti(T, LUA_REGISTRYINDEX, vm->app_ref);

    /* stack: dispatch, app */
    /* its fields (method, path, ...) are made when first read */
    lua_pushlstring(T, req->hbuf.data + req->method.off, req->method.len);
    push_handle(T, req, req_mt_ref);
    /* stack: dispatch, app, method, req */
    struct mw_path *p = &scratch_path;
    int rc = mw_path_parse(p, req->hbuf.data + req->target.off, req->target.len);
    push_handle(T, req, res_mt_ref);
    /* stack: dispatch, app, method, req, res */
    lua_rotate(T, -3, 2);
    /* stack: dispatch, app, req, res, method */
    if (rc == MW_URL_OK) {
        /* the router key: the path without its trailing slash, which names
         * the segments unless one holds an encoded "/"; only then are they
         * passed (the router splits the key when it needs them) */
        int slash = 0;
        for (size_t i = 0; i < p->nsegs && !slash; i++)
            slash = memchr(p->text.data + p->segs[i].off, '/', p->segs[i].len) != NULL;
        if (slash) {
            lua_createtable(T, (int)p->nsegs, 0);
            for (size_t i = 0; i < p->nsegs; i++) {
                lua_pushlstring(T, p->text.data + p->segs[i].off, p->segs[i].len);
                lua_rawseti(T, -2, (lua_Integer)i + 1);
            }
            lua_pushnil(T);
        } else {
            lua_pushboolean(T, 0);
            lua_pushlstring(T, p->text.data, p->nsegs && p->trailing_slash ? p->text.len - 1 : p->text.len);
        }
    } else {
        lua_pushnil(T);
        lua_pushstring(T, mw_url_strerror(rc));
    }
    mw_co_start(co, 6); /* app, req, res, method, then segments (false: split the key) and key,
                         * or nil and the error */
}

void mw_lua_open_req(lua_State *L)
{
    static const luaL_Reg req_methods[] = {{"body", req_body},
                                           {"chunks", req_chunks},
                                           {"header", req_header},
                                           {"query_all", req_query_all},
                                           {"_set_body_limit", req_set_body_limit},
                                           {"_set_params", req_set_params},
                                           {NULL, NULL}};
    static const luaL_Reg res_methods[] = {{"status", res_status},
                                           {"header", res_header},
                                           {"add_header", res_add_header},
                                           {"get_header", res_get_header},
                                           {"send", res_send},
                                           {"json", res_json},
                                           {"write", res_write},
                                           {"finish", res_finish},
                                           {"started", res_started},
                                           {"_state", res_state},
                                           {"_reset", res_reset},
                                           {"_abort", res_abort},
                                           {"_close_after", res_close_after},
                                           {NULL, NULL}};
    /* stack: core */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kept_key);
    luaL_newmetatable(L, REQ_MT);
    lua_pushvalue(L, -1);
    req_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req_mt_addr = lua_topointer(L, -1);
    luaL_newlib(L, req_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "req_methods");
    /* stack: core, req_mt, methods */
    lua_pushliteral(L, "query");
    lua_pushcclosure(L, req_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, req_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, req_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, RES_MT);
    lua_pushvalue(L, -1);
    res_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    res_mt_addr = lua_topointer(L, -1);
    luaL_newlib(L, res_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "res_methods");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, res_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
