/* cell.h - the small shared cell between a C object and the Lua userdata
 * that refer to it (STYLE.md section 3). Closing the C object empties the
 * cell; bindings then see NULL and raise or return false as documented. */
#ifndef MW_CELL_H
#define MW_CELL_H

#include <stdlib.h>

#include "buf.h"

enum mw_cell_end {
    MW_CELL_LIVE = 0,
    MW_CELL_DONE,  /* the object finished normally (response sent) */
    MW_CELL_GONE   /* the peer went away first */
};

struct mw_cell {
    void *obj; /* NULL once the C object is gone */
    int refs;  /* C owner + each userdata; freed at zero */
    int end;   /* why obj is NULL (enum mw_cell_end) */
};

static inline struct mw_cell *mw_cell_new(void *obj)
{
    struct mw_cell *c = mw_xmalloc(sizeof *c);
    c->obj = obj;
    c->refs = 1;
    c->end = MW_CELL_LIVE;
    return c;
}

static inline void mw_cell_ref(struct mw_cell *c)
{
    c->refs++;
}

static inline void mw_cell_unref(struct mw_cell *c)
{
    if (--c->refs == 0) free(c);
}

/* Empties the cell and drops the C owner's reference. */
static inline void mw_cell_clear(struct mw_cell *c, int end)
{
    c->obj = NULL;
    c->end = end;
    mw_cell_unref(c);
}

#endif
