/* link.h - fib-worker's one AMQP connection: connect, log in, declare the
 * queue and consume; deliveries in, replies and acks out; close.  Only the
 * AMQP thread (main's) may call it: rabbitmq-c connections are not
 * thread-safe. */
#ifndef FW_LINK_H
#define FW_LINK_H

#include <amqp.h>

#include "amqp_content.h"
#include "config.h"
#include "urls.h"

#define FW_LINK_ERR_MAX 256

/* Owned by link.c: read it through the functions below. */
typedef struct {
    const fw_config_t *cfg;
    size_t cur;                   /* cfg->urls index: connected, or next */
    amqp_connection_state_t conn; /* NULL while disconnected */
    unsigned long reply_closes;   /* reply channel closes seen, in total */
    /* Whether conn can still carry a polite connection.close. */
    int conn_usable;
    /* Deliveries, bodies kept up to FIBRPC_MAX_REQUEST_BYTES; a message
     * half read stays here from one fw_link_next to the next. */
    cm_amqp_content_t content;
    char err[FW_LINK_ERR_MAX]; /* why the last step failed */
} fw_link_t;

/* What one wait on the link brought. */
typedef enum {
    FW_LINK_DELIVERY, /* *msg is a delivery, valid until the next call */
    FW_LINK_IDLE,     /* nothing to do (a timeout, or a frame handled) */
    FW_LINK_FAILED    /* the channel or the connection is gone */
} fw_link_event_t;

/* A disconnected link to the broker cfg names; cfg must outlive lk. */
void fw_link_init(fw_link_t *lk, const fw_config_t *cfg);

/* Connects to the current node (fw_link_node), logs in, opens the
 * channels, declares the queue and starts consuming.  Returns 0, or -1 with
 * fw_link_error saying why and nothing left open. */
int fw_link_connect(fw_link_t *lk);

/* Makes the next node of the list current (after a failed attempt or a
 * lost connection). */
void fw_link_next_node(fw_link_t *lk);
/* The current node: connected to, or tried next.  Points into the config:
 * valid, and the same for the same node, while the config lives. */
const cm_url_t *fw_link_node(const fw_link_t *lk);

/* Closes politely when the connection still works, then frees it and what
 * was read from it; a no-op when disconnected.  The broker requeues
 * whatever was not acked. */
void fw_link_disconnect(fw_link_t *lk);

/* Waits up to timeout_us (below 1000000) for the next delivery.  A body
 * over FIBRPC_MAX_REQUEST_BYTES is not kept: its delivery comes as soon
 * as its size is known, flagged oversized, and the body is dropped as it
 * arrives, during the next calls.  On FW_LINK_FAILED fw_link_error says
 * why; fw_link_disconnect next. */
fw_link_event_t fw_link_next(fw_link_t *lk, const cm_amqp_msg_t **msg,
                             long timeout_us);

/* Publishes body with props to queue reply_to through the default exchange,
 * on the reply channel.  Returns 0, or -1 when the connection failed
 * (fw_link_error says how).  A reply the broker cannot deliver closes the
 * reply channel later; fw_link_next then logs it and reopens it. */
int fw_link_publish(fw_link_t *lk, amqp_bytes_t reply_to,
                    const amqp_basic_properties_t *props, amqp_bytes_t body);

/* Acks msg's delivery.  Returns 0, or -1 when the connection failed
 * (fw_link_error says how). */
int fw_link_ack(fw_link_t *lk, const cm_amqp_msg_t *msg);

/* Why the last step failed, for the logs; "" before any failure.  Borrowed
 * from lk, overwritten by the next failure. */
const char *fw_link_error(const fw_link_t *lk);

#endif
