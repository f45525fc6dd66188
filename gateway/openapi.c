/* openapi.c - the served OpenAPI document: openapi.yaml's text with its
 * fib path item kept or dropped, and a path item made for every other
 * route path, written in JSON flow style (JSON is YAML) with jansson.
 * Pure; see openapi.h. */
#include "openapi.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESP   "#/components/responses/"
#define PARAM  "#/components/parameters/"
#define HEADER "#/components/headers/"
#define SCHEMA "#/components/schemas/"
/* What a path parameter put into a routing key may hold (routes.c). */
#define KEY_VALUE_PATTERN "^[A-Za-z0-9_~-]+$"

/* The methods a path item documents, in the order Allow lists them. */
static const char *const methods[] = {"GET", "HEAD",  "POST",
                                      "PUT", "PATCH", "DELETE"};
static const char *const lower[] = {"get", "head",  "post",
                                    "put", "patch", "delete"};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/* --- text ---------------------------------------------------------------- */

/* A growing output buffer; failed sticks once an allocation failed. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
    char *p;
    size_t cap;

    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        cap = (b->len + n + 1) * 2;
        p = realloc(b->s, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* A description being written; what does not fit is cut (never happens
 * with the caps routes.c enforces, but never overflows either). */
typedef struct {
    char s[8192];
    size_t len;
} text_t;

static void say(text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(text_t *t, const char *fmt, ...) {
    va_list ap;
    int n;

    if (t->len >= sizeof(t->s) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->s + t->len, sizeof(t->s) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < sizeof(t->s) - t->len ? (size_t)n
                                                    : sizeof(t->s) - 1 - t->len;
}

static void say_list(text_t *t, const gw_route_list_t *l) {
    size_t i;

    for (i = 0; i < l->n; i++)
        say(t, "%s`%s`", i > 0 ? ", " : "", l->item[i]);
}

/* The line of text that starts with mark, or NULL. */
static const char *find_line(const char *text, size_t len, const char *mark) {
    const char *p = text, *end = text + len, *nl;
    size_t mlen = strlen(mark);

    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if ((size_t)((nl != NULL ? nl : end) - p) >= mlen &&
            memcmp(p, mark, mlen) == 0)
            return p;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return NULL;
}

/* Just past the end of the line at p. */
static const char *past_line(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));

    return nl != NULL ? nl + 1 : end;
}

/* --- templates ----------------------------------------------------------- */

static int seg_overlap(const gw_route_seg_t *a, const gw_route_seg_t *b) {
    return a->param >= 0 || b->param >= 0 ||
           (a->len == b->len && memcmp(a->text, b->text, a->len) == 0);
}

/* Literals equal, parameters where the other has parameters: one path
 * item (the gateway matches both alike). */
static int same_shape(const gw_route_t *a, const gw_route_t *b) {
    size_t k;

    if (a->nseg != b->nseg)
        return 0;
    for (k = 0; k < a->nseg; k++) {
        if ((a->seg[k].param < 0) != (b->seg[k].param < 0))
            return 0;
        if (a->seg[k].param < 0 && !seg_overlap(&a->seg[k], &b->seg[k]))
            return 0;
    }
    return 1;
}

/* Whether a request path can match r as well as a path of g's template:
 * exactly, or under r's fib prefix (routes.c, gw_routes_match).  Then the
 * Allow of g's paths may list r's method too. */
static int touches(const gw_route_t *r, const gw_route_t *g) {
    size_t k, fixed;

    if (r->nseg == g->nseg) {
        for (k = 0; k < r->nseg && seg_overlap(&r->seg[k], &g->seg[k]); k++)
            ;
        if (k == r->nseg)
            return 1;
    }
    if (r->kind != GW_KIND_FIB)
        return 0;
    fixed = r->nseg - 1;
    if (g->nseg < fixed)
        return 0;
    for (k = 0; k < fixed; k++)
        if (!seg_overlap(&r->seg[k], &g->seg[k]))
            return 0;
    return 1;
}

/* A path item: the routes of one template shape (leader first). */
typedef struct {
    const gw_route_t *route[GW_ROUTES_MAX];
    size_t n;
    unsigned allowed; /* bits of methods[] */
    int touched;      /* another path item's route matches some paths too */
} item_t;

