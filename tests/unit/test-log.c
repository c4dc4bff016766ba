/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "fsx.h"
#include "jsonx.h"
#include "log.h"

/* Runs @fn with stdout (or stderr) sent to a temporary file and returns what
 * was written. */
static char *capture(int which, void (*fn)(void)) {
        char path[] = "/tmp/test-log-XXXXXX";
        int fd = mkstemp(path), saved = dup(which);
        char *out = NULL;

        assert_true(fd >= 0);
        fflush(NULL);
        assert_true(dup2(fd, which) >= 0);
        fn();
        assert_true(dup2(saved, which) >= 0);
        close(saved);
        close(fd);
        assert_int_equal(fsx_read_file(AT_FDCWD, path, 1 << 20, &out, NULL), 0);
        unlink(path);
        return out;
}

static json_object *parse_line(const char *s) {
        json_object *o = NULL;
        const char *nl = strchr(s, '\n');
        err_info e;

        assert_non_null(nl);
        assert_int_equal(jsonx_parse(s, (size_t) (nl - s), &o, &e), 0);
        return o;
}

static int returned, errno_after;

static void emit_error(void) {
        errno = EPERM;
        returned = log_error_errno(-ECONNREFUSED, "Failed to reach \"%s\": %m", "api/\x01\xff");
        errno_after = errno;
}

static void test_json_line(void **state) {
        _cleanup_free_ char *out = NULL;
        _cleanup_json_ json_object *o = NULL;
        const char *ts;

        log_setup("test", LOG_DEBUG, LOG_TARGET_JSON);
        out = capture(STDOUT_FILENO, emit_error);
        assert_int_equal(returned, -ECONNREFUSED);
        o = parse_line(out);
        assert_string_equal(jsonx_get_string(o, "level"), "error");
        assert_string_equal(jsonx_get_string(o, "msg"),
                            "Failed to reach \"api/\x01\xef\xbf\xbd\": Connection refused");
        assert_string_equal(jsonx_get_string(o, "error"), "ECONNREFUSED");
        assert_int_equal(jsonx_get_int(o, "errno", 0), ECONNREFUSED);
        assert_true(startswith(jsonx_get_string(o, "src"), "test-log.c:"));
        ts = jsonx_get_string(o, "ts");
        /* 2026-11-22T21:45:43.123Z */
        assert_int_equal(strlen(ts), 24);
        assert_int_equal(ts[10], 'T');
        assert_int_equal(ts[19], '.');
        assert_int_equal(ts[23], 'Z');
        /* errno is preserved for the caller. */
        assert_int_equal(errno_after, EPERM);
}

static void emit_object(void) {
        returned = log_object_warning_errno(-EAGAIN, "prod/web", "Retrying %s", "later");
}

static void test_object_fields(void **state) {
        _cleanup_free_ char *out = NULL, *next = NULL;
        _cleanup_json_ json_object *o = NULL, *p = NULL;

        log_setup("test", LOG_DEBUG, LOG_TARGET_JSON);
        out = capture(STDOUT_FILENO, emit_object);
        assert_int_equal(returned, -EAGAIN);
        o = parse_line(out);
        assert_string_equal(jsonx_get_string(o, "namespace"), "prod");
        assert_string_equal(jsonx_get_string(o, "name"), "web");
        assert_string_equal(jsonx_get_string(o, "msg"), "Retrying later");
        assert_string_equal(jsonx_get_string(o, "error"), "EAGAIN");
        /* The object is not sticky: the next line has none. */
        next = capture(STDOUT_FILENO, emit_error);
        p = parse_line(next);
        assert_null(jsonx_get(p, "namespace"));
        assert_null(jsonx_get(p, "name"));
}

static void emit_levels(void) {
        log_debug("hidden");
        log_info("shown %d", 1);
        log_warning("shown %d", 2);
        returned = log_info("no error");
}

static void test_levels(void **state) {
        _cleanup_free_ char *out = NULL;
        _cleanup_json_ json_object *o = NULL;

        log_setup("test", LOG_WARNING, LOG_TARGET_JSON);
        assert_int_equal(log_get_max_level(), LOG_WARNING);
        out = capture(STDOUT_FILENO, emit_levels);
        assert_int_equal(returned, 0);
        o = parse_line(out);
        assert_string_equal(jsonx_get_string(o, "msg"), "shown 2");
        assert_string_equal(jsonx_get_string(o, "level"), "warning");
        assert_null(jsonx_get(o, "error"));
        assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* exactly one line */

        assert_int_equal(log_level_from_string("debug"), LOG_DEBUG);
        assert_int_equal(log_level_from_string("INFO"), LOG_INFO);
        assert_int_equal(log_level_from_string("warning"), LOG_WARNING);
        assert_int_equal(log_level_from_string("error"), LOG_ERR);
        assert_int_equal(log_level_from_string("3"), LOG_ERR);
        assert_int_equal(log_level_from_string("verbose"), -EINVAL);
        assert_int_equal(log_level_from_string("8"), -EINVAL);
        assert_int_equal(log_level_from_string(""), -EINVAL);
        assert_int_equal(log_level_from_string(NULL), -EINVAL);
}

static void emit_long(void) {
        char big[5000];

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        log_info("%s|%m", big);
}

static void test_long_message(void **state) {
        _cleanup_free_ char *out = NULL;
        _cleanup_json_ json_object *o = NULL;

        log_setup("test", LOG_INFO, LOG_TARGET_JSON);
        out = capture(STDOUT_FILENO, emit_long);
        o = parse_line(out);
        assert_int_equal(strlen(jsonx_get_string(o, "msg")), 4999 + 1 + strlen(strerror(errno)));
}

static void emit_console(void) {
        returned = log_warning_errno(EIO, "disk said %m");
}

static void test_console_and_auto(void **state) {
        _cleanup_free_ char *out = NULL;
        _cleanup_free_ char *auto_out = NULL;

        log_setup("ballast-agent", LOG_INFO, LOG_TARGET_CONSOLE);
        out = capture(STDERR_FILENO, emit_console);
        assert_string_equal(out, "ballast-agent: disk said Input/output error\n");
        assert_int_equal(returned, -EIO);

        /* AUTO with a JOURNAL_STREAM that isn't ours: JSON on stdout. */
        setenv("JOURNAL_STREAM", "1:1", 1);
        log_setup("t", LOG_INFO, LOG_TARGET_AUTO);
        auto_out = capture(STDOUT_FILENO, emit_levels);
        assert_non_null(strstr(auto_out, "\"msg\":\"shown 1\""));
        unsetenv("JOURNAL_STREAM");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_line),        cmocka_unit_test(test_object_fields),
                cmocka_unit_test(test_levels),           cmocka_unit_test(test_long_message),
                cmocka_unit_test(test_console_and_auto),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
