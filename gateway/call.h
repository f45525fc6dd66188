/* call.h - one RPC call (or one published message), from the HTTP request
 * that starts it to the outcome that ends it.
 *
 * Ownership moves with the call: the HTTP layer creates it and fills the
 * request part, then hands it to the AMQP thread with gw_rpc_submit().  From
 * then until the AMQP thread hands it back through the done callback, only
 * the AMQP thread touches it; it writes the outcome part.  The HTTP layer
 * frees it, and everything the request part points to (the route's table
 * included) must outlive the call. */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "problem.h"
#include "msghdr.h"
#include "request.h"
#include "routes.h"

typedef struct gw_call gw_call_t;

#define GW_DETAIL_MAX 383 /* bytes of an outcome's detail, NUL not counted */

/* A header copied from the reply to the HTTP response (return_headers). */
typedef struct {
    const char *name; /* the route's (lower case) */
    char *value;      /* NUL-terminated, checked: no control bytes */
} gw_reply_header_t;

struct gw_call {
    /* request: written by the HTTP layer before submit */
    const gw_route_t *route;
    int watch;           /* the route queue's watch slot, -1: none (watch.h) */
    uint32_t n;          /* kind fib */
    int64_t deadline_ms; /* monotonic clock (cm_now_ms) */
    unsigned timeout_ms;
    /* the client's valid X-Request-Id (its header: libmicrohttpd holds it
     * while the request lives) or own_id; "" until known, never NULL */
    const char *request_id;
    char own_id[GW_ID_HEX_LEN + 1];
    /* the request's valid traceparent header, NULL when none (held by
     * libmicrohttpd while the request lives, which outlasts the call) */
    const char *traceparent;
    const char *routing_key; /* the route's own, or one the HTTP layer made */
    /* kind raw: the message (owned by the HTTP layer) */
    const void *req_body;
    size_t req_body_len;
    const char *content_type;     /* NULL: none */
    const char *content_encoding; /* NULL: none */
    const gw_msg_header_t *headers;
    size_t nheaders;
    void *http;      /* the HTTP layer's handle; opaque to the AMQP thread */
    gw_call_t *next; /* submission queue link */

    /* AMQP thread only: the channel it was published on (0: not yet), and
     * its place in that channel's list of calls */
    gw_call_t *ch_prev, *ch_next;
    uint16_t channel;
    unsigned attempts; /* publishes so far (a nacked one is published again) */
    int64_t retry_ms;  /* when a nacked call is published again */

    /* outcome: written by the AMQP thread before done */
    gw_err_t err;
    int status; /* kind raw, err == GW_E_OK: the HTTP status to answer */
    char *body; /* malloc'd: fib's digits, or a raw reply's body */
    size_t body_len;
    char *body_type; /* malloc'd raw reply content type; NULL: default */
    gw_reply_header_t *reply_headers; /* malloc'd, with the values */
    size_t nreply_headers;
    /* malloc'd, human-readable, for problem JSON (at most GW_DETAIL_MAX
     * bytes); NULL: none */
    char *detail;
    char *worker_type; /* malloc'd worker error type; NULL: none */
    /* the correlation id of its last publish (gw_id_text shows it); all
     * zero before the first */
    uint8_t corr[GW_ID_LEN];
};

/* Reverses a list of calls linked through ->next (the lists handed
 * between threads are stacks, newest first); returns its new head. */
static inline gw_call_t *gw_calls_reverse(gw_call_t *list) {
    gw_call_t *out = NULL, *next;

    for (; list != NULL; list = next) {
        next = list->next;
        list->next = out;
        out = list;
    }
    return out;
}

#endif
