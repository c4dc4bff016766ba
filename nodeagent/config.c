/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local YAML config. yamlx gives a json-c tree whose nodes remember
 * their source position; every check below reports through yamlx_error() so
 * a person sees FILE:LINE:COLUMN.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>

#include "bundle.h"
#include "config.h"
#include "fsx.h"
#include "jsonx.h"
#include "yamlx.h"

#define CONFIG_MAX_FILE_SIZE (1024 * 1024)
#define CONFIG_MAX_ARG_LEN   4096

char **config_strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, config_strv_free);

static void action_done(config_action *a) {
        free(a->name);
        config_strv_free(a->command);
        config_strv_free(a->check);
        free(a->unit);
}

agent_config *config_free(agent_config *c) {
        if (!c)
                return NULL;
        free(c->root_dir);
        free(c->cache_dir);
        for (size_t i = 0; i < c->n_actions; i++)
                action_done(&c->actions[i]);
        free(c->actions);
        free(c);
        return NULL;
}

int config_new_default(agent_config **ret) {
        _cleanup_(config_freep) agent_config *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->root_dir = strdup(CONFIG_DEFAULT_ROOT_DIR);
        c->cache_dir = strdup(CONFIG_DEFAULT_CACHE_DIR);
        if (!c->root_dir || !c->cache_dir)
                return -ENOMEM;
        c->poll_interval_usec = CONFIG_DEFAULT_POLL_INTERVAL_USEC;
        c->heartbeat_interval_usec = CONFIG_DEFAULT_HEARTBEAT_USEC;
        c->cache_keep = CONFIG_DEFAULT_CACHE_KEEP;
        *ret = TAKE_PTR(c);
        return 0;
}

const char *config_unit_mode_to_string(config_unit_mode m) {
        switch (m) {
        case CONFIG_UNIT_RELOAD:
                return "reload";
        case CONFIG_UNIT_RESTART:
                return "restart";
        case CONFIG_UNIT_RELOAD_OR_RESTART:
                return "reload-or-restart";
        }
        return "?";
}

int config_parse_duration(const char *s, uint64_t *ret_usec) {
        uint64_t total = 0;
        const char *p = s;

        if (isempty(s))
                return -EINVAL;
        /* A bare integer is seconds. */
        if (strspn(s, "0123456789") == strlen(s)) {
                if (strlen(s) > 12)
                        return -EINVAL;
                *ret_usec = strtoull(s, NULL, 10) * USEC_PER_SEC;
                return 0;
        }
        while (*p) {
                uint64_t n = 0, unit;
                size_t digits = strspn(p, "0123456789");

                if (digits == 0 || digits > 12)
                        return -EINVAL;
                for (size_t i = 0; i < digits; i++)
                        n = n * 10 + (uint64_t) (p[i] - '0');
                p += digits;
                if (startswith(p, "ms")) {
                        unit = USEC_PER_MSEC;
                        p += 2;
                } else if (*p == 's') {
                        unit = USEC_PER_SEC;
                        p++;
                } else if (*p == 'm') {
                        unit = 60 * USEC_PER_SEC;
                        p++;
                } else if (*p == 'h') {
                        unit = 3600 * USEC_PER_SEC;
                        p++;
                } else
                        return -EINVAL;
                /* 12 digits of hours is < 2^64 us only up to ~5e9 h; check. */
                if (n > (UINT64_MAX - total) / unit)
                        return -EINVAL;
                total += n * unit;
        }
        *ret_usec = total;
        return 0;
}

int config_expand_argv(char *const *argv, const char *staged_dir, char ***ret) {
        _cleanup_(config_strv_freep) char **l = NULL;
        size_t n = 0, plen = strlen(CONFIG_STAGED_PLACEHOLDER);

        if (!argv || !staged_dir)
                return -EINVAL;
        while (argv[n])
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *buf = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);

                if (!f)
                        return -ENOMEM;
                for (const char *p = argv[i]; *p;) {
                        const char *hit = strstr(p, CONFIG_STAGED_PLACEHOLDER);

                        if (!hit) {
                                fputs(p, f);
                                break;
                        }
                        fwrite(p, 1, (size_t) (hit - p), f);
                        fputs(staged_dir, f);
                        p = hit + plen;
                }
                if (fclose(f) != 0 || !buf)
                        return -ENOMEM;
                l[i] = TAKE_PTR(buf);
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct parser {
        const char *filename;
        err_info *e;
} parser;

