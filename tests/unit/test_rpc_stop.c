/* test_rpc_stop.c - a call submitted after the AMQP thread has stopped is
 * answered (shutting_down) on the submitting thread, not left in a mailbox
 * nobody reads (its HTTP connection would stay suspended, and
 * libmicrohttpd aborts when stopped with one).  The AMQP side runs for
 * real, against a port where no broker listens: no broker is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailbox.h"
#include "rpc.h"

static int done_calls;
static gw_err_t done_err;

static void on_done(gw_call_t *calls) {
    for (; calls != NULL; calls = calls->next) {
        done_calls++;
        done_err = calls->err;
    }
}

static void test_submit_after_stop_is_answered(void **state) {
    static gw_config_t cfg;
    static gw_metrics_t metrics;
    static gw_route_t route;
    gw_call_t call;
    gw_rpc_t *rpc;

    (void)state;
    /* port 1: refused at once, the thread keeps retrying until stopped */
    snprintf(cfg.amqp_url, sizeof(cfg.amqp_url), "%s",
             "amqp://guest:guest@127.0.0.1:1/");
    cfg.max_inflight = 10;
    cfg.confirms = 1;
    cfg.heartbeat_s = 30;
    cfg.max_reply_bytes = 1024;
    rpc = gw_rpc_new(&cfg, &metrics, on_done);
    assert_non_null(rpc);
    assert_int_equal(gw_rpc_start(rpc), 0);
    gw_rpc_shutdown(rpc); /* the thread has exited when this returns */

    memset(&call, 0, sizeof(call));
    call.route = &route;
    call.watch = -1;
    gw_rpc_submit(rpc, &call); /* admitted before the stop, say */
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, GW_E_SHUTTING_DOWN);
    free(call.detail);
    gw_rpc_free(rpc);
}

static void test_closed_mailbox_refuses(void **state) {
    gw_mailbox_t *mb = gw_mailbox_new();
    gw_call_t a, b;

    (void)state;
    assert_non_null(mb);
    assert_int_equal(gw_mailbox_put(mb, &a), 0);
    assert_ptr_equal(gw_mailbox_close(mb), &a); /* what was left in it */
    assert_int_equal(gw_mailbox_put(mb, &b), -1);
    assert_null(gw_mailbox_take_all(mb));
    gw_mailbox_free(mb);
}

static int woken(gw_mailbox_t *mb) {
    struct pollfd p = {gw_mailbox_fd(mb), POLLIN, 0};

    return poll(&p, 1, 0) == 1;
}

/* Puts wake the consumer at the producer's flush, once per batch. */
static void test_put_wakes_at_flush(void **state) {
    gw_mailbox_t *mb = gw_mailbox_new();
    gw_call_t a, b, *list;

    (void)state;
    assert_non_null(mb);
    assert_int_equal(gw_mailbox_put(mb, &a), 0);
    assert_int_equal(gw_mailbox_put(mb, &b), 0);
    assert_false(woken(mb));
    gw_mailbox_flush(mb);
    assert_true(woken(mb));
    gw_mailbox_clear(mb);
    gw_mailbox_flush(mb); /* nothing put since */
    assert_false(woken(mb));
    list = gw_mailbox_take_all(mb);
    assert_ptr_equal(list, &a); /* in the order they were put */
    assert_ptr_equal(list->next, &b);
    assert_null(b.next);
    /* a put into a list not yet taken needs no new wake-up */
    assert_int_equal(gw_mailbox_put(mb, &a), 0);
    gw_mailbox_flush(mb);
    gw_mailbox_clear(mb);
    assert_int_equal(gw_mailbox_put(mb, &b), 0);
    gw_mailbox_flush(mb);
    assert_false(woken(mb));
    gw_mailbox_free(mb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_wakes_at_flush),
        cmocka_unit_test(test_submit_after_stop_is_answered),
        cmocka_unit_test(test_closed_mailbox_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
