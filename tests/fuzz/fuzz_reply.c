/* fuzz_reply.c - libFuzzer target for the gateway's reply parsing.  Input:
 * first byte selects the content type (plain, error, error with charset,
 * none), the rest is the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fibrpc.h"
#include "problem.h"
#include "reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const types[] = {
        FIBRPC_REPLY_CONTENT_TYPE, FIBRPC_ERROR_CONTENT_TYPE,
        FIBRPC_ERROR_CONTENT_TYPE "; charset=utf-8", NULL};
    const char *ct;
    gw_reply_t r;
    size_t i;
    char *json;

    if (size == 0)
        return 0;
    ct = types[data[0] & 3];
    gw_reply_parse(ct, ct ? strlen(ct) : 0, data + 1, size - 1, &r);
    switch (r.err) {
    case GW_E_OK:
        if (r.digits_len == 0 || r.digits != (const char *)data + 1)
            abort();
        for (i = 0; i < r.digits_len; i++)
            if (r.digits[i] < '0' || r.digits[i] > '9')
                abort();
        break;
    case GW_E_WORKER_REJECTED:
    case GW_E_WORKER_ERROR:
    case GW_E_WORKER_CRASHED: /* the worker's "worker_crashed" */
    case GW_E_TIMEOUT: {      /* the worker's "expired" */
        /* what a caller would see must still be valid JSON */
        gw_worker_error_t w = {r.type, r.message};
        json = gw_problem_json(r.err, r.message, "/fib/1", "id", &w, NULL);
        if (json == NULL || strstr(json, "\"worker_error\"") == NULL)
            abort();
        free(json);
        break;
    }
    case GW_E_BAD_REPLY:
        break;
    default:
        abort();
    }
    return 0;
}
