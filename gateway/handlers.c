/* handlers.c - the answers: the route table in use, each route's call
 * (check the head, read the body, admit, suspend, submit, answer), the
 * operations endpoints, static bodies, and the headers and problem bodies
 * every answer gets.  HTTP thread only, but gw_handler_offer. */
#include "handlers.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "assets.h"
#include "auth.h"
#include "clock.h"
#include "cors.h"
#include "gwrpc.h"
#include "limits.h"
#include "log.h"
#include "openapi.h"
#include "problem.h"

#define JSON_TYPE        "application/json"
#define RAW_DEFAULT_TYPE GWRPC_DEFAULT_CONTENT_TYPE
/* Request bodies held in memory at once, over all requests: past it, new
 * bodies get 503 (each route caps its own with max_body_bytes). */
#define BODY_MEMORY_MAX ((size_t)256 * 1024 * 1024)
/* Taken for a body when its head comes in, at most: the rest is taken as
 * it arrives, so a declared length holds nothing of BODY_MEMORY_MAX. */
#define BODY_RESERVE ((size_t)64 * 1024)
/* The realm named in WWW-Authenticate. */
#define AUTH_REALM "Bearer realm=\"rpc-gateway\""
/* What the gateway's own endpoints take. */
#define ENDPOINT_METHODS "GET, HEAD"
/* Every method a route may take (routes.c), and HEAD. */
#define ANY_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE"

/* --- the route table ----------------------------------------------------- */

static void table_free(gw_table_t *t) {
    gw_routes_free(t->routes);
    free(t->watch);
    free(t->metrics);
    free(t->openapi);
    free(t);
}

void gw_handler_release(gw_handler_ctx_t *h, gw_table_t *t) {
    (void)h;
    if (t != NULL && --t->refs == 0)
        table_free(t);
}

void gw_handler_offer(gw_handler_ctx_t *h, gw_routes_t *routes) {
    gw_routes_free(atomic_exchange(&h->offered, routes));
}

/* A preflight does not say which route it is for (and must not tell
 * which exist): it allows what any raw route takes.  Names that do not
 * fit are left out, and logged. */
static void cors_allow_headers(gw_table_t *t, const gw_routes_t *routes) {
    size_t i, j, n = gw_routes_count(routes);

    snprintf(t->cors_allow, sizeof(t->cors_allow), "%s", GW_CORS_ALLOW_HEADERS);
    for (i = 0; i < n; i++) {
        const gw_route_t *r = gw_routes_at(routes, i);

        if (r->kind != GW_KIND_RAW)
            continue;
        (void)gw_cors_list_add(t->cors_allow, sizeof(t->cors_allow),
                               MHD_HTTP_HEADER_CONTENT_ENCODING);
        for (j = 0; j < r->forward_headers.n; j++)
            if (gw_cors_list_add(t->cors_allow, sizeof(t->cors_allow),
                                 r->forward_headers.item[j]) != 0) {
                cm_log_t l;

                cm_log_begin(&l, CM_LOG_WARN, "cors_allow_headers_full");
                cm_log_kv(&l, "route", "%s", r->name);
                cm_log_kv(&l, "header", "%s", r->forward_headers.item[j]);
                cm_log_kv(&l, "max_bytes", "%d", GW_CORS_EXTRA_MAX);
                cm_log_end(&l);
            }
    }
}

int gw_handler_adopt(gw_handler_ctx_t *h) {
    gw_routes_t *routes = atomic_exchange(&h->offered, NULL);
    gw_openapi_opts_t doc = {h->cfg->timeout_ms, h->cfg->max_timeout_ms,
                             h->cfg->max_n};
    size_t i, n;
    gw_table_t *t;

    if (routes == NULL)
        return 0;
    n = gw_routes_count(routes);
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto fail;
    t->watch = calloc(n, sizeof(int));
    t->metrics = calloc(n, sizeof(unsigned));
    t->openapi = gw_openapi_render((const char *)gw_asset_openapi_yaml,
                                   gw_asset_openapi_yaml_len, routes, &doc,
                                   &t->openapi_len);
    if (t->watch == NULL || t->metrics == NULL || t->openapi == NULL) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "routes_refused");
        cm_log_kv(&l, "reason", "%s",
                  t->watch == NULL || t->metrics == NULL
                      ? "out of memory"
                      : "no OpenAPI document: out of memory, or the built-in "
                        "openapi.yaml lacks its markers");
        cm_log_end(&l);
        goto fail;
    }
    cors_allow_headers(t, routes);
    for (i = 0; i < n; i++) {
        const gw_route_t *r = gw_routes_at(routes, i);

        t->metrics[i] = gw_metrics_route_slot(h->metrics, r->name);
        t->watch[i] = -1;
        if (r->queue != NULL && r->mode == GW_MODE_PUBLISH)
            continue; /* needs no consumer: no_server there is unroutable */
        if (r->queue == NULL && r->exchange[0] == '\0')
            continue; /* the default exchange is always there */
        t->watch[i] =
            r->queue != NULL
                ? gw_rpc_watch(h->rpc, GW_WATCH_QUEUE, r->queue)
                : gw_rpc_watch(h->rpc, GW_WATCH_EXCHANGE, r->exchange);
        if (t->watch[i] < 0) {
            cm_log_t l;

            cm_log_begin(&l, CM_LOG_ERROR, "routes_refused");
            cm_log_kv(&l, "reason", "%s", "more queues than can be watched");
            cm_log_kv(&l, "route", "%s", r->name);
            cm_log_end(&l);
            goto fail;
        }
    }
    t->routes = routes;
    t->refs = 1; /* in use */
    gw_handler_release(h, h->table);
    h->table = t;
    return 0;
