/* response.c - response head storage and serialization. */
#include "response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MW_SERVER_HEADER "Server: moonwire/" MW_VERSION "\r\n"

void mw_response_init(struct mw_response *r)
{
    memset(r, 0, sizeof *r);
    mw_buf_init(&r->store);
    r->status = 200;
}

void mw_response_reset(struct mw_response *r)
{
    r->status = 200;
    r->store.len = 0;
    r->nhdrs = 0;
}

void mw_response_free(struct mw_response *r)
{
    mw_buf_free(&r->store);
    free(r->hdrs);
    mw_response_init(r);
}

/* tchar per RFC 9110 section 5.6.2 */
static int is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr(extra, c) != NULL;
}

int mw_header_name_ok(const char *name, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)name[i])) return 0;
    return 1;
}

int mw_header_value_ok(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (c == '\r' || c == '\n' || c == '\0') return 0;
    }
    return 1;
}

static int name_eq(const struct mw_response *r, const struct mw_header *h, const char *name,
                   size_t nlen)
{
    return h->name_len == nlen && strncasecmp(r->store.data + h->name_off, name, nlen) == 0;
}

void mw_response_remove(struct mw_response *r, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (!r->hdrs[i].removed && name_eq(r, &r->hdrs[i], name, nlen)) r->hdrs[i].removed = 1;
}

void mw_response_add(struct mw_response *r, const char *name, size_t nlen, const char *value,
                     size_t vlen, int replace)
{
    if (replace)
        for (size_t i = 0; i < r->nhdrs; i++)
            if (!r->hdrs[i].removed && name_eq(r, &r->hdrs[i], name, nlen)) r->hdrs[i].removed = 1;
    if (r->nhdrs == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->hdrs = mw_xrealloc(r->hdrs, r->cap * sizeof *r->hdrs);
    }
    struct mw_header *h = &r->hdrs[r->nhdrs++];
    h->removed = 0;
    h->name_off = (uint32_t)r->store.len;
    h->name_len = (uint32_t)nlen;
    mw_buf_append(&r->store, name, nlen);
    h->value_off = (uint32_t)r->store.len;
    h->value_len = (uint32_t)vlen;
    mw_buf_append(&r->store, value, vlen);
}

const char *mw_response_get(const struct mw_response *r, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    for (size_t i = r->nhdrs; i-- > 0;) {
        const struct mw_header *h = &r->hdrs[i];
        if (!h->removed && name_eq(r, h, name, nlen)) {
            if (vlen) *vlen = h->value_len;
            return r->store.data + h->value_off;
        }
    }
    return NULL;
}

const char *mw_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    if (status >= 100 && status < 200) return "Informational";
    if (status < 300) return "Success";
    if (status < 400) return "Redirection";
    if (status < 500) return "Client Error";
    return "Server Error";
}

int mw_status_bodyless(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Decimal digits of v at the end of buf; returns where they start. */
void mw_response_head(const struct mw_response *r, const struct mw_head_opts *o, struct mw_buf *out)
{
    static const char server[] = MW_SERVER_HEADER;
    const char *reason = mw_status_reason(r->status);
    size_t rlen = strlen(reason), dlen = o->date ? strlen(o->date) : 0;
    char num[24], cl[24];
    char *st = mw_fmt_u64(num + sizeof num, (unsigned)r->status);
    size_t stlen = (size_t)(num + sizeof num - st);
    char *clp = cl + sizeof cl;
    if (o->content_length >= 0) clp = mw_fmt_u64(cl + sizeof cl, (unsigned long long)o->content_length);
    size_t cllen = (size_t)(cl + sizeof cl - clp);

    /* one reservation for the whole head, then plain copies */
    size_t total = 9 + stlen + 1 + rlen + 2 + (dlen ? 8 + dlen : 0) + sizeof server - 1 + 2;
    for (size_t i = 0; i < r->nhdrs; i++)
        if (!r->hdrs[i].removed) total += r->hdrs[i].name_len + r->hdrs[i].value_len + 4;
    if (o->content_length >= 0) total += 18 + cllen;
    if (o->chunked) total += 28;
    if (o->close || o->keep_alive_10) total += 24;
    char *p = mw_buf_reserve(out, total), *start = p;
#define PUT(s, n) (memcpy(p, (s), (n)), p += (n))
    PUT("HTTP/1.1 ", 9);
    PUT(st, stlen);
    *p++ = ' ';
    PUT(reason, rlen);
    PUT("\r\n", 2);
    if (dlen) {
        PUT("Date: ", 6);
        PUT(o->date, dlen);
        PUT("\r\n", 2);
    }
    PUT(server, sizeof server - 1);
    for (size_t i = 0; i < r->nhdrs; i++) {
        const struct mw_header *h = &r->hdrs[i];
        if (h->removed) continue;
        PUT(r->store.data + h->name_off, h->name_len);
        PUT(": ", 2);
        PUT(r->store.data + h->value_off, h->value_len);
        PUT("\r\n", 2);
    }
    if (o->content_length >= 0) {
        PUT("Content-Length: ", 16);
        PUT(clp, cllen);
        PUT("\r\n", 2);
    }
    if (o->chunked) PUT("Transfer-Encoding: chunked\r\n", 28);
    if (o->close)
        PUT("Connection: close\r\n", 19);
    else if (o->keep_alive_10)
        PUT("Connection: keep-alive\r\n", 24);
    PUT("\r\n", 2);
#undef PUT
    out->len += (size_t)(p - start);
}

void mw_http_date(time_t t, char *buf)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[96]; /* room for any int the compiler imagines; real dates take 29 */
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(buf, tmp, 31);
    buf[31] = '\0';
}
