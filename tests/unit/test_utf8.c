/* test_utf8.c - the incremental UTF-8 checker: table-driven cases fed
 * whole, byte by byte, split at every offset and at every pair of offsets;
 * the ASCII fast path at every alignment; and every 1-, 2- and 3-byte
 * sequence (and a sweep of 4-byte ones) against a reference decoder. */
#include "t.h"
#include "utf8.h"

#include <stdint.h>

struct tcase {
    const char *what;
    const char *s;
    size_t len;   /* 0: strlen(s) */
    int valid;    /* never rejected */
    int complete; /* ends on a character boundary (when valid) */
};

/* clang-format off */
#define V(what, s) {what, s, 0, 1, 1}
#define BAD(what, s) {what, s, 0, 0, 0}
#define TRUNC(what, s) {what, s, 0, 1, 0}

static const struct tcase cases[] = {
    V("empty", ""),
    V("ascii", "hello, world"),
    {"nul byte", "a\0b", 3, 1, 1},
    V("2-byte min U+0080", "\xC2\x80"),
    V("2-byte max U+07FF", "\xDF\xBF"),
    V("3-byte min U+0800", "\xE0\xA0\x80"),
    V("U+D7FF before the surrogates", "\xED\x9F\xBF"),
    V("U+E000 after the surrogates", "\xEE\x80\x80"),
    V("U+FFFD", "\xEF\xBF\xBD"),
    V("U+FFFF", "\xEF\xBF\xBF"),
    V("4-byte min U+10000", "\xF0\x90\x80\x80"),
    V("U+10FFFF", "\xF4\x8F\xBF\xBF"),
    V("mixed text", "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80 ok"),
    V("BOM", "\xEF\xBB\xBF"),

    BAD("lone continuation", "\x80"),
    BAD("continuation BF", "\xBF"),
    BAD("C0 (overlong lead)", "\xC0\x80"),
    BAD("C1 (overlong lead)", "\xC1\xBF"),
    BAD("overlong '/' in 2 bytes", "\xC0\xAF"),
    BAD("overlong NUL in 2 bytes", "\xC0\x80"),
    BAD("overlong 3-byte U+007F", "\xE0\x81\xBF"),
    BAD("overlong 3-byte U+07FF", "\xE0\x9F\xBF"),
    BAD("overlong 4-byte U+FFFF", "\xF0\x8F\xBF\xBF"),
    BAD("overlong 4-byte '/'", "\xF0\x80\x80\xAF"),
    BAD("surrogate U+D800", "\xED\xA0\x80"),
    BAD("surrogate U+DBFF", "\xED\xAF\xBF"),
    BAD("surrogate U+DC00", "\xED\xB0\x80"),
    BAD("surrogate U+DFFF", "\xED\xBF\xBF"),
    BAD("surrogate pair as CESU-8", "\xED\xA0\xBD\xED\xB8\x80"),
    BAD("U+110000", "\xF4\x90\x80\x80"),
    BAD("F5 lead", "\xF5\x80\x80\x80"),
    BAD("F7 lead", "\xF7\xBF\xBF\xBF"),
    BAD("F8 5-byte lead", "\xF8\x88\x80\x80\x80"),
    BAD("FC 6-byte lead", "\xFC\x84\x80\x80\x80\x80"),
    BAD("FE", "\xFE"),
    BAD("FF", "\xFF"),
    BAD("2-byte with ASCII second", "\xC3\x28"),
    BAD("3-byte with ASCII third", "\xE2\x82\x28"),
    BAD("4-byte with ASCII fourth", "\xF0\x9F\x98\x28"),
    BAD("4-byte with a new lead inside", "\xF0\x9F\xC3\xA9"),
    BAD("truncated then ASCII", "\xE2\x82 x"),
    BAD("valid then invalid", "ok \xE2\x9C\x93 \xFF"),
    BAD("invalid then valid (sticky)", "\xFF ok"),
    BAD("two continuations after a 2-byte", "\xC3\xA9\xA9"),

    TRUNC("truncated 2-byte", "\xC3"),
    TRUNC("truncated 3-byte (1 of 3)", "\xE2"),
    TRUNC("truncated 3-byte (2 of 3)", "\xE2\x82"),
    TRUNC("truncated 4-byte (1 of 4)", "\xF0"),
    TRUNC("truncated 4-byte (3 of 4)", "\xF0\x9F\x98"),
    TRUNC("text then truncated", "abc\xF4\x8F\xBF"),
    TRUNC("truncated after E0 A0", "\xE0\xA0"),
    TRUNC("truncated after ED 9F", "\xED\x9F"),
};
/* clang-format on */

static int failures_before;

/* Feeds s in pieces ending at the given cut points; returns the verdict
 * the way a streaming caller sees it. */
static void feed_pieces(const char *s, size_t len, const size_t *cuts, size_t ncuts, int *valid,
                        int *complete)
{
    struct mw_utf8 u;
    mw_utf8_init(&u);
    size_t from = 0;
    int ok = 1;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        int rc = mw_utf8_feed(&u, s + from, to - from);
        if (rc != 0) ok = 0;
        if (!ok && rc == 0) { /* once rejected, stays rejected */
            *valid = -1;
            return;
        }
        from = to;
    }
    *valid = ok;
    *complete = ok && mw_utf8_complete(&u);
}

