/* test_headq.c - the FIFO of request-head deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "headq.h"

static void test_order_and_expiry(void **state) {
    cm_headq_t q = {0};
    cm_headq_node_t n[4] = {{0}};

    assert_int_equal(cm_headq_next_due(&q), INT64_MAX);
    assert_null(cm_headq_pop_due(&q, 1000));
    cm_headq_push(&q, &n[0], 100);
    cm_headq_push(&q, &n[1], 200);
    cm_headq_push(&q, &n[2], 200);
    cm_headq_push(&q, &n[3], 300);
    assert_int_equal(cm_headq_next_due(&q), 100);
    assert_null(cm_headq_pop_due(&q, 99));
    assert_ptr_equal(cm_headq_pop_due(&q, 100), &n[0]);
    assert_null(cm_headq_pop_due(&q, 199));
    assert_ptr_equal(cm_headq_pop_due(&q, 250), &n[1]);
    assert_ptr_equal(cm_headq_pop_due(&q, 250), &n[2]);
    assert_null(cm_headq_pop_due(&q, 250));
    assert_ptr_equal(cm_headq_pop_due(&q, 300), &n[3]);
    assert_null(q.first);
    assert_null(q.last);
}

static void test_remove_anywhere_and_twice(void **state) {
    cm_headq_t q = {0};
    cm_headq_node_t n[3] = {{0}};

    cm_headq_push(&q, &n[0], 10);
    cm_headq_push(&q, &n[1], 20);
    cm_headq_push(&q, &n[2], 30);
    cm_headq_remove(&q, &n[1]); /* middle */
    cm_headq_remove(&q, &n[1]); /* not queued: nothing */
    cm_headq_remove(&q, &n[2]); /* last */
    assert_ptr_equal(q.last, &n[0]);
    cm_headq_push(&q, &n[0], 99); /* already queued: unchanged */
    assert_int_equal(cm_headq_next_due(&q), 10);
    cm_headq_remove(&q, &n[0]); /* only */
    assert_null(q.first);
    assert_null(q.last);
    cm_headq_push(&q, &n[2], 5); /* reusable after removal */
    assert_ptr_equal(cm_headq_pop_due(&q, 5), &n[2]);
}

static void test_earlier_deadline_keeps_order(void **state) {
    cm_headq_t q = {0};
    cm_headq_node_t a = {0}, b = {0};

    cm_headq_push(&q, &a, 100);
    cm_headq_push(&q, &b, 50); /* the clock never goes back; if it did... */
    assert_int_equal(b.due_ms, 100);
    assert_ptr_equal(cm_headq_pop_due(&q, 100), &a);
    assert_ptr_equal(cm_headq_pop_due(&q, 100), &b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_expiry),
        cmocka_unit_test(test_remove_anywhere_and_twice),
        cmocka_unit_test(test_earlier_deadline_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
