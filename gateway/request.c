/* request.c - endpoint, n and timeout from a decoded request.  Pure; any
 * thread. */
#include "request.h"

#include <stdio.h>
#include <string.h>

#include "fibrpc.h"
#include "ids.h"

size_t gw_unescape(char *s) {
    char *r = s, *w = s;

    while (*r != '\0') {
        int hi, lo;

        if (r[0] == '%' && (hi = gw_hex_value(r[1])) >= 0 &&
            (lo = gw_hex_value(r[2])) >= 0) {
            unsigned char c = (unsigned char)(hi * 16 + lo);
            if (c >= 0x20 && c != 0x7f) {
                *w++ = (char)c;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

gw_endpoint_t gw_request_endpoint(const char *path) {
    static const struct {
        const char *path;
        gw_endpoint_t endpoint;
    } exact[] = {
        {"/", GW_EP_INDEX},
        {"/healthz", GW_EP_HEALTHZ},
        {"/readyz", GW_EP_READYZ},
        {"/metrics", GW_EP_METRICS},
        {"/openapi.yaml", GW_EP_OPENAPI},
        {"/routes.json", GW_EP_ROUTES},
    };
    size_t i;

    for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(path, exact[i].path) == 0)
            return exact[i].endpoint;
    return GW_EP_ROUTE;
}

int gw_request_id_valid(const char *v) {
    size_t len = v != NULL ? strlen(v) : 0;

    return len > 0 && len <= GW_REQUEST_ID_MAX &&
           strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._:-") == len;
}

static int hex_run(const char *s, size_t n, int *nonzero) {
    size_t i;

    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
        if (s[i] != '0')
            *nonzero = 1;
    }
    return 1;
}

int gw_traceparent_valid(const char *v) {
    int any = 0, trace = 0, parent = 0;

    if (v == NULL || strlen(v) != GW_TRACEPARENT_LEN || v[2] != '-' ||
        v[35] != '-' || v[52] != '-')
        return 0;
    return hex_run(v, 2, &any) && strncmp(v, "ff", 2) != 0 &&
           hex_run(v + 3, 32, &trace) && trace &&
           hex_run(v + 36, 16, &parent) && parent && hex_run(v + 53, 2, &any);
}

gw_err_t gw_request_parse_n(const char *rest, uint32_t max_n, uint32_t *n,
                            char *detail, size_t detail_size) {
    const char *why = NULL;
    gw_err_t err = GW_E_OK;
    size_t len = strlen(rest);

    if (len == 0) {
        err = GW_E_INVALID_N;
        why = "missing n: use /fib/<n>";
        goto out;
    }
    if (memchr(rest, '/', len) != NULL) {
        err = GW_E_INVALID_N;
        why = "unexpected path segments after n";
        goto out;
    }
    switch (fibrpc_parse_n(rest, len, max_n, n)) {
    case 0:
        break;
    case -2:
        err = GW_E_N_OUT_OF_RANGE;
        if (detail_size > 0)
            snprintf(detail, detail_size, "n must be at most %u", max_n);
        return err;
    default:
        err = GW_E_INVALID_N;
        why = "n must be a non-negative decimal integer (digits only)";
        break;
    }
out:
    if (err != GW_E_OK && detail_size > 0)
        snprintf(detail, detail_size, "%s", why);
    return err;
}

gw_err_t gw_request_parse_timeout(const char *value, unsigned dflt,
                                  unsigned max, unsigned *timeout_ms) {
    uint64_t v = 0;
    size_t i, len;

    if (value == NULL) {
        *timeout_ms = dflt < max ? dflt : max;
        return GW_E_OK;
    }
    /* Digits only, any number of them: a value above max is capped (v
     * stops growing once it is past any cap). */
    len = strlen(value);
    if (len == 0)
        return GW_E_INVALID_TIMEOUT;
    for (i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return GW_E_INVALID_TIMEOUT;
        if (v <= UINT32_MAX)
            v = v * 10 + (uint64_t)(value[i] - '0');
    }
    if (v == 0)
        return GW_E_INVALID_TIMEOUT;
    *timeout_ms = v > max ? max : (unsigned)v;
    return GW_E_OK;
}
