/* link.c - the AMQP connection and what comes in on it.  Only the AMQP
 * thread calls it.  Once connected it never waits for the broker: the
 * consumer count runs as an asynchronous state machine on channel 2. */
#include "link.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <assert.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "amqp_read.h"
#include "amqp_text.h"
#include "clock.h"
#include "log.h"
#include "urls.h"

#define CH_RPC   1 /* the first publishing channel */
#define CH_CHECK 2
/* Later publishing channels take numbers from here up, round. */
#define CH_FIRST_NEW       3
#define CH_LAST_NEW        1000
#define CONNECT_TIMEOUT_MS 2000
#define RPC_TIMEOUT_MS     2000

/* A new publishing channel comes up in three asynchronous steps. */
enum { NEW_OPENING, NEW_CONSUMING, NEW_SELECTING };

enum {
    CHECK_CLOSED,  /* CH_CHECK is not open */
    CHECK_OPENING, /* channel.open sent */
    CHECK_IDLE,    /* open; the next check when watch says */
    CHECK_WAITING, /* queue.declare (passive) sent */
};

struct gw_link {
    const gw_config_t *cfg;
    gw_publisher_t *pub;
    gw_watch_t *watch;
    cm_urls_t urls; /* shuffled once; read-only after gw_link_new */
    size_t cur;     /* the node connected to, or tried next */
    amqp_connection_state_t conn; /* NULL while closed */
    int check;                    /* CHECK_* state of CH_CHECK */
    int check_slot;               /* the watch slot being counted */
    uint16_t pub_ch;              /* publishing (and replies) now */
    uint16_t new_ch;              /* the one being opened, 0: none */
    int new_state;                /* NEW_* of new_ch */
    uint16_t ch_seq;              /* the last number given to new_ch */
    /* publishing channels open (CH_FIRST_NEW..CH_LAST_NEW), by number */
    uint8_t in_use[(CH_LAST_NEW + 8) / 8];
    /* gw_link_open: when the attempt must be over (INT64_MAX: each step
     * has its own CONNECT_TIMEOUT_MS / RPC_TIMEOUT_MS only) */
    int64_t open_deadline_ms;
    /* Replies and returns, put together with bodies up to
     * cfg->max_reply_bytes; what the last event points into, released on
     * the next poll. */
    cm_amqp_content_t content;
};

/* --- helpers ------------------------------------------------------------- */

/* Logs a failed synchronous call.  Returns whether it failed. */
static int failed(gw_link_t *link, const char *what) {
    char buf[256];
    amqp_rpc_reply_t r = amqp_get_rpc_reply(link->conn);

    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_error");
        cm_log_kv(&l, "op", "%s", what);
        cm_log_kv(&l, "error", "%s", cm_amqp_reply_text(r, buf, sizeof(buf)));
        cm_log_end(&l);
    }
    return 1;
}

/* rabbitmq-c may write (heartbeats) in any call: the batch must be out. */
static void assert_no_batch(const gw_link_t *link) {
    assert(gw_publisher_batched(link->pub) == 0);
    (void)link;
}

static struct timeval ms_timeval(int64_t ms) {
    return (struct timeval){(time_t)(ms / 1000),
                            (suseconds_t)(ms % 1000) * 1000};
}

/* How long the next step of gw_link_open may wait: per_step_ms, or less
 * when the attempt's deadline is nearer; 0 when it has passed. */
static int64_t step_ms(const gw_link_t *link, int64_t per_step_ms) {
    int64_t left;

    if (link->open_deadline_ms == INT64_MAX)
        return per_step_ms;
    left = link->open_deadline_ms - cm_now_ms();
    if (left <= 0)
        return 0;
    return left < per_step_ms ? left : per_step_ms;
}

/* Gives rabbitmq-c's next synchronous step (the handshake, or a method
 * and its answer) what is left of the attempt.  Returns -1 (logged) when
 * nothing is. */
