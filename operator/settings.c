/* SPDX-License-Identifier: Apache-2.0 */

#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <syslog.h>

#include "backoff.h"
#include "jsonx.h"
#include "log.h"
#include "parse.h"
#include "settings.h"
#include "yamlx.h"

typedef enum setting_type {
        T_STRING,
        T_BOOL,
        T_DURATION,
        T_UINT,
        T_DOUBLE,
        T_LOG_LEVEL,
} setting_type;

/* One row per setting: its flag, environment variable and config-file key. */
typedef struct setting_def {
        const char *flag; /* long option name */
        const char *env;  /* or NULL */
        const char *key;  /* dotted path in the YAML file, or NULL */
        setting_type type;
        size_t offset;
        uint64_t min, max; /* T_UINT bounds */
        const char *help;
} setting_def;

#define S(field) offsetof(settings, field)

static const setting_def defs[] = {
        {"kubeconfig", "KUBECONFIG", "kubeconfig", T_STRING, S(kubeconfig), 0, 0,
         "kubeconfig file; in-cluster credentials when unset"},
        {"context", NULL, "context", T_STRING, S(kube_context), 0, 0,
         "kubeconfig context (default: the current one)"},
        {"namespace", "POD_NAMESPACE", "namespace", T_STRING, S(namespace), 0, 0,
         "the operator's namespace, for its ConfigMaps and Lease"},
        {"watch-namespace", "BALLAST_WATCH_NAMESPACE", "watchNamespace", T_STRING,
         S(watch_namespace), 0, 0, "only ConfigBundles in this namespace (default: all)"},
        {"object-store", "BALLAST_OBJECT_STORE", "objectStore", T_STRING, S(object_store), 0, 0,
         "object store location: s3://BUCKET[/PREFIX]?endpoint=...&region=... or file:///DIR"},
        {"leader-elect", NULL, "leaderElection.enabled", T_BOOL, S(leader_elect), 0, 0,
         "elect a leader on a Lease (default: true)"},
        {"lease-name", NULL, "leaderElection.leaseName", T_STRING, S(lease_name), 0, 0,
         "the Lease's name (default: ballast-operator)"},
        {"identity", "POD_NAME", "leaderElection.identity", T_STRING, S(identity), 0, 0,
         "leader-election identity (default: hostname_random)"},
        {"lease-duration", NULL, "leaderElection.leaseDuration", T_DURATION, S(lease_duration_usec),
         0, 0, "(default: 15s)"},
        {"renew-deadline", NULL, "leaderElection.renewDeadline", T_DURATION, S(renew_deadline_usec),
         0, 0, "(default: 10s)"},
        {"retry-period", NULL, "leaderElection.retryPeriod", T_DURATION, S(retry_period_usec), 0, 0,
         "(default: 2s)"},
        {"workers", NULL, "workers", T_UINT, S(workers), 1, 256,
         "reconciles in flight at once (default: 4)"},
        {"kube-qps", NULL, "kubeQPS", T_DOUBLE, S(kube_qps), 0, 0,
         "API requests per second (default: 20)"},
        {"kube-burst", NULL, "kubeBurst", T_UINT, S(kube_burst), 1, 10000,
         "API request burst (default: 30)"},
        {"health-addr", "BALLAST_HEALTH_ADDR", "healthAddr", T_STRING, S(health_addr), 0, 0,
         "/healthz, /readyz and /metrics listen here (default: :8081; \"\" disables)"},
        {"resync-period", NULL, "resyncPeriod", T_DURATION, S(resync_usec), 0, 0,
         "re-check every bundle this often (default: 10m)"},
        {"fleet-interval", NULL, "fleetInterval", T_DURATION, S(fleet_interval_usec), 0, 0,
         "read agent reports this often, jittered (default: 30s)"},
        {"manifest-retention", NULL, "manifestRetention", T_DURATION, S(manifest_retention_usec), 0,
         0, "keep superseded manifests at least this long (default: 24h)"},
        {"log-level", "BALLAST_LOG_LEVEL", "logLevel", T_LOG_LEVEL, S(log_level), 0, 0,
         "error, warning, info or debug (default: info)"},
};

/* The rows of `ballast-operator check-release` (the chart's helm test). */
#define C(field) offsetof(check_settings, field)

