/* auth.h - bearer-token authentication: the token set read from
 * --auth-tokens-file (one lowercase hex SHA-256 of a token per line, '#'
 * starts a comment), the verdict on a request's Authorization header, and
 * the paths that need no token (--auth-exempt).
 *
 * Pure except gw_auth_load, which reads the file.  A set is read-only once
 * made, so any thread may check against it; main builds new ones (at
 * start, on SIGHUP) and the HTTP thread reads them (latest.h hands them
 * over). */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>

/* The token file, at most: a file this large is not a list of hashes. */
#define GW_AUTH_FILE_MAX (1024 * 1024)
/* The longest token a request may present (a token is a secret, not a
 * document: 43 characters of base64 carry 256 bits). */
#define GW_AUTH_TOKEN_MAX 1024

typedef struct gw_auth gw_auth_t;

typedef enum {
    GW_AUTH_OK,        /* a token of the set */
    GW_AUTH_MISSING,   /* no Authorization header */
    GW_AUTH_MALFORMED, /* not "Bearer <token>", or more than one header */
    GW_AUTH_REJECTED,  /* a well-formed token that is not in the set */
} gw_auth_verdict_t;

/* Parses a token file's text (len bytes).  Blank lines and comments are
 * skipped; every other line must be 64 lowercase hex digits, and there
 * must be at least one (an empty file is more likely half-written than
 * meant to lock everybody out).  Returns the set, or NULL with the first
 * problem in why ("line 3: ...", or "out of memory"). */
gw_auth_t *gw_auth_parse(const char *text, size_t len, char *why,
                         size_t why_size);
/* Reads and parses the file at path (at most GW_AUTH_FILE_MAX bytes).
 * Returns the set, or NULL with why ("cannot read: ...", or as
 * gw_auth_parse). */
gw_auth_t *gw_auth_load(const char *path, char *why, size_t why_size);
/* How many hashes the set holds (duplicates counted). */
size_t gw_auth_count(const gw_auth_t *set);
/* NULL is a no-op. */
void gw_auth_free(gw_auth_t *set);

/* The verdict on a request: header is the value of its Authorization
 * header (NULL when absent), count how many such headers it had.  The
 * scheme is case-insensitive ("Bearer"), then one or more spaces, then a
 * token of RFC 6750's characters (A-Z a-z 0-9 - . _ ~ + /, then any '=').
 * The token's SHA-256 is compared with every hash of the set, each byte,
 * whatever matched before, so the time taken tells nothing about how near
 * a guess came.  A NULL set rejects every token. */
gw_auth_verdict_t gw_auth_check(const gw_auth_t *set, const char *header,
                                unsigned count);

/* Is path one of list's?  list is "none", or exact paths separated by
 * commas (spaces around them ignored): "/healthz,/readyz,/metrics". */
int gw_auth_exempt(const char *list, const char *path);
/* 0 when list is "none" or paths that each start with '/' (what
 * gw_auth_exempt expects), else -1 with the reason in why. */
int gw_auth_exempt_valid(const char *list, char *why, size_t why_size);

#endif
