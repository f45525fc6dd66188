/* config.h - fib-worker's flags and their environment fallbacks, parsed and
 * validated once at start-up into one fw_config_t that is read-only after.
 * Called from main() only, before anything else runs. */
#ifndef FW_CONFIG_H
#define FW_CONFIG_H

#include <stdint.h>

#include "urls.h"

typedef struct {
    /* The brokers, from --amqp-url, shuffled once.  Their users and
     * passwords are secrets: log a URL's node or masked form only. */
    cm_urls_t urls;
    const char *cacert; /* CA bundle for amqps://, NULL for none */
    const char *queue;
    int quorum;              /* --queue-type quorum (else classic) */
    uint32_t delivery_limit; /* --delivery-limit; 0: none */
    uint16_t prefetch;
    uint32_t max_n;
    /* --metrics-listen HOST:PORT; metrics_host is "" when metrics are off.
     * An IPv6 host is kept without its brackets. */
    char metrics_host[256];
    uint16_t metrics_port;
} fw_config_t;

/* What fw_config_load found. */
typedef enum {
    FW_CONFIG_OK,   /* *cfg is ready; fw_config_free it */
    FW_CONFIG_EXIT, /* --help or --version was printed: exit 0 */
    FW_CONFIG_BAD   /* a message is on stderr: exit 2 */
} fw_config_result_t;

/* Fills *cfg from argv, then the environment, then the defaults.  Prints the
 * help, the version or what is wrong itself.  Nothing to free unless OK. */
fw_config_result_t fw_config_load(fw_config_t *cfg, int argc, char **argv);

/* Frees what fw_config_load allocated; NULL and a zeroed *cfg are no-ops. */
void fw_config_free(fw_config_t *cfg);

#endif
