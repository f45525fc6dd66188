/* metrics_http.c - the only worker file that includes <microhttpd.h>: GET
 * (or HEAD) /metrics answers the Prometheus text, other paths 404, other
 * methods 405.
 *
 * A scrape must get through while other clients hold connections open or
 * trickle their requests a byte at a time (slowloris): enough connections
 * (FW_METRICS_CONNECTIONS), at most a quarter of them from one address,
 * and a deadline for a whole request (FW_METRICS_REQUEST_S) from the
 * moment its connection opens; libmicrohttpd's idle timeout restarts with
 * every byte, so it cannot be that deadline.  Every answer closes its
 * connection: a scraper opens one per scrape, and no connection waits
 * idle between requests.
 *
 * The metrics thread is ours: it runs libmicrohttpd's epoll loop (external
 * polling) and expires the requests that are overdue between two turns of
 * it; every callback runs on it.  Start and stop run on the main thread. */
#include "metrics_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "headq.h"
#include "log.h"
#include "options.h"

#define FW_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define FW_TEXT_TYPE    "text/plain; charset=utf-8"
/* Scrapers, people with curl, and room for clients that misbehave: each
 * costs a descriptor and at most FW_METRICS_CONN_MEMORY. */
#define FW_METRICS_CONNECTIONS 256
/* One address holds at most this many: a scraper elsewhere always finds
 * room, however many connections one client opens. */
#define FW_METRICS_PER_IP (FW_METRICS_CONNECTIONS / 4)
/* A whole request (line, headers, any body) must arrive within this from
 * its connection's start; then 408 and close. */
#define FW_METRICS_REQUEST_S 5
/* Idle connections (nothing arriving at all) are closed after this. */
#define FW_METRICS_IDLE_S      10
#define FW_METRICS_CONN_MEMORY 16384

/* One open connection; queued in due until its request is answered. */
typedef struct {
    cm_headq_node_t due; /* first: a due node is its connection */
    int fd;
} fw_conn_t;

struct fw_metrics_http {
    fw_metrics_t *metrics;
    const char *version;
    struct MHD_Daemon *daemon;
    pthread_t thread;
    int started;
    int wake_fd;     /* main -> metrics thread: stop */
    atomic_int stop; /* set by main */
    cm_headq_t due;  /* metrics thread only: requests not answered yet */
};

/* Marks a request whose headers were seen, in *ctx. */
static int fw_seen;

static fw_conn_t *fw_conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci != NULL ? ci->socket_context : NULL;
}

static enum MHD_Result fw_queue(fw_metrics_http_t *h, struct MHD_Connection *c,
                                unsigned status, const char *type,
                                struct MHD_Response *resp) {
    fw_conn_t *k = fw_conn_of(c);
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    if (k != NULL) /* answered: no longer due */
        cm_headq_remove(&h->due, &k->due);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result fw_text(fw_metrics_http_t *h, struct MHD_Connection *c,
                               unsigned status, const char *text) {
    return fw_queue(h, c, status, FW_TEXT_TYPE,
                    MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                    MHD_RESPMEM_PERSISTENT));
}

