/* ids.h - correlation ids and request ids: unpredictable, cheaply.
 *
 * Every id is a random (version 4) UUID: 122 random bits from the kernel's
 * generator, drawn from a buffer that one getrandom() refills for
 * GW_IDGEN_BATCH ids, so an id costs a copy.  No id can be worked out from
 * another: a worker that saw one call's id cannot answer another's.  A
 * generator belongs to one thread; the formatting and parsing functions
 * are pure. */
#ifndef GW_IDS_H
#define GW_IDS_H

#include <stddef.h>
#include <stdint.h>

#define GW_ID_LEN      16 /* bytes */
#define GW_ID_TEXT_LEN 36 /* 8-4-4-4-12 hex digits and dashes */
#define GW_ID_HEX_LEN  32 /* plain hex */
#define GW_IDGEN_BATCH 64 /* ids per getrandom() */

typedef struct {
    uint8_t pool[GW_IDGEN_BATCH * GW_ID_LEN];
    size_t used; /* bytes of pool handed out */
} gw_idgen_t;

/* Fills g with fresh random bytes. */
void gw_idgen_init(gw_idgen_t *g);
/* The next id: 16 fresh random bytes with the version and variant bits of
 * a random UUID, so the text form is a well-formed version 4 UUID. */
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
