/* test_openapi.c - the served OpenAPI document (gateway/openapi.c): the
 * static file itself for the default table; otherwise the fib path item
 * kept or dropped, and a path item per route path whose JSON values say
 * what each route takes and answers.  (That the whole document lints
 * clean and matches live traffic is tests/contract's job.)
 * Single-threaded cmocka program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "openapi.h"
#include "routes.h"

static const gw_openapi_opts_t opts = {5000, 30000, 100000};

/* A static document shaped like openapi.yaml: the markers and a little
 * around them. */
static const char mini[] =
    "openapi: 3.0.3\n"
    "paths:\n" GW_OPENAPI_MARK_FIB_BEGIN ": the fib route\n"
    "  /fib/{n}:\n"
    "    get:\n"
    "      operationId: getFib\n" GW_OPENAPI_MARK_FIB_END "\n"
    "\n" GW_OPENAPI_MARK_HERE ": generated\n"
    "\n"
    "  /healthz:\n"
    "    get:\n"
    "      operationId: getHealthz\n"
    "components: {}\n";

static gw_routes_t *routes(const char *json) {
    char errors[2048];
    gw_routes_t *t =
        gw_routes_parse(json, strlen(json), errors, sizeof(errors));

    if (t == NULL)
        fail_msg("route file refused:\n%s", errors);
    return t;
}

static char *render(const char *text, const char *json, size_t *len) {
    gw_routes_t *t = routes(json);
    char *doc = gw_openapi_render(text, strlen(text), t, &opts, len);

    gw_routes_free(t);
    assert_non_null(doc);
    assert_int_equal(strlen(doc), *len);
    return doc;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *s;

    assert_non_null(f);
    s = malloc(1 << 21);
    assert_non_null(s);
    *len = fread(s, 1, (1 << 21) - 1, f);
    s[*len] = '\0';
    fclose(f);
    return s;
}

/* The generated path items of doc: {path: {key: JSON value}}, read back
 * from the lines the renderer writes (`  "<path>":`, `    key: <JSON>`,
 * JSON continued on lines indented by 6).  Fails on a value that is not
 * JSON. */
