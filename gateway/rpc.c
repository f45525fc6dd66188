/* rpc.c - the AMQP thread: the only code that touches the RabbitMQ
 * connection (rabbitmq-c connections are not thread-safe).
 *
 * Channel 1 consumes direct reply-to and publishes every request (direct
 * reply-to requires both on one channel).  Channel 2 only runs the periodic
 * passive queue.declare that tells whether anyone consumes the queue, so a
 * missing queue (which closes the channel) never disturbs channel 1.
 * Other threads talk to this one through gw_rpc_admit (atomics only) and
 * gw_rpc_submit (a locked list plus an eventfd wake-up). */
#include "rpc.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "fibrpc.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "pending.h"
#include "reply.h"

#define CH_RPC             1
#define CH_CHECK           2
#define REPLY_TO           "amq.rabbitmq.reply-to"
#define CONNECT_TIMEOUT_MS 2000
#define RPC_TIMEOUT_MS     2000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000
/* How often the consumer count is refreshed: often while nobody consumes
 * (so a worker that appears is noticed at once), rarely otherwise. */
#define CHECK_IDLE_MS   1000
#define CHECK_NOBODY_MS 100
/* The send queue is checked every STALL_CHECK_EVERY publishes (~250 bytes
 * each, far less than any socket buffer). */
#define STALL_CHECK_EVERY 16
#define STALL_GRACE_MS    100
/* Publishes are encoded into one buffer and written with one send() per
 * batch; it is flushed when less than OUT_ROOM is left (one publish is
 * under 1 KiB: a queue name is at most 255 bytes). */
#define OUT_SIZE (64 * 1024)
#define OUT_ROOM 4096
/* Frames read per loop turn before new submissions get a look in. */
#define READ_BATCH 512

enum { LINK_DOWN, LINK_UP };

/* The consumer check on CH_CHECK runs asynchronously once connected: the
 * AMQP thread never waits for the broker in steady state. */
enum {
    CHECK_CLOSED,  /* CH_CHECK is not open */
    CHECK_OPENING, /* channel.open sent */
    CHECK_IDLE,    /* open; next check at next_check_ms */
    CHECK_WAITING, /* queue.declare (passive) sent */
};

struct gw_rpc {
    const gw_config_t *cfg;
    gw_rpc_done_fn done;
    gw_metrics_t *metrics;
    pthread_t thread;
    int started;
    int wake_fd;

    /* shared with other threads */
    pthread_mutex_t lock;
    gw_call_t *submitted; /* LIFO; guarded by lock */
    atomic_int link;      /* LINK_DOWN / LINK_UP */
    atomic_int consumers; /* of the request queue; -1 unknown */
    atomic_int blocked;   /* the broker blocked publishers */
    atomic_int draining;
    atomic_uint inflight; /* admitted and not yet done */

    /* AMQP thread only */
    amqp_connection_state_t conn;
    struct amqp_connection_info url;
    char *url_buf;
    int check;             /* CHECK_* state of channel CH_CHECK */
    int64_t next_check_ms; /* INT64_MAX while a check is under way */
    unsigned backoff_ms;
    gw_pending_t *pending;
    gw_idgen_t ids;
    int ever_connected;
    uint8_t *out; /* publishes encoded, not yet written (plain TCP) */
    size_t out_len;
};

/* --- helpers ------------------------------------------------------------- */

static const char *reply_error(amqp_rpc_reply_t r, char *buf, size_t size) {
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return "ok";
    case AMQP_RESPONSE_NONE:
        return "missing reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            snprintf(buf, size, "connection closed by broker: %u %.*s",
                     m->reply_code, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            snprintf(buf, size, "channel closed by broker: %u %.*s",
                     m->reply_code, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else {
            snprintf(buf, size, "broker error, method 0x%08x", r.reply.id);
        }
        return buf;
    }
    return "unknown";
}

static void complete(gw_rpc_t *rpc, gw_call_t *call, gw_err_t err,
                     const char *detail) {
    call->err = err;
    if (detail != NULL)
        snprintf(call->detail, sizeof(call->detail), "%s", detail);
    rpc->done(call); /* the call is not ours any more */
    atomic_fetch_sub(&rpc->inflight, 1);
}

