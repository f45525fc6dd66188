/* fuzz_worker.c - libFuzzer target for the worker's message parsing: any
 * body must become either a valid n or a typed error whose JSON reply the
 * gateway's contract accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fw_request_t req;
    size_t len;
    char *json;

    fw_request_parse(data, size, FIBRPC_DEFAULT_MAX_N, &req);
    if (req.err == FW_OK) {
        if (req.n > FIBRPC_DEFAULT_MAX_N || size == 0 ||
            size > FIBRPC_MAX_REQUEST_BYTES)
            abort();
        return 0;
    }
    if (memchr(req.message, '\0', sizeof(req.message)) == NULL)
        abort();
    json = fw_error_json(req.err, req.message, &len);
    if (json == NULL || len != strlen(json) ||
        strstr(json, fw_err_name(req.err)) == NULL)
        abort();
    free(json);
    return 0;
}