#define fail(p, node, ...) yamlx_error((p)->e, -EINVAL, (p)->filename, (node), __VA_ARGS__)

static int check_keys(parser *p, json_object *o, const char *where, const char *const *allowed) {
        json_object_object_foreach(o, k, v) {
                bool ok = false;

                for (size_t i = 0; allowed[i]; i++)
                        if (streq(k, allowed[i]))
                                ok = true;
                if (!ok) {
                        _cleanup_free_ char *list = NULL;
                        size_t len = 0;
                        FILE *f = open_memstream(&list, &len);

                        if (!f)
                                return -ENOMEM;
                        for (size_t i = 0; allowed[i]; i++)
                                fprintf(f, "%s%s", i ? ", " : "", allowed[i]);
                        if (fclose(f) != 0)
                                return -ENOMEM;
                        return fail(p, v, "unknown key '%s'%s%s (known: %s)", k,
                                    *where ? " in " : "", where, list);
                }
        }
        return 0;
}

static int get_path(parser *p, json_object *v, const char *key, char **ret) {
        const char *s = json_object_get_string(v);
        char *copy;

        if (!json_object_is_type(v, json_type_string) || isempty(s))
                return fail(p, v, "%s must be a string", key);
        if (s[0] != '/')
                return fail(p, v, "%s '%s' must be an absolute path", key, s);
        if (strlen(s) >= 4096)
                return fail(p, v, "%s is too long", key);
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        /* Drop trailing slashes so prefix comparisons below are exact. */
        for (size_t n = strlen(copy); n > 1 && copy[n - 1] == '/'; n--)
                copy[n - 1] = '\0';
        free(*ret);
        *ret = copy;
        return 0;
}