static json_t *items(const char *doc) {
    json_t *all = json_object(), *item = NULL;
    const char *p = strstr(doc, GW_OPENAPI_MARK_HERE);
    char key[64], *value = malloc(1 << 20);
    size_t vlen = 0;

    assert_non_null(p);
    assert_non_null(value);
    key[0] = '\0';
    p = strchr(p, '\n') + 1;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        int cont = len >= 6 && strncmp(p, "      ", 6) == 0;

        if (!cont && key[0] != '\0') { /* the value before is complete */
            json_error_t e;
            json_t *v;

            value[vlen] = '\0';
            v = json_loads(value, JSON_DECODE_ANY, &e);
            if (v == NULL)
                fail_msg("%s: %s: not JSON: %s\n%s", "item", key, e.text,
                         value);
            json_object_set_new(item, key, v);
            key[0] = '\0';
        }
        if (cont) {
            memcpy(value + vlen, p, len);
            vlen += len;
        } else if (len > 4 && strncmp(p, "  \"", 3) == 0) {
            char path[512];

            assert_true(p[len - 1] == ':');
            snprintf(path, sizeof(path), "%.*s", (int)(len - 5), p + 3);
            item = json_object();
            json_object_set_new(all, path, item);
        } else if (len > 4 && strncmp(p, "    ", 4) == 0 && p[4] != ' ') {
            const char *colon = strstr(p, ": ");

            assert_non_null(item);
            snprintf(key, sizeof(key), "%.*s", (int)(colon - p - 4), p + 4);
            vlen = len - (size_t)(colon + 2 - p);
            memcpy(value, colon + 2, vlen);
        } else {
            break; /* past the generated items */
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    free(value);
    return all;
}

static const char *str(json_t *v, const char *path) {
    json_t *x = json_object_get(v, path);

    if (!json_is_string(x))
        fail_msg("no string '%s'", path);
    return json_string_value(x);
}

/* --- the static document ------------------------------------------------- */

static void test_default_table_is_the_static_file(void **state) {
    size_t len, out_len;
    char *text = read_file(OPENAPI_YAML, &len);
    gw_routes_t *t = gw_routes_default("rpc_queue");
    char *doc;

    (void)state;
    assert_non_null(t);
    doc = gw_openapi_render(text, len, t, &opts, &out_len);
    assert_non_null(doc);
    assert_int_equal(out_len, len);
    assert_memory_equal(doc, text, len);
    free(doc);
    gw_routes_free(t);
    /* Another queue, other settings: still the static file. */
    t = gw_routes_default("another_queue");
    doc = gw_openapi_render(text, len, t, &(gw_openapi_opts_t){1, 2, 3},
                            &out_len);
    assert_int_equal(out_len, len);
    assert_memory_equal(doc, text, len);
    free(doc);
    gw_routes_free(t);
    free(text);
}

static void test_markers_missing(void **state) {
    gw_routes_t *t = gw_routes_default("q");
    size_t len;

    (void)state;
    assert_null(
        gw_openapi_render("openapi: 3.0.3\npaths: {}\n", 25, t, &opts, &len));
    /* out of order */
    assert_null(gw_openapi_render(
        GW_OPENAPI_MARK_HERE "\n" GW_OPENAPI_MARK_FIB_BEGIN
                             "\n" GW_OPENAPI_MARK_FIB_END "\n",
        strlen(GW_OPENAPI_MARK_HERE "\n" GW_OPENAPI_MARK_FIB_BEGIN
                                    "\n" GW_OPENAPI_MARK_FIB_END "\n"),
        t, &opts, &len));
    gw_routes_free(t);
}

static void test_fib_kept_and_routes_inserted(void **state) {
    size_t len;
    char *doc = render(
        mini,
        "{\"routes\": [{\"name\": \"f\", \"kind\": \"fib\", \"method\": "
        "\"GET\","
        " \"path\": \"/fib/{n}\", \"queue\": \"q\"}, {\"name\": \"up\", "
        "\"method\": \"POST\", \"path\": \"/v1/upper\", \"queue\": \"uq\"}]}",
        &len);
    const char *here = strstr(doc, GW_OPENAPI_MARK_HERE ": generated\n");
    const char *rest = strstr(mini, "\n  /healthz:");

    (void)state;
    /* Everything of the static text is there, in order; the item goes
     * right after the marker line. */
    assert_non_null(here);
    assert_memory_equal(doc, mini, (size_t)(here - doc));
    here = strchr(here, '\n') + 1;
    assert_memory_equal(here, "  \"/v1/upper\":\n", 15);
    assert_non_null(strstr(doc, "  /fib/{n}:\n    get:\n"));
    assert_string_equal(doc + len - strlen(rest), rest);
    free(doc);
}

static void test_fib_dropped_without_the_fib_route(void **state) {
    size_t len;
    char *doc = render(mini,
                       "{\"routes\": [{\"name\": \"up\", \"method\": \"POST\", "
                       "\"path\": \"/v1/upper\", \"queue\": \"uq\"}]}",
                       &len);

    (void)state;
    assert_null(strstr(doc, "/fib/{n}"));
    assert_null(strstr(doc, "getFib"));
    assert_null(strstr(doc, GW_OPENAPI_MARK_FIB_BEGIN));
    assert_non_null(
        strstr(doc, "openapi: 3.0.3\npaths:\n\n" GW_OPENAPI_MARK_HERE));
    assert_non_null(strstr(doc, "\n  /healthz:\n"));
    free(doc);
}

/* The static item says GET and HEAD only, and names its parameter n: a
 * fib route under another name, or another route on its path, gets a
 * generated item instead. */
static void test_fib_generated_when_the_static_item_does_not_fit(void **state) {
    size_t len;
    char *doc;
    json_t *all, *item;

    (void)state;
    doc =
        render(mini,
               "{\"routes\": [{\"name\": \"f\", \"kind\": \"fib\", \"method\": "
               "\"GET\", \"path\": \"/fib/{k}\", \"queue\": \"q\"}]}",
               &len);
    all = items(doc);
    assert_null(strstr(doc, "getFib"));
    item = json_object_get(all, "/fib/{k}");
    assert_non_null(item);
    assert_string_equal(str(json_object_get(item, "get"), "operationId"), "f");
    json_decref(all);
    free(doc);

    doc =
        render(mini,
               "{\"routes\": [{\"name\": \"f\", \"kind\": \"fib\", \"method\": "
               "\"GET\", \"path\": \"/fib/{n}\", \"queue\": \"q\"}, {\"name\": "
               "\"p\", \"method\": \"POST\", \"path\": \"/fib/{n}\", "
               "\"queue\": \"q2\"}]}",
               &len);
    all = items(doc);
    assert_null(strstr(doc, "getFib"));
    item = json_object_get(all, "/fib/{n}");
    assert_non_null(item);
    assert_string_equal(str(json_object_get(item, "get"), "x-route"), "f");
    assert_string_equal(str(json_object_get(item, "head"), "operationId"),
                        "f~head");
    assert_string_equal(str(json_object_get(item, "post"), "x-route"), "p");
    assert_string_equal(str(json_object_get(item, "put"), "summary"),
                        "Not allowed");
    json_decref(all);
    free(doc);
}

/* --- generated path items ------------------------------------------------ */

static const char table[] =
    "{\"routes\": ["
    "{\"name\": \"f\", \"kind\": \"fib\", \"method\": \"GET\", \"path\": "
    "\"/fib/{n}\", \"queue\": \"q\"},"
    "{\"name\": \"upper\", \"method\": \"POST\", \"path\": \"/v1/upper\", "
    "\"queue\": \"uq\", \"timeout_ms\": 3000, \"max_body_bytes\": 1000, "
    "\"content_types\": [\"text/plain\", \"application/octet-stream\"], "
    "\"forward_headers\": [\"accept-language\"], \"return_headers\": "
    "[\"x-cache\"]},"
    "{\"name\": \"echo_get\", \"method\": \"GET\", \"path\": "
    "\"/v1/echo/{id}\", "
    "\"queue\": \"eq\"},"
    "{\"name\": \"echo\", \"method\": \"POST\", \"path\": "
    "\"/v1/echo/{other}\", "
    "\"queue\": \"eq\"},"
    "{\"name\": \"resize\", \"method\": \"PUT\", \"path\": "
    "\"/v1/images/{id}/resize/{size}\", \"exchange\": \"images\", "
    "\"routing_key\": \"resize.{size}\"},"
    "{\"name\": \"audit\", \"method\": \"POST\", \"path\": \"/v1/audit\", "
    "\"queue\": \"aq\", \"mode\": \"publish\"},"
    "{\"name\": \"getHealthz\", \"method\": \"DELETE\", \"path\": \"/v1/h\", "
    "\"queue\": \"hq\"}"
    "]}";

static json_t *op(json_t *all, const char *path, const char *method) {
    json_t *o = json_object_get(json_object_get(all, path), method);

    if (o == NULL)
        fail_msg("no %s %s", method, path);
    return o;
}

static json_t *response(json_t *o, const char *status) {
    return json_object_get(json_object_get(o, "responses"), status);
}

static const char *ref_of(json_t *v) {
    return json_string_value(json_object_get(v, "$ref"));
}

static void test_path_items(void **state) {
    size_t len;
    char *doc = render(mini, table, &len);
    json_t *all = items(doc), *o, *p, *r;

    (void)state;
    /* one item per template shape, in table order; fib keeps the static */
    assert_int_equal(json_object_size(all), 5);
    assert_non_null(strstr(doc, "  /fib/{n}:\n"));
    assert_null(json_object_get(all, "/fib/{n}"));
    assert_null(json_object_get(all, "/v1/echo/{other}"));

    /* a raw rpc route with a body */
    o = op(all, "/v1/upper", "post");
    assert_string_equal(str(o, "operationId"), "upper");
    assert_string_equal(str(o, "x-route"), "upper");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(o, "tags"), 0)),
        "routes");
    assert_non_null(strstr(str(o, "description"), "3000 ms"));
    r = json_object_get(json_object_get(o, "requestBody"), "content");
    assert_int_equal(json_object_size(r), 2);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(r, "text/plain"), "schema"),
            "maxLength")),
        1000);
    p = json_array_get(json_object_get(o, "parameters"), 0);
    assert_string_equal(str(p, "name"), "accept-language");
    assert_string_equal(str(p, "in"), "header");
    assert_non_null(json_object_get(
        json_object_get(response(o, "200"), "headers"), "x-cache"));
    assert_non_null(response(o, "default"));
    assert_string_equal(ref_of(response(o, "413")),
                        "#/components/responses/PayloadTooLarge");
    assert_string_equal(ref_of(response(o, "415")),
                        "#/components/responses/UnsupportedMediaType");
    assert_null(response(o, "405"));
    /* the methods it does not serve: 405 (and the 401 that comes before
     * the path is looked at), Allow exactly POST */
    o = op(all, "/v1/upper", "get");
    assert_string_equal(str(o, "operationId"), "upper~get");
    assert_null(json_object_get(o, "x-route"));
    assert_int_equal(json_object_size(json_object_get(o, "responses")), 2);
    assert_string_equal(ref_of(response(o, "401")),
                        "#/components/responses/Unauthorized");
    r = json_object_get(
        json_object_get(json_object_get(response(o, "405"), "headers"),
                        "Allow"),
        "schema");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r, "enum"), 0)),
        "POST");
    assert_int_equal(json_object_size(json_object_get(all, "/v1/upper")),
                     2 + 7); /* x-routes, parameters, six methods, OPTIONS */
    /* OPTIONS: a CORS preflight's 204, else 401 or 405 */
    o = op(all, "/v1/upper", "options");
    assert_string_equal(ref_of(response(o, "204")),
                        "#/components/responses/Preflight");
    assert_non_null(response(o, "405"));
    assert_non_null(response(o, "401"));

    /* two routes on one shape: one item, the first route's names */
    r = json_object_get(all, "/v1/echo/{id}");
    assert_int_equal(json_array_size(json_object_get(r, "x-routes")), 2);
    o = op(all, "/v1/echo/{id}", "get");
    assert_string_equal(str(o, "x-route"), "echo_get");
    assert_null(json_object_get(o, "requestBody")); /* GET takes none */
    assert_null(response(o, "413"));
    assert_string_equal(str(op(all, "/v1/echo/{id}", "head"), "operationId"),
                        "echo_get~head");
    o = op(all, "/v1/echo/{id}", "post");
    assert_string_equal(str(o, "x-route"), "echo");
    p = json_array_get(json_object_get(o, "parameters"), 0);
    assert_string_equal(str(p, "name"), "id"); /* the item's name */
    assert_non_null(strstr(str(p, "description"), "`x-param-other`"));
    assert_null(json_object_get(json_object_get(p, "schema"), "pattern"));
    assert_null(response(o, "415")); /* takes any type */
    r = json_object_get(json_object_get(o, "requestBody"), "content");
    assert_non_null(json_object_get(r, "*/*"));
    r = json_object_get(
        json_object_get(
            json_object_get(response(op(all, "/v1/echo/{id}", "put"), "405"),
                            "headers"),
            "Allow"),
        "schema");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r, "enum"), 0)),
        "GET, HEAD, POST");

    /* a parameter that goes into a routing key is limited */
    o = op(all, "/v1/images/{id}/resize/{size}", "put");
    p = json_object_get(o, "parameters");
    assert_null(json_object_get(json_object_get(json_array_get(p, 0), "schema"),
                                "pattern"));
    assert_string_equal(
        str(json_object_get(json_array_get(p, 1), "schema"), "pattern"),
        "^[A-Za-z0-9_~-]+$");
    assert_non_null(strstr(str(o, "description"), "`images`"));
    r = json_object_get(json_object_get(all, "/v1/images/{id}/resize/{size}"),
                        "parameters");
    assert_string_equal(str(json_array_get(r, 0), "name"), "id");
    assert_string_equal(str(json_array_get(r, 1), "name"), "size");
    assert_string_equal(ref_of(json_array_get(r, 2)),
                        "#/components/parameters/TimeoutMs");

    /* publish: 202, no default (no worker answers) */
    o = op(all, "/v1/audit", "post");
    assert_string_equal(ref_of(response(o, "202")),
                        "#/components/responses/Accepted");
    assert_null(response(o, "200"));
    assert_null(response(o, "default"));
    assert_string_equal(ref_of(response(o, "503")),
                        "#/components/responses/Unavailable");

    /* a name the static document uses already as an operationId */
    assert_string_equal(str(op(all, "/v1/h", "delete"), "operationId"),
                        "getHealthz~route");
    assert_string_equal(str(op(all, "/v1/h", "get"), "operationId"),
                        "getHealthz~route~get");
    json_decref(all);
    free(doc);
}

