/* reply.h - what a worker's reply message means.
 *
 * Pure (no I/O): takes a reply's content type and body as received and
 * classifies it against the wire contract in fibrpc.h.  Any thread. */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <stddef.h>

#include "problem.h"

/* A reply body is at most this long: F(FIBRPC_HARD_MAX_N) has 2,089,877
 * digits. */
#define GW_REPLY_MAX_BYTES (4u * 1024 * 1024)

typedef struct {
    gw_err_t err;       /* GW_E_OK: digits; WORKER_REJECTED / WORKER_ERROR /
                           WORKER_CRASHED / TIMEOUT (the worker's
                           "expired"): type and message; BAD_REPLY: detail */
    const char *digits; /* points into the body, not NUL-terminated */
    size_t digits_len;
    char type[32];
    char message[256];
} gw_reply_t;

/* gw_reply_parse: classify a reply.  content_type may be NULL (the tutorial's
 * server sends none).  Fills *out; never fails. */
void gw_reply_parse(const char *content_type, size_t content_type_len,
                    const void *body, size_t body_len, gw_reply_t *out);

#endif
