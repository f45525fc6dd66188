/* test_log.c - common/log: one line per event whatever the values hold; a
 * value from a peer cannot forge a line or a key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char out[8192];

/* Runs the logging in fn with stderr sent to a file; returns what was
 * written (in out). */
static const char *captured(void (*fn)(void)) {
    FILE *f = tmpfile();
    int saved = dup(2);
    size_t n;

    assert_non_null(f);
    fflush(stderr);
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

static size_t count(const char *s, char c) {
    size_t n = 0;

    for (; *s; s++)
        n += *s == c;
    return n;
}

static void log_forgery(void) {
    static const char corr[] =
        "abc\"\nts=2026-01-01T00:00:00.000Z level=error msg=FORGED";
    cm_log_t l;

    cm_log_begin(&l, CM_LOG_INFO, "reply_dropped");
    cm_log_str(&l, "corr", corr, sizeof(corr) - 1);
    cm_log_kv(&l, "path", "%s", "/fib/5\r\nx=1 \\ \x01\x7f\xff");
    cm_log_end(&l);
}

static void test_values_are_escaped(void **state) {
    const char *s = captured(log_forgery);

    assert_int_equal(count(s, '\n'), 1); /* one line, at the end */
    assert_non_null(strstr(s, " level=info prog=test msg=reply_dropped "));
    assert_non_null(
        strstr(s, "corr=\"abc\\\"\\nts=2026-01-01T00:00:00.000Z level=error "
                  "msg=FORGED\""));
    assert_non_null(
        strstr(s, "path=\"/fib/5\\x0d\\nx=1 \\\\ \\x01\\x7f\\xff\""));
}

static void log_plain(void) {
    cm_log_t l;

    cm_log_begin(&l, CM_LOG_WARN, "served");
    cm_log_kv(&l, "n", "%u", 10u);
    cm_log_kv(&l, "host", "%s", "127.0.0.1:5672");
    cm_log_str(&l, "empty", NULL, 0);
    cm_log_end(&l);
}

static void test_bare_values_unquoted(void **state) {
    const char *s = captured(log_plain);

    assert_non_null(strstr(s, " level=warn prog=test msg=served n=10 "
                              "host=127.0.0.1:5672 empty=\"\"\n"));
}

static void log_long(void) {
    char big[4000];
    cm_log_t l;
    int i;

    memset(big, 'a', sizeof(big));
    cm_log_begin(&l, CM_LOG_INFO, "long");
    cm_log_str(&l, "v", big, sizeof(big)); /* cut at CM_LOG_VALUE_MAX */
    for (i = 0; i < 10; i++)
        cm_log_str(&l, "w", big, sizeof(big)); /* cut at the line's end */
    cm_log_end(&l);
}

static void test_long_values_and_lines_are_cut(void **state) {
    const char *s = captured(log_long);
    size_t len = strlen(s);

    assert_true(len <= CM_LOG_LINE_MAX);
    assert_int_equal(count(s, '\n'), 1);
    assert_string_equal(s + len - 4, "...\n");
    assert_non_null(strstr(s, "a... w="));
}

static void vtext(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vtext(const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    cm_log_vtext(CM_LOG_WARN, "http_error", "text", fmt, ap);
    va_end(ap);
}

static void log_library_text(void) {
    vtext("Error processing request: %s\r\n", "bad\nline \"x\"");
}

static void test_library_text(void **state) {
    const char *s = captured(log_library_text);

    assert_int_equal(count(s, '\n'), 1);
    assert_non_null(strstr(s, " msg=http_error text=\"Error processing "
                              "request: bad\\nline \\\"x\\\"\"\n"));
}

static void log_levels(void) {
    cm_log_msg(CM_LOG_DEBUG, "hidden");
    cm_log_msg(CM_LOG_INFO, "hidden_too");
    cm_log_msg(CM_LOG_WARN, "shown");
}

static void test_levels(void **state) {
    const char *s;

    assert_int_equal(cm_log_init("test", "warn"), 0);
    assert_int_equal(cm_log_init("test", "loud"), -1);
    s = captured(log_levels);
    assert_null(strstr(s, "hidden"));
    assert_non_null(strstr(s, "msg=shown\n"));
    assert_false(cm_log_enabled(CM_LOG_INFO));
    assert_int_equal(cm_log_init("test", "info"), 0);
}

static cm_log_batch_t batch;
static size_t written_before_flush;

/* Lines in a batch reach stderr only when flushed, whole and in order. */
static void log_batched(void) {
    int i;

    cm_log_batch_begin(&batch);
    for (i = 0; i < 3; i++) {
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "request");
        cm_log_kv(&l, "i", "%d", i);
        cm_log_end(&l);
    }
    fflush(stderr);
    written_before_flush = (size_t)lseek(2, 0, SEEK_CUR);
    cm_log_flush();
    cm_log_msg(CM_LOG_INFO, "after_flush");
    cm_log_batch_begin(NULL); /* writes what is left, then unbatched */
    cm_log_msg(CM_LOG_INFO, "unbatched");
}

static void test_batch(void **state) {
    const char *s = captured(log_batched);
    const char *a = strstr(s, "msg=request i=0\n"),
               *b = strstr(s, "msg=request i=1\n"),
               *c = strstr(s, "msg=request i=2\n");

    assert_int_equal(written_before_flush, 0);
    assert_int_equal(count(s, '\n'), 5);
    assert_true(a != NULL && b != NULL && c != NULL && a < b && b < c);
    assert_true(strstr(s, "msg=after_flush\n") > c);
    assert_true(strstr(s, "msg=unbatched\n") > strstr(s, "msg=after_flush"));
}

/* A batch that would overflow is written first: no line is ever cut. */
static void log_batch_full(void) {
    char big[900];
    int i;

    memset(big, 'b', sizeof(big));
    cm_log_batch_begin(&batch);
    for (i = 0; i < 40; i++) { /* ~40 lines of ~1000 bytes: > the batch */
        cm_log_t l;

        cm_log_begin(&l, CM_LOG_INFO, "big");
        cm_log_str(&l, "v", big, sizeof(big));
        cm_log_end(&l);
    }
    cm_log_batch_begin(NULL);
}

static void test_batch_full(void **state) {
    static char all[64 * 1024];
    FILE *f = tmpfile();
    int saved = dup(2);
    const char *line;
    size_t n, lines = 0;

    /* captured() keeps 8 KiB; this output is larger */
    assert_non_null(f);
    fflush(stderr);
    dup2(fileno(f), 2);
    log_batch_full();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    n = fread(all, 1, sizeof(all) - 1, f);
    all[n] = '\0';
    fclose(f);
    for (line = all; *line != '\0'; lines++) {
        const char *end = strchr(line, '\n');

        assert_non_null(end);
        assert_non_null(strstr(line, " msg=big v="));
        assert_true(strstr(line, " msg=big v=") < end);
        line = end + 1;
    }
    assert_int_equal(lines, 40);
}

/* The timestamp, cached per second, still has the milliseconds. */
static void log_two(void) {
    cm_log_msg(CM_LOG_INFO, "one");
    cm_log_msg(CM_LOG_INFO, "two");
}

static void test_timestamp(void **state) {
    const char *s = captured(log_two), *line = s;
    int i, k;

    for (k = 0; k < 2; k++) {
        /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
        static const char shape[] = "ts=dddd-dd-ddTdd:dd:dd.dddZ ";

        for (i = 0; shape[i] != '\0'; i++)
            if (shape[i] == 'd')
                assert_true(line[i] >= '0' && line[i] <= '9');
            else
                assert_int_equal(line[i], shape[i]);
        line = strchr(line, '\n') + 1;
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_escaped),
        cmocka_unit_test(test_bare_values_unquoted),
        cmocka_unit_test(test_long_values_and_lines_are_cut),
        cmocka_unit_test(test_library_text),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_full),
        cmocka_unit_test(test_timestamp),
    };
    cm_log_init("test", "info");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