static void item_fill(item_t *it, const gw_routes_t *t, size_t leader) {
    const gw_route_t *g = gw_routes_at(t, leader);
    size_t i, k;

    it->n = 0;
    it->allowed = 0;
    it->touched = 0;
    for (i = 0; i < gw_routes_count(t); i++) {
        const gw_route_t *r = gw_routes_at(t, i);

        if (!same_shape(r, g)) {
            it->touched |= touches(r, g);
            continue;
        }
        it->route[it->n++] = r;
        for (k = 0; k < NMETHODS; k++)
            if (strcmp(r->method, methods[k]) == 0)
                it->allowed |= 1u << k;
        if (strcmp(r->method, "GET") == 0)
            it->allowed |= 1u << 1; /* HEAD */
    }
}

/* Whether route i is the first of its shape. */
static int is_leader(const gw_routes_t *t, size_t i) {
    size_t j;

    for (j = 0; j < i; j++)
        if (same_shape(gw_routes_at(t, j), gw_routes_at(t, i)))
            return 0;
    return 1;
}

/* The static /fib/{n} path item fits: the fib route GET /fib/{n} alone. */
static int static_fib_fits(const item_t *it) {
    return it->n == 1 && it->route[0]->kind == GW_KIND_FIB &&
           strcmp(it->route[0]->path, "/fib/{n}") == 0 && !it->touched;
}

/* Whether a raw route's method carries a request body (RFC 9110 defines
 * what one means only for these). */
static int takes_body(const gw_route_t *r) {
    return r->kind == GW_KIND_RAW &&
           (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
            strcmp(r->method, "PATCH") == 0);
}

/* Whether path parameter k of r goes into its routing key. */
static int in_routing_key(const gw_route_t *r, size_t k) {
    char want[GW_ROUTE_NAME_MAX + 3];

    if (r->queue != NULL)
        return 0; /* the key is the queue's name */
    snprintf(want, sizeof(want), "{%s}", r->param[k]);
    return strstr(r->routing_key, want) != NULL;
}

/* --- JSON ---------------------------------------------------------------- */

/* Setters that note a failure (out of memory) in *bad; the value is
 * released on failure, as jansson's _new functions do. */
static void set(json_t *obj, const char *key, json_t *v, int *bad) {
    if (json_object_set_new(obj, key, v) != 0)
        *bad = 1;
}

static void push(json_t *arr, json_t *v, int *bad) {
    if (json_array_append_new(arr, v) != 0)
        *bad = 1;
}

static json_t *ref(const char *where, const char *name) {
    char s[128];

    snprintf(s, sizeof(s), "%s%s", where, name);
    return json_pack("{s:s}", "$ref", s);
}

