/* http.h - the HTTP side: the only code that includes <microhttpd.h>.
 *
 * libmicrohttpd runs its own single polling thread (epoll); requests that
 * need an RPC are suspended, handed to the AMQP thread, and resumed from
 * there through gw_http_call_done.  gw_http_start/quiesce/stop belong to
 * main. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "call.h"
#include "config.h"
#include "metrics.h"
#include "rpc.h"

typedef struct gw_http gw_http_t;

/* The done callback to give gw_rpc_new: resumes the suspended request.
 * Runs on the AMQP thread. */
void gw_http_call_done(gw_call_t *call);

/* Starts listening.  Returns NULL (logged) on failure.  cfg, rpc and
 * metrics must outlive it. */
gw_http_t *gw_http_start(const gw_config_t *cfg, gw_rpc_t *rpc,
                         gw_metrics_t *metrics);
/* Stops accepting new connections; open ones are still served. */
void gw_http_quiesce(gw_http_t *http);
/* Stops the daemon and frees it.  Every call must be done first. */
void gw_http_stop(gw_http_t *http);

#endif
