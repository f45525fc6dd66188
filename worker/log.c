/* log.c - logfmt lines on stderr for fib-worker.  Each line is built in a
 * stack buffer and written with one fwrite, so lines never interleave.  Any
 * thread may call it: there is no shared state but stderr, which stdio
 * locks. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const fw_levels[] = {"debug", "info", "warn", "error"};
/* Lines below this index in fw_levels are not written. */
static int fw_log_min = 1;

static int fw_level_index(const char *level) {
    int i;

    for (i = 0; i < 4; i++)
        if (strcmp(level, fw_levels[i]) == 0)
            return i;
    return -1;
}

int fw_log_set_level(const char *level) {
    int i = fw_level_index(level);

    if (i < 0)
        return -1;
    fw_log_min = i;
    return 0;
}

/* Room kept at the end of the buffer for "..." and the newline. */
#define FW_LOG_RESERVE 4

static void fw_log_append(fw_log_t *l, const char *s, size_t n) {
    size_t room = sizeof(l->buf) - FW_LOG_RESERVE - l->len;

    if (l->cut)
        return;
    if (n > room) {
        n = room;
        l->cut = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static int fw_log_bare_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != 0 && strchr("-_.:/@+,%", c));
}

void fw_log_begin(fw_log_t *l, const char *level, const char *msg) {
    struct timespec now;
    struct tm tm;
    char ts[40];
    int n;

    l->len = 0;
    l->cut = 0;
    l->muted = fw_level_index(level) < fw_log_min;
    if (l->muted)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(ts, sizeof(ts), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    if (n > 0)
        fw_log_append(l, ts, strlen(ts));
    fw_log_append(l, " level=", 7);
    fw_log_append(l, level, strlen(level));
    fw_log_append(l, " prog=fib-worker msg=", 21);
    fw_log_append(l, msg, strlen(msg));
}

void fw_log_str(fw_log_t *l, const char *key, const void *val, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *v = val;
    size_t i, shown = len > FW_LOG_VALUE_MAX ? FW_LOG_VALUE_MAX : len;
    int quote = len == 0;
    char esc[4];

    if (l->muted)
        return;
    for (i = 0; i < shown && !quote; i++)
        quote = !fw_log_bare_char(v[i]);
    fw_log_append(l, " ", 1);
    fw_log_append(l, key, strlen(key));
    fw_log_append(l, quote ? "=\"" : "=", quote ? 2 : 1);
    for (i = 0; i < shown; i++) {
        unsigned char c = v[i];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            fw_log_append(l, esc, 2);
        } else if (c == '\n') {
            fw_log_append(l, "\\n", 2);
        } else if (c < 0x20 || c >= 0x7f) {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            fw_log_append(l, esc, 4);
        } else {
            fw_log_append(l, (const char *)&v[i], 1);
        }
    }
    if (shown < len)
        fw_log_append(l, "...", 3);
    if (quote)
        fw_log_append(l, "\"", 1);
}

void fw_log_kv(fw_log_t *l, const char *key, const char *fmt, ...) {
    char val[FW_LOG_VALUE_MAX + 1];
    va_list ap;

    if (l->muted)
        return;
    val[0] = '\0';
    va_start(ap, fmt);
    (void)vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    fw_log_str(l, key, val, strlen(val));
}

void fw_log_end(fw_log_t *l) {
    if (l->muted)
        return;
    if (l->cut) {
        memcpy(l->buf + l->len, "...", 3);
        l->len += 3;
    }
    l->buf[l->len++] = '\n';
    (void)fwrite(l->buf, 1, l->len, stderr);
}
