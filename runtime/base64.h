/* base64.h - bytes on text wires: binary hub messages in SSE events,
 * WebSocket envelopes and JSON. Kept apart from buf.c, which the fuzz
 * targets build without libcrypto. */
#ifndef MW_BASE64_H
#define MW_BASE64_H

#include <stddef.h>

#include "buf.h"

/* Appends data as base64 (standard alphabet, padded). */
void mw_base64_append(struct mw_buf *b, const void *data, size_t len);

#endif
