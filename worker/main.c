/* main.c - fib-worker: consume Fibonacci requests from an AMQP queue, reply
 * F(n) or a typed error to each request's reply_to, then ack; reconnect for
 * ever.  One thread owns the one connection; signal handlers set a flag.
 * With --metrics-listen, libmicrohttpd's thread reads the counters this
 * thread records (metrics.h: atomics, nothing else is shared). */
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "delivery.h"
#include "fib.h"
#include "fibrpc.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"

#define FW_CHANNEL           1
#define FW_HEARTBEAT_S       30
#define FW_FRAME_MAX         131072
#define FW_CONNECT_TIMEOUT_S 5
/* Bounds every synchronous AMQP call (login, declare, close...). */
#define FW_RPC_TIMEOUT_S 10
/* How long one wait for a delivery lasts, so a signal is seen this soon. */
#define FW_POLL_US        200000
#define FW_BACKOFF_MIN_MS 200
#define FW_BACKOFF_MAX_MS 5000
#define FW_ERR_MAX        256

/* The signal that asked us to stop, 0 while running. */
static volatile sig_atomic_t fw_stop_signal;

typedef struct {
    const fw_config_t *cfg;
    fw_metrics_t *metrics;
    amqp_connection_state_t conn; /* NULL while disconnected */
    /* Whether conn can still carry a polite connection.close. */
    int conn_usable;
    char err[FW_ERR_MAX]; /* why the last step failed */
} fw_worker_t;

static void fw_on_signal(int sig) {
    fw_stop_signal = sig;
}

static double fw_mono_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t fw_now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms, waking early when a stop signal arrives. */
static void fw_sleep_ms(long ms) {
    while (ms > 0 && !fw_stop_signal) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};

        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void fw_fail(fw_worker_t *w, const char *what, const char *why) {
    snprintf(w->err, sizeof(w->err), "%s: %s", what, why);
}

static void fw_fail_close(fw_worker_t *w, const char *what, const char *who,
                          uint16_t code, amqp_bytes_t text) {
    snprintf(w->err, sizeof(w->err), "%s: %s closed by the broker: %u %.*s",
             what, who, (unsigned)code, (int)text.len,
             text.bytes != NULL ? (const char *)text.bytes : "");
}

/* Turns an amqp_rpc_reply_t into w->err, once, where it happens; answers a
 * close from the broker with close-ok, as the protocol asks. */
static void fw_fail_reply(fw_worker_t *w, const char *what,
                          amqp_rpc_reply_t r) {
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        fw_fail(w, what, "no error");
        break;
    case AMQP_RESPONSE_NONE:
        fw_fail(w, what, "no reply from the broker");
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        fw_fail(w, what, amqp_error_string2(r.library_error));
        w->conn_usable = 0;
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            amqp_connection_close_ok_t ok = {0};

            fw_fail_close(w, what, "connection", m->reply_code, m->reply_text);
            amqp_send_method(w->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            w->conn_usable = 0;
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            amqp_channel_close_ok_t ok = {0};

            fw_fail_close(w, what, "channel", m->reply_code, m->reply_text);
            amqp_send_method(w->conn, FW_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD,
                             &ok);
        } else {
            fw_fail(w, what, amqp_method_name(r.reply.id));
        }
        break;
    }
}

static int fw_is_channel_close(amqp_rpc_reply_t r, uint16_t code) {
    return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
           r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
           ((amqp_channel_close_t *)r.reply.decoded)->reply_code == code;
}

static amqp_rpc_reply_t fw_login(fw_worker_t *w) {
    const fw_config_t *cfg = w->cfg;
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
        w->conn, cfg->vhost, 0, FW_FRAME_MAX, FW_HEARTBEAT_S, &client_props,
        AMQP_SASL_METHOD_PLAIN, cfg->user, cfg->password);
}

/* Declares the queue durable.  A queue that already exists with other
 * arguments (say the tutorial's transient rpc_queue) makes the broker close
 * the channel with 406; then reopen it, check the queue exists, and use it
 * as it is. */
