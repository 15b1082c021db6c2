/* http.c - HTTP/1.1 over a connection with llhttp.
 *
 * The parser pauses twice per request: when the headers are complete (the
 * app's handler starts then, so it can refuse a body before it arrives) and
 * when the message is complete (the next pipelined request waits until this
 * response is done, which keeps answers in order). llhttp never calls into
 * Lua: callbacks only record, and mw_http_feed acts between executes. */
#include "http.h"
#include "head.h"
#include "conn.h"
#include "mw_limits.h"
#include "log.h"
#include "lua_req.h"
#include "lua_vm.h"
#include "server.h"
#include "stream.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum pause_event { PAUSE_NONE, PAUSE_HEADERS, PAUSE_DONE };

/* The parser's user data: which event paused it, and a status to answer
 * with when a callback refuses the request (431, 413). */
struct parse_state {
    int pause;
    int error_status;
};

static _Thread_local struct parse_state pstate;
static _Thread_local struct mw_buf scratch; /* response heads are built here */

static struct mw_req *cur(llhttp_t *p)
{
    return ((struct mw_conn *)p->data)->req;
}

/* ---------------------------------------------------------------- request */

/* Finished requests are kept, buffers and all, for the next ones. Their
 * memory is never freed while Lua runs: a `req` or `res` handle that
 * outlives its request holds (pointer, generation), and the generation
 * bumped here tells it the request is over. That costs no finalizer and
 * no shared cell per request; the pool holds the peak of concurrency. */
#define MW_REQ_KEEP_BYTES 65536 /* larger buffers are freed, not kept */
static _Thread_local struct mw_req *req_pool;
static _Thread_local int req_pool_len;

static struct mw_req *req_new(struct mw_conn *conn)
{
    struct mw_server *srv = conn->srv;
    struct mw_req *req = req_pool;
    if (req) {
        req_pool = req->pool_next;
        req_pool_len--;
        struct mw_buf hbuf = req->hbuf, body = req->body;
        struct mw_req_header *hdrs = req->hdrs;
        uint32_t hcap = req->hcap;
        struct mw_response res = req->res;
        uint32_t gen = req->gen;
        memset(req, 0, sizeof *req);
        req->gen = gen;
        req->hbuf = hbuf;
        req->body = body;
        req->hdrs = hdrs;
        req->hcap = hcap;
        req->res = res;
        mw_response_reset(&req->res);
    } else {
        req = mw_xcalloc(1, sizeof *req);
        mw_buf_init(&req->hbuf);
        mw_buf_init(&req->body);
        mw_response_init(&req->res);
    }
    req->conn = conn;
    req->srv = srv;
    req->seq = ++srv->next_req_id;
    req->body_limit = srv->limits.max_body_bytes;
    req->content_length = -1;
    req->res_remaining = -1;
    return req;
}

static void req_free(struct mw_req *req)
{
    if (req->stream) {
        mw_stream_free(req->stream);
        req->stream = NULL;
    }
    req->gen++;
    if (req->hpacked) {
        free(req->hdrs);
        req->hdrs = NULL;
        req->hcap = 0;
        mw_buf_init(&req->hbuf);
        req->hpacked = 0;
    }
    if (req->hbuf.cap > MW_REQ_KEEP_BYTES) mw_buf_free(&req->hbuf);
    if (req->res.store.cap > MW_REQ_KEEP_BYTES) mw_response_free(&req->res);
    if (req->body.cap > MW_REQ_KEEP_BYTES) mw_buf_free(&req->body);
    req->hbuf.len = req->body.len = 0;
    req->nhdrs = 0;
    req->pool_next = req_pool;
    req_pool = req;
    req_pool_len++;
}

void mw_http_release_pool(void)
{
    while (req_pool) {
        struct mw_req *req = req_pool;
        req_pool = req->pool_next;
        mw_buf_free(&req->hbuf);
        mw_buf_free(&req->body);
        mw_response_free(&req->res);
        free(req->hdrs);
        free(req);
    }
    req_pool_len = 0;
}

