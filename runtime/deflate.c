/* deflate.c - permessage-deflate negotiation and whole-message zlib. */
#include "deflate.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* ----------------------------------------------------------- negotiation */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static size_t trim(const char **s, size_t len)
{
    while (len && is_space(**s)) (*s)++, len--;
    while (len && is_space((*s)[len - 1])) len--;
    return len;
}

static int name_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

/* Window bits in "8".."15" (quotes allowed); -1 if malformed. */
static int parse_bits(const char *v, size_t len)
{
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') v++, len -= 2;
    if (len == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
    return -1;
}

/* One offer: "permessage-deflate; a; b=c". Returns 1 if acceptable. */
static int try_offer(const char *s, size_t len, struct mw_pmd *pmd, struct mw_buf *response)
{
    const char *end = s + len;
    const char *semi = memchr(s, ';', len);
    const char *name = s;
    size_t nlen = trim(&name, (size_t)((semi ? semi : end) - s));
    if (!name_is(name, nlen, "permessage-deflate")) return 0;
    int seen_snct = 0, seen_cnct = 0, seen_smwb = 0, seen_cmwb = 0;
    int server_bits = 15;
    const char *p = semi ? semi + 1 : end;
    while (p < end) {
        const char *q = memchr(p, ';', (size_t)(end - p));
        const char *param = p;
        size_t plen = trim(&param, (size_t)((q ? q : end) - p));
        p = q ? q + 1 : end;
        if (!plen) return 0;
        const char *eq = memchr(param, '=', plen);
        const char *key = param, *val = NULL;
        size_t klen = plen, vlen = 0;
        if (eq) {
            klen = (size_t)(eq - param);
            val = eq + 1;
            vlen = plen - klen - 1;
            klen = trim(&key, klen);
            vlen = trim(&val, vlen);
        }
        if (name_is(key, klen, "server_no_context_takeover")) {
            if (val || seen_snct++) return 0;
        } else if (name_is(key, klen, "client_no_context_takeover")) {
            if (val || seen_cnct++) return 0;
        } else if (name_is(key, klen, "server_max_window_bits")) {
            if (!val || seen_smwb++) return 0;
            server_bits = parse_bits(val, vlen);
            /* zlib cannot make a raw deflate stream with an 8-bit window */
            if (server_bits < 9) return 0;
        } else if (name_is(key, klen, "client_max_window_bits")) {
            /* we inflate with a full window, so any client window is fine */
            if (seen_cmwb++ || (val && parse_bits(val, vlen) < 0)) return 0;
        } else {
            return 0; /* an unknown parameter makes the offer unacceptable */
        }
    }
    pmd->enabled = 1;
    pmd->server_window_bits = (uint8_t)server_bits;
    mw_buf_appends(response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if (seen_smwb) mw_buf_appendf(response, "; server_max_window_bits=%d", server_bits);
    return 1;
}

int mw_pmd_negotiate(const char *offers, size_t len, struct mw_pmd *pmd, struct mw_buf *response)
{
    memset(pmd, 0, sizeof *pmd);
    /* offers are separated by commas outside quoted values */
    size_t start = 0;
    int quoted = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && offers[i] == '"') quoted = !quoted;
        if (i == len || (offers[i] == ',' && !quoted)) {
            if (try_offer(offers + start, i - start, pmd, response)) return 1;
            start = i + 1;
        }
    }
    return 0;
}

/* ----------------------------------------------------------- compression */

static _Thread_local z_stream deflaters[16]; /* by window bits; used ones have state */
static _Thread_local int deflater_ready[16];
static _Thread_local z_stream inflater;
static _Thread_local int inflater_ready;

int mw_pmd_compress(const void *in, size_t len, int window_bits, struct mw_buf *out)
{
    if (window_bits < 9 || window_bits > 15) window_bits = 15;
    z_stream *z = &deflaters[window_bits];
    if (!deflater_ready[window_bits]) {
        memset(z, 0, sizeof *z);
        if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return MW_PMD_BAD_DATA;
        deflater_ready[window_bits] = 1;
    } else {
        deflateReset(z);
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    size_t start = out->len;
    do {
        size_t room = deflateBound(z, (uLong)z->avail_in) + 16;
        z->next_out = (Bytef *)mw_buf_reserve(out, room);
        z->avail_out = (uInt)room;
        deflate(z, Z_SYNC_FLUSH);
        out->len += room - z->avail_out;
    } while (z->avail_out == 0 || z->avail_in > 0);
    /* a sync flush ends in 00 00 ff ff, which the extension leaves out */
    if (out->len - start >= 4 && memcmp(out->data + out->len - 4, "\0\0\xff\xff", 4) == 0)
        out->len -= 4;
    return MW_PMD_OK;
}

int mw_pmd_decompress(const void *in, size_t len, size_t max_out, struct mw_buf *out)
{
    z_stream *z = &inflater;
    if (!inflater_ready) {
        memset(z, 0, sizeof *z);
        if (inflateInit2(z, -15) != Z_OK) return MW_PMD_BAD_DATA;
        inflater_ready = 1;
    } else {
        inflateReset(z);
    }
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    size_t start = out->len;
    for (int part = 0; part < 2; part++) {
        z->next_in = part ? (Bytef *)tail : (Bytef *)in;
        z->avail_in = part ? 4 : (uInt)len;
        do {
            size_t room = 16384;
            z->next_out = (Bytef *)mw_buf_reserve(out, room);
            z->avail_out = (uInt)room;
            int rc = inflate(z, Z_SYNC_FLUSH);
            out->len += room - z->avail_out;
            if (out->len - start > max_out) return MW_PMD_TOO_BIG;
            if (rc == Z_STREAM_END) return MW_PMD_OK;
            if (rc == Z_BUF_ERROR) break; /* no progress possible: needs the next input */
            if (rc != Z_OK) return MW_PMD_BAD_DATA;
        } while (z->avail_in > 0 || z->avail_out == 0);
    }
    return MW_PMD_OK;
}

void mw_pmd_shutdown(void)
{
    for (int i = 0; i < 16; i++)
        if (deflater_ready[i]) {
            deflateEnd(&deflaters[i]);
            deflater_ready[i] = 0;
        }
    if (inflater_ready) {
        inflateEnd(&inflater);
        inflater_ready = 0;
    }
}
