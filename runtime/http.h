/* http.h - HTTP/1.1 on a connection: llhttp glue, the request object,
 * limits, keep-alive and pipelining (one request answered at a time, in
 * order), and response framing (Content-Length, chunked, close-delimited). */
#ifndef MW_HTTP_H
#define MW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "response.h"
#include "url.h"

struct mw_conn;
struct mw_co;
struct mw_server;
struct mw_stream;

enum mw_res_state {
    MW_RES_NONE,      /* nothing sent */
    MW_RES_STREAMING, /* head sent, body being written */
    MW_RES_DONE,      /* complete */
};

enum mw_req_wait {
    MW_WAIT_NONE,
    MW_WAIT_BODY,  /* req:body(): the whole body */
    MW_WAIT_CHUNK, /* req:chunks(): the next piece */
    MW_WAIT_DRAIN, /* res:write(): the queue to fall under the limit */
    MW_WAIT_HUB,   /* ch:wait(): a hub message; only the client leaving matters here */
};

/* Offsets into a request's hbuf, which max_header_bytes keeps small. */
struct mw_req_span {
    uint32_t off;
    uint32_t len;
};

struct mw_req_header {
    struct mw_req_span name;  /* lower-cased */
    struct mw_req_span value;
};

/* Field order and widths matter: an SSE stream keeps its request for as
 * long as it is open, so this is paid per idle client. */
struct mw_req {
    struct mw_conn *conn;  /* NULL once the connection is gone */
    struct mw_server *srv;
    uint64_t seq;          /* per-process request number */
    struct mw_req *pool_next; /* free list link while pooled */

    struct mw_buf hbuf;    /* method, target, header names and values */
    struct mw_req_span method, target;
    struct mw_req_header *hdrs;
    uint32_t nhdrs, hcap;
    uint32_t header_bytes; /* counted against max_header_bytes */
    uint32_t gen;          /* bumped when the request ends; Lua handles hold (req, gen) */
    uint8_t http_major, http_minor;
    uint8_t method_code;   /* llhttp_method_t */
    uint8_t res_state;     /* enum mw_res_state */
    uint8_t wait;          /* enum mw_req_wait */
    unsigned in_value : 1;        /* parser is inside a header value */
    unsigned keep_alive : 1;      /* the connection may carry another request */
    unsigned is_head : 1;         /* HEAD: headers only */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned continue_sent : 1;
    unsigned headers_done : 1;
    unsigned message_done : 1;    /* whole request received */
    unsigned body_too_large : 1;
    unsigned body_taken : 1;      /* req:body() returned it */
    unsigned upgrade : 1;         /* Upgrade request (WebSocket) */
    unsigned handler_running : 1; /* its coroutine has not finished */
    unsigned close_after : 1;     /* close once the response is out */
    unsigned res_chunked : 1;     /* body framed as chunks */
    unsigned hpacked : 1;         /* hdrs and hbuf share one block (compact) */
    long long content_length;     /* declared length, -1 when none */

    struct mw_buf body;    /* received body bytes not yet consumed */
    size_t body_received;  /* total body bytes seen */
    size_t body_limit;     /* max_body_bytes for this request's route */

    struct mw_response res;
    long long res_remaining; /* bytes left of a declared Content-Length, -1 if none */

    struct mw_stream *stream; /* res:sse() turned the response into an event stream */
    struct mw_co *waiter;  /* coroutine parked on this request */
};

void mw_http_conn_init(struct mw_conn *conn);
/* Frees the parser once nothing parses HTTP on conn again (an SSE stream or
 * a WebSocket owns it, or it is closing): long-lived connections should
 * not carry it. Not while a parser runs on the connection. */
void mw_http_conn_trim(struct mw_conn *conn);
/* New bytes arrived in conn->rbuf. May run Lua (not from inside a resume). */
void mw_http_feed(struct mw_conn *conn);
/* The client closed its side (EOF). */
void mw_http_eof(struct mw_conn *conn);
/* The connection is closing: detach the request, wake its waiter. */
void mw_http_conn_closed(struct mw_conn *conn);
/* A header or idle timer fired. */
void mw_http_timeout(struct mw_conn *conn, int kind);
/* The write queue made progress (for writers waiting on drain). */
void mw_http_drained(struct mw_conn *conn);

/* Response API used by the Lua bindings. Each returns 0 or a negative
 * MW_E* code; none of them calls into Lua. */
enum {
    MW_EGONE = -1000, /* the client left */
    MW_EDONE,         /* response already complete */
    MW_ESTARTED,      /* head already sent */
    MW_ELENGTH,       /* more bytes than the declared Content-Length */
    MW_ESTREAM,       /* the response is an SSE stream: bytes go through it */
};
int mw_req_send(struct mw_req *req, const char *body, size_t len);
int mw_req_write(struct mw_req *req, const char *data, size_t len);
int mw_req_finish(struct mw_req *req);
/* Sends 100 Continue if the client waits for it and it was not sent yet. */
void mw_req_continue(struct mw_req *req);
/* Ends a started response abnormally: the client sees truncation. */
void mw_req_abort(struct mw_req *req);
int mw_req_queue_full(const struct mw_req *req);
/* Frees the pool of finished requests; only after the Lua state is closed,
 * since handles may point into it until then. */
void mw_http_release_pool(void);
/* The request's id for logs and error pages ("prefix-seq"), in a buffer
 * that the next two calls reuse. */
const char *mw_req_id(struct mw_req *req);
const char *mw_req_id_of(struct mw_server *srv, uint64_t seq);
/* The handler's coroutine finished; frees the request if nothing holds it. */
void mw_req_handler_done(struct mw_req *req);
/* 1 if the header's comma-separated list holds `token` (any case). */
int mw_req_header_has_token(const struct mw_req *req, const char *lname, const char *token);
/* Header lookup by lower-case name; repeats joined by ", " into out. */
int mw_req_header(const struct mw_req *req, const char *lname, size_t nlen, struct mw_buf *out);
/* Starts an SSE response: the head (close-delimited body) and the stream.
 * The caller set the headers. */
struct mw_stream *mw_req_start_stream(struct mw_req *req, uint32_t heartbeat_ms,
                                      const char *last_event_id);
/* Answers a WebSocket handshake with 101 and the given extra header lines
 * ("Name: value\r\n"...), and takes the connection out of HTTP: the
 * request is over (the caller copied what it keeps of it, head.h). */
void mw_req_upgrade(struct mw_req *req, const char *extra_headers, size_t len);
/* Ends a stream's response; the connection closes once the queue drains. */
void mw_req_finish_stream(struct mw_req *req);
/* The first value of query parameter `name` (decoded), appended to out. */
int mw_req_query_value(const struct mw_req *req, const char *name, struct mw_buf *out);
/* Parks `co` on req until the wait kind is satisfied or the client leaves. */
void mw_req_park(struct mw_req *req, struct mw_co *co, int wait);

#endif
