/* fib.c - pure core of fib-worker: F(n) with GMP, request classification and
 * error reply JSON.  No I/O, no globals that change: any thread may call it. */
#include "fib.h"

#include <gmp.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int caller_fault;
} fw_error_info_t;

/* Indexed by fw_err_t - 1: FW_OK has no entry. */
#define FW_X(name, caller_fault) {#name, caller_fault},
static const fw_error_info_t fw_errors[] = {FIBRPC_ERROR_TYPES(FW_X)};
#undef FW_X

#define FW_NERRORS (sizeof(fw_errors) / sizeof(fw_errors[0]))

int fw_fib_compute(uint32_t n, char **out, size_t *len) {
    mpz_t f;
    char *digits;
    size_t cap;

    mpz_init(f);
    mpz_fib_ui(f, n);
    /* mpz_sizeinbase may overshoot by one; +2 covers that and the NUL. */
    cap = mpz_sizeinbase(f, 10) + 2;
    digits = malloc(cap);
    if (digits == NULL) {
        mpz_clear(f);
        return -1;
    }
    mpz_get_str(digits, 10, f);
    mpz_clear(f);
    *len = strlen(digits);
    *out = digits;
    return 0;
}

static void fw_request_fail(fw_request_t *req, fw_err_t err,
                            const char *message) {
    req->err = err;
    req->n = 0;
    snprintf(req->message, sizeof(req->message), "%s", message);
}

static void fw_request_too_big(fw_request_t *req, uint32_t max_n) {
    req->err = FW_ERR_out_of_range;
    req->n = 0;
    snprintf(req->message, sizeof(req->message),
             "n must be at most %lu (this worker's limit)",
             (unsigned long)max_n);
}

void fw_request_parse(const void *body, size_t len, uint32_t max_n,
                      fw_request_t *req) {
    const char *p = body;
    size_t i, start;
    uint32_t n;
    int rc;

    /* Checked first so that a huge body costs nothing to reject. */
    if (len > FIBRPC_MAX_REQUEST_BYTES) {
        req->err = FW_ERR_invalid_argument;
        req->n = 0;
        snprintf(req->message, sizeof(req->message),
                 "request body is %zu bytes, over the limit of %u bytes", len,
                 (unsigned)FIBRPC_MAX_REQUEST_BYTES);
        return;
    }
    if (len == 0) {
        fw_request_fail(req, FW_ERR_invalid_argument,
                        "request body is empty; expected n as decimal digits");
        return;
    }
    start = (p[0] == '-' && len > 1) ? 1 : 0;
    for (i = start; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            fw_request_fail(req, FW_ERR_invalid_argument,
                            "request body must be n as ASCII decimal digits");
            return;
        }
    }
    if (start == 1) {
        fw_request_fail(req, FW_ERR_invalid_argument, "n must not be negative");
        return;
    }

    /* Digits only from here on: fibrpc_parse_n's one rule (any number of
     * digits; above max is out of range) decides. */
    rc = fibrpc_parse_n(p, len, max_n, &n);
    if (rc == -2) {
        fw_request_too_big(req, max_n);
        return;
    }
    if (rc != 0) {
        fw_request_fail(req, FW_ERR_invalid_argument,
                        "request body must be n as ASCII decimal digits");
        return;
    }
    req->err = FW_OK;
    req->n = n;
    req->message[0] = '\0';
}

const char *fw_err_name(fw_err_t err) {
    if (err == FW_OK)
        return "ok";
    if ((size_t)err > FW_NERRORS)
        return fw_errors[FW_ERR_internal - 1].name;
    return fw_errors[err - 1].name;
}

int fw_err_caller_fault(fw_err_t err) {
    if (err == FW_OK || (size_t)err > FW_NERRORS)
        return 0;
    return fw_errors[err - 1].caller_fault;
}

char *fw_error_json(fw_err_t err, const char *message, size_t *len) {
    json_t *obj;
    char *text;

    obj = json_pack("{s:s, s:s}", "type", fw_err_name(err), "message",
                    message != NULL ? message : "");
    if (obj == NULL)
        return NULL;
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text != NULL)
        *len = strlen(text);
    return text;
}
