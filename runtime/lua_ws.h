/* lua_ws.h - the Lua side of WebSocket: res:_ws_accept (the handshake the
 * app's ws route ends with), the `ws` object, and the event runner that
 * runs a socket's open/message/close/drain handlers one at a time. */
#ifndef MW_LUA_WS_H
#define MW_LUA_WS_H

#include <lua.h>

void mw_lua_open_ws(lua_State *L);
/* Closes every WebSocket with 1001 (graceful shutdown). */
void mw_lua_ws_close_all(int code);

#endif
