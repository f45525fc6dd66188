/* test_worker_request.c - unit tests for worker/delivery.c: header lookup,
 * AMQP fields as integers, which deliveries can be answered, deadlines, and
 * the reply's properties and error body.  Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "delivery.h"

#define MAX_N    FIBRPC_DEFAULT_MAX_N
#define EXPIRED  "the deadline passed before the work started"
#define OOM_TEXT "out of memory writing the reply"
#define OOM_JSON "{\"type\":\"internal\",\"message\":\"out of memory\"}"
/* Sentinel for outputs that must be left alone. */
#define UNTOUCHED INT64_C(0x5a5a5a5a5a5a5a5a)

/* --- building fields and messages ---------------------------------------- */

static amqp_field_value_t field_bytes(char kind, const void *s, size_t len) {
    amqp_field_value_t v;

    memset(&v, 0, sizeof(v));
    v.kind = (uint8_t)kind;
    v.value.bytes.bytes = (void *)s;
    v.value.bytes.len = len;
    return v;
}

static amqp_field_value_t field_str(const char *s) {
    return field_bytes(AMQP_FIELD_KIND_UTF8, s, strlen(s));
}

static amqp_field_value_t field_i64(int64_t x) {
    amqp_field_value_t v;

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_I64;
    v.value.i64 = x;
    return v;
}

static amqp_table_entry_t entry(const char *key, amqp_field_value_t v) {
    amqp_table_entry_t e;

    e.key = amqp_cstring_bytes(key);
    e.value = v;
    return e;
}

/* A message with body and, when n > 0, the headers flag and n entries. */
static void message(amqp_message_t *m, const char *body,
                    amqp_table_entry_t *entries, int n) {
    memset(m, 0, sizeof(*m));
    m->body = amqp_cstring_bytes(body);
    if (n > 0) {
        m->properties._flags = AMQP_BASIC_HEADERS_FLAG;
        m->properties.headers.num_entries = n;
        m->properties.headers.entries = entries;
    }
}

static void set_reply_to(amqp_message_t *m, const char *q) {
    m->properties._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    m->properties.reply_to = amqp_cstring_bytes(q);
}

static void set_corr(amqp_message_t *m, const char *corr) {
    m->properties._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    m->properties.correlation_id = amqp_cstring_bytes(corr);
}

static void read_delivery(fw_delivery_t *d, const amqp_message_t *m) {
    memset(d, 0x5a, sizeof(*d));
    fw_delivery_read(d, m, m->body.len);
}

/* --- fw_field_int64 ------------------------------------------------------ */

static void assert_int64(amqp_field_value_t v, int64_t expected) {
    int64_t out = UNTOUCHED;

    assert_int_equal(fw_field_int64(&v, &out), 0);
    assert_true(out == expected);
}

static void assert_not_int64(amqp_field_value_t v) {
    int64_t out = UNTOUCHED;

    assert_int_equal(fw_field_int64(&v, &out), -1);
    assert_true(out == UNTOUCHED);
}

static void test_int_kinds(void **state) {
    amqp_field_value_t v;

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_I8;
    v.value.i8 = INT8_MIN;
    assert_int64(v, -128);
    v.value.i8 = INT8_MAX;
    assert_int64(v, 127);

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_U8;
    v.value.u8 = UINT8_MAX;
    assert_int64(v, 255);

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_I16;
    v.value.i16 = INT16_MIN;
    assert_int64(v, -32768);
    v.value.i16 = INT16_MAX;
    assert_int64(v, 32767);

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_U16;
    v.value.u16 = UINT16_MAX;
    assert_int64(v, 65535);

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_I32;
    v.value.i32 = INT32_MIN;
    assert_int64(v, INT64_C(-2147483648));
    v.value.i32 = INT32_MAX;
    assert_int64(v, INT64_C(2147483647));

    /* u32 above INT32_MAX is not sign-extended. */
    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_U32;
    v.value.u32 = UINT32_MAX;
    assert_int64(v, INT64_C(4294967295));

    assert_int64(field_i64(INT64_MIN), INT64_MIN);
    assert_int64(field_i64(INT64_MAX), INT64_MAX);
    assert_int64(field_i64(0), 0);
    assert_int64(field_i64(-1), -1);
    assert_int64(field_i64(INT64_C(1700000000000)), INT64_C(1700000000000));
}

