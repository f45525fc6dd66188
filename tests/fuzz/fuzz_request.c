/* fuzz_request.c - libFuzzer target for the gateway's request parsing:
 * unescape, the route table's match, /fib/<n>, routing keys made from
 * path parameters, and ?timeout_ms=.  Input: "path\0query". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_controls(const char *s) {
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += (unsigned char)*s < 0x20 || *s == 0x7f;
    return n;
}

static const char table_json[] =
    "{\"routes\": ["
    "{\"name\":\"fib\",\"kind\":\"fib\",\"method\":\"GET\","
    "\"path\":\"/fib/{n}\",\"queue\":\"rpc_queue\"},"
    "{\"name\":\"img\",\"method\":\"GET\","
    "\"path\":\"/v1/images/{id}/resize/{size}\",\"exchange\":\"images\","
    "\"routing_key\":\"resize.{size}.{id}\"},"
    "{\"name\":\"latest\",\"method\":\"GET\","
    "\"path\":\"/v1/images/latest/resize/{size}\",\"queue\":\"q\"},"
    "{\"name\":\"any\",\"method\":\"GET\",\"path\":\"/{a}/{b}\","
    "\"queue\":\"q\"}"
    "]}";

/* A routing key made from parameters holds only the template's own dots
 * and the parameters' [A-Za-z0-9_~-]. */
static void check_key(const char *key) {
    size_t dots = 0;

    for (; *key != '\0'; key++) {
        if (*key == '.')
            dots++;
        else if (*key == '*' || *key == '#')
            abort();
    }
    if (dots > 2)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static gw_routes_t *table;
    char *buf = malloc(size + 1), *query, detail[128], allow[64];
    char key[GW_AMQP_SHORTSTR_MAX + 1];
    gw_route_match_t m;
    unsigned timeout;
    uint32_t n;
    size_t len, controls;
    gw_err_t err;

    if (table == NULL) {
        table = gw_routes_parse(table_json, strlen(table_json), detail,
                                sizeof(detail));
        if (table == NULL)
            abort();
    }
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    query = buf + strlen(buf) + (strlen(buf) < size ? 1 : 0);

    controls = count_controls(buf);
    len = gw_unescape(buf);
    if (len != strlen(buf))
        abort(); /* a decoded path must never hide bytes behind a NUL */
    if (count_controls(buf) != controls)
        abort(); /* decoding never makes control bytes (CR, LF, ...) */
    err = gw_routes_match(table, "GET", buf, &m, allow, sizeof(allow));
    if (err != GW_E_OK && err != GW_E_NOT_FOUND)
        abort(); /* every route takes GET */
    if (err == GW_E_OK && m.route->kind == GW_KIND_FIB) {
        err = gw_request_parse_n(m.rest, 100000, &n, detail, sizeof(detail));
        if (err == GW_E_OK && n > 100000)
            abort();
        if (err != GW_E_OK && err != GW_E_INVALID_N &&
            err != GW_E_N_OUT_OF_RANGE)
            abort();
    } else if (err == GW_E_OK) {
        err =
            gw_route_routing_key(&m, key, sizeof(key), detail, sizeof(detail));
        if (err == GW_E_OK)
            check_key(key);
        else if (err != GW_E_INVALID_PARAM)
            abort();
    }
    gw_unescape(query);
    err = gw_request_parse_timeout(query, 5000, 30000, &timeout);
    if (err == GW_E_OK && (timeout == 0 || timeout > 30000))
        abort();
    free(buf);
    return 0;
}