fail:
    if (t != NULL)
        table_free(t); /* t->routes is set only once all went well */
    gw_routes_free(routes);
    return -1;
}

/* --- small pieces -------------------------------------------------------- */

/* The request id: the client's X-Request-Id when it is sane, else a new
 * one.  A valid traceparent is kept to pass on to the worker. */
void gw_handler_begin(gw_handler_ctx_t *h, struct MHD_Connection *c,
                      gw_call_t *call) {
    const char *v =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    uint8_t id[GW_ID_LEN];

    if (gw_request_id_valid(v)) {
        call->request_id = v;
    } else {
        gw_idgen_next(&h->ids, id);
        gw_id_hex(id, call->own_id);
        call->request_id = call->own_id;
    }
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
    call->traceparent = gw_traceparent_valid(v) ? v : NULL;
}

/* A page on a listed origin may read the answer (and these headers of
 * it); other origins get nothing, so their browsers refuse it. */
static void cors_headers(struct MHD_Connection *c, const gw_handler_ctx_t *h,
                         const req_t *r, struct MHD_Response *resp) {
    const char *origin;

    if (h->cfg->cors.n == 0)
        return;
    /* Whether the CORS headers are there depends on Origin. */
    MHD_add_response_header(resp, "Vary", "Origin");
    origin = gw_cors_match(&h->cfg->cors, MHD_lookup_connection_value(
                                              c, MHD_HEADER_KIND, "Origin"));
    if (origin == NULL)
        return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            r->expose != NULL ? r->expose
                                              : GW_CORS_EXPOSE_HEADERS);
}

/* Adds the common headers and queues resp (which it releases).  type may
 * be NULL (no body type).  While stopping, every answer closes its
 * connection. */
static enum MHD_Result queue(struct MHD_Connection *c, req_t *r, int status,
                             const char *type, struct MHD_Response *resp) {
    enum MHD_Result ret;

    if (type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Request-Id", r->call.request_id);
    /* A raw route's worker may say otherwise (return_headers). */
    if (MHD_get_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL) == NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-store");
    /* What the gateway's own statuses come with; a worker's status (a raw
     * reply) comes with what the worker sent (return_headers). */
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED && !r->worker_status)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->allow != NULL ? r->allow : ENDPOINT_METHODS);
    if (status == MHD_HTTP_UNAUTHORIZED && !r->worker_status)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                r->challenge != NULL ? r->challenge
                                                     : AUTH_REALM);
    cors_headers(c, r->h, r, resp);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE && !r->worker_status &&
        MHD_get_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER) == NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (r->h->draining || r->close || r->call.err == GW_E_SHUTTING_DOWN)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = status;
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queues body (malloc'd; ownership taken, even on failure). */
static enum MHD_Result respond(struct MHD_Connection *c, req_t *r, int status,
                               const char *type, char *body, size_t len) {
    struct MHD_Response *resp;

    if (body == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    return queue(c, r, status, type, resp);
}

/* Queues a body that lives as long as the process. */
static enum MHD_Result respond_static(struct MHD_Connection *c, req_t *r,
                                      const char *type, const void *body,
                                      size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);

    if (resp == NULL)
        return MHD_NO;
    return queue(c, r, MHD_HTTP_OK, type, resp);
}

/* The table's OpenAPI document; the answer holds a reference to the
 * table until it is sent (a reload may replace the table meanwhile). */
static void openapi_sent(void *cls) {
    gw_table_t *t = cls;

    if (--t->refs == 0) /* libmicrohttpd frees answers on the HTTP thread */
        table_free(t);
}

static enum MHD_Result respond_openapi(struct MHD_Connection *c, req_t *r,
                                       gw_table_t *t) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(
            t->openapi_len, t->openapi, openapi_sent, t);

    if (resp == NULL)
        return MHD_NO;
    t->refs++;
    return queue(c, r, MHD_HTTP_OK, "application/yaml; charset=utf-8", resp);
}

/* Every error answer goes through here, with the given status (/readyz
 * answers every reason for not being ready with 503). */
static enum MHD_Result respond_problem_as(struct MHD_Connection *c, req_t *r,
                                          gw_err_t err, int status,
                                          const char *detail,
                                          const char *instance) {
    gw_worker_error_t worker = {r->call.worker_type, detail};
    size_t len = 0;
    char *body;

    r->call.err = err;
    body = gw_problem_json_status(
        err, status, detail, instance, r->call.request_id,
        r->call.worker_type != NULL ? &worker : NULL, &len);
    return respond(c, r, status, GW_PROBLEM_CONTENT_TYPE, body, len);
}

/* An error answer with err's own status. */
static enum MHD_Result respond_problem(struct MHD_Connection *c, req_t *r,
                                       gw_err_t err, const char *detail,
                                       const char *instance) {
    return respond_problem_as(c, r, err, gw_err_status(err), detail, instance);
}

/* --- outcomes ------------------------------------------------------------ */

/* A raw route's answer: the worker's body, status, content type and
 * returned headers. */
