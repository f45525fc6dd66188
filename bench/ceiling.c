/* ceiling.c - rpc-ceiling: the raw AMQP RPC ceiling the gateway is measured
 * against.  Keeps K calls to the fib workers in flight over direct reply-to
 * (one connection, one channel, one thread, no HTTP) and prints calls/s and
 * latency percentiles on one parseable line.  Single-threaded throughout. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amqp_read.h"
#include "amqp_text.h"
#include "clock.h"
#include "config.h"
#include "fibrpc.h"
#include "publisher.h"

#define CK_CHANNEL           1
#define CK_FRAME_MAX         131072
#define CK_CONNECT_TIMEOUT_S 5
/* Bounds the synchronous calls of the set-up (login, declare, consume). */
#define CK_RPC_TIMEOUT_S 5
/* Longest single wait for a reply, so the clock is looked at this often. */
#define CK_WAIT_MAX_NS  100000000LL
#define CK_MAX_INFLIGHT 100000u
/* "<slot, 8 hex>-<sequence, 16 hex>" */
#define CK_CORR_LEN 25
/* Replies are kept up to this size, as the gateway's default. */
#define CK_REPLY_MAX (4u * 1024 * 1024)

typedef struct {
    const char *amqp_url;
    const char *queue;
    const char *label; /* first word of the result line */
    int like_gateway;  /* publish what rpc-gateway publishes */
    unsigned inflight;
    double duration_s; /* used when calls == 0 */
    uint64_t calls;
    double warmup_s;
    double drain_s;
    uint32_t n;
} ck_config_t;

/* One call slot; K of them, each holding at most one call. */
typedef struct {
    uint64_t seq; /* of the call in flight here, 0 when free */
    int64_t sent_ns;
    int measured; /* sent inside the measured window */
} ck_slot_t;

typedef struct {
    const ck_config_t *cfg;
    amqp_connection_state_t conn;
    cm_amqp_content_t content; /* replies, put together */
    ck_slot_t *slots;
    unsigned busy; /* slots holding a call */
    uint64_t next_seq;
    char body[24];   /* n as sent */
    char expect[24]; /* F(n) when n <= 93 (fits 64 bits), else "" */

    int publishing;
    int64_t measure_start_ns, measure_end_ns, last_reply_ns;
    uint64_t measured_sent;

    uint64_t ok;         /* measured calls answered correctly */
    uint64_t ok_in_time; /* of those, answered before the window closed */
    uint64_t err_corr;   /* unknown or stale correlation id */
    uint64_t err_body;   /* a reply that is not F(n) */
    uint64_t err_worker; /* an error reply from the worker */
    uint64_t err_lost;   /* no reply before the drain deadline */
    uint32_t *lat_us;    /* latency of every measured good call */
    size_t lat_len, lat_cap;
} ck_bench_t;

static void ck_usage(FILE *f) {
    fprintf(f,
            "Usage: rpc-ceiling [OPTION]...\n"
            "AMQP RPC straight to the fib workers over direct reply-to, with K "
            "calls in flight;\nprints calls/s and latency on one line.\n\n"
            "  --amqp-url=URL       RabbitMQ URL (env AMQP_URL, default "
            "amqp://guest:guest@localhost:5672/)\n"
            "  --queue=NAME         request queue (env RPC_QUEUE, default "
            "%s)\n"
            "  --inflight=K         calls in flight at once (default 1)\n"
            "  --duration=SECONDS   measure this long (default 10)\n"
            "  --calls=N            or measure exactly N calls\n"
            "  --warmup=SECONDS     run this long first, unmeasured (default "
            "0)\n"
            "  --drain-timeout=SECONDS  wait this long for the last replies "
            "(default 10)\n"
            "  --n=N                the argument of every call (default 10)\n"
            "  --label=WORD         first word of the result line (default "
            "ceiling)\n"
            "  --like-gateway       publish what rpc-gateway publishes: "
            "mandatory, an\n"
            "                       expiration, x-request-id and "
            "x-deadline-ms headers\n\n"
            "p50_us, p90_us, p99_us are raw; wrk_p50_us and wrk_p99_us add "
            "wrk's coordinated-\nomission correction, so they compare with "
            "wrk --latency figures.\n",
            FIBRPC_DEFAULT_QUEUE);
}

