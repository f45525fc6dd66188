/* metrics.h - counters for /metrics and their Prometheus text rendering.
 *
 * Recording is lock-free (relaxed atomics) and may happen on any thread;
 * rendering reads a consistent-enough snapshot and allocates the text. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "problem.h"

/* Upper bounds of the request duration histogram, in seconds. */
#define GW_METRICS_BUCKETS(X)                                                  \
    X(0.0005)                                                                  \
    X(0.001)                                                                   \
    X(0.0025)                                                                  \
    X(0.005)                                                                   \
    X(0.01) X(0.025) X(0.05) X(0.1) X(0.25) X(0.5) X(1) X(2.5) X(5) X(10) X(30)

enum {
#define GW_X(le) +1
    GW_METRICS_NBUCKETS = 0 GW_METRICS_BUCKETS(GW_X)
#undef GW_X
};

/* Distinct route names counted since start (reloads may add some); the
 * routes of names past it are only counted in the totals. */
#define GW_METRICS_ROUTES_MAX 256
#define GW_METRICS_NO_ROUTE   GW_METRICS_ROUTES_MAX

/* One route's counters (labelled by its name, never by a raw path, so
 * their number stays bounded). */
typedef struct {
    char name[72];
    atomic_uint_fast64_t by_status[600];
    atomic_uint_fast64_t by_problem[GW_E__COUNT];
    atomic_uint_fast64_t buckets[GW_METRICS_NBUCKETS + 1];
    atomic_uint_fast64_t duration_us_sum;
} gw_route_metrics_t;

typedef struct {
    atomic_uint_fast64_t by_status[600]; /* HTTP status -> requests */
    atomic_uint_fast64_t by_problem[GW_E__COUNT];
    atomic_uint_fast64_t buckets[GW_METRICS_NBUCKETS + 1]; /* + Inf */
    atomic_uint_fast64_t duration_us_sum;
    /* recorded by the AMQP thread */
    atomic_uint_fast64_t replies_dropped;
    atomic_uint_fast64_t reconnects;
    atomic_uint_fast64_t failovers; /* reconnects to another node */
    /* gauges, set by the HTTP thread on every turn of its loop */
    atomic_uint http_connections; /* open */
    atomic_uint http_active;      /* with a request being read or answered */
    /* per route: slots registered and rendered by the HTTP thread only */
    gw_route_metrics_t *route[GW_METRICS_ROUTES_MAX];
    unsigned nroutes;
} gw_metrics_t;

struct gw_watch;

/* What the AMQP side reports at render time. */
typedef struct {
    int connected;                /* 0/1 */
    int blocked;                  /* 0/1 */
    const struct gw_watch *watch; /* the watched queues and their counts */
    unsigned inflight;            /* calls waiting for a reply */
    unsigned max_inflight;
    const char *node; /* "host:port" connected to; NULL when not */
} gw_metrics_link_t;

/* Counts one answered HTTP request: its status, its problem code (GW_E_OK
 * when it was not an error) and how long it took. */
void gw_metrics_request(gw_metrics_t *m, int status, gw_err_t err,
                        int64_t duration_us);

/* The slot counting route name: the one it had, or a new one;
 * GW_METRICS_NO_ROUTE when there is no room (or memory).  HTTP thread. */
unsigned gw_metrics_route_slot(gw_metrics_t *m, const char *name);
/* Counts one answered request of the route in slot (as
 * gw_metrics_request, which it does not replace). */
void gw_metrics_route(gw_metrics_t *m, unsigned slot, int status, gw_err_t err,
                      int64_t duration_us);
/* Frees the route slots (at exit). */
void gw_metrics_free(gw_metrics_t *m);

/* The Prometheus text exposition (version 0.0.4), malloc'd, length in *len;
 * NULL when out of memory. */
char *gw_metrics_render(gw_metrics_t *m, const gw_metrics_link_t *link,
                        const char *version, size_t *len);

#endif
