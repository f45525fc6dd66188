/* mailbox.c - calls handed from any thread to the AMQP thread: a LIFO
 * under a lock, reversed when taken, and an eventfd written (at the
 * producer's flush) only when a put found the list empty: the consumer
 * takes the whole list per wake-up. */
#include "mailbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct gw_mailbox {
    pthread_mutex_t lock;
    gw_call_t *head; /* newest first; guarded by lock */
    int closed;      /* guarded by lock */
    atomic_int owed; /* a put found the list empty: flush wakes */
    int fd;
};

gw_mailbox_t *gw_mailbox_new(void) {
    gw_mailbox_t *mb = calloc(1, sizeof(*mb));

    if (mb == NULL)
        return NULL;
    mb->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mb->fd < 0) {
        free(mb);
        return NULL;
    }
    pthread_mutex_init(&mb->lock, NULL);
    atomic_init(&mb->owed, 0);
    return mb;
}

void gw_mailbox_free(gw_mailbox_t *mb) {
    if (mb == NULL)
        return;
    close(mb->fd);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

void gw_mailbox_wake(gw_mailbox_t *mb) {
    uint64_t one = 1;

    (void)!write(mb->fd, &one, sizeof(one));
}

int gw_mailbox_put(gw_mailbox_t *mb, gw_call_t *call) {
    int was_empty;

    pthread_mutex_lock(&mb->lock);
    if (mb->closed) {
        pthread_mutex_unlock(&mb->lock);
        return -1;
    }
    was_empty = mb->head == NULL;
    call->next = mb->head;
    mb->head = call;
    pthread_mutex_unlock(&mb->lock);
    if (was_empty)
        atomic_store(&mb->owed, 1);
    return 0;
}

void gw_mailbox_flush(gw_mailbox_t *mb) {
    /* A take between the put and here makes this wake-up one too many:
     * the consumer finds the list empty, which is harmless. */
    if (atomic_load_explicit(&mb->owed, memory_order_relaxed) &&
        atomic_exchange(&mb->owed, 0))
        gw_mailbox_wake(mb);
}

static gw_call_t *take(gw_mailbox_t *mb, int close) {
    gw_call_t *list;

    pthread_mutex_lock(&mb->lock);
    list = mb->head;
    mb->head = NULL;
    if (close)
        mb->closed = 1;
    pthread_mutex_unlock(&mb->lock);
    return gw_calls_reverse(list); /* oldest first */
}

gw_call_t *gw_mailbox_take_all(gw_mailbox_t *mb) {
    return take(mb, 0);
}

gw_call_t *gw_mailbox_close(gw_mailbox_t *mb) {
    return take(mb, 1);
}

int gw_mailbox_empty(gw_mailbox_t *mb) {
    int empty;

    pthread_mutex_lock(&mb->lock);
    empty = mb->head == NULL;
    pthread_mutex_unlock(&mb->lock);
    return empty;
}

int gw_mailbox_fd(const gw_mailbox_t *mb) {
    return mb->fd;
}

void gw_mailbox_clear(gw_mailbox_t *mb) {
    uint64_t v;

    (void)!read(mb->fd, &v, sizeof(v));
}
