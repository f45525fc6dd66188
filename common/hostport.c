/* hostport.c - HOST:PORT parsing for the listen flags. */
#include "hostport.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int cm_parse_hostport(const char *s, char *host, size_t host_size,
                      uint16_t *port, unsigned min_port) {
    const char *colon = strrchr(s, ':'), *p, *h = s;
    unsigned long v = 0;
    size_t hlen;

    if (colon == NULL || colon[1] == '\0')
        return -1;
    for (p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    if (v < min_port)
        return -1;
    hlen = (size_t)(colon - s);
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') { /* [::1]:8080 */
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= host_size || memchr(h, '\0', hlen) != NULL)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int cm_addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;

        return IN6_IS_ADDR_LOOPBACK(a) ||
               (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}
