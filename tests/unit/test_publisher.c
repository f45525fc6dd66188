/* test_publisher.c - the request message and its frames, decoded back with
 * rabbitmq-c's own decoders: what the gateway writes with one send() must
 * be exactly what rabbitmq-c would have written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fibrpc.h"
#include "publisher.h"

typedef struct {
    uint8_t type;
    uint16_t channel;
    amqp_bytes_t payload;
} frame_t;

static uint64_t get_be(const uint8_t *p, int bytes) {
    uint64_t v = 0;

    while (bytes-- > 0)
        v = v << 8 | *p++;
    return v;
}

/* Splits buf into frames, checking each frame's framing. */
static size_t split(uint8_t *buf, size_t len, frame_t *out, size_t max) {
    size_t off = 0, n = 0;

    while (off < len) {
        uint32_t size;

        assert_true(n < max);
        assert_true(len - off >= 8);
        out[n].type = buf[off];
        out[n].channel = (uint16_t)get_be(buf + off + 1, 2);
        size = (uint32_t)get_be(buf + off + 3, 4);
        assert_true(len - off >= 8 + (size_t)size);
        assert_int_equal(buf[off + 7 + size], AMQP_FRAME_END);
        out[n].payload = (amqp_bytes_t){size, buf + off + 7};
        off += 8 + size;
        n++;
    }
    return n;
}

static const amqp_table_entry_t *header(const amqp_table_t *t,
                                        const char *key) {
    int i;

    for (i = 0; i < t->num_entries; i++)
        if (t->entries[i].key.len == strlen(key) &&
            memcmp(t->entries[i].key.bytes, key, strlen(key)) == 0)
            return &t->entries[i];
    return NULL;
}

static void assert_bytes(amqp_bytes_t b, const char *s) {
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.bytes, s, b.len);
}

static gw_request_msg_t msg(const char *traceparent, const void *body,
                            size_t len) {
    return (gw_request_msg_t){
        .routing_key = "rpc_queue",
        .correlation_id = "0f8fad5b-d9cb-469f-a165-70867728950e",
        .request_id = "req-1",
        .traceparent = traceparent,
        .ttl_ms = 4999,
        .deadline_wall_ms = 1764806400123LL,
        .body = body,
        .body_len = len,
    };
}

/* Encodes m and decodes it back; checks everything. */
static void round_trip(const gw_request_msg_t *m) {
    static uint8_t buf[8192];
    gw_request_props_t rp;
    frame_t f[4];
    amqp_pool_t pool;
    amqp_basic_publish_t *pub;
    amqp_basic_properties_t *p;
    const amqp_table_entry_t *e;
    long n;

    gw_request_props(m, &rp);
    n = gw_publish_encode(buf, sizeof(buf), 1, 131072, amqp_empty_bytes,
                          amqp_cstring_bytes(m->routing_key), &rp.props,
                          (amqp_bytes_t){m->body_len, (void *)m->body});
    assert_true(n > 0);
    /* an empty body has no body frame */
    assert_int_equal(split(buf, (size_t)n, f, 4), m->body_len > 0 ? 3 : 2);
    init_amqp_pool(&pool, 4096);

    assert_int_equal(f[0].type, AMQP_FRAME_METHOD);
    assert_int_equal(f[0].channel, 1);
    assert_int_equal(get_be(f[0].payload.bytes, 4), AMQP_BASIC_PUBLISH_METHOD);
    assert_int_equal(
        amqp_decode_method(AMQP_BASIC_PUBLISH_METHOD, &pool,
                           (amqp_bytes_t){f[0].payload.len - 4,
                                          (uint8_t *)f[0].payload.bytes + 4},
                           (void **)&pub),
        0);
    assert_int_equal(pub->exchange.len, 0);
    assert_bytes(pub->routing_key, m->routing_key);
    assert_true(pub->mandatory);
    assert_false(pub->immediate);

    assert_int_equal(f[1].type, AMQP_FRAME_HEADER);
    assert_int_equal(f[1].channel, 1);
    assert_int_equal(get_be(f[1].payload.bytes, 2), AMQP_BASIC_CLASS);
    assert_int_equal(get_be((uint8_t *)f[1].payload.bytes + 4, 8), m->body_len);
    assert_int_equal(amqp_decode_properties(
                         AMQP_BASIC_CLASS, &pool,
                         (amqp_bytes_t){f[1].payload.len - 12,
                                        (uint8_t *)f[1].payload.bytes + 12},
                         (void **)&p),
                     0);
    assert_bytes(p->content_type, FIBRPC_REQUEST_CONTENT_TYPE);
    assert_int_equal(p->delivery_mode, 1);
    assert_bytes(p->correlation_id, m->correlation_id);
    assert_bytes(p->reply_to, GW_REPLY_TO);
    assert_bytes(p->expiration, "4999");
    assert_true(p->_flags & AMQP_BASIC_HEADERS_FLAG);
    e = header(&p->headers, FIBRPC_HDR_REQUEST_ID);
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_UTF8);
    assert_bytes(e->value.value.bytes, "req-1");
    e = header(&p->headers, FIBRPC_HDR_DEADLINE_MS);
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_I64);
    assert_int_equal(e->value.value.i64, 1764806400123LL);
    e = header(&p->headers, FIBRPC_HDR_TRACEPARENT);
    if (m->traceparent != NULL && m->traceparent[0] != '\0') {
        assert_non_null(e);
        assert_bytes(e->value.value.bytes, m->traceparent);
        assert_int_equal(p->headers.num_entries, 3);
    } else {
        assert_null(e);
        assert_int_equal(p->headers.num_entries, 2);
    }

    if (m->body_len > 0) {
        assert_int_equal(f[2].type, AMQP_FRAME_BODY);
        assert_int_equal(f[2].channel, 1);
        assert_int_equal(f[2].payload.len, m->body_len);
        assert_memory_equal(f[2].payload.bytes, m->body, m->body_len);
    }
    empty_amqp_pool(&pool);
}

