/* http.c - the HTTP server: libmicrohttpd's daemon, its loop, the life of
 * each connection and request, and the graceful stop.  What a request is
 * answered is handlers.c's.
 *
 * The HTTP thread is ours: it runs libmicrohttpd's epoll loop (external
 * polling) so that stopping can look at every connection between two turns
 * of the loop, when libmicrohttpd is not reading.  All callbacks run on that
 * thread, except gw_http_call_done, which runs on the AMQP thread and only
 * hands ended calls over: this thread resumes them, a batch per wake-up. */
#include "http.h"

#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* tcpi_bytes_received: glibc's tcp_info lacks it */
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "handlers.h"
#include "headq.h"
#include "hostport.h"
#include "ids.h"
#include "limits.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"

/* libmicrohttpd 0.9.75 logs this just before it queues an error answer of
 * its own (transmit_error_response_len); the status is the first argument.
 */
#define MHD_OWN_ERROR "Error processing request (HTTP response code is %u"

/* GnuTLS priorities for HTTPS: its defaults, but TLS 1.2 and 1.3 only. */
#define GW_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* How far stopping has got; main moves it forward, the HTTP thread acts. */
enum { PHASE_RUN, PHASE_DRAIN, PHASE_FINISH };

/* One open connection.  It is idle while no request on it has a request
 * line yet: only then may stopping close it, because nothing of a new
 * request has been taken from it.  While its head is due it is queued in
 * heads (a new connection's first request, or any request once its line is
 * in: --header-timeout-s) or in next_heads (a kept-alive connection after
 * an answer: --idle-timeout-s plus --header-timeout-s). */
typedef struct gw_conn {
    cm_headq_node_t head; /* first: a due node is its connection */
    cm_headq_t *due_in;   /* the queue head is in, or NULL */
    struct gw_conn *prev, *next;
    struct MHD_Connection *mhd;
    req_t *req; /* its request, from the line until the answer is written */
    int64_t since_us; /* opened, or its last answer written */
    int fd;
    int active;  /* a request line was read; its answer is not written */
    int closing; /* shut down by us (drain, 408); libmicrohttpd closes it */
    int peeking; /* in peek_fd: its first byte is not looked at yet */
} conn_t;

struct gw_http {
    gw_handler_ctx_t hc; /* first: a request's ctx pointer is its server */
    struct MHD_Daemon *daemon;
    pthread_t thread;
    int started;
    int tls;               /* HTTPS: nothing may be written beside MHD */
    int starting;          /* in MHD_start_daemon: keep its first error */
    char start_error[256]; /* that error, for the listen_failed line */
    int wake_fd;           /* -> HTTP thread: calls ended, or the phase moved */
    atomic_int wake_pending; /* wake_fd written and not read yet */
    /* Calls with their outcome, to resume: newest first (a stack the AMQP
     * thread pushes batches onto). */
    _Atomic(gw_call_t *) ended;
    atomic_int phase; /* PHASE_*; written by main */

    /* HTTP thread only */
    conn_t *conns;         /* every open connection */
    cm_headq_t heads;      /* request heads due within --header-timeout-s */
    cm_headq_t next_heads; /* kept-alive: the next head due, see conn_t */
    cm_headq_t bodies;     /* request bodies due within --body-timeout-s */
    int peek_fd;           /* epoll: new connections' first bytes */
    unsigned npeeking;     /* connections watched in peek_fd */
    unsigned nconns, nactive;
    unsigned untracked; /* open connections without a conn_t (no memory) */
    int replaced;       /* answered in libmicrohttpd's place this turn */
    /* This thread's log lines (the access log: one line per request),
     * written together once per turn of the loop, before it sleeps. */
    cm_log_batch_t log;
};

int gw_http_conn_fd(const struct gw_conn *conn) {
    return conn != NULL ? conn->fd : -1;
}

/* Takes k's head out of the queue it is in, if any. */
static void head_done(conn_t *k) {
    if (k->due_in != NULL)
        cm_headq_remove(k->due_in, &k->head);
    k->due_in = NULL;
}

/* Makes k's head due after_s seconds from now, in q (each queue has one
 * timeout, so its deadlines stay in order). */
static void head_due_in(conn_t *k, cm_headq_t *q, unsigned after_s) {
    head_done(k);
    cm_headq_push(q, &k->head, cm_now_ms() + (int64_t)after_s * 1000);
    k->due_in = q;
}

/* Publishes the connection counts for /metrics. */
static void counts_changed(gw_http_t *h) {
    atomic_store_explicit(&h->hc.metrics->http_connections, h->nconns,
                          memory_order_relaxed);
    atomic_store_explicit(&h->hc.metrics->http_active, h->nactive,
                          memory_order_relaxed);
}

