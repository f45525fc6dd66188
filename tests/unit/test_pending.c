/* test_pending.c - unit tests for gateway/pending.c: id -> data round trips,
 * capacity and duplicate rules, deadline order, and a randomized comparison
 * against a plain array model.  Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pending.h"

/* An id whose 16 bytes all derive from k (k = 0 and k = 1 differ). */
static void make_id(uint8_t id[GW_PENDING_ID_LEN], uint32_t k) {
    size_t i;

    for (i = 0; i < GW_PENDING_ID_LEN; i++)
        id[i] = (uint8_t)((k >> (8 * (i % 4))) ^ (i * 37));
}

static gw_pending_t *new_table(size_t capacity) {
    gw_pending_t *p = gw_pending_new(capacity);

    assert_non_null(p);
    return p;
}

static void test_new_free(void **state) {
    gw_pending_t *p;

    assert_null(gw_pending_new(0));
    gw_pending_free(NULL);
    p = new_table(1);
    assert_int_equal(gw_pending_count(p), 0);
    assert_true(gw_pending_next_deadline(p) == INT64_MAX);
    assert_null(gw_pending_take_any(p));
    assert_null(gw_pending_take_expired(p, INT64_MAX));
    gw_pending_free(p);
}

static void test_add_take(void **state) {
    gw_pending_t *p = new_table(8);
    uint8_t a[GW_PENDING_ID_LEN], b[GW_PENDING_ID_LEN];
    int da, db;

    make_id(a, 1);
    make_id(b, 2);
    assert_int_equal(gw_pending_add(p, a, 100, &da), 0);
    assert_int_equal(gw_pending_add(p, b, 50, &db), 0);
    assert_int_equal(gw_pending_count(p), 2);
    assert_ptr_equal(gw_pending_take(p, a), &da);
    assert_int_equal(gw_pending_count(p), 1);
    /* Taken once, gone: a second reply for the same id finds nothing. */
    assert_null(gw_pending_take(p, a));
    assert_ptr_equal(gw_pending_take(p, b), &db);
    assert_int_equal(gw_pending_count(p), 0);
    assert_true(gw_pending_next_deadline(p) == INT64_MAX);
    gw_pending_free(p);
}

static void test_unknown_id(void **state) {
    gw_pending_t *p = new_table(4);
    uint8_t a[GW_PENDING_ID_LEN], b[GW_PENDING_ID_LEN];
    int da;

    make_id(a, 1);
    make_id(b, 2);
    assert_null(gw_pending_take(p, b));
    assert_int_equal(gw_pending_add(p, a, 1, &da), 0);
    assert_null(gw_pending_take(p, b));
    /* One differing byte is a different id. */
    memcpy(b, a, sizeof(b));
    b[GW_PENDING_ID_LEN - 1] ^= 1;
    assert_null(gw_pending_take(p, b));
    assert_int_equal(gw_pending_count(p), 1);
    assert_ptr_equal(gw_pending_take(p, a), &da);
    gw_pending_free(p);
}

static void test_duplicate_rejected(void **state) {
    gw_pending_t *p = new_table(4);
    uint8_t a[GW_PENDING_ID_LEN];
    int first, second;

    make_id(a, 7);
    assert_int_equal(gw_pending_add(p, a, 100, &first), 0);
    assert_int_equal(gw_pending_add(p, a, 5, &second), -1);
    /* Nothing changed: same count, same deadline, the first data. */
    assert_int_equal(gw_pending_count(p), 1);
    assert_true(gw_pending_next_deadline(p) == 100);
    assert_null(gw_pending_take_expired(p, 50));
    assert_ptr_equal(gw_pending_take(p, a), &first);
    assert_null(gw_pending_take(p, a));
    /* Once taken, the id may be used again. */
    assert_int_equal(gw_pending_add(p, a, 1, &second), 0);
    assert_ptr_equal(gw_pending_take(p, a), &second);
    gw_pending_free(p);
}