static enum MHD_Result raw_outcome(struct MHD_Connection *c, req_t *r,
                                   const char *url) {
    const char *type =
        r->call.body_type != NULL ? r->call.body_type : RAW_DEFAULT_TYPE;
    size_t i, head = sizeof("Content-Type: \r\n") - 1 + strlen(type);
    struct MHD_Response *resp;
    char expose[sizeof(GW_CORS_EXPOSE_HEADERS) + GW_CORS_EXTRA_MAX];
    enum MHD_Result ret;
    int cors = r->h->cfg->cors.n > 0;

    /* libmicrohttpd builds the answer's head in what is left of the
     * connection's block (limits.h): more would leave the caller without
     * an answer at all.  With CORS on, a page may read the returned
     * headers: their names are listed once more (", name"). */
    if (cors)
        snprintf(expose, sizeof(expose), "%s", GW_CORS_EXPOSE_HEADERS);
    for (i = 0; i < r->call.nreply_headers; i++) {
        head += strlen(r->call.reply_headers[i].name) + 4 +
                strlen(r->call.reply_headers[i].value);
        if (cors) {
            head += strlen(r->call.reply_headers[i].name) + 2;
            (void)gw_cors_list_add(expose, sizeof(expose),
                                   r->call.reply_headers[i].name);
        }
    }
    if (head > GW_REPLY_HEAD_MAX) {
        char detail[160];

        snprintf(detail, sizeof(detail),
                 "the reply's content type and returned headers take %zu "
                 "bytes in the answer; at most %d fit",
                 head, GW_REPLY_HEAD_MAX);
        r->call.err = GW_E_BAD_REPLY;
        return respond_problem(c, r, GW_E_BAD_REPLY, detail, url);
    }
    resp = MHD_create_response_from_buffer(r->call.body_len, r->call.body,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        return MHD_NO;
    r->call.body = NULL; /* the response's now */
    for (i = 0; i < r->call.nreply_headers; i++)
        MHD_add_response_header(resp, r->call.reply_headers[i].name,
                                r->call.reply_headers[i].value);
    r->worker_status = 1;
    r->expose = cors ? expose : NULL; /* copied by libmicrohttpd */
    ret = queue(c, r, r->call.status, type, resp);
    r->expose = NULL;
    return ret;
}

/* A publish-mode route's answer, once the broker confirmed the message. */
static enum MHD_Result accepted(struct MHD_Connection *c, req_t *r) {
    json_t *doc =
        json_pack("{s:s, s:s, s:s}", "status", "accepted", "route",
                  r->call.route->name, "request_id", r->call.request_id);
    char *body = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    json_decref(doc);
    return respond(c, r, MHD_HTTP_ACCEPTED, JSON_TYPE, body,
                   body != NULL ? strlen(body) : 0);
}

enum MHD_Result gw_handler_outcome(struct MHD_Connection *c, req_t *r,
                                   const char *url) {
    static const char head[] = "{\"n\":%" PRIu32 ",\"fib\":\"";
    char *body;
    int off;
    size_t cap;

    if (r->call.err != GW_E_OK)
        return respond_problem(c, r, r->call.err, r->call.detail, url);
    if (r->call.route->mode == GW_MODE_PUBLISH)
        return accepted(c, r);
    if (r->call.route->kind == GW_KIND_RAW)
        return raw_outcome(c, r, url);
    cap = r->call.body_len + 48;
    body = malloc(cap);
    if (body == NULL)
        return respond_problem(c, r, GW_E_INTERNAL, "out of memory", url);
    off = snprintf(body, cap, head, r->call.n);
    memcpy(body + off, r->call.body, r->call.body_len);
    off += (int)r->call.body_len;
    memcpy(body + off, "\"}", 2);
    return respond(c, r, MHD_HTTP_OK, JSON_TYPE, body, (size_t)off + 2);
}

/* --- a route's message --------------------------------------------------- */

/* Builds the message headers of a raw route in one block. */
typedef struct {
    gw_msg_header_t *h;
    size_t n, max;
    char *text; /* where the next name or value goes */
} msg_build_t;

/* Appends prefix+name = value (len bytes) to the block. */
static void msg_add(msg_build_t *b, const char *prefix, const char *name,
                    const char *value, size_t len) {
    gw_msg_header_t *e;

    if (b->n == b->max)
        return;
    e = &b->h[b->n++];
    e->name = b->text;
    b->text += sprintf(b->text, "%s%s", prefix, name) + 1;
    memmove(b->text, value, len); /* a forwarded value is built in place */
    e->value = b->text;
    e->len = len;
    b->text += len;
}

/* One forwarded header: its values counted, then joined ("a, b": repeated
 * headers are one list, RFC 9110 5.3). */
typedef struct {
    const char *name;
    size_t count, bytes;
    char *join; /* NULL while counting */
    size_t join_len;
} forward_t;

static enum MHD_Result forward_one(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value) {
    forward_t *f = cls;
    size_t len = value != NULL ? strlen(value) : 0;

    (void)kind;
    if (strcasecmp(key, f->name) != 0)
        return MHD_YES;
    if (f->join != NULL) {
        if (f->count > 0) {
            memcpy(f->join + f->join_len, ", ", 2);
            f->join_len += 2;
        }
        memcpy(f->join + f->join_len, value, len);
        f->join_len += len;
    }
    f->count++;
    f->bytes += len + 2;
    return MHD_YES;
}

/* The AMQP headers of a raw route's message: x-http-method, x-http-path
 * and x-http-query (as received), x-param-<name> (decoded), and the
 * forwarded headers, in one block that r owns.  Returns -1 when out of
 * memory. */
static int build_message(struct MHD_Connection *c, req_t *r,
                         const char *method) {
    const gw_route_t *route = r->match.route;
    const char *target = r->target, *q = strchr(target, '?');
    size_t path_len = q != NULL ? (size_t)(q - target) : strlen(target);
    size_t nh = 3 + route->nparam + route->forward_headers.n, size, i;
    forward_t f[GW_ROUTE_LIST_MAX];
    msg_build_t b;

    size = nh * (sizeof(gw_msg_header_t) + 16) + strlen(method) +
           2 * strlen(target) + 64;
    for (i = 0; i < route->nparam; i++)
        size += strlen(route->param[i]) + r->match.value[i].len + 9;
    for (i = 0; i < route->forward_headers.n; i++) {
        f[i] = (forward_t){route->forward_headers.item[i], 0, 0, NULL, 0};
        MHD_get_connection_values(c, MHD_HEADER_KIND, forward_one, &f[i]);
        size += strlen(f[i].name) + f[i].bytes + 2;
    }
    r->msg = malloc(size);
    if (r->msg == NULL)
        return -1;
    b = (msg_build_t){r->msg, 0, nh, (char *)((gw_msg_header_t *)r->msg + nh)};
    msg_add(&b, "", GWRPC_HDR_METHOD, method, strlen(method));
    msg_add(&b, "", GWRPC_HDR_PATH, target, path_len);
    msg_add(&b, "", GWRPC_HDR_QUERY, q != NULL ? q + 1 : "",
            q != NULL ? strlen(q + 1) : 0);
    for (i = 0; i < route->nparam; i++) {
        size_t vlen;
        const char *v = gw_route_value(&r->match, i, &vlen);

        msg_add(&b, GWRPC_HDR_PARAM, route->param[i], v, vlen);
    }
    for (i = 0; i < route->forward_headers.n; i++) {
        if (f[i].count == 0)
            continue;
        /* joined right where msg_add puts the value (after the name) */
        f[i].join = b.text + strlen(f[i].name) + 1;
        f[i].count = 0;
        MHD_get_connection_values(c, MHD_HEADER_KIND, forward_one, &f[i]);
        msg_add(&b, "", f[i].name, f[i].join, f[i].join_len);
    }
    r->call.headers = b.h;
    r->call.nheaders = b.n;
    return 0;
}

/* --- a route's call ------------------------------------------------------ */

/* Sets the call's routing key: the route's own when nothing of the path
 * goes into it (a queue's name, a fixed key), else one made from the path
 * parameters (held by r).  Returns GW_E_OK, or the error (in detail). */
static gw_err_t routing_key(req_t *r, char *detail, size_t detail_size) {
    const gw_route_t *route = r->match.route;
    char key[GW_AMQP_SHORTSTR_MAX + 1];
    gw_err_t err;

    r->call.routing_key = gw_route_fixed_key(route);
    if (r->call.routing_key != NULL)
        return GW_E_OK;
    err =
        gw_route_routing_key(&r->match, key, sizeof(key), detail, detail_size);
    if (err != GW_E_OK)
        return err;
    free(r->key);
    r->key = strdup(key);
    if (r->key == NULL) {
        snprintf(detail, detail_size, "out of memory");
        return GW_E_INTERNAL;
    }
    r->call.routing_key = r->key;
    return GW_E_OK;
}

static const char *admit_detail(gw_err_t err, const gw_call_t *call, char *buf,
                                size_t size) {
    switch (err) {
    case GW_E_NO_SERVER:
        if (call->route->queue != NULL)
            snprintf(buf, size, "no worker consumes queue '%s'",
                     call->route->queue);
        else
            snprintf(buf, size, "no exchange named '%s'",
                     call->route->exchange);
        return buf;
    case GW_E_BROKER_UNAVAILABLE:
        return "RabbitMQ is unreachable or blocking publishers; retry shortly";
    case GW_E_OVERLOADED:
        return "too many calls in flight; retry shortly";
    case GW_E_SHUTTING_DOWN:
        return "the gateway is shutting down";
    default:
        return NULL;
    }
}

static enum MHD_Result start_call(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                  req_t *r, const char *url,
                                  const char *method) {
    const gw_route_t *route = r->match.route;
    unsigned max_timeout = route->max_timeout_ms != 0 ? route->max_timeout_ms
                                                      : h->cfg->max_timeout_ms;
    unsigned dflt =
        route->timeout_ms != 0 ? route->timeout_ms : h->cfg->timeout_ms;
    char detail[320];
    unsigned timeout_ms;
    gw_err_t err;

    /* libmicrohttpd 0.9.75 resumes a connection with the loop state it had
     * when suspended.  Suspended in the turn that read its request, that
     * state still expects to read, so on resume it reads before it asks
     * for the answer (unless the connection is the one idle longest, which
     * it looks at first): a client that has ended its side by then (sent
     * its request, then shutdown) looks like one that went away, and the
     * answer is lost.  A turn later (no answer queued: it comes back at
     * once) it no longer expects to read.  Found by fuzz_http; see
     * test_http_half_close. */
    if (!r->deferred) {
        r->deferred = 1;
        return MHD_YES;
    }
    r->call.route = route;
    r->call.watch = r->table->watch[route->index];
    if (route->kind == GW_KIND_FIB) {
        err = gw_request_parse_n(r->match.rest, h->cfg->max_n, &r->call.n,
                                 detail, sizeof(detail));
        if (err != GW_E_OK)
            return respond_problem(c, r, err, detail, url);
    }
    err = gw_request_parse_timeout(
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms"),
        dflt, max_timeout, &timeout_ms);
    if (err != GW_E_OK)
        return respond_problem(
            c, r, err, "timeout_ms must be a positive integer (milliseconds)",
            url);
    err = routing_key(r, detail, sizeof(detail));
    if (err != GW_E_OK)
        return respond_problem(c, r, err, detail, url);
    if (route->kind == GW_KIND_RAW) {
        if (build_message(c, r, method) != 0)
            return respond_problem(c, r, GW_E_INTERNAL, "out of memory", url);
        r->call.req_body = r->body;
        r->call.req_body_len = r->body_len;
        r->call.content_type =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        r->call.content_encoding =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
        /* AMQP carries them as short strings */
        if ((r->call.content_type != NULL &&
             strlen(r->call.content_type) > GW_AMQP_SHORTSTR_MAX) ||
            (r->call.content_encoding != NULL &&
             strlen(r->call.content_encoding) > GW_AMQP_SHORTSTR_MAX))
            return respond_problem(c, r, GW_E_BAD_REQUEST,
                                   "Content-Type and Content-Encoding may be "
                                   "at most 255 bytes",
                                   url);
    }
    err = gw_rpc_admit(h->rpc, r->call.watch);
    if (err != GW_E_OK)
        return respond_problem(
            c, r, err, admit_detail(err, &r->call, detail, sizeof(detail)),
            url);

    r->call.timeout_ms = timeout_ms;
    r->call.deadline_ms = cm_now_ms() + timeout_ms;
    r->call.http = c;
    r->state = ST_WAITING;
    /* Suspend before submitting: the AMQP thread may resume at once. */
    MHD_suspend_connection(c);
    gw_rpc_submit(h->rpc, &r->call);
    return MHD_YES;
}

/* --- request bodies ------------------------------------------------------ */

/* Makes room for at least need bytes of body in r, within the route's cap
 * and the gateway's memory for bodies.  The room doubles, but never past
 * the declared length.  Returns GW_E_OK, BODY_TOO_LARGE or OVERLOADED. */
static gw_err_t body_room(req_t *r, size_t need) {
    gw_handler_ctx_t *h = r->h;
    size_t cap = r->body_cap, max = r->match.route->max_body_bytes;
    char *p;

    if (need > max)
        return GW_E_BODY_TOO_LARGE;
    if (need <= cap)
        return GW_E_OK;
    if (r->body_declared != 0 && r->body_declared < max)
        max = r->body_declared; /* libmicrohttpd passes on no more */
    cap = cap == 0 ? 4096 : cap;
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    if (cap < need)
        cap = need;
    if (h->body_bytes - r->body_cap + cap > BODY_MEMORY_MAX)
        return GW_E_OVERLOADED;
    p = realloc(r->body, cap);
    if (p == NULL)
        return GW_E_OVERLOADED;
    h->body_bytes = h->body_bytes - r->body_cap + cap;
    r->body = p;
    r->body_cap = cap;
    return GW_E_OK;
}

static enum MHD_Result body_refused(struct MHD_Connection *c, req_t *r,
                                    gw_err_t err, const char *url) {
    char detail[128];

    r->close = 1; /* the rest of the body is never read */
    if (err == GW_E_BODY_TOO_LARGE) {
        snprintf(detail, sizeof(detail),
                 "the request body is larger than this route takes (%zu "
                 "bytes)",
                 r->match.route->max_body_bytes);
        return respond_problem(c, r, err, detail, url);
    }
    return respond_problem(c, r, GW_E_OVERLOADED,
                           "too many request bodies in memory; retry shortly",
                           url);
}

int gw_handler_send_problem(int fd, gw_err_t err, const char *detail,
                            const char *instance, const char *request_id) {
    char head[512];
    size_t len = 0;
    char *body = gw_problem_json(err, detail, instance, request_id, NULL, &len);
    int n, rc = -1;

    if (body == NULL)
        return -1;
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: " GW_PROBLEM_CONTENT_TYPE
                 "\r\nContent-Length: %zu\r\nX-Request-Id: %s\r\n"
                 "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                 gw_err_status(err),
                 MHD_get_reason_phrase_for((unsigned)gw_err_status(err)), len,
                 request_id);
    if (n > 0 && (size_t)n < sizeof(head) &&
        send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE) ==
            n &&
        send(fd, body, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len)
        rc = 0;
    free(body);
    return rc;
}

