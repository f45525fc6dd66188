/* handlers.h - what each request is answered: the routes of the route
 * table (fib and raw calls, published messages), the operations
 * endpoints, the page, and the headers every answer carries.  Every error
 * answer goes through one function (respond_problem_as), which turns a
 * gw_err_t into its status and problem JSON.
 *
 * Private to the HTTP side (http.c); HTTP thread only, except
 * gw_handler_offer (main, on reload). */
#ifndef GW_HANDLERS_H
#define GW_HANDLERS_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>

#include "call.h"
#include "config.h"
#include "cors.h"
#include "ids.h"
#include "latest.h"
#include "metrics.h"
#include "request.h"
#include "routes.h"
#include "rpc.h"

/* The route table in use, with what the gateway made of it: each route's
 * watch slot and metrics slot, and its OpenAPI document.  Requests hold a
 * reference while their call may point into it, and answers while they
 * send its document, so a reload never frees what is in use. */
typedef struct gw_table {
    gw_routes_t *routes;
    int *watch;        /* per route: its queue's watch slot, -1: none */
    unsigned *metrics; /* per route: its metrics slot */
    char *openapi;     /* the document served for it (openapi.h) */
    size_t openapi_len;
    /* a preflight's Access-Control-Allow-Headers: ours, then what raw
     * routes take (Content-Encoding, their forward_headers) */
    char cors_allow[sizeof(GW_CORS_ALLOW_HEADERS) + GW_CORS_EXTRA_MAX];
    unsigned refs; /* HTTP thread only; answers of openapi hold one too */
} gw_table_t;

/* What the handlers need of the server. */
typedef struct {
    const gw_config_t *cfg;
    gw_rpc_t *rpc;
    gw_metrics_t *metrics;
    gw_idgen_t ids;    /* request ids */
    int draining;      /* stopping: every answer closes its connection */
    gw_table_t *table; /* in use for new requests */
    _Atomic(gw_routes_t *) offered; /* a reloaded table, not yet in use */
    size_t body_bytes; /* request bodies held in memory right now */
    /* The bearer-token set (gw_auth_t), when cfg->auth_tokens_file is
     * set; main puts a new one on SIGHUP. */
    gw_latest_t tokens;
    atomic_int unready; /* main: the stop has begun; /readyz says 503 */
} gw_handler_ctx_t;

struct gw_conn; /* http.c's record of a connection */

enum { ST_NEW, ST_WAITING, ST_DONE };

/* Per request; call must stay first (gw_http_call_done casts back). */
typedef struct {
    gw_call_t call;
    gw_handler_ctx_t *h;
    struct gw_conn *conn; /* NULL when the connection is not tracked */
    /* seen: the access handler has run once (headers are in); close: the
     * answer closes the connection; raw: answered on the socket by http.c
     * (answer_raw); worker_status: the answer's status is a raw route
     * worker's; cut_short: the connection ended before the answer did;
     * deferred: the call waited one turn (start_call); preflight: a CORS
     * preflight, answered 204; body_follows: a body to read (a raw
     * route's), if not answered */
    unsigned seen : 1, close : 1, raw : 1, worker_status : 1, cut_short : 1,
        deferred : 1, preflight : 1, body_follows : 1;
    int state;
    int status;
    gw_endpoint_t endpoint;
    gw_err_t match_err;     /* endpoint GW_EP_ROUTE: why no route (404, 405), */
    gw_route_match_t match; /* or the route */
    size_t target_len;      /* strlen of the target when its line came in */
    gw_table_t *table;      /* referenced while the request lives */
    char *body;             /* raw routes: the request body so far */
    size_t body_len, body_cap;
    size_t body_declared; /* its Content-Length; 0: chunked, or none */
    void *msg;            /* raw routes: the message's headers (one block) */
    char *key;            /* a routing key made from the path, or NULL */
    char *allow;          /* 405, OPTIONS: the path's methods; else NULL */
    int64_t start_us;
    const char *challenge; /* WWW-Authenticate of a 401 */
    const char *expose;    /* Access-Control-Expose-Headers, NULL: ours */
    const char *denied;    /* the 401's detail: no valid token */
    char method[8];
    /* the path as libmicrohttpd decoded it, NULL before the head is in
     * (libmicrohttpd holds it while the request lives): the access log's */
    const char *url;
    /* the request target as received ("/a%20b?x=1"): raw routes send its
     * path and query on; inline when short */
    char *target;
    char target_inline[40];
} req_t;

/* Takes ownership of routes: the table new requests use, installed by
 * the HTTP thread at its next gw_handler_adopt.  Any thread. */
void gw_handler_offer(gw_handler_ctx_t *h, gw_routes_t *routes);
/* Puts an offered table in use (HTTP thread).  Returns 0, or -1 (logged;
 * the old table stays) when its queues cannot all be watched. */
int gw_handler_adopt(gw_handler_ctx_t *h);
/* Drops a request's reference to its table; frees a replaced table when
 * the last goes.  NULL is a no-op. */
void gw_handler_release(gw_handler_ctx_t *h, gw_table_t *t);

/* Fills the call's request and trace ids from the headers. */
void gw_handler_begin(gw_handler_ctx_t *h, struct MHD_Connection *c,
                      gw_call_t *call);
/* Looks at a head just read: MHD_YES when it may go on (its body, if
 * any, follows), else queues the answer (a
 * 400 that closes for ambiguous framing, a missing or doubled Host or a
 * NUL byte in the target; 404, 405, 413, 415 and the like for a route;
 * for a body on a request that takes none, an answer that closes, so the
 * body is never read) and returns what queueing returned. */
enum MHD_Result gw_handler_check_head(gw_handler_ctx_t *h,
                                      struct MHD_Connection *c, req_t *r,
                                      const char *url, const char *method,
                                      const char *version);
/* Takes size bytes of r's body.  Returns MHD_YES, or queues 413 (the
 * body went over the route's max_body_bytes) and returns what queueing
 * returned. */
enum MHD_Result gw_handler_body(struct MHD_Connection *c, req_t *r,
                                const char *data, size_t size, const char *url);
/* Answers r (head and body in): at once, or by suspending it for an RPC.
 * Returns what the access handler returns. */
enum MHD_Result gw_handler_route(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url, const char *method);
/* Writes err's problem answer (with Connection: close) straight to the
 * socket fd, for a connection on which libmicrohttpd has queued nothing
 * and takes nothing now (a head too slow, a body too large).
 * Returns 0, or -1 when it could not all be written at once. */
int gw_handler_send_problem(int fd, gw_err_t err, const char *detail,
                            const char *instance, const char *request_id);
/* The socket of http.c's connection record, or -1 (NULL: untracked). */
int gw_http_conn_fd(const struct gw_conn *conn);
/* Answers a resumed call with its outcome. */
enum MHD_Result gw_handler_outcome(struct MHD_Connection *c, req_t *r,
                                   const char *url);
/* Frees what r holds (its call's outcome, body, message, table
 * reference); not r itself. */
void gw_handler_done(gw_handler_ctx_t *h, req_t *r);

#endif
