/* delivery.c - a delivery's properties, headers and body to the request it
 * makes, and that request's outcome to the reply's properties and error body.
 * Pure (no I/O, no clock, no state): any thread may call it. */
#include "delivery.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The reply when even the error JSON cannot be made. */
static const char fw_oom_json[] =
    "{\"type\":\"internal\",\"message\":\"out of memory\"}";

const amqp_table_entry_t *fw_header(const amqp_basic_properties_t *p,
                                    const char *name) {
    size_t len = strlen(name);
    int i;

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    for (i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];

        if (e->key.len == len && memcmp(e->key.bytes, name, len) == 0)
            return e;
    }
    return NULL;
}

int fw_field_int64(const amqp_field_value_t *v, int64_t *out) {
    const char *s;
    size_t i, len;
    int64_t x = 0;

    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        *out = v->value.i8;
        return 0;
    case AMQP_FIELD_KIND_U8:
        *out = v->value.u8;
        return 0;
    case AMQP_FIELD_KIND_I16:
        *out = v->value.i16;
        return 0;
    case AMQP_FIELD_KIND_U16:
        *out = v->value.u16;
        return 0;
    case AMQP_FIELD_KIND_I32:
        *out = v->value.i32;
        return 0;
    case AMQP_FIELD_KIND_U32:
        *out = v->value.u32;
        return 0;
    case AMQP_FIELD_KIND_I64:
        *out = v->value.i64;
        return 0;
    case AMQP_FIELD_KIND_U64:
        *out = v->value.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->value.u64;
        return 0;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        s = v->value.bytes.bytes;
        len = v->value.bytes.len;
        /* 18 digits cannot overflow an int64. */
        if (len == 0 || len > 18)
            return -1;
        for (i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -1;
            x = x * 10 + (s[i] - '0');
        }
        *out = x;
        return 0;
    default:
        return -1;
    }
}

void fw_delivery_read(fw_delivery_t *d, const amqp_message_t *msg,
                      uint64_t body_size) {
    d->props = &msg->properties;
    d->body = msg->body;
    d->body_size = body_size;
    d->request_id = fw_header(d->props, FIBRPC_HDR_REQUEST_ID);
    d->traceparent = fw_header(d->props, FIBRPC_HDR_TRACEPARENT);
    d->deadline = fw_header(d->props, FIBRPC_HDR_DEADLINE_MS);
    d->delivery_count = fw_header(d->props, FW_HDR_DELIVERY_COUNT);
}

int64_t fw_delivery_count(const fw_delivery_t *d) {
    int64_t n;

    if (d->delivery_count == NULL ||
        fw_field_int64(&d->delivery_count->value, &n) != 0 || n < 0)
        return 0;
    return n;
}

int fw_delivery_poisoned(const fw_delivery_t *d, uint32_t limit,
                         fw_request_t *req) {
    int64_t before = fw_delivery_count(d);

    if (limit == 0 || before < (int64_t)limit - 1)
        return 0;
    req->err = FW_ERR_worker_crashed;
    req->n = 0;
    snprintf(req->message, sizeof(req->message),
             "delivered %lld times before without an answer: workers crashed "
             "on it",
             (long long)before);
    return 1;
}

int fw_delivery_has_reply_to(const fw_delivery_t *d) {
    return (d->props->_flags & AMQP_BASIC_REPLY_TO_FLAG) &&
           d->props->reply_to.len > 0;
}

void fw_delivery_request(const fw_delivery_t *d, uint32_t max_n, int64_t now_ms,
                         fw_request_t *req) {
    int64_t deadline_ms;

    if (d->deadline != NULL &&
        fw_field_int64(&d->deadline->value, &deadline_ms) == 0 &&
        now_ms >= deadline_ms) {
        req->err = FW_ERR_expired;
        req->n = 0;
        snprintf(req->message, sizeof(req->message),
                 "the deadline passed before the work started");
        return;
    }
    if (d->body_size > FIBRPC_MAX_REQUEST_BYTES) /* refused on its size */
        fw_request_parse(
            NULL, d->body_size > SIZE_MAX ? SIZE_MAX : (size_t)d->body_size,
            max_n, req);
    else
        fw_request_parse(d->body.bytes, d->body.len, max_n, req);
}

void fw_delivery_error_body(fw_request_t *req, char **text,
                            amqp_bytes_t *body) {
    *text = fw_error_json(req->err, req->message, &body->len);
    if (*text != NULL) {
        body->bytes = *text;
        return;
    }
    /* What goes on the wire is an internal error. */
    req->err = FW_ERR_internal;
    snprintf(req->message, sizeof(req->message),
             "out of memory writing the reply");
    body->bytes = (void *)fw_oom_json;
    body->len = sizeof(fw_oom_json) - 1;
}

void fw_delivery_reply_props(const fw_delivery_t *d, fw_err_t err,
                             amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX],
                             amqp_basic_properties_t *out) {
    const amqp_basic_properties_t *in = d->props;

    memset(out, 0, sizeof(*out));
    out->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG;
    out->content_type = amqp_cstring_bytes(
        err == FW_OK ? FIBRPC_REPLY_CONTENT_TYPE : FIBRPC_ERROR_CONTENT_TYPE);
    if (in->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        out->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        out->correlation_id = in->correlation_id;
    }
    out->headers.entries = headers;
    if (d->request_id != NULL)
        headers[out->headers.num_entries++] = *d->request_id;
    if (d->traceparent != NULL)
        headers[out->headers.num_entries++] = *d->traceparent;
    if (out->headers.num_entries > 0)
        out->_flags |= AMQP_BASIC_HEADERS_FLAG;
}
