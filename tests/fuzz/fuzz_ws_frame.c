/* fuzz_ws_frame.c - libFuzzer target for the WebSocket frame parser, with
 * what the engine does with its output: messages reassembled, text
 * checked as UTF-8 piece by piece, compressed messages inflated under a
 * limit, close payloads checked.
 *
 * Input: one flag byte (bit 0: permessage-deflate negotiated; the other
 * bits seed the split pattern), then the bytes a client sends. The input
 * is parsed twice, whole and cut into pieces at pseudo-random offsets
 * drawn from the seed, and both runs must agree on every event and on the
 * result; the parser's own promises are checked as events come (payload
 * pieces add up to the announced length, control frames are whole and
 * short, RSV1 only when negotiated, on a message's first frame). Any
 * broken promise aborts, as do ASan and UBSan reports.
 *
 * Built with clang when configured with -DMW_FUZZ=ON; tests/fuzz/run.sh
 * builds it in build-fuzz/ and runs it for a bounded time on the seed
 * corpus in tests/fuzz/corpus/ws_frame/. */
#include "buf.h"
#include "deflate.h"
#include "utf8.h"
#include "ws_frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (64 * 1024) /* after inflation, as max_message */

#define ENSURE(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_ws_frame: broken promise: %s (line %d)\n", #cond, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct run {
    int deflate;
    /* the frame being read */
    int in_frame, opcode;
    uint64_t frame_len, frame_got, frame_hash;
    /* the message being reassembled */
    int msg_opcode, msg_compressed;
    struct mw_buf msg;
    struct mw_utf8 utf8;
    uint8_t ctl[125];
    size_t ctl_len;
    int closed;
    struct mw_ws_parser *parser;
    /* a digest of every event, to compare the two runs */
    uint64_t digest;
    unsigned events;
};

static void mix(struct run *r, uint64_t v)
{
    r->digest = (r->digest ^ v) * 0x100000001b3ull;
    r->events++;
}

static int on_frame(void *ud, int opcode, int fin, int compressed, uint64_t len)
{
    struct run *r = ud;
    ENSURE(!r->in_frame);
    ENSURE(opcode == MW_WS_OP_CONT || opcode == MW_WS_OP_TEXT || opcode == MW_WS_OP_BINARY ||
           opcode == MW_WS_OP_CLOSE || opcode == MW_WS_OP_PING || opcode == MW_WS_OP_PONG);
    ENSURE(!compressed || r->deflate);
    ENSURE(len >> 63 == 0);
    mix(r, (uint64_t)opcode << 56 | (uint64_t)fin << 48 | (uint64_t)compressed << 40 | len);
    r->in_frame = 1;
    r->opcode = opcode;
    r->frame_len = len;
    r->frame_got = 0;
    r->frame_hash = 0;
    if (opcode & 0x8) {
        ENSURE(fin && len <= 125 && !compressed);
        ENSURE(!(opcode == MW_WS_OP_CLOSE && len == 1));
        r->ctl_len = 0;
        return 0;
    }
    if (opcode == MW_WS_OP_CONT) {
        ENSURE(r->msg_opcode != 0 && !compressed);
    } else {
        ENSURE(r->msg_opcode == 0);
        r->msg_opcode = opcode;
        r->msg_compressed = compressed;
        r->msg.len = 0;
        mw_utf8_init(&r->utf8);
    }
    /* what ws.c does: a message over the limit ends the connection */
    if (r->msg.len + len > MAX_MESSAGE) return -MW_WS_CLOSE_TOO_BIG;
    return 0;
}

static int on_payload(void *ud, uint8_t *data, size_t len)
{
    struct run *r = ud;
    ENSURE(r->in_frame && len > 0);
    r->frame_got += len;
    ENSURE(r->frame_got <= r->frame_len);
    /* kept apart until the frame ends: an error inside a frame comes at
     * a different byte count whole and split */
    for (size_t i = 0; i < len; i++) r->frame_hash = (r->frame_hash ^ data[i]) * 0x100000001b3ull;
    if (r->opcode & 0x8) {
        ENSURE(r->ctl_len + len <= sizeof r->ctl);
        memcpy(r->ctl + r->ctl_len, data, len);
        r->ctl_len += len;
        return 0;
    }
    mw_buf_append(&r->msg, data, len);
    if (r->msg_opcode == MW_WS_OP_TEXT && !r->msg_compressed &&
        mw_utf8_feed(&r->utf8, data, len) != 0)
        return -MW_WS_CLOSE_BAD_DATA;
    return 0;
}

