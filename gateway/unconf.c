/* unconf.c - publishes waiting for their confirm: a ring, oldest first,
 * of which only the waiting entries count.  See unconf.h. */
#include "unconf.h"

#include <stdlib.h>

typedef struct {
    gw_unconf_entry_t e;
    int settled; /* confirmed, or its channel gone: waiting to be dropped */
} slot_t;

struct gw_unconf {
    slot_t *ring;
    size_t cap, head, len; /* len: entries in the ring, settled or not */
    size_t waiting;        /* of them not settled */
    int iterating;         /* inside gw_unconf_confirm: nothing moves */
};

static slot_t *at(const gw_unconf_t *u, size_t i) {
    return &u->ring[(u->head + i) % u->cap];
}

gw_unconf_t *gw_unconf_new(size_t cap) {
    gw_unconf_t *u = calloc(1, sizeof(*u));

    if (u == NULL || cap == 0)
        goto fail;
    u->cap = cap;
    u->ring = calloc(cap, sizeof(*u->ring));
    if (u->ring == NULL)
        goto fail;
    return u;
fail:
    gw_unconf_free(u);
    return NULL;
}

void gw_unconf_free(gw_unconf_t *u) {
    if (u == NULL)
        return;
    free(u->ring);
    free(u);
}

static void settle(gw_unconf_t *u, slot_t *s) {
    if (!s->settled) {
        s->settled = 1;
        u->waiting--;
    }
}

/* Drops the settled entries at the front. */
static void pop(gw_unconf_t *u) {
    if (u->iterating)
        return;
    while (u->len > 0 && u->ring[u->head].settled) {
        u->head = (u->head + 1) % u->cap;
        u->len--;
    }
}

/* Squeezes the settled entries out, keeping the order of the others. */
static void compact(gw_unconf_t *u) {
    size_t r, w = 0;

    for (r = 0; r < u->len; r++)
        if (!at(u, r)->settled)
            *at(u, w++) = *at(u, r);
    u->len = w;
}

int gw_unconf_push(gw_unconf_t *u, const gw_unconf_entry_t *e) {
    slot_t *s;

    if (u->waiting == u->cap)
        return -1;
    if (u->len == u->cap)
        compact(u); /* there is room: some entry is settled */
    s = at(u, u->len++);
    s->e = *e;
    s->settled = 0;
    u->waiting++;
    return 0;
}

int gw_unconf_full(const gw_unconf_t *u) {
    return u->waiting == u->cap;
}

size_t gw_unconf_waiting(const gw_unconf_t *u) {
    return u->waiting;
}

size_t gw_unconf_confirm(gw_unconf_t *u, uint16_t channel, uint64_t tag,
                         int multiple,
                         void (*fn)(void *arg, const gw_unconf_entry_t *e),
                         void *arg) {
    size_t i, n = 0;

    u->iterating = 1;
    for (i = 0; i < u->len; i++) {
        slot_t *s = at(u, i);
        gw_unconf_entry_t e;

        /* settled ones first: an old one of a channel whose number came
         * round again says nothing about this channel's tags */
        if (s->settled || s->e.channel != channel)
            continue;
        if (s->e.tag > tag)
            break; /* a channel's tags grow with the ring */
        if (!multiple && s->e.tag != tag)
            continue;
        settle(u, s);
        e = s->e;
        n++;
        fn(arg, &e);
        if (!multiple)
            break;
    }
    u->iterating = 0;
    pop(u);
    return n;
}

void gw_unconf_drop(gw_unconf_t *u, uint16_t channel) {
    size_t i;

    for (i = 0; i < u->len; i++)
        if (at(u, i)->e.channel == channel)
            settle(u, at(u, i));
    pop(u);
}

void gw_unconf_clear(gw_unconf_t *u) {
    u->head = u->len = u->waiting = 0;
}

const gw_unconf_entry_t *gw_unconf_oldest(const gw_unconf_t *u,
                                          uint16_t channel) {
    size_t i;

    for (i = 0; i < u->len; i++) {
        const slot_t *s = at(u, i);

        if (!s->settled && s->e.channel == channel)
            return &s->e;
    }
    return NULL;
}
