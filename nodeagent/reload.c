/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reload actions: commands through fork/exec with an sd-event child source
 * and a timer, systemd units through sd-bus. See reload.h.
 */

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>

#include "config.h"
#include "loop.h"
#include "parse.h"
#include "reload.h"

#define SYSTEMD_DEST  "org.freedesktop.systemd1"
#define SYSTEMD_PATH  "/org/freedesktop/systemd1"
#define SYSTEMD_IFACE "org.freedesktop.systemd1.Manager"
#define EARLY_MAX     32 /* JobRemoved signals remembered before their job's reply */

static inline void strv_freep(char ***l) {
        config_strv_free(*l);
}

typedef enum job_kind {
        JOB_COMMAND,
        JOB_UNIT,
} job_kind;

struct reload_job {
        reload_ctx *ctx;
        reload_job *next, *prev;
        job_kind kind;
        char *what;
        uint64_t timeout_usec;
        reload_done_fn done;
        void *userdata;
        sd_event_source *timer;
        bool timed_out;

        /* command */
        pid_t pid;
        int out_fd;
        sd_event_source *child, *io;
        char tail[RELOAD_OUTPUT_TAIL];
        size_t tail_len;

        /* unit */
        char *unit;
        const char *method; /* "ReloadUnit", ... */
        char *job_path;     /* from the method reply */
        sd_bus_slot *call;
        sd_event_source *defer; /* reports @pending from the loop */
        reload_result pending;
        char **envp; /* command: the child's environment, built before fork() */
};

typedef struct early_removal {
        char *path;
        char *result;
} early_removal;

struct reload_ctx {
        sd_event *event;
        char *bus_address;
        sd_bus *bus;
        sd_bus_slot *match;
        bool subscribed;
        reload_job *jobs;
        unsigned n_jobs;
        early_removal early[EARLY_MAX];
        unsigned early_next;
};

const char *reload_unit_method(config_unit_mode m) {
        switch (m) {
        case CONFIG_UNIT_RESTART:
                return "RestartUnit";
        case CONFIG_UNIT_RELOAD_OR_RESTART:
                return "ReloadOrRestartUnit";
        case CONFIG_UNIT_RELOAD:
        default:
                return "ReloadUnit";
        }
}

