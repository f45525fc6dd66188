/* test_unconf.c - the publishes waiting for their confirm (gateway/unconf.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unconf.h"

static gw_unconf_entry_t entry(uint16_t channel, uint64_t tag) {
    gw_unconf_entry_t e;

    memset(&e, 0, sizeof(e));
    e.channel = channel;
    e.tag = tag;
    e.sent_ms = (int64_t)tag;
    e.id[0] = (uint8_t)tag;
    return e;
}

static void push(gw_unconf_t *u, uint16_t channel, uint64_t tag, int want) {
    gw_unconf_entry_t e = entry(channel, tag);

    assert_int_equal(gw_unconf_push(u, &e), want);
}

static size_t seen;
static uint64_t seen_tags[16];

static void record(void *arg, const gw_unconf_entry_t *e) {
    (void)arg;
    seen_tags[seen++] = e->tag;
}

/* One channel that never confirms (the oldest entry) must not make the
 * others' confirmed publishes fill the table: only waiting ones count. */
static void test_a_stuck_channel_does_not_fill_it(void **state) {
    gw_unconf_t *u = gw_unconf_new(4);
    uint64_t t;

    (void)state;
    push(u, 3, 1, 0); /* stuck for good */
    for (t = 1; t <= 40; t++) {
        push(u, 4, t, 0);
        seen = 0;
        assert_int_equal(gw_unconf_confirm(u, 4, t, 0, record, NULL), 1);
        assert_int_equal(seen_tags[0], t);
        assert_int_equal(gw_unconf_waiting(u), 1);
    }
    push(u, 4, 41, 0);
    push(u, 4, 42, 0);
    push(u, 4, 43, 0);
    assert_true(gw_unconf_full(u)); /* four waiting: now it is full */
    push(u, 4, 44, -1);
    seen = 0; /* multiple: 41..43 in order */
    assert_int_equal(gw_unconf_confirm(u, 4, 43, 1, record, NULL), 3);
    assert_int_equal(seen_tags[0], 41);
    assert_int_equal(seen_tags[2], 43);
    assert_int_equal(gw_unconf_oldest(u, 3)->tag, 1);
    assert_null(gw_unconf_oldest(u, 4));
    gw_unconf_free(u);
}

/* A channel number that comes round again: the old channel's settled
 * entries, still in the table behind a waiting one, have higher tags
 * than the new channel's; they must not hide its entries. */
static void test_settled_entries_of_a_reused_number(void **state) {
    gw_unconf_t *u = gw_unconf_new(8);

    (void)state;
    push(u, 3, 1, 0); /* waiting: keeps what follows in the table */
    push(u, 5, 10, 0);
    gw_unconf_drop(u, 5); /* channel 5 retired */
    push(u, 5, 1, 0);     /* and its number given out again */
    seen = 0;
    assert_int_equal(gw_unconf_confirm(u, 5, 1, 0, record, NULL), 1);
    assert_int_equal(seen_tags[0], 1);
    push(u, 5, 2, 0);
    seen = 0;
    assert_int_equal(gw_unconf_confirm(u, 5, 2, 1, record, NULL), 1);
    gw_unconf_free(u);
}

static gw_unconf_t *dropping;

static void drop_other(void *arg, const gw_unconf_entry_t *e) {
    (void)e;
    (void)arg;
    seen++;
    gw_unconf_drop(dropping, 3); /* as a retired channel's last call ends */
}

static void test_drop_while_confirming(void **state) {
    gw_unconf_t *u = gw_unconf_new(8);

    (void)state;
    dropping = u;
    push(u, 3, 1, 0);
    push(u, 4, 1, 0);
    push(u, 4, 2, 0);
    seen = 0;
    assert_int_equal(gw_unconf_confirm(u, 4, 2, 1, drop_other, NULL), 2);
    assert_int_equal(seen, 2);
    assert_int_equal(gw_unconf_waiting(u), 0);
    gw_unconf_clear(u);
    assert_null(gw_unconf_oldest(u, 3));
    gw_unconf_free(u);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stuck_channel_does_not_fill_it),
        cmocka_unit_test(test_settled_entries_of_a_reused_number),
        cmocka_unit_test(test_drop_while_confirming),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
