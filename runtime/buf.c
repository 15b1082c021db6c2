/* buf.c - growable byte buffer and checked allocation helpers. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fputs("moonwire: out of memory\n", stderr);
    abort();
}

void *mw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

void *mw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom();
    return p;
}

void *mw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom();
    return q;
}

char *mw_xstrndup(const char *s, size_t n)
{
    char *p = mw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void mw_buf_init(struct mw_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void mw_buf_free(struct mw_buf *b)
{
    free(b->data);
    mw_buf_init(b);
}

char *mw_buf_reserve(struct mw_buf *b, size_t extra)
{
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < extra) cap *= 2;
        b->data = mw_xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void mw_buf_append(struct mw_buf *b, const void *data, size_t len)
{
    if (!len) return;
    memcpy(mw_buf_reserve(b, len), data, len);
    b->len += len;
}

void mw_buf_appends(struct mw_buf *b, const char *s)
{
    mw_buf_append(b, s, strlen(s));
}

void mw_buf_appendc(struct mw_buf *b, char c)
{
    *mw_buf_reserve(b, 1) = c;
    b->len++;
}

void mw_buf_vappendf(struct mw_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0) return;
    char *dst = mw_buf_reserve(b, (size_t)n + 1);
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void mw_buf_appendf(struct mw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mw_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void mw_buf_consume(struct mw_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

char *mw_buf_steal(struct mw_buf *b, size_t *len)
{
    char *p = b->data;
    if (len) *len = b->len;
    mw_buf_init(b);
    return p;
}
