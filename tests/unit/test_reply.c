/* test_reply.c - unit tests for gateway/reply.c: which worker replies are
 * digits, which are worker errors (caller's fault or not), and which are
 * garbage.  Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fibrpc.h"
#include "reply.h"

#define ERR_CT FIBRPC_ERROR_CONTENT_TYPE

static void parse(const char *ct, const void *body, size_t len,
                  gw_reply_t *out) {
    /* Poison the output: the parser must fill in everything it reports. */
    memset(out, 0x5a, sizeof(*out));
    gw_reply_parse(ct, ct ? strlen(ct) : 0, body, len, out);
}

/* A NUL-terminated body, content type ct. */
static void parse_str(const char *ct, const char *body, gw_reply_t *out) {
    parse(ct, body, strlen(body), out);
}

static void assert_digits(const char *ct, const char *body) {
    gw_reply_t r;

    parse_str(ct, body, &r);
    assert_int_equal(r.err, GW_E_OK);
    /* The digits are the body itself, not a copy. */
    assert_ptr_equal(r.digits, body);
    assert_int_equal(r.digits_len, strlen(body));
}

static void assert_bad(const char *ct, const void *body, size_t len) {
    gw_reply_t r;

    parse(ct, body, len, &r);
    assert_int_equal(r.err, GW_E_BAD_REPLY);
    /* The reason is a terminated, non-empty string for the problem detail. */
    assert_non_null(memchr(r.message, '\0', sizeof(r.message)));
    assert_true(r.message[0] != '\0');
}

static void assert_bad_str(const char *ct, const char *body) {
    assert_bad(ct, body, strlen(body));
}

/* --- digits -------------------------------------------------------------- */

static void test_digits_ok(void **state) {
    assert_digits(NULL, "55");
    assert_digits(NULL, "0");
    assert_digits(NULL, "1");
    assert_digits("text/plain", "12200160415121876738");
    assert_digits("text/plain; charset=utf-8", "354224848179261915075");
}

static void test_digits_point_into_body(void **state) {
    /* The body is length-delimited: bytes after it are not looked at. */
    static const char buf[] = "55xyz";
    gw_reply_t r;

    parse(NULL, buf, 2, &r);
    assert_int_equal(r.err, GW_E_OK);
    assert_ptr_equal(r.digits, buf);
    assert_int_equal(r.digits_len, 2);
    assert_memory_equal(r.digits, "55", 2);
}

static void test_digits_bad(void **state) {
    static const char binary[] = {'1', '2', '\0', '3'};
    static const char high[] = {'1', (char)0xb9, '2'}; /* Latin-1 superscript */

    assert_bad(NULL, "", 0);
    assert_bad_str(NULL, "007");
    assert_bad_str(NULL, "00");
    assert_bad_str(NULL, "12a");
    assert_bad_str(NULL, "-1");
    assert_bad_str(NULL, "+1");
    assert_bad_str(NULL, " 1");
    assert_bad_str(NULL, "1 ");
    assert_bad_str(NULL, "1\n");
    assert_bad_str(NULL, "1.5");
    assert_bad_str(NULL, "1e3");
    assert_bad_str(NULL, "0x10");
    assert_bad_str("text/plain", "{\"type\":\"internal\",\"message\":\"x\"}");
    assert_bad(NULL, binary, sizeof(binary));
    assert_bad(NULL, high, sizeof(high));
}

/* Only the exact error media type (plus parameters) switches to JSON. */
static void test_similar_content_types_are_not_errors(void **state) {
    static const char *json = "{\"type\":\"internal\",\"message\":\"x\"}";

    assert_bad_str("application/json", json);
    assert_bad_str("application/vnd.fibrpc.error", json);
    assert_bad_str("application/vnd.fibrpc.error+jsonx", json);
    assert_bad_str("", json);
    assert_digits("application/vnd.fibrpc.error+jsonx", "8");
}

/* The size cap is the link's (--max-reply-bytes, enforced while reading:
 * test_amqp_content.c): whatever body it kept is judged on its content. */
static void test_no_size_cap_here(void **state) {
    size_t big = 5u * 1024 * 1024;
    char *body = malloc(big);
    gw_reply_t r;

    assert_non_null(body);
    memset(body, '1', big);
    parse(NULL, body, big, &r);
    assert_int_equal(r.err, GW_E_OK);
    assert_ptr_equal(r.digits, body);
    assert_int_equal(r.digits_len, big);
    assert_bad(ERR_CT, body, big);
    free(body);
}

