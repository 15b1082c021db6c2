/* ws.c - the WebSocket connection engine (RFC 6455, RFC 7692).
 *
 * Frames arrive through ws_frame.c's parser. Data frames are reassembled
 * into one message buffer: uncompressed text is UTF-8 checked as each
 * piece arrives, and the size limit applies as soon as it is crossed;
 * compressed messages are inflated whole (bounded by max_message) when
 * their last frame is in, since the inflater is shared by every socket.
 * Control frames are answered here; the app sees messages and one close. */
#include "ws.h"
#include "conn.h"
#include "log.h"
#include "server.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define MW_WS_CLOSE_WAIT_MS 5000 /* for the peer's close after ours */
#define MW_WS_COMPRESS_MIN 64    /* smaller messages go uncompressed */

static void arm_idle(struct mw_ws *ws);

/* The ping and closing deadlines are the connection's timer. */
static void set_deadline(struct mw_ws *ws, uint64_t ms)
{
    if (ws->conn) mw_conn_set_timer(ws->conn, MW_TIMER_WS, ms);
}

/* --------------------------------------------------------------- output */

size_t mw_ws_max_queued(const struct mw_ws *ws)
{
    return ws->conn ? ws->conn->srv->limits.max_queued_bytes : 0;
}

/* Queues a frame; control frames bypass the queue limit. The limit is how
 * far behind a client may fall: an empty queue takes a message of any size. */
static int queue_frame(struct mw_ws *ws, int opcode, int rsv1, const void *data, size_t len,
                       int limited)
{
    struct mw_conn *conn = ws->conn;
    if (!conn || conn->state != MW_CONN_OPEN) return MW_WS_CLOSED_ERR;
    if (limited && conn->wq.queued_bytes && conn->wq.queued_bytes + len + 10 > mw_ws_max_queued(ws)) {
        ws->want_drain = 1;
        return MW_WS_FULL;
    }
    uint8_t hdr[10];
    size_t h = mw_ws_frame_header(hdr, opcode, 1, rsv1, len);
    char *dst = mw_wq_reserve(&conn->wq, h + len);
    memcpy(dst, hdr, h);
    if (len) memcpy(dst + h, data, len);
    mw_conn_defer(conn, MW_WORK_FLUSH);
    return MW_WS_SENT;
}

int mw_ws_send(struct mw_ws *ws, int opcode, const void *data, size_t len)
{
    if (ws->state != MW_WS_OPEN) return MW_WS_CLOSED_ERR;
    if (ws->pmd.enabled && len >= MW_WS_COMPRESS_MIN) {
        struct mw_buf z;
        mw_buf_init(&z);
        mw_pmd_compress(data, len, ws->pmd.server_window_bits, &z);
        int rc = queue_frame(ws, opcode, 1, z.data, z.len, 1);
        mw_buf_free(&z);
        return rc;
    }
    return queue_frame(ws, opcode, 0, data, len, 1);
}

int mw_ws_send_shared(struct mw_ws *ws, struct mw_shared *frame)
{
    struct mw_conn *conn = ws->conn;
    if (ws->state != MW_WS_OPEN || !conn || conn->state != MW_CONN_OPEN) return MW_WS_CLOSED_ERR;
    if (conn->wq.queued_bytes && conn->wq.queued_bytes + frame->len > mw_ws_max_queued(ws)) {
        ws->want_drain = 1;
        return MW_WS_FULL;
    }
    mw_wq_shared(&conn->wq, frame);
    mw_conn_defer(conn, MW_WORK_FLUSH);
    return MW_WS_SENT;
}

struct mw_shared *mw_ws_make_frame(int opcode, const void *data, size_t len, int compress,
                                   int window_bits)
{
    struct mw_buf z;
    mw_buf_init(&z);
    if (compress) {
        mw_pmd_compress(data, len, window_bits, &z);
        data = z.data;
        len = z.len;
    }
    uint8_t hdr[10];
    size_t h = mw_ws_frame_header(hdr, opcode, 1, compress, len);
    struct mw_shared *s = mw_shared_alloc(h + len);
    memcpy(s->data, hdr, h);
    if (len) memcpy(s->data + h, data, len);
    mw_buf_free(&z);
    return s;
}

int mw_ws_ping(struct mw_ws *ws, const void *data, size_t len)
{
    if (ws->state != MW_WS_OPEN) return MW_WS_CLOSED_ERR;
    if (len > 125) len = 125;
    return queue_frame(ws, MW_WS_OP_PING, 0, data, len, 0);
}

size_t mw_ws_buffered(const struct mw_ws *ws)
{
    return ws->conn ? ws->conn->wq.queued_bytes : 0;
}

