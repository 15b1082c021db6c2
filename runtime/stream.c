/* stream.c - SSE streams: hub delivery, resume ids, heartbeats.
 *
 * A heartbeat is the connection's own timeout (a deadline on the shared
 * timer, deadline.c), so ten thousand idle streams cost no timer of their
 * own. */
#include "stream.h"
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

void mw_stream_heartbeat(struct mw_stream *s)
{
    mw_stream_write(s, ":\n\n", 3); /* re-arms the heartbeat when it goes out */
}

/* Any write postpones the next heartbeat by a whole interval. */
static void hb_touch(struct mw_stream *s, struct mw_conn *conn)
{
    if (s->heartbeat_ms) mw_conn_set_timer(conn, MW_TIMER_HEARTBEAT, s->heartbeat_ms);
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
    if (req->conn) hb_touch(s, req->conn);
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
    size_t n = s->nsubs > s->nresume ? s->nsubs : s->nresume;
    mw_buf_append(out, "id: ", 4);
    for (size_t i = 0; i < n; i++) {
        if (i) mw_buf_appendc(out, ',');
        if (i < s->nsubs)
            mw_buf_appendf(out, "%llu", (unsigned long long)mw_stream_sub_at(s, i)->last_id);
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
        mw_msg_append_base64(&b64, m);
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
static int send_msg(struct mw_stream_sub *ss, struct mw_msg *m)
{
    struct mw_stream *s = ss->sub.owner;
    struct mw_conn *conn = stream_conn(s);
    if (!conn) return MW_STREAM_CLOSED;
    struct mw_shared *bytes = encode(m, ss->event);
    if (conn->wq.queued_bytes &&
        conn->wq.queued_bytes + bytes->len > s->req->srv->limits.max_queued_bytes)
        return MW_STREAM_FULL;
    ss->last_id = m->id;
    if (s->nsubs == 1 && s->nresume <= 1) {
        /* one channel: the id line is the message's own id, the same for
         * every such stream, so the whole event is shared */
        mw_wq_shared(&conn->wq, with_id(m, ss->event, bytes));
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
    return MW_STREAM_OK;
}

/* A client too slow for the hub is dropped; it resumes from history when
 * it reconnects with Last-Event-ID. */
static void drop_slow(struct mw_stream *s)
{
    struct mw_conn *conn = stream_conn(s);
    if (!conn) return;
    mw_log_warn("req %s: SSE client fell more than %zu bytes behind; dropping it (it resumes "
                "from history on reconnect)",
                mw_req_id(s->req), s->req->srv->limits.max_queued_bytes);
    mw_conn_close(conn, "slow SSE consumer");
}

struct replay {
    struct mw_stream_sub *ss;
    int rc;
};

static void replay_one(struct mw_msg *m, void *ud)
{
    struct replay *r = ud;
    if (r->rc == MW_STREAM_OK) r->rc = send_msg(r->ss, m);
}

static void skip(struct mw_msg *m, void *ud)
{
}

/* Queues the retained messages after ss->last_id while the queue has
 * room; the rest follows as it drains, and new messages wait in the
 * history meanwhile. A client still catching up when the history moves
 * past what it has is too slow after all: it is dropped, and told of the
 * gap when it comes back. Returns 0 when it was dropped (the stream may
 * be gone). */
static int catch_up(struct mw_stream_sub *ss)
{
    uint64_t oldest = mw_channel_oldest_id(ss->sub.ch);
    if (ss->catching_up && oldest && ss->last_id + 1 < oldest) {
        drop_slow(ss->sub.owner);
        return 0;
    }
    struct replay r = {ss, MW_STREAM_OK};
    mw_channel_history(ss->sub.ch, (long long)ss->last_id, replay_one, &r);
    ss->catching_up = r.rc == MW_STREAM_FULL;
    return 1;
}

static int catching_up(const struct mw_stream *s)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (mw_stream_sub_at(s, i)->catching_up) return 1;
    return 0;
}

static void deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct mw_stream_sub *ss = (struct mw_stream_sub *)sub;
    if (ss->catching_up) {
        catch_up(ss); /* m is in the history already, after what is still to replay */
        return;
    }
    if (send_msg(ss, m) != MW_STREAM_FULL) return;
    if (catching_up(ss->sub.owner))
        ss->catching_up = 1; /* a replay filled the queue, not the client: wait in history too */
    else
        drop_slow(ss->sub.owner);
}

static const struct mw_sub_ops stream_ops = {.deliver = deliver};

void mw_stream_drained(struct mw_stream *s)
{
    for (size_t i = 0; i < s->nsubs && stream_conn(s); i++)
        if (mw_stream_sub_at(s, i)->catching_up && !catch_up(mw_stream_sub_at(s, i))) return;
}

int mw_stream_subscribe(struct mw_stream *s, struct mw_channel *ch, long long since, const char *event)
{
    if (!stream_conn(s)) return MW_STREAM_CLOSED;
    for (size_t i = 0; i < s->nsubs; i++)
        if (mw_stream_sub_at(s, i)->sub.ch == ch) return MW_STREAM_DUP;
    if (since < 0 && s->nsubs < s->nresume) {
        char *end;
        unsigned long long v = strtoull(s->resume[s->nsubs], &end, 10);
        if (end != s->resume[s->nsubs] && *end == '\0') since = (long long)v;
    }
    struct mw_stream_sub *ss;
    if (!s->first_used) {
        ss = &s->first;
        s->first_used = 1;
    } else {
        ss = mw_xmalloc(sizeof *ss);
    }
    memset(ss, 0, sizeof *ss);
    ss->sub.ops = &stream_ops;
    ss->sub.owner = s;
    ss->event = event ? mw_xstrndup(event, strlen(event)) : NULL;
    /* The client has everything up to last_id: with no since, the newest
     * message, which it need not see; else since, or when that is older
     * than the history (the gap is reported below) or above the newest
     * (a restart), just before the oldest retained. */
    ss->last_id = ch->last_id;
    if (since >= 0) {
        uint64_t oldest = mw_channel_oldest_id(ch);
        uint64_t floor = oldest ? oldest - 1 : ch->last_id;
        ss->last_id = (uint64_t)since > ch->last_id || (uint64_t)since < floor ? floor : (uint64_t)since;
    }
    if (s->nsubs == 0) {
        s->subs.one = ss;
    } else if (s->nsubs == 1) {
        struct mw_stream_sub **many = mw_xmalloc(2 * sizeof *many);
        many[0] = s->subs.one;
        many[1] = ss;
        s->subs.many = many;
    } else {
        s->subs.many = mw_xrealloc(s->subs.many, (s->nsubs + 1) * sizeof *s->subs.many);
        s->subs.many[s->nsubs] = ss;
    }
    s->nsubs++;
    mw_hub_subscribe(ch, &ss->sub);

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
        catch_up(ss);
    }
    return MW_STREAM_OK;
}

