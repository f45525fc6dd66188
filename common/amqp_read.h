/* amqp_read.h - rabbitmq-c's consume idiom, written once: the next
 * delivery, or the next frame that is not one.  rabbitmq-c returns
 * AMQP_STATUS_UNEXPECTED_STATE from amqp_consume_message when a method
 * other than basic.deliver (basic.return, basic.ack, channel.close, ...)
 * is waiting; that frame must then be read with amqp_simple_wait_frame.
 *
 * Called by the thread that owns the connection. */
#ifndef CM_AMQP_READ_H
#define CM_AMQP_READ_H

#include <amqp.h>
#include <sys/time.h>

typedef enum {
    CM_AMQP_DELIVERY, /* *env holds a message: amqp_destroy_envelope it */
    CM_AMQP_FRAME,    /* *frame holds a frame that is not a delivery */
    CM_AMQP_TIMEOUT,  /* nothing arrived within *timeout */
    CM_AMQP_FAILED,   /* the connection failed; *error says why */
} cm_amqp_read_t;

/* Waits up to *timeout (NULL: forever; {0, 0}: not at all) for the next
 * delivery or frame.  Releases rabbitmq-c's buffers first.  *error is a
 * rabbitmq-c status (amqp_error_string2) when CM_AMQP_FAILED, else 0. */
cm_amqp_read_t cm_amqp_read(amqp_connection_state_t conn,
                            struct timeval *timeout, amqp_envelope_t *env,
                            amqp_frame_t *frame, int *error);

#endif
