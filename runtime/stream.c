/* stream.c - SSE streams: hub delivery, resume ids, heartbeats.
 *
 * A heartbeat is the connection's own timeout (a deadline on the shared
 * timer, deadline.c), so ten thousand idle streams cost no timer of their
 * own. */
#include "stream.h"
#include "base64.h"
#include "buf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "lua_sse.h"
#include "server.h"
#include "sse.h"

#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- heartbeats */

static struct mw_conn *stream_conn(struct mw_stream *s)
{
    return s->closed || !s->req ? NULL : s->req->conn;
}

/* A heartbeat is due a whole interval after the last write. Writes only
 * note their time (a fan-out writes to every stream); the timer, when it
 * fires early, waits for the rest. */
void mw_stream_heartbeat(struct mw_stream *s)
{
    struct mw_conn *conn = stream_conn(s);
    if (!conn || !s->heartbeat_ms) return;
    uint32_t quiet = (uint32_t)uv_now(conn->srv->loop) - s->last_write_ms;
    if (quiet + 1 < s->heartbeat_ms) {
        mw_conn_set_timer(conn, MW_TIMER_HEARTBEAT, mw_deadline_rest(s->heartbeat_ms - quiet, s->heartbeat_ms));
        return;
    }
    mw_stream_write(s, ":\n\n", 3);
    mw_conn_set_timer(conn, MW_TIMER_HEARTBEAT, s->heartbeat_ms);
}

static void hb_touch(struct mw_stream *s, struct mw_conn *conn)
{
    s->last_write_ms = (uint32_t)uv_now(conn->srv->loop);
}

/* -------------------------------------------------------------- streams */

struct mw_stream *mw_stream_open(struct mw_req *req, uint32_t heartbeat_ms, const char *last_event_id)
{
    struct mw_stream *s = mw_xcalloc(1, sizeof *s);
    s->req = req;
    s->heartbeat_ms = heartbeat_ms;
    s->lua_ref = -2; /* LUA_NOREF */
    /* The entries are echoed in id lines: one with CR or LF (possible
     * through ?lastEventId=) would inject fields into the stream, and no
     * id we sent has one, so such a value is not a resume point. */
    if (last_event_id && *last_event_id && mw_sse_field_ok(last_event_id, strlen(last_event_id))) {
        const char *p = last_event_id;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            s->resume = mw_xrealloc(s->resume, (s->nresume + 1) * sizeof *s->resume);
            s->resume[s->nresume++] = mw_xstrndup(p, n);
            if (!comma) break;
            p = comma + 1;
        }
    }
    if (req->conn) {
        hb_touch(s, req->conn);
        if (heartbeat_ms) mw_conn_set_timer(req->conn, MW_TIMER_HEARTBEAT, heartbeat_ms);
    }
    return s;
}

int mw_stream_write(struct mw_stream *s, const char *data, size_t len)
{
    struct mw_conn *conn = stream_conn(s);
    if (!conn) return MW_STREAM_CLOSED;
    if (conn->wq.queued_bytes + len > s->req->srv->limits.max_queued_bytes) return MW_STREAM_FULL;
    mw_wq_copy(&conn->wq, data, len);
    mw_conn_defer(conn, MW_WORK_FLUSH);
    hb_touch(s, conn);
    return MW_STREAM_OK;
}

/* "id: a,b,c\n": each subscription's last id, and for positions not yet
 * subscribed, the entry the client resumed with, so none is lost. */
static void id_line(struct mw_stream *s, struct mw_buf *out)
{
    size_t n = s->feed.n > s->nresume ? s->feed.n : s->nresume;
    mw_buf_append(out, "id: ", 4);
    for (size_t i = 0; i < n; i++) {
        if (i) mw_buf_appendc(out, ',');
        if (i < s->feed.n)
            mw_buf_appendf(out, "%llu", (unsigned long long)mw_feed_at(&s->feed, i)->last_id);
        else
            mw_buf_appends(out, s->resume[i]);
    }
    mw_buf_appendc(out, '\n');
}