static const setting_def check_defs[] = {
        {"kubeconfig", "KUBECONFIG", NULL, T_STRING, C(kubeconfig), 0, 0,
         "kubeconfig file; in-cluster credentials when unset"},
        {"context", NULL, NULL, T_STRING, C(kube_context), 0, 0,
         "kubeconfig context (default: the current one)"},
        {"namespace", "POD_NAMESPACE", NULL, T_STRING, C(namespace), 0, 0,
         "the release's namespace (default: the credentials' namespace)"},
        {"deployment", NULL, NULL, T_STRING, C(deployment), 0, 0, "the operator's Deployment"},
        {"daemonset", NULL, NULL, T_STRING, C(daemonset), 0, 0, "the agents' DaemonSet"},
        {"timeout", NULL, NULL, T_DURATION, C(timeout_usec), 0, 0,
         "keep checking this long before giving up (default: 60s)"},
};

/* Frees the strings of the rows @rows[@n] in @base, then @base. */
static void free_fields(const setting_def *rows, size_t n, void *base) {
        if (!base)
                return;
        for (size_t i = 0; i < n; i++)
                if (rows[i].type == T_STRING)
                        free(*(char **) ((char *) base + rows[i].offset));
        free(base);
}

settings *settings_free(settings *s) {
        free_fields(defs, ELEMENTSOF(defs), s);
        return NULL;
}

check_settings *check_settings_free(check_settings *s) {
        free_fields(check_defs, ELEMENTSOF(check_defs), s);
        return NULL;
}

/* Stores @value (from @origin, for messages) into the field of @d in @base,
 * a settings or check_settings. */
static int setting_set(void *base, const setting_def *d, const char *value, const char *origin,
                       err_info *e) {
        void *field = (char *) base + d->offset;
        uint64_t u;
        bool b;
        int r;

        switch (d->type) {
        case T_STRING: {
                char *copy = strdup(value);

                if (!copy)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = copy;
                return 0;
        }
        case T_BOOL:
                r = parse_bool(value, &b);
                if (r < 0)
                        break;
                *(bool *) field = b;
                return 0;
        case T_DURATION:
                r = parse_duration_usec(value, &u);
                if (r < 0)
                        break;
                *(uint64_t *) field = u;
                return 0;
        case T_UINT:
                r = parse_uint(value, d->min, d->max, &u);
                if (r < 0)
                        return err_info_set(e, -EINVAL,
                                            "%s: '%s' is not a number in %" PRIu64 "..%" PRIu64,
                                            origin, value, d->min, d->max);
                *(unsigned *) field = (unsigned) u;
                return 0;
        case T_DOUBLE: {
                char *end;
                double v;

                errno = 0;
                v = strtod(value, &end);
                if (isempty(value) || *end || errno || v <= 0)
                        break;
                *(double *) field = v;
                return 0;
        }
        case T_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0)
                        break;
                *(int *) field = r;
                return 0;
        }
        return err_info_set(e, -EINVAL, "%s: invalid value '%s'", origin, value);
}

static int load_file(settings *s, const char *path, err_info *e) {
        _cleanup_json_ json_object *root = NULL;
        int r;

        r = yamlx_load_file(path, 0, &root, e);
        if (r < 0)
                return r;
        if (!root)
                return 0;
        if (!json_object_is_type(root, json_type_object))
                return yamlx_error(e, -EINVAL, path, root, "the top level must be a mapping");

        /* Every key in the file must be one we know: typos are errors. */
        json_object_object_foreach(root, key, val) {
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                        const char *k = defs[i].key;
                        size_t n = strlen(key);

                        if (k && strneq(k, key, n) && (k[n] == '\0' || k[n] == '.'))
                                known = true;
                }
                if (!known)
                        return yamlx_error(e, -EINVAL, path, val, "unknown setting '%s'", key);
                if (streq(key, "leaderElection") && json_object_is_type(val, json_type_object)) {
                        json_object_object_foreach(val, sub, subval) {
                                char dotted[128];
                                bool found = false;

                                snprintf(dotted, sizeof(dotted), "leaderElection.%s", sub);
                                for (size_t i = 0; i < ELEMENTSOF(defs); i++)
                                        if (defs[i].key && streq(defs[i].key, dotted))
                                                found = true;
                                if (!found)
                                        return yamlx_error(e, -EINVAL, path, subval,
                                                           "unknown setting '%s'", dotted);
                        }
                }
        }

        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                json_object *v;
                char origin[sizeof(((err_info *) NULL)->message)];

                if (!defs[i].key)
                        continue;
                v = jsonx_get(root, defs[i].key);
                if (!v)
                        continue;
                if (json_object_is_type(v, json_type_object) ||
                    json_object_is_type(v, json_type_array) ||
                    json_object_is_type(v, json_type_null))
                        return yamlx_error(e, -EINVAL, path, v, "%s must be a scalar", defs[i].key);
                r = setting_set(s, &defs[i], json_object_get_string(v), defs[i].key, e);
                if (r < 0) {
                        snprintf(origin, sizeof(origin), "%s", e ? e->message : "invalid");
                        return yamlx_error(e, r, path, v, "%s", origin);
                }
        }
        return 0;
}