enum MHD_Result gw_handler_body(struct MHD_Connection *c, req_t *r,
                                const char *data, size_t size,
                                const char *url) {
    gw_err_t err;

    /* A body nobody takes is answered at its head and never read. */
    if (r->status != 0 || r->match.route == NULL ||
        r->match.route->kind != GW_KIND_RAW)
        return MHD_YES;
    err = body_room(r, r->body_len + size);
    if (err != GW_E_OK) {
        char detail[128];
        int fd = gw_http_conn_fd(r->conn);

        /* libmicrohttpd takes no answer while a body is coming in: ours
         * goes straight to the socket (nothing else is queued on it), and
         * the connection is closed unread. */
        snprintf(detail, sizeof(detail),
                 err == GW_E_BODY_TOO_LARGE
                     ? "the request body is larger than this route takes "
                       "(%zu bytes)"
                     : "too many request bodies in memory; retry shortly",
                 r->match.route->max_body_bytes);
        if (fd >= 0)
            gw_handler_send_problem(fd, err, detail, url, r->call.request_id);
        r->call.err = err;
        r->status = gw_err_status(err);
        return MHD_NO;
    }
    memcpy(r->body + r->body_len, data, size);
    r->body_len += size;
    return MHD_YES;
}

/* A raw route's head: the content type it takes, and a Content-Length
 * within its cap (refused before a byte of the body is read).  Memory is
 * taken as the body arrives, not as declared: idle clients declaring
 * large bodies would otherwise hold every other client's share. */
