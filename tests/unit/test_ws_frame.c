/* test_ws_frame.c - the WebSocket frame parser and header encoder.
 *
 * Every case is a byte string of client frames and the events it must
 * give (frame headers, unmasked payload, frame ends), or the negative
 * close code it must stop with. Each is fed whole, byte by byte, split at
 * every offset, and (small ones) split at every pair of offsets; the
 * events must be the same every time. Then: every payload length form,
 * the header encoder's bytes for each, callbacks that stop the parser,
 * and the close code table against RFC 6455 7.4. */
#include "t.h"
#include "buf.h"
#include "ws_frame.h"

#include <stdint.h>
#include <stdlib.h>

/* ------------------------------------------------------------ recorder */

/* What the callbacks saw: one line per frame ("op fin z len;"), then its
 * payload appended to `payload`; `order` counts callbacks out of order. */
struct rec {
    struct mw_buf log;
    struct mw_buf payload;
    int in_frame;
    uint64_t frame_len, got;
    int order_errors;
    int stop_on_frame, stop_on_end; /* return these from the callbacks */
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    mw_buf_init(&r->log);
    mw_buf_init(&r->payload);
}

static void rec_free(struct rec *r)
{
    mw_buf_free(&r->log);
    mw_buf_free(&r->payload);
}

static int cb_frame(void *ud, int opcode, int fin, int compressed, uint64_t len)
{
    struct rec *r = ud;
    if (r->in_frame) r->order_errors++;
    r->in_frame = 1;
    r->frame_len = len;
    r->got = 0;
    mw_buf_appendf(&r->log, "%x%s%s%llu;", opcode, fin ? "F" : "-", compressed ? "Z" : "",
                   (unsigned long long)len);
    return r->stop_on_frame;
}

static int cb_payload(void *ud, uint8_t *data, size_t len)
{
    struct rec *r = ud;
    if (!r->in_frame || len == 0) r->order_errors++;
    r->got += len;
    if (r->got > r->frame_len) r->order_errors++;
    mw_buf_append(&r->payload, data, len);
    return 0;
}

static int cb_end(void *ud)
{
    struct rec *r = ud;
    if (!r->in_frame || r->got != r->frame_len) r->order_errors++;
    r->in_frame = 0;
    mw_buf_appends(&r->log, "E;");
    return r->stop_on_end;
}

static const struct mw_ws_frame_cb cbs = {cb_frame, cb_payload, cb_end};

/* -------------------------------------------------------- frame builder */

struct input {
    uint8_t *data;
    size_t len, cap;
    uint8_t *plain; /* the unmasked payloads, in order, for comparison */
    size_t plain_len, plain_cap;
};

static void in_init(struct input *in)
{
    memset(in, 0, sizeof *in);
}

static void in_free(struct input *in)
{
    free(in->data);
    free(in->plain);
}

static void in_put(struct input *in, const void *p, size_t n)
{
    if (in->len + n > in->cap) {
        in->cap = (in->len + n) * 2 + 64;
        in->data = mw_xrealloc(in->data, in->cap);
    }
    if (n) memcpy(in->data + in->len, p, n);
    in->len += n;
}

static void in_plain(struct input *in, const void *p, size_t n)
{
    if (in->plain_len + n > in->plain_cap) {
        in->plain_cap = (in->plain_len + n) * 2 + 64;
        in->plain = mw_xrealloc(in->plain, in->plain_cap);
    }
    if (n) memcpy(in->plain + in->plain_len, p, n);
    in->plain_len += n;
}

enum { LEN_AUTO = 0, LEN_7 = 7, LEN_16 = 16, LEN_64 = 64 };

/* Appends one frame. b0 is the first byte (FIN, RSV, opcode); the payload
 * is masked with key unless unmasked; form forces a length encoding. */
