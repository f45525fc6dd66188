/* request.h - what an HTTP request asks for: endpoint, n and timeout.
 *
 * Pure (no I/O): the HTTP layer hands over the decoded path and query values
 * and gets back either what to do or which error to answer.  Any thread. */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "problem.h"

#define GW_REQUEST_ID_MAX  64
#define GW_TRACEPARENT_LEN 55

/* The gateway's own endpoints; anything else is the route table's. */
typedef enum {
    GW_EP_ROUTE,   /* not one of the below: see the route table */
    GW_EP_INDEX,   /* / : the page for people */
    GW_EP_HEALTHZ, /* /healthz */
    GW_EP_READYZ,  /* /readyz */
    GW_EP_METRICS, /* /metrics */
    GW_EP_OPENAPI, /* /openapi.yaml */
    GW_EP_ROUTES,  /* /routes.json: the route table, for the page */
} gw_endpoint_t;

/* gw_unescape: percent-decode s in place, as libmicrohttpd's unescape
 * callback; returns the new length.  A sequence that would decode to a
 * control byte (NUL, CR, LF, ...) is left encoded, so a decoded string never
 * hides bytes behind a NUL and such input fails validation instead. */
size_t gw_unescape(char *s);

/* The endpoint a decoded path names. */
gw_endpoint_t gw_request_endpoint(const char *path);

/* gw_request_parse_n: n from what follows a fib route's fixed prefix
 * ("10" of /fib/10; "" of /fib; "1/2" of /fib/1/2).  Returns GW_E_OK and
 * sets *n, GW_E_INVALID_N (syntax, missing n, extra segments) or
 * GW_E_N_OUT_OF_RANGE (above max_n).  On error, detail (detail_size
 * bytes, may be 0) gets a short human-readable reason. */
gw_err_t gw_request_parse_n(const char *rest, uint32_t max_n, uint32_t *n,
                            char *detail, size_t detail_size);

/* A client's X-Request-Id is kept when it is 1..64 characters from
 * [A-Za-z0-9._:-]: safe in headers, logs and JSON. */
int gw_request_id_valid(const char *v);

/* A W3C traceparent (version 00 layout: 2-32-16-2 lower-case hex digits,
 * with a non-zero trace id and parent id), worth passing on. */
int gw_traceparent_valid(const char *v);

/* gw_request_parse_timeout: the timeout_ms query value (NULL when absent).
 * Absent -> dflt; 1..max -> itself; above max -> max (capped, not an
 * error); anything else (0, signs, non-digits, empty) -> GW_E_INVALID_TIMEOUT.
 */
gw_err_t gw_request_parse_timeout(const char *value, unsigned dflt,
                                  unsigned max, unsigned *timeout_ms);

#endif