/* --- worker errors ------------------------------------------------------- */

static void assert_worker(const char *ct, const char *body, gw_err_t err,
                          const char *type, const char *message) {
    gw_reply_t r;

    parse_str(ct, body, &r);
    assert_int_equal(r.err, err);
    assert_string_equal(r.type, type);
    assert_string_equal(r.message, message);
}

static void test_error_caller_fault(void **state) {
    assert_worker(ERR_CT,
                  "{\"type\":\"out_of_range\",\"message\":\"n too big\"}",
                  GW_E_WORKER_REJECTED, "out_of_range", "n too big");
    assert_worker(ERR_CT,
                  "{\"type\":\"invalid_argument\",\"message\":\"not digits\"}",
                  GW_E_WORKER_REJECTED, "invalid_argument", "not digits");
}

static void test_error_service_fault(void **state) {
    assert_worker(ERR_CT, "{\"type\":\"internal\",\"message\":\"oom\"}",
                  GW_E_WORKER_ERROR, "internal", "oom");
    /* The worker saw the deadline pass: the gateway's own timeout. */
    assert_worker(ERR_CT, "{\"type\":\"expired\",\"message\":\"late\"}",
                  GW_E_TIMEOUT, "expired", "late");
    /* Workers died on it until its delivery limit: a code of its own. */
    assert_worker(ERR_CT, "{\"type\":\"worker_crashed\",\"message\":\"again\"}",
                  GW_E_WORKER_CRASHED, "worker_crashed", "again");
    /* A type this gateway does not know is the service's problem. */
    assert_worker(ERR_CT, "{\"type\":\"boom\",\"message\":\"kaboom\"}",
                  GW_E_WORKER_ERROR, "boom", "kaboom");
}

static void test_error_content_type_forms(void **state) {
    static const char *body = "{\"type\":\"out_of_range\",\"message\":\"m\"}";
    static const char ct_buf[] = ERR_CT "garbage-after-the-length";
    gw_reply_t r;

    assert_worker(ERR_CT "; charset=utf-8", body, GW_E_WORKER_REJECTED,
                  "out_of_range", "m");
    assert_worker(ERR_CT ";charset=utf-8", body, GW_E_WORKER_REJECTED,
                  "out_of_range", "m");
    assert_worker(ERR_CT " ; charset=utf-8", body, GW_E_WORKER_REJECTED,
                  "out_of_range", "m");
    /* AMQP content types are length-delimited, not NUL-terminated. */
    memset(&r, 0x5a, sizeof(r));
    gw_reply_parse(ct_buf, strlen(ERR_CT), body, strlen(body), &r);
    assert_int_equal(r.err, GW_E_WORKER_REJECTED);
    assert_string_equal(r.type, "out_of_range");
}

static void test_error_extra_fields_and_empty_message(void **state) {
    assert_worker(ERR_CT,
                  "{\"message\":\"\",\"type\":\"internal\",\"extra\":[1]}",
                  GW_E_WORKER_ERROR, "internal", "");
    assert_worker(ERR_CT, " {\"type\":\"internal\",\"message\":\"x\"}\n",
                  GW_E_WORKER_ERROR, "internal", "x");
}

static void test_error_malformed(void **state) {
    static const char *bodies[] = {
        "",
        "garbage",
        "55",
        "{",
        "null",
        "[\"internal\",\"x\"]",
        "\"internal\"",
        "{}",
        "{\"type\":\"internal\"}",
        "{\"message\":\"x\"}",
        "{\"type\":1,\"message\":\"x\"}",
        "{\"type\":\"internal\",\"message\":2}",
        "{\"type\":null,\"message\":\"x\"}",
        "{\"type\":\"internal\",\"message\":{\"a\":1}}",
        "{\"type\":\"\",\"message\":\"x\"}",
        /* a type that cannot fit: 40 characters */
        ("{\"type\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
         "\"message\":\"x\"}"),
        /* ambiguous: which type counts? */
        "{\"type\":\"internal\",\"type\":\"out_of_range\",\"message\":\"x\"}",
        /* a NUL hidden inside the type */
        "{\"type\":\"out_of_range\\u0000x\",\"message\":\"x\"}",
        "{\"type\":\"internal\",\"message\":\"x\"} trailing",
    };
    static const char bad_utf8[] =
        "{\"type\":\"internal\",\"message\":\"\xff\xfe\"}";
    size_t i;

    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        gw_reply_t r;

        parse_str(ERR_CT, bodies[i], &r);
        if (r.err != GW_E_BAD_REPLY)
            fail_msg("body %s: err %d, want bad_reply", bodies[i], r.err);
        assert_non_null(memchr(r.message, '\0', sizeof(r.message)));
    }
    assert_bad(ERR_CT, bad_utf8, sizeof(bad_utf8) - 1);
}

