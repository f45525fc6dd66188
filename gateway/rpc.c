/* rpc.c - the AMQP thread: admits calls, publishes them, matches replies,
 * enforces deadlines and reconnects.  It owns the link (the only code that
 * touches the RabbitMQ connection), the publisher and the pending table.
 *
 * Other threads talk to it through gw_rpc_admit and gw_rpc_link (atomics
 * only) and gw_rpc_submit (the mailbox). */
#include "rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ids.h"
#include "link.h"
#include "log.h"
#include "mailbox.h"
#include "metrics.h"
#include "pending.h"
#include "publisher.h"
#include "reply.h"
#include "unconf.h"
#include "urls.h"
#include "watch.h"

/* Events read per loop turn before new submissions get a look in. */
#define READ_BATCH 512
/* The socket is read at least this often even when poll said nothing came
 * (see sock_ready): rabbitmq-c sends and checks heartbeats only inside
 * its own calls. */
#define READ_AT_LEAST_MS 100
/* The publisher's stall check: at least this often while calls start. */
#define STALL_CHECK_MS 10
/* Log lines about dropped replies per second, at most: a worker (or
 * anyone who can publish to our reply queue) must not be able to flood the
 * log.  The rest are counted, and summed up in one line per second. */
#define DROP_LOG_PER_S 20
/* What callers are told when the connection goes. */
#define LOST "lost the connection to RabbitMQ"
/* After a connection is lost, new calls wait this long for the next one
 * (to another node: usually milliseconds) instead of getting 503 at
 * once; a failover is then a pause, not a burst of errors.  Only with
 * another node to go to: one node that is gone is not back so soon. */
#define HOLD_MS 1000
/* While calls are held, a connection attempt is cut at the earliest held
 * deadline or the hold's end (link.h), but given at least this long: a
 * healthy node answers in milliseconds, and one cut too soon is skipped
 * for the next. */
#define ATTEMPT_MIN_MS 200
/* A raw reply's header value is at most this long (the HTTP side's whole
 * header section is smaller). */
#define REPLY_HEADER_MAX 4096

/* Publishing channels at once: the one in use, and old ones kept open
 * for the replies of their calls (link.h, "Publishing channels"). */
#define CHANNELS_MAX 8
/* A publish the broker has not confirmed after this long makes us move
 * to a new channel; so does a nack, when none of the last CONFIRM_WINDOW
 * confirms on the channel was an ack (a channel that points at a dead
 * queue leader nacks everything; a full queue with x-overflow
 * reject-publish nacks its own messages on a channel that acks the
 * others: back pressure, not a bad channel).  The moves are spaced
 * ROTATE_MIN_MS apart at first, doubling to ROTATE_MAX_MS while the new
 * channels are no better (a channel opened too soon after a node died
 * keeps pointing at the dead queue leader until the election is over);
 * acks with no nack among them on the channel in use start over. */
#define UNCONFIRMED_MAX_MS 1000
#define ROTATE_MIN_MS      100
#define ROTATE_MAX_MS      1000
#define CONFIRM_WINDOW     16
/* A nacked message of a queue route was never queued: it is published
 * again, on the channel in use by then, up to this many times in all
 * (spaced RETRY_GAP_MS, doubling), before the caller gets 503
 * not_queued.  An exchange route's message may go to several queues, and
 * a nack says only that one of them refused it: not published again (the
 * others would get it twice). */
#define PUBLISH_ATTEMPTS 4
#define RETRY_GAP_MS     50

/* A publishing channel and the calls published on it that wait. */
typedef struct {
    uint16_t channel; /* 0: a free entry */
    size_t n;
    gw_call_t *calls;
} chan_t;

struct gw_rpc {
    const gw_config_t *cfg;
    gw_rpc_done_fn done;
    gw_metrics_t *metrics;
    pthread_t thread;
    int started;
    gw_mailbox_t *mailbox;

    gw_watch_t *watch; /* the queues whose consumers are counted */

    /* shared with other threads */
    atomic_int up;              /* the link is open and admits calls */
    _Atomic int64_t hold_until; /* down: calls wait until then (cm_now_ms) */
    atomic_int blocked;         /* the broker blocked publishers */
    atomic_int draining;
    atomic_uint inflight; /* admitted and not yet done */
    /* "host:port" of the node the link is open to (gw_link_node's string),
     * NULL while down */
    _Atomic(const char *) node;

    /* AMQP thread only */
    gw_link_t *link;
    gw_publisher_t *pub;
    gw_pending_t *pending;
    gw_idgen_t ids;
    gw_unconf_t *unconf; /* publishes the broker has not confirmed yet */
    chan_t chans[CHANNELS_MAX];
    int64_t rotated_ms; /* when the last move to a new channel began */
    int64_t rotate_gap; /* the least time from it to the next move */
    /* The last confirms on the publishing channel window_ch, newest in
     * bit 0 (1: an ack); window_n of them (at most CONFIRM_WINDOW). */
    uint16_t window_ch;
    uint32_t window;
    unsigned window_n;
    gw_call_t *retry; /* nacked calls to publish again, by retry_ms */
    cm_backoff_t backoff;
    int64_t next_attempt_ms; /* down: the next connection attempt */
    gw_call_t *held;         /* down: calls waiting for the connection */
    const char *last_node;   /* of the last connection, NULL before the first */
    int64_t drop_window_ms;  /* when the current second of drop lines began */
    unsigned drop_logged;    /* lines written in it */
    uint64_t drop_quiet;     /* drops not written, since the last summary */
    /* Whether the socket may hold unread bytes: the last poll said so (or
     * could not say), or a read filled rabbitmq-c's buffer.  A read of an
     * empty socket costs rabbitmq-c two system calls (recv, then a poll
     * with no timeout) for nothing, once per turn of the loop. */
    int sock_ready;
    int64_t read_ms;    /* when the socket was last read */
    unsigned unchecked; /* calls started since the last stall check, */
    int64_t checked_ms; /* and when it was */
    /* Calls with their outcome, not handed back yet (hand_back): newest
     * first. */
    gw_call_t *ended;
};

/* --- calls --------------------------------------------------------------- */

static chan_t *chan_find(gw_rpc_t *rpc, uint16_t channel) {
    size_t i;

    for (i = 0; i < CHANNELS_MAX; i++)
        if (rpc->chans[i].channel == channel && channel != 0)
            return &rpc->chans[i];
    return NULL;
}