static void frame_ex(struct input *in, int b0, const void *payload, size_t len, int form,
                     int masked, uint32_t key)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)b0;
    uint8_t m = masked ? 0x80 : 0;
    if (form == LEN_AUTO) form = len < 126 ? LEN_7 : len <= 0xffff ? LEN_16 : LEN_64;
    if (form == LEN_7) {
        h[n++] = m | (uint8_t)len;
    } else if (form == LEN_16) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 0; i < 8; i++) h[n++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    uint8_t k[4] = {(uint8_t)(key >> 24), (uint8_t)(key >> 16), (uint8_t)(key >> 8), (uint8_t)key};
    if (masked) {
        memcpy(h + n, k, 4);
        n += 4;
    }
    in_put(in, h, n);
    const uint8_t *p = payload;
    size_t at = in->len;
    in_put(in, payload, len);
    if (masked)
        for (size_t i = 0; i < len; i++) in->data[at + i] = p[i] ^ k[i & 3];
    in_plain(in, payload, len);
}

static uint32_t next_key = 0x37fa213d;

static void frame(struct input *in, int b0, const char *payload, size_t len)
{
    next_key = next_key * 1103515245u + 12345u;
    frame_ex(in, b0, payload, len, LEN_AUTO, 1, next_key);
}

#define FIN  0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

/* --------------------------------------------------------------- feeding */

/* Feeds a copy of in (the parser unmasks in place) cut at the given
 * offsets. Returns 0 when every piece was consumed whole, else the first
 * negative result; a positive short count is reported as an order error. */
static long feed_cuts(const struct input *in, int deflate, const size_t *cuts, size_t ncuts,
                      struct rec *r)
{
    struct mw_ws_parser p;
    mw_ws_parser_init(&p, deflate);
    uint8_t *copy = malloc(in->len ? in->len : 1);
    if (in->len) memcpy(copy, in->data, in->len);
    size_t at = 0;
    long rc = 0;
    for (size_t c = 0; c <= ncuts && rc == 0; c++) {
        size_t end = c < ncuts ? cuts[c] : in->len;
        long n = mw_ws_parse(&p, copy + at, end - at, &cbs, r);
        if (n < 0) {
            rc = n;
        } else if ((size_t)n != end - at) {
            r->order_errors++;
            rc = 1;
        }
        at = end;
    }
    free(copy);
    return rc;
}

struct want {
    long rc;           /* 0, or the negative close code */
    const char *log;   /* events before the end or the error */
    int check_payload; /* compare the payload with the frames' plain bytes */
};

static int nchecked_splits;

/* One result against what is wanted; `how` names the split for messages. */
static void expect_one(const char *what, const char *how, const struct input *in, int deflate,
                       const size_t *cuts, size_t ncuts, const struct want *w)
{
    struct rec r;
    rec_init(&r);
    long rc = feed_cuts(in, deflate, cuts, ncuts, &r);
    mw_buf_appendc(&r.log, '\0');
    int ok = rc == w->rc && strcmp(r.log.data, w->log) == 0 && r.order_errors == 0;
    if (ok && w->check_payload)
        ok = r.payload.len == in->plain_len &&
             (in->plain_len == 0 || memcmp(r.payload.data, in->plain, in->plain_len) == 0);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  %s (%s): rc %ld want %ld; log \"%s\" want \"%s\"; order errors %d\n",
                what, how, rc, w->rc, r.log.data, w->log, r.order_errors);
    nchecked_splits++;
    rec_free(&r);
}

/* Whole, byte by byte, every single split, and every pair of splits for
 * inputs up to `pairs_max` bytes. */
static void expect_all_splits(const char *what, const struct input *in, int deflate,
                              const struct want *w, size_t pairs_max)
{
    expect_one(what, "whole", in, deflate, NULL, 0, w);
    if (in->len > 1) {
        size_t *cuts = malloc((in->len - 1) * sizeof *cuts);
        for (size_t i = 1; i < in->len; i++) cuts[i - 1] = i;
        expect_one(what, "byte by byte", in, deflate, cuts, in->len - 1, w);
        free(cuts);
    }
    int failed_before = t_failed;
    for (size_t k = 0; k <= in->len && t_failed == failed_before; k++) {
        char how[64];
        snprintf(how, sizeof how, "split at %zu", k);
        expect_one(what, how, in, deflate, &k, 1, w);
    }
    if (in->len > pairs_max) return;
    for (size_t i = 1; i < in->len && t_failed == failed_before; i++)
        for (size_t j = i; j < in->len && t_failed == failed_before; j++) {
            size_t cuts[2] = {i, j};
            char how[64];
            snprintf(how, sizeof how, "split at %zu and %zu", i, j);
            expect_one(what, how, in, deflate, cuts, 2, w);
        }
}

