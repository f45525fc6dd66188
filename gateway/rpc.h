/* rpc.h - the AMQP side: one thread owns the RabbitMQ connection, publishes
 * calls, matches replies, enforces deadlines and reconnects.
 *
 * gw_rpc_admit/gw_rpc_submit may be called from any thread (the HTTP
 * thread); the done callback runs on the AMQP thread (or in
 * gw_rpc_submit, once that thread has stopped), exactly once per
 * submitted call.  gw_rpc_new/start/shutdown/free belong to main. */
#ifndef GW_RPC_H
#define GW_RPC_H

#include "call.h"
#include "config.h"
#include "metrics.h"
#include "watch.h"

typedef struct gw_rpc gw_rpc_t;

/* Called on the AMQP thread with calls that have their outcome: a list
 * linked through ->next, the last to end first.  The calls belong to the
 * callee from then on; the AMQP thread never touches them again.  Calls
 * are handed back in batches: after each read of replies, and before the
 * thread sleeps (poll), connects, or asks whether the broker still reads
 * what it publishes; so an outcome waits at most for the rest of one turn
 * of its loop (which, with a broker that stopped reading, may include a
 * write waiting up to 100 ms for room). */
typedef void (*gw_rpc_done_fn)(gw_call_t *calls);

/* Returns a stopped instance, or NULL (logged) on failure.  cfg and metrics
 * must outlive it. */
gw_rpc_t *gw_rpc_new(const gw_config_t *cfg, gw_metrics_t *metrics,
                     gw_rpc_done_fn done);
/* Starts the AMQP thread.  Returns 0, or -1 (logged). */
int gw_rpc_start(gw_rpc_t *rpc);

/* gw_rpc_admit: may a new call start now?  Cheap, no I/O.  watch is the
 * call's queue's slot (gw_rpc_watch), or -1 for a call that needs no
 * consumer.  Returns GW_E_OK and reserves an in-flight slot (the caller
 * must then gw_rpc_submit), or the error to answer at once: SHUTTING_DOWN,
 * BROKER_UNAVAILABLE, NO_SERVER or OVERLOADED. */
gw_err_t gw_rpc_admit(gw_rpc_t *rpc, int watch);
/* Watches a queue's consumers (or whether an exchange exists) from now
 * on (any thread).  Returns its watch slot for gw_rpc_admit, or -1 when
 * too many are watched. */
int gw_rpc_watch(gw_rpc_t *rpc, gw_watch_kind_t kind, const char *name);
/* The last consumer count read of queue (-1: unknown yet; -2: not
 * watched).  Any thread. */
int gw_rpc_consumers(gw_rpc_t *rpc, const char *queue);
/* The link's state right now (any thread; atomics only). */
void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out);
/* Hands an admitted call to the AMQP thread; done will be called once:
 * on the calling thread, before this returns, when the AMQP thread has
 * already stopped (GW_E_SHUTTING_DOWN).  The AMQP thread may not look at
 * it before the caller's next gw_rpc_flush. */
void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call);
/* Wakes the AMQP thread for the calls submitted since the last flush, if
 * it needs waking: a thread that submits calls flushes once it has
 * submitted what it has, before it sleeps. */
void gw_rpc_flush(gw_rpc_t *rpc);

/* Graceful stop: new calls are refused, calls in flight run to their reply
 * or deadline, then the connection is closed and the thread exits.  Blocks
 * until then. */
void gw_rpc_shutdown(gw_rpc_t *rpc);
/* Frees a stopped instance.  NULL is a no-op. */
void gw_rpc_free(gw_rpc_t *rpc);

#endif
