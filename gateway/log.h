/* log.h - one logfmt line per event on stderr:
 *   ts=2026-11-27T02:03:04.567Z level=info prog=rpc-gateway msg=... k=v
 * Any thread (each line is written with one stdio call). */
#ifndef GW_LOG_H
#define GW_LOG_H

typedef enum {
    GW_LOG_DEBUG,
    GW_LOG_INFO,
    GW_LOG_WARN,
    GW_LOG_ERROR
} gw_log_level_t;

/* Lines below this level are dropped.  Set once at start-up. */
extern gw_log_level_t gw_log_min_level;

/* fmt continues the line after "msg=": pass "served n=%u" and so on. */
void gw_log(gw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