/* Closes an old channel once no call waits on it. */
static void chan_retire_if_idle(gw_rpc_t *rpc, chan_t *c) {
    if (c->n > 0 || c->channel == gw_link_channel(rpc->link))
        return;
    gw_unconf_drop(rpc->unconf, c->channel);
    if (gw_link_retire(rpc->link, c->channel) != 0)
        cm_log_msg(CM_LOG_WARN, "amqp_channel_retire_failed");
    c->channel = 0;
}

static void chan_unlink(gw_rpc_t *rpc, gw_call_t *call) {
    chan_t *c = chan_find(rpc, call->channel);

    if (c != NULL) {
        if (call->ch_prev != NULL)
            call->ch_prev->ch_next = call->ch_next;
        else
            c->calls = call->ch_next;
        if (call->ch_next != NULL)
            call->ch_next->ch_prev = call->ch_prev;
        c->n--;
    }
    call->channel = 0;
    call->ch_prev = call->ch_next = NULL;
    if (c != NULL)
        chan_retire_if_idle(rpc, c);
}

static void complete(gw_rpc_t *rpc, gw_call_t *call, gw_err_t err,
                     const char *detail) {
    if (call->channel != 0)
        chan_unlink(rpc, call);
    call->err = err;
    if (err != GW_E_OK) {
        free(call->body);
        call->body = NULL;
        call->body_len = 0;
    }
    if (detail != NULL) {
        free(call->detail);
        /* NULL: the error's title will do */
        call->detail = strndup(detail, GW_DETAIL_MAX);
    }
    /* The slot first: a client that sends its next call as soon as this
     * answer arrives must find it free (with --max-inflight 1 it got 503). */
    atomic_fetch_sub(&rpc->inflight, 1);
    call->next = rpc->ended; /* not ours any more once handed back */
    rpc->ended = call;
}

/* Hands the ended calls back, all in one batch: the HTTP thread is woken
 * once for them.  Called after a read of replies and before the thread
 * sleeps or may wait (rpc.h). */
static void hand_back(gw_rpc_t *rpc) {
    gw_call_t *calls = rpc->ended;

    if (calls == NULL)
        return;
    rpc->ended = NULL;
    rpc->done(calls);
}

/* Completes every call in the list (linked through ->next). */
static void complete_list(gw_rpc_t *rpc, gw_call_t *list, gw_err_t err,
                          const char *detail) {
    gw_call_t *next;

    for (; list != NULL; list = next) {
        next = list->next;
        complete(rpc, list, err, detail);
    }
}

/* Fails every published call. */
static void fail_pending(gw_rpc_t *rpc, gw_err_t err, const char *detail) {
    gw_call_t *call;

    while ((call = gw_pending_take_any(rpc->pending)) != NULL)
        complete(rpc, call, err, detail);
}

/* Fails every call, published or not. */
static void fail_all(gw_rpc_t *rpc, gw_err_t err, const char *detail) {
    gw_call_t *held = rpc->held, *retry = rpc->retry;
    /* A call not published (or nacked: never queued) did not run: 503,
     * safe to retry, not the 502 of a call that may have. */
    gw_err_t unsent =
        err == GW_E_CONNECTION_LOST ? GW_E_BROKER_UNAVAILABLE : err;
    const char *unsent_detail =
        err == GW_E_CONNECTION_LOST
            ? "the connection to RabbitMQ was lost before the call was "
              "published"
            : detail;

    fail_pending(rpc, err, detail);
    rpc->held = rpc->retry = NULL;
    complete_list(rpc, held, unsent, unsent_detail);
    complete_list(rpc, retry, unsent, unsent_detail);
    complete_list(rpc, gw_mailbox_take_all(rpc->mailbox), unsent,
                  unsent_detail);
}

/* While down: the submitted calls wait for the next connection (held, in
 * order), each up to its own deadline.  Returns when the earliest held
 * call's deadline falls (INT64_MAX: none held). */
static int64_t hold_calls(gw_rpc_t *rpc, int64_t now) {
    gw_call_t *call, *next, **tail = &rpc->held, *keep = NULL, **ktail = &keep;
    int64_t earliest = INT64_MAX;
    char detail[96];

    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = gw_mailbox_take_all(rpc->mailbox);
    for (call = rpc->held; call != NULL; call = next) {
        next = call->next;
        if (call->deadline_ms <= now) {
            snprintf(detail, sizeof(detail),
                     "no reply within %u ms (not connected to RabbitMQ)",
                     call->timeout_ms);
            complete(rpc, call, GW_E_TIMEOUT, detail);
            continue;
        }
        if (call->deadline_ms < earliest)
            earliest = call->deadline_ms;
        call->next = NULL;
        *ktail = call;
        ktail = &call->next;
    }
    rpc->held = keep;
    return earliest;
}

/* --- the link ------------------------------------------------------------ */

static void log_consumers(gw_rpc_t *rpc, int slot) {
    cm_log_t l;

    if (gw_watch_kind(rpc->watch, (size_t)slot) == GW_WATCH_EXCHANGE) {
        cm_log_begin(&l, CM_LOG_INFO, "exchange_checked");
        cm_log_kv(&l, "exchange", "%s",
                  gw_watch_name(rpc->watch, (size_t)slot));
        cm_log_kv(&l, "missing", "%d",
                  gw_watch_nobody(rpc->watch, (size_t)slot));
        cm_log_end(&l);
        return;
    }
    cm_log_begin(&l, CM_LOG_INFO, "queue_consumers");
    cm_log_kv(&l, "queue", "%s", gw_watch_name(rpc->watch, (size_t)slot));
    cm_log_kv(&l, "consumers", "%d",
              gw_watch_consumers(rpc->watch, (size_t)slot));
    cm_log_kv(&l, "nobody", "%d", gw_watch_nobody(rpc->watch, (size_t)slot));
    cm_log_end(&l);
}

/* Drops the connection (politely when we are stopping) and fails every
 * call with err and detail; why is logged. */
static void link_down(gw_rpc_t *rpc, gw_err_t err, const char *detail,
                      const char *why) {
    int polite = err == GW_E_SHUTTING_DOWN;

    atomic_store(&rpc->node, NULL);
    gw_link_close(rpc->link, polite);
    if (atomic_exchange(&rpc->up, 0)) {
        cm_log_t l;

        cm_log_begin(&l, polite ? CM_LOG_INFO : CM_LOG_WARN,
                     "amqp_disconnected");
        cm_log_kv(&l, "reason", "%s", why);
        cm_log_kv(&l, "failed_calls", "%zu", gw_pending_count(rpc->pending));
        cm_log_end(&l);
    }
    gw_watch_reset(rpc->watch);
    atomic_store(&rpc->blocked, 0);
    gw_unconf_clear(rpc->unconf);
    memset(rpc->chans, 0, sizeof(rpc->chans)); /* the calls fail below */
    /* Published calls lose their replies with the connection; the calls
     * not published yet wait for the next one (HOLD_MS), and the first
     * attempt is made at once. */
    fail_pending(rpc, err, detail);
    rpc->next_attempt_ms = 0;
    if (!polite && gw_link_nodes(rpc->link) > 1)
        atomic_store(&rpc->hold_until, cm_now_ms() + HOLD_MS);
    else
        fail_all(rpc, err, detail);
}