/* The access log line of a request, once it has its answer. */
static void log_request(const req_t *r) {
    const char *path;
    cm_log_t l;

    /* Probes and scrapes that succeed would drown the other lines. */
    cm_log_begin(&l,
                 (r->endpoint == GW_EP_HEALTHZ || r->endpoint == GW_EP_READYZ ||
                  r->endpoint == GW_EP_METRICS) &&
                         r->status < 400
                     ? CM_LOG_DEBUG
                     : CM_LOG_INFO,
                 "request");
    /* Strings as they are (cm_log_str): a printf per value was a good
     * part of the line's cost, and there is a line per request. */
    if (r->method[0] != '\0')
        cm_log_str(&l, "method", r->method, strlen(r->method));
    else
        cm_log_str(&l, "method", "-", 1);
    /* decoded once the head is in, else the target as received; up to 95
     * bytes (cm_log_str escapes) */
    path = r->url != NULL ? r->url : r->target;
    cm_log_str(&l, "path", path, strnlen(path, 95));
    if (r->match.route != NULL)
        cm_log_str(&l, "route", r->match.route->name,
                   strlen(r->match.route->name));
    cm_log_kv(&l, "status", "%d", r->status);
    cm_log_kv(&l, "dur_ms", "%.3f",
              (double)(cm_now_us() - r->start_us) / 1000.0);
    cm_log_str(&l, "request_id", r->call.request_id,
               strlen(r->call.request_id));
    if (r->call.attempts > 0) { /* published */
        char corr[GW_ID_TEXT_LEN + 1];

        gw_id_text(r->call.corr, corr);
        cm_log_str(&l, "corr", corr, GW_ID_TEXT_LEN);
    }
    if (r->cut_short) /* the status was meant; the answer did not all go */
        cm_log_str(&l, "sent", "no", 2);
    cm_log_end(&l);
}

/* Answers err on the socket itself and shuts the connection down, for the
 * heads libmicrohttpd cannot answer for us: one not complete (408), one it
 * refused itself (on_mhd_log), one that fills its memory (the limits), or
 * no HTTP at all (TLS).  No answer has been written on the connection, so
 * ours interleaves with nothing, and whatever libmicrohttpd writes after
 * it goes nowhere; it sees the shutdown and closes the connection.  r is
 * the request, when the line is in; else a line with msg is logged. */
static void answer_raw(gw_http_t *h, conn_t *k, req_t *r, gw_err_t err,
                       const char *detail, const char *msg) {
    char idbuf[GW_ID_HEX_LEN + 1];
    const char *request_id = idbuf;
    int status = gw_err_status(err);
    uint8_t id[GW_ID_LEN];

    if (k->closing || k->fd < 0)
        return;
    if (r != NULL && r->call.request_id[0] != '\0') {
        request_id = r->call.request_id;
    } else {
        gw_idgen_next(&h->hc.ids, id);
        gw_id_hex(id, idbuf);
    }
    /* Over TLS, plain bytes would only garble the stream: closed unsaid
     * (logged and counted all the same).  The send buffer is empty: this
     * small answer goes out whole. */
    if (!h->tls)
        (void)gw_handler_send_problem(k->fd, err, detail, NULL, request_id);
    shutdown(k->fd, SHUT_RDWR);
    /* It stays in its queue till it closes: answer_in_place counts it. */
    k->closing = 1;
    if (r != NULL) {
        r->raw = 1;
        r->status = status;
        r->call.err = err;
        if (r->call.request_id[0] == '\0') { /* request_id is idbuf */
            memcpy(r->call.own_id, idbuf, sizeof(r->call.own_id));
            r->call.request_id = r->call.own_id;
        }
        gw_metrics_request(h->hc.metrics, status, err,
                           cm_now_us() - r->start_us);
        log_request(r);
    } else {
        cm_log_t l;

        gw_metrics_request(h->hc.metrics, status, err,
                           cm_now_us() - k->since_us);
        cm_log_begin(&l, CM_LOG_INFO, msg);
        cm_log_kv(&l, "status", "%d", status);
        cm_log_kv(&l, "request_id", "%s", request_id);
        cm_log_end(&l);
    }
}

/* libmicrohttpd has read a request line: from here on the connection owes
 * an answer.  Returns the request's context. */
static void *on_request_line(void *cls, const char *uri,
                             struct MHD_Connection *c) {
    gw_http_t *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    req_t *r = calloc(1, sizeof(*r));
    conn_t *k = ci != NULL ? ci->socket_context : NULL;
    char detail[128];
    gw_err_t err;

    if (r == NULL)
        return NULL;
    r->target_len = strlen(uri);
    /* The target as received: libmicrohttpd decodes it in place later. */
    r->target = r->target_len < sizeof(r->target_inline)
                    ? r->target_inline
                    : malloc(r->target_len + 1);
    if (r->target == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->target, uri, r->target_len + 1);
    r->call.request_id = ""; /* gw_handler_begin sets it */
    r->h = &h->hc;
    r->start_us = cm_now_us();
    r->conn = k;
    if (k == NULL)
        return r;
    k->req = r;
    if (!k->active) {
        k->active = 1;
        h->nactive++;
        counts_changed(h);
    }
    /* A new connection's first head is due already; a kept-alive one's
     * next head is due from now on. */
    if (k->due_in != &h->heads)
        head_due_in(k, &h->heads, h->hc.cfg->header_timeout_s);
    /* Before libmicrohttpd parses the query: each parameter takes a slice
     * of the connection's memory, and when they do not fit it answers
     * nothing at all. */
    err = gw_limits_target(uri, detail, sizeof(detail));
    if (err != GW_E_OK)
        answer_raw(h, k, r, err, detail, NULL);
    return r;
}

