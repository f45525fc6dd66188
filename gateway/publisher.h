/* publisher.h - publishing the request messages: the message a call
 * becomes, its encoding into AMQP frames, a bounded batch written with one
 * send(), and the check that the broker still reads what we write.
 *
 * A publisher belongs to the thread that owns the connection (the AMQP
 * thread).  gw_request_props and gw_publish_encode are pure (any thread;
 * bench/ceiling.c uses them too, so its messages are the gateway's). */
#ifndef GW_PUBLISHER_H
#define GW_PUBLISHER_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "msghdr.h"

#define GW_REPLY_TO "amq.rabbitmq.reply-to"
/* How often, in publishes, the caller asks gw_publisher_stalled (a publish
 * is ~250 bytes, far less than any socket buffer). */
#define GW_STALL_CHECK_EVERY 16

/* Headers a message carries at most: ours (request id, deadline,
 * traceparent) and a route's (method, path, query, parameters, forwarded
 * headers). */
#define GW_MSG_HEADERS_MAX 64

/* One call's request message, in the gateway's terms.  Zero for a field
 * means today's fib request: the default exchange, an RPC (reply_to,
 * expiration, x-deadline-ms), content type text/plain. */
typedef struct {
    const char *exchange;       /* NULL or "": the default exchange */
    const char *routing_key;    /* the request queue, or the route's key */
    int publish;                /* no reply expected: persistent, no TTL */
    const char *correlation_id; /* text */
    const char *request_id;
    const char *traceparent;        /* "" or NULL: none */
    int64_t ttl_ms;                 /* time left: the message's expiration */
    int64_t deadline_wall_ms;       /* the x-deadline-ms header */
    int raw;                        /* content type and headers from below */
    const char *content_type;       /* raw: NULL = none */
    const char *content_encoding;   /* raw: NULL = none */
    const gw_msg_header_t *headers; /* raw: more headers */
    size_t nheaders;                /* at most GW_MSG_HEADERS_MAX - 3 */
    const void *body;
    size_t body_len;
} gw_request_msg_t;

/* The AMQP properties of a request message, and the storage they point
 * into (besides the strings of the gw_request_msg_t they came from). */
typedef struct {
    amqp_basic_properties_t props;
    amqp_table_entry_t headers[GW_MSG_HEADERS_MAX];
    char expiration[24];
} gw_request_props_t;

/* Fills out from m; out points into m's strings. */
void gw_request_props(const gw_request_msg_t *m, gw_request_props_t *out);

/* Encodes basic.publish (mandatory) to exchange with its content header
 * and body, the body cut into frames of at most frame_max bytes, on
 * channel into buf.  Returns the bytes written, or -1 when they do not
 * fit in room (nothing useful is left in buf then). */
long gw_publish_encode(uint8_t *buf, size_t room, uint16_t channel,
                       uint32_t frame_max, amqp_bytes_t exchange,
                       amqp_bytes_t routing_key,
                       const amqp_basic_properties_t *props, amqp_bytes_t body);
/* The room gw_publish_encode needs at most for a body of body_len bytes
 * and a header frame of at most header_max bytes. */
size_t gw_publish_room(size_t body_len, uint32_t frame_max, size_t header_max);

typedef struct gw_publisher gw_publisher_t;

/* Returns a detached publisher, or NULL when out of memory. */
gw_publisher_t *gw_publisher_new(void);
/* Frees it.  NULL is a no-op. */
void gw_publisher_free(gw_publisher_t *pub);

/* Publishes on conn's channel from now on.  With tls the writing is left
 * to rabbitmq-c (one send per frame); otherwise frames are batched.  The
 * channel is in confirm mode: publishes are numbered from 1 (the delivery
 * tags the broker confirms). */
void gw_publisher_attach(gw_publisher_t *pub, amqp_connection_state_t conn,
                         uint16_t channel, int tls);
/* Forgets the connection and drops any batch (never half a batch on the
 * next connection). */
void gw_publisher_detach(gw_publisher_t *pub);

/* Publishes m: into the batch (flushing first when it is nearly full), or
 * through rabbitmq-c over TLS.  Returns 0; -1 when the connection failed
 * (the caller then drops it); -2 when m cannot be encoded (nothing of it
 * was written; the connection is fine). */
int gw_publisher_send(gw_publisher_t *pub, const gw_request_msg_t *m);
/* Writes the batch.  Returns 0, or -1 (logged) when the socket failed or
 * the broker made no room within the grace time: a batch cut mid-frame
 * leaves the connection unusable, so the caller drops it. */
int gw_publisher_flush(gw_publisher_t *pub);
/* The delivery tag of the last publish since attach (0: none yet). */
uint64_t gw_publisher_tag(const gw_publisher_t *pub);
/* Bytes encoded and not yet written.  0 whenever rabbitmq-c may write. */
size_t gw_publisher_batched(const gw_publisher_t *pub);
/* Whether the broker has stopped reading: the socket has no room (its
 * send queue is two thirds full) and gets none within the grace time (a
 * short poll: ask every GW_STALL_CHECK_EVERY publishes, not every one). */
int gw_publisher_stalled(gw_publisher_t *pub);

#endif