static int step_timeouts(gw_link_t *link, const char *what) {
    int64_t ms = step_ms(link, RPC_TIMEOUT_MS);
    struct timeval tv = ms_timeval(ms);

    if (ms == 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_connect_cut");
        cm_log_kv(&l, "op", "%s", what);
        cm_log_kv(&l, "reason", "%s", "calls wait for this attempt");
        cm_log_end(&l);
        return -1;
    }
    amqp_set_handshake_timeout(link->conn, &tv);
    amqp_set_rpc_timeout(link->conn, &tv);
    return 0;
}

static void message_event(gw_link_event_t *ev, const cm_amqp_msg_t *m) {
    const amqp_basic_properties_t *p = &m->message.properties;

    memset(ev, 0, sizeof(*ev));
    ev->kind =
        m->method == AMQP_BASIC_RETURN_METHOD ? GW_LINK_RETURN : GW_LINK_REPLY;
    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        ev->correlation_id = p->correlation_id.bytes;
        ev->correlation_id_len = p->correlation_id.len;
    }
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        ev->content_type = p->content_type.bytes;
        ev->content_type_len = p->content_type.len;
    }
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        ev->headers = &p->headers;
    ev->body = m->message.body.bytes;
    ev->body_len = m->message.body.len;
    ev->body_size = m->body_size;
    ev->oversized = m->oversized;
}

void gw_link_event_header(const gw_link_event_t *ev, const char *name,
                          gw_hval_t *out) {
    const amqp_table_t *t = ev->headers;
    size_t len = strlen(name);
    int i;

    memset(out, 0, sizeof(*out));
    if (t == NULL)
        return;
    for (i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        const amqp_field_value_t *v = &e->value;

        /* header names are case-insensitive (a worker may send X-Cache) */
        if (e->key.len != len || strncasecmp(e->key.bytes, name, len) != 0)
            continue;
        out->kind = GW_HVAL_INT;
        switch (v->kind) {
        case AMQP_FIELD_KIND_I8:
            out->i = v->value.i8;
            break;
        case AMQP_FIELD_KIND_U8:
            out->i = v->value.u8;
            break;
        case AMQP_FIELD_KIND_I16:
            out->i = v->value.i16;
            break;
        case AMQP_FIELD_KIND_U16:
            out->i = v->value.u16;
            break;
        case AMQP_FIELD_KIND_I32:
            out->i = v->value.i32;
            break;
        case AMQP_FIELD_KIND_U32:
            out->i = v->value.u32;
            break;
        case AMQP_FIELD_KIND_I64:
            out->i = v->value.i64;
            break;
        case AMQP_FIELD_KIND_U64:
            if (v->value.u64 > INT64_MAX) {
                out->kind = GW_HVAL_OTHER;
                break;
            }
            out->i = (int64_t)v->value.u64;
            break;
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
            out->kind = GW_HVAL_STR;
            out->s = v->value.bytes.bytes;
            out->len = v->value.bytes.len;
            break;
        default:
            out->kind = GW_HVAL_OTHER;
            break;
        }
        return;
    }
}

/* Returns changed (what callers see of slot changed), with *ev filled
 * then, if given. */
static int consumers_event(int changed, int slot, gw_link_event_t *ev) {
    if (changed && ev != NULL) {
        memset(ev, 0, sizeof(*ev));
        ev->kind = GW_LINK_CONSUMERS;
        ev->slot = slot;
    }
    return changed;
}

/* Records a count of slot (missing: no such queue).  Returns 1 with *ev
 * filled when callers see something new, else 0. */
static int counted(gw_link_t *link, int slot, int n, int missing,
                   gw_link_event_t *ev) {
    return consumers_event(
        gw_watch_record(link->watch, (size_t)slot, n, missing, cm_now_ms()),
        slot, ev);
}

/* The broker closed CH_CHECK over a read of slot: 404 is a missing queue
 * or exchange (nobody); any other code (403, 405: an exclusive queue of
 * another connection) says nothing of who consumes, so the count is
 * unknown and calls are published.  Returns what counted() returns. */
