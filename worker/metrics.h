/* metrics.h - fib-worker's counters and their Prometheus text rendering.
 * Pure (no I/O): the AMQP thread records, the metrics HTTP thread renders;
 * every counter is a relaxed atomic, so any thread may call any of it. */
#ifndef FW_METRICS_H
#define FW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fib.h"

/* Upper bounds of the compute time histogram, in seconds. */
#define FW_METRICS_BUCKETS(X) X(0.0001) X(0.001) X(0.01) X(0.1) X(1) X(10)

/* What became of one delivery (the outcome label of fibw_messages_total). */
#define FW_METRICS_OUTCOMES(X)                                                 \
    X(served)   /* F(n) replied */                                             \
    X(rejected) /* an error reply other than expired */                        \
    X(expired)  /* the deadline had passed: an expired error reply */          \
    X(dropped)  /* no reply_to: acked without a reply */

typedef enum {
#define FW_X(name) FW_OUTCOME_##name,
    FW_METRICS_OUTCOMES(FW_X)
#undef FW_X
        FW_OUTCOME__COUNT
} fw_outcome_t;

enum {
#define FW_X(le) +1
    FW_METRICS_NBUCKETS = 0 FW_METRICS_BUCKETS(FW_X),
#undef FW_X
#define FW_X(name, caller_fault) +1
    FW_METRICS_NERRORS = 0 FIBRPC_ERROR_TYPES(FW_X)
#undef FW_X
};

typedef struct {
    atomic_uint_fast64_t messages[FW_OUTCOME__COUNT];
    atomic_uint_fast64_t errors[FW_METRICS_NERRORS]; /* [fw_err_t - 1] */
    /* Compute time per bucket interval (the last is (10, +Inf)), summed when
     * rendered, and the total in nanoseconds. */
    atomic_uint_fast64_t buckets[FW_METRICS_NBUCKETS + 1];
    atomic_uint_fast64_t compute_ns_sum;
    atomic_int connected;      /* 0/1 */
    atomic_int ever_connected; /* 0/1: the next connection is a reconnect */
    atomic_uint_fast64_t reconnects;
    atomic_uint_fast64_t failovers; /* connections to another node */
    /* "host:port" of the node connected to (static storage), NULL before
     * the first connection; shown while connected */
    _Atomic(const char *) node;
} fw_metrics_t;

/* Sets every counter to 0 and the link to disconnected. */
void fw_metrics_init(fw_metrics_t *m);

/* Counts one delivery answered with err (FW_OK: F(n), which took compute_s
 * seconds to compute; compute_s is ignored otherwise).  An err out of range
 * counts as internal. */
void fw_metrics_reply(fw_metrics_t *m, fw_err_t err, double compute_s);

/* Counts one delivery acked without a reply (it had no reply_to). */
void fw_metrics_dropped(fw_metrics_t *m);

/* Records the AMQP link going up (1) or down (0); every up after the first
 * counts as a reconnect. */
void fw_metrics_link(fw_metrics_t *m, int up);

/* Records the node a connection (fw_metrics_link(m, 1)) is open to; node
 * must outlive m.  A node other than the last one counts as a failover. */
void fw_metrics_node(fw_metrics_t *m, const char *node);

/* The Prometheus text exposition (format 0.0.4) in a new NUL-terminated
 * string (caller free()s it), length in *len; version becomes the label of
 * fibw_build_info.  Returns NULL when out of memory. */
char *fw_metrics_render(fw_metrics_t *m, const char *version, size_t *len);

#endif