int reload_ctx_new(sd_event *e, const char *bus_address, reload_ctx **ret) {
        _cleanup_free_ reload_ctx *c = NULL;

        if (!e || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (bus_address) {
                c->bus_address = strdup(bus_address);
                if (!c->bus_address)
                        return -ENOMEM;
        }
        c->event = sd_event_ref(e);
        *ret = TAKE_PTR(c);
        return 0;
}

static void early_clear(reload_ctx *c) {
        for (unsigned i = 0; i < EARLY_MAX; i++) {
                c->early[i].path = mfree(c->early[i].path);
                c->early[i].result = mfree(c->early[i].result);
        }
}

static void bus_drop(reload_ctx *c) {
        c->match = sd_bus_slot_unref(c->match);
        if (c->bus) {
                (void) sd_bus_detach_event(c->bus);
                c->bus = sd_bus_flush_close_unref(c->bus);
        }
        c->subscribed = false;
        early_clear(c);
}

static void job_unlink(reload_job *j) {
        reload_ctx *c = j->ctx;

        if (j->prev)
                j->prev->next = j->next;
        else if (c->jobs == j)
                c->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->next = j->prev = NULL;
        c->n_jobs--;
}

/* Frees the job's resources. A command still running is killed with its
 * process group; the child source owns reaping it (set_child_process_own). */
static void job_free(reload_job *j) {
        if (!j)
                return;
        if (j->kind == JOB_COMMAND && j->child && j->pid > 0)
                (void) kill(-j->pid, SIGKILL);
        j->child = sd_event_source_disable_unref(j->child);
        j->io = sd_event_source_disable_unref(j->io);
        j->timer = sd_event_source_disable_unref(j->timer);
        j->defer = sd_event_source_disable_unref(j->defer);
        j->call = sd_bus_slot_unref(j->call);
        safe_close(j->out_fd);
        free(j->what);
        free(j->unit);
        free(j->job_path);
        config_strv_free(j->envp);
        free(j);
}

reload_ctx *reload_ctx_free(reload_ctx *c) {
        if (!c)
                return NULL;
        while (c->jobs) {
                reload_job *j = c->jobs;
                job_unlink(j);
                job_free(j);
        }
        bus_drop(c);
        sd_event_unref(c->event);
        free(c->bus_address);
        free(c);
        return NULL;
}

unsigned reload_ctx_running(const reload_ctx *c) {
        return c ? c->n_jobs : 0;
}

void reload_job_cancel(reload_job *j) {
        if (!j)
                return;
        job_unlink(j);
        job_free(j);
}

/* Ends @j with @res: unlinks it, frees it, then calls the callback (which may
 * start new jobs or free the context). */
static void job_finish(reload_job *j, const reload_result *res) {
        reload_done_fn done = j->done;
        void *userdata = j->userdata;

        job_unlink(j);
        /* A finished command has been reaped: nothing left to kill. */
        j->pid = 0;
        job_free(j);
        done(res, userdata);
}

static reload_job *job_new(reload_ctx *c, job_kind kind, const char *what, uint64_t timeout_usec,
                           reload_done_fn done, void *userdata) {
        reload_job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->ctx = c;
        j->kind = kind;
        j->out_fd = -1;
        j->timeout_usec = timeout_usec ?: CONFIG_DEFAULT_TIMEOUT_USEC;
        j->done = done;
        j->userdata = userdata;
        j->what = strdup(what ?: "action");
        if (!j->what) {
                free(j);
                return NULL;
        }
        j->next = c->jobs;
        if (c->jobs)
                c->jobs->prev = j;
        c->jobs = j;
        c->n_jobs++;
        return j;
}

static void result_set(reload_result *res, int r, const char *fmt, ...) _printf_(3, 4);
static void result_set(reload_result *res, int r, const char *fmt, ...) {
        va_list ap;

        res->r = r;
        va_start(ap, fmt);
        vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
        va_end(ap);
}

/* ---- commands ------------------------------------------------------------------ */

static void tail_append(reload_job *j, const char *buf, size_t n) {
        if (n >= sizeof(j->tail)) {
                memcpy(j->tail, buf + n - sizeof(j->tail), sizeof(j->tail));
                j->tail_len = sizeof(j->tail);
                return;
        }
        if (j->tail_len + n > sizeof(j->tail)) {
                size_t drop = j->tail_len + n - sizeof(j->tail);
                memmove(j->tail, j->tail + drop, j->tail_len - drop);
                j->tail_len -= drop;
        }
        memcpy(j->tail + j->tail_len, buf, n);
        j->tail_len += n;
}

/* Reads what is available; returns true at EOF or on error. */
static bool drain(reload_job *j) {
        char buf[4096];

        for (;;) {
                ssize_t n = read(j->out_fd, buf, sizeof(buf));
                if (n > 0) {
                        tail_append(j, buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                return !(n < 0 && errno == EAGAIN);
        }
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        reload_job *j = userdata;

        if (drain(j))
                j->io = sd_event_source_disable_unref(j->io);
        return 0;
}

/* The last line of the captured output, printable, for a reason. */
static void output_summary(reload_job *j, char *buf, size_t size) {
        size_t end = j->tail_len, start, o = 0;

        while (end > 0 &&
               (j->tail[end - 1] == '\n' || j->tail[end - 1] == '\r' || j->tail[end - 1] == ' '))
                end--;
        start = end;
        while (start > 0 && j->tail[start - 1] != '\n')
                start--;
        for (size_t i = start; i < end && o + 1 < size; i++) {
                unsigned char ch = (unsigned char) j->tail[i];
                buf[o++] = ch >= 0x20 && ch != 0x7f ? (char) ch : '?';
        }
        buf[o] = '\0';
}

static int on_finish_defer(sd_event_source *s, void *userdata) {
        reload_job *j = userdata;
        reload_result res = j->pending;

        job_finish(j, &res);
        return 0;
}

/* Completion is reported from a defer source, not from here: sd-event reaps
 * the child after this callback returns, and the child source must still
 * exist then. */
static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        reload_job *j = userdata;
        reload_result *res = &j->pending;
        char out[RELOAD_OUTPUT_TAIL + 1], dur[32];

        /* Output written before exit is in the pipe: take it now. A process
         * the command left behind may hold the pipe open; don't wait for it. */
        if (j->out_fd >= 0)
                (void) drain(j);
        output_summary(j, out, sizeof(out));
        /* Exited: its pid (and so its group id) may be reused once reaped. */
        j->pid = 0;
        (void) sd_event_source_set_child_process_own(s, false);

        *res = (reload_result){.exit_status = -1};
        if (j->timed_out)
                result_set(res, -ETIMEDOUT, "%s timed out after %s and was killed", j->what,
                           format_duration(j->timeout_usec, dur, sizeof(dur)));
        else if (si->si_code == CLD_EXITED) {
                res->exit_status = si->si_status;
                if (si->si_status != 0)
                        result_set(res, -EPROTO, "%s exited with status %d%s%s", j->what,
                                   si->si_status, out[0] ? ": " : "", out);
        } else {
                res->signal = si->si_status;
                result_set(res, -EINTR, "%s was killed by signal %s%s%s", j->what,
                           sigabbrev_np(si->si_status) ?: "?", out[0] ? ": " : "", out);
        }
        if (sd_event_add_defer(j->ctx->event, &j->defer, on_finish_defer, j) < 0) {
                /* Out of memory: report now rather than never. */
                reload_result copy = *res;
                job_finish(j, &copy);
        }
        return 0;
}

static int on_command_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        reload_job *j = userdata;

        j->timed_out = true;
        if (j->pid > 0)
                (void) kill(-j->pid, SIGKILL);
        /* on_child reports once the kernel has reaped it. */
        return 0;
}

/* environ without $BALLAST_STAGED_DIR and $BALLAST_BUNDLE_DIR, plus them set
 * to @staged_dir and @bundle_dir when given. */
static int build_env(const char *staged_dir, const char *bundle_dir, char ***ret) {
        extern char **environ;
        size_t n = 0, k = 0, plen = strlen(CONFIG_STAGED_ENV), blen = strlen(RELOAD_BUNDLE_ENV);
        char **l;

        while (environ && environ[n])
                n++;
        l = calloc(n + 3, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if ((strneq(environ[i], CONFIG_STAGED_ENV, plen) && environ[i][plen] == '=') ||
                    (strneq(environ[i], RELOAD_BUNDLE_ENV, blen) && environ[i][blen] == '='))
                        continue;
                l[k] = strdup(environ[i]);
                if (!l[k])
                        goto oom;
                k++;
        }
        if (staged_dir) {
                if (asprintf(&l[k], "%s=%s", CONFIG_STAGED_ENV, staged_dir) < 0) {
                        l[k] = NULL;
                        goto oom;
                }
                k++;
        }
        if (bundle_dir && asprintf(&l[k], "%s=%s", RELOAD_BUNDLE_ENV, bundle_dir) < 0) {
                l[k] = NULL;
                goto oom;
        }
        *ret = l;
        return 0;
oom:
        config_strv_free(l);
        return -ENOMEM;
}

__attribute__((noreturn)) static void child_exec(char *const *argv, char **envp, int out_fd) {
        sigset_t none;
        int null;

        (void) setpgid(0, 0);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);
        null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0 && null != STDIN_FILENO)
                (void) dup2(null, STDIN_FILENO);
        if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(out_fd, STDERR_FILENO) < 0)
                _exit(127);
        (void) syscall(SYS_close_range, 3U, ~0U, 0U);
        execve(argv[0], argv, envp);
        /* Only async-signal-safe calls here: write(2), no stdio. */
        {
                static const char msg[] = "cannot execute ";
                const char *why = errno == ENOENT   ? ": no such file\n"
                                  : errno == EACCES ? ": permission denied\n"
                                                    : ": exec failed\n";
                (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
                (void) !write(STDERR_FILENO, argv[0], strlen(argv[0]));
                (void) !write(STDERR_FILENO, why, strlen(why));
        }
        _exit(127);
}

