/* config.c - fib-worker's command line: flags, environment fallbacks,
 * defaults, --help and --version.  Each value is checked here, once, so the
 * rest of the worker can trust fw_config_t.  Called from main() only. */
#include "config.h"
#include "hostport.h"
#include "log.h"

#include <amqp.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fibrpc.h"

#ifndef FW_VERSION
#define FW_VERSION FIBRPC_VERSION
#endif

#define FW_DEFAULT_URL      "amqp://guest:guest@localhost:5672/"
#define FW_DEFAULT_CACERT   "/etc/ssl/certs/ca-certificates.crt"
#define FW_DEFAULT_PREFETCH 1
/* AMQP short strings, such as queue names, hold at most 255 bytes. */
#define FW_QUEUE_NAME_MAX 255

static void fw_print_usage(void) {
    printf(
        "Usage: fib-worker [OPTION]...\n"
        "Serve Fibonacci numbers over AMQP RPC: consume n (decimal digits)\n"
        "from a queue, reply F(n) to the request's reply_to with its\n"
        "correlation_id.\n"
        "\n"
        "Each option falls back to the environment variable in brackets,\n"
        "then to its default.\n"
        "\n"
        "  --amqp-url=URL      broker, amqp:// or amqps:// [AMQP_URL]\n"
        "                      default: %s\n"
        "  --amqp-cacert=FILE  CA certificates that verify an amqps://\n"
        "                      broker [AMQP_CACERT]\n"
        "                      default: %s if readable\n"
        "  --queue=NAME        request queue, declared durable [RPC_QUEUE]\n"
        "                      default: %s\n"
        "  --prefetch=N        requests held unacknowledged at once, 1-65535\n"
        "                      [WORKER_PREFETCH]\n"
        "                      default: %u\n"
        "  --max-n=N           largest n served, 0-%lu [FIB_MAX_N]\n"
        "                      default: %lu\n"
        "  --metrics-listen=HOST:PORT\n"
        "                      serve Prometheus metrics at\n"
        "                      http://HOST:PORT/metrics ([::1]:PORT for\n"
        "                      IPv6) [WORKER_METRICS_LISTEN]\n"
        "                      default: empty, no metrics port\n"
        "  --log-level=LEVEL   debug, info (a line per request), warn or\n"
        "                      error [WORKER_LOG_LEVEL]\n"
        "                      default: info\n"
        "  --version           print the version and exit\n"
        "  --help              print this help and exit\n"
        "\n"
        "Logs go to stderr, one logfmt line per event.  On SIGTERM or\n"
        "SIGINT the worker finishes the request in hand, then exits 0.\n"
        "Exit status 2: a bad option or environment variable, or a metrics\n"
        "address that cannot be listened on.\n",
        FW_DEFAULT_URL, FW_DEFAULT_CACERT, FIBRPC_DEFAULT_QUEUE,
        FW_DEFAULT_PREFETCH, (unsigned long)FIBRPC_HARD_MAX_N,
        (unsigned long)FIBRPC_DEFAULT_MAX_N);
}

enum {
    FW_OPT_URL = 1,
    FW_OPT_CACERT,
    FW_OPT_QUEUE,
    FW_OPT_PREFETCH,
    FW_OPT_MAX_N,
    FW_OPT_METRICS_LISTEN,
    FW_OPT_LOG_LEVEL,
    FW_OPT_VERSION,
    FW_OPT_HELP
};

