/* mailbox.h - the hand-over of calls from the HTTP thread to the AMQP
 * thread: a locked list plus an eventfd that wakes the AMQP thread when the
 * list turns non-empty (one wake-up per batch, as h2o's multithread queue
 * and libuv's async handle do).  The wake-up waits for gw_mailbox_flush,
 * which the producer calls once it has put what it has (before it
 * sleeps): a turn of the HTTP loop that starts many calls wakes the
 * consumer once, not once per call it catches with an empty list.
 *
 * gw_mailbox_put, gw_mailbox_flush and gw_mailbox_wake may be called from
 * any thread; the other functions belong to the one consuming thread.  Once the
 * consumer closes it (it exits), a put fails instead of leaving the call to
 * nobody. */
#ifndef GW_MAILBOX_H
#define GW_MAILBOX_H

#include "call.h"

typedef struct gw_mailbox gw_mailbox_t;

/* Returns an empty mailbox, or NULL (errno set) on failure. */
gw_mailbox_t *gw_mailbox_new(void);
/* Frees the mailbox; calls still in it are not touched.  NULL is a no-op. */
void gw_mailbox_free(gw_mailbox_t *mb);

/* Appends call (linked through call->next, which the mailbox owns until
 * the call is taken).  Returns 0, or -1 when the mailbox is closed (the
 * consumer is gone): the call is not taken, it stays the caller's.  The
 * consumer may not see it before the next gw_mailbox_flush. */
int gw_mailbox_put(gw_mailbox_t *mb, gw_call_t *call);
/* Wakes the consumer if a put since the last flush found the list empty
 * (else it is awake, or woken already, for what the list holds). */
void gw_mailbox_flush(gw_mailbox_t *mb);
/* Wakes the consumer even when the list is empty (to look at a flag). */
void gw_mailbox_wake(gw_mailbox_t *mb);

/* Takes every call, in the order they were put, as a list through ->next;
 * NULL when empty. */
gw_call_t *gw_mailbox_take_all(gw_mailbox_t *mb);
/* Closes the mailbox for good (the consumer stops reading it): later
 * puts fail.  Returns the calls still in it, as gw_mailbox_take_all. */
gw_call_t *gw_mailbox_close(gw_mailbox_t *mb);
/* Whether the list is empty right now. */
int gw_mailbox_empty(gw_mailbox_t *mb);
/* The descriptor to poll for POLLIN, and the call that resets it. */
int gw_mailbox_fd(const gw_mailbox_t *mb);
void gw_mailbox_clear(gw_mailbox_t *mb);

#endif