/* A u64 beyond int64 is "as late as it gets", never a negative number. */
static void test_u64_saturates(void **state) {
    amqp_field_value_t v;

    memset(&v, 0, sizeof(v));
    v.kind = AMQP_FIELD_KIND_U64;
    v.value.u64 = 0;
    assert_int64(v, 0);
    v.value.u64 = (uint64_t)INT64_MAX;
    assert_int64(v, INT64_MAX);
    v.value.u64 = (uint64_t)INT64_MAX + 1;
    assert_int64(v, INT64_MAX);
    v.value.u64 = UINT64_MAX;
    assert_int64(v, INT64_MAX);
}

static void test_other_kinds(void **state) {
    static const char kinds[] = {
        AMQP_FIELD_KIND_BOOLEAN,
        AMQP_FIELD_KIND_F32,
        AMQP_FIELD_KIND_F64,
        AMQP_FIELD_KIND_DECIMAL,
        AMQP_FIELD_KIND_ARRAY,
        AMQP_FIELD_KIND_TIMESTAMP,
        AMQP_FIELD_KIND_TABLE,
        AMQP_FIELD_KIND_VOID,
        'x', /* not a kind at all */
    };
    amqp_field_value_t v;
    size_t i;

    for (i = 0; i < sizeof(kinds); i++) {
        memset(&v, 0, sizeof(v));
        v.kind = (uint8_t)kinds[i];
        /* Whatever the union holds, the kind decides. */
        v.value.u64 = 42;
        assert_not_int64(v);
    }
}

static void test_digit_strings(void **state) {
    assert_int64(field_str("0"), 0);
    assert_int64(field_str("7"), 7);
    assert_int64(field_str("1700000000000"), INT64_C(1700000000000));
    assert_int64(field_str("007"), 7);
    assert_int64(field_str("000000000000000000"), 0);
    /* 18 digits, the most accepted. */
    assert_int64(field_str("999999999999999999"), INT64_C(999999999999999999));
    /* Bytes (AMQP 'x') are read like UTF-8 strings. */
    assert_int64(field_bytes(AMQP_FIELD_KIND_BYTES, "123", 3), 123);
    /* Only len bytes count: what follows is not read. */
    assert_int64(field_bytes(AMQP_FIELD_KIND_UTF8, "12abc", 2), 12);
}

static void test_bad_strings(void **state) {
    static const char nonutf8[] = {'1', (char)0xff, '2'};
    static const char nul[] = {'1', '\0', '2'};
    char long_digits[1001];

    assert_not_int64(field_str(""));
    assert_not_int64(field_bytes(AMQP_FIELD_KIND_UTF8, NULL, 0));
    assert_not_int64(field_bytes(AMQP_FIELD_KIND_BYTES, "", 0));
    assert_not_int64(field_str("-1"));
    assert_not_int64(field_str("+1"));
    assert_not_int64(field_str(" 1"));
    assert_not_int64(field_str("1 "));
    assert_not_int64(field_str("1.5"));
    assert_not_int64(field_str("1e3"));
    assert_not_int64(field_str("0x10"));
    assert_not_int64(field_str("12a"));
    /* The bytes just below '0' and just above '9'. */
    assert_not_int64(field_str("1/"));
    assert_not_int64(field_str("1:"));
    assert_not_int64(field_bytes(AMQP_FIELD_KIND_UTF8, nonutf8, 3));
    assert_not_int64(field_bytes(AMQP_FIELD_KIND_BYTES, nonutf8, 3));
    assert_not_int64(field_bytes(AMQP_FIELD_KIND_UTF8, nul, 3));
    /* Fullwidth digit one (U+FF11) is a digit, but not an ASCII one. */
    assert_not_int64(field_str("\xef\xbc\x91"));
    /* 19 digits are refused even when the value would fit in an int64. */
    assert_not_int64(field_str("1000000000000000000"));
    assert_not_int64(field_str("0000000000000000001"));
    assert_not_int64(field_str("9223372036854775807"));
    assert_not_int64(field_str("99999999999999999999999"));

    memset(long_digits, '9', sizeof(long_digits) - 1);
    long_digits[sizeof(long_digits) - 1] = '\0';
    assert_not_int64(field_str(long_digits));
}

