/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics registry: the exact text exposition of counters, gauges and
 * histograms, with and without labels. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics.h"

static char *render(void) {
        char *out = NULL;
        size_t len = 0;

        assert_int_equal(metrics_render(&out, &len), 0);
        assert_int_equal(len, strlen(out));
        return out;
}

static int teardown(void **state) {
        metrics_reset();
        return 0;
}

static void test_counters_and_gauges(void **state) {
        _cleanup_free_ char *out = NULL;
        metric *c = metric_register("t_total", METRIC_COUNTER, "Things.");
        metric *g = metric_register("t_depth", METRIC_GAUGE, "Depth.");

        assert_ptr_equal(metric_register("t_total", METRIC_COUNTER, "Again."), c);
        metric_inc(c, "code=\"200\"");
        metric_add(c, "code=\"200\"", 2);
        metric_set(g, NULL, 1.5);
        assert_true(metric_get(c, "code=\"200\"") == 3);
        out = render();
        assert_string_equal(out, "# HELP t_total Things.\n"
                                 "# TYPE t_total counter\n"
                                 "t_total{code=\"200\"} 3\n"
                                 "# HELP t_depth Depth.\n"
                                 "# TYPE t_depth gauge\n"
                                 "t_depth 1.500000\n");
}

/* Buckets are cumulative, a value equal to a bound counts in that bucket,
 * one above every bound only in +Inf; labels come before le. */
static void test_histogram_with_labels(void **state) {
        static const double bounds[] = {0.005, 0.25, 1, 2.5};
        _cleanup_free_ char *out = NULL;
        metric *h = metric_register_histogram("t_seconds", "Durations.", bounds, 4);

        assert_non_null(h);
        metric_observe(h, "controller=\"cb\"", 0.25);
        metric_observe(h, "controller=\"cb\"", 0.001);
        metric_observe(h, "controller=\"cb\"", 2);
        metric_observe(h, "controller=\"cb\"", 7);
        metric_set(h, "controller=\"cb\"", 100); /* no effect on a histogram */
        assert_true(metric_get(h, "controller=\"cb\"") == 4);
        out = render();
        assert_string_equal(out, "# HELP t_seconds Durations.\n"
                                 "# TYPE t_seconds histogram\n"
                                 "t_seconds_bucket{controller=\"cb\",le=\"0.005\"} 1\n"
                                 "t_seconds_bucket{controller=\"cb\",le=\"0.25\"} 2\n"
                                 "t_seconds_bucket{controller=\"cb\",le=\"1\"} 2\n"
                                 "t_seconds_bucket{controller=\"cb\",le=\"2.5\"} 3\n"
                                 "t_seconds_bucket{controller=\"cb\",le=\"+Inf\"} 4\n"
                                 "t_seconds_sum{controller=\"cb\"} 9.251000\n"
                                 "t_seconds_count{controller=\"cb\"} 4\n");
}

static void test_histogram_without_labels(void **state) {
        static const double bounds[] = {0.1, 10};
        _cleanup_free_ char *out = NULL;
        metric *h = metric_register_histogram("t_bytes", "Sizes.", bounds, 2);

        metric_observe(h, NULL, 3);
        metric_observe(h, "", 4);
        out = render();
        assert_string_equal(out, "# HELP t_bytes Sizes.\n"
                                 "# TYPE t_bytes histogram\n"
                                 "t_bytes_bucket{le=\"0.1\"} 0\n"
                                 "t_bytes_bucket{le=\"10\"} 2\n"
                                 "t_bytes_bucket{le=\"+Inf\"} 2\n"
                                 "t_bytes_sum 7\n"
                                 "t_bytes_count 2\n");
}

static void test_histogram_rejects_bad_bounds(void **state) {
        static const double unsorted[] = {1, 0.5}, repeated[] = {1, 1};

        assert_null(metric_register_histogram("t_a", "A.", unsorted, 2));
        assert_null(metric_register_histogram("t_b", "B.", repeated, 2));
        assert_null(metric_register_histogram("t_c", "C.", unsorted, 0));
        metric_observe(NULL, NULL, 1); /* harmless */
}

/* A registered histogram with no observation yet renders only its header. */
static void test_histogram_without_series(void **state) {
        static const double bounds[] = {1};
        _cleanup_free_ char *out = NULL;

        assert_non_null(metric_register_histogram("t_idle", "Idle.", bounds, 1));
        out = render();
        assert_string_equal(out, "# HELP t_idle Idle.\n# TYPE t_idle histogram\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_counters_and_gauges, teardown),
                cmocka_unit_test_teardown(test_histogram_with_labels, teardown),
                cmocka_unit_test_teardown(test_histogram_without_labels, teardown),
                cmocka_unit_test_teardown(test_histogram_rejects_bad_bounds, teardown),
                cmocka_unit_test_teardown(test_histogram_without_series, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