/* Close payload: code, then as much of the reason as fits on a UTF-8
 * boundary (125 bytes in all). */
static void send_close(struct mw_ws *ws, int code, const char *reason, size_t len)
{
    if (ws->close_sent) return;
    ws->close_sent = code ? code : MW_WS_CLOSE_NO_STATUS;
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (len > 123) {
            len = 123;
            while (len && ((unsigned char)reason[len] & 0xC0) == 0x80) len--;
        }
        if (len) memcpy(p + 2, reason, len);
        n += len;
    }
    queue_frame(ws, MW_WS_OP_CLOSE, 0, p, n, 0);
}

static void notify_close(struct mw_ws *ws, int code, const char *reason, size_t len)
{
    if (ws->close_notified) return;
    ws->close_notified = 1;
    ws->ev->on_close(ws, code, reason, len);
}

/* Sends what is queued, then FIN; the connection closes after it. */
static void end_conn(struct mw_ws *ws)
{
    ws->state = MW_WS_CLOSED;
    if (ws->conn) mw_conn_end(ws->conn); /* its linger timer replaces ours */
}

void mw_ws_fail(struct mw_ws *ws, int code, const char *why)
{
    if (ws->state == MW_WS_CLOSED) return;
    if (ws->conn)
        mw_log_info("conn %llu: WebSocket closed with %d (%s)", (unsigned long long)ws->conn->id,
                    code, why);
    send_close(ws, code, NULL, 0);
    notify_close(ws, code, NULL, 0);
    end_conn(ws);
}

static void on_close_wait(struct mw_ws *ws)
{
    /* the peer never answered our close: give up on it */
    notify_close(ws, ws->close_sent, NULL, 0);
    end_conn(ws);
    if (ws->conn) mw_conn_close(ws->conn, "no close reply");
}

void mw_ws_close(struct mw_ws *ws, int code, const char *reason, size_t len)
{
    if (ws->state != MW_WS_OPEN) return;
    ws->state = MW_WS_CLOSING;
    send_close(ws, code, reason, len);
    set_deadline(ws, MW_WS_CLOSE_WAIT_MS);
}

/* ---------------------------------------------------------------- input */


static int on_frame(void *ud, int opcode, int fin, int compressed, uint64_t len)
{
    struct mw_ws *ws = ud;
    if (opcode & 0x8) {
        if (opcode == MW_WS_OP_PONG) return 0; /* its payload is not kept */
        /* a new ping supersedes an owed pong (a close ends them); ctl now
         * fills with this frame, perhaps over several reads */
        ws->pong_owed = 0;
        ws->ctl_len = 0;
        if (len && !ws->ctl) ws->ctl = mw_xmalloc(125); /* the parser caps control frames at 125 */
        return 0;
    }
    if (opcode != MW_WS_OP_CONT) {
        ws->msg_opcode = (uint8_t)opcode;
        ws->msg_compressed = compressed ? 1 : 0;
        ws->msg_len = 0;
        mw_utf8_init(&ws->utf8);
    }
    /* max_message counts inflated bytes (checked when inflating); the
     * compressed ones get deflate's worst case on top: stored blocks */
    size_t limit = ws->max_message;
    if (ws->msg_compressed) limit += limit / 1024 + 64;
    if (limit > UINT32_MAX - 1) limit = UINT32_MAX - 1; /* msg_len's width */
    if (ws->msg_len + len > limit) return -MW_WS_CLOSE_TOO_BIG;
    return 0;
}

static int on_payload(void *ud, uint8_t *data, size_t len)
{
    struct mw_ws *ws = ud;
    if (ws->parser.opcode & 0x8) {
        if (ws->parser.opcode == MW_WS_OP_PONG) return 0;
        memcpy(ws->ctl + ws->ctl_len, data, len);
        ws->ctl_len += (uint8_t)len;
        return 0;
    }
    if (ws->msg_len + len > ws->msg_cap) {
        /* on_frame bounded msg_len + len by max_message (and deflate's overhead) */
        size_t cap = ws->msg_cap ? ws->msg_cap : 256;
        while (cap < ws->msg_len + len) cap *= 2;
        if (cap > UINT32_MAX) cap = UINT32_MAX;
        ws->msg = mw_xrealloc(ws->msg, cap);
        ws->msg_cap = (uint32_t)cap;
    }
    memcpy(ws->msg + ws->msg_len, data, len);
    ws->msg_len += (uint32_t)len;
    if (ws->msg_opcode == MW_WS_OP_TEXT && !ws->msg_compressed &&
        mw_utf8_feed(&ws->utf8, data, len) != 0)
        return -MW_WS_CLOSE_BAD_DATA;
    return 0;
}

