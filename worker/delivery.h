/* delivery.h - what one AMQP delivery asks of fib-worker (its headers, its
 * deadline, its body) and the properties and error body of its reply.  Pure
 * (no I/O, no clock: callers pass the time): any thread may call any of it. */
#ifndef FW_DELIVERY_H
#define FW_DELIVERY_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "fib.h"

/* Set by quorum queues on a redelivery: how many times the message was
 * delivered before without being acked. */
#define FW_HDR_DELIVERY_COUNT "x-delivery-count"

/* The most headers a reply carries: x-request-id and traceparent. */
#define FW_REPLY_HEADERS_MAX 2

/* A delivery as the worker reads it.  Everything borrows from the message
 * given to fw_delivery_read, which must outlive it. */
typedef struct {
    const amqp_basic_properties_t *props;
    amqp_bytes_t body;  /* all of it, or nothing when it was too long */
    uint64_t body_size; /* as the message announced it */
    /* The first header with each name, NULL when absent. */
    const amqp_table_entry_t *request_id;     /* x-request-id, echoed */
    const amqp_table_entry_t *traceparent;    /* echoed */
    const amqp_table_entry_t *deadline;       /* x-deadline-ms */
    const amqp_table_entry_t *delivery_count; /* x-delivery-count */
} fw_delivery_t;

/* The first entry of p's headers whose key is exactly name's bytes; NULL when
 * p has no headers flag or no such key.  Borrows from p; never fails. */
const amqp_table_entry_t *fw_header(const amqp_basic_properties_t *p,
                                    const char *name);

/* v as an int64 in *out: any integer kind (a u64 above INT64_MAX becomes
 * INT64_MAX), or 1..18 ASCII decimal digits as a string.  Returns 0, or -1
 * for anything else (*out untouched). */
int fw_field_int64(const amqp_field_value_t *v, int64_t *out);

/* Fills d from msg: d borrows msg's properties and body.  body_size is the
 * body's size as announced: msg->body holds it all, or nothing (a body
 * over FIBRPC_MAX_REQUEST_BYTES is not kept).  Never fails. */
void fw_delivery_read(fw_delivery_t *d, const amqp_message_t *msg,
                      uint64_t body_size);

/* 1 when d names a queue to reply to (a non-empty reply_to), else 0: such a
 * delivery can only be acked and dropped. */
int fw_delivery_has_reply_to(const fw_delivery_t *d);

/* What d asks for at now_ms (ms since the Unix epoch): expired when its
 * x-deadline-ms is an integer (fw_field_int64) and now_ms has reached it,
 * else its body as fw_request_parse classifies it.  Never fails. */
void fw_delivery_request(const fw_delivery_t *d, uint32_t max_n, int64_t now_ms,
                         fw_request_t *req);

/* How many times d was delivered before: its x-delivery-count when that is
 * an integer (fw_field_int64) above 0, else 0.  Never fails. */
int64_t fw_delivery_count(const fw_delivery_t *d);

/* Whether d is a poison request under --delivery-limit limit: limit > 0
 * and d was delivered at least limit-1 times before (fw_delivery_count), so
 * workers died on it every time.  Then req becomes worker_crashed with a
 * message saying so and 1 is returned: answer that, do not compute.  Else
 * returns 0 with req untouched. */
int fw_delivery_poisoned(const fw_delivery_t *d, uint32_t limit,
                         fw_request_t *req);

/* The error reply body for req (req->err != FW_OK): fw_error_json in a new
 * *text (caller free()s it) which body points at.  When that JSON cannot be
 * made, req becomes internal "out of memory writing the reply", *text NULL
 * and body a static JSON saying so.  Never fails. */
void fw_delivery_error_body(fw_request_t *req, char **text, amqp_bytes_t *body);

/* The properties of d's reply when answered with err: the content type for
 * digits (FW_OK) or for an error, d's correlation id, and d's x-request-id and
 * traceparent entries, in that order, in headers.  out borrows from headers
 * and from d.  Never fails. */
void fw_delivery_reply_props(const fw_delivery_t *d, fw_err_t err,
                             amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX],
                             amqp_basic_properties_t *out);

#endif
