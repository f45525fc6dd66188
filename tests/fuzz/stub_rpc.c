/* stub_rpc.c - a stand-in for the gateway's AMQP side (rpc.c) for the HTTP
 * fuzz target: every call is admitted and answered at once, on the HTTP
 * thread, with an outcome that depends on n only (200 with a short or a
 * long body, a worker error, a bad reply, a timeout), so the same input
 * always gets the same answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "rpc.h"

gw_err_t gw_rpc_admit(gw_rpc_t *rpc) {
    return GW_E_OK;
}

void gw_rpc_link(gw_rpc_t *rpc, gw_metrics_link_t *out) {
    memset(out, 0, sizeof(*out));
    out->connected = 1;
    out->consumers = 1;
    out->max_inflight = 100;
    out->node = "stub:5672";
}

void gw_rpc_submit(gw_rpc_t *rpc, gw_call_t *call) {
    size_t len = call->n % 5 == 4 ? 20000 : 1 + call->n % 7;

    call->err = GW_E_OK;
    switch (call->n % 5) {
    case 1:
        call->err = GW_E_WORKER_ERROR;
        snprintf(call->worker_type, sizeof(call->worker_type), "internal");
        snprintf(call->detail, sizeof(call->detail), "stub: n=%u", call->n);
        break;
    case 2:
        call->err = GW_E_BAD_REPLY;
        snprintf(call->detail, sizeof(call->detail), "stub: not digits");
        break;
    case 3:
        call->err = GW_E_TIMEOUT;
        snprintf(call->detail, sizeof(call->detail), "stub: no reply");
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
    gw_http_call_done(call); /* as the AMQP thread would, only sooner */
}