static int fw_declare(fw_worker_t *w) {
    amqp_bytes_t q = amqp_cstring_bytes(w->cfg->queue);
    amqp_rpc_reply_t r;
    fw_log_t l;

    if (amqp_queue_declare(w->conn, FW_CHANNEL, q, 0, 1, 0, 0,
                           amqp_empty_table) != NULL)
        return 0;
    r = amqp_get_rpc_reply(w->conn);
    fw_fail_reply(w, "declaring the queue", r);
    if (!fw_is_channel_close(r, AMQP_PRECONDITION_FAILED))
        return -1;

    fw_log_begin(&l, "warn", "queue_mismatch");
    fw_log_str(&l, "queue", w->cfg->queue, strlen(w->cfg->queue));
    fw_log_str(&l, "error", w->err, strlen(w->err));
    fw_log_kv(&l, "action", "using the existing queue as it is");
    fw_log_end(&l);

    if (amqp_channel_open(w->conn, FW_CHANNEL) == NULL) {
        fw_fail_reply(w, "reopening the channel", amqp_get_rpc_reply(w->conn));
        return -1;
    }
    if (amqp_queue_declare(w->conn, FW_CHANNEL, q, 1, 0, 0, 0,
                           amqp_empty_table) == NULL) {
        fw_fail_reply(w, "checking the queue", amqp_get_rpc_reply(w->conn));
        return -1;
    }
    return 0;
}

/* Connects, logs in, opens the channel, declares the queue and starts
 * consuming.  On failure w->err says why and nothing is left open. */
static int fw_connect(fw_worker_t *w) {
    const fw_config_t *cfg = w->cfg;
    amqp_socket_t *sock;
    struct timeval tv;
    amqp_rpc_reply_t r;
    int status;

    w->conn = amqp_new_connection();
    if (w->conn == NULL) {
        fw_fail(w, "connecting", "out of memory");
        return -1;
    }
    w->conn_usable = 0;
    sock =
        cfg->tls ? amqp_ssl_socket_new(w->conn) : amqp_tcp_socket_new(w->conn);
    if (sock == NULL) {
        fw_fail(w, "connecting", "cannot create a socket");
        goto fail;
    }
    if (cfg->tls && cfg->cacert != NULL) {
        status = amqp_ssl_socket_set_cacert(sock, cfg->cacert);
        if (status != AMQP_STATUS_OK) {
            fw_fail(w, "loading the CA file", amqp_error_string2(status));
            goto fail;
        }
    }
    /* rabbitmq-c sets TCP_NODELAY itself when it opens the socket. */
    tv.tv_sec = FW_CONNECT_TIMEOUT_S;
    tv.tv_usec = 0;
    status = amqp_socket_open_noblock(sock, cfg->host, cfg->port, &tv);
    if (status != AMQP_STATUS_OK) {
        fw_fail(w, "connecting", amqp_error_string2(status));
        goto fail;
    }
    tv.tv_sec = FW_RPC_TIMEOUT_S;
    amqp_set_rpc_timeout(w->conn, &tv);

    w->conn_usable = 1;
    r = fw_login(w);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        fw_fail_reply(w, "logging in", r);
        goto fail;
    }
    if (amqp_channel_open(w->conn, FW_CHANNEL) == NULL) {
        fw_fail_reply(w, "opening a channel", amqp_get_rpc_reply(w->conn));
        goto fail;
    }
    if (fw_declare(w) != 0)
        goto fail;
    if (amqp_basic_qos(w->conn, FW_CHANNEL, 0, cfg->prefetch, 0) == NULL) {
        fw_fail_reply(w, "setting prefetch", amqp_get_rpc_reply(w->conn));
        goto fail;
    }
    if (amqp_basic_consume(w->conn, FW_CHANNEL, amqp_cstring_bytes(cfg->queue),
                           amqp_empty_bytes, 0, 0, 0,
                           amqp_empty_table) == NULL) {
        fw_fail_reply(w, "consuming", amqp_get_rpc_reply(w->conn));
        goto fail;
    }
    return 0;

fail:
    if (w->conn_usable)
        amqp_connection_close(w->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(w->conn);
    w->conn = NULL;
    return -1;
}

