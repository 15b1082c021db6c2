/* feed.c - hub subscriptions with resume ids and the slow-consumer rule. */
#include "feed.h"
#include "buf.h"

#include <stdlib.h>
#include <string.h>

static const struct mw_feed_ops *ops_of(const struct mw_feed_sub *fs)
{
    return (const struct mw_feed_ops *)fs->sub.ops;
}

struct mw_feed_sub *mw_feed_find(const struct mw_feed *f, const struct mw_channel *ch)
{
    for (size_t i = 0; i < f->n; i++)
        if (mw_feed_at(f, i)->sub.ch == ch) return mw_feed_at(f, i);
    return NULL;
}

struct mw_feed_sub *mw_feed_add(struct mw_feed *f, const struct mw_feed_ops *ops, void *owner,
                                struct mw_channel *ch, long long since)
{
    struct mw_feed_sub *fs;
    if (!f->first_used) {
        fs = &f->first;
        f->first_used = 1;
    } else {
        fs = mw_xmalloc(sizeof *fs);
    }
    memset(fs, 0, sizeof *fs);
    fs->sub.ops = &ops->hub;
    fs->sub.owner = owner;
    fs->last_id = ch->last_id;
    if (since >= 0) {
        uint64_t oldest = mw_channel_oldest_id(ch);
        uint64_t floor = oldest ? oldest - 1 : ch->last_id;
        fs->last_id = (uint64_t)since > ch->last_id || (uint64_t)since < floor ? floor : (uint64_t)since;
    }
    if (f->n == 0) {
        f->subs.one = fs;
    } else if (f->n == 1) {
        struct mw_feed_sub **many = mw_xmalloc(2 * sizeof *many);
        many[0] = f->subs.one;
        many[1] = fs;
        f->subs.many = many;
    } else {
        f->subs.many = mw_xrealloc(f->subs.many, (f->n + 1) * sizeof *f->subs.many);
        f->subs.many[f->n] = fs;
    }
    f->n++;
    mw_hub_subscribe(ch, &fs->sub);
    return fs;
}

struct replay {
    struct mw_feed_sub *fs;
    int rc;
};

static void replay_one(struct mw_msg *m, void *ud)
{
    struct replay *r = ud;
    if (r->rc == MW_FEED_OK) r->rc = ops_of(r->fs)->send(r->fs, m);
}

int mw_feed_catch_up(struct mw_feed_sub *fs)
{
    uint64_t oldest = mw_channel_oldest_id(fs->sub.ch);
    if (fs->catching_up && oldest && fs->last_id + 1 < oldest) {
        ops_of(fs)->drop(fs);
        return 0;
    }
    struct replay r = {fs, MW_FEED_OK};
    mw_channel_history(fs->sub.ch, (long long)fs->last_id, replay_one, &r);
    fs->catching_up = r.rc == MW_FEED_FULL;
    return 1;
}

static int any_catching_up(const struct mw_feed *f)
{
    for (size_t i = 0; i < f->n; i++)
        if (mw_feed_at(f, i)->catching_up) return 1;
    return 0;
}

void mw_feed_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct mw_feed_sub *fs = (struct mw_feed_sub *)sub;
    if (fs->catching_up) {
        mw_feed_catch_up(fs); /* m is in the history already, after what is still to replay */
        return;
    }
    const struct mw_feed_ops *ops = ops_of(fs);
    if (ops->send(fs, m) != MW_FEED_FULL) return;
    if (any_catching_up(ops->feed_of(fs)))
        fs->catching_up = 1; /* a replay filled the queue, not the client: wait in history too */
    else
        ops->drop(fs);
}

int mw_feed_drained(struct mw_feed *f)
{
    for (size_t i = 0; i < f->n; i++) {
        struct mw_feed_sub *fs = mw_feed_at(f, i);
        if (fs->sub.ch && fs->catching_up && !mw_feed_catch_up(fs)) return 0;
    }
    return 1;
}

static void sub_free(struct mw_feed *f, struct mw_feed_sub *fs)
{
    mw_hub_unsubscribe(&fs->sub);
    free(fs->event);
    if (fs == &f->first)
        f->first_used = 0;
    else
        free(fs);
}

int mw_feed_remove(struct mw_feed *f, const struct mw_channel *ch)
{
    for (size_t i = 0; i < f->n; i++) {
        struct mw_feed_sub *fs = mw_feed_at(f, i);
        if (fs->sub.ch != ch) continue;
        sub_free(f, fs);
        if (f->n > 1) {
            struct mw_feed_sub **many = f->subs.many;
            memmove(many + i, many + i + 1, (f->n - i - 1) * sizeof *many);
            if (f->n == 2) {
                f->subs.one = many[0];
                free(many);
            }
        } else {
            f->subs.one = NULL;
        }
        f->n--;
        return 1;
    }
    return 0;
}

void mw_feed_leave_all(struct mw_feed *f)
{
    for (size_t i = 0; i < f->n; i++) mw_hub_unsubscribe(&mw_feed_at(f, i)->sub);
}

void mw_feed_free(struct mw_feed *f)
{
    for (size_t i = 0; i < f->n; i++) sub_free(f, mw_feed_at(f, i));
    if (f->n > 1) free(f->subs.many);
    f->subs.one = NULL;
    f->n = 0;
}
