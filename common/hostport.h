/* hostport.h - "HOST:PORT" and "[IPv6]:PORT" listen addresses, parsed the
 * same way by every program.  Pure: any thread. */
#ifndef CM_HOSTPORT_H
#define CM_HOSTPORT_H

#include <stddef.h>
#include <stdint.h>

/* Splits s into host (NUL-terminated, brackets of an IPv6 address removed)
 * and port, which must be decimal digits from min_port to 65535.  Returns
 * 0, or -1 when s is not of that form or the host does not fit in
 * host_size (host and port are unchanged then). */
int cm_parse_hostport(const char *s, char *host, size_t host_size,
                      uint16_t *port, unsigned min_port);

struct sockaddr;

/* Does sa (AF_INET or AF_INET6) only reach this machine: 127.0.0.0/8,
 * ::1, or ::ffff:127.0.0.0/104?  Wildcards (0.0.0.0, ::) are not. */
int cm_addr_is_loopback(const struct sockaddr *sa);

#endif
