/* deadline.h - many timeouts on one libuv timer.
 *
 * A deadline is set to "now + ms" and fires once unless moved or cleared.
 * Deadlines with the same duration are kept in one list, which stays in
 * due order because each new one is due last; a single timer waits for
 * the earliest list head. Setting, moving and clearing are O(1) (plus a
 * scan of the few distinct durations and callbacks), with no per-object
 * timer handle:
 * connections and SSE heartbeats use this instead of a uv_timer_t each. */
#ifndef MW_DEADLINE_H
#define MW_DEADLINE_H

#include <stdint.h>
#include <uv.h>

struct mw_deadline_list;
struct mw_deadline;

typedef void (*mw_deadline_cb)(struct mw_deadline *d);

struct mw_deadline {
    struct mw_deadline *prev, *next;
    struct mw_deadline_list *list; /* NULL when not armed; holds the callback */
    uint64_t due_ms;               /* loop time */
};

/* Arms (or moves) d to fire `ms` from now. `ms` must be > 0. */
void mw_deadline_set(struct mw_deadline *d, uv_loop_t *loop, uint64_t ms, mw_deadline_cb fire);
void mw_deadline_clear(struct mw_deadline *d);
static inline int mw_deadline_armed(const struct mw_deadline *d)
{
    return d->list != NULL;
}
/* The rest of an interval, rounded up to an eighth of it: deadlines that
 * wait out what is left after some activity then share a few lists
 * instead of making one per distinct duration. */
static inline uint64_t mw_deadline_rest(uint64_t rest, uint64_t interval)
{
    uint64_t step = interval >= 8 ? interval / 8 : 1;
    return (rest + step - 1) / step * step;
}
/* Closes the shared timer and frees the lists (process exit). */
void mw_deadline_shutdown(void);

#endif