static int run_command(reload_ctx *c, const char *what, char *const *argv, const char *staged_dir,
                       const char *bundle_dir, uint64_t timeout_usec, reload_done_fn done,
                       void *userdata, reload_job **ret) {
        int pipefd[2];
        reload_job *j;
        pid_t pid;
        int r;

        if (!c || !done || !argv || !argv[0] || argv[0][0] != '/')
                return -EINVAL;
        j = job_new(c, JOB_COMMAND, what, timeout_usec, done, userdata);
        if (!j)
                return -ENOMEM;
        /* Everything the child needs is allocated here: after fork() in a
         * process with threads (healthd's) only async-signal-safe calls. */
        r = build_env(staged_dir, bundle_dir, &j->envp);
        if (r < 0)
                goto fail;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        j->out_fd = pipefd[0];
        pid = fork();
        if (pid < 0) {
                r = -errno;
                safe_close(pipefd[1]);
                goto fail;
        }
        if (pid == 0)
                child_exec(argv, j->envp, pipefd[1]);
        safe_close(pipefd[1]);
        /* Both sides set the group, so a kill can't race the child's setpgid. */
        (void) setpgid(pid, pid);
        j->pid = pid;
        (void) fcntl(j->out_fd, F_SETFL, O_NONBLOCK);

        r = sd_event_add_child(c->event, &j->child, pid, WEXITED, on_child, j);
        if (r < 0) {
                (void) kill(-pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                j->pid = 0;
                goto fail;
        }
        /* If the job is freed early (cancel), the source kills and reaps. */
        (void) sd_event_source_set_child_process_own(j->child, true);
        r = sd_event_add_io(c->event, &j->io, j->out_fd, EPOLLIN, on_output, j);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(c->event, &j->timer, CLOCK_MONOTONIC, j->timeout_usec,
                                       USEC_PER_MSEC, on_command_timeout, j);
        if (r < 0)
                goto fail;
        if (ret)
                *ret = j;
        return 0;
fail:
        job_unlink(j);
        job_free(j);
        return r;
}

int reload_run_check(reload_ctx *c, const config_action *a, const char *staged_dir,
                     reload_done_fn done, void *userdata, reload_job **ret) {
        _cleanup_(strv_freep) char **argv = NULL;
        char what[96];
        int r;

        if (!c || !a || !staged_dir)
                return -EINVAL;
        if (!a->check)
                return -ENOENT;
        r = config_expand_argv(a->check, staged_dir, &argv);
        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "check '%s'", a->name);
        return reload_run_command(c, what, argv, staged_dir, a->timeout_usec, done, userdata, ret);
}