static void test_full(void **state) {
    enum { CAP = 5 };
    gw_pending_t *p = new_table(CAP);
    uint8_t id[GW_PENDING_ID_LEN];
    int data[CAP + 1];
    uint32_t k;

    for (k = 0; k < CAP; k++) {
        make_id(id, k);
        assert_int_equal(gw_pending_add(p, id, k, &data[k]), 0);
    }
    assert_int_equal(gw_pending_count(p), CAP);
    make_id(id, CAP);
    assert_int_equal(gw_pending_add(p, id, 0, &data[CAP]), -1);
    assert_int_equal(gw_pending_count(p), CAP);
    assert_true(gw_pending_next_deadline(p) == 0);
    assert_null(gw_pending_take(p, id));

    /* Room again after each kind of removal. */
    make_id(id, 2);
    assert_ptr_equal(gw_pending_take(p, id), &data[2]);
    make_id(id, CAP);
    assert_int_equal(gw_pending_add(p, id, 99, &data[CAP]), 0);
    make_id(id, CAP + 1);
    assert_int_equal(gw_pending_add(p, id, 99, &data[CAP]), -1);

    assert_ptr_equal(gw_pending_take_expired(p, 0), &data[0]);
    assert_int_equal(gw_pending_add(p, id, 99, &data[CAP]), 0);
    assert_int_equal(gw_pending_count(p), CAP);

    assert_non_null(gw_pending_take_any(p));
    make_id(id, CAP + 2);
    assert_int_equal(gw_pending_add(p, id, 99, &data[CAP]), 0);
    assert_int_equal(gw_pending_count(p), CAP);
    gw_pending_free(p);
}

static void test_expired_order(void **state) {
    static const int64_t deadlines[] = {50, 10, 40, 30, 20, 60, 10, 70};
    enum { N = sizeof(deadlines) / sizeof(deadlines[0]) };
    gw_pending_t *p = new_table(N);
    uint8_t id[GW_PENDING_ID_LEN];
    int64_t data[N];
    int64_t *got, last = INT64_MIN;
    size_t k, taken = 0;

    for (k = 0; k < N; k++) {
        data[k] = deadlines[k];
        make_id(id, (uint32_t)k);
        assert_int_equal(gw_pending_add(p, id, deadlines[k], &data[k]), 0);
    }
    assert_true(gw_pending_next_deadline(p) == 10);

    /* Nothing is due before the earliest deadline. */
    assert_null(gw_pending_take_expired(p, 9));
    assert_int_equal(gw_pending_count(p), N);

    /* Up to 35: the two 10s, 20 and 30, in that order, then nothing. */
    while ((got = gw_pending_take_expired(p, 35)) != NULL) {
        assert_true(*got <= 35);
        assert_true(*got >= last);
        last = *got;
        taken++;
    }
    assert_int_equal(taken, 4);
    assert_int_equal(last, 30);
    assert_int_equal(gw_pending_count(p), N - 4);
    assert_true(gw_pending_next_deadline(p) == 40);

    /* Due exactly now counts as expired. */
    got = gw_pending_take_expired(p, 40);
    assert_non_null(got);
    assert_int_equal(*got, 40);
    assert_null(gw_pending_take_expired(p, 40));
    assert_true(gw_pending_next_deadline(p) == 50);
    gw_pending_free(p);
}

/* Taking entries out of the middle of the heap must keep the rest ordered. */
static void test_take_middle_keeps_order(void **state) {
    enum { N = 32 };
    gw_pending_t *p = new_table(N);
    uint8_t id[GW_PENDING_ID_LEN];
    int64_t data[N];
    int64_t *got, last = INT64_MIN;
    uint32_t k;
    size_t left = 0;

    /* Deadlines in a scrambled order: 7k mod 32 visits each of 0..31. */
    for (k = 0; k < N; k++) {
        data[k] = (int64_t)((k * 7) % N);
        make_id(id, k);
        assert_int_equal(gw_pending_add(p, id, data[k], &data[k]), 0);
    }
    for (k = 0; k < N; k += 3) {
        make_id(id, k);
        assert_ptr_equal(gw_pending_take(p, id), &data[k]);
    }
    left = gw_pending_count(p);
    assert_int_equal(left, N - (N + 2) / 3);
    while ((got = gw_pending_take_expired(p, INT64_MAX)) != NULL) {
        assert_true(*got > last);
        assert_true((got - data) % 3 != 0);
        last = *got;
        left--;
    }
    assert_int_equal(left, 0);
    assert_int_equal(gw_pending_count(p), 0);
    gw_pending_free(p);
}

static void test_next_deadline(void **state) {
    gw_pending_t *p = new_table(4);
    uint8_t a[GW_PENDING_ID_LEN], b[GW_PENDING_ID_LEN];
    int d;

    make_id(a, 1);
    make_id(b, 2);
    assert_true(gw_pending_next_deadline(p) == INT64_MAX);
    assert_int_equal(gw_pending_add(p, a, 500, &d), 0);
    assert_true(gw_pending_next_deadline(p) == 500);
    assert_int_equal(gw_pending_add(p, b, -20, &d), 0);
    assert_true(gw_pending_next_deadline(p) == -20);
    assert_non_null(gw_pending_take(p, b));
    assert_true(gw_pending_next_deadline(p) == 500);
    assert_non_null(gw_pending_take(p, a));
    assert_true(gw_pending_next_deadline(p) == INT64_MAX);
    gw_pending_free(p);
}

