/* test_watch.c - watched queues: a zero is believed only when it lasts, a
 * missing queue at once; slots, reads due, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "watch.h"

static void test_slots(void **state) {
    gw_watch_t *w = gw_watch_new();
    char name[32];
    int i;

    assert_non_null(w);
    assert_int_equal(gw_watch_count(w), 0);
    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "a"), 0);
    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "b"), 1);
    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "a"),
                     0); /* the same queue, one slot */
    assert_int_equal(gw_watch_count(w), 2);
    assert_string_equal(gw_watch_name(w, 1), "b");
    /* unknown until read: calls are admitted */
    assert_int_equal(gw_watch_consumers(w, 0), -1);
    assert_false(gw_watch_nobody(w, 0));
    for (i = 2; i < GW_WATCH_MAX; i++) {
        snprintf(name, sizeof(name), "q%d", i);
        assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, name), i);
    }
    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "one too many"), -1);
    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "a"),
                     0); /* a known one still is */
    gw_watch_free(w);
    gw_watch_free(NULL);
}

static void test_a_zero_must_last(void **state) {
    gw_watch_t *w = gw_watch_new();
    int64_t next;

    gw_watch_add(w, GW_WATCH_QUEUE, "q");
    assert_true(gw_watch_record(w, 0, 2, 0, 1000));
    assert_int_equal(gw_watch_consumers(w, 0), 2);
    assert_false(gw_watch_record(w, 0, 2, 0, 2000)); /* nothing new */
    /* the first zero: counted, not believed; read again once it could be */
    assert_true(gw_watch_record(w, 0, 0, 0, 3000));
    assert_int_equal(gw_watch_consumers(w, 0), 0);
    assert_false(gw_watch_nobody(w, 0));
    assert_int_equal(gw_watch_due(w, 3000, &next), -1);
    assert_int_equal(next, 3000 + GW_WATCH_CONFIRM_MS);
    /* too soon to confirm */
    gw_watch_record(w, 0, 0, 0, 3000 + GW_WATCH_CONFIRM_MS - 1);
    assert_false(gw_watch_nobody(w, 0));
    /* a consumer in between starts over (a leader elected) */
    gw_watch_record(w, 0, 1, 0, 3100);
    gw_watch_record(w, 0, 0, 0, 3200);
    gw_watch_record(w, 0, 0, 0, 3200 + GW_WATCH_CONFIRM_MS - 1);
    assert_false(gw_watch_nobody(w, 0));
    /* a zero that lasted */
    assert_true(gw_watch_record(w, 0, 0, 0, 3200 + GW_WATCH_CONFIRM_MS));
    assert_true(gw_watch_nobody(w, 0));
    assert_int_equal(gw_watch_due(w, 0, &next), -1);
    assert_int_equal(next, 3200 + GW_WATCH_CONFIRM_MS + GW_WATCH_NOBODY_MS);
    /* and a consumer back ends it at once */
    assert_true(gw_watch_record(w, 0, 1, 0, 9000));
    assert_false(gw_watch_nobody(w, 0));
    gw_watch_due(w, 0, &next);
    assert_int_equal(next, 9000 + GW_WATCH_SOME_MS);
    gw_watch_free(w);
}

static void test_missing_is_nobody_at_once(void **state) {
    gw_watch_t *w = gw_watch_new();

    gw_watch_add(w, GW_WATCH_QUEUE, "gone");
    assert_true(gw_watch_record(w, 0, 0, 1, 500));
    assert_true(gw_watch_nobody(w, 0));
    assert_int_equal(gw_watch_consumers(w, 0), 0);
    gw_watch_free(w);
}

static void test_due_earliest_first_and_reset(void **state) {
    gw_watch_t *w = gw_watch_new();
    int64_t next;

    gw_watch_add(w, GW_WATCH_QUEUE, "a");
    gw_watch_add(w, GW_WATCH_QUEUE, "b");
    /* both due at once when new */
    assert_true(gw_watch_due(w, 0, &next) >= 0);
    gw_watch_record(w, 0, 1, 0, 100); /* a: next at 1100 */
    gw_watch_record(w, 1, 1, 0, 50);  /* b: next at 1050 */
    assert_int_equal(gw_watch_due(w, 1000, &next), -1);
    assert_int_equal(next, 1050);
    assert_int_equal(gw_watch_due(w, 1060, &next), 1);
    gw_watch_record(w, 1, 0, 1, 1060);
    gw_watch_reset(w); /* the connection went: unknown, due at once */
    assert_int_equal(gw_watch_consumers(w, 0), -1);
    assert_false(gw_watch_nobody(w, 1));
    assert_true(gw_watch_due(w, 0, &next) >= 0);
    assert_int_equal(next, 0);
    gw_watch_free(w);
}