static json_t *string_schema(const char *pattern) {
    json_t *s = json_pack("{s:s}", "type", "string");

    if (s != NULL && pattern != NULL &&
        json_object_set_new(s, "pattern", json_string(pattern)) != 0) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* Bytes; at most max of them, unless max is SIZE_MAX. */
static json_t *binary_schema(size_t max) {
    if (max == SIZE_MAX)
        return json_pack("{s:s, s:s}", "type", "string", "format", "binary");
    return json_pack("{s:s, s:s, s:I}", "type", "string", "format", "binary",
                     "maxLength", (json_int_t)max);
}

/* operationId: the route's name (with suffix, "~head"), unless the static
 * document has it already; '~' is in no route name, so none collide. */
static json_t *op_id(const char *text, const char *name, const char *suffix) {
    char needle[GW_ROUTE_NAME_MAX + 32], id[GW_ROUTE_NAME_MAX + 32];

    snprintf(needle, sizeof(needle), "operationId: %s\n", name);
    snprintf(id, sizeof(id), "%s%s%s", name,
             strstr(text, needle) != NULL ? "~route" : "", suffix);
    return json_string(id);
}

static const char *tag_of(const gw_route_t *r) {
    return r->kind == GW_KIND_FIB ? "fib" : "routes";
}

/* Where r's messages go, as words. */
static void say_destination(text_t *d, const gw_route_t *r) {
    if (r->queue != NULL)
        say(d, "the queue `%s`", r->queue);
    else if (r->exchange[0] == '\0')
        say(d, "the default exchange, routing key `%s`", r->routing_key);
    else
        say(d, "the exchange `%s`, routing key `%s`", r->exchange,
            r->routing_key);
}

static void describe(text_t *d, text_t *summary, const gw_route_t *r,
                     const gw_openapi_opts_t *o) {
    unsigned max = r->max_timeout_ms ? r->max_timeout_ms : o->max_timeout_ms;
    unsigned dflt = r->timeout_ms ? r->timeout_ms : o->timeout_ms;
    size_t k;

    if (dflt > max)
        dflt = max;
    if (r->kind == GW_KIND_FIB) {
        say(summary, "Compute F(n) through a fib worker (route %s)", r->name);
        say(d, "Route `%s` (fib): n goes to ", r->name);
        say_destination(d, r);
        say(d, " and F(n) comes back as JSON, as on `GET /fib/{n}`.");
    } else if (r->mode == GW_MODE_PUBLISH) {
        say(summary, "Publish the body to ");
        say_destination(summary, r);
        say(summary, " (route %s)", r->name);
        say(d,
            "Route `%s` (raw, publish): the request body is published, "
            "persistent, to ",
            r->name);
        say_destination(d, r);
        say(d, "; the answer is 202 once RabbitMQ confirmed it.");
    } else {
        say(summary, "Call the service on ");
        say_destination(summary, r);
        say(summary, " (route %s)", r->name);
        say(d, "Route `%s` (raw, rpc): the request body goes byte for byte to ",
            r->name);
        say_destination(d, r);
        say(d, ", and the worker's reply comes back as the answer (status, "
               "body, content type).");
    }
    say(d, " See \"Routes\" in the description of this document.\n\n");
    say(d, "Timeout: %u ms unless `?timeout_ms=` says, at most %u ms.", dflt,
        max);
    if (r->kind == GW_KIND_RAW) {
        if (takes_body(r)) {
            say(d, " Body: at most %zu bytes, ", r->max_body_bytes);
            if (r->content_types.n > 0) {
                say(d, "of type ");
                say_list(d, &r->content_types);
            } else {
                say(d, "of any type");
            }
            say(d, ".");
        }
        for (k = 0; k < r->nparam; k++)
            say(d, "%s`x-param-%s`", k == 0 ? " Path parameters: " : ", ",
                r->param[k]);
        if (r->nparam > 0)
            say(d, ".");
        if (r->forward_headers.n > 0) {
            say(d, " Forwarded request headers: ");
            say_list(d, &r->forward_headers);
            say(d, ".");
        }
        if (r->return_headers.n > 0 && r->mode == GW_MODE_RPC) {
            say(d, " Returned reply headers: ");
            say_list(d, &r->return_headers);
            say(d, ".");
        }
    }
}

/* A raw rpc route's answer: RawReply, with the headers it returns. */
static json_t *raw_reply(const gw_route_t *r, int *bad) {
    json_t *resp, *headers, *h;
    size_t k;

    if (r->return_headers.n == 0)
        return ref(RESP, "RawReply");
    resp = json_pack(
        "{s:s, s:{s:o}, s:{s:{s:o}}}", "description",
        "The worker's reply, as it sent it: the body byte for byte, its "
        "content type, the status of its x-http-status (200 when absent; "
        "any from 200 to 599), and the reply headers this route returns.",
        "headers", "X-Request-Id", ref(HEADER, "RequestId"), "content", "*/*",
        "schema", binary_schema(SIZE_MAX));
    headers = json_object_get(resp, "headers");
    if (resp == NULL || headers == NULL) {
        json_decref(resp);
        *bad = 1;
        return NULL;
    }
    for (k = 0; k < r->return_headers.n; k++) {
        h = json_pack("{s:s, s:o}", "description",
                      "The worker's reply header of this name, when it sent "
                      "one.",
                      "schema", string_schema(NULL));
        set(headers, r->return_headers.item[k], h, bad);
    }
    return resp;
}

static json_t *responses(const gw_route_t *r, int *bad) {
    json_t *resp = json_object();

    if (resp == NULL) {
        *bad = 1;
        return NULL;
    }
    if (r->kind == GW_KIND_FIB)
        set(resp, "200", ref(RESP, "Fib"), bad);
    else if (r->mode == GW_MODE_PUBLISH)
        set(resp, "202", ref(RESP, "Accepted"), bad);
    else
        set(resp, "200", raw_reply(r, bad), bad);
    set(resp, "400", ref(RESP, "BadRequest"), bad);
    set(resp, "401", ref(RESP, "Unauthorized"), bad);
    set(resp, "408", ref(RESP, "RequestTimeout"), bad);
    if (takes_body(r))
        set(resp, "413", ref(RESP, "PayloadTooLarge"), bad);
    set(resp, "414", ref(RESP, "UriTooLong"), bad);
    if (takes_body(r) && r->content_types.n > 0)
        set(resp, "415", ref(RESP, "UnsupportedMediaType"), bad);
    set(resp, "431", ref(RESP, "HeadersTooLarge"), bad);
    set(resp, "500", ref(RESP, "Internal"), bad);
    set(resp, "502", ref(RESP, "BadGateway"), bad);
    set(resp, "503", ref(RESP, "Unavailable"), bad);
    set(resp, "504", ref(RESP, "GatewayTimeout"), bad);
    if (r->kind == GW_KIND_RAW && r->mode == GW_MODE_RPC)
        set(resp, "default", raw_reply(r, bad), bad);
    return resp;
}

/* Route r's own view of path parameter k (named name in the path item). */
static json_t *own_param(const gw_route_t *r, size_t k, const char *name,
                         const gw_openapi_opts_t *o) {
    text_t d = {{0}, 0};
    int key = r->kind == GW_KIND_RAW && in_routing_key(r, k);

    if (r->kind == GW_KIND_FIB) {
        say(&d,
            "Index of the Fibonacci number: decimal digits only, 0 <= n <= "
            "%u (`--max-n`); leading zeros are allowed. Anything else gets "
            "400 (`invalid_n`, or `n_out_of_range` above the limit).",
            (unsigned)o->max_n);
    } else {
        say(&d, "Reaches the worker, decoded, as the AMQP header `x-param-%s`.",
            r->param[k]);
        if (key)
            say(&d, " It goes into the routing key, so it may hold only "
                    "letters, digits, `-`, `_` and `~` (else 400 "
                    "`invalid_param`).");
    }
    return json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", name, "in", "path",
                     "required", 1, "description", d.s, "schema",
                     string_schema(r->kind == GW_KIND_FIB ? "^[0-9]+$"
                                   : key                  ? KEY_VALUE_PATTERN
                                                          : NULL));
}

