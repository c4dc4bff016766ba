/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's settings table: precedence (flag > environment > file >
 * default) and usage errors, for the daemon and for check-release, which
 * share the table's parser. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <syslog.h>
#include <unistd.h>

#include "settings.h"

static const char *const ENV[] = {"KUBECONFIG", "POD_NAMESPACE", "POD_NAME", "BALLAST_LOG_LEVEL",
                                  "BALLAST_OBJECT_STORE"};

static int clear_env(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(ENV); i++)
                unsetenv(ENV[i]);
        return 0;
}

/* argv from a NULL-terminated list; getopt permutes it, so a fresh copy. */
#define ARGV(...)   ((char *[]){__VA_ARGS__, NULL})
#define ARGC(argv_) ((int) count_args(argv_))

static size_t count_args(char **argv) {
        size_t n = 0;

        while (argv[n])
                n++;
        return n;
}

/* ---- check-release -------------------------------------------------------- */

static void test_check_takes_every_flag(void **state) {
        _cleanup_(check_settings_freep) check_settings *s = NULL;
        char **argv =
                ARGV("check-release", "--kubeconfig=/k", "--context=c", "--namespace=rel",
                     "--deployment", "bal-operator", "--daemonset=bal-agent", "--timeout=1m30s");
        err_info e;

        err_info_clear(&e);
        assert_int_equal(check_settings_load(ARGC(argv), argv, &s, &e), 1);
        assert_string_equal(s->kubeconfig, "/k");
        assert_string_equal(s->kube_context, "c");
        assert_string_equal(s->namespace, "rel");
        assert_string_equal(s->deployment, "bal-operator");
        assert_string_equal(s->daemonset, "bal-agent");
        assert_int_equal(s->timeout_usec, 90 * USEC_PER_SEC);
}

static void test_check_defaults_and_environment(void **state) {
        _cleanup_(check_settings_freep) check_settings *s = NULL, *t = NULL;
        char **argv = ARGV("check-release", "--daemonset=ag");
        char **argv2 = ARGV("check-release", "--deployment=op", "--namespace=flag", "--timeout=0s");

        /* Neither flag nor variable: in-cluster, the credentials' namespace,
         * a minute; only what was named is checked. */
        assert_int_equal(check_settings_load(ARGC(argv), argv, &s, NULL), 1);
        assert_null(s->kubeconfig);
        assert_null(s->kube_context);
        assert_null(s->namespace);
        assert_null(s->deployment);
        assert_string_equal(s->daemonset, "ag");
        assert_int_equal(s->timeout_usec, 60 * USEC_PER_SEC);

        /* The environment counts, and a flag beats it. */
        setenv("POD_NAMESPACE", "env", 1);
        setenv("KUBECONFIG", "/env/kubeconfig", 1);
        assert_int_equal(check_settings_load(ARGC(argv2), argv2, &t, NULL), 1);
        assert_string_equal(t->namespace, "flag");
        assert_string_equal(t->kubeconfig, "/env/kubeconfig");
        assert_int_equal(t->timeout_usec, 0);
        clear_env(NULL);
}

