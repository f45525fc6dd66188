/* ids.c - random ids drawn from a buffer refilled in bulk; UUID text in
 * and out.  The generator is single-threaded by contract; the rest is
 * pure. */
#include "ids.h"

#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

static const char hexdigits[] = "0123456789abcdef";

/* Fills the buffer with fresh random bytes: one getrandom() per
 * GW_IDGEN_BATCH ids, so the cost per id is a copy. */
static void refill(gw_idgen_t *g) {
    size_t off = 0;
    ssize_t n;

    while (off < sizeof(g->pool)) {
        n = getrandom(g->pool + off, sizeof(g->pool) - off, 0);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    /* Without the kernel's generator (it does not fail on Linux >= 3.17
     * once seeded), libuuid's own source fills the rest. */
    for (; off + GW_ID_LEN <= sizeof(g->pool); off += GW_ID_LEN)
        uuid_generate_random(g->pool + off);
    g->used = 0;
}

void gw_idgen_init(gw_idgen_t *g) {
    refill(g);
}

void gw_idgen_next(gw_idgen_t *g, uint8_t id[GW_ID_LEN]) {
    if (g->used + GW_ID_LEN > sizeof(g->pool))
        refill(g);
    memcpy(id, g->pool + g->used, GW_ID_LEN);
    /* never hand out the same bytes twice */
    memset(g->pool + g->used, 0, GW_ID_LEN);
    g->used += GW_ID_LEN;
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

void gw_id_text(const uint8_t id[GW_ID_LEN], char out[GW_ID_TEXT_LEN + 1]) {
    uuid_unparse_lower(id, out);
}

void gw_id_hex(const uint8_t id[GW_ID_LEN], char out[GW_ID_HEX_LEN + 1]) {
    int i;

    for (i = 0; i < GW_ID_LEN; i++) {
        out[2 * i] = hexdigits[id[i] >> 4];
        out[2 * i + 1] = hexdigits[id[i] & 15];
    }
    out[GW_ID_HEX_LEN] = '\0';
}

int gw_hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gw_id_parse(const char *s, size_t len, uint8_t id[GW_ID_LEN]) {
    size_t i, b = 0;

    if (len != GW_ID_TEXT_LEN)
        return -1;
    for (i = 0; i < len; i++) {
        int hi, lo;

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            continue;
        }
        hi = gw_hex_value(s[i]);
        lo = gw_hex_value(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        id[b++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    return 0;
}
