/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Running the node's reload actions (config.h): a command (argv, no shell)
 * or a systemd unit reload/restart through sd-bus, each with a timeout, all
 * on the agent's one sd-event loop (no threads, no blocking waits).
 *
 * Commands: fork + execv of an absolute argv[0] with stdin on /dev/null and
 * stdout/stderr captured (the last RELOAD_OUTPUT_TAIL bytes go into the
 * failure reason), in a process group of their own, with every other fd
 * closed, signals reset and the environment inherited (plus
 * $BALLAST_STAGED_DIR for a check). Completion comes from an sd-event child
 * source (pidfd); on timeout the whole process group gets SIGKILL and the
 * job fails with -ETIMEDOUT once the child has been reaped. The caller must
 * block SIGCHLD before the first command (sd_event_add_child() requires it).
 *
 * Units: org.freedesktop.systemd1.Manager ReloadUnit / RestartUnit /
 * ReloadOrRestartUnit(unit, "replace") over the system bus (or another bus
 * address, for tests), then waiting for the job's JobRemoved signal (after
 * Subscribe()) and its result: "done" is success, anything else a failure.
 * A JobRemoved that arrives before the method's reply is remembered, so the
 * race cannot lose a job. The bus connection is opened on first use and
 * reopened after it breaks.
 *
 * A job ends exactly once: its done callback runs from the event loop, never
 * from inside the starting call, unless it was cancelled first.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "macro.h"

#define RELOAD_OUTPUT_TAIL 256 /* bytes of a command's output kept for the reason */
#define RELOAD_REASON_MAX  512

typedef struct reload_ctx reload_ctx;
typedef struct reload_job reload_job;

typedef struct reload_result {
        int r;           /* 0 success; -EPROTO non-zero exit or unit job result, -ETIMEDOUT,
                          * -EINTR killed by a signal, or another negative errno */
        int exit_status; /* a command's exit status; -1 when it did not exit normally */
        int signal;      /* the signal that killed a command, 0 if none */
        char reason[RELOAD_REASON_MAX]; /* "" on success; else a sentence for the status report */
} reload_result;

/* Called once per job, after the job has been freed (its handle is already
 * invalid). @res is borrowed for the call. The callback may start jobs or
 * free the context. */
typedef void (*reload_done_fn)(const reload_result *res, void *userdata);

/* Creates a context on @e (referenced). @bus_address is an sd-bus address
 * ("unix:path=/run/dbus/system_bus_socket") for the unit runner, or NULL for
 * the system bus. Returns 0 or -ENOMEM. */
int reload_ctx_new(sd_event *e, const char *bus_address, reload_ctx **ret);

/* Cancels running jobs (their callbacks are not called; running commands'
 * process groups are killed) and frees the context. NULL is fine. */
reload_ctx *reload_ctx_free(reload_ctx *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(reload_ctx *, reload_ctx_free);

/* Runs @argv (NULL-terminated, argv[0] an absolute path; borrowed for the
 * call) with a @timeout_usec limit (0: CONFIG_DEFAULT_TIMEOUT_USEC).
 * @staged_dir, when non-NULL, is exported as $BALLAST_STAGED_DIR. @what names
 * the job in reasons ("check 'nginx'"). Returns -EINVAL for a bad argv,
 * -ENOMEM, or fork/pipe errors; the job's outcome goes to @done. *@ret (if
 * non-NULL) is a handle valid until @done runs or reload_job_cancel(). */
int reload_run_command(reload_ctx *c, const char *what, char *const *argv, const char *staged_dir,
                       uint64_t timeout_usec, reload_done_fn done, void *userdata,
                       reload_job **ret);

/* Reloads/restarts @unit per @mode through systemd, waiting at most
 * @timeout_usec (0: the default) for the job to finish. Failing to reach the
 * bus is reported through @done (-ECONNREFUSED, -ENOENT, ... with a reason),
 * not by the return value, which is only -EINVAL/-ENOMEM. */
int reload_run_unit(reload_ctx *c, const char *what, const char *unit, config_unit_mode mode,
                    uint64_t timeout_usec, reload_done_fn done, void *userdata, reload_job **ret);

/* The live directory of the bundle being reloaded (ROOT/NAMESPACE/NAME), in a
 * reload command's environment, so one script can serve several bundles. */
#define RELOAD_BUNDLE_ENV "BALLAST_BUNDLE_DIR"

/* Runs action @a's reload: its command (with $BALLAST_BUNDLE_DIR set to
 * @bundle_dir when non-NULL) or its unit. */
int reload_run_action(reload_ctx *c, const config_action *a, const char *bundle_dir,
                      reload_done_fn done, void *userdata, reload_job **ret);

/* Runs action @a's check command against @staged_dir: "{staged}" in its
 * arguments becomes @staged_dir, which is also in $BALLAST_STAGED_DIR.
 * -ENOENT if @a has no check. */
int reload_run_check(reload_ctx *c, const config_action *a, const char *staged_dir,
                     reload_done_fn done, void *userdata, reload_job **ret);

/* Stops a job without calling its callback (a command's process group is
 * killed). NULL is fine. */
void reload_job_cancel(reload_job *j);

/* Jobs running now (for tests and metrics). */
unsigned reload_ctx_running(const reload_ctx *c);

/* The D-Bus method for @mode ("ReloadUnit", ...). */
const char *reload_unit_method(config_unit_mode m);
