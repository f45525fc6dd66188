/* auth.c - the bearer-token set, the Authorization header's verdict, the
 * exempt paths.  Pure except gw_auth_load; any thread. */
#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "options.h"
#include "sha256.h"

struct gw_auth {
    size_t n;
    uint8_t (*hash)[CM_SHA256_LEN];
};

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* One line, comment and surrounding blanks removed: 0 with the hash in
 * out, 1 when there is nothing on it, -1 with why. */
static int parse_line(const char *p, size_t len, uint8_t out[CM_SHA256_LEN],
                      char *why, size_t why_size) {
    const char *hash = memchr(p, '#', len);
    size_t i;

    if (hash != NULL)
        len = (size_t)(hash - p);
    while (len > 0 && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len > 0 &&
           (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
        len--;
    if (len == 0)
        return 1;
    for (i = 0; i < len; i++) {
        if (hexval(p[i]) >= 0)
            continue;
        if (p[i] >= 'A' && p[i] <= 'F')
            snprintf(why, why_size,
                     "uppercase hex digit '%c': write the hash in lowercase "
                     "(as sha256sum prints it)",
                     p[i]);
        else if (p[i] == ' ' || p[i] == '\t')
            snprintf(why, why_size,
                     "more than one word: one hash per line (a comment "
                     "starts with '#')");
        else
            snprintf(why, why_size,
                     "character 0x%02x is not a hex digit: each line holds "
                     "the SHA-256 of a token, as 64 lowercase hex digits",
                     (unsigned char)p[i]);
        return -1;
    }
    if (len != 2 * CM_SHA256_LEN) {
        snprintf(why, why_size,
                 "%zu hex digits, not 64: each line holds the SHA-256 of a "
                 "token, not the token",
                 len);
        return -1;
    }
    for (i = 0; i < CM_SHA256_LEN; i++)
        out[i] = (uint8_t)(hexval(p[2 * i]) << 4 | hexval(p[2 * i + 1]));
    return 0;
}

gw_auth_t *gw_auth_parse(const char *text, size_t len, char *why,
                         size_t why_size) {
    const char *p = text, *end = text + len;
    gw_auth_t *set = calloc(1, sizeof(*set));
    size_t cap = 0, line = 0;
    char reason[160];

    if (set == NULL)
        goto oom;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        uint8_t h[CM_SHA256_LEN];
        int rc;

        line++;
        if (memchr(p, '\0', n) != NULL) {
            snprintf(why, why_size, "line %zu: a NUL byte", line);
            goto fail;
        }
        rc = parse_line(p, n, h, reason, sizeof(reason));
        if (rc < 0) {
            snprintf(why, why_size, "line %zu: %s", line, reason);
            goto fail;
        }
        if (rc == 0) {
            if (set->n == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                void *grown = realloc(set->hash, ncap * sizeof(*set->hash));

                if (grown == NULL)
                    goto oom;
                set->hash = grown;
                cap = ncap;
            }
            memcpy(set->hash[set->n++], h, CM_SHA256_LEN);
        }
        p += n + (nl != NULL);
    }
    if (set->n == 0) {
        snprintf(why, why_size,
                 "no token hash in it (only blank lines and comments)");
        goto fail;
    }
    return set;
oom:
    snprintf(why, why_size, "out of memory");
fail:
    gw_auth_free(set);
    return NULL;
}

gw_auth_t *gw_auth_load(const char *path, char *why, size_t why_size) {
    size_t len = 0;
    char *text = cm_read_file(path, GW_AUTH_FILE_MAX, &len);
    gw_auth_t *set;

    if (text == NULL) {
        snprintf(why, why_size, "cannot read it: %s",
                 errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        return NULL;
    }
    set = gw_auth_parse(text, len, why, why_size);
    free(text);
    return set;
}

size_t gw_auth_count(const gw_auth_t *set) {
    return set != NULL ? set->n : 0;
}

void gw_auth_free(gw_auth_t *set) {
    if (set == NULL)
        return;
    free(set->hash);
    free(set);
}

static int token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || (c != '\0' && strchr("-._~+/", c));
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
 * "/" ) *"=".  Returns its length, or 0 when s (up to its NUL) is not one.
 */
static size_t b64token(const char *s) {
    size_t n = 0;

    while (token_char(s[n]))
        n++;
    if (n == 0)
        return 0;
    while (s[n] == '=')
        n++;
    return s[n] == '\0' ? n : 0;
}

gw_auth_verdict_t gw_auth_check(const gw_auth_t *set, const char *header,
                                unsigned count) {
    uint8_t h[CM_SHA256_LEN];
    unsigned found = 0;
    size_t i, j, len;

    if (count == 0 || header == NULL)
        return GW_AUTH_MISSING;
    if (count > 1 || strncasecmp(header, "Bearer ", 7) != 0)
        return GW_AUTH_MALFORMED;
    header += 7;
    while (*header == ' ')
        header++;
    len = b64token(header);
    if (len == 0 || len > GW_AUTH_TOKEN_MAX)
        return GW_AUTH_MALFORMED;
    if (set == NULL)
        return GW_AUTH_REJECTED;
    cm_sha256(header, len, h);
    /* Every byte of every hash, and no branch on what they hold. */
    for (i = 0; i < set->n; i++) {
        unsigned diff = 0;

        for (j = 0; j < CM_SHA256_LEN; j++)
            diff |= (unsigned)(set->hash[i][j] ^ h[j]);
        found |= ((diff - 1) >> 8) & 1; /* 1 exactly when diff is 0 */
    }
    return found ? GW_AUTH_OK : GW_AUTH_REJECTED;
}

/* The next item of a comma-separated list: *item and *len, spaces around
 * it skipped; returns where the rest begins, or NULL at the end. */
static const char *next_item(const char *s, const char **item, size_t *len) {
    const char *end;

    if (s == NULL || *s == '\0')
        return NULL;
    while (*s == ' ')
        s++;
    end = strchr(s, ',');
    if (end == NULL)
        end = s + strlen(s);
    *item = s;
    *len = (size_t)(end - s);
    while (*len > 0 && s[*len - 1] == ' ')
        (*len)--;
    return *end == ',' ? end + 1 : end;
}

int gw_auth_exempt(const char *list, const char *path) {
    const char *item;
    size_t len, plen = strlen(path);

    if (strcmp(list, "none") == 0)
        return 0;
    while ((list = next_item(list, &item, &len)) != NULL)
        if (len == plen && memcmp(item, path, len) == 0)
            return 1;
    return 0;
}

int gw_auth_exempt_valid(const char *list, char *why, size_t why_size) {
    const char *item;
    size_t len;

    if (strcmp(list, "none") == 0)
        return 0;
    while ((list = next_item(list, &item, &len)) != NULL) {
        if (len == 0 || item[0] != '/' || memchr(item, ' ', len) != NULL) {
            snprintf(why, why_size,
                     "'%.*s' is not a path: list paths that start with '/', "
                     "separated by commas, or 'none'",
                     (int)len, item);
            return -1;
        }
    }
    return 0;
}