/* --- fw_header ----------------------------------------------------------- */

static void test_header_lookup(void **state) {
    amqp_table_entry_t e[3];
    amqp_message_t m;

    e[0] = entry("a", field_str("1"));
    e[1] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r1"));
    e[2] = entry(FIBRPC_HDR_TRACEPARENT, field_str("t1"));
    message(&m, "", e, 3);
    assert_ptr_equal(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID), &e[1]);
    assert_ptr_equal(fw_header(&m.properties, FIBRPC_HDR_TRACEPARENT), &e[2]);
    assert_ptr_equal(fw_header(&m.properties, "a"), &e[0]);
    assert_null(fw_header(&m.properties, FIBRPC_HDR_DEADLINE_MS));
}

static void test_header_missing(void **state) {
    amqp_table_entry_t e[1];
    amqp_message_t m;

    /* No headers at all. */
    message(&m, "", NULL, 0);
    assert_null(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID));

    /* Flag set, table empty. */
    message(&m, "", e, 0);
    m.properties._flags = AMQP_BASIC_HEADERS_FLAG;
    assert_null(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID));

    /* Entries without the flag are not there. */
    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r1"));
    message(&m, "", e, 1);
    m.properties._flags = 0;
    assert_null(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID));
}

/* Keys match byte for byte: no prefix, no case folding, no NUL cut. */
static void test_header_exact_key(void **state) {
    static const char with_nul[] = "x-request-id\0x";
    amqp_table_entry_t e[5];
    amqp_message_t m;

    e[0] = entry("x-request-i", field_str("short"));
    e[1] = entry("x-request-idx", field_str("long"));
    e[2] = entry("X-Request-Id", field_str("case"));
    e[3] = entry("", field_str("empty"));
    e[4].key.bytes = (void *)with_nul;
    e[4].key.len = sizeof(with_nul) - 1;
    e[4].value = field_str("nul");
    message(&m, "", e, 5);
    assert_null(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID));
}

static void test_header_duplicates(void **state) {
    amqp_table_entry_t e[3];
    amqp_message_t m;

    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_str("first"));
    e[1] = entry(FIBRPC_HDR_REQUEST_ID, field_str("second"));
    e[2] = entry(FIBRPC_HDR_REQUEST_ID, field_str("third"));
    message(&m, "", e, 3);
    assert_ptr_equal(fw_header(&m.properties, FIBRPC_HDR_REQUEST_ID), &e[0]);
}

/* --- fw_delivery_read and fw_delivery_has_reply_to ----------------------- */

static void test_read(void **state) {
    amqp_table_entry_t e[4];
    amqp_message_t m;
    fw_delivery_t d;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(5));
    e[1] = entry(FIBRPC_HDR_TRACEPARENT, field_str("t"));
    e[2] = entry("other", field_str("o"));
    e[3] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r"));
    message(&m, "10", e, 4);
    read_delivery(&d, &m);
    assert_ptr_equal(d.props, &m.properties);
    assert_ptr_equal(d.body.bytes, m.body.bytes);
    assert_int_equal(d.body.len, 2);
    assert_ptr_equal(d.request_id, &e[3]);
    assert_ptr_equal(d.traceparent, &e[1]);
    assert_ptr_equal(d.deadline, &e[0]);

    message(&m, "", NULL, 0);
    read_delivery(&d, &m);
    assert_null(d.request_id);
    assert_null(d.traceparent);
    assert_null(d.deadline);
    assert_int_equal(d.body.len, 0);
}

/* A body over FIBRPC_MAX_REQUEST_BYTES is not kept (the link hands out its
 * delivery with an empty body and the announced size): refused on its size,
 * with the size in the message. */