const char *mw_req_id_of(struct mw_server *srv, uint64_t seq)
{
    /* made when asked (a log line, an error page), not kept per request */
    static _Thread_local char ids[2][48];
    static _Thread_local int next;
    char *id = ids[next];
    next ^= 1;
    snprintf(id, sizeof ids[0], "%s-%llu", srv->id_prefix, (unsigned long long)seq);
    return id;
}

const char *mw_req_id(struct mw_req *req)
{
    return mw_req_id_of(req->srv, req->seq);
}

/* Detaches req from its connection; frees it unless its handler runs. */
static void req_detach(struct mw_req *req)
{
    struct mw_conn *conn = req->conn;
    if (conn && conn->req == req) conn->req = NULL;
    req->conn = NULL;
    if (req->stream) mw_stream_close(req->stream, 0); /* the client left: noticed now */
    if (req->waiter) mw_lua_req_notify(req);
    if (!req->handler_running) req_free(req);
}

void mw_req_handler_done(struct mw_req *req)
{
    req->handler_running = 0;
    if (!req->conn) req_free(req);
}

/* A request that stays alive with a long-lived connection (an SSE
 * stream): its response-head storage and body buffer go, and
 * its headers and their bytes move into one block cut to size, since such
 * connections may stay open for days. Header callbacks store nothing into
 * a packed request (only trailers could still come). */
static void compact(struct mw_req *req)
{
    mw_response_free(&req->res);
    mw_buf_free(&req->body);
    if (req->hpacked) return;
    size_t hsize = req->nhdrs * sizeof *req->hdrs, hlen = req->hbuf.len;
    char *block = mw_xmalloc(hsize + hlen + 1);
    if (hsize) memcpy(block, req->hdrs, hsize);
    if (hlen) memcpy(block + hsize, req->hbuf.data, hlen);
    free(req->hdrs);
    mw_buf_free(&req->hbuf);
    req->hdrs = (struct mw_req_header *)(void *)block;
    req->hcap = req->nhdrs;
    req->hbuf.data = block + hsize;
    req->hbuf.len = req->hbuf.cap = hlen;
    req->hpacked = 1;
}

