/* reply.h - what a worker's reply message means.
 *
 * Pure (no I/O): takes a reply's content type and body as received and
 * classifies it against the wire contract in fibrpc.h.  Any thread. */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <stddef.h>

#include "problem.h"

typedef struct {
    gw_err_t err;       /* GW_E_OK: digits; WORKER_REJECTED / WORKER_ERROR /
                           TIMEOUT (the worker's "expired"): type and
                           message; BAD_REPLY: detail */
    const char *digits; /* points into the body, not NUL-terminated */
    size_t digits_len;
    char type[32];
    char message[256];
} gw_reply_t;

/* gw_reply_parse: classify a reply.  content_type may be NULL (the tutorial's
 * server sends none).  Fills *out; never fails.  The size cap
 * (--max-reply-bytes) is the link's: it never keeps a longer body. */
void gw_reply_parse(const char *content_type, size_t content_type_len,
                    const void *body, size_t body_len, gw_reply_t *out);

#endif
