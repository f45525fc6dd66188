/* call.h - one RPC call, from the HTTP request that starts it to the reply
 * that ends it.
 *
 * Ownership moves with the call: the HTTP layer creates it and fills the
 * request part, then hands it to the AMQP thread with gw_rpc_submit().  From
 * then until the AMQP thread hands it back through the done callback, only
 * the AMQP thread touches it; it writes the outcome part.  The HTTP layer
 * frees it. */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "problem.h"
#include "request.h"

typedef struct gw_call gw_call_t;

struct gw_call {
    /* request: written by the HTTP layer before submit */
    uint32_t n;
    int64_t deadline_ms; /* monotonic clock (cm_now_ms) */
    unsigned timeout_ms;
    char request_id[GW_REQUEST_ID_MAX + 1];
    char traceparent[GW_TRACEPARENT_LEN + 1]; /* "" when none */
    void *http;      /* the HTTP layer's handle; opaque to the AMQP thread */
    gw_call_t *next; /* submission queue link */

    /* outcome: written by the AMQP thread before done */
    gw_err_t err;
    char *body; /* malloc'd reply digits (err == GW_E_OK) */
    size_t body_len;
    char detail[384];     /* human-readable, for problem JSON */
    char worker_type[32]; /* worker error type, when err is a worker error */
    char correlation_id[37];
};

#endif