static void test_body_not_kept(void **state) {
    amqp_message_t m;
    fw_delivery_t d;
    fw_request_t req;

    message(&m, "", NULL, 0);
    m.body.bytes = NULL;
    fw_delivery_read(&d, &m, 10000000);
    assert_int_equal(d.body_size, 10000000);
    fw_delivery_request(&d, MAX_N, 0, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);
    assert_non_null(strstr(req.message, "10000000 bytes"));
    assert_non_null(strstr(req.message, "limit of 64 bytes"));

    fw_delivery_read(&d, &m, UINT64_MAX);
    fw_delivery_request(&d, MAX_N, 0, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);

    /* One byte over, kept or not: the same answer. */
    message(&m,
            "12345678901234567890123456789012345678901234567890123456789012345",
            NULL, 0);
    read_delivery(&d, &m);
    fw_delivery_request(&d, MAX_N, 0, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);
    assert_non_null(strstr(req.message, "65 bytes"));
}

static void test_reply_to(void **state) {
    amqp_message_t m;
    fw_delivery_t d;

    message(&m, "1", NULL, 0);
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_has_reply_to(&d), 0);

    set_reply_to(&m, "");
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_has_reply_to(&d), 0);

    set_reply_to(&m, "amq.rabbitmq.reply-to");
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_has_reply_to(&d), 1);

    /* A reply_to without its flag was never sent. */
    m.properties._flags = 0;
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_has_reply_to(&d), 0);
}

/* --- fw_delivery_request: deadlines, then the body ----------------------- */

static void request(const char *body, amqp_table_entry_t *e, int n,
                    int64_t now_ms, fw_request_t *req) {
    amqp_message_t m;
    fw_delivery_t d;

    message(&m, body, e, n);
    read_delivery(&d, &m);
    memset(req, 0x5a, sizeof(*req));
    fw_delivery_request(&d, MAX_N, now_ms, req);
}

static void assert_expired(const fw_request_t *req) {
    assert_int_equal(req->err, FW_ERR_expired);
    assert_int_equal(req->n, 0);
    assert_string_equal(req->message, EXPIRED);
}

static void assert_n(const fw_request_t *req, uint32_t n) {
    assert_int_equal(req->err, FW_OK);
    assert_int_equal(req->n, n);
    assert_string_equal(req->message, "");
}

static void test_no_deadline(void **state) {
    amqp_table_entry_t e[1];
    fw_request_t req;

    request("10", NULL, 0, INT64_MAX, &req);
    assert_n(&req, 10);

    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r"));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
}

static void test_deadline_edges(void **state) {
    const int64_t t = INT64_C(1700000000000);
    amqp_table_entry_t e[1];
    fw_request_t req;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(t));
    request("10", e, 1, t - 1, &req);
    assert_n(&req, 10);
    /* Reaching the deadline is passing it. */
    request("10", e, 1, t, &req);
    assert_expired(&req);
    request("10", e, 1, t + 1, &req);
    assert_expired(&req);

    /* As decimal digits in a string, the same. */
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str("1700000000000"));
    request("10", e, 1, t - 1, &req);
    assert_n(&req, 10);
    request("10", e, 1, t, &req);
    assert_expired(&req);

    /* Zero and negative deadlines are long past. */
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(0));
    request("10", e, 1, 0, &req);
    assert_expired(&req);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(-1));
    request("10", e, 1, 0, &req);
    assert_expired(&req);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(INT64_MIN));
    request("10", e, 1, INT64_MIN, &req);
    assert_expired(&req);

    /* A u64 too large for int64 is reached only at INT64_MAX. */
    e[0].value.kind = AMQP_FIELD_KIND_U64;
    e[0].value.value.u64 = UINT64_MAX;
    request("10", e, 1, INT64_MAX - 1, &req);
    assert_n(&req, 10);
    request("10", e, 1, INT64_MAX, &req);
    assert_expired(&req);
}

