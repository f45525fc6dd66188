/* msghdr.h - an AMQP message header made from HTTP (a route's method,
 * path, query, parameters and forwarded headers): a name and a string
 * value.  Plain data, shared by the HTTP side, which makes them, and the
 * publisher, which encodes them. */
#ifndef GW_MSGHDR_H
#define GW_MSGHDR_H

#include <stddef.h>

typedef struct {
    const char *name;  /* NUL-terminated */
    const char *value; /* not NUL-terminated */
    size_t len;
} gw_msg_header_t;

#endif