static enum MHD_Result route_head(struct MHD_Connection *c, req_t *r,
                                  const char *url) {
    const gw_route_t *route = r->match.route;
    const char *cl = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *type =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    unsigned long long length = 0;
    char detail[320];
    gw_err_t err;

    if (route->kind != GW_KIND_RAW)
        return MHD_YES;
    if (cl != NULL) /* libmicrohttpd has checked it is a number */
        length = strtoull(cl, NULL, 10);
    if ((length > 0 || te != NULL) &&
        !gw_route_accepts(route, type != NULL ? type : RAW_DEFAULT_TYPE)) {
        size_t i, off;

        off = (size_t)snprintf(detail, sizeof(detail), "this route takes ");
        for (i = 0; i < route->content_types.n && off < sizeof(detail); i++)
            off += (size_t)snprintf(detail + off, sizeof(detail) - off, "%s%s",
                                    i > 0 ? ", " : "",
                                    route->content_types.item[i]);
        r->close = 1;
        return respond_problem(c, r, GW_E_UNSUPPORTED_MEDIA_TYPE, detail, url);
    }
    if (length > route->max_body_bytes)
        return body_refused(c, r, GW_E_BODY_TOO_LARGE, url);
    if (length > 0) {
        r->body_declared = (size_t)length;
        err =
            body_room(r, length < BODY_RESERVE ? (size_t)length : BODY_RESERVE);
        if (err != GW_E_OK)
            return body_refused(c, r, err, url);
    }
    return MHD_YES;
}

