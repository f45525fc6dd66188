/* config.c - fib-worker's command line: flags, environment fallbacks,
 * defaults, --help and --version.  Each value is checked here, once, so the
 * rest of the worker can trust fw_config_t.  Called from main() only. */
#include "config.h"
#include "hostport.h"
#include "log.h"
#include "options.h"
#include "urls.h"

#include <amqp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fibrpc.h"

#ifndef FW_VERSION
#define FW_VERSION FIBRPC_VERSION
#endif

#define FW_DEFAULT_URL    "amqp://guest:guest@localhost:5672/"
#define FW_DEFAULT_CACERT "/etc/ssl/certs/ca-certificates.crt"
/* AMQP short strings, such as queue names, hold at most 255 bytes. */
#define FW_QUEUE_NAME_MAX 255

/* The settings; fw_config_check turns each value into fw_config_t. */
enum {
    FW_OPT_URL,
    FW_OPT_URL_FILE,
    FW_OPT_CACERT,
    FW_OPT_QUEUE,
    FW_OPT_QUEUE_TYPE,
    FW_OPT_DELIVERY_LIMIT,
    FW_OPT_PREFETCH,
    FW_OPT_MAX_N,
    FW_OPT_METRICS_LISTEN,
    FW_OPT_LOG_LEVEL,
    FW_NOPTS
};

static const cm_opt_t fw_opts[FW_NOPTS] = {
    [FW_OPT_URL] = {"amqp-url", "AMQP_URL", FW_DEFAULT_URL, "URL[,URL...]",
                    "broker, amqp:// or amqps://; several (the nodes of a "
                    "cluster) separated by commas: the worker picks one at "
                    "random and fails over to the next"},
    [FW_OPT_URL_FILE] = {"amqp-url-file", "AMQP_URL_FILE", NULL, "FILE",
                         "read the broker URL (or list) from this file "
                         "instead (a "
                         "Docker or Kubernetes secret), so the password is "
                         "not in the process's command line"},
    [FW_OPT_CACERT] = {"amqp-cacert", "AMQP_CACERT", NULL, "FILE",
                       "CA certificates for amqps:// (when unset: the "
                       "system bundle, if readable)"},
    [FW_OPT_QUEUE] = {"queue", "RPC_QUEUE", FIBRPC_DEFAULT_QUEUE, "NAME",
                      "request queue, declared durable"},
    [FW_OPT_QUEUE_TYPE] = {"queue-type", "RPC_QUEUE_TYPE", "classic", "TYPE",
                           "classic or quorum (declared with x-queue-type; a "
                           "cluster's choice)"},
    [FW_OPT_DELIVERY_LIMIT] =
        {"delivery-limit", "RPC_DELIVERY_LIMIT", "0", "N",
         "quorum only: declare x-delivery-limit N, and answer a request "
         "already delivered N-1 times with worker_crashed instead of "
         "computing it again (2-1000; 0: no limit)"},
    [FW_OPT_PREFETCH] = {"prefetch", "WORKER_PREFETCH", "1", "N",
                         "requests held unacknowledged at once, 1-65535"},
    [FW_OPT_MAX_N] = {"max-n", "FIB_MAX_N", CM_STR(FIBRPC_DEFAULT_MAX_N), "N",
                      "largest n served, 0-" CM_STR(FIBRPC_HARD_MAX_N)},
    [FW_OPT_METRICS_LISTEN] = {"metrics-listen", "WORKER_METRICS_LISTEN", "",
                               "HOST:PORT",
                               "serve http://HOST:PORT/metrics; empty: off"},
    [FW_OPT_LOG_LEVEL] = {"log-level", "WORKER_LOG_LEVEL", "info", "LEVEL",
                          "debug, info (a line per request), warn or error"},
};

static int fw_bad(const char *from, const char *what) {
    fprintf(stderr, "fib-worker: %s: %s (see --help)\n",
            from != NULL ? from : "default", what);
    return -1;
}

static int fw_config_url(fw_config_t *cfg, const char *url, const char *from) {
    char why[CM_URL_MASKED_MAX + 128];

    if (cm_urls_parse(&cfg->urls, url, why, sizeof(why)) != 0)
        return fw_bad(from, why); /* passwords masked */
    /* Each worker starts on a node of its own choosing, so that several
     * spread over the cluster. */
    cm_urls_shuffle(&cfg->urls, cm_random64());
    return 0;
}

/* "HOST:PORT", "[IPv6]:PORT"; the port 1-65535 (0 would pick a port nobody
 * could find). */
static int fw_config_metrics(fw_config_t *cfg, const char *v,
                             const char *from) {
    if (cm_parse_hostport(v, cfg->metrics_host, sizeof(cfg->metrics_host),
                          &cfg->metrics_port, 1) != 0)
        return fw_bad(from, "metrics address must be HOST:PORT, the port "
                            "1-65535");
    return 0;
}

