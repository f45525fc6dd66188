/* test_fib.c - unit tests for worker/fib.c: exact F(n), every class of bad
 * request body, and error reply JSON.  Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "fib.h"

#define MAX_N FIBRPC_DEFAULT_MAX_N

static void assert_fib(uint32_t n, const char *expected) {
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(fw_fib_compute(n, &out, &len), 0);
    assert_non_null(out);
    assert_string_equal(out, expected);
    assert_int_equal(len, strlen(expected));
    free(out);
}

static void test_fib_small(void **state) {
    assert_fib(0, "0");
    assert_fib(1, "1");
    assert_fib(2, "1");
    assert_fib(3, "2");
    assert_fib(10, "55");
}

/* F(93) is the first that does not fit in int64, F(94) the first that does
 * not fit in uint64: where fixed-width implementations break. */
static void test_fib_word_edges(void **state) {
    assert_fib(92, "7540113804746346429");
    assert_fib(93, "12200160415121876738");
    assert_fib(94, "19740274219868223167");
}

static void test_fib_1000(void **state) {
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(fw_fib_compute(1000, &out, &len), 0);
    assert_int_equal(len, 209);
    assert_int_equal(strlen(out), 209);
    assert_memory_equal(out, "43466557686937456435", 20);
    assert_string_equal(out + len - 20, "76137795166849228875");
    free(out);
}

static void test_fib_100000(void **state) {
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(fw_fib_compute(100000, &out, &len), 0);
    assert_int_equal(len, 20899);
    assert_int_equal(strlen(out), 20899);
    assert_memory_equal(out, "25974069347221724166", 20);
    assert_string_equal(out + len - 20, "49895374653428746875");
    free(out);
}

static void parse(const char *body, size_t len, uint32_t max_n,
                  fw_request_t *req) {
    memset(req, 0x5a, sizeof(*req));
    fw_request_parse(body, len, max_n, req);
}

static void assert_ok(const char *body, size_t len, uint32_t max_n,
                      uint32_t n) {
    fw_request_t req;

    parse(body, len, max_n, &req);
    assert_int_equal(req.err, FW_OK);
    assert_int_equal(req.n, n);
}

static void assert_err(const void *body, size_t len, uint32_t max_n,
                       fw_err_t err) {
    fw_request_t req;

    parse(body, len, max_n, &req);
    assert_int_equal(req.err, err);
    /* Every error carries a message a person can read. */
    assert_true(strlen(req.message) > 0);
    assert_true(strlen(req.message) < sizeof(req.message));
}

#define S(lit) lit, sizeof(lit) - 1

static void test_parse_ok(void **state) {
    char body[FIBRPC_MAX_REQUEST_BYTES];

    assert_ok(S("0"), MAX_N, 0);
    assert_ok(S("1"), MAX_N, 1);
    assert_ok(S("10"), MAX_N, 10);
    assert_ok(S("007"), MAX_N, 7);
    assert_ok(S("000"), MAX_N, 0);
    assert_ok(S("100000"), MAX_N, 100000);
    assert_ok(S("10000000"), FIBRPC_HARD_MAX_N, FIBRPC_HARD_MAX_N);

    /* Exactly the size cap, mostly leading zeros: still fine. */
    memset(body, '0', sizeof(body));
    body[sizeof(body) - 1] = '7';
    assert_ok(body, sizeof(body), MAX_N, 7);
}

static void test_parse_empty(void **state) {
    assert_err(NULL, 0, MAX_N, FW_ERR_invalid_argument);
    assert_err(S(""), MAX_N, FW_ERR_invalid_argument);
}

static void test_parse_too_long(void **state) {
    char *big;
    size_t n = 1u << 20;

    /* One byte over the cap, digits only. */
    big = malloc(n);
    assert_non_null(big);
    memset(big, '1', n);
    assert_err(big, FIBRPC_MAX_REQUEST_BYTES + 1, MAX_N,
               FW_ERR_invalid_argument);
    /* 1 MiB of digits. */
    assert_err(big, n, MAX_N, FW_ERR_invalid_argument);
    free(big);
}

static void test_parse_too_long_not_scanned(void **state) {
    /* Only the first 64 bytes are readable: a parser that scanned a body
     * over the cap would read unmapped memory here (ASan catches it). */
    char *buf = malloc(FIBRPC_MAX_REQUEST_BYTES);

    assert_non_null(buf);
    memset(buf, '1', FIBRPC_MAX_REQUEST_BYTES);
    assert_err(buf, (size_t)1 << 40, MAX_N, FW_ERR_invalid_argument);
    free(buf);
}

