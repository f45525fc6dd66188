/* fuzz_http.c - libFuzzer target for the HTTP front.  The input is what a
 * client sends on one connection.  It goes over loopback TCP to the
 * gateway's real HTTP side (gw_http: libmicrohttpd with the gateway's
 * callbacks, on its own thread), with a stand-in for the AMQP side that
 * answers every call at once (stub_rpc.c).  The client half-closes after
 * sending and reads until the gateway closes.
 *
 * Besides what ASan and UBSan catch in the gateway's code, it checks that
 * the gateway neither keeps the connection nor stalls (everything is
 * answered and closed well before its timeouts), and that what comes back
 * is a run of whole HTTP answers and nothing else: a status line, headers
 * with one Content-Length, that many body bytes, "Connection: close" only
 * on the last, and a problem+json body that agrees with its status line.
 * An answer's head sent twice breaks that run. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "routes.h"

/* The gateway's header and idle timeouts.  Every input is sent whole and
 * then the client's end, so no answer or close ever needs to wait for
 * one: an input that takes PROMPT_MS got no answer but a timeout (as 120
 * query parameters did).  WAIT_MS: nothing ends it at all. */
#define TIMEOUT_S 5
#define PROMPT_MS 4000
#define WAIT_MS   20000
#define OUT_MAX   (4 << 20)

/* The fib route, and a raw route that takes a small text body and one
 * forwarded header (the stub echoes the body). */
#define ROUTES                                                                 \
    "{\"routes\": ["                                                           \
    "{\"name\": \"fib\", \"kind\": \"fib\", \"method\": \"GET\", "             \
    "\"path\": \"/fib/{n}\", \"queue\": \"fuzz\"},"                            \
    "{\"name\": \"echo\", \"method\": \"POST\", \"path\": \"/v1/echo/{id}\", " \
    "\"queue\": \"echo\", \"max_body_bytes\": 4096, "                          \
    "\"content_types\": [\"text/plain\"], "                                    \
    "\"forward_headers\": [\"accept-language\"]}]}"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gw_config_t cfg;
static gw_metrics_t metrics;
static unsigned port;

/* Where needle first occurs in hay[0..len), or NULL (memmem is GNU). */
static const char *find(const void *hay, size_t len, const char *needle) {
    size_t n = strlen(needle), i;

    for (i = 0; i + n <= len; i++)
        if (memcmp((const char *)hay + i, needle, n) == 0)
            return (const char *)hay + i;
    return NULL;
}

static void fail(const char *why, const char *out, size_t len) {
    fprintf(stderr, "fuzz_http: %s; the gateway sent %zu bytes:\n%.*s\n", why,
            len, (int)(len < 4096 ? len : 4096), out);
    abort();
}

static void start(void) {
    char errors[1024];
    gw_routes_t *routes;
    gw_http_t *h;

    cm_log_init("fuzz_http",
                getenv("FUZZ_HTTP_LOG") ? getenv("FUZZ_HTTP_LOG") : "error");
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
    cfg.listen_port = 0; /* any free port */
    snprintf(cfg.queue, sizeof(cfg.queue), "fuzz");
    cfg.max_n = 100000;
    cfg.timeout_ms = 5000;
    cfg.max_timeout_ms = 30000;
    cfg.max_inflight = 100;
    cfg.max_connections = 64;
    cfg.max_connections_per_ip = 64;
    cfg.idle_timeout_s = TIMEOUT_S;
    cfg.header_timeout_s = TIMEOUT_S;
    cfg.body_timeout_s = TIMEOUT_S;
    routes = gw_routes_parse(ROUTES, strlen(ROUTES), errors, sizeof(errors));
    if (routes == NULL) {
        fprintf(stderr, "fuzz_http: %s\n", errors);
        abort();
    }
    /* the stub ignores rpc; no tokens, no TLS */
    h = gw_http_start(&cfg, NULL, &metrics, routes, NULL, NULL);
    if (h == NULL)
        abort();
    port = gw_http_port(h);
}