/* The operation of route r (or its HEAD, head set) in path item it. */
static json_t *operation(const char *text, const item_t *it,
                         const gw_route_t *r, int head,
                         const gw_openapi_opts_t *o, int *bad) {
    const gw_route_t *leader = it->route[0];
    text_t d = {{0}, 0}, summary = {{0}, 0};
    json_t *op, *params, *body, *content;
    size_t k;

    describe(&d, &summary, r, o);
    op = json_pack("{s:o, s:s, s:[s]}", "operationId",
                   op_id(text, r->name, head ? "~head" : ""), "x-route",
                   r->name, "tags", tag_of(r));
    params = json_array();
    if (op == NULL || params == NULL) {
        json_decref(op);
        json_decref(params);
        *bad = 1;
        return NULL;
    }
    set(op, "summary",
        json_string(head ? "As GET, without the body" : summary.s), bad);
    set(op, "description", json_string(d.s), bad);
    for (k = 0; k < r->nparam; k++)
        push(params, own_param(r, k, leader->param[k], o), bad);
    for (k = 0; k < r->forward_headers.n; k++)
        push(params,
             json_pack("{s:s, s:s, s:b, s:s, s:o}", "name",
                       r->forward_headers.item[k], "in", "header", "required",
                       0, "description",
                       "Forwarded to the worker as the AMQP header of this "
                       "name (repeated headers joined with \", \").",
                       "schema", string_schema(NULL)),
             bad);
    if (json_array_size(params) > 0)
        set(op, "parameters", params, bad);
    else
        json_decref(params);
    if (!head && takes_body(r)) {
        content = json_object();
        if (r->content_types.n == 0)
            set(content, "*/*",
                json_pack("{s:o}", "schema", binary_schema(r->max_body_bytes)),
                bad);
        for (k = 0; k < r->content_types.n; k++)
            set(content, r->content_types.item[k],
                json_pack("{s:o}", "schema", binary_schema(r->max_body_bytes)),
                bad);
        body = json_pack("{s:s, s:b, s:o}", "description",
                         "Sent on byte for byte as the message's body, with "
                         "its Content-Type and Content-Encoding.",
                         "required", 0, "content", content);
        set(op, "requestBody", body, bad);
    }
    set(op, "responses", responses(r, bad), bad);
    return op;
}