/* --- operations endpoints ------------------------------------------------ */

/* Ready while connected and not stopping: with several gateways behind a
 * load balancer, "no workers" must not pull them all (each call says
 * 504 no_server itself).  The body reports the consumers it knows of:
 * --queue's, and every watched queue's. */
static enum MHD_Result readyz(gw_handler_ctx_t *h, struct MHD_Connection *c,
                              req_t *r, const char *url) {
    gw_metrics_link_t link;
    json_t *ready, *queues;
    size_t slot, n;
    char *body;
    int consumers;

    gw_rpc_link(h->rpc, &link);
    /* Not ready, whatever the reason, is 503: orchestrators key on it. */
    if (atomic_load(&h->unready))
        return respond_problem(c, r, GW_E_SHUTTING_DOWN,
                               "the gateway is stopping", url);
    if (!link.connected)
        return respond_problem(c, r, GW_E_BROKER_UNAVAILABLE,
                               "not connected to RabbitMQ", url);
    consumers = gw_rpc_consumers(h->rpc, h->cfg->queue);
    queues = json_object();
    n = gw_watch_count(link.watch);
    for (slot = 0; slot < n; slot++)
        if (gw_watch_kind(link.watch, slot) == GW_WATCH_QUEUE &&
            gw_watch_consumers(link.watch, slot) >= 0)
            json_object_set_new(
                queues, gw_watch_name(link.watch, slot),
                json_integer(gw_watch_consumers(link.watch, slot)));
    ready =
        json_pack("{s:s, s:s, s:i, s:o, s:b, s:I}", "status", "ready", "queue",
                  h->cfg->queue, "consumers", consumers > 0 ? consumers : 0,
                  "queues", queues, "blocked", link.blocked, "calls_in_flight",
                  (json_int_t)link.inflight);
    body = ready != NULL ? json_dumps(ready, JSON_COMPACT) : NULL;
    json_decref(ready);
    if (body == NULL)
        return respond_problem(c, r, GW_E_INTERNAL, "out of memory", url);
    return respond(c, r, MHD_HTTP_OK, JSON_TYPE, body, strlen(body));
}

static enum MHD_Result metrics(gw_handler_ctx_t *h, struct MHD_Connection *c,
                               req_t *r) {
    gw_metrics_link_t link;
    size_t len = 0;
    char *body;

    gw_rpc_link(h->rpc, &link);
    body = gw_metrics_render(h->metrics, &link, GW_VERSION, &len);
    return respond(c, r, MHD_HTTP_OK,
                   "text/plain; version=0.0.4; charset=utf-8", body, len);
}

/* The route table, for the page and for people: name, method, path, kind,
 * mode and what a call may send. */
static enum MHD_Result routes_json(gw_handler_ctx_t *h,
                                   struct MHD_Connection *c, req_t *r,
                                   const char *url) {
    json_t *doc = json_object(), *list = json_array();
    size_t i, k;
    char *body;

    for (i = 0; i < gw_routes_count(h->table->routes); i++) {
        const gw_route_t *rt = gw_routes_at(h->table->routes, i);
        json_t *params = json_array(), *types = json_array();

        for (k = 0; k < rt->nparam; k++)
            json_array_append_new(params, json_string(rt->param[k]));
        for (k = 0; k < rt->content_types.n; k++)
            json_array_append_new(types,
                                  json_string(rt->content_types.item[k]));
        json_array_append_new(
            list,
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "name",
                      rt->name, "method", rt->method, "path", rt->path, "kind",
                      rt->kind == GW_KIND_FIB ? "fib" : "raw", "mode",
                      rt->mode == GW_MODE_PUBLISH ? "publish" : "rpc", "params",
                      params, "content_types", types, "max_body_bytes",
                      (json_int_t)rt->max_body_bytes));
    }
    json_object_set_new(doc, "routes", list);
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL)
        return respond_problem(c, r, GW_E_INTERNAL, "out of memory", url);
    return respond(c, r, MHD_HTTP_OK, JSON_TYPE, body, strlen(body));
}

