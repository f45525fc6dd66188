/* watch.h - the request queues whose consumers the gateway watches, so
 * that a call to a queue nobody consumes gets 504 no_server at once
 * instead of waiting for its timeout; and the exchanges routes publish
 * to, so that a call to one that does not exist gets no_server too
 * (publishing to it would make the broker close the channel, and every
 * call waiting on that channel would fail).
 *
 * A zero is believed only when it lasts: while a quorum queue elects a new
 * leader its consumer count can read 0 (0.2-0.6 s measured on RabbitMQ
 * 3.10, longer on a loaded machine), so a zero counts as "nobody" only
 * when a read at least GW_WATCH_CONFIRM_MS after the first still says 0
 * (calls are published meanwhile).  A queue that does not exist is nobody
 * at once.
 *
 * Slots are added by any thread (under a lock) and never removed; the
 * AMQP thread records what it reads; any thread reads the verdicts
 * (atomics).  The clock is passed in: the module does no I/O. */
#ifndef GW_WATCH_H
#define GW_WATCH_H

#include <stddef.h>
#include <stdint.h>

#define GW_WATCH_MAX        64
#define GW_WATCH_CONFIRM_MS 1000  /* a zero must last this long */
#define GW_WATCH_SOME_MS    1000  /* re-read a queue with consumers */
#define GW_WATCH_NOBODY_MS  100   /* re-read a queue without, to see one come */
#define GW_WATCH_REFUSED_MS 10000 /* re-read one the broker refused to read */

typedef struct gw_watch gw_watch_t;

/* Returns an empty watch list, or NULL when out of memory. */
gw_watch_t *gw_watch_new(void);
/* Frees it.  NULL is a no-op. */
void gw_watch_free(gw_watch_t *w);

typedef enum { GW_WATCH_QUEUE, GW_WATCH_EXCHANGE } gw_watch_kind_t;

/* The slot watching queue (or exchange): the existing one, or a new one
 * (unknown until read).  Returns -1 when all GW_WATCH_MAX slots hold
 * others.  Any thread. */
int gw_watch_add(gw_watch_t *w, gw_watch_kind_t kind, const char *name);
gw_watch_kind_t gw_watch_kind(const gw_watch_t *w, size_t slot);
/* Slots in use (any thread); their names never change. */
size_t gw_watch_count(const gw_watch_t *w);
const char *gw_watch_name(const gw_watch_t *w, size_t slot);

/* The last count read (-1: unknown; an exchange: 1 when it exists), and
 * whether nobody consumes (a zero that lasted, or no such queue or
 * exchange): then calls get no_server.  Any thread. */
int gw_watch_consumers(const gw_watch_t *w, size_t slot);
int gw_watch_nobody(const gw_watch_t *w, size_t slot);

/* --- the AMQP thread ----------------------------------------------------- */

/* Records a read of slot at now: consumers, or missing (no such queue).
 * Returns 1 when what callers see changed (the count, or the verdict). */
int gw_watch_record(gw_watch_t *w, size_t slot, int consumers, int missing,
                    int64_t now);
/* Records a read of slot the broker refused for another reason than a
 * missing queue (403 access refused, 405 an exclusive queue of another
 * connection): the count is unknown, nobody is not said (calls are
 * published and end at their timeout if nobody serves them), and the
 * next read is GW_WATCH_REFUSED_MS later.  Returns 1 when what callers
 * see changed. */
int gw_watch_refused(gw_watch_t *w, size_t slot, int64_t now);
/* The slot whose next read is due at now, earliest first, or -1; *next_ms
 * gets when the earliest read falls due (INT64_MAX: none). */
int gw_watch_due(gw_watch_t *w, int64_t now, int64_t *next_ms);
/* Every slot of kind due for a read at once (what is known stays). */
void gw_watch_recheck(gw_watch_t *w, gw_watch_kind_t kind);
/* The connection is gone: every count unknown, every read due at once.
 * A queue that was nobody then is nobody again at its first zero. */
void gw_watch_reset(gw_watch_t *w);
/* Whether slot had consumers when the connection went (a zero read right
 * after reconnecting is then most likely a leader election, not nobody). */
int gw_watch_had_some(const gw_watch_t *w, size_t slot);

#endif
