/* publisher.c - request messages, their frames, and their writing.
 *
 * rabbitmq-c writes every frame with its own send(), three per publish.  On
 * plain TCP we encode the frames ourselves, with rabbitmq-c's own encoders,
 * into one buffer and write a whole batch with one send(); over TLS we
 * leave the writing to rabbitmq-c.
 *
 * Invariant: the batch buffer is empty whenever rabbitmq-c writes to the
 * connection.  rabbitmq-c writes in its own calls (heartbeats inside a
 * read, methods, publishing over TLS); a batch still in our buffer at that
 * moment would be sent after frames that came later.  The AMQP thread
 * flushes before it calls rabbitmq-c (link.c asserts it), and a failed
 * flush drops the connection, batch and all. */
#include "publisher.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fibrpc.h"
#include "log.h"

/* The batch buffer: a fib publish is under 1 KiB (a queue name is at most
 * 255 bytes, a correlation id 36), so this holds a good batch; a larger
 * message grows it for as long as it takes to write it. */
#define OUT_SIZE (64 * 1024)
/* How long the broker gets to make room in the socket before we call it
 * stalled (rabbitmq-c would wait forever). */
#define STALL_GRACE_MS 100

struct gw_publisher {
    amqp_connection_state_t conn; /* NULL while detached */
    uint16_t channel;
    int tls;
    uint32_t frame_max;
    uint64_t tag; /* delivery tag of the last publish */
    uint8_t *out; /* encoded, not yet written (plain TCP) */
    size_t out_len, out_cap;
};

/* --- the message --------------------------------------------------------- */

static amqp_table_entry_t utf8_entry(const char *name, const char *v,
                                     size_t len) {
    return (amqp_table_entry_t){
        amqp_cstring_bytes(name),
        {AMQP_FIELD_KIND_UTF8, {.bytes = {len, (void *)(uintptr_t)v}}}};
}

void gw_request_props(const gw_request_msg_t *m, gw_request_props_t *out) {
    amqp_basic_properties_t *p = &out->props;
    amqp_table_entry_t *h = out->headers;
    int n = 0;
    size_t i;

    memset(p, 0, sizeof(*p));
    h[n++] =
        utf8_entry(FIBRPC_HDR_REQUEST_ID, m->request_id, strlen(m->request_id));
    if (!m->publish)
        h[n++] = (amqp_table_entry_t){
            amqp_cstring_bytes(FIBRPC_HDR_DEADLINE_MS),
            {AMQP_FIELD_KIND_I64, {.i64 = m->deadline_wall_ms}}};
    if (m->traceparent != NULL && m->traceparent[0] != '\0')
        h[n++] = utf8_entry(FIBRPC_HDR_TRACEPARENT, m->traceparent,
                            strlen(m->traceparent));
    if (m->raw)
        for (i = 0; i < m->nheaders && n < GW_MSG_HEADERS_MAX; i++)
            h[n++] = utf8_entry(m->headers[i].name, m->headers[i].value,
                                m->headers[i].len);
    p->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
                AMQP_BASIC_HEADERS_FLAG;
    if (!m->raw) {
        p->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        p->content_type = amqp_cstring_bytes(FIBRPC_REQUEST_CONTENT_TYPE);
    } else {
        if (m->content_type != NULL) {
            p->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
            p->content_type = amqp_cstring_bytes(m->content_type);
        }
        if (m->content_encoding != NULL) {
            p->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
            p->content_encoding = amqp_cstring_bytes(m->content_encoding);
        }
    }
    p->correlation_id = amqp_cstring_bytes(m->correlation_id);
    if (m->publish) {
        /* Nobody waits for it: it must outlive a broker restart. */
        p->delivery_mode = 2;
    } else {
        /* Worthless after its deadline: transient, and expiring then. */
        p->_flags |= AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_EXPIRATION_FLAG;
        p->delivery_mode = 1;
        p->reply_to = amqp_cstring_bytes(GW_REPLY_TO);
        snprintf(out->expiration, sizeof(out->expiration), "%" PRId64,
                 m->ttl_ms > 0 ? m->ttl_ms : 0);
        p->expiration = amqp_cstring_bytes(out->expiration);
    }
    p->headers = (amqp_table_t){n, h};
}