void mw_req_upgrade(struct mw_req *req, const char *extra_headers, size_t len)
{
    struct mw_conn *conn = req->conn;
    scratch.len = 0;
    mw_buf_appends(&scratch, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n");
    mw_buf_append(&scratch, extra_headers, len);
    mw_buf_append(&scratch, "\r\n", 2);
    mw_wq_copy(&conn->wq, scratch.data, scratch.len);
    mw_conn_defer(conn, MW_WORK_FLUSH);
    req->res_state = MW_RES_DONE;
    /* HTTP is over on this connection: the parser never runs again, the
     * bytes after the request belong to the WebSocket, and the request
     * goes when its handler returns (ws.req reads a copy of its head) */
    conn->req = NULL;
    req->conn = NULL;
    conn->parse_blocked = 1;
    mw_conn_set_timer(conn, MW_TIMER_NONE, 0);
    mw_conn_defer(conn, MW_WORK_FEED); /* frames that came with the request */
}

int mw_req_header(const struct mw_req *req, const char *lname, size_t nlen, struct mw_buf *out)
{
    struct mw_head_view v;
    mw_head_view_req(&v, req);
    return mw_head_header(&v, lname, nlen, out);
}

/* ------------------------------------------------------- llhttp callbacks */

static int count_header_bytes(llhttp_t *p, struct mw_req *req, size_t n)
{
    req->header_bytes += n;
    if (req->header_bytes > req->srv->limits.max_header_bytes) {
        pstate.error_status = 431;
        llhttp_set_error_reason(p, "request headers too large");
        return HPE_USER;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct mw_conn *conn = p->data;
    conn->req = req_new(conn);
    if (conn->timer_kind != MW_TIMER_HEADER)
        mw_conn_set_timer(conn, MW_TIMER_HEADER, conn->srv->limits.header_timeout_ms);
    return 0;
}

static int append_span(llhttp_t *p, struct mw_req_span *span, const char *at, size_t len)
{
    struct mw_req *req = cur(p);
    if (span->len == 0) span->off = req->hbuf.len;
    mw_buf_append(&req->hbuf, at, len);
    span->len += len;
    return count_header_bytes(p, req, len);
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    return append_span(p, &cur(p)->method, at, len);
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return append_span(p, &cur(p)->target, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct mw_req *req = cur(p);
    if (req->hpacked) return 0;
    if (req->nhdrs == 0 || req->in_value) {
        if (req->nhdrs == req->hcap) {
            req->hcap = req->hcap ? req->hcap * 2 : 8;
            req->hdrs = mw_xrealloc(req->hdrs, req->hcap * sizeof *req->hdrs);
        }
        struct mw_req_header *h = &req->hdrs[req->nhdrs++];
        h->name.off = req->hbuf.len;
        h->name.len = 0;
        h->value.off = 0;
        h->value.len = 0;
        req->in_value = 0;
    }
    struct mw_req_header *h = &req->hdrs[req->nhdrs - 1];
    char *dst = mw_buf_reserve(&req->hbuf, len);
    for (size_t i = 0; i < len; i++) {
        /* llhttp, not in strict mode, lets "Name :" through with the blank
         * kept in the name; RFC 9112, 5.1 requires a 400 */
        if (at[i] == ' ' || at[i] == '\t') {
            pstate.error_status = 400;
            llhttp_set_error_reason(p, "whitespace in a header name");
            return HPE_USER;
        }
        dst[i] = (char)tolower((unsigned char)at[i]);
    }
    req->hbuf.len += len;
    h->name.len += len;
    return count_header_bytes(p, req, len + 4); /* ": " and CRLF */
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct mw_req *req = cur(p);
    if (req->hpacked) return 0;
    if (!req->in_value) {
        req->in_value = 1;
        req->hdrs[req->nhdrs - 1].value.off = req->hbuf.len;
    }
    mw_buf_append(&req->hbuf, at, len);
    req->hdrs[req->nhdrs - 1].value.len += len;
    return count_header_bytes(p, req, len);
}

int mw_req_header_has_token(const struct mw_req *req, const char *name, const char *token)
{
    struct mw_head_view v;
    mw_head_view_req(&v, req);
    return mw_head_has_token(&v, name, token);
}

static int on_headers_complete(llhttp_t *p)
{
    struct mw_req *req = cur(p);
    req->headers_done = 1;
    req->http_major = llhttp_get_http_major(p);
    req->http_minor = llhttp_get_http_minor(p);
    req->keep_alive = llhttp_should_keep_alive(p) ? 1 : 0;
    req->method_code = (uint8_t)llhttp_get_method(p);
    req->is_head = req->method_code == HTTP_HEAD;
    req->upgrade = llhttp_get_upgrade(p) ? 1 : 0;
    if (p->flags & F_CONTENT_LENGTH) req->content_length = (long long)p->content_length;
    req->expect_continue = req->http_minor >= 1 && mw_req_header_has_token(req, "expect", "100-continue");
    pstate.pause = PAUSE_HEADERS;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct mw_conn *conn = p->data;
    struct mw_req *req = conn->req;
    req->body_received += len;
    mw_conn_set_timer(conn, MW_TIMER_IDLE, conn->srv->limits.idle_timeout_ms);
    if (req->res_state == MW_RES_DONE && req->body_received > req->body_limit) {
        /* Answered before the body came: what follows is read only to be
         * thrown away, and an endless chunked body must not keep us busy. */
        pstate.error_status = 413;
        llhttp_set_error_reason(p, "request body too large");
        return HPE_USER;
    }
    if (req->res_state == MW_RES_DONE || req->body_too_large) return 0; /* nobody will read it */
    if (req->body_received > req->body_limit) {
        req->body_too_large = 1;
        req->close_after = 1;
        mw_buf_free(&req->body);
    } else {
        mw_buf_append(&req->body, at, len);
    }
    if (req->waiter) mw_lua_req_notify(req);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    pstate.pause = PAUSE_DONE;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;

void mw_http_conn_init(struct mw_conn *conn)
{
    if (!settings.on_message_begin) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_method = on_method;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_value = on_header_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    conn->parser = mw_xmalloc(sizeof *conn->parser);
    llhttp_init(conn->parser, HTTP_REQUEST, &settings);
    conn->parser->data = conn;
}

void mw_http_conn_trim(struct mw_conn *conn)
{
    if (!conn->parser || conn->feeding) return;
    if (conn->ws || (conn->req && conn->req->stream) || conn->state == MW_CONN_CLOSING) {
        free(conn->parser);
        conn->parser = NULL;
    }
}

/* ------------------------------------------------------------ responding */

static void queue_flush(struct mw_conn *conn)
{
    mw_conn_defer(conn, MW_WORK_FLUSH);
}

/* Answers from C (400, 408, 413, 431, 503) and ends the connection. */
static void send_error(struct mw_conn *conn, int status, const char *why)
{
    struct mw_req *req = conn->req;
    if (!req || req->res_state == MW_RES_NONE) {
        struct mw_response r;
        mw_response_init(&r);
        r.status = status;
        static const char ctype[] = "text/plain; charset=utf-8";
        mw_response_add(&r, "Content-Type", 12, ctype, sizeof ctype - 1, 1);
        char body[128];
        int n = snprintf(body, sizeof body, "%d %s\n", status, mw_status_reason(status));
        struct mw_head_opts o = {.content_length = n, .close = 1, .date = mw_server_date(conn->srv)};
        scratch.len = 0;
        mw_response_head(&r, &o, &scratch);
        mw_buf_append(&scratch, body, (size_t)n);
        mw_wq_copy(&conn->wq, scratch.data, scratch.len);
        mw_response_free(&r);
        if (req) req->res_state = MW_RES_DONE;
    }
    mw_log_info("conn %llu: %d %s (%s)", (unsigned long long)conn->id, status,
                mw_status_reason(status), why);
    mw_conn_end(conn);
}

/* A client that asked for 100 Continue and gets a final answer first may
 * send its body anyway or not at all, so the connection cannot carry
 * another request; the answer says so (RFC 9110, 10.1.1). */
static int refused_continue(const struct mw_req *req)
{
    return req->expect_continue && !req->continue_sent && !req->message_done;
}

/* The declared body is over the route's limit: nobody will read it. */
static int declared_too_large(const struct mw_req *req)
{
    return req->content_length > 0 && (unsigned long long)req->content_length > req->body_limit;
}

static int should_close(const struct mw_req *req)
{
    return !req->keep_alive || req->close_after || req->srv->shutting_down ||
           refused_continue(req) || declared_too_large(req);
}

static void write_head(struct mw_req *req, long long content_length, int chunked)
{
    struct mw_conn *conn = req->conn;
    struct mw_head_opts o = {
        .content_length = content_length,
        .chunked = chunked,
        .close = should_close(req),
        .keep_alive_10 = req->http_minor == 0 && req->keep_alive,
        .date = mw_server_date(req->srv),
    };
    if (o.close) req->close_after = 1;
    scratch.len = 0;
    mw_response_head(&req->res, &o, &scratch);
    mw_wq_copy(&conn->wq, scratch.data, scratch.len);
}

/* The request is fully received and answered: retire it and move on to
 * the next one, or end the connection. */
static void retire(struct mw_conn *conn, struct mw_req *req)
{
    int close = req->close_after || !req->keep_alive || req->upgrade ||
                (conn->eof && conn->rpos >= conn->rlen);
    req_detach(req);
    if (close || conn->srv->shutting_down) {
        mw_conn_end(conn);
        return;
    }
    conn->parse_blocked = 0;
    conn->pipelined = conn->rpos < conn->rlen;
    mw_conn_set_timer(conn, MW_TIMER_IDLE, conn->srv->limits.idle_timeout_ms);
    if (conn->pipelined) mw_conn_defer(conn, MW_WORK_FEED);
    mw_conn_read_start(conn);
}

static void response_complete(struct mw_req *req)
{
    struct mw_conn *conn = req->conn;
    req->res_state = MW_RES_DONE;
    queue_flush(conn);
    if (req->message_done) {
        retire(conn, req);
    } else if (req->body_too_large || declared_too_large(req) || refused_continue(req) ||
               req->close_after) {
        /* the rest of the body would only be read to be thrown away */
        mw_conn_end(conn);
    }
}

int mw_req_send(struct mw_req *req, const char *body, size_t len)
{
    if (req->res_state == MW_RES_DONE) return MW_EDONE;
    if (!req->conn) return MW_EGONE;
    if (req->res_state == MW_RES_STREAMING) return MW_ESTARTED;
    int bodyless = mw_status_bodyless(req->res.status);
    write_head(req, bodyless ? -1 : (long long)len, 0);
    if (!bodyless && !req->is_head) mw_wq_copy(&req->conn->wq, body, len);
    response_complete(req);
    return 0;
}

int mw_req_write(struct mw_req *req, const char *data, size_t len)
{
    if (req->res_state == MW_RES_DONE) return MW_EDONE;
    if (req->stream) return MW_ESTREAM;
    if (!req->conn) return MW_EGONE;
    struct mw_conn *conn = req->conn;
    int bodyless = mw_status_bodyless(req->res.status) || req->is_head;
    if (req->res_state == MW_RES_NONE) {
        size_t vlen;
        const char *cl = mw_response_get(&req->res, "content-length", &vlen);
        if (cl) {
            /* the app declared the length: send raw bytes and hold it to it */
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(vlen < 31 ? vlen : 31), cl);
            req->res_remaining = strtoll(tmp, NULL, 10);
            mw_response_remove(&req->res, "content-length");
            write_head(req, req->res_remaining, 0);
        } else if (bodyless) {
            write_head(req, -1, 0);
        } else if (req->http_minor >= 1) {
            req->res_chunked = 1;
            write_head(req, -1, 1);
        } else {
            req->close_after = 1; /* HTTP/1.0: the end of the body is the end of the connection */
            write_head(req, -1, 0);
        }
        req->res_state = MW_RES_STREAMING;
    }
    /* a declared length counts every byte written, sent or not (HEAD) */
    if (req->res_remaining >= 0) {
        if ((long long)len > req->res_remaining) return MW_ELENGTH;
        req->res_remaining -= (long long)len;
    }
    if (len == 0 || bodyless) {
        queue_flush(conn);
        return 0;
    }
    if (req->res_chunked) {
        char line[24];
        int n = snprintf(line, sizeof line, "%zx\r\n", len);
        char *dst = mw_wq_reserve(&conn->wq, (size_t)n + len + 2);
        memcpy(dst, line, (size_t)n);
        memcpy(dst + n, data, len);
        memcpy(dst + n + len, "\r\n", 2);
    } else {
        mw_wq_copy(&conn->wq, data, len);
    }
    queue_flush(conn);
    return 0;
}

int mw_req_finish(struct mw_req *req)
{
    if (req->res_state == MW_RES_DONE) return MW_EDONE;
    if (!req->conn) return MW_EGONE;
    if (req->res_state == MW_RES_NONE) return mw_req_send(req, "", 0);
    if (req->res_remaining > 0) {
        /* fewer bytes than declared: the client must not take this as complete */
        mw_req_abort(req);
        return MW_ELENGTH;
    }
    if (req->res_chunked && !req->is_head) mw_wq_copy(&req->conn->wq, "0\r\n\r\n", 5);
    response_complete(req);
    return 0;
}

struct mw_stream *mw_req_start_stream(struct mw_req *req, uint32_t heartbeat_ms,
                                      const char *last_event_id)
{
    /* The body ends when the connection does: no chunk framing, so a hub
     * event's bytes are the same for every stream and shared as they are. */
    req->close_after = 1;
    write_head(req, -1, 0);
    req->res_state = MW_RES_STREAMING;
    queue_flush(req->conn);
    compact(req);
    req->stream = mw_stream_open(req, heartbeat_ms, last_event_id);
    return req->stream;
}

void mw_req_finish_stream(struct mw_req *req)
{
    if (!req->conn || req->res_state != MW_RES_STREAMING) return;
    response_complete(req);
}

int mw_req_query_value(const struct mw_req *req, const char *name, struct mw_buf *out)
{
    size_t qlen;
    const char *qs = mw_url_query(req->hbuf.data + req->target.off, req->target.len, &qlen);
    return qs ? mw_query_find(qs, qlen, name, out) : 0;
}

void mw_req_abort(struct mw_req *req)
{
    /* What was written still goes out; then the connection ends without
     * the body's end (no last chunk, short of Content-Length), so the
     * client sees a truncated response, never a complete one. */
    if (!req->conn) return;
    req->res_state = MW_RES_DONE;
    req->close_after = 1;
    mw_conn_end(req->conn);
}

void mw_req_continue(struct mw_req *req)
{
    if (!req->conn || !req->expect_continue || req->continue_sent || req->message_done) return;
    if (req->res_state != MW_RES_NONE) return;
    req->continue_sent = 1;
    mw_wq_copy(&req->conn->wq, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    queue_flush(req->conn);
}

int mw_req_queue_full(const struct mw_req *req)
{
    return req->conn && req->conn->wq.queued_bytes > req->srv->limits.max_queued_bytes;
}

void mw_req_park(struct mw_req *req, struct mw_co *co, int wait)
{
    req->waiter = co;
    req->wait = wait;
    if (wait == MW_WAIT_DRAIN && req->conn)
        mw_conn_set_timer(req->conn, MW_TIMER_SEND, req->srv->limits.send_timeout_ms);
}

/* -------------------------------------------------------------- parsing */

/* A target the router cannot split (a bad escape, %00, ".." above the
 * root, not origin-form) makes a malformed request: the dispatcher still
 * answers it (a 400 that app:on_error may shape), then the connection ends
 * as after the parser's own 400s. Only a target with '%', "/." or no
 * leading '/' can fail, so the common one is not parsed twice (the
 * dispatcher parses it too). */
static int target_malformed(const struct mw_req *req)
{
    static _Thread_local struct mw_path path;
    const char *t = req->hbuf.data + req->target.off;
    size_t len = req->target.len;
    int suspect = len == 0 || t[0] != '/';
    for (size_t i = 0; i < len && !suspect && t[i] != '?' && t[i] != '#'; i++)
        suspect = t[i] == '%' || (t[i] == '.' && t[i - 1] == '/');
    return suspect && mw_path_parse(&path, t, len) != MW_URL_OK;
}

static void on_headers(struct mw_conn *conn, struct mw_req *req)
{
    /* while a body is expected, the idle limit applies to its progress */
    int body = req->content_length > 0 || (conn->parser->flags & F_CHUNKED);
    mw_conn_set_timer(conn, body ? MW_TIMER_IDLE : MW_TIMER_NONE, conn->srv->limits.idle_timeout_ms);
    if (req->http_major != 1) {
        send_error(conn, 505, "unsupported HTTP version");
        return;
    }
    if (conn->srv->shutting_down || target_malformed(req)) req->close_after = 1;
    req->handler_running = 1;
    mw_lua_req_dispatch(req);
}

static void on_done(struct mw_conn *conn, struct mw_req *req)
{
    req->message_done = 1;
    if (conn->timer_kind == MW_TIMER_IDLE) mw_conn_set_timer(conn, MW_TIMER_NONE, 0);
    if (req->waiter) mw_lua_req_notify(req);
    if (req->res_state == MW_RES_DONE) {
        retire(conn, req);
    } else {
        conn->parse_blocked = 1; /* pipelined requests wait for this answer */
    }
}

static int error_status(llhttp_errno_t err)
{
    if (err == HPE_USER && pstate.error_status) return pstate.error_status;
    return 400;
}

void mw_http_feed(struct mw_conn *conn)
{
    /* A zero-length execute is needed after a headers pause: the message
     * of a request without a body completes without consuming a byte. */
    int must_exec = 0;
    if (conn->req && conn->req->stream) {
        /* an event stream owns the connection: what the client sends now
         * is dropped, and reading goes on so its leaving is seen at once */
        conn->rpos = conn->rlen;
        return;
    }
    while (conn->state == MW_CONN_OPEN && !conn->parse_blocked && !conn->ws &&
           (conn->rpos < conn->rlen || must_exec)) {
        must_exec = 0;
        const char *start = conn->rbuf + conn->rpos;
        pstate.pause = PAUSE_NONE;
        pstate.error_status = 0;
        llhttp_errno_t err = llhttp_execute(conn->parser, start, conn->rlen - conn->rpos);
        if (err == HPE_OK) {
            conn->rpos = conn->rlen;
            break;
        }
        const char *pos = llhttp_get_error_pos(conn->parser);
        if (pos && pos >= start) conn->rpos += (size_t)(pos - start);
        if (err == HPE_PAUSED) {
            llhttp_resume(conn->parser);
            struct mw_req *req = conn->req;
            if (pstate.pause == PAUSE_HEADERS) {
                on_headers(conn, req);
                must_exec = 1;
            } else if (pstate.pause == PAUSE_DONE) {
                on_done(conn, req);
            }
        } else if (err == HPE_PAUSED_UPGRADE) {
            /* Upgrade requests end the HTTP conversation on this connection;
             * protocols that take over (WebSocket) do so in their handler. */
            llhttp_resume_after_upgrade(conn->parser);
            struct mw_req *req = conn->req;
            if (req && !req->message_done) on_done(conn, req);
            conn->parse_blocked = 1;
        } else {
            int status = error_status(err);
            const char *reason = llhttp_get_error_reason(conn->parser);
            send_error(conn, status, reason ? reason : llhttp_errno_name(err));
        }
    }
    if (conn->state == MW_CONN_OPEN && conn->parse_blocked &&
        conn->rlen - conn->rpos > MW_READ_BACKLOG_BYTES)
        mw_conn_read_stop(conn);
}

void mw_http_eof(struct mw_conn *conn)
{
    struct mw_req *req = conn->req;
    if (conn->rpos < conn->rlen) return; /* a pipelined batch and FIN: answer it all, then end */
    if (!req) {
        mw_conn_end(conn);
    } else if (!req->headers_done || !req->message_done) {
        mw_conn_close(conn, "client closed mid-request");
    } else if (req->res_state == MW_RES_DONE) {
        mw_conn_end(conn);
    } else if (conn->pipelined) {
        /* The last of a pipelined batch: the FIN ends the batch, not the
         * wait for its answers; retire() ends the connection after it. */
    } else {
        /* The client left while its request was being handled: parked
         * waits end now, not at the next write. */
        mw_conn_close(conn, "client left during request");
    }
}

void mw_http_conn_closed(struct mw_conn *conn)
{
    if (conn->req) req_detach(conn->req);
}

void mw_http_timeout(struct mw_conn *conn, int kind)
{
    struct mw_req *req = conn->req;
    switch (kind) {
    case MW_TIMER_HEADER:
        if (req && !req->headers_done) {
            send_error(conn, 408, "headers not received in time");
        } else if (!req) {
            send_error(conn, 408, "no request received in time");
        }
        break;
    case MW_TIMER_IDLE:
        mw_conn_close(conn, req ? "request body stalled" : "idle");
        break;
    case MW_TIMER_HEARTBEAT:
        if (req && req->stream) mw_stream_heartbeat(req->stream);
        break;
    case MW_TIMER_SEND:
        mw_log_warn("conn %llu: dropping a client that stopped reading (%zu bytes queued)",
                    (unsigned long long)conn->id, conn->wq.queued_bytes);
        mw_conn_close(conn, "send timeout");
        break;
    }
}

void mw_http_drained(struct mw_conn *conn)
{
    struct mw_req *req = conn->req;
    if (req && req->stream && !req->stream->closed) {
        mw_stream_drained(req->stream);
        req = conn->req; /* NULL when that dropped the client */
    }
    if (req && req->waiter && req->wait == MW_WAIT_DRAIN) {
        mw_conn_set_timer(conn, MW_TIMER_SEND, conn->srv->limits.send_timeout_ms);
        mw_lua_req_notify(req);
    }
}
