/* wq.c - write queue: coalescing, shared segments, try_write then write. */
#include "wq.h"
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define MW_WQ_CHUNK_BYTES 16384 /* small copies coalesce into chunks this big */
#define MW_WQ_SMALL_BYTES 256   /* a small copy behind other segments */
#define MW_WQ_MAX_IOV 64        /* segments per write call */
#define MW_WQ_SPARE_CHUNKS 64   /* chunks kept for reuse instead of freed */

/* Chunks of exactly MW_WQ_CHUNK_BYTES come and go with every response;
 * recycling them keeps malloc out of the hot path. */
static _Thread_local struct mw_shared *spare[MW_WQ_SPARE_CHUNKS];
static _Thread_local int nspare;

struct mw_shared *mw_shared_alloc(size_t len)
{
    struct mw_shared *s = mw_xmalloc(sizeof *s + len);
    s->refs = 1;
    s->writable = 0;
    s->len = len;
    return s;
}

static struct mw_shared *chunk_get(size_t cap)
{
    struct mw_shared *c = cap == MW_WQ_CHUNK_BYTES && nspare > 0 ? spare[--nspare] : mw_shared_alloc(cap);
    c->writable = 1;
    return c;
}

static void chunk_put(struct mw_shared *c)
{
    if (c->len == MW_WQ_CHUNK_BYTES && nspare < MW_WQ_SPARE_CHUNKS)
        spare[nspare++] = c;
    else
        free(c);
}

struct mw_shared *mw_shared_new(const void *data, size_t len)
{
    struct mw_shared *s = mw_shared_alloc(len);
    if (len) memcpy(s->data, data, len);
    return s;
}

void mw_shared_ref(struct mw_shared *s)
{
    s->refs++;
}

void mw_shared_unref(struct mw_shared *s)
{
    if (--s->refs == 0) free(s);
}

struct write_req {
    uv_write_t req;
    struct mw_wq *wq;
    mw_wq_done_cb on_done;
    size_t bytes;
    size_t nsegs;
    struct mw_seg segs[];
};

void mw_wq_init(struct mw_wq *wq)
{
    memset(wq, 0, sizeof *wq);
}

static void seg_release(struct mw_seg *s)
{
    if (s->buf->writable)
        chunk_put(s->buf);
    else
        mw_shared_unref(s->buf);
}

/* Pending-segment arrays: an idle connection holds none, and a busy one
 * borrows one of MW_WQ_SEGS_SMALL from this pool until its queue empties.
 * A publish to N subscribers borrows N at once, so the pool follows the
 * peak: what stayed unused for a whole trim interval is freed. */
#define MW_WQ_SEGS_SMALL 4
#define MW_WQ_TRIM_MS 10000
struct spare_array {
    struct spare_array *next; /* in the array's own first bytes */
};
static _Thread_local struct spare_array *spare_segs;
static _Thread_local size_t nspare_segs, spare_low;
static _Thread_local uint64_t spare_trim_at;

void mw_wq_trim(uint64_t now)
{
    if (now < spare_trim_at) return;
    for (; spare_low && spare_segs; spare_low--, nspare_segs--) {
        struct spare_array *s = spare_segs;
        spare_segs = s->next;
        free(s);
    }
    spare_low = nspare_segs;
    spare_trim_at = now + MW_WQ_TRIM_MS;
}

static void segs_put(struct mw_wq *wq)
{
    if (!wq->pending) return;
    if (wq->cap == MW_WQ_SEGS_SMALL) {
        struct spare_array *s = (struct spare_array *)(void *)wq->pending;
        s->next = spare_segs;
        spare_segs = s;
        nspare_segs++;
    } else {
        free(wq->pending);
    }
    wq->pending = NULL;
    wq->cap = 0;
}

static struct mw_seg *segs_take(void)
{
    struct spare_array *s = spare_segs;
    if (!s) return mw_xmalloc(MW_WQ_SEGS_SMALL * sizeof(struct mw_seg));
    spare_segs = s->next;
    if (--nspare_segs < spare_low) spare_low = nspare_segs;
    return (struct mw_seg *)(void *)s;
}

static struct mw_seg *push(struct mw_wq *wq)
{
    if (!wq->pending) {
        wq->pending = segs_take();
        wq->cap = MW_WQ_SEGS_SMALL;
    } else if (wq->npending == wq->cap) {
        wq->cap *= 2;
        wq->pending = mw_xrealloc(wq->pending, wq->cap * sizeof *wq->pending);
    }
    return &wq->pending[wq->npending++];
}

