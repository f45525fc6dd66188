/* amqp_content.h - a message (basic.deliver or basic.return) put together
 * from its frames, keeping at most `cap` bytes of body.  The content header
 * gives the body's size before any of the body arrives, so a larger body
 * is never kept: its message surfaces at once, flagged oversized, with its
 * properties (the correlation id), and its body frames are then counted
 * and dropped as they come.  A state machine: feed it frames as they
 * arrive, any number at a time; it resumes where it stopped.
 *
 * Pure (no I/O): it copies what it keeps out of each frame, so the caller
 * may release rabbitmq-c's buffers after every frame.  One thread: the one
 * that owns the connection. */
#ifndef CM_AMQP_CONTENT_H
#define CM_AMQP_CONTENT_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

/* What a fed frame did. */
typedef enum {
    CM_CONTENT_MORE,  /* taken (part of a message); nothing to read yet */
    CM_CONTENT_READY, /* a message is ready: cm_amqp_content_message */
    CM_CONTENT_OTHER, /* not part of a message: the frame is the caller's */
    CM_CONTENT_BAD,   /* protocol violation or no memory: drop the link */
} cm_content_step_t;

/* A message as put together.  Borrowed from the assembler: valid until the
 * next cm_amqp_content_feed, _release, _reset or _free. */
typedef struct {
    amqp_channel_t channel;
    amqp_method_number_t method; /* AMQP_BASIC_DELIVER_METHOD or _RETURN_ */
    uint64_t delivery_tag;       /* basic.deliver's (0 for a return) */
    amqp_boolean_t redelivered;
    /* The properties, copied; the body when not oversized (else empty);
     * message.pool is unused. */
    amqp_message_t message;
    uint64_t body_size; /* as the content header announced it */
    int oversized;      /* body_size > cap: the body is dropped unread */
} cm_amqp_msg_t;

/* The assembler's state; its fields are its own (use the functions). */
typedef struct {
    size_t cap;
    int state;              /* IDLE, HEADER, BODY or DISCARD (the .c) */
    amqp_channel_t channel; /* of the message being read */
    uint64_t size, got;     /* its body: announced, and seen so far */
    int surfaced;           /* msg was handed out and still holds memory */
    int pool_ready;         /* pool is initialised */
    amqp_pool_t pool;       /* msg's properties */
    cm_amqp_msg_t msg;      /* being put together, or the last one handed out */
} cm_amqp_content_t;

/* Starts an assembler that keeps bodies of at most cap bytes. */
void cm_amqp_content_init(cm_amqp_content_t *c, size_t cap);
/* Forgets a message half read (the connection is gone) and frees all it
 * holds: c is as cm_amqp_content_init left it. */
void cm_amqp_content_reset(cm_amqp_content_t *c);
/* Frees the last message handed out (a body being dropped goes on being
 * dropped).  Feeding does it too. */
void cm_amqp_content_release(cm_amqp_content_t *c);

/* Takes one frame as rabbitmq-c decoded it; keeps nothing that points into
 * it.  On CM_CONTENT_BAD, *error is a rabbitmq-c status
 * (AMQP_STATUS_BAD_AMQP_DATA or AMQP_STATUS_NO_MEMORY), else 0.  A method
 * on the channel whose content is being read ends that content: a
 * channel.close is the caller's (CM_CONTENT_OTHER), anything else is a
 * protocol violation; so is content on a second channel meanwhile. */
cm_content_step_t cm_amqp_content_feed(cm_amqp_content_t *c,
                                       const amqp_frame_t *f, int *error);

/* The message after CM_CONTENT_READY. */
const cm_amqp_msg_t *cm_amqp_content_message(const cm_amqp_content_t *c);

/* Whether a message has started and its frames are still due (including
 * the body of an oversized one, being dropped). */
int cm_amqp_content_busy(const cm_amqp_content_t *c);

#endif
