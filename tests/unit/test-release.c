/* SPDX-License-Identifier: Apache-2.0 */
/* `ballast-operator check-release` against a fake API server: which objects
 * it reads and where, how long it keeps checking, which failures end it at
 * once, and the one line per object it prints. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "loop.h"
#include "release.h"

static const char *const json_headers[] = {"Content-Type: application/json", NULL};

/* How the fake API server answers for one object. */
typedef struct object {
        const char *path;    /* the URL's path */
        unsigned gets;       /* GETs seen */
        unsigned ready_from; /* the first GET that finds it ready (0: never) */
        unsigned fail_first; /* the first GETs answered with fail_status */
        long fail_status;
        const char *ready, *not_ready; /* bodies */
} object;

typedef struct server {
        object deployment, daemonset;
        unsigned others; /* requests for anything else */
} server;

static void answer(http_request *req, long status, const char *body) {
        assert_int_equal(http_fake_respond(req, status, json_headers), 0);
        (void) http_fake_send(req, body, strlen(body));
        http_fake_finish(req, 0);
}

static void answer_object(http_request *req, object *o) {
        unsigned n = ++o->gets;

        if (n <= o->fail_first && o->fail_status == 404)
                answer(req, 404,
                       "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
                       "\"message\":\"not found\",\"code\":404}");
        else if (n <= o->fail_first)
                answer(req, o->fail_status,
                       "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Forbidden\","
                       "\"message\":\"cannot get resource\",\"code\":403}");
        else
                answer(req, 200, o->ready_from && n >= o->ready_from ? o->ready : o->not_ready);
}

static void on_request(http_request *req, const http_request_opts *o, void *userdata) {
        server *srv = userdata;

        assert_string_equal(o->method, "GET");
        if (strstr(o->url, srv->deployment.path))
                answer_object(req, &srv->deployment);
        else if (strstr(o->url, srv->daemonset.path))
                answer_object(req, &srv->daemonset);
        else {
                srv->others++;
                answer(req, 404, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}");
        }
}

typedef struct fixture {
        sd_event *e;
        kube_client *k;
        server srv;
        FILE *out;
        char *text;
        size_t len;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        http_client *http = NULL;
        kube_config cfg = {.server = (char *) "https://fake.invalid:6443",
                           .token = (char *) "t",
                           .namespace = (char *) "home"};
        kube_client_opts ko = {.qps = -1};

        assert_non_null(f);
        f->srv = (server){
                .deployment = {.path = "/apis/apps/v1/namespaces/rel/deployments/op",
                               .ready_from = 1,
                               .ready = "{\"metadata\":{\"name\":\"op\",\"generation\":1},"
                                        "\"spec\":{\"replicas\":2},\"status\":{"
                                        "\"observedGeneration\":1,\"replicas\":2,"
                                        "\"updatedReplicas\":2,\"availableReplicas\":2}}",
                               .not_ready = "{\"metadata\":{\"name\":\"op\",\"generation\":1},"
                                            "\"spec\":{\"replicas\":2},\"status\":{"
                                            "\"observedGeneration\":1,\"replicas\":2,"
                                            "\"updatedReplicas\":2,\"availableReplicas\":1}}"},
                .daemonset = {.path = "/apis/apps/v1/namespaces/rel/daemonsets/ag",
                              .ready_from = 1,
                              .ready = "{\"metadata\":{\"name\":\"ag\",\"generation\":4},"
                                       "\"status\":{\"observedGeneration\":4,"
                                       "\"desiredNumberScheduled\":3,"
                                       "\"updatedNumberScheduled\":3,\"numberReady\":3}}",
                              .not_ready = "{\"metadata\":{\"name\":\"ag\",\"generation\":4},"
                                           "\"status\":{\"observedGeneration\":4,"
                                           "\"desiredNumberScheduled\":3,"
                                           "\"updatedNumberScheduled\":3,\"numberReady\":2}}"},
        };
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(http_client_new_fake(f->e, on_request, &f->srv, &http), 0);
        assert_int_equal(kube_client_new_with_http(f->e, http, &cfg, &ko, &f->k), 0);
        f->out = open_memstream(&f->text, &f->len);
        assert_non_null(f->out);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;

        fclose(f->out);
        free(f->text);
        kube_client_free(f->k);
        sd_event_unref(f->e);
        free(f);
        return 0;
}

/* Runs the check of "op" and "ag" in "rel" for @timeout_usec, checking every
 * 10 ms; returns its result and leaves what it printed in f->text. */
static int run(fixture *f, uint64_t timeout_usec) {
        check_settings s = {
                .namespace = (char *) "rel",
                .deployment = (char *) "op",
                .daemonset = (char *) "ag",
                .timeout_usec = timeout_usec,
        };
        int r = release_check(f->k, &s, 10 * USEC_PER_MSEC, f->out);

        fflush(f->out);
        return r;
}

