/* hub.c - channels, ids, history rings and delivery. */
#include "hub.h"
#include "base64.h"
#include "buf.h"
#include "json_text.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local struct mw_channel **buckets;
static _Thread_local size_t nbuckets, nchannels;

/* ------------------------------------------------------------- messages */

void mw_msg_ref(struct mw_msg *m)
{
    m->refs++;
}

void mw_msg_unref(struct mw_msg *m)
{
    if (--m->refs > 0) return;
    while (m->encs) {
        struct mw_msg_enc *e = m->encs;
        m->encs = e->next;
        mw_shared_unref(e->bytes);
        free(e->key);
        free(e);
    }
    free(m);
}

static int key_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

struct mw_shared *mw_msg_json_data(struct mw_msg *m)
{
    struct mw_shared *enc = mw_msg_encoding(m, MW_ENC_JSON, NULL);
    if (enc) return enc;
    struct mw_buf b;
    mw_buf_init(&b);
    if (m->kind == MW_MSG_BINARY) {
        /* base64 needs no escaping, and JSON text must be UTF-8 */
        mw_buf_appendc(&b, '"');
        mw_base64_append(&b, m->data, m->len);
        mw_buf_appendc(&b, '"');
    } else {
        mw_json_append_string(&b, m->data, m->len);
    }
    enc = mw_shared_new(b.data, b.len);
    mw_buf_free(&b);
    mw_msg_set_encoding(m, MW_ENC_JSON, NULL, enc);
    return enc;
}

struct mw_shared *mw_msg_encoding(struct mw_msg *m, int tag, const char *key)
{
    for (struct mw_msg_enc *e = m->encs; e; e = e->next)
        if (e->tag == tag && key_eq(e->key, key)) return e->bytes;
    return NULL;
}

void mw_msg_set_encoding(struct mw_msg *m, int tag, const char *key, struct mw_shared *bytes)
{
    struct mw_msg_enc *e = mw_xmalloc(sizeof *e);
    e->tag = tag;
    e->key = key ? mw_xstrndup(key, strlen(key)) : NULL;
    e->bytes = bytes;
    e->next = m->encs;
    m->encs = e;
}

/* ------------------------------------------------------------- channels */

/* A delivery loop in progress: the subscriber it serves next. */
struct mw_hub_iter {
    struct mw_sub *next;
    struct mw_hub_iter *outer; /* a publish made from inside a delivery nests */
};

