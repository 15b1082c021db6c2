/* response.h - the head of an HTTP response: status, header validation and
 * storage (replace / add semantics), serialization with Date, Server,
 * Content-Length or chunked framing, and Connection. Pure: no libuv, no Lua. */
#ifndef MW_RESPONSE_H
#define MW_RESPONSE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

struct mw_header {
    uint32_t name_off, name_len; /* into mw_response.store */
    uint32_t value_off, value_len;
    int removed; /* replaced by a later header() call */
};

struct mw_response {
    int status;
    uint32_t nhdrs, cap;
    struct mw_buf store;
    struct mw_header *hdrs;
};

/* How the body is framed and whether the connection survives. */
struct mw_head_opts {
    long long content_length; /* >= 0: send it; -1: none (chunked or close-delimited) */
    int chunked;              /* add Transfer-Encoding: chunked */
    int close;                /* add Connection: close */
    int keep_alive_10;        /* HTTP/1.0 keep-alive: add Connection: keep-alive */
    const char *date;         /* preformatted IMF-fixdate */
};

void mw_response_init(struct mw_response *r);
void mw_response_reset(struct mw_response *r);
void mw_response_free(struct mw_response *r);

/* RFC 9110 token characters for names; values may hold any byte but CR,
 * LF and NUL (obs-text included, as browsers send it). */
int mw_header_name_ok(const char *name, size_t len);
int mw_header_value_ok(const char *value, size_t len);

/* Stores a header. With replace, earlier headers of the same name (any
 * case) are dropped first. The caller validated name and value. */
void mw_response_add(struct mw_response *r, const char *name, size_t nlen, const char *value,
                     size_t vlen, int replace);
/* Returns the value of the last header named `name` (any case), or NULL. */
const char *mw_response_get(const struct mw_response *r, const char *name, size_t *vlen);
void mw_response_remove(struct mw_response *r, const char *name);

const char *mw_status_reason(int status);
/* Statuses that never carry a body: 1xx, 204, 304. */
int mw_status_bodyless(int status);
/* Writes the status line and all headers, ending with the blank line. */
void mw_response_head(const struct mw_response *r, const struct mw_head_opts *o, struct mw_buf *out);
/* Formats t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); buf needs 32 bytes. */
void mw_http_date(time_t t, char *buf);

#endif
