/* head.c - request heads: views over live and packed ones, and packing. */
#include "head.h"
#include "http.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Names a WebSocket handshake from a browser, a proxy or a client library
 * usually carries; a packed head stores each as its index (1..). Order is
 * part of no format outside this process. */
static const char *const common_names[] = {
    "host", "connection", "upgrade", "user-agent", "origin", "cookie", "pragma",
    "cache-control", "accept", "accept-encoding", "accept-language", "authorization",
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "referer", "forwarded", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "x-real-ip", "x-request-id", "dnt", "sec-fetch-dest", "sec-fetch-mode",
    "sec-fetch-site", "sec-fetch-user", "sec-gpc", "priority", "content-type", "content-length",
};
#define NCOMMON (sizeof common_names / sizeof *common_names)

static int common_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NCOMMON; i++)
        if (strlen(common_names[i]) == len && memcmp(common_names[i], name, len) == 0) return (int)i + 1;
    return 0;
}

/* ---------------------------------------------------------------- varints */

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static const uint8_t *get_varint(const uint8_t *p, size_t *v)
{
    size_t r = 0;
    unsigned shift = 0;
    for (;;) {
        uint8_t b = *p++;
        r |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
        shift += 7;
    }
    *v = r;
    return p;
}

static const uint8_t *get_string(const uint8_t *p, const char **s, size_t *len)
{
    p = get_varint(p, len);
    *s = (const char *)p;
    return p + *len;
}

static uint8_t *put_string(uint8_t *p, const char *s, size_t len)
{
    p = put_varint(p, len);
    if (len) memcpy(p, s, len);
    return p + len;
}

/* ------------------------------------------------------------------ views */

void mw_head_view_req(struct mw_head_view *v, const struct mw_req *req)
{
    memset(v, 0, sizeof *v);
    v->method = req->hbuf.data + req->method.off;
    v->method_len = req->method.len;
    v->target = req->hbuf.data + req->target.off;
    v->target_len = req->target.len;
    v->seq = req->seq;
    v->conn = req->conn;
    v->http_major = req->http_major;
    v->http_minor = req->http_minor;
    v->req = req;
}

void mw_head_view_packed(struct mw_head_view *v, const struct mw_head *h)
{
    memset(v, 0, sizeof *v);
    const uint8_t *p = h->data;
    p = get_string(p, &v->method, &v->method_len);
    p = get_string(p, &v->target, &v->target_len);
    v->seq = h->seq;
    v->conn = h->conn_at ? *h->conn_at : NULL;
    v->http_major = h->http_major;
    v->http_minor = h->http_minor;
    v->packed = p;
    v->packed_end = h->data + h->params_at;
    v->params = h->data + h->params_at;
    v->params_end = h->data + h->len;
}

void mw_hdr_iter_init(struct mw_hdr_iter *it, const struct mw_head_view *v)
{
    it->v = v;
    it->i = 0;
    it->p = v->packed;
}

int mw_hdr_next(struct mw_hdr_iter *it, struct mw_hdr *h)
{
    const struct mw_head_view *v = it->v;
    if (v->req) {
        const struct mw_req *req = v->req;
        if (it->i >= req->nhdrs) return 0;
        const struct mw_req_header *rh = &req->hdrs[it->i++];
        h->name = req->hbuf.data + rh->name.off;
        h->nlen = rh->name.len;
        h->value = req->hbuf.data + rh->value.off;
        h->vlen = rh->value.len;
        return 1;
    }
    if (!it->p || it->p >= v->packed_end) return 0;
    uint8_t code = *it->p++;
    if (code) {
        h->name = common_names[code - 1];
        h->nlen = strlen(h->name);
    } else {
        it->p = get_string(it->p, &h->name, &h->nlen);
    }
    it->p = get_string(it->p, &h->value, &h->vlen);
    return 1;
}