/* A deadline the worker cannot read is no deadline: the work is done. */
static void test_deadline_unreadable(void **state) {
    static const char nonutf8[] = {(char)0xc3, (char)0x28};
    amqp_table_entry_t e[1];
    fw_request_t req;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str("-1"));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str(""));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str("1e3"));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str("1000000000000000000"));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
    e[0] = entry(FIBRPC_HDR_DEADLINE_MS,
                 field_bytes(AMQP_FIELD_KIND_BYTES, nonutf8, 2));
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);

    memset(&e[0].value, 0, sizeof(e[0].value));
    e[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e[0].value.value.boolean = 1;
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);

    memset(&e[0].value, 0, sizeof(e[0].value));
    e[0].value.kind = AMQP_FIELD_KIND_F64;
    e[0].value.value.f64 = 1.0;
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);

    /* A timestamp is seconds, not ms; it is not read as a deadline. */
    memset(&e[0].value, 0, sizeof(e[0].value));
    e[0].value.kind = AMQP_FIELD_KIND_TIMESTAMP;
    e[0].value.value.u64 = 1;
    request("10", e, 1, INT64_MAX, &req);
    assert_n(&req, 10);
}

/* Only the first x-deadline-ms counts, readable or not. */
static void test_deadline_duplicates(void **state) {
    amqp_table_entry_t e[2];
    fw_request_t req;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(100));
    e[1] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(1));
    request("10", e, 2, 50, &req);
    assert_n(&req, 10);

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_str("soon"));
    e[1] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(1));
    request("10", e, 2, 50, &req);
    assert_n(&req, 10);

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(1));
    e[1] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(100));
    request("10", e, 2, 50, &req);
    assert_expired(&req);
}

/* An expired request is not read: whatever its body, it is expired. */
static void test_expired_skips_body(void **state) {
    amqp_table_entry_t e[1];
    fw_request_t req;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(1));
    request("not a number", e, 1, 2, &req);
    assert_expired(&req);
    request("", e, 1, 2, &req);
    assert_expired(&req);
    request("999999999", e, 1, 2, &req);
    assert_expired(&req);
}

/* In time, the body decides, exactly as fw_request_parse does. */
static void test_body_in_time(void **state) {
    amqp_table_entry_t e[1];
    fw_request_t req;

    e[0] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(100));
    request("0", e, 1, 50, &req);
    assert_n(&req, 0);
    request("", e, 1, 50, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);
    request("abc", e, 1, 50, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);
    request("-5", e, 1, 50, &req);
    assert_int_equal(req.err, FW_ERR_invalid_argument);
    assert_string_equal(req.message, "n must not be negative");
    request("100001", e, 1, 50, &req);
    assert_int_equal(req.err, FW_ERR_out_of_range);
    assert_int_equal(req.n, 0);
}

/* --- fw_delivery_error_body ---------------------------------------------- */

static void assert_error_json(const amqp_bytes_t *body, const char *type,
                              const char *message) {
    json_error_t jerr;
    json_t *obj;

    obj = json_loadb(body->bytes, body->len, 0, &jerr);
    assert_non_null(obj);
    assert_int_equal(json_object_size(obj), 2);
    assert_string_equal(json_string_value(json_object_get(obj, "type")), type);
    assert_string_equal(json_string_value(json_object_get(obj, "message")),
                        message);
    json_decref(obj);
}

static void error_body(fw_request_t *req, char **text, amqp_bytes_t *body) {
    *text = (char *)"poison";
    memset(body, 0x5a, sizeof(*body));
    fw_delivery_error_body(req, text, body);
}

static void test_error_body(void **state) {
    fw_request_t req;
    amqp_bytes_t body;
    char *text;

    memset(&req, 0, sizeof(req));
    req.err = FW_ERR_out_of_range;
    strcpy(req.message, "n must be at most 100000 (this worker's limit)");
    error_body(&req, &text, &body);
    assert_non_null(text);
    assert_ptr_equal(body.bytes, text);
    assert_int_equal(body.len, strlen(text));
    assert_error_json(&body, "out_of_range",
                      "n must be at most 100000 (this worker's limit)");
    /* req is left as it was. */
    assert_int_equal(req.err, FW_ERR_out_of_range);
    free(text);

    req.err = FW_ERR_expired;
    strcpy(req.message, EXPIRED);
    error_body(&req, &text, &body);
    assert_error_json(&body, "expired", EXPIRED);
    free(text);
}

