/* server.h - one worker: its loop, listener, connections, the end-of-turn
 * sweep that runs queued coroutine wakes, parser continuations and
 * flushes, and graceful shutdown. */
#ifndef MW_SERVER_H
#define MW_SERVER_H

#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "mw_limits.h"

struct mw_conn;
struct mw_vm;

/* Deferred work of other modules, run by the end-of-turn sweep. Embed one
 * in the owner; it is queued at most once at a time. */
struct mw_task {
    struct mw_task *next;
    void (*fn)(struct mw_task *t);
    int queued;
};

struct mw_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;            /* listener handle is open */
    uv_prepare_t prepare;     /* end-of-turn sweep before the loop sleeps */
    uv_check_t check;         /* ... and after each poll */
    uv_idle_t more;           /* active while work is left for the next turn */
    uv_timer_t shutdown_timer;
    struct mw_limits limits;
    struct mw_vm *vm;
    int dev_mode;             /* --reload: error details in 500 bodies */

    struct mw_conn *conns;    /* every open connection (intrusive list) */
    size_t nconns;
    struct mw_conn *work_head, *work_tail; /* connections with deferred work */
    struct mw_task *tasks_head, *tasks_tail; /* other deferred work */
    int sweeping;             /* mw_server_sweep is on the stack */

    int shutting_down;
    int shutdown_forced;
    void (*on_stopped)(struct mw_server *srv); /* every connection is gone */

    uint64_t next_conn_id;
    uint64_t next_req_id;
    char id_prefix[9];        /* random per process: request ids stay unique across restarts */
    char date[32];            /* cached IMF-fixdate for the Date header */
    time_t date_sec;
    char listen_url[128];
};

int mw_server_init(struct mw_server *srv, uv_loop_t *loop, struct mw_vm *vm);
/* Binds and listens on host:port ("[::1]:8080" style handled by caller). */
int mw_server_listen(struct mw_server *srv, const char *host, int port);
/* Stops accepting and lets connections finish within limits.shutdown_ms. */
void mw_server_shutdown(struct mw_server *srv);
/* Closes every connection now. */
void mw_server_force_close(struct mw_server *srv);
/* Closes the server's own handles; call once every connection is gone. */
void mw_server_close(struct mw_server *srv);
/* Runs deferred work: coroutine wakes, parser continuations, flushes (at
 * most MW_SWEEP_BUDGET connections' worth; the loop's next turn goes on).
 * Safe to call from any callback that is not inside a Lua resume. */
void mw_server_sweep(struct mw_server *srv);
const char *mw_server_date(struct mw_server *srv);
/* Queues t->fn(t) for the sweep, where nothing is on the stack that the
 * task could free from under. */
void mw_server_defer(struct mw_server *srv, struct mw_task *t, void (*fn)(struct mw_task *t));

#endif
