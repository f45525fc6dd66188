/* amqp_read.h - rabbitmq-c's consume idiom, frame by frame: the next
 * message (basic.deliver or basic.return, put together by amqp_content.h
 * with its body kept up to a cap), or the next frame that is not part of
 * one (basic.ack, channel.close, connection.blocked, ...).
 *
 * Unlike amqp_consume_message, it judges a body's size from the content
 * header before any of the body is read, hands an oversized message out at
 * once (its body is then dropped frame by frame, as it arrives), gives
 * rabbitmq-c's buffers back after every frame, and never waits past the
 * timeout for the rest of a message: the next call resumes it.
 *
 * Called by the thread that owns the connection. */
#ifndef CM_AMQP_READ_H
#define CM_AMQP_READ_H

#include <amqp.h>
#include <sys/time.h>

#include "amqp_content.h"

typedef enum {
    CM_AMQP_MESSAGE, /* *msg is a message: valid until the next call */
    CM_AMQP_FRAME,   /* *frame is not part of a message: valid until the
                        next call */
    CM_AMQP_TIMEOUT, /* no message or frame within *timeout (or this call
                        read its share of a long body): call again */
    CM_AMQP_FAILED,  /* the connection failed; *error says why */
} cm_amqp_read_t;

/* Frames one call reads at most before it returns CM_AMQP_TIMEOUT in the
 * middle of a message, so that a long body arriving fast holds up the
 * caller's other work for no more than this many frames. */
#define CM_AMQP_READ_FRAMES 64

/* Waits up to *timeout (NULL: without limit; {0, 0}: not at all) for the
 * next message or frame, feeding content (which keeps a message half read
 * from one call to the next; cm_amqp_content_reset it when the connection
 * goes).  Frees what the previous call handed out first.  *error is a
 * rabbitmq-c status (amqp_error_string2) when CM_AMQP_FAILED, else 0. */
cm_amqp_read_t cm_amqp_read(amqp_connection_state_t conn,
                            cm_amqp_content_t *content,
                            const struct timeval *timeout,
                            const cm_amqp_msg_t **msg, amqp_frame_t *frame,
                            int *error);

#endif
