/* cors.c - the --cors-origins list: parsing and exact matching.  Pure; any
 * thread. */
#include "cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int lower_alpha(char c) {
    return c >= 'a' && c <= 'z';
}

static int digit(char c) {
    return c >= '0' && c <= '9';
}

/* Is s[0..len) an origin as browsers serialise it?  NULL when it is, else
 * what is wrong with it. */
static const char *origin_problem(const char *s, size_t len) {
    const char *p = s, *end = s + len, *host;
    size_t i;

    if (len == 1 && *s == '*')
        return "list each origin exactly: '*' is not accepted";
    if (len == 4 && memcmp(s, "null", 4) == 0)
        return "'null' is the origin of sandboxed and file pages, which "
               "anyone can make";
    for (i = 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return "write it in lowercase, as browsers send it";
    if (len == 0 || !lower_alpha(*p))
        return "want scheme://host[:port]";
    while (p < end && (lower_alpha(*p) || digit(*p) || *p == '+' || *p == '-' ||
                       *p == '.'))
        p++;
    if (end - p < 3 || memcmp(p, "://", 3) != 0)
        return "want scheme://host[:port]";
    p += 3;
    host = p;
    if (p < end && *p == '[') { /* [IPv6] */
        while (p < end && *p != ']')
            p++;
        if (p == end)
            return "an unclosed '[' in the host";
        p++;
    } else {
        while (p < end &&
               (lower_alpha(*p) || digit(*p) || *p == '-' || *p == '.'))
            p++;
    }
    if (p == host || (*host == '[' && p - host == 2))
        return "no host";
    if (p < end && *p == ':') {
        unsigned long port = 0;

        p++;
        if (p == end)
            return "an empty port";
        for (; p < end && digit(*p); p++)
            if ((port = port * 10 + (unsigned long)(*p - '0')) > 65535)
                return "a port above 65535";
        if (p < end)
            return "want scheme://host[:port]";
        if ((port == 80 && strncmp(s, "http://", 7) == 0) ||
            (port == 443 && strncmp(s, "https://", 8) == 0))
            return "drop the default port: browsers leave it out";
    }
    if (p < end)
        return *p == '/' ? "an origin has no path (not even a final '/')"
                         : "want scheme://host[:port]";
    return NULL;
}

int gw_cors_parse(const char *list, gw_cors_t *out, char *why,
                  size_t why_size) {
    gw_cors_t c = {0};
    const char *p = list;

    while (*p != '\0') {
        const char *item, *end, *problem;
        size_t len;

        while (*p == ' ')
            p++;
        item = p;
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        len = (size_t)(end - item);
        while (len > 0 && item[len - 1] == ' ')
            len--;
        p = *end == ',' ? end + 1 : end;
        if (len == 0)
            continue;
        problem = origin_problem(item, len);
        if (problem == NULL && len >= GW_CORS_ORIGIN_MAX)
            problem = "too long";
        if (problem == NULL && c.n == GW_CORS_MAX)
            problem = "more than 16 origins";
        if (problem != NULL) {
            snprintf(why, why_size, "'%.*s': %s", (int)(len > 300 ? 300 : len),
                     item, problem);
            return -1;
        }
        memcpy(c.origin[c.n], item, len);
        c.origin[c.n++][len] = '\0';
    }
    if (c.n == 0) {
        snprintf(why, why_size, "no origin in the list");
        return -1;
    }
    *out = c;
    return 0;
}

const char *gw_cors_match(const gw_cors_t *cors, const char *origin) {
    unsigned i;

    if (origin == NULL)
        return NULL;
    for (i = 0; i < cors->n; i++)
        if (strcmp(cors->origin[i], origin) == 0)
            return cors->origin[i];
    return NULL;
}

int gw_cors_list_add(char *list, size_t size, const char *name) {
    size_t len = strlen(list), n = strlen(name);
    const char *p = list;

    while (*p != '\0') {
        size_t item = strcspn(p, ",");

        if (item == n && strncasecmp(p, name, n) == 0)
            return 0;
        p += item;
        p += strspn(p, ", ");
    }
    if (len + (len > 0 ? 2 : 0) + n + 1 > size)
        return -1;
    snprintf(list + len, size - len, "%s%s", len > 0 ? ", " : "", name);
    return 0;
}
