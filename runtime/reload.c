/* reload.c - file watching and the reload swap.
 *
 * Linux inotify is not recursive: every folder under the app's gets its
 * own watch, folders created later are added as they appear (and scanned,
 * since files may land in them before the watch does), removed ones drop
 * out. An editor's save is a burst (write a temp file, rename it over the
 * old one); events are debounced into one reload. Only .lua files reload
 * the app; any other file (HTML, CSS, JS) only reloads the browsers. */
#include "reload.h"
#include "buf.h"
#include "hub.h"
#include "log.h"
#include "lua_vm.h"
#include "server.h"
#include "utf8.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <unistd.h>

#define MW_RELOAD_QUIET_MS 15 /* a save's burst is over after this much quiet */
#define MW_RELOAD_MAX_WAIT_MS 80 /* ... or this long after its first event */
#define MW_LIVERELOAD_CHANNEL "moonwire:livereload"

struct watched {
    int wd;
    char *path;
};

static struct {
    struct mw_vm *vm;
    struct mw_server *srv;
    int fd;
    uv_poll_t poll;
    uv_timer_t debounce;
    int open;
    struct watched *dirs;
    size_t ndirs, cap;
    uint64_t first_ms;   /* first event of the current burst, 0 if none */
    int lua_changed;     /* the burst touched a .lua file */
    char last_file[256]; /* for the log */
} w;

/* ------------------------------------------------------------- live reload */

static void tell_browsers(const char *event, const char *data)
{
    struct mw_channel *ch = mw_hub_channel(MW_LIVERELOAD_CHANNEL, sizeof MW_LIVERELOAD_CHANNEL - 1, 1);
    /* the data is "event\ntext": the livereload stream splits it */
    struct mw_buf b;
    mw_buf_init(&b);
    mw_buf_appends(&b, event);
    mw_buf_appendc(&b, '\n');
    mw_buf_appends(&b, data ? data : "");
    /* hub text must be UTF-8; an error message that is not gets '?' for
     * every non-ASCII byte */
    if (!mw_utf8_valid(b.data, b.len))
        for (size_t i = 0; i < b.len; i++)
            if ((unsigned char)b.data[i] >= 0x80) b.data[i] = '?';
    mw_channel_ref(ch);
    mw_channel_set_history(ch, 0); /* a page that loads later needs no old notices */
    mw_hub_publish(ch, b.data, b.len, MW_MSG_TEXT);
    mw_channel_unref(ch);
    mw_buf_free(&b);
}

int mw_reload_now(struct mw_vm *vm, struct mw_server *srv, uint64_t since_ms)
{
    uint64_t t0 = uv_hrtime();
    const char *err;
    int rc = mw_vm_load_app(vm, &err);
    double took_ms = (double)(uv_hrtime() - t0) / 1e6;
    uv_update_time(srv->loop);
    double after_ms = since_ms ? (double)(uv_now(srv->loop) - since_ms) : took_ms;
    if (rc == 0) {
        mw_vm_apply_limits(vm, srv);
        mw_log_info("reloaded %s (version %d) in %.1f ms, %.1f ms after the change", vm->app_path,
                    vm->version, took_ms, after_ms);
        if (vm->dev_mode) tell_browsers("reload", "");
    } else {
        mw_log_error("reload failed, the previous version keeps serving: %s", err);
        if (vm->dev_mode) tell_browsers("loaderror", err);
    }
    mw_server_sweep(srv);
    return rc;
}

/* -------------------------------------------------------------- watching */

static int ignored_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || name[0] == '.' || name[0] == '#') return 1;        /* dotfiles, emacs locks */
    if (name[n - 1] == '~') return 1;                                  /* backups */
    if (n > 4 && (strcmp(name + n - 4, ".swp") == 0 || strcmp(name + n - 4, ".swx") == 0)) return 1;
    if (strcmp(name, "4913") == 0) return 1;                           /* vim's write test */
    return strcmp(name, "node_modules") == 0;
}

/* Files whose change reloads pages (a .lua one reloads the app first);
 * anything else under the folder (logs, databases) is left alone. */
static int watched_file(const char *name)
{
    static const char *const exts[] = {"lua", "html", "htm", "css", "js", "mjs", "json", "svg",
                                       "png", "jpg", "jpeg", "gif", "webp", "ico", "woff", "woff2",
                                       "txt", "md", NULL};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (int i = 0; exts[i]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
    return 0;
}

static void add_dir(const char *path);

static void scan_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (ignored_name(e->d_name)) continue;
        if (e->d_type == DT_DIR) {
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            add_dir(sub);
        }
    }
    closedir(d);
}

