/* conn.c - connection lifetime: accept, read buffer, timer, deferred work,
 * and the one close path. A connection's memory is freed only when both of
 * its handles have been called back from uv_close and no deferred work
 * entry still points at it. */
#include "conn.h"
#include "deadline.h"
#include "http.h"
#include "mw_limits.h"
#include "log.h"
#include "server.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

/* Every read lands in one loop-wide buffer: libuv calls on_alloc and
 * on_read back to back for one connection, and the parser copies what it
 * keeps. Only bytes left unparsed at the end of a read (a request split
 * across packets, a pipelined batch waiting for an answer) move into a
 * buffer of the connection's own. So an idle connection (keep-alive, an SSE
 * stream, a parked long poll, a WebSocket) holds no read buffer, and ten
 * thousand clients leaving at once cost one buffer, not ten thousand. */
static _Thread_local char *shared_rbuf;

static void rbuf_release(struct mw_conn *conn)
{
    if (conn->rbuf && conn->rbuf != shared_rbuf) free(conn->rbuf);
    conn->rbuf = NULL;
    conn->rcap = conn->rlen = conn->rpos = 0;
}

/* End of a read: what is left unparsed moves out of the shared buffer. */
static void rbuf_detach(struct mw_conn *conn)
{
    if (conn->rbuf != shared_rbuf) {
        if (conn->rpos == conn->rlen) rbuf_release(conn);
        return;
    }
    size_t left = conn->rlen - conn->rpos;
    conn->rbuf = NULL;
    conn->rcap = 0;
    if (left == 0 || conn->state == MW_CONN_CLOSING) {
        conn->rlen = conn->rpos = 0;
        return;
    }
    conn->rbuf = mw_xmalloc(left);
    memcpy(conn->rbuf, shared_rbuf + conn->rpos, left);
    conn->rcap = conn->rlen = left;
    conn->rpos = 0;
}

static void conn_free(struct mw_conn *conn)
{
    rbuf_release(conn);
    free(conn->parser);
    mw_wq_free(&conn->wq);
    free(conn);
}

void mw_conn_unref(struct mw_conn *conn)
{
    if (--conn->refs == 0 && conn->handles_open == 0) conn_free(conn);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct mw_conn *conn = h->data;
    if (--conn->handles_open == 0 && conn->refs == 0) conn_free(conn);
}

static void on_write_done(struct mw_wq *wq, int status)
{
    struct mw_conn *conn = (struct mw_conn *)((char *)wq - offsetof(struct mw_conn, wq));
    if (conn->state == MW_CONN_CLOSING) return;
    if (status < 0) {
        mw_conn_close(conn, uv_strerror(status));
        return;
    }
    if (conn->ws)
        mw_ws_drained(conn->ws);
    else
        mw_http_drained(conn);
    if (conn->state == MW_CONN_ENDING) mw_conn_defer(conn, MW_WORK_FLUSH);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct mw_conn *conn = h->data;
    if (conn->rpos == conn->rlen) {
        rbuf_release(conn);
        if (!shared_rbuf) shared_rbuf = mw_xmalloc(MW_READ_CHUNK_BYTES);
        conn->rbuf = shared_rbuf;
        conn->rcap = MW_READ_CHUNK_BYTES;
        *buf = uv_buf_init(shared_rbuf, MW_READ_CHUNK_BYTES);
        return;
    }
    /* Unparsed bytes wait in the connection's own buffer: parsed ones are
     * dead, so the tail moves to the front before the buffer grows. */
    if (conn->rpos > 0) {
        memmove(conn->rbuf, conn->rbuf + conn->rpos, conn->rlen - conn->rpos);
        conn->rlen -= conn->rpos;
        conn->rpos = 0;
    }
    if (conn->rcap - conn->rlen < MW_READ_CHUNK_BYTES / 4) {
        size_t cap = conn->rlen + MW_READ_CHUNK_BYTES;
        conn->rbuf = mw_xrealloc(conn->rbuf, cap);
        conn->rcap = cap;
    }
    *buf = uv_buf_init(conn->rbuf + conn->rlen, (unsigned)(conn->rcap - conn->rlen));
}

