/* test_deflate.c - permessage-deflate (RFC 7692): the negotiation of every
 * parameter a client may offer, with the exact response value; whole-
 * message compression checked against zlib itself, each window size;
 * decompression bounded by its limit (a zip bomb stops early) and
 * corrupt input refused. */
#include "t.h"
#include "buf.h"
#include "deflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#define BASE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* ---------------------------------------------------------- negotiation */

struct offer_case {
    const char *offer;
    const char *response; /* NULL: refused */
    int bits;             /* server window bits when accepted */
};

static const struct offer_case offers[] = {
    /* the bare offer, and each parameter alone */
    {"permessage-deflate", BASE, 15},
    {"permessage-deflate; server_no_context_takeover", BASE, 15},
    {"permessage-deflate; client_no_context_takeover", BASE, 15},
    {"permessage-deflate; client_max_window_bits", BASE, 15},
    {"permessage-deflate; client_max_window_bits=8", BASE, 15},
    {"permessage-deflate; client_max_window_bits=9", BASE, 15},
    {"permessage-deflate; client_max_window_bits=12", BASE, 15},
    {"permessage-deflate; client_max_window_bits=15", BASE, 15},
    {"permessage-deflate; server_max_window_bits=9", BASE "; server_max_window_bits=9", 9},
    {"permessage-deflate; server_max_window_bits=10", BASE "; server_max_window_bits=10", 10},
    {"permessage-deflate; server_max_window_bits=11", BASE "; server_max_window_bits=11", 11},
    {"permessage-deflate; server_max_window_bits=12", BASE "; server_max_window_bits=12", 12},
    {"permessage-deflate; server_max_window_bits=13", BASE "; server_max_window_bits=13", 13},
    {"permessage-deflate; server_max_window_bits=14", BASE "; server_max_window_bits=14", 14},
    {"permessage-deflate; server_max_window_bits=15", BASE "; server_max_window_bits=15", 15},
    /* zlib makes no raw deflate stream with an 8-bit window: refused */
    {"permessage-deflate; server_max_window_bits=8", NULL, 0},
    /* everything together, as browsers and libraries send it */
    {"permessage-deflate; client_max_window_bits", BASE, 15},
    {"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=11",
     BASE "; server_max_window_bits=10", 10},
    {"permessage-deflate;client_max_window_bits;server_max_window_bits=12",
     BASE "; server_max_window_bits=12", 12},
    /* quoted values (RFC 7692 7.1: quoted-string allowed) */
    {"permessage-deflate; server_max_window_bits=\"10\"", BASE "; server_max_window_bits=10", 10},
    {"permessage-deflate; client_max_window_bits=\"15\"", BASE, 15},
    {"permessage-deflate; server_max_window_bits=\"8\"", NULL, 0},
    {"permessage-deflate; server_max_window_bits=\"1,0\"", NULL, 0},
    /* whitespace around names, semicolons and '=' */
    {"  permessage-deflate ;  client_max_window_bits ; server_max_window_bits = 11 ",
     BASE "; server_max_window_bits=11", 11},
    {"permessage-deflate\t;\tserver_no_context_takeover", BASE, 15},
    /* names are case-insensitive tokens */
    {"PerMessage-Deflate; Server_Max_Window_Bits=13", BASE "; server_max_window_bits=13", 13},
    /* malformed values */
    {"permessage-deflate; server_max_window_bits", NULL, 0},
    {"permessage-deflate; server_max_window_bits=", NULL, 0},
    {"permessage-deflate; server_max_window_bits=7", NULL, 0},
    {"permessage-deflate; server_max_window_bits=16", NULL, 0},
    {"permessage-deflate; server_max_window_bits=010", NULL, 0},
    {"permessage-deflate; server_max_window_bits=09", NULL, 0},
    {"permessage-deflate; server_max_window_bits=1O", NULL, 0},
    {"permessage-deflate; server_max_window_bits=\"12", NULL, 0},
    {"permessage-deflate; client_max_window_bits=7", NULL, 0},
    {"permessage-deflate; client_max_window_bits=16", NULL, 0},
    {"permessage-deflate; client_max_window_bits=x", NULL, 0},
    {"permessage-deflate; server_no_context_takeover=1", NULL, 0},
    {"permessage-deflate; client_no_context_takeover=\"\"", NULL, 0},
    /* duplicates make an offer unacceptable */
    {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL, 0},
    {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", NULL, 0},
    {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", NULL, 0},
    {"permessage-deflate; client_max_window_bits; client_max_window_bits=10", NULL, 0},
    /* unknown parameters too */
    {"permessage-deflate; foo", NULL, 0},
    {"permessage-deflate; foo=1", NULL, 0},
    {"permessage-deflate; server_no_context_takeover; x-extra", NULL, 0},
    /* empty parameters, other extensions, nothing */
    {"permessage-deflate;", BASE, 15}, /* a trailing ';' is tolerated */
    {"permessage-deflate; ; client_max_window_bits", NULL, 0},
    {"x-webkit-deflate-frame", NULL, 0},
    {"permessage-deflatex", NULL, 0},
    {"deflate", NULL, 0},
    {"", NULL, 0},
    {",", NULL, 0},
    /* several offers: the first acceptable one wins */
    {"permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=12",
     BASE "; server_max_window_bits=12", 12},
    {"permessage-deflate; foo, permessage-deflate", BASE, 15},
    {"permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
     "permessage-deflate; client_max_window_bits",
     BASE, 15},
    {"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9",
     BASE "; server_max_window_bits=9", 9},
    {"permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=11",
     BASE "; server_max_window_bits=10", 10},
    {"permessage-deflate; server_max_window_bits=\"8,9\", permessage-deflate; "
     "server_max_window_bits=14",
     BASE "; server_max_window_bits=14", 14},
    {"permessage-deflate; foo, permessage-deflate; bar", NULL, 0},
    {"foo, bar; baz=1", NULL, 0},
};

static void test_negotiation(void)
{
    for (size_t i = 0; i < sizeof offers / sizeof offers[0]; i++) {
        const struct offer_case *c = &offers[i];
        struct mw_pmd pmd;
        memset(&pmd, 0x5a, sizeof pmd); /* negotiate must set every field */
        struct mw_buf resp;
        mw_buf_init(&resp);
        mw_buf_appends(&resp, "<"); /* appends after what is there */
        int ok = mw_pmd_negotiate(c->offer, strlen(c->offer), &pmd, &resp);
        mw_buf_appendc(&resp, '\0');
        if (c->response) {
            char want[512];
            snprintf(want, sizeof want, "<%s", c->response);
            CHECK(ok == 1);
            CHECK_STR(resp.data, want);
            CHECK(pmd.enabled == 1 && pmd.server_window_bits == c->bits);
        } else {
            CHECK(ok == 0);
            CHECK_STR(resp.data, "<");
            CHECK(pmd.enabled == 0);
        }
        if (ok != (c->response != NULL)) fprintf(stderr, "  offer: %s\n", c->offer);
        mw_buf_free(&resp);
    }

    /* the value need not be NUL-terminated: only len bytes count */
    const char *s = "permessage-deflate; server_max_window_bits=10XXXX";
    struct mw_pmd pmd;
    struct mw_buf resp;
    mw_buf_init(&resp);
    CHECK(mw_pmd_negotiate(s, strlen(s) - 4, &pmd, &resp) == 1);
    CHECK(pmd.server_window_bits == 10);
    mw_buf_free(&resp);
    mw_buf_init(&resp);
    CHECK(mw_pmd_negotiate(s, 17, &pmd, &resp) == 0); /* "permessage-defla" */
    mw_buf_free(&resp);
}

/* ----------------------------------------------------------- compression */

/* Inflates with zlib directly, as a client does: raw, with the tail the
 * sender left out. Returns 0 on success. */
static int zlib_inflate(const void *in, size_t len, int window_bits, struct mw_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -window_bits) != Z_OK) return -1;
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    int rc = Z_OK;
    for (int part = 0; part < 2 && rc != Z_STREAM_END; part++) {
        z.next_in = part ? (Bytef *)tail : (Bytef *)in;
        z.avail_in = part ? 4 : (uInt)len;
        do {
            char *dst = mw_buf_reserve(out, 65536);
            z.next_out = (Bytef *)dst;
            z.avail_out = 65536;
            rc = inflate(&z, Z_SYNC_FLUSH);
            out->len += 65536 - z.avail_out;
        } while (rc == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
            inflateEnd(&z);
            return -1;
        }
    }
    inflateEnd(&z);
    return 0;
}

