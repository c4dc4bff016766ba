/* SPDX-License-Identifier: Apache-2.0 */
/* The rollout decisions of `ballast-operator check-release`: a Deployment and
 * a DaemonSet are ready only as `kubectl rollout status` would call them, and
 * each way of not being ready is named in the summary line. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonx.h"
#include "rollout.h"

static json_object *parse(const char *s) {
        json_object *o = NULL;

        assert_int_equal(jsonx_parse(s, strlen(s), &o, NULL), 0);
        return o;
}

typedef int (*check_fn)(json_object *obj, char **ret_summary);

/* Decides @json with @fn, which must return @want; the summary must be @text
 * exactly (NULL: an error, and no summary written). */
static void expect(check_fn fn, const char *json, int want, const char *text) {
        _cleanup_json_ json_object *o = parse(json);
        _cleanup_free_ char *summary = NULL;

        assert_int_equal(fn(o, &summary), want);
        if (!text) {
                assert_null(summary);
                return;
        }
        assert_non_null(summary);
        assert_string_equal(summary, text);
}

/* A Deployment of generation 2 asking for @replicas (-1: left out), with
 * @status (the members of its status object). */
static char *deployment(int replicas, const char *status) {
        char *s = NULL;
        char spec[32] = "";

        if (replicas >= 0)
                snprintf(spec, sizeof(spec), "\"replicas\":%d", replicas);
        assert_true(asprintf(&s,
                             "{\"kind\":\"Deployment\",\"metadata\":{\"name\":\"op\","
                             "\"generation\":2},\"spec\":{%s},\"status\":{%s}}",
                             spec, status) >= 0);
        return s;
}

static void expect_deployment(int replicas, const char *status, int want, const char *text) {
        _cleanup_free_ char *json = deployment(replicas, status);

        expect(rollout_check_deployment, json, want, text);
}

static void test_deployment_ready(void **state) {
        expect_deployment(2,
                          "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,"
                          "\"readyReplicas\":2,\"availableReplicas\":2",
                          1, "ready: 2 of 2 replicas updated and available");
        /* A newer observedGeneration is fine; spec.replicas defaults to 1. */
        expect_deployment(-1,
                          "\"observedGeneration\":3,\"replicas\":1,\"updatedReplicas\":1,"
                          "\"availableReplicas\":1",
                          1, "ready: 1 of 1 replicas updated and available");
}

static void test_deployment_spec_not_observed(void **state) {
        /* The counts describe the old spec: only the generation is named. */
        expect_deployment(2,
                          "\"observedGeneration\":1,\"replicas\":2,\"updatedReplicas\":2,"
                          "\"availableReplicas\":2",
                          0,
                          "not ready: the controller has not seen the current spec yet "
                          "(generation 2, observed 1)");
        /* No status at all yet (just created). */
        expect(rollout_check_deployment, "{\"metadata\":{\"generation\":1},\"spec\":{}}", 0,
               "not ready: the controller has not seen the current spec yet "
               "(generation 1, observed 0)");
}

static void test_deployment_scaled_to_zero(void **state) {
        expect_deployment(0, "\"observedGeneration\":2", 0, "not ready: scaled to 0 replicas");
}

static void test_deployment_not_updated(void **state) {
        expect_deployment(2,
                          "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":1,"
                          "\"availableReplicas\":2",
                          0, "not ready: 1 of 2 replicas updated; 1 old replica still running");
}

static void test_deployment_not_available(void **state) {
        /* Zero counts are left out by the API server. */
        expect_deployment(2, "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2", 0,
                          "not ready: 0 of 2 replicas available");
        expect_deployment(3,
                          "\"observedGeneration\":2,\"replicas\":3,\"updatedReplicas\":3,"
                          "\"availableReplicas\":2",
                          0, "not ready: 2 of 3 replicas available");
}

static void test_deployment_old_replicas_left(void **state) {
        /* Every wanted replica updated and available, but a surge pod of
         * the old ReplicaSet is still terminating. */
        expect_deployment(2,
                          "\"observedGeneration\":2,\"replicas\":4,\"updatedReplicas\":2,"
                          "\"availableReplicas\":2",
                          0, "not ready: 2 old replicas still running");
}

static void test_deployment_scaling_down(void **state) {
        expect_deployment(1,
                          "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,"
                          "\"availableReplicas\":2",
                          0, "not ready: 2 replicas for 1 wanted");
}

