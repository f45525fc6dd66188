/* http.c - the HTTP server: libmicrohttpd's daemon, its loop, the life of
 * each connection and request, and the graceful stop.  What a request is
 * answered is handlers.c's.
 *
 * The HTTP thread is ours: it runs libmicrohttpd's epoll loop (external
 * polling) so that stopping can look at every connection between two turns
 * of the loop, when libmicrohttpd is not reading.  All callbacks run on that
 * thread, except gw_http_call_done, which runs on the AMQP thread and only
 * resumes. */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "handlers.h"
#include "headq.h"
#include "hostport.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"

/* Per-connection memory for the request line, headers and response headers
 * (libmicrohttpd clears it after every request on a kept-alive connection,
 * so it is both RSS per idle connection and work per request).  8 KiB is
 * the common request-header limit (nginx's large buffer); bigger headers
 * get 431. */
#define GW_HTTP_CONN_MEMORY 8192

/* GnuTLS priorities for HTTPS: its defaults, but TLS 1.2 and 1.3 only. */
#define GW_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* How far stopping has got; main moves it forward, the HTTP thread acts. */
enum { PHASE_RUN, PHASE_DRAIN, PHASE_FINISH };

/* One open connection.  It is idle while no request on it has a request
 * line yet: only then may stopping close it, because nothing of a new
 * request has been taken from it.  While its head is due (a new
 * connection's first request, or any request once its line is in) it is
 * queued in heads. */
typedef struct gw_conn {
    cm_headq_node_t head; /* first: a due node is its connection */
    struct gw_conn *prev, *next;
    int fd;
    int active;  /* a request line was read; its answer is not written */
    int closing; /* shut down by us (drain, 408); libmicrohttpd closes it */
} conn_t;

struct gw_http {
    gw_handler_ctx_t hc; /* first: a request's ctx pointer is its server */
    struct MHD_Daemon *daemon;
    pthread_t thread;
    int started;
    int tls;                 /* HTTPS: nothing may be written beside MHD */
    int starting;            /* in MHD_start_daemon: keep its first error */
    char start_error[256];   /* that error, for the listen_failed line */
    int wake_fd;             /* -> HTTP thread: a resume, or the phase moved */
    atomic_int wake_pending; /* wake_fd written and not read yet */
    atomic_int phase;        /* PHASE_*; written by main */

    /* HTTP thread only */
    conn_t *conns;    /* every open connection */
    cm_headq_t heads; /* connections whose request head is due */
    unsigned nconns, nactive;
};

int gw_http_conn_fd(const struct gw_conn *conn) {
    return conn != NULL ? conn->fd : -1;
}

static void head_due(gw_http_t *h, conn_t *k) {
    cm_headq_push(&h->heads, &k->head,
                  cm_now_ms() + (int64_t)h->hc.cfg->header_timeout_s * 1000);
}

/* Publishes the connection counts for /metrics. */
static void counts_changed(gw_http_t *h) {
    atomic_store_explicit(&h->hc.metrics->http_connections, h->nconns,
                          memory_order_relaxed);
    atomic_store_explicit(&h->hc.metrics->http_active, h->nactive,
                          memory_order_relaxed);
}

/* libmicrohttpd has read a request line: from here on the connection owes
 * an answer.  Returns the request's context. */
