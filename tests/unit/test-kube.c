/* SPDX-License-Identifier: Apache-2.0 */

/* The Kubernetes client's request counts by HTTP status (what the operator
 * exports as rest_client_requests_total{code=...}), through the fake HTTP
 * transport: every exchange counts, list pages each, and one without a
 * response counts as code 0. The watch and the rest of the client are in
 * test-kube-watch.c. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kube.h"

static const char *const json_headers[] = {"Content-Type: application/json", NULL};

static void answer(http_request *req, long status, const char *body) {
        assert_int_equal(http_fake_respond(req, status, json_headers), 0);
        (void) http_fake_send(req, body, strlen(body));
        http_fake_finish(req, 0);
}

/* Names the answer in the request's path: .../configmaps/ok is a 200,
 * .../missing a 404, .../down a dropped connection, and the list of
 * configmaps comes in two pages. */
static void on_request(http_request *req, const http_request_opts *o, void *userdata) {
        unsigned *n = userdata;

        (*n)++;
        if (strstr(o->url, "/configmaps/ok"))
                answer(req, 200, "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ok\"}}");
        else if (strstr(o->url, "/configmaps/missing"))
                answer(req, 404,
                       "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
                       "\"code\":404}");
        else if (strstr(o->url, "/configmaps/down"))
                http_fake_finish(req, -ECONNREFUSED);
        else if (strstr(o->url, "continue=p2"))
                answer(req, 200,
                       "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"7\"},"
                       "\"items\":[{\"metadata\":{\"name\":\"b\"}}]}");
        else
                answer(req, 200,
                       "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"7\","
                       "\"continue\":\"p2\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}");
}

static void test_requests_are_counted_by_status(void **state) {
        kube_config cfg = {
                .server = (char *) "https://fake.invalid:6443",
                .token = (char *) "t0",
                .namespace = (char *) "ns",
        };
        kube_client_opts ko = {.qps = -1};
        kube_list_opts lo = {.limit = 1};
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(kube_client_freep) kube_client *k = NULL;
        http_client *http = NULL;
        json_object *obj = NULL;
        kube_client_stats ks;
        unsigned requests = 0;
        uint64_t total = 0;
        err_info err;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(http_client_new_fake(e, on_request, &requests, &http), 0);
        assert_int_equal(kube_client_new_with_http(e, http, &cfg, &ko, &k), 0);

        assert_int_equal(
                kube_get_object_sync(k, &KUBE_RESOURCE_CONFIGMAPS, "ns", "ok", NULL, &obj, &err),
                0);
        json_object_put(obj);
        assert_int_equal(kube_get_object_sync(k, &KUBE_RESOURCE_CONFIGMAPS, "ns", "missing", NULL,
                                              &obj, &err),
                         -ENOENT);
        assert_int_equal(
                kube_get_object_sync(k, &KUBE_RESOURCE_CONFIGMAPS, "ns", "down", NULL, &obj, &err),
                -ECONNREFUSED);
        assert_int_equal(
                kube_list_objects_sync(k, &KUBE_RESOURCE_CONFIGMAPS, "ns", &lo, &obj, &err), 0);
        assert_int_equal(json_object_array_length(json_object_object_get(obj, "items")), 2);
        json_object_put(obj);

        kube_client_get_stats(k, &ks);
        assert_int_equal(requests, 5);
        assert_int_equal(ks.codes.n[200], 3); /* the get and both list pages */
        assert_int_equal(ks.codes.n[404], 1);
        assert_int_equal(ks.codes.n[0], 1); /* no response */
        for (size_t i = 0; i < HTTP_CODE_MAX; i++)
                total += ks.codes.n[i];
        assert_int_equal(total, 5);
}

static void test_out_of_range_statuses_count_as_no_response(void **state) {
        http_code_counts c = {};

        http_code_counts_inc(&c, 204);
        http_code_counts_inc(&c, 99);
        http_code_counts_inc(&c, 600);
        http_code_counts_inc(&c, -1);
        assert_int_equal(c.n[204], 1);
        assert_int_equal(c.n[0], 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_requests_are_counted_by_status),
                cmocka_unit_test(test_out_of_range_statuses_count_as_no_response),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
