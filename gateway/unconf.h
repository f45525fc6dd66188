/* unconf.h - the publishes the broker has not confirmed yet (publisher
 * confirms), oldest first, across the publishing channels.
 *
 * Fullness counts the entries still waiting: confirmed ones ("settled")
 * are dropped from the front at once, and squeezed out from behind a
 * waiting one when room is needed, so one channel that never confirms
 * cannot fill the table with the others' confirmed publishes.
 *
 * Pure (no I/O, no clock, no locks); all memory allocated by
 * gw_unconf_new.  Owned and called by one thread (the AMQP thread). */
#ifndef GW_UNCONF_H
#define GW_UNCONF_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"

typedef struct {
    uint64_t tag;          /* the delivery tag, per channel */
    int64_t sent_ms;       /* cm_now_ms when published */
    uint8_t id[GW_ID_LEN]; /* its call's correlation id */
    uint16_t channel;
    uint8_t publish; /* a publish-mode call: the confirm ends it */
} gw_unconf_entry_t;

typedef struct gw_unconf gw_unconf_t;

/* Room for cap waiting publishes, or NULL when out of memory. */
gw_unconf_t *gw_unconf_new(size_t cap);
/* NULL is a no-op. */
void gw_unconf_free(gw_unconf_t *u);

/* Remembers a publish.  Returns -1 (nothing remembered) when cap
 * publishes wait already. */
int gw_unconf_push(gw_unconf_t *u, const gw_unconf_entry_t *e);
/* Whether a push would fail now. */
int gw_unconf_full(const gw_unconf_t *u);
/* Publishes waiting. */
size_t gw_unconf_waiting(const gw_unconf_t *u);

/* The broker confirmed tag on channel (multiple: every tag up to it).
 * Each entry it settles is settled before fn(arg, entry) is called, oldest
 * first; fn may call gw_unconf_drop.  Returns how many it settled. */
size_t gw_unconf_confirm(gw_unconf_t *u, uint16_t channel, uint64_t tag,
                         int multiple,
                         void (*fn)(void *arg, const gw_unconf_entry_t *e),
                         void *arg);
/* Settles every entry of channel (it is gone: no confirm will come). */
void gw_unconf_drop(gw_unconf_t *u, uint16_t channel);
/* Forgets everything (the connection is gone). */
void gw_unconf_clear(gw_unconf_t *u);
/* The oldest waiting entry of channel, or NULL. */
const gw_unconf_entry_t *gw_unconf_oldest(const gw_unconf_t *u,
                                          uint16_t channel);

#endif