static void test_take_any_drains(void **state) {
    enum { N = 100 };
    gw_pending_t *p = new_table(N);
    uint8_t id[GW_PENDING_ID_LEN];
    int data[N], seen[N];
    int *got;
    uint32_t k;

    memset(seen, 0, sizeof(seen));
    for (k = 0; k < N; k++) {
        make_id(id, k);
        assert_int_equal(gw_pending_add(p, id, (int64_t)(k % 10), &data[k]), 0);
    }
    for (k = 0; k < N; k++) {
        got = gw_pending_take_any(p);
        assert_non_null(got);
        assert_true(got >= data && got < data + N);
        assert_int_equal(seen[got - data], 0);
        seen[got - data] = 1;
        assert_int_equal(gw_pending_count(p), N - 1 - k);
    }
    assert_null(gw_pending_take_any(p));
    assert_true(gw_pending_next_deadline(p) == INT64_MAX);
    /* Drained entries are really gone from the hash table too. */
    for (k = 0; k < N; k++) {
        make_id(id, k);
        assert_null(gw_pending_take(p, id));
    }
    gw_pending_free(p);
}

/* --- randomized model test ----------------------------------------------- */

typedef struct {
    uint8_t id[GW_PENDING_ID_LEN];
    int64_t deadline;
    int live;
} model_entry_t;

typedef struct {
    gw_pending_t *p;
    model_entry_t *m; /* capacity entries; data pointers point here */
    size_t capacity, live;
    uint64_t rng;
    /* ids that were taken, to try them again later */
    uint8_t old[16][GW_PENDING_ID_LEN];
    size_t nold;
} model_t;