/* The 405-only operation for a method no route of it serves (m indexes
 * methods[]; NMETHODS: OPTIONS, which a CORS preflight gets 204 for). */
static json_t *refused(const char *text, const item_t *it, size_t m,
                       const char *allow, int *bad) {
    char suffix[16];
    json_t *allow_schema = string_schema(NULL), *op;

    /* Another path item's route may add its methods on some paths. */
    if (allow_schema != NULL && !it->touched)
        set(allow_schema, "enum", json_pack("[s]", allow), bad);
    snprintf(suffix, sizeof(suffix), "~%s",
             m < NMETHODS ? lower[m] : "options");
    op = json_pack(
        "{s:o, s:[s], s:s, s:{s:{s:s, s:{s:o, s:{s:s, s:b, s:o}}, "
        "s:{s:{s:o}}}}}",
        "operationId", op_id(text, it->route[0]->name, suffix), "tags",
        tag_of(it->route[0]), "summary",
        m < NMETHODS ? "Not allowed" : "CORS preflight", "responses", "405",
        "description", "This path answers other methods only.", "headers",
        "X-Request-Id", ref(HEADER, "RequestId"), "Allow", "description",
        "The methods this path answers.", "required", 1, "schema", allow_schema,
        "content", "application/problem+json", "schema",
        ref(SCHEMA, "MethodNotAllowedProblem"));
    if (op == NULL) {
        *bad = 1;
        return NULL;
    }
    /* Before the path is looked at, when a token is required. */
    set(json_object_get(op, "responses"), "401", ref(RESP, "Unauthorized"),
        bad);
    if (m == NMETHODS) { /* OPTIONS: a preflight from a listed origin */
        set(op, "description",
            json_string("A browser's preflight (an `Origin` listed in "
                        "`--cors-origins` and "
                        "`Access-Control-Request-Method`) gets 204 with the "
                        "CORS headers, allowing the methods of `Allow`, "
                        "without a token. Any other OPTIONS is an ordinary "
                        "method: 401 when a token is required and missing, "
                        "else 405."),
            bad);
        set(op, "parameters",
            json_pack("[o, o]", ref(PARAM, "Origin"),
                      ref(PARAM, "AccessControlRequestMethod")),
            bad);
        set(json_object_get(op, "responses"), "204", ref(RESP, "Preflight"),
            bad);
    }
    return op;
}

/* The path item for it, as a JSON object. */
static json_t *path_item(const char *text, const item_t *it,
                         const gw_openapi_opts_t *o, int *bad) {
    const gw_route_t *leader = it->route[0];
    json_t *item = json_object(), *names = json_array(), *params = json_array();
    char allow[64] = "";
    size_t k, m, len = 0;

    if (item == NULL || names == NULL || params == NULL) {
        json_decref(item);
        json_decref(names);
        json_decref(params);
        *bad = 1;
        return NULL;
    }
    for (k = 0; k < it->n; k++)
        push(names, json_string(it->route[k]->name), bad);
    set(item, "x-routes", names, bad);
    for (k = 0; k < leader->nparam; k++)
        push(params,
             json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", leader->param[k],
                       "in", "path", "required", 1, "description",
                       "A path parameter (see each operation).", "schema",
                       string_schema(NULL)),
             bad);
    push(params, ref(PARAM, "TimeoutMs"), bad);
    push(params, ref(PARAM, "RequestId"), bad);
    push(params, ref(PARAM, "Traceparent"), bad);
    set(item, "parameters", params, bad);
    for (m = 0; m < NMETHODS; m++)
        if (it->allowed & (1u << m))
            len += (size_t)snprintf(allow + len, sizeof(allow) - len, "%s%s",
                                    len > 0 ? ", " : "", methods[m]);
    for (m = 0; m < NMETHODS; m++) {
        const gw_route_t *r = NULL;
        int head = m == 1;

        for (k = 0; k < it->n && r == NULL; k++)
            if (strcmp(it->route[k]->method, head ? "GET" : methods[m]) == 0)
                r = it->route[k];
        set(item, lower[m],
            r != NULL ? operation(text, it, r, head, o, bad)
                      : refused(text, it, m, allow, bad),
            bad);
    }
    set(item, "options", refused(text, it, NMETHODS, allow, bad), bad);
    return item;
}