/* Connects; deadline_ms bounds the attempt (gw_link_open).  Returns 0,
 * or -1 (logged). */
static int link_up(gw_rpc_t *rpc, int64_t deadline_ms) {
    const char *node;
    size_t slot;

    /* The consumer counts first (gw_link_open reads them), then admit
     * calls: with the link up and a count still unknown, a call to a
     * queue nobody consumes would wait for its timeout instead of getting
     * no_server. */
    if (gw_link_open(rpc->link, deadline_ms) != 0)
        return -1;
    for (slot = 0; slot < gw_watch_count(rpc->watch); slot++)
        log_consumers(rpc, (int)slot);
    node = gw_link_node(rpc->link);
    atomic_store(&rpc->node, node);
    atomic_store(&rpc->up, 1);
    atomic_store(&rpc->hold_until, 0);
    cm_backoff_reset(&rpc->backoff);
    if (rpc->last_node != NULL)
        atomic_fetch_add_explicit(&rpc->metrics->reconnects, 1,
                                  memory_order_relaxed);
    /* A failover: now on another node than the last connection's. */
    if (rpc->last_node != NULL && rpc->last_node != node) {
        cm_log_t l;

        atomic_fetch_add_explicit(&rpc->metrics->failovers, 1,
                                  memory_order_relaxed);
        cm_log_begin(&l, CM_LOG_INFO, "amqp_failover");
        cm_log_kv(&l, "from", "%s", rpc->last_node);
        cm_log_kv(&l, "to", "%s", node);
        cm_log_end(&l);
    }
    rpc->last_node = node;
    rpc->sock_ready = 1;
    return 0;
}

/* --- publishing ---------------------------------------------------------- */

/* Remembers a publish until the broker confirms it (publish checked
 * there is room). */
static void unconfirmed_push(gw_rpc_t *rpc, uint16_t channel, uint64_t tag,
                             const uint8_t id[GW_ID_LEN], int publish,
                             int64_t now) {
    gw_unconf_entry_t e;

    e.tag = tag;
    e.sent_ms = now;
    memcpy(e.id, id, GW_ID_LEN);
    e.channel = channel;
    e.publish = (uint8_t)publish;
    (void)gw_unconf_push(rpc->unconf, &e);
}

/* Remembers that call waits on channel (for its reply, or its confirm). */
static void chan_add(gw_rpc_t *rpc, gw_call_t *call, uint16_t channel) {
    chan_t *c = chan_find(rpc, channel);
    size_t i;

    for (i = 0; c == NULL && i < CHANNELS_MAX; i++)
        if (rpc->chans[i].channel == 0) {
            c = &rpc->chans[i];
            c->channel = channel;
        }
    if (c == NULL) /* cannot happen: rotations wait for a free entry */
        return;
    call->channel = channel;
    call->ch_prev = NULL;
    call->ch_next = c->calls;
    if (c->calls != NULL)
        c->calls->ch_prev = call;
    c->calls = call;
    c->n++;
}

/* Moves publishing to a new channel (a nack, a publish never confirmed),
 * at most once per ROTATE_MIN_MS.  Returns -1 when the connection
 * failed. */
static int rotate(gw_rpc_t *rpc, const char *why, int64_t now) {
    size_t i, used = 0;
    cm_log_t l;

    if (gw_link_rotating(rpc->link) || now - rpc->rotated_ms < rpc->rotate_gap)
        return 0;
    for (i = 0; i < CHANNELS_MAX; i++)
        used += rpc->chans[i].channel != 0;
    if (used == CHANNELS_MAX)
        return 0; /* old channels still wait for replies: not now */
    rpc->rotated_ms = now;
    rpc->rotate_gap = rpc->rotate_gap == 0 ? ROTATE_MIN_MS
                      : rpc->rotate_gap * 2 > ROTATE_MAX_MS
                          ? ROTATE_MAX_MS
                          : rpc->rotate_gap * 2;
    cm_log_begin(&l, CM_LOG_WARN, "amqp_channel_rotating");
    cm_log_kv(&l, "reason", "%s", why);
    cm_log_kv(&l, "channel", "%u", gw_link_channel(rpc->link));
    cm_log_end(&l);
    return gw_link_rotate(rpc->link);
}

static int publish(gw_rpc_t *rpc, gw_call_t *call, int64_t now) {
    const gw_route_t *route = call->route;
    char body[16];
    uint8_t *id = call->corr;
    char corr[GW_ID_TEXT_LEN + 1];
    int64_t left = call->deadline_ms - now;
    gw_request_msg_t m;
    uint16_t channel;
    int rc;

    gw_idgen_next(&rpc->ids, id);
    gw_id_text(id, corr);
    call->attempts++;
    m = (gw_request_msg_t){
        .exchange = route->exchange,
        .routing_key = call->routing_key,
        .publish = route->mode == GW_MODE_PUBLISH,
        .correlation_id = corr,
        .request_id = call->request_id,
        .traceparent = call->traceparent,
        .ttl_ms = left,
        .deadline_wall_ms = cm_wall_ms() + left,
    };
    if (route->kind == GW_KIND_FIB) {
        snprintf(body, sizeof(body), "%" PRIu32, call->n);
        m.body = body;
        m.body_len = strlen(body);
    } else {
        m.raw = 1;
        m.content_type = call->content_type;
        m.content_encoding = call->content_encoding;
        m.headers = call->headers;
        m.nheaders = call->nheaders;
        m.body = call->req_body;
        m.body_len = call->req_body_len;
    }
    if (gw_unconf_full(rpc->unconf)) {
        complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                 "RabbitMQ is not confirming what we publish");
        return 0;
    }
    channel = gw_link_channel(rpc->link); /* not 0: start_calls saw to it */
    if (gw_pending_add(rpc->pending, id, call->deadline_ms, call) != 0) {
        complete(rpc, call, GW_E_OVERLOADED, "too many calls in flight");
        return 0;
    }
    rc = gw_publisher_send(rpc->pub, &m);
    if (rc == -2) { /* a message AMQP cannot carry; nothing was sent */
        gw_pending_take(rpc->pending, id);
        complete(rpc, call, GW_E_INTERNAL,
                 "the request cannot be put into an AMQP message");
        return 0;
    }
    if (rc != 0) {
        gw_pending_take(rpc->pending, id); /* the caller completes it */
        return rc;
    }
    if (rpc->cfg->confirms)
        unconfirmed_push(rpc, channel, gw_publisher_tag(rpc->pub), id,
                         route->mode == GW_MODE_PUBLISH, now);
    chan_add(rpc, call, channel);
    return 0;
}