int reload_run_command(reload_ctx *c, const char *what, char *const *argv, const char *staged_dir,
                       uint64_t timeout_usec, reload_done_fn done, void *userdata,
                       reload_job **ret) {
        return run_command(c, what, argv, staged_dir, NULL, timeout_usec, done, userdata, ret);
}

int reload_run_action(reload_ctx *c, const config_action *a, const char *bundle_dir,
                      reload_done_fn done, void *userdata, reload_job **ret) {
        char what[96];

        if (!c || !a)
                return -EINVAL;
        snprintf(what, sizeof(what), "reload '%s'", a->name);
        if (a->kind == CONFIG_ACTION_SYSTEMD)
                return reload_run_unit(c, what, a->unit, a->mode, a->timeout_usec, done, userdata,
                                       ret);
        return run_command(c, what, a->command, NULL, bundle_dir, a->timeout_usec, done, userdata,
                           ret);
}

/* ---- systemd units ------------------------------------------------------------- */

static void unit_finish(reload_job *j, const char *result) {
        reload_result res = {.exit_status = -1};

        if (streq(result, "done"))
                res.r = 0;
        else
                result_set(&res, -EPROTO, "%s: %s of unit %s finished with result '%s'", j->what,
                           j->method, j->unit, result);
        job_finish(j, &res);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        reload_ctx *c = userdata;
        const char *path, *unit, *result;
        uint32_t id;
        early_removal *e;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;
        for (reload_job *j = c->jobs; j; j = j->next)
                if (j->kind == JOB_UNIT && j->job_path && streq(j->job_path, path)) {
                        unit_finish(j, result);
                        return 0;
                }
        /* Possibly a job whose reply we have not read yet. */
        e = &c->early[c->early_next];
        c->early_next = (c->early_next + 1) % EARLY_MAX;
        free(e->path);
        free(e->result);
        e->path = strdup(path);
        e->result = strdup(result);
        return 0;
}