/* ------------------------------------------------------------- the cases */

static void test_valid_sequences(void)
{
    struct input in;

    /* a single text frame, and an empty one */
    in_init(&in);
    frame(&in, FIN | MW_WS_OP_TEXT, "Hello", 5);
    frame(&in, FIN | MW_WS_OP_BINARY, "", 0);
    expect_all_splits("text + empty binary", &in, 0, &(struct want){0, "1F5;E;2F0;E;", 1}, 64);
    in_free(&in);

    /* fragmentation with every control frame interleaved */
    in_init(&in);
    frame(&in, MW_WS_OP_TEXT, "Hel", 3);
    frame(&in, FIN | MW_WS_OP_PING, "p1", 2);
    frame(&in, MW_WS_OP_CONT, "lo ", 3);
    frame(&in, FIN | MW_WS_OP_PONG, "", 0);
    frame(&in, MW_WS_OP_CONT, "", 0);
    frame(&in, FIN | MW_WS_OP_CONT, "world", 5);
    frame(&in, FIN | MW_WS_OP_BINARY, "\x00\x01\xff", 3);
    frame(&in, FIN | MW_WS_OP_CLOSE, "\003\350bye", 5); /* 1000, "bye" */
    expect_all_splits("fragments with control frames", &in, 0,
                      &(struct want){0, "1-3;E;9F2;E;0-3;E;aF0;E;0-0;E;0F5;E;2F3;E;8F5;E;", 1}, 80);
    in_free(&in);

    /* a message may start again once the last one finished */
    in_init(&in);
    frame(&in, MW_WS_OP_BINARY, "ab", 2);
    frame(&in, FIN | MW_WS_OP_CONT, "c", 1);
    frame(&in, MW_WS_OP_TEXT, "d", 1);
    frame(&in, FIN | MW_WS_OP_CONT, "e", 1);
    expect_all_splits("two fragmented messages", &in, 0,
                      &(struct want){0, "2-2;E;0F1;E;1-1;E;0F1;E;", 1}, 64);
    in_free(&in);

    /* control frames of the largest size, and a close with only a code */
    in_init(&in);
    char big[125];
    for (int i = 0; i < 125; i++) big[i] = (char)(i * 7);
    frame(&in, FIN | MW_WS_OP_PING, big, 125);
    frame(&in, FIN | MW_WS_OP_CLOSE, "\x03\xe8", 2);
    frame(&in, FIN | MW_WS_OP_CLOSE, "", 0);
    expect_all_splits("125-byte ping, short closes", &in, 0,
                      &(struct want){0, "9F125;E;8F2;E;8F0;E;", 1}, 0);
    in_free(&in);

    /* permessage-deflate: RSV1 on a message's first frame only */
    in_init(&in);
    frame(&in, FIN | RSV1 | MW_WS_OP_TEXT, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    frame(&in, RSV1 | MW_WS_OP_BINARY, "\x01\x02", 2);
    frame(&in, FIN | MW_WS_OP_PING, "", 0);
    frame(&in, FIN | MW_WS_OP_CONT, "\x03", 1);
    frame(&in, FIN | MW_WS_OP_TEXT, "plain", 5);
    expect_all_splits("deflate: RSV1 first frames", &in, 1,
                      &(struct want){0, "1FZ7;E;2-Z2;E;9F0;E;0F1;E;1F5;E;", 1}, 64);
    in_free(&in);

    /* masks: zero, all ones, and a payload longer than the 8-byte unmask
     * stride at every split (the mask phase must follow the offset) */
    in_init(&in);
    char text[300];
    for (int i = 0; i < 300; i++) text[i] = (char)('a' + i % 26);
    frame_ex(&in, FIN | MW_WS_OP_TEXT, text, 37, LEN_AUTO, 1, 0);
    frame_ex(&in, FIN | MW_WS_OP_TEXT, text, 41, LEN_AUTO, 1, 0xffffffff);
    frame_ex(&in, FIN | MW_WS_OP_BINARY, text, 300, LEN_AUTO, 1, 0x01020304);
    expect_all_splits("mask keys and phases", &in, 0,
                      &(struct want){0, "1F37;E;1F41;E;2F300;E;", 1}, 0);
    in_free(&in);

    /* non-minimal length encodings are accepted (RFC 6455 asks the sender
     * for the minimal one; receivers in the wild accept these) */
    in_init(&in);
    frame_ex(&in, FIN | MW_WS_OP_TEXT, "abc", 3, LEN_16, 1, 0x11223344);
    frame_ex(&in, FIN | MW_WS_OP_TEXT, "abcd", 4, LEN_64, 1, 0x55667788);
    expect_all_splits("non-minimal lengths", &in, 0, &(struct want){0, "1F3;E;1F4;E;", 1}, 0);
    in_free(&in);
}

/* Every payload length form at its edges, fed whole, byte by byte (small
 * ones) and split around the header and at a spread of offsets. */
static void test_length_forms(void)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20};
    size_t maxlen = 1 << 20;
    char *payload = malloc(maxlen);
    for (size_t i = 0; i < maxlen; i++) payload[i] = (char)(i * 131 + (i >> 8));
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t len = lens[li];
        struct input in;
        in_init(&in);
        frame(&in, FIN | MW_WS_OP_BINARY, payload, len);
        frame(&in, FIN | MW_WS_OP_TEXT, "x", 1); /* the next frame starts in the right place */
        size_t hlen = in.len - len - 7;
        CHECK(hlen == (len < 126 ? 6u : len <= 0xffff ? 8u : 14u));
        char logw[64], what[64];
        snprintf(logw, sizeof logw, "2F%zu;E;1F1;E;", len);
        snprintf(what, sizeof what, "length %zu", len);
        struct want w = {0, logw, 1};
        if (len <= 256) {
            expect_all_splits(what, &in, 0, &w, 0);
        } else {
            expect_one(what, "whole", &in, 0, NULL, 0, &w);
            /* every cut inside the header and the first bytes of payload,
             * then spread over the payload and the next frame */
            for (size_t k = 1; k < hlen + 16; k++)
                expect_one(what, "header split", &in, 0, &k, 1, &w);
            for (size_t k = hlen + 16; k < in.len; k += in.len / 97 + 1)
                expect_one(what, "payload split", &in, 0, &k, 1, &w);
            size_t three[3] = {hlen - 1, hlen + len / 3, in.len - 3};
            expect_one(what, "three pieces", &in, 0, three, 3, &w);
            if (len == 65536) {
                size_t *cuts = malloc((in.len - 1) * sizeof *cuts);
                for (size_t i = 1; i < in.len; i++) cuts[i - 1] = i;
                expect_one(what, "byte by byte", &in, 0, cuts, in.len - 1, &w);
                free(cuts);
            }
        }
        in_free(&in);
    }
    free(payload);

    /* lengths too large to build: the header alone, then some payload */
    static const uint64_t huge[] = {(uint64_t)1 << 32, ((uint64_t)1 << 32) + 5,
                                    ((uint64_t)1 << 63) - 1};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        uint8_t h[14] = {FIN | MW_WS_OP_BINARY, 0x80 | 127};
        for (int b = 0; b < 8; b++) h[2 + b] = (uint8_t)(huge[i] >> (56 - 8 * b));
        memcpy(h + 10, "\x01\x02\x03\x04", 4);
        uint8_t body[16] = {0};
        struct mw_ws_parser p;
        struct rec r;
        rec_init(&r);
        mw_ws_parser_init(&p, 0);
        for (size_t k = 0; k < sizeof h; k++) CHECK(mw_ws_parse(&p, h + k, 1, &cbs, &r) == 1);
        CHECK(mw_ws_parse(&p, body, sizeof body, &cbs, &r) == (long)sizeof body);
        char want[64];
        snprintf(want, sizeof want, "2F%llu;", (unsigned long long)huge[i]);
        mw_buf_appendc(&r.log, '\0');
        CHECK_STR(r.log.data, want);
        CHECK(r.payload.len == sizeof body && p.remaining == huge[i] - sizeof body);
        CHECK(memcmp(r.payload.data, "\x01\x02\x03\x04\x01\x02\x03\x04", 8) == 0); /* 0 ^ key */
        CHECK(r.order_errors == 0);
        rec_free(&r);
    }
}

