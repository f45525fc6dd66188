/* cors.h - calls from browser pages on other origins (CORS): the exact
 * origins --cors-origins lists, and what a preflight and an answer tell
 * the browser.  Pure; a parsed list is read-only (any thread). */
#ifndef GW_CORS_H
#define GW_CORS_H

#include <stddef.h>

#define GW_CORS_MAX        16  /* origins in the list */
#define GW_CORS_ORIGIN_MAX 256 /* one origin's length, NUL included */

/* The request headers a caller may send (a preflight's
 * Access-Control-Allow-Headers). */
#define GW_CORS_ALLOW_HEADERS                                                  \
    "Authorization, Content-Type, X-Request-Id, traceparent"
/* The response headers a page may read beyond the CORS-safelisted ones
 * (Access-Control-Expose-Headers). */
#define GW_CORS_EXPOSE_HEADERS "X-Request-Id, Retry-After"
/* Room for the names a route table adds to either list (the forward and
 * return headers of its routes): they take the place of a raw reply's
 * headers in the answer's head (limits.h, GW_REPLY_HEAD_MAX). */
#define GW_CORS_EXTRA_MAX 256
/* How long a browser may reuse a preflight's answer, in seconds (Chromium
 * caps it at 7200). */
#define GW_CORS_MAX_AGE "600"

typedef struct {
    unsigned n; /* 0: CORS off */
    char origin[GW_CORS_MAX][GW_CORS_ORIGIN_MAX];
} gw_cors_t;

/* Parses list: origins separated by commas (spaces around them ignored),
 * each as a browser sends it in Origin: scheme://host[:port], lowercase,
 * no path, no default port.  Returns 0, or -1 with why (out unchanged). */
int gw_cors_parse(const char *list, gw_cors_t *out, char *why, size_t why_size);
/* origin (a request's Origin header, may be NULL) when it is listed,
 * exactly; else NULL. */
const char *gw_cors_match(const gw_cors_t *cors, const char *origin);

/* Appends name to list, a ", "-separated list in a buffer of size bytes,
 * unless it is there already (in any case).  Returns 0, or -1 when it
 * would not fit (list unchanged). */
int gw_cors_list_add(char *list, size_t size, const char *name);

#endif
