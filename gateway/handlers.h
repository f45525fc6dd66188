/* handlers.h - what each request is answered: the fib call, the
 * operations endpoints, the page, and the headers every answer carries.
 * Every error answer goes through one function (respond_problem_as), which
 * turns a gw_err_t into its status and problem JSON.
 *
 * Private to the HTTP side (http.c); HTTP thread only. */
#ifndef GW_HANDLERS_H
#define GW_HANDLERS_H

#include <microhttpd.h>
#include <stdint.h>

#include "call.h"
#include "config.h"
#include "ids.h"
#include "metrics.h"
#include "request.h"
#include "rpc.h"

/* What the handlers need of the server. */
typedef struct {
    const gw_config_t *cfg;
    gw_rpc_t *rpc;
    gw_metrics_t *metrics;
    gw_idgen_t ids; /* request ids */
    int draining;   /* stopping: every answer closes its connection */
} gw_handler_ctx_t;

struct gw_conn; /* http.c's record of a connection */

enum { ST_NEW, ST_WAITING, ST_DONE };

/* Per request; call must stay first (gw_http_call_done casts back). */
typedef struct {
    gw_call_t call;
    gw_handler_ctx_t *h;
    struct gw_conn *conn; /* NULL when the connection is not tracked */
    int seen;             /* the access handler has run once: headers are in */
    int close;            /* the answer closes the connection */
    int raw;              /* answered on the socket by http.c (answer_raw) */
    int deferred;         /* the fib call waited one turn (start_fib) */
    size_t target_len;    /* strlen of the target when its line came in */
    int state;
    int status;
    gw_route_t route;
    int64_t start_us;
    char method[8];
    char path[96]; /* for the access log only */
} req_t;

/* Fills the call's request and trace ids from the headers. */
void gw_handler_begin(gw_handler_ctx_t *h, struct MHD_Connection *c,
                      gw_call_t *call);
/* Looks at a head just read: MHD_YES when it may go on, else queues a 400
 * that closes the connection (ambiguous framing, a missing or doubled
 * Host, a NUL byte in the target) and returns what queueing returned. */
enum MHD_Result gw_handler_check_head(struct MHD_Connection *c, req_t *r,
                                      const char *url, const char *version);
/* Answers r (headers in, body discarded): at once, or by suspending it for
 * an RPC.  Returns what the access handler returns. */
enum MHD_Result gw_handler_route(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url, const char *method);
/* Answers a resumed call with its outcome. */
enum MHD_Result gw_handler_outcome(struct MHD_Connection *c, req_t *r,
                                   const char *url);

#endif