/* A path another item's template also matches may answer more methods
 * than its own routes': its Allow is then not pinned to one value. */
static void test_allow_of_overlapping_paths(void **state) {
    size_t len;
    char *doc = render(mini,
                       "{\"routes\": [{\"name\": \"a\", \"method\": \"POST\", "
                       "\"path\": \"/a/{x}\", \"queue\": \"q\"}, {\"name\": "
                       "\"b\", \"method\": \"PUT\", \"path\": \"/{y}/b\", "
                       "\"queue\": \"q\"}, {\"name\": \"c\", \"method\": "
                       "\"POST\", \"path\": \"/c/d\", \"queue\": \"q\"}]}",
                       &len);
    json_t *all = items(doc), *allow;

    (void)state;
    allow = json_object_get(
        json_object_get(
            json_object_get(response(op(all, "/a/{x}", "get"), "405"),
                            "headers"),
            "Allow"),
        "schema");
    assert_non_null(allow);
    assert_null(json_object_get(allow, "enum"));
    allow = json_object_get(
        json_object_get(
            json_object_get(response(op(all, "/c/d", "get"), "405"), "headers"),
            "Allow"),
        "schema");
    assert_non_null(json_object_get(allow, "enum"));
    json_decref(all);
    free(doc);
}

/* Every byte of a route file string ends up escaped where YAML needs it:
 * JSON leaves DEL raw, YAML does not take it. */