static void *on_request_line(void *cls, const char *uri,
                             struct MHD_Connection *c) {
    gw_http_t *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    req_t *r = calloc(1, sizeof(*r));
    size_t len = strlen(uri);

    if (r == NULL)
        return NULL;
    /* The target as received: libmicrohttpd decodes it in place later. */
    r->target =
        len < sizeof(r->target_inline) ? r->target_inline : malloc(len + 1);
    if (r->target == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->target, uri, len + 1);
    r->h = &h->hc;
    r->start_us = cm_now_us();
    r->conn = ci != NULL ? ci->socket_context : NULL;
    if (r->conn != NULL && !r->conn->active) {
        r->conn->active = 1;
        h->nactive++;
        counts_changed(h);
    }
    if (r->conn != NULL) /* a new connection's head is due already */
        head_due(h, r->conn);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx) {
    gw_http_t *h = cls;
    req_t *r = *ctx;

    if (r == NULL) /* out of memory at the request line */
        return MHD_NO;
    if (!r->seen) { /* headers are in; the body (if any) is not */
        r->seen = 1;
        if (r->conn != NULL)
            cm_headq_remove(&h->heads, &r->conn->head);
        snprintf(r->method, sizeof(r->method), "%s", method);
        snprintf(r->path, sizeof(r->path), "%s", url); /* log escapes */
        gw_handler_begin(&h->hc, c, &r->call);
        return gw_handler_check_head(&h->hc, c, r, url, method, version);
    }
    if (*upload_size != 0) { /* a piece of the body */
        size_t size = *upload_size;

        *upload_size = 0;
        return gw_handler_body(c, r, upload, size, url);
    }
    if (r->status != 0) /* answered when the head came in */
        return MHD_YES;
    if (r->state == ST_WAITING) { /* resumed by the AMQP thread */
        r->state = ST_DONE;
        return gw_handler_outcome(c, r, url);
    }
    return gw_handler_route(&h->hc, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode why) {
    gw_http_t *http = cls;
    req_t *r = *ctx;

    if (r == NULL)
        return;
    *ctx = NULL;
    if (r->conn != NULL && r->conn->active) {
        r->conn->active = 0;
        http->nactive--;
        counts_changed(http);
    }
    if (!r->seen) { /* libmicrohttpd refused the head itself */
        if (r->conn != NULL)
            cm_headq_remove(&http->heads, &r->conn->head);
        gw_handler_done(&http->hc, r);
        free(r);
        return;
    }
    /* Probes and scrapes that succeed would drown the other lines. */
    {
        cm_log_t l;

        cm_log_begin(&l,
                     (r->endpoint == GW_EP_HEALTHZ ||
                      r->endpoint == GW_EP_READYZ ||
                      r->endpoint == GW_EP_METRICS) &&
                             r->status < 400
                         ? CM_LOG_DEBUG
                         : CM_LOG_INFO,
                     "request");
        cm_log_kv(&l, "method", "%s", r->method);
        cm_log_kv(&l, "path", "%s", r->path);
        if (r->match.route != NULL)
            cm_log_kv(&l, "route", "%s", r->match.route->name);
        cm_log_kv(&l, "status", "%d", r->status);
        cm_log_kv(&l, "dur_ms", "%.3f",
                  (double)(cm_now_us() - r->start_us) / 1000.0);
        cm_log_kv(&l, "request_id", "%s", r->call.request_id);
        if (r->call.correlation_id[0] != '\0')
            cm_log_kv(&l, "corr", "%s", r->call.correlation_id);
        cm_log_end(&l);
    }
    /* An unready gateway answering its probe is not a failed call. */
    {
        int64_t dur = cm_now_us() - r->start_us;

        gw_metrics_request(http->hc.metrics, r->status,
                           r->endpoint == GW_EP_READYZ ? GW_E_OK : r->call.err,
                           dur);
        if (r->match.route != NULL)
            gw_metrics_route(http->hc.metrics,
                             r->table->metrics[r->match.route->index],
                             r->status, r->call.err, dur);
    }
    gw_handler_done(&http->hc, r);
    free(r);
}

/* Keeps the list of open connections that stopping walks. */
static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_ctx,
                          enum MHD_ConnectionNotificationCode what) {
    gw_http_t *h = cls;
    const union MHD_ConnectionInfo *ci;
    conn_t *k;

    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        k = calloc(1, sizeof(*k));
        if (k == NULL)
            return; /* not tracked: stopping cannot close it early */
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci != NULL ? ci->connect_fd : -1;
        k->next = h->conns;
        if (h->conns != NULL)
            h->conns->prev = k;
        h->conns = k;
        h->nconns++;
        counts_changed(h);
        head_due(h, k);
        *socket_ctx = k;
        return;
    }
    k = *socket_ctx;
    if (k == NULL)
        return;
    if (k->active) /* cannot happen: the request completes first */
        h->nactive--;
    cm_headq_remove(&h->heads, &k->head);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    h->nconns--;
    counts_changed(h);
    free(k);
    *socket_ctx = NULL;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s) {
    return gw_unescape(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    gw_http_t *h = cls;

    if (h->starting && h->start_error[0] == '\0') { /* main thread */
        va_list copy;
        size_t n;

        va_copy(copy, ap);
        vsnprintf(h->start_error, sizeof(h->start_error), fmt, copy);
        va_end(copy);
        n = strlen(h->start_error);
        if (n > 0 && h->start_error[n - 1] == '\n')
            h->start_error[n - 1] = '\0';
    }
    cm_log_vtext(CM_LOG_WARN, "http_error", "text", fmt, ap);
}

/* --- the HTTP thread ---------------------------------------------------- */

/* Closes every idle connection.  Runs between two turns of libmicrohttpd's
 * loop, so it cannot race a read: a connection that is idle here has
 * nothing of a new request taken from it, and what its client sends from
 * now on is never read (HTTP lets a server close an idle connection; the
 * client retries).  libmicrohttpd sees the shutdown on its next turn and
 * closes the connection. */
static void close_idle(gw_http_t *h) {
    conn_t *k;

    for (k = h->conns; k != NULL; k = k->next)
        if (!k->active && !k->closing && k->fd >= 0) {
            shutdown(k->fd, SHUT_RDWR);
            k->closing = 1;
        }
}

/* Answers 408 to every connection whose request head is overdue, and
 * closes it (slowloris: a head sent a byte at a time never finishes, and
 * libmicrohttpd's idle timeout restarts with every byte).  libmicrohttpd
 * has queued nothing on such a connection, so writing the answer
 * straight to the socket interleaves with nothing; over TLS only
 * libmicrohttpd's session may write, so there it is closed unanswered. */
static void expire_heads(gw_http_t *h, int64_t now) {
    cm_headq_node_t *n;
    char detail[96], request_id[GW_ID_HEX_LEN + 1];
    uint8_t id[GW_ID_LEN];

    while ((n = cm_headq_pop_due(&h->heads, now)) != NULL) {
        conn_t *k = (conn_t *)n;
        cm_log_t l;

        if (k->closing || k->fd < 0)
            continue;
        snprintf(detail, sizeof(detail),
                 "the request head did not arrive within %u s",
                 h->hc.cfg->header_timeout_s);
        gw_idgen_next(&h->hc.ids, id);
        gw_id_hex(id, request_id);
        if (!h->tls) /* over TLS, plain bytes would only garble it */
            gw_handler_send_problem(k->fd, GW_E_REQUEST_TIMEOUT, detail, NULL,
                                    request_id);
        shutdown(k->fd, SHUT_RDWR);
        k->closing = 1;
        gw_metrics_request(h->hc.metrics, 408, GW_E_REQUEST_TIMEOUT,
                           (int64_t)h->hc.cfg->header_timeout_s * 1000000);
        cm_log_begin(&l, CM_LOG_INFO, "request_head_timeout");
        cm_log_kv(&l, "after_s", "%u", h->hc.cfg->header_timeout_s);
        cm_log_kv(&l, "request_id", "%s", request_id);
        cm_log_end(&l);
    }
}

/* Sleeps until libmicrohttpd has work, main moved the phase, a request
 * head falls due, or libmicrohttpd's own next timeout. */
static void wait_for_work(gw_http_t *h, int mhd_fd) {
    struct pollfd fds[2] = {{mhd_fd, POLLIN, 0}, {h->wake_fd, POLLIN, 0}};
    int64_t head_ms = cm_headq_next_due(&h->heads);
    MHD_UNSIGNED_LONG_LONG mhd_ms;
    int timeout = -1;
    uint64_t v;

    if (MHD_get_timeout(h->daemon, &mhd_ms) == MHD_YES)
        timeout = mhd_ms > INT32_MAX ? INT32_MAX : (int)mhd_ms;
    if (head_ms != INT64_MAX) {
        head_ms -= cm_now_ms();
        if (head_ms < 0)
            head_ms = 0;
        if (timeout < 0 || head_ms < timeout)
            timeout = (int)head_ms;
    }
    if (poll(fds, 2, timeout) > 0 && (fds[1].revents & POLLIN)) {
        (void)!read(h->wake_fd, &v, sizeof(v));
        /* Before MHD_run: a resume after this store writes again. */
        atomic_store(&h->wake_pending, 0);
    }
}

static void start_drain(gw_http_t *h) {
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);

    /* We run the loop, so libmicrohttpd is done with the listening socket:
     * closing it refuses new connections at once. */
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    h->hc.draining = 1;
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "draining");
        cm_log_kv(&l, "connections", "%u", h->nconns);
        cm_log_kv(&l, "active", "%u", h->nactive);
        cm_log_end(&l);
    }
}