static int get_duration(parser *p, json_object *v, const char *key, uint64_t min, uint64_t max,
                        uint64_t *ret) {
        char buf[32];
        const char *s;
        uint64_t usec;

        if (json_object_is_type(v, json_type_int)) {
                int64_t n = json_object_get_int64(v);

                if (n < 0 || n > 1000000000)
                        return fail(p, v, "%s: %" PRIi64 " seconds is out of range", key, n);
                snprintf(buf, sizeof(buf), "%" PRIi64, n);
                s = buf;
        } else if (json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        else
                return fail(p, v,
                            "%s must be a duration (\"30s\", \"1m30s\", \"500ms\" or seconds)",
                            key);
        if (config_parse_duration(s, &usec) < 0)
                return fail(p, v,
                            "%s: '%s' is not a duration (\"30s\", \"1m30s\", \"500ms\" or seconds)",
                            key, s);
        if (usec < min || usec > max)
                return fail(p, v, "%s: '%s' is out of range (%" PRIu64 "ms..%" PRIu64 "s)", key, s,
                            min / USEC_PER_MSEC, max / USEC_PER_SEC);
        *ret = usec;
        return 0;
}

static int get_argv(parser *p, json_object *v, const char *what, bool allow_staged, char ***ret) {
        _cleanup_(config_strv_freep) char **l = NULL;
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return fail(p, v, "%s must be a list of strings (argv; no shell)", what);
        n = json_object_array_length(v);
        if (n == 0)
                return fail(p, v, "%s must not be empty", what);
        if (n > CONFIG_MAX_ARGS)
                return fail(p, v, "%s has %zu arguments, at most %d allowed", what, n,
                            CONFIG_MAX_ARGS);
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(v, i);
                const char *s;

                /* A plain YAML 1 or true becomes an int or bool: take its
                 * text, since argv is always text. */
                if (!a || json_object_is_type(a, json_type_null) ||
                    json_object_is_type(a, json_type_object) ||
                    json_object_is_type(a, json_type_array))
                        return fail(p, a ? a : v, "%s[%zu] must be a string", what, i);
                s = json_object_get_string(a);
                if ((json_object_is_type(a, json_type_string) &&
                     strlen(s) != (size_t) json_object_get_string_len(a)) ||
                    strlen(s) > CONFIG_MAX_ARG_LEN)
                        return fail(p, a, "%s[%zu] is too long or contains a NUL", what, i);
                if (i == 0 && s[0] != '/')
                        return fail(p, a,
                                    "%s[0] '%s' must be an absolute path (no shell, no $PATH "
                                    "search)",
                                    what, s);
                if (!allow_staged && strstr(s, CONFIG_STAGED_PLACEHOLDER))
                        return fail(p, a,
                                    "%s[%zu]: " CONFIG_STAGED_PLACEHOLDER " is only available "
                                    "in check (the staged files are live when the command runs)",
                                    what, i);
                l[i] = strdup(s);
                if (!l[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static bool is_unit_name(const char *s) {
        static const char *const suffixes[] = {".service", ".socket", ".target", ".path",
                                               ".timer",   ".mount",  NULL};
        const char *dot = strrchr(s, '.');
        bool ok = false;
        size_t n = strlen(s);

        if (n == 0 || n > 255 || !dot || dot == s)
                return false;
        for (size_t i = 0; suffixes[i]; i++)
                if (streq(dot, suffixes[i]))
                        ok = true;
        for (size_t i = 0; ok && i < (size_t) (dot - s); i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr(":-_.\\@", c)))
                        ok = false;
        }
        return ok;
}

static int parse_action(parser *p, const char *name, json_object *o, config_action *a) {
        static const char *const keys[] = {"check",       "command", "mode",
                                           "systemdUnit", "timeout", NULL};
        char where[96];
        err_info why;
        json_object *v;
        int r;

        snprintf(where, sizeof(where), "reloadActions.%s", name);
        if (bundle_check_reload_name(name, &why) < 0)
                return fail(p, o, "reloadActions: '%s' is not a valid action name: %s", name,
                            why.message);
        a->name = strdup(name);
        if (!a->name)
                return -ENOMEM;
        a->timeout_usec = CONFIG_DEFAULT_TIMEOUT_USEC;
        if (!json_object_is_type(o, json_type_object))
                return fail(p, o, "%s must be a mapping with command or systemdUnit", where);
        r = check_keys(p, o, where, keys);
        if (r < 0)
                return r;

        bool has_command = json_object_object_get_ex(o, "command", &v);
        if (has_command) {
                r = get_argv(p, v, "command", false, &a->command);
                if (r < 0)
                        return r;
        }
        bool has_unit = json_object_object_get_ex(o, "systemdUnit", &v);
        if (has_unit) {
                const char *s = json_object_get_string(v);

                if (!json_object_is_type(v, json_type_string) || !is_unit_name(s))
                        return fail(p, v,
                                    "%s.systemdUnit '%s' is not a unit name (like nginx.service)",
                                    where, s ? s : "");
                a->unit = strdup(s);
                if (!a->unit)
                        return -ENOMEM;
        }
        if (has_command == has_unit)
                return fail(p, o, "%s: exactly one of command or systemdUnit must be set", where);
        a->kind = has_unit ? CONFIG_ACTION_SYSTEMD : CONFIG_ACTION_COMMAND;

        if (json_object_object_get_ex(o, "mode", &v)) {
                const char *s = json_object_get_string(v);

                if (!has_unit)
                        return fail(p, v, "%s.mode only applies to systemdUnit", where);
                if (json_object_is_type(v, json_type_string) && streq(s, "reload"))
                        a->mode = CONFIG_UNIT_RELOAD;
                else if (json_object_is_type(v, json_type_string) && streq(s, "restart"))
                        a->mode = CONFIG_UNIT_RESTART;
                else if (json_object_is_type(v, json_type_string) && streq(s, "reload-or-restart"))
                        a->mode = CONFIG_UNIT_RELOAD_OR_RESTART;
                else
                        return fail(p, v,
                                    "%s.mode '%s' is not reload, restart or reload-or-restart",
                                    where, s ? s : "");
        }
        if (json_object_object_get_ex(o, "check", &v)) {
                r = get_argv(p, v, "check", true, &a->check);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(o, "timeout", &v)) {
                r = get_duration(p, v, "timeout", USEC_PER_MSEC, 3600 * USEC_PER_SEC,
                                 &a->timeout_usec);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int action_cmp(const void *a, const void *b) {
        return strcmp(((const config_action *) a)->name, ((const config_action *) b)->name);
}

/* True if @a is @b or a directory below it (or the other way round). */
static bool paths_overlap(const char *a, const char *b) {
        size_t na = strlen(a), nb = strlen(b), n = MIN(na, nb);

        if (strncmp(a, b, n) != 0)
                return false;
        if (na == nb)
                return true;
        /* "/" is a prefix of everything. */
        if (n == 1)
                return true;
        return (na > nb ? a : b)[n] == '/';
}

static int parse_tree(parser *p, json_object *root, agent_config *c) {
        static const char *const keys[] = {
                "cacheDir", "cacheKeep", "heartbeatInterval", "pollInterval", "reloadActions",
                "rootDir",  NULL};
        json_object *v;
        int r;

        if (!json_object_is_type(root, json_type_object))
                return fail(p, root, "the config must be a mapping");
        r = check_keys(p, root, "", keys);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(root, "rootDir", &v)) {
                r = get_path(p, v, "rootDir", &c->root_dir);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(root, "cacheDir", &v)) {
                r = get_path(p, v, "cacheDir", &c->cache_dir);
                if (r < 0)
                        return r;
        }
        if (paths_overlap(c->root_dir, c->cache_dir))
                return fail(p, json_object_object_get_ex(root, "cacheDir", &v) ? v : root,
                            "rootDir '%s' and cacheDir '%s' must not be the same or inside each "
                            "other",
                            c->root_dir, c->cache_dir);
        if (json_object_object_get_ex(root, "pollInterval", &v)) {
                r = get_duration(p, v, "pollInterval", USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC,
                                 &c->poll_interval_usec);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(root, "heartbeatInterval", &v)) {
                r = get_duration(p, v, "heartbeatInterval", USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC,
                                 &c->heartbeat_interval_usec);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(root, "cacheKeep", &v)) {
                int64_t n = json_object_get_int64(v);

                if (!json_object_is_type(v, json_type_int) || n < 1 || n > CONFIG_MAX_CACHE_KEEP)
                        return fail(p, v, "cacheKeep must be an integer in 1..%d",
                                    CONFIG_MAX_CACHE_KEEP);
                c->cache_keep = (unsigned) n;
        }
        if (json_object_object_get_ex(root, "reloadActions", &v) &&
            !json_object_is_type(v, json_type_null)) {
                size_t n;

                if (!json_object_is_type(v, json_type_object))
                        return fail(p, v, "reloadActions must be a mapping of name to action");
                n = (size_t) json_object_object_length(v);
                c->actions = calloc(MAX(n, (size_t) 1), sizeof(config_action));
                if (!c->actions)
                        return -ENOMEM;
                json_object_object_foreach(v, name, o) {
                        /* Count first so a failure frees what was set. */
                        c->n_actions++;
                        r = parse_action(p, name, o, &c->actions[c->n_actions - 1]);
                        if (r < 0)
                                return r;
                }
                qsort(c->actions, c->n_actions, sizeof(config_action), action_cmp);
        }
        return 0;
}

int config_parse(const char *data, size_t len, const char *filename, agent_config **ret,
                 err_info *ret_err) {
        _cleanup_(config_freep) agent_config *c = NULL;
        _cleanup_json_ json_object *root = NULL;
        parser p = {.filename = filename ? filename : "<config>", .e = ret_err};
        int r;

        r = yamlx_parse(data, len, p.filename, &root, ret_err);
        if (r < 0)
                return r;
        r = config_new_default(&c);
        if (r < 0)
                return r;
        if (root) {
                r = parse_tree(&p, root, c);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int config_load(const char *path, agent_config **ret, err_info *ret_err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (!path)
                return -EINVAL;
        r = fsx_read_file(AT_FDCWD, path, CONFIG_MAX_FILE_SIZE, &data, &len);
        if (r == -EFBIG)
                return err_info_set(ret_err, r, "%s: larger than %d bytes", path,
                                    CONFIG_MAX_FILE_SIZE);
        if (r < 0)
                return err_info_set(ret_err, r, "%s: %s", path, strerror(-r));
        return config_parse(data, len, path, ret, ret_err);
}

const config_action *config_find_action(const agent_config *c, const char *name) {
        config_action key = {.name = (char *) name};

        if (!c || !name || c->n_actions == 0)
                return NULL;
        return bsearch(&key, c->actions, c->n_actions, sizeof(config_action), action_cmp);
}
