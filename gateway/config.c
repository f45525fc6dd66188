/* config.c - flags and environment -> gw_config_t.  Table-driven so that
 * --help, the environment fallback and validation cannot drift apart.
 * Called once by main before any thread starts. */
#include "config.h"

#define GW_STR_(x) #x
#define GW_STR(x)  GW_STR_(x)

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fibrpc.h"
#include "hostport.h"

#ifndef GW_VERSION
#define GW_VERSION FIBRPC_VERSION
#endif

typedef enum { OPT_STR, OPT_LISTEN, OPT_UINT } opt_kind_t;

typedef struct {
    const char *name; /* long flag, without "--" */
    const char *env;
    const char *dflt;
    opt_kind_t kind;
    unsigned long min, max; /* OPT_UINT bounds */
    size_t offset;          /* into gw_config_t */
    size_t size;            /* OPT_STR buffer size, OPT_UINT width */
    const char *help;
} opt_t;

#define CFG(field)                                                             \
    offsetof(gw_config_t, field), sizeof(((gw_config_t *)0)->field)

static const opt_t opts[] = {
    {"amqp-url", "AMQP_URL", "amqp://guest:guest@localhost:5672/", OPT_STR, 0,
     0, CFG(amqp_url), "RabbitMQ URL, amqp:// or amqps://"},
    {"amqp-cacert", "AMQP_CACERT", "/etc/ssl/certs/ca-certificates.crt",
     OPT_STR, 0, 0, CFG(amqp_cacert), "CA certificates for amqps://"},
    {"listen", "GATEWAY_LISTEN", "0.0.0.0:8080", OPT_LISTEN, 0, 0,
     CFG(listen_host), "HTTP listen address, HOST:PORT"},
    {"queue", "RPC_QUEUE", FIBRPC_DEFAULT_QUEUE, OPT_STR, 0, 0, CFG(queue),
     "request queue the workers consume"},
    {"max-n", "FIB_MAX_N", "100000", OPT_UINT, 0, FIBRPC_HARD_MAX_N, CFG(max_n),
     "largest n accepted"},
    {"timeout-ms", "GATEWAY_TIMEOUT_MS", GW_STR(GW_DEFAULT_TIMEOUT_MS),
     OPT_UINT, 1, 3600000, CFG(timeout_ms), "default call timeout"},
    {"max-timeout-ms", "GATEWAY_MAX_TIMEOUT_MS", "30000", OPT_UINT, 1, 3600000,
     CFG(max_timeout_ms), "cap on a request's ?timeout_ms="},
    {"max-inflight", "GATEWAY_MAX_INFLIGHT", "10000", OPT_UINT, 1, 1000000,
     CFG(max_inflight), "calls waiting for a reply at once; more get 503"},
    {"max-connections", "GATEWAY_MAX_CONNECTIONS", "20000", OPT_UINT, 16,
     1000000, CFG(max_connections), "open HTTP connections at once"},
    {"idle-timeout-s", "GATEWAY_IDLE_TIMEOUT_S", "30", OPT_UINT, 1, 3600,
     CFG(idle_timeout_s), "close HTTP connections idle this long"},
    {"heartbeat-s", "AMQP_HEARTBEAT_S", "10", OPT_UINT, 0, 600,
     CFG(heartbeat_s), "AMQP heartbeat interval (0: off)"},
    {"log-level", "GATEWAY_LOG_LEVEL", "info", OPT_STR, 0, 0, CFG(log_level),
     "debug, info (one line per request), warn or error"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *f) {
    size_t i;

    fprintf(f, "Usage: rpc-gateway [OPTION]...\n"
               "HTTP gateway: GET /fib/<n> becomes an AMQP RPC to fib "
               "workers.\n\n");
    for (i = 0; i < NOPTS; i++) {
        char flag[48];
        snprintf(flag, sizeof(flag), "--%s=%s", opts[i].name,
                 opts[i].kind == OPT_UINT ? "N" : "VALUE");
        fprintf(f, "  %-28s %s\n  %-28s env %s, default %s\n", flag,
                opts[i].help, "", opts[i].env, opts[i].dflt);
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "show this help",
            "--version", "show the version");
}

static int set_opt(gw_config_t *cfg, const opt_t *o, const char *v,
                   const char *from) {
    char *field = (char *)cfg + o->offset;
    unsigned long n;
    char *end;

    switch (o->kind) {
    case OPT_STR:
        if (*v == '\0' || strlen(v) >= o->size)
            goto bad;
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case OPT_LISTEN:
        if (cm_parse_hostport(v, cfg->listen_host, sizeof(cfg->listen_host),
                              &cfg->listen_port, 0) != 0)
            goto bad;
        return 0;
    case OPT_UINT:
        if (*v < '0' || *v > '9')
            goto bad;
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || *end != '\0' || n < o->min || n > o->max)
            goto bad;
        if (o->size == sizeof(uint32_t))
            *(uint32_t *)(void *)field = (uint32_t)n;
        else
            *(unsigned *)(void *)field = (unsigned)n;
        return 0;
    }
bad:
    if (o->kind == OPT_UINT)
        fprintf(stderr, "rpc-gateway: invalid %s %s: '%s' (want %lu..%lu)\n",
                from, o->name, v, o->min, o->max);
    else
        fprintf(stderr, "rpc-gateway: invalid %s %s: '%s'\n", from, o->name,
                o->kind == OPT_STR && strcmp(o->name, "amqp-url") == 0
                    ? "(not shown)"
                    : v);
    return -1;
}

