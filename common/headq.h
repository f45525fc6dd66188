/* headq.h - the connections whose request head is due: a FIFO of deadlines.
 * Every head gets the same timeout, so deadlines arrive in order and the
 * earliest is always first: adding, removing and expiring are O(1), with
 * no allocation (the node lives in the connection), as h2o embeds its
 * timers in the objects they time.
 *
 * Pure (no I/O, no clock: the caller passes now).  One thread: the one
 * that runs the HTTP server (the gateway's HTTP thread, the worker's
 * metrics thread). */
#ifndef CM_HEADQ_H
#define CM_HEADQ_H

#include <stdint.h>

typedef struct cm_headq_node {
    struct cm_headq_node *prev, *next;
    int64_t due_ms;
    int queued;
} cm_headq_node_t;

typedef struct {
    cm_headq_node_t *first, *last;
} cm_headq_t;

/* Queues n (not queued yet) due at due_ms, which must not be earlier than
 * the last one queued; an earlier one is queued as due with the last. */
void cm_headq_push(cm_headq_t *q, cm_headq_node_t *n, int64_t due_ms);
/* Takes n out; a node that is not queued is left alone. */
void cm_headq_remove(cm_headq_t *q, cm_headq_node_t *n);
/* Takes out and returns the first node due at or before now, or NULL. */
cm_headq_node_t *cm_headq_pop_due(cm_headq_t *q, int64_t now);
/* The first deadline, or INT64_MAX when nothing is queued. */
int64_t cm_headq_next_due(const cm_headq_t *q);

#endif
