/* amqp_text.c - rabbitmq-c replies as text, written once for the gateway,
 * the worker and the benchmark. */
#include "amqp_text.h"

#include <stdio.h>

static const char *closed(char *buf, size_t size, const char *who,
                          unsigned code, amqp_bytes_t text) {
    snprintf(buf, size, "%s closed by broker: %u %.*s", who, code,
             (int)text.len, text.bytes != NULL ? (const char *)text.bytes : "");
    return buf;
}

const char *cm_amqp_reply_text(amqp_rpc_reply_t r, char *buf, size_t size) {
    const char *s = "unknown reply";

    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        s = "ok";
        break;
    case AMQP_RESPONSE_NONE:
        s = "no reply from the broker";
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        s = amqp_error_string2(r.library_error);
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            return closed(buf, size, "connection", m->reply_code,
                          m->reply_text);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            return closed(buf, size, "channel", m->reply_code, m->reply_text);
        }
        s = amqp_method_name(r.reply.id);
        break;
    }
    snprintf(buf, size, "%s", s);
    return buf;
}

int cm_amqp_is_channel_close(amqp_rpc_reply_t r, unsigned code) {
    return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
           r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
           ((amqp_channel_close_t *)r.reply.decoded)->reply_code == code;
}
