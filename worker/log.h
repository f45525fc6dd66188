/* log.h - logfmt lines on stderr, one per event: ts, level, prog and msg,
 * then key=value pairs, values quoted and escaped when they need it.  Any
 * thread may log (the AMQP thread, the metrics server's): each line lives in
 * the caller's fw_log_t and goes out in one fwrite, which locks stderr. */
#ifndef FW_LOG_H
#define FW_LOG_H

#include <stddef.h>

/* The longest line written; longer lines are cut and end in "...". */
#define FW_LOG_LINE_MAX 1024
/* The most bytes of one value logged; the rest is cut and marked "...". */
#define FW_LOG_VALUE_MAX 256

/* One line being built on the stack; begin, add pairs, end. */
typedef struct {
    char buf[FW_LOG_LINE_MAX];
    size_t len;
    int cut;
    int muted; /* below the log level: nothing is built or written */
} fw_log_t;

/* Sets the lowest level written: "debug", "info", "warn" or "error".
 * Returns -1 (and changes nothing) for anything else.  Call before any
 * thread logs. */
int fw_log_set_level(const char *level);

/* Starts a line: ts=<UTC ms> level=<level> prog=fib-worker msg=<msg>. */
void fw_log_begin(fw_log_t *l, const char *level, const char *msg);

/* Appends key=value for len bytes of untrusted val (may hold any bytes; NULL
 * with len 0 is ""), quoted and escaped as needed, cut at FW_LOG_VALUE_MAX. */
void fw_log_str(fw_log_t *l, const char *key, const void *val, size_t len);

/* Appends key=<printf-formatted value>, escaped like fw_log_str. */
void fw_log_kv(fw_log_t *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the line and its newline to stderr in one call; never fails loudly
 * (a log write error is ignored). */
void fw_log_end(fw_log_t *l);

#endif