static int check_refused(gw_link_t *link, int slot, unsigned code,
                         amqp_bytes_t text, gw_link_event_t *ev) {
    const char *name = gw_watch_name(link->watch, (size_t)slot);
    cm_log_t l;

    if (code == AMQP_NOT_FOUND)
        return counted(link, slot, 0, 1, ev);
    cm_log_begin(&l, CM_LOG_WARN, "amqp_check_refused");
    cm_log_str(&l, "name", name, strlen(name));
    cm_log_kv(&l, "code", "%u", code);
    cm_log_str(&l, "reason", text.bytes, text.len);
    cm_log_end(&l);
    return consumers_event(
        gw_watch_refused(link->watch, (size_t)slot, cm_now_ms()), slot, ev);
}

/* Answers the broker's close of CH_CHECK.  Returns -1 when the connection
 * failed. */
static int check_closed(gw_link_t *link) {
    amqp_channel_close_ok_t close_ok = {0};

    link->check = CHECK_CLOSED;
    return amqp_send_method(link->conn, CH_CHECK, AMQP_CHANNEL_CLOSE_OK_METHOD,
                            &close_ok) == AMQP_STATUS_OK
               ? 0
               : -1;
}

/* One synchronous count of slot.  Returns 0, or -1 when the connection
 * failed. */
static int count_one(gw_link_t *link, size_t slot) {
    amqp_bytes_t name = amqp_cstring_bytes(gw_watch_name(link->watch, slot));
    amqp_rpc_reply_t r;

    if (step_timeouts(link, "declare") != 0)
        return -1;
    if (gw_watch_kind(link->watch, slot) == GW_WATCH_EXCHANGE) {
        if (amqp_exchange_declare(link->conn, CH_CHECK, name,
                                  amqp_cstring_bytes("direct"), 1, 0, 0, 0,
                                  amqp_empty_table) != NULL) {
            counted(link, (int)slot, 1, 0, NULL);
            return 0;
        }
    } else {
        amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            link->conn, CH_CHECK, name, 1, 0, 0, 0, amqp_empty_table);

        if (ok != NULL) {
            counted(link, (int)slot, (int)ok->consumer_count, 0, NULL);
            return 0;
        }
    }
    r = amqp_get_rpc_reply(link->conn);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *m = r.reply.decoded;

        check_refused(link, (int)slot, m->reply_code, m->reply_text, NULL);
        if (check_closed(link) != 0 || step_timeouts(link, "channel.open") ||
            amqp_channel_open(link->conn, CH_CHECK) == NULL) {
            failed(link, "channel.open");
            return -1;
        }
        link->check = CHECK_IDLE;
        return 0;
    }
    failed(link, "declare");
    return -1;
}

/* The first consumer count of every watched queue, synchronously, while
 * connecting: calls are admitted only once each is known.  A zero of a
 * queue that had no consumers before is read again GW_WATCH_CONFIRM_MS
 * later (watch.h), so that a queue nobody consumes answers no_server from
 * the first call on; but only when the attempt has the time (calls held
 * for a reconnect must not wait a second for it): else the zero stays
 * unconfirmed and the watch reads it again later, as always.  A queue
 * that had consumers when the connection went is not waited for either:
 * reconnecting during a node's restart, its zero is most likely the
 * election of a new queue leader, and the calls published meanwhile are
 * served once it is over. */
static int count_now(gw_link_t *link) {
    size_t slot, n = gw_watch_count(link->watch);
    int again = 0;

    if (step_timeouts(link, "channel.open") != 0 ||
        amqp_channel_open(link->conn, CH_CHECK) == NULL) {
        failed(link, "channel.open");
        return -1;
    }
    link->check = CHECK_IDLE;
    for (slot = 0; slot < n; slot++) {
        if (count_one(link, slot) != 0)
            return -1;
        again |= gw_watch_kind(link->watch, slot) == GW_WATCH_QUEUE &&
                 gw_watch_consumers(link->watch, slot) == 0 &&
                 !gw_watch_nobody(link->watch, slot) &&
                 !gw_watch_had_some(link->watch, slot);
    }
    if (!again || step_ms(link, GW_WATCH_CONFIRM_MS + RPC_TIMEOUT_MS) <
                      GW_WATCH_CONFIRM_MS + RPC_TIMEOUT_MS)
        return 0;
    /* counted from the last read: then every zero has lasted long enough */
    poll(NULL, 0, GW_WATCH_CONFIRM_MS);
    for (slot = 0; slot < n; slot++)
        if (gw_watch_consumers(link->watch, slot) == 0 &&
            !gw_watch_nobody(link->watch, slot) &&
            !gw_watch_had_some(link->watch, slot) && count_one(link, slot) != 0)
            return -1;
    return 0;
}