/* Answers a call whose route nobody serves (watch.h), as gw_rpc_admit
 * would have. */
static void no_server(gw_rpc_t *rpc, gw_call_t *call) {
    char detail[320];

    if (call->route->queue != NULL)
        snprintf(detail, sizeof(detail), "no worker consumes queue '%s'",
                 call->route->queue);
    else
        snprintf(detail, sizeof(detail), "no exchange named '%s'",
                 call->route->exchange);
    complete(rpc, call, GW_E_NO_SERVER, detail);
}

/* Whether the broker has stopped reading what we publish, asked as a call
 * starts: every GW_STALL_CHECK_EVERY calls, counted across turns (under
 * load a turn starts only a few calls: asking at the first of each was a
 * poll every few calls), and at least every STALL_CHECK_MS (a call now and
 * then is asked about each time).  Once stalled, asked again for the next
 * call. */
static int stalled(gw_rpc_t *rpc, int64_t now) {
    if (rpc->unchecked++ % GW_STALL_CHECK_EVERY != 0 &&
        now - rpc->checked_ms < STALL_CHECK_MS)
        return 0;
    hand_back(rpc); /* the check may wait STALL_GRACE_MS */
    rpc->checked_ms = now;
    if (!gw_publisher_stalled(rpc->pub))
        return 0;
    rpc->unchecked = 0;
    return 1;
}

/* Publishes every submitted call, or answers it at once. */
static void start_calls(gw_rpc_t *rpc) {
    gw_call_t *call, *next, *first = rpc->held, **tail = &first;
    int64_t now = cm_now_ms();

    /* the calls held while down go first, in order */
    rpc->held = NULL;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = gw_mailbox_take_all(rpc->mailbox);
    for (call = first; call != NULL; call = next) {
        next = call->next;
        if (!gw_link_is_open(rpc->link)) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "not connected to RabbitMQ");
            continue;
        }
        if (atomic_load(&rpc->blocked)) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "RabbitMQ is blocking publishers (resource alarm)");
            continue;
        }
        if (gw_link_channel(rpc->link) == 0) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "RabbitMQ closed the publishing channel; a new one is "
                     "being opened");
            continue;
        }
        if (stalled(rpc, now)) {
            complete(rpc, call, GW_E_BROKER_UNAVAILABLE,
                     "RabbitMQ is not reading what we publish");
            continue;
        }
        if (call->deadline_ms <= now) {
            complete(rpc, call, GW_E_TIMEOUT, "timed out before publishing");
            continue;
        }
        /* Admitted while the verdict was unknown (held for a reconnect):
         * publishing to an exchange that is not there would make the
         * broker close the channel, with every call waiting on it. */
        if (call->watch >= 0 &&
            gw_watch_nobody(rpc->watch, (size_t)call->watch)) {
            no_server(rpc, call);
            continue;
        }
        if (publish(rpc, call, now) != 0) {
            cm_log_msg(CM_LOG_WARN, "amqp_publish_failed");
            complete(rpc, call, GW_E_CONNECTION_LOST, LOST " while publishing");
            rpc->held = next; /* never sent: held or 503 (link_down) */
            link_down(rpc, GW_E_CONNECTION_LOST, LOST, LOST);
            return;
        }
    }
    if (gw_link_is_open(rpc->link) && gw_publisher_batched(rpc->pub) > 0 &&
        gw_publisher_flush(rpc->pub) != 0)
        link_down(rpc, GW_E_CONNECTION_LOST, LOST " while publishing",
                  LOST " while publishing");
}

/* --- replies ------------------------------------------------------------- */

static void expire_calls(gw_rpc_t *rpc, int64_t now) {
    gw_call_t *call;
    char detail[96];

    while ((call = gw_pending_take_expired(rpc->pending, now)) != NULL) {
        snprintf(detail, sizeof(detail), "no reply within %u ms",
                 call->timeout_ms);
        complete(rpc, call, GW_E_TIMEOUT, detail);
    }
}

/* The pending call an event's correlation id names, removed from the
 * table, or NULL (unknown, late, duplicate or malformed id). */
static gw_call_t *take_by_correlation(gw_rpc_t *rpc,
                                      const gw_link_event_t *ev) {
    uint8_t id[GW_ID_LEN];

    if (ev->correlation_id == NULL ||
        gw_id_parse(ev->correlation_id, ev->correlation_id_len, id) != 0)
        return NULL;
    return gw_pending_take(rpc->pending, id);
}

/* Writes the summary of the drops the last window left unwritten, once
 * that window is over (or at once, when stopping). */
static void drop_log_flush(gw_rpc_t *rpc, int64_t now, int stopping) {
    cm_log_t l;

    if (!stopping && now - rpc->drop_window_ms < 1000)
        return;
    if (rpc->drop_quiet > 0) {
        cm_log_begin(&l, CM_LOG_INFO, "reply_dropped_suppressed");
        cm_log_kv(&l, "count", "%" PRIu64, rpc->drop_quiet);
        cm_log_kv(&l, "per_s", "%u", (unsigned)DROP_LOG_PER_S);
        cm_log_end(&l);
        rpc->drop_quiet = 0;
    }
    rpc->drop_window_ms = now;
    rpc->drop_logged = 0;
}

static void drop_reply(gw_rpc_t *rpc, const gw_link_event_t *ev,
                       const char *what, int64_t now) {
    uint64_t dropped = atomic_fetch_add_explicit(&rpc->metrics->replies_dropped,
                                                 1, memory_order_relaxed) +
                       1;
    cm_log_t l;

    drop_log_flush(rpc, now, 0);
    if (rpc->drop_logged >= DROP_LOG_PER_S) {
        rpc->drop_quiet++;
        return;
    }
    rpc->drop_logged++;
    cm_log_begin(&l, CM_LOG_INFO, "reply_dropped");
    cm_log_kv(&l, "reason", "%s", what);
    cm_log_str(&l, "corr", ev->correlation_id, ev->correlation_id_len);
    cm_log_kv(&l, "dropped", "%" PRIu64, dropped);
    cm_log_end(&l);
}

