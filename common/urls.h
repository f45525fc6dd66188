/* urls.h - the broker list: a comma-separated list of amqp:// or amqps://
 * URLs, parsed once at start, shuffled so that processes spread over the
 * nodes, each URL with its password masked for logs and its host:port for
 * logs and metrics; and the jittered reconnect schedule both programs use.
 *
 * Pure apart from cm_random64 (getrandom): no other I/O, no globals.  A
 * cm_urls_t is read-only once parsed and shuffled, so any thread may read
 * it; a cm_backoff_t belongs to one thread. */
#ifndef CM_URLS_H
#define CM_URLS_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many URLs in a list, and this many bytes of list text. */
#define CM_URLS_MAX     16
#define CM_URL_LIST_MAX 4096
/* Room for "host:port" and for one masked URL, with their NULs. */
#define CM_URL_NODE_MAX   272
#define CM_URL_MASKED_MAX 1100

/* The reconnect schedule: the first retry within CM_BACKOFF_FIRST_MS, each
 * later ceiling twice the last, never above CM_BACKOFF_CAP_MS. */
#define CM_BACKOFF_FIRST_MS 100
#define CM_BACKOFF_CAP_MS   2000

typedef struct {
    /* host, vhost ("/" when the URL names none), user, password, port,
     * ssl.  The strings point into the list's buffer.  user and password
     * are secrets: log node or masked, never these. */
    struct amqp_connection_info info;
    char node[CM_URL_NODE_MAX];     /* "host:port" */
    char masked[CM_URL_MASKED_MAX]; /* the URL, password as "***" */
} cm_url_t;

typedef struct {
    char *buf; /* owns every string of url[] */
    size_t n;  /* 1..CM_URLS_MAX once parsed */
    cm_url_t url[CM_URLS_MAX];
} cm_urls_t;

/* Parses list (URLs separated by commas; spaces and line breaks around each are
 * ignored) into *u, in the given order.  Returns 0, or -1 with *u empty
 * (nothing to free) and what is wrong in why: an empty item, a URL rabbitmq-c
 * cannot parse, a port outside 1-65535, an empty host, too many URLs or too
 * long a list.  why never holds a password (it names URLs masked). */
int cm_urls_parse(cm_urls_t *u, const char *list, char *why, size_t why_size);
/* Frees what cm_urls_parse allocated; NULL and an empty *u are no-ops. */
void cm_urls_free(cm_urls_t *u);

/* Puts u's URLs in a random order drawn from seed (the same seed, the same
 * order).  Never fails. */
void cm_urls_shuffle(cm_urls_t *u, uint64_t seed);

/* 64 random bits from getrandom(); should that fail, from the clock and
 * the pid (good enough to spread processes over nodes). */
uint64_t cm_random64(void);

/* url[0, len) into out (always NUL-terminated, cut to fit) with the
 * password, everything between the first ':' after "://" and the last '@',
 * replaced by "***".  A URL without '@' is copied as it is. */
void cm_url_mask(const char *url, size_t len, char *out, size_t out_size);
/* Every URL of a comma-separated list masked as cm_url_mask does, the
 * commas kept. */
void cm_url_mask_list(const char *list, char *out, size_t out_size);

/* The reconnect schedule: a jittered exponential backoff. */
typedef struct {
    unsigned attempt; /* retries since the last success */
    uint64_t rng;     /* splitmix64 state */
} cm_backoff_t;

/* A fresh schedule drawing its jitter from seed. */
void cm_backoff_init(cm_backoff_t *b, uint64_t seed);
/* After a success: the next retry is a first retry again. */
void cm_backoff_reset(cm_backoff_t *b);
/* How long to wait before the next retry, in ms: uniformly in [c/2, c]
 * where c = min(CM_BACKOFF_CAP_MS, CM_BACKOFF_FIRST_MS * 2^attempt). */
unsigned cm_backoff_next(cm_backoff_t *b);

#endif