static void sub_free(struct mw_stream *s, struct mw_stream_sub *ss)
{
    mw_hub_unsubscribe(&ss->sub);
    free(ss->event);
    if (ss == &s->first)
        s->first_used = 0;
    else
        free(ss);
}

int mw_stream_unsubscribe(struct mw_stream *s, struct mw_channel *ch)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        struct mw_stream_sub *ss = mw_stream_sub_at(s, i);
        if (ss->sub.ch != ch) continue;
        sub_free(s, ss);
        if (s->nsubs > 1) {
            struct mw_stream_sub **many = s->subs.many;
            memmove(many + i, many + i + 1, (s->nsubs - i - 1) * sizeof *many);
            if (s->nsubs == 2) {
                s->subs.one = many[0];
                free(many);
            }
        } else {
            s->subs.one = NULL;
        }
        s->nsubs--;
        return MW_STREAM_OK;
    }
    return MW_STREAM_CLOSED;
}

void mw_stream_close(struct mw_stream *s, int finish)
{
    if (s->closed) return;
    s->closed = 1;
    struct mw_conn *conn = s->req ? s->req->conn : NULL;
    if (conn && conn->timer_kind == MW_TIMER_HEARTBEAT) mw_conn_set_timer(conn, MW_TIMER_NONE, 0);
    for (size_t i = 0; i < s->nsubs; i++) {
        /* keep last ids for stream.closed-time inspection; drop hub links */
        mw_hub_unsubscribe(&mw_stream_sub_at(s, i)->sub);
    }
    mw_lua_stream_closed(s);
    /* last: finishing may retire the request, which frees s */
    struct mw_req *req = s->req;
    if (finish && req && req->conn) mw_req_finish_stream(req);
}

void mw_stream_free(struct mw_stream *s)
{
    if (!s->closed) mw_stream_close(s, 0);
    for (size_t i = 0; i < s->nsubs; i++) sub_free(s, mw_stream_sub_at(s, i));
    if (s->nsubs > 1) free(s->subs.many);
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
}