/* Copies the reply headers the route returns into the call (one block:
 * the array, then the values).  A value that cannot be an HTTP header as
 * it is (a CR or LF, say) is left out.  Returns -1 when out of memory. */
static int copy_reply_headers(gw_call_t *call, const gw_link_event_t *ev) {
    const gw_route_list_t *names = &call->route->return_headers;
    char value[REPLY_HEADER_MAX];
    size_t i, size = 0, used = 0, valid = 0;
    gw_hval_t v;
    char *p;

    for (i = 0; i < names->n; i++) {
        gw_link_event_header(ev, names->item[i], &v);
        if (gw_reply_header_text(&v, value, sizeof(value)) == 0) {
            size += sizeof(gw_reply_header_t) + strlen(value) + 1;
            valid++;
        }
    }
    if (valid == 0)
        return 0;
    call->reply_headers = malloc(size);
    if (call->reply_headers == NULL)
        return -1;
    p = (char *)(call->reply_headers + valid);
    for (i = 0; i < names->n; i++) {
        gw_link_event_header(ev, names->item[i], &v);
        if (gw_reply_header_text(&v, value, sizeof(value)) != 0)
            continue;
        call->reply_headers[used].name = names->item[i];
        call->reply_headers[used].value = p;
        p += strlen(value) + 1;
        memcpy(call->reply_headers[used].value, value, strlen(value) + 1);
        used++;
    }
    call->nreply_headers = used;
    return 0;
}

/* A raw route's reply: the body as it is, its content type, status and
 * returned headers; or the worker's error. */
static void raw_reply(gw_rpc_t *rpc, gw_call_t *call, const gw_link_event_t *ev,
                      gw_reply_t *reply) {
    gw_hval_t status;

    gw_link_event_header(ev, GWRPC_HDR_STATUS, &status);
    gw_reply_parse_raw(ev->content_type, ev->content_type_len, ev->body,
                       ev->body_len, &status, reply, &call->status);
    if (reply->err != GW_E_OK)
        return;
    if (ev->content_type != NULL) {
        if (!gw_reply_content_type_ok(ev->content_type, ev->content_type_len)) {
            reply->err = GW_E_BAD_REPLY;
            snprintf(reply->message, sizeof(reply->message),
                     "reply content_type cannot be an HTTP Content-Type");
            return;
        }
        call->body_type = strndup(ev->content_type, ev->content_type_len);
        if (call->body_type == NULL)
            goto oom;
    }
    if (copy_reply_headers(call, ev) != 0)
        goto oom;
    return;
oom:
    reply->err = GW_E_INTERNAL;
    snprintf(reply->message, sizeof(reply->message), "out of memory");
}

static void on_reply(gw_rpc_t *rpc, const gw_link_event_t *ev, int64_t now) {
    gw_call_t *call = take_by_correlation(rpc, ev);
    gw_reply_t reply;
    char detail[96];

    if (call == NULL) {
        drop_reply(rpc, ev, "unknown_correlation_id", now);
        return;
    }
    /* One deadline, one answer: past it, the caller gets timeout even if
     * the reply was read in the same batch. */
    if (call->deadline_ms <= now) {
        snprintf(detail, sizeof(detail), "no reply within %u ms",
                 call->timeout_ms);
        complete(rpc, call, GW_E_TIMEOUT, detail);
        return;
    }
    if (ev->oversized) { /* its body is dropped as it arrives */
        memset(&reply, 0, sizeof(reply));
        reply.err = GW_E_BAD_REPLY;
        snprintf(reply.message, sizeof(reply.message),
                 "reply is %" PRIu64 " bytes, over the limit of %u bytes",
                 ev->body_size, rpc->cfg->max_reply_bytes);
    } else if (call->route->kind == GW_KIND_FIB) {
        gw_reply_parse(ev->content_type, ev->content_type_len, ev->body,
                       ev->body_len, &reply);
    } else {
        raw_reply(rpc, call, ev, &reply);
    }
    if (reply.err == GW_E_OK) {
        /* + 1: a raw body may be empty, and malloc(0) may be NULL */
        call->body = malloc(reply.digits_len + 1);
        if (call->body == NULL) {
            complete(rpc, call, GW_E_INTERNAL, "out of memory");
            return;
        }
        if (reply.digits_len > 0)
            memcpy(call->body, reply.digits, reply.digits_len);
        call->body_len = reply.digits_len;
        complete(rpc, call, GW_E_OK, NULL);
        return;
    }
    free(call->worker_type);
    call->worker_type = reply.type[0] != '\0' ? strdup(reply.type) : NULL;
    if (reply.err == GW_E_BAD_REPLY) {
        char corr[GW_ID_TEXT_LEN + 1];
        cm_log_t l;

        gw_id_text(call->corr, corr);
        cm_log_begin(&l, CM_LOG_WARN, "bad_reply");
        cm_log_kv(&l, "route", "%s", call->route->name);
        cm_log_kv(&l, "corr", "%s", corr);
        cm_log_kv(&l, "reason", "%s", reply.message);
        cm_log_end(&l);
    }
    complete(rpc, call, reply.err, reply.message);
}

static void on_return(gw_rpc_t *rpc, const gw_link_event_t *ev) {
    gw_call_t *call = take_by_correlation(rpc, ev);
    char detail[320];

    if (call == NULL)
        return;
    if (call->route->queue != NULL)
        snprintf(detail, sizeof(detail),
                 "no queue named '%s': nobody serves these calls",
                 call->route->queue);
    else
        snprintf(detail, sizeof(detail),
                 "exchange '%s' routes key '%s' to no queue: nobody serves "
                 "these calls",
                 call->route->exchange, call->routing_key);
    /* A queue route's return means its queue is gone: every call to it is
     * no_server from now on.  An exchange route's return is about this
     * routing key only (the exchange's other keys may be bound): this
     * call alone. */
    if (call->watch >= 0 &&
        gw_watch_kind(rpc->watch, (size_t)call->watch) == GW_WATCH_QUEUE &&
        gw_watch_record(rpc->watch, (size_t)call->watch, 0, 1, cm_now_ms()))
        log_consumers(rpc, call->watch);
    complete(rpc, call, GW_E_NO_SERVER, detail);
}

/* The broker confirmed (ack) or refused (nack) publishes up to tag (or
 * just tag).  A refused queue-route call never reached its queue: it is
 * published again, then 503 not_queued, safe to retry; a refused
 * exchange-route call is 503 not_queued at once.  A confirmed
 * publish-mode call is done: 202. */