/* The head as read, [lo, hi), and whether a header name lies outside. */
typedef struct {
    uintptr_t lo, hi;
    int moved;
} head_span_t;

static enum MHD_Result name_in_head(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value) {
    head_span_t *s = cls;

    if ((uintptr_t)key < s->lo || (uintptr_t)key >= s->hi) {
        s->moved = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Whether a complete head (from method on) fits the limits and has no
 * folded header line; if not, it is answered (414, 431 or 400) on the
 * socket, since its answer may not fit libmicrohttpd's memory.
 *
 * Folding (a header line that starts with a space continues the one
 * before: obs-fold, RFC 9112 5.2) is refused with 400, as the RFC allows.
 * libmicrohttpd 0.9.75 joins the lines in a new block after the read
 * buffer; the bytes the client sent after the head then get copied when
 * the answer starts, and can leave it no room (found by fuzz_http).  It
 * keeps everything else of the head where it read it, so a header name
 * found elsewhere is a folded one. */
static int head_fits(gw_http_t *h, struct MHD_Connection *c, req_t *r,
                     const char *method) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t size = ci != NULL ? ci->header_size : 0;
    int fields = MHD_get_connection_values(
        c, (enum MHD_ValueKind)(MHD_HEADER_KIND | MHD_COOKIE_KIND), NULL, NULL);
    head_span_t span = {(uintptr_t)method, (uintptr_t)method + size, 0};
    char detail[128];
    gw_err_t err;

    err = gw_limits_head(size, fields > 0 ? (unsigned)fields : 0, detail,
                         sizeof(detail));
    if (err == GW_E_OK && size != 0) {
        MHD_get_connection_values(c, MHD_HEADER_KIND, name_in_head, &span);
        if (span.moved) {
            err = GW_E_BAD_REQUEST;
            snprintf(detail, sizeof(detail),
                     "a header line folded onto the next (obs-fold, RFC "
                     "9112 5.2)");
        }
    }
    if (err == GW_E_OK || r->conn == NULL)
        return err == GW_E_OK;
    answer_raw(h, r->conn, r, err, detail, NULL);
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx) {
    gw_http_t *h = cls;
    req_t *r = *ctx;

    if (r == NULL) /* out of memory at the request line */
        return MHD_NO;
    if (r->raw) { /* answered on the socket; libmicrohttpd will see it shut */
        r->seen = 1; /* its headers are in: see answer_in_place */
        return MHD_YES;
    }
    if (!r->seen) { /* headers are in; the body (if any) is not */
        enum MHD_Result ret;

        r->seen = 1;
        if (r->conn != NULL)
            head_done(r->conn);
        snprintf(r->method, sizeof(r->method), "%s", method);
        r->url = url;
        gw_handler_begin(&h->hc, c, &r->call);
        if (!head_fits(h, c, r, method))
            return r->raw ? MHD_YES : MHD_NO;
        ret = gw_handler_check_head(&h->hc, c, r, url, method, version);
        /* A body to be read (a raw route's): it too has a deadline, as a
         * head has (libmicrohttpd's idle timeout restarts with each byte). */
        if (ret == MHD_YES && r->status == 0 && r->body_follows &&
            r->conn != NULL && !r->conn->closing)
            head_due_in(r->conn, &h->bodies, h->hc.cfg->body_timeout_s);
        return ret;
    }
    if (*upload_size != 0) { /* a piece of the body */
        size_t size = *upload_size;

        *upload_size = 0;
        return gw_handler_body(c, r, upload, size, url);
    }
    /* The body is all in: its deadline is met. */
    if (r->conn != NULL && r->conn->due_in == &h->bodies)
        head_done(r->conn);
    if (r->status != 0) /* answered when the head came in */
        return MHD_YES;
    if (r->state == ST_WAITING) { /* resumed by the AMQP thread */
        r->state = ST_DONE;
        return gw_handler_outcome(c, r, url);
    }
    return gw_handler_route(&h->hc, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode why) {
    gw_http_t *http = cls;
    req_t *r = *ctx;
    conn_t *k;

    if (r == NULL)
        return;
    *ctx = NULL;
    k = r->conn;
    if (k != NULL) {
        k->req = NULL;
        if (k->active) {
            k->active = 0;
            http->nactive--;
            counts_changed(http);
        }
        /* Between two requests a kept-alive connection is idle, and
         * libmicrohttpd's idle timeout closes it if nothing comes; but
         * each byte restarts that timeout, so the next head gets a
         * deadline too (a request line moves it to heads). */
        head_done(k);
        k->since_us = cm_now_us();
        if (why == MHD_REQUEST_TERMINATED_COMPLETED_OK && !k->closing)
            head_due_in(k, &http->next_heads,
                        http->hc.cfg->idle_timeout_s +
                            http->hc.cfg->header_timeout_s);
    }
    /* Not seen: libmicrohttpd refused the head itself.  Raw: answered,
     * logged and counted by answer_raw. */
    if (r->seen && !r->raw) {
        int64_t dur = cm_now_us() - r->start_us;

        r->cut_short = why != MHD_REQUEST_TERMINATED_COMPLETED_OK;

        log_request(r);
        /* An unready gateway answering its probe is not a failed call. */
        gw_metrics_request(http->hc.metrics, r->status,
                           r->endpoint == GW_EP_READYZ ? GW_E_OK : r->call.err,
                           dur);
        if (r->match.route != NULL)
            gw_metrics_route(http->hc.metrics,
                             r->table->metrics[r->match.route->index],
                             r->status, r->call.err, dur);
    }
    gw_handler_done(&http->hc, r);
    free(r);
}

/* --- a TLS ClientHello on the plain port ------------------------------ */

/* A client speaking TLS here (https:// to this port) sends a handshake
 * record, first byte 0x16, and waits for the server's.  libmicrohttpd
 * would keep it as the start of a request line until a timeout.  So each
 * new connection's first byte is looked at before libmicrohttpd reads it:
 * the connection is watched (once) until it has data, and the check runs
 * before each turn of libmicrohttpd's loop, in the same thread. */
static void watch_first_byte(gw_http_t *h, conn_t *k) {
    struct epoll_event ev = {0};

    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = k;
    if (k->fd >= 0 && epoll_ctl(h->peek_fd, EPOLL_CTL_ADD, k->fd, &ev) == 0) {
        k->peeking = 1;
        h->npeeking++;
    }
}

/* Whether fd's first byte opens a TLS handshake.  Only the very first
 * byte counts: when libmicrohttpd read some already (data that came
 * between our check and its read), nothing is concluded. */
static int starts_tls(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    unsigned char b;
    int unread = 0;

    if (recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 1 || b != 0x16)
        return 0;
    /* Unread first, so data arriving in between can only make it look
     * read. */
    if (ioctl(fd, SIOCINQ, &unread) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) +
                  sizeof(ti.tcpi_bytes_received))
        return 0;
    return ti.tcpi_bytes_received <= (uint64_t)unread;
}

static void check_first_bytes(gw_http_t *h) {
    struct epoll_event ev[64];
    int i, n;

    if (h->npeeking == 0) /* kept-alive traffic: no syscall */
        return;
    do {
        n = epoll_wait(h->peek_fd, ev, 64, 0);
        for (i = 0; i < n; i++) {
            conn_t *k = ev[i].data.ptr;

            /* Unwatched at once: the kernel keeps a record per watch. */
            k->peeking = 0;
            h->npeeking--;
            epoll_ctl(h->peek_fd, EPOLL_CTL_DEL, k->fd, NULL);
            if (starts_tls(k->fd))
                answer_raw(h, k, NULL, GW_E_BAD_REQUEST,
                           "this port speaks plain HTTP, not TLS: use http://",
                           "tls_on_plain_port");
        }
    } while (n == 64);
}

/* Reads and drops what the client sent that nobody will read, just before
 * libmicrohttpd closes the socket.  Closed with unread bytes, a socket is
 * reset, and the kernel drops the answer bytes not yet delivered: the end
 * of a pipeline's answers, when a later request in it was refused (found
 * by fuzz_http).  Bounded: a client that is still sending gets the reset
 * anyway. */
static void drop_unread(int fd) {
    char buf[16384];
    int i;

    for (i = 0; i < 16; i++)
        if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
            break;
}

/* Keeps the list of open connections that stopping walks. */
static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_ctx,
                          enum MHD_ConnectionNotificationCode what) {
    gw_http_t *h = cls;
    const union MHD_ConnectionInfo *ci;
    conn_t *k;

    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        k = calloc(1, sizeof(*k));
        if (k == NULL) { /* not tracked: stopping cannot close it early */
            h->untracked++;
            return;
        }
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci != NULL ? ci->connect_fd : -1;
        k->mhd = c;
        k->since_us = cm_now_us();
        k->next = h->conns;
        if (h->conns != NULL)
            h->conns->prev = k;
        h->conns = k;
        h->nconns++;
        counts_changed(h);
        head_due_in(k, &h->heads, h->hc.cfg->header_timeout_s);
        if (!h->tls) /* a TLS port expects a ClientHello */
            watch_first_byte(h, k);
        *socket_ctx = k;
        return;
    }
    k = *socket_ctx;
    if (k == NULL) {
        h->untracked--;
        return;
    }
    if (k->active) /* its request never completed: see below */
        h->nactive--;
    /* libmicrohttpd 0.9.75 closes a connection without reporting its
     * request's end when it refuses a head twice (transmit_error_response
     * then just marks it closed): the request is ours to free (found by
     * fuzz_http, as a leak).  A call in flight is never on a connection
     * that closes (suspended ones are not looked at); were it, leaking
     * the request beats freeing it under the AMQP thread. */
    if (k->req != NULL && k->req->state != ST_WAITING) {
        gw_handler_done(&h->hc, k->req);
        free(k->req);
    }
    if (k->peeking) { /* before libmicrohttpd closes the fd */
        epoll_ctl(h->peek_fd, EPOLL_CTL_DEL, k->fd, NULL);
        h->npeeking--;
    }
    if (k->fd >= 0)
        drop_unread(k->fd);
    head_done(k);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    h->nconns--;
    counts_changed(h);
    free(k);
    *socket_ctx = NULL;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s) {
    return gw_unescape(s);
}