static void test_check_usage_errors(void **state) {
        static const struct {
                const char *args[4];
                const char *message;
        } cases[] = {
                {{NULL}, "nothing to check: name --deployment, --daemonset or both"},
                {{"--namespace=ns"}, "nothing to check"},
                {{"--deployment"}, "option --deployment needs a value"},
                {{"--daemonset=ag", "--bogus"}, "unknown option '--bogus'"},
                {{"--daemonset=ag", "--timeout=soon"}, "--timeout: invalid value 'soon'"},
                {{"--daemonset=ag", "--timeout=-1s"}, "--timeout: invalid value '-1s'"},
                {{"--daemonset=ag", "extra"}, "unexpected argument 'extra'"},
                {{"--deployment="}, "--deployment and --daemonset need a name"},
                {{"--deployment=op", "--daemonset="}, "need a name"},
                /* The daemon's own options are not the subcommand's. */
                {{"--deployment=op", "--config=/etc/x.yaml"}, "unknown option '--config"},
                {{"--deployment=op", "--leader-elect=false"}, "unknown option '--leader-elect"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                check_settings *s = NULL;
                char *argv[6] = {(char *) "check-release"};
                int argc = 1;
                err_info e;

                for (size_t j = 0; j < ELEMENTSOF(cases[i].args) && cases[i].args[j]; j++)
                        argv[argc++] = (char *) cases[i].args[j];
                err_info_clear(&e);
                assert_int_equal(check_settings_load(argc, argv, &s, &e), -EINVAL);
                assert_null(s);
                if (!strstr(e.message, cases[i].message))
                        fail_msg("case %zu: '%s' has no '%s'", i, e.message, cases[i].message);
        }
}

static void test_check_help_runs_nothing(void **state) {
        check_settings *s = NULL;
        char **argv = ARGV("check-release", "--help");
        char **argv2 = ARGV("check-release", "--version");

        assert_int_equal(check_settings_load(ARGC(argv), argv, &s, NULL), 0);
        assert_int_equal(check_settings_load(ARGC(argv2), argv2, &s, NULL), 0);
        assert_null(s);
}

/* ---- the daemon ------------------------------------------------------------ */

static void test_operator_precedence(void **state) {
        _cleanup_(settings_freep) settings *s = NULL;
        char path[] = "/tmp/ballast-test-settings.XXXXXX";
        _cleanup_free_ char *config = NULL;
        static const char yaml[] = "workers: 8\nlogLevel: warning\nnamespace: file-ns\n"
                                   "leaderElection:\n  leaseName: file-lease\n";
        char **argv;
        int fd;

        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t) sizeof(yaml) - 1);
        close(fd);
        assert_true(asprintf(&config, "--config=%s", path) >= 0);
        argv = ARGV("ballast-operator", config, "--workers=2");
        setenv("BALLAST_LOG_LEVEL", "debug", 1);

        assert_int_equal(settings_load(ARGC(argv), argv, &s, NULL), 1);
        unlink(path);
        clear_env(NULL);
        assert_int_equal(s->workers, 2);              /* flag > file */
        assert_int_equal(s->log_level, LOG_DEBUG);    /* environment > file */
        assert_string_equal(s->namespace, "file-ns"); /* file > default */
        assert_string_equal(s->lease_name, "file-lease");
        assert_true(s->leader_elect); /* default */
        assert_int_equal(s->lease_duration_usec, 15 * USEC_PER_SEC);
        assert_string_equal(s->health_addr, ":8081");
}

static void test_operator_usage_errors(void **state) {
        static const struct {
                const char *arg;
                const char *message;
        } cases[] = {
                {"--workers=0", "--workers: '0' is not a number in 1..256"},
                {"--kube-qps=fast", "--kube-qps: invalid value 'fast'"},
                {"--bogus", "unknown option '--bogus'"},
                {"--namespace", "option --namespace needs a value"},
                {"--renew-deadline=20s", "retry-period < renew-deadline < lease-duration"},
                /* The subcommand is only a subcommand as the first argument. */
                {"check-release", "unexpected argument 'check-release'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                settings *s = NULL;
                char *argv[] = {(char *) "ballast-operator", (char *) cases[i].arg, NULL};
                err_info e;

                err_info_clear(&e);
                assert_int_equal(settings_load(2, argv, &s, &e), -EINVAL);
                assert_null(s);
                if (!strstr(e.message, cases[i].message))
                        fail_msg("case %zu: '%s' has no '%s'", i, e.message, cases[i].message);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_check_takes_every_flag, clear_env),
                cmocka_unit_test_setup(test_check_defaults_and_environment, clear_env),
                cmocka_unit_test_setup(test_check_usage_errors, clear_env),
                cmocka_unit_test_setup(test_check_help_runs_nothing, clear_env),
                cmocka_unit_test_setup(test_operator_precedence, clear_env),
                cmocka_unit_test_setup(test_operator_usage_errors, clear_env),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
