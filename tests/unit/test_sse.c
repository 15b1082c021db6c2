/* test_sse.c - the SSE encoder (sse.c) against the WHATWG event-stream
 * rules: exact bytes for table-driven cases, then every encoding is parsed
 * back by a small reference implementation of the spec's parser (below),
 * fed whole, byte by byte and split at every offset, and must give back
 * the event that was sent. An exhaustive sweep of short data strings made
 * of the characters that matter (CR, LF, space, colon) closes the gaps.
 * The parser itself is first checked against the spec's own examples. */
#include "buf.h"
#include "sse.h"
#include "t.h"

#include <stdlib.h>

/* ------------------------------------------------- reference parser */

/* WHATWG HTML, "9.2.6 Interpreting an event stream", on bytes: the BOM is
 * dropped once at the start; lines end at CRLF, LF or CR; an incomplete
 * event at the end of the stream is discarded. */

struct pev {
    char *type;
    char *data;
    size_t data_len;
    char *last_id;
};

struct sse_parser {
    int started;           /* past the optional BOM */
    char bom[3];           /* BOM bytes seen so far at the very start */
    int nbom;
    int after_cr;          /* the previous byte was a CR: an LF now is part of it */
    struct mw_buf line;    /* the line being read */
    struct mw_buf data;    /* data buffer */
    struct mw_buf type;    /* event type buffer */
    struct mw_buf id_buf;  /* last event ID buffer */
    char *last_id;         /* the source's last event ID string */
    long long retry_ms;    /* reconnection time; -1: never set */
    struct pev ev[64];
    int nev;
};

static char *dup_buf(const struct mw_buf *b)
{
    return mw_xstrndup(b->data ? b->data : "", b->len);
}

static void parser_init(struct sse_parser *p)
{
    memset(p, 0, sizeof *p);
    mw_buf_init(&p->line);
    mw_buf_init(&p->data);
    mw_buf_init(&p->type);
    mw_buf_init(&p->id_buf);
    p->last_id = mw_xstrndup("", 0);
    p->retry_ms = -1;
}

static void parser_free(struct sse_parser *p)
{
    mw_buf_free(&p->line);
    mw_buf_free(&p->data);
    mw_buf_free(&p->type);
    mw_buf_free(&p->id_buf);
    free(p->last_id);
    for (int i = 0; i < p->nev; i++) {
        free(p->ev[i].type);
        free(p->ev[i].data);
        free(p->ev[i].last_id);
    }
}

static void dispatch(struct sse_parser *p)
{
    free(p->last_id);
    p->last_id = dup_buf(&p->id_buf);
    if (p->data.len == 0) {
        p->type.len = 0;
        return;
    }
    p->data.len--; /* every data line appended an LF: drop the last */
    if (p->nev < 64) {
        struct pev *e = &p->ev[p->nev++];
        e->type = p->type.len ? dup_buf(&p->type) : mw_xstrndup("message", 7);
        e->data = dup_buf(&p->data);
        e->data_len = p->data.len;
        e->last_id = mw_xstrndup(p->last_id, strlen(p->last_id));
    }
    p->data.len = 0;
    p->type.len = 0;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static void process_line(struct sse_parser *p)
{
    const char *s = p->line.data ? p->line.data : "";
    size_t len = p->line.len;
    if (len == 0) {
        dispatch(p);
        return;
    }
    if (s[0] == ':') return; /* a comment */
    const char *colon = memchr(s, ':', len);
    size_t flen = colon ? (size_t)(colon - s) : len;
    const char *v = colon ? colon + 1 : s + len;
    size_t vlen = (size_t)(s + len - v);
    if (vlen && v[0] == ' ') v++, vlen--;
    if (flen == 5 && memcmp(s, "event", 5) == 0) {
        p->type.len = 0;
        mw_buf_append(&p->type, v, vlen);
    } else if (flen == 4 && memcmp(s, "data", 4) == 0) {
        mw_buf_append(&p->data, v, vlen);
        mw_buf_appendc(&p->data, '\n');
    } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
        if (!memchr(v, '\0', vlen)) {
            p->id_buf.len = 0;
            mw_buf_append(&p->id_buf, v, vlen);
        }
    } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
        if (all_digits(v, vlen)) {
            long long ms = 0;
            for (size_t i = 0; i < vlen; i++) ms = ms * 10 + (v[i] - '0');
            p->retry_ms = ms;
        }
    }
    /* any other field is ignored */
}

