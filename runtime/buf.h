/* buf.h - a growable byte buffer.
 * Owns its memory; pure (no libuv, no Lua). Allocation failure aborts:
 * the runtime treats out-of-memory in C as fatal, as Lua does for its own. */
#ifndef MW_BUF_H
#define MW_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct mw_buf {
    char *data;  /* NULL until the first append */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated */
};

void mw_buf_init(struct mw_buf *b);
void mw_buf_free(struct mw_buf *b);
/* Makes room for `extra` more bytes and returns where they go. */
char *mw_buf_reserve(struct mw_buf *b, size_t extra);
void mw_buf_append(struct mw_buf *b, const void *data, size_t len);
void mw_buf_appends(struct mw_buf *b, const char *s);
void mw_buf_appendc(struct mw_buf *b, char c);
void mw_buf_appendf(struct mw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mw_buf_vappendf(struct mw_buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes, keeping the rest. */
void mw_buf_consume(struct mw_buf *b, size_t n);
/* Hands the memory to the caller and leaves the buffer empty. */
char *mw_buf_steal(struct mw_buf *b, size_t *len);

void *mw_xmalloc(size_t n);
void *mw_xcalloc(size_t n, size_t size);
void *mw_xrealloc(void *p, size_t n);
char *mw_xstrndup(const char *s, size_t n);

/* Writes v's decimal digits so that they end just before `end`; returns
 * where they start (a buffer of 20 bytes before end holds any). */
static inline char *mw_fmt_u64(char *end, unsigned long long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

#endif
