/* watch.c - watched queues, their consumer counts and the "nobody"
 * verdict.  See watch.h for who may call what. */
#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;           /* set once, before count makes the slot visible */
    gw_watch_kind_t kind; /* likewise */
    atomic_int consumers; /* -1 unknown */
    atomic_int nobody;
    /* AMQP thread only */
    int64_t zero_since; /* first of the zero reads in a row; 0: none */
    int64_t next_ms;    /* when to read again */
    int had_some;       /* before the last reset, it had consumers */
    int had_nobody;     /* ... or was nobody (a zero that lasted) */
} slot_t;

struct gw_watch {
    pthread_mutex_t lock; /* adders */
    atomic_size_t count;
    slot_t slot[GW_WATCH_MAX];
};

gw_watch_t *gw_watch_new(void) {
    gw_watch_t *w = calloc(1, sizeof(*w));
    size_t i;

    if (w == NULL)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->count, 0);
    for (i = 0; i < GW_WATCH_MAX; i++) {
        atomic_init(&w->slot[i].consumers, -1);
        atomic_init(&w->slot[i].nobody, 0);
    }
    return w;
}

void gw_watch_free(gw_watch_t *w) {
    size_t i;

    if (w == NULL)
        return;
    for (i = 0; i < GW_WATCH_MAX; i++)
        free(w->slot[i].name);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int gw_watch_add(gw_watch_t *w, gw_watch_kind_t kind, const char *name) {
    size_t i, n;
    int slot = -1;

    pthread_mutex_lock(&w->lock);
    n = atomic_load(&w->count);
    for (i = 0; i < n; i++)
        if (w->slot[i].kind == kind && strcmp(w->slot[i].name, name) == 0) {
            slot = (int)i;
            goto out;
        }
    if (n == GW_WATCH_MAX)
        goto out;
    w->slot[n].name = strdup(name);
    if (w->slot[n].name == NULL)
        goto out;
    w->slot[n].kind = kind;
    w->slot[n].next_ms = 0;         /* read it at once */
    atomic_store(&w->count, n + 1); /* publishes the name */
    slot = (int)n;
out:
    pthread_mutex_unlock(&w->lock);
    return slot;
}

size_t gw_watch_count(const gw_watch_t *w) {
    return atomic_load(&((gw_watch_t *)w)->count);
}

const char *gw_watch_name(const gw_watch_t *w, size_t slot) {
    return w->slot[slot].name;
}

gw_watch_kind_t gw_watch_kind(const gw_watch_t *w, size_t slot) {
    return w->slot[slot].kind;
}

int gw_watch_consumers(const gw_watch_t *w, size_t slot) {
    return atomic_load_explicit(&((gw_watch_t *)w)->slot[slot].consumers,
                                memory_order_relaxed);
}

int gw_watch_nobody(const gw_watch_t *w, size_t slot) {
    return atomic_load_explicit(&((gw_watch_t *)w)->slot[slot].nobody,
                                memory_order_relaxed);
}

int gw_watch_record(gw_watch_t *w, size_t slot, int consumers, int missing,
                    int64_t now) {
    slot_t *s = &w->slot[slot];
    int nobody = 0, before_n, before_nobody, had_nobody = s->had_nobody;

    if (missing)
        consumers = 0;
    s->had_nobody = 0; /* said of the first read after a reset only */
    if (s->kind == GW_WATCH_EXCHANGE && !missing) {
        consumers = 1; /* it exists: that is all there is to know */
        s->zero_since = 0;
        s->next_ms = now + GW_WATCH_SOME_MS;
    } else if (consumers > 0) {
        s->zero_since = 0;
        s->next_ms = now + GW_WATCH_SOME_MS;
    } else if (missing) {
        nobody = 1; /* no queue, nobody: nothing to wait for */
        s->zero_since = s->zero_since != 0 ? s->zero_since : now;
        s->next_ms = now + GW_WATCH_NOBODY_MS;
    } else {
        /* Nobody before the connection went, and still 0: it has lasted
         * (no need to wait again after a reconnect). */
        if (s->zero_since == 0)
            s->zero_since = had_nobody ? now - GW_WATCH_CONFIRM_MS : now;
        nobody = now - s->zero_since >= GW_WATCH_CONFIRM_MS;
        /* Unconfirmed: read again once it could be confirmed. */
        s->next_ms = nobody ? now + GW_WATCH_NOBODY_MS
                            : s->zero_since + GW_WATCH_CONFIRM_MS;
    }
    before_n = atomic_exchange(&s->consumers, consumers);
    before_nobody = atomic_exchange(&s->nobody, nobody);
    return before_n != consumers || before_nobody != nobody;
}

int gw_watch_refused(gw_watch_t *w, size_t slot, int64_t now) {
    slot_t *s = &w->slot[slot];
    int before_n, before_nobody;

    s->had_nobody = 0;
    s->zero_since = 0;
    s->next_ms = now + GW_WATCH_REFUSED_MS;
    before_n = atomic_exchange(&s->consumers, -1);
    before_nobody = atomic_exchange(&s->nobody, 0);
    return before_n != -1 || before_nobody != 0;
}

int gw_watch_due(gw_watch_t *w, int64_t now, int64_t *next_ms) {
    size_t i, n = atomic_load(&w->count);
    int64_t best = INT64_MAX;
    int due = -1;

    for (i = 0; i < n; i++)
        if (w->slot[i].next_ms < best) {
            best = w->slot[i].next_ms;
            due = (int)i;
        }
    *next_ms = best;
    return best <= now ? due : -1;
}

void gw_watch_recheck(gw_watch_t *w, gw_watch_kind_t kind) {
    size_t i, n = atomic_load(&w->count);

    for (i = 0; i < n; i++)
        if (w->slot[i].kind == kind)
            w->slot[i].next_ms = 0;
}

void gw_watch_reset(gw_watch_t *w) {
    size_t i, n = atomic_load(&w->count);

    for (i = 0; i < n; i++) {
        int c = atomic_load(&w->slot[i].consumers);

        if (c >= 0) { /* known: what it was when the connection went */
            w->slot[i].had_some = c > 0;
            w->slot[i].had_nobody = atomic_load(&w->slot[i].nobody);
        }
        atomic_store(&w->slot[i].consumers, -1);
        atomic_store(&w->slot[i].nobody, 0);
        w->slot[i].zero_since = 0;
        w->slot[i].next_ms = 0;
    }
}

int gw_watch_had_some(const gw_watch_t *w, size_t slot) {
    return w->slot[slot].had_some;
}
