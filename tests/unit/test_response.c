/* test_response.c - response heads: header name and value validation,
 * add / replace / remove / get, serialization with Date, Server,
 * Content-Length, chunked and Connection, status reasons, and the
 * IMF-fixdate format. */
#include "t.h"
#include "response.h"

#include <stdlib.h>

#define SERVER_LINE "Server: moonwire/" MW_VERSION "\r\n"

static void check_names(void)
{
    static const char *good[] = {"Content-Type",    "x",          "X-Request-Id",  "a1",
                                 "!#$%&'*+-.^_`|~", "Set-Cookie", "X_Under_Score", "0"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(mw_header_name_ok(good[i], strlen(good[i])));
    static const char *bad[] = {"",     "a b", "a:b",  "a\r", "a\n",         "a\r\nb", "(x)",
                                "a\"b", "a,b", "a;b",  "a/b", "a@b",         "a[b]",   "a{b}",
                                "a=b",  "a?b", "a\\b", "\t",  "caf\xc3\xa9", "\x7f",   "a\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int ok = mw_header_name_ok(bad[i], strlen(bad[i]));
        CHECK(!ok);
        if (ok) fprintf(stderr, "  ^ accepted name \"%s\"\n", bad[i]);
    }
    CHECK(!mw_header_name_ok("a\0b", 3)); /* NUL inside, length given */
    CHECK(!mw_header_name_ok("\0", 1));
    CHECK(mw_header_name_ok("ab\0", 2)); /* only len bytes count */
}

static void check_values(void)
{
    static const char *good[] = {"",
                                 "text/html; charset=utf-8",
                                 "a\tb",
                                 " spaced ",
                                 "\x80\xff obs-text",
                                 "caf\xc3\xa9",
                                 "\"quoted\", x=1; y"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(mw_header_value_ok(good[i], strlen(good[i])));
    static const char *bad[] = {"a\rb", "a\nb", "a\r\nX-Injected: 1", "\r", "\n", "end\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!mw_header_value_ok(bad[i], strlen(bad[i])));
    CHECK(!mw_header_value_ok("a\0b", 3));
    CHECK(!mw_header_value_ok("\0", 1));
    CHECK(mw_header_value_ok("ab\r", 2));
}

static void add(struct mw_response *r, const char *name, const char *value, int replace)
{
    mw_response_add(r, name, strlen(name), value, strlen(value), replace);
}

/* The head as a NUL-terminated string (static buffer). */
static const char *head(const struct mw_response *r, const struct mw_head_opts *o)
{
    static char out[8192];
    struct mw_buf b;
    mw_buf_init(&b);
    mw_response_head(r, o, &b);
    size_t n = b.len < sizeof out - 1 ? b.len : sizeof out - 1;
    memcpy(out, b.data, n);
    out[n] = '\0';
    mw_buf_free(&b);
    return out;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void check_store(void)
{
    struct mw_response r;
    mw_response_init(&r);
    CHECK(r.status == 200);
    CHECK(mw_response_get(&r, "x-a", NULL) == NULL);

    size_t vlen = 0;
    add(&r, "X-A", "1", 1);
    add(&r, "X-A", "2", 0); /* add keeps the earlier line */
    const char *v = mw_response_get(&r, "x-a", &vlen);
    CHECK(v && vlen == 1 && v[0] == '2'); /* the last one, any case */
    struct mw_head_opts o = {.content_length = -1};
    const char *h = head(&r, &o);
    CHECK(strstr(h, "X-A: 1\r\nX-A: 2\r\n") != NULL);

    /* replace drops every earlier line of the name, whatever its case */
    add(&r, "x-a", "3", 1);
    h = head(&r, &o);
    CHECK(count(h, "X-A:") == 0);
    CHECK(count(h, "x-a: 3\r\n") == 1);
    v = mw_response_get(&r, "X-A", &vlen);
    CHECK(v && vlen == 1 && v[0] == '3');

    /* a header whose name is a prefix of another is another header */
    add(&r, "X-AB", "long", 1);
    add(&r, "X", "short", 1);
    v = mw_response_get(&r, "x-a", &vlen);
    CHECK(v && vlen == 1 && v[0] == '3');
    v = mw_response_get(&r, "x", &vlen);
    CHECK(v && vlen == 5 && memcmp(v, "short", 5) == 0);

    /* remove */
    mw_response_remove(&r, "X-a");
    CHECK(mw_response_get(&r, "x-a", NULL) == NULL);
    h = head(&r, &o);
    CHECK(count(h, "x-a:") == 0 && count(h, "X-A:") == 0);
    CHECK(strstr(h, "X-AB: long\r\n") != NULL);
    mw_response_remove(&r, "not-there");
    add(&r, "X-A", "again", 0); /* added after a remove: back */
    v = mw_response_get(&r, "x-a", &vlen);
    CHECK(v && vlen == 5 && memcmp(v, "again", 5) == 0);

    /* an empty value is a value */
    add(&r, "X-Empty", "", 1);
    v = mw_response_get(&r, "x-empty", &vlen);
    CHECK(v != NULL && vlen == 0);
    CHECK(strstr(head(&r, &o), "X-Empty: \r\n") != NULL);

    /* values may hold binary-safe bytes given by length */
    mw_response_add(&r, "X-Bin", 5, "a\tb\x80", 4, 1);
    CHECK(strstr(head(&r, &o), "X-Bin: a\tb\x80\r\n") != NULL);

    /* reset: status and headers go */
    r.status = 404;
    mw_response_reset(&r);
    CHECK(r.status == 200);
    CHECK(mw_response_get(&r, "x-ab", NULL) == NULL);
    h = head(&r, &o);
    CHECK(count(h, "X-") == 0);

    /* many headers: storage grows, order is kept */
    char name[32], value[32], line[80];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "X-H%d", i);
        snprintf(value, sizeof value, "v%d", i * 7);
        add(&r, name, value, 1);
    }
    h = head(&r, &o);
    const char *prev = h;
    int in_order = 1;
    for (int i = 0; i < 200; i++) {
        snprintf(line, sizeof line, "\r\nX-H%d: v%d\r\n", i, i * 7);
        const char *at = strstr(prev, line);
        if (!at)
            in_order = 0;
        else
            prev = at + 1;
    }
    CHECK(in_order);
    v = mw_response_get(&r, "x-h199", &vlen);
    CHECK(v && vlen == 5 && memcmp(v, "v1393", 5) == 0);
    mw_response_free(&r);

    /* free leaves a usable, empty response */
    CHECK(r.nhdrs == 0 && r.status == 200);
    add(&r, "A", "b", 1);
    CHECK(mw_response_get(&r, "a", NULL) != NULL);
    mw_response_free(&r);
}

static void check_head(void)
{
    struct mw_response r;
    mw_response_init(&r);
    add(&r, "Content-Type", "text/plain", 1);
    add(&r, "Set-Cookie", "a=1", 0);
    add(&r, "Set-Cookie", "b=2", 0);

    struct mw_head_opts o = {.content_length = 5, .date = "Sun, 06 Nov 1994 08:49:37 GMT"};
    CHECK_STR(head(&r, &o),
              "HTTP/1.1 200 OK\r\n"
              "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" SERVER_LINE "Content-Type: text/plain\r\n"
              "Set-Cookie: a=1\r\n"
              "Set-Cookie: b=2\r\n"
              "Content-Length: 5\r\n"
              "\r\n");

    /* chunked and close; no Date when none is given */
    r.status = 404;
    struct mw_head_opts o2 = {.content_length = -1, .chunked = 1, .close = 1};
    CHECK_STR(head(&r, &o2), "HTTP/1.1 404 Not Found\r\n" SERVER_LINE "Content-Type: text/plain\r\n"
                             "Set-Cookie: a=1\r\n"
                             "Set-Cookie: b=2\r\n"
                             "Transfer-Encoding: chunked\r\n"
                             "Connection: close\r\n"
                             "\r\n");
    mw_response_free(&r);

    /* HTTP/1.0 keep-alive; close wins over it */
    mw_response_init(&r);
    struct mw_head_opts o3 = {.content_length = 0, .keep_alive_10 = 1};
    CHECK_STR(head(&r, &o3), "HTTP/1.1 200 OK\r\n" SERVER_LINE
                             "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    o3.close = 1;
    CHECK_STR(head(&r, &o3),
              "HTTP/1.1 200 OK\r\n" SERVER_LINE "Content-Length: 0\r\nConnection: close\r\n\r\n");

    /* neither length nor chunked: close-delimited or bodyless */
    r.status = 204;
    struct mw_head_opts o4 = {.content_length = -1};
    CHECK_STR(head(&r, &o4), "HTTP/1.1 204 No Content\r\n" SERVER_LINE "\r\n");

    /* big lengths are printed in full */
    r.status = 200;
    struct mw_head_opts o5 = {.content_length = 1099511627776LL};
    CHECK(strstr(head(&r, &o5), "\r\nContent-Length: 1099511627776\r\n") != NULL);
    o5.content_length = 9223372036854775807LL;
    CHECK(strstr(head(&r, &o5), "\r\nContent-Length: 9223372036854775807\r\n") != NULL);

    /* statuses without a table entry get their class name */
    r.status = 299;
    CHECK(strncmp(head(&r, &o4), "HTTP/1.1 299 Success\r\n", 22) == 0);
    r.status = 599;
    CHECK(strncmp(head(&r, &o4), "HTTP/1.1 599 Server Error\r\n", 27) == 0);
    r.status = 100;
    CHECK(strncmp(head(&r, &o4), "HTTP/1.1 100 Continue\r\n", 23) == 0);

    /* every head ends with exactly one blank line */
    const char *h = head(&r, &o);
    size_t n = strlen(h);
    CHECK(n > 4 && strcmp(h + n - 4, "\r\n\r\n") == 0);
    CHECK(strstr(h, "\r\n\r\n") == h + n - 4);
    mw_response_free(&r);
}

static void check_reasons(void)
{
    static const struct {
        int status;
        const char *reason;
    } t[] = {{100, "Continue"},
             {101, "Switching Protocols"},
             {200, "OK"},
             {201, "Created"},
             {204, "No Content"},
             {206, "Partial Content"},
             {301, "Moved Permanently"},
             {302, "Found"},
             {303, "See Other"},
             {304, "Not Modified"},
             {307, "Temporary Redirect"},
             {308, "Permanent Redirect"},
             {400, "Bad Request"},
             {401, "Unauthorized"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {413, "Content Too Large"},
             {414, "URI Too Long"},
             {418, "I'm a teapot"},
             {422, "Unprocessable Content"},
             {426, "Upgrade Required"},
             {429, "Too Many Requests"},
             {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"},
             {505, "HTTP Version Not Supported"},
             /* unknown codes: the class */
             {150, "Informational"},
             {250, "Success"},
             {399, "Redirection"},
             {499, "Client Error"},
             {555, "Server Error"}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        CHECK_STR(mw_status_reason(t[i].status), t[i].reason);

    CHECK(mw_status_bodyless(100));
    CHECK(mw_status_bodyless(101));
    CHECK(mw_status_bodyless(199));
    CHECK(mw_status_bodyless(204));
    CHECK(mw_status_bodyless(304));
    CHECK(!mw_status_bodyless(200));
    CHECK(!mw_status_bodyless(201));
    CHECK(!mw_status_bodyless(301));
    CHECK(!mw_status_bodyless(404));
    CHECK(!mw_status_bodyless(500));
}

static void check_date(void)
{
    static const struct {
        long long t;
        const char *want;
    } d[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"}, /* RFC 9110's example */
        {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"}, /* leap day */
        {1709251199, "Thu, 29 Feb 2024 23:59:59 GMT"},
        {1735689599, "Tue, 31 Dec 2024 23:59:59 GMT"},
        {1735689600, "Wed, 01 Jan 2025 00:00:00 GMT"},
        {2147483647, "Tue, 19 Jan 2038 03:14:07 GMT"},
        {2147483648LL, "Tue, 19 Jan 2038 03:14:08 GMT"}, /* past 32-bit time_t */
        {4102444800LL, "Fri, 01 Jan 2100 00:00:00 GMT"}, /* not a leap year */
        {253402300799LL, "Fri, 31 Dec 9999 23:59:59 GMT"},
    };
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        char buf[40];
        memset(buf, 'Z', sizeof buf);
        mw_http_date((time_t)d[i].t, buf);
        CHECK_STR(buf, d[i].want);
        CHECK(strlen(buf) == 29);
        /* the documented 32 bytes are all it touches */
        for (size_t k = 32; k < sizeof buf; k++)
            CHECK(buf[k] == 'Z');
    }
    /* every day of a few years: weekday, month and day agree with a
     * straightforward count from 1970-01-01 (a Thursday) */
    static const char *days[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    long long day = 0;
    int bad = 0;
    for (int y = 1970; y < 2040; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int mdays[] = {31, 28 + leap, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        for (int m = 0; m < 12; m++)
            for (int dd = 1; dd <= mdays[m]; dd++, day++) {
                if (y < 2020 && dd != 1 && dd != mdays[m]) continue;
                char want[40], got[40];
                long long secs = day * 86400 + 12 * 3600 + 34 * 60 + 56;
                snprintf(want, sizeof want, "%s, %02d %s %d 12:34:56 GMT", days[day % 7], dd,
                         months[m], y);
                mw_http_date((time_t)secs, got);
                if (strcmp(got, want) != 0) {
                    if (bad++ < 3)
                        fprintf(stderr, "  date %lld: got %s, want %s\n", secs, got, want);
                }
            }
    }
    CHECK(bad == 0);
}

int main(void)
{
    check_names();
    check_values();
    check_store();
    check_head();
    check_reasons();
    check_date();
    T_DONE();
}