static void settle(gw_rpc_t *rpc, const gw_unconf_entry_t *u, int ack) {
    gw_call_t *call;

    if (ack && !u->publish)
        return; /* an RPC goes on until its reply */
    call = gw_pending_take(rpc->pending, u->id);
    if (call == NULL)
        return; /* answered already (a reply, a return, its deadline) */
    if (ack) {
        call->status = 202;
        complete(rpc, call, GW_E_OK, NULL);
        return;
    }
    if (call->route->queue == NULL) {
        complete(rpc, call, GW_E_NOT_QUEUED,
                 "RabbitMQ refused the message (nack): a queue the exchange "
                 "routes it to did not take it (others may have; it was not "
                 "published again)");
        return;
    }
    if (call->attempts < PUBLISH_ATTEMPTS &&
        call->deadline_ms - cm_now_ms() > RETRY_GAP_MS << call->attempts) {
        gw_call_t **p = &rpc->retry;

        /* Not queued, so safe to publish again: on a new channel by then,
         * when this one points at a dead queue leader. */
        chan_unlink(rpc, call);
        call->retry_ms = cm_now_ms() + (RETRY_GAP_MS << (call->attempts - 1));
        while (*p != NULL && (*p)->retry_ms <= call->retry_ms)
            p = &(*p)->next;
        call->next = *p;
        *p = call;
        return;
    }
    complete(rpc, call, GW_E_NOT_QUEUED,
             "RabbitMQ refused the message (nack): it was not queued, so "
             "retrying is safe");
}

/* The nacked calls whose time to be published again has come go back to
 * the front of the calls to start.  Returns when the next one is due
 * (INT64_MAX: none). */
static int64_t retry_due(gw_rpc_t *rpc, int64_t now) {
    gw_call_t *due = NULL, **tail = &due;

    while (rpc->retry != NULL && rpc->retry->retry_ms <= now) {
        *tail = rpc->retry;
        rpc->retry = rpc->retry->next;
        tail = &(*tail)->next;
    }
    *tail = rpc->held;
    rpc->held = due;
    return rpc->retry != NULL ? rpc->retry->retry_ms : INT64_MAX;
}

/* Remembers a confirm of a publish on channel, if that is the channel in
 * use (confirms of older ones say nothing of it). */
static void window_add(gw_rpc_t *rpc, uint16_t channel, int ack) {
    if (channel != gw_link_channel(rpc->link))
        return;
    if (rpc->window_ch != channel) {
        rpc->window_ch = channel;
        rpc->window = 0;
        rpc->window_n = 0;
    }
    rpc->window = (rpc->window << 1) | (ack ? 1u : 0u);
    if (rpc->window_n < CONFIRM_WINDOW)
        rpc->window_n++;
}

/* How many of the last confirms on the channel in use were acks, and how
 * many nacks. */
static void window_count(const gw_rpc_t *rpc, unsigned *acks, unsigned *nacks) {
    uint32_t bits = rpc->window & ((1u << CONFIRM_WINDOW) - 1);

    *acks = *nacks = 0;
    if (rpc->window_ch != gw_link_channel(rpc->link))
        return;
    *acks = (unsigned)__builtin_popcount(bits);
    *nacks = rpc->window_n - *acks;
}

typedef struct {
    gw_rpc_t *rpc;
    int ack;
} confirm_ctx_t;

static void on_settled(void *arg, const gw_unconf_entry_t *e) {
    confirm_ctx_t *c = arg;

    window_add(c->rpc, e->channel, c->ack);
    settle(c->rpc, e, c->ack);
}

static void on_confirm(gw_rpc_t *rpc, const gw_link_event_t *ev, int ack) {
    confirm_ctx_t ctx = {rpc, ack};
    unsigned acks, nacks;

    gw_unconf_confirm(rpc->unconf, ev->channel, ev->tag, ev->multiple,
                      on_settled, &ctx);
    window_count(rpc, &acks, &nacks);
    if (ack && acks > 0 && nacks == 0)
        rpc->rotate_gap = 0; /* the channel in use works, for every queue */
    if (!ack) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "amqp_nack");
        cm_log_kv(&l, "channel", "%u", ev->channel);
        cm_log_kv(&l, "tag", "%llu", (unsigned long long)ev->tag);
        cm_log_kv(&l, "multiple", "%d", ev->multiple);
        cm_log_end(&l);
    }
}

/* Publishing moved to a new channel: the old one closes once its calls
 * are done. */
static void on_rotated(gw_rpc_t *rpc, const gw_link_event_t *ev) {
    chan_t *old = chan_find(rpc, ev->old_channel);
    cm_log_t l;

    cm_log_begin(&l, CM_LOG_INFO, "amqp_channel_rotated");
    cm_log_kv(&l, "from", "%u", ev->old_channel);
    cm_log_kv(&l, "to", "%u", ev->channel);
    cm_log_kv(&l, "waiting_on_old", "%zu", old != NULL ? old->n : 0);
    cm_log_end(&l);
    if (old != NULL)
        chan_retire_if_idle(rpc, old);
    else if (ev->old_channel != 0) {
        gw_unconf_drop(rpc->unconf, ev->old_channel);
        if (gw_link_retire(rpc->link, ev->old_channel) != 0)
            cm_log_msg(CM_LOG_WARN, "amqp_channel_retire_failed");
    }
}

/* The broker closed a publishing channel (or cancelled its reply
 * consumer): the replies of its calls cannot come. */
static void on_channel_lost(gw_rpc_t *rpc, const gw_link_event_t *ev) {
    chan_t *c = chan_find(rpc, ev->channel);
    gw_call_t *call = NULL, *next;

    gw_unconf_drop(rpc->unconf, ev->channel);
    /* most likely an exchange that went away: look again now */
    gw_watch_recheck(rpc->watch, GW_WATCH_EXCHANGE);
    if (c != NULL) { /* its calls, off the channel's books */
        call = c->calls;
        c->channel = 0;
        c->calls = NULL;
        c->n = 0;
    }
    for (; call != NULL; call = next) {
        next = call->ch_next;
        call->channel = 0;
        /* out of the table too, so a late reply finds nothing */
        gw_pending_take(rpc->pending, call->corr);
        complete(rpc, call, GW_E_CONNECTION_LOST,
                 "RabbitMQ closed the channel the call was published on");
    }
    /* Still open on the broker's side (only its reply consumer went):
     * close it. */
    if (!ev->closed && gw_link_retire(rpc->link, ev->channel) != 0)
        cm_log_msg(CM_LOG_WARN, "amqp_channel_retire_failed");
}

