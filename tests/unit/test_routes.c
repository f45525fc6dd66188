/* test_routes.c - the route table: parsing, every validation error,
 * matching and routing keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "routes.h"

/* The issue's example file, verbatim. */
static const char example[] =
    "{\n"
    "  \"routes\": [\n"
    "    {\"name\": \"fib\", \"kind\": \"fib\", \"method\": \"GET\", \"path\": "
    "\"/fib/{n}\", \"queue\": \"rpc_queue\"},\n"
    "    {\"name\": \"upper\", \"method\": \"POST\", \"path\": \"/v1/upper\", "
    "\"queue\": \"upper_queue\",\n"
    "     \"timeout_ms\": 3000, \"max_body_bytes\": 1048576,\n"
    "     \"content_types\": [\"text/plain\", \"application/octet-stream\"],\n"
    "     \"forward_headers\": [\"accept-language\"], \"return_headers\": "
    "[\"x-cache\"]},\n"
    "    {\"name\": \"resize\", \"method\": \"POST\", \"path\": "
    "\"/v1/images/{id}/resize/{size}\",\n"
    "     \"exchange\": \"images\", \"routing_key\": \"resize.{size}\"},\n"
    "    {\"name\": \"audit\", \"method\": \"POST\", \"path\": \"/v1/audit\", "
    "\"queue\": \"audit\", \"mode\": \"publish\"}\n"
    "  ]\n"
    "}\n";

static gw_routes_t *parse(const char *json, char *errors, size_t size) {
    return gw_routes_parse(json, strlen(json), errors, size);
}

static gw_routes_t *parse_ok(const char *json) {
    char errors[2048];
    gw_routes_t *t = parse(json, errors, sizeof(errors));

    if (t == NULL)
        fail_msg("unexpected errors:\n%s", errors);
    return t;
}

/* The one route r as a file. */
static void one_route(char *out, size_t size, const char *r) {
    snprintf(out, size, "{\"routes\": [%s]}", r);
}

/* Parsing json must fail with an error line containing want. */
static void assert_refused(const char *json, const char *want) {
    char errors[2048];
    gw_routes_t *t = parse(json, errors, sizeof(errors));

    if (t != NULL) {
        gw_routes_free(t);
        fail_msg("accepted, wanted an error with '%s':\n%s", want, json);
    }
    if (strstr(errors, want) == NULL)
        fail_msg("wanted '%s' in:\n%s", want, errors);
}

static void assert_route_refused(const char *route, const char *want) {
    char json[2048];

    one_route(json, sizeof(json), route);
    assert_refused(json, want);
}

static void test_example(void **state) {
    gw_routes_t *t = parse_ok(example);
    const gw_route_t *r;

    assert_int_equal(gw_routes_count(t), 4);
    r = gw_routes_at(t, 0);
    assert_string_equal(r->name, "fib");
    assert_int_equal(r->kind, GW_KIND_FIB);
    assert_int_equal(r->mode, GW_MODE_RPC);
    assert_string_equal(r->queue, "rpc_queue");
    assert_string_equal(r->exchange, "");
    assert_string_equal(r->routing_key, "rpc_queue");
    assert_int_equal(r->max_body_bytes, GW_ROUTE_BODY_DFLT);

    r = gw_routes_at(t, 1);
    assert_string_equal(r->name, "upper");
    assert_int_equal(r->kind, GW_KIND_RAW);
    assert_string_equal(r->method, "POST");
    assert_int_equal(r->timeout_ms, 3000);
    assert_int_equal(r->max_timeout_ms, 0);
    assert_int_equal(r->max_body_bytes, 1048576);
    assert_int_equal(r->content_types.n, 2);
    assert_string_equal(r->content_types.item[1], "application/octet-stream");
    assert_true(gw_route_list_has(&r->forward_headers, "Accept-Language"));
    assert_true(gw_route_list_has(&r->return_headers, "x-cache"));
    assert_false(gw_route_list_has(&r->return_headers, "x-other"));

    r = gw_routes_at(t, 2);
    assert_null(r->queue);
    assert_string_equal(r->exchange, "images");
    assert_string_equal(r->routing_key, "resize.{size}");
    assert_int_equal(r->nparam, 2);
    assert_string_equal(r->param[0], "id");
    assert_string_equal(r->param[1], "size");

    r = gw_routes_at(t, 3);
    assert_int_equal(r->mode, GW_MODE_PUBLISH);
    assert_int_equal(r->index, 3);
    assert_null(gw_routes_at(t, 4));
    gw_routes_free(t);
}