/* The value of header name in head[0..len) (case-insensitive), its length
 * in *vlen, and how often it occurs in *count; NULL when absent. */
static const char *header(const char *head, size_t len, const char *name,
                          size_t *vlen, unsigned *count) {
    const char *p = memchr(head, '\n', len), *end = head + len, *found = NULL;
    size_t nlen = strlen(name);

    *count = 0;
    while (p != NULL && ++p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));

        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen + 1 && strncasecmp(p, name, nlen) == 0 &&
            p[nlen] == ':') {
            found = p + nlen + 1;
            while (found < eol && *found == ' ')
                found++;
            *vlen = (size_t)(eol - found);
            (*count)++;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return found;
}

/* A problem+json body must be JSON with the status of its status line. */
static void check_problem(int status, const char *body, size_t len,
                          const char *out, size_t out_len) {
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *st = json_object_get(j, "status");

    if (j == NULL || json_integer_value(st) != status ||
        !json_is_string(json_object_get(j, "code")) ||
        !json_is_string(json_object_get(j, "request_id")))
        fail("a problem body that does not match its status", out, out_len);
    json_decref(j);
}

/* The answers in out[0..len); sent_head: the input had a HEAD request,
 * whose answer has a Content-Length but no body. */
static void check_answers(const char *out, size_t len, int sent_head) {
    size_t pos = 0;

    while (pos < len) {
        const char *a = out + pos, *eoh, *v;
        size_t rest = len - pos, hlen, vlen = 0, clen;
        unsigned count;
        int status;
        char digits[24];

        if (rest < 13 || memcmp(a, "HTTP/1.1 ", 9) != 0 ||
            sscanf(a + 9, "%3d", &status) != 1 || status < 100 || a[12] != ' ')
            fail("bytes that are not an answer", out, len);
        eoh = find(a, rest, "\r\n\r\n");
        if (eoh == NULL)
            fail("an answer's head cut short", out, len);
        hlen = (size_t)(eoh - a) + 4;
        v = header(a, hlen - 2, "Content-Length", &vlen, &count);
        if (count != 1 || vlen == 0 || vlen >= sizeof(digits) ||
            strspn(v, "0123456789") < vlen)
            fail("an answer without exactly one Content-Length", out, len);
        memcpy(digits, v, vlen);
        digits[vlen] = '\0';
        clen = strtoull(digits, NULL, 10);
        if (sent_head &&
            (hlen == rest ||
             (rest - hlen >= 9 && memcmp(a + hlen, "HTTP/1.1 ", 9) == 0)))
            clen = 0; /* maybe a HEAD's answer */
        if (clen > rest - hlen)
            fail("an answer's body cut short", out, len);
        v = header(a, hlen - 2, "Content-Type", &vlen, &count);
        if (v != NULL && clen > 0 && vlen >= 24 &&
            strncmp(v, "application/problem+json", 24) == 0)
            check_problem(status, a + hlen, clen, out, len);
        pos += hlen + clen;
        v = header(a, hlen - 2, "Connection", &vlen, &count);
        if (v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0 &&
            pos != len)
            fail("bytes after an answer that closed the connection", out, len);
    }
}

/* The gateway's end of our connection fd: the socket in this process
 * whose peer is our end; -1 when there is none (yet, or any more). */
static int gateway_end(int fd) {
    struct sockaddr_in mine, peer;
    socklen_t len = sizeof(mine);
    int i;

    if (getsockname(fd, (struct sockaddr *)&mine, &len) != 0)
        return -1;
    for (i = 0; i < 1024; i++) {
        len = sizeof(peer);
        if (i != fd && getpeername(i, (struct sockaddr *)&peer, &len) == 0 &&
            peer.sin_family == AF_INET && peer.sin_port == mine.sin_port &&
            peer.sin_addr.s_addr == mine.sin_addr.s_addr)
            return i;
    }
    return -1;
}

/* Whether the gateway has read all it was sent on fd (peer: its end, found
 * once libmicrohttpd has accepted the connection).  Only then does the
 * client half-close: sent along with the data, the end of input goes
 * unseen, since libmicrohttpd reads once per readiness and takes a short
 * read for "no more for now"; it would wait for a timeout instead. */
