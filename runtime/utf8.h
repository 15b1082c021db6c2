/* utf8.h - incremental UTF-8 validation (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). Pure. The state survives across
 * calls, so text split at any byte (WebSocket fragments) validates as it
 * arrives. */
#ifndef MW_UTF8_H
#define MW_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum { MW_UTF8_ACCEPT = 0, MW_UTF8_REJECT = 1 };

struct mw_utf8 {
    uint32_t state; /* MW_UTF8_ACCEPT between characters */
};

static inline void mw_utf8_init(struct mw_utf8 *u)
{
    u->state = MW_UTF8_ACCEPT;
}

/* Feeds bytes; returns 0 while valid so far, -1 once invalid (sticky). */
int mw_utf8_feed(struct mw_utf8 *u, const void *data, size_t len);
/* 1 if the input ended on a character boundary. */
static inline int mw_utf8_complete(const struct mw_utf8 *u)
{
    return u->state == MW_UTF8_ACCEPT;
}
/* Whole-buffer check: 1 if valid and complete. */
int mw_utf8_valid(const void *data, size_t len);

#endif
