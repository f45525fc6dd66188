/* handlers.c - the answers: routing, the fib call (admit, suspend,
 * submit), /readyz, /metrics, static bodies, and the headers and problem
 * bodies every answer gets.  HTTP thread only. */
#include "handlers.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "assets.h"
#include "clock.h"
#include "problem.h"

#define JSON_TYPE "application/json"

/* --- small pieces -------------------------------------------------------- */

/* The request id: the client's X-Request-Id when it is sane, else a new
 * one.  A valid traceparent is kept to pass on to the worker. */
void gw_handler_begin(gw_handler_ctx_t *h, struct MHD_Connection *c,
                      gw_call_t *call) {
    const char *v =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    uint8_t id[GW_ID_LEN];

    if (gw_request_id_valid(v)) {
        snprintf(call->request_id, sizeof(call->request_id), "%s", v);
    } else {
        gw_idgen_next(&h->ids, id);
        gw_id_hex(id, call->request_id);
    }
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
    if (gw_traceparent_valid(v))
        snprintf(call->traceparent, sizeof(call->traceparent), "%s", v);
}

/* Adds the common headers and queues resp (which it releases).  While
 * stopping, every answer closes its connection. */
static enum MHD_Result queue(struct MHD_Connection *c, req_t *r, int status,
                             const char *type, struct MHD_Response *resp) {
    enum MHD_Result ret;

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Request-Id", r->call.request_id);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
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
        r->call.worker_type[0] ? &worker : NULL, &len);
    return respond(c, r, status, GW_PROBLEM_CONTENT_TYPE, body, len);
}

/* An error answer with err's own status. */
static enum MHD_Result respond_problem(struct MHD_Connection *c, req_t *r,
                                       gw_err_t err, const char *detail,
                                       const char *instance) {
    return respond_problem_as(c, r, err, gw_err_status(err), detail, instance);
}