/* Sends the next step of the consumer count without waiting; the answer
 * arrives in on_method.  Returns -1 when the connection failed. */
static int count_start(gw_link_t *link) {
    amqp_channel_open_t open = {amqp_empty_bytes};
    amqp_queue_declare_t declare = {0};
    amqp_exchange_declare_t xdeclare = {0};
    int64_t next;
    int status, slot;

    slot = gw_watch_due(link->watch, cm_now_ms(), &next);
    if (slot < 0)
        return 0;
    if (link->check == CHECK_CLOSED) {
        link->check = CHECK_OPENING;
        status = amqp_send_method(link->conn, CH_CHECK,
                                  AMQP_CHANNEL_OPEN_METHOD, &open);
    } else if (gw_watch_kind(link->watch, (size_t)slot) == GW_WATCH_EXCHANGE) {
        /* passive: the type is not compared */
        xdeclare.exchange =
            amqp_cstring_bytes(gw_watch_name(link->watch, (size_t)slot));
        xdeclare.type = amqp_cstring_bytes("direct");
        xdeclare.passive = 1;
        xdeclare.arguments = amqp_empty_table;
        link->check = CHECK_WAITING;
        link->check_slot = slot;
        status = amqp_send_method(link->conn, CH_CHECK,
                                  AMQP_EXCHANGE_DECLARE_METHOD, &xdeclare);
    } else {
        declare.queue =
            amqp_cstring_bytes(gw_watch_name(link->watch, (size_t)slot));
        declare.passive = 1;
        declare.arguments = amqp_empty_table;
        link->check = CHECK_WAITING;
        link->check_slot = slot;
        status = amqp_send_method(link->conn, CH_CHECK,
                                  AMQP_QUEUE_DECLARE_METHOD, &declare);
    }
    return status == AMQP_STATUS_OK ? 0 : -1;
}

/* --- connecting ---------------------------------------------------------- */

gw_link_t *gw_link_new(const gw_config_t *cfg, gw_publisher_t *pub,
                       gw_watch_t *watch) {
    gw_link_t *link = calloc(1, sizeof(*link));
    char why[CM_URL_MASKED_MAX + 128];

    if (link == NULL)
        return NULL;
    link->cfg = cfg;
    link->pub = pub;
    link->watch = watch;
    cm_amqp_content_init(&link->content, cfg->max_reply_bytes);
    if (cm_urls_parse(&link->urls, cfg->amqp_url, why, sizeof(why)) != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "bad_amqp_url");
        cm_log_kv(&l, "error", "%s", why); /* passwords masked */
        cm_log_end(&l);
        free(link);
        return NULL;
    }
    /* Each gateway starts on a node of its own choosing, so that several
     * spread over the cluster. */
    cm_urls_shuffle(&link->urls, cm_random64());
    return link;
}

void gw_link_free(gw_link_t *link) {
    if (link == NULL)
        return;
    gw_link_close(link, 0);
    cm_urls_free(&link->urls);
    free(link);
}

/* Logs in asking for connection.blocked, so a broker alarm turns into fast
 * 503s instead of publishes that hang. */
/* The node being connected to, or connected to. */
static const cm_url_t *node(const gw_link_t *link) {
    return &link->urls.url[link->cur];
}

/* The next connection goes to the next node of the list. */
static void next_node(gw_link_t *link) {
    link->cur = (link->cur + 1) % link->urls.n;
}