/* Puts a reloaded route table in use, between two turns of the loop. */
static void adopt_routes(gw_http_t *h) {
    size_t n;

    if (atomic_load(&h->hc.offered) == NULL)
        return;
    if (gw_handler_adopt(&h->hc) != 0)
        return; /* logged; the table in use stays */
    n = gw_routes_count(h->hc.table->routes);
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "routes_loaded");
        cm_log_kv(&l, "routes", "%zu", n);
        cm_log_end(&l);
    }
}

static void *http_main(void *arg) {
    gw_http_t *h = arg;
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    int mhd_fd = di->epoll_fd;
    int64_t finish_by = 0;

    for (;;) {
        int phase = atomic_load(&h->phase);

        adopt_routes(h);
        if (phase >= PHASE_DRAIN && !h->hc.draining)
            start_drain(h);
        if (h->hc.draining)
            close_idle(h);
        if (phase == PHASE_FINISH) {
            /* Every call is done, so every suspended request is resumed;
             * what is left are answers being written and request heads
             * being read.  Those get the idle timeout, as always. */
            if (finish_by == 0)
                finish_by =
                    cm_now_ms() + (int64_t)h->hc.cfg->idle_timeout_s * 1000;
            if (h->nactive == 0 || cm_now_ms() >= finish_by)
                break;
        }
        wait_for_work(h, mhd_fd);
        MHD_run(h->daemon);
        expire_heads(h, cm_now_ms());
    }
    if (h->nactive > 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "stopped_with_unanswered");
        cm_log_kv(&l, "requests", "%u", h->nactive);
        cm_log_end(&l);
    }
    /* In this thread, right after the check: nothing is read in between. */
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    return NULL;
}

