/* lua_vm.h - the worker's Lua state: package paths, loading the app, and
 * the coroutines every handler, timer callback and event runs in. All
 * resumes go through here (STYLE.md section 5): a wake requested while Lua
 * runs is queued and runs from the end-of-turn sweep, never nested. */
#ifndef MW_LUA_VM_H
#define MW_LUA_VM_H

#include <lua.h>

struct mw_server;
struct mw_co;

/* Called once when a coroutine ends. `err` is NULL on success, else the
 * error with a traceback (already logged unless the callback logs it). */
typedef void (*mw_co_done_cb)(struct mw_co *co, const char *err, void *ud);
/* Undoes a wait's registration when its coroutine is woken otherwise. */
typedef void (*mw_co_cancel_cb)(struct mw_co *co);

struct mw_co {
    struct mw_vm *vm;
    lua_State *T;            /* the thread */
    int ref;                 /* registry anchor of T */
    mw_co_done_cb on_done;
    void *ud;
    const char *what;        /* "handler", "timer": for logs */
    int nargs;               /* values pushed for the queued resume */
    unsigned queued : 1;     /* in the ready queue */
    unsigned waiting : 1;    /* yielded through mw_co_wait */
    mw_co_cancel_cb cancel;  /* the current wait's undo, if any */
    void *wait_obj;          /* what it waits on (for cancel) */
    int (*then)(lua_State *L, void *obj); /* builds the results when resumed */
    struct mw_req *req;      /* the request whose handler this is, if any */
    int version;             /* the app version whose code it runs */
    struct mw_co *ready_next;
    struct mw_co *live_prev, *live_next;
};

struct mw_vm {
    lua_State *L;
    struct mw_server *srv;
    char *app_path;          /* as given on the command line */
    char *app_dir;           /* its folder: first on package.path */
    int app_ref;             /* the app table returned by the script */
    int dispatch_ref;        /* the app's request entry point */
    int depth;               /* resumes on the C stack */
    struct mw_co *ready_head, *ready_tail;
    struct mw_co *live;      /* coroutines not yet finished */
    long live_refs;          /* registry refs taken through mw_lua_ref */
    int dev_mode;            /* --reload */
    int closing;             /* mw_vm_free is running: pool nothing */
    int version;             /* the app version serving new requests (1, 2, ...) */
    int loading_version;     /* the version being loaded, 0 when none */
};

struct mw_vm *mw_vm_new(const char *app_path, int dev_mode);
/* Loads the app script as a new version and, if it loads, makes it the
 * one serving new requests; what the old version started (timers, channel
 * options) stops. If it fails, nothing changes: the old version serves
 * on. Modules required from the app's folder load afresh each time.
 * Returns 0, or -1 with a one-line message (file:line: reason) in *err,
 * static until the next call. */
int mw_vm_load_app(struct mw_vm *vm, const char **err);
/* The app version the code running in L belongs to. */
int mw_vm_version_of(lua_State *L);
/* Applies the app's options (mw.app{...}) to srv's limits. */
void mw_vm_apply_limits(struct mw_vm *vm, struct mw_server *srv);
/* Stops what the app started (timers): the server is shutting down. */
void mw_vm_shutdown(struct mw_vm *vm);
/* Closes the Lua state. Returns the number of registry refs still held
 * (0 when nothing leaked). */
long mw_vm_free(struct mw_vm *vm);
struct mw_vm *mw_vm_of(lua_State *L);

/* Creates a coroutine. Push the function and its arguments on co->T, then
 * call mw_co_start. */
struct mw_co *mw_co_new(struct mw_vm *vm, const char *what, mw_co_done_cb on_done, void *ud);
void mw_co_start(struct mw_co *co, int nargs);
/* Queues a resume of a waiting coroutine with the nargs values the caller
 * pushed on co->T. */
void mw_co_wake(struct mw_co *co, int nargs);
/* Queues a resume that makes the waiting call raise `closed`. */
void mw_co_wake_closed(struct mw_co *co);
/* Queues a resume that makes the waiting call raise the value on top of
 * the caller's co->T stack. */
void mw_co_wake_error(struct mw_co *co);
/* For bindings: park the running coroutine. `return mw_co_wait(L, ...)`.
 * Raises if L is not a coroutine of ours or cannot yield. */
int mw_co_wait(lua_State *L, mw_co_cancel_cb cancel, void *obj);
/* Like mw_co_wait, but when resumed normally (not raised into) calls
 * then(L, obj), which pushes and returns the results. */
int mw_co_wait_then(lua_State *L, mw_co_cancel_cb cancel, void *obj,
                    int (*then)(lua_State *L, void *obj));
/* The coroutine L belongs to, or NULL (main thread, user coroutines). */
struct mw_co *mw_co_current(lua_State *L);
/* Runs queued wakes until none are left. No-op inside a resume. */
void mw_vm_drain(struct mw_vm *vm);

/* Counted registry references (tests assert zero at exit). */
int mw_lua_ref(lua_State *L);
void mw_lua_unref(lua_State *L, int ref);

/* Pushes the `closed` error value (tostring: "closed"). */
void mw_lua_push_closed(lua_State *L);
int mw_lua_is_closed(lua_State *L, int idx);

#endif