/* Runs the connection's protocol on its unparsed bytes. */
static void feed(struct mw_conn *conn)
{
    unsigned was = conn->feeding;
    conn->feeding = 1;
    if (conn->ws)
        mw_ws_feed(conn->ws);
    else
        mw_http_feed(conn);
    conn->feeding = was;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mw_conn *conn = s->data;
    if (nread < 0) {
        conn->reading = 0; /* libuv stops reading at EOF */
        if (nread == UV_EOF) conn->eof = 1;
    }
    if (nread == 0) {
        /* nothing read (EAGAIN) */
    } else if (conn->state == MW_CONN_ENDING) {
        /* lingering: what the client still sends is read and dropped; at
         * EOF we close, unless our reply is still queued (on_shutdown
         * closes then) */
        conn->rpos = conn->rlen;
        if (nread < 0 && (conn->shut || nread != UV_EOF)) mw_conn_close(conn, "client done");
    } else if (conn->state != MW_CONN_OPEN) {
        conn->rpos = conn->rlen;
    } else if (nread < 0 && conn->ws) {
        mw_conn_close(conn, "peer gone"); /* no close frame: the app sees 1006 */
    } else if (nread < 0) {
        if (nread == UV_EOF)
            mw_http_eof(conn);
        else
            mw_conn_close(conn, uv_strerror((int)nread));
    } else {
        conn->rlen += (uint32_t)nread;
        feed(conn);
    }
    rbuf_detach(conn);
    mw_http_conn_trim(conn);
    mw_server_sweep(conn->srv);
}

void mw_conn_read_start(struct mw_conn *conn)
{
    /* after EOF a read would only report it again, as if it were news */
    if (conn->reading || conn->eof || conn->state == MW_CONN_CLOSING) return;
    if (uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read) == 0) conn->reading = 1;
}

void mw_conn_read_stop(struct mw_conn *conn)
{
    if (!conn->reading) return;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->reading = 0;
}

/* A connection's one timeout is a deadline on the shared timer
 * (deadline.c): setting and clearing it per request costs pointer moves,
 * and an idle connection carries no timer handle of its own. */
static void on_deadline(struct mw_deadline *d)
{
    struct mw_conn *conn = (struct mw_conn *)((char *)d - offsetof(struct mw_conn, timer));
    int kind = conn->timer_kind;
    conn->timer_kind = MW_TIMER_NONE;
    if (kind == MW_TIMER_LINGER) {
        mw_conn_close(conn, "linger timeout");
    } else if (kind == MW_TIMER_WS && conn->ws) {
        mw_ws_timeout(conn->ws);
    } else if (conn->state == MW_CONN_OPEN) {
        mw_http_timeout(conn, kind);
    }
    mw_server_sweep(conn->srv);
}

void mw_conn_set_timer(struct mw_conn *conn, int kind, uint64_t ms)
{
    if (conn->state == MW_CONN_CLOSING) return;
    if (kind == MW_TIMER_NONE || ms == 0) {
        conn->timer_kind = MW_TIMER_NONE;
        mw_deadline_clear(&conn->timer);
        return;
    }
    conn->timer_kind = kind;
    mw_deadline_set(&conn->timer, conn->srv->loop, ms, on_deadline);
}

void mw_conn_accept(struct mw_server *srv)
{
    struct mw_conn *conn = mw_xcalloc(1, sizeof *conn);
    conn->srv = srv;
    conn->id = ++srv->next_conn_id;
    uv_tcp_init(srv->loop, &conn->tcp);
    conn->tcp.data = conn;
    conn->handles_open = 1;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&conn->tcp) != 0) {
        conn->state = MW_CONN_CLOSING;
        uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    mw_wq_init(&conn->wq);
    mw_http_conn_init(conn);

    conn->next = srv->conns;
    if (srv->conns) srv->conns->prev = conn;
    srv->conns = conn;
    srv->nconns++;

    mw_conn_set_timer(conn, MW_TIMER_HEADER, srv->limits.header_timeout_ms);
    mw_conn_read_start(conn);
}