static void test_round_trip(void **state) {
    gw_request_msg_t m = msg("", "12345", 5);

    round_trip(&m);
    m = msg("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "7", 1);
    round_trip(&m);
    m = msg(NULL, "", 0);
    round_trip(&m);
}

static void test_binary_and_large_body(void **state) {
    uint8_t body[3000];
    size_t i;
    gw_request_msg_t m;

    for (i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)i;
    m = msg("", body, sizeof(body));
    round_trip(&m);
}

static void test_expiration_never_negative(void **state) {
    gw_request_msg_t m = msg("", "1", 1);
    gw_request_props_t rp;

    m.ttl_ms = -5; /* the deadline passed on the way: expire at once */
    gw_request_props(&m, &rp);
    assert_bytes(rp.props.expiration, "0");
}

/* Every room short of what is needed fails, and nothing is written past
 * the room given. */
static void test_too_little_room(void **state) {
    static uint8_t buf[2048];
    gw_request_msg_t m = msg("", "99", 2);
    gw_request_props_t rp;
    long need, n;
    size_t room;

    gw_request_props(&m, &rp);
    need = gw_publish_encode(buf, sizeof(buf), 1, 131072, amqp_empty_bytes,
                             amqp_cstring_bytes("q"), &rp.props,
                             amqp_cstring_bytes("99"));
    assert_true(need > 0);
    assert_true((size_t)need <= gw_publish_room(2, 131072, 1024));
    for (room = 0; room < (size_t)need; room++) {
        memset(buf, 0xa5, sizeof(buf));
        n = gw_publish_encode(buf, room, 1, 131072, amqp_empty_bytes,
                              amqp_cstring_bytes("q"), &rp.props,
                              amqp_cstring_bytes("99"));
        assert_int_equal(n, -1);
        assert_int_equal(buf[room], 0xa5);
    }
    n = gw_publish_encode(buf, (size_t)need, 1, 131072, amqp_empty_bytes,
                          amqp_cstring_bytes("q"), &rp.props,
                          amqp_cstring_bytes("99"));
    assert_int_equal(n, need);
}

/* A raw route's message: its exchange, content type and encoding, the
 * HTTP headers, and a body cut into frames of at most frame_max. */
static void test_raw_message(void **state) {
    static uint8_t buf[32768], body[10000];
    static const gw_msg_header_t extra[] = {
        {"x-http-method", "POST", 4},
        {"x-http-path", "/v1/upper", 9},
        {"x-param-id", "a\0b", 3}, /* any bytes */
    };
    gw_request_msg_t m = msg("", body, sizeof(body));
    gw_request_props_t rp;
    frame_t f[16];
    amqp_pool_t pool;
    amqp_basic_publish_t *pub;
    amqp_basic_properties_t *p;
    const amqp_table_entry_t *e;
    size_t i, nf, got = 0;
    long n;

    for (i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    m.exchange = "images";
    m.raw = 1;
    m.content_type = "image/png";
    m.content_encoding = "gzip";
    m.headers = extra;
    m.nheaders = 3;
    gw_request_props(&m, &rp);
    n = gw_publish_encode(buf, sizeof(buf), 3, 4096,
                          amqp_cstring_bytes(m.exchange),
                          amqp_cstring_bytes("resize.10"), &rp.props,
                          (amqp_bytes_t){sizeof(body), body});
    assert_true(n > 0);
    assert_true((size_t)n <= gw_publish_room(sizeof(body), 4096, 1024 + 64));
    nf = split(buf, (size_t)n, f, 16);
    assert_int_equal(nf, 2 + 3); /* 10000 bytes at 4088 a frame */
    init_amqp_pool(&pool, 4096);
    assert_int_equal(
        amqp_decode_method(AMQP_BASIC_PUBLISH_METHOD, &pool,
                           (amqp_bytes_t){f[0].payload.len - 4,
                                          (uint8_t *)f[0].payload.bytes + 4},
                           (void **)&pub),
        0);
    assert_bytes(pub->exchange, "images");
    assert_bytes(pub->routing_key, "resize.10");
    assert_int_equal(amqp_decode_properties(
                         AMQP_BASIC_CLASS, &pool,
                         (amqp_bytes_t){f[1].payload.len - 12,
                                        (uint8_t *)f[1].payload.bytes + 12},
                         (void **)&p),
                     0);
    assert_bytes(p->content_type, "image/png");
    assert_bytes(p->content_encoding, "gzip");
    assert_bytes(p->reply_to, GW_REPLY_TO);
    e = header(&p->headers, "x-http-path");
    assert_non_null(e);
    assert_bytes(e->value.value.bytes, "/v1/upper");
    e = header(&p->headers, "x-param-id");
    assert_non_null(e);
    assert_int_equal(e->value.value.bytes.len, 3);
    assert_memory_equal(e->value.value.bytes.bytes, "a\0b", 3);
    assert_int_equal(p->headers.num_entries, 2 + 3);
    for (i = 2; i < nf; i++) {
        assert_int_equal(f[i].type, AMQP_FRAME_BODY);
        assert_true(f[i].payload.len <= 4096 - 8);
        assert_memory_equal(f[i].payload.bytes, body + got, f[i].payload.len);
        got += f[i].payload.len;
    }
    assert_int_equal(got, sizeof(body));
    empty_amqp_pool(&pool);
}

/* A publish-mode message: persistent, no reply_to, no expiration, no
 * deadline; a raw one without a content type has none. */
static void test_publish_message(void **state) {
    gw_request_msg_t m = msg("", "x", 1);
    gw_request_props_t rp;

    m.publish = 1;
    m.raw = 1;
    gw_request_props(&m, &rp);
    assert_int_equal(rp.props.delivery_mode, 2);
    assert_false(rp.props._flags & AMQP_BASIC_REPLY_TO_FLAG);
    assert_false(rp.props._flags & AMQP_BASIC_EXPIRATION_FLAG);
    assert_false(rp.props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
    assert_true(rp.props._flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    assert_null(header(&rp.props.headers, FIBRPC_HDR_DEADLINE_MS));
    assert_non_null(header(&rp.props.headers, FIBRPC_HDR_REQUEST_ID));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_binary_and_large_body),
        cmocka_unit_test(test_expiration_never_negative),
        cmocka_unit_test(test_too_little_room),
        cmocka_unit_test(test_raw_message),
        cmocka_unit_test(test_publish_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
