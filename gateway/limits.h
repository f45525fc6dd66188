/* limits.h - how large a request head may be, and the checks.
 *
 * libmicrohttpd keeps everything of one request in one fixed block per
 * connection (GW_CONN_MEMORY): the request line and headers as read, a
 * 64-byte record for every header field, cookie and query parameter, and
 * then the answer's status line and headers.  When a head fills the block,
 * libmicrohttpd 0.9.75 answers it with its own HTML page, twice, or not at
 * all (README "Request limits").  These limits keep every head it accepts
 * small enough that the answer still fits; heads over them are answered
 * 414 or 431 by us.  Pure (no I/O); any thread. */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include <stddef.h>

#include "problem.h"

/* The per-connection block (MHD_OPTION_CONNECTION_MEMORY_LIMIT).  It is
 * also what an idle kept-alive connection holds: libmicrohttpd clears it
 * (touching every page) after each request. */
#define GW_CONN_MEMORY 8192
/* The request target (path and query), in bytes as sent. */
#define GW_MAX_TARGET 2048
/* Query parameters, counted as '&'-separated pieces. */
#define GW_MAX_PARAMS 16
/* The head: request line, header lines and the empty line, as sent. */
#define GW_MAX_HEAD 4096
/* Header fields, each cookie counted as one more. */
#define GW_MAX_FIELDS 32
/* libmicrohttpd 0.9.75's record per field, parameter or cookie (56 bytes
 * rounded up to 16 on 64-bit). */
#define GW_FIELD_COST 64
/* A raw route's reply may add to the answer's head: its Content-Type
 * and the headers the route returns, "Name: value\r\n" each, at most
 * this many bytes in all (more is 502 bad_reply). */
#define GW_REPLY_HEAD_MAX 256
/* Left for the answer's status line and headers: ours are at most ~330
 * bytes and a CORS origin (255), then GW_REPLY_HEAD_MAX.  libmicrohttpd
 * first reads into half the block, so at least that much may hold the
 * head and whatever the client sent after it. */
#define GW_ANSWER_ROOM 896

_Static_assert(GW_MAX_TARGET < GW_MAX_HEAD, "the line is part of the head");
_Static_assert((GW_MAX_HEAD > GW_CONN_MEMORY / 2 ? GW_MAX_HEAD
                                                 : GW_CONN_MEMORY / 2) +
                       128 + /* one step of libmicrohttpd's read buffer */
                       GW_FIELD_COST * (GW_MAX_PARAMS + GW_MAX_FIELDS) +
                       GW_ANSWER_ROOM <=
                   GW_CONN_MEMORY,
               "a head within the limits leaves room for its answer");
_Static_assert(330 + 255 + GW_REPLY_HEAD_MAX <= GW_ANSWER_ROOM,
               "an answer's head fits the room left for it");

/* gw_limits_target: checks a request target as sent (NUL-terminated, not
 * decoded).  Returns GW_E_OK or GW_E_URI_TOO_LONG with a reason in detail
 * (detail_size bytes). */
gw_err_t gw_limits_target(const char *target, char *detail, size_t detail_size);

/* gw_limits_head: checks a complete head of head_bytes bytes with fields
 * header fields and cookies.  Returns GW_E_OK or GW_E_HEADERS_TOO_LARGE
 * with a reason in detail. */
gw_err_t gw_limits_head(size_t head_bytes, unsigned fields, char *detail,
                        size_t detail_size);

#endif
