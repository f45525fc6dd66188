/* main.c - rpc-gateway: wiring, signals (SIGTERM/SIGINT stop, SIGHUP
 * reloads), start and stop order.  Nothing else lives here. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "routes.h"
#include "rpc.h"

/* Errors of a route file, one per line: enough for every route's. */
#define ROUTE_ERRORS_SIZE 16384

/* --check-routes FILE: prints what is wrong with it.  Returns the exit
 * status: 0 when it is good, 1 when not. */
static int check_routes(const char *path) {
    static char errors[ROUTE_ERRORS_SIZE];
    gw_routes_t *t = gw_routes_load(path, errors, sizeof(errors));

    if (t == NULL) {
        fprintf(stderr, "%s: bad route file:\n%s", path, errors);
        return 1;
    }
    printf("%s: %zu routes, good\n", path, gw_routes_count(t));
    gw_routes_free(t);
    return 0;
}

/* The route table to start with, or to reload: --routes, or the fib
 * route on --queue.  NULL (every error logged) when the file is bad. */
static gw_routes_t *load_routes(const gw_config_t *cfg) {
    static char errors[ROUTE_ERRORS_SIZE];
    gw_routes_t *t;
    char *line, *save = NULL;

    if (cfg->routes[0] == '\0')
        return gw_routes_default(cfg->queue);
    t = gw_routes_load(cfg->routes, errors, sizeof(errors));
    if (t != NULL && !cfg->confirms) {
        size_t i;

        for (i = 0; i < gw_routes_count(t); i++)
            if (gw_routes_at(t, i)->mode == GW_MODE_PUBLISH) {
                snprintf(errors, sizeof(errors),
                         "route '%s': mode publish answers 202 once the "
                         "broker confirms: it needs --confirms 1\n",
                         gw_routes_at(t, i)->name);
                gw_routes_free(t);
                t = NULL;
                break;
            }
    }
    if (t != NULL)
        return t;
    for (line = strtok_r(errors, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, "routes_refused");
        cm_log_kv(&l, "file", "%s", cfg->routes);
        cm_log_kv(&l, "error", "%s", line);
        cm_log_end(&l);
    }
    return NULL;
}

/* SIGHUP: everything that can be re-read is; what fails to load is
 * logged and the old stays. */
static void reload(const gw_config_t *cfg, gw_http_t *http) {
    gw_routes_t *t;

    cm_log_msg(CM_LOG_INFO, "reloading");
    if (cfg->routes[0] == '\0')
        return;
    t = load_routes(cfg);
    if (t != NULL)
        gw_http_reload(http, t); /* logged once in use */
}

/* A reply up to --max-reply-bytes is held three times while it is answered
 * (its body, the call's copy, the JSON).  glibc keeps such blocks once
 * they are freed, because its mmap threshold grows to the largest block
 * freed so far; a fixed one gives every block this big or bigger back to
 * the system when it is freed. */
#define GW_MMAP_THRESHOLD (1024 * 1024)

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
    gw_routes_t *routes;
    char url[CM_URL_LIST_MAX + 4 * CM_URLS_MAX]; /* "***" may be longer */
    sigset_t stop_signals;
    rlim_t nofile;
    int rc, sig = 0;

    rc = gw_config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (cfg.check_routes[0] != '\0')
        return check_routes(cfg.check_routes);
    setvbuf(stderr, NULL, _IOLBF, 0);
    cm_log_init("rpc-gateway", cfg.log_level); /* validated by config */
    mallopt(M_MMAP_THRESHOLD, GW_MMAP_THRESHOLD);

    nofile = raise_nofile();
    if (cfg.max_connections + 64 > nofile) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "max_connections_lowered");
        cm_log_kv(&l, "from", "%u", cfg.max_connections);
        cm_log_kv(&l, "to", "%u", (unsigned)(nofile - 64));
        cm_log_str(&l, "reason", "open_file_limit", 15);
        cm_log_end(&l);
        cfg.max_connections = (unsigned)(nofile - 64);
    }

    /* Signals are taken synchronously by this thread only; the threads
     * started below inherit the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    gw_config_redact_url(cfg.amqp_url, url, sizeof(url));
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "starting");
        cm_log_kv(&l, "version", "%s", GW_VERSION);
        cm_log_kv(&l, "amqp_url", "%s", url);
        cm_log_kv(&l, "queue", "%s", cfg.queue);
        if (cfg.routes[0] != '\0')
            cm_log_kv(&l, "routes", "%s", cfg.routes);
        cm_log_kv(&l, "timeout_ms", "%u", cfg.timeout_ms);
        cm_log_kv(&l, "max_timeout_ms", "%u", cfg.max_timeout_ms);
        cm_log_kv(&l, "max_inflight", "%u", cfg.max_inflight);
        cm_log_kv(&l, "max_n", "%u", cfg.max_n);
        cm_log_kv(&l, "max_reply_bytes", "%u", cfg.max_reply_bytes);
        cm_log_end(&l);
    }

    rc = 1;
    routes = load_routes(&cfg);
    if (routes == NULL)
        goto out;
    rpc = gw_rpc_new(&cfg, &metrics, gw_http_call_done);
    if (rpc == NULL) {
        gw_routes_free(routes);
        goto out;
    }
    /* HTTP first: taking the routes in use registers their queues, which
     * the AMQP thread counts before it admits the first call. */
    http = gw_http_start(&cfg, rpc, &metrics, routes);
    if (http == NULL || gw_rpc_start(rpc) != 0)
        goto out;

    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP)
        reload(&cfg, http);
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "stopping");
        cm_log_kv(&l, "signal", "%s", sig == SIGINT ? "INT" : "TERM");
        cm_log_end(&l);
    }
    /* Stop accepting and close idle connections, let calls in flight
     * finish, write every answer, then close. */
    gw_http_drain(http);
    gw_rpc_shutdown(rpc);
    rc = 0;
out:
    gw_http_stop(http);
    gw_rpc_free(rpc);
    gw_metrics_free(&metrics);
    cm_log_msg(CM_LOG_INFO, "stopped");
    return rc;
}