static void test_exchanges(void **state) {
    gw_watch_t *w = gw_watch_new();

    assert_int_equal(gw_watch_add(w, GW_WATCH_QUEUE, "images"), 0);
    /* an exchange and a queue of one name are two things */
    assert_int_equal(gw_watch_add(w, GW_WATCH_EXCHANGE, "images"), 1);
    assert_int_equal(gw_watch_kind(w, 1), GW_WATCH_EXCHANGE);
    assert_true(gw_watch_record(w, 1, 0, 0, 100)); /* declare-ok: exists */
    assert_int_equal(gw_watch_consumers(w, 1), 1);
    assert_false(gw_watch_nobody(w, 1));
    assert_true(gw_watch_record(w, 1, 0, 1, 200)); /* 404: gone, at once */
    assert_true(gw_watch_nobody(w, 1));
    assert_true(gw_watch_record(w, 1, 0, 0, 300)); /* back */
    assert_false(gw_watch_nobody(w, 1));
    gw_watch_free(w);
}

static void test_had_some_survives_resets(void **state) {
    gw_watch_t *w = gw_watch_new();

    gw_watch_add(w, GW_WATCH_QUEUE, "q");
    assert_false(gw_watch_had_some(w, 0));
    gw_watch_record(w, 0, 2, 0, 100);
    gw_watch_reset(w); /* the connection went */
    assert_true(gw_watch_had_some(w, 0));
    gw_watch_reset(w); /* and the next one reset again: still known */
    assert_true(gw_watch_had_some(w, 0));
    gw_watch_record(w, 0, 0, 1, 200); /* then the queue was gone */
    gw_watch_reset(w);
    assert_false(gw_watch_had_some(w, 0));
    gw_watch_free(w);
}

/* A queue that was nobody when the connection went is nobody at its
 * first zero after the reconnect (the gateway no longer waits a second
 * for it while connecting); one that was not must wait as ever. */
static void test_nobody_before_reset_is_nobody_at_first_zero(void **state) {
    gw_watch_t *w = gw_watch_new();

    (void)state;
    gw_watch_add(w, GW_WATCH_QUEUE, "idle");
    gw_watch_add(w, GW_WATCH_QUEUE, "new");
    gw_watch_record(w, 0, 0, 0, 100);
    gw_watch_record(w, 0, 0, 0, 100 + GW_WATCH_CONFIRM_MS);
    assert_true(gw_watch_nobody(w, 0));
    gw_watch_reset(w);
    assert_false(gw_watch_nobody(w, 0));
    gw_watch_record(w, 0, 0, 0, 5000);
    assert_true(gw_watch_nobody(w, 0));
    gw_watch_record(w, 1, 0, 0, 5000);
    assert_false(gw_watch_nobody(w, 1));
    /* said of the first read only: a consumer, then a zero waits again */
    gw_watch_reset(w);
    gw_watch_record(w, 0, 1, 0, 6000);
    gw_watch_record(w, 0, 0, 0, 6100);
    assert_false(gw_watch_nobody(w, 0));
    gw_watch_free(w);
}

static void test_a_refused_read_is_not_nobody(void **state) {
    gw_watch_t *w = gw_watch_new();
    int64_t next;

    (void)state;
    gw_watch_add(w, GW_WATCH_QUEUE, "locked");
    assert_int_equal(gw_watch_record(w, 0, 0, 1, 1000), 1);
    assert_int_equal(gw_watch_nobody(w, 0), 1);
    /* 403 or 405: unknown, and calls go on being published */
    assert_int_equal(gw_watch_refused(w, 0, 2000), 1);
    assert_int_equal(gw_watch_nobody(w, 0), 0);
    assert_int_equal(gw_watch_consumers(w, 0), -1);
    assert_int_equal(gw_watch_due(w, 2000 + GW_WATCH_REFUSED_MS - 1, &next),
                     -1);
    assert_int_equal(next, 2000 + GW_WATCH_REFUSED_MS);
    assert_int_equal(gw_watch_refused(w, 0, next), 0); /* nothing changed */
    gw_watch_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_a_refused_read_is_not_nobody),
        cmocka_unit_test(test_a_zero_must_last),
        cmocka_unit_test(test_missing_is_nobody_at_once),
        cmocka_unit_test(test_due_earliest_first_and_reset),
        cmocka_unit_test(test_exchanges),
        cmocka_unit_test(test_had_some_survives_resets),
        cmocka_unit_test(test_nobody_before_reset_is_nobody_at_first_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
