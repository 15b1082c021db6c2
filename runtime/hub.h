/* hub.h - pub/sub channels with message ids and a bounded history.
 *
 * A channel is created on first use and freed when nothing refers to it,
 * it retains no history and its history size is the default. Each publish gets the channel's next id (from 1)
 * and is delivered to every subscriber through its ops, so any kind of
 * client (SSE stream, long-poll waiter, WebSocket) plugs in the same way.
 * Messages are refcounted; encodings made for one subscriber (an SSE event,
 * a WebSocket frame) are cached on the message and shared by all.
 * No libuv, no Lua. */
#ifndef MW_HUB_H
#define MW_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "wq.h"

#define MW_HUB_DEFAULT_HISTORY 100

enum mw_msg_kind { MW_MSG_TEXT = 0, MW_MSG_BINARY = 1 };

/* A cached wire encoding of a message, keyed by (tag, key). */
struct mw_msg_enc {
    struct mw_msg_enc *next;
    int tag;                 /* who made it (MW_ENC_*) */
    char *key;               /* variant, e.g. an SSE event name; may be NULL */
    struct mw_shared *bytes;
};

enum { MW_ENC_SSE = 1, MW_ENC_SSE_ID = 4, MW_ENC_WS = 2, MW_ENC_WS_ENVELOPE = 3, MW_ENC_JSON = 5 };

struct mw_msg {
    int refs;
    uint64_t id;
    int kind;                   /* enum mw_msg_kind */
    struct mw_msg_enc *encs;    /* made on first use */
    size_t len;
    char data[];
};

struct mw_channel;
struct mw_sub;

struct mw_sub_ops {
    /* A message for this subscriber. May unsubscribe any subscriber of the
     * channel (a dropped client takes its other waits with it): one that
     * leaves before its turn gets nothing more. */
    void (*deliver)(struct mw_sub *sub, struct mw_msg *msg);
};

struct mw_sub {
    struct mw_channel *ch;      /* NULL when not subscribed */
    struct mw_sub *prev, *next; /* in the channel's list */
    const struct mw_sub_ops *ops;
    void *owner;
    uint64_t after_id;          /* channel's last id when it joined: gets later ones only */
};

struct mw_hub_iter;

struct mw_channel {
    char *name;
    size_t name_len;
    uint64_t last_id;           /* id of the newest message, 0 before any */
    size_t history_max;         /* messages retained */
    struct mw_msg **ring;       /* retained messages, oldest at ring_start */
    size_t ring_start, ring_len;
    struct mw_sub *subs, *subs_tail; /* in subscription order */
    size_t nsubs;
    int refs;                   /* handles held outside the hub (Lua objects) */
    int publishing;             /* delivery loops on the stack */
    struct mw_hub_iter *iters;  /* those loops' cursors, innermost first */
    struct mw_channel *hnext;   /* hash chain */
};

void mw_msg_ref(struct mw_msg *m);
void mw_msg_unref(struct mw_msg *m);
/* The data as a JSON string literal (binary: base64), made once. */
struct mw_shared *mw_msg_json_data(struct mw_msg *m);
/* The cached encoding (tag, key), or NULL. */
struct mw_shared *mw_msg_encoding(struct mw_msg *m, int tag, const char *key);
/* Caches bytes as the encoding (tag, key); takes the caller's reference. */
void mw_msg_set_encoding(struct mw_msg *m, int tag, const char *key, struct mw_shared *bytes);

/* Looks a channel up, creating it if asked. */
struct mw_channel *mw_hub_channel(const char *name, size_t len, int create);
void mw_channel_ref(struct mw_channel *ch);
/* Drops a handle; frees the channel if nothing else keeps it. */
void mw_channel_unref(struct mw_channel *ch);
void mw_channel_set_history(struct mw_channel *ch, size_t max);

/* Publishes and delivers; returns the new message's id. */
uint64_t mw_hub_publish(struct mw_channel *ch, const void *data, size_t len, int kind);
/* The same, skipping subscribers whose owner is `except` (ws:publish). */
uint64_t mw_hub_publish_except(struct mw_channel *ch, const void *data, size_t len, int kind,
                               const void *except);

void mw_hub_subscribe(struct mw_channel *ch, struct mw_sub *sub);
void mw_hub_unsubscribe(struct mw_sub *sub);

/* Retained messages after `since` (see DESIGN.md "Hub"): since < 0 means
 * "absent" and selects every retained message. Calls fn for each, oldest
 * first, and returns how many messages between since and the oldest
 * retained one are gone (0 when nothing was missed). */
size_t mw_channel_history(struct mw_channel *ch, long long since,
                          void (*fn)(struct mw_msg *m, void *ud), void *ud);
/* Id of the oldest retained message; 0 when none is retained. */
uint64_t mw_channel_oldest_id(struct mw_channel *ch);
/* 1 if a wait with this since would return at once (messages are due). */
int mw_channel_has_after(struct mw_channel *ch, long long since);

/* Frees every channel (process exit). */
void mw_hub_free_all(void);
size_t mw_hub_channel_count(void);

#endif
