/* test_ids.c - correlation and request ids: unique, unpredictable,
 * well-formed UUIDs whose text form agrees with libuuid, and a strict
 * parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uuid/uuid.h>

#include "ids.h"

static int cmp_id(const void *a, const void *b) {
    return memcmp(a, b, GW_ID_LEN);
}

static void test_unique_and_versioned(void **state) {
    enum { N = 100000 };
    uint8_t(*ids)[GW_ID_LEN] = malloc((size_t)N * GW_ID_LEN);
    gw_idgen_t g;
    int i;

    assert_non_null(ids);
    gw_idgen_init(&g);
    for (i = 0; i < N; i++) {
        gw_idgen_next(&g, ids[i]);
        assert_int_equal(ids[i][6] >> 4, 4);      /* version 4 */
        assert_int_equal(ids[i][8] & 0xc0, 0x80); /* RFC 4122 variant */
    }
    qsort(ids, N, GW_ID_LEN, cmp_id);
    for (i = 1; i < N; i++)
        assert_true(memcmp(ids[i - 1], ids[i], GW_ID_LEN) != 0);
    free(ids);
}

static void test_two_generators_differ(void **state) {
    gw_idgen_t a, b;
    uint8_t x[GW_ID_LEN], y[GW_ID_LEN];

    gw_idgen_init(&a);
    gw_idgen_init(&b);
    gw_idgen_next(&a, x);
    gw_idgen_next(&b, y);
    assert_true(memcmp(x, y, GW_ID_LEN) != 0);
}

/* No id follows from another: consecutive ids share no half, and no two
 * differ by a small count (the old counting ids differed by 1). */
static void test_not_predictable(void **state) {
    enum { N = 5000 };
    uint8_t prev[GW_ID_LEN], id[GW_ID_LEN];
    gw_idgen_t g;
    int i, j, same_high = 0, same_low = 0, bits = 0;

    gw_idgen_init(&g);
    gw_idgen_next(&g, prev);
    for (i = 0; i < N; i++) {
        gw_idgen_next(&g, id);
        same_high += memcmp(id, prev, 8) == 0;
        same_low += memcmp(id + 9, prev + 9, 7) == 0;
        for (j = 0; j < GW_ID_LEN; j++)
            bits += __builtin_popcount((unsigned)(id[j] ^ prev[j]));
        memcpy(prev, id, sizeof(id));
    }
    assert_int_equal(same_high, 0);
    assert_int_equal(same_low, 0);
    /* 122 random bits: 61 differ between neighbours on average, with a
     * standard deviation of about 400 over the run; the bounds are some
     * 70 of those away. */
    assert_true(bits > N * 55 && bits < N * 67);
}

static void test_text_matches_libuuid(void **state) {
    char ours[GW_ID_TEXT_LEN + 1], theirs[37], hex[GW_ID_HEX_LEN + 1];
    uint8_t id[GW_ID_LEN], back[GW_ID_LEN];
    gw_idgen_t g;
    int i;

    gw_idgen_init(&g);
    for (i = 0; i < 1000; i++) {
        gw_idgen_next(&g, id);
        gw_id_text(id, ours);
        uuid_unparse_lower(id, theirs);
        assert_string_equal(ours, theirs);
        assert_int_equal(gw_id_parse(ours, strlen(ours), back), 0);
        assert_memory_equal(id, back, GW_ID_LEN);
        uuid_unparse_upper(id, theirs);
        assert_int_equal(gw_id_parse(theirs, strlen(theirs), back), 0);
        assert_memory_equal(id, back, GW_ID_LEN);
        gw_id_hex(id, hex);
        assert_int_equal(strlen(hex), GW_ID_HEX_LEN);
    }
}

static void test_parse_rejects(void **state) {
    static const char good[] = "3ce96b4f-6e41-4e02-aca2-3f1e34f9ac45";
    static const char *const bad[] = {
        "",
        "3ce96b4f-6e41-4e02-aca2-3f1e34f9ac4",   /* short */
        "3ce96b4f-6e41-4e02-aca2-3f1e34f9ac455", /* long */
        "3ce96b4f6e41-4e02-aca2-3f1e34f9ac45-",  /* dash moved */
        "3ce96b4f-6e41-4e02-aca2-3f1e34f9ac4g",  /* not hex */
        "3ce96b4f 6e41-4e02-aca2-3f1e34f9ac45",  /* space */
        "{ce96b4f-6e41-4e02-aca2-3f1e34f9ac45",
    };
    uint8_t id[GW_ID_LEN];
    size_t i;

    assert_int_equal(gw_id_parse(good, strlen(good), id), 0);
    /* length is what the caller says, not where a NUL is */
    assert_int_equal(gw_id_parse(good, strlen(good) - 1, id), -1);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_id_parse(bad[i], strlen(bad[i]), id), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unique_and_versioned),
        cmocka_unit_test(test_two_generators_differ),
        cmocka_unit_test(test_not_predictable),
        cmocka_unit_test(test_text_matches_libuuid),
        cmocka_unit_test(test_parse_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