char *mw_wq_reserve(struct mw_wq *wq, size_t len)
{
    struct mw_seg *last = wq->npending ? &wq->pending[wq->npending - 1] : NULL;
    /* Only a pending segment's memory may grow: in-flight ones belong to libuv. */
    if (!last || !last->buf->writable || last->base != last->buf->data ||
        last->buf->len - last->len < len) {
        /* A fresh queue gets a pooled chunk that later small writes fill
         * (pipelined answers leave in one write). Behind other segments a
         * small copy (an SSE id line between shared events) gets just
         * what it needs: a backlog of them must not cost 16 KiB each. */
        size_t cap = len > MW_WQ_CHUNK_BYTES ? len : MW_WQ_CHUNK_BYTES;
        if (wq->npending && len < MW_WQ_SMALL_BYTES) cap = MW_WQ_SMALL_BYTES;
        last = push(wq);
        last->buf = chunk_get(cap);
        last->base = last->buf->data;
        last->len = 0;
    }
    char *dst = last->base + last->len;
    last->len += len;
    wq->queued_bytes += len;
    return dst;
}

void mw_wq_copy(struct mw_wq *wq, const void *data, size_t len)
{
    if (len) memcpy(mw_wq_reserve(wq, len), data, len);
}

void mw_wq_shared(struct mw_wq *wq, struct mw_shared *sh)
{
    if (!sh->len) return;
    struct mw_seg *s = push(wq);
    mw_shared_ref(sh);
    s->buf = sh;
    s->base = sh->data;
    s->len = sh->len;
    wq->queued_bytes += sh->len;
}

static int flush_pending(struct mw_wq *wq, uv_stream_t *stream, uv_buf_t *iov, mw_wq_done_cb on_done);

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct mw_wq *wq = w->wq;
    for (size_t i = 0; i < w->nsegs; i++) seg_release(&w->segs[i]);
    wq->queued_bytes -= w->bytes;
    wq->writes_in_flight--;
    mw_wq_done_cb on_done = w->on_done;
    free(w);
    if (on_done) on_done(wq, status);
}

/* Drops the first `n` bytes of pending data, which reached the socket. */
static void advance(struct mw_wq *wq, size_t n)
{
    size_t i = 0;
    wq->queued_bytes -= n;
    while (i < wq->npending && n >= wq->pending[i].len) {
        n -= wq->pending[i].len;
        seg_release(&wq->pending[i]);
        i++;
    }
    if (i < wq->npending && n) {
        wq->pending[i].base += n;
        wq->pending[i].len -= n;
    }
    memmove(wq->pending, wq->pending + i, (wq->npending - i) * sizeof *wq->pending);
    wq->npending -= i;
}

int mw_wq_flush(struct mw_wq *wq, uv_stream_t *stream, mw_wq_done_cb on_done)
{
    uv_buf_t iov[MW_WQ_MAX_IOV];
    int rc = flush_pending(wq, stream, iov, on_done);
    if (wq->npending == 0) segs_put(wq);
    return rc;
}

static int flush_pending(struct mw_wq *wq, uv_stream_t *stream, uv_buf_t *iov, mw_wq_done_cb on_done)
{
    while (wq->npending) {
        size_t n = wq->npending < MW_WQ_MAX_IOV ? wq->npending : MW_WQ_MAX_IOV;
        size_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            iov[i] = uv_buf_init(wq->pending[i].base, (unsigned)wq->pending[i].len);
            bytes += wq->pending[i].len;
        }
        if (!wq->writes_in_flight) {
            int w = uv_try_write(stream, iov, (unsigned)n);
            if (w < 0 && w != UV_EAGAIN) return w;
            if (w > 0) {
                advance(wq, (size_t)w);
                if ((size_t)w == bytes) continue;
                /* the socket is full: queue the rest */
                n = wq->npending < MW_WQ_MAX_IOV ? wq->npending : MW_WQ_MAX_IOV;
                bytes = 0;
                for (size_t i = 0; i < n; i++) {
                    iov[i] = uv_buf_init(wq->pending[i].base, (unsigned)wq->pending[i].len);
                    bytes += wq->pending[i].len;
                }
            }
        }
        struct write_req *w = mw_xmalloc(sizeof *w + n * sizeof(struct mw_seg));
        w->wq = wq;
        w->on_done = on_done;
        w->bytes = bytes;
        w->nsegs = n;
        memcpy(w->segs, wq->pending, n * sizeof(struct mw_seg));
        int rc = uv_write(&w->req, stream, iov, (unsigned)n, on_write);
        if (rc) {
            free(w);
            return rc;
        }
        wq->writes_in_flight++;
        memmove(wq->pending, wq->pending + n, (wq->npending - n) * sizeof *wq->pending);
        wq->npending -= n;
    }
    return 0;
}

int mw_wq_idle(const struct mw_wq *wq)
{
    return wq->npending == 0 && wq->writes_in_flight == 0;
}

void mw_wq_free(struct mw_wq *wq)
{
    for (size_t i = 0; i < wq->npending; i++) {
        wq->queued_bytes -= wq->pending[i].len;
        seg_release(&wq->pending[i]);
    }
    segs_put(wq);
    wq->npending = 0;
}