/* --- frames -------------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int bytes) {
    while (bytes-- > 0) {
        p[bytes] = (uint8_t)v;
        v >>= 8;
    }
}

/* Completes the frame at f whose payload (len bytes) is at f + 7.
 * Returns the frame's whole length. */
static size_t frame_close(uint8_t *f, uint8_t type, uint16_t channel,
                          size_t len) {
    f[0] = type;
    put_be(f + 1, channel, 2);
    put_be(f + 3, len, 4);
    f[7 + len] = AMQP_FRAME_END;
    return 7 + len + 1;
}

/* Body bytes one frame carries: frame_max less 8 bytes of framing. */
static size_t body_per_frame(uint32_t frame_max) {
    return frame_max > 4096 ? frame_max - 8 : 4096 - 8;
}

size_t gw_publish_room(size_t body_len, uint32_t frame_max, size_t header_max) {
    size_t per = body_per_frame(frame_max);

    /* method (with exchange and routing key: at most 2 x 256 + 16) and
     * header frames, then the body frames */
    return 8 + 4 + 528 + 8 + 12 + header_max + body_len +
           8 * (body_len / per + 1);
}

long gw_publish_encode(uint8_t *buf, size_t room, uint16_t channel,
                       uint32_t frame_max, amqp_bytes_t exchange,
                       amqp_bytes_t routing_key,
                       const amqp_basic_properties_t *props,
                       amqp_bytes_t body) {
    size_t per = body_per_frame(frame_max), off = 0, sent, nframes;
    amqp_basic_publish_t m;
    uint8_t *pl;
    int n;

    nframes = body.len == 0 ? 0 : (body.len + per - 1) / per;
    /* 8 bytes of framing per frame, 4 + 12 bytes of payload prefixes */
    if (room < (2 + nframes) * 8 + 16 + body.len)
        return -1;
    memset(&m, 0, sizeof(m));
    m.exchange = exchange;
    m.routing_key = routing_key;
    m.mandatory = 1; /* a missing queue comes back as basic.return at once */
    pl = buf + 7;
    put_be(pl, AMQP_BASIC_PUBLISH_METHOD, 4);
    n = amqp_encode_method(
        AMQP_BASIC_PUBLISH_METHOD, &m,
        (amqp_bytes_t){room - (2 + nframes) * 8 - 16 - body.len, pl + 4});
    if (n < 0)
        return -1;
    off += frame_close(buf, AMQP_FRAME_METHOD, channel, (size_t)n + 4);

    pl = buf + off + 7;
    put_be(pl, AMQP_BASIC_CLASS, 2);
    put_be(pl + 2, 0, 2); /* weight */
    put_be(pl + 4, body.len, 8);
    n = amqp_encode_properties(
        AMQP_BASIC_CLASS, (void *)(uintptr_t)props,
        (amqp_bytes_t){room - off - (1 + nframes) * 8 - 12 - body.len,
                       pl + 12});
    if (n < 0)
        return -1;
    off += frame_close(buf + off, AMQP_FRAME_HEADER, channel, (size_t)n + 12);

    for (sent = 0; sent < body.len; sent += per) {
        size_t len = body.len - sent < per ? body.len - sent : per;

        memcpy(buf + off + 7, (const uint8_t *)body.bytes + sent, len);
        off += frame_close(buf + off, AMQP_FRAME_BODY, channel, len);
    }
    return (long)off;
}

/* --- the publisher ------------------------------------------------------- */

gw_publisher_t *gw_publisher_new(void) {
    gw_publisher_t *pub = calloc(1, sizeof(*pub));

    if (pub == NULL)
        return NULL;
    pub->out = malloc(OUT_SIZE);
    if (pub->out == NULL) {
        free(pub);
        return NULL;
    }
    pub->out_cap = OUT_SIZE;
    return pub;
}

void gw_publisher_free(gw_publisher_t *pub) {
    if (pub == NULL)
        return;
    free(pub->out);
    free(pub);
}

