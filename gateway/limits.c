/* limits.c - the request head limits. */
#include "limits.h"

#include <stdio.h>
#include <string.h>

gw_err_t gw_limits_target(const char *target, char *detail,
                          size_t detail_size) {
    size_t len = strlen(target);
    const char *q = memchr(target, '?', len);
    unsigned params = 0;

    if (len > GW_MAX_TARGET) {
        snprintf(detail, detail_size,
                 "the request target has %zu bytes; at most %u are accepted",
                 len, GW_MAX_TARGET);
        return GW_E_URI_TOO_LONG;
    }
    /* As libmicrohttpd splits them: every '&' may start one more. */
    if (q != NULL && q[1] != '\0')
        for (params = 1, q++; (q = strchr(q, '&')) != NULL; q++)
            params++;
    if (params > GW_MAX_PARAMS) {
        snprintf(detail, detail_size,
                 "the query has %u parameters; at most %u are accepted", params,
                 GW_MAX_PARAMS);
        return GW_E_URI_TOO_LONG;
    }
    return GW_E_OK;
}

gw_err_t gw_limits_head(size_t head_bytes, unsigned fields, char *detail,
                        size_t detail_size) {
    if (head_bytes > GW_MAX_HEAD) {
        snprintf(detail, detail_size,
                 "the request head has %zu bytes; at most %u are accepted",
                 head_bytes, GW_MAX_HEAD);
        return GW_E_HEADERS_TOO_LARGE;
    }
    if (fields > GW_MAX_FIELDS) {
        snprintf(detail, detail_size,
                 "the request has %u header fields and cookies; at most %u "
                 "are accepted",
                 fields, GW_MAX_FIELDS);
        return GW_E_HEADERS_TOO_LARGE;
    }
    return GW_E_OK;
}
