/* SPDX-License-Identifier: Apache-2.0 */
/* Reload actions: commands (exit status, output in the reason, timeout kill of
 * the whole process group, signals, the check's staged directory) and
 * systemd units through sd-bus, against a fake org.freedesktop.systemd1 on a
 * private dbus-daemon (skipped when dbus-daemon is not installed). */

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <systemd/sd-bus.h>

#include "config.h"
#include "fsx.h"
#include "loop.h"
#include "reload.h"

static char dir[64];
static sd_event *event;
static reload_ctx *ctx;

typedef struct outcome {
        bool done;
        unsigned calls;
        reload_result res;
} outcome;

static void on_done(const reload_result *res, void *userdata) {
        outcome *o = userdata;

        o->done = true;
        o->calls++;
        o->res = *res;
}

static void script(const char *name, const char *body) {
        char p[128];
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dir, name);
        f = fopen(p, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s\n", body);
        fclose(f);
        assert_int_equal(chmod(p, 0755), 0);
}

static int setup(void **state) {
        sigset_t mask;

        snprintf(dir, sizeof(dir), "/tmp/ballast-reload-XXXXXX");
        assert_non_null(mkdtemp(dir));
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        assert_int_equal(sigprocmask(SIG_BLOCK, &mask, NULL), 0);
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(reload_ctx_new(event, NULL, &ctx), 0);
        return 0;
}

static int teardown(void **state) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        ctx = reload_ctx_free(ctx);
        event = sd_event_unref(event);
        assert_int_equal(fsx_rm_rf_at(tmp, dir + 5), 0);
        return 0;
}

