/* http.c - libmicrohttpd: routes requests, answers what it can at once,
 * suspends the rest until the AMQP thread resumes them with an outcome.
 *
 * Callbacks run on libmicrohttpd's single polling thread, except
 * gw_http_call_done, which runs on the AMQP thread and only resumes. */
#include "http.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "assets.h"
#include "clock.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"
#include "request.h"

#define JSON_TYPE "application/json"
/* Per-connection memory for the request line, headers and response headers
 * (libmicrohttpd clears it after every request on a kept-alive connection,
 * so it is both RSS per idle connection and work per request).  8 KiB is
 * the common request-header limit (nginx's large buffer); bigger headers
 * get 431. */
#define GW_HTTP_CONN_MEMORY 8192

struct gw_http {
    const gw_config_t *cfg;
    gw_rpc_t *rpc;
    gw_metrics_t *metrics;
    gw_idgen_t ids; /* request ids; libmicrohttpd's thread only */
    struct MHD_Daemon *daemon;
    /* Calls admitted whose answer is not written yet: suspended, or resumed
     * by the AMQP thread and waiting for libmicrohttpd's thread. */
    atomic_uint unanswered;
    MHD_socket quiesced_fd; /* the listening socket, shut down, until stop */
};

enum { ST_NEW, ST_WAITING, ST_DONE };

/* Per request; call must stay first (gw_http_call_done casts back). */
typedef struct {
    gw_call_t call;
    int state;
    int status;
    gw_route_t route;
    int64_t start_us;
    char method[8];
    char path[96]; /* for the access log only */
} req_t;

/* --- small pieces -------------------------------------------------------- */

/* Copies s for a quoted logfmt value: no quotes, backslashes or control
 * bytes, bounded. */
static void log_safe(char *out, size_t size, const char *s) {
    size_t i;

    for (i = 0; i + 1 < size && s[i] != '\0'; i++)
        out[i] = (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20 ||
                  (unsigned char)s[i] >= 0x7f)
                     ? '?'
                     : s[i];
    out[i] = '\0';
}

/* The request id: the client's X-Request-Id when it is sane, else a new
 * one.  A valid traceparent is kept to pass on to the worker. */
