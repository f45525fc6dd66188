/* main.c - rpc-gateway: wiring, signals (SIGTERM/SIGINT stop, SIGHUP
 * reloads), start and stop order.  Nothing else lives here. */
#include <malloc.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "options.h"
#include "routes.h"
#include "rpc.h"

/* A reply up to --max-reply-bytes is held three times while it is answered
 * (its body, the call's copy, the JSON).  glibc keeps such blocks once
 * they are freed, because its mmap threshold grows to the largest block
 * freed so far; a fixed one gives every block this big or bigger back to
 * the system when it is freed. */
#define GW_MMAP_THRESHOLD (1024 * 1024)

/* A PEM file larger than this is not a certificate chain or a key. */
#define PEM_MAX (1024 * 1024)
/* Errors of a route file, one per line: enough for every route's. */
#define ROUTE_ERRORS_SIZE 16384

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

static void log_file_error(const char *msg, const char *flag, const char *path,
                           const char *why) {
    cm_log_t l;

    cm_log_begin(&l, CM_LOG_ERROR, msg);
    cm_log_kv(&l, "flag", "%s", flag);
    cm_log_kv(&l, "file", "%s", path);
    cm_log_kv(&l, "error", "%s", why);
    cm_log_end(&l);
}

static void free_pem(char *pem) {
    if (pem != NULL) { /* a key is not left behind in freed memory */
        explicit_bzero(pem, strlen(pem));
        free(pem);
    }
}

/* Reads a PEM file that must hold a certificate (key 0) or a private key
 * (key 1).  Returns the text (malloc'd), or NULL (logged). */
