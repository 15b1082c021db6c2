/* lua_req.h - the Lua `req` and `res` handles of an HTTP request, and the
 * two hooks the HTTP layer calls: start the app's handler, and tell a
 * parked coroutine that what it waits for changed. */
#ifndef MW_LUA_REQ_H
#define MW_LUA_REQ_H

#include <lua.h>

struct mw_req;

/* Starts the app's dispatcher for req in a new coroutine. Must not be
 * called from inside a Lua resume. */
void mw_lua_req_dispatch(struct mw_req *req);
/* Wakes req->waiter if its wait is satisfied, or with `closed` if the
 * client left. Queues the wake; never resumes directly. */
void mw_lua_req_notify(struct mw_req *req);
/* The request behind the `res` handle at idx; raises if it is over. */
struct mw_req *mw_lua_check_res(lua_State *L, int idx);
/* Registers the req and res metatables. */
void mw_lua_open_req(lua_State *L);

#endif
