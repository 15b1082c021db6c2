/* ws_frame.h - WebSocket frames (RFC 6455 section 5): an incremental
 * parser for client frames and a header encoder for server frames. Pure:
 * no libuv, no Lua. The parser takes input split anywhere, unmasks
 * payload in place, and checks every framing rule, answering a violation
 * with the close code to send. Message-level rules that need the payload
 * (UTF-8, size after inflation) are the caller's. */
#ifndef MW_WS_FRAME_H
#define MW_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
    MW_WS_OP_CONT = 0x0,
    MW_WS_OP_TEXT = 0x1,
    MW_WS_OP_BINARY = 0x2,
    MW_WS_OP_CLOSE = 0x8,
    MW_WS_OP_PING = 0x9,
    MW_WS_OP_PONG = 0xA,
};

enum {
    MW_WS_CLOSE_NORMAL = 1000,
    MW_WS_CLOSE_GOING_AWAY = 1001,
    MW_WS_CLOSE_PROTOCOL = 1002,
    MW_WS_CLOSE_UNSUPPORTED = 1003,
    MW_WS_CLOSE_NO_STATUS = 1005,   /* never sent: "the peer gave no code" */
    MW_WS_CLOSE_ABNORMAL = 1006,    /* never sent: "the connection just dropped" */
    MW_WS_CLOSE_BAD_DATA = 1007,
    MW_WS_CLOSE_POLICY = 1008,
    MW_WS_CLOSE_TOO_BIG = 1009,
    MW_WS_CLOSE_INTERNAL = 1011,
    MW_WS_CLOSE_RESTART = 1012,
    MW_WS_CLOSE_TRY_AGAIN = 1013,
};

/* What the parser reports, frame by frame. */
struct mw_ws_frame_cb {
    /* A frame header is complete. `opcode` is the frame's own (CONT for
     * continuations); `compressed` is RSV1 on a message's first frame. */
    int (*on_frame)(void *ud, int opcode, int fin, int compressed, uint64_t len);
    /* Unmasked payload bytes of the current frame (may be called many times). */
    int (*on_payload)(void *ud, uint8_t *data, size_t len);
    /* The current frame's payload is complete. */
    int (*on_frame_end)(void *ud);
};

struct mw_ws_parser {
    uint64_t remaining;     /* payload bytes left in the current frame */
    uint8_t hdr[14];        /* header bytes gathered so far */
    uint8_t hdr_len;
    uint8_t mask[4];
    uint8_t in_payload;     /* past the header of the current frame */
    uint8_t message_open;   /* a fragmented data message awaits continuations */
    uint8_t deflate;        /* RSV1 allowed (permessage-deflate negotiated) */
    uint8_t opcode;         /* of the current frame */
    uint8_t phase;          /* payload bytes seen, mod 4: where the mask stands */
};

void mw_ws_parser_init(struct mw_ws_parser *p, int deflate);
/* Parses up to len bytes. Returns the bytes consumed (len unless a
 * callback returned non-zero, which stops it), or a negative close code
 * (-1002, ...) on a protocol violation. Callbacks returning non-zero stop
 * parsing after their frame event; the return is then the bytes used. */
long mw_ws_parse(struct mw_ws_parser *p, uint8_t *data, size_t len,
                 const struct mw_ws_frame_cb *cb, void *ud);

/* Writes a server frame header (unmasked) for a payload of len bytes;
 * returns its size (2, 4 or 10). out needs 10 bytes. */
size_t mw_ws_frame_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len);

/* A close code a peer may send (RFC 6455 7.4; 1005, 1006, 1015 never). */
int mw_ws_close_code_ok(unsigned code);

#endif