/* --- message truncation -------------------------------------------------- */

/* Length of the UTF-8 character starting with lead byte c. */
static size_t utf8_len(unsigned char c) {
    if (c < 0x80)
        return 1;
    if (c >= 0xf0)
        return 4;
    if (c >= 0xe0)
        return 3;
    return 2;
}

static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t n = utf8_len(*p), i;

        if (*p >= 0x80 && *p < 0xc2)
            return 0;
        for (i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

/* The longest prefix of msg made of whole characters that fits in the
 * reply's message buffer (with its NUL). */
static size_t expected_prefix(const char *msg) {
    size_t room = sizeof(((gw_reply_t *)NULL)->message) - 1, i = 0;

    while (msg[i] != '\0') {
        size_t n = utf8_len((unsigned char)msg[i]);
        if (i + n > room)
            break;
        i += n;
    }
    return i;
}

/* An error reply whose message is prefix followed by count copies of unit;
 * the parsed message must be valid UTF-8 and the longest whole-character
 * prefix that fits. */
static void check_truncation(const char *prefix, const char *unit,
                             size_t count) {
    size_t mlen = strlen(prefix) + strlen(unit) * count, i;
    char *msg = malloc(mlen + 1);
    char *body = malloc(mlen + 64);
    gw_reply_t r;
    size_t want;

    assert_non_null(msg);
    assert_non_null(body);
    strcpy(msg, prefix);
    for (i = 0; i < count; i++)
        strcat(msg, unit);
    snprintf(body, mlen + 64, "{\"type\":\"internal\",\"message\":\"%s\"}",
             msg);
    parse_str(ERR_CT, body, &r);
    assert_int_equal(r.err, GW_E_WORKER_ERROR);
    assert_string_equal(r.type, "internal");
    assert_non_null(memchr(r.message, '\0', sizeof(r.message)));
    if (!valid_utf8(r.message))
        fail_msg("truncated message is not UTF-8 (prefix %zu, unit %s)",
                 strlen(prefix), unit);
    want = expected_prefix(msg);
    if (strlen(r.message) != want)
        fail_msg("prefix %zu + %zu x %s: kept %zu bytes, want %zu",
                 strlen(prefix), count, unit, strlen(r.message), want);
    assert_memory_equal(r.message, msg, want);
    free(body);
    free(msg);
}

static void test_message_truncation(void **state) {
    char pad[8];
    size_t k;

    check_truncation("", "a", 300);
    check_truncation("", "a", 255);                /* fits exactly */
    check_truncation("", "\xc3\xa9", 300);         /* e-acute, 2 bytes */
    check_truncation("", "\xe2\x82\xac", 300);     /* euro sign, 3 bytes */
    check_truncation("", "\xf0\x9f\x98\x80", 300); /* emoji, 4 bytes */
    /* Shift the multi-byte characters against the cut by 0..3 bytes, so
     * the cut lands inside a character and exactly after one. */
    for (k = 0; k < 4; k++) {
        memset(pad, 'x', k);
        pad[k] = '\0';
        check_truncation(pad, "\xc3\xa9", 300);
        check_truncation(pad, "\xe2\x82\xac", 300);
        check_truncation(pad, "\xf0\x9f\x98\x80", 300);
    }
}

/* --- raw routes ---------------------------------------------------------- */

static gw_hval_t hint(int64_t i) {
    gw_hval_t v = {GW_HVAL_INT, NULL, 0, i};
    return v;
}

static gw_hval_t hstr(const char *s) {
    gw_hval_t v = {GW_HVAL_STR, s, strlen(s), 0};
    return v;
}

static int raw_status(const gw_hval_t *v, gw_err_t *err) {
    gw_reply_t r;
    int status = -1;

    gw_reply_parse_raw("text/plain", 10, "\0\1\2", 3, v, &r, &status);
    *err = r.err;
    if (r.err == GW_E_OK) {
        assert_int_equal(r.digits_len, 3);
        assert_memory_equal(r.digits, "\0\1\2", 3); /* any bytes */
    }
    return status;
}

static void test_raw_status(void **state) {
    gw_hval_t none = {GW_HVAL_NONE, NULL, 0, 0},
              other = {GW_HVAL_OTHER, NULL, 0, 0};
    gw_hval_t v;
    gw_err_t err;
    static const char *bad_text[] = {"abc", "",     "99",  "600",  "1000",
                                     "20 ", " 200", "2e2", "-200", "0200"};
    static const int64_t bad_int[] = {0, 199, 600, -200, 100000000000LL};
    size_t i;

    assert_int_equal(raw_status(&none, &err), 200);
    assert_int_equal(err, GW_E_OK);
    v = hint(201);
    assert_int_equal(raw_status(&v, &err), 201);
    v = hint(599);
    assert_int_equal(raw_status(&v, &err), 599);
    v = hstr("404");
    assert_int_equal(raw_status(&v, &err), 404);
    for (i = 0; i < sizeof(bad_text) / sizeof(bad_text[0]); i++) {
        v = hstr(bad_text[i]);
        raw_status(&v, &err);
        if (err != GW_E_BAD_REPLY)
            fail_msg("x-http-status \"%s\" accepted", bad_text[i]);
    }
    for (i = 0; i < sizeof(bad_int) / sizeof(bad_int[0]); i++) {
        v = hint(bad_int[i]);
        raw_status(&v, &err);
        assert_int_equal(err, GW_E_BAD_REPLY);
    }
    raw_status(&other, &err);
    assert_int_equal(err, GW_E_BAD_REPLY);
}

static void test_raw_error_reply(void **state) {
    static const char body[] =
        "{\"type\":\"invalid_argument\",\"message\":\"no\"}";
    gw_hval_t none = {GW_HVAL_NONE, NULL, 0, 0};
    gw_reply_t r;
    int status;

    gw_reply_parse_raw(FIBRPC_ERROR_CONTENT_TYPE,
                       strlen(FIBRPC_ERROR_CONTENT_TYPE), body, strlen(body),
                       &none, &r, &status);
    assert_int_equal(r.err, GW_E_WORKER_REJECTED);
    assert_string_equal(r.type, "invalid_argument");
    /* an empty body is a body */
    gw_reply_parse_raw(NULL, 0, NULL, 0, &none, &r, &status);
    assert_int_equal(r.err, GW_E_OK);
    assert_int_equal(status, 200);
    assert_int_equal(r.digits_len, 0);
}

static void test_raw_header_text(void **state) {
    char out[16];
    gw_hval_t v;

    v = hstr("HIT");
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), 0);
    assert_string_equal(out, "HIT");
    v = hint(-7);
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), 0);
    assert_string_equal(out, "-7");
    v = hstr("a\tb\x80");
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), 0);
    /* a header of its own, smuggled in */
    v = hstr("a\r\nSet-Cookie: x");
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
    v = hstr("a\nb");
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
    v = (gw_hval_t){GW_HVAL_STR, "a\0b", 3, 0};
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
    v = hstr("0123456789abcdef"); /* 16: no room for the NUL */
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
    v = (gw_hval_t){GW_HVAL_OTHER, NULL, 0, 0};
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
    v = (gw_hval_t){GW_HVAL_NONE, NULL, 0, 0};
    assert_int_equal(gw_reply_header_text(&v, out, sizeof(out)), -1);
}

static void test_raw_content_type(void **state) {
    assert_true(gw_reply_content_type_ok("text/plain; charset=utf-8", 25));
    assert_false(gw_reply_content_type_ok("text/plain\r\nX: y", 17));
    assert_false(gw_reply_content_type_ok("", 0));
    assert_false(gw_reply_content_type_ok(NULL, 0));
    assert_false(gw_reply_content_type_ok("caf\xc3\xa9", 5));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digits_ok),
        cmocka_unit_test(test_digits_point_into_body),
        cmocka_unit_test(test_digits_bad),
        cmocka_unit_test(test_similar_content_types_are_not_errors),
        cmocka_unit_test(test_no_size_cap_here),
        cmocka_unit_test(test_error_caller_fault),
        cmocka_unit_test(test_error_service_fault),
        cmocka_unit_test(test_error_content_type_forms),
        cmocka_unit_test(test_error_extra_fields_and_empty_message),
        cmocka_unit_test(test_error_malformed),
        cmocka_unit_test(test_message_truncation),
        cmocka_unit_test(test_raw_status),
        cmocka_unit_test(test_raw_error_reply),
        cmocka_unit_test(test_raw_header_text),
        cmocka_unit_test(test_raw_content_type),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