static void assert_oom_fallback(const fw_request_t *req, const char *text,
                                const amqp_bytes_t *body) {
    assert_null(text);
    assert_int_equal(req->err, FW_ERR_internal);
    assert_string_equal(req->message, OOM_TEXT);
    assert_int_equal(body->len, strlen(OOM_JSON));
    assert_memory_equal(body->bytes, OOM_JSON, body->len);
    assert_error_json(body, "internal", "out of memory");
}

static void *failing_malloc(size_t size) {
    return NULL;
}

/* jansson out of memory: the reply is still a valid internal error. */
static void test_error_body_oom(void **state) {
    fw_request_t req;
    amqp_bytes_t body;
    char *text;

    memset(&req, 0, sizeof(req));
    req.err = FW_ERR_invalid_argument;
    strcpy(req.message, "request body is empty; expected n as decimal digits");
    json_set_alloc_funcs(failing_malloc, free);
    error_body(&req, &text, &body);
    json_set_alloc_funcs(malloc, free);
    assert_oom_fallback(&req, text, &body);
}

/* A message that is not UTF-8 cannot become JSON; it takes the same way. */
static void test_error_body_not_utf8(void **state) {
    fw_request_t req;
    amqp_bytes_t body;
    char *text;

    memset(&req, 0, sizeof(req));
    req.err = FW_ERR_invalid_argument;
    strcpy(req.message, "bad \xff\xfe byte");
    error_body(&req, &text, &body);
    assert_oom_fallback(&req, text, &body);
}

/* --- fw_delivery_reply_props --------------------------------------------- */

static void reply_props(const amqp_message_t *m, fw_err_t err,
                        amqp_table_entry_t *headers,
                        amqp_basic_properties_t *out) {
    fw_delivery_t d;

    read_delivery(&d, m);
    memset(headers, 0x5a, sizeof(*headers) * FW_REPLY_HEADERS_MAX);
    memset(out, 0x5a, sizeof(*out));
    fw_delivery_reply_props(&d, err, headers, out);
}

static void assert_bytes(amqp_bytes_t b, const char *s) {
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.bytes, s, b.len);
}

static void test_reply_content_type(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_message_t m;

    message(&m, "10", NULL, 0);
    set_reply_to(&m, "q");
    reply_props(&m, FW_OK, headers, &out);
    /* Nothing but the content type: no headers, no correlation id, no
     * reply_to, no delivery mode. */
    assert_int_equal(out._flags, AMQP_BASIC_CONTENT_TYPE_FLAG);
    assert_bytes(out.content_type, FIBRPC_REPLY_CONTENT_TYPE);
    assert_int_equal(out.headers.num_entries, 0);
    assert_int_equal(out.delivery_mode, 0);
    assert_int_equal(out.reply_to.len, 0);

    reply_props(&m, FW_ERR_invalid_argument, headers, &out);
    assert_int_equal(out._flags, AMQP_BASIC_CONTENT_TYPE_FLAG);
    assert_bytes(out.content_type, FIBRPC_ERROR_CONTENT_TYPE);
    reply_props(&m, FW_ERR_expired, headers, &out);
    assert_bytes(out.content_type, FIBRPC_ERROR_CONTENT_TYPE);
    reply_props(&m, FW_ERR_internal, headers, &out);
    assert_bytes(out.content_type, FIBRPC_ERROR_CONTENT_TYPE);
}

static void test_reply_correlation_id(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    static const char odd[] = {'c', (char)0xff, '\0', 'd'};
    amqp_message_t m;

    message(&m, "10", NULL, 0);
    set_corr(&m, "corr-1");
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out._flags, AMQP_BASIC_CONTENT_TYPE_FLAG |
                                     AMQP_BASIC_CORRELATION_ID_FLAG);
    /* The same bytes, borrowed. */
    assert_ptr_equal(out.correlation_id.bytes,
                     m.properties.correlation_id.bytes);
    assert_bytes(out.correlation_id, "corr-1");

    /* Any bytes at all are echoed as they are. */
    m.properties.correlation_id.bytes = (void *)odd;
    m.properties.correlation_id.len = sizeof(odd);
    reply_props(&m, FW_ERR_internal, headers, &out);
    assert_int_equal(out.correlation_id.len, sizeof(odd));
    assert_memory_equal(out.correlation_id.bytes, odd, sizeof(odd));

    /* Without its flag there is no correlation id to echo. */
    m.properties._flags = 0;
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out._flags, AMQP_BASIC_CONTENT_TYPE_FLAG);
    assert_int_equal(out.correlation_id.len, 0);
}