/* libmicrohttpd is about to answer a head it refused with its own HTML
 * page: an unreadable Content-Length (sent twice, with 0.9.75), or a head
 * larger than its memory.  When we can tell which connection that is, we
 * answer first, with problem JSON, and its own answer goes nowhere.  We
 * can tell when it is a connection whose request line is in (the only
 * ones that can get 431) and whose headers libmicrohttpd has just read
 * (it calls the access handler next, unless it refused them) or, for 431,
 * the only one with its line in.  A request line it refuses (414 past its
 * memory, 505, 400) is not tied to any connection we know: those keep its
 * answer.  Returns 1 when answered. */
static int answer_in_place(gw_http_t *h, unsigned status) {
    conn_t *only = NULL;
    unsigned candidates = 0;
    cm_headq_node_t *n;

    for (n = h->heads.first; n != NULL; n = n->next) {
        conn_t *k = (conn_t *)n;
        const union MHD_ConnectionInfo *st, *hs;

        /* One we closed counts too (libmicrohttpd still parses what it
         * had read): it may be the one refused, and is never answered. */
        if (k->req == NULL || k->req->seen)
            continue;
        /* NULL: no answer queued yet */
        st = MHD_get_connection_info(k->mhd, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (st != NULL && st->http_status != 0)
            continue;
        /* Not NULL: its headers are all in, and as the access handler has
         * not seen them, libmicrohttpd is refusing them right now. */
        hs = MHD_get_connection_info(k->mhd,
                                     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        if (hs != NULL && hs->header_size != 0) {
            if (k->closing)
                return 0;
            if (status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE)
                answer_raw(h, k, k->req, GW_E_HEADERS_TOO_LARGE,
                           "the cookies do not fit the connection's memory",
                           NULL);
            else
                answer_raw(h, k, k->req, GW_E_BAD_REQUEST,
                           "a Content-Length that is not a valid length", NULL);
            return 1;
        }
        only = k;
        candidates++;
    }
    if (status != MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE || candidates != 1 ||
        h->untracked != 0 || only->closing)
        return 0;
    answer_raw(h, only, only->req, GW_E_HEADERS_TOO_LARGE,
               "the request head does not fit the connection's memory", NULL);
    return 1;
}

/* fmt is libmicrohttpd's own printf format. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    gw_http_t *h = cls;

    if (h->starting && h->start_error[0] == '\0') { /* main thread */
        va_list copy;
        size_t n;

        va_copy(copy, ap);
        vsnprintf(h->start_error, sizeof(h->start_error), fmt, copy);
        va_end(copy);
        n = strlen(h->start_error);
        if (n > 0 && h->start_error[n - 1] == '\n')
            h->start_error[n - 1] = '\0';
    }
    if (strncmp(fmt, MHD_OWN_ERROR, sizeof(MHD_OWN_ERROR) - 1) == 0) {
        va_list aq;
        unsigned status;
        int answered;

        va_copy(aq, ap);
        status = va_arg(aq, unsigned);
        va_end(aq);
        answered = answer_in_place(h, status);
        h->replaced |= answered;
        cm_log_vtext(answered ? CM_LOG_DEBUG : CM_LOG_WARN, "http_error",
                     "text", fmt, ap);
        return;
    }
    /* Its own answer, after ours, found the connection shut. */
    cm_log_vtext(h->replaced && strncmp(fmt, "Failed to send", 14) == 0
                     ? CM_LOG_DEBUG
                     : CM_LOG_WARN,
                 "http_error", "text", fmt, ap);
}

