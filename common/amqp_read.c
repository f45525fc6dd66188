/* amqp_read.c - the next delivery or frame, rabbitmq-c's way. */
#include "amqp_read.h"

cm_amqp_read_t cm_amqp_read(amqp_connection_state_t conn,
                            struct timeval *timeout, amqp_envelope_t *env,
                            amqp_frame_t *frame, int *error) {
    amqp_rpc_reply_t r;

    *error = 0;
    amqp_maybe_release_buffers(conn);
    r = amqp_consume_message(conn, env, timeout, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return CM_AMQP_DELIVERY;
    if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        *error = AMQP_STATUS_UNEXPECTED_STATE;
        return CM_AMQP_FAILED;
    }
    if (r.library_error == AMQP_STATUS_TIMEOUT)
        return CM_AMQP_TIMEOUT;
    if (r.library_error != AMQP_STATUS_UNEXPECTED_STATE) {
        *error = r.library_error;
        return CM_AMQP_FAILED;
    }
    *error = amqp_simple_wait_frame(conn, frame);
    return *error == AMQP_STATUS_OK ? CM_AMQP_FRAME : CM_AMQP_FAILED;
}