static char *read_pem(const char *flag, const char *path, int key) {
    size_t len = 0;
    char *pem = cm_read_file(path, PEM_MAX, &len);
    const char *why = NULL, *begin;

    if (pem == NULL) {
        log_file_error("tls_file_unreadable", flag, path,
                       errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        return NULL;
    }
    begin = strstr(pem, "-----BEGIN ");
    if (strlen(pem) != len)
        why = "a NUL byte: not a PEM file";
    else if (!key && strstr(pem, "-----BEGIN CERTIFICATE-----") == NULL)
        why = "no '-----BEGIN CERTIFICATE-----' in it: not a PEM certificate";
    else if (key &&
             (begin == NULL || strstr(begin, "PRIVATE KEY-----") == NULL))
        why = "no '-----BEGIN ... PRIVATE KEY-----' in it: not a PEM private "
              "key";
    else if (key && (strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY") != NULL ||
                     strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL))
        why = "an encrypted private key: give the key without a passphrase";
    if (why != NULL) {
        log_file_error("tls_file_invalid", flag, path, why);
        free_pem(pem);
        return NULL;
    }
    return pem;
}

/* --- the route table ---------------------------------------------------- */

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

/* What a route file may hold depends on the other flags too.  Returns 1,
 * or 0 with why in errors. */
static int fits_config(const gw_routes_t *t, const gw_config_t *cfg,
                       char *errors, size_t size) {
    size_t i;

    for (i = 0; i < gw_routes_count(t); i++) {
        const gw_route_t *r = gw_routes_at(t, i);

        if (r->mode == GW_MODE_PUBLISH && !cfg->confirms) {
            snprintf(errors, size,
                     "route '%s': mode publish answers 202 once the broker "
                     "confirms: it needs --confirms 1\n",
                     r->name);
            return 0;
        }
        /* The caller's token is for the gateway: passed on, every worker
         * (and a publish route's queue, on disk) would hold it. */
        if (cfg->auth_tokens_file[0] != '\0' &&
            gw_route_list_has(&r->forward_headers, "authorization")) {
            snprintf(errors, size,
                     "route '%s': forward_headers: 'authorization' carries "
                     "the gateway's bearer tokens (--auth-tokens-file): it "
                     "is never passed on then\n",
                     r->name);
            return 0;
        }
    }
    return 1;
}

/* The route table to start with, or to reload: --routes, or the fib
 * route on --queue.  NULL (every error logged as msg) when the file is
 * bad. */
static gw_routes_t *load_routes(const gw_config_t *cfg, const char *msg) {
    static char errors[ROUTE_ERRORS_SIZE];
    gw_routes_t *t;
    char *line, *save = NULL;

    if (cfg->routes[0] == '\0')
        return gw_routes_default(cfg->queue);
    t = gw_routes_load(cfg->routes, errors, sizeof(errors));
    if (t != NULL && !fits_config(t, cfg, errors, sizeof(errors))) {
        gw_routes_free(t);
        t = NULL;
    }
    if (t != NULL)
        return t;
    for (line = strtok_r(errors, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_ERROR, msg);
        cm_log_kv(&l, "what", "routes");
        cm_log_kv(&l, "file", "%s", cfg->routes);
        cm_log_kv(&l, "error", "%s", line);
        cm_log_end(&l);
    }
    return NULL;
}

/* --- SIGHUP: reloading ------------------------------------------------- */

/* The route file again: a good one serves new requests from the HTTP
 * thread's next turn (it logs msg=routes_loaded), a bad one is refused
 * and logged, and the old table stays. */
static void reload_routes(const gw_config_t *cfg, gw_http_t *http) {
    gw_routes_t *t;

    if (cfg->routes[0] == '\0')
        return;
    t = load_routes(cfg, "routes_refused");
    if (t != NULL)
        gw_http_reload(http, t);
}

/* The token file again: a set that parses replaces the old one whole; one
 * that does not is refused, and the old set stays. */
static void reload_tokens(const gw_config_t *cfg, gw_http_t *http) {
    char why[400];
    gw_auth_t *set;
    size_t count;
    cm_log_t l;

    if (cfg->auth_tokens_file[0] == '\0')
        return;
    set = gw_auth_load(cfg->auth_tokens_file, why, sizeof(why));
    if (set == NULL) {
        cm_log_begin(&l, CM_LOG_ERROR, "reload_refused");
        cm_log_kv(&l, "what", "auth_tokens");
        cm_log_kv(&l, "file", "%s", cfg->auth_tokens_file);
        cm_log_kv(&l, "error", "%s", why);
        cm_log_str(&l, "kept", "previous", 8);
        cm_log_end(&l);
        return;
    }
    count = gw_auth_count(set);
    /* Handed over before the line: a request after it sees the new set. */
    gw_http_set_tokens(http, set);
    cm_log_begin(&l, CM_LOG_INFO, "reloaded");
    cm_log_kv(&l, "what", "auth_tokens");
    cm_log_kv(&l, "file", "%s", cfg->auth_tokens_file);
    cm_log_kv(&l, "tokens", "%zu", count);
    cm_log_end(&l);
}

/* What SIGHUP re-reads.  Each step builds its new version whole and hands
 * it over atomically, or logs why not and keeps the old one; one step
 * failing does not stop the others.  Whatever else becomes reloadable
 * joins here. */
static void reload(const gw_config_t *cfg, gw_http_t *http) {
    cm_log_msg(CM_LOG_INFO, "reloading");
    reload_tokens(cfg, http);
    reload_routes(cfg, http);
}

/* --- signals ----------------------------------------------------------- */

/* Waits for SIGTERM or SIGINT (returned), reloading on every SIGHUP. */
static int wait_for_stop(const sigset_t *signals, const gw_config_t *cfg,
                         gw_http_t *http) {
    int sig = 0;

    for (;;) {
        if (sigwait(signals, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        reload(cfg, http);
    }
}

/* --drain-delay-ms: /readyz already says 503 and everything else is
 * served as before, so that load balancers take this gateway out before
 * it refuses connections.  SIGHUP still reloads; another SIGTERM or
 * SIGINT ends the delay at once. */
static void drain_delay(const sigset_t *signals, const gw_config_t *cfg,
                        gw_http_t *http) {
    int64_t until = cm_now_ms() + cfg->drain_delay_ms, left;

    while ((left = until - cm_now_ms()) > 0) {
        struct timespec ts = {left / 1000, (long)(left % 1000) * 1000000};
        int sig = sigtimedwait(signals, NULL, &ts);

        if (sig == SIGHUP) {
            reload(cfg, http);
        } else if (sig == SIGTERM || sig == SIGINT) {
            cm_log_t l;

            cm_log_begin(&l, CM_LOG_INFO, "drain_delay_cut");
            cm_log_kv(&l, "signal", "%s", sig == SIGINT ? "INT" : "TERM");
            cm_log_kv(&l, "left_ms", "%lld", (long long)left);
            cm_log_end(&l);
            return;
        }
    }
}

int main(int argc, char **argv) {
    static gw_metrics_t metrics; /* zeroed; outlives both threads */
    gw_config_t cfg;
    gw_rpc_t *rpc = NULL;
    gw_http_t *http = NULL;
    gw_auth_t *tokens = NULL;
    gw_tls_pem_t tls = {NULL, NULL};
    gw_routes_t *routes = NULL;
    char url[CM_URL_LIST_MAX + 4 * CM_URLS_MAX]; /* "***" may be longer */
    sigset_t signals;
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
    /* One address gets a small share of what is left, so others are still
     * served while it holds connections open (slowloris). */
    if (cfg.max_connections_per_ip == 0)
        cfg.max_connections_per_ip =
            cfg.max_connections >= 10 ? cfg.max_connections / 10 : 1;

    /* Signals are taken synchronously by this thread only; the threads
     * started below inherit the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    /* The files are read before anything starts: one that is missing or
     * wrong stops the gateway here (exit 2), as a bad flag does. */
    if (cfg.auth_tokens_file[0] != '\0') {
        char why[400];

        tokens = gw_auth_load(cfg.auth_tokens_file, why, sizeof(why));
        if (tokens == NULL) {
            log_file_error("auth_tokens_invalid", "--auth-tokens-file",
                           cfg.auth_tokens_file, why);
            return 2;
        }
    }
    if (cfg.tls_cert[0] != '\0') {
        tls.cert = read_pem("--tls-cert", cfg.tls_cert, 0);
        tls.key =
            tls.cert != NULL ? read_pem("--tls-key", cfg.tls_key, 1) : NULL;
        if (tls.key == NULL) {
            free_pem(tls.cert);
            gw_auth_free(tokens);
            return 2;
        }
    }

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
    routes = load_routes(&cfg, "routes_refused");
    if (routes == NULL)
        goto out;
    rpc = gw_rpc_new(&cfg, &metrics, gw_http_call_done);
    if (rpc == NULL)
        goto out;
    /* HTTP first: taking the routes in use registers their queues, which
     * the AMQP thread counts before it admits the first call. */
    http = gw_http_start(&cfg, rpc, &metrics, routes, tokens,
                         tls.cert != NULL ? &tls : NULL);
    routes = NULL;
    tokens = NULL; /* the HTTP side's now, started or not */
    /* libmicrohttpd reads the PEM text only while it starts (GnuTLS
     * keeps its own copy). */
    free_pem(tls.cert);
    free_pem(tls.key);
    tls.cert = tls.key = NULL;
    if (http == NULL || gw_rpc_start(rpc) != 0)
        goto out;

    sig = wait_for_stop(&signals, &cfg, http);
    /* Unready first: a load balancer polling /readyz takes us out while
     * we still serve (--drain-delay-ms). */
    gw_http_unready(http);
    {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "stopping");
        cm_log_kv(&l, "signal", "%s", sig == SIGINT ? "INT" : "TERM");
        cm_log_kv(&l, "drain_delay_ms", "%u", cfg.drain_delay_ms);
        cm_log_end(&l);
    }
    if (cfg.drain_delay_ms > 0)
        drain_delay(&signals, &cfg, http);
    /* Stop accepting and close idle connections, let calls in flight
     * finish, write every answer, then close. */
    gw_http_drain(http);
    gw_rpc_shutdown(rpc);
    rc = 0;
out:
    gw_http_stop(http);
    gw_rpc_free(rpc);
    gw_routes_free(routes);
    gw_metrics_free(&metrics);
    gw_auth_free(tokens);
    free_pem(tls.cert);
    free_pem(tls.key);
    cm_log_msg(CM_LOG_INFO, "stopped");
    return rc;
}
