/* sse.c - event-stream encoding. */
#include "sse.h"

#include <stdio.h>
#include <string.h>

int mw_sse_field_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
    return 1;
}

/* Appends `prefix` + each line of text + "\n"; lines end at CRLF, CR or LF. */
static void put_lines(struct mw_buf *out, const char *prefix, size_t plen, const char *s,
                      size_t len)
{
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && s[j] != '\r' && s[j] != '\n') j++;
        mw_buf_append(out, prefix, plen);
        mw_buf_append(out, s + i, j - i);
        mw_buf_appendc(out, '\n');
        if (j >= len) break;
        if (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n') j++;
        i = j + 1;
        if (i == len) {
            /* text ending in a newline: the last line is empty */
            mw_buf_append(out, prefix, plen);
            mw_buf_appendc(out, '\n');
            break;
        }
    }
}

void mw_sse_encode(struct mw_buf *out, const struct mw_sse_event *ev)
{
    if (ev->id) {
        mw_buf_append(out, "id: ", 4);
        mw_buf_append(out, ev->id, ev->id_len);
        mw_buf_appendc(out, '\n');
    }
    if (ev->event) {
        mw_buf_append(out, "event: ", 7);
        mw_buf_append(out, ev->event, ev->event_len);
        mw_buf_appendc(out, '\n');
    }
    if (ev->retry_ms >= 0) mw_buf_appendf(out, "retry: %lld\n", ev->retry_ms);
    if (ev->data) put_lines(out, "data: ", 6, ev->data, ev->data_len);
    mw_buf_appendc(out, '\n');
}

void mw_sse_comment(struct mw_buf *out, const char *text, size_t len)
{
    put_lines(out, ": ", 2, text, len);
}