static void test_deployment_progress_deadline(void **state) {
        expect_deployment(2,
                          "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,"
                          "\"availableReplicas\":0,\"conditions\":[{\"type\":\"Available\","
                          "\"status\":\"False\",\"reason\":\"MinimumReplicasUnavailable\"},"
                          "{\"type\":\"Progressing\",\"status\":\"False\","
                          "\"reason\":\"ProgressDeadlineExceeded\"}]",
                          0, "not ready: progress deadline exceeded; 0 of 2 replicas available");
}

static void test_deployment_malformed(void **state) {
        _cleanup_json_ json_object *arr = parse("[]");
        char *summary = NULL;

        assert_int_equal(rollout_check_deployment(arr, &summary), -EBADMSG);
        assert_int_equal(rollout_check_daemonset(NULL, &summary), -EBADMSG);
        assert_null(summary);
        expect_deployment(2, "\"observedGeneration\":2,\"updatedReplicas\":\"2\"", -EBADMSG, NULL);
}

/* A DaemonSet of generation 5 with @status. */
static void expect_daemonset(const char *status, int want, const char *text) {
        _cleanup_free_ char *json = NULL;

        assert_true(asprintf(&json,
                             "{\"kind\":\"DaemonSet\",\"metadata\":{\"name\":\"ag\","
                             "\"generation\":5},\"spec\":{},\"status\":{%s}}",
                             status) >= 0);
        expect(rollout_check_daemonset, json, want, text);
}

static void test_daemonset_ready(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":3,"
                         "\"currentNumberScheduled\":3,\"updatedNumberScheduled\":3,"
                         "\"numberReady\":3,\"numberAvailable\":3",
                         1, "ready: 3 of 3 pods updated and ready");
}

static void test_daemonset_spec_not_observed(void **state) {
        expect_daemonset("\"observedGeneration\":4,\"desiredNumberScheduled\":3,"
                         "\"updatedNumberScheduled\":3,\"numberReady\":3",
                         0,
                         "not ready: the controller has not seen the current spec yet "
                         "(generation 5, observed 4)");
}

static void test_daemonset_no_nodes(void **state) {
        expect_daemonset("\"observedGeneration\":5", 0,
                         "not ready: no node to run on (desiredNumberScheduled is 0)");
}

static void test_daemonset_not_updated(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":3,"
                         "\"updatedNumberScheduled\":2,\"numberReady\":3",
                         0, "not ready: 2 of 3 pods updated");
}

static void test_daemonset_not_ready(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":3,"
                         "\"updatedNumberScheduled\":3,\"numberReady\":1",
                         0, "not ready: 1 of 3 pods ready");
        /* Every problem at once, in one line. */
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":2,"
                         "\"numberMisscheduled\":1",
                         0,
                         "not ready: 0 of 2 pods updated; 0 of 2 pods ready; 1 pod on nodes it "
                         "should not run on");
}

static void test_daemonset_misscheduled(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":2,"
                         "\"updatedNumberScheduled\":2,\"numberReady\":2,"
                         "\"numberMisscheduled\":2",
                         0, "not ready: 2 pods on nodes it should not run on");
}

static void test_daemonset_more_pods_than_nodes(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":2,"
                         "\"updatedNumberScheduled\":3,\"numberReady\":3",
                         0, "not ready: 3 pods updated and 3 ready for 2 nodes");
}

static void test_daemonset_malformed(void **state) {
        expect_daemonset("\"observedGeneration\":5,\"desiredNumberScheduled\":-1", -EBADMSG, NULL);
        expect_daemonset("\"observedGeneration\":5,\"numberReady\":1.5", -EBADMSG, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_deployment_ready),
                cmocka_unit_test(test_deployment_spec_not_observed),
                cmocka_unit_test(test_deployment_scaled_to_zero),
                cmocka_unit_test(test_deployment_not_updated),
                cmocka_unit_test(test_deployment_not_available),
                cmocka_unit_test(test_deployment_old_replicas_left),
                cmocka_unit_test(test_deployment_scaling_down),
                cmocka_unit_test(test_deployment_progress_deadline),
                cmocka_unit_test(test_deployment_malformed),
                cmocka_unit_test(test_daemonset_ready),
                cmocka_unit_test(test_daemonset_spec_not_observed),
                cmocka_unit_test(test_daemonset_no_nodes),
                cmocka_unit_test(test_daemonset_not_updated),
                cmocka_unit_test(test_daemonset_not_ready),
                cmocka_unit_test(test_daemonset_misscheduled),
                cmocka_unit_test(test_daemonset_more_pods_than_nodes),
                cmocka_unit_test(test_daemonset_malformed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