static void trace_ids(gw_http_t *h, struct MHD_Connection *c, gw_call_t *call) {
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

/* Adds the common headers and queues resp (which it releases). */
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
    if (r->call.err == GW_E_SHUTTING_DOWN)
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

/* Every error answer goes through here: with err's own status, or (when
 * status is not 0) with another. */
static enum MHD_Result respond_problem_status(struct MHD_Connection *c,
                                              req_t *r, gw_err_t err,
                                              int status, const char *detail,
                                              const char *instance) {
    gw_worker_error_t worker = {r->call.worker_type, detail};
    size_t len = 0;
    char *body;

    if (status == 0)
        status = gw_err_status(err);
    r->call.err = err;
    body = gw_problem_json_status(
        err, status, detail, instance, r->call.request_id,
        r->call.worker_type[0] ? &worker : NULL, &len);
    return respond(c, r, status, GW_PROBLEM_CONTENT_TYPE, body, len);
}

static enum MHD_Result respond_problem(struct MHD_Connection *c, req_t *r,
                                       gw_err_t err, const char *detail,
                                       const char *instance) {
    return respond_problem_status(c, r, err, 0, detail, instance);
}

static enum MHD_Result respond_outcome(struct MHD_Connection *c, req_t *r,
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

static const char *admit_detail(gw_http_t *h, gw_err_t err, char *buf,
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

static enum MHD_Result start_fib(gw_http_t *h, struct MHD_Connection *c,
                                 req_t *r, const char *url) {
    char detail[320];
    unsigned timeout_ms;
    gw_err_t err;

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
    r->call.deadline_ms = gw_now_ms() + timeout_ms;
    r->call.http = c;
    r->state = ST_WAITING;
    atomic_fetch_add(&h->unanswered, 1);
    /* Suspend before submitting: the AMQP thread may resume at once. */
    MHD_suspend_connection(c);
    gw_rpc_submit(h->rpc, &r->call);
    return MHD_YES;
}

/* --- operations routes --------------------------------------------------- */

static enum MHD_Result readyz(gw_http_t *h, struct MHD_Connection *c, req_t *r,
                              const char *url) {
    gw_metrics_link_t link;
    char detail[320];
    char *body;

    gw_rpc_link(h->rpc, &link);
    /* Not ready, whatever the reason, is 503: orchestrators key on it. */
    if (!link.connected || link.blocked)
        return respond_problem_status(
            c, r, GW_E_BROKER_UNAVAILABLE, MHD_HTTP_SERVICE_UNAVAILABLE,
            link.connected ? "RabbitMQ is blocking publishers"
                           : "not connected to RabbitMQ",
            url);
    if (link.consumers <= 0) {
        snprintf(detail, sizeof(detail), "no worker consumes queue '%s'",
                 h->cfg->queue);
        return respond_problem_status(
            c, r, GW_E_NO_SERVER, MHD_HTTP_SERVICE_UNAVAILABLE, detail, url);
    }
    body = malloc(512);
    if (body == NULL)
        return MHD_NO;
    snprintf(body, 512,
             "{\"status\":\"ready\",\"queue\":\"%s\",\"consumers\":%d,"
             "\"calls_in_flight\":%u}",
             h->cfg->queue, link.consumers, link.inflight);
    return respond(c, r, MHD_HTTP_OK, JSON_TYPE, body, strlen(body));
}

static enum MHD_Result metrics(gw_http_t *h, struct MHD_Connection *c,
                               req_t *r) {
    gw_metrics_link_t link;
    size_t len = 0;
    char *body;

    gw_rpc_link(h->rpc, &link);
    body = gw_metrics_render(h->metrics, &link, GW_VERSION, &len);
    return respond(c, r, MHD_HTTP_OK,
                   "text/plain; version=0.0.4; charset=utf-8", body, len);
}

static enum MHD_Result route(gw_http_t *h, struct MHD_Connection *c, req_t *r,
                             const char *url, const char *method) {
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx) {
    gw_http_t *h = cls;
    req_t *r = *ctx;

    if (r == NULL) { /* headers are in; the body (if any) is not */
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->start_us = gw_now_us();
        snprintf(r->method, sizeof(r->method), "%s", method);
        log_safe(r->path, sizeof(r->path), url);
        trace_ids(h, c, &r->call);
        *ctx = r;
        return MHD_YES;
    }
    if (*upload_size != 0) { /* no route takes a body: discard it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state == ST_WAITING) { /* resumed by the AMQP thread */
        r->state = ST_DONE;
        return respond_outcome(c, r, url);
    }
    return route(h, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode why) {
    gw_http_t *http = cls;
    req_t *r = *ctx;

    if (r == NULL)
        return;
    if (r->state != ST_NEW)
        atomic_fetch_sub(&http->unanswered, 1);
    /* Probes and scrapes that succeed would drown the other lines. */
    gw_log((r->route == GW_ROUTE_HEALTHZ || r->route == GW_ROUTE_READYZ ||
            r->route == GW_ROUTE_METRICS) &&
                   r->status < 400
               ? GW_LOG_DEBUG
               : GW_LOG_INFO,
           "request method=%s path=\"%s\" status=%d dur_ms=%.3f "
           "request_id=%s%s%s",
           r->method, r->path, r->status,
           (double)(gw_now_us() - r->start_us) / 1000.0, r->call.request_id,
           r->call.correlation_id[0] ? " corr=" : "", r->call.correlation_id);
    /* An unready gateway answering its probe is not a failed call. */
    gw_metrics_request(http->metrics, r->status,
                       r->route == GW_ROUTE_READYZ ? GW_E_OK : r->call.err,
                       gw_now_us() - r->start_us);
    free(r->call.body);
    free(r);
    *ctx = NULL;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s) {
    return gw_unescape(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char buf[512];
    size_t len;

    vsnprintf(buf, sizeof(buf), fmt, ap);
    len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    log_safe(buf, sizeof(buf), buf);
    gw_log(GW_LOG_WARN, "http_error text=\"%s\"", buf);
}

/* --- public -------------------------------------------------------------- */

void gw_http_call_done(gw_call_t *call) {
    MHD_resume_connection(call->http);
}

gw_http_t *gw_http_start(const gw_config_t *cfg, gw_rpc_t *rpc,
                         gw_metrics_t *metrics) {
    struct addrinfo hints = {0}, *ai = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    char port[8];
    gw_http_t *h;
    int rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->cfg = cfg;
    h->quiesced_fd = MHD_INVALID_SOCKET;
    h->rpc = rpc;
    h->metrics = metrics;
    gw_idgen_init(&h->ids);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    rc = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (rc != 0) {
        gw_log(GW_LOG_ERROR, "listen_resolve_failed host=%s error=\"%s\"",
               cfg->listen_host, gai_strerror(rc));
        free(h);
        return NULL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, cfg->listen_port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, or it warns */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, /* no SO_REUSEPORT: one owner */
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)GW_HTTP_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->daemon == NULL) {
        gw_log(GW_LOG_ERROR, "listen_failed host=%s port=%u", cfg->listen_host,
               cfg->listen_port);
        free(h);
        return NULL;
    }
    gw_log(GW_LOG_INFO, "listening host=%s port=%u", cfg->listen_host,
           cfg->listen_port);
    return h;
}

void gw_http_quiesce(gw_http_t *http) {
    /* libmicrohttpd's thread may still use the descriptor: shut it down so
     * that new connections are refused, close it after MHD_stop_daemon. */
    http->quiesced_fd = MHD_quiesce_daemon(http->daemon);
    if (http->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(http->quiesced_fd, SHUT_RDWR);
}

void gw_http_stop(gw_http_t *http) {
    struct timespec tick = {0, 5 * 1000000L};
    int i;

    if (http == NULL)
        return;
    /* The AMQP thread has finished every call, but libmicrohttpd writes the
     * answers of resumed connections on a later turn of its loop, and
     * MHD_stop_daemon closes whatever is not written yet: give it up to
     * 2 s to send them. */
    for (i = 0; i < 400 && atomic_load(&http->unanswered) > 0; i++)
        nanosleep(&tick, NULL);
    MHD_stop_daemon(http->daemon);
    if (http->quiesced_fd != MHD_INVALID_SOCKET)
        close(http->quiesced_fd);
    free(http);
}
