/* lua_sse.h - res:sse() and the Lua `stream` object. */
#ifndef MW_LUA_SSE_H
#define MW_LUA_SSE_H

#include <lua.h>

struct mw_stream;

/* The stream closed (client left, close() called, shutdown): runs its
 * on_close callbacks in a coroutine and releases the Lua anchor. */
void mw_lua_stream_closed(struct mw_stream *s);
/* Adds res:sse to the res methods and registers the stream metatable. */
void mw_lua_open_sse(lua_State *L);

#endif