static void test_strings_are_escaped(void **state) {
    size_t len, i;
    char *doc = render(mini,
                       "{\"routes\": [{\"name\": \"a\", \"method\": \"POST\", "
                       "\"path\": \"/a\", \"queue\": \"q\\u007f\\\"\\n\\u0085"
                       "\\u00e9\"}]}",
                       &len);
    json_t *all = items(doc);

    (void)state;
    for (i = 0; i < len; i++)
        if ((unsigned char)doc[i] >= 0x7f ||
            ((unsigned char)doc[i] < 0x20 && doc[i] != '\n'))
            fail_msg("byte 0x%02x at %zu", (unsigned char)doc[i], i);
    assert_non_null(strstr(str(op(all, "/a", "post"), "description"),
                           "`q\x7f\"\n\xc2\x85\xc3\xa9`"));
    json_decref(all);
    free(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_table_is_the_static_file),
        cmocka_unit_test(test_markers_missing),
        cmocka_unit_test(test_fib_kept_and_routes_inserted),
        cmocka_unit_test(test_fib_dropped_without_the_fib_route),
        cmocka_unit_test(test_fib_generated_when_the_static_item_does_not_fit),
        cmocka_unit_test(test_path_items),
        cmocka_unit_test(test_allow_of_overlapping_paths),
        cmocka_unit_test(test_strings_are_escaped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
