/* metrics.c - request counters and the Prometheus text format.  Any thread
 * records; whoever serves /metrics renders. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[] = {
#define GW_X(le) le,
    GW_METRICS_BUCKETS(GW_X)
#undef GW_X
};

void gw_metrics_request(gw_metrics_t *m, int status, gw_err_t err,
                        int64_t duration_us) {
    double secs = (double)duration_us / 1e6;
    size_t i;

    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&m->by_status[status], 1,
                                  memory_order_relaxed);
    if (err != GW_E_OK && (unsigned)err < GW_E__COUNT)
        atomic_fetch_add_explicit(&m->by_problem[err], 1, memory_order_relaxed);
    for (i = 0; i < GW_METRICS_NBUCKETS && secs > bucket_le[i]; i++)
        ;
    /* Buckets are stored per interval and summed when rendered. */
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->duration_us_sum,
                              duration_us > 0 ? (uint64_t)duration_us : 0,
                              memory_order_relaxed);
}

/* A growing text buffer; on allocation failure it stops growing and
 * remembers that it failed. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} out_t;

static void put(out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...) {
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        {
            size_t cap = o->cap * 2 + (size_t)n;
            char *b = realloc(o->buf, cap);
            if (b == NULL) {
                o->failed = 1;
                return;
            }
            o->buf = b;
            o->cap = cap;
        }
    }
}

static uint64_t get(atomic_uint_fast64_t *a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void header(out_t *o, const char *name, const char *type,
                   const char *help) {
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *gw_metrics_render(gw_metrics_t *m, const gw_metrics_link_t *link,
                        const char *version, size_t *len) {
    out_t o = {malloc(8192), 0, 8192, 0};
    uint64_t cum = 0;
    size_t i;

    if (o.buf == NULL)
        return NULL;
    header(&o, "fibgw_build_info", "gauge",
           "Build information; the value is always 1.");
    put(&o, "fibgw_build_info{version=\"%s\"} 1\n", version);

    header(&o, "fibgw_http_requests_total", "counter",
           "HTTP requests answered, by status code.");
    for (i = 100; i < 600; i++)
        if (get(&m->by_status[i]) != 0)
            put(&o, "fibgw_http_requests_total{code=\"%zu\"} %llu\n", i,
                (unsigned long long)get(&m->by_status[i]));

    header(&o, "fibgw_http_problems_total", "counter",
           "Error answers, by problem code (timeout, no_server, ...).");
    for (i = 1; i < GW_E__COUNT; i++)
        put(&o, "fibgw_http_problems_total{code=\"%s\"} %llu\n",
            gw_err_code((gw_err_t)i),
            (unsigned long long)get(&m->by_problem[i]));

    header(&o, "fibgw_http_request_duration_seconds", "histogram",
           "Time from request headers to the answer being queued.");
    for (i = 0; i <= GW_METRICS_NBUCKETS; i++) {
        cum += get(&m->buckets[i]);
        if (i < GW_METRICS_NBUCKETS)
            put(&o,
                "fibgw_http_request_duration_seconds_bucket{le=\"%g\"} "
                "%llu\n",
                bucket_le[i], (unsigned long long)cum);
        else
            put(&o,
                "fibgw_http_request_duration_seconds_bucket{le=\"+Inf\"} "
                "%llu\n",
                (unsigned long long)cum);
    }
    put(&o, "fibgw_http_request_duration_seconds_sum %.6f\n",
        (double)get(&m->duration_us_sum) / 1e6);
    put(&o, "fibgw_http_request_duration_seconds_count %llu\n",
        (unsigned long long)cum);

    header(&o, "fibgw_calls_in_flight", "gauge",
           "RPC calls published and waiting for a reply.");
    put(&o, "fibgw_calls_in_flight %u\n", link->inflight);
    header(&o, "fibgw_calls_in_flight_max", "gauge",
           "Limit on calls in flight (--max-inflight).");
    put(&o, "fibgw_calls_in_flight_max %u\n", link->max_inflight);

    header(&o, "fibgw_replies_dropped_total", "counter",
           "Replies dropped: late, duplicate or unknown correlation id.");
    put(&o, "fibgw_replies_dropped_total %llu\n",
        (unsigned long long)get(&m->replies_dropped));
    header(&o, "fibgw_amqp_reconnects_total", "counter",
           "Successful AMQP connections after the first.");
    put(&o, "fibgw_amqp_reconnects_total %llu\n",
        (unsigned long long)get(&m->reconnects));
    header(&o, "fibgw_amqp_connected", "gauge",
           "1 while the AMQP connection is up.");
    put(&o, "fibgw_amqp_connected %d\n", link->connected);
    header(&o, "fibgw_amqp_blocked", "gauge",
           "1 while RabbitMQ blocks publishers (resource alarm).");
    put(&o, "fibgw_amqp_blocked %d\n", link->blocked);
    if (link->consumers >= 0) {
        header(&o, "fibgw_queue_consumers", "gauge",
               "Consumers of the request queue, as last checked.");
        put(&o, "fibgw_queue_consumers %d\n", link->consumers);
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