static void test_default(void **state) {
    gw_routes_t *t = gw_routes_default("my \"queue\"");
    const gw_route_t *r;

    assert_non_null(t);
    assert_int_equal(gw_routes_count(t), 1);
    r = gw_routes_at(t, 0);
    assert_string_equal(r->name, "fib");
    assert_int_equal(r->kind, GW_KIND_FIB);
    assert_string_equal(r->path, "/fib/{n}");
    assert_string_equal(r->queue, "my \"queue\"");
    gw_routes_free(t);
    gw_routes_free(NULL);
}

static void test_file_errors(void **state) {
    assert_refused("", "not valid JSON");
    assert_refused("{\"routes\": [}", "not valid JSON: line 1");
    assert_refused("[]", "must be an object {\"routes\"");
    assert_refused("{\"routes\": {}}", "must be an object {\"routes\"");
    assert_refused("{\"routes\": []}", "must hold 1 to");
    assert_refused("{\"routes\": [1]}", "route #1: must be an object");
    assert_refused("{\"routes\": [], \"extra\": 1}", "unknown top-level field");
    /* a key twice in one object */
    assert_refused("{\"routes\": [{\"name\": \"a\", \"name\": \"b\"}]}",
                   "not valid JSON");
}

static void test_route_errors(void **state) {
    static const struct {
        const char *route, *want;
    } cases[] = {
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"colour\":1}",
         "route 'a' (#1): field 'colour': unknown field"},
        {"{\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\"}",
         "route #1: field 'name': missing"},
        {"{\"name\":\"a "
         "b\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\"}",
         "field 'name': must be 1 to"},
        {"{\"name\":\"a\",\"path\":\"/a\",\"queue\":\"q\"}",
         "field 'method': missing"},
        {"{\"name\":\"a\",\"method\":\"get\",\"path\":\"/a\",\"queue\":\"q\"}",
         "field 'method': 'get': must be"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"queue\":\"q\"}",
         "field 'path': missing"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"a\",\"queue\":\"q\"}",
         "field 'path': must start with '/'"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a//"
         "b\",\"queue\":\"q\"}",
         "empty segment"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a/\",\"queue\":\"q\"}",
         "empty segment"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a/{1x}\",\"queue\":"
         "\"q\"}",
         "a parameter is {name}"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a/x{y}\",\"queue\":"
         "\"q\"}",
         "segment 'x{y}'"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/{x}/{x}\",\"queue\":"
         "\"q\"}",
         "parameter {x} twice"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/healthz\",\"queue\":"
         "\"q\"}",
         "'/healthz' is the gateway's own"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\"}",
         "missing destination"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"exchange\":\"x\"}",
         "give either queue, or exchange and routing_key"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"exchange\":"
         "\"x\"}",
         "field 'routing_key': missing: exchange and routing_key go together"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"\"}",
         "field 'queue': must be 1 to 255 bytes"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a/{id}\","
         "\"exchange\":\"x\",\"routing_key\":\"k.{size}\"}",
         "field 'routing_key': {size} is not a parameter of path '/a/{id}'"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a/{id}\","
         "\"exchange\":\"x\",\"routing_key\":\"k.{id\"}",
         "a '{' must open a {parameter}"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"timeout_ms\":\"5\"}",
         "field 'timeout_ms': must be an integer"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"timeout_ms\":0}",
         "field 'timeout_ms': 0 is out of range"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"timeout_ms\":1.5}",
         "field 'timeout_ms': must be an integer"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"max_body_bytes\":-1}",
         "field 'max_body_bytes': -1 is out of range"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"timeout_ms\":5000,\"max_timeout_ms\":1000}",
         "field 'timeout_ms': 5000 is above max_timeout_ms (1000)"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"kind\":\"soap\"}",
         "field 'kind': 'soap'"},
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"mode\":\"fire\"}",
         "field 'mode': 'fire'"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"content_types\":[\"text\"]}",
         "field 'content_types': item 1: must be a media type"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"content_types\":\"text/plain\"}",
         "field 'content_types': must be an array"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"forward_headers\":[\"bad header\"]}",
         "field 'forward_headers': item 1: must be a header name"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"forward_headers\":[\"Content-Length\"]}",
         "'content-length' is the gateway's own"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"return_headers\":[\"x-a\",\"X-A\"]}",
         "'x-a' twice"},
        /* CORS is the gateway's: a worker's would open what it closes */
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"return_headers\":[\"Access-Control-Allow-Origin\"]}",
         "'access-control-allow-origin' is the gateway's own"},
        {"{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/a\",\"queue\":\"q\","
         "\"forward_headers\":[\"access-control-request-method\"]}",
         "'access-control-request-method' is the gateway's own"},
        /* a GET route answers HEAD too: neither may publish */
        {"{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\","
         "\"mode\":\"publish\"}",
         "mode publish is POST, PUT, PATCH or DELETE"},
        {"{\"name\":\"a\",\"kind\":\"fib\",\"method\":\"POST\",\"path\":\"/f/"
         "{n}\",\"queue\":\"q\"}",
         "kind fib is GET only"},
        {"{\"name\":\"a\",\"kind\":\"fib\",\"method\":\"GET\",\"path\":\"/f\","
         "\"queue\":\"q\"}",
         "kind fib needs exactly one parameter"},
        {"{\"name\":\"a\",\"kind\":\"fib\",\"method\":\"GET\",\"path\":\"/f/"
         "{n}\",\"queue\":\"q\",\"max_body_bytes\":5}",
         "field 'max_body_bytes': not used by kind fib"},
        {"{\"name\":\"a\",\"kind\":\"fib\",\"method\":\"GET\",\"path\":\"/f/"
         "{n}\",\"queue\":\"q\",\"mode\":\"publish\"}",
         "kind fib is rpc only"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_route_refused(cases[i].route, cases[i].want);
}