void mw_conn_close(struct mw_conn *conn, const char *reason)
{
    if (conn->state == MW_CONN_CLOSING) return;
    mw_log_debug("conn %llu: close (%s)", (unsigned long long)conn->id, reason);
    conn->state = MW_CONN_CLOSING;
    if (conn->ws) mw_ws_conn_closed(conn->ws);
    mw_http_conn_closed(conn);
    mw_conn_read_stop(conn);
    mw_wq_free(&conn->wq);
    uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
    mw_deadline_clear(&conn->timer);

    struct mw_server *srv = conn->srv;
    if (conn->prev) conn->prev->next = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    if (srv->conns == conn) srv->conns = conn->next;
    srv->nconns--;
    if (srv->shutting_down && srv->nconns == 0 && srv->on_stopped) srv->on_stopped(srv);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct mw_conn *conn = req->data;
    free(req);
    if (conn->state != MW_CONN_ENDING) return;
    if (status < 0) {
        mw_conn_close(conn, "shutdown failed");
        return;
    }
    /* Closing now would reset the connection if the client's bytes are
     * still unread, and a reset can destroy our reply in its buffer. */
    if (conn->eof) {
        mw_conn_close(conn, "done");
        return;
    }
    mw_conn_set_timer(conn, MW_TIMER_LINGER, MW_LINGER_MS);
    mw_conn_read_start(conn);
}

/* Once an ending connection's queue is empty: FIN, then linger. */
static void end_when_flushed(struct mw_conn *conn)
{
    if (conn->shut || !mw_wq_idle(&conn->wq)) return;
    conn->shut = 1;
    uv_shutdown_t *sreq = mw_xmalloc(sizeof *sreq);
    sreq->data = conn;
    if (uv_shutdown(sreq, (uv_stream_t *)&conn->tcp, on_shutdown) != 0) {
        free(sreq);
        mw_conn_close(conn, "shutdown failed");
    }
}

void mw_conn_end(struct mw_conn *conn)
{
    if (conn->state != MW_CONN_OPEN) return;
    conn->state = MW_CONN_ENDING;
    mw_http_conn_closed(conn);
    mw_conn_set_timer(conn, MW_TIMER_LINGER, conn->srv->limits.send_timeout_ms);
    mw_conn_defer(conn, MW_WORK_FLUSH);
}

void mw_conn_defer(struct mw_conn *conn, int work)
{
    if (conn->state == MW_CONN_CLOSING) return;
    if (conn->work == 0) {
        struct mw_server *srv = conn->srv;
        conn->refs++;
        conn->work_next = NULL;
        if (srv->work_tail)
            srv->work_tail->work_next = conn;
        else
            srv->work_head = conn;
        srv->work_tail = conn;
    }
    conn->work |= work;
}

void mw_conn_run_work(struct mw_conn *conn, int work)
{
    if (conn->state == MW_CONN_CLOSING) return;
    if ((work & MW_WORK_FEED) && conn->state == MW_CONN_OPEN) feed(conn);
    mw_http_conn_trim(conn);
    if (conn->state == MW_CONN_CLOSING) return;
    if (conn->wq.npending) {
        int rc = mw_wq_flush(&conn->wq, (uv_stream_t *)&conn->tcp, on_write_done);
        if (rc < 0) {
            mw_conn_close(conn, uv_strerror(rc));
            return;
        }
        if (conn->state == MW_CONN_OPEN && conn->ws)
            mw_ws_drained(conn->ws);
        else if (conn->state == MW_CONN_OPEN && conn->req)
            mw_http_drained(conn);
    }
    if (conn->state == MW_CONN_ENDING) end_when_flushed(conn);
}
