/* main.c - fib-worker: consume Fibonacci requests from an AMQP queue, reply
 * F(n) or a typed error to each request's reply_to, then ack; reconnect for
 * ever.  One thread owns the one connection (link.c); signal handlers set a
 * flag.  With --metrics-listen, libmicrohttpd's thread reads the counters
 * this thread records (metrics.h: atomics, nothing else is shared). */
#include <amqp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "delivery.h"
#include "fib.h"
#include "fibrpc.h"
#include "link.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "urls.h"

/* How long one wait for a delivery lasts, so a signal is seen this soon. */
#define FW_POLL_US 200000

/* The signal that asked us to stop, 0 while running. */
static volatile sig_atomic_t fw_stop_signal;

typedef struct {
    const fw_config_t *cfg;
    fw_metrics_t *metrics;
    fw_link_t link;
} fw_worker_t;

static void fw_on_signal(int sig) {
    fw_stop_signal = sig;
}

/* Sleeps ms, waking early when a stop signal arrives. */
static void fw_sleep_ms(long ms) {
    while (ms > 0 && !fw_stop_signal) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};

        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void fw_log_corr(cm_log_t *l, const amqp_basic_properties_t *in) {
    if (in->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        cm_log_str(l, "corr", in->correlation_id.bytes, in->correlation_id.len);
}

static void fw_log_request_id(cm_log_t *l, const amqp_table_entry_t *req_id) {
    if (req_id != NULL && (req_id->value.kind == AMQP_FIELD_KIND_UTF8 ||
                           req_id->value.kind == AMQP_FIELD_KIND_BYTES))
        cm_log_str(l, "request_id", req_id->value.value.bytes.bytes,
                   req_id->value.value.bytes.len);
}

/* Answers one delivery: computes (unless it is a poison request, see
 * fw_delivery_poisoned), acks, then publishes the reply.  Ack first: a
 * reply the broker cannot deliver (its caller's node died) may make the
 * broker close our connection, and an unacked request would then come back
 * and do the same to the next worker, for ever; its caller is gone anyway.
 * Returns -1 when the connection failed (fw_link_error says how); a request
 * not yet acked then goes to a worker again. */
static int fw_handle(fw_worker_t *w, const cm_amqp_msg_t *m) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_bytes_t body = amqp_empty_bytes;
    const amqp_basic_properties_t *in;
    fw_delivery_t d;
    fw_request_t req;
    char *text = NULL;
    double ms = 0;
    int status;
    cm_log_t l;

    fw_delivery_read(&d, &m->message, m->body_size);
    in = d.props;
    if (!fw_delivery_has_reply_to(&d)) {
        cm_log_begin(&l, CM_LOG_WARN, "dropped");
        cm_log_kv(&l, "reason", "no reply_to");
        fw_log_corr(&l, in);
        fw_log_request_id(&l, d.request_id);
        cm_log_end(&l);
        if (fw_link_ack(&w->link, m) != 0)
            return -1;
        fw_metrics_dropped(w->metrics);
        return 0;
    }

    if (!fw_delivery_poisoned(&d, w->cfg->delivery_limit, &req))
        fw_delivery_request(&d, w->cfg->max_n, cm_wall_ms(), &req);
    if (req.err == FW_OK) {
        int64_t start = cm_now_us();

        if (fw_fib_compute(req.n, &text, &body.len) != 0) {
            req.err = FW_ERR_internal;
            snprintf(req.message, sizeof(req.message),
                     "out of memory computing F(n)");
        }
        ms = (double)(cm_now_us() - start) / 1e3;
    }
    if (req.err == FW_OK)
        body.bytes = text;
    else
        fw_delivery_error_body(&req, &text, &body);
    fw_delivery_reply_props(&d, req.err, headers, &out);

    if (fw_link_ack(&w->link, m) != 0) {
        free(text);
        return -1;
    }
    status = fw_link_publish(&w->link, in->reply_to, &out, body);
    free(text);
    if (status != 0)
        return -1;
    /* Counted once acked: a request redelivered after a failure counts once. */
    fw_metrics_reply(w->metrics, req.err, ms / 1e3);

    if (req.err == FW_OK) {
        cm_log_begin(&l, CM_LOG_INFO, "served");
        cm_log_kv(&l, "n", "%" PRIu32, req.n);
        fw_log_corr(&l, in);
        cm_log_kv(&l, "ms", "%.3f", ms);
        fw_log_request_id(&l, d.request_id);
    } else {
        cm_log_begin(&l,
                     fw_err_caller_fault(req.err) ? CM_LOG_INFO : CM_LOG_WARN,
                     "rejected");
        cm_log_kv(&l, "error", "%s", fw_err_name(req.err));
        fw_log_corr(&l, in);
        if (d.delivery_count != NULL)
            cm_log_kv(&l, "delivered_before", "%lld",
                      (long long)fw_delivery_count(&d));
        fw_log_request_id(&l, d.request_id);
        cm_log_str(&l, "detail", req.message, strlen(req.message));
    }
    cm_log_end(&l);
    return 0;
}

/* Serves deliveries until a stop signal (returns 0) or until the connection
 * fails (returns -1, fw_link_error says why). */
static int fw_serve(fw_worker_t *w) {
    while (!fw_stop_signal) {
        const cm_amqp_msg_t *m;

        switch (fw_link_next(&w->link, &m, FW_POLL_US)) {
        case FW_LINK_DELIVERY:
            if (fw_handle(w, m) != 0)
                return -1;
            break;
        case FW_LINK_IDLE:
            break;
        case FW_LINK_FAILED:
        default:
            return -1;
        }
    }
    return 0;
}