static int end_message(struct run *r)
{
    int opcode = r->msg_opcode;
    r->msg_opcode = 0;
    if (r->msg_compressed) {
        struct mw_buf out;
        mw_buf_init(&out);
        int rc = mw_pmd_decompress(r->msg.data ? r->msg.data : "", r->msg.len, MAX_MESSAGE, &out);
        ENSURE(rc == MW_PMD_OK || rc == MW_PMD_TOO_BIG || rc == MW_PMD_BAD_DATA);
        ENSURE(out.len <= MAX_MESSAGE + 16384); /* bounded, whatever the input */
        int valid =
            rc == MW_PMD_OK && (opcode != MW_WS_OP_TEXT || mw_utf8_valid(out.data, out.len));
        mix(r, (uint64_t)(rc + 10) << 32 | out.len);
        mw_buf_free(&out);
        r->msg.len = 0;
        if (rc == MW_PMD_TOO_BIG) return -MW_WS_CLOSE_TOO_BIG;
        return valid ? 0 : -MW_WS_CLOSE_BAD_DATA;
    }
    if (opcode == MW_WS_OP_TEXT) {
        /* piece by piece agrees with the whole-buffer check */
        ENSURE(mw_utf8_valid(r->msg.data, r->msg.len) == mw_utf8_complete(&r->utf8));
        if (!mw_utf8_complete(&r->utf8)) return -MW_WS_CLOSE_BAD_DATA;
    }
    mix(r, r->msg.len);
    r->msg.len = 0;
    return 0;
}

static int on_frame_end(void *ud)
{
    struct run *r = ud;
    ENSURE(r->in_frame && r->frame_got == r->frame_len);
    r->in_frame = 0;
    mix(r, r->frame_hash);
    switch (r->opcode) {
    case MW_WS_OP_PING:
    case MW_WS_OP_PONG:
        return 0;
    case MW_WS_OP_CLOSE:
        r->closed = 1;
        if (r->ctl_len >= 2) {
            unsigned code = (unsigned)r->ctl[0] << 8 | r->ctl[1];
            if (!mw_ws_close_code_ok(code)) return -MW_WS_CLOSE_PROTOCOL;
            if (!mw_utf8_valid(r->ctl + 2, r->ctl_len - 2)) return -MW_WS_CLOSE_BAD_DATA;
        }
        return 1; /* nothing after a close counts */
    }
    /* a data frame: the message is whole when this was its last frame */
    if (r->parser->message_open) return 0;
    return end_message(r);
}

static const struct mw_ws_frame_cb cbs = {on_frame, on_payload, on_frame_end};

/* Parses data whole (seed 0) or cut into pieces drawn from the seed:
 * mostly 1-8 bytes, some up to 300, some the rest. Returns 0 when all was
 * read, 1 after a close frame, or the negative close code; the events'
 * digest is left in r. */
static long parse(struct run *r, int deflate, const uint8_t *data, size_t size, uint32_t seed)
{
    memset(r, 0, sizeof *r);
    struct mw_ws_parser p;
    mw_ws_parser_init(&p, deflate);
    r->deflate = deflate;
    r->parser = &p;
    r->digest = 0xcbf29ce484222325ull;
    mw_buf_init(&r->msg);
    uint8_t *copy = malloc(size ? size : 1); /* the parser unmasks in place */
    if (size) memcpy(copy, data, size);
    size_t at = 0;
    long result = 0;
    while (at < size) {
        size_t piece = size - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t k = (seed >> 16) % 16;
            size_t want = k < 8 ? k + 1 : k < 14 ? (seed >> 4) % 300 + 1 : piece;
            if (want < piece) piece = want;
        }
        long n = mw_ws_parse(&p, copy + at, piece, &cbs, r);
        if (n < 0) {
            result = n;
            break;
        }
        ENSURE((size_t)n <= piece);
        if (r->closed) {
            result = 1;
            break;
        }
        ENSURE((size_t)n == piece); /* only a close stops it early */
        at += piece;
    }
    mix(r, (uint64_t)result);
    free(copy);
    mw_buf_free(&r->msg);
    return result;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int deflate = data[0] & 1;
    uint32_t seed = (uint32_t)(data[0] >> 1) * 2654435761u | 1;
    data++;
    size--;
    struct run whole, split;
    long a = parse(&whole, deflate, data, size, 0);
    long b = parse(&split, deflate, data, size, seed);
    if (a != b || whole.digest != split.digest || whole.events != split.events) {
        fprintf(stderr, "fuzz_ws_frame: whole and split runs differ: %ld/%ld, %u/%u events\n", a, b,
                whole.events, split.events);
        abort();
    }
    return 0;
}