static void parser_byte(struct sse_parser *p, char c)
{
    if (p->after_cr) {
        p->after_cr = 0;
        if (c == '\n') return; /* the LF of a CRLF */
    }
    if (c == '\r' || c == '\n') {
        process_line(p);
        p->line.len = 0;
        p->after_cr = c == '\r';
        return;
    }
    mw_buf_appendc(&p->line, c);
}

static void parser_feed(struct sse_parser *p, const char *s, size_t len)
{
    static const char BOM[3] = {'\xEF', '\xBB', '\xBF'};
    for (size_t i = 0; i < len; i++) {
        if (!p->started) {
            /* hold the first bytes until they are or are not a BOM */
            if (s[i] == BOM[p->nbom]) {
                p->bom[p->nbom++] = s[i];
                if (p->nbom == 3) p->started = 1;
                continue;
            }
            p->started = 1;
            for (int k = 0; k < p->nbom; k++) parser_byte(p, p->bom[k]);
        }
        parser_byte(p, s[i]);
    }
}

/* ------------------------------------------------------------ helpers */

/* Data as the client must see it: CRLF and CR become LF. */
static char *normalize(const char *s, size_t len, size_t *out_len)
{
    char *out = mw_xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n') i++;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

static char *encode(const struct mw_sse_event *ev, size_t *len)
{
    struct mw_buf b;
    mw_buf_init(&b);
    mw_sse_encode(&b, ev);
    mw_buf_appendc(&b, '\0');
    *len = b.len - 1;
    return b.data;
}

/* Parses `s` fed in pieces ending at cuts[]; the caller frees p. */
static void parse_pieces(struct sse_parser *p, const char *s, size_t len, const size_t *cuts,
                         size_t ncuts)
{
    parser_init(p);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        parser_feed(p, s + from, to - from);
        from = to;
    }
}

/* An expected event: data (raw, normalized when checked), type, last id. */
struct want {
    const char *data;
    size_t data_len;
    const char *type;
    const char *last_id;
};

static int same_events(const struct sse_parser *p, const struct want *w, int nw)
{
    if (p->nev != nw) return 0;
    for (int i = 0; i < nw; i++) {
        size_t nlen;
        char *norm = normalize(w[i].data, w[i].data_len, &nlen);
        int ok = p->ev[i].data_len == nlen && memcmp(p->ev[i].data, norm, nlen) == 0 &&
                 strcmp(p->ev[i].type, w[i].type) == 0 && strcmp(p->ev[i].last_id, w[i].last_id) == 0;
        free(norm);
        if (!ok) return 0;
    }
    return 1;
}

/* Checks that `s` parses to exactly w[] (and retry_ms), fed whole, byte
 * by byte, and split at every offset and every pair of offsets (for short
 * inputs). Returns 1 when all agree. */