static void fw_log_node(cm_log_t *l, const fw_link_t *lk) {
    cm_log_str(l, "node", fw_link_node(lk)->node,
               strlen(fw_link_node(lk)->node));
}

static void fw_log_retry(fw_worker_t *w, const char *msg, long backoff_ms) {
    cm_log_t l;

    cm_log_begin(&l, CM_LOG_WARN, msg);
    fw_log_node(&l, &w->link);
    cm_log_str(&l, "error", fw_link_error(&w->link),
               strlen(fw_link_error(&w->link)));
    cm_log_kv(&l, "retry_ms", "%ld", backoff_ms);
    cm_log_end(&l);
}

static void fw_handle_signals(void) {
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    /* A second signal while we finish the current request kills at once. */
    sa.sa_flags = SA_RESETHAND;
    sa.sa_handler = fw_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_flags = 0;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv) {
    fw_metrics_http_t *metrics_http = NULL;
    fw_metrics_t metrics;
    fw_worker_t w;
    fw_config_t cfg;
    cm_backoff_t backoff;
    char urls[CM_URL_LIST_MAX + 8 * CM_URLS_MAX];
    size_t i, used = 0;
    long wait_ms;
    cm_log_t l;

    setvbuf(stderr, NULL, _IOLBF, BUFSIZ);
    switch (fw_config_load(&cfg, argc, argv)) {
    case FW_CONFIG_OK:
        break;
    case FW_CONFIG_EXIT:
        return 0;
    case FW_CONFIG_BAD:
    default:
        return 2;
    }
    memset(&w, 0, sizeof(w));
    w.cfg = &cfg;
    fw_link_init(&w.link, &cfg);
    fw_metrics_init(&metrics);
    w.metrics = &metrics;
    fw_handle_signals();
    cm_backoff_init(&backoff, cm_random64());

    /* Every URL masked, in the (shuffled) order they will be tried. */
    urls[0] = '\0';
    for (i = 0; i < cfg.urls.n && used + 1 < sizeof(urls); i++)
        used += (size_t)snprintf(urls + used, sizeof(urls) - used, "%s%s",
                                 i > 0 ? "," : "", cfg.urls.url[i].masked);
    cm_log_begin(&l, CM_LOG_INFO, "starting");
    cm_log_kv(&l, "version", "%s", FW_VERSION);
    cm_log_str(&l, "amqp_url", urls, strlen(urls));
    cm_log_str(&l, "queue", cfg.queue, strlen(cfg.queue));
    cm_log_kv(&l, "queue_type", "%s", cfg.quorum ? "quorum" : "classic");
    if (cfg.delivery_limit > 0)
        cm_log_kv(&l, "delivery_limit", "%u", (unsigned)cfg.delivery_limit);
    cm_log_kv(&l, "prefetch", "%u", (unsigned)cfg.prefetch);
    cm_log_kv(&l, "max_n", "%" PRIu32, cfg.max_n);
    cm_log_end(&l);

    /* The operator asked for metrics: not serving them is a start-up error,
     * not something to find out when the dashboards stay empty. */
    if (cfg.metrics_host[0] != '\0') {
        metrics_http = fw_metrics_http_start(cfg.metrics_host, cfg.metrics_port,
                                             &metrics, FW_VERSION);
        if (metrics_http == NULL) {
            fw_config_free(&cfg);
            return 2;
        }
    }

    /* The same schedule as the gateway's (urls.h): after a loss the first
     * attempt goes at once, to the next node; failed attempts back off,
     * jittered, up to 2 s. */
    while (!fw_stop_signal) {
        if (fw_link_connect(&w.link) != 0) {
            wait_ms = (long)cm_backoff_next(&backoff);
            fw_log_retry(&w, "connect_failed", wait_ms);
            fw_link_next_node(&w.link);
            fw_sleep_ms(wait_ms);
            continue;
        }
        cm_backoff_reset(&backoff);
        fw_metrics_link(&metrics, 1);
        fw_metrics_node(&metrics, fw_link_node(&w.link)->node);
        cm_log_begin(&l, CM_LOG_INFO, "ready");
        fw_log_node(&l, &w.link);
        cm_log_str(&l, "url", fw_link_node(&w.link)->masked,
                   strlen(fw_link_node(&w.link)->masked));
        cm_log_str(&l, "queue", cfg.queue, strlen(cfg.queue));
        cm_log_kv(&l, "prefetch", "%u", (unsigned)cfg.prefetch);
        cm_log_end(&l);

        if (fw_serve(&w) == 0)
            break;
        fw_metrics_link(&metrics, 0);
        fw_log_retry(&w, "disconnected", 0);
        fw_link_disconnect(&w.link);
        fw_link_next_node(&w.link); /* lost: this node may be the trouble */
    }

    cm_log_begin(&l, CM_LOG_INFO, "stopping");
    cm_log_kv(&l, "signal", "%s",
              fw_stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    cm_log_end(&l);
    fw_link_disconnect(&w.link);
    fw_metrics_link(&metrics, 0);
    fw_metrics_http_stop(metrics_http);
    fw_config_free(&cfg);
    cm_log_begin(&l, CM_LOG_INFO, "stopped");
    cm_log_end(&l);
    return 0;
}
