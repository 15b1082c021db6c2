/* feed.h - a client's hub subscriptions, kept in step with what it has
 * received: the id it has reached on each channel, the replay of what it
 * missed as its queue drains, and the slow-consumer rule. SSE streams
 * (stream.c) and WebSockets (lua_ws.c) differ only in how a message is
 * queued and how a client that fell behind is dropped: their ops.
 *
 * The rule: a message goes out if the client's queue takes it (an empty
 * queue takes any one). A client whose queue is full is dropped, and
 * resumes from history when it reconnects, unless a replay of its own
 * filled the queue: then new messages wait in the history too and go out
 * as it drains, and only if the history moves past what it has is it too
 * slow after all. No Lua, no libuv. */
#ifndef MW_FEED_H
#define MW_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

struct mw_feed_sub {
    struct mw_sub sub;      /* first: the hub hands it back; sub.owner is the client */
    char *event;            /* SSE: the event name of this channel's messages, or NULL */
    uint64_t last_id;       /* newest id of this channel the client has */
    uint8_t catching_up;    /* a replay waits for the queue to drain */
    uint8_t envelope;       /* WebSocket: messages go in a JSON envelope */
};

enum { MW_FEED_OK = 0, MW_FEED_CLOSED = -1, MW_FEED_FULL = -2 };

struct mw_feed;

struct mw_feed_ops {
    struct mw_sub_ops hub;  /* first; its deliver is mw_feed_deliver */
    /* Queues m and sets fs->last_id; FULL (over the queue limit, nothing
     * queued) or CLOSED otherwise. A transport that learns of drains only
     * when asked should ask when it answers FULL. */
    int (*send)(struct mw_feed_sub *fs, struct mw_msg *m);
    /* The client fell too far behind: end it (it resumes from history). */
    void (*drop)(struct mw_feed_sub *fs);
    /* The client's subscriptions, fs among them. */
    struct mw_feed *(*feed_of)(struct mw_feed_sub *fs);
};

/* A client's subscriptions in subscription order. Most clients follow one
 * channel, so the first subscription lives inside. */
struct mw_feed {
    union {
        struct mw_feed_sub *one;   /* n <= 1 */
        struct mw_feed_sub **many; /* n > 1 */
    } subs;
    struct mw_feed_sub first;      /* storage for one subscription */
    uint32_t n;
    uint8_t first_used;
};

static inline struct mw_feed_sub *mw_feed_at(const struct mw_feed *f, size_t i)
{
    return f->n > 1 ? f->subs.many[i] : f->subs.one;
}

struct mw_feed_sub *mw_feed_find(const struct mw_feed *f, const struct mw_channel *ch);
/* Subscribes owner to ch. The client has the channel up to `since` (< 0:
 * only new messages); since older than the history or above its newest
 * id (a restart) counts as just before the oldest retained. Nothing is
 * replayed yet: the caller may say something first, then calls
 * mw_feed_catch_up. */
struct mw_feed_sub *mw_feed_add(struct mw_feed *f, const struct mw_feed_ops *ops, void *owner,
                                struct mw_channel *ch, long long since);
/* Queues the retained messages after fs->last_id while the queue takes
 * them; the rest follows as it drains. Returns 0 when the client was
 * dropped (it was still catching up and the history moved past it). */
int mw_feed_catch_up(struct mw_feed_sub *fs);
/* The client's queue drained: replays that were waiting go on. Returns 0
 * when that dropped the client. */
int mw_feed_drained(struct mw_feed *f);
/* Unsubscribes from ch and forgets it; 0 if not subscribed. */
int mw_feed_remove(struct mw_feed *f, const struct mw_channel *ch);
/* Leaves every channel, keeping the records (their last ids). */
void mw_feed_leave_all(struct mw_feed *f);
/* Leaves every channel and frees the records. */
void mw_feed_free(struct mw_feed *f);
/* The hub's deliver for every feed subscription. */
void mw_feed_deliver(struct mw_sub *sub, struct mw_msg *m);

#endif
