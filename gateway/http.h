/* http.h - the HTTP side: the only code that includes <microhttpd.h>.
 *
 * One HTTP thread of ours runs libmicrohttpd's epoll loop; requests that
 * need an RPC are suspended and handed to the AMQP thread, which hands
 * them back through gw_http_call_done to be resumed.  gw_http_start/drain/stop
 * belong to main. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "auth.h"
#include "call.h"
#include "config.h"
#include "metrics.h"
#include "routes.h"
#include "rpc.h"

typedef struct gw_http gw_http_t;

/* A TLS certificate chain and its private key, as PEM text. */
typedef struct {
    char *cert;
    char *key;
} gw_tls_pem_t;

/* The done callback to give gw_rpc_new: hands the ended calls (a list
 * through ->next) to the HTTP thread, which resumes their requests.  Runs
 * on the AMQP thread (any thread may call it). */
void gw_http_call_done(gw_call_t *calls);

/* Starts listening, serving routes (ownership taken, also on failure):
 * HTTPS (TLS 1.2 or newer) when tls is not NULL, whose text is read only
 * during the call.  tokens is the bearer-token set (ownership taken, also
 * on failure; NULL when cfg has no token file).  Returns NULL (logged) on
 * failure.  cfg, rpc and metrics must outlive it. */
gw_http_t *gw_http_start(const gw_config_t *cfg, gw_rpc_t *rpc,
                         gw_metrics_t *metrics, gw_routes_t *routes,
                         gw_auth_t *tokens, const gw_tls_pem_t *tls);
/* Serves routes (ownership taken) to new requests from the HTTP thread's
 * next turn on; requests under way keep the table they started with.
 * Any thread. */
void gw_http_reload(gw_http_t *http, gw_routes_t *routes);
/* Replaces the token set (ownership taken): every request checked from
 * now on sees the new set whole, never a mix.  main only. */
void gw_http_set_tokens(gw_http_t *http, gw_auth_t *tokens);
/* /readyz answers 503 shutting_down from now on; everything else is
 * served as before.  main only, when the stop begins. */
void gw_http_unready(gw_http_t *http);
/* The TCP port it listens on (the one the system chose, when the config
 * asked for port 0). */
unsigned gw_http_port(const gw_http_t *http);
/* Starts the graceful stop; returns at once.  New connections are refused,
 * idle kept-alive connections are closed (before anything of a new request
 * is read from them), every request already being read is answered, and
 * every answer from now on closes its connection. */
void gw_http_drain(gw_http_t *http);
/* Ends the HTTP thread once every request being read has its answer
 * written (each gets at most the idle timeout), then frees.  Every call
 * must be done first (gw_rpc_shutdown).  NULL is a no-op. */
void gw_http_stop(gw_http_t *http);

#endif