static int parses_to(const char *s, size_t len, const struct want *w, int nw, long long retry_ms)
{
    struct sse_parser p;
    int ok = 1;
    parse_pieces(&p, s, len, NULL, 0);
    ok &= same_events(&p, w, nw) && p.retry_ms == retry_ms;
    parser_free(&p);

    size_t *cuts = mw_xmalloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
    parse_pieces(&p, s, len, cuts, len > 1 ? len - 1 : 0);
    ok &= same_events(&p, w, nw) && p.retry_ms == retry_ms;
    parser_free(&p);

    for (size_t a = 0; a <= len; a++) {
        cuts[0] = a;
        parse_pieces(&p, s, len, cuts, 1);
        ok &= same_events(&p, w, nw) && p.retry_ms == retry_ms;
        parser_free(&p);
        if (len > 40) continue;
        for (size_t b = a; b <= len; b++) {
            cuts[1] = b;
            parse_pieces(&p, s, len, cuts, 2);
            ok &= same_events(&p, w, nw) && p.retry_ms == retry_ms;
            parser_free(&p);
        }
    }
    free(cuts);
    return ok;
}

/* ------------------------------------------- the parser, on the spec */

#define W(d, t, id) {d, sizeof d - 1, t, id}

static void check_parser_on_spec_examples(void)
{
    /* the spec's examples */
    static const char ex1[] = "data: YHOO\ndata: +2\ndata: 10\n\n";
    static const struct want w1[] = {W("YHOO\n+2\n10", "message", "")};
    CHECK(parses_to(ex1, sizeof ex1 - 1, w1, 1, -1));

    static const char ex2[] = ": test stream\n\ndata: first event\nid: 1\n\n"
                              "data:second event\nid\n\ndata:  third event\n\n";
    static const struct want w2[] = {W("first event", "message", "1"),
                                     W("second event", "message", ""),
                                     W(" third event", "message", "")};
    CHECK(parses_to(ex2, sizeof ex2 - 1, w2, 3, -1));

    static const char ex3[] = "data\n\ndata\ndata\n\ndata:";
    static const struct want w3[] = {W("", "message", ""), W("\n", "message", "")};
    CHECK(parses_to(ex3, sizeof ex3 - 1, w3, 2, -1));

    static const char ex4[] = "data:test\n\ndata: test\n\n";
    static const struct want w4[] = {W("test", "message", ""), W("test", "message", "")};
    CHECK(parses_to(ex4, sizeof ex4 - 1, w4, 2, -1));

    /* CR and CRLF line ends, mixed */
    static const char cr[] = "data: a\rdata: b\r\n\rdata: c\n\r\n";
    static const struct want wcr[] = {W("a\nb", "message", ""), W("c", "message", "")};
    CHECK(parses_to(cr, sizeof cr - 1, wcr, 2, -1));

    /* a BOM at the start is dropped; one later is part of a field name */
    static const char bom[] = "\xEF\xBB\xBF" "data: a\n\n\xEF\xBB\xBF" "data: b\n\n";
    static const struct want wbom[] = {W("a", "message", "")};
    CHECK(parses_to(bom, sizeof bom - 1, wbom, 1, -1));
    /* a partial BOM is not one */
    static const char nobom[] = "\xEF\xBB" "data: a\n\ndata: b\n\n";
    static const struct want wnobom[] = {W("b", "message", "")};
    CHECK(parses_to(nobom, sizeof nobom - 1, wnobom, 1, -1));

    /* an event name applies to its event only; a blank line with no data
     * dispatches nothing but still resets the name */
    static const char ev[] = "event: x\ndata: 1\n\nevent: y\n\ndata: 2\n\n";
    static const struct want wev[] = {W("1", "x", ""), W("2", "message", "")};
    CHECK(parses_to(ev, sizeof ev - 1, wev, 2, -1));

    /* id persists across events; an id with NUL is ignored; an id line
     * alone changes the last id for later events */
    static const char id[] = "id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid: 9\n\ndata: d\n\n";
    static const struct want wid[] = {W("a", "message", "7"), W("b", "message", "7"),
                                      W("c", "message", "7"), W("d", "message", "9")};
    CHECK(parses_to(id, sizeof id - 1, wid, 4, -1));

    /* retry: ASCII digits only, one optional space */
    static const char r1[] = "retry: 1500\n\n";
    CHECK(parses_to(r1, sizeof r1 - 1, NULL, 0, 1500));
    static const char r2[] = "retry: 15a\nretry:  15\nretry: -1\nretry:\n\n";
    CHECK(parses_to(r2, sizeof r2 - 1, NULL, 0, -1));
    static const char r3[] = "retry:0\n\n";
    CHECK(parses_to(r3, sizeof r3 - 1, NULL, 0, 0));

    /* unknown and mis-cased fields are ignored; one space only is removed */
    static const char f[] = "Data: no\nfoo: bar\ndata:   x\n\n";
    static const struct want wf[] = {W("  x", "message", "")};
    CHECK(parses_to(f, sizeof f - 1, wf, 1, -1));

    /* no final blank line: the event is never dispatched */
    static const char inc[] = "data: lost";
    CHECK(parses_to(inc, sizeof inc - 1, NULL, 0, -1));
}

