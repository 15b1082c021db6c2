/* server.c - the worker's listener, its end-of-turn sweep and graceful
 * shutdown. The sweep is where deferred work runs: queued coroutine wakes
 * first (they may produce output), then parser continuations, then one
 * flush per connection, so many small writes leave as one.
 *
 * A sweep takes at most MW_SWEEP_BUDGET connections and leaves the rest
 * for the loop's next turn, which then polls without sleeping. A fan-out
 * to ten thousand streams is tens of milliseconds of writes; between
 * slices the loop reads, so a message published meanwhile joins the
 * queues of the streams not yet written and leaves in the same write,
 * instead of waiting for the whole pass to end and then a pass of its
 * own. Everyone else is served between slices too. */
#include "server.h"
#include "response.h"
#include "conn.h"
#include "log.h"
#include "lua_hub.h"
#include "lua_vm.h"
#include "lua_ws.h"
#include "stream.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *mw_server_date(struct mw_server *srv)
{
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        srv->date_sec = now;
        mw_http_date(now, srv->date);
    }
    return srv->date;
}

static void on_more(uv_idle_t *h)
{
    mw_server_sweep(h->data);
}

void mw_server_sweep(struct mw_server *srv)
{
    if (srv->sweeping) return;
    srv->sweeping = 1;
    mw_wq_trim(uv_now(srv->loop));
    /* a server going down finishes everything in one go: its handles,
     * the idle one among them, close as the last connection does */
    unsigned budget = srv->shutting_down ? UINT_MAX : MW_SWEEP_BUDGET;
    for (;;) {
        mw_vm_drain(srv->vm);
        struct mw_task *t = srv->tasks_head;
        if (t) {
            srv->tasks_head = t->next;
            if (!srv->tasks_head) srv->tasks_tail = NULL;
            t->queued = 0;
            t->fn(t);
            continue;
        }
        struct mw_conn *conn = srv->work_head;
        if (!conn || budget-- == 0) break;
        srv->work_head = conn->work_next;
        if (!srv->work_head) srv->work_tail = NULL;
        int work = conn->work;
        conn->work = 0;
        mw_conn_run_work(conn, work);
        mw_conn_unref(conn);
    }
    /* an active idle handle makes the loop poll without sleeping */
    uv_handle_t *more = (uv_handle_t *)&srv->more;
    if (srv->work_head && !uv_is_active(more) && !uv_is_closing(more))
        uv_idle_start(&srv->more, on_more);
    else if (!srv->work_head && uv_is_active(more))
        uv_idle_stop(&srv->more);
    srv->sweeping = 0;
}

void mw_server_defer(struct mw_server *srv, struct mw_task *t, void (*fn)(struct mw_task *t))
{
    t->fn = fn;
    if (t->queued) return;
    t->queued = 1;
    t->next = NULL;
    if (srv->tasks_tail)
        srv->tasks_tail->next = t;
    else
        srv->tasks_head = t;
    srv->tasks_tail = t;
}

static void on_prepare(uv_prepare_t *h)
{
    mw_server_sweep(h->data);
}

static void on_check(uv_check_t *h)
{
    mw_server_sweep(h->data);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct mw_server *srv = listener->data;
    if (status < 0) {
        mw_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    if (srv->shutting_down) return;
    mw_conn_accept(srv);
}

int mw_server_init(struct mw_server *srv, uv_loop_t *loop, struct mw_vm *vm)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->vm = vm;
    mw_limits_defaults(&srv->limits);
    unsigned char rnd[4];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        unsigned long x = (unsigned long)time(NULL) ^ (unsigned long)uv_os_getpid();
        memcpy(rnd, &x, sizeof rnd);
    }
    snprintf(srv->id_prefix, sizeof srv->id_prefix, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3]);
    uv_prepare_init(loop, &srv->prepare);
    srv->prepare.data = srv;
    uv_prepare_start(&srv->prepare, on_prepare);
    uv_unref((uv_handle_t *)&srv->prepare);
    uv_check_init(loop, &srv->check);
    srv->check.data = srv;
    uv_check_start(&srv->check, on_check);
    uv_unref((uv_handle_t *)&srv->check);
    uv_idle_init(loop, &srv->more);
    srv->more.data = srv;
    uv_timer_init(loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    uv_unref((uv_handle_t *)&srv->shutdown_timer);
    return 0;
}

int mw_server_listen(struct mw_server *srv, const char *host, int port)
{
    struct sockaddr_storage addr;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc) return rc;
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = 1;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, MW_LISTEN_BACKLOG, on_connection);
    if (rc) return rc;

    /* report the real port (":0" asks the kernel for a free one) */
    struct sockaddr_storage bound;
    int len = sizeof bound;
    char ip[64] = "";
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        snprintf(srv->listen_url, sizeof srv->listen_url, "http://[%s]:%d", ip, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        snprintf(srv->listen_url, sizeof srv->listen_url, "http://%s:%d", ip, port);
    }
    return 0;
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct mw_server *srv = t->data;
    mw_log_warn("shutdown: %zu connection(s) still open after %llu ms, closing them", srv->nconns,
                (unsigned long long)srv->limits.shutdown_ms);
    mw_server_force_close(srv);
}

void mw_server_shutdown(struct mw_server *srv)
{
    if (srv->shutting_down) return;
    srv->shutting_down = 1;
    if (srv->listening) {
        srv->listening = 0;
        uv_close((uv_handle_t *)&srv->listener, NULL);
    }
    /* Idle keep-alive connections go now; busy ones end after their reply.
     * WebSockets (no request either) get their closing handshake below. */
    struct mw_conn *next;
    for (struct mw_conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (!c->req && !c->ws && c->state == MW_CONN_OPEN) mw_conn_end(c);
    }
    /* SSE streams end (their clients reconnect elsewhere and resume from
     * Last-Event-ID); parked long polls answer with what they have */
    mw_stream_close_all(srv);
    mw_lua_hub_wake_all();
    mw_lua_ws_close_all(1001); /* going away */
    mw_vm_shutdown(srv->vm);
    mw_server_sweep(srv);
    if (srv->nconns == 0) {
        if (srv->on_stopped) srv->on_stopped(srv);
        return;
    }
    uv_ref((uv_handle_t *)&srv->shutdown_timer);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timeout, srv->limits.shutdown_ms, 0);
}

void mw_server_force_close(struct mw_server *srv)
{
    srv->shutdown_forced = 1;
    while (srv->conns) mw_conn_close(srv->conns, "server shutdown");
    mw_server_sweep(srv);
}

void mw_server_close(struct mw_server *srv)
{
    if (srv->listening) {
        srv->listening = 0;
        uv_close((uv_handle_t *)&srv->listener, NULL);
    }
    uv_close((uv_handle_t *)&srv->prepare, NULL);
    uv_close((uv_handle_t *)&srv->check, NULL);
    uv_close((uv_handle_t *)&srv->more, NULL);
    uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
}
