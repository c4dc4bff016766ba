/* SPDX-License-Identifier: Apache-2.0 */
/* The health endpoint and the metrics registry. */

#include <curl/curl.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "healthd.h"
#include "metrics.h"

static size_t sink(char *p, size_t size, size_t n, void *userdata) {
        FILE *f = userdata;
        return fwrite(p, size, n, f);
}

/* GETs http://127.0.0.1:PORT@path; returns the status and the body in *body. */
static long get(uint16_t port, const char *path, char **body) {
        char url[128];
        size_t len = 0;
        long status = 0;
        FILE *f = open_memstream(body, &len);
        CURL *c = curl_easy_init();

        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        fclose(f);
        return status;
}

static void test_liveness_follows_the_heartbeat(void **state) {
        _cleanup_(healthd_freep) healthd *h = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        assert_int_equal(healthd_start("127.0.0.1:0", 200 * USEC_PER_MSEC, &h), 0);
        assert_true(healthd_port(h) > 0);
        assert_int_equal(get(healthd_port(h), "/healthz", &a), 200);
        assert_string_equal(a, "ok\n");
        usleep(300 * 1000); /* no heartbeat for longer than the timeout */
        assert_int_equal(get(healthd_port(h), "/healthz", &b), 503);
        assert_string_equal(b, "event loop stalled\n");
        healthd_heartbeat(h);
        assert_int_equal(get(healthd_port(h), "/healthz", &c), 200);
}

static void test_readiness_is_explicit(void **state) {
        _cleanup_(healthd_freep) healthd *h = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        assert_int_equal(healthd_start("127.0.0.1:0", 0, &h), 0);
        assert_int_equal(get(healthd_port(h), "/readyz", &a), 503);
        healthd_set_ready(h, true);
        assert_int_equal(get(healthd_port(h), "/readyz", &b), 200);
        assert_int_equal(get(healthd_port(h), "/nope", &c), 404);
}

static void test_bad_addresses_are_rejected(void **state) {
        healthd *h = NULL;

        assert_int_equal(healthd_start("127.0.0.1:99999", 0, &h), -EINVAL);
        assert_int_equal(healthd_start("nohost:80", 0, &h), -EINVAL);
        assert_int_equal(healthd_start("127.0.0.1:", 0, &h), -EINVAL);
        assert_int_equal(healthd_start("", 0, &h), -EINVAL);
        assert_null(h);
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

/* A port in use is -EADDRINUSE, exactly (callers retry on it), and a freed
 * server gives its port and its socket back. */
static void test_port_in_use(void **state) {
        healthd *a = NULL, *b = NULL;
        _cleanup_free_ char *body = NULL;
        unsigned fds = count_fds();
        char addr[32];

        assert_int_equal(healthd_start("127.0.0.1:0", 0, &a), 0);
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", healthd_port(a));
        assert_int_equal(healthd_start(addr, 0, &b), -EADDRINUSE);
        assert_null(b);
        a = healthd_free(a);
        assert_int_equal(count_fds(), fds);
        assert_int_equal(healthd_start(addr, 0, &b), 0);
        assert_int_equal(get(healthd_port(b), "/healthz", &body), 200);
        b = healthd_free(b);
        assert_int_equal(count_fds(), fds);
}

static void test_metrics_render_prometheus_text(void **state) {
        _cleanup_(healthd_freep) healthd *h = NULL;
        _cleanup_free_ char *body = NULL, *own = NULL;
        char lbl[64], esc[32];
        metric *applied, *fails;

        metrics_reset();
        applied = metric_register("ballast_applied_revision", METRIC_GAUGE, "Applied revision.");
        fails = metric_register("ballast_failures_total", METRIC_COUNTER, "Failures.");
        assert_ptr_equal(metric_register("ballast_failures_total", METRIC_COUNTER, "x"), fails);
        snprintf(lbl, sizeof(lbl), "bundle=\"%s\"",
                 metric_escape_label("a\"b\\c\n", esc, sizeof(esc)));
        assert_string_equal(lbl, "bundle=\"a\\\"b\\\\c\\n\"");
        metric_set(applied, "bundle=\"ns/web\"", 7);
        metric_inc(fails, NULL);
        metric_add(fails, NULL, 2);
        metric_set(applied, "bundle=\"ns/gone\"", 1);
        metric_remove(applied, "bundle=\"ns/gone\"");
        assert_true(metric_get(fails, NULL) == 3);

        assert_int_equal(metrics_render(&own, NULL), 0);
        assert_string_equal(own, "# HELP ballast_applied_revision Applied revision.\n"
                                 "# TYPE ballast_applied_revision gauge\n"
                                 "ballast_applied_revision{bundle=\"ns/web\"} 7\n"
                                 "# HELP ballast_failures_total Failures.\n"
                                 "# TYPE ballast_failures_total counter\n"
                                 "ballast_failures_total 3\n");
        assert_int_equal(healthd_start("127.0.0.1:0", 0, &h), 0);
        assert_int_equal(get(healthd_port(h), "/metrics", &body), 200);
        assert_string_equal(body, own);
        metrics_reset();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_liveness_follows_the_heartbeat),
                cmocka_unit_test(test_readiness_is_explicit),
                cmocka_unit_test(test_bad_addresses_are_rejected),
                cmocka_unit_test(test_port_in_use),
                cmocka_unit_test(test_metrics_render_prometheus_text),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