static void check_case(const struct tcase *c)
{
    size_t len = c->len ? c->len : strlen(c->s);
    int want_complete = c->valid && c->complete;
    int valid, complete;
    failures_before = t_failed;

    CHECK(mw_utf8_valid(c->s, len) == want_complete);

    feed_pieces(c->s, len, NULL, 0, &valid, &complete);
    CHECK(valid == c->valid);
    CHECK(complete == want_complete);

    /* byte by byte */
    size_t cuts[64];
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    feed_pieces(c->s, len, cuts, len ? len - 1 : 0, &valid, &complete);
    CHECK(valid == c->valid);
    CHECK(complete == want_complete);

    /* split once at every offset (empty pieces included) */
    for (size_t a = 0; a <= len; a++) {
        cuts[0] = a;
        feed_pieces(c->s, len, cuts, 1, &valid, &complete);
        CHECK(valid == c->valid);
        CHECK(complete == want_complete);
    }
    /* split twice at every pair of offsets */
    for (size_t a = 0; a <= len; a++)
        for (size_t b = a; b <= len; b++) {
            cuts[0] = a;
            cuts[1] = b;
            feed_pieces(c->s, len, cuts, 2, &valid, &complete);
            CHECK(valid == c->valid);
            CHECK(complete == want_complete);
        }
    if (t_failed != failures_before) fprintf(stderr, "  ^ in case: %s\n", c->what);
}

/* The ASCII fast path reads eight bytes at a time: put a bad byte, a good
 * multibyte character and a truncated one at every position of long
 * ASCII runs, and feed from every starting alignment. */
static void check_alignment(void)
{
    char buf[80];
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t start = 0; start < 8; start++) {
            size_t total = 48;
            memset(buf, 'a', sizeof buf);
            buf[start + pos] = (char)0xFF;
            CHECK(!mw_utf8_valid(buf + start, total));

            memset(buf, 'a', sizeof buf);
            memcpy(buf + start + pos, "\xF0\x9F\x98\x80", 4);
            CHECK(mw_utf8_valid(buf + start, total));

            memset(buf, 'a', sizeof buf);
            memcpy(buf + start + pos, "\xE2\x82", 2); /* truncated, then ASCII */
            CHECK(!mw_utf8_valid(buf + start, total));

            /* a truncated character at the very end: valid so far, incomplete */
            memset(buf, 'a', sizeof buf);
            buf[start + pos] = (char)0xC3;
            struct mw_utf8 u;
            mw_utf8_init(&u);
            CHECK(mw_utf8_feed(&u, buf + start, pos + 1) == 0);
            CHECK(!mw_utf8_complete(&u));
            CHECK(mw_utf8_feed(&u, "\xA9", 1) == 0);
            CHECK(mw_utf8_complete(&u));
        }
    }
    /* a rejected state stays rejected, even across pure ASCII */
    struct mw_utf8 u;
    mw_utf8_init(&u);
    CHECK(mw_utf8_feed(&u, "\xFF", 1) == -1);
    CHECK(mw_utf8_feed(&u, "aaaaaaaaaaaaaaaa", 16) == -1);
    CHECK(mw_utf8_feed(&u, "", 0) == -1);
    CHECK(!mw_utf8_complete(&u));
}

/* Reference: decode one sequence the slow, obvious way. */
static int ref_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        size_t n;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + n > len) return 0;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n;
    }
    return 1;
}

static void check_exhaustive(void)
{
    uint8_t s[4];
    long mismatches = 0;
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        if (mw_utf8_valid(s, 1) != ref_valid(s, 1)) mismatches++;
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            if (mw_utf8_valid(s, 2) != ref_valid(s, 2)) mismatches++;
            if (a < 0xE0 || a > 0xEF) continue; /* 3-byte leads; others are covered by ref below */
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                if (mw_utf8_valid(s, 3) != ref_valid(s, 3)) mismatches++;
            }
        }
    }
    /* every 3-byte string whose lead is not a 3-byte lead, sampled on the
     * bytes that matter: ASCII, continuation edges, leads */
    static const uint8_t edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
                                    0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    size_t ne = sizeof edges;
    for (unsigned a = 0; a < 256; a++)
        for (size_t b = 0; b < ne; b++)
            for (size_t c = 0; c < ne; c++) {
                s[0] = (uint8_t)a, s[1] = edges[b], s[2] = edges[c];
                if (mw_utf8_valid(s, 3) != ref_valid(s, 3)) mismatches++;
            }
    /* 4-byte leads with every second byte and edge third and fourth bytes */
    for (unsigned a = 0xF0; a < 0x100; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < ne; c++)
                for (size_t d = 0; d < ne; d++) {
                    s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = edges[c], s[3] = edges[d];
                    if (mw_utf8_valid(s, 4) != ref_valid(s, 4)) mismatches++;
                }
    CHECK(mismatches == 0);
    if (mismatches) fprintf(stderr, "  %ld sequences disagree with the reference\n", mismatches);

    /* and the whole range of code points, encoded by hand */
    long bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t e[4];
        size_t n;
        if (cp < 0x80) {
            e[0] = (uint8_t)cp, n = 1;
        } else if (cp < 0x800) {
            e[0] = (uint8_t)(0xC0 | cp >> 6), e[1] = (uint8_t)(0x80 | (cp & 0x3F)), n = 2;
        } else if (cp < 0x10000) {
            e[0] = (uint8_t)(0xE0 | cp >> 12), e[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            e[2] = (uint8_t)(0x80 | (cp & 0x3F)), n = 3;
        } else {
            e[0] = (uint8_t)(0xF0 | cp >> 18), e[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            e[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), e[3] = (uint8_t)(0x80 | (cp & 0x3F)),
            n = 4;
        }
        int want = !(cp >= 0xD800 && cp <= 0xDFFF);
        if (mw_utf8_valid(e, n) != want) bad++;
    }
    CHECK(bad == 0);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
    check_alignment();
    check_exhaustive();
    T_DONE();
}