static gw_call_t *take_submitted(gw_rpc_t *rpc) {
    gw_call_t *list, *fifo = NULL;

    pthread_mutex_lock(&rpc->lock);
    list = rpc->submitted;
    rpc->submitted = NULL;
    pthread_mutex_unlock(&rpc->lock);
    while (list != NULL) { /* reverse: answer in arrival order */
        gw_call_t *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    return fifo;
}

static void fail_all(gw_rpc_t *rpc, gw_err_t err, const char *detail) {
    gw_call_t *call, *next;

    while ((call = gw_pending_take_any(rpc->pending)) != NULL)
        complete(rpc, call, err, detail);
    for (call = take_submitted(rpc); call != NULL; call = next) {
        next = call->next;
        complete(rpc, call, err, detail);
    }
}

/* --- connection ---------------------------------------------------------- */

static void link_down(gw_rpc_t *rpc, gw_err_t err, const char *why,
                      int polite) {
    rpc->out_len = 0; /* never half a batch on the next connection */
    if (rpc->conn != NULL) {
        if (polite)
            amqp_connection_close(rpc->conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(rpc->conn);
        rpc->conn = NULL;
    }
    if (atomic_exchange(&rpc->link, LINK_DOWN) == LINK_UP)
        gw_log(polite ? GW_LOG_INFO : GW_LOG_WARN,
               "amqp_disconnected reason=\"%s\" failed_calls=%zu", why,
               gw_pending_count(rpc->pending));
    atomic_store(&rpc->consumers, -1);
    atomic_store(&rpc->blocked, 0);
    fail_all(rpc, err, why);
}

static int check_ok(gw_rpc_t *rpc, const char *what) {
    char buf[256];
    amqp_rpc_reply_t r = amqp_get_rpc_reply(rpc->conn);

    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    gw_log(GW_LOG_WARN, "amqp_error op=%s error=\"%s\"", what,
           reply_error(r, buf, sizeof(buf)));
    return -1;
}

static void set_consumers(gw_rpc_t *rpc, int consumers) {
    if (atomic_exchange(&rpc->consumers, consumers) != consumers)
        gw_log(GW_LOG_INFO, "queue_consumers queue=%s consumers=%d",
               rpc->cfg->queue, consumers);
    rpc->next_check_ms =
        gw_now_ms() + (consumers > 0 ? CHECK_IDLE_MS : CHECK_NOBODY_MS);
}

/* A missing queue makes the broker close CH_CHECK (404): nobody consumes. */
static int check_closed(gw_rpc_t *rpc) {
    amqp_channel_close_ok_t close_ok = {0};

    rpc->check = CHECK_CLOSED;
    set_consumers(rpc, 0);
    return amqp_send_method(rpc->conn, CH_CHECK, AMQP_CHANNEL_CLOSE_OK_METHOD,
                            &close_ok) == AMQP_STATUS_OK
               ? 0
               : -1;
}

/* The first consumer count, synchronously, while connecting.  Returns -1
 * when the connection failed. */
static int check_queue_now(gw_rpc_t *rpc) {
    amqp_queue_declare_ok_t *ok;
    amqp_rpc_reply_t r;

    if (amqp_channel_open(rpc->conn, CH_CHECK) == NULL)
        return check_ok(rpc, "channel.open"), -1;
    rpc->check = CHECK_IDLE;
    ok = amqp_queue_declare(rpc->conn, CH_CHECK,
                            amqp_cstring_bytes(rpc->cfg->queue), 1, 0, 0, 0,
                            amqp_empty_table);
    if (ok != NULL) {
        set_consumers(rpc, (int)ok->consumer_count);
        return 0;
    }
    r = amqp_get_rpc_reply(rpc->conn);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
        return check_closed(rpc);
    return check_ok(rpc, "queue.declare"), -1;
}

/* Starts the next step of the consumer check without waiting; the answer
 * arrives in on_frame.  Returns -1 when the connection failed. */
static int check_queue_start(gw_rpc_t *rpc) {
    amqp_channel_open_t open = {amqp_empty_bytes};
    amqp_queue_declare_t declare = {0};
    int status;

    rpc->next_check_ms = INT64_MAX;
    if (rpc->check == CHECK_CLOSED) {
        rpc->check = CHECK_OPENING;
        status = amqp_send_method(rpc->conn, CH_CHECK, AMQP_CHANNEL_OPEN_METHOD,
                                  &open);
    } else {
        declare.queue = amqp_cstring_bytes(rpc->cfg->queue);
        declare.passive = 1;
        declare.arguments = amqp_empty_table;
        rpc->check = CHECK_WAITING;
        status = amqp_send_method(rpc->conn, CH_CHECK,
                                  AMQP_QUEUE_DECLARE_METHOD, &declare);
    }
    return status == AMQP_STATUS_OK ? 0 : -1;
}

static int link_up(gw_rpc_t *rpc) {
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000,
                         (CONNECT_TIMEOUT_MS % 1000) * 1000};
    struct timeval rpc_tv = {RPC_TIMEOUT_MS / 1000,
                             (RPC_TIMEOUT_MS % 1000) * 1000};
    amqp_table_entry_t caps[2], props[2];
    amqp_table_t props_table;
    amqp_socket_t *sock;
    amqp_rpc_reply_t r;
    char buf[256];
    int status;

    rpc->conn = amqp_new_connection();
    if (rpc->conn == NULL)
        return -1;
    sock = rpc->url.ssl ? amqp_ssl_socket_new(rpc->conn)
                        : amqp_tcp_socket_new(rpc->conn);
    if (sock == NULL)
        goto fail;
    if (rpc->url.ssl && amqp_ssl_socket_set_cacert(
                            sock, rpc->cfg->amqp_cacert) != AMQP_STATUS_OK)
        gw_log(GW_LOG_WARN, "amqp_cacert_unreadable path=%s",
               rpc->cfg->amqp_cacert);
    status = amqp_socket_open_noblock(sock, rpc->url.host, rpc->url.port, &tv);
    if (status != AMQP_STATUS_OK) {
        gw_log(GW_LOG_WARN, "amqp_connect_failed host=%s port=%d error=\"%s\"",
               rpc->url.host, rpc->url.port, amqp_error_string2(status));
        goto fail;
    }
    amqp_set_handshake_timeout(rpc->conn, &tv);
    amqp_set_rpc_timeout(rpc->conn, &rpc_tv);

    /* Ask for connection.blocked so a broker alarm turns into fast 503s
     * instead of publishes that hang. */
    caps[0] = (amqp_table_entry_t){amqp_cstring_bytes("connection.blocked"),
                                   {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}};
    caps[1] = (amqp_table_entry_t){amqp_cstring_bytes("consumer_cancel_notify"),
                                   {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}};
    props[0] =
        (amqp_table_entry_t){amqp_cstring_bytes("capabilities"),
                             {AMQP_FIELD_KIND_TABLE, {.table = {2, caps}}}};
    props[1] = (amqp_table_entry_t){
        amqp_cstring_bytes("connection_name"),
        {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("rpc-gateway")}}};
    props_table = (amqp_table_t){2, props};
    r = amqp_login_with_properties(
        rpc->conn, rpc->url.vhost, 0, AMQP_DEFAULT_FRAME_SIZE,
        (int)rpc->cfg->heartbeat_s, &props_table, AMQP_SASL_METHOD_PLAIN,
        rpc->url.user, rpc->url.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        gw_log(GW_LOG_WARN, "amqp_login_failed host=%s port=%d error=\"%s\"",
               rpc->url.host, rpc->url.port, reply_error(r, buf, sizeof(buf)));
        goto fail;
    }
    if (amqp_channel_open(rpc->conn, CH_RPC) == NULL ||
        check_ok(rpc, "channel.open"))
        goto fail;
    /* Direct reply-to: consume before the first publish, no-ack. */
    if (amqp_basic_consume(rpc->conn, CH_RPC, amqp_cstring_bytes(REPLY_TO),
                           amqp_empty_bytes, 0, 1, 0,
                           amqp_empty_table) == NULL ||
        check_ok(rpc, "basic.consume"))
        goto fail;
    rpc->check = CHECK_CLOSED;
    /* The consumer count first, then admit calls: with the link up and the
     * count still unknown, a call to a queue nobody consumes would be
     * published and wait for its timeout instead of getting no_server. */
    if (check_queue_now(rpc) != 0)
        goto fail;
    atomic_store(&rpc->link, LINK_UP);
    gw_log(GW_LOG_INFO, "amqp_connected host=%s port=%d vhost=%s queue=%s",
           rpc->url.host, rpc->url.port, rpc->url.vhost, rpc->cfg->queue);
    rpc->backoff_ms = BACKOFF_MIN_MS;
    if (rpc->ever_connected)
        atomic_fetch_add_explicit(&rpc->metrics->reconnects, 1,
                                  memory_order_relaxed);
    rpc->ever_connected = 1;
    return 0;
fail:
    amqp_destroy_connection(rpc->conn);
    rpc->conn = NULL;
    return -1;
}

