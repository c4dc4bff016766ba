/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "err.h"

static void test_http_status_table(void **state) {
        static const struct {
                long status;
                const char *reason;
                int want;
        } cases[] = {
                {200, NULL, 0},
                {201, NULL, 0},
                {204, NULL, 0},
                {304, NULL, 0},
                {400, NULL, -EINVAL},
                {422, "Invalid", -EINVAL},
                {401, NULL, -EACCES},
                {403, "Forbidden", -EACCES},
                {404, "NotFound", -ENOENT},
                {409, "Conflict", -ESTALE},
                {409, NULL, -ESTALE},
                {409, "AlreadyExists", -EEXIST},
                {409, "BucketAlreadyOwnedByYou", -EEXIST},
                {412, "PreconditionFailed", -ESTALE},
                {410, NULL, -EGONE},
                {410, "Gone", -EGONE},
                {500, "Expired", -EGONE}, /* watch ERROR event reason */
                {200, "Expired", 0},
                {413, NULL, -EFBIG},
                {429, NULL, -EAGAIN},
                {500, NULL, -EAGAIN},
                {502, NULL, -EAGAIN},
                {503, "SlowDown", -EAGAIN},
                {504, NULL, -EAGAIN},
                {400, "SlowDown", -EAGAIN},
                {405, NULL, -EPROTO},
                {418, NULL, -EPROTO},
                {301, NULL, -EPROTO},
                {100, NULL, -EPROTO},
                {600, NULL, -EPROTO},
                {0, NULL, -EIO},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = err_from_http_status(cases[i].status, cases[i].reason);

                if (r != cases[i].want)
                        fail_msg("status %ld reason %s: got %s, want %s", cases[i].status,
                                 strna(cases[i].reason), err_name(r), err_name(cases[i].want));
        }
}

static void test_names(void **state) {
        assert_string_equal(err_name(-ENOENT), "ENOENT");
        assert_string_equal(err_name(ENOENT), "ENOENT");
        assert_string_equal(err_name(-EGONE), "EGONE");
        assert_string_equal(err_name(-ECONNREFUSED), "ECONNREFUSED");
        assert_string_equal(err_name(-EKEYREJECTED), "EKEYREJECTED");
        assert_string_equal(err_name(-EBADMSG), "EBADMSG");
        assert_string_equal(err_name(0), "OK");
        assert_string_equal(err_name(-99999), "EUNKNOWN");
        assert_non_null(err_name(-4095));
}

static void test_transient(void **state) {
        assert_true(err_is_transient(-EAGAIN));
        assert_true(err_is_transient(-ETIMEDOUT));
        assert_true(err_is_transient(-ECONNREFUSED));
        assert_true(err_is_transient(-ECONNRESET));
        assert_true(err_is_transient(-EHOSTUNREACH));
        assert_true(err_is_transient(-EIO));
        assert_false(err_is_transient(0));
        assert_false(err_is_transient(-ENOENT));
        assert_false(err_is_transient(-EGONE));
        assert_false(err_is_transient(-EACCES));
        assert_false(err_is_transient(-EKEYREJECTED));
        assert_false(err_is_transient(-EBADMSG));
        assert_false(err_is_transient(EAGAIN)); /* positive is not an error */
}

static void test_info(void **state) {
        err_info e;
        char big[2000];

        memset(&e, 0x5a, sizeof(e));
        err_info_clear(&e);
        assert_int_equal(e.http_status, 0);
        assert_int_equal(e.retry_after_sec, -1);
        assert_string_equal(e.reason, "");
        assert_string_equal(e.message, "");
        err_info_clear(NULL);

        e.http_status = 404;
        assert_int_equal(err_info_set(&e, -ENOENT, "no %s at line %u", "thing", 7u), -ENOENT);
        assert_string_equal(e.message, "no thing at line 7");
        assert_int_equal(e.http_status, 404); /* kept */
        assert_int_equal(err_info_set(NULL, -EIO, "ignored"), -EIO);

        /* Truncated, never overflowing. */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_int_equal(err_info_set(&e, -EINVAL, "%s", big), -EINVAL);
        assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_http_status_table),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_transient),
                cmocka_unit_test(test_info),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