static void test_healthy_release_passes_at_once(void **state) {
        fixture *f = *state;

        assert_int_equal(run(f, 5 * USEC_PER_SEC), 0);
        assert_int_equal(f->srv.deployment.gets, 1);
        assert_int_equal(f->srv.daemonset.gets, 1);
        assert_int_equal(f->srv.others, 0);
        assert_string_equal(f->text,
                            "Deployment rel/op: ready: 2 of 2 replicas updated and available\n"
                            "DaemonSet rel/ag: ready: 3 of 3 pods updated and ready\n");
}

static void test_waits_for_the_rollout(void **state) {
        fixture *f = *state;

        f->srv.deployment.ready_from = 2;
        f->srv.daemonset.ready_from = 4;
        assert_int_equal(run(f, 5 * USEC_PER_SEC), 0);
        /* Both are read until both are ready at the same check. */
        assert_int_equal(f->srv.deployment.gets, 4);
        assert_int_equal(f->srv.daemonset.gets, 4);
        assert_string_equal(f->text,
                            "Deployment rel/op: ready: 2 of 2 replicas updated and available\n"
                            "DaemonSet rel/ag: ready: 3 of 3 pods updated and ready\n");
}

static void test_not_ready_in_time_says_why(void **state) {
        fixture *f = *state;
        uint64_t start = loop_now(f->e);

        f->srv.daemonset.ready_from = 0;
        assert_int_equal(run(f, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        /* Checked again until the deadline, and once at it. */
        assert_in_range(loop_now(f->e) - start, 100 * USEC_PER_MSEC, 2 * USEC_PER_SEC);
        assert_true(f->srv.daemonset.gets >= 3);
        assert_string_equal(f->text,
                            "Deployment rel/op: ready: 2 of 2 replicas updated and available\n"
                            "DaemonSet rel/ag: not ready: 2 of 3 pods ready\n");
}

static void test_timeout_zero_checks_once(void **state) {
        fixture *f = *state;

        f->srv.deployment.ready_from = 2;
        assert_int_equal(run(f, 0), -ETIMEDOUT);
        assert_int_equal(f->srv.deployment.gets, 1);
        assert_int_equal(f->srv.daemonset.gets, 1);
        assert_string_equal(f->text, "Deployment rel/op: not ready: 1 of 2 replicas available\n"
                                     "DaemonSet rel/ag: ready: 3 of 3 pods updated and ready\n");
}

static void test_missing_object_fails_at_once(void **state) {
        fixture *f = *state;

        f->srv.deployment.fail_first = 100;
        f->srv.deployment.fail_status = 404;
        assert_int_equal(run(f, 5 * USEC_PER_SEC), -ENOENT);
        assert_int_equal(f->srv.deployment.gets, 1);
        assert_string_equal(f->text, "Deployment rel/op: cannot read it: not found (ENOENT)\n"
                                     "DaemonSet rel/ag: ready: 3 of 3 pods updated and ready\n");
}

static void test_forbidden_is_checked_again(void **state) {
        fixture *f = *state;

        /* RBAC made a moment before the test pod may not be in force yet. */
        f->srv.daemonset.fail_first = 2;
        f->srv.daemonset.fail_status = 403;
        assert_int_equal(run(f, 5 * USEC_PER_SEC), 0);
        assert_int_equal(f->srv.daemonset.gets, 3);
}

static void test_lasting_forbidden_fails_with_the_servers_words(void **state) {
        fixture *f = *state;

        f->srv.daemonset.fail_first = 100;
        f->srv.daemonset.fail_status = 403;
        assert_int_equal(run(f, 50 * USEC_PER_MSEC), -EACCES);
        assert_true(f->srv.daemonset.gets >= 2);
        assert_string_equal(f->text,
                            "Deployment rel/op: ready: 2 of 2 replicas updated and available\n"
                            "DaemonSet rel/ag: cannot read it: cannot get resource (EACCES)\n");
}

static void test_malformed_object_fails_at_once(void **state) {
        fixture *f = *state;

        f->srv.deployment.ready = "{\"spec\":{\"replicas\":\"two\"}}";
        assert_int_equal(run(f, 5 * USEC_PER_SEC), -EBADMSG);
        assert_int_equal(f->srv.deployment.gets, 1);
        assert_non_null(strstr(f->text, "Deployment rel/op: malformed: "));
}

static void test_only_what_is_named_in_the_clients_namespace(void **state) {
        fixture *f = *state;
        check_settings s = {.daemonset = (char *) "ag", .timeout_usec = 0};

        f->srv.daemonset.path = "/apis/apps/v1/namespaces/home/daemonsets/ag";
        assert_int_equal(release_check(f->k, &s, 10 * USEC_PER_MSEC, f->out), 0);
        fflush(f->out);
        assert_int_equal(f->srv.deployment.gets, 0);
        assert_int_equal(f->srv.daemonset.gets, 1);
        assert_string_equal(f->text, "DaemonSet home/ag: ready: 3 of 3 pods updated and ready\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_healthy_release_passes_at_once, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_waits_for_the_rollout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_ready_in_time_says_why, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout_zero_checks_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_object_fails_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forbidden_is_checked_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lasting_forbidden_fails_with_the_servers_words,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed_object_fails_at_once, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_only_what_is_named_in_the_clients_namespace,
                                                setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