/* --- calls --------------------------------------------------------------- */

/* --- publishing ----------------------------------------------------------
 * rabbitmq-c writes every frame with its own send(), three per publish.  On
 * plain TCP the gateway encodes the frames itself, with rabbitmq-c's own
 * encoders, into rpc->out and writes a whole batch with one send(); over
 * TLS it leaves the writing to rabbitmq-c. */

static void put_be(uint8_t *p, uint64_t v, int bytes) {
    while (bytes-- > 0) {
        p[bytes] = (uint8_t)v;
        v >>= 8;
    }
}

/* Completes a frame whose payload (len bytes) was written at the payload
 * position, rpc->out + rpc->out_len + 7, and appends it. */
static void frame_close(gw_rpc_t *rpc, uint8_t type, size_t len) {
    uint8_t *f = rpc->out + rpc->out_len;

    f[0] = type;
    put_be(f + 1, CH_RPC, 2);
    put_be(f + 3, len, 4);
    f[7 + len] = AMQP_FRAME_END;
    rpc->out_len += 7 + len + 1;
}

/* Encodes basic.publish, its content header and its body into rpc->out,
 * which has at least OUT_ROOM bytes free.  Returns 0, or -1 when an encoder
 * failed (nothing is appended then). */
static int encode_publish(gw_rpc_t *rpc, amqp_basic_properties_t *p,
                          amqp_bytes_t body) {
    amqp_basic_publish_t m;
    size_t start = rpc->out_len;
    uint8_t *pl;
    int n;

    memset(&m, 0, sizeof(m));
    m.routing_key = amqp_cstring_bytes(rpc->cfg->queue);
    m.mandatory = 1; /* a missing queue comes back as basic.return at once */
    pl = rpc->out + rpc->out_len + 7;
    put_be(pl, AMQP_BASIC_PUBLISH_METHOD, 4);
    n = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &m,
                           (amqp_bytes_t){OUT_ROOM / 2, pl + 4});
    if (n < 0)
        goto fail;
    frame_close(rpc, AMQP_FRAME_METHOD, (size_t)n + 4);

    pl = rpc->out + rpc->out_len + 7;
    put_be(pl, AMQP_BASIC_CLASS, 2);
    put_be(pl + 2, 0, 2); /* weight */
    put_be(pl + 4, body.len, 8);
    n = amqp_encode_properties(AMQP_BASIC_CLASS, p,
                               (amqp_bytes_t){OUT_ROOM / 4, pl + 12});
    if (n < 0)
        goto fail;
    frame_close(rpc, AMQP_FRAME_HEADER, (size_t)n + 12);

    memcpy(rpc->out + rpc->out_len + 7, body.bytes, body.len);
    frame_close(rpc, AMQP_FRAME_BODY, body.len);
    return 0;
