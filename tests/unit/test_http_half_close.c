/* test_http_half_close.c - the gateway's HTTP side (gw_http, real
 * libmicrohttpd over loopback) answers a call whose client ended its side
 * (shutdown) before the outcome came.  The AMQP side is a stand-in whose
 * submit half-closes the client itself, waits until the gateway's socket
 * has the end of input, and only then hands back the outcome: the order
 * fuzz_http found by chance, made certain.  With libmicrohttpd 0.9.75 a
 * call suspended in the turn that read it was then closed unanswered. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "routes.h"
#include "rpc.h"

static int client = -1; /* the test's end of the connection */

/* The gateway's end of the client's connection: the socket in this
 * process whose peer is the client's end. */
static int gateway_end(void) {
    struct sockaddr_in mine, peer;
    socklen_t len = sizeof(mine);
    int i;

    if (getsockname(client, (struct sockaddr *)&mine, &len) != 0)
        return -1;
    for (i = 0; i < 1024; i++) {
        len = sizeof(peer);
        if (i != client &&
            getpeername(i, (struct sockaddr *)&peer, &len) == 0 &&
            peer.sin_port == mine.sin_port &&
            peer.sin_addr.s_addr == mine.sin_addr.s_addr)
            return i;
    }
    return -1;
}

/* The client ends its side now, and the gateway's socket has the end of
 * input before the request is suspended. */
static void client_shutdown(void) {
    int end = gateway_end();
    char probe;

    assert_true(end >= 0);
    shutdown(client, SHUT_WR);
    /* Wait (bounded) until the end of input is there to be read. */
    for (int i = 0; i < 5000; i++) {
        struct pollfd p = {end, POLLIN, 0};

        if (poll(&p, 1, 1) > 0 &&
            recv(end, &probe, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
            break;
    }
}

/* Runs on the HTTP thread, in the access handler, before it suspends the
 * request. */
gw_err_t gw_rpc_admit(gw_rpc_t *rpc, int watch) {
    client_shutdown();
    return GW_E_OK;
}

/* The one queue, in slot 0 (nothing here reads its count). */
int gw_rpc_watch(gw_rpc_t *rpc, gw_watch_kind_t kind, const char *name) {
    return 0;
}

int gw_rpc_consumers(gw_rpc_t *rpc, const char *queue) {
    return 1;
}

void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out) {
    memset(out, 0, sizeof(*out));
    out->connected = 1;
}

void gw_rpc_flush(gw_rpc_t *rpc) {
    (void)rpc;
}

/* Runs on the HTTP thread, in the access handler, just after it suspended
 * the request: the outcome comes at once. */
void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call) {
    call->err = GW_E_OK;
    call->body = malloc(2);
    assert_non_null(call->body);
    memcpy(call->body, "55", 2);
    call->body_len = 2;
    call->next = NULL;
    gw_http_call_done(call);
}

static gw_http_t *http;

static int connect_to_gateway(void);
static int other = -1; /* another client, idle: see start */

static int start(void **state) {
    static gw_config_t cfg;
    static gw_metrics_t metrics;

    cm_log_init("test_http_half_close", "error");
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
    snprintf(cfg.queue, sizeof(cfg.queue), "q");
    cfg.max_n = 100;
    cfg.timeout_ms = 5000;
    cfg.max_timeout_ms = 5000;
    cfg.max_inflight = 10;
    cfg.max_connections = 16;
    cfg.max_connections_per_ip = 16;
    cfg.idle_timeout_s = 30;
    cfg.header_timeout_s = 30;
    cfg.body_timeout_s = 30;
    http = gw_http_start(&cfg, NULL, &metrics, gw_routes_default(cfg.queue),
                         NULL, NULL);
    if (http == NULL)
        return 1;
    /* libmicrohttpd looks at the connection idle longest first, before
     * the ready ones; with only the resumed call open, that look answered
     * it before any read, and hid the bug.  An older idle connection
     * takes that place, as any other client does in real life. */
    other = connect_to_gateway();
    return other < 0;
}

static int stop(void **state) {
    close(other);
    gw_http_drain(http);
    gw_http_stop(http);
    return 0;
}

static int connect_to_gateway(void) {
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)gw_http_port(http));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return -1;
    return fd;
}

/* Sends req (len bytes) on a new connection; the stand-in ends the
 * client's side before the call is suspended.  The first answer must be
 * F(10) as the stand-in gives it. */
static void exchange(const char *req, size_t len) {
    char out[4096];
    size_t got = 0;
    ssize_t n;

    client = connect_to_gateway();
    assert_true(client >= 0);
    /* Generous: the answer comes at once, or never. */
    assert_int_equal(setsockopt(client, SOL_SOCKET, SO_RCVTIMEO,
                                &(struct timeval){20, 0},
                                sizeof(struct timeval)),
                     0);
    assert_int_equal(send(client, req, len, 0), (ssize_t)len);
    /* Read to the end: the gateway closes after answering a half-closed
     * client, or (the bug) without answering. */
    while ((n = recv(client, out + got, sizeof(out) - 1 - got, 0)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(client);
    if (strncmp(out, "HTTP/1.1 200 ", 13) != 0 ||
        strstr(out, "{\"n\":10,\"fib\":\"55\"}") == NULL)
        fail_msg("no answer, or the wrong one: \"%s\"", out);
}

static void test_plain(void **state) {
    static const char req[] = "GET /fib/10 HTTP/1.1\r\nHost: t\r\n\r\n";

    exchange(req, sizeof(req) - 1);
}

static void test_nul_in_header(void **state) {
    static const char req[] = "GET /fib/10 HTTP/1.1\r\nHost: t\r\n"
                              "X-A: a\0\0\0\0\0\0\0\0b\r\n\r\n";

    exchange(req, sizeof(req) - 1);
}

static void test_pipelined(void **state) {
    static const char req[] = "GET /fib/10 HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

    exchange(req, sizeof(req) - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_nul_in_header),
        cmocka_unit_test(test_pipelined),
    };

    return cmocka_run_group_tests(tests, start, stop);
}
