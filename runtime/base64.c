/* base64.c - base64 through libcrypto's block encoder. */
#include "base64.h"

#include <openssl/evp.h>

void mw_base64_append(struct mw_buf *b, const void *data, size_t len)
{
    /* EVP_EncodeBlock counts in int: whole groups of three at a time */
    enum { CHUNK = 3 << 20 };
    const unsigned char *p = data;
    do {
        size_t n = len < CHUNK ? len : CHUNK;
        char *dst = mw_buf_reserve(b, 4 * ((n + 2) / 3) + 1);
        b->len += (size_t)EVP_EncodeBlock((unsigned char *)dst, p, (int)n);
        p += n;
        len -= n;
    } while (len);
}
