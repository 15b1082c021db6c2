/* test_hub.c - the hub without a server: ids from 1, the history ring
 * (capacity, wrap, resizing), DESIGN.md's `since` rules with the missed
 * count, delivery order, subscribers leaving and joining while a message
 * is being delivered, channels freed when nothing needs them, and wire
 * encodings cached once per message and shared. Run under ASan, a freed
 * channel or message touched afterwards is a report. */
#include "hub.h"
#include "t.h"

#include <stdint.h>
#include <stdlib.h>

static struct mw_channel *chan(const char *name)
{
    return mw_hub_channel(name, strlen(name), 1);
}

static uint64_t pub(struct mw_channel *ch, const char *s)
{
    return mw_hub_publish(ch, s, strlen(s), MW_MSG_TEXT);
}

/* ---------------------------------------------------- history queries */

struct got {
    uint64_t ids[512];
    char data[512][16];
    int n;
};

static void collect(struct mw_msg *m, void *ud)
{
    struct got *g = ud;
    if (g->n < 512) {
        g->ids[g->n] = m->id;
        snprintf(g->data[g->n], sizeof g->data[0], "%.*s", (int)m->len, m->data);
    }
    g->n++;
}

/* The ids history(since) returns must be first..last (none when first > last),
 * with `missed` reported. */
static int history_is(struct mw_channel *ch, long long since, uint64_t first, uint64_t last,
                      size_t missed)
{
    struct got g = {.n = 0};
    size_t m = mw_channel_history(ch, since, collect, &g);
    int ok = m == missed;
    int want_n = first <= last ? (int)(last - first + 1) : 0;
    ok &= g.n == want_n;
    for (int i = 0; ok && i < g.n; i++) {
        char want[16];
        snprintf(want, sizeof want, "m%llu", (unsigned long long)(first + (uint64_t)i));
        ok &= g.ids[i] == first + (uint64_t)i && strcmp(g.data[i], want) == 0;
    }
    /* has_after agrees with history */
    ok &= mw_channel_has_after(ch, since) == (want_n > 0);
    if (!ok)
        fprintf(stderr, "history(%lld): got %d message(s) from %llu, missed %zu; want %llu..%llu, missed %zu\n",
                since, g.n, g.n ? (unsigned long long)g.ids[0] : 0ULL, m, (unsigned long long)first,
                (unsigned long long)last, missed);
    return ok;
}

static void publish_n(struct mw_channel *ch, int n)
{
    for (int i = 0; i < n; i++) {
        char s[16];
        snprintf(s, sizeof s, "m%llu", (unsigned long long)ch->last_id + 1);
        pub(ch, s);
    }
}

