/* ws_frame.c - client frame parsing and server frame headers. */
#include "ws_frame.h"

#include <string.h>

void mw_ws_parser_init(struct mw_ws_parser *p, int deflate)
{
    memset(p, 0, sizeof *p);
    p->deflate = deflate;
}

int mw_ws_close_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999) return 1; /* registered and private use */
    switch (code) {
    case 1000: case 1001: case 1002: case 1003: case 1007: case 1008:
    case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
        return 1;
    }
    return 0;
}

/* XORs the mask over a payload piece that starts `phase` bytes (mod 4)
 * into its frame, eight bytes at a time where it can. */
static void unmask(uint8_t *d, size_t n, const uint8_t mask[4], unsigned phase)
{
    uint8_t rot[8];
    for (unsigned k = 0; k < 8; k++) rot[k] = mask[(phase + k) & 3];
    size_t k = 0;
    if (n >= 8) {
        uint64_t m;
        memcpy(&m, rot, 8);
        for (; k + 8 <= n; k += 8) {
            uint64_t w;
            memcpy(&w, d + k, 8);
            w ^= m;
            memcpy(d + k, &w, 8);
        }
    }
    for (; k < n; k++) d[k] ^= rot[k & 7];
}

static int is_control(int op)
{
    return op & 0x8;
}

/* Bytes the header needs in total, once its first two bytes are known. */
static size_t header_size(const uint8_t *h)
{
    size_t n = 2;
    uint8_t len7 = h[1] & 0x7f;
    if (len7 == 126) n += 2;
    else if (len7 == 127) n += 8;
    if (h[1] & 0x80) n += 4;
    return n;
}

/* Checks a complete header and loads the frame. Returns 0 or -code. */
static int load_header(struct mw_ws_parser *p)
{
    const uint8_t *h = p->hdr;
    int fin = h[0] >> 7, rsv1 = (h[0] >> 6) & 1, rsv23 = (h[0] >> 4) & 3;
    int op = h[0] & 0x0f;
    if (rsv23) return -MW_WS_CLOSE_PROTOCOL;
    if (!(h[1] & 0x80)) return -MW_WS_CLOSE_PROTOCOL; /* clients must mask */
    if (op != MW_WS_OP_CONT && op != MW_WS_OP_TEXT && op != MW_WS_OP_BINARY &&
        op != MW_WS_OP_CLOSE && op != MW_WS_OP_PING && op != MW_WS_OP_PONG)
        return -MW_WS_CLOSE_PROTOCOL;
    uint64_t len = h[1] & 0x7f;
    size_t at = 2;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        if (len >> 63) return -MW_WS_CLOSE_PROTOCOL;
        at = 10;
    }
    memcpy(p->mask, h + at, 4);
    if (is_control(op)) {
        if (!fin || len > 125 || rsv1) return -MW_WS_CLOSE_PROTOCOL;
        if (op == MW_WS_OP_CLOSE && len == 1) return -MW_WS_CLOSE_PROTOCOL;
    } else if (op == MW_WS_OP_CONT) {
        if (!p->message_open || rsv1) return -MW_WS_CLOSE_PROTOCOL;
    } else {
        if (p->message_open) return -MW_WS_CLOSE_PROTOCOL;
        if (rsv1 && !p->deflate) return -MW_WS_CLOSE_PROTOCOL;
    }
    if (!is_control(op)) p->message_open = !fin;
    p->opcode = op;
    p->remaining = len;
    p->phase = 0;
    return 0;
}

long mw_ws_parse(struct mw_ws_parser *p, uint8_t *data, size_t len,
                 const struct mw_ws_frame_cb *cb, void *ud)
{
    size_t i = 0;
    while (i < len) {
        if (!p->in_payload) {
            /* gather the header: 2 bytes first, then as many as it says */
            size_t need = p->hdr_len < 2 ? 2 : header_size(p->hdr);
            while (p->hdr_len < need && i < len) {
                p->hdr[p->hdr_len++] = data[i++];
                if (p->hdr_len == 2) need = header_size(p->hdr);
            }
            if (p->hdr_len < need) break;
            int rc = load_header(p);
            if (rc) return rc;
            p->hdr_len = 0;
            p->in_payload = 1;
            const uint8_t *h = p->hdr;
            int stop = cb->on_frame(ud, p->opcode, h[0] >> 7, (h[0] >> 6) & 1, p->remaining);
            if (stop < 0) return stop;
            if (p->remaining == 0) {
                p->in_payload = 0;
                stop = cb->on_frame_end(ud);
                if (stop) return stop < 0 ? stop : (long)i;
                continue;
            }
            if (stop) return (long)i;
            if (i == len) break; /* the payload comes with the next input */
        }
        size_t n = len - i;
        if ((uint64_t)n > p->remaining) n = (size_t)p->remaining;
        uint8_t *d = data + i;
        unmask(d, n, p->mask, p->phase);
        p->phase = (uint8_t)((p->phase + n) & 3);
        p->remaining -= n;
        i += n;
        int stop = cb->on_payload(ud, d, n);
        if (stop < 0) return stop;
        if (p->remaining == 0) {
            p->in_payload = 0;
            int s2 = cb->on_frame_end(ud);
            if (s2) return s2 < 0 ? s2 : (long)i;
        }
        if (stop) return (long)i;
    }
    return (long)i;
}

size_t mw_ws_frame_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}