static int handle_close_frame(struct mw_ws *ws)
{
    int code = MW_WS_CLOSE_NO_STATUS;
    const char *reason = NULL;
    size_t rlen = 0;
    if (ws->ctl_len >= 2) {
        code = ws->ctl[0] << 8 | ws->ctl[1];
        if (!mw_ws_close_code_ok((unsigned)code)) return -MW_WS_CLOSE_PROTOCOL;
        reason = (const char *)ws->ctl + 2;
        rlen = ws->ctl_len - 2;
        if (!mw_utf8_valid(reason, rlen)) return -MW_WS_CLOSE_BAD_DATA;
    }
    /* answer with the same code (none if none), then the TCP close */
    if (!ws->close_sent) send_close(ws, code == MW_WS_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    notify_close(ws, code, reason, rlen);
    end_conn(ws);
    return 1; /* stop: nothing after a close counts */
}

static int deliver_message(struct mw_ws *ws)
{
    int opcode = ws->msg_opcode;
    ws->msg_opcode = 0;
    struct mw_buf data;
    if (ws->msg_compressed) {
        mw_buf_init(&data);
        int rc = mw_pmd_decompress(ws->msg ? (const char *)ws->msg : "", ws->msg_len, ws->max_message, &data);
        free(ws->msg);
        ws->msg = NULL;
        ws->msg_len = ws->msg_cap = 0;
        if (rc == MW_PMD_TOO_BIG) {
            mw_buf_free(&data);
            return -MW_WS_CLOSE_TOO_BIG;
        }
        if (rc != MW_PMD_OK) {
            mw_buf_free(&data);
            return -MW_WS_CLOSE_BAD_DATA;
        }
        if (opcode == MW_WS_OP_TEXT && !mw_utf8_valid(data.data, data.len)) {
            mw_buf_free(&data);
            return -MW_WS_CLOSE_BAD_DATA;
        }
    } else {
        if (opcode == MW_WS_OP_TEXT && !mw_utf8_complete(&ws->utf8)) return -MW_WS_CLOSE_BAD_DATA;
        /* the buffer goes with the message: an idle socket holds none */
        data.data = (char *)ws->msg;
        data.len = ws->msg_len;
        data.cap = ws->msg_cap;
        ws->msg = NULL;
        ws->msg_len = ws->msg_cap = 0;
    }
    ws->ev->on_message(ws, opcode, &data);
    mw_buf_free(&data);
    return ws->paused ? 1 : 0;
}

static void ctl_release(struct mw_ws *ws)
{
    free(ws->ctl);
    ws->ctl = NULL;
    ws->ctl_len = 0;
}

static int on_frame_end(void *ud)
{
    struct mw_ws *ws = ud;
    struct mw_ws_parser *p = &ws->parser;
    ws->ping_sent = 0; /* any frame shows the peer is alive */
    int rc;
    switch (p->opcode) {
    case MW_WS_OP_PING:
        /* A peer max_queued_bytes behind gets its pong once the queue
         * drains, for the latest of its pings only (RFC 6455, 5.5.3): one
         * that pings and reads nothing does not grow the queue. */
        if (ws->state == MW_WS_OPEN && mw_ws_buffered(ws) > mw_ws_max_queued(ws)) {
            ws->pong_owed = 1; /* ctl keeps the payload */
            return 0;
        }
        ws->pong_owed = 0;
        if (ws->state == MW_WS_OPEN) queue_frame(ws, MW_WS_OP_PONG, 0, ws->ctl, ws->ctl_len, 0);
        ctl_release(ws);
        return 0;
    case MW_WS_OP_PONG: return 0; /* unsolicited or not, nothing to do */
    case MW_WS_OP_CLOSE:
        rc = handle_close_frame(ws);
        ws->pong_owed = 0;
        ctl_release(ws);
        return rc;
    }
    /* a data frame: the message is done when this was its last frame */
    if (p->message_open) return 0;
    return deliver_message(ws);
}

static const struct mw_ws_frame_cb frame_cb = {on_frame, on_payload, on_frame_end};

void mw_ws_feed(struct mw_ws *ws)
{
    struct mw_conn *conn = ws->conn;
    if (!conn) return;
    ws->last_rx_ms = (uint32_t)uv_now(conn->srv->loop);
    while (conn->rpos < conn->rlen && ws->state != MW_WS_CLOSED && !ws->paused &&
           conn->state == MW_CONN_OPEN) {
        long n = mw_ws_parse(&ws->parser, (uint8_t *)conn->rbuf + conn->rpos,
                             conn->rlen - conn->rpos, &frame_cb, ws);
        if (n < 0) {
            mw_ws_fail(ws, (int)-n, n == -MW_WS_CLOSE_TOO_BIG   ? "message too big"
                                    : n == -MW_WS_CLOSE_BAD_DATA ? "invalid UTF-8 or compressed data"
                                                                 : "protocol violation");
            break;
        }
        conn->rpos += (size_t)n;
    }
    if (ws->state == MW_WS_CLOSED) conn->rpos = conn->rlen; /* after a close, input is ignored */
}

/* ----------------------------------------------------------- liveness */

static void on_idle(struct mw_ws *ws)
{
    struct mw_conn *conn = ws->conn;
    uint32_t quiet = (uint32_t)uv_now(conn->srv->loop) - ws->last_rx_ms;
    if (quiet + 1 < ws->heartbeat_ms && !ws->ping_sent) {
        set_deadline(ws, mw_deadline_rest(ws->heartbeat_ms - quiet, ws->heartbeat_ms));
        return;
    }
    if (ws->ping_sent) {
        /* pinged a whole interval ago, and not a frame since */
        mw_log_info("conn %llu: WebSocket peer stopped answering pings", (unsigned long long)conn->id);
        mw_conn_close(conn, "ping timeout"); /* on_close gets 1006 */
        return;
    }
    ws->ping_sent = 1;
    queue_frame(ws, MW_WS_OP_PING, 0, NULL, 0, 0);
    set_deadline(ws, ws->heartbeat_ms);
}

void mw_ws_timeout(struct mw_ws *ws)
{
    if (!ws->conn) return;
    if (ws->state == MW_WS_OPEN)
        on_idle(ws);
    else if (ws->state == MW_WS_CLOSING)
        on_close_wait(ws);
}

static void arm_idle(struct mw_ws *ws)
{
    if (ws->heartbeat_ms) set_deadline(ws, ws->heartbeat_ms);
}

/* ------------------------------------------------------------ lifetime */

void mw_ws_init(struct mw_ws *ws, struct mw_conn *conn, const struct mw_pmd *pmd, size_t max_message,
                uint64_t heartbeat_ms, const struct mw_ws_events *ev)
{
    memset(ws, 0, sizeof *ws);
    ws->conn = conn;
    ws->ev = ev;
    ws->pmd = *pmd;
    ws->max_message = max_message > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)max_message;
    ws->heartbeat_ms = heartbeat_ms > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)heartbeat_ms;
    mw_ws_parser_init(&ws->parser, pmd->enabled);
    conn->ws = ws;
    ws->last_rx_ms = (uint32_t)uv_now(conn->srv->loop);
    mw_conn_set_timer(conn, MW_TIMER_NONE, 0);
    arm_idle(ws);
}