/* The lines of --help for @rows: flag, help and environment variable. */
static void help_rows(const setting_def *rows, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char left[64];

                snprintf(left, sizeof(left), "--%s=%s", rows[i].flag,
                         rows[i].type == T_BOOL                               ? "BOOL"
                         : rows[i].type == T_DURATION                         ? "DURATION"
                         : rows[i].type == T_UINT || rows[i].type == T_DOUBLE ? "N"
                                                                              : "VALUE");
                printf("     %-26s %s%s%s%s\n", left, rows[i].help, rows[i].env ? " [$" : "",
                       strempty(rows[i].env), rows[i].env ? "]" : "");
        }
}

static void help(void) {
        printf("Usage: ballast-operator [OPTIONS]\n"
               "       ballast-operator check-release [OPTIONS]\n\n"
               "Watches ConfigBundle resources, renders each into an immutable,\n"
               "content-addressed bundle and publishes it to ConfigMaps and an object\n"
               "store. Settings: flag > environment > --config file > default.\n"
               "check-release checks a Helm release's health (check-release --help).\n\n"
               "  -h --help                  Show this help and exit\n"
               "     --version               Show the version and exit\n"
               "     --config=FILE           Static YAML settings file (keys in "
               "docs/operator.md)\n");
        help_rows(defs, ELEMENTSOF(defs));
        printf("\nDurations look like 30s, 5m, 1h30m or 250ms.\n");
}

static void check_help(void) {
        printf("Usage: ballast-operator check-release [OPTIONS]\n\n"
               "Checks that a Ballast release is healthy, as `kubectl rollout status`\n"
               "would: the operator's Deployment has every replica updated and available,\n"
               "and the agents' DaemonSet an updated, ready pod on every node it selects.\n"
               "Checks again every 2s until then or --timeout, and prints one line per\n"
               "object. The chart's `helm test` runs it. Exit status: 0 healthy, 1 not\n"
               "healthy (or unknown), 2 usage error. Settings: flag > environment > default.\n\n"
               "  -h --help                  Show this help and exit\n"
               "     --version               Show the version and exit\n");
        help_rows(check_defs, ELEMENTSOF(check_defs));
        printf("\nName --deployment, --daemonset or both. --timeout=0s checks once.\n"
               "Durations look like 30s, 5m, 1h30m or 250ms.\n");
}

/* Parses @argv: --help (printed by @help_fn), --version, --config (only when
 * @ret_config is non-NULL) and one --FLAG=VALUE option per row of @rows,
 * whose values land in @ret_values[row] (borrowed from @argv; left NULL when
 * absent). Returns 1 to go on, 0 when --help or --version was handled, or a
 * negative errno with the reason in @ret_err (-EINVAL: a usage error). */
static int parse_argv(int argc, char *argv[], const setting_def *rows, size_t n,
                      void (*help_fn)(void), const char **ret_config, const char **ret_values,
                      err_info *ret_err) {
        _cleanup_free_ struct option *options = NULL;
        size_t k = 0;
        int c;

        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_FIRST_SETTING };
        options = calloc(n + 4, sizeof(*options)); /* the last one stays zero */
        if (!options)
                return -ENOMEM;
        options[k++] = (struct option){"help", no_argument, NULL, 'h'};
        options[k++] = (struct option){"version", no_argument, NULL, ARG_VERSION};
        if (ret_config)
                options[k++] = (struct option){"config", required_argument, NULL, ARG_CONFIG};
        for (size_t i = 0; i < n; i++)
                options[k++] = (struct option){rows[i].flag, required_argument, NULL,
                                               ARG_FIRST_SETTING + (int) i};

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help_fn();
                        return 0;
                case ARG_VERSION:
                        printf("ballast-operator %s\n", BALLAST_VERSION);
                        return 0;
                case ARG_CONFIG:
                        *ret_config = optarg;
                        break;
                case '?':
                        if (optopt >= ARG_FIRST_SETTING ||
                            (optopt > 0 && optopt != '?' && optopt < 0x100))
                                return err_info_set(ret_err, -EINVAL, "option %s needs a value",
                                                    argv[optind - 1]);
                        return err_info_set(ret_err, -EINVAL, "unknown option '%s'",
                                            argv[optind - 1]);
                default:
                        ret_values[c - ARG_FIRST_SETTING] = optarg;
                }
        }
        if (optind < argc)
                return err_info_set(ret_err, -EINVAL, "unexpected argument '%s'", argv[optind]);
        return 1;
}

