/* test_amqp_content.c - a message put together from its frames: bodies
 * kept up to the cap, an oversized one handed out at its header and its
 * body dropped, frames of other channels passed through, resuming between
 * frames, and every protocol violation refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "amqp_content.h"

/* Frames as rabbitmq-c hands them out: what they point to lives in buf,
 * which the tests scribble over after feeding, as rabbitmq-c reuses its
 * buffers once released. */
typedef struct {
    amqp_basic_deliver_t deliver;
    amqp_basic_return_t ret;
    amqp_basic_ack_t ack;
    amqp_channel_close_t close;
    amqp_basic_properties_t props;
    amqp_table_entry_t header;
    char corr[40], ctype[40], key[16], value[16];
    char body[256];
} bufs_t;

static bufs_t buf;

static amqp_frame_t method(amqp_channel_t ch, amqp_method_number_t id,
                           void *decoded) {
    amqp_frame_t f;

    memset(&f, 0, sizeof(f));
    f.frame_type = AMQP_FRAME_METHOD;
    f.channel = ch;
    f.payload.method.id = id;
    f.payload.method.decoded = decoded;
    return f;
}

static amqp_frame_t deliver(amqp_channel_t ch, uint64_t tag) {
    memset(&buf.deliver, 0, sizeof(buf.deliver));
    buf.deliver.delivery_tag = tag;
    buf.deliver.redelivered = 1;
    return method(ch, AMQP_BASIC_DELIVER_METHOD, &buf.deliver);
}

/* A content header with a correlation id, a content type and one header
 * entry, all in buf. */
static amqp_frame_t header(amqp_channel_t ch, uint64_t size, const char *corr) {
    amqp_frame_t f;

    memset(&buf.props, 0, sizeof(buf.props));
    snprintf(buf.corr, sizeof(buf.corr), "%s", corr);
    snprintf(buf.ctype, sizeof(buf.ctype), "text/plain");
    snprintf(buf.key, sizeof(buf.key), "x-request-id");
    snprintf(buf.value, sizeof(buf.value), "req-1");
    buf.header.key = amqp_cstring_bytes(buf.key);
    buf.header.value.kind = AMQP_FIELD_KIND_UTF8;
    buf.header.value.value.bytes = amqp_cstring_bytes(buf.value);
    buf.props._flags = AMQP_BASIC_CORRELATION_ID_FLAG |
                       AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                       AMQP_BASIC_DELIVERY_MODE_FLAG;
    buf.props.correlation_id = amqp_cstring_bytes(buf.corr);
    buf.props.content_type = amqp_cstring_bytes(buf.ctype);
    buf.props.headers.num_entries = 1;
    buf.props.headers.entries = &buf.header;
    buf.props.delivery_mode = 2;
    memset(&f, 0, sizeof(f));
    f.frame_type = AMQP_FRAME_HEADER;
    f.channel = ch;
    f.payload.properties.class_id = AMQP_BASIC_CLASS;
    f.payload.properties.body_size = size;
    f.payload.properties.decoded = &buf.props;
    return f;
}

static amqp_frame_t body(amqp_channel_t ch, const char *text) {
    amqp_frame_t f;

    snprintf(buf.body, sizeof(buf.body), "%s", text);
    memset(&f, 0, sizeof(f));
    f.frame_type = AMQP_FRAME_BODY;
    f.channel = ch;
    f.payload.body_fragment.bytes = buf.body;
    f.payload.body_fragment.len = strlen(text);
    return f;
}

static void scribble(void) {
    memset(&buf, 0xa5, sizeof(buf));
}

static cm_content_step_t feed(cm_amqp_content_t *c, amqp_frame_t f) {
    int error = -1;
    cm_content_step_t step = cm_amqp_content_feed(c, &f, &error);

    if (step == CM_CONTENT_BAD)
        assert_true(error == AMQP_STATUS_BAD_AMQP_DATA ||
                    error == AMQP_STATUS_NO_MEMORY);
    else
        assert_int_equal(error, 0);
    scribble(); /* nothing kept may point into the frame */
    return step;
}

static void assert_bytes(amqp_bytes_t b, const char *want) {
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.bytes, want, b.len);
}

