/* main.c - the command line, signals and exit codes; nothing else.
 * Exit status: 0 after a clean shutdown, 1 when the app fails to load or
 * the server cannot start, 2 for a usage error. */
#include "deadline.h"
#include "deflate.h"
#include "http.h"
#include "hub.h"
#include "stream.h"
#include "log.h"
#include "reload.h"
#include "lua_vm.h"
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static const char usage[] =
    "usage: moonwire [options] APP.lua\n"
    "\n"
    "Runs a moonwire app: a Lua script that returns an app made with mw.app().\n"
    "\n"
    "options:\n"
    "  -l, --listen HOST:PORT  where to listen (default 127.0.0.1:8080;\n"
    "                          [::1]:PORT for IPv6, port 0 picks a free one)\n"
    "      --reload            development mode: show error details in 500 pages\n"
    "                          and reload the app when its files change\n"
    "      --check             load the app, report errors with file:line, exit 0 or 1\n"
    "      --log-level LEVEL   debug, info (default), warn or error\n"
    "  -v, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "\n"
    "signals: SIGINT/SIGTERM shut down gracefully (a second one forces it);\n"
    "SIGHUP reloads the app.\n"
    "exit status: 0 after a clean shutdown, 1 if the app fails to load or the\n"
    "server cannot start, 2 for a usage error.\n";

struct options {
    const char *app;
    char host[64];
    int port;
    int reload;
    int check;
};

static struct mw_server server;
static uv_signal_t sig_int, sig_term, sig_hup;
static int signals_open;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "moonwire: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'moonwire --help' for more information.\n");
    return 2;
}

/* "HOST:PORT", "[v6]:PORT", ":PORT", "localhost:PORT" */
static int parse_listen(const char *s, struct options *o)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof o->host) return -1;
        memcpy(o->host, s + 1, n);
        o->host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -1;
        size_t n = (size_t)(colon - s);
        if (n >= sizeof o->host) return -1;
        memcpy(o->host, s, n);
        o->host[n] = '\0';
        if (n == 0) strcpy(o->host, "0.0.0.0");
        if (strcmp(o->host, "localhost") == 0) strcpy(o->host, "127.0.0.1");
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535) return -1;
    o->port = (int)port;
    return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    strcpy(o->host, "127.0.0.1");
    o->port = 8080;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            printf("moonwire %s (Lua %s.%s, libuv %s)\n", MW_VERSION, LUA_VERSION_MAJOR,
                   LUA_VERSION_MINOR, uv_version_string());
            exit(0);
        } else if (strcmp(a, "-l") == 0 || strcmp(a, "--listen") == 0) {
            if (++i >= argc) return usage_error("%s needs HOST:PORT", a);
            if (parse_listen(argv[i], o)) return usage_error("bad listen address '%s' (want HOST:PORT)", argv[i]);
        } else if (strncmp(a, "--listen=", 9) == 0) {
            if (parse_listen(a + 9, o)) return usage_error("bad listen address '%s' (want HOST:PORT)", a + 9);
        } else if (strcmp(a, "--reload") == 0) {
            o->reload = 1;
        } else if (strcmp(a, "--check") == 0) {
            o->check = 1;
        } else if (strcmp(a, "--log-level") == 0) {
            static const char *names[] = {"debug", "info", "warn", "error"};
            if (++i >= argc) return usage_error("%s needs a level", a);
            int found = 0;
            for (int l = 0; l < 4; l++)
                if (strcmp(argv[i], names[l]) == 0) {
                    mw_log_set_level((enum mw_log_level)l);
                    found = 1;
                }
            if (!found) return usage_error("unknown log level '%s'", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option '%s'", a);
        } else if (o->app) {
            return usage_error("more than one app given ('%s')", a);
        } else {
            o->app = a;
        }
    }
    if (!o->app) return usage_error("%s", "no app given: moonwire [options] APP.lua");
    return 0;
}

static void close_signals(void)
{
    if (!signals_open) return;
    signals_open = 0;
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
}

static void on_stopped(struct mw_server *srv)
{
    mw_reload_close();
    /* The last connection can close inside mw_server_shutdown's own sweep,
     * which then finds none left and reports again. */
    static int stopped;
    if (stopped) return;
    stopped = 1;
    close_signals();
    mw_server_close(srv);
    /* A handler whose connection is gone may still wait (mw.sleep, a
     * forced shutdown); its timer would keep the loop, and the exit, for
     * as long as it sleeps. Stop here: mw_vm_free cancels such waits. */
    uv_stop(srv->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        mw_log_info("SIGHUP: reloading the app");
        mw_reload_now(server.vm, &server, 0);
        return;
    }
    if (server.shutting_down) {
        mw_log_info("second signal: closing every connection now");
        mw_server_force_close(&server);
        return;
    }
    mw_log_info("%s: shutting down (finishing %zu connection(s))",
                signum == SIGINT ? "SIGINT" : "SIGTERM", server.nconns);
    mw_server_shutdown(&server);
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    signal(SIGPIPE, SIG_IGN);

    if (access(o.app, R_OK) != 0) {
        fprintf(stderr, "moonwire: cannot read %s: %s\n", o.app, strerror(errno));
        return 1;
    }

    uv_loop_t *loop = uv_default_loop();
    struct mw_vm *vm = mw_vm_new(o.app, o.reload);
    mw_server_init(&server, loop, vm);
    vm->srv = &server;
    server.dev_mode = o.reload;
    server.on_stopped = on_stopped;

    const char *err;
    if (mw_vm_load_app(vm, &err) != 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        rc = 1;
        goto out;
    }
    mw_vm_apply_limits(vm, &server);
    if (o.check) {
        fprintf(stderr, "moonwire: %s: ok\n", o.app);
        goto out;
    }

    rc = mw_server_listen(&server, o.host, o.port);
    if (rc) {
        const char *hint = rc == UV_EADDRINUSE ? " (another server uses this port: pick another with -l HOST:PORT)"
                           : rc == UV_EACCES  ? " (ports below 1024 need privileges: pick another with -l HOST:PORT)"
                           : rc == UV_EINVAL  ? " (is HOST an IP address on this machine?)"
                                              : "";
        fprintf(stderr, "moonwire: cannot listen on %s:%d: %s%s\n", o.host, o.port,
                uv_strerror(rc), hint);
        rc = 1;
        goto out;
    }
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_hup);
    signals_open = 1;
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);
    if (o.reload && mw_reload_watch(vm, &server) != 0)
        mw_log_warn("--reload: cannot watch %s; SIGHUP still reloads", vm->app_dir);
    fprintf(stderr, "moonwire listening on %s\n", server.listen_url);

    uv_run(loop, UV_RUN_DEFAULT);
    rc = 0;
    mw_log_info("stopped");

out:
    close_signals();
    if (!server.shutting_down) mw_server_close(&server);
    mw_deadline_shutdown();
    long leaked = mw_vm_free(vm);
    mw_http_release_pool();
    mw_hub_free_all();
    mw_pmd_shutdown();
    uv_run(loop, UV_RUN_DEFAULT); /* close callbacks of what the VM released */
    int busy = uv_loop_close(loop);
#ifdef MW_DEBUG
    if (leaked || busy) {
        fprintf(stderr, "moonwire: leak check failed: %ld registry ref(s), loop %s\n", leaked,
                busy ? "still has handles" : "closed");
        return 3;
    }
#else
    (void)leaked;
    (void)busy;
#endif
    return rc;
}
