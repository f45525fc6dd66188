/* fuzz_request.c - libFuzzer target for the gateway's request parsing:
 * unescape, route, /fib/<n> and ?timeout_ms=.  Input: "path\0query". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_controls(const char *s) {
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += (unsigned char)*s < 0x20 || *s == 0x7f;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1), *query, detail[128];
    unsigned timeout;
    uint32_t n;
    size_t len, controls;
    gw_err_t err;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    query = buf + strlen(buf) + (strlen(buf) < size ? 1 : 0);

    controls = count_controls(buf);
    len = gw_unescape(buf);
    if (len != strlen(buf))
        abort(); /* a decoded path must never hide bytes behind a NUL */
    if (count_controls(buf) != controls)
        abort(); /* decoding never makes control bytes (CR, LF, ...) */
    err = gw_request_parse_fib(buf, 100000, &n, detail, sizeof(detail));
    if (err == GW_E_OK && n > 100000)
        abort();
    if (err != GW_E_OK && gw_request_route(buf) == GW_ROUTE_FIB &&
        err != GW_E_INVALID_N && err != GW_E_N_OUT_OF_RANGE)
        abort();
    gw_unescape(query);
    err = gw_request_parse_timeout(query, 5000, 30000, &timeout);
    if (err == GW_E_OK && (timeout == 0 || timeout > 30000))
        abort();
    free(buf);
    return 0;
}
