/* link.c - fib-worker's one AMQP connection: connect (login, channels,
 * queue, prefetch, consume), wait for deliveries, publish replies, ack,
 * close; each amqp_rpc_reply_t becomes lk->err once, where it happens.  The
 * AMQP thread only.
 *
 * Channel 1 consumes and acks; channel 2 publishes the replies.  A reply
 * the broker cannot deliver (a direct reply-to address whose node died, or
 * a forged one) makes the broker close the channel it was published on, or
 * the whole connection (541): on its own channel it never takes the
 * consumer, nor the acks already sent, with it. */
#include "link.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "amqp_read.h"
#include "amqp_text.h"
#include "fibrpc.h"
#include "log.h"
#include "urls.h"

#define FW_CHANNEL           1
#define FW_REPLY_CHANNEL     2
#define FW_HEARTBEAT_S       30
#define FW_FRAME_MAX         131072
#define FW_CONNECT_TIMEOUT_S 2 /* per node: a dead one costs this much */
/* Bounds every synchronous AMQP call (login, declare, close...). */
#define FW_RPC_TIMEOUT_S 10

static void fw_fail(fw_link_t *lk, const char *what, const char *why) {
    snprintf(lk->err, sizeof(lk->err), "%s: %s", what, why);
}

/* Turns an amqp_rpc_reply_t into lk->err, once, where it happens; answers a
 * close from the broker with close-ok, as the protocol asks. */
static void fw_fail_reply(fw_link_t *lk, const char *what, amqp_rpc_reply_t r) {
    char text[256];

    fw_fail(lk, what, cm_amqp_reply_text(r, text, sizeof(text)));
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        lk->conn_usable = 0;
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION)
        return;
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_ok_t ok = {0};

        amqp_send_method(lk->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        lk->conn_usable = 0;
    } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};

        amqp_send_method(lk->conn, FW_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD,
                         &ok);
    }
}

/* The node being connected to, or connected to. */
static const cm_url_t *fw_node(const fw_link_t *lk) {
    return &lk->cfg->urls.url[lk->cur];
}

