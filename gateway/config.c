/* config.c - flags and environment -> gw_config_t.  One table
 * (common/options.h) gives --help, the environment fallback and the
 * defaults; fields[] says what each value becomes and its bounds.
 * Called once by main before any thread starts. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fibrpc.h"
#include "hostport.h"
#include "options.h"
#include "urls.h"

#ifndef GW_VERSION
#define GW_VERSION FIBRPC_VERSION
#endif

typedef enum {
    OPT_STR,
    OPT_URL_FILE,
    OPT_LISTEN,
    OPT_UINT,
    OPT_CORS
} opt_kind_t;

/* What a setting's text becomes. */
typedef struct {
    opt_kind_t kind;
    unsigned long min, max; /* OPT_UINT bounds */
    size_t offset;          /* into gw_config_t */
    size_t size;            /* OPT_STR buffer size, OPT_UINT width */
} field_t;

/* One row per setting: its flag, environment and help, and its field. */
typedef struct {
    cm_opt_t opt;
    field_t field;
} setting_t;

#define CFG(field)                                                             \
    offsetof(gw_config_t, field), sizeof(((gw_config_t *)0)->field)

/* The URL comes first, the file that may hold it instead second. */
enum { SET_URL, SET_URL_FILE };

static const setting_t settings[] = {
    [SET_URL] = {{"amqp-url", "AMQP_URL", "amqp://guest:guest@localhost:5672/",
                  "URL[,URL...]",
                  "RabbitMQ URL, amqp:// or amqps://; several (the nodes "
                  "of a cluster) separated by commas: the gateway picks one "
                  "at random and fails over to the next"},
                 {OPT_STR, 0, 0, CFG(amqp_url)}},
    [SET_URL_FILE] =
        {{"amqp-url-file", "AMQP_URL_FILE", NULL, "FILE",
          "read the RabbitMQ URL (or list) from this file instead (a Docker or "
          "Kubernetes secret), so the password is not in the process's "
          "command line"},
         {OPT_URL_FILE, 0, 0, CFG(amqp_url)}},
    {{"amqp-cacert", "AMQP_CACERT", "/etc/ssl/certs/ca-certificates.crt",
      "FILE", "CA certificates for amqps://"},
     {OPT_STR, 0, 0, CFG(amqp_cacert)}},
    {{"listen", "GATEWAY_LISTEN", "0.0.0.0:8080", "HOST:PORT",
      "HTTP listen address ([::1]:PORT for IPv6)"},
     {OPT_LISTEN, 0, 0, CFG(listen_host)}},
    {{"queue", "RPC_QUEUE", FIBRPC_DEFAULT_QUEUE, "NAME",
      "request queue the workers consume"},
     {OPT_STR, 0, 0, CFG(queue)}},
    {{"max-n", "FIB_MAX_N", CM_STR(FIBRPC_DEFAULT_MAX_N), "N",
      "largest n accepted"},
     {OPT_UINT, 0, FIBRPC_HARD_MAX_N, CFG(max_n)}},
    {{"timeout-ms", "GATEWAY_TIMEOUT_MS", CM_STR(GW_DEFAULT_TIMEOUT_MS), "N",
      "default call timeout"},
     {OPT_UINT, 1, 3600000, CFG(timeout_ms)}},
    {{"max-timeout-ms", "GATEWAY_MAX_TIMEOUT_MS", "30000", "N",
      "cap on a request's ?timeout_ms="},
     {OPT_UINT, 1, 3600000, CFG(max_timeout_ms)}},
    {{"max-inflight", "GATEWAY_MAX_INFLIGHT", "10000", "N",
      "calls waiting for a reply at once; more get 503"},
     {OPT_UINT, 1, 1000000, CFG(max_inflight)}},
    {{"max-connections", "GATEWAY_MAX_CONNECTIONS", "20000", "N",
      "open HTTP connections at once"},
     {OPT_UINT, 16, 1000000, CFG(max_connections)}},
    {{"idle-timeout-s", "GATEWAY_IDLE_TIMEOUT_S", "30", "N",
      "close HTTP connections idle this long"},
     {OPT_UINT, 1, 3600, CFG(idle_timeout_s)}},
    {{"header-timeout-s", "GATEWAY_HEADER_TIMEOUT_S", "10", "N",
      "a new connection's first request head, and any request head once "
      "its line is in, must arrive within this (a kept-alive connection's "
      "next head: within --idle-timeout-s plus this); else 408 and close"},
     {OPT_UINT, 1, 3600, CFG(header_timeout_s)}},
    {{"body-timeout-s", "GATEWAY_BODY_TIMEOUT_S", "60", "N",
      "a request body (raw routes) must arrive whole within this of its "
      "head; else 408 and close"},
     {OPT_UINT, 1, 3600, CFG(body_timeout_s)}},
    {{"max-connections-per-ip", "GATEWAY_MAX_CONNECTIONS_PER_IP", "0", "N",
      "open HTTP connections from one address (0: a tenth of "
      "--max-connections)"},
     {OPT_UINT, 0, 1000000, CFG(max_connections_per_ip)}},
    {{"heartbeat-s", "AMQP_HEARTBEAT_S", "10", "N",
      "AMQP heartbeat interval (0: off)"},
     {OPT_UINT, 0, 600, CFG(heartbeat_s)}},
    {{"confirms", "GATEWAY_CONFIRMS", "1", "0|1",
      "publisher confirms: a message the broker refuses is 503 not_queued "
      "at once, and a channel that stops confirming is replaced; publish-"
      "mode routes need them (0: off, for measuring what they cost)"},
     {OPT_UINT, 0, 1, CFG(confirms)}},
    {{"max-reply-bytes", "GATEWAY_MAX_REPLY_BYTES",
      CM_STR(GW_DEFAULT_MAX_REPLY_BYTES), "N",
      "a worker's reply over this many bytes gets its caller 502 bad_reply "
      "at once, its body dropped unread; must hold F(--max-n)'s digits"},
     {OPT_UINT, 1024, 1073741824, CFG(max_reply_bytes)}},
    {{"log-level", "GATEWAY_LOG_LEVEL", "info", "LEVEL",
      "debug, info (one line per request), warn or error"},
     {OPT_STR, 0, 0, CFG(log_level)}},
    {{"tls-cert", "GATEWAY_TLS_CERT", NULL, "FILE",
      "serve HTTPS (TLS 1.2 or newer) with this certificate chain (PEM); "
      "needs --tls-key"},
     {OPT_STR, 0, 0, CFG(tls_cert)}},
    {{"tls-key", "GATEWAY_TLS_KEY", NULL, "FILE",
      "the private key (PEM, not encrypted) of --tls-cert"},
     {OPT_STR, 0, 0, CFG(tls_key)}},
    {{"auth-tokens-file", "GATEWAY_AUTH_TOKENS_FILE", NULL, "FILE",
      "require Authorization: Bearer <token>; FILE holds the SHA-256 of "
      "each token (64 lowercase hex digits a line, '#' comments) and is "
      "read again on SIGHUP"},
     {OPT_STR, 0, 0, CFG(auth_tokens_file)}},
    {{"auth-exempt", "GATEWAY_AUTH_EXEMPT", "/healthz,/readyz,/metrics",
      "PATHS",
      "paths served without a token: exact, separated by commas, or "
      "'none'"},
     {OPT_STR, 0, 0, CFG(auth_exempt)}},
    {{"cors-origins", "GATEWAY_CORS_ORIGINS", NULL, "ORIGINS",
      "let pages on these exact origins call the API from a browser "
      "(https://app.example.com,...)"},
     {OPT_CORS, 0, 0, CFG(cors)}},
    {{"drain-delay-ms", "GATEWAY_DRAIN_DELAY_MS", "0", "N",
      "on SIGTERM, /readyz turns 503 at once and the gateway serves on "
      "this long before it stops accepting (a second signal ends it)"},
     {OPT_UINT, 0, 600000, CFG(drain_delay_ms)}},
    {{"routes", "GATEWAY_ROUTES", NULL, "FILE",
      "the route table (JSON): which HTTP requests become which AMQP "
      "messages; re-read on SIGHUP.  Without it: GET /fib/{n} on --queue"},
     {OPT_STR, 0, 0, CFG(routes)}},
    {{"check-routes", NULL, NULL, "FILE",
      "check a route file, print every error, and exit (0: good, 1: not)"},
     {OPT_STR, 0, 0, CFG(check_routes)}},
};
#define NOPTS (sizeof(settings) / sizeof(settings[0]))

