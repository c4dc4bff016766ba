/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's local YAML config: the documented example, defaults, and
 * errors that name FILE:LINE:COLUMN. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

/* The example in docs/agent-cache.md. */
static const char EXAMPLE[] = "# /etc/ballast-agent/config.yaml\n"
                              "rootDir: /etc/ballast\n"
                              "cacheDir: /var/lib/ballast\n"
                              "pollInterval: 30s\n"
                              "heartbeatInterval: 5m\n"
                              "cacheKeep: 5\n"
                              "reloadActions:\n"
                              "  nginx:\n"
                              "    check: [/usr/sbin/nginx, -t, -c, \"{staged}/nginx.conf\"]\n"
                              "    systemdUnit: nginx.service\n"
                              "    mode: reload\n"
                              "    timeout: 30s\n"
                              "  app:\n"
                              "    command:\n"
                              "      - /usr/local/bin/app-ctl\n"
                              "      - reload\n"
                              "      - --grace=5\n"
                              "    timeout: 10\n"
                              "  envoy-restart:\n"
                              "    systemdUnit: envoy@edge.service\n"
                              "    mode: restart\n";

static agent_config *parse_ok(const char *yaml) {
        agent_config *c = NULL;
        err_info e;

        err_info_clear(&e);
        if (config_parse(yaml, strlen(yaml), "agent.yaml", &c, &e) < 0)
                fail_msg("config did not parse: %s", e.message);
        return c;
}

static void parse_fails(const char *yaml, int want_r, const char *want) {
        agent_config *c = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(config_parse(yaml, strlen(yaml), "agent.yaml", &c, &e), want_r);
        assert_null(c);
        if (!strstr(e.message, want))
                fail_msg("error '%s' does not contain '%s'", e.message, want);
}

static void test_example_parses(void **state) {
        _cleanup_(config_freep) agent_config *c = parse_ok(EXAMPLE);
        const config_action *a;

        assert_string_equal(c->root_dir, "/etc/ballast");
        assert_string_equal(c->cache_dir, "/var/lib/ballast");
        assert_int_equal(c->poll_interval_usec, 30 * USEC_PER_SEC);
        assert_int_equal(c->heartbeat_interval_usec, 300 * USEC_PER_SEC);
        assert_int_equal(c->cache_keep, 5);
        assert_int_equal(c->n_actions, 3);

        a = config_find_action(c, "nginx");
        assert_non_null(a);
        assert_int_equal(a->kind, CONFIG_ACTION_SYSTEMD);
        assert_string_equal(a->unit, "nginx.service");
        assert_int_equal(a->mode, CONFIG_UNIT_RELOAD);
        assert_null(a->command);
        assert_string_equal(a->check[0], "/usr/sbin/nginx");
        assert_string_equal(a->check[3], "{staged}/nginx.conf");
        assert_null(a->check[4]);
        assert_int_equal(a->timeout_usec, 30 * USEC_PER_SEC);

        a = config_find_action(c, "app");
        assert_non_null(a);
        assert_int_equal(a->kind, CONFIG_ACTION_COMMAND);
        assert_string_equal(a->command[0], "/usr/local/bin/app-ctl");
        assert_string_equal(a->command[2], "--grace=5");
        assert_null(a->command[3]);
        assert_null(a->check);
        assert_int_equal(a->timeout_usec, 10 * USEC_PER_SEC);

        a = config_find_action(c, "envoy-restart");
        assert_non_null(a);
        assert_string_equal(a->unit, "envoy@edge.service");
        assert_int_equal(a->mode, CONFIG_UNIT_RESTART);
        assert_int_equal(a->timeout_usec, CONFIG_DEFAULT_TIMEOUT_USEC);
        assert_string_equal(config_unit_mode_to_string(a->mode), "restart");

        /* A bundle naming an action the node does not define finds nothing. */
        assert_null(config_find_action(c, "haproxy"));
        assert_null(config_find_action(c, "ngin"));
}

