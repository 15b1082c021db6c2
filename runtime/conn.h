/* conn.h - a client connection: its socket, read buffer, write queue,
 * timer, and the single close path. The protocol on top (HTTP now,
 * WebSocket after an upgrade) is driven through mw_http_*. */
#ifndef MW_CONN_H
#define MW_CONN_H

#include <stdint.h>
#include <uv.h>
#include <llhttp.h>

#include "deadline.h"
#include "wq.h"

struct mw_server;
struct mw_req;
struct mw_ws;

enum mw_conn_state {
    MW_CONN_OPEN,     /* reading and answering */
    MW_CONN_ENDING,   /* last response queued: flush, FIN, linger, close */
    MW_CONN_CLOSING,  /* handles closing; waits for close callbacks */
};

enum mw_conn_timer {
    MW_TIMER_NONE,
    MW_TIMER_HEADER,  /* headers must arrive: 408 */
    MW_TIMER_IDLE,    /* keep-alive wait or a stalled body: close */
    MW_TIMER_SEND,    /* a writer waits on a client that reads nothing: close */
    MW_TIMER_LINGER,  /* after FIN, reading what the client still sends */
    MW_TIMER_HEARTBEAT, /* an SSE stream's next comment line */
    MW_TIMER_WS,      /* a WebSocket's next ping, or the end of its closing handshake */
};

/* Deferred work flags, run by the server's end-of-turn sweep. */
enum {
    MW_WORK_FLUSH = 1, /* pending bytes in the write queue */
    MW_WORK_FEED = 2,  /* the parser may continue with buffered bytes */
};

struct mw_conn {
    uv_tcp_t tcp;
    struct mw_deadline timer;      /* the one timeout of timer_kind */
    struct mw_server *srv;
    struct mw_conn *prev, *next;   /* server's connection list */
    struct mw_conn *work_next;     /* server's deferred-work list */
    uint64_t id;
    llhttp_t *parser;              /* while it speaks HTTP; freed once a stream or WebSocket owns it */
    struct mw_req *req;            /* request being received or answered */
    struct mw_ws *ws;              /* set once the connection speaks WebSocket */
    char *rbuf;                    /* received bytes; [rpos, rlen) not yet parsed */
    uint32_t rcap, rlen, rpos;
    int refs;                      /* deferred-work entries and other holders */
    uint8_t state;                 /* enum mw_conn_state */
    uint8_t timer_kind;            /* enum mw_conn_timer */
    uint8_t work;                  /* MW_WORK_* flags queued */
    uint8_t handles_open;          /* handles not yet called back from uv_close */
    unsigned reading : 1;          /* uv_read_start is active */
    unsigned shut : 1;             /* uv_shutdown issued */
    unsigned eof : 1;              /* the client sent FIN */
    unsigned feeding : 1;          /* a parser is running on its bytes */
    unsigned parse_blocked : 1;    /* paused at a message end until its response is done */
    unsigned pipelined : 1;        /* the request in progress was sent before the previous answer */

    struct mw_wq wq;
};

/* Accepts a pending connection on srv's listener. */
void mw_conn_accept(struct mw_server *srv);
/* The one way to end a connection; idempotent. `reason` is for the log. */
void mw_conn_close(struct mw_conn *conn, const char *reason);
/* Ends after everything queued is written: FIN, a short linger, close. */
void mw_conn_end(struct mw_conn *conn);
/* Queues deferred work for the end-of-turn sweep. */
void mw_conn_defer(struct mw_conn *conn, int work);
/* Runs deferred work; called by the sweep. */
void mw_conn_run_work(struct mw_conn *conn, int work);
void mw_conn_set_timer(struct mw_conn *conn, int kind, uint64_t ms);
/* Starts or stops reading (backpressure on a paused parser). */
void mw_conn_read_start(struct mw_conn *conn);
void mw_conn_read_stop(struct mw_conn *conn);
void mw_conn_unref(struct mw_conn *conn);

#endif