/* The message as an SSE event without its id line, made once per message
 * and event name and shared by every stream. */
static struct mw_shared *encode(struct mw_msg *m, const char *event)
{
    struct mw_shared *bytes = mw_msg_encoding(m, MW_ENC_SSE, event);
    if (bytes) return bytes;
    struct mw_buf out, b64;
    mw_buf_init(&out);
    mw_buf_init(&b64);
    struct mw_sse_event ev = {.data = m->data, .data_len = m->len, .retry_ms = -1};
    if (m->kind == MW_MSG_BINARY) {
        mw_base64_append(&b64, m->data, m->len);
        ev.data = b64.data ? b64.data : "";
        ev.data_len = b64.len;
    }
    if (event) {
        ev.event = event;
        ev.event_len = strlen(event);
    }
    mw_sse_encode(&out, &ev);
    bytes = mw_shared_new(out.data, out.len);
    mw_buf_free(&out);
    mw_buf_free(&b64);
    mw_msg_set_encoding(m, MW_ENC_SSE, event, bytes);
    return bytes;
}

/* "id: N\n" followed by the event, made once per message and event name. */
static struct mw_shared *with_id(struct mw_msg *m, const char *event, struct mw_shared *event_bytes)
{
    struct mw_shared *full = mw_msg_encoding(m, MW_ENC_SSE_ID, event);
    if (full) return full;
    struct mw_buf b;
    mw_buf_init(&b);
    mw_buf_appendf(&b, "id: %llu\n", (unsigned long long)m->id);
    mw_buf_append(&b, event_bytes->data, event_bytes->len);
    full = mw_shared_new(b.data, b.len);
    mw_buf_free(&b);
    mw_msg_set_encoding(m, MW_ENC_SSE_ID, event, full);
    return full;
}

/* Queues one hub message. Returns FULL when the client is too far behind;
 * an empty queue takes any message, so one larger than the limit still
 * goes to a client that keeps up. */
/* The encodings of the message being fanned out, looked up once for all
 * its streams: a publish walks them in a row. It holds a reference, so
 * the message (and the address compared) stays the same one. */
static _Thread_local struct {
    struct mw_msg *m;
    char *event;                  /* its own copy: streams come and go */
    struct mw_shared *bytes, *full;
} last;

static void last_forget(void)
{
    if (last.m) mw_msg_unref(last.m);
    free(last.event);
    memset(&last, 0, sizeof last);
}

static struct mw_shared *last_bytes(struct mw_msg *m, const char *event)
{
    int same = last.m == m && (last.event && event ? strcmp(last.event, event) == 0 : last.event == event);
    if (!same) {
        last_forget();
        mw_msg_ref(m);
        last.m = m;
        last.event = event ? mw_xstrndup(event, strlen(event)) : NULL;
        last.bytes = encode(m, event);
    }
    return last.bytes;
}

static int send_msg(struct mw_feed_sub *fs, struct mw_msg *m)
{
    struct mw_stream *s = fs->sub.owner;
    struct mw_conn *conn = stream_conn(s);
    if (!conn) return MW_FEED_CLOSED;
    struct mw_shared *bytes = last_bytes(m, fs->event);
    if (conn->wq.queued_bytes &&
        conn->wq.queued_bytes + bytes->len > s->req->srv->limits.max_queued_bytes)
        return MW_FEED_FULL;
    fs->last_id = m->id;
    if (s->feed.n == 1 && s->nresume <= 1) {
        /* one channel: the id line is the message's own id, the same for
         * every such stream, so the whole event is shared */
        if (!last.full) last.full = with_id(m, fs->event, bytes);
        mw_wq_shared(&conn->wq, last.full);
    } else {
        struct mw_buf line;
        mw_buf_init(&line);
        id_line(s, &line);
        mw_wq_copy(&conn->wq, line.data, line.len);
        mw_buf_free(&line);
        mw_wq_shared(&conn->wq, bytes);
    }
    mw_conn_defer(conn, MW_WORK_FLUSH);
    hb_touch(s, conn);
    return MW_FEED_OK;
}