enum MHD_Result gw_handler_outcome(struct MHD_Connection *c, req_t *r,
                                   const char *url) {
    static const char head[] = "{\"n\":%" PRIu32 ",\"fib\":\"";
    char *body;
    int off;
    size_t cap;

    if (r->call.err != GW_E_OK)
        return respond_problem(c, r, r->call.err, r->call.detail, url);
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

/* --- the fib route ------------------------------------------------------- */

static const char *admit_detail(gw_handler_ctx_t *h, gw_err_t err, char *buf,
                                size_t size) {
    switch (err) {
    case GW_E_NO_SERVER:
        snprintf(buf, size, "no worker consumes queue '%s'", h->cfg->queue);
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

static enum MHD_Result start_fib(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url) {
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
    err = gw_request_parse_fib(url, h->cfg->max_n, &r->call.n, detail,
                               sizeof(detail));
    if (err != GW_E_OK)
        return respond_problem(c, r, err, detail, url);
    err = gw_request_parse_timeout(
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms"),
        h->cfg->timeout_ms, h->cfg->max_timeout_ms, &timeout_ms);
    if (err != GW_E_OK)
        return respond_problem(
            c, r, err, "timeout_ms must be a positive integer (milliseconds)",
            url);
    err = gw_rpc_admit(h->rpc);
    if (err != GW_E_OK)
        return respond_problem(
            c, r, err, admit_detail(h, err, detail, sizeof(detail)), url);

    r->call.timeout_ms = timeout_ms;
    r->call.deadline_ms = cm_now_ms() + timeout_ms;
    r->call.http = c;
    r->state = ST_WAITING;
    /* Suspend before submitting: the AMQP thread may resume at once. */
    MHD_suspend_connection(c);
    gw_rpc_submit(h->rpc, &r->call);
    return MHD_YES;
}

/* --- operations routes --------------------------------------------------- */

static enum MHD_Result readyz(gw_handler_ctx_t *h, struct MHD_Connection *c,
                              req_t *r, const char *url) {
    gw_metrics_link_t link;
    char detail[320];
    json_t *ready;
    char *body;

    gw_rpc_link(h->rpc, &link);
    /* Not ready, whatever the reason, is 503: orchestrators key on it. */
    if (!link.connected || link.blocked)
        return respond_problem_as(
            c, r, GW_E_BROKER_UNAVAILABLE, MHD_HTTP_SERVICE_UNAVAILABLE,
            link.connected ? "RabbitMQ is blocking publishers"
                           : "not connected to RabbitMQ",
            url);
    if (link.consumers <= 0) {
        snprintf(detail, sizeof(detail), "no worker consumes queue '%s'",
                 h->cfg->queue);
        return respond_problem_as(c, r, GW_E_NO_SERVER,
                                  MHD_HTTP_SERVICE_UNAVAILABLE, detail, url);
    }
    ready = json_pack("{s:s, s:s, s:i, s:I}", "status", "ready", "queue",
                      h->cfg->queue, "consumers", link.consumers,
                      "calls_in_flight", (json_int_t)link.inflight);
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

    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        count(&f->cl, value);
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        count(&f->te, value);
    else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        count(&f->host, value);
    return MHD_YES;
}

enum MHD_Result gw_handler_check_head(struct MHD_Connection *c, req_t *r,
                                      const char *url, const char *version) {
    framing_t f = {{0, "", 0}, {0, "", 0}, {0, "", 0}};
    const header_count_t *cl = &f.cl, *te = &f.te, *host = &f.host;
    const char *why = NULL;

    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    /* RFC 9112 6.3: framing a proxy in front of us could read otherwise is
     * how a second request gets smuggled in.  We take no bodies, so a body
     * that is not plainly framed is refused, not guessed at. */
    if (cl->count > 1 && cl->differ)
        why = "differing Content-Length headers";
    else if (te->count > 0 && cl->count > 0)
        why = "both Transfer-Encoding and Content-Length";
    else if (te->count > 1 ||
             (te->count == 1 && strcasecmp(te->first, "chunked")))
        why = "a Transfer-Encoding other than chunked";
    /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host. */
    else if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && host->count != 1)
        why = host->count == 0 ? "no Host header" : "more than one Host header";
    /* libmicrohttpd 0.9.75 leaves the request line where it read it: the
     * target runs from url to the NUL that replaced the space before the
     * version.  A NUL byte sent inside the target cuts the string short
     * ("/fib/5<NUL>junk" would read as /fib/5), so the string's length
     * when the line came in must be all of it. */
    else if ((uintptr_t)version > (uintptr_t)url &&
             (uintptr_t)version - (uintptr_t)url - 1 != r->target_len)
        why = "a NUL byte in the request target";
    if (why == NULL)
        return MHD_YES;
    r->close = 1;
    return respond_problem(c, r, GW_E_BAD_REQUEST, why, url);
}

enum MHD_Result gw_handler_route(gw_handler_ctx_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url,
                                 const char *method) {
    static const char healthz[] = "{\"status\":\"ok\"}";
    gw_route_t where = gw_request_route(url);

    r->route = where;
    if (where == GW_ROUTE_NONE)
        return respond_problem(c, r, GW_E_NOT_FOUND, "no such resource", url);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_problem(c, r, GW_E_METHOD_NOT_ALLOWED,
                               "only GET and HEAD are allowed here", url);
    switch (where) {
    case GW_ROUTE_FIB:
        return start_fib(h, c, r, url);
    case GW_ROUTE_INDEX:
        return respond_static(c, r, "text/html; charset=utf-8",
                              gw_asset_index_html, gw_asset_index_html_len);
    case GW_ROUTE_OPENAPI:
        return respond_static(c, r, "application/yaml; charset=utf-8",
                              gw_asset_openapi_yaml, gw_asset_openapi_yaml_len);
    case GW_ROUTE_HEALTHZ:
        return respond_static(c, r, JSON_TYPE, healthz, sizeof(healthz) - 1);
    case GW_ROUTE_READYZ:
        return readyz(h, c, r, url);
    case GW_ROUTE_METRICS:
        return metrics(h, c, r);
    default:
        return respond_problem(c, r, GW_E_NOT_FOUND, "no such resource", url);
    }
}