static void test_reply_headers(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_table_entry_t e[4];
    amqp_message_t m;

    /* Echoed: x-request-id then traceparent, whatever order they came in;
     * the deadline and other headers are not. */
    e[0] = entry(FIBRPC_HDR_TRACEPARENT, field_str("00-trace"));
    e[1] = entry(FIBRPC_HDR_DEADLINE_MS, field_i64(5));
    e[2] = entry("other", field_str("o"));
    e[3] = entry(FIBRPC_HDR_REQUEST_ID, field_str("req-1"));
    message(&m, "10", e, 4);
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out._flags,
                     AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG);
    assert_ptr_equal(out.headers.entries, headers);
    assert_int_equal(out.headers.num_entries, 2);
    assert_bytes(headers[0].key, FIBRPC_HDR_REQUEST_ID);
    assert_int_equal(headers[0].value.kind, AMQP_FIELD_KIND_UTF8);
    assert_bytes(headers[0].value.value.bytes, "req-1");
    assert_bytes(headers[1].key, FIBRPC_HDR_TRACEPARENT);
    assert_bytes(headers[1].value.value.bytes, "00-trace");

    /* Just one of them. */
    message(&m, "10", &e[0], 3);
    reply_props(&m, FW_ERR_expired, headers, &out);
    assert_int_equal(out._flags,
                     AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG);
    assert_int_equal(out.headers.num_entries, 1);
    assert_bytes(headers[0].key, FIBRPC_HDR_TRACEPARENT);

    /* Headers, but none to echo: no headers flag. */
    message(&m, "10", &e[1], 2);
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out._flags, AMQP_BASIC_CONTENT_TYPE_FLAG);
    assert_int_equal(out.headers.num_entries, 0);
}

/* The entry is echoed as sent, kind and all, even when it is not a string. */
static void test_reply_headers_any_kind(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_table_entry_t e[1];
    amqp_message_t m;

    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_i64(42));
    message(&m, "10", e, 1);
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out.headers.num_entries, 1);
    assert_int_equal(headers[0].value.kind, AMQP_FIELD_KIND_I64);
    assert_true(headers[0].value.value.i64 == 42);
}

/* Duplicates: only the first of each is echoed, so the table never outgrows
 * FW_REPLY_HEADERS_MAX however many the request carried. */
static void test_reply_headers_duplicates(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_table_entry_t e[6];
    amqp_message_t m;

    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r1"));
    e[1] = entry(FIBRPC_HDR_TRACEPARENT, field_str("t1"));
    e[2] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r2"));
    e[3] = entry(FIBRPC_HDR_TRACEPARENT, field_str("t2"));
    e[4] = entry(FIBRPC_HDR_REQUEST_ID, field_str("r3"));
    e[5] = entry(FIBRPC_HDR_TRACEPARENT, field_str("t3"));
    message(&m, "10", e, 6);
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out.headers.num_entries, 2);
    assert_bytes(headers[0].value.value.bytes, "r1");
    assert_bytes(headers[1].value.value.bytes, "t1");
}

/* A long request id is echoed whole: the broker's frame size bounds it. */
static void test_reply_headers_long(void **state) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_table_entry_t e[1];
    amqp_message_t m;
    char *id;

    id = malloc(100001);
    assert_non_null(id);
    memset(id, 'r', 100000);
    id[100000] = '\0';
    e[0] = entry(FIBRPC_HDR_REQUEST_ID, field_str(id));
    message(&m, "10", e, 1);
    reply_props(&m, FW_OK, headers, &out);
    assert_int_equal(out.headers.num_entries, 1);
    assert_int_equal(headers[0].value.value.bytes.len, 100000);
    assert_ptr_equal(headers[0].value.value.bytes.bytes, id);
    free(id);
}

