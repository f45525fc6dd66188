/* pending.h - the calls waiting for a reply: correlation id -> caller, plus
 * their deadlines.
 *
 * Pure (no I/O, no clock, no locks): the caller passes "now".  All memory is
 * allocated by gw_pending_new, so adding and removing never allocate.  Owned
 * and called by one thread only (the AMQP thread). */
#ifndef GW_PENDING_H
#define GW_PENDING_H

#include <stddef.h>
#include <stdint.h>

#define GW_PENDING_ID_LEN 16 /* a binary UUID */

typedef struct gw_pending gw_pending_t;

/* Returns a table for at most capacity entries, or NULL when out of memory. */
gw_pending_t *gw_pending_new(size_t capacity);
/* Frees the table (not the data pointers).  NULL is a no-op. */
void gw_pending_free(gw_pending_t *p);

/* Adds id -> data, due at deadline.  Returns 0, or -1 when the table is full
 * or id is already present (nothing is changed then). */
int gw_pending_add(gw_pending_t *p, const uint8_t id[GW_PENDING_ID_LEN],
                   int64_t deadline, void *data);
/* Removes id and returns its data, or NULL when id is unknown. */
void *gw_pending_take(gw_pending_t *p, const uint8_t id[GW_PENDING_ID_LEN]);
/* Removes and returns one entry due at or before now, earliest first, or NULL
 * when none is due. */
void *gw_pending_take_expired(gw_pending_t *p, int64_t now);
/* Removes and returns any one entry, or NULL when empty (for draining). */
void *gw_pending_take_any(gw_pending_t *p);
/* The earliest deadline, or INT64_MAX when empty. */
int64_t gw_pending_next_deadline(const gw_pending_t *p);
size_t gw_pending_count(const gw_pending_t *p);

#endif
