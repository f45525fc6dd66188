/* pending.c - correlation id -> waiting call, with deadlines.
 *
 * An open-addressing hash table (linear probing, backward-shift deletion, no
 * tombstones) over a fixed array of entries, plus a binary min-heap of entry
 * indexes ordered by deadline.  Each entry knows its heap position, so any
 * entry leaves both structures in O(log n).  One thread only. */
#include "pending.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY UINT32_MAX

typedef struct {
    uint8_t id[GW_PENDING_ID_LEN];
    int64_t deadline;
    void *data;
    uint32_t slot;     /* index in slots[] */
    uint32_t heap_pos; /* index in heap[] */
} entry_t;

struct gw_pending {
    size_t capacity, count;
    entry_t *entries;
    uint32_t *free_list; /* stack of unused entry indexes */
    size_t nfree;
    uint32_t *slots; /* hash table of entry indexes, EMPTY when unused */
    size_t mask;     /* slots has mask + 1 (a power of two) elements */
    uint32_t *heap;  /* entry indexes, min-heap on deadline */
};

static size_t id_hash(const uint8_t id[GW_PENDING_ID_LEN]) {
    uint64_t a, b;

    /* Mix all 128 bits: ids are random today, but nothing should depend on
     * which bytes carry the randomness. */
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    a ^= b * 0x9e3779b97f4a7c15ull;
    a ^= a >> 32;
    a *= 0xd6e8feb86659fd93ull;
    a ^= a >> 32;
    return (size_t)a;
}

gw_pending_t *gw_pending_new(size_t capacity) {
    gw_pending_t *p;
    size_t nslots = 2, i;

    if (capacity == 0 || capacity > UINT32_MAX / 4)
        return NULL;
    while (nslots < capacity * 2)
        nslots <<= 1;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->capacity = capacity;
    p->entries = calloc(capacity, sizeof(*p->entries));
    p->free_list = calloc(capacity, sizeof(*p->free_list));
    p->heap = calloc(capacity, sizeof(*p->heap));
    p->slots = malloc(nslots * sizeof(*p->slots));
    if (!p->entries || !p->free_list || !p->heap || !p->slots) {
        gw_pending_free(p);
        return NULL;
    }
    p->mask = nslots - 1;
    for (i = 0; i < nslots; i++)
        p->slots[i] = EMPTY;
    for (i = 0; i < capacity; i++)
        p->free_list[i] = (uint32_t)(capacity - 1 - i);
    p->nfree = capacity;
    return p;
}

void gw_pending_free(gw_pending_t *p) {
    if (p == NULL)
        return;
    free(p->entries);
    free(p->free_list);
    free(p->heap);
    free(p->slots);
    free(p);
}

/* --- heap ---------------------------------------------------------------- */

static void heap_set(gw_pending_t *p, size_t pos, uint32_t e) {
    p->heap[pos] = e;
    p->entries[e].heap_pos = (uint32_t)pos;
}

static void heap_up(gw_pending_t *p, size_t pos) {
    uint32_t e = p->heap[pos];
    int64_t d = p->entries[e].deadline;

    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (p->entries[p->heap[parent]].deadline <= d)
            break;
        heap_set(p, pos, p->heap[parent]);
        pos = parent;
    }
    heap_set(p, pos, e);
}

static void heap_down(gw_pending_t *p, size_t pos) {
    uint32_t e = p->heap[pos];
    int64_t d = p->entries[e].deadline;

    for (;;) {
        size_t child = pos * 2 + 1;
        if (child >= p->count)
            break;
        if (child + 1 < p->count && p->entries[p->heap[child + 1]].deadline <
                                        p->entries[p->heap[child]].deadline)
            child++;
        if (d <= p->entries[p->heap[child]].deadline)
            break;
        heap_set(p, pos, p->heap[child]);
        pos = child;
    }
    heap_set(p, pos, e);
}

/* --- hash table ---------------------------------------------------------- */

/* The slot holding id, or the empty slot where it would go. */
static size_t slot_find(const gw_pending_t *p,
                        const uint8_t id[GW_PENDING_ID_LEN]) {
    size_t i = id_hash(id) & p->mask;

    while (p->slots[i] != EMPTY &&
           memcmp(p->entries[p->slots[i]].id, id, GW_PENDING_ID_LEN) != 0)
        i = (i + 1) & p->mask;
    return i;
}

/* Backward-shift deletion: pull later members of the probe run into the
 * hole so that lookups never need tombstones. */
static void slot_clear(gw_pending_t *p, size_t hole) {
    size_t i = hole;

    p->slots[hole] = EMPTY;
    for (;;) {
        size_t home;
        uint32_t e;

        i = (i + 1) & p->mask;
        e = p->slots[i];
        if (e == EMPTY)
            return;
        home = id_hash(p->entries[e].id) & p->mask;
        /* Move e into the hole unless its home lies cyclically in
         * (hole, i]: then it is already reachable from its home. */
        if (((i - home) & p->mask) >= ((i - hole) & p->mask)) {
            p->slots[hole] = e;
            p->entries[e].slot = (uint32_t)hole;
            p->slots[i] = EMPTY;
            hole = i;
        }
    }
}

/* --- public -------------------------------------------------------------- */

int gw_pending_add(gw_pending_t *p, const uint8_t id[GW_PENDING_ID_LEN],
                   int64_t deadline, void *data) {
    size_t slot;
    uint32_t e;

    if (p->nfree == 0)
        return -1;
    slot = slot_find(p, id);
    if (p->slots[slot] != EMPTY)
        return -1;
    e = p->free_list[--p->nfree];
    memcpy(p->entries[e].id, id, GW_PENDING_ID_LEN);
    p->entries[e].deadline = deadline;
    p->entries[e].data = data;
    p->entries[e].slot = (uint32_t)slot;
    p->slots[slot] = e;
    heap_set(p, p->count, e);
    p->count++;
    heap_up(p, p->count - 1);
    return 0;
}

static void *remove_entry(gw_pending_t *p, uint32_t e) {
    size_t pos = p->entries[e].heap_pos;
    void *data = p->entries[e].data;

    slot_clear(p, p->entries[e].slot);
    p->count--;
    if (pos != p->count) {
        heap_set(p, pos, p->heap[p->count]);
        if (pos > 0 && p->entries[p->heap[pos]].deadline <
                           p->entries[p->heap[(pos - 1) / 2]].deadline)
            heap_up(p, pos);
        else
            heap_down(p, pos);
    }
    p->entries[e].data = NULL;
    p->free_list[p->nfree++] = e;
    return data;
}

void *gw_pending_take(gw_pending_t *p, const uint8_t id[GW_PENDING_ID_LEN]) {
    size_t slot = slot_find(p, id);

    if (p->slots[slot] == EMPTY)
        return NULL;
    return remove_entry(p, p->slots[slot]);
}

void *gw_pending_take_expired(gw_pending_t *p, int64_t now) {
    if (p->count == 0 || p->entries[p->heap[0]].deadline > now)
        return NULL;
    return remove_entry(p, p->heap[0]);
}

void *gw_pending_take_any(gw_pending_t *p) {
    if (p->count == 0)
        return NULL;
    return remove_entry(p, p->heap[p->count - 1]);
}

int64_t gw_pending_next_deadline(const gw_pending_t *p) {
    return p->count ? p->entries[p->heap[0]].deadline : INT64_MAX;
}

size_t gw_pending_count(const gw_pending_t *p) {
    return p->count;
}
