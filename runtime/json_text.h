/* json_text.h - JSON text pieces written from C (mw.json's encoder and
 * the hub's WebSocket envelopes). Pure. */
#ifndef MW_JSON_TEXT_H
#define MW_JSON_TEXT_H

#include <stddef.h>

#include "buf.h"

/* Appends s as a JSON string literal: quotes, backslashes and control
 * characters escaped, everything else (UTF-8 included) as is. */
void mw_json_append_string(struct mw_buf *b, const char *s, size_t len);
/* Appends v in decimal, as "%lld" would. */
void mw_json_append_integer(struct mw_buf *b, long long v);

#endif
