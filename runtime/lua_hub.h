/* lua_hub.h - mw.publish, mw.channel and the channel object (history and
 * long-poll waits). */
#ifndef MW_LUA_HUB_H
#define MW_LUA_HUB_H

#include <lua.h>

struct mw_channel;

/* A channel from argument idx: a channel object or a name. A name of a
 * channel that does not exist yet creates it, or gives NULL when !create
 * (unsubscribing must not make channels). Raises on anything else. */
struct mw_channel *mw_lua_check_channel(lua_State *L, int idx, int create);
/* Pushes a list of messages { {id=, data=, kind=}, ... } marked as array. */
void mw_lua_open_hub(lua_State *L);
/* Resets channel options set by an app version that is gone. */
void mw_lua_hub_forget_version(lua_State *L, int version);
/* Ends every parked ch:wait with what it has (shutdown). */
void mw_lua_hub_wake_all(void);
/* Frees what the hub bindings keep between calls (the state is closing). */
void mw_lua_hub_release(void);

struct mw_msg;
struct mw_buf;
/* If the table at idx is the list ch:wait or ch:history returned last,
 * its messages (*n of them, in the order they were listed), else NULL. */
struct mw_msg *const *mw_lua_hub_list_msgs(lua_State *L, int idx, size_t *n);
/* If the value at idx is still the table made for m (the metatable it
 * got, no keys but id, data and kind, holding m's values), appends what mw.json
 * would write for it, from m's cached encoding, and returns 1. Else
 * appends nothing and returns 0. */
int mw_lua_hub_encode_msg(lua_State *L, int idx, struct mw_msg *m, struct mw_buf *b);
/* A `since` argument or option at idx: -1 when nil, else an id >= 0
 * (anything else raises). Pops nothing. */
long long mw_lua_opt_since(lua_State *L, int idx);

#endif