void mw_ws_pause(struct mw_ws *ws, int pause)
{
    if (ws->paused == pause) return;
    ws->paused = pause;
    if (!ws->conn) return;
    if (pause) {
        mw_conn_read_stop(ws->conn);
    } else {
        mw_conn_read_start(ws->conn);
        if (ws->conn->rpos < ws->conn->rlen) mw_conn_defer(ws->conn, MW_WORK_FEED);
    }
}

void mw_ws_drained(struct mw_ws *ws)
{
    if (ws->pong_owed && ws->state == MW_WS_OPEN && mw_ws_buffered(ws) <= mw_ws_max_queued(ws)) {
        ws->pong_owed = 0;
        queue_frame(ws, MW_WS_OP_PONG, 0, ws->ctl, ws->ctl_len, 0);
        ctl_release(ws);
    }
    if (ws->want_drain && mw_ws_buffered(ws) <= mw_ws_max_queued(ws) / 2) {
        ws->want_drain = 0;
        if (ws->state == MW_WS_OPEN) ws->ev->on_drain(ws);
    }
}

void mw_ws_conn_closed(struct mw_ws *ws)
{
    ws->state = MW_WS_CLOSED;
    /* a close we sent that was never answered still names its code */
    notify_close(ws, ws->close_sent ? ws->close_sent : MW_WS_CLOSE_ABNORMAL, NULL, 0);
    ws->conn = NULL;
}

void mw_ws_fini(struct mw_ws *ws)
{
    if (ws->conn) ws->conn->ws = NULL;
    ws->conn = NULL;
    free(ws->msg);
    ws->msg = NULL;
    free(ws->ctl);
    ws->ctl = NULL;
}

void mw_ws_accept_key(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    if (len > sizeof buf - sizeof guid) len = sizeof buf - sizeof guid;
    memcpy(buf, key, len);
    memcpy(buf + len, guid, sizeof guid - 1);
    EVP_Digest(buf, len + sizeof guid - 1, digest, NULL, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}