static const struct option fw_options[] = {
    {"amqp-url", required_argument, NULL, FW_OPT_URL},
    {"amqp-cacert", required_argument, NULL, FW_OPT_CACERT},
    {"queue", required_argument, NULL, FW_OPT_QUEUE},
    {"prefetch", required_argument, NULL, FW_OPT_PREFETCH},
    {"max-n", required_argument, NULL, FW_OPT_MAX_N},
    {"metrics-listen", required_argument, NULL, FW_OPT_METRICS_LISTEN},
    {"log-level", required_argument, NULL, FW_OPT_LOG_LEVEL},
    {"version", no_argument, NULL, FW_OPT_VERSION},
    {"help", no_argument, NULL, FW_OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* A flag's value, else its environment variable unless unset or empty, else
 * def.  *from names where the value came from, for error messages. */
static const char *fw_pick(const char *flag_value, const char *flag,
                           const char *env, const char *def,
                           const char **from) {
    const char *v;

    if (flag_value != NULL) {
        *from = flag;
        return flag_value;
    }
    v = getenv(env);
    if (v != NULL && *v != '\0') {
        *from = env;
        return v;
    }
    *from = NULL;
    return def;
}

static int fw_bad(const char *from, const char *what) {
    fprintf(stderr, "fib-worker: %s: %s (see --help)\n",
            from != NULL ? from : "default", what);
    return -1;
}

/* Decimal digits only, no sign or spaces, within [min, max]. */
static int fw_parse_uint(const char *s, unsigned long min, unsigned long max,
                         unsigned long *out) {
    unsigned long v;
    char *end;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int fw_config_url(fw_config_t *cfg, const char *url, const char *from) {
    struct amqp_connection_info info;

    cfg->url_buf = strdup(url);
    if (cfg->url_buf == NULL)
        return fw_bad(from, "out of memory");
    /* Parses in place; the strings it returns point into url_buf. */
    if (amqp_parse_url(cfg->url_buf, &info) != AMQP_STATUS_OK)
        return fw_bad(from,
                      "not an amqp:// or amqps:// URL "
                      "(amqp[s]://[user[:password]@]host[:port][/vhost])");
    if (info.port <= 0 || info.port > 65535)
        return fw_bad(from, "port must be 1-65535");
    if (*info.host == '\0')
        return fw_bad(from, "host is empty");
    cfg->host = info.host;
    cfg->port = info.port;
    /* "amqp://host/" names the empty vhost, which RabbitMQ never has; pika
     * and most clients take it as the default vhost "/", and so do we. */
    cfg->vhost = *info.vhost != '\0' ? info.vhost : "/";
    cfg->user = info.user;
    cfg->password = info.password;
    cfg->tls = info.ssl != 0;
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

static int fw_config_check(fw_config_t *cfg, const char **flags) {
    const char *from, *v;
    unsigned long num;

    v = fw_pick(flags[FW_OPT_URL], "--amqp-url", "AMQP_URL", FW_DEFAULT_URL,
                &from);
    if (fw_config_url(cfg, v, from) != 0)
        return -1;

    v = fw_pick(flags[FW_OPT_CACERT], "--amqp-cacert", "AMQP_CACERT", NULL,
                &from);
    if (v != NULL) {
        if (access(v, R_OK) != 0)
            return fw_bad(from, "CA file is not readable");
        cfg->cacert = v;
    } else if (access(FW_DEFAULT_CACERT, R_OK) == 0) {
        cfg->cacert = FW_DEFAULT_CACERT;
    }

    v = fw_pick(flags[FW_OPT_QUEUE], "--queue", "RPC_QUEUE",
                FIBRPC_DEFAULT_QUEUE, &from);
    /* An empty name would make the broker invent one. */
    if (*v == '\0')
        return fw_bad(from, "queue name is empty");
    if (strlen(v) > FW_QUEUE_NAME_MAX)
        return fw_bad(from, "queue name is longer than 255 bytes");
    /* RabbitMQ refuses to declare "amq.*" queues (ACCESS_REFUSED). */
    if (strncmp(v, "amq.", 4) == 0)
        return fw_bad(from, "queue names starting with \"amq.\" are reserved");
    cfg->queue = v;

    cfg->prefetch = FW_DEFAULT_PREFETCH;
    v = fw_pick(flags[FW_OPT_PREFETCH], "--prefetch", "WORKER_PREFETCH", NULL,
                &from);
    if (v != NULL) {
        if (fw_parse_uint(v, 1, UINT16_MAX, &num) != 0)
            return fw_bad(from, "prefetch must be a whole number 1-65535");
        cfg->prefetch = (uint16_t)num;
    }

    cfg->max_n = FIBRPC_DEFAULT_MAX_N;
    v = fw_pick(flags[FW_OPT_MAX_N], "--max-n", "FIB_MAX_N", NULL, &from);
    if (v != NULL) {
        if (fw_parse_uint(v, 0, FIBRPC_HARD_MAX_N, &num) != 0) {
            fprintf(stderr,
                    "fib-worker: %s: max-n must be a whole number 0-%lu "
                    "(see --help)\n",
                    from, (unsigned long)FIBRPC_HARD_MAX_N);
            return -1;
        }
        cfg->max_n = (uint32_t)num;
    }

    v = fw_pick(flags[FW_OPT_METRICS_LISTEN], "--metrics-listen",
                "WORKER_METRICS_LISTEN", "", &from);
    if (*v != '\0' && fw_config_metrics(cfg, v, from) != 0)
        return -1;

    v = fw_pick(flags[FW_OPT_LOG_LEVEL], "--log-level", "WORKER_LOG_LEVEL",
                "info", &from);
    if (cm_log_init("fib-worker", v) != 0)
        return fw_bad(from, "log level must be debug, info, warn or error");
    return 0;
}

fw_config_result_t fw_config_load(fw_config_t *cfg, int argc, char **argv) {
    const char *flags[FW_OPT_HELP + 1] = {NULL};
    int opt;

    memset(cfg, 0, sizeof(*cfg));
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", fw_options, NULL)) != -1) {
        switch (opt) {
        case FW_OPT_VERSION:
            printf("fib-worker %s\n", FW_VERSION);
            return FW_CONFIG_EXIT;
        case FW_OPT_HELP:
            fw_print_usage();
            return FW_CONFIG_EXIT;
        case ':':
            fprintf(stderr, "fib-worker: %s needs a value (see --help)\n",
                    argv[optind - 1]);
            return FW_CONFIG_BAD;
        case '?':
            /* optopt is the letter of a bad short option, or the val of a
             * long one given a value it does not take. */
            if (optopt > ' ' && optopt < 0x7f)
                fprintf(stderr, "fib-worker: bad option -%c (see --help)\n",
                        optopt);
            else
                fprintf(stderr, "fib-worker: bad option %s (see --help)\n",
                        argv[optind - 1]);
            return FW_CONFIG_BAD;
        default:
            flags[opt] = optarg;
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fib-worker: unexpected argument %s (see --help)\n",
                argv[optind]);
        return FW_CONFIG_BAD;
    }
    if (fw_config_check(cfg, flags) != 0) {
        fw_config_free(cfg);
        return FW_CONFIG_BAD;
    }
    return FW_CONFIG_OK;
}

void fw_config_free(fw_config_t *cfg) {
    if (cfg == NULL)
        return;
    free(cfg->url_buf);
    memset(cfg, 0, sizeof(*cfg));
}
