/* metrics.c - request counters and the Prometheus text format.  Any thread
 * records; whoever serves /metrics renders. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promtext.h"
#include "watch.h"

static const double bucket_le[] = {
#define GW_X(le) le,
    GW_METRICS_BUCKETS(GW_X)
#undef GW_X
};

/* Counts one request into one set of counters. */
static void count(atomic_uint_fast64_t *by_status,
                  atomic_uint_fast64_t *by_problem,
                  atomic_uint_fast64_t *buckets, atomic_uint_fast64_t *sum,
                  int status, gw_err_t err, int64_t duration_us) {
    double secs = (double)duration_us / 1e6;
    size_t i;

    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&by_status[status], 1, memory_order_relaxed);
    if (err != GW_E_OK && (unsigned)err < GW_E__COUNT)
        atomic_fetch_add_explicit(&by_problem[err], 1, memory_order_relaxed);
    for (i = 0; i < GW_METRICS_NBUCKETS && secs > bucket_le[i]; i++)
        ;
    /* Buckets are stored per interval and summed when rendered. */
    atomic_fetch_add_explicit(&buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(sum, duration_us > 0 ? (uint64_t)duration_us : 0,
                              memory_order_relaxed);
}

void gw_metrics_request(gw_metrics_t *m, int status, gw_err_t err,
                        int64_t duration_us) {
    count(m->by_status, m->by_problem, m->buckets, &m->duration_us_sum, status,
          err, duration_us);
}

unsigned gw_metrics_route_slot(gw_metrics_t *m, const char *name) {
    gw_route_metrics_t *r;
    unsigned i;

    for (i = 0; i < m->nroutes; i++)
        if (strcmp(m->route[i]->name, name) == 0)
            return i;
    if (m->nroutes == GW_METRICS_ROUTES_MAX ||
        strlen(name) >= sizeof(r->name) || (r = calloc(1, sizeof(*r))) == NULL)
        return GW_METRICS_NO_ROUTE;
    memcpy(r->name, name, strlen(name) + 1);
    m->route[m->nroutes] = r;
    return m->nroutes++;
}

void gw_metrics_route(gw_metrics_t *m, unsigned slot, int status, gw_err_t err,
                      int64_t duration_us) {
    gw_route_metrics_t *r;

    if (slot >= m->nroutes)
        return;
    r = m->route[slot];
    count(r->by_status, r->by_problem, r->buckets, &r->duration_us_sum, status,
          err, duration_us);
}

void gw_metrics_free(gw_metrics_t *m) {
    unsigned i;

    for (i = 0; i < m->nroutes; i++)
        free(m->route[i]);
    m->nroutes = 0;
}

/* A label value, escaped as the text format asks (\\, \" and \n). */
static void put_label(promtext_t *o, const char *v) {
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            promtext_put(o, "\\%c", *v);
        else if (*v == '\n')
            promtext_put(o, "\\n");
        else
            promtext_put(o, "%c", *v);
    }
}

