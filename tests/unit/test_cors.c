/* test_cors.c - gateway/cors: the origins --cors-origins accepts (as
 * browsers send them in Origin), what it refuses and why, and that only an
 * exact match passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cors.h"

static void refused(const char *list, const char *want) {
    gw_cors_t c = {0};
    char why[400] = "";

    assert_int_equal(gw_cors_parse(list, &c, why, sizeof(why)), -1);
    assert_int_equal(c.n, 0);
    if (strstr(why, want) == NULL)
        fail_msg("'%s': why '%s', want it to contain '%s'", list, why, want);
}

static void test_parse(void **state) {
    gw_cors_t c;
    char why[200];

    assert_int_equal(gw_cors_parse("https://app.example.com, "
                                   "http://localhost:3000 ,http://[::1]:8080,"
                                   "https://xn--bcher-kva.example",
                                   &c, why, sizeof(why)),
                     0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.origin[0], "https://app.example.com");
    assert_string_equal(c.origin[1], "http://localhost:3000");
    assert_string_equal(c.origin[2], "http://[::1]:8080");
    assert_string_equal(c.origin[3], "https://xn--bcher-kva.example");
    /* Non-default ports and other schemes are origins too. */
    assert_int_equal(
        gw_cors_parse("https://a.example:8443,http://a.example:443,"
                      "app://local",
                      &c, why, sizeof(why)),
        0);
    assert_int_equal(c.n, 3);
}

static void test_refused(void **state) {
    refused("*", "'*': list each origin exactly");
    refused("null", "'null'");
    refused("https://App.example.com", "lowercase");
    refused("https://a.example/", "no path");
    refused("https://a.example/x", "no path");
    refused("a.example", "want scheme://host[:port]");
    refused("https://", "no host");
    refused("https://:8080", "no host");
    refused("https://a.example:", "an empty port");
    refused("https://a.example:99999", "above 65535");
    refused("https://a.example:443", "default port");
    refused("http://a.example:80", "default port");
    refused("https://a.example:8x", "want scheme://host[:port]");
    refused("http://[::1", "unclosed");
    refused("http://a b", "want scheme://host[:port]");
    refused("", "no origin");
    refused(" , ", "no origin");
    refused("https://ok.example,https://Bad.example", "'https://Bad.example'");
    refused("http://a,http://b,http://c,http://d,http://e,http://f,http://g,"
            "http://h,http://i,http://j,http://k,http://l,http://m,http://n,"
            "http://o,http://p,http://q",
            "more than 16");
}

static void test_match(void **state) {
    gw_cors_t c;
    char why[200];

    assert_int_equal(gw_cors_parse("https://app.example.com,http://localhost:"
                                   "3000",
                                   &c, why, sizeof(why)),
                     0);
    assert_string_equal(gw_cors_match(&c, "https://app.example.com"),
                        "https://app.example.com");
    assert_string_equal(gw_cors_match(&c, "http://localhost:3000"),
                        "http://localhost:3000");
    assert_null(gw_cors_match(&c, NULL));
    assert_null(gw_cors_match(&c, ""));
    assert_null(gw_cors_match(&c, "null"));
    assert_null(gw_cors_match(&c, "http://app.example.com"));
    assert_null(gw_cors_match(&c, "https://app.example.com:443"));
    assert_null(gw_cors_match(&c, "https://app.example.com/"));
    assert_null(gw_cors_match(&c, "https://app.example.co"));
    assert_null(gw_cors_match(&c, "https://app.example.com.evil.example"));
    assert_null(gw_cors_match(&c, "https://evil.app.example.com"));
    assert_null(gw_cors_match(&c, "http://localhost:30000"));
}

static void test_list_add(void **state) {
    char list[46] = "Authorization, X-Request-Id";

    (void)state;
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "x-tenant"), 0);
    assert_string_equal(list, "Authorization, X-Request-Id, x-tenant");
    /* there already, in any case: unchanged */
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "authorization"), 0);
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "X-TENANT"), 0);
    assert_string_equal(list, "Authorization, X-Request-Id, x-tenant");
    /* a prefix of a name is another name */
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "x-t"), 0);
    assert_string_equal(list, "Authorization, X-Request-Id, x-tenant, x-t");
    /* too long for the buffer: -1, unchanged (47 bytes of 46) */
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "ab"), -1);
    assert_string_equal(list, "Authorization, X-Request-Id, x-tenant, x-t");
    list[0] = '\0';
    assert_int_equal(gw_cors_list_add(list, sizeof(list), "x-cache"), 0);
    assert_string_equal(list, "x-cache");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_list_add),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