/* ------------------------------------------------- exact encodings */

struct enc_case {
    const char *what;
    const char *data;  /* NULL: none */
    size_t data_len;   /* 0 with data: strlen */
    const char *event;
    const char *id;
    long long retry_ms;
    const char *want;
    size_t want_len;
};

/* `want` may hold NUL bytes: its length is the literal's */
#define E(what, data, dlen, event, id, retry, want) {what, data, dlen, event, id, retry, want, sizeof want - 1}

/* clang-format off */
static const struct enc_case enc_cases[] = {
    E("plain", "hello", 0, NULL, NULL, -1, "data: hello\n\n"),
    E("empty data", "", 0, NULL, NULL, -1, "data: \n\n"),
    E("LF", "a\nb", 0, NULL, NULL, -1, "data: a\ndata: b\n\n"),
    E("CRLF", "a\r\nb", 0, NULL, NULL, -1, "data: a\ndata: b\n\n"),
    E("CR", "a\rb", 0, NULL, NULL, -1, "data: a\ndata: b\n\n"),
    E("LF CR is two breaks", "a\n\rb", 0, NULL, NULL, -1, "data: a\ndata: \ndata: b\n\n"),
    E("CR CR LF", "a\r\r\nb", 0, NULL, NULL, -1, "data: a\ndata: \ndata: b\n\n"),
    E("trailing LF", "a\n", 0, NULL, NULL, -1, "data: a\ndata: \n\n"),
    E("trailing CRLF", "a\r\n", 0, NULL, NULL, -1, "data: a\ndata: \n\n"),
    E("trailing CR", "a\r", 0, NULL, NULL, -1, "data: a\ndata: \n\n"),
    E("only LF", "\n", 0, NULL, NULL, -1, "data: \ndata: \n\n"),
    E("only CRLF", "\r\n", 0, NULL, NULL, -1, "data: \ndata: \n\n"),
    E("two LFs", "\n\n", 0, NULL, NULL, -1, "data: \ndata: \ndata: \n\n"),
    E("leading LF", "\na", 0, NULL, NULL, -1, "data: \ndata: a\n\n"),
    E("leading space kept", " a", 0, NULL, NULL, -1, "data:  a\n\n"),
    E("colon in data", ":a: b", 0, NULL, NULL, -1, "data: :a: b\n\n"),
    E("NUL in data", "a\0b", 3, NULL, NULL, -1, "data: a\0b\n\n"),
    E("utf-8", "caf\xC3\xA9 \xE2\x9C\x93", 0, NULL, NULL, -1, "data: caf\xC3\xA9 \xE2\x9C\x93\n\n"),
    E("event", "x", 0, "update", NULL, -1, "event: update\ndata: x\n\n"),
    E("id", "x", 0, NULL, "42", -1, "id: 42\ndata: x\n\n"),
    E("empty id resets", "x", 0, NULL, "", -1, "id: \ndata: x\n\n"),
    E("retry", "x", 0, NULL, NULL, 3000, "retry: 3000\ndata: x\n\n"),
    E("retry 0", NULL, 0, NULL, NULL, 0, "retry: 0\n\n"),
    E("big retry", NULL, 0, NULL, NULL, 9999999999LL, "retry: 9999999999\n\n"),
    E("all fields", "a\nb", 0, "e", "7", 10, "id: 7\nevent: e\nretry: 10\ndata: a\ndata: b\n\n"),
    E("id only", NULL, 0, NULL, "5", -1, "id: 5\n\n"),
    E("event only", NULL, 0, "e", NULL, -1, "event: e\n\n"),
    E("spaced event name", "x", 0, " sp ace", NULL, -1, "event:  sp ace\ndata: x\n\n"),
    E("colon in id", "x", 0, NULL, "a:b", -1, "id: a:b\ndata: x\n\n"),
};
/* clang-format on */