static void test_table_errors(void **state) {
    assert_refused(
        "{\"routes\": ["
        "{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\",\"queue\":\"q\"},"
        "{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/b\",\"queue\":\"q\"}]}",
        "route 'a' (#2): field 'name': duplicate: route #1 has the same name");
    assert_refused(
        "{\"routes\": ["
        "{\"name\":\"a\",\"method\":\"POST\",\"path\":\"/x/{id}\",\"queue\":"
        "\"q\"},"
        "{\"name\":\"b\",\"method\":\"POST\",\"path\":\"/x/{other}\","
        "\"queue\":\"q\"}]}",
        "route 'b' (#2): field 'path': POST /x/{other}: route 'a' (#1) "
        "already serves that method and path");
    /* the same path with another method is fine */
    gw_routes_free(parse_ok(
        "{\"routes\": ["
        "{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/x/{id}\",\"queue\":"
        "\"q\"},"
        "{\"name\":\"b\",\"method\":\"DELETE\",\"path\":\"/x/{id}\","
        "\"queue\":\"q\"}]}"));
}

static void test_every_error_reported(void **state) {
    char errors[4096];
    gw_routes_t *t = parse("{\"routes\": ["
                           "{\"name\":\"a\",\"method\":\"GET\",\"path\":\"/a\","
                           "\"queue\":\"q\",\"timeout_ms\":0,\"x\":1},"
                           "{\"name\":\"b\",\"method\":\"PUT\",\"path\":\"b\","
                           "\"queue\":\"q\"}]}",
                           errors, sizeof(errors));

    assert_null(t);
    assert_non_null(strstr(errors, "route 'a' (#1): field 'x'"));
    assert_non_null(strstr(errors, "route 'a' (#1): field 'timeout_ms'"));
    assert_non_null(strstr(errors, "route 'b' (#2): field 'path'"));
    /* and a small buffer is truncated, not overrun */
    t = parse("{\"routes\": [{\"name\":\"a\"}]}", errors, 10);
    assert_null(t);
    assert_true(strlen(errors) < 10);
}