/* How many decimal digits F(n) has: n log10(phi) - log10(sqrt 5), rounded
 * down, plus one (exact in a double up to FIBRPC_HARD_MAX_N). */
static unsigned long fib_digits(uint32_t n) {
    double x = (double)n * 0.20898764024997873 - 0.34948500216800940;

    return n < 2 || x < 0 ? 1 : (unsigned long)x + 1;
}

static int set_opt(gw_config_t *cfg, const cm_opt_t *o, const field_t *f,
                   const cm_opt_value_t *v) {
    char *field = (char *)cfg + f->offset;
    unsigned long n;

    switch (f->kind) {
    case OPT_URL_FILE: /* replaces --amqp-url, set just before */
        if (v->value == NULL)
            return 0;
        if (cm_read_secret(v->value, field, f->size) != 0) {
            fprintf(stderr, "rpc-gateway: %s: cannot read %s: %s\n", v->from,
                    v->value,
                    errno == EFBIG    ? "too long for a URL"
                    : errno == EINVAL ? "empty"
                                      : strerror(errno));
            return -1;
        }
        return 0;
    case OPT_STR:
        if (v->value == NULL) /* no default: stays "" */
            return 0;
        if (*v->value == '\0' || strlen(v->value) >= f->size)
            goto bad;
        memcpy(field, v->value, strlen(v->value) + 1);
        return 0;
    case OPT_LISTEN:
        if (cm_parse_hostport(v->value, cfg->listen_host,
                              sizeof(cfg->listen_host), &cfg->listen_port,
                              0) != 0)
            goto bad;
        return 0;
    case OPT_CORS: {
        char why[400];

        if (v->value == NULL)
            return 0;
        if (gw_cors_parse(v->value, &cfg->cors, why, sizeof(why)) != 0) {
            fprintf(stderr, "rpc-gateway: %s: %s\n", v->from, why);
            return -1;
        }
        return 0;
    }
    case OPT_UINT:
        if (cm_parse_uint(v->value, f->min, f->max, &n) != 0)
            goto bad;
        if (f->size == sizeof(uint32_t))
            *(uint32_t *)(void *)field = (uint32_t)n;
        else
            *(unsigned *)(void *)field = (unsigned)n;
        return 0;
    }
bad:
    if (f->kind == OPT_UINT)
        fprintf(stderr, "rpc-gateway: %s: invalid %s: '%s' (want %lu..%lu)\n",
                v->from, o->name, v->value, f->min, f->max);
    else
        fprintf(stderr, "rpc-gateway: %s: invalid %s: '%s'\n", v->from, o->name,
                strcmp(o->name, "amqp-url") == 0 ? "(not shown)" : v->value);
    return -1;
}