/* A nack, or a publish on the channel in use that the broker has not
 * confirmed for too long: that channel may point at a dead queue leader
 * (link.h): move to a new one. */
static int check_confirms(gw_rpc_t *rpc, int64_t now) {
    uint16_t channel = gw_link_channel(rpc->link);
    const gw_unconf_entry_t *u;

    if (channel == 0) /* lost, and its replacement failed to open */
        return gw_link_rotating(rpc->link)
                   ? 0
                   : rotate(rpc, "no publishing channel", now);
    u = gw_unconf_oldest(rpc->unconf, channel);
    if (u == NULL || now - u->sent_ms < UNCONFIRMED_MAX_MS)
        return 0;
    return rotate(rpc, "a publish not confirmed within 1 s", now);
}

/* Handles what the broker has sent, without blocking.  Returns -1 when the
 * connection was lost (the reason in why). */
static int read_events(gw_rpc_t *rpc, char *why, size_t why_size) {
    gw_link_event_t ev;
    int64_t now = cm_now_ms();
    int i, rc;

    if (!rpc->sock_ready && !gw_link_has_input(rpc->link) &&
        now - rpc->read_ms < READ_AT_LEAST_MS)
        return 0;
    rpc->read_ms = now;
    for (i = 0; i < READ_BATCH; i++) {
        /* Once rabbitmq-c's buffer is used up, the socket is most likely
         * empty too: the next poll says whether it is not (and returns at
         * once then), so do not pay for reading it empty. */
        if (i > 0 && !gw_link_has_input(rpc->link)) {
            rpc->sock_ready = 0;
            hand_back(rpc); /* the replies read: their callers wait */
            /* The read that would have found it empty gave back the last
             * reply's memory: do it here (a body can be 4 MiB). */
            gw_link_release(rpc->link);
            return 0;
        }
        rc = gw_link_poll(rpc->link, &ev, why, why_size);
        if (rc == 0)
            rpc->sock_ready = 0;
        if (rc <= 0)
            return rc;
        switch (ev.kind) {
        case GW_LINK_REPLY:
            on_reply(rpc, &ev, now);
            break;
        case GW_LINK_RETURN:
            on_return(rpc, &ev);
            break;
        case GW_LINK_BLOCKED:
            atomic_store(&rpc->blocked, 1);
            cm_log_msg(CM_LOG_WARN, "amqp_blocked");
            break;
        case GW_LINK_UNBLOCKED:
            atomic_store(&rpc->blocked, 0);
            cm_log_msg(CM_LOG_INFO, "amqp_unblocked");
            break;
        case GW_LINK_CONSUMERS:
            log_consumers(rpc, ev.slot);
            break;
        case GW_LINK_ACK:
            on_confirm(rpc, &ev, 1);
            break;
        case GW_LINK_NACK: {
            unsigned acks, nacks;

            on_confirm(rpc, &ev, 0);
            window_count(rpc, &acks, &nacks);
            /* Nacks only: the channel may point at a dead queue leader.
             * With acks among them it works: a queue refuses (full). */
            if (ev.channel == gw_link_channel(rpc->link) && acks == 0 &&
                rotate(rpc, "nack", cm_now_ms()) != 0) {
                snprintf(why, why_size, LOST);
                return -1;
            }
            break;
        }
        case GW_LINK_ROTATED:
            on_rotated(rpc, &ev);
            break;
        case GW_LINK_CHANNEL_LOST:
            on_channel_lost(rpc, &ev);
            break;
        }
    }
    return 0;
}

/* --- the thread ---------------------------------------------------------- */

static void wait_for(gw_rpc_t *rpc, int timeout_ms) {
    struct pollfd fds[2] = {{gw_mailbox_fd(rpc->mailbox), POLLIN, 0},
                            {gw_link_fd(rpc->link), POLLIN, 0}};
    int n;

    hand_back(rpc);
    if (gw_link_has_input(rpc->link))
        return;
    n = poll(fds, 2, timeout_ms);
    if (n <= 0 || fds[1].revents != 0) /* a timeout, or an error: read too */
        rpc->sock_ready = 1;
    if (n > 0 && (fds[0].revents & POLLIN))
        gw_mailbox_clear(rpc->mailbox);
}

static int loop_timeout(gw_rpc_t *rpc) {
    int64_t now = cm_now_ms();
    int64_t until = gw_pending_next_deadline(rpc->pending);
    int64_t tick = gw_link_next_tick_ms(rpc->link);
    /* Wake at least every second so heartbeats are sent and checked. */
    int64_t t = 1000;

    if (tick < until)
        until = tick;
    if (rpc->retry != NULL && rpc->retry->retry_ms < until)
        until = rpc->retry->retry_ms;
    if (until - now < t)
        t = until - now;
    return t < 0 ? 0 : (int)t;
}

static int idle(gw_rpc_t *rpc) {
    return rpc->held == NULL && rpc->retry == NULL &&
           gw_mailbox_empty(rpc->mailbox) &&
           gw_pending_count(rpc->pending) == 0;
}

/* How long a connection attempt may take: while calls are held (or may
 * be, in the hold), until the earliest held deadline or the hold's end,
 * so that they are answered in time; else each step's own bound. */
static int64_t attempt_deadline(int64_t now, int64_t hold, int64_t earliest) {
    int64_t d = earliest < hold ? earliest : hold;

    if (hold <= now)
        return INT64_MAX; /* nobody waits for it */
    return d < now + ATTEMPT_MIN_MS ? now + ATTEMPT_MIN_MS : d;
}

