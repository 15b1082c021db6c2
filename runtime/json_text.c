/* json_text.c - JSON string literals. */
#include "json_text.h"

#include <stdint.h>
#include <string.h>

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The index of the first byte at or after i that needs escaping (a control
 * character, '"' or '\\'), or len. Eight bytes at a time, with the
 * "has a byte below n" and "has a zero byte" word tests: exact as yes/no
 * answers, so a word that passes holds none, and one that fails is looked
 * at byte by byte. */
static size_t plain_run(const unsigned char *s, size_t i, size_t len)
{
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t q = w ^ (ONES * '"'), bs = w ^ (ONES * '\\');
        /* ~q and ~bs have the high bits of ~w ('"' and '\\' are below 0x80) */
        uint64_t hit = ((w - ONES * 0x20) | (q - ONES) | (bs - ONES)) & ~w & HIGHS;
        if (hit) break;
        i += 8;
    }
    for (; i < len; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c == '"' || c == '\\') return i;
    }
    return len;
}

void mw_json_append_string(struct mw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    /* the common case, nothing to escape, in one reservation */
    char *out = mw_buf_reserve(b, len + 2);
    *out = '"';
    b->len++;
    size_t i = 0;
    for (;;) {
        size_t j = plain_run(u, i, len);
        mw_buf_append(b, s + i, j - i);
        if (j == len) break;
        unsigned char c = u[j];
        i = j + 1;
        switch (c) {
        case '"': mw_buf_append(b, "\\\"", 2); break;
        case '\\': mw_buf_append(b, "\\\\", 2); break;
        case '\n': mw_buf_append(b, "\\n", 2); break;
        case '\r': mw_buf_append(b, "\\r", 2); break;
        case '\t': mw_buf_append(b, "\\t", 2); break;
        case '\b': mw_buf_append(b, "\\b", 2); break;
        case '\f': mw_buf_append(b, "\\f", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            mw_buf_append(b, e, 6);
        }
        }
    }
    mw_buf_appendc(b, '"');
}

void mw_json_append_integer(struct mw_buf *b, long long v)
{
    char tmp[24];
    char *p = mw_fmt_u64(tmp + sizeof tmp, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v);
    if (v < 0) *--p = '-';
    mw_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}
