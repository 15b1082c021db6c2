/* limits.h - every size and time limit in one place, with units in names.
 * The defaults are the public ones from DESIGN.md; `mw.app{...}` overrides
 * the configurable ones (struct mw_limits). */
#ifndef MW_LIMITS_H
#define MW_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define MW_DEFAULT_MAX_HEADER_BYTES  (16 * 1024)
#define MW_DEFAULT_MAX_BODY_BYTES    (1024 * 1024)
#define MW_DEFAULT_HEADER_TIMEOUT_MS 10000
#define MW_DEFAULT_IDLE_TIMEOUT_MS   60000
#define MW_DEFAULT_SEND_TIMEOUT_MS   60000
#define MW_DEFAULT_MAX_QUEUED_BYTES  (4 * 1024 * 1024)
#define MW_DEFAULT_MAX_MESSAGE_BYTES (16 * 1024 * 1024)
#define MW_DEFAULT_SHUTDOWN_MS       10000

#define MW_READ_CHUNK_BYTES   65536 /* room offered to each read */
#define MW_READ_BACKLOG_BYTES 65536 /* unparsed bytes held before reading pauses */
#define MW_LINGER_MS          2000  /* reading after FIN so the client sees our reply */
#define MW_LISTEN_BACKLOG     1024
#define MW_SWEEP_BUDGET       256   /* connections' deferred work per sweep */

struct mw_limits {
    size_t max_header_bytes;   /* request line + headers: 431 */
    size_t max_body_bytes;     /* request body, default for routes: 413 */
    uint64_t header_timeout_ms; /* first byte to end of headers: 408 */
    uint64_t idle_timeout_ms;   /* keep-alive wait, and no progress on a body */
    uint64_t send_timeout_ms;   /* a writer waiting on a client that reads nothing */
    size_t max_queued_bytes;   /* bytes queued to one client */
    size_t max_message_bytes;  /* WebSocket message */
    uint64_t shutdown_ms;      /* graceful shutdown budget */
};

static inline void mw_limits_defaults(struct mw_limits *l)
{
    l->max_header_bytes = MW_DEFAULT_MAX_HEADER_BYTES;
    l->max_body_bytes = MW_DEFAULT_MAX_BODY_BYTES;
    l->header_timeout_ms = MW_DEFAULT_HEADER_TIMEOUT_MS;
    l->idle_timeout_ms = MW_DEFAULT_IDLE_TIMEOUT_MS;
    l->send_timeout_ms = MW_DEFAULT_SEND_TIMEOUT_MS;
    l->max_queued_bytes = MW_DEFAULT_MAX_QUEUED_BYTES;
    l->max_message_bytes = MW_DEFAULT_MAX_MESSAGE_BYTES;
    l->shutdown_ms = MW_DEFAULT_SHUTDOWN_MS;
}

#endif
