/* test_request.c - unit tests for gateway/request.c (percent-decoding, route,
 * n and timeout_ms) and fibrpc_parse_n from include/fibrpc.h.
 * Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fibrpc.h"
#include "request.h"
#include "routes.h"

#define MAX_N FIBRPC_DEFAULT_MAX_N

/* --- gw_unescape --------------------------------------------------------- */

static void assert_unescape(const char *in, const char *want) {
    char buf[256];
    size_t len;

    assert_true(strlen(in) < sizeof(buf));
    strcpy(buf, in);
    len = gw_unescape(buf);
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
}

static void test_unescape_decodes(void **state) {
    assert_unescape("", "");
    assert_unescape("/fib/10", "/fib/10");
    assert_unescape("%41", "A");
    assert_unescape("%2010", " 10");
    assert_unescape("%20", " ");
    assert_unescape("%2f%2F", "//");
    assert_unescape("/fib/%31%30", "/fib/10");
    assert_unescape("%c3%A9", "\xc3\xa9");
    assert_unescape("%7e", "~");
    assert_unescape("%ff", "\xff");
    /* Decoded once: "%25" is a literal percent, not a new escape. */
    assert_unescape("%2541", "%41");
    assert_unescape("%%41", "%A");
    assert_unescape("a+b", "a+b");
}

/* Control bytes stay encoded so they can never cut or hide part of a path. */
static void test_unescape_keeps_controls(void **state) {
    assert_unescape("%00", "%00");
    assert_unescape("/fib/1%00", "/fib/1%00");
    assert_unescape("%0a", "%0a");
    assert_unescape("%0D%0A", "%0D%0A");
    assert_unescape("%09", "%09");
    assert_unescape("%1f", "%1f");
    assert_unescape("%7f", "%7f");
    assert_unescape("%7F%41", "%7FA");
}

static void test_unescape_malformed(void **state) {
    assert_unescape("%zz", "%zz");
    assert_unescape("%g1", "%g1");
    assert_unescape("%1g", "%1g");
    assert_unescape("%4", "%4");
    assert_unescape("%", "%");
    assert_unescape("abc%", "abc%");
    assert_unescape("abc%4", "abc%4");
    assert_unescape("%%", "%%");
    assert_unescape("% 41", "% 41");
}

/* --- request id and traceparent ----------------------------------------- */

static void test_request_id(void **state) {
    char max[GW_REQUEST_ID_MAX + 2];

    assert_true(gw_request_id_valid("abc-123_x.y:z"));
    assert_true(gw_request_id_valid("A"));
    assert_false(gw_request_id_valid(NULL));
    assert_false(gw_request_id_valid(""));
    assert_false(gw_request_id_valid("has space"));
    assert_false(gw_request_id_valid("quote\""));
    assert_false(gw_request_id_valid("new\nline"));
    assert_false(gw_request_id_valid("caf\xc3\xa9"));
    memset(max, 'a', GW_REQUEST_ID_MAX);
    max[GW_REQUEST_ID_MAX] = '\0';
    assert_true(gw_request_id_valid(max));
    max[GW_REQUEST_ID_MAX] = 'a';
    max[GW_REQUEST_ID_MAX + 1] = '\0';
    assert_false(gw_request_id_valid(max));
}

