/* ids.c - counting ids from a random base; UUID text in and out.  The
 * generator is single-threaded by contract; the rest is pure. */
#include "ids.h"

#include <string.h>
#include <uuid/uuid.h>

static const char hexdigits[] = "0123456789abcdef";

void gw_idgen_init(gw_idgen_t *g) {
    uuid_generate_random(g->base);
    g->next = 0;
}

void gw_idgen_next(gw_idgen_t *g, uint8_t id[GW_ID_LEN]) {
    uint64_t low = 0, n = g->next++;
    int i;

    /* Bytes 8..15 hold the variant bits (top two bits of byte 8): count in
     * the 62 bits below them. */
    for (i = 8; i < 16; i++)
        low = low << 8 | g->base[i];
    low = (low & 0xc000000000000000ull) | ((low + n) & 0x3fffffffffffffffull);
    memcpy(id, g->base, 8);
    for (i = 15; i >= 8; i--) {
        id[i] = (uint8_t)low;
        low >>= 8;
    }
}

void gw_id_text(const uint8_t id[GW_ID_LEN], char out[GW_ID_TEXT_LEN + 1]) {
    int i;
    char *p = out;

    for (i = 0; i < GW_ID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hexdigits[id[i] >> 4];
        *p++ = hexdigits[id[i] & 15];
    }
    *p = '\0';
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
