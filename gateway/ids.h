/* ids.h - correlation ids and request ids, cheaply.
 *
 * Each generator starts from 128 random bits (libuuid) and then counts, so
 * ids are unique for the life of the process and unpredictable across
 * processes, without paying for a random UUID per call.  A generator
 * belongs to one thread; the formatting and parsing functions are pure. */
#ifndef GW_IDS_H
#define GW_IDS_H

#include <stddef.h>
#include <stdint.h>

#define GW_ID_LEN      16 /* bytes */
#define GW_ID_TEXT_LEN 36 /* 8-4-4-4-12 hex digits and dashes */
#define GW_ID_HEX_LEN  32 /* plain hex */

typedef struct {
    uint8_t base[GW_ID_LEN];
    uint64_t next;
} gw_idgen_t;

/* Seeds g with fresh random bits. */
void gw_idgen_init(gw_idgen_t *g);
/* The next id: the base with a counter added to its last 8 bytes.  The
 * version and variant bits of a random UUID are kept, so the text form is
 * a well-formed version 4 UUID. */
void gw_idgen_next(gw_idgen_t *g, uint8_t id[GW_ID_LEN]);

/* Writes id as a lower-case UUID ("xxxxxxxx-xxxx-...") and a NUL. */
void gw_id_text(const uint8_t id[GW_ID_LEN], char out[GW_ID_TEXT_LEN + 1]);
/* Writes id as 32 lower-case hex digits and a NUL. */
void gw_id_hex(const uint8_t id[GW_ID_LEN], char out[GW_ID_HEX_LEN + 1]);
/* The value of one hex digit (either case), or -1. */
int gw_hex_value(char c);
/* Parses exactly len bytes of UUID text (either case).  Returns 0, or -1
 * when s is not a UUID (then id is unspecified). */
int gw_id_parse(const char *s, size_t len, uint8_t id[GW_ID_LEN]);

#endif