static void test_empty_config_is_all_defaults(void **state) {
        _cleanup_(config_freep) agent_config *a = parse_ok("");
        _cleanup_(config_freep) agent_config *b = parse_ok("# nothing\n");
        _cleanup_(config_freep) agent_config *c = parse_ok("reloadActions:\n");

        assert_string_equal(a->root_dir, CONFIG_DEFAULT_ROOT_DIR);
        assert_string_equal(a->cache_dir, CONFIG_DEFAULT_CACHE_DIR);
        assert_int_equal(a->poll_interval_usec, CONFIG_DEFAULT_POLL_INTERVAL_USEC);
        assert_int_equal(a->cache_keep, CONFIG_DEFAULT_CACHE_KEEP);
        assert_int_equal(a->n_actions, 0);
        assert_int_equal(b->n_actions, 0);
        assert_int_equal(c->n_actions, 0);
        assert_null(config_find_action(a, "nginx"));
}

static void test_unknown_keys_name_the_position(void **state) {
        parse_fails("rootDir: /etc/ballast\ncachDir: /x\n", -EINVAL,
                    "agent.yaml:2:10: unknown key 'cachDir' (known: cacheDir, cacheKeep,");
        parse_fails("reloadActions:\n  nginx:\n    systemdUnit: nginx.service\n    timout: 3s\n",
                    -EINVAL, "agent.yaml:4:13: unknown key 'timout' in reloadActions.nginx");
}

static void test_action_errors(void **state) {
        parse_fails("reloadActions:\n  x:\n    command: [/bin/true]\n    systemdUnit: a.service\n",
                    -EINVAL,
                    "agent.yaml:3:5: reloadActions.x: exactly one of command or systemdUnit");
        parse_fails("reloadActions:\n  x:\n    timeout: 3s\n", -EINVAL,
                    "exactly one of command or systemdUnit");
        parse_fails("reloadActions:\n  x:\n    command: [nginx, -s, reload]\n", -EINVAL,
                    "agent.yaml:3:15: command[0] 'nginx' must be an absolute path");
        parse_fails("reloadActions:\n  x:\n    command: []\n", -EINVAL,
                    "command must not be empty");
        parse_fails("reloadActions:\n  x:\n    command: /bin/true\n", -EINVAL,
                    "agent.yaml:3:14: command must be a list of strings");
        parse_fails("reloadActions:\n  x:\n    command: [/bin/true, [a]]\n", -EINVAL,
                    "command[1] must be a string");
        parse_fails("reloadActions:\n  x:\n    command: [/bin/cp, \"{staged}/a\", /etc/a]\n",
                    -EINVAL, "command[1]: {staged} is only available in check");
        parse_fails("reloadActions:\n  x:\n    systemdUnit: nginx\n", -EINVAL,
                    "agent.yaml:3:18: reloadActions.x.systemdUnit 'nginx' is not a unit name");
        parse_fails("reloadActions:\n  x:\n    systemdUnit: \"a b.service\"\n", -EINVAL,
                    "is not a unit name");
        parse_fails("reloadActions:\n  x:\n    systemdUnit: a.service\n    mode: stop\n", -EINVAL,
                    "agent.yaml:4:11: reloadActions.x.mode 'stop' is not reload, restart");
        parse_fails("reloadActions:\n  x:\n    command: [/bin/true]\n    mode: reload\n", -EINVAL,
                    "mode only applies to systemdUnit");
        parse_fails("reloadActions:\n  Nginx:\n    command: [/bin/true]\n", -EINVAL,
                    "reloadActions: 'Nginx' is not a valid action name");
        parse_fails("reloadActions:\n  x: /bin/true\n", -EINVAL,
                    "reloadActions.x must be a mapping");
        parse_fails("reloadActions: [a]\n", -EINVAL, "reloadActions must be a mapping");
        parse_fails("reloadActions:\n  x:\n    command: [/bin/true]\n    check: [check]\n", -EINVAL,
                    "check[0] 'check' must be an absolute path");
}