static void check_ids_and_ring(void)
{
    struct mw_channel *ch = chan("ids");
    mw_channel_ref(ch);
    CHECK(ch->last_id == 0);
    CHECK(ch->history_max == MW_HUB_DEFAULT_HISTORY && MW_HUB_DEFAULT_HISTORY == 100);
    /* nothing yet: every since gives nothing, nothing missed */
    CHECK(history_is(ch, -1, 1, 0, 0));
    CHECK(history_is(ch, 0, 1, 0, 0));
    CHECK(history_is(ch, 5, 1, 0, 0));

    CHECK(mw_channel_oldest_id(ch) == 0);
    CHECK(pub(ch, "m1") == 1);
    CHECK(pub(ch, "m2") == 2);
    CHECK(pub(ch, "m3") == 3);
    CHECK(ch->last_id == 3);
    CHECK(mw_channel_oldest_id(ch) == 1);
    /* ids are per channel */
    struct mw_channel *other = chan("ids-other");
    mw_channel_ref(other);
    CHECK(pub(other, "x") == 1);
    mw_channel_unref(other);

    /* since, within the history */
    CHECK(history_is(ch, -1, 1, 3, 0)); /* absent: all retained */
    CHECK(history_is(ch, 0, 1, 3, 0));  /* 0: all, none missed (ids start at 1) */
    CHECK(history_is(ch, 1, 2, 3, 0));
    CHECK(history_is(ch, 2, 3, 3, 0));
    CHECK(history_is(ch, 3, 1, 0, 0));  /* up to date */
    CHECK(history_is(ch, 4, 1, 3, 0));  /* above last_id (a restart): all retained */
    CHECK(history_is(ch, 1000, 1, 3, 0));

    /* wrap the ring: 250 messages, the newest 100 retained */
    publish_n(ch, 247);
    CHECK(ch->last_id == 250);
    CHECK(ch->ring_len == 100);
    CHECK(mw_channel_oldest_id(ch) == 151);
    CHECK(history_is(ch, -1, 151, 250, 0));
    CHECK(history_is(ch, 0, 151, 250, 150));   /* all retained, 150 gone */
    CHECK(history_is(ch, 1, 151, 250, 149));
    CHECK(history_is(ch, 149, 151, 250, 1));   /* older than history by one */
    CHECK(history_is(ch, 150, 151, 250, 0));   /* just at the edge: nothing missed */
    CHECK(history_is(ch, 151, 152, 250, 0));
    CHECK(history_is(ch, 200, 201, 250, 0));
    CHECK(history_is(ch, 249, 250, 250, 0));
    CHECK(history_is(ch, 250, 1, 0, 0));
    CHECK(history_is(ch, 251, 151, 250, 0));

    /* the ring stays consistent over many more wraps */
    for (int round = 0; round < 7; round++) {
        publish_n(ch, 37 + round);
        CHECK(ch->ring_len == 100);
        CHECK(history_is(ch, (long long)ch->last_id - 10, ch->last_id - 9, ch->last_id, 0));
        CHECK(history_is(ch, -1, ch->last_id - 99, ch->last_id, 0));
    }
    mw_channel_unref(ch);
}

static void check_set_history(void)
{
    struct mw_channel *ch = chan("resize");
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 5);
    publish_n(ch, 12); /* retained 8..12, the ring wrapped */
    CHECK(ch->ring_len == 5 && ch->ring_start != 0);
    CHECK(history_is(ch, -1, 8, 12, 0));
    CHECK(history_is(ch, 3, 8, 12, 4));

    /* shrink keeps the newest */
    mw_channel_set_history(ch, 3);
    CHECK(ch->history_max == 3 && ch->ring_len == 3);
    CHECK(history_is(ch, -1, 10, 12, 0));
    CHECK(history_is(ch, 0, 10, 12, 9));
    publish_n(ch, 2);
    CHECK(history_is(ch, -1, 12, 14, 0));

    /* grow keeps everything and then fills up */
    mw_channel_set_history(ch, 10);
    CHECK(ch->history_max == 10 && ch->ring_len == 3);
    CHECK(history_is(ch, -1, 12, 14, 0));
    publish_n(ch, 9);
    CHECK(ch->ring_len == 10);
    CHECK(history_is(ch, -1, 14, 23, 0));
    CHECK(history_is(ch, 11, 14, 23, 2));

    /* the same size changes nothing */
    mw_channel_set_history(ch, 10);
    CHECK(history_is(ch, -1, 14, 23, 0));

    /* shrinking below what is retained, from a wrapped ring */
    publish_n(ch, 4); /* retained 18..27, wrapped */
    mw_channel_set_history(ch, 4);
    CHECK(history_is(ch, -1, 24, 27, 0));
    CHECK(history_is(ch, 20, 24, 27, 3));

    /* 0: nothing retained; ids go on; everything since is missed */
    mw_channel_set_history(ch, 0);
    CHECK(ch->ring_len == 0);
    CHECK(mw_channel_oldest_id(ch) == 0);
    CHECK(history_is(ch, -1, 1, 0, 0));
    CHECK(pub(ch, "m28") == 28);
    CHECK(history_is(ch, 25, 1, 0, 3));
    CHECK(history_is(ch, 28, 1, 0, 0));
    CHECK(history_is(ch, 40, 1, 0, 0));

    /* and back */
    mw_channel_set_history(ch, 2);
    publish_n(ch, 3);
    CHECK(history_is(ch, -1, 30, 31, 0));
    CHECK(history_is(ch, 28, 30, 31, 1));
    mw_channel_unref(ch);
}