/* --- the HTTP thread ---------------------------------------------------- */

/* Closes every idle connection.  Runs between two turns of libmicrohttpd's
 * loop, so it cannot race a read: a connection that is idle here has
 * nothing of a new request taken from it, and what its client sends from
 * now on is never read (HTTP lets a server close an idle connection; the
 * client retries).  libmicrohttpd sees the shutdown on its next turn and
 * closes the connection. */
static void close_idle(gw_http_t *h) {
    conn_t *k;

    for (k = h->conns; k != NULL; k = k->next)
        if (!k->active && !k->closing && k->fd >= 0) {
            shutdown(k->fd, SHUT_RDWR);
            k->closing = 1;
        }
}

/* Answers 408 to every connection of q whose request head (or body) is
 * overdue, and closes it (slowloris: a head sent a byte at a time never
 * finishes, and libmicrohttpd's idle timeout restarts with every byte).
 * libmicrohttpd has queued nothing on such a connection. */
static void expire_heads(gw_http_t *h, cm_headq_t *q, int64_t now) {
    const gw_config_t *cfg = h->hc.cfg;
    int body = q == &h->bodies; /* its request is known: logged as one */
    cm_headq_node_t *n;
    char detail[96];

    if (body)
        snprintf(detail, sizeof(detail),
                 "the request body did not arrive within %u s",
                 cfg->body_timeout_s);
    else if (q == &h->heads)
        snprintf(detail, sizeof(detail),
                 "the request head did not arrive within %u s",
                 cfg->header_timeout_s);
    else
        snprintf(detail, sizeof(detail),
                 "the next request head did not arrive within %u s",
                 cfg->idle_timeout_s + cfg->header_timeout_s);
    while ((n = cm_headq_pop_due(q, now)) != NULL) {
        conn_t *k = (conn_t *)n;

        k->due_in = NULL;
        answer_raw(h, k, body ? k->req : NULL, GW_E_REQUEST_TIMEOUT, detail,
                   body ? NULL : "request_head_timeout");
    }
}