/* --- public -------------------------------------------------------------- */

/* Wakes the HTTP thread, unless a wake-up is already on its way. */
static void wake(gw_http_t *h) {
    uint64_t one = 1;

    if (!atomic_exchange(&h->wake_pending, 1))
        (void)!write(h->wake_fd, &one, sizeof(one));
}

void gw_http_call_done(gw_call_t *call) {
    req_t *r = (req_t *)call;

    /* libmicrohttpd does not wake a loop it does not run: we do. */
    MHD_resume_connection(call->http);
    wake((gw_http_t *)r->h);
}

static void set_phase(gw_http_t *h, int phase) {
    atomic_store(&h->phase, phase);
    wake(h);
}

/* The listen line; error is libmicrohttpd's reason, or NULL. */
static void log_listen(cm_log_level_t level, const char *msg,
                       const gw_http_t *h, const char *error) {
    const gw_config_t *cfg = h->hc.cfg;
    cm_log_t l;

    cm_log_begin(&l, level, msg);
    cm_log_kv(&l, "host", "%s", cfg->listen_host);
    cm_log_kv(&l, "port", "%u", cfg->listen_port);
    cm_log_kv(&l, "tls", "%s", h->tls ? "on" : "off");
    cm_log_kv(&l, "auth", "%s", cfg->auth_tokens_file[0] ? "tokens" : "off");
    cm_log_kv(&l, "cors_origins", "%u", cfg->cors.n);
    if (error != NULL && *error != '\0')
        cm_log_kv(&l, "error", "%s", error);
    cm_log_end(&l);
}

/* Anyone who reaches a non-loopback address may call the API unless
 * tokens are required: said loudly, once, at start. */
static void warn_if_open(const gw_http_t *h, const struct sockaddr *addr) {
    const gw_config_t *cfg = h->hc.cfg;
    cm_log_t l;

    if (cfg->auth_tokens_file[0] != '\0' || cm_addr_is_loopback(addr))
        return;
    cm_log_begin(&l, CM_LOG_WARN, "unauthenticated");
    cm_log_kv(&l, "host", "%s", cfg->listen_host);
    cm_log_kv(&l, "port", "%u", cfg->listen_port);
    cm_log_kv(&l, "detail", "%s",
              "NO AUTHENTICATION: anyone who can reach this address can "
              "call the API; require tokens with --auth-tokens-file, or "
              "listen on 127.0.0.1 behind a proxy that checks callers");
    cm_log_end(&l);
}