/* ------------------------------------------------------------ delivery */

struct tsub {
    struct mw_sub sub;
    const char *name;
    uint64_t ids[64];
    int n;
    int leave_at;            /* unsubscribe itself on this message id */
    struct tsub *add;        /* subscribe this one when a message arrives */
    int publish_again;       /* publish to the same channel once, from delivery */
};

static char order[256];

static void tsub_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct tsub *t = (struct tsub *)sub;
    struct mw_channel *ch = sub->ch;
    if (t->n < 64) t->ids[t->n] = m->id;
    t->n++;
    strncat(order, t->name, sizeof order - strlen(order) - 1);
    if (t->add) {
        struct tsub *a = t->add;
        t->add = NULL;
        mw_hub_subscribe(ch, &a->sub);
    }
    if (t->publish_again) {
        t->publish_again = 0;
        pub(ch, "nested");
    }
    if (t->leave_at && m->id == (uint64_t)t->leave_at) mw_hub_unsubscribe(sub);
}

static const struct mw_sub_ops tsub_ops = {.deliver = tsub_deliver};

static void tsub_init(struct tsub *t, const char *name)
{
    memset(t, 0, sizeof *t);
    t->sub.ops = &tsub_ops;
    t->sub.owner = t;
    t->name = name;
}

static int ids_are(const struct tsub *t, const uint64_t *want, int n)
{
    if (t->n != n) return 0;
    for (int i = 0; i < n; i++)
        if (t->ids[i] != want[i]) return 0;
    return 1;
}

static void check_delivery(void)
{
    struct mw_channel *ch = chan("deliver");
    mw_channel_ref(ch);
    struct tsub a, b, c, d;
    tsub_init(&a, "a");
    tsub_init(&b, "b");
    tsub_init(&c, "c");
    tsub_init(&d, "d");

    /* in subscription order, each once */
    mw_hub_subscribe(ch, &a.sub);
    mw_hub_subscribe(ch, &b.sub);
    mw_hub_subscribe(ch, &c.sub);
    CHECK(ch->nsubs == 3);
    order[0] = 0;
    pub(ch, "m1");
    CHECK_STR(order, "abc");

    /* one leaves during its own delivery: the others still get it, and
     * it gets nothing after */
    b.leave_at = 2;
    order[0] = 0;
    pub(ch, "m2");
    CHECK_STR(order, "abc");
    CHECK(b.sub.ch == NULL && ch->nsubs == 2);
    order[0] = 0;
    pub(ch, "m3");
    CHECK_STR(order, "ac");
    static const uint64_t wa[] = {1, 2, 3}, wb[] = {1, 2};
    CHECK(ids_are(&a, wa, 3));
    CHECK(ids_are(&b, wb, 2));
    CHECK(ids_are(&c, wa, 3));

    /* the first and the last leave during their delivery */
    a.leave_at = 4;
    c.leave_at = 4;
    mw_hub_subscribe(ch, &b.sub);
    order[0] = 0;
    pub(ch, "m4");
    CHECK_STR(order, "acb");
    CHECK(ch->nsubs == 1 && ch->subs == &b.sub);

    /* a subscriber added during a delivery gets the messages after it,
     * not the one being delivered (it joined after that was published) */
    b.add = &d;
    order[0] = 0;
    pub(ch, "m5");
    CHECK_STR(order, "b");
    order[0] = 0;
    pub(ch, "m6");
    CHECK_STR(order, "bd");
    static const uint64_t wd[] = {6};
    CHECK(ids_are(&d, wd, 1));

    /* ... also when it is added by the first of several */
    mw_hub_unsubscribe(&b.sub);
    mw_hub_unsubscribe(&d.sub);
    struct tsub e, f, g;
    tsub_init(&e, "e");
    tsub_init(&f, "f");
    tsub_init(&g, "g");
    mw_hub_subscribe(ch, &e.sub);
    mw_hub_subscribe(ch, &f.sub);
    e.add = &g;
    order[0] = 0;
    pub(ch, "m7");
    CHECK_STR(order, "ef");
    order[0] = 0;
    pub(ch, "m8");
    CHECK_STR(order, "efg");

    /* a publish from inside a delivery (same channel; nothing in the
     * runtime does this, but nothing breaks): every subscriber sees both
     * messages, each once */
    mw_hub_unsubscribe(&g.sub);
    e.n = f.n = 0;
    e.publish_again = 1;
    order[0] = 0;
    pub(ch, "m9");
    CHECK(e.n == 2 && f.n == 2);
    CHECK(e.ids[0] == 9 && e.ids[1] == 10);
    CHECK(f.ids[0] == 10 || f.ids[0] == 9);
    CHECK(f.ids[0] != f.ids[1]);
    mw_hub_unsubscribe(&e.sub);
    mw_hub_unsubscribe(&f.sub);
    /* unsubscribing twice is harmless */
    mw_hub_unsubscribe(&f.sub);
    CHECK(ch->nsubs == 0 && ch->subs == NULL);
    mw_channel_unref(ch);
}