int mw_head_header(const struct mw_head_view *v, const char *lname, size_t nlen, struct mw_buf *out)
{
    struct mw_hdr_iter it;
    struct mw_hdr h;
    int found = 0;
    mw_hdr_iter_init(&it, v);
    while (mw_hdr_next(&it, &h)) {
        if (h.nlen != nlen || memcmp(h.name, lname, nlen) != 0) continue;
        if (found) mw_buf_append(out, ", ", 2);
        mw_buf_append(out, h.value, h.vlen);
        found = 1;
    }
    return found;
}

int mw_head_has_token(const struct mw_head_view *v, const char *lname, const char *token)
{
    struct mw_buf b;
    mw_buf_init(&b);
    int found = 0;
    if (mw_head_header(v, lname, strlen(lname), &b)) {
        /* a comma-separated list; each element's token ends at ';' (parameters) */
        size_t tl = strlen(token), i = 0;
        while (i < b.len && !found) {
            while (i < b.len && (b.data[i] == ' ' || b.data[i] == '\t' || b.data[i] == ',')) i++;
            size_t s = i;
            while (i < b.len && b.data[i] != ',') i++;
            size_t e = s;
            while (e < i && b.data[e] != ';') e++;
            while (e > s && (b.data[e - 1] == ' ' || b.data[e - 1] == '\t')) e--;
            found = e - s == tl && strncasecmp(b.data + s, token, tl) == 0;
        }
    }
    mw_buf_free(&b);
    return found;
}

/* ---------------------------------------------------------------- packing */

const uint8_t *mw_head_next_param(const struct mw_head_view *v, const uint8_t *it, struct mw_hdr *p)
{
    if (!it || it >= v->params_end) return NULL;
    it = get_string(it, &p->name, &p->nlen);
    return get_string(it, &p->value, &p->vlen);
}

size_t mw_head_size(const struct mw_req *req, const struct mw_hdr *params, size_t nparams)
{
    size_t n = offsetof(struct mw_head, data); /* the data starts there, before any tail padding */
    n += varint_size(req->method.len) + req->method.len;
    n += varint_size(req->target.len) + req->target.len;
    for (size_t i = 0; i < req->nhdrs; i++) {
        const struct mw_req_header *h = &req->hdrs[i];
        n += common_index(req->hbuf.data + h->name.off, h->name.len)
                 ? 1
                 : 1 + varint_size(h->name.len) + h->name.len;
        n += varint_size(h->value.len) + h->value.len;
    }
    for (size_t i = 0; i < nparams; i++)
        n += varint_size(params[i].nlen) + params[i].nlen + varint_size(params[i].vlen) + params[i].vlen;
    return n;
}

struct mw_head *mw_head_pack(void *mem, const struct mw_req *req, const struct mw_hdr *params,
                             size_t nparams)
{
    struct mw_head *head = mem;
    memset(head, 0, offsetof(struct mw_head, data));
    head->seq = req->seq;
    head->conn_at = NULL;
    head->lua_ref = -2; /* LUA_NOREF */
    head->lua_slot = 0;
    head->http_major = req->http_major;
    head->http_minor = req->http_minor;
    uint8_t *p = head->data;
    p = put_string(p, req->hbuf.data + req->method.off, req->method.len);
    p = put_string(p, req->hbuf.data + req->target.off, req->target.len);
    for (size_t i = 0; i < req->nhdrs; i++) {
        const struct mw_req_header *h = &req->hdrs[i];
        const char *name = req->hbuf.data + h->name.off;
        int code = common_index(name, h->name.len);
        *p++ = (uint8_t)code;
        if (!code) p = put_string(p, name, h->name.len);
        p = put_string(p, req->hbuf.data + h->value.off, h->value.len);
    }
    head->params_at = (uint32_t)(p - head->data);
    for (size_t i = 0; i < nparams; i++) {
        p = put_string(p, params[i].name, params[i].nlen);
        p = put_string(p, params[i].value, params[i].vlen);
    }
    head->len = (uint32_t)(p - head->data);
    return head;
}