fail:
    rpc->out_len = start;
    return -1;
}

/* Writes rpc->out.  Returns 0, or -1 when the socket failed or the broker
 * made no room within STALL_GRACE_MS: a batch cut mid-frame leaves the
 * connection unusable, so the caller drops it. */
static int flush_out(gw_rpc_t *rpc) {
    int fd = amqp_get_sockfd(rpc->conn);
    size_t off = 0;

    while (off < rpc->out_len) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        ssize_t n = send(fd, rpc->out + off, rpc->out_len - off,
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
        gw_log(GW_LOG_WARN, "amqp_write_failed error=\"%s\"",
               n < 0 ? strerror(errno) : "the broker stopped reading");
        rpc->out_len = 0;
        return -1;
    }
    rpc->out_len = 0;
    return 0;
}

/* Publishes call to the request queue: into rpc->out on plain TCP (written
 * by the caller's flush_out), straight through rabbitmq-c over TLS. */
static int publish(gw_rpc_t *rpc, gw_call_t *call, const uint8_t id[16],
                   int64_t now) {
    amqp_basic_properties_t p;
    amqp_table_entry_t hdr[3];
    char body[16], expiration[24];
    int64_t left = call->deadline_ms - now;

    gw_id_text(id, call->correlation_id);
    snprintf(body, sizeof(body), "%" PRIu32, call->n);
    snprintf(expiration, sizeof(expiration), "%" PRId64, left);
    hdr[0] =
        (amqp_table_entry_t){amqp_cstring_bytes(FIBRPC_HDR_REQUEST_ID),
                             {AMQP_FIELD_KIND_UTF8,
                              {.bytes = amqp_cstring_bytes(call->request_id)}}};
    hdr[1] = (amqp_table_entry_t){
        amqp_cstring_bytes(FIBRPC_HDR_DEADLINE_MS),
        {AMQP_FIELD_KIND_I64, {.i64 = gw_wall_ms() + left}}};
    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
               AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_HEADERS_FLAG;
    p.content_type = amqp_cstring_bytes(FIBRPC_REQUEST_CONTENT_TYPE);
    p.delivery_mode = 1; /* transient: worthless after its deadline anyway */
    p.correlation_id = amqp_cstring_bytes(call->correlation_id);
    p.reply_to = amqp_cstring_bytes(REPLY_TO);
    p.expiration = amqp_cstring_bytes(expiration);
    p.headers = (amqp_table_t){2, hdr};
    if (call->traceparent[0] != '\0') {
        hdr[p.headers.num_entries++] = (amqp_table_entry_t){
            amqp_cstring_bytes(FIBRPC_HDR_TRACEPARENT),
            {AMQP_FIELD_KIND_UTF8,
             {.bytes = amqp_cstring_bytes(call->traceparent)}}};
    }
    if (!rpc->url.ssl) {
        if (OUT_SIZE - rpc->out_len < OUT_ROOM && flush_out(rpc) != 0)
            return AMQP_STATUS_SOCKET_ERROR;
        return encode_publish(rpc, &p, amqp_cstring_bytes(body)) == 0
                   ? AMQP_STATUS_OK
                   : AMQP_STATUS_BAD_AMQP_DATA;
    }
    return amqp_basic_publish(rpc->conn, CH_RPC, amqp_empty_bytes,
                              amqp_cstring_bytes(rpc->cfg->queue), 1, 0, &p,
                              amqp_cstring_bytes(body));
}