/* A subscriber that, while being delivered to, causes the next one in
 * the list to leave (a slow SSE client dropped together with a long poll
 * parked on the same request): the one that left gets nothing more, and
 * every other subscriber still gets the message. */
struct pair_sub {
    struct mw_sub sub;
    struct mw_sub *victim; /* unsubscribed from inside this one's delivery */
    int n;
};

static void pair_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct pair_sub *p = (struct pair_sub *)sub;
    p->n++;
    if (p->victim) {
        mw_hub_unsubscribe(p->victim);
        p->victim = NULL;
        mw_hub_unsubscribe(sub);
    }
}

static const struct mw_sub_ops pair_ops = {.deliver = pair_deliver};

static void check_leave_next(void)
{
    struct mw_channel *ch = chan("leave-next");
    mw_channel_ref(ch);
    struct pair_sub p[4];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 4; i++) {
        p[i].sub.ops = &pair_ops;
        mw_hub_subscribe(ch, &p[i].sub);
    }
    p[1].victim = &p[2].sub;
    pub(ch, "x");
    CHECK(p[0].n == 1 && p[1].n == 1 && p[2].n == 0 && p[3].n == 1);
    CHECK(ch->nsubs == 2 && p[1].sub.ch == NULL && p[2].sub.ch == NULL);
    pub(ch, "y");
    CHECK(p[0].n == 2 && p[1].n == 1 && p[2].n == 0 && p[3].n == 2);
    mw_hub_unsubscribe(&p[0].sub);
    mw_hub_unsubscribe(&p[3].sub);
    mw_channel_unref(ch);
}

/* ----------------------------------------------------- channel lifetime */