static void assert_props(const cm_amqp_msg_t *m, const char *corr) {
    const amqp_basic_properties_t *p = &m->message.properties;

    assert_true(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    assert_bytes(p->correlation_id, corr);
    assert_bytes(p->content_type, "text/plain");
    assert_int_equal(p->delivery_mode, 2);
    assert_int_equal(p->headers.num_entries, 1);
    assert_bytes(p->headers.entries[0].key, "x-request-id");
    assert_bytes(p->headers.entries[0].value.value.bytes, "req-1");
}

/* --- bodies within the cap ------------------------------------------------ */

static void test_body_in_frames(void **state) {
    cm_amqp_content_t c;
    const cm_amqp_msg_t *m;

    cm_amqp_content_init(&c, 64);
    assert_false(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, deliver(1, 42)), CM_CONTENT_MORE);
    assert_true(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, header(1, 11, "corr-1")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "hello")), CM_CONTENT_MORE);
    /* Between two frames (the next one not here yet), releasing keeps
     * what is half read: the next call resumes it. */
    cm_amqp_content_release(&c);
    assert_true(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, body(1, " ")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "world")), CM_CONTENT_READY);
    assert_false(cm_amqp_content_busy(&c));
    m = cm_amqp_content_message(&c);
    assert_int_equal(m->channel, 1);
    assert_int_equal(m->method, AMQP_BASIC_DELIVER_METHOD);
    assert_int_equal(m->delivery_tag, 42);
    assert_true(m->redelivered);
    assert_int_equal(m->body_size, 11);
    assert_false(m->oversized);
    assert_bytes(m->message.body, "hello world");
    assert_props(m, "corr-1");
    cm_amqp_content_release(&c);
    assert_int_equal(m->message.body.len, 0);
    cm_amqp_content_reset(&c);
}

static void test_empty_body_and_exactly_the_cap(void **state) {
    cm_amqp_content_t c;
    const cm_amqp_msg_t *m;

    cm_amqp_content_init(&c, 5);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 0, "empty")), CM_CONTENT_READY);
    m = cm_amqp_content_message(&c);
    assert_int_equal(m->message.body.len, 0);
    assert_false(m->oversized);
    assert_props(m, "empty");

    assert_int_equal(feed(&c, deliver(1, 2)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 5, "at-cap")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "12345")), CM_CONTENT_READY);
    m = cm_amqp_content_message(&c);
    assert_false(m->oversized);
    assert_bytes(m->message.body, "12345");
    cm_amqp_content_reset(&c);
}

static void test_returned_message(void **state) {
    cm_amqp_content_t c;
    const cm_amqp_msg_t *m;

    cm_amqp_content_init(&c, 64);
    memset(&buf.ret, 0, sizeof(buf.ret));
    assert_int_equal(feed(&c, method(1, AMQP_BASIC_RETURN_METHOD, &buf.ret)),
                     CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 2, "ret")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "10")), CM_CONTENT_READY);
    m = cm_amqp_content_message(&c);
    assert_int_equal(m->method, AMQP_BASIC_RETURN_METHOD);
    assert_int_equal(m->delivery_tag, 0);
    assert_bytes(m->message.body, "10");
    cm_amqp_content_reset(&c);
}

/* --- oversized ------------------------------------------------------------ */

static void test_oversized_surfaces_at_its_header(void **state) {
    cm_amqp_content_t c;
    const cm_amqp_msg_t *m;

    cm_amqp_content_init(&c, 4);
    assert_int_equal(feed(&c, deliver(1, 7)), CM_CONTENT_MORE);
    /* One byte over: handed out at once, with its properties. */
    assert_int_equal(feed(&c, header(1, 10, "big")), CM_CONTENT_READY);
    m = cm_amqp_content_message(&c);
    assert_true(m->oversized);
    assert_int_equal(m->body_size, 10);
    assert_int_equal(m->delivery_tag, 7);
    assert_null(m->message.body.bytes);
    assert_int_equal(m->message.body.len, 0);
    assert_props(m, "big");
    /* Its body is still due: dropped as it comes. */
    assert_true(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, body(1, "123456")), CM_CONTENT_MORE);
    assert_true(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, body(1, "7890")), CM_CONTENT_MORE);
    assert_false(cm_amqp_content_busy(&c));
    /* And the next message is read as usual. */
    assert_int_equal(feed(&c, deliver(1, 8)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 4, "small")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "1234")), CM_CONTENT_READY);
    m = cm_amqp_content_message(&c);
    assert_false(m->oversized);
    assert_bytes(m->message.body, "1234");
    assert_props(m, "small");
    cm_amqp_content_reset(&c);
}

static void test_huge_announced_size(void **state) {
    cm_amqp_content_t c;

    cm_amqp_content_init(&c, 4);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, UINT64_MAX, "huge")), CM_CONTENT_READY);
    assert_true(cm_amqp_content_message(&c)->oversized);
    assert_int_equal(feed(&c, body(1, "x")), CM_CONTENT_MORE);
    cm_amqp_content_reset(&c); /* the connection goes */
    assert_false(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, body(1, "x")), CM_CONTENT_BAD);
}

/* --- other frames --------------------------------------------------------- */