int gw_config_load(gw_config_t *cfg, int argc, char **argv) {
    struct option longopts[NOPTS + 3];
    const char *given[NOPTS] = {0};
    size_t i;
    int c, idx;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){opts[i].name, required_argument, NULL,
                                      (int)(256 + i)};
    longopts[NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[NOPTS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[NOPTS + 2] = (struct option){0, 0, 0, 0};

    optind = 1;
    while ((c = getopt_long(argc, argv, "hV", longopts, &idx)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("rpc-gateway %s\n", GW_VERSION);
            return 1;
        }
        if (c < 256 || c >= (int)(256 + NOPTS)) {
            fprintf(stderr, "Try 'rpc-gateway --help'.\n");
            return 2;
        }
        given[c - 256] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "rpc-gateway: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    for (i = 0; i < NOPTS; i++) {
        const char *v = given[i], *from = "flag";
        if (v == NULL) {
            v = getenv(opts[i].env);
            from = opts[i].env;
            if (v == NULL || *v == '\0') {
                v = opts[i].dflt;
                from = "default";
            }
        }
        if (set_opt(cfg, &opts[i], v, from) != 0)
            return 2;
    }
    if (strncmp(cfg->amqp_url, "amqp://", 7) != 0 &&
        strncmp(cfg->amqp_url, "amqps://", 8) != 0) {
        fprintf(stderr, "rpc-gateway: --amqp-url must start with amqp:// or "
                        "amqps://\n");
        return 2;
    }
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
        fprintf(stderr, "rpc-gateway: --log-level must be debug, info, warn "
                        "or error\n");
        return 2;
    }
    if (cfg->timeout_ms > cfg->max_timeout_ms) {
        fprintf(stderr,
                "rpc-gateway: --timeout-ms (%u) is above "
                "--max-timeout-ms (%u)\n",
                cfg->timeout_ms, cfg->max_timeout_ms);
        return 2;
    }
    return 0;
}

void gw_config_redact_url(const char *url, char *out, unsigned out_size) {
    const char *scheme_end = strstr(url, "://");
    const char *at, *colon;

    snprintf(out, out_size, "%s", url);
    if (scheme_end == NULL)
        return;
    at = strchr(scheme_end + 3, '@');
    if (at == NULL)
        return;
    colon = memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3));
    if (colon == NULL)
        return;
    snprintf(out, out_size, "%.*s:***%s", (int)(colon - url), url, at);
}