static uint64_t rnd(model_t *mt) {
    /* xorshift64*: deterministic, so a failure can be replayed. */
    mt->rng ^= mt->rng >> 12;
    mt->rng ^= mt->rng << 25;
    mt->rng ^= mt->rng >> 27;
    return mt->rng * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(model_t *mt, size_t n) {
    return (size_t)(rnd(mt) % n);
}

static void rnd_id(model_t *mt, uint8_t id[GW_PENDING_ID_LEN]) {
    uint64_t a = rnd(mt), b = rnd(mt);

    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
}

/* The model entry holding id, or NULL. */
static model_entry_t *model_find(model_t *mt,
                                 const uint8_t id[GW_PENDING_ID_LEN]) {
    size_t i;

    for (i = 0; i < mt->capacity; i++)
        if (mt->m[i].live && memcmp(mt->m[i].id, id, GW_PENDING_ID_LEN) == 0)
            return &mt->m[i];
    return NULL;
}

static int64_t model_min(const model_t *mt) {
    int64_t min = INT64_MAX;
    size_t i;

    for (i = 0; i < mt->capacity; i++)
        if (mt->m[i].live && mt->m[i].deadline < min)
            min = mt->m[i].deadline;
    return min;
}

static model_entry_t *model_pick_live(model_t *mt) {
    size_t i, start;

    if (mt->live == 0)
        return NULL;
    start = rnd_below(mt, mt->capacity);
    for (i = 0; i < mt->capacity; i++) {
        model_entry_t *e = &mt->m[(start + i) % mt->capacity];
        if (e->live)
            return e;
    }
    fail_msg("model says %zu live but none found", mt->live);
    return NULL;
}

/* got came back from the table: it must be a live model entry; retire it. */
static void model_retire(model_t *mt, void *got) {
    model_entry_t *e = got;

    assert_non_null(e);
    assert_true(e >= mt->m && e < mt->m + mt->capacity);
    assert_true(e->live);
    e->live = 0;
    mt->live--;
    memcpy(mt->old[mt->nold % 16], e->id, GW_PENDING_ID_LEN);
    mt->nold++;
}

static void op_add(model_t *mt) {
    uint8_t id[GW_PENDING_ID_LEN];
    int64_t deadline = (int64_t)rnd_below(mt, 200);
    model_entry_t *e = NULL;
    size_t i;

    /* Sometimes re-use an id that was taken earlier. */
    if (mt->nold > 0 && rnd_below(mt, 4) == 0)
        memcpy(id, mt->old[rnd_below(mt, mt->nold < 16 ? mt->nold : 16)],
               GW_PENDING_ID_LEN);
    else
        rnd_id(mt, id);
    if (model_find(mt, id) != NULL) {
        assert_int_equal(gw_pending_add(mt->p, id, deadline, mt->m), -1);
        return;
    }
    if (mt->live == mt->capacity) {
        assert_int_equal(gw_pending_add(mt->p, id, deadline, mt->m), -1);
        return;
    }
    for (i = 0; i < mt->capacity; i++) {
        if (!mt->m[i].live) {
            e = &mt->m[i];
            break;
        }
    }
    assert_non_null(e);
    assert_int_equal(gw_pending_add(mt->p, id, deadline, e), 0);
    memcpy(e->id, id, GW_PENDING_ID_LEN);
    e->deadline = deadline;
    e->live = 1;
    mt->live++;
}

static void op_add_duplicate(model_t *mt) {
    model_entry_t *e = model_pick_live(mt);

    if (e == NULL)
        return;
    assert_int_equal(gw_pending_add(mt->p, e->id, -1, mt->m), -1);
}

static void op_take(model_t *mt) {
    model_entry_t *e = model_pick_live(mt);
    uint8_t id[GW_PENDING_ID_LEN];

    if (e == NULL)
        return;
    memcpy(id, e->id, sizeof(id));
    assert_ptr_equal(gw_pending_take(mt->p, id), e);
    model_retire(mt, e);
    assert_null(gw_pending_take(mt->p, id));
}

static void op_take_unknown(model_t *mt) {
    uint8_t id[GW_PENDING_ID_LEN];

    if (mt->nold > 0 && rnd_below(mt, 2) == 0)
        memcpy(id, mt->old[rnd_below(mt, mt->nold < 16 ? mt->nold : 16)],
               GW_PENDING_ID_LEN);
    else
        rnd_id(mt, id);
    if (model_find(mt, id) == NULL)
        assert_null(gw_pending_take(mt->p, id));
}

static void op_expire(model_t *mt) {
    int64_t now = (int64_t)rnd_below(mt, 220) - 10;
    int64_t last = INT64_MIN;
    model_entry_t *e;

    while ((e = gw_pending_take_expired(mt->p, now)) != NULL) {
        assert_true(e >= mt->m && e < mt->m + mt->capacity);
        assert_true(e->live);
        assert_true(e->deadline <= now);
        /* Earliest first: nothing live in the model is earlier. */
        assert_true(e->deadline == model_min(mt));
        assert_true(e->deadline >= last);
        last = e->deadline;
        model_retire(mt, e);
    }
    assert_true(model_min(mt) > now);
}

static void op_take_any(model_t *mt) {
    void *got = gw_pending_take_any(mt->p);

    if (mt->live == 0) {
        assert_null(got);
        return;
    }
    model_retire(mt, got);
}

static void check_invariants(model_t *mt) {
    assert_int_equal(gw_pending_count(mt->p), mt->live);
    assert_true(gw_pending_next_deadline(mt->p) == model_min(mt));
}

static void run_model(size_t capacity, size_t ops, uint64_t seed) {
    model_t mt;
    size_t i;
    model_entry_t *e;

    memset(&mt, 0, sizeof(mt));
    mt.capacity = capacity;
    mt.rng = seed;
    mt.p = new_table(capacity);
    mt.m = calloc(capacity, sizeof(*mt.m));
    assert_non_null(mt.m);

    for (i = 0; i < ops; i++) {
        /* Adds outweigh removals slightly so the table spends time near
         * full, where probe runs are longest. */
        size_t r = rnd_below(&mt, 16);

        if (r < 7)
            op_add(&mt);
        else if (r < 8)
            op_add_duplicate(&mt);
        else if (r < 12)
            op_take(&mt);
        else if (r < 13)
            op_take_unknown(&mt);
        else if (r < 15)
            op_expire(&mt);
        else
            op_take_any(&mt);
        check_invariants(&mt);
    }

    /* Everything still in the model is still findable, exactly once. */
    while ((e = model_pick_live(&mt)) != NULL) {
        assert_ptr_equal(gw_pending_take(mt.p, e->id), e);
        model_retire(&mt, e);
        check_invariants(&mt);
    }
    assert_null(gw_pending_take_any(mt.p));
    gw_pending_free(mt.p);
    free(mt.m);
}

static void test_model_tiny(void **state) {
    /* 1..4 entries in 2..8 slots: probe runs wrap around the table. */
    run_model(1, 5000, 0x1234567ull);
    run_model(2, 5000, 0x2345678ull);
    run_model(3, 10000, 0x3456789ull);
    run_model(4, 10000, 0x456789aull);
}

static void test_model_64(void **state) {
    run_model(64, 50000, 0x9e3779b97f4a7c15ull);
    run_model(64, 50000, 42);
}

static void test_model_1000(void **state) {
    run_model(1000, 50000, 0xdeadbeefcafef00dull);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_add_take),
        cmocka_unit_test(test_unknown_id),
        cmocka_unit_test(test_duplicate_rejected),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_expired_order),
        cmocka_unit_test(test_take_middle_keeps_order),
        cmocka_unit_test(test_next_deadline),
        cmocka_unit_test(test_take_any_drains),
        cmocka_unit_test(test_model_tiny),
        cmocka_unit_test(test_model_64),
        cmocka_unit_test(test_model_1000),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
