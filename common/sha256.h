/* sha256.h - SHA-256 (FIPS 180-4), for the gateway's bearer-token hashes.
 * Small and pure: no allocation, no I/O; any thread, one context per
 * thread at a time. */
#ifndef CM_SHA256_H
#define CM_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define CM_SHA256_LEN     32 /* digest bytes */
#define CM_SHA256_HEX_LEN 64 /* digest as lowercase hex, without the NUL */

typedef struct {
    uint32_t h[8];     /* the hash state */
    uint64_t bytes;    /* message length so far */
    uint8_t block[64]; /* the partial block */
    size_t used;       /* bytes of it filled */
} cm_sha256_t;

void cm_sha256_init(cm_sha256_t *s);
/* Adds len bytes (any split gives the same digest). */
void cm_sha256_update(cm_sha256_t *s, const void *data, size_t len);
/* Writes the digest; s must be initialised again before reuse. */
void cm_sha256_final(cm_sha256_t *s, uint8_t out[CM_SHA256_LEN]);

/* The digest of one buffer. */
void cm_sha256(const void *data, size_t len, uint8_t out[CM_SHA256_LEN]);

/* The digest as lowercase hex, NUL-terminated. */
void cm_sha256_hex(const uint8_t digest[CM_SHA256_LEN],
                   char out[CM_SHA256_HEX_LEN + 1]);

#endif
