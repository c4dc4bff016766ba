/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backoff.h"
#include "macro.h"

#define MS  USEC_PER_MSEC
#define SEC USEC_PER_SEC

static void test_windows_double_to_cap(void **state) {
        backoff b = BACKOFF_INIT(800 * MS, 30 * SEC, 60 * SEC);
        uint64_t want = 800 * MS;

        for (unsigned i = 0; i < 100; i++) {
                uint64_t w = backoff_window(&b), d = backoff_next(&b, 1000 * SEC);

                assert_int_equal(w, MIN(want, 30 * SEC));
                assert_true(d <= w);
                want = MIN(want * 2, 30 * SEC);
        }
        /* 800 ms * 2^6 = 51.2 s > 30 s: the cap is reached and stays. */
        assert_int_equal(backoff_window(&b), 30 * SEC);
}

static void test_no_overflow(void **state) {
        backoff b = BACKOFF_INIT(UINT64_MAX / 3, UINT64_MAX, 0);

        b.jitter = false;
        assert_int_equal(backoff_next(&b, 1), UINT64_MAX / 3);
        assert_int_equal(backoff_next(&b, 1), (UINT64_MAX / 3) * 2);
        for (unsigned i = 0; i < 200; i++)
                assert_true(backoff_next(&b, 1) >= (UINT64_MAX / 3) * 2);

        /* Base 1 us, cap huge: 2^attempt must not wrap to 0. */
        b = BACKOFF_INIT(1, UINT64_MAX, 0);
        b.jitter = false;
        for (unsigned i = 0; i < 100; i++) {
                uint64_t d = backoff_next(&b, 1);

                assert_true(d >= 1);
                if (i < 63)
                        assert_int_equal(d, UINT64_C(1) << i);
        }
}

static void test_no_jitter_returns_window(void **state) {
        backoff b = BACKOFF_INIT(100, 1000, 0);

        b.jitter = false;
        assert_int_equal(backoff_next(&b, 0), 100);
        assert_int_equal(backoff_next(&b, 0), 200);
        assert_int_equal(backoff_next(&b, 0), 400);
        assert_int_equal(backoff_next(&b, 0), 800);
        assert_int_equal(backoff_next(&b, 0), 1000);
        assert_int_equal(backoff_next(&b, 0), 1000);
        backoff_reset(&b);
        assert_int_equal(backoff_next(&b, 0), 100);
}

static void test_jitter_spread(void **state) {
        backoff b = BACKOFF_INIT(10 * SEC, 10 * SEC, 0);
        const uint64_t w = 10 * SEC;
        unsigned buckets[10] = {};
        double sum = 0;
        const unsigned n = 10000;

        for (unsigned i = 0; i < n; i++) {
                uint64_t d = backoff_next(&b, 0);

                assert_true(d <= w);
                sum += (double) d;
                buckets[MIN(d * 10 / w, (uint64_t) 9)]++;
        }
        /* Uniform on [0, w]: mean w/2, sd of the mean w/sqrt(12 n) ~ 0.3% of
         * w; 3% is > 10 sigma. */
        assert_true(sum / n > 0.47 * (double) w);
        assert_true(sum / n < 0.53 * (double) w);
        /* Every tenth of the window is hit about n/10 times. */
        for (unsigned i = 0; i < 10; i++)
                assert_in_range(buckets[i], n / 10 * 7 / 10, n / 10 * 13 / 10);
}

static void test_reset_after_health(void **state) {
        backoff b = BACKOFF_INIT(1 * SEC, 64 * SEC, 60 * SEC);

        b.jitter = false;
        assert_int_equal(backoff_next(&b, 0), 1 * SEC);
        assert_int_equal(backoff_next(&b, 1 * SEC), 2 * SEC);
        assert_int_equal(backoff_next(&b, 3 * SEC), 4 * SEC);

        /* Healthy for a short while only: the incident goes on. */
        backoff_success(&b, 10 * SEC);
        backoff_success(&b, 20 * SEC); /* doesn't restart the healthy period */
        assert_int_equal(backoff_next(&b, 30 * SEC), 8 * SEC);

        /* Healthy for long enough: start again from the base. */
        backoff_success(&b, 40 * SEC);
        assert_int_equal(backoff_next(&b, 100 * SEC), 1 * SEC);
        assert_int_equal(backoff_next(&b, 101 * SEC), 2 * SEC);

        /* reset_after 0: any success resets. */
        b = BACKOFF_INIT(1 * SEC, 64 * SEC, 0);
        b.jitter = false;
        backoff_next(&b, 0);
        backoff_next(&b, 0);
        backoff_success(&b, 5);
        assert_int_equal(backoff_next(&b, 5), 1 * SEC);

        /* Success at time 0 counts too. */
        b = BACKOFF_INIT(1 * SEC, 64 * SEC, 10);
        b.jitter = false;
        backoff_next(&b, 0);
        backoff_success(&b, 0);
        assert_int_equal(backoff_next(&b, 20), 1 * SEC);
}

static void test_random_below(void **state) {
        unsigned seen[3] = {};

        assert_int_equal(random_u64_below(0), 0);
        for (unsigned i = 0; i < 3000; i++) {
                uint64_t x = random_u64_below(2);

                assert_true(x <= 2);
                seen[x]++;
        }
        for (unsigned i = 0; i < 3; i++)
                assert_in_range(seen[i], 800, 1200);

        /* Upper half of a range just above 2^63 is reachable (no modulo
         * shortcut that would skew it). */
        {
                uint64_t max = (UINT64_C(1) << 63) + 12345, hi = 0;

                for (unsigned i = 0; i < 200; i++) {
                        uint64_t x = random_u64_below(max);

                        assert_true(x <= max);
                        hi += x > max / 2;
                }
                assert_in_range(hi, 60, 140);
        }
        (void) random_u64_below(UINT64_MAX);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_windows_double_to_cap),
                cmocka_unit_test(test_no_overflow),
                cmocka_unit_test(test_no_jitter_returns_window),
                cmocka_unit_test(test_jitter_spread),
                cmocka_unit_test(test_reset_after_health),
                cmocka_unit_test(test_random_below),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
