/* main.c - rpc-gateway: wiring, signals, start and stop order.  Nothing
 * else lives here. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "rpc.h"

/* Raise the open-file limit as far as allowed: every HTTP connection is a
 * descriptor.  Returns how many descriptors we may use. */
static rlim_t raise_nofile(void) {
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

int main(int argc, char **argv) {
    static gw_metrics_t metrics; /* zeroed; outlives both threads */
    gw_config_t cfg;
    gw_rpc_t *rpc = NULL;
    gw_http_t *http = NULL;
    char url[1024];
    sigset_t stop_signals;
    rlim_t nofile;
    int rc, sig = 0;

    rc = gw_config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    setvbuf(stderr, NULL, _IOLBF, 0);
    gw_log_min_level = !strcmp(cfg.log_level, "debug")   ? GW_LOG_DEBUG
                       : !strcmp(cfg.log_level, "warn")  ? GW_LOG_WARN
                       : !strcmp(cfg.log_level, "error") ? GW_LOG_ERROR
                                                         : GW_LOG_INFO;

    nofile = raise_nofile();
    if (cfg.max_connections + 64 > nofile) {
        gw_log(GW_LOG_INFO,
               "max_connections_lowered from=%u to=%u reason=open_file_limit",
               cfg.max_connections, (unsigned)(nofile - 64));
        cfg.max_connections = (unsigned)(nofile - 64);
    }

    /* Signals are taken synchronously by this thread only; the threads
     * started below inherit the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    gw_config_redact_url(cfg.amqp_url, url, sizeof(url));
    gw_log(GW_LOG_INFO,
           "starting version=%s amqp_url=\"%s\" queue=%s timeout_ms=%u "
           "max_timeout_ms=%u max_inflight=%u max_n=%u",
           GW_VERSION, url, cfg.queue, cfg.timeout_ms, cfg.max_timeout_ms,
           cfg.max_inflight, cfg.max_n);

    rc = 1;
    rpc = gw_rpc_new(&cfg, &metrics, gw_http_call_done);
    if (rpc == NULL || gw_rpc_start(rpc) != 0)
        goto out;
    http = gw_http_start(&cfg, rpc, &metrics);
    if (http == NULL)
        goto out;

    sigwait(&stop_signals, &sig);
    gw_log(GW_LOG_INFO, "stopping signal=%s", sig == SIGINT ? "INT" : "TERM");
    /* Stop accepting and close idle connections, let calls in flight
     * finish, write every answer, then close. */
    gw_http_drain(http);
    gw_rpc_shutdown(rpc);
    rc = 0;
out:
    gw_http_stop(http);
    gw_rpc_free(rpc);
    gw_log(GW_LOG_INFO, "stopped");
    return rc;
}
