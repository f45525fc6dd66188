/* test_urls.c - common/urls: the broker list (parsing, what it refuses,
 * shuffling), password masking and the reconnect schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "urls.h"

static void test_one(void **state) {
    cm_urls_t u;
    char why[256];

    (void)state;
    assert_int_equal(
        cm_urls_parse(&u, "amqp://fo:pw@10.0.0.1:5673/v", why, sizeof(why)), 0);
    assert_int_equal(u.n, 1);
    assert_string_equal(u.url[0].info.host, "10.0.0.1");
    assert_int_equal(u.url[0].info.port, 5673);
    assert_string_equal(u.url[0].info.vhost, "v");
    assert_string_equal(u.url[0].info.user, "fo");
    assert_string_equal(u.url[0].info.password, "pw");
    assert_int_equal(u.url[0].info.ssl, 0);
    assert_string_equal(u.url[0].node, "10.0.0.1:5673");
    assert_string_equal(u.url[0].masked, "amqp://fo:***@10.0.0.1:5673/v");
    cm_urls_free(&u);
    cm_urls_free(&u); /* a no-op once freed */
    cm_urls_free(NULL);
}

static void test_list(void **state) {
    cm_urls_t u;
    char why[256];

    (void)state;
    assert_int_equal(cm_urls_parse(&u,
                                   "amqp://a:pa@h1:1/, amqps://b:pb@h2 ,"
                                   "amqp://h3/%2F",
                                   why, sizeof(why)),
                     0);
    assert_int_equal(u.n, 3);
    assert_string_equal(u.url[0].node, "h1:1");
    assert_string_equal(u.url[0].info.vhost, "/"); /* empty means default */
    assert_string_equal(u.url[1].node, "h2:5671"); /* amqps default port */
    assert_int_equal(u.url[1].info.ssl, 1);
    assert_string_equal(u.url[1].masked, "amqps://b:***@h2");
    assert_string_equal(u.url[1].info.password, "pb");
    assert_string_equal(u.url[2].node, "h3:5672");
    assert_string_equal(u.url[2].info.vhost, "/"); /* %2F decoded */
    assert_string_equal(u.url[2].info.user, "guest");
    cm_urls_free(&u);
}

static void refused(const char *list, const char *want, const char *secret) {
    cm_urls_t u;
    char why[256] = "";

    assert_int_equal(cm_urls_parse(&u, list, why, sizeof(why)), -1);
    assert_null(u.buf);
    assert_int_equal(u.n, 0);
    if (strstr(why, want) == NULL)
        fail_msg("'%s': '%s' does not say '%s'", list, why, want);
    if (secret != NULL && strstr(why, secret) != NULL)
        fail_msg("'%s': '%s' shows the password", list, why);
}

static void test_refused(void **state) {
    char many[CM_URL_LIST_MAX], big[CM_URL_LIST_MAX + 10];
    size_t i;

    (void)state;
    refused("", "URL 1 of the list is empty", NULL);
    refused("amqp://h1/,", "URL 2 of the list is empty", NULL);
    refused("amqp://h1/,,amqp://h2/", "URL 2 of the list is empty", NULL);
    refused("amqp://h1/,http://u:s3cret@h2/", "URL 2 (http://u:***@h2/)",
            "s3cret");
    refused("amqp://u:s3cret@h:99999/", "is not an amqp://", "s3cret");
    refused("amqp://u:s3cret@h:0/", "port must be 1-65535", "s3cret");
    many[0] = '\0';
    for (i = 0; i <= CM_URLS_MAX; i++)
        strcat(many, "amqp://h/,");
    many[strlen(many) - 1] = '\0';
    refused(many, "more than 16 URLs", NULL);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    refused(big, "longer than", NULL);
}

static void test_mask(void **state) {
    char out[128];

    (void)state;
    cm_url_mask("amqp://u:p@h/", 13, out, sizeof(out));
    assert_string_equal(out, "amqp://u:***@h/");
    cm_url_mask("amqp://u@h/", 11, out, sizeof(out)); /* no password */
    assert_string_equal(out, "amqp://u@h/");
    cm_url_mask("amqp://h:5672/", 14, out, sizeof(out)); /* a port only */
    assert_string_equal(out, "amqp://h:5672/");
    /* A raw '@' or '/' in the password: all of it masked. */
    cm_url_mask("amqp://u:a@b/c@h/", 17, out, sizeof(out));
    assert_string_equal(out, "amqp://u:***@h/");
    cm_url_mask("amqp://u:p@h/,x", 13, out, sizeof(out)); /* len bounds it */
    assert_string_equal(out, "amqp://u:***@h/");
    cm_url_mask("amqp://u:secret@h/", 18, out, 12); /* cut, never the secret */
    assert_string_equal(out, "amqp://u:**");

    cm_url_mask_list("amqp://a:pa@h1/,amqp://h2/, amqps://b:pb@h3", out,
                     sizeof(out));
    assert_string_equal(out, "amqp://a:***@h1/,amqp://h2/, amqps://b:***@h3");
    cm_url_mask_list("amqp://a:pa@h1/,amqp://b:pb@h2/", out, 20);
    assert_null(strstr(out, "pb"));
    assert_null(strstr(out, "pa"));
}

static void test_shuffle(void **state) {
    const char *list = "amqp://h0/,amqp://h1/,amqp://h2/,amqp://h3/";
    cm_urls_t u;
    char why[256];
    unsigned first[4] = {0};
    uint64_t seed;
    size_t i, j;

    (void)state;
    for (seed = 0; seed < 400; seed++) {
        int seen = 0;

        assert_int_equal(cm_urls_parse(&u, list, why, sizeof(why)), 0);
        cm_urls_shuffle(&u, seed);
        for (i = 0; i < u.n; i++) { /* a permutation, strings intact */
            j = (size_t)(u.url[i].info.host[1] - '0');
            assert_true(j < 4);
            seen |= 1 << j;
            assert_int_equal(u.url[i].node[1], u.url[i].info.host[1]);
        }
        assert_int_equal(seen, 0xf);
        first[u.url[0].info.host[1] - '0']++;
        cm_urls_free(&u);
    }
    /* Every node comes first about a quarter of the time (100 of 400). */
    for (i = 0; i < 4; i++)
        assert_in_range(first[i], 60, 140);
}

static void test_backoff(void **state) {
    static const unsigned ceil[] = {100, 200, 400, 800, 1600, 2000, 2000};
    cm_backoff_t b;
    unsigned d, lo = 1000, hi = 0;
    size_t i;
    int round;

    (void)state;
    cm_backoff_init(&b, 42);
    for (round = 0; round < 200; round++) {
        for (i = 0; i < sizeof(ceil) / sizeof(ceil[0]); i++) {
            d = cm_backoff_next(&b);
            assert_in_range(d, ceil[i] / 2, ceil[i]);
            if (i == 0) {
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
        }
        for (i = 0; i < 100; i++) /* never above the cap */
            assert_in_range(cm_backoff_next(&b), 1000, 2000);
        cm_backoff_reset(&b);
    }
    /* Jittered: the first retries spread over their range. */
    assert_true(lo < 60);
    assert_true(hi > 90);
}

static void test_random(void **state) {
    (void)state;
    /* Two draws agreeing would mean no randomness at all. */
    assert_true(cm_random64() != cm_random64());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one),     cmocka_unit_test(test_list),
        cmocka_unit_test(test_refused), cmocka_unit_test(test_mask),
        cmocka_unit_test(test_shuffle), cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
