/* deflate.h - permessage-deflate (RFC 7692): negotiation and the
 * compression of whole messages. Pure: zlib, no libuv, no Lua.
 *
 * moonwire never takes over context between messages, in either
 * direction: it answers with server_no_context_takeover and
 * client_no_context_takeover. Every compressed message then stands alone,
 * so one process-wide zlib stream per direction serves every connection
 * (no 300 KiB of zlib state per socket), and a hub message compressed
 * once is valid on every connection that negotiated the extension. */
#ifndef MW_DEFLATE_H
#define MW_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct mw_pmd {
    uint8_t enabled;
    uint8_t server_window_bits; /* our deflate window (9..15) */
};

/* Picks the first acceptable offer in a Sec-WebSocket-Extensions value.
 * On success fills pmd, appends the response header value to `response`
 * and returns 1; returns 0 when no offer is acceptable (the connection
 * then goes uncompressed). */
int mw_pmd_negotiate(const char *offers, size_t len, struct mw_pmd *pmd, struct mw_buf *response);

enum { MW_PMD_OK = 0, MW_PMD_TOO_BIG = -1, MW_PMD_BAD_DATA = -2 };

/* Compresses a whole message payload (appended to out, without the
 * trailing 00 00 ff ff). */
int mw_pmd_compress(const void *in, size_t len, int window_bits, struct mw_buf *out);
/* Decompresses a whole message; more than max_out bytes of output stops
 * with MW_PMD_TOO_BIG (no zip bombs). */
int mw_pmd_decompress(const void *in, size_t len, size_t max_out, struct mw_buf *out);
/* Frees the process-wide zlib streams (exit). */
void mw_pmd_shutdown(void);

#endif
