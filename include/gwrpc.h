/* gwrpc.h - the wire contract of a raw route (rpc-gateway --routes), for
 * worker authors in any language; README "Raw routes" says the same in
 * prose, and examples/upper_worker.py follows it.
 *
 * The request message.  Body: the HTTP request body, byte for byte.
 * Properties: content_type and content_encoding as the request had them
 * (absent when it had none); correlation_id; reply_to (direct reply-to)
 * and expiration (the time left, ms) for an RPC; delivery_mode 2 and
 * neither of those for a publish-mode route.  Headers (AMQP table, each a
 * string unless said otherwise):
 *   GWRPC_HDR_METHOD      the HTTP method ("POST")
 *   GWRPC_HDR_PATH        the path as received, percent-encoded
 *   GWRPC_HDR_QUERY       the query string as received, without '?'
 *                         ("" when none)
 *   GWRPC_HDR_PARAM<name> each {name} of the route's path, decoded
 *                         (but control bytes stay %-encoded: "%0A")
 *   x-request-id, traceparent, x-deadline-ms (int64, RPC only): as for fib
 *   (fibrpc.h)
 *   each header the route lists in forward_headers, under its lower-case
 *   name, repeated headers joined with ", "
 *
 * The reply (RPC routes): publish to reply_to with the request's
 * correlation_id.  Body: the HTTP response body, byte for byte.
 * content_type: the response's Content-Type (absent:
 * application/octet-stream).  Header GWRPC_HDR_STATUS: the HTTP status,
 * an integer or a string of digits from 200 to 599 (absent: 200; anything
 * else: the caller gets 502 bad_reply).  Headers the route lists in
 * return_headers (names in any case) are copied to the response (strings
 * or integers; a value with a control byte is left out); a worker's
 * status comes with those only (no Allow, WWW-Authenticate or
 * Retry-After added by the gateway: list them to pass them on).  A
 * worker that cannot serve the request replies with content type
 * FIBRPC_ERROR_CONTENT_TYPE and {"type": "...", "message": "..."},
 * exactly as a fib worker does: the caller gets problem JSON (400
 * worker_rejected for invalid_argument and out_of_range, 504 timeout for
 * expired, 502 otherwise).
 *
 * Header only, no state. */
#ifndef GWRPC_H
#define GWRPC_H

#define GWRPC_HDR_METHOD "x-http-method"
#define GWRPC_HDR_PATH   "x-http-path"
#define GWRPC_HDR_QUERY  "x-http-query"
#define GWRPC_HDR_PARAM  "x-param-" /* followed by the parameter's name */
#define GWRPC_HDR_STATUS "x-http-status"

/* A reply's Content-Type when it has no content_type property. */
#define GWRPC_DEFAULT_CONTENT_TYPE "application/octet-stream"

#endif
