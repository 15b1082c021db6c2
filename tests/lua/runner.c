/* runner.c - runs a Lua test file on the runtime's own interpreter: the
 * same Lua state setup (package paths, moonwire.core, cjson) an app gets.
 * The file raises on failure; the loop then runs so timers can fire. */
#include "deadline.h"
#include "http.h"
#include "hub.h"
#include "lua_vm.h"
#include "server.h"

#include <lauxlib.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mw-luatest FILE.lua\n");
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    struct mw_vm *vm = mw_vm_new(argv[1], 0);
    struct mw_server srv;
    mw_server_init(&srv, loop, vm);
    vm->srv = &srv;
    int rc = 0;
    /* tests find t.lua beside themselves */
    luaL_dostring(vm->L, "package.path = package.path .. \";" TESTS_LUA_DIR "/?.lua\"");
    if (luaL_dofile(vm->L, argv[1]) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(vm->L, -1));
        rc = 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    mw_server_close(&srv);
    mw_deadline_shutdown();
    long leaked = mw_vm_free(vm);
    mw_http_release_pool();
    mw_hub_free_all();
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0 || leaked != 0) {
        fprintf(stderr, "leak check failed: %ld registry ref(s)\n", leaked);
        rc = 1;
    }
    return rc;
}