/* Sleeps until libmicrohttpd has work, main moved the phase, a request
 * head falls due, or libmicrohttpd's own next timeout.  Returns at once,
 * without a system call, when any of those is due now: libmicrohttpd
 * says 0 while a connection it is working on has more to do (several
 * turns per request), and its turn picks up resumed connections by
 * itself.  The wake-up left unread meanwhile makes the next poll return
 * at once, so nothing is missed, and the AMQP thread writes no more
 * while it is pending. */
static void wait_for_work(gw_http_t *h, int mhd_fd) {
    struct pollfd fds[3] = {
        {mhd_fd, POLLIN, 0}, {h->wake_fd, POLLIN, 0}, {h->peek_fd, POLLIN, 0}};
    int64_t head_ms = cm_headq_next_due(&h->heads),
            next_ms = cm_headq_next_due(&h->next_heads),
            body_ms = cm_headq_next_due(&h->bodies);
    MHD_UNSIGNED_LONG_LONG mhd_ms;
    int timeout = -1;
    uint64_t v;

    if (MHD_get_timeout(h->daemon, &mhd_ms) == MHD_YES)
        timeout = mhd_ms > INT32_MAX ? INT32_MAX : (int)mhd_ms;
    if (next_ms < head_ms)
        head_ms = next_ms;
    if (body_ms < head_ms)
        head_ms = body_ms;
    if (head_ms != INT64_MAX) {
        head_ms -= cm_now_ms();
        if (head_ms < 0)
            head_ms = 0;
        if (timeout < 0 || head_ms < timeout)
            timeout = (int)head_ms;
    }
    if (timeout == 0)
        return;
    if (poll(fds, 3, timeout) > 0 && (fds[1].revents & POLLIN)) {
        (void)!read(h->wake_fd, &v, sizeof(v));
        /* Before MHD_run: a resume after this store writes again. */
        atomic_store(&h->wake_pending, 0);
    }
}

/* Resumes the requests whose calls ended, oldest first.  libmicrohttpd
 * takes them up in this turn's MHD_run; resuming here, not on the AMQP
 * thread, wakes this thread once per batch of calls rather than once per
 * call (libmicrohttpd signals its own loop at every resume). */
static void resume_ended(gw_http_t *h) {
    gw_call_t *call, *next;

    if (atomic_load_explicit(&h->ended, memory_order_relaxed) == NULL)
        return;
    call = gw_calls_reverse(atomic_exchange(&h->ended, NULL));
    for (; call != NULL; call = next) {
        next = call->next;
        MHD_resume_connection(call->http);
    }
}

static void start_drain(gw_http_t *h) {
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);

    /* We run the loop, so libmicrohttpd is done with the listening socket:
     * closing it refuses new connections at once. */
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    h->hc.draining = 1;
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "draining");
        cm_log_kv(&l, "connections", "%u", h->nconns);
        cm_log_kv(&l, "active", "%u", h->nactive);
        cm_log_end(&l);
    }
}

