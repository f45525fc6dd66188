/* link.h - the AMQP connection: connect (TCP or TLS) and log in, open the
 * channels, keep the request queue's consumer count fresh, and turn what
 * the broker sends into typed events (replies are read a frame at a time,
 * their bodies kept up to --max-reply-bytes: common/amqp_read.h).
 *
 * Channel 1 consumes direct reply-to and publishes every request (direct
 * reply-to needs both on one channel), in confirm mode.  Channel 2 only
 * runs the passive queue.declares that count the watched queues'
 * consumers (watch.h), so a missing queue (which closes the channel) never
 * disturbs channel 1.
 *
 * A link belongs to one thread (the AMQP thread): rabbitmq-c connections
 * are not thread-safe. */
#ifndef GW_LINK_H
#define GW_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "publisher.h"
#include "reply.h"
#include "watch.h"

typedef struct gw_link gw_link_t;

typedef enum {
    GW_LINK_REPLY,        /* a delivery on direct reply-to */
    GW_LINK_RETURN,       /* a request the broker could not route */
    GW_LINK_BLOCKED,      /* the broker blocks publishers (resource alarm) */
    GW_LINK_UNBLOCKED,    /* ... and no longer does */
    GW_LINK_CONSUMERS,    /* what callers see of a watched queue changed */
    GW_LINK_ACK,          /* the broker took publishes (confirms) */
    GW_LINK_NACK,         /* the broker refused publishes */
    GW_LINK_ROTATED,      /* publishing moved to a new channel */
    GW_LINK_CHANNEL_LOST, /* the broker closed a publishing channel, or
                             cancelled its reply consumer: replies to the
                             calls published on it will not come */
} gw_link_event_kind_t;

/* What the broker said.  Pointers stay valid until the next gw_link_poll
 * or gw_link_close. */
typedef struct {
    gw_link_event_kind_t kind;
    /* REPLY and RETURN: the message; NULL/0 when absent */
    const char *correlation_id;
    size_t correlation_id_len;
    const char *content_type;
    size_t content_type_len;
    /* The body when it is at most cfg->max_reply_bytes; else NULL/0 with
     * oversized set (the body is dropped as it arrives, unread). */
    const void *body;
    size_t body_len;
    uint64_t body_size; /* as the message announced it */
    int oversized;
    const void *headers; /* the message's header table; read with
                            gw_link_event_header */
    /* CONSUMERS: which watch slot */
    int slot;
    /* ACK, NACK: on channel; ROTATED: to channel from old_channel (0 when
     * that one was lost); CHANNEL_LOST: channel */
    uint64_t tag;
    int multiple;
    uint16_t channel, old_channel;
    int closed; /* CHANNEL_LOST: the broker closed it (else it is still
                   open, without its reply consumer) */
} gw_link_event_t;

/* The value of header name (exact case) of a REPLY or RETURN event;
 * kind GW_HVAL_NONE when absent. */
void gw_link_event_header(const gw_link_event_t *ev, const char *name,
                          gw_hval_t *out);

/* Returns a closed link, or NULL (logged) when the URL list does not
 * parse or memory is short.  The list (cfg->amqp_url, comma-separated) is
 * shuffled here; each failed attempt and each lost connection moves on to
 * the next URL.  cfg, pub and watch must outlive it; the link attaches
 * pub to each connection it makes, and keeps watch's counts fresh. */
gw_link_t *gw_link_new(const gw_config_t *cfg, gw_publisher_t *pub,
                       gw_watch_t *watch);
/* Closes and frees.  NULL is a no-op. */
void gw_link_free(gw_link_t *link);

/* Connects, logs in, opens the channels and reads every watched queue's
 * first consumer count, waiting for the broker: each step up to 2 s, and
 * the whole attempt over by deadline_ms (cm_now_ms clock; INT64_MAX: no
 * bound but the steps').  Returns 0, or -1 (logged) with the link
 * closed. */
int gw_link_open(gw_link_t *link, int64_t deadline_ms);
/* Closes the connection: politely (connection.close) or at once. */
void gw_link_close(gw_link_t *link, int polite);
int gw_link_is_open(const gw_link_t *link);
/* How many nodes the URL list names. */
size_t gw_link_nodes(const gw_link_t *link);
/* "host:port" of the node connected to (or tried next when closed).  The
 * string stays valid, and the same for the same node, until
 * gw_link_free; any thread may read it. */
const char *gw_link_node(const gw_link_t *link);

/* The next event the broker has sent, without blocking.  Returns 1 with
 * *ev filled, 0 when nothing more is readable now, or -1 (logged, with
 * the reason in why) when the connection is lost. */
int gw_link_poll(gw_link_t *link, gw_link_event_t *ev, char *why,
                 size_t why_size);
/* Starts the next consumer count when one is due (the answer may come as
 * an event).  Returns 0, or -1 when the connection is lost. */
int gw_link_tick(gw_link_t *link, int64_t now_ms);
/* When gw_link_tick wants to run next (INT64_MAX: not before an event). */
int64_t gw_link_next_tick_ms(const gw_link_t *link);

/* Publishing channels.  The publishing channel also consumes the replies
 * (direct reply-to), so a channel that goes bad (RabbitMQ 3.10 can leave a
 * channel opened just after a node died pointing at the dead queue
 * leader: every publish nacked or never confirmed) is replaced, not
 * repaired: gw_link_rotate opens a new one without waiting (a ROTATED
 * event says when publishing moved there), and the old one stays open,
 * for the replies of the calls published on it, until the caller
 * gw_link_retire()s it.  A lost publishing channel (CHANNEL_LOST) is
 * replaced at once.  Each returns 0, or -1 when the connection failed. */
int gw_link_rotate(gw_link_t *link);
int gw_link_retire(gw_link_t *link, uint16_t channel);
/* The publishing channel now; 0 while there is none (lost, its
 * replacement not up yet) or the link is closed. */
uint16_t gw_link_channel(const gw_link_t *link);
/* Whether a new publishing channel is being opened. */
int gw_link_rotating(const gw_link_t *link);

/* The socket to poll for POLLIN, or -1 when closed; whether rabbitmq-c
 * already holds input (then polling would sleep on it). */
int gw_link_fd(const gw_link_t *link);
int gw_link_has_input(const gw_link_t *link);
/* Gives back what the last event pointed into (a reply's body, up to
 * --max-reply-bytes) and rabbitmq-c's buffers, now rather than at the next
 * gw_link_poll: for a caller that stops polling before the socket is
 * read empty. */
void gw_link_release(gw_link_t *link);

#endif