static void run_cmd(const char *name, uint64_t timeout, outcome *o) {
        char p[128];
        char *argv[] = {p, NULL};

        snprintf(p, sizeof(p), "%s/%s", dir, name);
        *o = (outcome){};
        assert_int_equal(
                reload_run_command(ctx, "reload 'test'", argv, NULL, timeout, on_done, o, NULL), 0);
        /* Never from inside the start call. */
        assert_false(o->done);
        assert_int_equal(loop_run_until(event, &o->done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o->calls, 1);
}

static void test_command_success(void **state) {
        outcome o;

        script("ok", "echo fine; exit 0");
        run_cmd("ok", 0, &o);
        assert_int_equal(o.res.r, 0);
        assert_int_equal(o.res.exit_status, 0);
        assert_string_equal(o.res.reason, "");
        assert_int_equal(reload_ctx_running(ctx), 0);
}

static void test_command_nonzero_exit_has_output_in_reason(void **state) {
        outcome o;

        script("bad", "echo first line; echo 'config error at line 3' >&2; exit 3");
        run_cmd("bad", 0, &o);
        assert_int_equal(o.res.r, -EPROTO);
        assert_int_equal(o.res.exit_status, 3);
        if (!strstr(o.res.reason, "reload 'test' exited with status 3: config error at line 3"))
                fail_msg("reason: %s", o.res.reason);
}

static void test_command_missing_binary(void **state) {
        outcome o;

        run_cmd("does-not-exist", 0, &o);
        assert_int_equal(o.res.r, -EPROTO);
        assert_int_equal(o.res.exit_status, 127);
        assert_non_null(strstr(o.res.reason, "cannot execute"));
}

static void test_command_killed_by_signal(void **state) {
        outcome o;

        script("sig", "kill -TERM $$");
        run_cmd("sig", 0, &o);
        assert_int_equal(o.res.r, -EINTR);
        assert_int_equal(o.res.signal, SIGTERM);
        assert_non_null(strstr(o.res.reason, "signal TERM"));
}

static bool pid_alive(pid_t pid) {
        char p[64], state = 0;
        FILE *f;

        snprintf(p, sizeof(p), "/proc/%d/stat", (int) pid);
        f = fopen(p, "r");
        if (!f)
                return false;
        if (fscanf(f, "%*d %*s %c", &state) != 1)
                state = 0;
        fclose(f);
        return state && state != 'Z';
}

static void test_command_timeout_kills_the_group(void **state) {
        char body[256], p[128];
        _cleanup_free_ char *pidtxt = NULL;
        uint64_t t0 = loop_now(NULL);
        outcome o;
        pid_t bg;

        /* The script leaves a background child: the whole group must go. */
        snprintf(body, sizeof(body), "sleep 30 &\necho $! > %s/bg.pid\nsleep 30", dir);
        script("hang", body);
        run_cmd("hang", 300 * USEC_PER_MSEC, &o);
        assert_int_equal(o.res.r, -ETIMEDOUT);
        assert_non_null(strstr(o.res.reason, "timed out after 300ms"));
        assert_true(loop_now(NULL) - t0 < 5 * USEC_PER_SEC);
        snprintf(p, sizeof(p), "%s/bg.pid", dir);
        assert_int_equal(fsx_read_file(AT_FDCWD, p, 64, &pidtxt, NULL), 0);
        bg = (pid_t) atoi(pidtxt);
        assert_true(bg > 0);
        for (int i = 0; i < 50 && pid_alive(bg); i++)
                usleep(20 * 1000);
        assert_false(pid_alive(bg));
}

static void test_cancel_kills_and_never_calls_back(void **state) {
        char p[128];
        char *argv[] = {p, NULL};
        outcome o = {};
        reload_job *j = NULL;
        bool never = false;

        script("long", "sleep 30");
        snprintf(p, sizeof(p), "%s/long", dir);
        assert_int_equal(reload_run_command(ctx, "x", argv, NULL, 0, on_done, &o, &j), 0);
        assert_non_null(j);
        assert_int_equal(reload_ctx_running(ctx), 1);
        reload_job_cancel(j);
        assert_int_equal(reload_ctx_running(ctx), 0);
        assert_int_equal(loop_run_until(event, &never, 300 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_false(o.done);
}

static void test_bad_argv_is_refused(void **state) {
        char *rel[] = {"sh", NULL}, *empty[] = {NULL};
        outcome o = {};

        assert_int_equal(reload_run_command(ctx, "x", rel, NULL, 0, on_done, &o, NULL), -EINVAL);
        assert_int_equal(reload_run_command(ctx, "x", empty, NULL, 0, on_done, &o, NULL), -EINVAL);
        assert_int_equal(reload_ctx_running(ctx), 0);
}

static const config_action *load_action(agent_config **cfg, const char *yaml) {
        err_info e;

        err_info_clear(&e);
        if (config_parse(yaml, strlen(yaml), "test.yaml", cfg, &e) < 0)
                fail_msg("config: %s", e.message);
        return config_find_action(*cfg, "app");
}

static void test_check_sees_the_staged_files(void **state) {
        _cleanup_(config_freep) agent_config *cfg = NULL;
        char staged[128], p[160], yaml[1024];
        const config_action *a;
        outcome o = {};
        int fd;

        snprintf(staged, sizeof(staged), "%s/..rev-1-abc", dir);
        assert_int_equal(mkdir(staged, 0755), 0);
        snprintf(p, sizeof(p), "%s/app.conf", staged);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "port=80\n", 8), 8);
        close(fd);
        /* The check reads the file through {staged} and $BALLAST_STAGED_DIR. */
        snprintf(yaml, sizeof(yaml),
                 "reloadActions:\n"
                 "  app:\n"
                 "    command: [/bin/true]\n"
                 "    check: [/bin/sh, -c, 'test -f \"$1\" && test \"$1\" = "
                 "\"$BALLAST_STAGED_DIR/app.conf\" && "
                 "grep -q port=80 \"$1\"', sh, \"{staged}/app.conf\"]\n"
                 "    timeout: 5s\n");
        a = load_action(&cfg, yaml);
        assert_non_null(a);
        assert_int_equal(reload_run_check(ctx, a, staged, on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        if (o.res.r != 0)
                fail_msg("check failed: %s", o.res.reason);

        /* The same check against a directory without the file fails. */
        o = (outcome){};
        assert_int_equal(reload_run_check(ctx, a, dir, on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o.res.r, -EPROTO);
        assert_non_null(strstr(o.res.reason, "check 'app' exited with status 1"));

        /* An action without check. */
        config_free(TAKE_PTR(cfg));
        a = load_action(&cfg, "reloadActions:\n  app:\n    command: [/bin/true]\n");
        assert_int_equal(reload_run_check(ctx, a, staged, on_done, &o, NULL), -ENOENT);
        o = (outcome){};
        assert_int_equal(reload_run_action(ctx, a, NULL, on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o.res.r, 0);
}

static void test_staged_env_is_not_leaked_to_reload(void **state) {
        char p[128];
        char *argv[] = {p, NULL};
        outcome o = {};

        /* An inherited $BALLAST_STAGED_DIR never reaches a reload command. */
        setenv(CONFIG_STAGED_ENV, "/nowhere", 1);
        script("env", "test -z \"$BALLAST_STAGED_DIR\"");
        snprintf(p, sizeof(p), "%s/env", dir);
        assert_int_equal(reload_run_command(ctx, "x", argv, NULL, 0, on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        unsetenv(CONFIG_STAGED_ENV);
        assert_int_equal(o.res.r, 0);
}

static void test_reload_sees_the_bundle_dir(void **state) {
        _cleanup_(config_freep) agent_config *cfg = NULL;
        const config_action *a;
        char yaml[512];
        outcome o = {};

        /* The action fails unless $BALLAST_BUNDLE_DIR names the bundle. */
        script("bundle", "test \"$BALLAST_BUNDLE_DIR\" = /etc/ballast/prod/web");
        snprintf(yaml, sizeof(yaml), "reloadActions:\n  app:\n    command: [%s/bundle]\n", dir);
        a = load_action(&cfg, yaml);
        assert_non_null(a);
        assert_int_equal(reload_run_action(ctx, a, "/etc/ballast/prod/web", on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o.res.r, 0);
        o = (outcome){};
        assert_int_equal(reload_run_action(ctx, a, "/elsewhere", on_done, &o, NULL), 0);
        assert_int_equal(loop_run_until(event, &o.done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o.res.r, -EPROTO);
}

/* ---- systemd through sd-bus, against a fake manager on a private bus -------------- */

static pid_t dbus_pid;
static char bus_address[256];
static sd_bus *server;
static unsigned job_counter, subscribes;
static char last_method[64];

typedef struct pending_signal {
        char path[64], unit[64], result[16];
        sd_event_source *timer;
} pending_signal;
static pending_signal pendings[8];
static unsigned n_pendings;

static int emit_job_removed(sd_event_source *s, uint64_t usec, void *userdata) {
        pending_signal *p = userdata;

        assert_true(sd_bus_emit_signal(server, "/org/freedesktop/systemd1",
                                       "org.freedesktop.systemd1.Manager", "JobRemoved", "uoss",
                                       (uint32_t) 1, p->path, p->unit, p->result) >= 0);
        return 0;
}

/* Fake systemd: "ok.service" finishes "done" after 20 ms, "fail.service"
 * "failed", "early.service" sends JobRemoved before the method reply,
 * "hang.service" never finishes, "missing.service" is not found. */
static int method_unit(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *unit, *mode;
        char path[64];
        pending_signal *p;

        assert_true(sd_bus_message_read(m, "ss", &unit, &mode) > 0);
        assert_string_equal(mode, "replace");
        snprintf(last_method, sizeof(last_method), "%s", sd_bus_message_get_member(m));
        if (streq(unit, "missing.service"))
                return sd_bus_error_setf(ret_error, "org.freedesktop.systemd1.NoSuchUnit",
                                         "Unit %s not found.", unit);
        snprintf(path, sizeof(path), "/org/freedesktop/systemd1/job/%u", ++job_counter);
        if (streq(unit, "hang.service"))
                return sd_bus_reply_method_return(m, "o", path);
        assert_true(n_pendings < ELEMENTSOF(pendings));
        p = &pendings[n_pendings++];
        snprintf(p->path, sizeof(p->path), "%s", path);
        snprintf(p->unit, sizeof(p->unit), "%s", unit);
        snprintf(p->result, sizeof(p->result), "%s",
                 streq(unit, "fail.service") ? "failed" : "done");
        if (streq(unit, "early.service")) {
                emit_job_removed(NULL, 0, p);
                (void) sd_bus_flush(server);
                return sd_bus_reply_method_return(m, "o", path);
        }
        assert_int_equal(sd_event_add_time_relative(event, &p->timer, CLOCK_MONOTONIC,
                                                    20 * USEC_PER_MSEC, 0, emit_job_removed, p),
                         0);
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_subscribe(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        subscribes++;
        return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Subscribe", "", "", method_subscribe, 0),
        SD_BUS_METHOD("ReloadUnit", "ss", "o", method_unit, 0),
        SD_BUS_METHOD("RestartUnit", "ss", "o", method_unit, 0),
        SD_BUS_METHOD("ReloadOrRestartUnit", "ss", "o", method_unit, 0),
        SD_BUS_SIGNAL("JobRemoved", "uoss", 0),
        SD_BUS_VTABLE_END,
};

static int setup_bus(void **state) {
        FILE *p;
        char line[256];

        setup(state);
        if (access("/usr/bin/dbus-daemon", X_OK) != 0)
                return 0;
        p = popen("dbus-daemon --session --fork --print-address=1 --print-pid=1", "r");
        assert_non_null(p);
        assert_non_null(fgets(bus_address, sizeof(bus_address), p));
        bus_address[strcspn(bus_address, "\n")] = '\0';
        assert_non_null(fgets(line, sizeof(line), p));
        dbus_pid = (pid_t) atoi(line);
        pclose(p);
        assert_true(dbus_pid > 0);

        /* No asserts from here: a failed setup gets no teardown, and the
         * daemon must not outlive the test. */
        if (sd_bus_new(&server) < 0 || sd_bus_set_address(server, bus_address) < 0 ||
            sd_bus_set_bus_client(server, true) < 0 || sd_bus_start(server) < 0 ||
            sd_bus_add_object_vtable(server, NULL, "/org/freedesktop/systemd1",
                                     "org.freedesktop.systemd1.Manager", manager_vtable,
                                     NULL) < 0 ||
            sd_bus_request_name(server, "org.freedesktop.systemd1", 0) < 0 ||
            sd_bus_attach_event(server, event, 0) < 0) {
                server = sd_bus_flush_close_unref(server);
                kill(dbus_pid, SIGTERM);
                dbus_pid = 0;
                return -1;
        }
        ctx = reload_ctx_free(ctx);
        assert_int_equal(reload_ctx_new(event, bus_address, &ctx), 0);
        return 0;
}

static int teardown_bus(void **state) {
        ctx = reload_ctx_free(ctx);
        for (unsigned i = 0; i < n_pendings; i++)
                pendings[i].timer = sd_event_source_disable_unref(pendings[i].timer);
        server = sd_bus_flush_close_unref(server);
        if (dbus_pid > 0)
                kill(dbus_pid, SIGTERM);
        return teardown(state);
}

static void run_unit(const char *unit, config_unit_mode mode, uint64_t timeout, outcome *o) {
        *o = (outcome){};
        assert_int_equal(
                reload_run_unit(ctx, "reload 'web'", unit, mode, timeout, on_done, o, NULL), 0);
        assert_false(o->done);
        assert_int_equal(loop_run_until(event, &o->done, 10 * USEC_PER_SEC), 0);
        assert_int_equal(o->calls, 1);
}

static void test_unit_jobs(void **state) {
        outcome o;

        if (!server)
                skip(); /* prints SKIPPED: no dbus-daemon to host a fake systemd */

        run_unit("ok.service", CONFIG_UNIT_RELOAD, 0, &o);
        if (o.res.r != 0)
                fail_msg("reload: %s", o.res.reason);
        assert_string_equal(last_method, "ReloadUnit");
        assert_true(subscribes >= 1);

        run_unit("ok.service", CONFIG_UNIT_RESTART, 0, &o);
        assert_int_equal(o.res.r, 0);
        assert_string_equal(last_method, "RestartUnit");
        run_unit("ok.service", CONFIG_UNIT_RELOAD_OR_RESTART, 0, &o);
        assert_int_equal(o.res.r, 0);
        assert_string_equal(last_method, "ReloadOrRestartUnit");

        /* The job's result decides. */
        run_unit("fail.service", CONFIG_UNIT_RELOAD, 0, &o);
        assert_int_equal(o.res.r, -EPROTO);
        if (!strstr(o.res.reason, "ReloadUnit of unit fail.service finished with result 'failed'"))
                fail_msg("reason: %s", o.res.reason);

        /* JobRemoved before the reply is not lost. */
        run_unit("early.service", CONFIG_UNIT_RELOAD, 0, &o);
        assert_int_equal(o.res.r, 0);

        /* An error reply. */
        run_unit("missing.service", CONFIG_UNIT_RELOAD, 0, &o);
        assert_true(o.res.r < 0);
        assert_non_null(strstr(o.res.reason, "Unit missing.service not found."));

        /* A job that never finishes times out. */
        run_unit("hang.service", CONFIG_UNIT_RELOAD, 200 * USEC_PER_MSEC, &o);
        assert_int_equal(o.res.r, -ETIMEDOUT);
        assert_non_null(strstr(o.res.reason, "did not finish within 200ms"));

        /* The connection survives all of that. */
        run_unit("ok.service", CONFIG_UNIT_RELOAD, 0, &o);
        assert_int_equal(o.res.r, 0);
}

static void test_unit_without_a_bus_fails_cleanly(void **state) {
        _cleanup_(reload_ctx_freep) reload_ctx *nobus = NULL;
        outcome o = {};

        assert_int_equal(reload_ctx_new(event, "unix:path=/nonexistent/bus", &nobus), 0);
        assert_int_equal(reload_run_unit(nobus, "reload 'web'", "ok.service", CONFIG_UNIT_RELOAD, 0,
                                         on_done, &o, NULL),
                         0);
        assert_false(o.done);
        assert_int_equal(loop_run_until(event, &o.done, 5 * USEC_PER_SEC), 0);
        assert_true(o.res.r < 0);
        assert_non_null(strstr(o.res.reason, "cannot connect to the unix:path=/nonexistent/bus"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_command_success, setup, teardown),
                cmocka_unit_test_setup_teardown(test_command_nonzero_exit_has_output_in_reason,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_command_missing_binary, setup, teardown),
                cmocka_unit_test_setup_teardown(test_command_killed_by_signal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_command_timeout_kills_the_group, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_cancel_kills_and_never_calls_back, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_bad_argv_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_sees_the_staged_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_sees_the_bundle_dir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_staged_env_is_not_leaked_to_reload, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unit_jobs, setup_bus, teardown_bus),
                cmocka_unit_test_setup_teardown(test_unit_without_a_bus_fails_cleanly, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