static int login(gw_link_t *link) {
    amqp_table_entry_t caps[2], props[2];
    amqp_table_t props_table;
    amqp_rpc_reply_t r;
    char buf[256];

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
        link->conn, node(link)->info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE,
        (int)link->cfg->heartbeat_s, &props_table, AMQP_SASL_METHOD_PLAIN,
        node(link)->info.user, node(link)->info.password);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_login_failed");
        cm_log_kv(&l, "node", "%s", node(link)->node);
        cm_log_kv(&l, "error", "%s", cm_amqp_reply_text(r, buf, sizeof(buf)));
        cm_log_end(&l);
    }
    return -1;
}

int gw_link_open(gw_link_t *link, int64_t deadline_ms) {
    struct timeval tv, rpc_tv = ms_timeval(RPC_TIMEOUT_MS);
    const struct amqp_connection_info *url = &node(link)->info;
    amqp_socket_t *sock;
    int status;

    link->open_deadline_ms = deadline_ms;
    tv = ms_timeval(step_ms(link, CONNECT_TIMEOUT_MS));
    link->conn = amqp_new_connection();
    if (link->conn == NULL)
        return -1;
    sock = url->ssl ? amqp_ssl_socket_new(link->conn)
                    : amqp_tcp_socket_new(link->conn);
    if (sock == NULL)
        goto fail;
    if (url->ssl && amqp_ssl_socket_set_cacert(sock, link->cfg->amqp_cacert) !=
                        AMQP_STATUS_OK) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_cacert_unreadable");
        cm_log_kv(&l, "path", "%s", link->cfg->amqp_cacert);
        cm_log_end(&l);
    }
    status = amqp_socket_open_noblock(sock, url->host, url->port, &tv);
    if (status != AMQP_STATUS_OK) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_connect_failed");
        cm_log_kv(&l, "node", "%s", node(link)->node);
        cm_log_kv(&l, "error", "%s", amqp_error_string2(status));
        cm_log_end(&l);
        goto fail;
    }
    if (step_timeouts(link, "login") != 0 || login(link) != 0)
        goto fail;
    if (step_timeouts(link, "channel.open") != 0 ||
        amqp_channel_open(link->conn, CH_RPC) == NULL ||
        failed(link, "channel.open"))
        goto fail;
    /* Direct reply-to: consume before the first publish, no-ack. */
    if (step_timeouts(link, "basic.consume") != 0 ||
        amqp_basic_consume(link->conn, CH_RPC, amqp_cstring_bytes(GW_REPLY_TO),
                           amqp_empty_bytes, 0, 1, 0,
                           amqp_empty_table) == NULL ||
        failed(link, "basic.consume"))
        goto fail;
    /* Confirms: a refused publish is answered at once (503), and the
     * broker tells us when it has taken each one. */
    if (link->cfg->confirms &&
        (step_timeouts(link, "confirm.select") != 0 ||
         amqp_confirm_select(link->conn, CH_RPC) == NULL ||
         failed(link, "confirm.select")))
        goto fail;
    link->check = CHECK_CLOSED;
    gw_watch_reset(link->watch);
    if (count_now(link) != 0)
        goto fail;
    /* Connected: later synchronous calls (a polite close) get the usual
     * time. */
    amqp_set_rpc_timeout(link->conn, &rpc_tv);
    link->pub_ch = CH_RPC;
    link->new_ch = 0;
    memset(link->in_use, 0, sizeof(link->in_use));
    gw_publisher_attach(link->pub, link->conn, CH_RPC, url->ssl);
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "amqp_connected");
        cm_log_kv(&l, "node", "%s", node(link)->node);
        cm_log_kv(&l, "url", "%s", node(link)->masked);
        cm_log_kv(&l, "vhost", "%s", url->vhost);
        cm_log_end(&l);
    }
    return 0;
fail:
    amqp_destroy_connection(link->conn);
    link->conn = NULL;
    next_node(link);
    return -1;
}

