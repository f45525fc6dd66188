/* test_options.c - common/options: flag over environment over default, and
 * the strict unsigned parser every program's numbers go through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "options.h"

static const cm_opt_t opts[] = {
    {"alpha", "TEST_OPT_ALPHA", "a-default", "X", "first"},
    {"beta", "TEST_OPT_BETA", NULL, "N", "second, no default"},
};

static cm_opts_result_t parse(int argc, char **argv, cm_opt_value_t *v) {
    return cm_options_parse("test", "1.0", "about", NULL, opts, 2, argc, argv,
                            v);
}

static void test_precedence(void **state) {
    cm_opt_value_t v[2];
    char *none[] = {"test", NULL};
    char *flag[] = {"test", "--alpha", "from-flag", "--beta=7", NULL};

    unsetenv("TEST_OPT_ALPHA");
    unsetenv("TEST_OPT_BETA");
    assert_int_equal(parse(1, none, v), CM_OPTS_OK);
    assert_string_equal(v[0].value, "a-default");
    assert_string_equal(v[0].from, "default");
    assert_null(v[1].value);

    setenv("TEST_OPT_ALPHA", "from-env", 1);
    setenv("TEST_OPT_BETA", "", 1); /* empty: as if unset */
    assert_int_equal(parse(1, none, v), CM_OPTS_OK);
    assert_string_equal(v[0].value, "from-env");
    assert_string_equal(v[0].from, "TEST_OPT_ALPHA");
    assert_null(v[1].value);

    assert_int_equal(parse(4, flag, v), CM_OPTS_OK);
    assert_string_equal(v[0].value, "from-flag");
    assert_string_equal(v[0].from, "--alpha");
    assert_string_equal(v[1].value, "7");
    assert_string_equal(v[1].from, "--beta");
    unsetenv("TEST_OPT_ALPHA");
    unsetenv("TEST_OPT_BETA");
}

static void test_bad_command_lines(void **state) {
    cm_opt_value_t v[2];
    char *unknown[] = {"test", "--gamma=1", NULL};
    char *missing[] = {"test", "--alpha", NULL};
    char *extra[] = {"test", "stray", NULL};

    assert_int_equal(parse(2, unknown, v), CM_OPTS_BAD);
    assert_int_equal(parse(2, missing, v), CM_OPTS_BAD);
    assert_int_equal(parse(2, extra, v), CM_OPTS_BAD);
}

static void test_parse_uint(void **state) {
    unsigned long v = 42;

    assert_int_equal(cm_parse_uint("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cm_parse_uint("0010", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(cm_parse_uint("4294967295", 0, 4294967295ul, &v), 0);
    v = 42;
    assert_int_equal(cm_parse_uint("11", 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint("5", 0, 0, &v), -1); /* max below a digit */
    assert_int_equal(cm_parse_uint("0", 1, 10, &v), -1);
    assert_int_equal(cm_parse_uint("", 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint(NULL, 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint("+1", 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint(" 1", 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint("1 ", 0, 10, &v), -1);
    assert_int_equal(cm_parse_uint("-1", 0, 10, &v), -1);
    assert_int_equal(
        cm_parse_uint("99999999999999999999999999", 0, (unsigned long)-1, &v),
        -1);
    assert_int_equal(v, 42);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_bad_command_lines),
        cmocka_unit_test(test_parse_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
