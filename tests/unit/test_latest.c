/* test_latest.c - gateway/latest: the reader always gets a whole version,
 * the newest one put; every version is freed exactly once (by the reader
 * when replaced, by the putter when never read); and with a putter and a
 * reader racing on two threads, the reader sees versions only in order and
 * only complete (run it under ASan/TSan for the memory side). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "latest.h"

/* A version: every word equals its number, so a half-built one shows. */
typedef struct {
    unsigned words[64];
} version_t;

static atomic_uint freed;

static void free_version(void *p) {
    atomic_fetch_add(&freed, 1);
    free(p);
}

static version_t *make(unsigned v) {
    version_t *x = malloc(sizeof(*x));
    unsigned i;

    for (i = 0; i < 64; i++)
        x->words[i] = v;
    return x;
}

static void test_hand_over(void **state) {
    gw_latest_t l;
    version_t *v;

    atomic_store(&freed, 0);
    gw_latest_init(&l, make(1), free_version);
    v = gw_latest_get(&l);
    assert_int_equal(v->words[0], 1);
    assert_ptr_equal(gw_latest_get(&l), v); /* nothing new: the same */

    gw_latest_put(&l, make(2));
    assert_int_equal(atomic_load(&freed), 0); /* 1 is still the reader's */
    v = gw_latest_get(&l);
    assert_int_equal(v->words[0], 2);
    assert_int_equal(atomic_load(&freed), 1); /* 1 freed by the reader */

    gw_latest_put(&l, make(3)); /* never read: */
    gw_latest_put(&l, make(4)); /* 3 freed by the putter */
    assert_int_equal(atomic_load(&freed), 2);
    gw_latest_put(&l, NULL); /* ignored */
    v = gw_latest_get(&l);
    assert_int_equal(v->words[63], 4);
    assert_int_equal(atomic_load(&freed), 3);

    gw_latest_put(&l, make(5));
    gw_latest_destroy(&l); /* 4 and the unread 5 */
    assert_int_equal(atomic_load(&freed), 5);
}

static void test_starts_empty(void **state) {
    gw_latest_t l;

    atomic_store(&freed, 0);
    gw_latest_init(&l, NULL, free_version);
    assert_null(gw_latest_get(&l));
    gw_latest_put(&l, make(7));
    assert_int_equal(((version_t *)gw_latest_get(&l))->words[5], 7);
    gw_latest_destroy(&l);
    assert_int_equal(atomic_load(&freed), 1);
}

#define PUTS 20000

static void *putter(void *arg) {
    gw_latest_t *l = arg;
    unsigned v;

    for (v = 2; v < PUTS + 2; v++)
        gw_latest_put(l, make(v));
    return NULL;
}

static void test_racing_threads(void **state) {
    gw_latest_t l;
    pthread_t t;
    unsigned last = 1, i;
    version_t *v;

    atomic_store(&freed, 0);
    gw_latest_init(&l, make(1), free_version);
    assert_int_equal(pthread_create(&t, NULL, putter, &l), 0);
    do {
        v = gw_latest_get(&l);
        for (i = 0; i < 64; i++)
            assert_int_equal(v->words[i], v->words[0]); /* whole */
        assert_true(v->words[0] >= last);               /* in order */
        last = v->words[0];
    } while (last != PUTS + 1);
    pthread_join(t, NULL);
    gw_latest_destroy(&l);
    /* Every version freed exactly once (ASan catches a double free). */
    assert_int_equal(atomic_load(&freed), PUTS + 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_over),
        cmocka_unit_test(test_starts_empty),
        cmocka_unit_test(test_racing_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