static void free_tokens(void *set) {
    gw_auth_free(set);
}

gw_http_t *gw_http_start(const gw_config_t *cfg, gw_rpc_t *rpc,
                         gw_metrics_t *metrics, gw_routes_t *routes,
                         gw_auth_t *tokens, const gw_tls_pem_t *tls) {
    struct addrinfo hints = {0}, *ai = NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    char port[8];
    gw_http_t *h;
    int rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        gw_auth_free(tokens);
        return NULL;
    }
    h->hc.cfg = cfg;
    h->hc.rpc = rpc;
    h->hc.metrics = metrics;
    gw_latest_init(&h->hc.tokens, tokens, free_tokens);
    atomic_init(&h->hc.unready, 0);
    atomic_init(&h->phase, PHASE_RUN);
    atomic_init(&h->wake_pending, 0);
    gw_idgen_init(&h->hc.ids);
    atomic_init(&h->hc.offered, NULL);
    gw_handler_offer(&h->hc, routes);
    if (gw_handler_adopt(&h->hc) != 0) {
        gw_latest_destroy(&h->hc.tokens);
        free(h);
        return NULL;
    }
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "http_init_failed");
        cm_log_kv(&l, "error", "%s", strerror(errno));
        cm_log_end(&l);
        gw_handler_release(&h->hc, h->hc.table);
        gw_latest_destroy(&h->hc.tokens);
        free(h);
        return NULL;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    rc = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (rc != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "listen_resolve_failed");
        cm_log_kv(&l, "host", "%s", cfg->listen_host);
        cm_log_kv(&l, "error", "%s", gai_strerror(rc));
        cm_log_end(&l);
        goto fail;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (tls != NULL) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            log_listen(CM_LOG_ERROR, "listen_failed", h,
                       "this libmicrohttpd was built without TLS");
            freeaddrinfo(ai);
            goto fail;
        }
        h->tls = 1;
        flags |= MHD_USE_TLS;
        tls_opts[0] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls->cert};
        tls_opts[1] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls->key};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                              (void *)GW_TLS_PRIORITIES};
    }
    h->starting = 1;
    h->daemon = MHD_start_daemon(
        flags, cfg->listen_port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, or it warns */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, /* no SO_REUSEPORT: one owner */
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)GW_HTTP_CONN_MEMORY,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h, /* then TLS, if on: */
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    h->starting = 0;
    if (h->daemon == NULL) {
        /* A key that does not match the certificate ends up here too. */
        log_listen(CM_LOG_ERROR, "listen_failed", h, h->start_error);
        freeaddrinfo(ai);
        goto fail;
    }
    rc = pthread_create(&h->thread, NULL, http_main, h);
    if (rc != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "thread_create_failed");
        cm_log_kv(&l, "error", "%s", strerror(rc));
        cm_log_end(&l);
        MHD_stop_daemon(h->daemon);
        freeaddrinfo(ai);
        goto fail;
    }
    h->started = 1;
    log_listen(CM_LOG_INFO, "listening", h, NULL);
    warn_if_open(h, ai->ai_addr);
    freeaddrinfo(ai);
    return h;
fail:
    close(h->wake_fd);
    gw_handler_release(&h->hc, h->hc.table);
    gw_latest_destroy(&h->hc.tokens);
    free(h);
    return NULL;
}

void gw_http_reload(gw_http_t *http, gw_routes_t *routes) {
    gw_handler_offer(&http->hc, routes);
    wake(http);
}

void gw_http_set_tokens(gw_http_t *http, gw_auth_t *tokens) {
    gw_latest_put(&http->hc.tokens, tokens);
}

void gw_http_unready(gw_http_t *http) {
    atomic_store(&http->hc.unready, 1);
}

void gw_http_drain(gw_http_t *http) {
    set_phase(http, PHASE_DRAIN);
}

void gw_http_stop(gw_http_t *http) {
    if (http == NULL)
        return;
    set_phase(http, PHASE_FINISH);
    if (http->started)
        pthread_join(http->thread, NULL);
    close(http->wake_fd);
    gw_handler_offer(&http->hc, NULL); /* one offered too late */
    gw_handler_release(&http->hc, http->hc.table);
    gw_latest_destroy(&http->hc.tokens);
    free(http);
}