static void check_lifetime(void)
{
    size_t base = mw_hub_channel_count();
    CHECK(mw_hub_channel("life", 4, 0) == NULL);
    struct mw_channel *ch = chan("life");
    CHECK(mw_hub_channel_count() == base + 1);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    CHECK(chan("life") == ch); /* one channel per name */

    /* handles keep it; the last one gone with nothing retained frees it */
    mw_channel_ref(ch);
    mw_channel_ref(ch);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == NULL);
    CHECK(mw_hub_channel_count() == base);

    /* a subscriber keeps it; its leaving frees it */
    struct tsub a;
    tsub_init(&a, "a");
    ch = chan("life");
    mw_hub_subscribe(ch, &a.sub);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    mw_hub_unsubscribe(&a.sub);
    CHECK(mw_hub_channel("life", 4, 0) == NULL);

    /* retained history keeps it (ids and history outlive the handles) */
    ch = chan("life");
    mw_channel_ref(ch);
    pub(ch, "m1");
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    CHECK(history_is(ch, 0, 1, 1, 0));
    CHECK(pub(chan("life"), "m2") == 2);
    /* a history size that was set keeps the channel, even with nothing
     * retained: the setting must not vanish with the handle */
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 0);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    CHECK(ch->history_max == 0 && ch->ring_len == 0);
    CHECK(pub(chan("life"), "m3") == 3);
    CHECK(mw_hub_channel("life", 4, 0) == ch);
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 7);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == ch && ch->history_max == 7);
    /* back to the default with nothing retained: freed */
    mw_channel_ref(ch);
    mw_channel_set_history(ch, MW_HUB_DEFAULT_HISTORY);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life", 4, 0) == NULL);
    CHECK(mw_hub_channel_count() == base);

    /* a channel that retains nothing and that nobody holds is freed right
     * after a publish reaches its subscribers */
    ch = chan("life0");
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 0);
    pub(ch, "m1");
    mw_channel_set_history(ch, MW_HUB_DEFAULT_HISTORY); /* as if never set */
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life0", 5, 0) == NULL);

    /* the last subscriber leaving during delivery, with nothing retained
     * and no handle: the channel outlives the delivery loop (and keeps its
     * setting), and goes once the setting is back to the default */
    ch = chan("life1");
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 0);
    tsub_init(&a, "a");
    a.leave_at = 1;
    mw_hub_subscribe(ch, &a.sub);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life1", 5, 0) == ch);
    CHECK(pub(ch, "m1") == 1);
    CHECK(a.n == 1 && ch->nsubs == 0 && ch->ring_len == 0);
    CHECK(mw_hub_channel("life1", 5, 0) == ch);
    mw_channel_ref(ch);
    mw_channel_set_history(ch, MW_HUB_DEFAULT_HISTORY);
    mw_channel_unref(ch);
    CHECK(mw_hub_channel("life1", 5, 0) == NULL);
    CHECK(mw_hub_channel_count() == base);

    /* many channels: the table grows and every name stays findable */
    struct mw_channel *many[300];
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof name, "many-%d", i);
        many[i] = chan(name);
        mw_channel_ref(many[i]);
    }
    CHECK(mw_hub_channel_count() == base + 300);
    int found = 0;
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof name, "many-%d", i);
        found += mw_hub_channel(name, strlen(name), 0) == many[i];
    }
    CHECK(found == 300);
    for (int i = 0; i < 300; i++) mw_channel_unref(many[i]);
    CHECK(mw_hub_channel_count() == base);

    /* names are bytes: an embedded NUL is part of the name */
    struct mw_channel *n1 = mw_hub_channel("a\0b", 3, 1), *n2 = mw_hub_channel("a\0c", 3, 1);
    CHECK(n1 != n2);
    mw_channel_ref(n1);
    mw_channel_unref(n1);
    mw_channel_ref(n2);
    mw_channel_unref(n2);
    CHECK(mw_hub_channel_count() == base);
}

/* ------------------------------------------------------ shared encodings */

struct enc_sub {
    struct mw_sub sub;
    struct mw_shared *seen; /* the bytes this subscriber would queue */
    int made;               /* encodings this subscriber had to make */
};

static int encodings_made;

/* What a transport does: look the encoding up, make it on first use. */
static void enc_deliver(struct mw_sub *sub, struct mw_msg *m)
{
    struct enc_sub *e = (struct enc_sub *)sub;
    struct mw_shared *bytes = mw_msg_encoding(m, MW_ENC_SSE, NULL);
    if (!bytes) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "data: %.*s\n\n", (int)m->len, m->data);
        bytes = mw_shared_new(buf, (size_t)n);
        mw_msg_set_encoding(m, MW_ENC_SSE, NULL, bytes);
        encodings_made++;
        e->made++;
    }
    mw_shared_ref(bytes); /* as a write queue would */
    if (e->seen) mw_shared_unref(e->seen);
    e->seen = bytes;
}

