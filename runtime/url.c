/* url.c - percent-decoding, path segments with dot resolution, query pairs. */
#include "url.h"

#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int mw_url_decode(const char *in, size_t len, char *out, size_t *outlen, int plus_as_space,
                  int strict)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                if (strict) return MW_URL_EBADESCAPE;
                out[o++] = c;
                continue;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    *outlen = o;
    return MW_URL_OK;
}

void mw_path_init(struct mw_path *p)
{
    memset(p, 0, sizeof *p);
    mw_buf_init(&p->text);
}

void mw_path_free(struct mw_path *p)
{
    mw_buf_free(&p->text);
    free(p->segs);
    mw_path_init(p);
}

const char *mw_url_strerror(int err)
{
    switch (err) {
    case MW_URL_OK: return "ok";
    case MW_URL_EBADESCAPE: return "bad percent-escape in path";
    case MW_URL_ENUL: return "NUL byte in path";
    case MW_URL_EABOVEROOT: return "path climbs above the root";
    case MW_URL_EFORM: return "malformed request target";
    }
    return "unknown error";
}

static void push_seg(struct mw_path *p, struct mw_span s)
{
    if (p->nsegs == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->segs = mw_xrealloc(p->segs, p->cap * sizeof *p->segs);
    }
    p->segs[p->nsegs++] = s;
}

/* Segments are decoded into scratch first, then the path text is rebuilt
 * from the surviving segments, so dot resolution never sees raw escapes. */
int mw_path_parse(struct mw_path *p, const char *target, size_t len)
{
    p->nsegs = 0;
    p->text.len = 0;
    p->trailing_slash = 0;

    size_t end = 0;
    while (end < len && target[end] != '?' && target[end] != '#') end++;
    const char *s = target;
    if (end >= 7 && (strncmp(s, "http://", 7) == 0 || (end >= 8 && strncmp(s, "https://", 8) == 0))) {
        /* absolute-form: skip scheme and authority */
        size_t i = s[4] == 's' ? 8 : 7;
        while (i < end && s[i] != '/') i++;
        s += i;
        end -= i;
        if (end == 0) {
            mw_buf_appendc(&p->text, '/');
            return MW_URL_OK;
        }
    }
    if (end == 1 && s[0] == '*') {
        mw_buf_appendc(&p->text, '*');
        return MW_URL_OK;
    }
    if (end == 0 || s[0] != '/') return MW_URL_EFORM;

    struct mw_buf scratch; /* for long paths; short ones decode on the stack */
    mw_buf_init(&scratch);
    char small[256];
    char *dec = end <= sizeof small ? small : mw_buf_reserve(&scratch, end);
    size_t used = 0;
    int rc = MW_URL_OK;
    int ends_dir = 0; /* last step left us "in a directory" */

    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < end && s[j] != '/') j++;
        size_t dlen;
        rc = mw_url_decode(s + i, j - i, dec + used, &dlen, 0, 1);
        if (rc) break;
        if (memchr(dec + used, '\0', dlen)) {
            rc = MW_URL_ENUL;
            break;
        }
        const char *seg = dec + used;
        int last = j >= end;
        if (dlen == 1 && seg[0] == '.') {
            ends_dir = 1;
        } else if (dlen == 2 && seg[0] == '.' && seg[1] == '.') {
            if (p->nsegs == 0) {
                rc = MW_URL_EABOVEROOT;
                break;
            }
            p->nsegs--;
            ends_dir = 1;
        } else if (dlen == 0 && last) {
            ends_dir = p->nsegs > 0; /* "/a/" */
        } else {
            push_seg(p, (struct mw_span){used, dlen});
            used += dlen;
            ends_dir = 0;
        }
        if (last) break;
        i = j + 1;
    }
    if (rc == MW_URL_OK) {
        /* rebuild the text from the surviving segments; spans move to it */
        for (size_t k = 0; k < p->nsegs; k++) {
            mw_buf_appendc(&p->text, '/');
            size_t off = p->text.len;
            mw_buf_append(&p->text, dec + p->segs[k].off, p->segs[k].len);
            p->segs[k].off = off;
        }
        if (p->nsegs == 0 || ends_dir) mw_buf_appendc(&p->text, '/');
        p->trailing_slash = p->nsegs > 0 && ends_dir;
    }
    mw_buf_free(&scratch);
    return rc;
}

const char *mw_url_query(const char *target, size_t len, size_t *qlen)
{
    const char *q = memchr(target, '?', len);
    if (!q) {
        *qlen = 0;
        return NULL;
    }
    q++;
    const char *end = target + len;
    const char *hash = memchr(q, '#', (size_t)(end - q));
    *qlen = (size_t)((hash ? hash : end) - q);
    return q;
}

int mw_query_next(const char *qs, size_t len, size_t *pos, struct mw_span *key,
                  struct mw_span *val)
{
    while (*pos < len) {
        size_t start = *pos;
        size_t amp = start;
        while (amp < len && qs[amp] != '&') amp++;
        *pos = amp < len ? amp + 1 : len;
        if (amp == start) continue; /* "&&" */
        size_t eq = start;
        while (eq < amp && qs[eq] != '=') eq++;
        key->off = start;
        key->len = eq - start;
        if (eq < amp) {
            val->off = eq + 1;
            val->len = amp - eq - 1;
        } else {
            val->off = amp;
            val->len = 0;
        }
        return 1;
    }
    return 0;
}

int mw_query_find(const char *qs, size_t len, const char *name, struct mw_buf *out)
{
    size_t pos = 0, nlen = strlen(name);
    struct mw_span k, v;
    struct mw_buf key;
    mw_buf_init(&key);
    int found = 0;
    while (!found && mw_query_next(qs, len, &pos, &k, &v)) {
        size_t kl;
        key.len = 0;
        mw_url_decode(qs + k.off, k.len, mw_buf_reserve(&key, k.len), &kl, 1, 0);
        if (kl != nlen || memcmp(key.data, name, nlen) != 0) continue;
        size_t vl;
        mw_url_decode(qs + v.off, v.len, mw_buf_reserve(out, v.len), &vl, 1, 0);
        out->len += vl;
        found = 1;
    }
    mw_buf_free(&key);
    return found;
}