/* Deflates with zlib directly, as a client does: raw, sync flush, the
 * 00 00 ff ff tail removed. `final` ends with a BFINAL block instead. */
static void zlib_deflate(const void *in, size_t len, int window_bits, int final, struct mw_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    int rc = deflateInit2(&z, 6, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY);
    CHECK(rc == Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    do {
        size_t room = deflateBound(&z, (uLong)len) + 64;
        z.next_out = (Bytef *)mw_buf_reserve(out, room);
        z.avail_out = (uInt)room;
        deflate(&z, final ? Z_FINISH : Z_SYNC_FLUSH);
        out->len += room - z.avail_out;
    } while (z.avail_out == 0);
    if (!final && out->len >= 4 && memcmp(out->data + out->len - 4, "\0\0\xff\xff", 4) == 0)
        out->len -= 4;
    deflateEnd(&z);
}

/* Text that compresses, with repeats farther apart than small windows. */
static void make_text(char *p, size_t n, unsigned seed)
{
    static const char *const words[] = {
        "moonwire ", "socket ", "frame ",   "deflate ",           "window ",
        "message ",  "hub ",    "channel ", "\xc3\xa9t\xc3\xa9 ", "\n"};
    size_t i = 0;
    while (i < n) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % 10];
        for (size_t k = 0; w[k] && i < n; k++) p[i++] = w[k];
    }
}

