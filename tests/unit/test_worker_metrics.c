/* test_worker_metrics.c - unit tests for worker/metrics.c: what each record
 * call counts, and that the rendered text is well-formed Prometheus 0.0.4
 * (HELP and TYPE before each family's samples).  Single-threaded cmocka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(fw_metrics_t *m, const char *version) {
    size_t len = 0;
    char *text = fw_metrics_render(m, version, &len);

    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* The value of the sample line that starts with "<series> ", or -1. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static void assert_sample(const char *text, const char *series, double want) {
    double got = sample(text, series);

    if (got != want)
        fail_msg("%s: want %g, got %g in\n%s", series, want, got, text);
}

static void test_fresh_all_zero(void **state) {
    fw_metrics_t m;
    char *text;

    fw_metrics_init(&m);
    text = render(&m, "1.2.3");
    assert_sample(text, "fibw_build_info{version=\"1.2.3\"}", 1);
    assert_sample(text, "fibw_messages_total{outcome=\"served\"}", 0);
    assert_sample(text, "fibw_messages_total{outcome=\"rejected\"}", 0);
    assert_sample(text, "fibw_messages_total{outcome=\"expired\"}", 0);
    assert_sample(text, "fibw_messages_total{outcome=\"dropped\"}", 0);
    assert_sample(text, "fibw_errors_total{type=\"invalid_argument\"}", 0);
    assert_sample(text, "fibw_errors_total{type=\"out_of_range\"}", 0);
    assert_sample(text, "fibw_errors_total{type=\"expired\"}", 0);
    assert_sample(text, "fibw_errors_total{type=\"internal\"}", 0);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"0.0001\"}", 0);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"+Inf\"}", 0);
    assert_sample(text, "fibw_compute_seconds_sum", 0);
    assert_sample(text, "fibw_compute_seconds_count", 0);
    assert_sample(text, "fibw_amqp_connected", 0);
    assert_sample(text, "fibw_amqp_reconnects_total", 0);
    free(text);
}

static void test_outcomes_and_errors(void **state) {
    fw_metrics_t m;
    char *text;

    fw_metrics_init(&m);
    fw_metrics_reply(&m, FW_OK, 0.002);
    fw_metrics_reply(&m, FW_OK, 0.003);
    fw_metrics_reply(&m, FW_ERR_invalid_argument, 5);
    fw_metrics_reply(&m, FW_ERR_invalid_argument, 0);
    fw_metrics_reply(&m, FW_ERR_out_of_range, 0);
    fw_metrics_reply(&m, FW_ERR_expired, 0);
    fw_metrics_reply(&m, FW_ERR_internal, 0);
    fw_metrics_reply(&m, (fw_err_t)99, 0); /* out of range: internal */
    fw_metrics_dropped(&m);
    text = render(&m, "v");
    assert_sample(text, "fibw_messages_total{outcome=\"served\"}", 2);
    assert_sample(text, "fibw_messages_total{outcome=\"rejected\"}", 5);
    assert_sample(text, "fibw_messages_total{outcome=\"expired\"}", 1);
    assert_sample(text, "fibw_messages_total{outcome=\"dropped\"}", 1);
    assert_sample(text, "fibw_errors_total{type=\"invalid_argument\"}", 2);
    assert_sample(text, "fibw_errors_total{type=\"out_of_range\"}", 1);
    assert_sample(text, "fibw_errors_total{type=\"expired\"}", 1);
    assert_sample(text, "fibw_errors_total{type=\"internal\"}", 2);
    /* Only served requests are timed. */
    assert_sample(text, "fibw_compute_seconds_count", 2);
    free(text);
}

static void test_histogram_cumulative(void **state) {
    fw_metrics_t m;
    char *text;

    fw_metrics_init(&m);
    fw_metrics_reply(&m, FW_OK, 0);      /* <= 0.0001 */
    fw_metrics_reply(&m, FW_OK, 0.0001); /* le is inclusive */
    fw_metrics_reply(&m, FW_OK, 0.0005); /* <= 0.001 */
    fw_metrics_reply(&m, FW_OK, 0.5);    /* <= 1 */
    fw_metrics_reply(&m, FW_OK, 60);     /* +Inf only */
    fw_metrics_reply(&m, FW_OK, -1);     /* a clock step: counted as 0 */
    text = render(&m, "v");
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"0.0001\"}", 3);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"0.001\"}", 4);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"0.01\"}", 4);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"0.1\"}", 4);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"1\"}", 5);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"10\"}", 5);
    assert_sample(text, "fibw_compute_seconds_bucket{le=\"+Inf\"}", 6);
    assert_sample(text, "fibw_compute_seconds_count", 6);
    assert_true(sample(text, "fibw_compute_seconds_sum") > 60.50059 &&
                sample(text, "fibw_compute_seconds_sum") < 60.50061);
    free(text);
}

