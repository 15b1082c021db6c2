/* lua_alloc.h - the Lua state's allocator: size-class free lists for small
 * blocks in front of malloc. Requests churn through small objects (tables,
 * userdata, closures, strings); recycling them by size skips malloc's
 * bookkeeping. Sanitizer builds use plain realloc so ASan sees every block. */
#ifndef MW_LUA_ALLOC_H
#define MW_LUA_ALLOC_H

#include <stddef.h>

struct mw_lua_alloc_stats {
    size_t in_use_bytes;   /* bytes Lua holds right now */
    size_t slab_bytes;     /* bytes taken from malloc for small blocks */
};

/* A lua_Alloc: pass NULL as its ud. */
void *mw_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Returns every slab to malloc; only after the last lua_close. */
void mw_lua_alloc_release(void);
void mw_lua_alloc_stats(struct mw_lua_alloc_stats *out);

#endif
