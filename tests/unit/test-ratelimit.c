/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "macro.h"
#include "ratelimit.h"

static void test_burst_then_rate(void **state) {
        ratelimit rl;
        uint64_t now = 1000 * USEC_PER_SEC, wait;

        ratelimit_init(&rl, 5, 10, now);
        for (unsigned i = 0; i < 10; i++)
                assert_int_equal(ratelimit_take(&rl, now), 0);
        /* Empty: one token every 200 ms. */
        wait = ratelimit_take(&rl, now);
        assert_in_range(wait, 199 * USEC_PER_MSEC, 200 * USEC_PER_MSEC);
        assert_int_not_equal(ratelimit_take(&rl, now + wait - 1000), 0);
        assert_int_equal(ratelimit_take(&rl, now + wait), 0);
        assert_int_not_equal(ratelimit_take(&rl, now + wait), 0);
}

static void test_steady_rate(void **state) {
        ratelimit rl;
        uint64_t now = 0;
        unsigned taken = 0;

        /* Over 10 s at 10 qps with burst 1, a greedy caller gets ~100. */
        ratelimit_init(&rl, 10, 1, now);
        while (now <= 10 * USEC_PER_SEC) {
                uint64_t w = ratelimit_take(&rl, now);

                if (w == 0) {
                        taken++;
                        continue;
                }
                now += w;
        }
        assert_in_range(taken, 100, 102);
}

static void test_refill_caps_at_burst(void **state) {
        ratelimit rl;
        unsigned got = 0;

        ratelimit_init(&rl, 100, 3, 0);
        /* A long idle period refills at most @burst tokens. */
        while (ratelimit_take(&rl, 3600 * USEC_PER_SEC) == 0)
                got++;
        assert_int_equal(got, 3);
}

static void test_disabled_and_clock_backwards(void **state) {
        ratelimit rl;

        ratelimit_init(&rl, 0, 1, 0);
        for (unsigned i = 0; i < 1000; i++)
                assert_int_equal(ratelimit_take(&rl, 0), 0);

        ratelimit_init(&rl, 1, 1, 10 * USEC_PER_SEC);
        assert_int_equal(ratelimit_take(&rl, 10 * USEC_PER_SEC), 0);
        /* Time going backwards adds no tokens. */
        assert_true(ratelimit_take(&rl, 5 * USEC_PER_SEC) > 0);
        assert_true(ratelimit_take(&rl, 10 * USEC_PER_SEC) > 0);
        assert_int_equal(ratelimit_take(&rl, 11 * USEC_PER_SEC), 0);

        /* Burst 0 behaves as 1. */
        ratelimit_init(&rl, 1, 0, 0);
        assert_int_equal(ratelimit_take(&rl, 0), 0);
        assert_true(ratelimit_take(&rl, 0) > 0);
}

static void test_reserve_borrows_from_the_future(void **state) {
        ratelimit rl;
        uint64_t t = 1000000;

        ratelimit_init(&rl, 10, 1, t);
        assert_int_equal(ratelimit_reserve(&rl, t), 0);
        /* Each further reservation waits 100 ms more than the one before. */
        uint64_t a = ratelimit_reserve(&rl, t), b = ratelimit_reserve(&rl, t);
        assert_true(a >= 100000 && a <= 100001);
        assert_true(b >= 200000 && b <= 200001);
        /* Time pays the debt back: after 300 ms one token is free again. */
        assert_int_equal(ratelimit_reserve(&rl, t + 300000), 0);
        /* Without a limit nothing ever waits. */
        ratelimit_init(&rl, 0, 1, t);
        for (int i = 0; i < 10; i++)
                assert_int_equal(ratelimit_reserve(&rl, t), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reserve_borrows_from_the_future),
                cmocka_unit_test(test_burst_then_rate),
                cmocka_unit_test(test_steady_rate),
                cmocka_unit_test(test_refill_caps_at_burst),
                cmocka_unit_test(test_disabled_and_clock_backwards),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
