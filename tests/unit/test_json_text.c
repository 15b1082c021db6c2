/* test_json_text.c - JSON string literals and integers written from C:
 * every byte value at every position and alignment against a byte-by-byte
 * reference (the word-at-a-time scan must find each escape), long runs,
 * and integers at the edges of their range. */
#include "json_text.h"
#include "t.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The reference: one byte at a time. */
static void ref_string(struct mw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    mw_buf_appendc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': mw_buf_appends(b, "\\\""); break;
        case '\\': mw_buf_appends(b, "\\\\"); break;
        case '\n': mw_buf_appends(b, "\\n"); break;
        case '\r': mw_buf_appends(b, "\\r"); break;
        case '\t': mw_buf_appends(b, "\\t"); break;
        case '\b': mw_buf_appends(b, "\\b"); break;
        case '\f': mw_buf_appends(b, "\\f"); break;
        default:
            if (c < 0x20) {
                char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                mw_buf_appends(b, u);
            } else {
                mw_buf_appendc(b, (char)c);
            }
        }
    }
    mw_buf_appendc(b, '"');
}

static int same(const char *s, size_t len)
{
    struct mw_buf got, want;
    mw_buf_init(&got);
    mw_buf_init(&want);
    mw_buf_appends(&got, "x"); /* an append after other bytes */
    mw_buf_appends(&want, "x");
    mw_json_append_string(&got, s, len);
    ref_string(&want, s, len);
    int ok = got.len == want.len && memcmp(got.data, want.data, got.len) == 0;
    mw_buf_free(&got);
    mw_buf_free(&want);
    return ok;
}

static int same_int(long long v)
{
    struct mw_buf got;
    mw_buf_init(&got);
    mw_json_append_integer(&got, v);
    char want[32];
    int n = snprintf(want, sizeof want, "%lld", v);
    int ok = got.len == (size_t)n && memcmp(got.data, want, got.len) == 0;
    mw_buf_free(&got);
    return ok;
}

int main(void)
{
    char s[40];
    /* every byte value, alone in a run of plain bytes, at every offset */
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        for (size_t len = 1; len <= 24; len++) {
            for (size_t at = 0; at < len; at++) {
                memset(s, 'a', len);
                s[at] = (char)c;
                if (!same(s, len)) bad++;
            }
        }
    }
    CHECK(bad == 0);
    /* bytes next to the boundaries of the word tests: 0x1f/0x20, 0x21-0x23,
     * 0x5b-0x5d, 0x7f/0x80, 0xff, in pairs within one word */
    static const unsigned char edge[] = {0x00, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b,
                                         0x5c, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff};
    bad = 0;
    for (size_t i = 0; i < sizeof edge; i++)
        for (size_t j = 0; j < sizeof edge; j++)
            for (size_t a = 0; a < 16; a++) {
                memset(s, 'z', 16);
                s[a] = (char)edge[i];
                s[(a + 5) % 16] = (char)edge[j];
                if (!same(s, 16)) bad++;
            }
    CHECK(bad == 0);
    /* random strings, many escapes or none, long ones */
    srand(7);
    bad = 0;
    for (int n = 0; n < 2000; n++) {
        char big[300];
        size_t len = (size_t)(rand() % (int)sizeof big);
        int sparse = n % 2;
        for (size_t i = 0; i < len; i++)
            big[i] = (char)(sparse && rand() % 50 ? 'a' + rand() % 26 : rand() % 256);
        if (!same(big, len)) bad++;
    }
    CHECK(bad == 0);
    CHECK(same("", 0));
    struct mw_buf b;
    mw_buf_init(&b);
    mw_json_append_string(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
    mw_buf_appendc(&b, 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    mw_buf_free(&b);

    static const long long ints[] = {0, 1, -1, 9, 10, -10, 99, 100, 12345, -987654321,
                                     INT_MAX, INT_MIN, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) CHECK(same_int(ints[i]));
    T_DONE();
}