/* --- poison requests (x-delivery-count against --delivery-limit) ------- */

static int poisoned(amqp_table_entry_t *e, int n, uint32_t limit,
                    fw_request_t *req) {
    amqp_message_t m;
    fw_delivery_t d;

    message(&m, "10", e, n);
    read_delivery(&d, &m);
    memset(req, 0x5a, sizeof(*req));
    return fw_delivery_poisoned(&d, limit, req);
}

static void test_delivery_count(void **state) {
    amqp_table_entry_t e[2];
    amqp_message_t m;
    fw_delivery_t d;

    (void)state;
    message(&m, "10", NULL, 0); /* a first delivery carries no count */
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 0);
    e[0] = entry("x-delivery-count", field_i64(3));
    message(&m, "10", e, 1);
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 3);
    e[0] = entry("x-delivery-count", field_i64(-4)); /* hostile: 0 */
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 0);
    e[0] = entry("x-delivery-count", field_str("two")); /* not a count */
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 0);
    e[0] = entry("x-delivery-count", field_str("7")); /* digits are one */
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 7);
    e[0] = entry("x-delivery-countx", field_i64(9)); /* exactly the name */
    e[1] = entry("x-delivery-count", field_i64(2));
    message(&m, "10", e, 2);
    read_delivery(&d, &m);
    assert_int_equal(fw_delivery_count(&d), 2);
}

static void test_poisoned(void **state) {
    amqp_table_entry_t e[1];
    fw_request_t req;

    (void)state;
    /* No limit: never, however often it came back. */
    e[0] = entry("x-delivery-count", field_i64(1000));
    assert_int_equal(poisoned(e, 1, 0, &req), 0);
    assert_int_equal(req.n, (uint32_t)UNTOUCHED);
    /* Limit 3: the first delivery (no count) and the second (count 1) are
     * computed; the third (count 2 = 3 - 1) and later are answered. */
    assert_int_equal(poisoned(e, 0, 3, &req), 0);
    e[0] = entry("x-delivery-count", field_i64(1));
    assert_int_equal(poisoned(e, 1, 3, &req), 0);
    e[0] = entry("x-delivery-count", field_i64(2));
    assert_int_equal(poisoned(e, 1, 3, &req), 1);
    assert_int_equal(req.err, FW_ERR_worker_crashed);
    assert_string_equal(req.message, "delivered 2 times before without an "
                                     "answer: workers crashed on it");
    e[0] = entry("x-delivery-count", field_i64(INT64_MAX));
    assert_int_equal(poisoned(e, 1, 3, &req), 1);
    assert_true(strlen(req.message) < sizeof(req.message));
    /* Limit 2: the first redelivery is answered. */
    e[0] = entry("x-delivery-count", field_i64(1));
    assert_int_equal(poisoned(e, 1, 2, &req), 1);
    assert_string_equal(fw_err_name(req.err), "worker_crashed");
    assert_int_equal(fw_err_caller_fault(req.err), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_kinds),
        cmocka_unit_test(test_u64_saturates),
        cmocka_unit_test(test_other_kinds),
        cmocka_unit_test(test_digit_strings),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_header_missing),
        cmocka_unit_test(test_header_exact_key),
        cmocka_unit_test(test_header_duplicates),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_body_not_kept),
        cmocka_unit_test(test_reply_to),
        cmocka_unit_test(test_no_deadline),
        cmocka_unit_test(test_deadline_edges),
        cmocka_unit_test(test_deadline_unreadable),
        cmocka_unit_test(test_deadline_duplicates),
        cmocka_unit_test(test_expired_skips_body),
        cmocka_unit_test(test_body_in_time),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_error_body_oom),
        cmocka_unit_test(test_error_body_not_utf8),
        cmocka_unit_test(test_reply_content_type),
        cmocka_unit_test(test_reply_correlation_id),
        cmocka_unit_test(test_reply_headers),
        cmocka_unit_test(test_reply_headers_any_kind),
        cmocka_unit_test(test_reply_headers_duplicates),
        cmocka_unit_test(test_reply_headers_long),
        cmocka_unit_test(test_delivery_count),
        cmocka_unit_test(test_poisoned),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