static int fw_config_check(fw_config_t *cfg, const cm_opt_value_t *o) {
    const char *from, *v;
    unsigned long num;

    if (o[FW_OPT_URL_FILE].value != NULL) {
        char url[CM_URL_LIST_MAX];

        if (strcmp(o[FW_OPT_URL].from, "default") != 0)
            return fw_bad(o[FW_OPT_URL_FILE].from,
                          "the broker URL is given twice (also by "
                          "--amqp-url or AMQP_URL): use one");
        if (cm_read_secret(o[FW_OPT_URL_FILE].value, url, sizeof(url)) != 0)
            return fw_bad(o[FW_OPT_URL_FILE].from,
                          errno == EFBIG    ? "URL file too long for a URL"
                          : errno == EINVAL ? "URL file is empty"
                                            : "URL file cannot be read");
        if (fw_config_url(cfg, url, o[FW_OPT_URL_FILE].from) != 0)
            return -1;
    } else if (fw_config_url(cfg, o[FW_OPT_URL].value, o[FW_OPT_URL].from) !=
               0) {
        return -1;
    }

    v = o[FW_OPT_CACERT].value;
    if (v != NULL) {
        if (access(v, R_OK) != 0)
            return fw_bad(o[FW_OPT_CACERT].from, "CA file is not readable");
        cfg->cacert = v;
    } else if (access(FW_DEFAULT_CACERT, R_OK) == 0) {
        cfg->cacert = FW_DEFAULT_CACERT;
    }

    v = o[FW_OPT_QUEUE].value;
    from = o[FW_OPT_QUEUE].from;
    /* An empty name would make the broker invent one. */
    if (*v == '\0')
        return fw_bad(from, "queue name is empty");
    if (strlen(v) > FW_QUEUE_NAME_MAX)
        return fw_bad(from, "queue name is longer than 255 bytes");
    /* RabbitMQ refuses to declare "amq.*" queues (ACCESS_REFUSED). */
    if (strncmp(v, "amq.", 4) == 0)
        return fw_bad(from, "queue names starting with \"amq.\" are reserved");
    cfg->queue = v;

    v = o[FW_OPT_QUEUE_TYPE].value;
    if (strcmp(v, "quorum") == 0)
        cfg->quorum = 1;
    else if (strcmp(v, "classic") != 0)
        return fw_bad(o[FW_OPT_QUEUE_TYPE].from,
                      "queue type must be classic or quorum");
    /* 1 would answer every first delivery worker_crashed. */
    if (strcmp(o[FW_OPT_DELIVERY_LIMIT].value, "0") != 0 &&
        cm_parse_uint(o[FW_OPT_DELIVERY_LIMIT].value, 2, 1000, &num) != 0)
        return fw_bad(o[FW_OPT_DELIVERY_LIMIT].from,
                      "delivery limit must be a whole number 2-1000, or 0");
    cfg->delivery_limit =
        strcmp(o[FW_OPT_DELIVERY_LIMIT].value, "0") != 0 ? (uint32_t)num : 0;
    /* Classic queues count no deliveries (no x-delivery-count). */
    if (cfg->delivery_limit > 0 && !cfg->quorum)
        return fw_bad(o[FW_OPT_DELIVERY_LIMIT].from,
                      "a delivery limit needs --queue-type quorum");

    if (cm_parse_uint(o[FW_OPT_PREFETCH].value, 1, UINT16_MAX, &num) != 0)
        return fw_bad(o[FW_OPT_PREFETCH].from,
                      "prefetch must be a whole number 1-65535");
    cfg->prefetch = (uint16_t)num;

    if (cm_parse_uint(o[FW_OPT_MAX_N].value, 0, FIBRPC_HARD_MAX_N, &num) != 0) {
        fprintf(stderr,
                "fib-worker: %s: max-n must be a whole number 0-%lu "
                "(see --help)\n",
                o[FW_OPT_MAX_N].from, (unsigned long)FIBRPC_HARD_MAX_N);
        return -1;
    }
    cfg->max_n = (uint32_t)num;

    v = o[FW_OPT_METRICS_LISTEN].value;
    if (*v != '\0' &&
        fw_config_metrics(cfg, v, o[FW_OPT_METRICS_LISTEN].from) != 0)
        return -1;

    if (cm_log_init("fib-worker", o[FW_OPT_LOG_LEVEL].value) != 0)
        return fw_bad(o[FW_OPT_LOG_LEVEL].from,
                      "log level must be debug, info, warn or error");
    return 0;
}

fw_config_result_t fw_config_load(fw_config_t *cfg, int argc, char **argv) {
    cm_opt_value_t values[FW_NOPTS];

    memset(cfg, 0, sizeof(*cfg));
    switch (cm_options_parse(
        "fib-worker", FW_VERSION,
        "Usage: fib-worker [OPTION]...\n"
        "Serve Fibonacci numbers over AMQP RPC: consume n (decimal digits)\n"
        "from a queue, reply F(n) to the request's reply_to with its\n"
        "correlation_id.\n\n"
        "Each option falls back to the environment variable in brackets,\n"
        "then to its default.\n",
        "Logs go to stderr, one logfmt line per event.  On SIGTERM or\n"
        "SIGINT the worker finishes the request in hand, then exits 0.\n"
        "Exit status 2: a bad option or environment variable, or a metrics\n"
        "address that cannot be listened on.",
        fw_opts, FW_NOPTS, argc, argv, values)) {
    case CM_OPTS_EXIT:
        return FW_CONFIG_EXIT;
    case CM_OPTS_BAD:
        return FW_CONFIG_BAD;
    case CM_OPTS_OK:
        break;
    }
    if (fw_config_check(cfg, values) != 0) {
        fw_config_free(cfg);
        return FW_CONFIG_BAD;
    }
    return FW_CONFIG_OK;
}

void fw_config_free(fw_config_t *cfg) {
    if (cfg == NULL)
        return;
    cm_urls_free(&cfg->urls);
    memset(cfg, 0, sizeof(*cfg));
}