static amqp_rpc_reply_t fw_login(fw_link_t *lk) {
    const struct amqp_connection_info *url = &fw_node(lk)->info;
    amqp_table_entry_t caps[2], props[2];
    amqp_table_t client_props;

    /* Without consumer_cancel_notify a deleted queue would leave us idle
     * for ever; connection.blocked lets us log broker alarms. */
    caps[0].key = amqp_cstring_bytes("consumer_cancel_notify");
    caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[0].value.value.boolean = 1;
    caps[1].key = amqp_cstring_bytes("connection.blocked");
    caps[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[1].value.value.boolean = 1;
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = amqp_cstring_bytes("fib-worker");
    props[1].key = amqp_cstring_bytes("capabilities");
    props[1].value.kind = AMQP_FIELD_KIND_TABLE;
    props[1].value.value.table.num_entries = 2;
    props[1].value.value.table.entries = caps;
    client_props.num_entries = 2;
    client_props.entries = props;
    return amqp_login_with_properties(
        lk->conn, url->vhost, 0, FW_FRAME_MAX, FW_HEARTBEAT_S, &client_props,
        AMQP_SASL_METHOD_PLAIN, url->user, url->password);
}

/* Declares the queue durable: classic without arguments (as always), or
 * quorum (x-queue-type) with its x-delivery-limit.  A queue that already
 * exists with other arguments (say the tutorial's transient rpc_queue)
 * makes the broker close the channel with 406; then reopen it, check the
 * queue exists, and use it as it is. */
static int fw_declare(fw_link_t *lk) {
    amqp_bytes_t q = amqp_cstring_bytes(lk->cfg->queue);
    amqp_table_entry_t args[2];
    amqp_table_t table = amqp_empty_table;
    amqp_rpc_reply_t r;
    cm_log_t l;

    if (lk->cfg->quorum) {
        args[0].key = amqp_cstring_bytes("x-queue-type");
        args[0].value.kind = AMQP_FIELD_KIND_UTF8;
        args[0].value.value.bytes = amqp_cstring_bytes("quorum");
        table.num_entries = 1;
        if (lk->cfg->delivery_limit > 0) {
            args[1].key = amqp_cstring_bytes("x-delivery-limit");
            args[1].value.kind = AMQP_FIELD_KIND_I64;
            args[1].value.value.i64 = lk->cfg->delivery_limit;
            table.num_entries = 2;
        }
        table.entries = args;
    }
    if (amqp_queue_declare(lk->conn, FW_CHANNEL, q, 0, 1, 0, 0, table) != NULL)
        return 0;
    r = amqp_get_rpc_reply(lk->conn);
    fw_fail_reply(lk, "declaring the queue", r);
    if (!cm_amqp_is_channel_close(r, AMQP_PRECONDITION_FAILED))
        return -1;

    cm_log_begin(&l, CM_LOG_WARN, "queue_mismatch");
    cm_log_str(&l, "queue", lk->cfg->queue, strlen(lk->cfg->queue));
    cm_log_str(&l, "error", lk->err, strlen(lk->err));
    cm_log_kv(&l, "action", "using the existing queue as it is");
    cm_log_end(&l);

    if (amqp_channel_open(lk->conn, FW_CHANNEL) == NULL) {
        fw_fail_reply(lk, "reopening the channel",
                      amqp_get_rpc_reply(lk->conn));
        return -1;
    }
    if (amqp_queue_declare(lk->conn, FW_CHANNEL, q, 1, 0, 0, 0,
                           amqp_empty_table) == NULL) {
        fw_fail_reply(lk, "checking the queue", amqp_get_rpc_reply(lk->conn));
        return -1;
    }
    return 0;
}

int fw_link_connect(fw_link_t *lk) {
    const fw_config_t *cfg = lk->cfg;
    const struct amqp_connection_info *url = &fw_node(lk)->info;
    amqp_socket_t *sock;
    struct timeval tv;
    amqp_rpc_reply_t r;
    int status;

    lk->conn = amqp_new_connection();
    if (lk->conn == NULL) {
        fw_fail(lk, "connecting", "out of memory");
        return -1;
    }
    lk->conn_usable = 0;
    sock = url->ssl ? amqp_ssl_socket_new(lk->conn)
                    : amqp_tcp_socket_new(lk->conn);
    if (sock == NULL) {
        fw_fail(lk, "connecting", "cannot create a socket");
        goto fail;
    }
    if (url->ssl && cfg->cacert != NULL) {
        status = amqp_ssl_socket_set_cacert(sock, cfg->cacert);
        if (status != AMQP_STATUS_OK) {
            fw_fail(lk, "loading the CA file", amqp_error_string2(status));
            goto fail;
        }
    }
    /* rabbitmq-c sets TCP_NODELAY itself when it opens the socket. */
    tv.tv_sec = FW_CONNECT_TIMEOUT_S;
    tv.tv_usec = 0;
    status = amqp_socket_open_noblock(sock, url->host, url->port, &tv);
    if (status != AMQP_STATUS_OK) {
        fw_fail(lk, "connecting", amqp_error_string2(status));
        goto fail;
    }
    tv.tv_sec = FW_RPC_TIMEOUT_S;
    amqp_set_rpc_timeout(lk->conn, &tv);

    lk->conn_usable = 1;
    r = fw_login(lk);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        fw_fail_reply(lk, "logging in", r);
        goto fail;
    }
    if (amqp_channel_open(lk->conn, FW_CHANNEL) == NULL) {
        fw_fail_reply(lk, "opening a channel", amqp_get_rpc_reply(lk->conn));
        goto fail;
    }
    if (amqp_channel_open(lk->conn, FW_REPLY_CHANNEL) == NULL) {
        fw_fail_reply(lk, "opening the reply channel",
                      amqp_get_rpc_reply(lk->conn));
        goto fail;
    }
    if (fw_declare(lk) != 0)
        goto fail;
    if (amqp_basic_qos(lk->conn, FW_CHANNEL, 0, cfg->prefetch, 0) == NULL) {
        fw_fail_reply(lk, "setting prefetch", amqp_get_rpc_reply(lk->conn));
        goto fail;
    }
    if (amqp_basic_consume(lk->conn, FW_CHANNEL, amqp_cstring_bytes(cfg->queue),
                           amqp_empty_bytes, 0, 0, 0,
                           amqp_empty_table) == NULL) {
        fw_fail_reply(lk, "consuming", amqp_get_rpc_reply(lk->conn));
        goto fail;
    }
    return 0;

fail:
    if (lk->conn_usable)
        amqp_connection_close(lk->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(lk->conn);
    lk->conn = NULL;
    return -1;
}

void fw_link_next_node(fw_link_t *lk) {
    lk->cur = (lk->cur + 1) % lk->cfg->urls.n;
}

const cm_url_t *fw_link_node(const fw_link_t *lk) {
    return fw_node(lk);
}

void fw_link_disconnect(fw_link_t *lk) {
    cm_amqp_content_reset(&lk->content);
    if (lk->conn == NULL)
        return;
    /* connection.close closes the channel too, and the broker requeues
     * whatever we had not acked yet. */
    if (lk->conn_usable)
        amqp_connection_close(lk->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(lk->conn);
    lk->conn = NULL;
    lk->conn_usable = 0;
}

int fw_link_ack(fw_link_t *lk, const cm_amqp_msg_t *msg) {
    int status = amqp_basic_ack(lk->conn, msg->channel, msg->delivery_tag, 0);

    if (status != AMQP_STATUS_OK) {
        fw_fail(lk, "acknowledging a request", amqp_error_string2(status));
        lk->conn_usable = 0;
        return -1;
    }
    return 0;
}

/* The broker closed the reply channel over a reply it could not deliver:
 * that reply's caller is gone (its request is acked already).  Answers
 * close-ok and opens the channel again; the consumer on channel 1 never
 * noticed.  Returns -1 when the connection failed. */
static int fw_reply_channel_closed(fw_link_t *lk,
                                   const amqp_channel_close_t *m) {
    amqp_channel_close_ok_t ok = {0};
    cm_log_t l;

    lk->reply_closes++;
    cm_log_begin(&l, CM_LOG_WARN, "reply_undeliverable");
    cm_log_kv(&l, "code", "%u", (unsigned)m->reply_code);
    cm_log_str(&l, "reason", m->reply_text.bytes, m->reply_text.len);
    cm_log_kv(&l, "action", "reply channel reopened");
    cm_log_end(&l);
    if (amqp_send_method(lk->conn, FW_REPLY_CHANNEL,
                         AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK) {
        fw_fail(lk, "closing the reply channel", "the connection failed");
        lk->conn_usable = 0;
        return -1;
    }
    if (amqp_channel_open(lk->conn, FW_REPLY_CHANNEL) == NULL) {
        fw_fail_reply(lk, "reopening the reply channel",
                      amqp_get_rpc_reply(lk->conn));
        return -1;
    }
    return 0;
}

/* Handles a frame that is not part of a message.  Returns -1 when it means
 * the channel or the connection is gone (lk->err says why). */
static int fw_other_frame(fw_link_t *lk, const amqp_frame_t *f) {
    amqp_frame_t frame = *f;
    amqp_rpc_reply_t r;
    cm_log_t l;

    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0;
    if (frame.channel == FW_REPLY_CHANNEL &&
        frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)
        return fw_reply_channel_closed(lk, frame.payload.method.decoded);
    switch (frame.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        memset(&r, 0, sizeof(r));
        r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
        r.reply = frame.payload.method;
        fw_fail_reply(lk, "consuming", r);
        return -1;
    case AMQP_BASIC_CANCEL_METHOD:
        fw_fail(lk, "consuming",
                "the broker cancelled the consumer (queue deleted?)");
        return -1;
    case AMQP_CONNECTION_BLOCKED_METHOD: {
        amqp_connection_blocked_t *m = frame.payload.method.decoded;

        cm_log_begin(&l, CM_LOG_WARN, "blocked");
        cm_log_str(&l, "reason", m->reason.bytes, m->reason.len);
        cm_log_end(&l);
        return 0;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        cm_log_begin(&l, CM_LOG_INFO, "unblocked");
        cm_log_end(&l);
        return 0;
    default:
        return 0;
    }
}

void fw_link_init(fw_link_t *lk, const fw_config_t *cfg) {
    memset(lk, 0, sizeof(*lk));
    lk->cfg = cfg;
    cm_amqp_content_init(&lk->content, FIBRPC_MAX_REQUEST_BYTES);
}

fw_link_event_t fw_link_next(fw_link_t *lk, const cm_amqp_msg_t **msg,
                             long timeout_us) {
    struct timeval tv = {0, timeout_us};
    amqp_frame_t frame;
    int error;

    switch (cm_amqp_read(lk->conn, &lk->content, &tv, msg, &frame, &error)) {
    case CM_AMQP_MESSAGE:
        /* A returned reply cannot come (replies are not mandatory). */
        return (*msg)->method == AMQP_BASIC_DELIVER_METHOD ? FW_LINK_DELIVERY
                                                           : FW_LINK_IDLE;
    case CM_AMQP_TIMEOUT:
        return FW_LINK_IDLE;
    case CM_AMQP_FRAME:
        return fw_other_frame(lk, &frame) == 0 ? FW_LINK_IDLE : FW_LINK_FAILED;
    case CM_AMQP_FAILED:
        break;
    }
    fw_fail(lk, "consuming", amqp_error_string2(error));
    lk->conn_usable = 0;
    return FW_LINK_FAILED;
}

int fw_link_publish(fw_link_t *lk, amqp_bytes_t reply_to,
                    const amqp_basic_properties_t *props, amqp_bytes_t body) {
    int status =
        amqp_basic_publish(lk->conn, FW_REPLY_CHANNEL, amqp_empty_bytes,
                           reply_to, 0, 0, props, body);

    if (status != AMQP_STATUS_OK) {
        fw_fail(lk, "publishing a reply", amqp_error_string2(status));
        lk->conn_usable = 0;
        return -1;
    }
    return 0;
}

const char *fw_link_error(const fw_link_t *lk) {
    return lk->err;
}