/* Parses a decimal number within [min, max].  Returns -1 on bad input. */
static int ck_parse_double(const char *s, double min, double max, double *out) {
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

/* Fills cfg from argv and the environment.  Returns 0 to run, 1 when --help
 * was answered, -1 after printing what was wrong. */
static int ck_config_load(ck_config_t *cfg, int argc, char **argv) {
    static const struct option longopts[] = {
        {"amqp-url", required_argument, NULL, 'u'},
        {"queue", required_argument, NULL, 'q'},
        {"inflight", required_argument, NULL, 'k'},
        {"duration", required_argument, NULL, 'd'},
        {"calls", required_argument, NULL, 'c'},
        {"warmup", required_argument, NULL, 'w'},
        {"drain-timeout", required_argument, NULL, 't'},
        {"n", required_argument, NULL, 'n'},
        {"label", required_argument, NULL, 'l'},
        {"like-gateway", no_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env;
    double v;
    int opt, idx = 0;

    memset(cfg, 0, sizeof(*cfg));
    env = getenv("AMQP_URL");
    cfg->amqp_url =
        env != NULL && *env ? env : "amqp://guest:guest@localhost:5672/";
    env = getenv("RPC_QUEUE");
    cfg->queue = env != NULL && *env ? env : FIBRPC_DEFAULT_QUEUE;
    cfg->label = "ceiling";
    cfg->inflight = 1;
    cfg->duration_s = 10;
    cfg->drain_s = 10;
    cfg->n = 10;

    while ((opt = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
        switch (opt) {
        case 'u':
            cfg->amqp_url = optarg;
            break;
        case 'q':
            cfg->queue = optarg;
            break;
        case 'l':
            cfg->label = optarg;
            break;
        case 'g':
            cfg->like_gateway = 1;
            break;
        case 'k':
            if (ck_parse_double(optarg, 1, CK_MAX_INFLIGHT, &v) != 0 ||
                v != (unsigned)v)
                goto bad;
            cfg->inflight = (unsigned)v;
            break;
        case 'd':
            if (ck_parse_double(optarg, 0.001, 86400, &cfg->duration_s) != 0)
                goto bad;
            break;
        case 'c':
            if (ck_parse_double(optarg, 1, 1e12, &v) != 0 || v != (uint64_t)v)
                goto bad;
            cfg->calls = (uint64_t)v;
            break;
        case 'w':
            if (ck_parse_double(optarg, 0, 3600, &cfg->warmup_s) != 0)
                goto bad;
            break;
        case 't':
            if (ck_parse_double(optarg, 0, 3600, &cfg->drain_s) != 0)
                goto bad;
            break;
        case 'n':
            if (fibrpc_parse_n(optarg, strlen(optarg), FIBRPC_HARD_MAX_N,
                               &cfg->n) != 0)
                goto bad;
            break;
        case 'h':
            ck_usage(stdout);
            return 1;
        default:
            ck_usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "rpc-ceiling: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "rpc-ceiling: bad value '%s' for --%s\n", optarg,
            longopts[idx].name);
    return -1;
}

/* --- AMQP ---------------------------------------------------------------- */

/* Prints why the last synchronous call failed.  Returns -1. */
static int ck_amqp_fail(amqp_connection_state_t conn, const char *what) {
    char buf[256];

    fprintf(stderr, "rpc-ceiling: %s: %s\n", what,
            cm_amqp_reply_text(amqp_get_rpc_reply(conn), buf, sizeof(buf)));
    return -1;
}

/* Connects, checks that somebody consumes the queue, and starts consuming
 * direct reply-to.  On failure prints why; the caller destroys b->conn. */
static int ck_connect(ck_bench_t *b) {
    struct timeval tv = {CK_CONNECT_TIMEOUT_S, 0};
    struct amqp_connection_info url;
    amqp_queue_declare_ok_t *ok;
    amqp_socket_t *sock;
    amqp_rpc_reply_t r;
    char *url_buf;
    int status, rc = -1;

    url_buf = strdup(b->cfg->amqp_url);
    if (url_buf == NULL)
        return -1;
    amqp_default_connection_info(&url);
    if (amqp_parse_url(url_buf, &url) != AMQP_STATUS_OK || url.ssl) {
        fprintf(stderr, "rpc-ceiling: bad AMQP URL (amqp:// only)\n");
        goto out;
    }
    if (url.vhost[0] == '\0')
        url.vhost = "/";
    b->conn = amqp_new_connection();
    if (b->conn == NULL || (sock = amqp_tcp_socket_new(b->conn)) == NULL) {
        fprintf(stderr, "rpc-ceiling: out of memory\n");
        goto out;
    }
    /* rabbitmq-c sets TCP_NODELAY and O_NONBLOCK on the socket itself. */
    status = amqp_socket_open_noblock(sock, url.host, url.port, &tv);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "rpc-ceiling: connecting to %s:%d: %s\n", url.host,
                url.port, amqp_error_string2(status));
        goto out;
    }
    tv.tv_sec = CK_RPC_TIMEOUT_S;
    amqp_set_rpc_timeout(b->conn, &tv);
    /* No heartbeats: a run is short, and they would cost a timer check per
     * frame for nothing. */
    r = amqp_login(b->conn, url.vhost, 0, CK_FRAME_MAX, 0,
                   AMQP_SASL_METHOD_PLAIN, url.user, url.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        ck_amqp_fail(b->conn, "logging in");
        goto out;
    }
    if (amqp_channel_open(b->conn, CK_CHANNEL) == NULL) {
        ck_amqp_fail(b->conn, "opening a channel");
        goto out;
    }
    ok = amqp_queue_declare(b->conn, CK_CHANNEL,
                            amqp_cstring_bytes(b->cfg->queue), 1, 0, 0, 0,
                            amqp_empty_table);
    if (ok == NULL) {
        ck_amqp_fail(b->conn, "checking the queue");
        goto out;
    }
    if (ok->consumer_count == 0) {
        fprintf(stderr, "rpc-ceiling: nobody consumes queue '%s'\n",
                b->cfg->queue);
        goto out;
    }
    /* Direct reply-to: consume (no-ack) on the publishing channel first. */
    if (amqp_basic_consume(b->conn, CK_CHANNEL, amqp_cstring_bytes(GW_REPLY_TO),
                           amqp_empty_bytes, 0, 1, 0,
                           amqp_empty_table) == NULL) {
        ck_amqp_fail(b->conn, "consuming " GW_REPLY_TO);
        goto out;
    }
    rc = 0;
out:
    free(url_buf);
    return rc;
}

/* Publishes a new call into free slot i.  Returns the rabbitmq-c status. */
static int ck_publish(ck_bench_t *b, unsigned i, int64_t now) {
    amqp_basic_properties_t p;
    gw_request_props_t rp;
    gw_request_msg_t m;
    char corr[CK_CORR_LEN + 1], request_id[33];
    ck_slot_t *s = &b->slots[i];

    s->seq = ++b->next_seq;
    s->sent_ns = now;
    s->measured = now >= b->measure_start_ns;
    if (s->measured)
        b->measured_sent++;
    b->busy++;
    snprintf(corr, sizeof(corr), "%08x-%016" PRIx64, i, s->seq);
    if (b->cfg->like_gateway) {
        /* Exactly what rpc-gateway publishes for a call with its default
         * timeout (gateway/publisher.c builds both), so that the broker's
         * and the worker's share of the gap can be told from the HTTP
         * hop's. */
        snprintf(request_id, sizeof(request_id), "%016" PRIx64 "%016" PRIx64,
                 (uint64_t)i, s->seq);
        m = (gw_request_msg_t){
            .routing_key = b->cfg->queue,
            .correlation_id = corr,
            .request_id = request_id,
            .ttl_ms = GW_DEFAULT_TIMEOUT_MS,
            .deadline_wall_ms = cm_wall_ms() + GW_DEFAULT_TIMEOUT_MS,
            .body = b->body,
            .body_len = strlen(b->body),
        };
        gw_request_props(&m, &rp);
        return amqp_basic_publish(b->conn, CK_CHANNEL, amqp_empty_bytes,
                                  amqp_cstring_bytes(b->cfg->queue), 1, 0,
                                  &rp.props, amqp_cstring_bytes(b->body));
    }
    /* What the tutorial's client sends. */
    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG;
    p.content_type = amqp_cstring_bytes(FIBRPC_REQUEST_CONTENT_TYPE);
    p.delivery_mode = 1;
    p.correlation_id = amqp_cstring_bytes(corr);
    p.reply_to = amqp_cstring_bytes(GW_REPLY_TO);
    return amqp_basic_publish(b->conn, CK_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(b->cfg->queue), 0, 0, &p,
                              amqp_cstring_bytes(b->body));
}

/* The slot a reply's correlation id names, or -1 when it names no call in
 * flight (malformed, unknown or stale). */
static long ck_slot_of(const ck_bench_t *b, const amqp_basic_properties_t *p) {
    char text[CK_CORR_LEN + 1], *end;
    unsigned long slot;
    uint64_t seq;

    if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
        p->correlation_id.len != CK_CORR_LEN)
        return -1;
    memcpy(text, p->correlation_id.bytes, CK_CORR_LEN);
    text[CK_CORR_LEN] = '\0';
    if (text[8] != '-')
        return -1;
    text[8] = '\0';
    slot = strtoul(text, &end, 16);
    if (end != text + 8 || slot >= b->cfg->inflight)
        return -1;
    seq = strtoull(text + 9, &end, 16);
    if (end != text + CK_CORR_LEN || seq == 0 || b->slots[slot].seq != seq)
        return -1;
    return (long)slot;
}

/* 0 when m carries F(n) (or, for n > 93, any digits); -1 for a worker's
 * error reply; -2 for anything else. */
static int ck_body_ok(const ck_bench_t *b, const amqp_message_t *m) {
    const amqp_basic_properties_t *p = &m->properties;
    const char *s = m->body.bytes;
    size_t i;

    if ((p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) &&
        p->content_type.len == strlen(FIBRPC_ERROR_CONTENT_TYPE) &&
        memcmp(p->content_type.bytes, FIBRPC_ERROR_CONTENT_TYPE,
               p->content_type.len) == 0)
        return -1;
    if (b->expect[0] != '\0')
        return m->body.len == strlen(b->expect) &&
                       memcmp(s, b->expect, m->body.len) == 0
                   ? 0
                   : -2;
    if (m->body.len == 0)
        return -2;
    for (i = 0; i < m->body.len; i++)
        if (s[i] < '0' || s[i] > '9')
            return -2;
    return 0;
}

/* Keeps one latency sample.  Returns -1 when out of memory. */
static int ck_record(ck_bench_t *b, int64_t lat_ns) {
    int64_t us = lat_ns / 1000;

    if (b->lat_len == b->lat_cap) {
        size_t cap = b->lat_cap ? b->lat_cap * 2 : 65536;
        uint32_t *v = realloc(b->lat_us, cap * sizeof(*v));

        if (v == NULL)
            return -1;
        b->lat_us = v;
        b->lat_cap = cap;
    }
    b->lat_us[b->lat_len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

/* Checks one reply, frees its slot and refills the slot while publishing.
 * Returns -1 when the connection failed or memory ran out. */
static int ck_on_reply(ck_bench_t *b, const amqp_message_t *m) {
    int64_t now = cm_now_ns();
    long i = ck_slot_of(b, &m->properties);
    ck_slot_t *s;
    int check;

    if (i < 0) {
        b->err_corr++;
        return 0;
    }
    s = &b->slots[i];
    s->seq = 0;
    b->busy--;
    check = ck_body_ok(b, m);
    if (check == -1)
        b->err_worker++;
    else if (check == -2)
        b->err_body++;
    else if (s->measured) {
        b->ok++;
        if (now <= b->measure_end_ns)
            b->ok_in_time++;
        b->last_reply_ns = now;
        if (ck_record(b, now - s->sent_ns) != 0)
            return -1;
    }
    if (b->cfg->calls > 0 && b->measured_sent >= b->cfg->calls)
        b->publishing = 0;
    if (!b->publishing)
        return 0;
    return ck_publish(b, (unsigned)i, now) == AMQP_STATUS_OK ? 0 : -1;
}

/* Looks at a frame that is not a delivery.  Returns -1 when it ends the
 * run. */
static int ck_other_frame(const amqp_frame_t *frame) {
    amqp_frame_t f = *frame;

    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
    case AMQP_BASIC_CANCEL_METHOD:
        fprintf(stderr, "rpc-ceiling: the broker sent %s\n",
                amqp_method_name(f.payload.method.id));
        return -1;
    default:
        return 0;
    }
}

/* Keeps K calls in flight until the measured window ends (or N calls were
 * sent), then waits for the rest.  Returns -1 on a connection failure. */
static int ck_run(ck_bench_t *b) {
    const ck_config_t *cfg = b->cfg;
    int64_t start = cm_now_ns(), drain_until = 0, now, wait;
    unsigned i;

    b->measure_start_ns = start + (int64_t)(cfg->warmup_s * 1e9);
    b->measure_end_ns =
        cfg->calls > 0 ? INT64_MAX
                       : b->measure_start_ns + (int64_t)(cfg->duration_s * 1e9);
    b->publishing = 1;
    for (i = 0; i < cfg->inflight; i++) {
        if (cfg->calls > 0 && b->measured_sent >= cfg->calls)
            break;
        if (ck_publish(b, i, cm_now_ns()) != AMQP_STATUS_OK) {
            fprintf(stderr, "rpc-ceiling: publishing failed\n");
            return -1;
        }
    }

    while (b->busy > 0) {
        struct timeval tv;
        const cm_amqp_msg_t *m;
        amqp_frame_t frame;
        int error, rc;

        now = cm_now_ns();
        if (b->publishing && now >= b->measure_end_ns)
            b->publishing = 0;
        if (!b->publishing && drain_until == 0)
            drain_until = now + (int64_t)(cfg->drain_s * 1e9);
        if (!b->publishing && now >= drain_until)
            break;
        /* Buffered frames come back at once; otherwise this is one recv
         * and one poll, the least rabbitmq-c can do per wait. */
        wait = (b->publishing ? b->measure_end_ns : drain_until) - now;
        if (wait > CK_WAIT_MAX_NS)
            wait = CK_WAIT_MAX_NS;
        tv.tv_sec = (time_t)(wait / 1000000000LL);
        tv.tv_usec = (suseconds_t)(wait % 1000000000LL / 1000);
        switch (cm_amqp_read(b->conn, &b->content, &tv, &m, &frame, &error)) {
        case CM_AMQP_MESSAGE:
            /* An oversized reply has no body: a bad one. */
            rc = ck_on_reply(b, &m->message);
            if (rc != 0) {
                fprintf(stderr, "rpc-ceiling: publishing failed\n");
                return -1;
            }
            break;
        case CM_AMQP_TIMEOUT:
            break;
        case CM_AMQP_FRAME:
            if (ck_other_frame(&frame) != 0)
                return -1;
            break;
        case CM_AMQP_FAILED:
            fprintf(stderr, "rpc-ceiling: reading: %s\n",
                    amqp_error_string2(error));
            return -1;
        }
    }
    b->err_lost = b->busy;
    return 0;
}

/* --- results ------------------------------------------------------------- */

static int ck_cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of v[0..len) (sorted); 0 when empty. */
static uint32_t ck_percentile(const uint32_t *v, size_t len, double p) {
    size_t rank;

    if (len == 0)
        return 0;
    rank = (size_t)(p / 100.0 * (double)len + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > len)
        rank = len;
    return v[rank - 1];
}

/* The samples as wrk reports them: wrk corrects for coordinated omission by
 * adding, for every latency v of at least twice the mean interval e between
 * two calls of one connection, the samples v-e, v-2e, ... down to e (the
 * calls a stall kept from being sent).  Sorted; the caller frees *out.
 * Returns -1 when out of memory.  Their number is at most twice len. */
static int ck_wrk_samples(const ck_bench_t *b, double secs, uint32_t **out,
                          size_t *out_len) {
    uint64_t per_conn = b->lat_len / b->cfg->inflight;
    uint64_t e = per_conn ? (uint64_t)(secs * 1e6) / per_conn : 0;
    size_t i, len = b->lat_len, cap = b->lat_len;
    uint32_t *v;

    if (e > 0)
        for (i = 0; i < b->lat_len; i++)
            if (b->lat_us[i] >= 2 * e)
                cap += (size_t)((b->lat_us[i] - 1) / e);
    v = malloc((cap ? cap : 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    memcpy(v, b->lat_us, b->lat_len * sizeof(*v));
    for (i = 0; e > 0 && i < b->lat_len; i++) {
        uint64_t m;

        if (b->lat_us[i] < 2 * e)
            continue;
        for (m = b->lat_us[i] - e; m > e && len < cap; m -= e)
            v[len++] = (uint32_t)m;
    }
    qsort(v, len, sizeof(*v), ck_cmp_u32);
    *out = v;
    *out_len = len;
    return 0;
}

static void ck_report(ck_bench_t *b) {
    uint64_t errors = b->err_corr + b->err_body + b->err_worker + b->err_lost;
    /* As wrk counts: the calls answered within the window, over the window
     * (with --calls, the window ends at the last answer). */
    int by_calls = b->cfg->calls > 0;
    int64_t end = by_calls ? b->last_reply_ns : b->measure_end_ns;
    uint64_t calls = by_calls ? b->ok : b->ok_in_time;
    double secs = end > b->measure_start_ns
                      ? (double)(end - b->measure_start_ns) / 1e9
                      : 0.0;
    uint32_t *w = NULL;
    size_t wlen = 0;

    qsort(b->lat_us, b->lat_len, sizeof(*b->lat_us), ck_cmp_u32);
    if (ck_wrk_samples(b, secs, &w, &wlen) != 0)
        wlen = 0;
    printf("%s inflight=%u n=%" PRIu32 " calls=%" PRIu64 " errors=%" PRIu64
           " secs=%.2f calls_per_s=%.0f p50_us=%" PRIu32 " p90_us=%" PRIu32
           " p99_us=%" PRIu32 " max_us=%" PRIu32 " wrk_p50_us=%" PRIu32
           " wrk_p99_us=%" PRIu32 "\n",
           b->cfg->label, b->cfg->inflight, b->cfg->n, calls, errors, secs,
           secs > 0 ? (double)calls / secs : 0.0,
           ck_percentile(b->lat_us, b->lat_len, 50),
           ck_percentile(b->lat_us, b->lat_len, 90),
           ck_percentile(b->lat_us, b->lat_len, 99),
           b->lat_len ? b->lat_us[b->lat_len - 1] : 0,
           ck_percentile(w, wlen, 50), ck_percentile(w, wlen, 99));
    free(w);
    if (errors > 0)
        fprintf(stderr,
                "rpc-ceiling: errors: unknown_correlation_id=%" PRIu64
                " bad_body=%" PRIu64 " worker_error=%" PRIu64
                " no_reply=%" PRIu64 "\n",
                b->err_corr, b->err_body, b->err_worker, b->err_lost);
}

/* F(n) in decimal when it fits 64 bits (n <= 93), else "". */
static void ck_expected(uint32_t n, char *out, size_t size) {
    uint64_t a = 0, c = 1, t;
    uint32_t i;

    out[0] = '\0';
    if (n > 93)
        return;
    for (i = 0; i < n; i++) {
        t = a + c;
        a = c;
        c = t;
    }
    snprintf(out, size, "%" PRIu64, a);
}

int main(int argc, char **argv) {
    ck_config_t cfg;
    ck_bench_t b;
    int rc = 1, usable = 0;

    switch (ck_config_load(&cfg, argc, argv)) {
    case 0:
        break;
    case 1:
        return 0;
    default:
        return 2;
    }
    memset(&b, 0, sizeof(b));
    b.cfg = &cfg;
    cm_amqp_content_init(&b.content, CK_REPLY_MAX);
    snprintf(b.body, sizeof(b.body), "%" PRIu32, cfg.n);
    ck_expected(cfg.n, b.expect, sizeof(b.expect));
    b.slots = calloc(cfg.inflight, sizeof(*b.slots));
    if (b.slots == NULL) {
        fprintf(stderr, "rpc-ceiling: out of memory\n");
        goto out;
    }
    if (ck_connect(&b) != 0 || ck_run(&b) != 0)
        goto out;
    usable = 1;
    ck_report(&b);
    rc = b.ok > 0 && b.ok == b.lat_len &&
                 b.err_corr + b.err_body + b.err_worker + b.err_lost == 0
             ? 0
             : 1;
out:
    if (b.conn != NULL) {
        if (usable)
            amqp_connection_close(b.conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(b.conn);
    }
    cm_amqp_content_reset(&b.content);
    free(b.slots);
    free(b.lat_us);
    return rc;
}