static void check_encodings(void)
{
    for (size_t i = 0; i < sizeof enc_cases / sizeof *enc_cases; i++) {
        const struct enc_case *c = &enc_cases[i];
        int before = t_failed;
        struct mw_sse_event ev = {.retry_ms = c->retry_ms};
        if (c->data) {
            ev.data = c->data;
            ev.data_len = c->data_len ? c->data_len : strlen(c->data);
        }
        if (c->event) ev.event = c->event, ev.event_len = strlen(c->event);
        if (c->id) ev.id = c->id, ev.id_len = strlen(c->id);
        size_t len;
        char *got = encode(&ev, &len);
        size_t want_len = c->want_len;
        CHECK(len == want_len && memcmp(got, c->want, len) == 0);

        /* and a client reads back what was sent */
        struct want w = {ev.data, ev.data_len, c->event ? c->event : "message", c->id ? c->id : ""};
        CHECK(parses_to(got, len, &w, c->data ? 1 : 0, c->retry_ms));
        free(got);
        if (t_failed != before) fprintf(stderr, "  ^ in case: %s\n", c->what);
    }
}

/* ------------------------------------------------------------ comments */

static void check_comments(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", ": \n"},
        {"hi", ": hi\n"},
        {"a\nb", ": a\n: b\n"},
        {"a\r\nb\rc", ": a\n: b\n: c\n"},
        {"a\n", ": a\n: \n"},
        {"data: not an event", ": data: not an event\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct mw_buf b;
        mw_buf_init(&b);
        mw_sse_comment(&b, cases[i].text, strlen(cases[i].text));
        CHECK(b.len == strlen(cases[i].want) && memcmp(b.data, cases[i].want, b.len) == 0);
        /* every line is a comment: as the stream sends it (with a blank
         * line after), between two events, it changes nothing */
        struct mw_buf s;
        mw_buf_init(&s);
        mw_buf_appends(&s, "id: 1\ndata: before\n\n");
        mw_buf_append(&s, b.data, b.len);
        mw_buf_appends(&s, "\ndata: after\n\n");
        static const struct want w[] = {W("before", "message", "1"), W("after", "message", "1")};
        CHECK(parses_to(s.data, s.len, w, 2, -1));
        mw_buf_free(&s);
        mw_buf_free(&b);
    }
}

/* ------------------------------------------------------ field checks */

static void check_field_ok(void)
{
    CHECK(mw_sse_field_ok("", 0));
    CHECK(mw_sse_field_ok("update", 6));
    CHECK(mw_sse_field_ok("with space: and colon", 21));
    CHECK(mw_sse_field_ok("caf\xC3\xA9", 5));
    CHECK(!mw_sse_field_ok("a\nb", 3));
    CHECK(!mw_sse_field_ok("a\rb", 3));
    CHECK(!mw_sse_field_ok("\r\n", 2));
    CHECK(!mw_sse_field_ok("ab\n", 3));
    CHECK(!mw_sse_field_ok("a\0b", 3));
    CHECK(!mw_sse_field_ok("\0", 1));
    /* only the given length is looked at */
    CHECK(mw_sse_field_ok("ab\n", 2));
}