static int bus_ensure(reload_ctx *c, reload_result *res) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (c->bus && sd_bus_is_open(c->bus) > 0)
                return 0;
        bus_drop(c);
        if (c->bus_address) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, c->bus_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else
                r = sd_bus_open_system_with_description(&bus, "ballast-agent");
        if (r < 0) {
                result_set(res, r, "cannot connect to the %s bus: %s",
                           c->bus_address ? c->bus_address : "system", strerror(-r));
                return r;
        }
        r = sd_bus_attach_event(bus, c->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                result_set(res, r, "cannot attach the bus to the event loop: %s", strerror(-r));
                return r;
        }
        /* No sender filter: a well-known name in a match is resolved by the
         * broker, not by sd-bus's local matching. */
        r = sd_bus_match_signal_async(bus, &c->match, NULL, SYSTEMD_PATH, SYSTEMD_IFACE,
                                      "JobRemoved", on_job_removed, NULL, c);
        if (r < 0) {
                result_set(res, r, "cannot subscribe to systemd job signals: %s", strerror(-r));
                return r;
        }
        /* systemd only sends job signals to clients that subscribed. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_IFACE,
                                     "Subscribe", NULL, NULL, "");
        if (r < 0) {
                result_set(res, r, "cannot subscribe to systemd: %s", strerror(-r));
                return r;
        }
        c->subscribed = true;
        c->bus = TAKE_PTR(bus);
        return 0;
}

static int on_unit_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        reload_job *j = userdata;
        reload_ctx *c = j->ctx;
        const sd_bus_error *err;
        const char *path;
        reload_result res = {.exit_status = -1};
        int r;

        j->call = sd_bus_slot_unref(j->call);
        err = sd_bus_message_get_error(m);
        if (err) {
                r = sd_bus_message_get_errno(m);
                result_set(&res, r != 0 ? -abs(r) : -EIO, "%s: %s of unit %s failed: %s", j->what,
                           j->method, j->unit, err->message ?: err->name);
                if (res.r == 0)
                        res.r = -EIO;
                /* A broken connection is reopened for the next job. */
                if (c->bus && sd_bus_is_open(c->bus) <= 0)
                        bus_drop(c);
                job_finish(j, &res);
                return 0;
        }
        r = sd_bus_message_read(m, "o", &path);
        if (r < 0) {
                result_set(&res, -EBADMSG, "%s: unexpected reply from systemd for unit %s", j->what,
                           j->unit);
                job_finish(j, &res);
                return 0;
        }
        j->job_path = strdup(path);
        if (!j->job_path) {
                result_set(&res, -ENOMEM, "%s: out of memory", j->what);
                job_finish(j, &res);
                return 0;
        }
        for (unsigned i = 0; i < EARLY_MAX; i++)
                if (c->early[i].path && streq(c->early[i].path, path)) {
                        _cleanup_free_ char *result = TAKE_PTR(c->early[i].result);
                        c->early[i].path = mfree(c->early[i].path);
                        unit_finish(j, strempty(result));
                        return 0;
                }
        return 0;
}

static int on_unit_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        reload_job *j = userdata;
        reload_result res = {.exit_status = -1};
        char dur[32];

        result_set(&res, -ETIMEDOUT, "%s: unit %s did not finish within %s", j->what, j->unit,
                   format_duration(j->timeout_usec, dur, sizeof(dur)));
        job_finish(j, &res);
        return 0;
}

int reload_run_unit(reload_ctx *c, const char *what, const char *unit, config_unit_mode mode,
                    uint64_t timeout_usec, reload_done_fn done, void *userdata, reload_job **ret) {
        reload_job *j;
        int r;

        if (!c || !done || isempty(unit))
                return -EINVAL;
        j = job_new(c, JOB_UNIT, what, timeout_usec, done, userdata);
        if (!j)
                return -ENOMEM;
        j->method = reload_unit_method(mode);
        j->unit = strdup(unit);
        if (!j->unit) {
                r = -ENOMEM;
                goto fail;
        }
        j->pending.exit_status = -1;
        r = sd_event_add_time_relative(c->event, &j->timer, CLOCK_MONOTONIC, j->timeout_usec,
                                       USEC_PER_MSEC, on_unit_timeout, j);
        if (r < 0)
                goto fail;

        r = bus_ensure(c, &j->pending);
        if (r >= 0) {
                r = sd_bus_call_method_async(c->bus, &j->call, SYSTEMD_DEST, SYSTEMD_PATH,
                                             SYSTEMD_IFACE, j->method, on_unit_reply, j, "ss", unit,
                                             "replace");
                if (r < 0) {
                        result_set(&j->pending, r, "%s: cannot call systemd for unit %s: %s",
                                   j->what, unit, strerror(-r));
                        bus_drop(c);
                }
        }
        if (r < 0) {
                /* Report from the loop, as every completion is. */
                if (sd_event_add_defer(c->event, &j->defer, on_finish_defer, j) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (ret)
                *ret = j;
        return 0;
fail:
        job_unlink(j);
        job_free(j);
        return r;
}
