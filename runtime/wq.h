/* wq.h - a connection's write queue. Segments are copied bytes (small ones
 * coalesced) or references to shared, refcounted buffers that many
 * connections send at once (hub fan-out). A flush tries uv_try_write first
 * and hands the rest to one uv_write; the write request owns its segments
 * until its callback, which copes with UV_ECANCELED. */
#ifndef MW_WQ_H
#define MW_WQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Immutable bytes shared by reference count. The write queue also keeps
 * the bytes it copies in these (`writable`: still being filled, never
 * shared), so a segment is one pointer whatever its bytes are. */
struct mw_shared {
    int refs;
    int writable;
    size_t len;
    char data[];
};

struct mw_shared *mw_shared_new(const void *data, size_t len);
/* A shared buffer of len bytes for the caller to fill before sharing. */
struct mw_shared *mw_shared_alloc(size_t len);
void mw_shared_ref(struct mw_shared *s);
void mw_shared_unref(struct mw_shared *s);

struct mw_seg {
    char *base;            /* start of the unsent bytes, inside buf */
    size_t len;            /* unsent bytes */
    struct mw_shared *buf; /* referenced bytes, or a writable chunk of copies */
};

struct mw_wq;
typedef void (*mw_wq_done_cb)(struct mw_wq *wq, int status);


struct mw_wq {
    struct mw_seg *pending; /* not yet handed to libuv; NULL while there is none */
    uint32_t npending, cap;
    size_t queued_bytes;    /* pending + in flight, not yet on the socket */
    uint32_t writes_in_flight; /* uv_write requests not yet called back */
};

void mw_wq_init(struct mw_wq *wq);
/* Copies len bytes into the queue. */
void mw_wq_copy(struct mw_wq *wq, const void *data, size_t len);
/* Reserves len bytes at the end of the queue for the caller to fill. */
char *mw_wq_reserve(struct mw_wq *wq, size_t len);
/* Queues a reference to s (the queue takes its own ref). */
void mw_wq_shared(struct mw_wq *wq, struct mw_shared *s);
/* Sends what is pending. Returns 0 or a libuv error (the socket is dead;
 * the caller closes the connection). on_done runs as each uv_write it
 * started completes. */
int mw_wq_flush(struct mw_wq *wq, uv_stream_t *stream, mw_wq_done_cb on_done);
int mw_wq_idle(const struct mw_wq *wq);
/* Drops pending segments (the connection is closing). */
void mw_wq_free(struct mw_wq *wq);
/* Frees pooled segment arrays unused since the last trim, at most every
 * few seconds (loop time `now`). */
void mw_wq_trim(uint64_t now);

#endif