static void make_noise(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 23);
    }
}

static void test_round_trips(void)
{
    static const size_t sizes[] = {0, 1, 63, 64, 1000, 65536, 300000, 1 << 20};
    size_t max = 1 << 20;
    char *text = malloc(max), *noise = malloc(max);
    make_text(text, max, 7);
    make_noise(noise, max, 11);
    for (int bits = 9; bits <= 15; bits++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (int kind = 0; kind < 2; kind++) {
                const char *src = kind ? noise : text;
                size_t n = sizes[si];
                struct mw_buf z, back, ref;
                mw_buf_init(&z);
                mw_buf_init(&back);
                mw_buf_init(&ref);
                mw_buf_appends(&z, "prefix"); /* appends after what is there */
                CHECK(mw_pmd_compress(src, n, bits, &z) == MW_PMD_OK);
                CHECK(memcmp(z.data, "prefix", 6) == 0);
                const char *zd = z.data + 6;
                size_t zl = z.len - 6;
                /* no 00 00 ff ff tail (RFC 7692 7.2.1) */
                CHECK(zl < 4 || memcmp(zd + zl - 4, "\0\0\xff\xff", 4) != 0);
                if (kind == 0 && n >= 1000) CHECK(zl < n / 2);
                /* ours inflates it back, exactly, with the limit at its size */
                mw_buf_appends(&back, "xy");
                CHECK(mw_pmd_decompress(zd, zl, n, &back) == MW_PMD_OK);
                CHECK(back.len == n + 2 && memcmp(back.data, "xy", 2) == 0 &&
                      (n == 0 || memcmp(back.data + 2, src, n) == 0));
                /* and a client's zlib inflates it with the window it asked for */
                CHECK(zlib_inflate(zd, zl, bits, &ref) == 0);
                CHECK(ref.len == n && (n == 0 || memcmp(ref.data, src, n) == 0));
                /* one byte less room than the message: too big */
                if (n > 0) {
                    back.len = 0;
                    CHECK(mw_pmd_decompress(zd, zl, n - 1, &back) == MW_PMD_TOO_BIG);
                }
                mw_buf_free(&z);
                mw_buf_free(&back);
                mw_buf_free(&ref);
            }
        }
    }

    /* what clients send: zlib with their own window, sync-flushed or
     * ended with a final block; several messages in a row (the shared
     * inflater is reset between them) */
    for (int bits = 9; bits <= 15; bits++) {
        for (int final = 0; final < 2; final++) {
            for (int round = 0; round < 3; round++) {
                size_t n = (size_t)100000 * (size_t)round + 17;
                struct mw_buf z, back;
                mw_buf_init(&z);
                mw_buf_init(&back);
                zlib_deflate(text + round, n, bits, final, &z);
                CHECK(mw_pmd_decompress(z.data, z.len, max, &back) == MW_PMD_OK);
                CHECK(back.len == n && memcmp(back.data, text + round, n) == 0);
                mw_buf_free(&z);
                mw_buf_free(&back);
            }
        }
    }

    /* an empty compressed message (a bare empty block) and no bytes at all */
    struct mw_buf out;
    mw_buf_init(&out);
    CHECK(mw_pmd_decompress("\x00", 1, 10, &out) == MW_PMD_OK && out.len == 0);
    CHECK(mw_pmd_decompress("", 0, 10, &out) == MW_PMD_OK && out.len == 0);
    /* "Hello" from RFC 7692 7.2.3.1, and its stored-block form (7.2.3.3) */
    CHECK(mw_pmd_decompress("\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out) == MW_PMD_OK);
    CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);
    out.len = 0;
    CHECK(mw_pmd_decompress("\x00\x05\x00\xfa\xffHello\x00", 11, 5, &out) == MW_PMD_OK);
    CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);
    out.len = 0;
    /* out of range window bits fall back to 15 */
    CHECK(mw_pmd_compress("abcabcabc", 9, 8, &out) == MW_PMD_OK);
    struct mw_buf back;
    mw_buf_init(&back);
    CHECK(mw_pmd_decompress(out.data, out.len, 100, &back) == MW_PMD_OK);
    CHECK(back.len == 9 && memcmp(back.data, "abcabcabc", 9) == 0);
    mw_buf_free(&back);
    mw_buf_free(&out);
    free(text);
    free(noise);
}