int gw_config_load(gw_config_t *cfg, int argc, char **argv) {
    cm_opt_value_t values[NOPTS];
    cm_opt_t opts[NOPTS];
    size_t i;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < NOPTS; i++)
        opts[i] = settings[i].opt;
    switch (cm_options_parse("rpc-gateway", GW_VERSION,
                             "Usage: rpc-gateway [OPTION]...\n"
                             "HTTP gateway: each route (GET /fib/<n> by "
                             "default; --routes FILE) becomes an AMQP call "
                             "to its workers.\n\n"
                             "Each option falls back to the environment "
                             "variable in brackets, then to its default.\n",
                             NULL, opts, NOPTS, argc, argv, values)) {
    case CM_OPTS_EXIT:
        return 1;
    case CM_OPTS_BAD:
        return 2;
    case CM_OPTS_OK:
        break;
    }
    if (values[SET_URL_FILE].value != NULL &&
        strcmp(values[SET_URL].from, "default") != 0) {
        fprintf(stderr,
                "rpc-gateway: %s and %s both give the RabbitMQ URL: "
                "use one\n",
                values[SET_URL].from, values[SET_URL_FILE].from);
        return 2;
    }
    for (i = 0; i < NOPTS; i++)
        if (set_opt(cfg, &settings[i].opt, &settings[i].field, &values[i]) != 0)
            return 2;
    {
        char why[CM_URL_MASKED_MAX + 128];
        cm_urls_t urls;

        /* The link parses the list again; here only the verdict. */
        if (cm_urls_parse(&urls, cfg->amqp_url, why, sizeof(why)) != 0) {
            fprintf(stderr, "rpc-gateway: --amqp-url: %s\n", why);
            return 2;
        }
        cm_urls_free(&urls);
    }
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
        fprintf(stderr, "rpc-gateway: --log-level must be debug, info, warn "
                        "or error\n");
        return 2;
    }
    if (fib_digits(cfg->max_n) > cfg->max_reply_bytes) {
        fprintf(stderr,
                "rpc-gateway: --max-reply-bytes (%u) cannot hold F(%" PRIu32
                "), which has %lu digits: raise it or lower --max-n\n",
                cfg->max_reply_bytes, cfg->max_n, fib_digits(cfg->max_n));
        return 2;
    }
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
        fprintf(stderr, "rpc-gateway: --tls-cert and --tls-key go together: "
                        "give both, or neither\n");
        return 2;
    }
    {
        char why[1200];

        if (gw_auth_exempt_valid(cfg->auth_exempt, why, sizeof(why)) != 0) {
            fprintf(stderr, "rpc-gateway: --auth-exempt: %s\n", why);
            return 2;
        }
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
    cm_url_mask_list(url, out, out_size);
}
