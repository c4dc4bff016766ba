/* SPDX-License-Identifier: Apache-2.0 */
/* Settings parsers: durations, booleans, bounded integers. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "macro.h"
#include "parse.h"

static void test_durations(void **state) {
        static const struct {
                const char *in;
                uint64_t usec;
        } ok[] = {
                {"0", 0},
                {"30", 30 * USEC_PER_SEC},
                {"30s", 30 * USEC_PER_SEC},
                {"250ms", 250 * USEC_PER_MSEC},
                {"2m5s", 125 * USEC_PER_SEC},
                {"1h30m", 5400 * USEC_PER_SEC},
                {"1h0m0s500ms", 3600 * USEC_PER_SEC + 500 * USEC_PER_MSEC},
        };
        static const char *const bad[] = {"", "s", "-1s", "1x", "1.5s", "1s ", " 1s", "ms", "1m-"};
        uint64_t v = 42;
        char buf[64];

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                assert_int_equal(parse_duration_usec(ok[i].in, &v), 0);
                assert_int_equal(v, ok[i].usec);
                /* format_duration() output parses back to the same value. */
                uint64_t back = 1;
                assert_int_equal(parse_duration_usec(format_duration(v, buf, sizeof(buf)), &back),
                                 0);
                assert_int_equal(back, v);
        }
        v = 42;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_duration_usec(bad[i], &v), -EINVAL);
        assert_int_equal(parse_duration_usec("99999999999999999999h", &v), -ERANGE);
        assert_int_equal(parse_duration_usec("9999999999999h", &v), -ERANGE);
        assert_int_equal(v, 42); /* untouched on failure */
        assert_string_equal(format_duration(90 * USEC_PER_SEC, buf, sizeof(buf)), "1m30s");
}

static void test_bools_and_uints(void **state) {
        bool b = false;
        uint64_t u = 7;

        assert_int_equal(parse_bool("TRUE", &b), 0);
        assert_true(b);
        assert_int_equal(parse_bool("off", &b), 0);
        assert_false(b);
        assert_int_equal(parse_bool("maybe", &b), -EINVAL);
        assert_int_equal(parse_bool(NULL, &b), -EINVAL);

        assert_int_equal(parse_uint("16", 1, 64, &u), 0);
        assert_int_equal(u, 16);
        assert_int_equal(parse_uint("0", 1, 64, &u), -ERANGE);
        assert_int_equal(parse_uint("65", 1, 64, &u), -ERANGE);
        assert_int_equal(parse_uint("-1", 0, 64, &u), -EINVAL);
        assert_int_equal(parse_uint("1e3", 0, 10000, &u), -EINVAL);
        assert_int_equal(parse_uint("99999999999999999999999", 0, UINT64_MAX, &u), -ERANGE);
        assert_int_equal(u, 16);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_bools_and_uints),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
