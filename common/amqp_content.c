/* amqp_content.c - a message from its frames, its body kept up to a cap. */
#include "amqp_content.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_IDLE,    /* between messages */
    ST_HEADER,  /* the method is in; its content header is due */
    ST_BODY,    /* keeping the body: got of size bytes are in */
    ST_DISCARD, /* dropping an oversized body: got of size bytes went by */
};

/* The properties' strings that are copied when their flag is set. */
static const struct {
    amqp_flags_t flag;
    size_t offset;
} string_props[] = {
    {AMQP_BASIC_CONTENT_TYPE_FLAG,
     offsetof(amqp_basic_properties_t, content_type)},
    {AMQP_BASIC_CONTENT_ENCODING_FLAG,
     offsetof(amqp_basic_properties_t, content_encoding)},
    {AMQP_BASIC_CORRELATION_ID_FLAG,
     offsetof(amqp_basic_properties_t, correlation_id)},
    {AMQP_BASIC_REPLY_TO_FLAG, offsetof(amqp_basic_properties_t, reply_to)},
    {AMQP_BASIC_EXPIRATION_FLAG, offsetof(amqp_basic_properties_t, expiration)},
    {AMQP_BASIC_MESSAGE_ID_FLAG, offsetof(amqp_basic_properties_t, message_id)},
    {AMQP_BASIC_TYPE_FLAG, offsetof(amqp_basic_properties_t, type)},
    {AMQP_BASIC_USER_ID_FLAG, offsetof(amqp_basic_properties_t, user_id)},
    {AMQP_BASIC_APP_ID_FLAG, offsetof(amqp_basic_properties_t, app_id)},
    {AMQP_BASIC_CLUSTER_ID_FLAG, offsetof(amqp_basic_properties_t, cluster_id)},
};

/* The pool keeps the properties of one message; 4 KiB pages suit them
 * (a bigger string gets a block of its own, freed on recycling). */
#define PROPS_PAGE 4096

/* Copies in's present properties into out, allocating from pool.  Returns
 * 0, or -1 when memory ran out. */
static int copy_props(amqp_pool_t *pool, const amqp_basic_properties_t *in,
                      amqp_basic_properties_t *out) {
    size_t i;

    memset(out, 0, sizeof(*out));
    out->_flags = in->_flags;
    for (i = 0; i < sizeof(string_props) / sizeof(string_props[0]); i++) {
        const amqp_bytes_t *from =
            (const amqp_bytes_t *)((const char *)in + string_props[i].offset);
        amqp_bytes_t *to =
            (amqp_bytes_t *)((char *)out + string_props[i].offset);

        if (!(in->_flags & string_props[i].flag) || from->len == 0)
            continue;
        amqp_pool_alloc_bytes(pool, from->len, to);
        if (to->bytes == NULL)
            return -1;
        memcpy(to->bytes, from->bytes, from->len);
    }
    if ((in->_flags & AMQP_BASIC_HEADERS_FLAG) &&
        amqp_table_clone(&in->headers, &out->headers, pool) != AMQP_STATUS_OK)
        return -1;
    out->delivery_mode = in->delivery_mode;
    out->priority = in->priority;
    out->timestamp = in->timestamp;
    return 0;
}

static cm_content_step_t bad(int *error, int status) {
    *error = status;
    return CM_CONTENT_BAD;
}

void cm_amqp_content_init(cm_amqp_content_t *c, size_t cap) {
    memset(c, 0, sizeof(*c));
    c->cap = cap;
    c->state = ST_IDLE;
}

void cm_amqp_content_release(cm_amqp_content_t *c) {
    if (!c->surfaced)
        return;
    free(c->msg.message.body.bytes);
    memset(&c->msg, 0, sizeof(c->msg));
    recycle_amqp_pool(&c->pool);
    c->surfaced = 0;
}

/* Abandons the message being put together (not handed out yet, or an
 * oversized one whose body is still being dropped). */
static void drop(cm_amqp_content_t *c) {
    if (c->state == ST_BODY || c->state == ST_HEADER) {
        free(c->msg.message.body.bytes);
        memset(&c->msg, 0, sizeof(c->msg));
        recycle_amqp_pool(&c->pool);
    }
    c->state = ST_IDLE;
}

void cm_amqp_content_reset(cm_amqp_content_t *c) {
    cm_amqp_content_release(c);
    drop(c);
    if (c->pool_ready)
        empty_amqp_pool(&c->pool);
    c->pool_ready = 0;
}

