/* metrics.c - fib-worker's counters (relaxed atomics) and the Prometheus
 * text format.  Pure: the AMQP thread records, the metrics HTTP thread
 * renders, and neither waits for the other. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promtext.h"

static const double fw_bucket_le[] = {
#define FW_X(le) le,
    FW_METRICS_BUCKETS(FW_X)
#undef FW_X
};

static const char *const fw_outcome_names[] = {
#define FW_X(name) #name,
    FW_METRICS_OUTCOMES(FW_X)
#undef FW_X
};

static void fw_add(atomic_uint_fast64_t *a, uint64_t n) {
    atomic_fetch_add_explicit(a, n, memory_order_relaxed);
}

static uint64_t fw_get(atomic_uint_fast64_t *a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

void fw_metrics_init(fw_metrics_t *m) {
    size_t i;

    for (i = 0; i < FW_OUTCOME__COUNT; i++)
        atomic_init(&m->messages[i], 0);
    for (i = 0; i < FW_METRICS_NERRORS; i++)
        atomic_init(&m->errors[i], 0);
    for (i = 0; i <= FW_METRICS_NBUCKETS; i++)
        atomic_init(&m->buckets[i], 0);
    atomic_init(&m->compute_ns_sum, 0);
    atomic_init(&m->connected, 0);
    atomic_init(&m->ever_connected, 0);
    atomic_init(&m->reconnects, 0);
    atomic_init(&m->failovers, 0);
    atomic_init(&m->node, NULL);
}

void fw_metrics_node(fw_metrics_t *m, const char *node) {
    const char *last =
        atomic_exchange_explicit(&m->node, node, memory_order_relaxed);

    if (last != NULL && last != node && strcmp(last, node) != 0)
        fw_add(&m->failovers, 1);
}

void fw_metrics_reply(fw_metrics_t *m, fw_err_t err, double compute_s) {
    size_t i;

    if (err == FW_OK) {
        fw_add(&m->messages[FW_OUTCOME_served], 1);
        if (!(compute_s > 0)) /* also NaN */
            compute_s = 0;
        for (i = 0; i < FW_METRICS_NBUCKETS && compute_s > fw_bucket_le[i]; i++)
            ;
        fw_add(&m->buckets[i], 1);
        /* 2^64 ns is 584 years: a compute time cannot overflow it. */
        fw_add(&m->compute_ns_sum, (uint64_t)(compute_s * 1e9 + 0.5));
        return;
    }
    if ((unsigned)err > FW_METRICS_NERRORS)
        err = FW_ERR_internal;
    fw_add(&m->messages[err == FW_ERR_expired ? FW_OUTCOME_expired
                                              : FW_OUTCOME_rejected],
           1);
    fw_add(&m->errors[err - 1], 1);
}

void fw_metrics_dropped(fw_metrics_t *m) {
    fw_add(&m->messages[FW_OUTCOME_dropped], 1);
}

void fw_metrics_link(fw_metrics_t *m, int up) {
    atomic_store_explicit(&m->connected, up ? 1 : 0, memory_order_relaxed);
    if (up && atomic_exchange_explicit(&m->ever_connected, 1,
                                       memory_order_relaxed) != 0)
        fw_add(&m->reconnects, 1);
}

/* A label value, escaped as the text format asks (\\, \" and \n). */
static void fw_put_label(promtext_t *o, const char *v) {
    for (; *v != '\0'; v++) {
        if (*v == '\\')
            promtext_put(o, "\\\\");
        else if (*v == '"')
            promtext_put(o, "\\\"");
        else if (*v == '\n')
            promtext_put(o, "\\n");
        else
            promtext_put(o, "%c", *v);
    }
}

char *fw_metrics_render(fw_metrics_t *m, const char *version, size_t *len) {
    promtext_t o = {NULL, 0, 4096, 0};
    size_t i;

    o.buf = malloc(o.cap);
    if (o.buf == NULL)
        return NULL;

    promtext_family(&o, "fibw_build_info", "gauge",
                    "Build information; the value is always 1.");
    promtext_put(&o, "fibw_build_info{version=\"");
    fw_put_label(&o, version);
    promtext_put(&o, "\"} 1\n");

    promtext_family(&o, "fibw_messages_total", "counter",
                    "Requests consumed and acked, by outcome: served (F(n) "
                    "replied), rejected (an error reply other than expired), "
                    "expired (deadline passed), dropped (no reply_to).");
    for (i = 0; i < FW_OUTCOME__COUNT; i++)
        promtext_put(&o, "fibw_messages_total{outcome=\"%s\"} %llu\n",
                     fw_outcome_names[i],
                     (unsigned long long)fw_get(&m->messages[i]));

    promtext_family(&o, "fibw_errors_total", "counter",
                    "Error replies sent, by error type.");
    for (i = 0; i < FW_METRICS_NERRORS; i++)
        promtext_put(&o, "fibw_errors_total{type=\"%s\"} %llu\n",
                     fw_err_name((fw_err_t)(i + 1)),
                     (unsigned long long)fw_get(&m->errors[i]));

    promtext_histogram(&o, "fibw_compute_seconds",
                       "Time spent computing F(n) for served requests.",
                       fw_bucket_le, m->buckets, FW_METRICS_NBUCKETS,
                       (double)fw_get(&m->compute_ns_sum) / 1e9);

    promtext_family(&o, "fibw_amqp_connected", "gauge",
                    "1 while the AMQP connection is up and consuming.");
    promtext_put(&o, "fibw_amqp_connected %d\n",
                 atomic_load_explicit(&m->connected, memory_order_relaxed));
    promtext_family(&o, "fibw_amqp_reconnects_total", "counter",
                    "Successful AMQP connections after the first.");
    promtext_put(&o, "fibw_amqp_reconnects_total %llu\n",
                 (unsigned long long)fw_get(&m->reconnects));

    promtext_family(&o, "fibw_amqp_failovers_total", "counter",
                    "Connections to another node of the --amqp-url list than "
                    "the connection before.");
    promtext_put(&o, "fibw_amqp_failovers_total %llu\n",
                 (unsigned long long)fw_get(&m->failovers));
    {
        const char *node = atomic_load_explicit(&m->node, memory_order_relaxed);

        if (node != NULL &&
            atomic_load_explicit(&m->connected, memory_order_relaxed)) {
            promtext_family(&o, "fibw_amqp_node_info", "gauge",
                            "The node the AMQP connection is open to; the "
                            "value is always 1.");
            promtext_put(&o, "fibw_amqp_node_info{node=\"");
            fw_put_label(&o, node);
            promtext_put(&o, "\"} 1\n");
        }
    }

    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
