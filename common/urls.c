/* urls.c - the broker list, its masking and the reconnect schedule.  Pure
 * but for cm_random64; see urls.h. */
#include "urls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* --- masking ------------------------------------------------------------- */

void cm_url_mask(const char *url, size_t len, char *out, size_t out_size) {
    const char *end = url + len, *auth, *at = NULL, *colon, *p;

    if (out_size == 0)
        return;
    auth = NULL;
    for (p = url; p + 3 <= end; p++)
        if (memcmp(p, "://", 3) == 0) {
            auth = p + 3;
            break;
        }
    /* The last '@': a password holding a raw '@' or '/' is still masked
     * whole (masking too much is the safe mistake). */
    if (auth != NULL)
        for (p = auth; p < end; p++)
            if (*p == '@')
                at = p;
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL) {
        snprintf(out, out_size, "%.*s", (int)len, url);
        return;
    }
    snprintf(out, out_size, "%.*s:***%.*s", (int)(colon - url), url,
             (int)(end - at), at);
}

void cm_url_mask_list(const char *list, char *out, size_t out_size) {
    size_t used = 0;
    const char *item = list, *comma;

    if (out_size == 0)
        return;
    out[0] = '\0';
    for (;;) {
        comma = strchr(item, ',');
        if (comma == NULL)
            comma = item + strlen(item);
        if (used + 1 < out_size) {
            cm_url_mask(item, (size_t)(comma - item), out + used,
                        out_size - used);
            used += strlen(out + used);
        }
        if (*comma == '\0' || used + 1 >= out_size)
            return;
        out[used++] = ',';
        out[used] = '\0';
        item = comma + 1;
    }
}

/* --- the list ------------------------------------------------------------ */

static int bad(cm_urls_t *u, char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Around a URL: a list in a file may put each on a line of its own. */
static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Writes why, empties *u; returns -1. */
static int bad(cm_urls_t *u, char *why, size_t why_size, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
    cm_urls_free(u);
    return -1;
}

int cm_urls_parse(cm_urls_t *u, const char *list, char *why, size_t why_size) {
    char *item, *next, *end;
    size_t i;

    memset(u, 0, sizeof(*u));
    if (strlen(list) >= CM_URL_LIST_MAX) {
        snprintf(why, why_size, "the URL list is longer than %d bytes",
                 CM_URL_LIST_MAX - 1);
        return -1;
    }
    u->buf = strdup(list);
    if (u->buf == NULL) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    for (item = u->buf, i = 0; item != NULL; item = next, i++) {
        cm_url_t *url = &u->url[i];

        next = strchr(item, ',');
        if (next != NULL)
            *next++ = '\0';
        while (is_space(*item))
            item++;
        end = item + strlen(item);
        while (end > item && is_space(end[-1]))
            *--end = '\0';
        if (i == CM_URLS_MAX) {
            snprintf(why, why_size, "more than %d URLs", CM_URLS_MAX);
            cm_urls_free(u);
            return -1;
        }
        cm_url_mask(item, strlen(item), url->masked, sizeof(url->masked));
        if (*item == '\0')
            return bad(u, why, why_size, "URL %zu of the list is empty", i + 1);
        amqp_default_connection_info(&url->info);
        /* Parses in place: the strings it gives point into buf. */
        if (amqp_parse_url(item, &url->info) != AMQP_STATUS_OK)
            return bad(u, why, why_size,
                       "URL %zu (%s) is not an amqp:// or amqps:// URL "
                       "(amqp[s]://[user[:password]@]host[:port][/vhost])",
                       i + 1, url->masked);
        if (url->info.port <= 0 || url->info.port > 65535)
            return bad(u, why, why_size,
                       "URL %zu (%s): the port must be 1-65535", i + 1,
                       url->masked);
        if (url->info.host[0] == '\0')
            return bad(u, why, why_size, "URL %zu (%s): the host is empty",
                       i + 1, url->masked);
        /* "amqp://host/" names the empty vhost, which RabbitMQ never has;
         * everyone writing it means the default one. */
        if (url->info.vhost[0] == '\0')
            url->info.vhost = "/";
        snprintf(url->node, sizeof(url->node),
                 strchr(url->info.host, ':') != NULL ? "[%s]:%d" : "%s:%d",
                 url->info.host, url->info.port);
        u->n = i + 1;
    }
    return 0;
}

void cm_urls_free(cm_urls_t *u) {
    if (u == NULL)
        return;
    free(u->buf);
    memset(u, 0, sizeof(*u));
}

void cm_urls_shuffle(cm_urls_t *u, uint64_t seed) {
    size_t i, j;
    cm_url_t tmp;

    for (i = u->n; i > 1; i--) { /* Fisher-Yates */
        j = (size_t)(splitmix64(&seed) % i);
        tmp = u->url[i - 1];
        u->url[i - 1] = u->url[j];
        u->url[j] = tmp;
    }
}

uint64_t cm_random64(void) {
    uint64_t r;
    struct timespec ts;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
        return r;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    return r ^ ((uint64_t)getpid() << 32);
}

/* --- the schedule -------------------------------------------------------- */

void cm_backoff_init(cm_backoff_t *b, uint64_t seed) {
    b->attempt = 0;
    b->rng = seed;
}

void cm_backoff_reset(cm_backoff_t *b) {
    b->attempt = 0;
}

unsigned cm_backoff_next(cm_backoff_t *b) {
    unsigned ceiling = CM_BACKOFF_FIRST_MS, k;

    for (k = 0; k < b->attempt && ceiling < CM_BACKOFF_CAP_MS; k++)
        ceiling *= 2;
    if (ceiling > CM_BACKOFF_CAP_MS)
        ceiling = CM_BACKOFF_CAP_MS;
    if (b->attempt < 64)
        b->attempt++;
    return ceiling / 2 +
           (unsigned)(splitmix64(&b->rng) % (ceiling - ceiling / 2 + 1));
}