void gw_link_close(gw_link_t *link, int polite) {
    cm_amqp_content_reset(&link->content); /* a reply half read too */
    gw_publisher_detach(link->pub);
    if (link->conn == NULL)
        return;
    if (polite)
        amqp_connection_close(link->conn, AMQP_REPLY_SUCCESS);
    else
        next_node(link); /* lost: this node may be the trouble */
    amqp_destroy_connection(link->conn);
    link->conn = NULL;
}

static int in_use(const gw_link_t *link, uint16_t ch) {
    return ch >= CH_FIRST_NEW && ch <= CH_LAST_NEW &&
           (link->in_use[ch / 8] & (1u << (ch % 8)));
}

static void mark(gw_link_t *link, uint16_t ch, int used) {
    if (ch < CH_FIRST_NEW || ch > CH_LAST_NEW)
        return;
    if (used)
        link->in_use[ch / 8] |= (uint8_t)(1u << (ch % 8));
    else
        link->in_use[ch / 8] &= (uint8_t) ~(1u << (ch % 8));
}

int gw_link_rotate(gw_link_t *link) {
    amqp_channel_open_t open = {amqp_empty_bytes};
    uint16_t ch = link->ch_seq;

    if (link->conn == NULL || link->new_ch != 0)
        return 0; /* one at a time */
    assert_no_batch(link);
    /* The next number not in use; a retired channel's number comes round
     * again only after CH_LAST_NEW - CH_FIRST_NEW others. */
    do
        ch = ch < CH_FIRST_NEW || ch >= CH_LAST_NEW ? CH_FIRST_NEW : ch + 1;
    while (in_use(link, ch) && ch != link->ch_seq);
    if (in_use(link, ch))
        return -1; /* every number taken: the caller starts over */
    mark(link, ch, 1);
    link->ch_seq = ch;
    link->new_ch = ch;
    link->new_state = NEW_OPENING;
    return amqp_send_method(link->conn, ch, AMQP_CHANNEL_OPEN_METHOD, &open) ==
                   AMQP_STATUS_OK
               ? 0
               : -1;
}

int gw_link_retire(gw_link_t *link, uint16_t channel) {
    amqp_channel_close_t close = {0};

    if (link->conn == NULL || channel == 0 || channel == link->pub_ch)
        return 0;
    assert_no_batch(link);
    mark(link, channel, 0);
    close.reply_code = AMQP_REPLY_SUCCESS;
    close.reply_text = amqp_cstring_bytes("retired");
    return amqp_send_method(link->conn, channel, AMQP_CHANNEL_CLOSE_METHOD,
                            &close) == AMQP_STATUS_OK
               ? 0
               : -1;
}

uint16_t gw_link_channel(const gw_link_t *link) {
    return link->conn != NULL ? link->pub_ch : 0;
}

int gw_link_rotating(const gw_link_t *link) {
    return link->new_ch != 0;
}

size_t gw_link_nodes(const gw_link_t *link) {
    return link->urls.n;
}

int gw_link_is_open(const gw_link_t *link) {
    return link->conn != NULL;
}

const char *gw_link_node(const gw_link_t *link) {
    return node(link)->node;
}

/* --- what comes in ------------------------------------------------------- */

/* The new publishing channel is ready: publishing moves there.  Returns
 * 1 with the ROTATED event. */
static int new_channel_ready(gw_link_t *link, gw_link_event_t *ev) {
    memset(ev, 0, sizeof(*ev));
    ev->kind = GW_LINK_ROTATED;
    ev->channel = link->new_ch;
    ev->old_channel = link->pub_ch; /* 0: it was lost */
    link->pub_ch = link->new_ch;
    link->new_ch = 0;
    gw_publisher_attach(link->pub, link->conn, link->pub_ch,
                        node(link)->info.ssl);
    return 1;
}

/* Handles a method that is not a delivery.  Returns 1 with *ev filled, 0
 * when it makes no event, -1 when the connection must be dropped (the
 * reason in why). */
