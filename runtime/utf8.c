/* utf8.c - UTF-8 validation as a small state machine over the byte
 * classes of RFC 3629's table. States: 0 accept, 1 reject, others say how
 * many continuation bytes are due and what range the next one must be in. */
#include "utf8.h"

enum {
    S_ACCEPT = 0,
    S_REJECT = 1,
    S_CONT1,   /* one continuation byte due: 80..BF */
    S_CONT2,   /* two due */
    S_CONT3,   /* three due */
    S_E0,      /* after E0: A0..BF, then one more */
    S_ED,      /* after ED: 80..9F (no surrogates), then one more */
    S_F0,      /* after F0: 90..BF, then two more */
    S_F4,      /* after F4: 80..8F, then two more */
};

static uint32_t step(uint32_t s, uint8_t b)
{
    switch (s) {
    case S_ACCEPT:
        if (b < 0x80) return S_ACCEPT;
        if (b >= 0xC2 && b <= 0xDF) return S_CONT1;
        if (b == 0xE0) return S_E0;
        if (b == 0xED) return S_ED;
        if (b >= 0xE1 && b <= 0xEF) return S_CONT2;
        if (b == 0xF0) return S_F0;
        if (b >= 0xF1 && b <= 0xF3) return S_CONT3;
        if (b == 0xF4) return S_F4;
        return S_REJECT;
    case S_CONT1: return b >= 0x80 && b <= 0xBF ? S_ACCEPT : S_REJECT;
    case S_CONT2: return b >= 0x80 && b <= 0xBF ? S_CONT1 : S_REJECT;
    case S_CONT3: return b >= 0x80 && b <= 0xBF ? S_CONT2 : S_REJECT;
    case S_E0: return b >= 0xA0 && b <= 0xBF ? S_CONT1 : S_REJECT;
    case S_ED: return b >= 0x80 && b <= 0x9F ? S_CONT1 : S_REJECT;
    case S_F0: return b >= 0x90 && b <= 0xBF ? S_CONT2 : S_REJECT;
    case S_F4: return b >= 0x80 && b <= 0x8F ? S_CONT2 : S_REJECT;
    }
    return S_REJECT;
}

int mw_utf8_feed(struct mw_utf8 *u, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t s = u->state;
    if (s == S_REJECT) return -1;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs are the common case: skip them eight at a time */
        if (s == S_ACCEPT) {
            while (i + 8 <= len) {
                uint64_t w;
                __builtin_memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i >= len) break;
        }
        s = step(s, p[i++]);
        if (s == S_REJECT) break;
    }
    u->state = s;
    return s == S_REJECT ? -1 : 0;
}

int mw_utf8_valid(const void *data, size_t len)
{
    struct mw_utf8 u;
    mw_utf8_init(&u);
    return mw_utf8_feed(&u, data, len) == 0 && mw_utf8_complete(&u);
}