static void test_parse_negative(void **state) {
    fw_request_t req;

    assert_err(S("-1"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("-0"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("-"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("--1"), MAX_N, FW_ERR_invalid_argument);
    parse(S("-5"), MAX_N, &req);
    assert_non_null(strstr(req.message, "negative"));
}

static void test_parse_not_digits(void **state) {
    static const char binary[] = {'\0', '\x01', '\xff', '\x80', '7'};
    static const char nul_inside[] = {'1', '\0', '2'};

    assert_err(S("abc"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("+5"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S(" 5"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("5 "), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("5\n"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("1.5"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("1e3"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("0x10"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("12a"), MAX_N, FW_ERR_invalid_argument);
    assert_err(S("\"10\""), MAX_N, FW_ERR_invalid_argument);
    /* ARABIC-INDIC DIGIT ONE: a digit, but not an ASCII one. */
    assert_err(S("\xd9\xa1"), MAX_N, FW_ERR_invalid_argument);
    assert_err(binary, sizeof(binary), MAX_N, FW_ERR_invalid_argument);
    assert_err(nul_inside, sizeof(nul_inside), MAX_N, FW_ERR_invalid_argument);
}

static void test_parse_out_of_range(void **state) {
    fw_request_t req;

    assert_ok(S("100000"), 100000, 100000);
    assert_err(S("100001"), 100000, FW_ERR_out_of_range);
    assert_err(S("1"), 0, FW_ERR_out_of_range);
    assert_ok(S("0"), 0, 0);
    /* Above uint32: must not wrap around into range. */
    assert_err(S("4294967296"), FIBRPC_HARD_MAX_N, FW_ERR_out_of_range);
    assert_err(S("4294967306"), UINT32_MAX, FW_ERR_out_of_range);
    assert_err(S("99999999999999999999"), MAX_N, FW_ERR_out_of_range);
    /* More digits than fibrpc_parse_n takes is still just too big. */
    assert_err(S("123456789012345678901"), MAX_N, FW_ERR_out_of_range);

    parse(S("200000"), 100000, &req);
    assert_int_equal(req.err, FW_ERR_out_of_range);
    assert_non_null(strstr(req.message, "100000"));
    parse(S("51"), 50, &req);
    assert_non_null(strstr(req.message, "50"));
}

static void test_err_names(void **state) {
    assert_string_equal(fw_err_name(FW_OK), "ok");
    assert_string_equal(fw_err_name(FW_ERR_invalid_argument),
                        "invalid_argument");
    assert_string_equal(fw_err_name(FW_ERR_out_of_range), "out_of_range");
    assert_string_equal(fw_err_name(FW_ERR_expired), "expired");
    assert_string_equal(fw_err_name(FW_ERR_internal), "internal");
    assert_string_equal(fw_err_name((fw_err_t)1000), "internal");

    assert_int_equal(fw_err_caller_fault(FW_ERR_invalid_argument), 1);
    assert_int_equal(fw_err_caller_fault(FW_ERR_out_of_range), 1);
    assert_int_equal(fw_err_caller_fault(FW_ERR_expired), 0);
    assert_int_equal(fw_err_caller_fault(FW_ERR_internal), 0);
}

static void assert_json_round_trip(fw_err_t err, const char *message) {
    json_error_t jerr;
    json_t *obj;
    size_t len = 0;
    char *text = fw_error_json(err, message, &len);

    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    obj = json_loadb(text, len, 0, &jerr);
    assert_non_null(obj);
    assert_true(json_is_object(obj));
    assert_int_equal(json_object_size(obj), 2);
    assert_string_equal(json_string_value(json_object_get(obj, "type")),
                        fw_err_name(err));
    assert_string_equal(json_string_value(json_object_get(obj, "message")),
                        message);
    json_decref(obj);
    free(text);
}

static void test_error_json(void **state) {
    fw_request_t req;

    assert_json_round_trip(FW_ERR_invalid_argument, "n must not be negative");
    assert_json_round_trip(FW_ERR_out_of_range, "n must be at most 100000");
    assert_json_round_trip(FW_ERR_expired, "deadline passed");
    assert_json_round_trip(FW_ERR_internal, "");
    assert_json_round_trip(FW_ERR_internal, "quote \" back\\slash\nnewline");
    assert_json_round_trip(FW_ERR_internal, "caf\xc3\xa9");

    /* Every message the parser writes makes valid JSON. */
    parse(S("\xff"), MAX_N, &req);
    assert_json_round_trip(req.err, req.message);
    parse(S("999999"), MAX_N, &req);
    assert_json_round_trip(req.err, req.message);
}

static void test_error_json_exact(void **state) {
    size_t len = 0;
    char *text = fw_error_json(FW_ERR_out_of_range, "too big", &len);

    assert_non_null(text);
    assert_string_equal(text,
                        "{\"type\":\"out_of_range\",\"message\":\"too big\"}");
    free(text);
}

static void test_error_json_bad_utf8(void **state) {
    size_t len = 0;

    assert_null(fw_error_json(FW_ERR_internal, "\xff", &len));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fib_small),
        cmocka_unit_test(test_fib_word_edges),
        cmocka_unit_test(test_fib_1000),
        cmocka_unit_test(test_fib_100000),
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_too_long),
        cmocka_unit_test(test_parse_too_long_not_scanned),
        cmocka_unit_test(test_parse_negative),
        cmocka_unit_test(test_parse_not_digits),
        cmocka_unit_test(test_parse_out_of_range),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_error_json_exact),
        cmocka_unit_test(test_error_json_bad_utf8),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