void gw_publisher_attach(gw_publisher_t *pub, amqp_connection_state_t conn,
                         uint16_t channel, int tls) {
    pub->conn = conn;
    pub->channel = channel;
    pub->tls = tls;
    pub->frame_max = (uint32_t)amqp_get_frame_max(conn);
    pub->tag = 0;
    pub->out_len = 0;
}

void gw_publisher_detach(gw_publisher_t *pub) {
    pub->conn = NULL;
    pub->out_len = 0;
}

uint64_t gw_publisher_tag(const gw_publisher_t *pub) {
    return pub->tag;
}

size_t gw_publisher_batched(const gw_publisher_t *pub) {
    return pub->out_len;
}

int gw_publisher_flush(gw_publisher_t *pub) {
    int fd = amqp_get_sockfd(pub->conn);
    size_t off = 0;

    while (off < pub->out_len) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        ssize_t n = send(fd, pub->out + off, pub->out_len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            poll(&pfd, 1, STALL_GRACE_MS) == 1)
            continue;
        {
            cm_log_t l;

            cm_log_begin(&l, CM_LOG_WARN, "amqp_write_failed");
            cm_log_kv(&l, "error", "%s",
                      n < 0 ? strerror(errno) : "the broker stopped reading");
            cm_log_end(&l);
        }
        pub->out_len = 0;
        return -1;
    }
    pub->out_len = 0;
    if (pub->out_cap > 4 * OUT_SIZE) { /* a large message went out */
        uint8_t *small = realloc(pub->out, OUT_SIZE);

        if (small != NULL) {
            pub->out = small;
            pub->out_cap = OUT_SIZE;
        }
    }
    return 0;
}

/* Room for the properties' encoding: ours, and each header's name and
 * value with its type and lengths. */
static size_t header_room(const gw_request_msg_t *m) {
    size_t room = 1024, i;

    if (m->raw)
        for (i = 0; i < m->nheaders; i++)
            room += strlen(m->headers[i].name) + m->headers[i].len + 8;
    return room;
}

int gw_publisher_send(gw_publisher_t *pub, const gw_request_msg_t *m) {
    gw_request_props_t rp;
    amqp_bytes_t body = {m->body_len, (void *)(uintptr_t)m->body};
    amqp_bytes_t exchange = m->exchange != NULL
                                ? amqp_cstring_bytes(m->exchange)
                                : amqp_empty_bytes;
    size_t need;
    long n;

    gw_request_props(m, &rp);
    if (pub->tls) {
        assert(pub->out_len == 0);
        if (amqp_basic_publish(pub->conn, pub->channel, exchange,
                               amqp_cstring_bytes(m->routing_key), 1, 0,
                               &rp.props, body) != AMQP_STATUS_OK)
            return -1;
        pub->tag++;
        return 0;
    }
    need = gw_publish_room(body.len, pub->frame_max, header_room(m));
    if (pub->out_cap - pub->out_len < need && pub->out_len > 0 &&
        gw_publisher_flush(pub) != 0)
        return -1;
    if (pub->out_cap < need) {
        uint8_t *big = realloc(pub->out, need);

        if (big == NULL) {
            cm_log_msg(CM_LOG_WARN, "out_of_memory");
            return -1;
        }
        pub->out = big;
        pub->out_cap = need;
    }
    n = gw_publish_encode(pub->out + pub->out_len, pub->out_cap - pub->out_len,
                          pub->channel, pub->frame_max, exchange,
                          amqp_cstring_bytes(m->routing_key), &rp.props, body);
    if (n < 0) { /* nothing of it was written: the connection is fine */
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_encode_failed");
        cm_log_kv(&l, "body_bytes", "%zu", body.len);
        cm_log_end(&l);
        return -2;
    }
    pub->out_len += (size_t)n;
    pub->tag++;
    return 0;
}

int gw_publisher_stalled(gw_publisher_t *pub) {
    struct pollfd p = {amqp_get_sockfd(pub->conn), POLLOUT, 0};

    /* Linux says POLLOUT while at least a third of the send buffer is
     * free, so this returns at once unless the broker has left the queue
     * two thirds full: one system call per check, where reading the queue
     * (SIOCOUTQ) and the buffer size (SO_SNDBUF) took two every time. */
    return poll(&p, 1, STALL_GRACE_MS) != 1;
}
