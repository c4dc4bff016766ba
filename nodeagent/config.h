/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The agent's local YAML config (docs/agent-cache.md, "Local config"). It is
 * the only place reload actions are defined: a manifest names an action, and
 * the node decides what that name runs. Example:
 *
 *   rootDir: /etc/ballast
 *   cacheDir: /var/lib/ballast
 *   pollInterval: 30s
 *   cacheKeep: 5
 *   reloadActions:
 *     nginx:
 *       check: [/usr/sbin/nginx, -t, -c, "{staged}/nginx.conf"]
 *       systemdUnit: nginx.service
 *       mode: reload
 *       timeout: 30s
 *     app:
 *       command: [/usr/local/bin/app-ctl, reload]
 *       timeout: 10
 *
 * Every error says FILE:LINE:COLUMN (yamlx_error()); unknown keys are errors.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "macro.h"

#define CONFIG_DEFAULT_ROOT_DIR           "/etc/ballast"
#define CONFIG_DEFAULT_CACHE_DIR          "/var/lib/ballast"
#define CONFIG_DEFAULT_POLL_INTERVAL_USEC (30 * USEC_PER_SEC)
#define CONFIG_DEFAULT_HEARTBEAT_USEC     (300 * USEC_PER_SEC)
#define CONFIG_DEFAULT_TIMEOUT_USEC       (30 * USEC_PER_SEC)
#define CONFIG_DEFAULT_CACHE_KEEP         5
#define CONFIG_MAX_CACHE_KEEP             100
#define CONFIG_MAX_ARGS                   256

/* The placeholder a check command's arguments may contain; it becomes the
 * staged revision's directory. The same path is in $BALLAST_STAGED_DIR. */
#define CONFIG_STAGED_PLACEHOLDER "{staged}"
#define CONFIG_STAGED_ENV         "BALLAST_STAGED_DIR"

typedef enum config_action_kind {
        CONFIG_ACTION_COMMAND, /* run @command (argv, no shell) */
        CONFIG_ACTION_SYSTEMD, /* reload/restart @unit through sd-bus */
} config_action_kind;

typedef enum config_unit_mode {
        CONFIG_UNIT_RELOAD,            /* ReloadUnit */
        CONFIG_UNIT_RESTART,           /* RestartUnit */
        CONFIG_UNIT_RELOAD_OR_RESTART, /* ReloadOrRestartUnit */
} config_unit_mode;

typedef struct config_action {
        char *name; /* owned; a bundle_is_reload_name() name */
        config_action_kind kind;
        char **command; /* owned, NULL-terminated; CONFIG_ACTION_COMMAND only */
        char *unit;     /* owned; CONFIG_ACTION_SYSTEMD only */
        config_unit_mode mode;
        char **check; /* owned, NULL-terminated, or NULL: run on the staged dir before the swap */
        uint64_t timeout_usec; /* for the reload and, separately, for the check */
} config_action;

typedef struct agent_config {
        char *root_dir;  /* owned; absolute */
        char *cache_dir; /* owned; absolute */
        uint64_t poll_interval_usec;
        uint64_t heartbeat_interval_usec;
        unsigned cache_keep;
        config_action *actions; /* owned; sorted by name */
        size_t n_actions;
} agent_config;

agent_config *config_free(agent_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(agent_config *, config_free);

/* A config with every default and no reload actions, owned by the caller.
 * Returns 0 or -ENOMEM. */
int config_new_default(agent_config **ret);

/* Parses @len bytes of YAML (@filename only names it in messages). An empty
 * document gives the defaults. Rejects unknown keys, wrong types, relative
 * paths, a rootDir and cacheDir that are the same or nested, durations that
 * don't parse or are out of range, an action with neither or both of command
 * and systemdUnit, argv[0] that is not an absolute path, "{staged}" outside
 * check, an invalid unit name or mode, and invalid action names. Returns
 * -EBADMSG (YAML syntax) or -EINVAL with "FILE:LINE:COL: ..." in @ret_err.
 * On success *@ret is owned by the caller. */
int config_parse(const char *data, size_t len, const char *filename, agent_config **ret,
                 err_info *ret_err);

/* Reads @path (at most 1 MiB) and parses it as above. -ENOENT, -EACCES and
 * -EFBIG come back as they are, with the path in @ret_err. */
int config_load(const char *path, agent_config **ret, err_info *ret_err);

/* Returns a borrowed pointer to the action called @name (valid while @c
 * lives), or NULL: a bundle naming an action that is not configured must not
 * be applied. */
const config_action *config_find_action(const agent_config *c, const char *name);

/* Parses a duration: an integer number of seconds, or a sequence of
 * NUMBER+UNIT with units ms, s, m, h ("1m30s", "500ms"). Returns 0 or
 * -EINVAL (also on overflow). */
int config_parse_duration(const char *s, uint64_t *ret_usec);

/* Copies NULL-terminated @argv with every "{staged}" replaced by
 * @staged_dir. *@ret is a NULL-terminated array owned by the caller (free
 * with config_strv_free()). Returns 0 or -ENOMEM. */
int config_expand_argv(char *const *argv, const char *staged_dir, char ***ret);

/* Frees a NULL-terminated string array; NULL is allowed. Returns NULL. */
char **config_strv_free(char **l);

const char *config_unit_mode_to_string(config_unit_mode m);
