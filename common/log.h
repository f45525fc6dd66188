/* log.h - logfmt lines on stderr, one per event:
 *   ts=2026-11-27T02:03:04.567Z level=info prog=rpc-gateway msg=... k=v
 * Every value is escaped (quoted when it needs it; quotes, backslashes,
 * newlines and control bytes escaped; cut at CM_LOG_VALUE_MAX), so a value
 * from a client or a peer can never forge a line or a key.
 *
 * Any thread: a line is built in the caller's cm_log_t and written with one
 * fwrite, which locks stderr; or, on a thread that batches its lines
 * (cm_log_batch_begin), kept in the batch until that thread flushes it, so
 * one write carries many whole lines.  cm_log_init is called once, before
 * threads start. */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* The longest line written; longer lines are cut and end in "...". */
#define CM_LOG_LINE_MAX 1024
/* The most bytes of one value logged; the rest is cut and marked "...". */
#define CM_LOG_VALUE_MAX 256

typedef enum {
    CM_LOG_DEBUG,
    CM_LOG_INFO,
    CM_LOG_WARN,
    CM_LOG_ERROR
} cm_log_level_t;

/* The lines one thread keeps before it writes them together (a full batch
 * is written at once, so a line is never cut). */
#define CM_LOG_BATCH_MAX 16384

/* One line being built on the stack: begin, add pairs, end. */
typedef struct {
    char buf[CM_LOG_LINE_MAX];
    size_t len;
    int cut;
    int muted; /* below the log level: nothing is built or written */
} cm_log_t;

/* A thread's batch of lines; the caller owns it. */
typedef struct {
    char buf[CM_LOG_BATCH_MAX];
    size_t len;
} cm_log_batch_t;

/* Names the program (prog=) and sets the lowest level written: "debug",
 * "info", "warn" or "error".  Returns -1 (level unchanged) for another
 * level name.  prog must outlive every log call. */
int cm_log_init(const char *prog, const char *level);
/* Whether a line at this level would be written. */
int cm_log_enabled(cm_log_level_t level);

/* Starts a line: ts=<UTC ms> level=<level> prog=<prog> msg=<msg>; msg is
 * the program's own event name (not escaped). */
void cm_log_begin(cm_log_t *l, cm_log_level_t level, const char *msg);
/* Appends key=value for len bytes of val (any bytes; NULL with len 0 is
 * ""), escaped. */
void cm_log_str(cm_log_t *l, const char *key, const void *val, size_t len);
/* Appends key=<printf-formatted value>, escaped like cm_log_str. */
void cm_log_kv(cm_log_t *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the line and its newline to stderr in one call; a write error is
 * ignored. */
void cm_log_end(cm_log_t *l);

/* From now on, this thread's lines go into b (emptied) instead of being
 * written one by one; the thread must call cm_log_flush before it sleeps,
 * so that no line waits for long.  NULL ends batching (what is in the
 * batch is written first). */
void cm_log_batch_begin(cm_log_batch_t *b);
/* Writes this thread's batch, if any, in one call. */
void cm_log_flush(void);

/* A line with no pairs: begin and end. */
void cm_log_msg(cm_log_level_t level, const char *msg);
/* A line whose one value, under key, is a library's printf-style message
 * (libmicrohttpd's error log), trailing newlines dropped, escaped. */
void cm_log_vtext(cm_log_level_t level, const char *msg, const char *key,
                  const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
