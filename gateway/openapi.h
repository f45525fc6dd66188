/* openapi.h - the OpenAPI document the gateway serves at /openapi.yaml:
 * openapi.yaml as built in, made to fit the route table in use (a path
 * item for each route path, an operation for each route).
 *
 * Pure (no I/O, no clock, no locks): any thread; the HTTP thread calls it
 * when it adopts a table. */
#ifndef GW_OPENAPI_H
#define GW_OPENAPI_H

#include <stddef.h>
#include <stdint.h>

#include "routes.h"

/* The marker lines in openapi.yaml (each the start of a line).  Between
 * FIB_BEGIN and FIB_END: the /fib/{n} path item, kept only while the table
 * has the fib route GET /fib/{n} alone on that path; after the HERE line:
 * the generated path items. */
#define GW_OPENAPI_MARK_FIB_BEGIN "  # @routes fib-begin"
#define GW_OPENAPI_MARK_FIB_END   "  # @routes fib-end"
#define GW_OPENAPI_MARK_HERE      "  # @routes here"

/* The gateway's settings that routes fall back on, for the descriptions. */
typedef struct {
    unsigned timeout_ms;     /* --timeout-ms */
    unsigned max_timeout_ms; /* --max-timeout-ms */
    uint32_t max_n;          /* --max-n */
} gw_openapi_opts_t;

/* gw_openapi_render: the document for table t, made from the static
 * document text (len bytes, with the markers above).  With the default
 * table (the fib route GET /fib/{n} alone) it is text itself, byte for
 * byte.  Otherwise the fib path item is dropped unless the table has that
 * route alone on its path, and every other route path gets a path item in
 * JSON flow style (which is YAML): its parameters, an operation per route
 * (operationId: the route's name, x-route: the name; HEAD too for a GET
 * route) with its request body and responses, and a 405-only operation
 * for each other method, as the static paths have.
 * Returns a malloc'd NUL-terminated document (its length in *out_len), or
 * NULL when out of memory or when text lacks a marker. */
char *gw_openapi_render(const char *text, size_t len, const gw_routes_t *t,
                        const gw_openapi_opts_t *o, size_t *out_len);

#endif
