/* fib.h - the worker's pure core: F(n) with GMP, request bodies to n or to a
 * typed error, error replies to JSON.  No I/O and no shared state: any thread
 * may call any of it. */
#ifndef FW_FIB_H
#define FW_FIB_H

#include <stddef.h>
#include <stdint.h>

#include "fibrpc.h"

/* FW_OK, then one code per fibrpc error type (FW_ERR_invalid_argument, ...),
 * spelled like the wire names so the list is generated once, in fibrpc.h. */
typedef enum {
    FW_OK = 0,
#define FW_X(name, caller_fault) FW_ERR_##name,
    FIBRPC_ERROR_TYPES(FW_X)
#undef FW_X
} fw_err_t;

/* Room for the longest message fw_request_parse writes, with its NUL. */
#define FW_MESSAGE_MAX 96

/* What a request body asks for: n when err is FW_OK, else why not. */
typedef struct {
    fw_err_t err;
    uint32_t n;
    char message[FW_MESSAGE_MAX];
} fw_request_t;

/* F(n) as NUL-terminated decimal digits in a new *out (caller free()s it) and
 * its length in *len.  Returns 0, or -1 when malloc fails (*out untouched);
 * GMP's own allocations abort the process when memory runs out. */
int fw_fib_compute(uint32_t n, char **out, size_t *len);

/* Classifies [body, body+len): FW_OK and n, or an error and a human
 * message.  Never fails.  A len over FIBRPC_MAX_REQUEST_BYTES is refused
 * on its length alone, so body may be NULL then (as when len is 0): a
 * body that long is never kept (link.c). */
void fw_request_parse(const void *body, size_t len, uint32_t max_n,
                      fw_request_t *req);

/* The wire name of err ("invalid_argument", ...); "ok" for FW_OK and
 * "internal" for anything out of range.  Static storage. */
const char *fw_err_name(fw_err_t err);

/* 1 when err is the caller's fault (the gateway answers 4xx), else 0. */
int fw_err_caller_fault(fw_err_t err);

/* The error reply body {"type": ..., "message": ...} as compact JSON in a new
 * NUL-terminated string (caller free()s it), length in *len.  Returns NULL
 * when out of memory or when message is not valid UTF-8. */
char *fw_error_json(fw_err_t err, const char *message, size_t *len);

#endif