static int all_read(int fd, int *peer) {
    int unread = 1;

    if (*peer < 0)
        *peer = gateway_end(fd);
    return *peer >= 0 && ioctl(*peer, SIOCINQ, &unread) == 0 && unread == 0;
}

/* Whether head[0..len) names a header (any case) that frames a body. */
static int has_body_framing(const uint8_t *head, size_t len) {
    static const char *const names[] = {"\ncontent-length",
                                        "\ntransfer-encoding", "\nexpect"};
    size_t i, k;

    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        for (i = 0; i + strlen(names[k]) <= len; i++)
            if (strncasecmp((const char *)head + i, names[k],
                            strlen(names[k])) == 0)
                return 1;
    return 0;
}

/* Whether data starts with a well-formed HTTP/1.x request line (a method
 * of capitals, a target of visible characters) and the end of its head,
 * with no body: a whole request, which must get an answer, not a silent
 * close.  (One whose body does not come whole is aborted.) */
static int whole_request(const uint8_t *data, size_t size) {
    const char *end;
    size_t i = 0, j;

    while (i < size && i < 16 && data[i] >= 'A' && data[i] <= 'Z')
        i++;
    if (i == 0 || i >= size || data[i++] != ' ')
        return 0;
    for (j = i; j < size && data[j] > ' ' && data[j] < 0x7f; j++)
        ;
    if (j == i || size - j < 11 || memcmp(data + j, " HTTP/1.", 8) != 0 ||
        data[j + 8] < '0' || data[j + 8] > '9' ||
        memcmp(data + j + 9, "\r\n", 2) != 0)
        return 0;
    end = find(data + j + 9, size - j - 9, "\r\n\r\n");
    return end != NULL &&
           !has_body_framing(data, (size_t)((const uint8_t *)end - data));
}

/* connect, through libFuzzer's timer signals (a blocking connect that a
 * signal interrupts goes on in the background). */
static int connect_loopback(int fd, const struct sockaddr_in *sa) {
    struct pollfd p = {fd, POLLOUT, 0};
    socklen_t len = sizeof(int);
    int err = 0;

    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
        return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char *out;
    struct sockaddr_in sa = {0};
    int64_t deadline;
    size_t len = 0, sent = 0;
    int fd, peer = -1, shut = 0;

    if (port == 0)
        start();
    if (out == NULL && (out = malloc(OUT_MAX)) == NULL)
        abort();
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect_loopback(fd, &sa) != 0) {
        perror("fuzz_http: connect");
        abort();
    }
    deadline = cm_now_ms() + WAIT_MS;
    /* Send and read together: the gateway may answer (and close) before it
     * has read everything, and need not read more than it answers. */
    for (;;) {
        struct pollfd p = {fd, POLLIN | (sent < size ? POLLOUT : 0), 0};
        int64_t left = deadline - cm_now_ms();
        ssize_t n;

        if (left <= 0)
            fail("no end within the time", out, len);
        if (sent == size && !shut && all_read(fd, &peer)) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        if (poll(&p, 1, sent == size && !shut ? 1 : (int)left) <= 0)
            continue;
        if (p.revents & POLLOUT) {
            n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                sent = size; /* the gateway closed: read what it said */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            n = recv(fd, out + len, OUT_MAX - len, MSG_DONTWAIT);
            if (n > 0)
                len += (size_t)n;
            else if (n == 0 || errno != EAGAIN)
                break; /* closed, or reset */
            if (len == OUT_MAX)
                fail("more than 4 MiB back", out, len);
        }
    }
    close(fd);
    if (cm_now_ms() - (deadline - WAIT_MS) >= PROMPT_MS)
        fail("an end only after a timeout", out, len);
    if (len == 0 && whole_request(data, size))
        fail("a whole request and no answer", out, len);
    check_answers(out, len, find(data, size, "HEAD") != NULL);
    return 0;
}
