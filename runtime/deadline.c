/* deadline.c - per-duration FIFO lists under one timer. */
#include "deadline.h"
#include "buf.h"

#include <stdlib.h>

/* Deadlines of one duration and callback, in due order. */
struct mw_deadline_list {
    uint64_t ms;
    mw_deadline_cb fire;
    struct mw_deadline *head, *tail;
    struct mw_deadline_list *next;
};

static _Thread_local struct mw_deadline_list *lists;
static _Thread_local uv_timer_t timer;
static _Thread_local int timer_ready;
static _Thread_local uint64_t scheduled_ms; /* when the timer fires; 0: stopped */

static void on_timer(uv_timer_t *t);

static void unlink_d(struct mw_deadline *d)
{
    struct mw_deadline_list *l = d->list;
    if (!l) return;
    if (d->prev) d->prev->next = d->next;
    else l->head = d->next;
    if (d->next) d->next->prev = d->prev;
    else l->tail = d->prev;
    d->prev = d->next = NULL;
    d->list = NULL;
}

static void schedule(uv_loop_t *loop, uint64_t due)
{
    if (!timer_ready) {
        uv_timer_init(loop, &timer);
        uv_unref((uv_handle_t *)&timer); /* deadlines alone don't keep the loop alive */
        timer_ready = 1;
    }
    uint64_t now = uv_now(loop);
    scheduled_ms = due;
    uv_timer_start(&timer, on_timer, due > now ? due - now : 0, 0);
}

static void reschedule(uv_loop_t *loop)
{
    uint64_t due = UINT64_MAX;
    /* empty lists go, so durations that come and go (a long poll's own
     * timeout) don't pile up */
    for (struct mw_deadline_list **pp = &lists; *pp;) {
        struct mw_deadline_list *l = *pp;
        if (!l->head) {
            *pp = l->next;
            free(l);
            continue;
        }
        if (l->head->due_ms < due) due = l->head->due_ms;
        pp = &l->next;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&timer);
        scheduled_ms = 0;
        return;
    }
    schedule(loop, due);
}

void mw_deadline_set(struct mw_deadline *d, uv_loop_t *loop, uint64_t ms, mw_deadline_cb fire)
{
    unlink_d(d);
    struct mw_deadline_list *l = lists;
    while (l && (l->ms != ms || l->fire != fire)) l = l->next;
    if (!l) {
        l = mw_xcalloc(1, sizeof *l);
        l->ms = ms;
        l->fire = fire;
        l->next = lists;
        lists = l;
    }
    d->due_ms = uv_now(loop) + (ms ? ms : 1); /* "now" would fire in a loop */
    d->list = l;
    d->prev = l->tail;
    d->next = NULL;
    if (l->tail) l->tail->next = d;
    else l->head = d;
    l->tail = d;
    /* a later deadline than the one scheduled needs no timer call */
    if (!scheduled_ms || d->due_ms < scheduled_ms) schedule(loop, d->due_ms);
}

void mw_deadline_clear(struct mw_deadline *d)
{
    unlink_d(d);
}

static void on_timer(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    scheduled_ms = 0;
    for (struct mw_deadline_list *l = lists; l; l = l->next) {
        while (l->head && l->head->due_ms <= now) {
            struct mw_deadline *d = l->head;
            unlink_d(d);
            l->fire(d); /* may set deadlines again, which append */
        }
    }
    reschedule(t->loop);
}

void mw_deadline_shutdown(void)
{
    if (timer_ready) {
        uv_close((uv_handle_t *)&timer, NULL);
        timer_ready = 0;
    }
    scheduled_ms = 0;
    while (lists) {
        struct mw_deadline_list *l = lists;
        lists = l->next;
        free(l);
    }
}