/* Stores each row's environment variable, then its flag from @values (as
 * parse_argv() left them), into @base: a flag beats the environment, and both
 * beat what @base held (defaults, the --config file). */
static int apply_rows(const setting_def *rows, size_t n, void *base, const char *const *values,
                      err_info *ret_err) {
        for (size_t i = 0; i < n; i++) {
                const char *env = rows[i].env ? getenv(rows[i].env) : NULL;
                char origin[128];
                int r;

                if (!isempty(env)) {
                        snprintf(origin, sizeof(origin), "$%s", rows[i].env);
                        r = setting_set(base, &rows[i], env, origin, ret_err);
                        if (r < 0)
                                return r;
                }
                if (values[i]) {
                        snprintf(origin, sizeof(origin), "--%s", rows[i].flag);
                        r = setting_set(base, &rows[i], values[i], origin, ret_err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int settings_load(int argc, char *argv[], settings **ret, err_info *ret_err) {
        _cleanup_(settings_freep) settings *s = NULL;
        const char *values[ELEMENTSOF(defs)] = {};
        const char *config = NULL;
        char hostname[256];
        int r;

        r = parse_argv(argc, argv, defs, ELEMENTSOF(defs), help, &config, values, ret_err);
        if (r <= 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (settings){
                .leader_elect = true,
                .lease_duration_usec = 15 * USEC_PER_SEC,
                .renew_deadline_usec = 10 * USEC_PER_SEC,
                .retry_period_usec = 2 * USEC_PER_SEC,
                .workers = 4,
                .kube_qps = 20,
                .kube_burst = 30,
                .resync_usec = 600 * USEC_PER_SEC,
                .fleet_interval_usec = 30 * USEC_PER_SEC,
                .manifest_retention_usec = 24 * 3600 * USEC_PER_SEC,
                .log_level = LOG_INFO,
        };
        if (config) {
                r = load_file(s, config, ret_err);
                if (r < 0)
                        return r;
        }
        r = apply_rows(defs, ELEMENTSOF(defs), s, values, ret_err);
        if (r < 0)
                return r;

        if (!s->namespace && !(s->namespace = strdup("ballast-system")))
                return -ENOMEM;
        if (!s->lease_name && !(s->lease_name = strdup("ballast-operator")))
                return -ENOMEM;
        if (!s->health_addr && !(s->health_addr = strdup(":8081")))
                return -ENOMEM;
        if (!s->identity) {
                if (gethostname(hostname, sizeof(hostname)) < 0)
                        snprintf(hostname, sizeof(hostname), "ballast-operator");
                hostname[sizeof(hostname) - 1] = '\0';
                if (asprintf(&s->identity, "%s_%08x", hostname,
                             (unsigned) random_u64_below(UINT32_MAX)) < 0)
                        return -ENOMEM;
        }
        if (s->renew_deadline_usec >= s->lease_duration_usec ||
            s->retry_period_usec >= s->renew_deadline_usec)
                return err_info_set(ret_err, -EINVAL,
                                    "leader election needs retry-period < renew-deadline < "
                                    "lease-duration");
        *ret = TAKE_PTR(s);
        return 1;
}

int check_settings_load(int argc, char *argv[], check_settings **ret, err_info *ret_err) {
        _cleanup_(check_settings_freep) check_settings *s = NULL;
        const char *values[ELEMENTSOF(check_defs)] = {};
        int r;

        r = parse_argv(argc, argv, check_defs, ELEMENTSOF(check_defs), check_help, NULL, values,
                       ret_err);
        if (r <= 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->timeout_usec = 60 * USEC_PER_SEC;
        r = apply_rows(check_defs, ELEMENTSOF(check_defs), s, values, ret_err);
        if (r < 0)
                return r;

        if (!s->deployment && !s->daemonset)
                return err_info_set(ret_err, -EINVAL,
                                    "nothing to check: name --deployment, --daemonset or both");
        if ((s->deployment && isempty(s->deployment)) || (s->daemonset && isempty(s->daemonset)))
                return err_info_set(ret_err, -EINVAL, "--deployment and --daemonset need a name");
        *ret = TAKE_PTR(s);
        return 1;
}