/* Puts a reloaded route table in use, between two turns of the loop. */
static void adopt_routes(gw_http_t *h) {
    size_t n;

    if (atomic_load(&h->hc.offered) == NULL)
        return;
    if (gw_handler_adopt(&h->hc) != 0)
        return; /* logged; the table in use stays */
    n = gw_routes_count(h->hc.table->routes);
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "routes_loaded");
        cm_log_kv(&l, "routes", "%zu", n);
        cm_log_end(&l);
    }
}

static void *http_main(void *arg) {
    gw_http_t *h = arg;
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    int mhd_fd = di->epoll_fd;
    int64_t finish_by = 0;

    cm_log_batch_begin(&h->log);
    for (;;) {
        int phase = atomic_load(&h->phase);

        adopt_routes(h);
        if (phase >= PHASE_DRAIN && !h->hc.draining)
            start_drain(h);
        if (h->hc.draining)
            close_idle(h);
        if (phase == PHASE_FINISH) {
            /* Every call is done, so every suspended request is resumed;
             * what is left are answers being written and request heads
             * being read.  Those get the idle timeout, as always. */
            if (finish_by == 0)
                finish_by =
                    cm_now_ms() + (int64_t)h->hc.cfg->idle_timeout_s * 1000;
            if (h->nactive == 0 || cm_now_ms() >= finish_by)
                break;
        }
        cm_log_flush(); /* this turn's lines, before we may sleep */
        wait_for_work(h, mhd_fd);
        resume_ended(h);
        check_first_bytes(h); /* before libmicrohttpd reads them */
        h->replaced = 0;
        MHD_run(h->daemon);
        /* the calls it started (only handlers start calls), at once */
        gw_rpc_flush(h->hc.rpc);
        expire_heads(h, &h->heads, cm_now_ms());
        expire_heads(h, &h->next_heads, cm_now_ms());
        expire_heads(h, &h->bodies, cm_now_ms());
    }
    cm_log_batch_begin(NULL); /* written at once from here on */
    if (h->nactive > 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_WARN, "stopped_with_unanswered");
        cm_log_kv(&l, "requests", "%u", h->nactive);
        cm_log_end(&l);
    }
    /* In this thread, right after the check: nothing is read in between. */
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    return NULL;
}

/* --- public -------------------------------------------------------------- */

/* Wakes the HTTP thread, unless a wake-up is already on its way. */
static void wake(gw_http_t *h) {
    uint64_t one = 1;

    if (!atomic_exchange(&h->wake_pending, 1))
        (void)!write(h->wake_fd, &one, sizeof(one));
}

void gw_http_call_done(gw_call_t *calls) {
    gw_http_t *h = (gw_http_t *)((req_t *)calls)->h; /* hc comes first */
    gw_call_t *last = calls, *top = atomic_load(&h->ended);

    /* The list comes newest first, as the stack keeps it: it goes on top
     * whole. */
    while (last->next != NULL)
        last = last->next;
    do
        last->next = top;
    while (!atomic_compare_exchange_weak(&h->ended, &top, calls));
    /* Once pushed, the HTTP thread may resume, answer and free these calls
     * at any moment: nothing of them may be read after this. */
    wake(h);
}

static void set_phase(gw_http_t *h, int phase) {
    atomic_store(&h->phase, phase);
    wake(h);
}

/* The listen line; error is libmicrohttpd's reason, or NULL. */
static void log_listen(cm_log_level_t level, const char *msg,
                       const gw_http_t *h, const char *error) {
    const gw_config_t *cfg = h->hc.cfg;
    cm_log_t l;

    cm_log_begin(&l, level, msg);
    cm_log_kv(&l, "host", "%s", cfg->listen_host);
    cm_log_kv(&l, "port", "%u", cfg->listen_port);
    cm_log_kv(&l, "tls", "%s", h->tls ? "on" : "off");
    cm_log_kv(&l, "auth", "%s", cfg->auth_tokens_file[0] ? "tokens" : "off");
    cm_log_kv(&l, "cors_origins", "%u", cfg->cors.n);
    if (error != NULL && *error != '\0')
        cm_log_kv(&l, "error", "%s", error);
    cm_log_end(&l);
}

/* Anyone who reaches a non-loopback address may call the API unless
 * tokens are required: said loudly, once, at start. */
static void warn_if_open(const gw_http_t *h, const struct sockaddr *addr) {
    const gw_config_t *cfg = h->hc.cfg;
    cm_log_t l;

    if (cfg->auth_tokens_file[0] != '\0' || cm_addr_is_loopback(addr))
        return;
    cm_log_begin(&l, CM_LOG_WARN, "unauthenticated");
    cm_log_kv(&l, "host", "%s", cfg->listen_host);
    cm_log_kv(&l, "port", "%u", cfg->listen_port);
    cm_log_kv(&l, "detail", "%s",
              "NO AUTHENTICATION: anyone who can reach this address can "
              "call the API; require tokens with --auth-tokens-file, or "
              "listen on 127.0.0.1 behind a proxy that checks callers");
    cm_log_end(&l);
}

