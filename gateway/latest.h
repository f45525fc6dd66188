/* latest.h - the newest version of a read-mostly object (the token set,
 * and whatever else SIGHUP reloads), handed from the thread that builds it
 * (main) to the one thread that reads it (the HTTP thread).
 *
 * The reader takes no lock and never sees a half-built object: an object
 * is complete before it is put, and the reader takes it whole between two
 * uses (one atomic exchange), then frees the one it had.  A version put
 * and replaced before the reader took it is freed by the putter.
 *
 * gw_latest_put: one thread at a time (main).  gw_latest_get: the reading
 * thread only.  init/destroy: while neither runs. */
#ifndef GW_LATEST_H
#define GW_LATEST_H

#include <stdatomic.h>

typedef void (*gw_latest_free_fn)(void *obj);

typedef struct {
    _Atomic(void *) next; /* put, not taken yet */
    void *cur;            /* the reader's */
    gw_latest_free_fn free_fn;
} gw_latest_t;

/* first (may be NULL) is the reader's from the start; ownership taken. */
void gw_latest_init(gw_latest_t *l, void *first, gw_latest_free_fn free_fn);
/* Publishes obj (ownership taken; NULL is ignored). */
void gw_latest_put(gw_latest_t *l, void *obj);
/* The newest version: takes a put one if there is, freeing the one it
 * replaces.  Valid until the next gw_latest_get on this thread. */
void *gw_latest_get(gw_latest_t *l);
/* Frees what it holds. */
void gw_latest_destroy(gw_latest_t *l);

#endif