static void add_dir(const char *path)
{
    int wd = inotify_add_watch(w.fd, path,
                               IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                   IN_MOVED_FROM | IN_DELETE_SELF | IN_ONLYDIR);
    if (wd < 0) {
        mw_log_warn("reload: cannot watch %s: %s", path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < w.ndirs; i++)
        if (w.dirs[i].wd == wd) return; /* already watched */
    if (w.ndirs == w.cap) {
        w.cap = w.cap ? w.cap * 2 : 16;
        w.dirs = mw_xrealloc(w.dirs, w.cap * sizeof *w.dirs);
    }
    w.dirs[w.ndirs].wd = wd;
    w.dirs[w.ndirs].path = mw_xstrndup(path, strlen(path));
    w.ndirs++;
    scan_dir(path);
}

static const char *dir_of(int wd)
{
    for (size_t i = 0; i < w.ndirs; i++)
        if (w.dirs[i].wd == wd) return w.dirs[i].path;
    return NULL;
}

static void drop_dir(int wd)
{
    for (size_t i = 0; i < w.ndirs; i++) {
        if (w.dirs[i].wd != wd) continue;
        free(w.dirs[i].path);
        w.dirs[i] = w.dirs[--w.ndirs];
        return;
    }
}

static void on_debounce(uv_timer_t *t)
{
    uint64_t since = w.first_ms;
    int lua = w.lua_changed;
    w.first_ms = 0;
    w.lua_changed = 0;
    if (lua) {
        mw_log_info("reload: %s changed", w.last_file);
        mw_reload_now(w.vm, w.srv, since);
    } else {
        mw_log_info("reload: %s changed; reloading browsers", w.last_file);
        tell_browsers("reload", "");
        mw_server_sweep(w.srv);
    }
}

static void on_inotify(uv_poll_t *p, int status, int events)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int relevant = 0;
    for (;;) {
        ssize_t n = read(w.fd, buf, sizeof buf);
        if (n <= 0) break;
        for (char *ptr = buf; ptr < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)ptr;
            ptr += sizeof *ev + ev->len;
            if (ev->mask & (IN_DELETE_SELF | IN_IGNORED)) {
                drop_dir(ev->wd);
                continue;
            }
            if (!ev->len || ignored_name(ev->name)) continue;
            const char *dir = dir_of(ev->wd);
            if (!dir) continue;
            if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
                char sub[PATH_MAX];
                snprintf(sub, sizeof sub, "%s/%s", dir, ev->name);
                add_dir(sub); /* a new folder: watched, and what is in it counts */
                relevant = 1;
                w.lua_changed = 1;
                continue;
            }
            if (ev->mask & IN_ISDIR) continue;
            if (!watched_file(ev->name)) continue;
            size_t len = strlen(ev->name);
            if (len > 4 && strcmp(ev->name + len - 4, ".lua") == 0) w.lua_changed = 1;
            snprintf(w.last_file, sizeof w.last_file, "%s", ev->name);
            relevant = 1;
        }
    }
    if (!relevant) return;
    uv_update_time(w.srv->loop);
    uint64_t now = uv_now(w.srv->loop);
    if (!w.first_ms) w.first_ms = now;
    /* wait for quiet, but never long after the first event */
    uint64_t wait = MW_RELOAD_QUIET_MS;
    if (now + wait > w.first_ms + MW_RELOAD_MAX_WAIT_MS)
        wait = w.first_ms + MW_RELOAD_MAX_WAIT_MS > now ? w.first_ms + MW_RELOAD_MAX_WAIT_MS - now : 0;
    uv_timer_start(&w.debounce, on_debounce, wait, 0);
}

int mw_reload_watch(struct mw_vm *vm, struct mw_server *srv)
{
    w.vm = vm;
    w.srv = srv;
    w.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w.fd < 0) return -errno;
    add_dir(vm->app_dir);
    uv_poll_init(srv->loop, &w.poll, w.fd);
    uv_poll_start(&w.poll, UV_READABLE, on_inotify);
    uv_unref((uv_handle_t *)&w.poll);
    uv_timer_init(srv->loop, &w.debounce);
    uv_unref((uv_handle_t *)&w.debounce);
    w.open = 1;
    mw_log_info("reload: watching %s (%zu folder(s))", vm->app_dir, w.ndirs);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    close(w.fd);
    w.fd = -1;
}

void mw_reload_close(void)
{
    if (!w.open) return;
    w.open = 0;
    uv_close((uv_handle_t *)&w.poll, on_poll_closed);
    uv_close((uv_handle_t *)&w.debounce, NULL);
    for (size_t i = 0; i < w.ndirs; i++) free(w.dirs[i].path);
    free(w.dirs);
    w.dirs = NULL;
    w.ndirs = w.cap = 0;
}