static const char table[] =
    "{\"routes\": ["
    "{\"name\":\"fib\",\"kind\":\"fib\",\"method\":\"GET\",\"path\":\"/fib/"
    "{n}\",\"queue\":\"rpc_queue\"},"
    "{\"name\":\"img\",\"method\":\"POST\",\"path\":\"/v1/images/{id}/resize/"
    "{size}\",\"exchange\":\"images\",\"routing_key\":\"resize.{size}\"},"
    "{\"name\":\"latest\",\"method\":\"POST\",\"path\":\"/v1/images/latest/"
    "resize/{size}\",\"queue\":\"latest\"},"
    "{\"name\":\"get_img\",\"method\":\"GET\",\"path\":\"/v1/images/{id}\","
    "\"queue\":\"img\"},"
    "{\"name\":\"del_img\",\"method\":\"DELETE\",\"path\":\"/v1/images/{id}\","
    "\"queue\":\"img\"},"
    "{\"name\":\"fib2\",\"kind\":\"fib\",\"method\":\"GET\",\"path\":\"/fib/"
    "special/{n}\",\"queue\":\"q2\"}"
    "]}";

static const gw_route_t *match(const gw_routes_t *t, const char *method,
                               const char *path, gw_route_match_t *m) {
    char allow[64];

    if (gw_routes_match(t, method, path, m, allow, sizeof(allow)) != GW_E_OK)
        return NULL;
    return m->route;
}

static void test_match(void **state) {
    gw_routes_t *t = parse_ok(table);
    gw_route_match_t m;
    char allow[64];
    const gw_route_t *r;

    r = match(t, "POST", "/v1/images/cat.jpg/resize/200", &m);
    assert_non_null(r);
    assert_string_equal(r->name, "img");
    {
        size_t len;
        const char *v = gw_route_value(&m, 0, &len);

        assert_int_equal(len, 7);
        assert_memory_equal(v, "cat.jpg", 7);
        v = gw_route_value(&m, 1, &len);
        assert_int_equal(len, 3);
        assert_memory_equal(v, "200", 3);
    }

    /* a literal beats a parameter, whatever the order in the file */
    r = match(t, "POST", "/v1/images/latest/resize/9", &m);
    assert_string_equal(r->name, "latest");

    /* HEAD is GET's */
    r = match(t, "HEAD", "/v1/images/1", &m);
    assert_string_equal(r->name, "get_img");
    r = match(t, "DELETE", "/v1/images/1", &m);
    assert_string_equal(r->name, "del_img");

    /* 405 with every method the path has */
    assert_int_equal(
        gw_routes_match(t, "PUT", "/v1/images/1", &m, allow, sizeof(allow)),
        GW_E_METHOD_NOT_ALLOWED);
    assert_string_equal(allow, "GET, HEAD, DELETE");
    assert_int_equal(gw_routes_match(t, "GET", "/v1/images/1/resize/2", &m,
                                     allow, sizeof(allow)),
                     GW_E_METHOD_NOT_ALLOWED);
    assert_string_equal(allow, "POST");
    /* truncated, never overrun */
    assert_int_equal(gw_routes_match(t, "PUT", "/v1/images/1", &m, allow, 8),
                     GW_E_METHOD_NOT_ALLOWED);
    assert_string_equal(allow, "GET");

    /* 404: no template fits */
    assert_int_equal(
        gw_routes_match(t, "GET", "/v1/images", &m, allow, sizeof(allow)),
        GW_E_NOT_FOUND);
    assert_int_equal(
        gw_routes_match(t, "GET", "/v1/images/", &m, allow, sizeof(allow)),
        GW_E_NOT_FOUND);
    assert_int_equal(
        gw_routes_match(t, "GET", "/v1/images/1/", &m, allow, sizeof(allow)),
        GW_E_NOT_FOUND);
    assert_int_equal(
        gw_routes_match(t, "GET", "/v1//images/1", &m, allow, sizeof(allow)),
        GW_E_NOT_FOUND);
    assert_int_equal(gw_routes_match(t, "GET", "", &m, allow, sizeof(allow)),
                     GW_E_NOT_FOUND);
    assert_int_equal(
        gw_routes_match(t, "GET", "/fibx/1", &m, allow, sizeof(allow)),
        GW_E_NOT_FOUND);
    {
        /* values are 16-bit offsets: a path past 65535 bytes (no request
         * target gets near: limits.h) matches nothing, rather than a value
         * at a wrapped offset */
        static char big[70000];
        size_t len;

        memset(big, 'a', sizeof(big) - 1);
        memcpy(big, "/v1/images/", 11);
        assert_int_equal(
            gw_routes_match(t, "GET", big, &m, allow, sizeof(allow)),
            GW_E_NOT_FOUND);
        big[65535] = '\0'; /* the longest that still fits */
        assert_int_equal(
            gw_routes_match(t, "GET", big, &m, allow, sizeof(allow)), GW_E_OK);
        assert_int_equal(gw_route_value(&m, 0, &len) - big, 11);
        assert_int_equal(len, 65535 - 11);
    }
    gw_routes_free(t);
}