const cm_amqp_msg_t *cm_amqp_content_message(const cm_amqp_content_t *c) {
    return &c->msg;
}

int cm_amqp_content_busy(const cm_amqp_content_t *c) {
    return c->state != ST_IDLE;
}

static cm_content_step_t surface(cm_amqp_content_t *c) {
    c->surfaced = 1;
    return CM_CONTENT_READY;
}

static cm_content_step_t on_method(cm_amqp_content_t *c, const amqp_frame_t *f,
                                   int *error) {
    amqp_method_number_t id = f->payload.method.id;
    int content =
        id == AMQP_BASIC_DELIVER_METHOD || id == AMQP_BASIC_RETURN_METHOD;

    if (c->state != ST_IDLE) {
        if (f->channel == c->channel && id == AMQP_CHANNEL_CLOSE_METHOD) {
            drop(c); /* the channel ends, and its content with it */
            return CM_CONTENT_OTHER;
        }
        /* A method inside content, or content on two channels at once
         * (RabbitMQ writes a message's frames in one go: never). */
        if (f->channel == c->channel || content)
            return bad(error, AMQP_STATUS_BAD_AMQP_DATA);
        return CM_CONTENT_OTHER;
    }
    if (!content)
        return CM_CONTENT_OTHER;
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.channel = f->channel;
    c->msg.method = id;
    if (id == AMQP_BASIC_DELIVER_METHOD) {
        const amqp_basic_deliver_t *d = f->payload.method.decoded;

        c->msg.delivery_tag = d->delivery_tag;
        c->msg.redelivered = d->redelivered;
    }
    c->channel = f->channel;
    c->state = ST_HEADER;
    return CM_CONTENT_MORE;
}

static cm_content_step_t on_header(cm_amqp_content_t *c, const amqp_frame_t *f,
                                   int *error) {
    uint64_t size = f->payload.properties.body_size;

    if (c->state != ST_HEADER || f->channel != c->channel ||
        f->payload.properties.class_id != AMQP_BASIC_CLASS)
        return bad(error, AMQP_STATUS_BAD_AMQP_DATA);
    if (!c->pool_ready) {
        init_amqp_pool(&c->pool, PROPS_PAGE);
        c->pool_ready = 1;
    }
    if (copy_props(&c->pool, f->payload.properties.decoded,
                   &c->msg.message.properties) != 0) {
        drop(c);
        return bad(error, AMQP_STATUS_NO_MEMORY);
    }
    c->msg.body_size = size;
    c->size = size;
    c->got = 0;
    if (size > c->cap) { /* handed out now; the body is dropped as it comes */
        c->msg.oversized = 1;
        c->state = ST_DISCARD;
        return surface(c);
    }
    c->state = ST_IDLE;
    if (size == 0)
        return surface(c);
    c->msg.message.body.bytes = malloc((size_t)size);
    if (c->msg.message.body.bytes == NULL) {
        drop(c);
        return bad(error, AMQP_STATUS_NO_MEMORY);
    }
    c->msg.message.body.len = (size_t)size;
    c->state = ST_BODY;
    return CM_CONTENT_MORE;
}

static cm_content_step_t on_body(cm_amqp_content_t *c, const amqp_frame_t *f,
                                 int *error) {
    const amqp_bytes_t *part = &f->payload.body_fragment;

    if ((c->state != ST_BODY && c->state != ST_DISCARD) ||
        f->channel != c->channel || part->len > c->size - c->got)
        return bad(error, AMQP_STATUS_BAD_AMQP_DATA);
    if (c->state == ST_BODY && part->len > 0)
        memcpy((char *)c->msg.message.body.bytes + c->got, part->bytes,
               part->len);
    c->got += part->len;
    if (c->got < c->size)
        return CM_CONTENT_MORE;
    if (c->state == ST_DISCARD) { /* handed out at its header already */
        c->state = ST_IDLE;
        return CM_CONTENT_MORE;
    }
    c->state = ST_IDLE;
    return surface(c);
}

cm_content_step_t cm_amqp_content_feed(cm_amqp_content_t *c,
                                       const amqp_frame_t *f, int *error) {
    *error = 0;
    cm_amqp_content_release(c);
    switch (f->frame_type) {
    case AMQP_FRAME_METHOD:
        return on_method(c, f, error);
    case AMQP_FRAME_HEADER:
        return on_header(c, f, error);
    case AMQP_FRAME_BODY:
        return on_body(c, f, error);
    default: /* heartbeats and the like */
        return CM_CONTENT_OTHER;
    }
}
