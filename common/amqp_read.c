/* amqp_read.c - the next message or frame, a frame at a time. */
#include "amqp_read.h"

#include <stdint.h>

#include "clock.h"

cm_amqp_read_t cm_amqp_read(amqp_connection_state_t conn,
                            cm_amqp_content_t *content,
                            const struct timeval *timeout,
                            const cm_amqp_msg_t **msg, amqp_frame_t *frame,
                            int *error) {
    int64_t deadline_us = 0, left_us;
    struct timeval tv;
    int i;

    *error = 0;
    *msg = NULL;
    cm_amqp_content_release(content);
    amqp_maybe_release_buffers(conn);
    if (timeout != NULL)
        deadline_us =
            cm_now_us() + (int64_t)timeout->tv_sec * 1000000 + timeout->tv_usec;
    for (i = 0; i < CM_AMQP_READ_FRAMES; i++) {
        if (timeout != NULL) {
            left_us = deadline_us - cm_now_us();
            if (left_us < 0)
                left_us = 0;
            tv.tv_sec = (time_t)(left_us / 1000000);
            tv.tv_usec = (suseconds_t)(left_us % 1000000);
        }
        *error = amqp_simple_wait_frame_noblock(conn, frame,
                                                timeout != NULL ? &tv : NULL);
        if (*error == AMQP_STATUS_TIMEOUT) {
            *error = 0;
            return CM_AMQP_TIMEOUT;
        }
        if (*error != AMQP_STATUS_OK)
            return CM_AMQP_FAILED;
        switch (cm_amqp_content_feed(content, frame, error)) {
        case CM_CONTENT_OTHER:
            return CM_AMQP_FRAME; /* its memory is released next call */
        case CM_CONTENT_BAD:
            return CM_AMQP_FAILED;
        case CM_CONTENT_READY:
            /* Everything kept is copied out of the frames. */
            amqp_maybe_release_buffers_on_channel(conn, frame->channel);
            *msg = cm_amqp_content_message(content);
            return CM_AMQP_MESSAGE;
        case CM_CONTENT_MORE:
            /* A body frame is 128 KiB: give it back before the next, so
             * that a long body costs one frame, not all of them. */
            amqp_maybe_release_buffers_on_channel(conn, frame->channel);
            break;
        }
    }
    return CM_AMQP_TIMEOUT;
}