struct violation {
    const char *what;
    int deflate;
    long rc;
    const char *log; /* events before the violation */
    void (*build)(struct input *in);
};

static void v_unmasked(struct input *in)
{
    frame_ex(in, FIN | MW_WS_OP_TEXT, "hi", 2, LEN_AUTO, 0, 0);
}
static void v_unmasked_after_valid(struct input *in)
{
    frame(in, FIN | MW_WS_OP_TEXT, "ok", 2);
    frame_ex(in, FIN | MW_WS_OP_PING, "", 0, LEN_AUTO, 0, 0);
}
static void v_rsv1_text(struct input *in)
{
    frame(in, FIN | RSV1 | MW_WS_OP_TEXT, "x", 1);
}
static void v_rsv1_binary(struct input *in)
{
    frame(in, FIN | RSV1 | MW_WS_OP_BINARY, "x", 1);
}
static void v_rsv1_cont(struct input *in)
{
    frame(in, RSV1 | MW_WS_OP_TEXT, "x", 1);
    frame(in, FIN | RSV1 | MW_WS_OP_CONT, "y", 1);
}
static void v_rsv1_ping(struct input *in)
{
    frame(in, FIN | RSV1 | MW_WS_OP_PING, "", 0);
}
static void v_rsv2(struct input *in)
{
    frame(in, FIN | RSV2 | MW_WS_OP_TEXT, "x", 1);
}
static void v_rsv3(struct input *in)
{
    frame(in, FIN | RSV3 | MW_WS_OP_BINARY, "x", 1);
}
static void v_rsv23_ping(struct input *in)
{
    frame(in, FIN | RSV2 | RSV3 | MW_WS_OP_PING, "", 0);
}
static void v_big_ping(struct input *in)
{
    char b[126] = {0};
    frame(in, FIN | MW_WS_OP_PING, b, 126);
}
static void v_big_pong(struct input *in)
{
    char b[200] = {0};
    frame(in, FIN | MW_WS_OP_PONG, b, 200);
}
static void v_big_close(struct input *in)
{
    char b[126] = {3, (char)0xe8};
    frame(in, FIN | MW_WS_OP_CLOSE, b, 126);
}
static void v_frag_ping(struct input *in)
{
    frame(in, MW_WS_OP_PING, "a", 1);
}
static void v_frag_close(struct input *in)
{
    frame(in, MW_WS_OP_CLOSE, "\x03\xe8", 2);
}
static void v_frag_pong_in_message(struct input *in)
{
    frame(in, MW_WS_OP_TEXT, "a", 1);
    frame(in, MW_WS_OP_PONG, "", 0);
}
static void v_cont_nothing_open(struct input *in)
{
    frame(in, FIN | MW_WS_OP_CONT, "a", 1);
}
static void v_cont_after_finished(struct input *in)
{
    frame(in, MW_WS_OP_TEXT, "a", 1);
    frame(in, FIN | MW_WS_OP_CONT, "b", 1);
    frame(in, MW_WS_OP_CONT, "c", 1);
}
static void v_text_inside_message(struct input *in)
{
    frame(in, MW_WS_OP_TEXT, "a", 1);
    frame(in, FIN | MW_WS_OP_TEXT, "b", 1);
}
static void v_binary_inside_message(struct input *in)
{
    frame(in, MW_WS_OP_BINARY, "a", 1);
    frame(in, FIN | MW_WS_OP_PING, "", 0);
    frame(in, MW_WS_OP_BINARY, "b", 1);
}
static void v_close_1_byte(struct input *in)
{
    frame(in, FIN | MW_WS_OP_CLOSE, "\x03", 1);
}
static void v_len64_top_bit(struct input *in)
{
    static const uint8_t h[] = {
        FIN | MW_WS_OP_BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    in_put(in, h, sizeof h);
}
static void v_len64_all_ones(struct input *in)
{
    uint8_t h[14] = {FIN | MW_WS_OP_BINARY, 0x80 | 127};
    memset(h + 2, 0xff, 8);
    memcpy(h + 10, "\x01\x02\x03\x04", 4);
    in_put(in, h, sizeof h);
}

static void test_violations(void)
{
    static const struct violation vs[] = {
        {"unmasked client frame", 0, -1002, "", v_unmasked},
        {"unmasked frame after a valid one", 0, -1002, "1F2;E;", v_unmasked_after_valid},
        {"RSV1 text without deflate", 0, -1002, "", v_rsv1_text},
        {"RSV1 binary without deflate", 0, -1002, "", v_rsv1_binary},
        {"RSV1 on a continuation (deflate)", 1, -1002, "1-Z1;E;", v_rsv1_cont},
        {"RSV1 on a ping (deflate)", 1, -1002, "", v_rsv1_ping},
        {"RSV2", 0, -1002, "", v_rsv2},
        {"RSV2 with deflate", 1, -1002, "", v_rsv2},
        {"RSV3", 0, -1002, "", v_rsv3},
        {"RSV3 with deflate", 1, -1002, "", v_rsv3},
        {"RSV2+RSV3 ping", 1, -1002, "", v_rsv23_ping},
        {"ping of 126 bytes", 0, -1002, "", v_big_ping},
        {"pong of 200 bytes", 0, -1002, "", v_big_pong},
        {"close of 126 bytes", 0, -1002, "", v_big_close},
        {"fragmented ping", 0, -1002, "", v_frag_ping},
        {"fragmented close", 0, -1002, "", v_frag_close},
        {"fragmented pong inside a message", 0, -1002, "1-1;E;", v_frag_pong_in_message},
        {"continuation with nothing open", 0, -1002, "", v_cont_nothing_open},
        {"continuation after the last fragment", 0, -1002, "1-1;E;0F1;E;", v_cont_after_finished},
        {"text inside a fragmented message", 0, -1002, "1-1;E;", v_text_inside_message},
        {"binary inside a fragmented message", 0, -1002, "2-1;E;9F0;E;", v_binary_inside_message},
        {"1-byte close payload", 0, -1002, "", v_close_1_byte},
        {"64-bit length with the top bit", 0, -1002, "", v_len64_top_bit},
        {"64-bit length all ones", 0, -1002, "", v_len64_all_ones},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        struct input in;
        in_init(&in);
        vs[i].build(&in);
        /* bytes after the violation must not matter: add a valid frame */
        frame(&in, FIN | MW_WS_OP_TEXT, "after", 5);
        expect_all_splits(vs[i].what, &in, vs[i].deflate, &(struct want){vs[i].rc, vs[i].log, 0},
                          48);
        in_free(&in);
    }

    /* reserved opcodes 3-7 and 0xB-0xF, with and without FIN and deflate */
    for (int op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10)) continue;
        for (int variant = 0; variant < 4; variant++) {
            struct input in;
            in_init(&in);
            frame(&in, (variant & 1 ? FIN : 0) | op, "zz", 2);
            char what[64];
            snprintf(what, sizeof what, "reserved opcode %#x (variant %d)", op, variant);
            expect_all_splits(what, &in, variant >> 1, &(struct want){-1002, "", 0}, 0);
            in_free(&in);
        }
    }

    /* every single-bit flip of a valid text frame's first byte that makes
     * it invalid is caught (RSV bits and opcode bits) */
    for (int bit = 0; bit < 7; bit++) {
        struct input in;
        in_init(&in);
        frame(&in, (FIN | MW_WS_OP_TEXT) ^ (1 << bit), "q", 1);
        int b0 = (FIN | MW_WS_OP_TEXT) ^ (1 << bit);
        int op = b0 & 0xf;
        struct rec r;
        rec_init(&r);
        long rc = feed_cuts(&in, 0, NULL, 0, &r);
        int valid_op = op == MW_WS_OP_TEXT || op == MW_WS_OP_BINARY || op == MW_WS_OP_PING ||
                       op == MW_WS_OP_PONG;
        CHECK((rc == 0) == ((b0 & 0x70) == 0 && valid_op));
        rec_free(&r);
        in_free(&in);
    }
}

