/* metrics_http.h - the worker's small metrics port: GET /metrics served by
 * libmicrohttpd on its own internal polling thread.  Start and stop from the
 * main thread only; the metrics themselves are atomics (metrics.h). */
#ifndef FW_METRICS_HTTP_H
#define FW_METRICS_HTTP_H

#include <stdint.h>

#include "metrics.h"

typedef struct fw_metrics_http fw_metrics_http_t;

/* Listens on host:port and serves m, which must outlive the server; version
 * labels fibw_build_info.  Returns NULL, after logging why, when the
 * address does not resolve or cannot be bound. */
fw_metrics_http_t *fw_metrics_http_start(const char *host, uint16_t port,
                                         fw_metrics_t *m, const char *version);

/* Stops serving (waits for the server's thread) and frees; NULL is a
 * no-op. */
void fw_metrics_http_stop(fw_metrics_http_t *h);

#endif
