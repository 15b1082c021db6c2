/* json_text.c - JSON string literals. */
#include "json_text.h"

void mw_json_append_string(struct mw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    mw_buf_appendc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        mw_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': mw_buf_append(b, "\\\"", 2); break;
        case '\\': mw_buf_append(b, "\\\\", 2); break;
        case '\n': mw_buf_append(b, "\\n", 2); break;
        case '\r': mw_buf_append(b, "\\r", 2); break;
        case '\t': mw_buf_append(b, "\\t", 2); break;
        case '\b': mw_buf_append(b, "\\b", 2); break;
        case '\f': mw_buf_append(b, "\\f", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            mw_buf_append(b, u, 6);
        }
        }
    }
    mw_buf_append(b, s + run, len - run);
    mw_buf_appendc(b, '"');
}
