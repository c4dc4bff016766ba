/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "loop.h"

typedef struct timer_ctx {
        unsigned fired;
        uint64_t at;
        bool done;
        sd_event_source **self;
        sd_event *e;
        unsigned rearm; /* re-arm this many times from the callback */
} timer_ctx;

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        timer_ctx *t = userdata;

        t->fired++;
        t->at = loop_now(sd_event_source_get_event(s));
        if (t->rearm > 0) {
                t->rearm--;
                assert_int_equal(loop_timer_arm(t->e, t->self, 10 * USEC_PER_MSEC, on_timer, t), 0);
                return 0;
        }
        t->done = true;
        return 0;
}

static void test_timer_fires(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *s = NULL;
        timer_ctx t = {.self = &s};
        uint64_t t0;

        assert_int_equal(sd_event_new(&e), 0);
        t.e = e;
        t0 = loop_now(e);
        assert_int_equal(loop_timer_arm(e, &s, 50 * USEC_PER_MSEC, on_timer, &t), 0);
        assert_non_null(s);
        assert_int_equal(loop_run_until(e, &t.done, 2 * USEC_PER_SEC), 0);
        assert_int_equal(t.fired, 1);
        assert_true(t.at - t0 >= 50 * USEC_PER_MSEC);
        assert_true(t.at - t0 < 1 * USEC_PER_SEC);

        /* Re-armed (same source), including from its own callback. */
        t.done = false;
        t.rearm = 2;
        assert_int_equal(loop_timer_arm(e, &s, 10 * USEC_PER_MSEC, on_timer, &t), 0);
        assert_int_equal(loop_run_until(e, &t.done, 2 * USEC_PER_SEC), 0);
        assert_int_equal(t.fired, 4);
}

static void test_disarm(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *s = NULL;
        timer_ctx t = {};
        bool never = false;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(loop_timer_arm(e, &s, 10 * USEC_PER_MSEC, on_timer, &t), 0);
        loop_timer_disarm(s);
        loop_timer_disarm(NULL);
        assert_int_equal(loop_run_until(e, &never, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_int_equal(t.fired, 0);
}

static void test_run_until_timeout(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        bool done = false;
        uint64_t t0, t1;

        assert_int_equal(sd_event_new(&e), 0);
        t0 = loop_now(NULL);
        assert_int_equal(loop_run_until(e, &done, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        t1 = loop_now(NULL);
        assert_true(t1 - t0 >= 100 * USEC_PER_MSEC);
        assert_true(t1 - t0 < 1 * USEC_PER_SEC);

        done = true;
        assert_int_equal(loop_run_until(e, &done, 0), 0);
        assert_int_equal(loop_run_until(NULL, &done, 0), -EINVAL);

        /* The loop was told to exit: no hang. */
        done = false;
        assert_int_equal(sd_event_exit(e, 0), 0);
        assert_true(loop_run_until(e, &done, 0) < 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_timer_fires),
                cmocka_unit_test(test_disarm),
                cmocka_unit_test(test_run_until_timeout),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