static void test_other_channels_pass_through(void **state) {
    cm_amqp_content_t c;
    amqp_frame_t hb;

    cm_amqp_content_init(&c, 64);
    memset(&hb, 0, sizeof(hb));
    hb.frame_type = AMQP_FRAME_HEARTBEAT;
    assert_int_equal(feed(&c, method(1, AMQP_BASIC_ACK_METHOD, &buf.ack)),
                     CM_CONTENT_OTHER);
    assert_int_equal(feed(&c, hb), CM_CONTENT_OTHER);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, method(2, AMQP_CHANNEL_CLOSE_METHOD, &buf.close)),
                     CM_CONTENT_OTHER);
    assert_int_equal(feed(&c, header(1, 3, "mid")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "ab")), CM_CONTENT_MORE);
    assert_int_equal(
        feed(&c, method(0, AMQP_CONNECTION_BLOCKED_METHOD, &buf.close)),
        CM_CONTENT_OTHER);
    assert_int_equal(feed(&c, hb), CM_CONTENT_OTHER);
    assert_int_equal(feed(&c, body(1, "c")), CM_CONTENT_READY);
    assert_bytes(cm_amqp_content_message(&c)->message.body, "abc");
    assert_props(cm_amqp_content_message(&c), "mid");
    cm_amqp_content_reset(&c);
}

static void test_channel_close_ends_its_content(void **state) {
    cm_amqp_content_t c;

    cm_amqp_content_init(&c, 64);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 3, "cut")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, body(1, "a")), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, method(1, AMQP_CHANNEL_CLOSE_METHOD, &buf.close)),
                     CM_CONTENT_OTHER);
    assert_false(cm_amqp_content_busy(&c));
    assert_int_equal(feed(&c, body(1, "bc")), CM_CONTENT_BAD);
    cm_amqp_content_reset(&c);

    /* The same while an oversized body is being dropped. */
    cm_amqp_content_init(&c, 1);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    assert_int_equal(feed(&c, header(1, 3, "cut")), CM_CONTENT_READY);
    assert_int_equal(feed(&c, method(1, AMQP_CHANNEL_CLOSE_METHOD, &buf.close)),
                     CM_CONTENT_OTHER);
    assert_false(cm_amqp_content_busy(&c));
    cm_amqp_content_reset(&c);
}

/* --- protocol violations -------------------------------------------------- */

/* Feeds deliver + header(size) on channel 1, then f: must be refused. */
static void assert_refused_after_start(uint64_t size, int with_body,
                                       amqp_frame_t f) {
    cm_amqp_content_t c;
    amqp_frame_t copy = f;
    int error = 0;

    cm_amqp_content_init(&c, 64);
    assert_int_equal(feed(&c, deliver(1, 1)), CM_CONTENT_MORE);
    if (size != UINT64_MAX) {
        feed(&c, header(1, size, "x"));
        if (with_body)
            assert_int_equal(feed(&c, body(1, "a")), CM_CONTENT_MORE);
    }
    assert_int_equal(cm_amqp_content_feed(&c, &copy, &error), CM_CONTENT_BAD);
    assert_int_equal(error, AMQP_STATUS_BAD_AMQP_DATA);
    cm_amqp_content_reset(&c);
}

static void test_violations(void **state) {
    cm_amqp_content_t c;
    amqp_frame_t f;
    int error = 0;

    /* Content without its method. */
    cm_amqp_content_init(&c, 64);
    f = header(1, 1, "x");
    assert_int_equal(cm_amqp_content_feed(&c, &f, &error), CM_CONTENT_BAD);
    f = body(1, "x");
    assert_int_equal(cm_amqp_content_feed(&c, &f, &error), CM_CONTENT_BAD);
    cm_amqp_content_reset(&c);

    /* After a method: a body before the header, a header on another
     * channel, one of another class, a method on the channel. */
    assert_refused_after_start(UINT64_MAX, 0, body(1, "x"));
    assert_refused_after_start(UINT64_MAX, 0, header(2, 1, "x"));
    f = header(1, 1, "x");
    f.payload.properties.class_id = AMQP_CHANNEL_CLASS;
    assert_refused_after_start(UINT64_MAX, 0, f);
    assert_refused_after_start(UINT64_MAX, 0,
                               method(1, AMQP_BASIC_ACK_METHOD, &buf.ack));
    /* In the body: more than announced, a second header, a body on
     * another channel, new content on this channel or another. */
    assert_refused_after_start(3, 1, body(1, "xyz"));
    assert_refused_after_start(3, 1, header(1, 3, "x"));
    assert_refused_after_start(3, 1, body(2, "x"));
    assert_refused_after_start(3, 1, deliver(1, 2));
    assert_refused_after_start(3, 1, deliver(2, 2));
    assert_refused_after_start(3, 1,
                               method(1, AMQP_BASIC_ACK_METHOD, &buf.ack));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_in_frames),
        cmocka_unit_test(test_empty_body_and_exactly_the_cap),
        cmocka_unit_test(test_returned_message),
        cmocka_unit_test(test_oversized_surfaces_at_its_header),
        cmocka_unit_test(test_huge_announced_size),
        cmocka_unit_test(test_other_channels_pass_through),
        cmocka_unit_test(test_channel_close_ends_its_content),
        cmocka_unit_test(test_violations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