/* --- access: CORS preflights and bearer tokens --------------------------- */

/* A browser asking whether a page on another origin may make a request:
 * OPTIONS with Access-Control-Request-Method, from a listed origin.  It
 * carries no credentials, so it is answered before the token check. */
static int tokens_required(const gw_handler_ctx_t *h) {
    return h->cfg->auth_tokens_file[0] != '\0';
}

static int is_preflight(gw_handler_ctx_t *h, struct MHD_Connection *c,
                        const char *method) {
    return strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0 &&
           MHD_lookup_connection_value(
               c, MHD_HEADER_KIND, "Access-Control-Request-Method") != NULL &&
           gw_cors_match(&h->cfg->cors,
                         MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     "Origin")) != NULL;
}

static enum MHD_Result preflight(struct MHD_Connection *c, req_t *r) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);

    if (resp == NULL)
        return MHD_NO;
    /* OPTIONS matched no route, so allow holds the path's methods; with
     * tokens required, the same answer on every path (see check_head) */
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            tokens_required(r->h) ? ANY_METHODS
                            : r->allow != NULL    ? r->allow
                                                  : ENDPOINT_METHODS);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            r->h->table->cors_allow);
    MHD_add_response_header(resp, "Access-Control-Max-Age", GW_CORS_MAX_AGE);
    return queue(c, r, MHD_HTTP_NO_CONTENT, NULL, resp);
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value) {
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
        (*(unsigned *)cls)++;
    return MHD_YES;
}

/* NULL when the request may go on (no tokens configured, an exempt path,
 * or a token of the set); else the 401's detail, with r->challenge set. */
static const char *unauthorized(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                req_t *r, const char *url) {
    unsigned count = 0;

    if (h->cfg->auth_tokens_file[0] == '\0' ||
        gw_auth_exempt(h->cfg->auth_exempt, url))
        return NULL;
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &count);
    switch (
        gw_auth_check(gw_latest_get(&h->tokens),
                      MHD_lookup_connection_value(
                          c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                      count)) {
    case GW_AUTH_OK:
        return NULL;
    case GW_AUTH_MISSING: /* RFC 6750 3.1: no error code when none was sent */
        r->challenge = AUTH_REALM;
        return "a bearer token is required: Authorization: Bearer <token>";
    case GW_AUTH_MALFORMED:
        r->challenge = AUTH_REALM ", error=\"invalid_request\"";
        return "the Authorization header is malformed: want one header, "
               "Bearer <token>";
    case GW_AUTH_REJECTED:
    default:
        r->challenge = AUTH_REALM ", error=\"invalid_token\"";
        return "the bearer token is not valid";
    }
}

/* --- the head ------------------------------------------------------------ */

/* How often a header occurs, and whether its values all agree. */
typedef struct {
    unsigned count;
    const char *first;
    int differ;
} header_count_t;

/* The headers that decide a request's framing, counted in one pass. */
typedef struct {
    header_count_t cl, te, host;
} framing_t;

static void count(header_count_t *hc, const char *value) {
    if (value == NULL)
        value = "";
    if (hc->count++ == 0)
        hc->first = value;
    else if (strcmp(hc->first, value) != 0)
        hc->differ = 1;
}

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value) {
    framing_t *f = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        count(&f->cl, value);
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        count(&f->te, value);
    else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        count(&f->host, value);
    return MHD_YES;
}

/* RFC 9112 framing a proxy in front of us could read otherwise is how a
 * second request gets smuggled in: a body that is not plainly framed is
 * refused, not guessed at.  Returns why, or NULL. */
static const char *framing_problem(struct MHD_Connection *c, const req_t *r,
                                   const char *url, const char *version) {
    framing_t f = {{0, "", 0}, {0, "", 0}, {0, "", 0}};

    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (f.cl.count > 1 && f.cl.differ)
        return "differing Content-Length headers";
    if (f.te.count > 0 && f.cl.count > 0)
        return "both Transfer-Encoding and Content-Length";
    if (f.te.count > 1 ||
        (f.te.count == 1 && strcasecmp(f.te.first, "chunked")))
        return "a Transfer-Encoding other than chunked";
    /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host. */
    if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && f.host.count != 1)
        return f.host.count == 0 ? "no Host header"
                                 : "more than one Host header";
    /* libmicrohttpd 0.9.75 leaves the request line where it read it: the
     * target runs from url to the NUL that replaced the space before the
     * version.  A NUL byte sent inside the target cuts the string short
     * ("/fib/5<NUL>junk" would read as /fib/5), so the string's length
     * when the line came in must be all of it. */
    if ((uintptr_t)version > (uintptr_t)url &&
        (uintptr_t)version - (uintptr_t)url - 1 != r->target_len)
        return "a NUL byte in the request target";
    return NULL;
}

/* A request the path or method rules out: 404, or 405 with Allow. */
static enum MHD_Result no_route(struct MHD_Connection *c, req_t *r,
                                const char *url) {
    char detail[96];

    if (r->match_err == GW_E_NOT_FOUND)
        return respond_problem(c, r, GW_E_NOT_FOUND, "no such resource", url);
    snprintf(detail, sizeof(detail), "only %s allowed here",
             r->allow != NULL ? r->allow : ENDPOINT_METHODS);
    return respond_problem(c, r, GW_E_METHOD_NOT_ALLOWED, detail, url);
}

