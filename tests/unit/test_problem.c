/* test_problem.c - unit tests for gateway/problem.c: every error code's HTTP
 * status, code and title, and the RFC 9457 problem JSON built from them.
 * Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "problem.h"

#define TYPE_PREFIX "urn:problem:fib-gateway:"

/* What callers (and the API documentation) rely on, written out by hand
 * rather than generated from GW_ERRORS, so a changed status fails here. */
static const struct {
    gw_err_t err;
    const char *code;
    int status;
} expected[] = {
    {GW_E_OK, "ok", 200},
    {GW_E_INVALID_N, "invalid_n", 400},
    {GW_E_N_OUT_OF_RANGE, "n_out_of_range", 400},
    {GW_E_INVALID_TIMEOUT, "invalid_timeout", 400},
    {GW_E_UNAUTHORIZED, "unauthorized", 401},
    {GW_E_INVALID_PARAM, "invalid_param", 400},
    {GW_E_BODY_TOO_LARGE, "body_too_large", 413},
    {GW_E_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
    {GW_E_NOT_QUEUED, "not_queued", 503},
    {GW_E_NOT_FOUND, "not_found", 404},
    {GW_E_BAD_REQUEST, "bad_request", 400},
    {GW_E_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
    {GW_E_REQUEST_TIMEOUT, "request_timeout", 408},
    {GW_E_URI_TOO_LONG, "uri_too_long", 414},
    {GW_E_HEADERS_TOO_LARGE, "headers_too_large", 431},
    {GW_E_WORKER_REJECTED, "worker_rejected", 400},
    {GW_E_INTERNAL, "internal", 500},
    {GW_E_WORKER_ERROR, "worker_error", 502},
    {GW_E_WORKER_CRASHED, "worker_crashed", 502},
    {GW_E_BAD_REPLY, "bad_reply", 502},
    {GW_E_CONNECTION_LOST, "connection_lost", 502},
    {GW_E_BROKER_UNAVAILABLE, "broker_unavailable", 503},
    {GW_E_OVERLOADED, "overloaded", 503},
    {GW_E_SHUTTING_DOWN, "shutting_down", 503},
    {GW_E_NO_SERVER, "no_server", 504},
    {GW_E_TIMEOUT, "timeout", 504},
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

/* Builds the problem JSON and parses it back; the result must be an object
 * and *len must match the string. */
static json_t *build(gw_err_t err, const char *detail, const char *instance,
                     const char *request_id, const gw_worker_error_t *worker) {
    size_t len = (size_t)-1;
    char *s = gw_problem_json(err, detail, instance, request_id, worker, &len);
    json_error_t jerr;
    json_t *root;

    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    root = json_loads(s, 0, &jerr);
    if (root == NULL)
        fail_msg("invalid JSON (%s): %s", jerr.text, s);
    assert_true(json_is_object(root));
    free(s);
    return root;
}

static const char *get_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);

    if (!json_is_string(v))
        fail_msg("\"%s\" is missing or not a string", key);
    return json_string_value(v);
}

/* The fields every problem body has, for error err. */
static void assert_core(json_t *root, gw_err_t err) {
    char type[128];
    json_t *status = json_object_get(root, "status");

    snprintf(type, sizeof(type), "%s%s", TYPE_PREFIX, gw_err_code(err));
    assert_string_equal(get_str(root, "type"), type);
    assert_string_equal(get_str(root, "title"), gw_err_title(err));
    assert_string_equal(get_str(root, "code"), gw_err_code(err));
    assert_true(json_is_integer(status));
    assert_int_equal(json_integer_value(status), gw_err_status(err));
}

static void test_table_covers_every_code(void **state) {
    int seen[GW_E__COUNT];
    size_t i, j;

    /* A code added to GW_ERRORS without a line above fails here. */
    assert_int_equal(NEXPECTED, GW_E__COUNT);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < NEXPECTED; i++) {
        assert_true((unsigned)expected[i].err < GW_E__COUNT);
        assert_int_equal(seen[expected[i].err], 0);
        seen[expected[i].err] = 1;
    }
    /* Codes are stable identifiers: unique. */
    for (i = 0; i < GW_E__COUNT; i++)
        for (j = i + 1; j < GW_E__COUNT; j++)
            assert_string_not_equal(gw_err_code((gw_err_t)i),
                                    gw_err_code((gw_err_t)j));
}

static void test_status_code_title(void **state) {
    size_t i;

    for (i = 0; i < NEXPECTED; i++) {
        const char *title = gw_err_title(expected[i].err);

        assert_string_equal(gw_err_code(expected[i].err), expected[i].code);
        assert_int_equal(gw_err_status(expected[i].err), expected[i].status);
        assert_non_null(title);
        assert_true(title[0] != '\0');
    }
}

static void test_json_every_code(void **state) {
    size_t i;

    for (i = 0; i < NEXPECTED; i++) {
        json_t *root = build(expected[i].err, "why", NULL, NULL, NULL);
        char type[128];

        snprintf(type, sizeof(type), "%s%s", TYPE_PREFIX, expected[i].code);
        assert_string_equal(get_str(root, "type"), type);
        assert_string_equal(get_str(root, "code"), expected[i].code);
        assert_int_equal(json_integer_value(json_object_get(root, "status")),
                         expected[i].status);
        assert_core(root, expected[i].err);
        assert_string_equal(get_str(root, "detail"), "why");
        json_decref(root);
    }
}