static int on_method(gw_link_t *link, const amqp_frame_t *f,
                     gw_link_event_t *ev, char *why, size_t why_size) {
    switch (f->payload.method.id) {
    case AMQP_CONNECTION_BLOCKED_METHOD:
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        memset(ev, 0, sizeof(*ev));
        ev->kind = f->payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD
                       ? GW_LINK_BLOCKED
                       : GW_LINK_UNBLOCKED;
        return 1;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *m = f->payload.method.decoded;
        amqp_channel_close_ok_t ok = {0};

        if (f->channel == CH_CHECK) { /* 404: the queue does not exist */
            int changed = link->check == CHECK_WAITING &&
                          check_refused(link, link->check_slot, m->reply_code,
                                        m->reply_text, ev);

            return check_closed(link) == 0 ? changed : -1;
        }
        snprintf(why, why_size, "channel %u closed by broker: %u %.*s",
                 f->channel, m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        {
            cm_log_t l;

            cm_log_begin(&l, CM_LOG_WARN, "amqp_channel_closed");
            cm_log_kv(&l, "reason", "%s", why);
            cm_log_end(&l);
        }
        if (amqp_send_method(link->conn, f->channel,
                             AMQP_CHANNEL_CLOSE_OK_METHOD,
                             &ok) != AMQP_STATUS_OK)
            return -1;
        /* One channel, not the connection: its calls fail, the others go
         * on, and a lost publishing channel is replaced at once. */
        mark(link, f->channel, 0);
        if (f->channel == link->new_ch) {
            link->new_ch = 0;
            return 0;
        }
        memset(ev, 0, sizeof(*ev));
        ev->kind = GW_LINK_CHANNEL_LOST;
        ev->channel = f->channel;
        ev->closed = 1;
        if (f->channel == link->pub_ch) {
            link->pub_ch = 0; /* nothing is published until the new one */
            gw_publisher_detach(link->pub);
            if (gw_link_rotate(link) != 0)
                return -1;
        }
        return 1;
    }
    case AMQP_CHANNEL_CLOSE_OK_METHOD: /* one we retired */
        return 0;
    case AMQP_CHANNEL_OPEN_OK_METHOD:
        if (f->channel == CH_CHECK && link->check == CHECK_OPENING) {
            link->check = CHECK_IDLE;
            return count_start(link) == 0 ? 0 : -1;
        }
        if (f->channel == link->new_ch && link->new_state == NEW_OPENING) {
            amqp_basic_consume_t consume = {0};

            /* Direct reply-to: consume before the first publish, no-ack. */
            consume.queue = amqp_cstring_bytes(GW_REPLY_TO);
            consume.no_ack = 1;
            consume.arguments = amqp_empty_table;
            link->new_state = NEW_CONSUMING;
            return amqp_send_method(link->conn, f->channel,
                                    AMQP_BASIC_CONSUME_METHOD,
                                    &consume) == AMQP_STATUS_OK
                       ? 0
                       : -1;
        }
        return 0;
    case AMQP_BASIC_CONSUME_OK_METHOD:
        if (f->channel == link->new_ch && link->new_state == NEW_CONSUMING) {
            amqp_confirm_select_t select = {0};

            if (!link->cfg->confirms)
                return new_channel_ready(link, ev);
            link->new_state = NEW_SELECTING;
            return amqp_send_method(link->conn, f->channel,
                                    AMQP_CONFIRM_SELECT_METHOD,
                                    &select) == AMQP_STATUS_OK
                       ? 0
                       : -1;
        }
        return 0;
    case AMQP_CONFIRM_SELECT_OK_METHOD:
        if (f->channel == link->new_ch && link->new_state == NEW_SELECTING)
            return new_channel_ready(link, ev);
        return 0;
    case AMQP_QUEUE_DECLARE_OK_METHOD:
        if (f->channel == CH_CHECK && link->check == CHECK_WAITING) {
            amqp_queue_declare_ok_t *ok = f->payload.method.decoded;

            link->check = CHECK_IDLE;
            return counted(link, link->check_slot, (int)ok->consumer_count, 0,
                           ev);
        }
        return 0;
    case AMQP_EXCHANGE_DECLARE_OK_METHOD:
        if (f->channel == CH_CHECK && link->check == CHECK_WAITING) {
            link->check = CHECK_IDLE;
            return counted(link, link->check_slot, 1, 0, ev);
        }
        return 0;
    case AMQP_BASIC_ACK_METHOD:
    case AMQP_BASIC_NACK_METHOD:
        memset(ev, 0, sizeof(*ev));
        if (f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *m = f->payload.method.decoded;

            ev->kind = GW_LINK_ACK;
            ev->tag = m->delivery_tag;
            ev->multiple = m->multiple;
        } else {
            amqp_basic_nack_t *m = f->payload.method.decoded;

            ev->kind = GW_LINK_NACK;
            ev->tag = m->delivery_tag;
            ev->multiple = m->multiple;
        }
        ev->channel = f->channel;
        return f->channel != CH_CHECK;
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *m = f->payload.method.decoded;
        amqp_connection_close_ok_t ok = {0};

        snprintf(why, why_size, "connection closed by broker: %u %.*s",
                 m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        amqp_send_method(link->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return -1;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
        cm_log_t l;

        /* Replies to that channel's calls cannot come any more: as if the
         * channel were lost (and retired by the caller). */
        cm_log_begin(&l, CM_LOG_WARN, "amqp_reply_consumer_cancelled");
        cm_log_kv(&l, "channel", "%u", f->channel);
        cm_log_end(&l);
        memset(ev, 0, sizeof(*ev));
        ev->kind = GW_LINK_CHANNEL_LOST;
        ev->channel = f->channel;
        if (f->channel == link->pub_ch) {
            link->pub_ch = 0;
            gw_publisher_detach(link->pub);
            if (gw_link_rotate(link) != 0)
                return -1;
        }
        return 1;
    }
    default:
        return 0;
    }
}

int gw_link_poll(gw_link_t *link, gw_link_event_t *ev, char *why,
                 size_t why_size) {
    struct timeval zero = {0, 0};
    const cm_amqp_msg_t *m;
    amqp_frame_t frame;
    int rc, error;

    assert_no_batch(link);
    snprintf(why, why_size, "lost the connection to RabbitMQ");
    for (;;) {
        /* Never waits: a reply whose body is still on its way is resumed
         * by the next poll, and calls are answered meanwhile. */
        switch (cm_amqp_read(link->conn, &link->content, &zero, &m, &frame,
                             &error)) {
        case CM_AMQP_MESSAGE:
            message_event(ev, m);
            return 1;
        case CM_AMQP_TIMEOUT:
            return 0;
        case CM_AMQP_FAILED: {
            cm_log_t l;

            cm_log_begin(&l, CM_LOG_WARN, "amqp_read_failed");
            cm_log_kv(&l, "error", "%s", amqp_error_string2(error));
            cm_log_end(&l);
            return -1;
        }
        case CM_AMQP_FRAME:
            break;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue; /* a heartbeat or a frame type we do not know */
        rc = on_method(link, &frame, ev, why, why_size);
        if (rc != 0)
            return rc;
    }
}

int gw_link_tick(gw_link_t *link, int64_t now_ms) {
    assert_no_batch(link);
    if (link->check == CHECK_OPENING || link->check == CHECK_WAITING)
        return 0;
    return count_start(link);
}

int64_t gw_link_next_tick_ms(const gw_link_t *link) {
    int64_t next;

    if (link->conn == NULL || link->check == CHECK_OPENING ||
        link->check == CHECK_WAITING)
        return INT64_MAX;
    gw_watch_due(link->watch, INT64_MIN, &next);
    return next;
}

int gw_link_fd(const gw_link_t *link) {
    return link->conn != NULL ? amqp_get_sockfd(link->conn) : -1;
}

void gw_link_release(gw_link_t *link) {
    cm_amqp_content_release(&link->content);
    if (link->conn != NULL)
        amqp_maybe_release_buffers(link->conn);
}

int gw_link_has_input(const gw_link_t *link) {
    return link->conn != NULL && (amqp_frames_enqueued(link->conn) ||
                                  amqp_data_in_buffer(link->conn));
}