static const struct mw_sub_ops enc_ops = {.deliver = enc_deliver};

static void check_shared_encodings(void)
{
    struct mw_channel *ch = chan("enc");
    mw_channel_ref(ch);
    struct enc_sub s[50];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 50; i++) {
        s[i].sub.ops = &enc_ops;
        mw_hub_subscribe(ch, &s[i].sub);
    }
    encodings_made = 0;
    pub(ch, "hello");
    CHECK(encodings_made == 1);
    int same = 0;
    for (int i = 0; i < 50; i++) same += s[i].seen == s[0].seen;
    CHECK(same == 50);
    CHECK(s[0].seen->len == 13 && memcmp(s[0].seen->data, "data: hello\n\n", 13) == 0);
    /* 50 queue refs and the message's cache; the message itself is in the ring */
    CHECK(s[0].seen->refs == 51);

    /* the cache is keyed by (tag, key) and lives with the message */
    struct mw_msg *m = ch->ring[(ch->ring_start + ch->ring_len - 1) % ch->history_max];
    CHECK(mw_msg_encoding(m, MW_ENC_SSE, NULL) == s[0].seen);
    CHECK(mw_msg_encoding(m, MW_ENC_SSE, "named") == NULL);
    CHECK(mw_msg_encoding(m, MW_ENC_WS, NULL) == NULL);
    struct mw_shared *named = mw_shared_new("x", 1);
    mw_msg_set_encoding(m, MW_ENC_SSE, "named", named);
    CHECK(mw_msg_encoding(m, MW_ENC_SSE, "named") == named);
    CHECK(mw_msg_encoding(m, MW_ENC_SSE, NULL) == s[0].seen);

    /* each message its own encoding */
    pub(ch, "again");
    CHECK(encodings_made == 2);
    CHECK(s[49].seen->len == 13 && memcmp(s[49].seen->data, "data: again\n\n", 13) == 0);

    /* the first message leaves the ring: its cache goes with it, while
     * the queues still hold their bytes */
    struct mw_shared *first_bytes = mw_msg_encoding(m, MW_ENC_SSE, NULL);
    mw_shared_ref(first_bytes);
    mw_channel_set_history(ch, 1);
    CHECK(first_bytes->refs == 1);
    mw_shared_unref(first_bytes);

    for (int i = 0; i < 50; i++) {
        mw_hub_unsubscribe(&s[i].sub);
        mw_shared_unref(s[i].seen);
    }
    mw_channel_unref(ch);
}

/* A binary message keeps its bytes and kind; history hands out the same
 * message object that delivery did. */
static void check_message_fields(void)
{
    struct mw_channel *ch = chan("bin");
    mw_channel_ref(ch);
    static const char bytes[] = {0, 1, 2, (char)0xFF, 0};
    mw_hub_publish(ch, bytes, sizeof bytes, MW_MSG_BINARY);
    mw_hub_publish(ch, "", 0, MW_MSG_TEXT);
    struct got g = {.n = 0};
    mw_channel_history(ch, 0, collect, &g);
    CHECK(g.n == 2);
    struct mw_msg *m0 = ch->ring[ch->ring_start];
    CHECK(m0->kind == MW_MSG_BINARY && m0->len == 5 && memcmp(m0->data, bytes, 5) == 0);
    struct mw_msg *m1 = ch->ring[(ch->ring_start + 1) % ch->history_max];
    CHECK(m1->kind == MW_MSG_TEXT && m1->len == 0 && m1->id == 2);
    mw_channel_unref(ch);
}

int main(void)
{
    check_ids_and_ring();
    check_set_history();
    check_delivery();
    check_leave_next();
    check_lifetime();
    check_shared_encodings();
    check_message_fields();
    /* what retains history is still there; freeing it all is clean */
    CHECK(mw_hub_channel_count() > 0);
    mw_hub_free_all();
    CHECK(mw_hub_channel_count() == 0);
    T_DONE();
}