static void *rpc_main(void *arg) {
    gw_rpc_t *rpc = arg;
    char why[320];

    for (;;) {
        if (!gw_link_is_open(rpc->link)) {
            int64_t now = cm_now_ms(), hold = atomic_load(&rpc->hold_until);
            int64_t wake;

            /* A held call whose deadline passed is a timeout (504), also
             * when the hold is over too. */
            retry_due(rpc, INT64_MAX); /* down: they wait with the rest */
            wake = hold_calls(rpc, now);
            if (atomic_load(&rpc->draining) || now >= hold) {
                fail_all(rpc, GW_E_BROKER_UNAVAILABLE,
                         "not connected to RabbitMQ");
                wake = INT64_MAX;
            }
            if (atomic_load(&rpc->draining))
                break;
            hand_back(rpc); /* a connection attempt blocks */
            /* The first attempt after a loss goes at once, to the next
             * node; then the jittered schedule (urls.h), whatever wakes
             * the thread meanwhile. */
            if (now < rpc->next_attempt_ms ||
                link_up(rpc, attempt_deadline(now, hold, wake)) != 0) {
                now = cm_now_ms();
                /* the attempt may have outlasted some held deadlines */
                wake = hold_calls(rpc, now);
                if (now >= rpc->next_attempt_ms)
                    rpc->next_attempt_ms =
                        now + (int64_t)cm_backoff_next(&rpc->backoff);
                if (rpc->next_attempt_ms < wake)
                    wake = rpc->next_attempt_ms;
                if (hold > now && hold < wake)
                    wake = hold;
                wait_for(rpc, (int)(wake > now ? wake - now : 0));
                continue;
            }
        }
        retry_due(rpc, cm_now_ms());
        start_calls(rpc);
        if (!gw_link_is_open(rpc->link))
            continue;
        /* Deadlines first: a reply read after its call's deadline must not
         * win over the timeout. */
        expire_calls(rpc, cm_now_ms());
        if (read_events(rpc, why, sizeof(why)) != 0 ||
            gw_link_tick(rpc->link, cm_now_ms()) != 0 ||
            check_confirms(rpc, cm_now_ms()) != 0) {
            link_down(rpc, GW_E_CONNECTION_LOST, LOST, why);
            continue;
        }
        drop_log_flush(rpc, cm_now_ms(), 0);
        if (atomic_load(&rpc->draining) && idle(rpc))
            break;
        wait_for(rpc, loop_timeout(rpc));
    }
    drop_log_flush(rpc, cm_now_ms(), 1);
    link_down(rpc, GW_E_SHUTTING_DOWN, "gateway stopped", "gateway stopped");
    /* A call admitted just before draining began may be submitted after
     * the last look at the mailbox: from now on gw_rpc_submit answers it
     * itself. */
    complete_list(rpc, gw_mailbox_close(rpc->mailbox), GW_E_SHUTTING_DOWN,
                  "the gateway is shutting down");
    hand_back(rpc);
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
    cm_backoff_init(&rpc->backoff, cm_random64());
    gw_idgen_init(&rpc->ids);
    atomic_init(&rpc->up, 0);
    atomic_init(&rpc->hold_until, 0);
    atomic_init(&rpc->blocked, 0);
    atomic_init(&rpc->draining, 0);
    atomic_init(&rpc->inflight, 0);
    atomic_init(&rpc->node, NULL);
    rpc->mailbox = gw_mailbox_new();
    rpc->pending = gw_pending_new(cfg->max_inflight);
    rpc->pub = gw_publisher_new();
    rpc->watch = gw_watch_new();
    /* Every call in flight, and as many again whose confirm is still on
     * its way after their reply. */
    rpc->unconf = gw_unconf_new(2 * (size_t)cfg->max_inflight + 64);
    if (rpc->mailbox == NULL || rpc->pending == NULL || rpc->pub == NULL ||
        rpc->watch == NULL || rpc->unconf == NULL) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "rpc_init_failed");
        cm_log_kv(&l, "error", "%s", strerror(errno));
        cm_log_end(&l);
        goto fail;
    }
    rpc->link = gw_link_new(cfg, rpc->pub, rpc->watch);
    if (rpc->link == NULL)
        goto fail;
    return rpc;
fail:
    gw_rpc_free(rpc);
    return NULL;
}

int gw_rpc_start(gw_rpc_t *rpc) {
    int err = pthread_create(&rpc->thread, NULL, rpc_main, rpc);

    if (err != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "thread_create_failed");
        cm_log_kv(&l, "error", "%s", strerror(err));
        cm_log_end(&l);
        return -1;
    }
    rpc->started = 1;
    return 0;
}

gw_err_t gw_rpc_admit(gw_rpc_t *rpc, int watch) {
    if (atomic_load(&rpc->draining))
        return GW_E_SHUTTING_DOWN;
    if (atomic_load(&rpc->blocked))
        return GW_E_BROKER_UNAVAILABLE;
    /* Down: a call may wait for the next connection, for a moment after a
     * loss (HOLD_MS); else 503 at once. */
    if (!atomic_load(&rpc->up) && cm_now_ms() >= atomic_load(&rpc->hold_until))
        return GW_E_BROKER_UNAVAILABLE;
    if (watch >= 0 && gw_watch_nobody(rpc->watch, (size_t)watch))
        return GW_E_NO_SERVER;
    if (atomic_fetch_add(&rpc->inflight, 1) >= rpc->cfg->max_inflight) {
        atomic_fetch_sub(&rpc->inflight, 1);
        return GW_E_OVERLOADED;
    }
    return GW_E_OK;
}

int gw_rpc_watch(gw_rpc_t *rpc, gw_watch_kind_t kind, const char *name) {
    int slot = gw_watch_add(rpc->watch, kind, name);

    gw_mailbox_wake(rpc->mailbox); /* count it soon */
    return slot;
}

int gw_rpc_consumers(gw_rpc_t *rpc, const char *queue) {
    size_t slot, n = gw_watch_count(rpc->watch);

    for (slot = 0; slot < n; slot++)
        if (gw_watch_kind(rpc->watch, slot) == GW_WATCH_QUEUE &&
            strcmp(gw_watch_name(rpc->watch, slot), queue) == 0)
            return gw_watch_consumers(rpc->watch, slot);
    return -2;
}

void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out) {
    out->connected = atomic_load(&rpc->up);
    out->blocked = atomic_load(&rpc->blocked);
    out->inflight = atomic_load(&rpc->inflight);
    out->node = out->connected ? atomic_load(&rpc->node) : NULL;
    out->max_inflight = rpc->cfg->max_inflight;
    out->watch = rpc->watch;
}

void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call) {
    if (gw_mailbox_put(rpc->mailbox, call) == 0)
        return;
    /* The AMQP thread is gone (stopping): answered here, on the caller's
     * thread, as it would have. */
    call->err = GW_E_SHUTTING_DOWN;
    call->detail = strdup("the gateway is shutting down");
    atomic_fetch_sub(&rpc->inflight, 1);
    call->next = NULL;
    rpc->done(call);
}

void gw_rpc_flush(gw_rpc_t *rpc) {
    gw_mailbox_flush(rpc->mailbox);
}

void gw_rpc_shutdown(gw_rpc_t *rpc) {
    atomic_store(&rpc->draining, 1);
    gw_mailbox_wake(rpc->mailbox);
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
    gw_link_free(rpc->link);
    gw_publisher_free(rpc->pub);
    gw_pending_free(rpc->pending);
    gw_mailbox_free(rpc->mailbox);
    gw_watch_free(rpc->watch);
    gw_unconf_free(rpc->unconf);
    free(rpc);
}