/* Whether a body follows the head (Content-Length above 0, or chunked). */
static int has_body(struct MHD_Connection *c) {
    const char *cl = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

    return (cl != NULL && strtoull(cl, NULL, 10) > 0) ||
           MHD_lookup_connection_value(
               c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* A body on a request that takes none: the answer it would get anyway
 * where that is an error (404, 405), else 400. */
static enum MHD_Result unwanted_body(struct MHD_Connection *c, req_t *r,
                                     const char *url, const char *method) {
    if (r->endpoint == GW_EP_ROUTE && r->match_err != GW_E_OK)
        return no_route(c, r, url);
    if (r->endpoint != GW_EP_ROUTE &&
        strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_problem(c, r, GW_E_METHOD_NOT_ALLOWED,
                               "the methods allowed here are " ENDPOINT_METHODS,
                               url);
    return respond_problem(c, r, GW_E_BAD_REQUEST,
                           "this path takes no request body", url);
}

enum MHD_Result gw_handler_check_head(gw_handler_ctx_t *h,
                                      struct MHD_Connection *c, req_t *r,
                                      const char *url, const char *method,
                                      const char *version) {
    const char *why = framing_problem(c, r, url, version);
    int body, takes_body;

    if (why != NULL) {
        r->close = 1;
        return respond_problem(c, r, GW_E_BAD_REQUEST, why, url);
    }
    r->endpoint = gw_request_endpoint(url);
    if (r->endpoint == GW_EP_ROUTE) {
        char allow[64] = "";

        r->table = h->table;
        r->table->refs++;
        r->match_err = gw_routes_match(r->table->routes, method, url, &r->match,
                                       allow, sizeof(allow));
        if (allow[0] != '\0' && (r->allow = strdup(allow)) == NULL) {
            r->close = 1;
            return respond_problem(c, r, GW_E_INTERNAL, "out of memory", url);
        }
    }
    /* Without a body an answer waits for the end of the request, so the
     * connection stays open.  A body is read only for a raw route: any
     * other is answered now, with the connection closing, and
     * libmicrohttpd never reads it (else it reads and drops it for as
     * long as the client sends). */
    body = has_body(c);
    takes_body = r->endpoint == GW_EP_ROUTE && r->match_err == GW_E_OK &&
                 r->match.route->kind == GW_KIND_RAW;
    r->body_follows = body && takes_body;
    /* A preflight carries no credentials: before the token check; on a
     * path that exists (OPTIONS matches no route: allow has its methods).
     * With tokens required, on any path, so that a preflight tells nobody
     * which paths exist (the 401 check below is what keeps that secret). */
    if (is_preflight(h, c, method) &&
        (tokens_required(h) || r->endpoint != GW_EP_ROUTE ||
         r->match_err != GW_E_NOT_FOUND)) {
        if (body) {
            r->close = 1;
            return respond_problem(c, r, GW_E_BAD_REQUEST,
                                   "a CORS preflight takes no request body",
                                   url);
        }
        r->preflight = 1;
        return MHD_YES;
    }
    /* Before routing: without a token, nobody learns which paths exist. */
    r->denied = unauthorized(h, c, r, url);
    if (r->denied != NULL) {
        if (!body)
            return MHD_YES;
        r->close = 1;
        return respond_problem(c, r, GW_E_UNAUTHORIZED, r->denied, url);
    }
    if (body && !takes_body) {
        r->close = 1;
        return unwanted_body(c, r, url, method);
    }
    if (r->endpoint != GW_EP_ROUTE || r->match_err != GW_E_OK)
        return MHD_YES; /* answered once the head is in */
    return route_head(c, r, url);
}

enum MHD_Result gw_handler_route(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url,
                                 const char *method) {
    static const char healthz[] = "{\"status\":\"ok\"}";

    if (r->preflight)
        return preflight(c, r);
    if (r->denied != NULL)
        return respond_problem(c, r, GW_E_UNAUTHORIZED, r->denied, url);
    if (r->endpoint == GW_EP_ROUTE)
        return r->match_err == GW_E_OK ? start_call(h, c, r, url, method)
                                       : no_route(c, r, url);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_problem(c, r, GW_E_METHOD_NOT_ALLOWED,
                               "the methods allowed here are " ENDPOINT_METHODS,
                               url);
    switch (r->endpoint) {
    case GW_EP_INDEX:
        return respond_static(c, r, "text/html; charset=utf-8",
                              gw_asset_index_html, gw_asset_index_html_len);
    case GW_EP_OPENAPI:
        return respond_openapi(c, r, h->table);
    case GW_EP_HEALTHZ:
        return respond_static(c, r, JSON_TYPE, healthz, sizeof(healthz) - 1);
    case GW_EP_READYZ:
        return readyz(h, c, r, url);
    case GW_EP_METRICS:
        return metrics(h, c, r);
    case GW_EP_ROUTES:
        return routes_json(h, c, r, url);
    default:
        return respond_problem(c, r, GW_E_NOT_FOUND, "no such resource", url);
    }
}

void gw_handler_done(gw_handler_ctx_t *h, req_t *r) {
    free(r->call.body);
    free(r->call.body_type);
    free(r->call.reply_headers);
    free(r->call.detail);
    free(r->call.worker_type);
    free(r->key);
    free(r->allow);
    free(r->msg);
    if (r->body != NULL) {
        h->body_bytes -= r->body_cap;
        free(r->body);
    }
    if (r->target != r->target_inline)
        free(r->target);
    gw_handler_release(h, r->table);
}
