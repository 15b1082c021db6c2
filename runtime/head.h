/* head.h - reading a request head, live or kept.
 *
 * A live request (struct mw_req) keeps its head as llhttp delivered it:
 * spans into one buffer. A request that must outlive its exchange (a
 * WebSocket's ws.req, for as long as the socket is open) keeps a packed
 * copy instead, a struct mw_head: lengths as varints and the common
 * header names as one byte each: about a hundred bytes for a minimal
 * client's handshake, a few hundred for a browser's (its cookies and
 * User-Agent are most of it). A view reads either the same way. Pure: no Lua, no libuv. */
#ifndef MW_HEAD_H
#define MW_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct mw_conn;
struct mw_req;

struct mw_head {
    uint64_t seq;             /* the request's number (its id) */
    struct mw_conn **conn_at; /* where its connection is found (remote_addr); may be NULL */
    int lua_ref;              /* anchors the Lua req once the app stored fields on it */
    int lua_slot;             /* where the Lua req is found while it lives (lua_req.c) */
    uint32_t len;             /* bytes in data */
    uint32_t params_at;       /* where the route parameters start in data (len: none) */
    uint8_t http_major, http_minor;
    uint8_t data[];           /* method, target, each header's name and value, then
                               * each route parameter's name and value */
};

/* One header: the name lower-cased, as received otherwise. */
struct mw_hdr {
    const char *name, *value;
    size_t nlen, vlen;
};

/* A head to read: a live request's or a packed one. */
struct mw_head_view {
    const char *method, *target;
    size_t method_len, target_len;
    uint64_t seq;
    struct mw_conn *conn;
    uint8_t http_major, http_minor;
    /* where the headers are */
    const struct mw_req *req;
    const uint8_t *packed, *packed_end;
    const uint8_t *params, *params_end; /* a packed head's route parameters */
};

struct mw_hdr_iter {
    const struct mw_head_view *v;
    size_t i;
    const uint8_t *p;
};

void mw_head_view_req(struct mw_head_view *v, const struct mw_req *req);
void mw_head_view_packed(struct mw_head_view *v, const struct mw_head *h);

void mw_hdr_iter_init(struct mw_hdr_iter *it, const struct mw_head_view *v);
/* The next header; 0 after the last. */
int mw_hdr_next(struct mw_hdr_iter *it, struct mw_hdr *h);
/* Header lookup by lower-case name; repeats joined by ", " into out. */
int mw_head_header(const struct mw_head_view *v, const char *lname, size_t nlen, struct mw_buf *out);
/* 1 if the header's comma-separated list holds `token` (any case). */
int mw_head_has_token(const struct mw_head_view *v, const char *lname, const char *token);

/* Bytes a packed copy of req's head needs (struct mw_head included), with
 * the route parameters the router found (name, value pairs). */
size_t mw_head_size(const struct mw_req *req, const struct mw_hdr *params, size_t nparams);
/* Packs req's head and params into mem (mw_head_size bytes, aligned for a
 * pointer). */
struct mw_head *mw_head_pack(void *mem, const struct mw_req *req, const struct mw_hdr *params,
                             size_t nparams);
/* The next route parameter of a packed head (it = v->params at first);
 * NULL after the last. */
const uint8_t *mw_head_next_param(const struct mw_head_view *v, const uint8_t *it, struct mw_hdr *p);

#endif
