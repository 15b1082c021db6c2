/* sse.h - Server-Sent Events encoding (WHATWG HTML, "event stream"). Pure:
 * no libuv, no Lua. Data is split into one "data:" line per line of the
 * text at every CRLF, CR or LF, so what the client reassembles is exactly
 * what was sent (with CRLF and CR normalized to LF, as the format demands). */
#ifndef MW_SSE_H
#define MW_SSE_H

#include <stddef.h>

#include "buf.h"

struct mw_sse_event {
    const char *data;  /* may be NULL: no data lines */
    size_t data_len;
    const char *event; /* NULL: the default "message" */
    size_t event_len;
    const char *id;    /* NULL: no id line */
    size_t id_len;
    long long retry_ms; /* < 0: no retry line */
};

/* 1 if s may be an event name or id: no CR, LF or NUL. */
int mw_sse_field_ok(const char *s, size_t len);
/* Appends the event's lines and the blank line that dispatches it. The
 * caller checked the fields with mw_sse_field_ok. */
void mw_sse_encode(struct mw_buf *out, const struct mw_sse_event *ev);
/* Appends a comment (one ":" line per line of text), ignored by clients. */
void mw_sse_comment(struct mw_buf *out, const char *text, size_t len);

#endif
