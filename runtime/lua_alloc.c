/* lua_alloc.c - size-class free lists for the Lua state's small blocks.
 *
 * Blocks up to MW_SMALL_MAX bytes are carved from 64 KiB slabs in 16-byte
 * classes and, once freed, kept on their class's list for the next request
 * of that size. Slabs are never returned while the state lives: the pool
 * holds the peak of small-object use, which a server reaches and stays at.
 * Larger blocks go to realloc. One Lua state per thread, so the lists are
 * thread-local and lock-free. */
#include "lua_alloc.h"
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define MW_SMALL_MAX   512
#define MW_CLASS_BYTES 16
#define MW_NCLASSES    (MW_SMALL_MAX / MW_CLASS_BYTES)
#define MW_SLAB_BYTES  65536

struct slab {
    struct slab *next;
    size_t used;
    _Alignas(16) char mem[MW_SLAB_BYTES];
};

struct free_block {
    struct free_block *next;
};

#ifndef MW_DEBUG
static _Thread_local struct free_block *lists[MW_NCLASSES];
static _Thread_local struct slab *slabs;
static _Thread_local struct mw_lua_alloc_stats stats;

static size_t class_of(size_t size)
{
    return (size + MW_CLASS_BYTES - 1) / MW_CLASS_BYTES - 1;
}

static void *small_alloc(size_t cls)
{
    struct free_block *b = lists[cls];
    if (b) {
        lists[cls] = b->next;
        return b;
    }
    size_t bytes = (cls + 1) * MW_CLASS_BYTES;
    if (!slabs || MW_SLAB_BYTES - slabs->used < bytes) {
        /* the tail of the old slab goes to the lists it fits */
        if (slabs) {
            size_t left = MW_SLAB_BYTES - slabs->used;
            if (left >= MW_CLASS_BYTES) {
                size_t c = left / MW_CLASS_BYTES - 1;
                struct free_block *tail = (struct free_block *)(slabs->mem + slabs->used);
                tail->next = lists[c];
                lists[c] = tail;
                slabs->used = MW_SLAB_BYTES;
            }
        }
        struct slab *s = mw_xmalloc(sizeof *s);
        s->next = slabs;
        s->used = 0;
        slabs = s;
        stats.slab_bytes += sizeof *s;
    }
    void *p = slabs->mem + slabs->used;
    slabs->used += bytes;
    return p;
}

static void small_free(void *p, size_t cls)
{
    struct free_block *b = p;
    b->next = lists[cls];
    lists[cls] = b;
}
#else
static _Thread_local struct free_block *lists[MW_NCLASSES];
static _Thread_local struct slab *slabs;
static _Thread_local struct mw_lua_alloc_stats stats;
#endif

#ifndef MW_DEBUG
/* Everything but a small block taken from or given back to its list. */
__attribute__((noinline)) static void *alloc_rest(void *ptr, size_t osize, size_t nsize)
{
    /* with ptr == NULL, osize is a type tag, not a size */
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        stats.in_use_bytes -= old;
        free(ptr); /* a large block: small ones never get here */
        return NULL;
    }
    if (ptr && old > MW_SMALL_MAX && nsize > MW_SMALL_MAX) {
        void *q = realloc(ptr, nsize);
        if (q) stats.in_use_bytes += nsize - old;
        return q;
    }
    if (ptr && old && nsize <= MW_SMALL_MAX && old <= MW_SMALL_MAX &&
        class_of(old) == class_of(nsize)) {
        stats.in_use_bytes += nsize - old;
        return ptr;
    }
    void *q = nsize <= MW_SMALL_MAX ? small_alloc(class_of(nsize)) : malloc(nsize);
    if (!q) return NULL;
    if (ptr) {
        memcpy(q, ptr, old < nsize ? old : nsize);
        if (old <= MW_SMALL_MAX)
            small_free(ptr, class_of(old));
        else
            free(ptr);
    }
    stats.in_use_bytes += nsize - old;
    return q;
}
#endif

void *mw_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
#ifdef MW_DEBUG
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
#else
    /* the common cases first, with no call: freeing a small block (or
     * nothing), and a new small block from its list */
    if (nsize == 0) {
        if (!ptr) return NULL;
        if (osize <= MW_SMALL_MAX) {
            stats.in_use_bytes -= osize;
            small_free(ptr, class_of(osize));
            return NULL;
        }
    } else if (!ptr && nsize <= MW_SMALL_MAX) {
        struct free_block **list = &lists[class_of(nsize)];
        struct free_block *b = *list;
        if (b) {
            *list = b->next;
            stats.in_use_bytes += nsize;
            return b;
        }
    }
    return alloc_rest(ptr, osize, nsize);
#endif
}

void mw_lua_alloc_release(void)
{
    while (slabs) {
        struct slab *s = slabs;
        slabs = s->next;
        free(s);
    }
    memset(lists, 0, sizeof lists);
    stats.slab_bytes = 0;
    stats.in_use_bytes = 0;
}

void mw_lua_alloc_stats(struct mw_lua_alloc_stats *out)
{
    *out = stats;
}