/* Whether the broker has stopped reading.  rabbitmq-c publishes with no
 * deadline, so a publish into a full socket would hang this thread, and
 * with it every call; a broker under a resource alarm stops reading, with
 * or without a connection.blocked first.  When the send queue is over half
 * full, the broker gets STALL_GRACE_MS to make room before we call it
 * stalled; until then nothing is published. */
static int send_stalled(gw_rpc_t *rpc) {
    int fd = amqp_get_sockfd(rpc->conn), queued = 0, sndbuf = 0;
    socklen_t len = sizeof(sndbuf);
    struct pollfd p = {fd, POLLOUT, 0};

    if (ioctl(fd, SIOCOUTQ, &queued) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 ||
        queued < sndbuf / 2)
        return 0;
    return poll(&p, 1, STALL_GRACE_MS) != 1;
}

static void start_calls(gw_rpc_t *rpc) {
    gw_call_t *call, *next;
    int64_t now = gw_now_ms();
    uint8_t id[16];
    unsigned published = 0;
    int status;

    for (call = take_submitted(rpc); call != NULL; call = next) {
        next = call->next;
        if (rpc->conn == NULL) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "not connected to RabbitMQ");
            continue;
        }
        if (atomic_load(&rpc->blocked)) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "RabbitMQ is blocking publishers (resource alarm)");
            continue;
        }
        if (published++ % STALL_CHECK_EVERY == 0 && send_stalled(rpc)) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "RabbitMQ is not reading what we publish");
            published = 0; /* look again for the next call */
            continue;
        }
        if (call->deadline_ms <= now) {
            complete(rpc, call, GW_E_TIMEOUT, "timed out before publishing");
            continue;
        }
        gw_idgen_next(&rpc->ids, id);
        status = publish(rpc, call, id, now);
        if (status != AMQP_STATUS_OK) {
            gw_log(GW_LOG_WARN, "amqp_publish_failed error=\"%s\"",
                   amqp_error_string2(status));
            complete(rpc, call, GW_E_CONNECTION_LOST,
                     "lost the connection to RabbitMQ while publishing");
            /* the rest of the list goes back so link_down fails it too */
            pthread_mutex_lock(&rpc->lock);
            while (next != NULL) {
                gw_call_t *n = next->next;
                next->next = rpc->submitted;
                rpc->submitted = next;
                next = n;
            }
            pthread_mutex_unlock(&rpc->lock);
            link_down(rpc, GW_E_CONNECTION_LOST,
                      "lost the connection to RabbitMQ", 0);
            return;
        }
        if (gw_pending_add(rpc->pending, id, call->deadline_ms, call) != 0)
            complete(rpc, call, GW_E_OVERLOADED, "too many calls in flight");
    }
    if (rpc->conn != NULL && rpc->out_len > 0 && flush_out(rpc) != 0)
        link_down(rpc, GW_E_CONNECTION_LOST,
                  "lost the connection to RabbitMQ while publishing", 0);
}

static void expire_calls(gw_rpc_t *rpc) {
    int64_t now = gw_now_ms();
    gw_call_t *call;
    char detail[96];

    while ((call = gw_pending_take_expired(rpc->pending, now)) != NULL) {
        snprintf(detail, sizeof(detail), "no reply within %u ms",
                 call->timeout_ms);
        complete(rpc, call, GW_E_TIMEOUT, detail);
    }
}