static void test_match_fib_prefix(void **state) {
    gw_routes_t *t = parse_ok(table);
    gw_route_match_t m;
    char allow[64];
    const gw_route_t *r;

    r = match(t, "GET", "/fib/10", &m);
    assert_string_equal(r->name, "fib");
    assert_string_equal(m.rest, "10");
    r = match(t, "GET", "/fib", &m);
    assert_string_equal(r->name, "fib");
    assert_string_equal(m.rest, "");
    r = match(t, "GET", "/fib/", &m);
    assert_string_equal(m.rest, "");
    r = match(t, "GET", "/fib/1/2", &m);
    assert_string_equal(r->name, "fib");
    assert_string_equal(m.rest, "1/2");
    /* an exact match of another fib route beats the prefix */
    r = match(t, "GET", "/fib/special/7", &m);
    assert_string_equal(r->name, "fib2");
    assert_string_equal(m.rest, "7");
    r = match(t, "GET", "/fib/special/7/8", &m);
    assert_string_equal(r->name, "fib2");
    assert_string_equal(m.rest, "7/8");
    assert_int_equal(
        gw_routes_match(t, "POST", "/fib/1", &m, allow, sizeof(allow)),
        GW_E_METHOD_NOT_ALLOWED);
    assert_string_equal(allow, "GET, HEAD");
    gw_routes_free(t);
}

static void test_many_segments(void **state) {
    gw_routes_t *t = parse_ok(table);
    gw_route_match_t m;
    char path[512], allow[64];
    int i, off = 0;

    for (i = 0; i < 60; i++)
        off += snprintf(path + off, sizeof(path) - (size_t)off, "/a");
    assert_int_equal(gw_routes_match(t, "GET", path, &m, allow, sizeof(allow)),
                     GW_E_NOT_FOUND);
    off = snprintf(path, sizeof(path), "/fib");
    for (i = 0; i < 60; i++)
        off += snprintf(path + off, sizeof(path) - (size_t)off, "/1");
    assert_int_equal(gw_routes_match(t, "GET", path, &m, allow, sizeof(allow)),
                     GW_E_OK);
    assert_string_equal(m.route->name, "fib");
    gw_routes_free(t);
}

