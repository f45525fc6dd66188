/* routes.h - the route table: which HTTP requests become which AMQP
 * messages.  Parsed from the route file (JSON, --routes), validated with an
 * error per route and field, then matched against each request.
 *
 * Pure (no I/O but reading the file, no clock, no locks).  A table is
 * immutable once built: the HTTP thread matches against it while the AMQP
 * thread reads the routes its calls point to; whoever frees it must know
 * that nobody uses it any more (http.c counts references). */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "problem.h"

#define GW_ROUTES_MAX        256 /* routes in one file */
#define GW_ROUTE_NAME_MAX    64  /* [A-Za-z0-9_.-], also a metrics label */
#define GW_ROUTE_PARAMS_MAX  16  /* {name}s in one path */
#define GW_ROUTE_LIST_MAX    32  /* entries in content_types and the like */
#define GW_ROUTE_BODY_DFLT   (1024 * 1024)
#define GW_ROUTE_BODY_MAX    (64u * 1024 * 1024)
#define GW_AMQP_SHORTSTR_MAX 255 /* queue, exchange, routing key */

typedef enum { GW_KIND_FIB, GW_KIND_RAW } gw_route_kind_t;
typedef enum { GW_MODE_RPC, GW_MODE_PUBLISH } gw_route_mode_t;

/* One path segment of a template: a literal, or a {param}. */
typedef struct {
    const char *text; /* the literal, or the param's name */
    size_t len;
    int param; /* index into the route's params, or -1 for a literal */
} gw_route_seg_t;

/* A string list from the file (content_types, forward_headers, ...),
 * lower-cased where the comparison ignores case. */
typedef struct {
    const char **item;
    size_t n;
} gw_route_list_t;

typedef struct {
    const char *name;
    gw_route_kind_t kind;
    gw_route_mode_t mode;
    const char *method; /* upper case: GET, POST, ... */
    const char *path;   /* the template, as written */
    gw_route_seg_t *seg;
    size_t nseg;
    const char *param[GW_ROUTE_PARAMS_MAX]; /* names, in path order */
    size_t nparam;
    /* where messages go: the default exchange and queue as routing key
     * (queue != NULL), or exchange and a routing key template */
    const char *queue;       /* watched for consumers; NULL with exchange */
    const char *exchange;    /* "" for the default exchange */
    const char *routing_key; /* template: may hold {param}s */
    unsigned timeout_ms;     /* 0: the gateway's --timeout-ms */
    unsigned max_timeout_ms; /* 0: the gateway's --max-timeout-ms */
    size_t max_body_bytes;
    gw_route_list_t content_types;   /* lower case; n == 0: any */
    gw_route_list_t forward_headers; /* lower case */
    gw_route_list_t return_headers;  /* lower case */
    unsigned index;                  /* position in the table */
} gw_route_t;

typedef struct gw_routes gw_routes_t;

/* What a request path matched: the route and its parameters' values
 * (gw_route_value: in the path, not NUL-terminated; kept as offsets, a
 * match lives in every request). */
typedef struct {
    const gw_route_t *route;
    const char *path; /* the path matched */
    struct {
        uint16_t off, len;
    } value[GW_ROUTE_PARAMS_MAX];
    /* kind fib: what follows the template's fixed prefix ("10" of
     * "/fib/10", "" of "/fib", "1/2" of "/fib/1/2") */
    const char *rest;
} gw_route_match_t;

/* Parameter k's value in a match; *len gets its length. */
static inline const char *gw_route_value(const gw_route_match_t *m, size_t k,
                                         size_t *len) {
    *len = m->value[k].len;
    return m->path + m->value[k].off;
}

/* gw_routes_parse: builds a table from the route file's text (JSON).
 * Returns the table, or NULL with every error found written to errors (one
 * per line: "route 'upper' (#2): field 'timeout_ms': must be ...";
 * truncated to errors_size).  Routes may not take the gateway's own paths
 * (/, /healthz, /readyz, /metrics, /openapi.yaml, /routes.json). */
gw_routes_t *gw_routes_parse(const char *json, size_t len, char *errors,
                             size_t errors_size);
/* As gw_routes_parse, from the file at path (at most 1 MiB). */
gw_routes_t *gw_routes_load(const char *path, char *errors, size_t errors_size);
/* The table used without --routes: one fib route, GET /fib/{n} on queue. */
gw_routes_t *gw_routes_default(const char *queue);
/* Frees the table.  NULL is a no-op. */
void gw_routes_free(gw_routes_t *t);

size_t gw_routes_count(const gw_routes_t *t);
const gw_route_t *gw_routes_at(const gw_routes_t *t, size_t i);

/* gw_routes_match: the route for method and (decoded) path.  Returns
 * GW_E_OK with *m filled; GW_E_NOT_FOUND when no route's path matches;
 * GW_E_METHOD_NOT_ALLOWED when some do, but not for this method (allow
 * then gets their methods, "GET, HEAD, POST", NUL-terminated, truncated to
 * allow_size).  A GET route also answers HEAD.  The most specific path
 * wins: at the first segment where two templates differ, a literal beats
 * a {param}; a fib route's prefix match comes last, the longest prefix
 * first. */
gw_err_t gw_routes_match(const gw_routes_t *t, const char *method,
                         const char *path, gw_route_match_t *m, char *allow,
                         size_t allow_size);

/* gw_route_fixed_key: the route's routing key when no path parameter goes
 * into it (a queue's name, a key without {param}s), else NULL: then
 * gw_route_routing_key makes it for each match. */
const char *gw_route_fixed_key(const gw_route_t *r);

/* gw_route_routing_key: the routing key for a match: the route's queue,
 * or its routing key template with each {param} replaced by its value.
 * Returns GW_E_OK, or GW_E_INVALID_PARAM (detail says which) when a value
 * put into a routing key holds anything but [A-Za-z0-9_~-] (a '.', '*' or
 * '#' would reach other bindings of a topic exchange) or the key would be
 * longer than 255 bytes. */
gw_err_t gw_route_routing_key(const gw_route_match_t *m, char *out,
                              size_t out_size, char *detail,
                              size_t detail_size);

/* Whether a request content type (parameters ignored, any case) is one the
 * route accepts.  NULL or "" is accepted only when the route takes any. */
int gw_route_accepts(const gw_route_t *r, const char *content_type);

/* Whether name (any case) is in list. */
int gw_route_list_has(const gw_route_list_t *list, const char *name);

#endif