/* The pending call a message's correlation id names, removed from the
 * table, or NULL (unknown, late, duplicate or malformed id). */
static gw_call_t *take_by_correlation(gw_rpc_t *rpc,
                                      const amqp_basic_properties_t *p) {
    uint8_t id[GW_ID_LEN];

    if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
        gw_id_parse(p->correlation_id.bytes, p->correlation_id.len, id) != 0)
        return NULL;
    return gw_pending_take(rpc->pending, id);
}

static void drop_reply(gw_rpc_t *rpc, const amqp_basic_properties_t *p,
                       const char *what) {
    uint64_t dropped = atomic_fetch_add_explicit(&rpc->metrics->replies_dropped,
                                                 1, memory_order_relaxed) +
                       1;
    int has_id = (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) != 0;

    gw_log(GW_LOG_INFO,
           "reply_dropped reason=%s corr=\"%.*s\" dropped=%" PRIu64, what,
           has_id
               ? (int)(p->correlation_id.len > 64 ? 64 : p->correlation_id.len)
               : 0,
           has_id ? (const char *)p->correlation_id.bytes : "", dropped);
}

static void on_reply(gw_rpc_t *rpc, const amqp_message_t *m) {
    const amqp_basic_properties_t *p = &m->properties;
    gw_call_t *call = take_by_correlation(rpc, p);
    gw_reply_t reply;

    if (call == NULL) {
        drop_reply(rpc, p, "unknown_correlation_id");
        return;
    }
    gw_reply_parse(
        (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) ? p->content_type.bytes
                                                   : NULL,
        (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) ? p->content_type.len : 0,
        m->body.bytes, m->body.len, &reply);
    if (reply.err == GW_E_OK) {
        call->body = malloc(reply.digits_len);
        if (call->body == NULL) {
            complete(rpc, call, GW_E_INTERNAL, "out of memory");
            return;
        }
        memcpy(call->body, reply.digits, reply.digits_len);
        call->body_len = reply.digits_len;
        complete(rpc, call, GW_E_OK, NULL);
        return;
    }
    snprintf(call->worker_type, sizeof(call->worker_type), "%s", reply.type);
    if (reply.err == GW_E_BAD_REPLY)
        gw_log(GW_LOG_WARN, "bad_reply corr=%s reason=\"%s\"",
               call->correlation_id, reply.message);
    complete(rpc, call, reply.err, reply.message);
}

static void on_return(gw_rpc_t *rpc, const amqp_message_t *m) {
    gw_call_t *call = take_by_correlation(rpc, &m->properties);
    char detail[320];

    if (call == NULL)
        return;
    snprintf(detail, sizeof(detail),
             "no queue named '%s': nobody serves these calls", rpc->cfg->queue);
    atomic_store(&rpc->consumers, 0);
    complete(rpc, call, GW_E_NO_SERVER, detail);
}

/* Handles a frame that is not a delivery.  Returns -1 when the connection
 * must be dropped. */