/* A client too slow for the hub is dropped; it resumes from history when
 * it reconnects with Last-Event-ID. */
static void drop_slow(struct mw_feed_sub *fs)
{
    struct mw_stream *s = fs->sub.owner;
    struct mw_conn *conn = stream_conn(s);
    if (!conn) return;
    mw_log_warn("req %s: SSE client fell more than %zu bytes behind; dropping it (it resumes "
                "from history on reconnect)",
                mw_req_id(s->req), s->req->srv->limits.max_queued_bytes);
    mw_conn_close(conn, "slow SSE consumer");
}

static struct mw_feed *feed_of(struct mw_feed_sub *fs)
{
    return &((struct mw_stream *)fs->sub.owner)->feed;
}

static const struct mw_feed_ops stream_ops = {{mw_feed_deliver}, send_msg, drop_slow, feed_of};

static void skip(struct mw_msg *m, void *ud)
{
}

void mw_stream_drained(struct mw_stream *s)
{
    if (stream_conn(s)) mw_feed_drained(&s->feed);
}

int mw_stream_subscribe(struct mw_stream *s, struct mw_channel *ch, long long since, const char *event)
{
    if (!stream_conn(s)) return MW_STREAM_CLOSED;
    if (mw_feed_find(&s->feed, ch)) return MW_STREAM_DUP;
    if (since < 0 && s->feed.n < s->nresume) {
        char *end;
        unsigned long long v = strtoull(s->resume[s->feed.n], &end, 10);
        if (end != s->resume[s->feed.n] && *end == '\0') since = (long long)v;
    }
    struct mw_feed_sub *fs = mw_feed_add(&s->feed, &stream_ops, s, ch, since);
    fs->event = event ? mw_xstrndup(event, strlen(event)) : NULL;
    if (since >= 0) {
        size_t missed = mw_channel_history(ch, since, skip, NULL);
        if (missed) {
            /* ids are consecutive, so the client sees the gap; say it too */
            struct mw_buf note;
            mw_buf_init(&note);
            mw_buf_appendf(&note, ": %zu message(s) of %s after id %lld are no longer retained\n\n",
                           missed, ch->name, since);
            mw_stream_write(s, note.data, note.len);
            mw_buf_free(&note);
        }
        mw_feed_catch_up(fs);
    }
    return MW_STREAM_OK;
}

int mw_stream_unsubscribe(struct mw_stream *s, struct mw_channel *ch)
{
    return mw_feed_remove(&s->feed, ch) ? MW_STREAM_OK : MW_STREAM_CLOSED;
}

void mw_stream_close(struct mw_stream *s, int finish)
{
    if (s->closed) return;
    s->closed = 1;
    struct mw_conn *conn = s->req ? s->req->conn : NULL;
    if (conn && conn->timer_kind == MW_TIMER_HEARTBEAT) mw_conn_set_timer(conn, MW_TIMER_NONE, 0);
    mw_feed_leave_all(&s->feed); /* the last ids stay for inspection */
    mw_lua_stream_closed(s);
    /* last: finishing may retire the request, which frees s */
    struct mw_req *req = s->req;
    if (finish && req && req->conn) mw_req_finish_stream(req);
}

void mw_stream_free(struct mw_stream *s)
{
    if (!s->closed) mw_stream_close(s, 0);
    mw_feed_free(&s->feed);
    for (size_t i = 0; i < s->nresume; i++) free(s->resume[i]);
    free(s->resume);
    free(s);
}

void mw_stream_close_all(struct mw_server *srv)
{
    /* Closing runs on_close callbacks, which may close other connections
     * (unlinking them): after one that left the list, start over. */
    struct mw_conn *c = srv->conns;
    while (c) {
        struct mw_stream *s = c->req ? c->req->stream : NULL;
        if (!s || s->closed || c->state != MW_CONN_OPEN) {
            c = c->next;
            continue;
        }
        mw_stream_close(s, 1);
        c = c->state == MW_CONN_CLOSING ? srv->conns : c->next;
    }
    last_forget();
}
