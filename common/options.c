/* options.c - flags, environment and defaults from one table. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_VERSION 1
#define OPT_HELP    2
#define OPT_FIRST   256 /* getopt value of opts[0] */
#define OPTS_MAX    64

/* "--name" of each flag given, for messages; parsing happens once. */
static char flag_names[OPTS_MAX][40];

static void usage(const char *about, const char *epilog, const cm_opt_t *opts,
                  size_t n) {
    size_t i;

    printf("%s\n", about);
    for (i = 0; i < n; i++) {
        if (opts[i].env != NULL)
            printf("  --%s=%s\n      %s [%s]\n", opts[i].name, opts[i].arg,
                   opts[i].help, opts[i].env);
        else
            printf("  --%s=%s\n      %s\n", opts[i].name, opts[i].arg,
                   opts[i].help);
        if (opts[i].dflt != NULL)
            printf("      default: %s\n",
                   opts[i].dflt[0] != '\0' ? opts[i].dflt : "(empty)");
    }
    printf("  --version\n      print the version and exit\n"
           "  --help\n      print this help and exit\n");
    if (epilog != NULL)
        printf("\n%s\n", epilog);
}

cm_opts_result_t cm_options_parse(const char *prog, const char *version,
                                  const char *about, const char *epilog,
                                  const cm_opt_t *opts, size_t n, int argc,
                                  char **argv, cm_opt_value_t *values) {
    struct option longopts[OPTS_MAX + 3];
    const char *given[OPTS_MAX] = {0};
    size_t i;
    int c;

    if (n > OPTS_MAX)
        return CM_OPTS_BAD;
    for (i = 0; i < n; i++)
        longopts[i] = (struct option){opts[i].name, required_argument, NULL,
                                      (int)(OPT_FIRST + i)};
    longopts[n] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    longopts[n + 1] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[n + 2] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == OPT_VERSION) {
            printf("%s %s\n", prog, version);
            return CM_OPTS_EXIT;
        }
        if (c == OPT_HELP) {
            usage(about, epilog, opts, n);
            return CM_OPTS_EXIT;
        }
        if (c == ':') {
            fprintf(stderr, "%s: %s needs a value (see --help)\n", prog,
                    argv[optind - 1]);
            return CM_OPTS_BAD;
        }
        if (c < OPT_FIRST || c >= (int)(OPT_FIRST + n)) {
            fprintf(stderr, "%s: bad option %s (see --help)\n", prog,
                    argv[optind - 1]);
            return CM_OPTS_BAD;
        }
        given[c - OPT_FIRST] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog,
                argv[optind]);
        return CM_OPTS_BAD;
    }
    for (i = 0; i < n; i++) {
        const char *env = opts[i].env != NULL ? getenv(opts[i].env) : NULL;

        if (given[i] != NULL) {
            snprintf(flag_names[i], sizeof(flag_names[i]), "--%s",
                     opts[i].name);
            values[i].value = given[i];
            values[i].from = flag_names[i];
        } else if (env != NULL && *env != '\0') {
            values[i].value = env;
            values[i].from = opts[i].env;
        } else {
            values[i].value = opts[i].dflt;
            values[i].from = "default";
        }
    }
    return CM_OPTS_OK;
}

int cm_parse_uint(const char *s, unsigned long min, unsigned long max,
                  unsigned long *out) {
    unsigned long v = 0;

    if (s == NULL || *s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        unsigned long d;

        if (*s < '0' || *s > '9')
            return -1;
        d = (unsigned long)(*s - '0');

        if (d > max || v > (max - d) / 10)
            return -1; /* above max, and no overflow on the way */
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v < min)
        return -1;
    *out = v;
    return 0;
}

int cm_read_secret(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    size_t n;
    int extra;

    if (f == NULL)
        return -1;
    n = fread(buf, 1, size - 1, f);
    extra = fgetc(f);
    fclose(f);
    if (extra != EOF) {
        errno = EFBIG;
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n) != NULL) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

char *cm_read_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;
    int extra, err;

    if (f == NULL)
        return NULL;
    buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    n = fread(buf, 1, max, f);
    err = ferror(f) ? errno : 0;
    extra = fgetc(f);
    fclose(f);
    if (err != 0 || extra != EOF) {
        free(buf);
        errno = err != 0 ? err : EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
