/* log.c - logfmt lines on stderr.  Any thread. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

gw_log_level_t gw_log_min_level = GW_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log(gw_log_level_t level, const char *fmt, ...) {
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int off;

    if (level < gw_log_min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    off = snprintf(line, sizeof(line),
                   "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s "
                   "prog=rpc-gateway msg=",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                   level_names[level]);
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