static int on_frame(gw_rpc_t *rpc, const amqp_frame_t *f) {
    amqp_message_t msg;
    amqp_rpc_reply_t r;
    char why[300];

    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0; /* stray content or heartbeat */
    switch (f->payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD:
        r = amqp_read_message(rpc->conn, f->channel, &msg, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            return -1;
        on_return(rpc, &msg);
        amqp_destroy_message(&msg);
        return 0;
    case AMQP_CONNECTION_BLOCKED_METHOD:
        atomic_store(&rpc->blocked, 1);
        gw_log(GW_LOG_WARN, "amqp_blocked");
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        atomic_store(&rpc->blocked, 0);
        gw_log(GW_LOG_INFO, "amqp_unblocked");
        return 0;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *m = f->payload.method.decoded;
        amqp_channel_close_ok_t ok = {0};

        if (f->channel == CH_CHECK) /* 404: the queue does not exist */
            return check_closed(rpc);
        snprintf(why, sizeof(why), "channel %u closed by broker: %u %.*s",
                 f->channel, m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        gw_log(GW_LOG_WARN, "amqp_channel_closed reason=\"%s\"", why);
        amqp_send_method(rpc->conn, f->channel, AMQP_CHANNEL_CLOSE_OK_METHOD,
                         &ok);
        return -1;
    }
    case AMQP_CHANNEL_OPEN_OK_METHOD:
        if (f->channel == CH_CHECK && rpc->check == CHECK_OPENING) {
            rpc->check = CHECK_IDLE;
            return check_queue_start(rpc);
        }
        return 0;
    case AMQP_QUEUE_DECLARE_OK_METHOD:
        if (f->channel == CH_CHECK && rpc->check == CHECK_WAITING) {
            amqp_queue_declare_ok_t *ok = f->payload.method.decoded;
            rpc->check = CHECK_IDLE;
            set_consumers(rpc, (int)ok->consumer_count);
        }
        return 0;
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(rpc->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return -1;
    }
    case AMQP_BASIC_CANCEL_METHOD:
        gw_log(GW_LOG_WARN, "amqp_reply_consumer_cancelled");
        return -1;
    default:
        return 0;
    }
}

/* Reads whatever the broker has sent, without blocking.  Returns -1 when
 * the connection failed. */
static int read_frames(gw_rpc_t *rpc) {
    struct timeval zero = {0, 0};
    amqp_envelope_t env;
    amqp_rpc_reply_t r;
    amqp_frame_t frame;
    int i;

    for (i = 0; i < READ_BATCH; i++) {
        amqp_maybe_release_buffers(rpc->conn);
        r = amqp_consume_message(rpc->conn, &env, &zero, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            on_reply(rpc, &env.message);
            amqp_destroy_envelope(&env);
            continue;
        }
        if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION)
            return -1;
        if (r.library_error == AMQP_STATUS_TIMEOUT)
            return 0;
        if (r.library_error != AMQP_STATUS_UNEXPECTED_STATE) {
            gw_log(GW_LOG_WARN, "amqp_read_failed error=\"%s\"",
                   amqp_error_string2(r.library_error));
            return -1;
        }
        /* A method other than basic.deliver is waiting: read it. */
        if (amqp_simple_wait_frame(rpc->conn, &frame) != AMQP_STATUS_OK ||
            on_frame(rpc, &frame) != 0)
            return -1;
    }
    return 0;
}

/* --- the thread ---------------------------------------------------------- */

static void wait_for(gw_rpc_t *rpc, int timeout_ms) {
    struct pollfd fds[2] = {{rpc->wake_fd, POLLIN, 0}, {-1, POLLIN, 0}};
    uint64_t v;

    if (rpc->conn != NULL) {
        if (amqp_frames_enqueued(rpc->conn) || amqp_data_in_buffer(rpc->conn))
            return;
        fds[1].fd = amqp_get_sockfd(rpc->conn);
    }
    if (poll(fds, 2, timeout_ms) > 0 && (fds[0].revents & POLLIN))
        (void)!read(rpc->wake_fd, &v, sizeof(v));
}

static int loop_timeout(gw_rpc_t *rpc) {
    int64_t now = gw_now_ms();
    int64_t until = gw_pending_next_deadline(rpc->pending);
    /* Wake at least every second so heartbeats are sent and checked. */
    int64_t t = 1000;

    if (rpc->next_check_ms < until)
        until = rpc->next_check_ms;
    if (until - now < t)
        t = until - now;
    return t < 0 ? 0 : (int)t;
}

static int idle(gw_rpc_t *rpc) {
    int empty;

    pthread_mutex_lock(&rpc->lock);
    empty = rpc->submitted == NULL;
    pthread_mutex_unlock(&rpc->lock);
    return empty && gw_pending_count(rpc->pending) == 0;
}

static void *rpc_main(void *arg) {
    gw_rpc_t *rpc = arg;

    for (;;) {
        if (rpc->conn == NULL) {
            fail_all(rpc, GW_E_BROKER_UNAVAILABLE, "not connected to RabbitMQ");
            if (atomic_load(&rpc->draining))
                break;
            if (link_up(rpc) != 0) {
                wait_for(rpc, (int)rpc->backoff_ms);
                rpc->backoff_ms *= 2;
                if (rpc->backoff_ms > BACKOFF_MAX_MS)
                    rpc->backoff_ms = BACKOFF_MAX_MS;
                continue;
            }
        }
        start_calls(rpc);
        if (rpc->conn == NULL)
            continue;
        if (read_frames(rpc) != 0) {
            link_down(rpc, GW_E_CONNECTION_LOST,
                      "lost the connection to RabbitMQ", 0);
            continue;
        }
        expire_calls(rpc);
        if (gw_now_ms() >= rpc->next_check_ms && check_queue_start(rpc) != 0) {
            link_down(rpc, GW_E_CONNECTION_LOST,
                      "lost the connection to RabbitMQ", 0);
            continue;
        }
        if (atomic_load(&rpc->draining) && idle(rpc))
            break;
        wait_for(rpc, loop_timeout(rpc));
    }
    link_down(rpc, GW_E_SHUTTING_DOWN, "gateway stopped", 1);
    return NULL;
}

