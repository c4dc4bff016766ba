/* SPDX-License-Identifier: Apache-2.0 */
/* The event recorder's limits: a burst of 3 per object and reason, refilled
 * at one per 5 minutes; other objects and reasons have buckets of their own. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>

#include "events.h"
#include "http.h"
#include "jsonx.h"
#include "loop.h"

static unsigned posts;

static void on_request(http_request *req, const http_request_opts *o, void *userdata) {
        static const char body[] = "{\"kind\":\"Event\"}";

        assert_string_equal(o->method, "POST");
        assert_non_null(strstr(o->url, "/api/v1/namespaces/ns/events"));
        posts++;
        assert_int_equal(http_fake_respond(req, 201, NULL), 0);
        assert_int_equal(http_fake_send(req, body, sizeof(body) - 1), 0);
        http_fake_finish(req, 0);
}

static json_object *object(const char *name, const char *uid) {
        char buf[256];

        snprintf(buf, sizeof(buf),
                 "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"kind\":\"ConfigBundle\","
                 "\"metadata\":{\"namespace\":\"ns\",\"name\":\"%s\",\"uid\":\"%s\"}}",
                 name, uid);
        return json_tokener_parse(buf);
}

/* A recorder posting through a fake API server that counts the posts. */
typedef struct fixture {
        sd_event *e;
        kube_client *k;
        recorder *r;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        http_client *http = NULL;
        kube_config cfg = {.server = (char *) "https://fake.invalid:6443",
                           .token = (char *) "t",
                           .namespace = (char *) "ns"};
        kube_client_opts o = {.qps = -1};

        assert_non_null(f);
        posts = 0;
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(http_client_new_fake(f->e, on_request, NULL, &http), 0);
        assert_int_equal(kube_client_new_with_http(f->e, http, &cfg, &o, &f->k), 0);
        assert_int_equal(recorder_new(f->k, "ballast-operator", "test", &f->r), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;

        recorder_free(f->r);
        kube_client_free(f->k);
        sd_event_unref(f->e);
        free(f);
        return 0;
}

static void test_per_object_limit(void **state) {
        fixture *f = *state;
        sd_event *e = f->e;
        recorder *r = f->r;
        _cleanup_json_ json_object *a = object("a", "u-a"), *b = object("b", "u-b");
        recorder_stats st;
        int posted = 0;

        for (int i = 0; i < 5; i++)
                posted += recorder_emit(r, a, "Normal", "NewRevision", "revision %d", i);
        assert_int_equal(posted, 3);
        /* Another reason, another object: their own buckets. */
        assert_int_equal(recorder_emit(r, a, "Warning", "PublishFailed", "x"), 1);
        assert_int_equal(recorder_emit(r, b, "Normal", "NewRevision", "y"), 1);
        for (int i = 0; i < 50 && posts < 5; i++)
                assert_true(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        recorder_get_stats(r, &st);
        assert_int_equal(st.posted, 5);
        assert_int_equal(st.dropped, 2);
        assert_int_equal(posts, 5);
}

/* An event the global limit drops doesn't spend the object's tokens. */
static void test_global_drops_cost_the_object_nothing(void **state) {
        fixture *f = *state;
        sd_event *e = f->e;
        recorder *r = f->r;
        _cleanup_json_ json_object *x = object("x", "u-x");
        recorder_stats st;
        int posted = 0;

        /* The global burst (10) goes to ten other objects. */
        for (int i = 0; i < 10; i++) {
                _cleanup_json_ json_object *other = NULL;
                char name[16], uid[16];

                snprintf(name, sizeof(name), "o%d", i);
                snprintf(uid, sizeof(uid), "u-o%d", i);
                other = object(name, uid);
                posted += recorder_emit(r, other, "Normal", "Published", "revision 1");
        }
        assert_int_equal(posted, 10);
        for (int i = 0; i < 3; i++)
                assert_int_equal(recorder_emit(r, x, "Normal", "Published", "dropped"), 0);
        /* ~4 global tokens later, x still has its whole burst of 3. */
        usleep(800 * 1000);
        assert_true(sd_event_run(e, 0) >= 0);
        posted = 0;
        for (int i = 0; i < 3; i++)
                posted += recorder_emit(r, x, "Normal", "Published", "kept %d", i);
        assert_int_equal(posted, 3);
        for (int i = 0; i < 50 && posts < 13; i++)
                assert_true(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        recorder_get_stats(r, &st);
        assert_int_equal(st.posted, 13);
        assert_int_equal(st.dropped, 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_per_object_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_global_drops_cost_the_object_nothing, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
