/* reply.h - what a worker's reply message means.
 *
 * Pure (no I/O): takes a reply's content type, body and headers as
 * received and classifies them: against the wire contract in fibrpc.h for
 * a fib route, or as the HTTP response of a raw route.  Any thread. */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "gwrpc.h"
#include "problem.h"

typedef struct {
    gw_err_t err;       /* GW_E_OK: digits; WORKER_REJECTED / WORKER_ERROR /
                           WORKER_CRASHED / TIMEOUT (the worker's
                           "expired"): type and message; BAD_REPLY: detail */
    const char *digits; /* points into the body, not NUL-terminated */
    size_t digits_len;
    char type[32];
    char message[256];
} gw_reply_t;

/* A message header's value, as much as the gateway reads of it. */
typedef struct {
    enum { GW_HVAL_NONE, GW_HVAL_STR, GW_HVAL_INT, GW_HVAL_OTHER } kind;
    const char *s; /* GW_HVAL_STR, not NUL-terminated */
    size_t len;
    int64_t i; /* GW_HVAL_INT: any AMQP integer type */
} gw_hval_t;

/* gw_reply_parse: classify a reply.  content_type may be NULL (the tutorial's
 * server sends none).  Fills *out; never fails.  The size cap
 * (--max-reply-bytes) is the link's: it never keeps a longer body. */
void gw_reply_parse(const char *content_type, size_t content_type_len,
                    const void *body, size_t body_len, gw_reply_t *out);

#endif

/* gw_reply_parse_raw: classify a raw route's reply.  An error reply (the
 * fibrpc error content type) is read as gw_reply_parse reads it; anything
 * else is the response body as it is, with *status from the
 * x-http-status header: absent is 200; an integer, or a string of digits,
 * from 200 to 599 is itself; anything else makes the reply BAD_REPLY. */
void gw_reply_parse_raw(const char *content_type, size_t content_type_len,
                        const void *body, size_t body_len,
                        const gw_hval_t *status_header, gw_reply_t *out,
                        int *status);

/* The text of a reply header to put in an HTTP response: a string with no
 * control bytes (tab allowed) or an integer.  Returns 0 with out filled
 * (NUL-terminated), or -1 when it cannot be sent as it is (then it is
 * left out). */
int gw_reply_header_text(const gw_hval_t *v, char *out, size_t size);

/* Whether a reply's content type can go in a Content-Type header as it
 * is: printable ASCII, at most 255 bytes (and not empty). */
int gw_reply_content_type_ok(const char *s, size_t len);
