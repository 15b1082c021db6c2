/* url.h - request-target handling: percent-decoding, path segments, query
 * strings. Pure: no libuv, no Lua. Routing works on the segments this
 * produces, so "%2F" never splits and ".." can never climb above "/". */
#ifndef MW_URL_H
#define MW_URL_H

#include <stddef.h>

#include "buf.h"

enum {
    MW_URL_OK = 0,
    MW_URL_EBADESCAPE = -1, /* "%" not followed by two hex digits */
    MW_URL_ENUL = -2,       /* "%00" */
    MW_URL_EABOVEROOT = -3, /* ".." past "/" */
    MW_URL_EFORM = -4       /* not origin-form, absolute-form or "*" */
};

struct mw_span {
    size_t off; /* into the owning buffer */
    size_t len;
};

/* The decoded path of a request target. `text` holds the decoded path
 * ("/a/b c/"), and each segment is a span into it. */
struct mw_path {
    struct mw_buf text;
    struct mw_span *segs;
    size_t nsegs, cap;
    int trailing_slash; /* the path ends in "/" after a non-empty segment */
};

void mw_path_init(struct mw_path *p);
void mw_path_free(struct mw_path *p);
/* Splits the path part of `target` (query and fragment ignored) into
 * decoded segments, resolving "." and "..". Returns MW_URL_OK or an error. */
int mw_path_parse(struct mw_path *p, const char *target, size_t len);
const char *mw_url_strerror(int err);

/* Decodes %XX escapes (and '+' as space when plus_as_space) from `in` into
 * `out`, which needs room for len bytes. Strict mode fails on a bad escape;
 * lenient mode keeps it literally, as browsers do for query strings. */
int mw_url_decode(const char *in, size_t len, char *out, size_t *outlen, int plus_as_space,
                  int strict);

/* Returns the query part of a request target (after '?', before '#'), or
 * NULL with *len = 0 when there is none. */
const char *mw_url_query(const char *target, size_t len, size_t *qlen);

/* Iterates "k=v&k2=v2" pairs: returns 1 and fills raw spans (relative to
 * qs) for the next non-empty pair, 0 at the end. */
int mw_query_next(const char *qs, size_t len, size_t *pos, struct mw_span *key,
                  struct mw_span *val);

/* Appends the decoded first value of `name` in qs to out; 1 if found. */
int mw_query_find(const char *qs, size_t len, const char *name, struct mw_buf *out);

#endif