static void test_traceparent(void **state) {
    assert_true(gw_traceparent_valid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_true(gw_traceparent_valid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    assert_false(gw_traceparent_valid(NULL));
    assert_false(gw_traceparent_valid(""));
    /* upper case, zero ids, version ff, wrong lengths and separators */
    assert_false(gw_traceparent_valid(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    assert_false(gw_traceparent_valid(
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(gw_traceparent_valid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(gw_traceparent_valid(
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(gw_traceparent_valid(
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"));
    assert_false(gw_traceparent_valid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"));
    assert_false(gw_traceparent_valid(
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"));
}

/* --- gw_request_endpoint ------------------------------------------------- */

static void test_endpoint(void **state) {
    assert_int_equal(gw_request_endpoint("/fib/1"), GW_EP_ROUTE);
    assert_int_equal(gw_request_endpoint("/"), GW_EP_INDEX);
    assert_int_equal(gw_request_endpoint("/healthz"), GW_EP_HEALTHZ);
    assert_int_equal(gw_request_endpoint("/readyz"), GW_EP_READYZ);
    assert_int_equal(gw_request_endpoint("/metrics"), GW_EP_METRICS);
    assert_int_equal(gw_request_endpoint("/openapi.yaml"), GW_EP_OPENAPI);
    assert_int_equal(gw_request_endpoint("/routes.json"), GW_EP_ROUTES);
    assert_int_equal(gw_request_endpoint("/healthz/"), GW_EP_ROUTE);
    assert_int_equal(gw_request_endpoint("/metrics.txt"), GW_EP_ROUTE);
    assert_int_equal(gw_request_endpoint("/index.html"), GW_EP_ROUTE);
    assert_int_equal(gw_request_endpoint(""), GW_EP_ROUTE);
    assert_int_equal(gw_request_endpoint("//healthz"), GW_EP_ROUTE);
}

/* --- the fib route: the default table's match, then gw_request_parse_n -- */

/* What the gateway does with a GET path: match it against the default
 * route table, then parse n from what follows /fib. */
static gw_err_t parse_fib(const char *path, uint32_t max_n, uint32_t *n,
                          char *detail, size_t detail_size) {
    static gw_routes_t *table;
    gw_route_match_t m;
    char allow[64];
    gw_err_t err;

    if (table == NULL)
        table = gw_routes_default("rpc_queue");
    err = gw_routes_match(table, "GET", path, &m, allow, sizeof(allow));
    if (err != GW_E_OK)
        return err;
    return gw_request_parse_n(m.rest, max_n, n, detail, detail_size);
}

/* --- gw_request_parse_fib ------------------------------------------------ */

static void assert_n(const char *path, uint32_t max_n, uint32_t want) {
    char detail[128] = "untouched";
    uint32_t n = 0xdeadbeef;

    assert_int_equal(parse_fib(path, max_n, &n, detail, sizeof(detail)),
                     GW_E_OK);
    assert_int_equal(n, want);
}

/* Returns the detail in a static buffer for further checks. */
static const char *assert_fib_err(const char *path, uint32_t max_n,
                                  gw_err_t want) {
    static char detail[128];
    uint32_t n = 0;
    gw_err_t err;

    memset(detail, 'X', sizeof(detail));
    err = parse_fib(path, max_n, &n, detail, sizeof(detail));
    if (err != want)
        fail_msg("path \"%s\": err %s, want %s", path, gw_err_code(err),
                 gw_err_code(want));
    /* A human-readable, terminated reason for the problem body. */
    assert_non_null(memchr(detail, '\0', sizeof(detail)));
    assert_true(detail[0] != '\0');
    return detail;
}

static void test_parse_fib_ok(void **state) {
    assert_n("/fib/0", MAX_N, 0);
    assert_n("/fib/1", MAX_N, 1);
    assert_n("/fib/10", MAX_N, 10);
    assert_n("/fib/007", MAX_N, 7);
    assert_n("/fib/100000", MAX_N, 100000);
    assert_n("/fib/00000000000000000010", MAX_N, 10); /* 20 digits */
    assert_n("/fib/4294967295", UINT32_MAX, UINT32_MAX);
}

static void test_parse_fib_out_of_range(void **state) {
    const char *detail;

    detail = assert_fib_err("/fib/100001", MAX_N, GW_E_N_OUT_OF_RANGE);
    assert_non_null(strstr(detail, "100000"));
    detail = assert_fib_err("/fib/11", 10, GW_E_N_OUT_OF_RANGE);
    assert_non_null(strstr(detail, "10"));
    assert_fib_err("/fib/1", 0, GW_E_N_OUT_OF_RANGE);
    /* Huge values must not wrap around into something small and valid. */
    assert_fib_err("/fib/99999999999999999999", MAX_N, GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/99999999999999999999", UINT32_MAX,
                   GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/4294967296", MAX_N, GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/4294967296", UINT32_MAX, GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/4294967306", UINT32_MAX, GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/18446744073709551616", UINT32_MAX,
                   GW_E_N_OUT_OF_RANGE); /* 2^64 */
    /* 2^64 + 5 and 2^32 + 5: wrap to 5 in 64- or 32-bit arithmetic. */
    assert_fib_err("/fib/18446744073709551621", MAX_N, GW_E_N_OUT_OF_RANGE);
    /* One rule, whatever the length: digits are a number, and a number
     * above the limit is out of range (21 and 30 digits). */
    assert_fib_err("/fib/123456789012345678901", MAX_N, GW_E_N_OUT_OF_RANGE);
    assert_fib_err("/fib/123456789012345678901234567890", MAX_N,
                   GW_E_N_OUT_OF_RANGE);
    assert_n("/fib/000000000000000000001", MAX_N, 1); /* 21 digits, small */
    assert_fib_err("/fib/4294967301", MAX_N, GW_E_N_OUT_OF_RANGE);
}

static void test_parse_fib_invalid(void **state) {
    static const char *paths[] = {
        "/fib",
        "/fib/",
        "/fib/-1",
        "/fib/+5",
        "/fib/1.5",
        "/fib/1e3",
        "/fib/0x10",
        "/fib/ 10",
        "/fib/10 ",
        "/fib/10/",
        "/fib/10/extra",
        "/fib//10",
        "/fib/abc",
        "/fib/%31",
        "/fib/1%00",
        "/fib/1,000",
        "/fib/\t1",
        /* a digit in another script */
        "/fib/\xd9\xa1",
    };
    size_t i;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        assert_fib_err(paths[i], MAX_N, GW_E_INVALID_N);
}

static void test_parse_fib_other_paths(void **state) {
    uint32_t n;

    assert_int_not_equal(parse_fib("/fibx/1", MAX_N, &n, NULL, 0), GW_E_OK);
    assert_int_not_equal(parse_fib("/", MAX_N, &n, NULL, 0), GW_E_OK);
}

static void test_parse_fib_detail_sizes(void **state) {
    char detail[4];
    uint32_t n;

    /* Size 0: the buffer is never written, so NULL is fine. */
    assert_int_equal(parse_fib("/fib/x", MAX_N, &n, NULL, 0), GW_E_INVALID_N);
    assert_int_equal(parse_fib("/fib/100001", MAX_N, &n, NULL, 0),
                     GW_E_N_OUT_OF_RANGE);
    assert_int_equal(parse_fib("/fib/", MAX_N, &n, NULL, 0), GW_E_INVALID_N);
    /* A small buffer is truncated and terminated, never overrun. */
    memset(detail, 'X', sizeof(detail));
    assert_int_equal(parse_fib("/fib/x", MAX_N, &n, detail, 1), GW_E_INVALID_N);
    assert_int_equal(detail[0], '\0');
    assert_int_equal(detail[1], 'X');
    memset(detail, 'X', sizeof(detail));
    assert_int_equal(
        parse_fib("/fib/100001", MAX_N, &n, detail, sizeof(detail)),
        GW_E_N_OUT_OF_RANGE);
    assert_int_equal(strlen(detail), sizeof(detail) - 1);
}

/* The HTTP layer decodes first, then parses: encoded digits are digits,
 * encoded control bytes are not. */
static void test_unescape_then_parse(void **state) {
    char path[64];
    uint32_t n = 0;

    strcpy(path, "/fib/%31%30");
    gw_unescape(path);
    assert_int_equal(parse_fib(path, MAX_N, &n, NULL, 0), GW_E_OK);
    assert_int_equal(n, 10);
    strcpy(path, "/fib/1%000");
    gw_unescape(path);
    assert_int_equal(parse_fib(path, MAX_N, &n, NULL, 0), GW_E_INVALID_N);
    strcpy(path, "/fib/1%0a");
    gw_unescape(path);
    assert_int_equal(parse_fib(path, MAX_N, &n, NULL, 0), GW_E_INVALID_N);
}

/* --- gw_request_parse_timeout -------------------------------------------- */

#define DFLT 5000u
#define TMAX 30000u

static void assert_timeout(const char *value, unsigned dflt, unsigned max,
                           unsigned want) {
    unsigned t = 0xdeadbeef;

    assert_int_equal(gw_request_parse_timeout(value, dflt, max, &t), GW_E_OK);
    assert_int_equal(t, want);
}

static void test_timeout_ok(void **state) {
    assert_timeout(NULL, DFLT, TMAX, DFLT);
    /* A default above the cap is capped too. */
    assert_timeout(NULL, 60000, TMAX, TMAX);
    assert_timeout("300", DFLT, TMAX, 300);
    assert_timeout("1", DFLT, TMAX, 1);
    assert_timeout("30000", DFLT, TMAX, TMAX);
    assert_timeout("30001", DFLT, TMAX, TMAX);
    assert_timeout("4294967296", DFLT, TMAX, TMAX);   /* 2^32: no wrap */
    assert_timeout("4294967301", DFLT, TMAX, TMAX);   /* 2^32 + 5 */
    assert_timeout("999999999999", DFLT, TMAX, TMAX); /* 12 digits */
    /* Any number of digits: large values are capped, as documented. */
    assert_timeout("1000000000000", DFLT, TMAX, TMAX);
    assert_timeout("99999999999999999999", DFLT, TMAX, TMAX);
    assert_timeout("0000000000001", DFLT, TMAX, 1);
    assert_timeout("4294967295", DFLT, UINT32_MAX, UINT32_MAX);
}

static void test_timeout_invalid(void **state) {
    static const char *values[] = {
        "0",
        "000",
        "",
        "-5",
        "+5",
        "abc",
        "1.5",
        " 5",
        "5 ",
        "5ms",
        "0x10",
        "1e3",
        "\xd9\xa1",
        /* zero, however written */
        "0000000000000",
    };
    size_t i;

    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        unsigned t = 0;
        gw_err_t err = gw_request_parse_timeout(values[i], DFLT, TMAX, &t);

        if (err != GW_E_INVALID_TIMEOUT)
            fail_msg("timeout_ms=\"%s\": err %s, want invalid_timeout",
                     values[i], gw_err_code(err));
    }
}

/* --- fibrpc_parse_n ------------------------------------------------------ */

static int parse_n(const char *s, uint32_t max, uint32_t *n) {
    return fibrpc_parse_n(s, strlen(s), max, n);
}

static void test_fibrpc_parse_n(void **state) {
    uint32_t n;

    n = 1;
    assert_int_equal(parse_n("0", MAX_N, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(parse_n("007", MAX_N, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(parse_n("100000", MAX_N, &n), 0);
    assert_int_equal(n, 100000);
    assert_int_equal(parse_n("00000000000000000001", MAX_N, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(parse_n("4294967295", UINT32_MAX, &n), 0);
    assert_int_equal(n, UINT32_MAX);

    /* On failure *n is left alone. */
    n = 12345;
    assert_int_equal(parse_n("", MAX_N, &n), -1);
    assert_int_equal(parse_n("000000000000000000001", MAX_N, &n), 0);
    assert_int_equal(n, 1);
    n = 12345;
    assert_int_equal(parse_n("123456789012345678901234567890", MAX_N, &n), -2);
    assert_int_equal(parse_n("1a", MAX_N, &n), -1);
    assert_int_equal(parse_n("-1", MAX_N, &n), -1);
    assert_int_equal(parse_n(" 1", MAX_N, &n), -1);
    assert_int_equal(parse_n("100001", MAX_N, &n), -2);
    assert_int_equal(parse_n("4294967296", UINT32_MAX, &n), -2);
    assert_int_equal(parse_n("99999999999999999999", UINT32_MAX, &n), -2);
    assert_int_equal(parse_n("42949672950", UINT32_MAX, &n), -2);
    assert_int_equal(n, 12345);

    /* Length-delimited: bytes past len are ignored (AMQP bodies). */
    assert_int_equal(fibrpc_parse_n("12xyz", 2, MAX_N, &n), 0);
    assert_int_equal(n, 12);
    assert_int_equal(fibrpc_parse_n("1\0002", 3, MAX_N, &n), -1);
    assert_int_equal(fibrpc_parse_n("5", 0, MAX_N, &n), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unescape_decodes),
        cmocka_unit_test(test_unescape_keeps_controls),
        cmocka_unit_test(test_unescape_malformed),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_parse_fib_ok),
        cmocka_unit_test(test_parse_fib_out_of_range),
        cmocka_unit_test(test_parse_fib_invalid),
        cmocka_unit_test(test_parse_fib_other_paths),
        cmocka_unit_test(test_parse_fib_detail_sizes),
        cmocka_unit_test(test_unescape_then_parse),
        cmocka_unit_test(test_timeout_ok),
        cmocka_unit_test(test_timeout_invalid),
        cmocka_unit_test(test_fibrpc_parse_n),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