static void free_tokens(void *set) {
    gw_auth_free(set);
}

gw_http_t *gw_http_start(const gw_config_t *cfg, gw_rpc_t *rpc,
                         gw_metrics_t *metrics, gw_routes_t *routes,
                         gw_auth_t *tokens, const gw_tls_pem_t *tls) {
    struct addrinfo hints = {0}, *ai = NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    char port[8];
    gw_http_t *h;
    int rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        gw_auth_free(tokens);
        return NULL;
    }
    h->hc.cfg = cfg;
    h->hc.rpc = rpc;
    h->hc.metrics = metrics;
    gw_latest_init(&h->hc.tokens, tokens, free_tokens);
    atomic_init(&h->hc.unready, 0);
    atomic_init(&h->phase, PHASE_RUN);
    atomic_init(&h->wake_pending, 0);
    atomic_init(&h->ended, NULL);
    gw_idgen_init(&h->hc.ids);
    atomic_init(&h->hc.offered, NULL);
    gw_handler_offer(&h->hc, routes);
    if (gw_handler_adopt(&h->hc) != 0) {
        gw_latest_destroy(&h->hc.tokens);
        free(h);
        return NULL;
    }
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->peek_fd = epoll_create1(EPOLL_CLOEXEC);
    if (h->wake_fd < 0 || h->peek_fd < 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "http_init_failed");
        cm_log_kv(&l, "error", "%s", strerror(errno));
        cm_log_end(&l);
        goto fail;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    rc = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (rc != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "listen_resolve_failed");
        cm_log_kv(&l, "host", "%s", cfg->listen_host);
        cm_log_kv(&l, "error", "%s", gai_strerror(rc));
        cm_log_end(&l);
        goto fail;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (tls != NULL) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            log_listen(CM_LOG_ERROR, "listen_failed", h,
                       "this libmicrohttpd was built without TLS");
            freeaddrinfo(ai);
            goto fail;
        }
        h->tls = 1;
        flags |= MHD_USE_TLS;
        tls_opts[0] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls->cert};
        tls_opts[1] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls->key};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                              (void *)GW_TLS_PRIORITIES};
    }
    h->starting = 1;
    h->daemon = MHD_start_daemon(
        flags, cfg->listen_port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, or it warns */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, /* no SO_REUSEPORT: one owner */
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)GW_CONN_MEMORY,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h, /* then TLS, if on: */
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    h->starting = 0;
    if (h->daemon == NULL) {
        /* A key that does not match the certificate ends up here too. */
        log_listen(CM_LOG_ERROR, "listen_failed", h, h->start_error);
        freeaddrinfo(ai);
        goto fail;
    }
    rc = pthread_create(&h->thread, NULL, http_main, h);
    if (rc != 0) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "thread_create_failed");
        cm_log_kv(&l, "error", "%s", strerror(rc));
        cm_log_end(&l);
        MHD_stop_daemon(h->daemon);
        freeaddrinfo(ai);
        goto fail;
    }
    h->started = 1;
    log_listen(CM_LOG_INFO, "listening", h, NULL);
    warn_if_open(h, ai->ai_addr);
    freeaddrinfo(ai);
    return h;
fail:
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    if (h->peek_fd >= 0)
        close(h->peek_fd);
    gw_handler_release(&h->hc, h->hc.table);
    gw_latest_destroy(&h->hc.tokens);
    free(h);
    return NULL;
}

unsigned gw_http_port(const gw_http_t *http) {
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);

    return di != NULL ? di->port : http->hc.cfg->listen_port;
}

void gw_http_reload(gw_http_t *http, gw_routes_t *routes) {
    gw_handler_offer(&http->hc, routes);
    wake(http);
}

void gw_http_set_tokens(gw_http_t *http, gw_auth_t *tokens) {
    gw_latest_put(&http->hc.tokens, tokens);
}

void gw_http_unready(gw_http_t *http) {
    atomic_store(&http->hc.unready, 1);
}

void gw_http_drain(gw_http_t *http) {
    set_phase(http, PHASE_DRAIN);
}

void gw_http_stop(gw_http_t *http) {
    if (http == NULL)
        return;
    set_phase(http, PHASE_FINISH);
    if (http->started)
        pthread_join(http->thread, NULL);
    close(http->wake_fd);
    close(http->peek_fd);
    gw_handler_offer(&http->hc, NULL); /* one offered too late */
    gw_handler_release(&http->hc, http->hc.table);
    gw_latest_destroy(&http->hc.tokens);
    free(http);
}