/* A callback's non-zero return stops the parser after that event; the
 * rest of the input is fed again and continues where it stopped. */
static void test_stops(void)
{
    struct input in;
    in_init(&in);
    frame(&in, FIN | MW_WS_OP_TEXT, "one", 3);
    frame(&in, FIN | MW_WS_OP_PING, "", 0);
    frame(&in, FIN | MW_WS_OP_TEXT, "two", 3);
    size_t f1 = 6 + 3, f2 = f1 + 6, total = in.len;

    /* stop at each frame end */
    struct mw_ws_parser p;
    struct rec r;
    rec_init(&r);
    r.stop_on_end = 1;
    mw_ws_parser_init(&p, 0);
    uint8_t *copy = malloc(total);
    memcpy(copy, in.data, total);
    CHECK(mw_ws_parse(&p, copy, total, &cbs, &r) == (long)f1);
    CHECK(mw_ws_parse(&p, copy + f1, total - f1, &cbs, &r) == (long)(f2 - f1));
    CHECK(mw_ws_parse(&p, copy + f2, total - f2, &cbs, &r) == (long)(total - f2));
    mw_buf_appendc(&r.log, '\0');
    CHECK_STR(r.log.data, "1F3;E;9F0;E;1F3;E;");
    CHECK(r.payload.len == 6 && memcmp(r.payload.data, "onetwo", 6) == 0);
    rec_free(&r);

    /* stop at each frame header: the payload follows on the next call */
    rec_init(&r);
    r.stop_on_frame = 1;
    mw_ws_parser_init(&p, 0);
    memcpy(copy, in.data, total);
    size_t at = 0;
    int calls = 0;
    while (at < total && calls < 20) {
        long n = mw_ws_parse(&p, copy + at, total - at, &cbs, &r);
        CHECK(n > 0);
        if (n <= 0) break;
        at += (size_t)n;
        calls++;
    }
    mw_buf_appendc(&r.log, '\0');
    CHECK_STR(r.log.data, "1F3;E;9F0;E;1F3;E;");
    CHECK(r.payload.len == 6 && memcmp(r.payload.data, "onetwo", 6) == 0);
    /* header | payload, end, the empty ping (its end follows at once:
     * nothing to wait for), next header | payload, end */
    CHECK(calls == 3);
    CHECK(r.order_errors == 0);
    rec_free(&r);

    /* a negative return is passed through as the result */
    rec_init(&r);
    r.stop_on_frame = -1009;
    mw_ws_parser_init(&p, 0);
    memcpy(copy, in.data, total);
    CHECK(mw_ws_parse(&p, copy, total, &cbs, &r) == -1009);
    rec_free(&r);
    rec_init(&r);
    r.stop_on_end = -1007;
    mw_ws_parser_init(&p, 0);
    memcpy(copy, in.data, total);
    CHECK(mw_ws_parse(&p, copy, total, &cbs, &r) == -1007);
    rec_free(&r);

    /* zero bytes: nothing happens */
    rec_init(&r);
    mw_ws_parser_init(&p, 0);
    CHECK(mw_ws_parse(&p, copy, 0, &cbs, &r) == 0);
    CHECK(r.log.len == 0);
    rec_free(&r);

    free(copy);
    in_free(&in);
}