/* Appends v's JSON to out: on one line, or indented (its lines after the
 * first by indent more); a DEL (the one byte JSON leaves raw that YAML does
 * not take) escaped. */
static void put_json(buf_t *out, json_t *v, int lines, const char *indent) {
    char *s = json_dumps(v, JSON_ENSURE_ASCII | JSON_ENCODE_ANY |
                                (lines ? JSON_INDENT(2) : 0));
    const char *p;

    if (s == NULL) {
        out->failed = 1;
        return;
    }
    for (p = s; *p != '\0'; p++) {
        if (*p == '\n') {
            buf_put(out, p, 1);
            buf_put(out, indent, strlen(indent));
        } else if (*p == '\x7f') {
            buf_put(out, "\\u007f", 6);
        } else {
            buf_put(out, p, 1);
        }
    }
    free(s);
}

/* Appends the path item under paths, in YAML block style with JSON values:
 * an operation of a route indented over several lines for people to read,
 * the rest (parameters, the 405s) on one line each. */
static void put_item(buf_t *out, const char *path, json_t *item) {
    json_t *name = json_string(path), *v;
    const char *key;

    buf_put(out, "  ", 2);
    put_json(out, name, 0, "");
    buf_put(out, ":\n", 2);
    json_decref(name);
    json_object_foreach(item, key, v) {
        buf_put(out, "    ", 4); /* keys: x-routes, parameters, methods */
        buf_put(out, key, strlen(key));
        buf_put(out, ": ", 2);
        put_json(out, v, json_object_get(v, "x-route") != NULL, "      ");
        buf_put(out, "\n", 1);
    }
}

char *gw_openapi_render(const char *text, size_t len, const gw_routes_t *t,
                        const gw_openapi_opts_t *o, size_t *out_len) {
    const char *end = text + len, *fib_begin, *fib_end, *here;
    buf_t out = {NULL, 0, 0, 0};
    item_t *it = malloc(sizeof(*it));
    int keep_fib = 0, bad = 0;
    size_t i;

    fib_begin = find_line(text, len, GW_OPENAPI_MARK_FIB_BEGIN);
    fib_end = find_line(text, len, GW_OPENAPI_MARK_FIB_END);
    here = find_line(text, len, GW_OPENAPI_MARK_HERE);
    if (it == NULL || fib_begin == NULL || fib_end == NULL || here == NULL ||
        !(fib_begin < fib_end && fib_end < here))
        goto fail;
    fib_end = past_line(fib_end, end);
    here = past_line(here, end);
    for (i = 0; i < gw_routes_count(t); i++) {
        if (!is_leader(t, i))
            continue;
        item_fill(it, t, i);
        keep_fib |= static_fib_fits(it);
    }
    buf_put(&out, text, (size_t)(fib_begin - text));
    if (keep_fib)
        buf_put(&out, fib_begin, (size_t)(fib_end - fib_begin));
    buf_put(&out, fib_end, (size_t)(here - fib_end));
    for (i = 0; i < gw_routes_count(t) && !bad; i++) {
        json_t *item;

        if (!is_leader(t, i))
            continue;
        item_fill(it, t, i);
        if (static_fib_fits(it))
            continue;
        item = path_item(text, it, o, &bad);
        if (item != NULL && !bad)
            put_item(&out, gw_routes_at(t, i)->path, item);
        json_decref(item);
    }
    buf_put(&out, here, (size_t)(end - here));
    if (bad || out.failed)
        goto fail;
    free(it);
    *out_len = out.len;
    return out.s;
fail:
    free(it);
    free(out.s);
    return NULL;
}
