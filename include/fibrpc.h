/* fibrpc.h - the wire contract shared by rpc-gateway and fib-worker.
 *
 * A request is n as ASCII decimal digits; a success reply is F(n) as ASCII
 * decimal digits (exactly the RabbitMQ RPC tutorial's format, so the
 * tutorial's client and server interoperate with ours).  A reply the worker
 * cannot produce is an error reply: content type FIBRPC_ERROR_CONTENT_TYPE and
 * a JSON object {"type": "<fibrpc error type>", "message": "<text>"}.
 * Header only, no state: any thread may use it. */
#ifndef FIBRPC_H
#define FIBRPC_H

#include <stddef.h>
#include <stdint.h>

#define FIBRPC_VERSION "0.1.0"

#define FIBRPC_DEFAULT_QUEUE "rpc_queue"
#define FIBRPC_DEFAULT_MAX_N 100000 /* plain digits: flags print it */
/* The largest n anything in this project will accept, whatever the flags say:
 * F(10^7) already has ~2.1 million digits. */
#define FIBRPC_HARD_MAX_N 10000000
/* Requests are a handful of digits; anything longer is rejected unread. */
#define FIBRPC_MAX_REQUEST_BYTES 64u

#define FIBRPC_REQUEST_CONTENT_TYPE "text/plain"
#define FIBRPC_REPLY_CONTENT_TYPE   "text/plain"
#define FIBRPC_ERROR_CONTENT_TYPE   "application/vnd.fibrpc.error+json"

/* AMQP message header (table) names.  All optional. */
#define FIBRPC_HDR_REQUEST_ID  "x-request-id"
#define FIBRPC_HDR_TRACEPARENT "traceparent"
/* Absolute deadline, milliseconds since the Unix epoch (int64). */
#define FIBRPC_HDR_DEADLINE_MS "x-deadline-ms"

/* Error types a worker may put in an error reply.  X(name, caller_fault):
 * caller_fault says whether the caller was wrong (the gateway answers 4xx)
 * or the service failed (the gateway answers 502). */
#define FIBRPC_ERROR_TYPES(X)                                                  \
    X(invalid_argument, 1) /* body is not decimal digits */                    \
    X(out_of_range, 1)     /* n above the worker's --max-n */                  \
    X(expired, 0)          /* deadline passed before the work started */       \
    X(internal, 0)         /* anything else */                                 \
    X(worker_crashed, 0)   /* delivered too often: workers died on it */

/* fibrpc_parse_n: parse [buf, buf+len) as n.  The one rule for n: ASCII
 * decimal digits only, any number of them ("007" is 7); a value above max
 * is out of range however many digits it has.  Returns 0 and sets *n on
 * success, -1 on bad syntax (empty or a non-digit), -2 when the syntax is
 * fine but the value exceeds max (then *n is unchanged). */
static inline int fibrpc_parse_n(const char *buf, size_t len, uint32_t max,
                                 uint32_t *n) {
    uint64_t v = 0;
    size_t i;

    if (len == 0)
        return -1;
    for (i = 0; i < len; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        if (v <= UINT32_MAX) /* beyond that it only stays too big */
            v = v * 10 + (uint64_t)(buf[i] - '0');
    }
    if (v > max)
        return -2;
    *n = (uint32_t)v;
    return 0;
}

#endif