static void test_json_all_fields(void **state) {
    gw_worker_error_t w = {"out_of_range", "n 200000 is above 100000"};
    json_t *root, *we;

    root = build(GW_E_WORKER_REJECTED, "the worker said no", "/fib/200000",
                 "req-123", &w);
    assert_core(root, GW_E_WORKER_REJECTED);
    assert_int_equal(json_integer_value(json_object_get(root, "status")), 400);
    assert_string_equal(get_str(root, "detail"), "the worker said no");
    assert_string_equal(get_str(root, "instance"), "/fib/200000");
    assert_string_equal(get_str(root, "request_id"), "req-123");
    we = json_object_get(root, "worker_error");
    assert_true(json_is_object(we));
    assert_string_equal(get_str(we, "type"), "out_of_range");
    assert_string_equal(get_str(we, "message"), "n 200000 is above 100000");
    json_decref(root);
}

static void test_json_optional_fields_absent(void **state) {
    json_t *root = build(GW_E_TIMEOUT, NULL, NULL, NULL, NULL);

    assert_core(root, GW_E_TIMEOUT);
    assert_int_equal(json_integer_value(json_object_get(root, "status")), 504);
    /* No detail given: the title stands in. */
    assert_string_equal(get_str(root, "detail"), "Timed out");
    assert_null(json_object_get(root, "instance"));
    assert_null(json_object_get(root, "request_id"));
    assert_null(json_object_get(root, "worker_error"));
    assert_int_equal(json_object_size(root), 5);
    json_decref(root);
}

static void test_json_escaping(void **state) {
    const char *nasty = "quote \" backslash \\ newline \n tab \t ctl \x01 "
                        "</script> caf\xc3\xa9";
    json_t *root = build(GW_E_INVALID_N, nasty, nasty, "\"id\"", NULL);

    assert_core(root, GW_E_INVALID_N);
    assert_string_equal(get_str(root, "detail"), nasty);
    assert_string_equal(get_str(root, "instance"), nasty);
    assert_string_equal(get_str(root, "request_id"), "\"id\"");
    json_decref(root);
}

static void test_json_len_may_be_null(void **state) {
    char *s = gw_problem_json(GW_E_NOT_FOUND, NULL, NULL, NULL, NULL, NULL);

    assert_non_null(s);
    assert_non_null(strstr(s, "\"status\":404"));
    free(s);
}

/* A client path or a worker message need not be UTF-8; the body must still
 * be valid JSON with everything else in it. */
static void test_json_invalid_utf8(void **state) {
    static const char *bad[] = {
        "\xff\xfe",         /* never valid */
        "abc\xc3",          /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "ok then \x80 end", /* stray continuation byte */
    };
    gw_worker_error_t w;
    json_t *root, *v, *we;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        root = build(GW_E_NOT_FOUND, bad[i], "/fine", "rid", NULL);
        assert_core(root, GW_E_NOT_FOUND);
        v = json_object_get(root, "detail");
        assert_true(v == NULL || json_is_string(v));
        assert_string_equal(get_str(root, "instance"), "/fine");
        assert_string_equal(get_str(root, "request_id"), "rid");
        json_decref(root);

        root = build(GW_E_NOT_FOUND, "fine", bad[i], "rid", NULL);
        assert_core(root, GW_E_NOT_FOUND);
        assert_string_equal(get_str(root, "detail"), "fine");
        v = json_object_get(root, "instance");
        assert_true(v == NULL || json_is_string(v));
        assert_string_equal(get_str(root, "request_id"), "rid");
        json_decref(root);

        w.type = "internal";
        w.message = bad[i];
        root = build(GW_E_WORKER_ERROR, "fine", "/fib/1", NULL, &w);
        assert_core(root, GW_E_WORKER_ERROR);
        assert_string_equal(get_str(root, "detail"), "fine");
        assert_string_equal(get_str(root, "instance"), "/fib/1");
        we = json_object_get(root, "worker_error");
        assert_true(json_is_object(we));
        assert_string_equal(get_str(we, "type"), "internal");
        json_decref(root);
    }
}

static void test_out_of_range_enum(void **state) {
    static const unsigned bogus[] = {GW_E__COUNT, GW_E__COUNT + 1, 1000,
                                     (unsigned)-1};
    size_t i;

    for (i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++) {
        gw_err_t err = (gw_err_t)bogus[i];
        json_t *root;

        assert_string_equal(gw_err_code(err), "internal");
        assert_int_equal(gw_err_status(err), 500);
        assert_string_equal(gw_err_title(err), gw_err_title(GW_E_INTERNAL));
        root = build(err, NULL, NULL, NULL, NULL);
        assert_core(root, GW_E_INTERNAL);
        assert_string_equal(get_str(root, "code"), "internal");
        assert_int_equal(json_integer_value(json_object_get(root, "status")),
                         500);
        json_decref(root);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_every_code),
        cmocka_unit_test(test_status_code_title),
        cmocka_unit_test(test_json_every_code),
        cmocka_unit_test(test_json_all_fields),
        cmocka_unit_test(test_json_optional_fields_absent),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_len_may_be_null),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_out_of_range_enum),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
