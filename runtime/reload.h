/* reload.h - hot reload: a recursive inotify watch on the app's folder
 * (--reload), SIGHUP, and the swap itself with its timing and live-reload
 * notices to browsers. */
#ifndef MW_RELOAD_H
#define MW_RELOAD_H

#include <uv.h>

struct mw_vm;
struct mw_server;

/* Reloads the app now (SIGHUP, or a debounced file change). Logs the
 * outcome; browsers in --reload mode are told to reload or shown the
 * error. `since_ms` is the loop time of the change that caused it (0:
 * none). Returns 0 on success. */
int mw_reload_now(struct mw_vm *vm, struct mw_server *srv, uint64_t since_ms);
/* Starts watching the app's folder and every folder under it. */
int mw_reload_watch(struct mw_vm *vm, struct mw_server *srv);
/* Stops watching (shutdown). */
void mw_reload_close(void);

#endif
