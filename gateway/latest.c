/* latest.c - hand-over of the newest version of an object (latest.h).
 * Atomics only. */
#include "latest.h"

#include <stddef.h>

void gw_latest_init(gw_latest_t *l, void *first, gw_latest_free_fn free_fn) {
    atomic_init(&l->next, NULL);
    l->cur = first;
    l->free_fn = free_fn;
}

void gw_latest_put(gw_latest_t *l, void *obj) {
    void *unread;

    if (obj == NULL)
        return;
    /* seq_cst: obj's contents are visible to whoever takes the pointer. */
    unread = atomic_exchange(&l->next, obj);
    if (unread != NULL) /* the reader never saw it */
        l->free_fn(unread);
}

void *gw_latest_get(gw_latest_t *l) {
    void *fresh;

    if (atomic_load_explicit(&l->next, memory_order_relaxed) == NULL)
        return l->cur;
    fresh = atomic_exchange(&l->next, NULL);
    if (fresh != NULL) {
        if (l->cur != NULL)
            l->free_fn(l->cur);
        l->cur = fresh;
    }
    return l->cur;
}

void gw_latest_destroy(gw_latest_t *l) {
    void *unread = atomic_exchange(&l->next, NULL);

    if (unread != NULL)
        l->free_fn(unread);
    if (l->cur != NULL)
        l->free_fn(l->cur);
    l->cur = NULL;
}
