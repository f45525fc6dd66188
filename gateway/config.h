/* config.h - flags and environment -> one validated, read-only config.
 * Called once by main before any thread starts. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdint.h>

#include "cors.h"
#include "urls.h"

/* The per-call timeout when neither --timeout-ms nor ?timeout_ms= says. */
#define GW_DEFAULT_TIMEOUT_MS 5000
/* --max-reply-bytes' default, 4 MiB: F(FIBRPC_HARD_MAX_N) has 2,089,877
 * digits. */
#define GW_DEFAULT_MAX_REPLY_BYTES 4194304

typedef struct {
    char amqp_url[CM_URL_LIST_MAX]; /* one URL, or several with commas */
    char amqp_cacert[1024];         /* CA bundle for amqps:// */
    char listen_host[256];
    uint16_t listen_port;
    char queue[256];
    uint32_t max_n;
    unsigned timeout_ms;     /* default per-call timeout */
    unsigned max_timeout_ms; /* cap on ?timeout_ms= */
    unsigned max_inflight;   /* calls waiting for a reply, at most */
    unsigned max_connections;
    unsigned idle_timeout_s;         /* HTTP connection idle timeout */
    unsigned header_timeout_s;       /* a request head must arrive within */
    unsigned body_timeout_s;         /* ... and its body within this after */
    unsigned max_connections_per_ip; /* 0: a tenth of the limit (main) */
    unsigned heartbeat_s;            /* AMQP heartbeat */
    unsigned confirms;               /* publisher confirms: 1 on, 0 off */
    unsigned max_reply_bytes;        /* a longer reply is not read: 502 */
    char log_level[16];              /* debug, info, warn, error */
    char tls_cert[1024];             /* PEM file; "" serves plain HTTP */
    char tls_key[1024];              /* its private key's PEM file */
    char auth_tokens_file[1024];     /* "" : no authentication */
    char auth_exempt[1024];          /* paths served without a token */
    gw_cors_t cors;                  /* n == 0: no CORS */
    unsigned drain_delay_ms; /* on SIGTERM: unready, still serving, so long */
    char routes[1024];       /* --routes FILE; "": the one fib route */
    char check_routes[1024]; /* --check-routes FILE: check it and exit */
} gw_config_t;

/* gw_config_load: fill cfg from argv, falling back to the environment, then
 * to defaults.  Returns 0 to run, 1 when --help or --version was printed
 * (exit 0), 2 after printing a usage error to stderr (exit 2). */
int gw_config_load(gw_config_t *cfg, int argc, char **argv);

/* gw_config_redact_url: copy url (one, or a comma-separated list) to out
 * with every password replaced by "***" (for logs: credentials are never
 * logged). */
void gw_config_redact_url(const char *url, char *out, unsigned out_size);

#endif
