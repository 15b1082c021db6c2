/* stream.h - an open Server-Sent Events response: its hub feed (feed.h),
 * resume ids from Last-Event-ID, and heartbeats. The response is
 * close-delimited (no chunking), so a hub message's encoded event is the
 * same bytes for every subscriber and is queued by reference. */
#ifndef MW_STREAM_H
#define MW_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "feed.h"

struct mw_req;
struct mw_server;
struct mw_stream;

/* Paid per open stream, for as long as it is open: most streams follow one
 * channel, which the feed keeps inside, and the heartbeat is the
 * connection's own timer. */
struct mw_stream {
    struct mw_req *req;          /* owner; NULL once the request is gone */
    struct mw_feed feed;         /* hub subscriptions; sub.owner is the stream */
    char **resume;               /* Last-Event-ID split at commas, one per channel */
    uint32_t nresume;
    uint32_t heartbeat_ms;       /* 0: none */
    uint32_t last_write_ms;      /* loop time of the last write (wraps; differences count) */
    int lua_ref;                 /* anchors the Lua stream object while open */
    uint8_t closed;
};

enum { MW_STREAM_OK = 0, MW_STREAM_CLOSED = -1, MW_STREAM_FULL = -2, MW_STREAM_DUP = -3 };

/* Starts the stream on req (its head must already be queued). */
struct mw_stream *mw_stream_open(struct mw_req *req, uint32_t heartbeat_ms, const char *last_event_id);
/* Queues bytes (an event or comment). FULL: over max_queued_bytes, nothing
 * queued. */
int mw_stream_write(struct mw_stream *s, const char *data, size_t len);
/* Subscribes and replays what the client missed after `since` (< 0:
 * absent: the k-th subscription resumes from the k-th Last-Event-ID entry,
 * else only new messages). A replay larger than max_queued_bytes goes out
 * as the queue drains (mw_stream_drained); new messages wait in the
 * history meanwhile, so a client that comes back far behind catches up
 * instead of being dropped again. */
int mw_stream_subscribe(struct mw_stream *s, struct mw_channel *ch, long long since, const char *event);
int mw_stream_unsubscribe(struct mw_stream *s, struct mw_channel *ch);
/* The connection's queue drained: continue replays that were waiting. */
void mw_stream_drained(struct mw_stream *s);
/* Ends the stream: subscriptions and heartbeat released, Lua told. When
 * `finish`, the response ends too (connection closes after the queue). */
void mw_stream_close(struct mw_stream *s, int finish);
/* Frees it (the request is being freed). */
void mw_stream_free(struct mw_stream *s);
/* The connection's timer says a heartbeat is due. */
void mw_stream_heartbeat(struct mw_stream *s);
/* Ends every open stream on srv's connections (graceful shutdown). */
void mw_stream_close_all(struct mw_server *srv);

#endif
