/* log.c - logfmt lines on stderr, escaped always.  Each line is built in a
 * stack buffer and written with one fwrite (or a batch of whole lines with
 * one fwrite), so lines never interleave.  No shared state but stderr
 * (which stdio locks) and the settings of cm_log_init; the batch and the
 * timestamp cache are per thread. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const levels[] = {"debug", "info", "warn", "error"};
static const char *prog = "-";
static cm_log_level_t min_level = CM_LOG_INFO;
/* This thread's batch (cm_log_batch_begin), or NULL: write each line. */
static _Thread_local cm_log_batch_t *batch;
/* "ts=YYYY-MM-DDTHH:MM:SS" of ts_sec: formatted once a second, not once a
 * line (gmtime_r and a printf were a good part of a line's cost). */
static _Thread_local time_t ts_sec = -1;
static _Thread_local char ts_text[32];
static _Thread_local size_t ts_len;

int cm_log_init(const char *name, const char *level) {
    int i;

    prog = name;
    for (i = 0; i < 4; i++)
        if (strcmp(level, levels[i]) == 0) {
            min_level = (cm_log_level_t)i;
            return 0;
        }
    return -1;
}

int cm_log_enabled(cm_log_level_t level) {
    return level >= min_level;
}

/* Room kept at the end of the buffer for "..." and the newline. */
#define CM_LOG_RESERVE 4

static void cm_log_append(cm_log_t *l, const char *s, size_t n) {
    size_t room = sizeof(l->buf) - CM_LOG_RESERVE - l->len;

    if (l->cut)
        return;
    if (n > room) {
        n = room;
        l->cut = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static int cm_log_bare_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != 0 && strchr("-_.:/@+,%", c));
}

void cm_log_begin(cm_log_t *l, cm_log_level_t level, const char *msg) {
    struct timespec now;
    char ms[5];
    long m;

    l->len = 0;
    l->cut = 0;
    l->muted = !cm_log_enabled(level);
    if (l->muted)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != ts_sec) {
        struct tm tm;
        int n;

        gmtime_r(&now.tv_sec, &tm);
        n = snprintf(ts_text, sizeof(ts_text),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
        ts_len = n > 0 && (size_t)n < sizeof(ts_text) ? (size_t)n : 0;
        ts_sec = now.tv_sec;
    }
    m = now.tv_nsec / 1000000;
    ms[0] = '.';
    ms[1] = (char)('0' + m / 100);
    ms[2] = (char)('0' + m / 10 % 10);
    ms[3] = (char)('0' + m % 10);
    ms[4] = 'Z';
    cm_log_append(l, ts_text, ts_len);
    cm_log_append(l, ms, sizeof(ms));
    cm_log_append(l, " level=", 7);
    cm_log_append(l, levels[level], strlen(levels[level]));
    cm_log_append(l, " prog=", 6);
    cm_log_append(l, prog, strlen(prog));
    cm_log_append(l, " msg=", 5);
    cm_log_append(l, msg, strlen(msg));
}

void cm_log_str(cm_log_t *l, const char *key, const void *val, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *v = val;
    size_t i, shown = len > CM_LOG_VALUE_MAX ? CM_LOG_VALUE_MAX : len;
    int quote = len == 0;
    char esc[4];

    if (l->muted)
        return;
    for (i = 0; i < shown && !quote; i++)
        quote = !cm_log_bare_char(v[i]);
    cm_log_append(l, " ", 1);
    cm_log_append(l, key, strlen(key));
    cm_log_append(l, quote ? "=\"" : "=", quote ? 2 : 1);
    for (i = 0; i < shown; i++) {
        unsigned char c = v[i];
        size_t run;

        /* A run of bytes that need no escape goes in one copy. */
        for (run = 0;
             i + run < shown && v[i + run] >= 0x20 && v[i + run] < 0x7f &&
             v[i + run] != '"' && v[i + run] != '\\';
             run++)
            ;
        if (run > 0) {
            cm_log_append(l, (const char *)&v[i], run);
            i += run - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            cm_log_append(l, esc, 2);
        } else if (c == '\n') {
            cm_log_append(l, "\\n", 2);
        } else {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            cm_log_append(l, esc, 4);
        }
    }
    if (shown < len)
        cm_log_append(l, "...", 3);
    if (quote)
        cm_log_append(l, "\"", 1);
}

void cm_log_kv(cm_log_t *l, const char *key, const char *fmt, ...) {
    char val[CM_LOG_VALUE_MAX + 1];
    va_list ap;

    if (l->muted)
        return;
    val[0] = '\0';
    va_start(ap, fmt);
    (void)vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    cm_log_str(l, key, val, strlen(val));
}

void cm_log_end(cm_log_t *l) {
    if (l->muted)
        return;
    if (l->cut) {
        memcpy(l->buf + l->len, "...", 3);
        l->len += 3;
    }
    l->buf[l->len++] = '\n';
    if (batch == NULL) {
        (void)fwrite(l->buf, 1, l->len, stderr);
        return;
    }
    if (sizeof(batch->buf) - batch->len < l->len)
        cm_log_flush();
    memcpy(batch->buf + batch->len, l->buf, l->len);
    batch->len += l->len;
}

void cm_log_batch_begin(cm_log_batch_t *b) {
    cm_log_flush();
    batch = b;
    if (b != NULL)
        b->len = 0;
}

void cm_log_flush(void) {
    if (batch == NULL || batch->len == 0)
        return;
    (void)fwrite(batch->buf, 1, batch->len, stderr);
    batch->len = 0;
}

void cm_log_msg(cm_log_level_t level, const char *msg) {
    cm_log_t l;

    cm_log_begin(&l, level, msg);
    cm_log_end(&l);
}

void cm_log_vtext(cm_log_level_t level, const char *msg, const char *key,
                  const char *fmt, va_list ap) {
    char text[512];
    size_t len;
    cm_log_t l;

    if (!cm_log_enabled(level))
        return;
    (void)vsnprintf(text, sizeof(text), fmt, ap);
    len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    cm_log_begin(&l, level, msg);
    cm_log_str(&l, key, text, len);
    cm_log_end(&l);
}
