/* test_hostport.c - common/hostport: the listen-address forms every program
 * accepts, and what each refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "hostport.h"

static void ok(const char *s, unsigned min, const char *host, uint16_t port) {
    char h[16];
    uint16_t p = 1;

    assert_int_equal(cm_parse_hostport(s, h, sizeof(h), &p, min), 0);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void bad(const char *s, unsigned min) {
    char h[16] = "unchanged";
    uint16_t p = 7;

    assert_int_equal(cm_parse_hostport(s, h, sizeof(h), &p, min), -1);
    assert_string_equal(h, "unchanged");
    assert_int_equal(p, 7);
}

static void test_forms(void **state) {
    ok("127.0.0.1:8080", 1, "127.0.0.1", 8080);
    ok("0.0.0.0:0", 0, "0.0.0.0", 0);
    ok("localhost:65535", 1, "localhost", 65535);
    ok("[::1]:9090", 1, "::1", 9090);
    ok("::1:9090", 1, "::1", 9090); /* the last colon separates the port */
    ok("h:007", 1, "h", 7);
}

static void test_refused(void **state) {
    bad("127.0.0.1", 0);        /* no port */
    bad("127.0.0.1:", 0);       /* empty port */
    bad(":8080", 0);            /* empty host */
    bad("[]:8080", 0);          /* empty brackets */
    bad("h:65536", 0);          /* out of range */
    bad("h:99999999999999", 0); /* no overflow into range */
    bad("h:0", 1);              /* below the minimum */
    bad("h:+80", 0);
    bad("h: 80", 0);
    bad("h:80x", 0);
    bad("h:-1", 0);
    bad("a-very-long-host-name:80", 0); /* does not fit in 16 bytes */
}

static int loopback(const char *text) {
    struct sockaddr_in in = {0};
    struct sockaddr_in6 in6 = {0};

    if (inet_pton(AF_INET, text, &in.sin_addr) == 1) {
        in.sin_family = AF_INET;
        return cm_addr_is_loopback((struct sockaddr *)&in);
    }
    assert_int_equal(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
    in6.sin6_family = AF_INET6;
    return cm_addr_is_loopback((struct sockaddr *)&in6);
}

static void test_loopback(void **state) {
    struct sockaddr sa = {0};

    assert_true(loopback("127.0.0.1"));
    assert_true(loopback("127.255.0.9"));
    assert_true(loopback("::1"));
    assert_true(loopback("::ffff:127.0.0.1"));
    assert_false(loopback("0.0.0.0"));
    assert_false(loopback("::"));
    assert_false(loopback("10.0.0.1"));
    assert_false(loopback("128.0.0.1"));
    assert_false(loopback("::ffff:10.0.0.1"));
    assert_false(loopback("::2"));
    assert_false(loopback("fe80::1"));
    sa.sa_family = AF_UNIX;
    assert_false(cm_addr_is_loopback(&sa));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
