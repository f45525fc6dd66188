/* metrics_http.c - the only worker file that includes <microhttpd.h>: GET
 * (or HEAD) /metrics answers the Prometheus text, other paths 404, other
 * methods 405.  Callbacks run on libmicrohttpd's one internal polling
 * thread; start and stop run on the main thread. */
#include "metrics_http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define FW_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define FW_TEXT_TYPE    "text/plain; charset=utf-8"
/* A scraper or two, and a person with curl: a few connections suffice. */
#define FW_METRICS_CONNECTIONS 16
#define FW_METRICS_IDLE_S      10

struct fw_metrics_http {
    fw_metrics_t *metrics;
    const char *version;
    struct MHD_Daemon *daemon;
};

/* Marks a request whose headers were seen, in *ctx. */
static int fw_seen;

static enum MHD_Result fw_queue(struct MHD_Connection *c, unsigned status,
                                const char *type, struct MHD_Response *resp) {
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result fw_text(struct MHD_Connection *c, unsigned status,
                               const char *text) {
    return fw_queue(c, status, FW_TEXT_TYPE,
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
        return fw_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return fw_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                       "method not allowed: GET or HEAD\n");
    body = fw_metrics_render(h->metrics, h->version, &len);
    if (body == NULL)
        return fw_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        free(body);
    return fw_queue(c, MHD_HTTP_OK, FW_METRICS_TYPE, resp);
}

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

fw_metrics_http_t *fw_metrics_http_start(const char *host, uint16_t port,
                                         fw_metrics_t *m, const char *version) {
    struct addrinfo hints, *ai = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
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
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      gai_strerror(rc));
        free(h);
        return NULL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The server's thread inherits our signal mask: block SIGTERM and SIGINT
     * while it starts, so they keep reaching the main thread. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    h->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, fw_on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        fw_on_mhd_log, h,                  /* first, or it warns */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, /* no SO_REUSEPORT: one owner */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)FW_METRICS_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)FW_METRICS_IDLE_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (h->daemon == NULL) {
        fw_log_listen(CM_LOG_ERROR, "metrics_listen_failed", host, port,
                      "cannot listen (address in use or not ours?)");
        free(h);
        return NULL;
    }
    fw_log_listen(CM_LOG_INFO, "metrics_listening", host, port, NULL);
    return h;
}

void fw_metrics_http_stop(fw_metrics_http_t *h) {
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