static void test_plain_scalars_in_argv_are_text(void **state) {
        _cleanup_(config_freep) agent_config *c =
                parse_ok("reloadActions:\n  x:\n    command: [/bin/sleep, 1, true, \"02\"]\n");

        assert_string_equal(c->actions[0].command[1], "1");
        assert_string_equal(c->actions[0].command[2], "true");
        assert_string_equal(c->actions[0].command[3], "02");
}

static void test_durations(void **state) {
        uint64_t u = 0;

        assert_int_equal(config_parse_duration("30s", &u), 0);
        assert_int_equal(u, 30 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("1m30s", &u), 0);
        assert_int_equal(u, 90 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("500ms", &u), 0);
        assert_int_equal(u, 500 * USEC_PER_MSEC);
        assert_int_equal(config_parse_duration("2h", &u), 0);
        assert_int_equal(u, 7200 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("45", &u), 0);
        assert_int_equal(u, 45 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("1h1m1s1ms", &u), 0);
        assert_int_equal(u, 3661 * USEC_PER_SEC + USEC_PER_MSEC);
        assert_int_equal(config_parse_duration("", &u), -EINVAL);
        assert_int_equal(config_parse_duration("s", &u), -EINVAL);
        assert_int_equal(config_parse_duration("5x", &u), -EINVAL);
        assert_int_equal(config_parse_duration("-5s", &u), -EINVAL);
        assert_int_equal(config_parse_duration("1.5s", &u), -EINVAL);
        assert_int_equal(config_parse_duration("5 s", &u), -EINVAL);
        assert_int_equal(config_parse_duration("999999999999s", &u), 0); /* 12 digits */
        assert_int_equal(u, UINT64_C(999999999999) * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("9999999999999s", &u), -EINVAL); /* 13 */
        assert_int_equal(config_parse_duration("999999999999h", &u), -EINVAL);  /* > 2^64 us */
        assert_int_equal(config_parse_duration("5000000h5000000h", &u), 0);
        assert_int_equal(config_parse_duration("5000000000h5000000000h5000000000h5000000000h", &u),
                         -EINVAL); /* the sum overflows */

        parse_fails("pollInterval: soon\n", -EINVAL,
                    "agent.yaml:1:15: pollInterval: 'soon' is not a duration");
        parse_fails("pollInterval: 0\n", -EINVAL, "pollInterval: '0' is out of range");
        parse_fails("pollInterval: 2d\n", -EINVAL, "is not a duration");
        parse_fails("pollInterval: [1]\n", -EINVAL, "pollInterval must be a duration");
        parse_fails("reloadActions:\n  x:\n    command: [/bin/true]\n    timeout: 2h\n", -EINVAL,
                    "agent.yaml:4:14: timeout: '2h' is out of range");
        parse_fails("heartbeatInterval: -1\n", -EINVAL,
                    "heartbeatInterval: -1 seconds is out of range");

        _cleanup_(config_freep) agent_config *c =
                parse_ok("pollInterval: 90\nheartbeatInterval: 1m\n");
        assert_int_equal(c->poll_interval_usec, 90 * USEC_PER_SEC);
        assert_int_equal(c->heartbeat_interval_usec, 60 * USEC_PER_SEC);
}