static uint64_t get(atomic_uint_fast64_t *a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* The per-route families: requests by status, problems by code, and the
 * latency histogram, each labelled route="name". */
static void render_routes(promtext_t *o, gw_metrics_t *m) {
    unsigned r;
    size_t i;

    if (m->nroutes == 0)
        return;
    promtext_family(o, "fibgw_route_requests_total", "counter",
                    "HTTP requests answered on each route, by status code.");
    for (r = 0; r < m->nroutes; r++)
        for (i = 100; i < 600; i++)
            if (get(&m->route[r]->by_status[i]) != 0)
                promtext_put(
                    o,
                    "fibgw_route_requests_total{route=\"%s\","
                    "code=\"%zu\"} %llu\n",
                    m->route[r]->name, i,
                    (unsigned long long)get(&m->route[r]->by_status[i]));
    promtext_family(o, "fibgw_route_problems_total", "counter",
                    "Error answers on each route, by problem code.");
    for (r = 0; r < m->nroutes; r++)
        for (i = 1; i < GW_E__COUNT; i++)
            if (get(&m->route[r]->by_problem[i]) != 0)
                promtext_put(
                    o,
                    "fibgw_route_problems_total{route=\"%s\","
                    "code=\"%s\"} %llu\n",
                    m->route[r]->name, gw_err_code((gw_err_t)i),
                    (unsigned long long)get(&m->route[r]->by_problem[i]));
    promtext_family(o, "fibgw_route_request_duration_seconds", "histogram",
                    "Time from request headers to the answer being queued, "
                    "on each route.");
    for (r = 0; r < m->nroutes; r++) {
        gw_route_metrics_t *rm = m->route[r];
        unsigned long long cum = 0;

        for (i = 0; i <= GW_METRICS_NBUCKETS; i++) {
            cum += get(&rm->buckets[i]);
            if (i < GW_METRICS_NBUCKETS)
                promtext_put(o,
                             "fibgw_route_request_duration_seconds_bucket{"
                             "route=\"%s\",le=\"%g\"} %llu\n",
                             rm->name, bucket_le[i], cum);
            else
                promtext_put(o,
                             "fibgw_route_request_duration_seconds_bucket{"
                             "route=\"%s\",le=\"+Inf\"} %llu\n",
                             rm->name, cum);
        }
        promtext_put(o,
                     "fibgw_route_request_duration_seconds_sum{route=\"%s\"} "
                     "%.9f\n"
                     "fibgw_route_request_duration_seconds_count{route=\"%s\"} "
                     "%llu\n",
                     rm->name, (double)get(&rm->duration_us_sum) / 1e6,
                     rm->name, cum);
    }
}

char *gw_metrics_render(gw_metrics_t *m, const gw_metrics_link_t *link,
                        const char *version, size_t *len) {
    promtext_t o = {malloc(8192), 0, 8192, 0};
    size_t i;

    if (o.buf == NULL)
        return NULL;
    promtext_family(&o, "fibgw_build_info", "gauge",
                    "Build information; the value is always 1.");
    promtext_put(&o, "fibgw_build_info{version=\"%s\"} 1\n", version);

    promtext_family(&o, "fibgw_http_requests_total", "counter",
                    "HTTP requests answered, by status code.");
    for (i = 100; i < 600; i++)
        if (get(&m->by_status[i]) != 0)
            promtext_put(&o, "fibgw_http_requests_total{code=\"%zu\"} %llu\n",
                         i, (unsigned long long)get(&m->by_status[i]));

    promtext_family(
        &o, "fibgw_http_problems_total", "counter",
        "Error answers, by problem code (timeout, no_server, ...).");
    for (i = 1; i < GW_E__COUNT; i++)
        promtext_put(&o, "fibgw_http_problems_total{code=\"%s\"} %llu\n",
                     gw_err_code((gw_err_t)i),
                     (unsigned long long)get(&m->by_problem[i]));

    promtext_histogram(&o, "fibgw_http_request_duration_seconds",
                       "Time from request headers to the answer being queued.",
                       bucket_le, m->buckets, GW_METRICS_NBUCKETS,
                       (double)get(&m->duration_us_sum) / 1e6);

    render_routes(&o, m);

    promtext_family(&o, "fibgw_http_connections", "gauge",
                    "Open HTTP connections: active (a request being read or "
                    "answered) or idle (kept alive between requests).");
    {
        unsigned open =
            atomic_load_explicit(&m->http_connections, memory_order_relaxed);
        unsigned active =
            atomic_load_explicit(&m->http_active, memory_order_relaxed);
        if (active > open)
            active = open;
        promtext_put(&o, "fibgw_http_connections{state=\"active\"} %u\n",
                     active);
        promtext_put(&o, "fibgw_http_connections{state=\"idle\"} %u\n",
                     open - active);
    }

    promtext_family(&o, "fibgw_calls_in_flight", "gauge",
                    "RPC calls published and waiting for a reply.");
    promtext_put(&o, "fibgw_calls_in_flight %u\n", link->inflight);
    promtext_family(&o, "fibgw_calls_in_flight_max", "gauge",
                    "Limit on calls in flight (--max-inflight).");
    promtext_put(&o, "fibgw_calls_in_flight_max %u\n", link->max_inflight);

    promtext_family(
        &o, "fibgw_replies_dropped_total", "counter",
        "Replies dropped: late, duplicate or unknown correlation id.");
    promtext_put(&o, "fibgw_replies_dropped_total %llu\n",
                 (unsigned long long)get(&m->replies_dropped));
    promtext_family(&o, "fibgw_amqp_reconnects_total", "counter",
                    "Successful AMQP connections after the first.");
    promtext_put(&o, "fibgw_amqp_reconnects_total %llu\n",
                 (unsigned long long)get(&m->reconnects));
    promtext_family(&o, "fibgw_amqp_failovers_total", "counter",
                    "Reconnects that landed on another node of the "
                    "--amqp-url list than the connection before.");
    promtext_put(&o, "fibgw_amqp_failovers_total %llu\n",
                 (unsigned long long)get(&m->failovers));
    if (link->node != NULL) {
        promtext_family(&o, "fibgw_amqp_node_info", "gauge",
                        "The node the AMQP connection is open to; the value "
                        "is always 1.");
        promtext_put(&o, "fibgw_amqp_node_info{node=\"");
        put_label(&o, link->node);
        promtext_put(&o, "\"} 1\n");
    }
    promtext_family(&o, "fibgw_amqp_connected", "gauge",
                    "1 while the AMQP connection is up.");
    promtext_put(&o, "fibgw_amqp_connected %d\n", link->connected);
    promtext_family(&o, "fibgw_amqp_blocked", "gauge",
                    "1 while RabbitMQ blocks publishers (resource alarm).");
    promtext_put(&o, "fibgw_amqp_blocked %d\n", link->blocked);
    if (link->connected && link->watch != NULL &&
        gw_watch_count(link->watch) > 0) {
        size_t slot, n = gw_watch_count(link->watch);

        promtext_family(&o, "fibgw_queue_consumers", "gauge",
                        "Consumers of each request queue, as last checked.");
        for (slot = 0; slot < n; slot++) {
            int c = gw_watch_consumers(link->watch, slot);

            if (c < 0 || gw_watch_kind(link->watch, slot) != GW_WATCH_QUEUE)
                continue;
            promtext_put(&o, "fibgw_queue_consumers{queue=\"");
            put_label(&o, gw_watch_name(link->watch, slot));
            promtext_put(&o, "\"} %d\n", c);
        }
        promtext_family(&o, "fibgw_queue_no_server", "gauge",
                        "1 while calls to the queue get 504 no_server: no "
                        "such queue, or no consumer on reads for 1 s.");
        for (slot = 0; slot < n; slot++) {
            if (gw_watch_consumers(link->watch, slot) < 0 ||
                gw_watch_kind(link->watch, slot) != GW_WATCH_QUEUE)
                continue;
            promtext_put(&o, "fibgw_queue_no_server{queue=\"");
            put_label(&o, gw_watch_name(link->watch, slot));
            promtext_put(&o, "\"} %d\n", gw_watch_nobody(link->watch, slot));
        }
        promtext_family(&o, "fibgw_exchange_missing", "gauge",
                        "1 while an exchange a route publishes to does not "
                        "exist (its calls get 504 no_server).");
        for (slot = 0; slot < n; slot++) {
            if (gw_watch_consumers(link->watch, slot) < 0 ||
                gw_watch_kind(link->watch, slot) != GW_WATCH_EXCHANGE)
                continue;
            promtext_put(&o, "fibgw_exchange_missing{exchange=\"");
            put_label(&o, gw_watch_name(link->watch, slot));
            promtext_put(&o, "\"} %d\n", gw_watch_nobody(link->watch, slot));
        }
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