/* ---------------------------------------------- sequences of events */

/* Several events in one stream, as a stream sends them: the event name and
 * id of each reach the client with its data, ids carry over. */
static void check_sequence(void)
{
    struct mw_buf s;
    mw_buf_init(&s);
    struct mw_sse_event e1 = {.data = "one", .data_len = 3, .id = "1", .id_len = 1, .retry_ms = -1};
    struct mw_sse_event e2 = {.data = "two\r\nlines", .data_len = 10, .event = "x", .event_len = 1,
                              .retry_ms = 250};
    struct mw_sse_event e3 = {.data = "", .data_len = 0, .id = "3,4", .id_len = 3, .retry_ms = -1};
    struct mw_sse_event e4 = {.id = "", .id_len = 0, .retry_ms = -1};
    struct mw_sse_event e5 = {.data = "\n", .data_len = 1, .retry_ms = -1};
    mw_sse_encode(&s, &e1);
    mw_sse_comment(&s, "keepalive", 9);
    mw_buf_appendc(&s, '\n');
    mw_sse_encode(&s, &e2);
    mw_sse_encode(&s, &e3);
    mw_sse_encode(&s, &e4);
    mw_sse_encode(&s, &e5);
    static const struct want w[] = {W("one", "message", "1"), W("two\nlines", "x", "1"),
                                    W("", "message", "3,4"), W("\n", "message", "")};
    CHECK(parses_to(s.data, s.len, w, 4, 250));
    mw_buf_free(&s);
}

/* ---------------------------------------------------- exhaustive sweep */

/* Every data string up to 6 characters over {a, CR, LF, space, colon}
 * round-trips, with and without an event name and id. */
static void check_sweep(void)
{
    static const char alphabet[] = {'a', '\r', '\n', ' ', ':'};
    enum { K = sizeof alphabet };
    char s[8];
    long total = 0, bad = 0;
    for (int n = 0; n <= 6; n++) {
        long count = 1;
        for (int i = 0; i < n; i++) count *= K;
        for (long x = 0; x < count; x++) {
            long y = x;
            for (int i = 0; i < n; i++) {
                s[i] = alphabet[y % K];
                y /= K;
            }
            struct mw_sse_event ev = {.data = s, .data_len = (size_t)n, .retry_ms = -1};
            if (x & 1) ev.event = "e", ev.event_len = 1, ev.id = "9", ev.id_len = 1;
            size_t len;
            char *enc = encode(&ev, &len);
            struct want w = {s, (size_t)n, ev.event ? "e" : "message", ev.id ? "9" : ""};
            /* whole and byte by byte (parses_to's full split sweep is
             * quadratic: the table cases above cover it) */
            struct sse_parser p;
            parse_pieces(&p, enc, len, NULL, 0);
            int ok = same_events(&p, &w, 1);
            parser_free(&p);
            size_t cuts[64];
            for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
            parse_pieces(&p, enc, len, cuts, len - 1);
            ok &= same_events(&p, &w, 1);
            parser_free(&p);
            /* no stray bytes: the encoding is field lines and one blank line */
            ok &= len >= 2 && enc[len - 1] == '\n' && enc[len - 2] == '\n';
            ok &= memchr(enc, '\r', len) == NULL;
            free(enc);
            total++;
            if (!ok) {
                bad++;
                if (bad < 5) {
                    fprintf(stderr, "sweep: data of %d bytes fails:", n);
                    for (int i = 0; i < n; i++) fprintf(stderr, " %02x", (unsigned char)s[i]);
                    fprintf(stderr, "\n");
                }
            }
        }
    }
    CHECK(bad == 0);
    CHECK(total == 1 + 5 + 25 + 125 + 625 + 3125 + 15625);
}

int main(void)
{
    check_parser_on_spec_examples();
    check_encodings();
    check_comments();
    check_field_ok();
    check_sequence();
    check_sweep();
    T_DONE();
}