static void test_link_and_reconnects(void **state) {
    fw_metrics_t m;
    char *text;

    fw_metrics_init(&m);
    fw_metrics_link(&m, 1); /* the first connection is no reconnect */
    text = render(&m, "v");
    assert_sample(text, "fibw_amqp_connected", 1);
    assert_sample(text, "fibw_amqp_reconnects_total", 0);
    free(text);

    fw_metrics_link(&m, 0);
    text = render(&m, "v");
    assert_sample(text, "fibw_amqp_connected", 0);
    free(text);

    fw_metrics_link(&m, 1);
    fw_metrics_link(&m, 0);
    fw_metrics_link(&m, 0); /* down twice is still one reconnect */
    fw_metrics_link(&m, 1);
    text = render(&m, "v");
    assert_sample(text, "fibw_amqp_connected", 1);
    assert_sample(text, "fibw_amqp_reconnects_total", 2);
    free(text);
}

static void test_node_and_failovers(void **state) {
    static const char a[] = "10.0.0.1:5672", b[] = "10.0.0.2:5672";
    char a2[sizeof(a)];
    fw_metrics_t m;
    char *text;

    memcpy(a2, a, sizeof(a));
    fw_metrics_init(&m);
    text = render(&m, "v"); /* never connected: no node */
    assert_null(strstr(text, "fibw_amqp_node_info"));
    assert_sample(text, "fibw_amqp_failovers_total", 0);
    free(text);

    fw_metrics_link(&m, 1);
    fw_metrics_node(&m, a); /* the first node is no failover */
    text = render(&m, "v");
    assert_sample(text, "fibw_amqp_node_info{node=\"10.0.0.1:5672\"}", 1);
    assert_sample(text, "fibw_amqp_failovers_total", 0);
    free(text);

    fw_metrics_link(&m, 0);
    text = render(&m, "v"); /* down: no node shown */
    assert_null(strstr(text, "fibw_amqp_node_info"));
    free(text);
    fw_metrics_link(&m, 1);
    fw_metrics_node(&m, a2); /* the same node again (another copy) */
    fw_metrics_link(&m, 0);
    fw_metrics_link(&m, 1);
    fw_metrics_node(&m, b);
    text = render(&m, "v");
    assert_sample(text, "fibw_amqp_node_info{node=\"10.0.0.2:5672\"}", 1);
    assert_null(strstr(text, "10.0.0.1"));
    assert_sample(text, "fibw_amqp_failovers_total", 1);
    assert_sample(text, "fibw_amqp_reconnects_total", 2);
    free(text);
}

static void test_version_escaped(void **state) {
    fw_metrics_t m;
    char *text;

    fw_metrics_init(&m);
    text = render(&m, "a\"b\\c\nd");
    assert_sample(text, "fibw_build_info{version=\"a\\\"b\\\\c\\nd\"}", 1);
    free(text);
}

/* Every sample's family has HELP then TYPE before it, each family once, and
 * every line is a comment or "name[{labels}] value". */
static void test_format(void **state) {
    static const char *const families[] = {
        "fibw_build_info",           "fibw_messages_total",
        "fibw_errors_total",         "fibw_compute_seconds",
        "fibw_amqp_connected",       "fibw_amqp_reconnects_total",
        "fibw_amqp_failovers_total",
    };
    char family[64] = "", *text, *line, *save = NULL;
    fw_metrics_t m;
    size_t seen = 0;

    fw_metrics_init(&m);
    fw_metrics_reply(&m, FW_OK, 0.01);
    text = render(&m, "v");
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[64];

        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%63s", family), 1);
            assert_true(seen < sizeof(families) / sizeof(families[0]));
            assert_string_equal(family, families[seen]);
            seen++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%63s", name), 1);
            assert_string_equal(name, family);
            continue;
        }
        assert_true(line[0] != '#');
        assert_int_equal(sscanf(line, "%63[a-z_]", name), 1);
        /* The family, or a histogram's _bucket, _sum or _count. */
        assert_memory_equal(name, family, strlen(family));
        assert_non_null(strchr(line, ' '));
    }
    assert_int_equal(seen, sizeof(families) / sizeof(families[0]));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_all_zero),
        cmocka_unit_test(test_outcomes_and_errors),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_link_and_reconnects),
        cmocka_unit_test(test_node_and_failovers),
        cmocka_unit_test(test_version_escaped),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
