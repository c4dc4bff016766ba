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

settings *settings_free(settings *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(defs); i++)
                if (defs[i].type == T_STRING)
                        free(*(char **) ((char *) s + defs[i].offset));
        free(s);
        return NULL;
}

/* Stores @value (from @origin, for messages) into the field of @d. */
static int setting_set(settings *s, const setting_def *d, const char *value, const char *origin,
                       err_info *e) {
        void *field = (char *) s + d->offset;
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

static void help(void) {
        printf("Usage: ballast-operator [OPTIONS]\n\n"
               "Watches ConfigBundle resources, renders each into an immutable,\n"
               "content-addressed bundle and publishes it to ConfigMaps and an object\n"
               "store. Settings: flag > environment > --config file > default.\n\n"
               "  -h --help                  Show this help and exit\n"
               "     --version               Show the version and exit\n"
               "     --config=FILE           Static YAML settings file (keys in "
               "docs/operator.md)\n");
        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                char left[64];

                snprintf(left, sizeof(left), "--%s=%s", defs[i].flag,
                         defs[i].type == T_BOOL                               ? "BOOL"
                         : defs[i].type == T_DURATION                         ? "DURATION"
                         : defs[i].type == T_UINT || defs[i].type == T_DOUBLE ? "N"
                                                                              : "VALUE");
                printf("     %-26s %s%s%s%s\n", left, defs[i].help, defs[i].env ? " [$" : "",
                       strempty(defs[i].env), defs[i].env ? "]" : "");
        }
        printf("\nDurations look like 30s, 5m, 1h30m or 250ms.\n");
}

int settings_load(int argc, char *argv[], settings **ret, err_info *ret_err) {
        _cleanup_(settings_freep) settings *s = NULL;
        struct option options[ELEMENTSOF(defs) + 4];
        const char *config = NULL;
        const char **flag_values;
        char hostname[256];
        int c, r, n = 0;

        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_FIRST_SETTING };
        options[n++] = (struct option){"help", no_argument, NULL, 'h'};
        options[n++] = (struct option){"version", no_argument, NULL, ARG_VERSION};
        options[n++] = (struct option){"config", required_argument, NULL, ARG_CONFIG};
        for (size_t i = 0; i < ELEMENTSOF(defs); i++)
                options[n++] = (struct option){defs[i].flag, required_argument, NULL,
                                               ARG_FIRST_SETTING + (int) i};
        options[n] = (struct option){};

        flag_values = calloc(ELEMENTSOF(defs), sizeof(char *));
        if (!flag_values)
                return -ENOMEM;
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        free(flag_values);
                        return 0;
                case ARG_VERSION:
                        printf("ballast-operator %s\n", BALLAST_VERSION);
                        free(flag_values);
                        return 0;
                case ARG_CONFIG:
                        config = optarg;
                        break;
                case '?':
                        free(flag_values);
                        if (optopt >= ARG_FIRST_SETTING ||
                            (optopt > 0 && optopt != '?' && optopt < 0x100))
                                return err_info_set(ret_err, -EINVAL, "option %s needs a value",
                                                    argv[optind - 1]);
                        return err_info_set(ret_err, -EINVAL, "unknown option '%s'",
                                            argv[optind - 1]);
                default:
                        flag_values[c - ARG_FIRST_SETTING] = optarg;
                }
        }
        if (optind < argc) {
                free(flag_values);
                return err_info_set(ret_err, -EINVAL, "unexpected argument '%s'", argv[optind]);
        }

        s = calloc(1, sizeof(*s));
        if (!s) {
                free(flag_values);
                return -ENOMEM;
        }
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
        r = 0;
        if (config)
                r = load_file(s, config, ret_err);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(defs); i++) {
                const char *env = defs[i].env ? getenv(defs[i].env) : NULL;
                char origin[128];

                if (!isempty(env)) {
                        snprintf(origin, sizeof(origin), "$%s", defs[i].env);
                        r = setting_set(s, &defs[i], env, origin, ret_err);
                }
                if (r >= 0 && flag_values[i]) {
                        snprintf(origin, sizeof(origin), "--%s", defs[i].flag);
                        r = setting_set(s, &defs[i], flag_values[i], origin, ret_err);
                }
        }
        free(flag_values);
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
