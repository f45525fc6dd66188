/* stub_rpc.c - a stand-in for the gateway's AMQP side (rpc.c) for the HTTP
 * fuzz target: every call is admitted and answered at once, on the HTTP
 * thread, with an outcome that depends on the request only, so the same
 * input always gets the same answers: a fib call by n (200 with a short or
 * a long body, a worker error, a bad reply, a timeout), a raw call by its
 * body's length (200 echoing the body, or a worker error). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "rpc.h"
#include "watch.h"

gw_err_t gw_rpc_admit(gw_rpc_t *rpc, int watch) {
    (void)rpc;
    (void)watch;
    return GW_E_OK;
}

/* Every watched queue has one consumer (exchanges exist). */
static gw_watch_t *watched(void) {
    static gw_watch_t *w;

    if (w == NULL)
        w = gw_watch_new();
    return w;
}

int gw_rpc_watch(gw_rpc_t *rpc, gw_watch_kind_t kind, const char *name) {
    int slot = watched() != NULL ? gw_watch_add(watched(), kind, name) : -1;

    (void)rpc;
    if (slot >= 0)
        gw_watch_record(watched(), (size_t)slot, 1, 0, cm_now_ms());
    return slot;
}

int gw_rpc_consumers(gw_rpc_t *rpc, const char *queue) {
    (void)rpc;
    (void)queue;
    return 1;
}

void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out) {
    (void)rpc;
    memset(out, 0, sizeof(*out));
    out->connected = 1;
    out->watch = watched();
    out->max_inflight = 100;
    out->node = "stub:5672";
}

__attribute__((format(printf, 2, 3))) static void
set_detail(gw_call_t *call, const char *fmt, ...) {
    char buf[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    free(call->detail);
    call->detail = strdup(buf);
}

/* A raw call: its body back (a worker error for every third length). */
static void answer_raw(gw_call_t *call) {
    if (call->req_body_len % 3 == 2) {
        call->err = GW_E_WORKER_ERROR;
        call->worker_type = strdup("internal");
        set_detail(call, "stub: %zu bytes", call->req_body_len);
        return;
    }
    call->status = 200;
    call->body = malloc(call->req_body_len + 1); /* not 0 bytes */
    if (call->body == NULL) {
        call->err = GW_E_INTERNAL;
        return;
    }
    if (call->req_body_len > 0)
        memcpy(call->body, call->req_body, call->req_body_len);
    call->body_len = call->req_body_len;
}

void gw_rpc_flush(gw_rpc_t *rpc) {
    (void)rpc;
}

void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call) {
    size_t len = call->n % 5 == 4 ? 20000 : 1 + call->n % 7;

    (void)rpc;
    call->err = GW_E_OK;
    if (call->route->kind == GW_KIND_RAW) {
        answer_raw(call);
        call->next = NULL;
        gw_http_call_done(call);
        return;
    }
    switch (call->n % 5) {
    case 1:
        call->err = GW_E_WORKER_ERROR;
        call->worker_type = strdup("internal");
        set_detail(call, "stub: n=%u", call->n);
        break;
    case 2:
        call->err = GW_E_BAD_REPLY;
        set_detail(call, "stub: not digits");
        break;
    case 3:
        call->err = GW_E_TIMEOUT;
        set_detail(call, "stub: no reply");
        break;
    default:
        call->body = malloc(len);
        if (call->body == NULL) {
            call->err = GW_E_INTERNAL;
            break;
        }
        memset(call->body, '7', len);
        call->body_len = len;
    }
    call->next = NULL;
    gw_http_call_done(call); /* as the AMQP thread would, only sooner */
}