static void test_bounds_and_corruption(void)
{
    /* a zip bomb: 1 MB of zeros is about 1 KB compressed; with a 64 KiB
     * limit inflation stops early, having held little more than that */
    size_t n = 1 << 20;
    char *zeros = calloc(1, n);
    struct mw_buf z, out;
    mw_buf_init(&z);
    mw_buf_init(&out);
    CHECK(mw_pmd_compress(zeros, n, 15, &z) == MW_PMD_OK);
    CHECK(z.len < 2048);
    CHECK(mw_pmd_decompress(z.data, z.len, 64 * 1024, &out) == MW_PMD_TOO_BIG);
    CHECK(out.len > 64 * 1024 && out.len <= 64 * 1024 + 16384);
    CHECK(out.cap <= 256 * 1024);
    out.len = 0;
    /* a bomb made by a client's zlib, and one ending in a final block */
    for (int final = 0; final < 2; final++) {
        struct mw_buf zb;
        mw_buf_init(&zb);
        zlib_deflate(zeros, n, 15, final, &zb);
        out.len = 0;
        CHECK(mw_pmd_decompress(zb.data, zb.len, 64 * 1024, &out) == MW_PMD_TOO_BIG);
        CHECK(out.len <= 64 * 1024 + 16384);
        out.len = 0;
        CHECK(mw_pmd_decompress(zb.data, zb.len, n, &out) == MW_PMD_OK && out.len == n);
        mw_buf_free(&zb);
    }
    /* the limit is exact: n bytes fit in n, not in n - 1 */
    out.len = 0;
    CHECK(mw_pmd_decompress(z.data, z.len, n, &out) == MW_PMD_OK && out.len == n);
    out.len = 0;
    CHECK(mw_pmd_decompress(z.data, z.len, n - 1, &out) == MW_PMD_TOO_BIG);
    /* a limit of 0 takes only empty messages */
    out.len = 0;
    CHECK(mw_pmd_decompress("\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 0, &out) == MW_PMD_TOO_BIG);
    out.len = 0;
    CHECK(mw_pmd_decompress("\x00", 1, 0, &out) == MW_PMD_OK);
    /* the limit counts what this call added, not what out held before */
    mw_buf_free(&out);
    mw_buf_init(&out);
    mw_buf_append(&out, zeros, 1000);
    CHECK(mw_pmd_decompress("\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out) == MW_PMD_OK);
    CHECK(out.len == 1005 && memcmp(out.data + 1000, "Hello", 5) == 0);

    /* corrupt data */
    static const struct {
        const char *what;
        const char *data;
        size_t len;
    } bad[] = {
        {"reserved block type 3", "\xff\xff\xff\xff", 4},
        {"reserved block type 3 (final)", "\x07\x00", 2},
        {"stored block with a bad length check", "\x00\x05\x00\x00\x00Hello", 10},
        {"invalid distance too far back", "\x63\x00\x42\x00\x00", 5},
        {"bad code lengths", "\xfc\xff\xff\xff\xff\xff\xff\xff", 8},
        {"a zlib header (not raw deflate)", "\x78\x9c\xf3\x48\xcd\xc9\xc9\x07\x00", 9},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out.len = 0;
        int rc = mw_pmd_decompress(bad[i].data, bad[i].len, 1 << 20, &out);
        CHECK(rc == MW_PMD_BAD_DATA);
        if (rc != MW_PMD_BAD_DATA) fprintf(stderr, "  corrupt case: %s -> %d\n", bad[i].what, rc);
        /* the shared inflater recovers for the next message */
        out.len = 0;
        CHECK(mw_pmd_decompress("\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out) == MW_PMD_OK);
        CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);
    }
    /* ... and after a bomb stopped midway */
    out.len = 0;
    CHECK(mw_pmd_decompress(z.data, z.len, 1000, &out) == MW_PMD_TOO_BIG);
    out.len = 0;
    CHECK(mw_pmd_decompress("\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out) == MW_PMD_OK);
    CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);

    /* flipped bytes in a real message: an error or other bytes, never a
     * crash, and never more than the limit */
    char text[4000];
    make_text(text, sizeof text, 3);
    struct mw_buf good;
    mw_buf_init(&good);
    mw_pmd_compress(text, sizeof text, 15, &good);
    for (size_t i = 0; i < good.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            good.data[i] ^= (char)(1 << bit);
            out.len = 0;
            int rc = mw_pmd_decompress(good.data, good.len, sizeof text, &out);
            CHECK(rc == MW_PMD_OK || rc == MW_PMD_BAD_DATA || rc == MW_PMD_TOO_BIG);
            CHECK(out.len <= sizeof text + 16384);
            good.data[i] ^= (char)(1 << bit);
        }
    }
    mw_buf_free(&good);
    mw_buf_free(&z);
    mw_buf_free(&out);
    free(zeros);
}

int main(void)
{
    test_negotiation();
    test_round_trips();
    test_bounds_and_corruption();
    mw_pmd_shutdown();
    T_DONE();
}