static void test_paths_and_settings(void **state) {
        parse_fails("rootDir: etc/ballast\n", -EINVAL,
                    "agent.yaml:1:10: rootDir 'etc/ballast' must be an absolute path");
        parse_fails("cacheDir: 7\n", -EINVAL, "cacheDir must be a string");
        parse_fails("rootDir: /srv/b\ncacheDir: /srv/b/\n", -EINVAL,
                    "agent.yaml:2:11: rootDir '/srv/b' and cacheDir '/srv/b' must not be the same");
        parse_fails("rootDir: /srv/b\ncacheDir: /srv/b/cache\n", -EINVAL,
                    "must not be the same or inside");
        parse_fails("rootDir: /\n", -EINVAL, "must not be the same or inside");
        parse_fails("cacheKeep: 0\n", -EINVAL,
                    "agent.yaml:1:12: cacheKeep must be an integer in 1..100");
        parse_fails("cacheKeep: 101\n", -EINVAL, "cacheKeep must be an integer");
        parse_fails("cacheKeep: \"5\"\n", -EINVAL, "cacheKeep must be an integer");
        parse_fails("- a\n- b\n", -EINVAL, "agent.yaml:1:1: the config must be a mapping");

        _cleanup_(config_freep) agent_config *c =
                parse_ok("rootDir: /srv/ballast/\ncacheDir: /srv/ballast-cache\ncacheKeep: 2\n");
        assert_string_equal(c->root_dir, "/srv/ballast");
        assert_string_equal(c->cache_dir, "/srv/ballast-cache");
        assert_int_equal(c->cache_keep, 2);
}

static void test_yaml_syntax_errors(void **state) {
        parse_fails("rootDir: [\n", -EBADMSG, "agent.yaml:");
        parse_fails("a: 1\na: 2\n", -EBADMSG, "agent.yaml:2:");
        /* "{staged}" unquoted is a YAML flow mapping. */
        parse_fails(
                "reloadActions:\n  x:\n    command: [/bin/true]\n    check: [/bin/t, {staged}/x]\n",
                -EBADMSG, "agent.yaml:4:");
}

static void test_load_from_file(void **state) {
        char dir[] = "/tmp/ballast-config-XXXXXX", path[64];
        _cleanup_(config_freep) agent_config *c = NULL;
        err_info e;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/agent.yaml", dir);
        err_info_clear(&e);
        assert_int_equal(config_load(path, &c, &e), -ENOENT);
        assert_non_null(strstr(e.message, path));

        f = fopen(path, "w");
        assert_non_null(f);
        fputs(EXAMPLE, f);
        fclose(f);
        assert_int_equal(config_load(path, &c, &e), 0);
        assert_int_equal(c->n_actions, 3);

        f = fopen(path, "w");
        fputs("cacheKeep: 3\nbogus: 1\n", f);
        fclose(f);
        config_free(c);
        c = NULL;
        err_info_clear(&e);
        assert_int_equal(config_load(path, &c, &e), -EINVAL);
        assert_null(c);
        if (!strstr(e.message, "agent.yaml:2:8: unknown key 'bogus'"))
                fail_msg("%s", e.message);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_expand_argv(void **state) {
        char *argv[] = {"/usr/sbin/nginx", "-t", "-c", "{staged}/nginx.conf", "{staged}{staged}",
                        "no-placeholder",  NULL};
        char **out = NULL;

        assert_int_equal(config_expand_argv(argv, "/etc/ballast/p/w/..rev-3-ab", &out), 0);
        assert_string_equal(out[0], "/usr/sbin/nginx");
        assert_string_equal(out[3], "/etc/ballast/p/w/..rev-3-ab/nginx.conf");
        assert_string_equal(out[4], "/etc/ballast/p/w/..rev-3-ab/etc/ballast/p/w/..rev-3-ab");
        assert_string_equal(out[5], "no-placeholder");
        assert_null(out[6]);
        config_strv_free(out);
        assert_int_equal(config_expand_argv(NULL, "/x", &out), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_example_parses),
                cmocka_unit_test(test_empty_config_is_all_defaults),
                cmocka_unit_test(test_unknown_keys_name_the_position),
                cmocka_unit_test(test_action_errors),
                cmocka_unit_test(test_plain_scalars_in_argv_are_text),
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_paths_and_settings),
                cmocka_unit_test(test_yaml_syntax_errors),
                cmocka_unit_test(test_load_from_file),
                cmocka_unit_test(test_expand_argv),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
