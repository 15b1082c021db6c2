/* ws.h - a WebSocket connection after the handshake: frames in (through
 * ws_frame.c), messages reassembled, inflated and UTF-8 checked as they
 * arrive; pings answered, idle peers pinged and dropped; the closing
 * handshake; frames out, compressed when negotiated. No Lua: events go
 * to the callbacks given at creation (lua_ws.c). */
#ifndef MW_WS_H
#define MW_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "deflate.h"
#include "utf8.h"
#include "wq.h"
#include "ws_frame.h"

struct mw_conn;
struct mw_ws;

struct mw_ws_events {
    /* A whole message (opcode TEXT or BINARY). Takes `data`'s memory. */
    void (*on_message)(struct mw_ws *ws, int opcode, struct mw_buf *data);
    /* Once, when the connection ends: the peer's (or our) close code and
     * reason; 1006 when the peer vanished. */
    void (*on_close)(struct mw_ws *ws, int code, const char *reason, size_t len);
    /* The send queue fell back under half the limit after a refused send. */
    void (*on_drain)(struct mw_ws *ws);
};

enum mw_ws_state { MW_WS_OPEN, MW_WS_CLOSING, MW_WS_CLOSED };

/* Paid per open socket, for as long as it is open: narrow fields, the
 * ping and closing deadlines are the connection's own timer, and a control
 * frame's payload is held only while one arrives. The owner embeds it. */
struct mw_ws {
    struct mw_conn *conn;       /* NULL once the connection is gone */
    const struct mw_ws_events *ev;
    struct mw_ws_parser parser;
    uint8_t *msg;               /* the data message being reassembled */
    uint32_t msg_len, msg_cap;
    uint32_t max_message;       /* bytes, after inflation */
    uint32_t heartbeat_ms;      /* idle time before a ping; 0: never */
    uint32_t last_rx_ms;        /* loop time of the last bytes read (wraps; differences count) */
    struct mw_utf8 utf8;
    uint8_t *ctl;               /* the control frame arriving (125 bytes at most), or NULL */
    uint16_t close_sent;        /* code of the close frame we sent, 0 if none */
    struct mw_pmd pmd;
    uint8_t state;              /* enum mw_ws_state */
    uint8_t msg_opcode;         /* TEXT/BINARY being reassembled, 0 if none */
    uint8_t ctl_len;
    unsigned close_notified : 1;
    unsigned ping_sent : 1;     /* waiting for any frame after our ping */
    unsigned want_drain : 1;    /* a send was refused: tell on_drain */
    unsigned paused : 1;        /* reading stopped until the app catches up */
    unsigned msg_compressed : 1;
    unsigned pong_owed : 1;     /* a ping came while the queue was full: ctl holds its payload */
};

/* Takes over conn after the 101 response was queued. */
void mw_ws_init(struct mw_ws *ws, struct mw_conn *conn, const struct mw_pmd *pmd, size_t max_message,
                uint64_t heartbeat_ms, const struct mw_ws_events *ev);
/* New bytes in conn->rbuf. */
void mw_ws_feed(struct mw_ws *ws);
enum { MW_WS_SENT = 0, MW_WS_FULL = -1, MW_WS_CLOSED_ERR = -2 };
/* Queues a data message (TEXT or BINARY). */
int mw_ws_send(struct mw_ws *ws, int opcode, const void *data, size_t len);
/* Queues a frame made once for many connections (hub fan-out). FULL, as
 * for mw_ws_send, brings on_drain once the queue has room again. */
int mw_ws_send_shared(struct mw_ws *ws, struct mw_shared *frame);
int mw_ws_ping(struct mw_ws *ws, const void *data, size_t len);
/* Starts the closing handshake (code 0: none). */
void mw_ws_close(struct mw_ws *ws, int code, const char *reason, size_t len);
/* Fails the connection: close frame with code, then TCP close. */
void mw_ws_fail(struct mw_ws *ws, int code, const char *why);
size_t mw_ws_buffered(const struct mw_ws *ws);
/* max_queued_bytes: how far behind the client may fall (0 once it is gone). */
size_t mw_ws_max_queued(const struct mw_ws *ws);
/* Stops or resumes reading (the app's inbox is too full / drained). */
void mw_ws_pause(struct mw_ws *ws, int pause);
/* The connection is gone (conn.c's close path). */
void mw_ws_conn_closed(struct mw_ws *ws);
/* The write queue made progress. */
void mw_ws_drained(struct mw_ws *ws);
/* The connection's timer fired: a ping is due, or a deadline passed. */
void mw_ws_timeout(struct mw_ws *ws);
/* Releases what it holds (after on_close, when its owner is done with it). */
void mw_ws_fini(struct mw_ws *ws);

/* Frame bytes (header + payload), compressed when asked, as one buffer. */
struct mw_shared *mw_ws_make_frame(int opcode, const void *data, size_t len, int compress,
                                   int window_bits);
/* Sec-WebSocket-Accept for a client key; out gets 28 chars + NUL. */
void mw_ws_accept_key(const char *key, size_t len, char out[29]);

#endif
