/* amqp_text.h - what a rabbitmq-c reply means, in words, for logs and
 * error details.  Pure: any thread. */
#ifndef CM_AMQP_TEXT_H
#define CM_AMQP_TEXT_H

#include <amqp.h>
#include <stddef.h>

/* Writes why r is not a normal reply into buf ("connection closed by
 * broker: 320 CONNECTION_FORCED - ...", "a socket error occurred", ...)
 * and returns buf; "ok" for a normal reply.  Never fails; cuts at size. */
const char *cm_amqp_reply_text(amqp_rpc_reply_t r, char *buf, size_t size);

/* Whether r is the broker closing the channel with this reply code. */
int cm_amqp_is_channel_close(amqp_rpc_reply_t r, unsigned code);

#endif
