/* test_limits.c - the request head limits: where each one starts, and
 * that query parameters are counted as libmicrohttpd splits them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "limits.h"

/* "/" followed by pad bytes of 'a' and then tail. */
static const char *target(size_t pad, const char *tail) {
    static char buf[GW_MAX_TARGET * 2];

    buf[0] = '/';
    memset(buf + 1, 'a', pad);
    snprintf(buf + 1 + pad, sizeof(buf) - 1 - pad, "%s", tail);
    return buf;
}

static void test_target_length(void **state) {
    char detail[128];

    assert_int_equal(
        gw_limits_target(target(GW_MAX_TARGET - 1, ""), detail, sizeof(detail)),
        GW_E_OK);
    assert_int_equal(
        gw_limits_target(target(GW_MAX_TARGET, ""), detail, sizeof(detail)),
        GW_E_URI_TOO_LONG);
    assert_non_null(strstr(detail, "2049 bytes; at most 2048"));
}

static void test_query_parameters(void **state) {
    char q[256], detail[128];
    int i, off;

    /* Exactly the limit, then one more. */
    off = snprintf(q, sizeof(q), "/fib/1?");
    for (i = 0; i < GW_MAX_PARAMS; i++)
        off += snprintf(q + off, sizeof(q) - (size_t)off, "%sp%d=1",
                        i ? "&" : "", i);
    assert_int_equal(gw_limits_target(q, detail, sizeof(detail)), GW_E_OK);
    snprintf(q + off, sizeof(q) - (size_t)off, "&x");
    assert_int_equal(gw_limits_target(q, detail, sizeof(detail)),
                     GW_E_URI_TOO_LONG);
    assert_non_null(strstr(detail, "17 parameters; at most 16"));

    /* Empty pieces take a record each too; an empty query takes none. */
    assert_int_equal(
        gw_limits_target("/x?&&&&&&&&&&&&&&&&", detail, sizeof(detail)),
        GW_E_URI_TOO_LONG);
    assert_int_equal(gw_limits_target("/x?", detail, sizeof(detail)), GW_E_OK);
    assert_int_equal(gw_limits_target("/x", detail, sizeof(detail)), GW_E_OK);
    /* '&' before the '?' is part of the path, not a separator. */
    assert_int_equal(
        gw_limits_target("/&&&&&&&&&&&&&&&&&&&&?a=1", detail, sizeof(detail)),
        GW_E_OK);
}

static void test_head(void **state) {
    char detail[128];

    assert_int_equal(
        gw_limits_head(GW_MAX_HEAD, GW_MAX_FIELDS, detail, sizeof(detail)),
        GW_E_OK);
    assert_int_equal(gw_limits_head(GW_MAX_HEAD + 1, 1, detail, sizeof(detail)),
                     GW_E_HEADERS_TOO_LARGE);
    assert_non_null(strstr(detail, "4097 bytes; at most 4096"));
    assert_int_equal(
        gw_limits_head(100, GW_MAX_FIELDS + 1, detail, sizeof(detail)),
        GW_E_HEADERS_TOO_LARGE);
    assert_non_null(strstr(detail, "33 header fields"));
}

static void test_problem_codes(void **state) {
    assert_int_equal(gw_err_status(GW_E_URI_TOO_LONG), 414);
    assert_int_equal(gw_err_status(GW_E_HEADERS_TOO_LARGE), 431);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_length),
        cmocka_unit_test(test_query_parameters),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_problem_codes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
