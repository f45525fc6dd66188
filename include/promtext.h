/* promtext.h - a growing buffer for the Prometheus text format, shared by
 * the gateway's and the worker's /metrics (the other thing besides the wire
 * contract that both programs speak the same way).  Header only, no state:
 * any thread may use its own promtext_t. */
#ifndef PROMTEXT_H
#define PROMTEXT_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Start with {malloc(n), 0, n, buf == NULL}.  On allocation failure the
 * buffer stops growing and failed is set; the caller frees buf. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} promtext_t;

static inline void promtext_put(promtext_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void promtext_put(promtext_t *o, const char *fmt, ...) {
    va_list ap;
    size_t cap;
    char *b;
    int n;

    while (!o->failed) {
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
        cap = o->cap * 2 + (size_t)n;
        b = realloc(o->buf, cap);
        if (b == NULL) {
            o->failed = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

/* The HELP and TYPE lines that open a metric family. */
static inline void promtext_family(promtext_t *o, const char *name,
                                   const char *type, const char *help) {
    promtext_put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram family from per-interval counts: counts[i] holds the
 * observations in (le[i-1], le[i]], counts[n] those above le[n-1]; the
 * rendered buckets are cumulative, as the format asks. */
static inline void promtext_histogram(promtext_t *o, const char *name,
                                      const char *help, const double *le,
                                      atomic_uint_fast64_t *counts, size_t n,
                                      double sum) {
    unsigned long long cum = 0;
    size_t i;

    promtext_family(o, name, "histogram", help);
    for (i = 0; i <= n; i++) {
        cum += atomic_load_explicit(&counts[i], memory_order_relaxed);
        if (i < n)
            promtext_put(o, "%s_bucket{le=\"%g\"} %llu\n", name, le[i], cum);
        else
            promtext_put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    }
    promtext_put(o, "%s_sum %.9f\n%s_count %llu\n", name, sum, name, cum);
}

#endif