/* --- public -------------------------------------------------------------- */

gw_rpc_t *gw_rpc_new(const gw_config_t *cfg, gw_metrics_t *metrics,
                     gw_rpc_done_fn done) {
    gw_rpc_t *rpc = calloc(1, sizeof(*rpc));

    if (rpc == NULL)
        return NULL;
    rpc->cfg = cfg;
    rpc->done = done;
    rpc->metrics = metrics;
    rpc->wake_fd = -1;
    rpc->backoff_ms = BACKOFF_MIN_MS;
    gw_idgen_init(&rpc->ids);
    atomic_init(&rpc->link, LINK_DOWN);
    atomic_init(&rpc->consumers, -1);
    atomic_init(&rpc->blocked, 0);
    atomic_init(&rpc->draining, 0);
    atomic_init(&rpc->inflight, 0);
    pthread_mutex_init(&rpc->lock, NULL);
    rpc->url_buf = strdup(cfg->amqp_url);
    rpc->pending = gw_pending_new(cfg->max_inflight);
    rpc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rpc->out = malloc(OUT_SIZE);
    if (rpc->url_buf == NULL || rpc->pending == NULL || rpc->wake_fd < 0 ||
        rpc->out == NULL) {
        gw_log(GW_LOG_ERROR, "rpc_init_failed error=\"%s\"", strerror(errno));
        goto fail;
    }
    amqp_default_connection_info(&rpc->url);
    if (amqp_parse_url(rpc->url_buf, &rpc->url) != AMQP_STATUS_OK) {
        gw_log(GW_LOG_ERROR, "bad_amqp_url (not shown: it may hold a "
                             "password)");
        goto fail;
    }
    /* "amqp://host/" names the empty vhost by the URI spec, but everyone
     * writing it means the default one. */
    if (rpc->url.vhost[0] == '\0')
        rpc->url.vhost = "/";
    return rpc;
fail:
    gw_rpc_free(rpc);
    return NULL;
}

int gw_rpc_start(gw_rpc_t *rpc) {
    int err = pthread_create(&rpc->thread, NULL, rpc_main, rpc);

    if (err != 0) {
        gw_log(GW_LOG_ERROR, "thread_create_failed error=\"%s\"",
               strerror(err));
        return -1;
    }
    rpc->started = 1;
    return 0;
}

gw_err_t gw_rpc_admit(gw_rpc_t *rpc) {
    if (atomic_load(&rpc->draining))
        return GW_E_SHUTTING_DOWN;
    if (atomic_load(&rpc->link) != LINK_UP || atomic_load(&rpc->blocked))
        return GW_E_BROKER_UNAVAILABLE;
    if (atomic_load(&rpc->consumers) == 0)
        return GW_E_NO_SERVER;
    if (atomic_fetch_add(&rpc->inflight, 1) >= rpc->cfg->max_inflight) {
        atomic_fetch_sub(&rpc->inflight, 1);
        return GW_E_OVERLOADED;
    }
    return GW_E_OK;
}

void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out) {
    out->connected = atomic_load(&rpc->link) == LINK_UP;
    out->blocked = atomic_load(&rpc->blocked);
    out->consumers = out->connected ? atomic_load(&rpc->consumers) : -1;
    out->inflight = atomic_load(&rpc->inflight);
    out->max_inflight = rpc->cfg->max_inflight;
}

void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call) {
    uint64_t one = 1;
    int was_empty;

    pthread_mutex_lock(&rpc->lock);
    was_empty = rpc->submitted == NULL;
    call->next = rpc->submitted;
    rpc->submitted = call;
    pthread_mutex_unlock(&rpc->lock);
    /* One wake-up per batch: the AMQP thread takes the whole list. */
    if (was_empty)
        (void)!write(rpc->wake_fd, &one, sizeof(one));
}

void gw_rpc_shutdown(gw_rpc_t *rpc) {
    uint64_t one = 1;

    atomic_store(&rpc->draining, 1);
    (void)!write(rpc->wake_fd, &one, sizeof(one));
    if (rpc->started) {
        pthread_join(rpc->thread, NULL);
        rpc->started = 0;
    }
}

void gw_rpc_free(gw_rpc_t *rpc) {
    if (rpc == NULL)
        return;
    if (rpc->started)
        gw_rpc_shutdown(rpc);
    if (rpc->wake_fd >= 0)
        close(rpc->wake_fd);
    gw_pending_free(rpc->pending);
    free(rpc->out);
    free(rpc->url_buf);
    pthread_mutex_destroy(&rpc->lock);
    free(rpc);
}