/* ------------------------------------------------------- header encoder */

static void test_header_encoder(void)
{
    struct {
        int opcode, fin, rsv1;
        uint64_t len;
        size_t n;
        const char *bytes;
    } cases[] = {
        {MW_WS_OP_TEXT, 1, 0, 0, 2, "\x81\x00"},
        {MW_WS_OP_TEXT, 1, 0, 5, 2, "\x81\x05"},
        {MW_WS_OP_BINARY, 1, 0, 125, 2, "\x82\x7d"},
        {MW_WS_OP_BINARY, 1, 0, 126, 4, "\x82\x7e\x00\x7e"},
        {MW_WS_OP_TEXT, 1, 1, 127, 4, "\xc1\x7e\x00\x7f"},
        {MW_WS_OP_BINARY, 1, 0, 65535, 4, "\x82\x7e\xff\xff"},
        {MW_WS_OP_BINARY, 1, 0, 65536, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"},
        {MW_WS_OP_TEXT, 0, 1, 1 << 20, 10, "\x41\x7f\x00\x00\x00\x00\x00\x10\x00\x00"},
        {MW_WS_OP_BINARY, 1, 0, (uint64_t)1 << 32, 10, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00"},
        {MW_WS_OP_BINARY, 1, 0, 0x0102030405060708ull, 10,
         "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08"},
        {MW_WS_OP_CONT, 0, 0, 3, 2, "\x00\x03"},
        {MW_WS_OP_CONT, 1, 0, 3, 2, "\x80\x03"},
        {MW_WS_OP_CLOSE, 1, 0, 2, 2, "\x88\x02"},
        {MW_WS_OP_PING, 1, 0, 0, 2, "\x89\x00"},
        {MW_WS_OP_PONG, 1, 0, 125, 2, "\x8a\x7d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[16];
        memset(out, 0xee, sizeof out);
        size_t n =
            mw_ws_frame_header(out, cases[i].opcode, cases[i].fin, cases[i].rsv1, cases[i].len);
        CHECK(n == cases[i].n);
        CHECK(memcmp(out, cases[i].bytes, cases[i].n) == 0);
        CHECK(out[10] == 0xee); /* never past 10 bytes */
        if (n != cases[i].n || memcmp(out, cases[i].bytes, cases[i].n) != 0)
            fprintf(stderr, "  header case %zu (len %llu)\n", i, (unsigned long long)cases[i].len);
    }

    /* encoder output, with the mask bit and a key added, parses back to
     * the same frame for every length form */
    static const uint64_t lens[] = {0, 125, 126, 65535, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t h[16];
        size_t n = mw_ws_frame_header(h, MW_WS_OP_BINARY, 1, 0, lens[i]);
        h[1] |= 0x80;
        memcpy(h + n, "\0\0\0\0", 4);
        struct mw_ws_parser p;
        struct rec r;
        rec_init(&r);
        mw_ws_parser_init(&p, 0);
        CHECK(mw_ws_parse(&p, h, n + 4, &cbs, &r) == (long)(n + 4));
        char want[64];
        snprintf(want, sizeof want, lens[i] ? "2F%llu;" : "2F%llu;E;", (unsigned long long)lens[i]);
        mw_buf_appendc(&r.log, '\0');
        CHECK_STR(r.log.data, want);
        rec_free(&r);
    }
}

/* ---------------------------------------------------------- close codes */

static void test_close_codes(void)
{
    /* RFC 6455 7.4 and the IANA registry: what a peer may put on the wire */
    for (unsigned code = 0; code < 70000; code++) {
        int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
        if (mw_ws_close_code_ok(code) != want) {
            CHECK(0);
            fprintf(stderr, "  close code %u: got %d\n", code, !want);
        }
    }
    static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(!mw_ws_close_code_ok(bad[i]));
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                    1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) CHECK(mw_ws_close_code_ok(good[i]));
}

int main(void)
{
    test_valid_sequences();
    test_length_forms();
    test_violations();
    test_stops();
    test_header_encoder();
    test_close_codes();
    printf("(%d feeds checked)\n", nchecked_splits);
    T_DONE();
}