static enum MHD_Result fw_on_request(void *cls, struct MHD_Connection *c,
                                     const char *url, const char *method,
                                     const char *version, const char *upload,
                                     size_t *upload_size, void **ctx) {
    fw_metrics_http_t *h = cls;
    struct MHD_Response *resp;
    size_t len = 0;
    char *body;

    if (*ctx == NULL) { /* headers are in; answer once any body is read */
        *ctx = &fw_seen;
        return MHD_YES;
    }
    if (*upload_size != 0) { /* nothing takes a body: discard it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0)
        return fw_text(h, c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return fw_text(h, c, MHD_HTTP_METHOD_NOT_ALLOWED,
                       "method not allowed: GET or HEAD\n");
    body = fw_metrics_render(h->metrics, h->version, &len);
    if (body == NULL)
        return fw_text(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        free(body);
    return fw_queue(h, c, MHD_HTTP_OK, FW_METRICS_TYPE, resp);
}

/* Tracks each connection: due from its start until its answer. */
static void fw_on_connection(void *cls, struct MHD_Connection *c,
                             void **socket_ctx,
                             enum MHD_ConnectionNotificationCode what) {
    fw_metrics_http_t *h = cls;
    const union MHD_ConnectionInfo *ci;
    fw_conn_t *k;

    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        k = calloc(1, sizeof(*k));
        if (k == NULL)
            return; /* not tracked: libmicrohttpd's idle timeout only */
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci != NULL ? ci->connect_fd : -1;
        cm_headq_push(&h->due, &k->due,
                      cm_now_ms() + (int64_t)FW_METRICS_REQUEST_S * 1000);
        *socket_ctx = k;
        return;
    }
    k = *socket_ctx;
    if (k == NULL)
        return;
    cm_headq_remove(&h->due, &k->due);
    free(k);
    *socket_ctx = NULL;
}

/* Answers 408 to every connection whose request is overdue and shuts it
 * down; libmicrohttpd closes it on its next turn.  Nothing was queued on
 * such a connection, so the answer interleaves with nothing. */
static void fw_expire(fw_metrics_http_t *h, int64_t now) {
    static const char body[] = "the request did not arrive within " CM_STR(
        FW_METRICS_REQUEST_S) " s\n";
    char out[320];
    cm_headq_node_t *n;
    int len;

    len = snprintf(out, sizeof(out),
                   "HTTP/1.1 408 Request Timeout\r\n"
                   "Content-Type: " FW_TEXT_TYPE "\r\n"
                   "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                   "Connection: close\r\n\r\n%s",
                   sizeof(body) - 1, body);
    while ((n = cm_headq_pop_due(&h->due, now)) != NULL) {
        fw_conn_t *k = (fw_conn_t *)n;
        cm_log_t l;

        if (k->fd < 0)
            continue;
        (void)!send(k->fd, out, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(k->fd, SHUT_RDWR);
        cm_log_begin(&l, CM_LOG_INFO, "metrics_request_timeout");
        cm_log_kv(&l, "after_s", "%u", (unsigned)FW_METRICS_REQUEST_S);
        cm_log_end(&l);
    }
}

/* Sleeps until libmicrohttpd has work, main asks to stop, a request falls
 * due, or libmicrohttpd's own next timeout. */
static void fw_wait(fw_metrics_http_t *h, int mhd_fd) {
    struct pollfd fds[2] = {{mhd_fd, POLLIN, 0}, {h->wake_fd, POLLIN, 0}};
    int64_t due_ms = cm_headq_next_due(&h->due);
    MHD_UNSIGNED_LONG_LONG mhd_ms;
    int timeout = -1;

    if (MHD_get_timeout(h->daemon, &mhd_ms) == MHD_YES)
        timeout = mhd_ms > INT32_MAX ? INT32_MAX : (int)mhd_ms;
    if (due_ms != INT64_MAX) {
        due_ms -= cm_now_ms();
        if (due_ms < 0)
            due_ms = 0;
        if (timeout < 0 || due_ms < timeout)
            timeout = (int)due_ms;
    }
    (void)poll(fds, 2, timeout);
}

static void *fw_metrics_main(void *arg) {
    fw_metrics_http_t *h = arg;
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);

    while (!atomic_load(&h->stop)) {
        fw_wait(h, di->epoll_fd);
        MHD_run(h->daemon);
        fw_expire(h, cm_now_ms());
    }
    return NULL;
}

static void fw_on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void fw_on_mhd_log(void *cls, const char *fmt, va_list ap) {
    cm_log_vtext(CM_LOG_WARN, "metrics_http_error", "error", fmt, ap);
}

static void fw_log_listen(cm_log_level_t level, const char *msg,
                          const char *host, uint16_t port, const char *error) {
    cm_log_t l;

    cm_log_begin(&l, level, msg);
    cm_log_str(&l, "host", host, strlen(host));
    cm_log_kv(&l, "port", "%u", (unsigned)port);
    if (error != NULL)
        cm_log_str(&l, "error", error, strlen(error));
    cm_log_end(&l);
}

static void fw_free(fw_metrics_http_t *h) {
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon); /* closes and forgets every connection */
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    free(h);
}

fw_metrics_http_t *fw_metrics_http_start(const char *host, uint16_t port,
                                         fw_metrics_t *m, const char *version) {
    struct addrinfo hints, *ai = NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    sigset_t block, old;
    fw_metrics_http_t *h;
    char service[8];
    int rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      "out of memory");
        return NULL;
    }
    h->metrics = m;
    h->version = version;
    atomic_init(&h->stop, 0);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      strerror(errno));
        fw_free(h);
        return NULL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      gai_strerror(rc));
        fw_free(h);
        return NULL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, fw_on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        fw_on_mhd_log, h,                  /* first, or it warns */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, /* no SO_REUSEPORT: one owner */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)FW_METRICS_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)FW_METRICS_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)FW_METRICS_IDLE_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)FW_METRICS_CONN_MEMORY,
        MHD_OPTION_NOTIFY_CONNECTION, fw_on_connection, h, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->daemon == NULL) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      "cannot listen (address in use or not ours?)");
        fw_free(h);
        return NULL;
    }
    /* The thread inherits our signal mask: block SIGTERM and SIGINT while
     * it starts, so they keep reaching the main thread. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(&h->thread, NULL, fw_metrics_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      strerror(rc));
        fw_free(h);
        return NULL;
    }
    h->started = 1;
    fw_log_listen(CM_LOG_INFO, "metrics_listening", host, port, NULL);
    return h;
}

void fw_metrics_http_stop(fw_metrics_http_t *h) {
    uint64_t one = 1;

    if (h == NULL)
        return;
    if (h->started) {
        atomic_store(&h->stop, 1);
        (void)!write(h->wake_fd, &one, sizeof(one));
        pthread_join(h->thread, NULL);
    }
    fw_free(h); /* the thread is gone: its connections are ours to close */
}
