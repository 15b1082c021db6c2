/* lua_req.h - the Lua `req` and `res` handles of an HTTP request, and the
 * two hooks the HTTP layer calls: start the app's handler, and tell a
 * parked coroutine that what it waits for changed. */
#ifndef MW_LUA_REQ_H
#define MW_LUA_REQ_H

#include <lua.h>

struct mw_head;
struct mw_req;

/* Starts the app's dispatcher for req in a new coroutine. Must not be
 * called from inside a Lua resume. */
void mw_lua_req_dispatch(struct mw_req *req);
/* Wakes req->waiter if its wait is satisfied, or with `closed` if the
 * client left. Queues the wake; never resumes directly. */
void mw_lua_req_notify(struct mw_req *req);
/* The request behind the `res` handle at idx; raises if it is over. */
struct mw_req *mw_lua_check_res(lua_State *L, int idx);
/* A WebSocket keeps its request's head (head.h) while the exchange ends:
 * the req handle at idx reads `head` from now on. It stays reachable as
 * ws.req while anything refers to it, and is made again when asked for
 * after it was collected; one the app stored a field on (or `anchor`)
 * lives as long as the head. */
void mw_lua_req_keep(lua_State *L, int idx, struct mw_head *head, int anchor);
/* Pushes the req handle of a kept head. */
void mw_lua_req_push_kept(lua_State *L, struct mw_head *head);
/* The head goes away: its handle, if one lives, reads as finished and is
 * pushed (returns 1; 0 and nothing pushed when none lives). */
int mw_lua_req_drop_kept(lua_State *L, struct mw_head *head);
/* Pushes the route parameters the router stored on the req handle at idx
 * (returns 1), or nothing (0) when its route has none. */
int mw_lua_req_push_params(lua_State *L, int idx);
/* Pushes a req handle of a request that is over, with no fields. */
void mw_lua_req_push_finished(lua_State *L);
/* Registers the req and res metatables. */
void mw_lua_open_req(lua_State *L);

#endif
