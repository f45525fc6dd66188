/* options.h - a program's settings as one table: each a long flag with an
 * environment fallback and a default, and the --help text made from the
 * same table, so the three can never drift apart.  Parsing the text into
 * typed values, and judging it, stays with each program (its config.c).
 *
 * Called once from main, before any thread starts. */
#ifndef CM_OPTIONS_H
#define CM_OPTIONS_H

#include <stddef.h>

/* A macro's value as a string literal, for defaults: CM_STR(100) is "100". */
#define CM_STR_(x) #x
#define CM_STR(x)  CM_STR_(x)

typedef struct {
    const char *name; /* long flag, without "--" */
    const char *env;  /* environment variable to fall back to; NULL: none */
    const char *dflt; /* default text; NULL: none (the value stays NULL) */
    const char *arg;  /* the value's name in --help: "URL", "N", ... */
    const char *help; /* what it sets, one line */
} cm_opt_t;

/* Where one setting's text came from. */
typedef struct {
    const char *value; /* NULL: not given and no default */
    const char *from;  /* "--name", the variable's name, or "default" */
} cm_opt_value_t;

typedef enum {
    CM_OPTS_OK,   /* values[] is filled */
    CM_OPTS_EXIT, /* --help or --version was printed: exit 0 */
    CM_OPTS_BAD   /* what is wrong is on stderr: exit 2 */
} cm_opts_result_t;

/* Reads argv against opts[0..n) plus --help and --version, then gives each
 * option its flag's value, else its environment variable's (unless unset
 * or empty), else its default.  --help prints about, the table and
 * epilog; --version prints "prog version".  Values point into argv, the
 * environment or the table. */
cm_opts_result_t cm_options_parse(const char *prog, const char *version,
                                  const char *about, const char *epilog,
                                  const cm_opt_t *opts, size_t n, int argc,
                                  char **argv, cm_opt_value_t *values);

/* Reads a secret from the file at path into buf (NUL-terminated), without
 * its trailing newline, as Docker and Kubernetes secrets are mounted.
 * Returns 0, or -1 (errno set; EFBIG when it does not fit in size, EINVAL
 * when it is empty). */
int cm_read_secret(const char *path, char *buf, size_t size);

/* Reads the whole file at path, at most max bytes, into a malloc'd buffer
 * with a NUL after its *len bytes.  Returns it, or NULL (errno set; EFBIG
 * when the file is larger than max). */
char *cm_read_file(const char *path, size_t max, size_t *len);

/* Decimal digits only (no sign, no spaces), from min to max.  Returns 0,
 * or -1 with *out unchanged. */
int cm_parse_uint(const char *s, unsigned long min, unsigned long max,
                  unsigned long *out);

#endif
