/* routes.c - the route table: parse and validate the route file, match
 * requests, build routing keys.  Pure; see routes.h. */
#include "routes.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FILE_MAX       (1024 * 1024)
#define PATH_MAX_LEN   512
#define SEGMENTS_MAX   32
#define PARAM_NAME_MAX 64
#define LIST_ITEM_MAX  127
#define TIMEOUT_MAX    3600000

/* Everything a table owns, in one list of blocks freed together. */
typedef struct block {
    struct block *next;
    char data[];
} block_t;

struct gw_routes {
    gw_route_t *route;
    size_t n;
    json_t *root; /* the parsed file: the routes' strings point into it */
    block_t *blocks;
};

/* --- memory -------------------------------------------------------------- */

static void *table_alloc(gw_routes_t *t, size_t size) {
    block_t *b = calloc(1, sizeof(*b) + size);

    if (b == NULL)
        return NULL;
    b->next = t->blocks;
    t->blocks = b;
    return b->data;
}

static char *table_strndup(gw_routes_t *t, const char *s, size_t len) {
    char *p = table_alloc(t, len + 1);

    if (p != NULL)
        memcpy(p, s, len);
    return p;
}

void gw_routes_free(gw_routes_t *t) {
    block_t *b, *next;

    if (t == NULL)
        return;
    for (b = t->blocks; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    json_decref(t->root);
    free(t->route);
    free(t);
}

size_t gw_routes_count(const gw_routes_t *t) {
    return t->n;
}

const gw_route_t *gw_routes_at(const gw_routes_t *t, size_t i) {
    return i < t->n ? &t->route[i] : NULL;
}

/* --- errors -------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t size, len;
    unsigned count;
    gw_routes_t *t;
} parse_t;

static void add_error(parse_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void field_error(parse_t *p, size_t i, const char *name,
                        const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add_error(parse_t *p, const char *fmt, ...) {
    va_list ap;
    int n;

    p->count++;
    if (p->size == 0 || p->len + 1 >= p->size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(p->buf + p->len, p->size - p->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    p->len += (size_t)n;
    if (p->len + 1 >= p->size) {
        p->len = p->size - 1;
        return;
    }
    p->buf[p->len++] = '\n';
    p->buf[p->len] = '\0';
}

/* An error about one field of route #i (1-based in messages). */
static void field_error(parse_t *p, size_t i, const char *name,
                        const char *field, const char *fmt, ...) {
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (name != NULL)
        add_error(p, "route '%s' (#%zu): field '%s': %s", name, i + 1, field,
                  why);
    else
        add_error(p, "route #%zu: field '%s': %s", i + 1, field, why);
}

/* --- character classes --------------------------------------------------- */

static int is_name_char(int c) {
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

/* RFC 9110 tchar: header names, methods, media type parts. */
static int is_tchar(int c) {
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 3986 pchar, less '%' (paths arrive decoded) and the braces. */
static int is_path_char(int c) {
    return isalnum(c) || (c != 0 && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

static int all(const char *s, size_t len, int (*ok)(int)) {
    size_t i;

    for (i = 0; i < len; i++)
        if (!ok((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_param_name(const char *s, size_t len) {
    size_t i;

    if (len == 0 || len > PARAM_NAME_MAX ||
        !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* --- fields -------------------------------------------------------------- */

static const char *const reserved_paths[] = {
    "/", "/healthz", "/readyz", "/metrics", "/openapi.yaml", "/routes.json",
};

/* Headers that frame or route the HTTP exchange itself: never copied
 * between HTTP and AMQP. */
static const char *const hop_headers[] = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "host",
    "content-type",
    "proxy-authorization",
    "x-request-id",
    "traceparent",
    "content-encoding",
    "access-control-*", /* CORS is the gateway's (--cors-origins) */
};

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

static const char *const known_fields[] = {
    "name",
    "kind",
    "method",
    "path",
    "queue",
    "exchange",
    "routing_key",
    "mode",
    "timeout_ms",
    "max_timeout_ms",
    "max_body_bytes",
    "content_types",
    "forward_headers",
    "return_headers",
};

static int in(const char *s, const char *const *set, size_t n) {
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return 1;
    return 0;
}
#define IN(s, set) in((s), (set), sizeof(set) / sizeof((set)[0]))

/* A string field: returns its value (NULL when absent), or reports a
 * wrong type and returns NULL with *bad set. */
static const char *get_str(parse_t *p, size_t i, const char *name, json_t *obj,
                           const char *field, int *bad) {
    json_t *v = json_object_get(obj, field);

    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        field_error(p, i, name, field, "must be a string");
        *bad = 1;
        return NULL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        field_error(p, i, name, field, "must not contain NUL");
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

/* An integer field in [min, max]: returns 1 with *out set, 0 when absent,
 * -1 after reporting. */
static int get_uint(parse_t *p, size_t i, const char *name, json_t *obj,
                    const char *field, unsigned long min, unsigned long max,
                    unsigned long *out) {
    json_t *v = json_object_get(obj, field);
    json_int_t n;

    if (v == NULL)
        return 0;
    if (!json_is_integer(v)) {
        field_error(p, i, name, field, "must be an integer from %lu to %lu",
                    min, max);
        return -1;
    }
    n = json_integer_value(v);
    if (n < (json_int_t)min || n > (json_int_t)max) {
        field_error(p, i, name, field,
                    "%lld is out of range: must be from %lu to %lu",
                    (long long)n, min, max);
        return -1;
    }
    *out = (unsigned long)n;
    return 1;
}

/* A list of names: each checked by ok, lower-cased when lower.  Returns 0,
 * or -1 after reporting. */
/* Whether header name (lower case) is pattern: a name, or a prefix
 * followed by '*'. */
static int name_is(const char *name, const char *pattern) {
    size_t n = strlen(pattern);

    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(name, pattern, n - 1) == 0;
    return strcmp(name, pattern) == 0;
}

static int get_list(parse_t *p, size_t i, const char *name, json_t *obj,
                    const char *field, int (*valid)(const char *, size_t),
                    const char *what, const char *const *forbidden,
                    size_t nforbidden, gw_route_list_t *out) {
    json_t *v = json_object_get(obj, field), *item;
    size_t k, j;

    out->n = 0;
    out->item = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > GW_ROUTE_LIST_MAX) {
        field_error(p, i, name, field, "must be an array of at most %d strings",
                    GW_ROUTE_LIST_MAX);
        return -1;
    }
    out->item = table_alloc(p->t, sizeof(char *) * (json_array_size(v) + 1));
    if (out->item == NULL)
        return -1;
    json_array_foreach(v, k, item) {
        const char *s = json_is_string(item) ? json_string_value(item) : NULL;
        size_t len = s != NULL ? json_string_length(item) : 0;
        char *low;

        if (s == NULL || len == 0 || len > LIST_ITEM_MAX || strlen(s) != len ||
            !valid(s, len)) {
            field_error(p, i, name, field, "item %zu: must be %s", k + 1, what);
            return -1;
        }
        low = table_strndup(p->t, s, len);
        if (low == NULL)
            return -1;
        for (j = 0; j < len; j++)
            low[j] = (char)tolower((unsigned char)low[j]);
        for (j = 0; j < nforbidden; j++)
            if (name_is(low, forbidden[j])) {
                field_error(p, i, name, field,
                            "item %zu: '%s' is the gateway's own and is "
                            "never copied",
                            k + 1, low);
                return -1;
            }
        for (j = 0; j < out->n; j++)
            if (strcmp(out->item[j], low) == 0) {
                field_error(p, i, name, field, "item %zu: '%s' twice", k + 1,
                            low);
                return -1;
            }
        out->item[out->n++] = low;
    }
    return 0;
}

static int valid_header_name(const char *s, size_t len) {
    return all(s, len, is_tchar);
}

/* type "/" subtype, both tokens, no parameters. */
static int valid_media_type(const char *s, size_t len) {
    const char *slash = memchr(s, '/', len);

    return slash != NULL && slash > s && slash < s + len - 1 &&
           all(s, (size_t)(slash - s), is_tchar) &&
           all(slash + 1, len - (size_t)(slash - s) - 1, is_tchar);
}

/* Splits and checks the path template.  Returns 0, or -1 after reporting. */
static int parse_path(parse_t *p, size_t i, const char *name, gw_route_t *r) {
    const char *s = r->path, *end, *seg;
    size_t len = strlen(s), k;

    if (len == 0 || s[0] != '/' || len > PATH_MAX_LEN) {
        field_error(p, i, name, "path",
                    "must start with '/' and be at most %d bytes",
                    PATH_MAX_LEN);
        return -1;
    }
    if (IN(s, reserved_paths)) {
        field_error(p, i, name, "path", "'%s' is the gateway's own", s);
        return -1;
    }
    r->seg = table_alloc(p->t, sizeof(*r->seg) * SEGMENTS_MAX);
    if (r->seg == NULL)
        return -1;
    for (seg = s + 1;; seg = end + 1) {
        gw_route_seg_t *g;

        end = strchr(seg, '/');
        if (end == NULL)
            end = s + len;
        if (r->nseg == SEGMENTS_MAX) {
            field_error(p, i, name, "path", "more than %d segments",
                        SEGMENTS_MAX);
            return -1;
        }
        g = &r->seg[r->nseg++];
        g->text = seg;
        g->len = (size_t)(end - seg);
        g->param = -1;
        if (g->len == 0) {
            field_error(p, i, name, "path",
                        "empty segment (a '//' or a trailing '/')");
            return -1;
        }
        if (seg[0] == '{') {
            if (g->len < 3 || seg[g->len - 1] != '}' ||
                !is_param_name(seg + 1, g->len - 2)) {
                field_error(p, i, name, "path",
                            "segment '%.*s': a parameter is {name}, the name "
                            "a letter or '_' then letters, digits or '_'",
                            (int)g->len, seg);
                return -1;
            }
            g->text = seg + 1;
            g->len -= 2;
            for (k = 0; k < r->nparam; k++)
                if (strlen(r->param[k]) == g->len &&
                    memcmp(r->param[k], g->text, g->len) == 0) {
                    field_error(p, i, name, "path", "parameter {%.*s} twice",
                                (int)g->len, g->text);
                    return -1;
                }
            if (r->nparam == GW_ROUTE_PARAMS_MAX) {
                field_error(p, i, name, "path", "more than %d parameters",
                            GW_ROUTE_PARAMS_MAX);
                return -1;
            }
            r->param[r->nparam] = table_strndup(p->t, g->text, g->len);
            if (r->param[r->nparam] == NULL)
                return -1;
            g->param = (int)r->nparam++;
        } else if (!all(seg, g->len, is_path_char)) {
            field_error(p, i, name, "path",
                        "segment '%.*s': only letters, digits and "
                        "-._~!$&'()*+,;=:@ (or a whole {parameter})",
                        (int)g->len, seg);
            return -1;
        }
        if (end == s + len)
            return 0;
    }
}

static int param_index(const gw_route_t *r, const char *s, size_t len) {
    size_t k;

    for (k = 0; k < r->nparam; k++)
        if (strlen(r->param[k]) == len && memcmp(r->param[k], s, len) == 0)
            return (int)k;
    return -1;
}

/* Each {name} in the routing key must be a path parameter.  Returns 0, or
 * -1 after reporting. */
static int check_routing_key(parse_t *p, size_t i, const char *name,
                             const gw_route_t *r) {
    const char *s = r->routing_key, *open, *close;

    if (strlen(s) > GW_AMQP_SHORTSTR_MAX) {
        field_error(p, i, name, "routing_key", "longer than %d bytes",
                    GW_AMQP_SHORTSTR_MAX);
        return -1;
    }
    while ((open = strchr(s, '{')) != NULL) {
        close = strchr(open, '}');
        if (close == NULL ||
            !is_param_name(open + 1, (size_t)(close - open - 1))) {
            field_error(p, i, name, "routing_key",
                        "a '{' must open a {parameter}");
            return -1;
        }
        if (param_index(r, open + 1, (size_t)(close - open - 1)) < 0) {
            field_error(p, i, name, "routing_key",
                        "{%.*s} is not a parameter of path '%s'",
                        (int)(close - open - 1), open + 1, r->path);
            return -1;
        }
        s = close + 1;
    }
    if (strchr(s, '}') != NULL) {
        field_error(p, i, name, "routing_key", "a '}' without its '{'");
        return -1;
    }
    return 0;
}

/* Reads route #i from obj into r.  Returns the number of errors found. */
static unsigned parse_route(parse_t *p, size_t i, json_t *obj, gw_route_t *r) {
    unsigned before = p->count;
    const char *name, *kind, *mode, *key;
    unsigned long v;
    int bad = 0, got;
    json_t *value;

    if (!json_is_object(obj)) {
        add_error(p, "route #%zu: must be an object", i + 1);
        return 1;
    }
    name = get_str(p, i, NULL, obj, "name", &bad);
    if (name == NULL && !bad)
        field_error(p, i, NULL, "name", "missing");
    else if (name != NULL &&
             (strlen(name) == 0 || strlen(name) > GW_ROUTE_NAME_MAX ||
              !all(name, strlen(name), is_name_char))) {
        field_error(p, i, NULL, "name",
                    "must be 1 to %d letters, digits, '_', '.' or '-'",
                    GW_ROUTE_NAME_MAX);
        name = NULL;
    }
    r->name = name;
    json_object_foreach(obj, key, value) {
        if (!IN(key, known_fields))
            field_error(p, i, name, key, "unknown field");
    }

    kind = get_str(p, i, name, obj, "kind", &bad);
    if (kind == NULL || strcmp(kind, "raw") == 0)
        r->kind = GW_KIND_RAW;
    else if (strcmp(kind, "fib") == 0)
        r->kind = GW_KIND_FIB;
    else
        field_error(p, i, name, "kind", "'%s': must be \"raw\" or \"fib\"",
                    kind);
    mode = get_str(p, i, name, obj, "mode", &bad);
    if (mode == NULL || strcmp(mode, "rpc") == 0)
        r->mode = GW_MODE_RPC;
    else if (strcmp(mode, "publish") == 0)
        r->mode = GW_MODE_PUBLISH;
    else
        field_error(p, i, name, "mode", "'%s': must be \"rpc\" or \"publish\"",
                    mode);

    r->method = get_str(p, i, name, obj, "method", &bad);
    if (r->method == NULL && !bad)
        field_error(p, i, name, "method", "missing");
    else if (r->method != NULL && !IN(r->method, methods))
        field_error(p, i, name, "method",
                    "'%s': must be GET, POST, PUT, PATCH or DELETE", r->method);
    else if (r->method != NULL && r->mode == GW_MODE_PUBLISH &&
             strcmp(r->method, "GET") == 0)
        /* a GET route answers HEAD too, and GET is meant to be safe */
        field_error(p, i, name, "method",
                    "mode publish is POST, PUT, PATCH or DELETE: a GET "
                    "(and its HEAD) would publish");

    r->path = get_str(p, i, name, obj, "path", &bad);
    if (r->path == NULL && !bad)
        field_error(p, i, name, "path", "missing");
    else if (r->path != NULL)
        parse_path(p, i, name, r);

    r->queue = get_str(p, i, name, obj, "queue", &bad);
    r->exchange = get_str(p, i, name, obj, "exchange", &bad);
    r->routing_key = get_str(p, i, name, obj, "routing_key", &bad);
    if (r->queue != NULL &&
        (strlen(r->queue) == 0 || strlen(r->queue) > GW_AMQP_SHORTSTR_MAX))
        field_error(p, i, name, "queue", "must be 1 to %d bytes",
                    GW_AMQP_SHORTSTR_MAX);
    if (r->exchange != NULL && strlen(r->exchange) > GW_AMQP_SHORTSTR_MAX)
        field_error(p, i, name, "exchange", "longer than %d bytes",
                    GW_AMQP_SHORTSTR_MAX);
    if (r->queue != NULL && (r->exchange != NULL || r->routing_key != NULL))
        field_error(p, i, name,
                    r->exchange != NULL ? "exchange" : "routing_key",
                    "give either queue, or exchange and routing_key");
    else if (r->queue == NULL && r->exchange == NULL &&
             r->routing_key == NULL && !bad)
        field_error(p, i, name, "queue",
                    "missing destination: give queue, or exchange and "
                    "routing_key");
    else if (r->queue == NULL &&
             (r->exchange == NULL) != (r->routing_key == NULL))
        field_error(p, i, name,
                    r->exchange == NULL ? "exchange" : "routing_key",
                    "missing: exchange and routing_key go together");
    else if (r->routing_key != NULL)
        check_routing_key(p, i, name, r);
    if (r->queue != NULL) { /* the default exchange, the queue as the key */
        r->exchange = "";
        r->routing_key = r->queue;
    }

    got = get_uint(p, i, name, obj, "timeout_ms", 1, TIMEOUT_MAX, &v);
    if (got > 0)
        r->timeout_ms = (unsigned)v;
    got = get_uint(p, i, name, obj, "max_timeout_ms", 1, TIMEOUT_MAX, &v);
    if (got > 0)
        r->max_timeout_ms = (unsigned)v;
    if (r->timeout_ms != 0 && r->max_timeout_ms != 0 &&
        r->timeout_ms > r->max_timeout_ms)
        field_error(p, i, name, "timeout_ms", "%u is above max_timeout_ms (%u)",
                    r->timeout_ms, r->max_timeout_ms);
    r->max_body_bytes = GW_ROUTE_BODY_DFLT;
    got = get_uint(p, i, name, obj, "max_body_bytes", 0, GW_ROUTE_BODY_MAX, &v);
    if (got > 0)
        r->max_body_bytes = (size_t)v;

    get_list(p, i, name, obj, "content_types", valid_media_type,
             "a media type (type/subtype, no parameters)", NULL, 0,
             &r->content_types);
    get_list(p, i, name, obj, "forward_headers", valid_header_name,
             "a header name", hop_headers,
             sizeof(hop_headers) / sizeof(hop_headers[0]), &r->forward_headers);
    get_list(p, i, name, obj, "return_headers", valid_header_name,
             "a header name", hop_headers,
             sizeof(hop_headers) / sizeof(hop_headers[0]), &r->return_headers);

    if (r->kind == GW_KIND_FIB && kind != NULL) {
        static const char *const raw_only[] = {
            "max_body_bytes", "content_types", "forward_headers",
            "return_headers"};
        size_t k;

        if (r->method != NULL && strcmp(r->method, "GET") != 0)
            field_error(p, i, name, "method", "kind fib is GET only");
        if (r->mode != GW_MODE_RPC)
            field_error(p, i, name, "mode", "kind fib is rpc only");
        if (r->path != NULL && r->nseg > 0 &&
            (r->nparam != 1 || r->seg[r->nseg - 1].param != 0))
            field_error(p, i, name, "path",
                        "kind fib needs exactly one parameter, as the last "
                        "segment (\"/fib/{n}\")");
        for (k = 0; k < sizeof(raw_only) / sizeof(raw_only[0]); k++)
            if (json_object_get(obj, raw_only[k]) != NULL)
                field_error(p, i, name, raw_only[k], "not used by kind fib");
    }
    return p->count - before;
}

/* Two templates with the same shape (literals equal, params anywhere the
 * other has params) match the same paths. */
static int same_shape(const gw_route_t *a, const gw_route_t *b) {
    size_t k;

    if (a->nseg != b->nseg)
        return 0;
    for (k = 0; k < a->nseg; k++) {
        const gw_route_seg_t *x = &a->seg[k], *y = &b->seg[k];

        if ((x->param < 0) != (y->param < 0))
            return 0;
        if (x->param < 0 &&
            (x->len != y->len || memcmp(x->text, y->text, x->len) != 0))
            return 0;
    }
    return 1;
}

static void check_table(parse_t *p, gw_routes_t *t) {
    size_t i, j;

    for (i = 0; i < t->n; i++)
        for (j = 0; j < i; j++) {
            const gw_route_t *a = &t->route[j], *b = &t->route[i];

            if (a->name != NULL && b->name != NULL &&
                strcmp(a->name, b->name) == 0)
                field_error(p, i, b->name, "name",
                            "duplicate: route #%zu has the same name", j + 1);
            if (a->method != NULL && b->method != NULL && a->nseg > 0 &&
                b->nseg > 0 && strcmp(a->method, b->method) == 0 &&
                same_shape(a, b))
                field_error(p, i, b->name, "path",
                            "%s %s: route '%s' (#%zu) already serves that "
                            "method and path",
                            b->method, b->path, a->name ? a->name : "?", j + 1);
        }
}

gw_routes_t *gw_routes_parse(const char *text, size_t len, char *errors,
                             size_t errors_size) {
    parse_t p = {errors, errors_size, 0, 0, NULL};
    json_error_t jerr;
    json_t *root, *routes, *value;
    const char *key;
    gw_routes_t *t;
    size_t i;

    if (errors_size > 0)
        errors[0] = '\0';
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        add_error(&p, "out of memory");
        return NULL;
    }
    p.t = t;
    root = t->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        add_error(&p, "not valid JSON: line %d, column %d: %s", jerr.line,
                  jerr.column, jerr.text);
        goto fail;
    }
    routes = json_is_object(root) ? json_object_get(root, "routes") : NULL;
    if (!json_is_array(routes)) {
        add_error(&p, "the file must be an object {\"routes\": [...]}");
        goto fail;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "routes") != 0)
            add_error(&p, "unknown top-level field '%s'", key);
    }
    if (json_array_size(routes) == 0 ||
        json_array_size(routes) > GW_ROUTES_MAX) {
        add_error(&p, "\"routes\" must hold 1 to %d routes", GW_ROUTES_MAX);
        goto fail;
    }
    t->route = calloc(json_array_size(routes), sizeof(*t->route));
    if (t->route == NULL) {
        add_error(&p, "out of memory");
        goto fail;
    }
    json_array_foreach(routes, i, value) {
        t->route[i].index = (unsigned)i;
        parse_route(&p, i, value, &t->route[i]);
        t->n = i + 1;
    }
    check_table(&p, t);
    if (p.count == 0)
        return t;
fail:
    gw_routes_free(t);
    return NULL;
}

gw_routes_t *gw_routes_load(const char *path, char *errors,
                            size_t errors_size) {
    FILE *f = fopen(path, "rb");
    gw_routes_t *t = NULL;
    char *text = NULL;
    size_t len;

    if (f == NULL) {
        snprintf(errors, errors_size, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    text = malloc(FILE_MAX + 1);
    if (text == NULL) {
        snprintf(errors, errors_size, "%s: out of memory\n", path);
        goto out;
    }
    len = fread(text, 1, FILE_MAX + 1, f);
    if (ferror(f))
        snprintf(errors, errors_size, "%s: %s\n", path, strerror(errno));
    else if (len > FILE_MAX)
        snprintf(errors, errors_size, "%s: larger than %d bytes\n", path,
                 FILE_MAX);
    else
        t = gw_routes_parse(text, len, errors, errors_size);
out:
    free(text);
    fclose(f);
    return t;
}

gw_routes_t *gw_routes_default(const char *queue) {
    json_t *doc = json_pack("{s:[{s:s, s:s, s:s, s:s, s:s}]}", "routes", "name",
                            "fib", "kind", "fib", "method", "GET", "path",
                            "/fib/{n}", "queue", queue);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    gw_routes_t *t = NULL;
    char errors[512];

    if (text != NULL)
        t = gw_routes_parse(text, strlen(text), errors, sizeof(errors));
    free(text);
    json_decref(doc);
    return t;
}

/* --- matching ------------------------------------------------------------ */

typedef struct {
    const char *s;
    size_t len;
} span_t;

/* Splits a path ("/a/b") into its segments; returns how many, at most max
 * (more than max: max + 1, the rest unsplit). */
static size_t split(const char *path, span_t *out, size_t max) {
    const char *s = path + 1, *end;
    size_t n = 0;

    for (;;) {
        if (n == max)
            return max + 1;
        end = strchr(s, '/');
        out[n].s = s;
        out[n].len = end != NULL ? (size_t)(end - s) : strlen(s);
        n++;
        if (end == NULL)
            return n;
        s = end + 1;
    }
}

static int seg_matches(const gw_route_seg_t *g, const span_t *v) {
    if (g->param >= 0)
        return v->len > 0;
    return g->len == v->len && memcmp(g->text, v->s, v->len) == 0;
}

/* Exact: every segment matches. */
static int match_exact(const gw_route_t *r, const span_t *seg, size_t nseg) {
    size_t k;

    if (r->nseg != nseg)
        return 0;
    for (k = 0; k < nseg; k++)
        if (!seg_matches(&r->seg[k], &seg[k]))
            return 0;
    return 1;
}

/* A fib route also takes any path under its fixed prefix ("/fib",
 * "/fib/", "/fib/1/2"), so that its own parser says what is wrong with n.
 * Returns the rest after the prefix, or NULL. */
static const char *match_fib_prefix(const gw_route_t *r, const char *path,
                                    const span_t *seg, size_t nseg) {
    size_t k, fixed = r->nseg - 1;
    const char *rest;

    if (r->kind != GW_KIND_FIB || nseg < fixed)
        return NULL;
    for (k = 0; k < fixed; k++)
        if (!seg_matches(&r->seg[k], &seg[k]))
            return NULL;
    if (fixed == 0)
        return path + 1;
    rest = seg[fixed - 1].s + seg[fixed - 1].len;
    if (*rest == '\0')
        return rest;
    return rest + 1; /* past the '/' */
}

/* Whether a (exactly matched) is more specific than b: at the first
 * segment where one has a literal and the other a parameter. */
static int more_specific(const gw_route_t *a, const gw_route_t *b) {
    size_t k;

    for (k = 0; k < a->nseg && k < b->nseg; k++) {
        int la = a->seg[k].param < 0, lb = b->seg[k].param < 0;

        if (la != lb)
            return la;
    }
    return 0;
}

static const char *const allow_order[] = {"GET", "HEAD",  "POST",
                                          "PUT", "PATCH", "DELETE"};

gw_err_t gw_routes_match(const gw_routes_t *t, const char *method,
                         const char *path, gw_route_match_t *m, char *allow,
                         size_t allow_size) {
    span_t seg[SEGMENTS_MAX + 1];
    size_t nseg, i, k;
    const gw_route_t *best = NULL, *prefix = NULL;
    const char *prefix_rest = NULL;
    unsigned allowed = 0; /* bits of allow_order */
    int head = strcmp(method, "HEAD") == 0;

    memset(m, 0, sizeof(*m));
    /* values are kept as 16-bit offsets; no target is this long (limits.h) */
    if (path[0] != '/' || strlen(path) > UINT16_MAX)
        return GW_E_NOT_FOUND;
    m->path = path;
    nseg = split(path, seg, SEGMENTS_MAX);
    for (i = 0; i < t->n; i++) {
        const gw_route_t *r = &t->route[i];
        int exact = nseg <= SEGMENTS_MAX && match_exact(r, seg, nseg);
        const char *rest = exact ? NULL : match_fib_prefix(r, path, seg, nseg);
        int same = strcmp(r->method, method) == 0 ||
                   (head && strcmp(r->method, "GET") == 0);

        if (!exact && rest == NULL)
            continue;
        for (k = 0; k < sizeof(allow_order) / sizeof(allow_order[0]); k++)
            if (strcmp(r->method, allow_order[k]) == 0)
                allowed |= 1u << k;
        if (strcmp(r->method, "GET") == 0)
            allowed |= 1u << 1; /* HEAD */
        if (!same)
            continue;
        if (exact && (best == NULL || more_specific(r, best)))
            best = r;
        else if (!exact && (prefix == NULL || r->nseg > prefix->nseg)) {
            prefix = r;
            prefix_rest = rest;
        }
    }
    if (best != NULL) {
        m->route = best;
        for (k = 0; k < best->nseg; k++)
            if (best->seg[k].param >= 0) {
                m->value[best->seg[k].param].off = (uint16_t)(seg[k].s - path);
                m->value[best->seg[k].param].len = (uint16_t)seg[k].len;
            }
        if (best->kind == GW_KIND_FIB)
            m->rest = seg[best->nseg - 1].s;
        return GW_E_OK;
    }
    if (prefix != NULL) {
        m->route = prefix;
        m->rest = prefix_rest;
        return GW_E_OK;
    }
    if (allowed == 0)
        return GW_E_NOT_FOUND;
    if (allow_size > 0) {
        size_t len = 0;

        allow[0] = '\0';
        for (k = 0; k < sizeof(allow_order) / sizeof(allow_order[0]); k++) {
            int n;

            if (!(allowed & (1u << k)))
                continue;
            n = (len > 0 ? 2 : 0) + (int)strlen(allow_order[k]);
            if ((size_t)n >= allow_size - len)
                break; /* whole names only */
            len += (size_t)snprintf(allow + len, allow_size - len, "%s%s",
                                    len > 0 ? ", " : "", allow_order[k]);
        }
    }
    return GW_E_METHOD_NOT_ALLOWED;
}

/* --- what a match becomes ------------------------------------------------ */

static int is_key_char(int c) {
    return isalnum(c) || c == '_' || c == '~' || c == '-';
}

const char *gw_route_fixed_key(const gw_route_t *r) {
    /* A queue's name is the key as it is: a '{' in it opens nothing. */
    if (r->queue != NULL || strchr(r->routing_key, '{') == NULL)
        return r->routing_key;
    return NULL;
}

gw_err_t gw_route_routing_key(const gw_route_match_t *m, char *out,
                              size_t out_size, char *detail,
                              size_t detail_size) {
    const gw_route_t *r = m->route;
    const char *s = r->routing_key, *open, *close;
    size_t len = 0, n;
    int k;

    /* A queue's name is the key as it is (gw_route_fixed_key). */
    while (r->queue == NULL && (open = strchr(s, '{')) != NULL) {
        const char *v;
        size_t vlen;

        close = strchr(open, '}'); /* validated at load */
        n = (size_t)(open - s);
        if (len + n >= out_size)
            goto too_long;
        memcpy(out + len, s, n);
        len += n;
        k = param_index(r, open + 1, (size_t)(close - open - 1));
        v = gw_route_value(m, (size_t)k, &vlen);
        if (!all(v, vlen, is_key_char)) {
            snprintf(detail, detail_size,
                     "path parameter '%s' may hold only letters, digits, "
                     "'-', '_' and '~': it becomes part of a routing key",
                     r->param[k]);
            return GW_E_INVALID_PARAM;
        }
        if (len + vlen >= out_size)
            goto too_long;
        memcpy(out + len, v, vlen);
        len += vlen;
        s = close + 1;
    }
    n = strlen(s);
    if (len + n >= out_size)
        goto too_long;
    memcpy(out + len, s, n + 1);
    return GW_E_OK;
too_long:
    snprintf(detail, detail_size,
             "the routing key made from the path would be longer than %d "
             "bytes",
             GW_AMQP_SHORTSTR_MAX);
    return GW_E_INVALID_PARAM;
}

int gw_route_list_has(const gw_route_list_t *list, const char *name) {
    size_t i;

    for (i = 0; i < list->n; i++)
        if (strcasecmp(list->item[i], name) == 0)
            return 1;
    return 0;
}

int gw_route_accepts(const gw_route_t *r, const char *content_type) {
    size_t i, len;

    if (r->content_types.n == 0)
        return 1;
    if (content_type == NULL)
        return 0;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    len = strcspn(content_type, "; \t");
    for (i = 0; i < r->content_types.n; i++)
        if (strlen(r->content_types.item[i]) == len &&
            strncasecmp(r->content_types.item[i], content_type, len) == 0)
            return 1;
    return 0;
}