/* Closes politely when the connection still works, then frees it. */
static void fw_disconnect(fw_worker_t *w) {
    if (w->conn == NULL)
        return;
    /* connection.close closes the channel too, and the broker requeues
     * whatever we had not acked yet. */
    if (w->conn_usable)
        amqp_connection_close(w->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(w->conn);
    w->conn = NULL;
    w->conn_usable = 0;
}

static void fw_log_corr(fw_log_t *l, const amqp_basic_properties_t *in) {
    if (in->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        fw_log_str(l, "corr", in->correlation_id.bytes, in->correlation_id.len);
}

static void fw_log_request_id(fw_log_t *l, const amqp_table_entry_t *req_id) {
    if (req_id != NULL && (req_id->value.kind == AMQP_FIELD_KIND_UTF8 ||
                           req_id->value.kind == AMQP_FIELD_KIND_BYTES))
        fw_log_str(l, "request_id", req_id->value.value.bytes.bytes,
                   req_id->value.value.bytes.len);
}

static int fw_ack(fw_worker_t *w, const amqp_envelope_t *env) {
    int status = amqp_basic_ack(w->conn, env->channel, env->delivery_tag, 0);

    if (status != AMQP_STATUS_OK) {
        fw_fail(w, "acknowledging a request", amqp_error_string2(status));
        w->conn_usable = 0;
        return -1;
    }
    return 0;
}

/* Answers one delivery and acks it, the ack only once the reply is sent.
 * Returns -1 when the connection failed (w->err says how): the request
 * stays unacked and the broker gives it to a worker again. */
static int fw_handle(fw_worker_t *w, const amqp_envelope_t *env) {
    amqp_table_entry_t headers[FW_REPLY_HEADERS_MAX];
    amqp_basic_properties_t out;
    amqp_bytes_t body = amqp_empty_bytes;
    const amqp_basic_properties_t *in;
    fw_delivery_t d;
    fw_request_t req;
    char *text = NULL;
    double ms = 0;
    int status;
    fw_log_t l;

    fw_delivery_read(&d, &env->message);
    in = d.props;
    if (!fw_delivery_has_reply_to(&d)) {
        fw_log_begin(&l, "warn", "dropped");
        fw_log_kv(&l, "reason", "no reply_to");
        fw_log_corr(&l, in);
        fw_log_request_id(&l, d.request_id);
        fw_log_end(&l);
        if (fw_ack(w, env) != 0)
            return -1;
        fw_metrics_dropped(w->metrics);
        return 0;
    }

    fw_delivery_request(&d, w->cfg->max_n, fw_now_ms(), &req);
    if (req.err == FW_OK) {
        double start = fw_mono_ms();

        if (fw_fib_compute(req.n, &text, &body.len) != 0) {
            req.err = FW_ERR_internal;
            snprintf(req.message, sizeof(req.message),
                     "out of memory computing F(n)");
        }
        ms = fw_mono_ms() - start;
    }
    if (req.err == FW_OK)
        body.bytes = text;
    else
        fw_delivery_error_body(&req, &text, &body);
    fw_delivery_reply_props(&d, req.err, headers, &out);

    status = amqp_basic_publish(w->conn, FW_CHANNEL, amqp_empty_bytes,
                                in->reply_to, 0, 0, &out, body);
    free(text);
    if (status != AMQP_STATUS_OK) {
        fw_fail(w, "publishing a reply", amqp_error_string2(status));
        w->conn_usable = 0;
        return -1;
    }
    if (fw_ack(w, env) != 0)
        return -1;
    /* Counted once acked: a request redelivered after a failure counts once. */
    fw_metrics_reply(w->metrics, req.err, ms / 1e3);

    if (req.err == FW_OK) {
        fw_log_begin(&l, "info", "served");
        fw_log_kv(&l, "n", "%" PRIu32, req.n);
        fw_log_corr(&l, in);
        fw_log_kv(&l, "ms", "%.3f", ms);
        fw_log_request_id(&l, d.request_id);
    } else {
        fw_log_begin(&l, fw_err_caller_fault(req.err) ? "info" : "warn",
                     "rejected");
        fw_log_kv(&l, "error", "%s", fw_err_name(req.err));
        fw_log_corr(&l, in);
        fw_log_request_id(&l, d.request_id);
        fw_log_str(&l, "detail", req.message, strlen(req.message));
    }
    fw_log_end(&l);
    return 0;
}

/* Reads the frame amqp_consume_message would not take.  Returns -1 when it
 * means the channel or the connection is gone (w->err says why). */
static int fw_other_frame(fw_worker_t *w) {
    amqp_frame_t frame;
    amqp_rpc_reply_t r;
    fw_log_t l;
    int status;

    status = amqp_simple_wait_frame(w->conn, &frame);
    if (status != AMQP_STATUS_OK) {
        fw_fail(w, "reading a frame", amqp_error_string2(status));
        w->conn_usable = 0;
        return -1;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (frame.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        memset(&r, 0, sizeof(r));
        r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
        r.reply = frame.payload.method;
        fw_fail_reply(w, "consuming", r);
        return -1;
    case AMQP_BASIC_CANCEL_METHOD:
        fw_fail(w, "consuming",
                "the broker cancelled the consumer (queue deleted?)");
        return -1;
    case AMQP_CONNECTION_BLOCKED_METHOD: {
        amqp_connection_blocked_t *m = frame.payload.method.decoded;

        fw_log_begin(&l, "warn", "blocked");
        fw_log_str(&l, "reason", m->reason.bytes, m->reason.len);
        fw_log_end(&l);
        return 0;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        fw_log_begin(&l, "info", "unblocked");
        fw_log_end(&l);
        return 0;
    default:
        return 0;
    }
}

/* Serves deliveries until a stop signal (returns 0) or until the connection
 * fails (returns -1, w->err says why). */
static int fw_serve(fw_worker_t *w) {
    while (!fw_stop_signal) {
        struct timeval tv = {0, FW_POLL_US};
        amqp_envelope_t env;
        amqp_rpc_reply_t r;
        int rc;

        amqp_maybe_release_buffers(w->conn);
        r = amqp_consume_message(w->conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            rc = fw_handle(w, &env);
            amqp_destroy_envelope(&env);
            if (rc != 0)
                return -1;
        } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   r.library_error == AMQP_STATUS_TIMEOUT) {
            continue;
        } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            if (fw_other_frame(w) != 0)
                return -1;
        } else {
            fw_fail_reply(w, "consuming", r);
            return -1;
        }
    }
    return 0;
}

static long fw_next_backoff(long ms) {
    return ms * 2 > FW_BACKOFF_MAX_MS ? FW_BACKOFF_MAX_MS : ms * 2;
}

static void fw_log_broker(fw_log_t *l, const fw_config_t *cfg) {
    fw_log_str(l, "host", cfg->host, strlen(cfg->host));
    fw_log_kv(l, "port", "%d", cfg->port);
    fw_log_str(l, "vhost", cfg->vhost, strlen(cfg->vhost));
    fw_log_kv(l, "tls", "%s", cfg->tls ? "true" : "false");
}

static void fw_log_retry(fw_worker_t *w, const char *msg, long backoff_ms) {
    fw_log_t l;

    fw_log_begin(&l, "warn", msg);
    fw_log_broker(&l, w->cfg);
    fw_log_str(&l, "error", w->err, strlen(w->err));
    fw_log_kv(&l, "retry_ms", "%ld", backoff_ms);
    fw_log_end(&l);
}

static void fw_handle_signals(void) {
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    /* A second signal while we finish the current request kills at once. */
    sa.sa_flags = SA_RESETHAND;
    sa.sa_handler = fw_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_flags = 0;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv) {
    fw_metrics_http_t *metrics_http = NULL;
    fw_metrics_t metrics;
    fw_worker_t w;
    fw_config_t cfg;
    long backoff = FW_BACKOFF_MIN_MS;
    fw_log_t l;

    setvbuf(stderr, NULL, _IOLBF, BUFSIZ);
    switch (fw_config_load(&cfg, argc, argv)) {
    case FW_CONFIG_OK:
        break;
    case FW_CONFIG_EXIT:
        return 0;
    case FW_CONFIG_BAD:
    default:
        return 2;
    }
    memset(&w, 0, sizeof(w));
    w.cfg = &cfg;
    fw_metrics_init(&metrics);
    w.metrics = &metrics;
    fw_handle_signals();

    fw_log_begin(&l, "info", "starting");
    fw_log_kv(&l, "version", "%s", FW_VERSION);
    fw_log_broker(&l, &cfg);
    fw_log_str(&l, "queue", cfg.queue, strlen(cfg.queue));
    fw_log_kv(&l, "prefetch", "%u", (unsigned)cfg.prefetch);
    fw_log_kv(&l, "max_n", "%" PRIu32, cfg.max_n);
    fw_log_end(&l);

    /* The operator asked for metrics: not serving them is a start-up error,
     * not something to find out when the dashboards stay empty. */
    if (cfg.metrics_host[0] != '\0') {
        metrics_http = fw_metrics_http_start(cfg.metrics_host, cfg.metrics_port,
                                             &metrics, FW_VERSION);
        if (metrics_http == NULL) {
            fw_config_free(&cfg);
            return 2;
        }
    }

    while (!fw_stop_signal) {
        if (fw_connect(&w) != 0) {
            fw_log_retry(&w, "connect_failed", backoff);
            fw_sleep_ms(backoff);
            backoff = fw_next_backoff(backoff);
            continue;
        }
        backoff = FW_BACKOFF_MIN_MS;
        fw_metrics_link(&metrics, 1);
        fw_log_begin(&l, "info", "ready");
        fw_log_str(&l, "queue", cfg.queue, strlen(cfg.queue));
        fw_log_kv(&l, "prefetch", "%u", (unsigned)cfg.prefetch);
        fw_log_end(&l);

        if (fw_serve(&w) == 0)
            break;
        fw_metrics_link(&metrics, 0);
        fw_log_retry(&w, "disconnected", backoff);
        fw_disconnect(&w);
        fw_sleep_ms(backoff);
        backoff = fw_next_backoff(backoff);
    }

    fw_log_begin(&l, "info", "stopping");
    fw_log_kv(&l, "signal", "%s",
              fw_stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    fw_log_end(&l);
    fw_disconnect(&w);
    fw_metrics_link(&metrics, 0);
    fw_metrics_http_stop(metrics_http);
    fw_config_free(&cfg);
    fw_log_begin(&l, "info", "stopped");
    fw_log_end(&l);
    return 0;
}