static void test_routing_key(void **state) {
    gw_routes_t *t = parse_ok(table);
    gw_route_match_t m;
    char key[GW_AMQP_SHORTSTR_MAX + 1], detail[256], path[600];

    assert_non_null(match(t, "POST", "/v1/images/x/resize/200", &m));
    assert_null(gw_route_fixed_key(m.route)); /* made per match */
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_OK);
    assert_string_equal(key, "resize.200");
    /* a '.', '*' or '#' would reach other bindings of a topic exchange */
    assert_non_null(match(t, "POST", "/v1/images/x/resize/2.secret", &m));
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_INVALID_PARAM);
    assert_non_null(strstr(detail, "'size'"));
    assert_non_null(match(t, "POST", "/v1/images/x/resize/#", &m));
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_INVALID_PARAM);
    /* but a parameter that is not in the key may hold them */
    assert_non_null(match(t, "POST", "/v1/images/a.b#c/resize/1", &m));
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_OK);
    /* too long */
    memset(path, 0, sizeof(path));
    strcpy(path, "/v1/images/x/resize/");
    memset(path + strlen(path), 'z', 300);
    assert_non_null(match(t, "POST", path, &m));
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_INVALID_PARAM);
    assert_non_null(strstr(detail, "longer than 255"));
    /* a queue route's key is its queue */
    assert_non_null(match(t, "GET", "/v1/images/1", &m));
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_OK);
    assert_string_equal(key, "img");
    assert_string_equal(gw_route_fixed_key(m.route), "img");
    gw_routes_free(t);
}

/* A queue's name is used as it is, braces and all (it crashed the gateway:
 * the name was read as a template with a {param} no path has). */
static void test_queue_key_is_verbatim(void **state) {
    static const char *const queues[] = {"jobs{v1", "jobs{n}", "a}b{", "{}"};
    char key[GW_AMQP_SHORTSTR_MAX + 1], detail[256], json[512];
    gw_route_match_t m;
    gw_routes_t *t;
    size_t k;

    for (k = 0; k < sizeof(queues) / sizeof(queues[0]); k++) {
        t = gw_routes_default(queues[k]);
        assert_non_null(t);
        assert_non_null(match(t, "GET", "/fib/10", &m));
        assert_int_equal(
            gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
            GW_E_OK);
        assert_string_equal(key, queues[k]);
        assert_string_equal(gw_route_fixed_key(m.route), queues[k]);
        gw_routes_free(t);

        snprintf(json, sizeof(json),
                 "{\"routes\": [{\"name\": \"r\", \"method\": \"POST\", "
                 "\"path\": \"/r/{n}\", \"queue\": \"%s\"}]}",
                 queues[k]);
        t = parse_ok(json);
        assert_non_null(match(t, "POST", "/r/10", &m));
        assert_int_equal(
            gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
            GW_E_OK);
        assert_string_equal(key, queues[k]);
        gw_routes_free(t);
    }
}

/* An exchange route's key without {param}s is the route's own, used as it
 * is by every call (nothing is made per match). */
static void test_fixed_exchange_key(void **state) {
    gw_routes_t *t =
        parse_ok("{\"routes\": [{\"name\": \"r\", \"method\": \"POST\", "
                 "\"path\": \"/r/{n}\", \"exchange\": \"x\", "
                 "\"routing_key\": \"jobs.all\"}]}");
    char key[GW_AMQP_SHORTSTR_MAX + 1], detail[256];
    gw_route_match_t m;

    (void)state;
    assert_non_null(match(t, "POST", "/r/1", &m));
    assert_ptr_equal(gw_route_fixed_key(m.route), m.route->routing_key);
    assert_int_equal(
        gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail)),
        GW_E_OK);
    assert_string_equal(key, "jobs.all");
    gw_routes_free(t);
}

static void test_accepts(void **state) {
    gw_routes_t *t = parse_ok(example);
    const gw_route_t *upper = gw_routes_at(t, 1), *audit = gw_routes_at(t, 3);

    assert_true(gw_route_accepts(upper, "text/plain"));
    assert_true(gw_route_accepts(upper, "Text/Plain; charset=utf-8"));
    assert_true(gw_route_accepts(upper, " application/octet-stream"));
    assert_false(gw_route_accepts(upper, "text/plainx"));
    assert_false(gw_route_accepts(upper, "text/html"));
    assert_false(gw_route_accepts(upper, NULL));
    assert_true(gw_route_accepts(audit, NULL)); /* any */
    assert_true(gw_route_accepts(audit, "whatever/thing"));
    gw_routes_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_every_error_reported),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_match_fib_prefix),
        cmocka_unit_test(test_many_segments),
        cmocka_unit_test(test_routing_key),
        cmocka_unit_test(test_queue_key_is_verbatim),
        cmocka_unit_test(test_fixed_exchange_key),
        cmocka_unit_test(test_accepts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