static size_t hash(const char *s, size_t len)
{
    size_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void grow(void)
{
    size_t n = nbuckets ? nbuckets * 2 : 64;
    struct mw_channel **b = mw_xcalloc(n, sizeof *b);
    for (size_t i = 0; i < nbuckets; i++) {
        struct mw_channel *ch = buckets[i], *next;
        for (; ch; ch = next) {
            next = ch->hnext;
            size_t k = hash(ch->name, ch->name_len) & (n - 1);
            ch->hnext = b[k];
            b[k] = ch;
        }
    }
    free(buckets);
    buckets = b;
    nbuckets = n;
}

struct mw_channel *mw_hub_channel(const char *name, size_t len, int create)
{
    if (nbuckets) {
        for (struct mw_channel *ch = buckets[hash(name, len) & (nbuckets - 1)]; ch; ch = ch->hnext)
            if (ch->name_len == len && memcmp(ch->name, name, len) == 0) return ch;
    }
    if (!create) return NULL;
    if (nchannels >= nbuckets) grow();
    struct mw_channel *ch = mw_xcalloc(1, sizeof *ch);
    ch->name = mw_xstrndup(name, len);
    ch->name_len = len;
    ch->history_max = MW_HUB_DEFAULT_HISTORY;
    size_t k = hash(name, len) & (nbuckets - 1);
    ch->hnext = buckets[k];
    buckets[k] = ch;
    nchannels++;
    return ch;
}

static void channel_free(struct mw_channel *ch)
{
    size_t k = hash(ch->name, ch->name_len) & (nbuckets - 1);
    struct mw_channel **pp = &buckets[k];
    while (*pp != ch) pp = &(*pp)->hnext;
    *pp = ch->hnext;
    nchannels--;
    for (size_t i = 0; i < ch->ring_len; i++)
        mw_msg_unref(ch->ring[(ch->ring_start + i) % ch->history_max]);
    free(ch->ring);
    free(ch->name);
    free(ch);
}

/* A channel lives while anything refers to it, it retains history, or
 * its history size was set: `mw.channel(name, { history = N })` at load
 * time must hold after the handle it returned is collected, not until
 * the next garbage collection. */
static void maybe_free(struct mw_channel *ch)
{
    if (ch->refs == 0 && ch->nsubs == 0 && ch->ring_len == 0 && !ch->publishing &&
        ch->history_max == MW_HUB_DEFAULT_HISTORY)
        channel_free(ch);
}

void mw_channel_ref(struct mw_channel *ch)
{
    ch->refs++;
}

void mw_channel_unref(struct mw_channel *ch)
{
    ch->refs--;
    maybe_free(ch);
}

static struct mw_msg *ring_at(struct mw_channel *ch, size_t i)
{
    return ch->ring[(ch->ring_start + i) % ch->history_max];
}

void mw_channel_set_history(struct mw_channel *ch, size_t max)
{
    if (max == ch->history_max) return;
    /* keep the newest min(len, max) messages, oldest first */
    size_t keep = ch->ring_len < max ? ch->ring_len : max;
    struct mw_msg **ring = max ? mw_xcalloc(max, sizeof *ring) : NULL;
    for (size_t i = 0; i < ch->ring_len; i++) {
        struct mw_msg *m = ring_at(ch, i);
        if (i >= ch->ring_len - keep)
            ring[i - (ch->ring_len - keep)] = m;
        else
            mw_msg_unref(m);
    }
    free(ch->ring);
    ch->ring = ring;
    ch->ring_start = 0;
    ch->ring_len = keep;
    ch->history_max = max;
}

uint64_t mw_hub_publish(struct mw_channel *ch, const void *data, size_t len, int kind)
{
    return mw_hub_publish_except(ch, data, len, kind, NULL);
}

uint64_t mw_hub_publish_except(struct mw_channel *ch, const void *data, size_t len, int kind,
                               const void *except)
{
    struct mw_msg *m = mw_xmalloc(sizeof *m + len);
    m->refs = 1;
    m->id = ++ch->last_id;
    m->kind = kind;
    m->encs = NULL;
    m->len = len;
    if (len) memcpy(m->data, data, len);

    if (ch->history_max) {
        if (!ch->ring) ch->ring = mw_xcalloc(ch->history_max, sizeof *ch->ring);
        if (ch->ring_len == ch->history_max) {
            mw_msg_unref(ch->ring[ch->ring_start]);
            ch->ring[ch->ring_start] = NULL;
            ch->ring_start = (ch->ring_start + 1) % ch->history_max;
            ch->ring_len--;
        }
        mw_msg_ref(m);
        ch->ring[(ch->ring_start + ch->ring_len) % ch->history_max] = m;
        ch->ring_len++;
    }

    /* Subscribers may leave while one is served (a slow client dropped,
     * with a long poll parked on the same request): the cursor lives on
     * the channel, where mw_hub_unsubscribe moves it past one that goes.
     * One that joins meanwhile gets the next message, not this one. */
    struct mw_hub_iter it = {ch->subs, ch->iters};
    ch->iters = &it;
    ch->publishing++;
    while (it.next) {
        struct mw_sub *s = it.next;
        it.next = s->next;
        if (s->after_id < m->id && (!except || s->owner != except)) s->ops->deliver(s, m);
    }
    ch->publishing--;
    ch->iters = it.outer;
    uint64_t id = m->id;
    mw_msg_unref(m);
    maybe_free(ch);
    return id;
}

void mw_hub_subscribe(struct mw_channel *ch, struct mw_sub *sub)
{
    sub->ch = ch;
    sub->after_id = ch->last_id;
    sub->prev = NULL;
    /* appended, so delivery order is subscription order */
    sub->next = NULL;
    if (!ch->subs) {
        ch->subs = sub;
    } else {
        ch->subs_tail->next = sub;
        sub->prev = ch->subs_tail;
    }
    ch->subs_tail = sub;
    ch->nsubs++;
}

void mw_hub_unsubscribe(struct mw_sub *sub)
{
    struct mw_channel *ch = sub->ch;
    if (!ch) return;
    for (struct mw_hub_iter *it = ch->iters; it; it = it->outer)
        if (it->next == sub) it->next = sub->next;
    if (sub->prev) sub->prev->next = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    if (ch->subs == sub) ch->subs = sub->next;
    if (ch->subs_tail == sub) ch->subs_tail = sub->prev;
    ch->nsubs--;
    sub->ch = NULL;
    sub->prev = sub->next = NULL;
    maybe_free(ch);
}

/* Index in the ring of the first message to return for `since`, and how
 * many were missed. */
static size_t first_after(struct mw_channel *ch, long long since, size_t *missed)
{
    *missed = 0;
    if (ch->ring_len == 0) {
        if (since >= 0 && (uint64_t)since < ch->last_id && ch->last_id > 0)
            *missed = (size_t)(ch->last_id - (uint64_t)since);
        return 0;
    }
    uint64_t oldest = ring_at(ch, 0)->id;
    if (since < 0 || (uint64_t)since > ch->last_id) return 0; /* absent, or a restart */
    if ((uint64_t)since + 1 < oldest) {
        *missed = (size_t)(oldest - (uint64_t)since - 1);
        return 0;
    }
    return (size_t)((uint64_t)since + 1 - oldest);
}

size_t mw_channel_history(struct mw_channel *ch, long long since,
                          void (*fn)(struct mw_msg *m, void *ud), void *ud)
{
    size_t missed;
    for (size_t i = first_after(ch, since, &missed); i < ch->ring_len; i++) fn(ring_at(ch, i), ud);
    return missed;
}

uint64_t mw_channel_oldest_id(struct mw_channel *ch)
{
    return ch->ring_len ? ring_at(ch, 0)->id : 0;
}

int mw_channel_has_after(struct mw_channel *ch, long long since)
{
    size_t missed;
    return first_after(ch, since, &missed) < ch->ring_len;
}

size_t mw_hub_channel_count(void)
{
    return nchannels;
}

void mw_hub_free_all(void)
{
    for (size_t i = 0; i < nbuckets; i++) {
        while (buckets[i]) {
            struct mw_channel *ch = buckets[i];
            ch->publishing++; /* keeps unsubscribe from freeing it under us */
            while (ch->subs) mw_hub_unsubscribe(ch->subs);
            buckets[i] = ch->hnext;
            ch->hnext = NULL;
            for (size_t k = 0; k < ch->ring_len; k++) mw_msg_unref(ring_at(ch, k));
            free(ch->ring);
            free(ch->name);
            free(ch);
        }
    }
    free(buckets);
    buckets = NULL;
    nbuckets = nchannels = 0;
}
