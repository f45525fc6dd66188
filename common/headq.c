/* headq.c - a FIFO of equal-timeout deadlines. */
#include "headq.h"

#include <stddef.h>

void cm_headq_push(cm_headq_t *q, cm_headq_node_t *n, int64_t due_ms) {
    if (n->queued)
        return;
    if (q->last != NULL && due_ms < q->last->due_ms)
        due_ms = q->last->due_ms; /* keep the order the queue relies on */
    n->due_ms = due_ms;
    n->next = NULL;
    n->prev = q->last;
    if (q->last != NULL)
        q->last->next = n;
    else
        q->first = n;
    q->last = n;
    n->queued = 1;
}

void cm_headq_remove(cm_headq_t *q, cm_headq_node_t *n) {
    if (!n->queued)
        return;
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        q->first = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        q->last = n->prev;
    n->prev = n->next = NULL;
    n->queued = 0;
}

cm_headq_node_t *cm_headq_pop_due(cm_headq_t *q, int64_t now) {
    cm_headq_node_t *n = q->first;

    if (n == NULL || n->due_ms > now)
        return NULL;
    cm_headq_remove(q, n);
    return n;
}

int64_t cm_headq_next_due(const cm_headq_t *q) {
    return q->first != NULL ? q->first->due_ms : INT64_MAX;
}
