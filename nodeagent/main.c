/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballast-agent: the data plane. Takes bundles from the API server and the
 * object store, verifies and caches them, and keeps the last-known-good
 * state applied on its node through any outage of either.
 *
 * Start-up order (docs/agent.md): config, cache (opened and verified), the
 * root made to match last-known-good, READY=1 and /readyz, and only then the
 * network. Nothing here waits for a remote source, and no remote failure
 * ends the process.
 */

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "backoff.h"
#include "cache.h"
#include "config.h"
#include "engine.h"
#include "fetch.h"
#include "healthd.h"
#include "jsonx.h"
#include "kube.h"
#include "manifest.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "objstore.h"
#include "parse.h"
#include "reload.h"
#include "report.h"
#include "selector.h"

#define DEFAULT_NAMESPACE   "ballast-system"
#define DEFAULT_HEALTH_ADDR ":8082"
#define TICK_USEC           (2 * USEC_PER_SEC)

typedef struct args {
        char *kubeconfig;
        char *node_name;
        char *namespace;
        char *object_store;
        char *cache_dir, *root_dir;
        char *config_path;
        uint64_t poll_interval, heartbeat_interval; /* 0: from the config file */
        uint64_t api_resume_window;                 /* with api_resume_window_set */
        bool api_resume_window_set;                 /* else FETCH_RESUME_WINDOW_POLLS polls */
        char *health_addr;
        char *metrics_addr; /* NULL: the health server */
        bool no_jitter;
        int log_level;
        json_object *node_labels;
        char *bus_address; /* hidden, for tests: the bus systemd units are reloaded on */
} args;

typedef struct agent {
        args a;
        sd_event *event;
        agent_config *config;
        cache *cache;
        kube_client *kube;
        objstore *store;
        reload_ctx *reload;
        engine *engine;
        fetch *fetch;
        report *report;
        healthd *health, *metrics_srv;
        sd_event_source *tick;
        sd_event_source *listen_retry; /* an address that could not be bound yet */
        backoff listen_backoff;
        bool ready;
        metric *m_config_errors, *m_cache_problems;
} agent;

static void args_done(args *a) {
        free(a->kubeconfig);
        free(a->node_name);
        free(a->namespace);
        free(a->object_store);
        free(a->cache_dir);
        free(a->root_dir);
        free(a->config_path);
        free(a->health_addr);
        free(a->metrics_addr);
        free(a->bus_address);
        json_object_put(a->node_labels);
}

static void help(void) {
        printf("Usage: ballast-agent [OPTIONS]\n"
               "\n"
               "Keeps this node's Ballast bundles applied from the API server, the object\n"
               "store and the local cache, through outages of any of them.\n"
               "\n"
               "  -h --help                 Show this help and exit\n"
               "     --version              Show the version and exit\n"
               "     --kubeconfig=PATH      Kubeconfig of the API server (default: in-cluster\n"
               "                            credentials; with neither, no API server is used)\n"
               "     --node-name=NAME       This node's name (default: $NODE_NAME, else the\n"
               "                            host name)\n"
               "     --namespace=NS         The operator's namespace, where the bundle\n"
               "                            ConfigMaps live (default: $BALLAST_NAMESPACE, else\n"
               "                            " DEFAULT_NAMESPACE ")\n"
               "     --object-store=LOC     s3://BUCKET[/PREFIX][?endpoint=URL&region=R&...] or\n"
               "                            file:///DIR, as the operator's (default:\n"
               "                            $BALLAST_OBJECT_STORE; none: API server only)\n"
               "     --config=PATH          The agent's YAML config: reload actions, dirs,\n"
               "                            intervals (SIGHUP reloads it)\n"
               "     --cache-dir=DIR        The cache (default: config cacheDir, else\n"
               "                            " CONFIG_DEFAULT_CACHE_DIR ")\n"
               "     --root-dir=DIR         Where bundles are applied (default: config rootDir,\n"
               "                            else " CONFIG_DEFAULT_ROOT_DIR ")\n"
               "     --poll-interval=DUR    Object store index poll interval (default: config\n"
               "                            pollInterval, else 30s)\n"
               "     --heartbeat-interval=DUR  Status report heartbeat (default: config\n"
               "                            heartbeatInterval, else 5m)\n"
               "     --api-resume-window=DUR  After an API server outage, reconnect at a\n"
               "                            random time within this window (default: 10 poll\n"
               "                            intervals; 0: back off as usual)\n"
               "     --node-labels=K=V,...  This node's labels when there is no API server\n"
               "                            (the Node object's labels win when it is watched)\n"
               "     --health-addr=ADDR     /healthz, /readyz and /metrics "
               "(default " DEFAULT_HEALTH_ADDR ";\n"
               "                            \"\" disables; a port in use is retried, the\n"
               "                            agent applies configuration meanwhile)\n"
               "     --metrics-addr=ADDR    A separate listener for /metrics (default: the\n"
               "                            health server)\n"
               "     --no-jitter            Disable splay and jitter (a naive baseline for\n"
               "                            benchmarks only: a restarted fleet comes back in "
               "step)\n"
               "     --log-level=LEVEL      error, warning, info (default) or debug\n"
               "\n"
               "DUR is 30s, 1m30s, 500ms or a number of seconds.\n"
               "Exit status: 0 after SIGTERM, 1 on a start-up failure, 2 on a usage error.\n");
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("ballast-agent: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'ballast-agent --help'.\n", stderr);
        return -EINVAL;
}

/* "k=v,k2=v2" -> {"k":"v","k2":"v2"}; "" -> {}. */
static int parse_labels(const char *s, json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;

        if (!o || !copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        return usage_error("--node-labels: '%s' is not KEY=VALUE", tok);
                *eq = '\0';
                if (!selector_is_label_key(tok))
                        return usage_error("--node-labels: '%s' is not a valid label key", tok);
                if (!selector_is_label_value(eq + 1))
                        return usage_error("--node-labels: '%s' is not a valid label value",
                                           eq + 1);
                json_object_object_add(o, tok, json_object_new_string(eq + 1));
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int set_str(char **p, const char *v) {
        free(*p);
        *p = strdup(v);
        return *p ? 0 : -ENOMEM;
}

static int parse_argv(int argc, char *argv[], args *a) {
        enum {
                ARG_VERSION = 0x100,
                ARG_KUBECONFIG,
                ARG_NODE_NAME,
                ARG_NAMESPACE,
                ARG_OBJECT_STORE,
                ARG_CONFIG,
                ARG_CACHE_DIR,
                ARG_ROOT_DIR,
                ARG_POLL_INTERVAL,
                ARG_HEARTBEAT_INTERVAL,
                ARG_API_RESUME_WINDOW,
                ARG_NODE_LABELS,
                ARG_HEALTH_ADDR,
                ARG_METRICS_ADDR,
                ARG_NO_JITTER,
                ARG_LOG_LEVEL,
                ARG_BUS_ADDRESS,
        };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"kubeconfig", required_argument, NULL, ARG_KUBECONFIG},
                {"node-name", required_argument, NULL, ARG_NODE_NAME},
                {"namespace", required_argument, NULL, ARG_NAMESPACE},
                {"object-store", required_argument, NULL, ARG_OBJECT_STORE},
                {"config", required_argument, NULL, ARG_CONFIG},
                {"cache-dir", required_argument, NULL, ARG_CACHE_DIR},
                {"root-dir", required_argument, NULL, ARG_ROOT_DIR},
                {"poll-interval", required_argument, NULL, ARG_POLL_INTERVAL},
                {"heartbeat-interval", required_argument, NULL, ARG_HEARTBEAT_INTERVAL},
                {"api-resume-window", required_argument, NULL, ARG_API_RESUME_WINDOW},
                {"node-labels", required_argument, NULL, ARG_NODE_LABELS},
                {"health-addr", required_argument, NULL, ARG_HEALTH_ADDR},
                {"metrics-addr", required_argument, NULL, ARG_METRICS_ADDR},
                {"no-jitter", no_argument, NULL, ARG_NO_JITTER},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {"systemd-bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
                {},
        };
        const char *env;
        uint64_t u;
        int c, r;

        a->log_level = LOG_INFO;
        if ((env = getenv("NODE_NAME")) && *env && set_str(&a->node_name, env) < 0)
                return -ENOMEM;
        if (set_str(&a->namespace,
                    (env = getenv("BALLAST_NAMESPACE")) && *env ? env : DEFAULT_NAMESPACE) < 0)
                return -ENOMEM;
        if ((env = getenv("BALLAST_OBJECT_STORE")) && *env && set_str(&a->object_store, env) < 0)
                return -ENOMEM;
        if (set_str(&a->health_addr, DEFAULT_HEALTH_ADDR) < 0)
                return -ENOMEM;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = 0;
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("ballast-agent %s\n", BALLAST_VERSION);
                        return 0;
                case ARG_KUBECONFIG:
                        r = set_str(&a->kubeconfig, optarg);
                        break;
                case ARG_NODE_NAME:
                        r = set_str(&a->node_name, optarg);
                        break;
                case ARG_NAMESPACE:
                        if (!*optarg)
                                return usage_error("--namespace must not be empty");
                        r = set_str(&a->namespace, optarg);
                        break;
                case ARG_OBJECT_STORE:
                        r = set_str(&a->object_store, optarg);
                        break;
                case ARG_CONFIG:
                        r = set_str(&a->config_path, optarg);
                        break;
                case ARG_CACHE_DIR:
                case ARG_ROOT_DIR:
                        if (optarg[0] != '/')
                                return usage_error("--%s must be an absolute path, not '%s'",
                                                   c == ARG_CACHE_DIR ? "cache-dir" : "root-dir",
                                                   optarg);
                        r = set_str(c == ARG_CACHE_DIR ? &a->cache_dir : &a->root_dir, optarg);
                        break;
                case ARG_POLL_INTERVAL:
                case ARG_HEARTBEAT_INTERVAL:
                        if (parse_duration_usec(optarg, &u) < 0 || u < USEC_PER_MSEC * 100 ||
                            u > 24 * 3600 * USEC_PER_SEC)
                                return usage_error("--%s: '%s' is not a duration between 100ms "
                                                   "and 24h",
                                                   c == ARG_POLL_INTERVAL ? "poll-interval"
                                                                          : "heartbeat-interval",
                                                   optarg);
                        *(c == ARG_POLL_INTERVAL ? &a->poll_interval : &a->heartbeat_interval) = u;
                        break;
                case ARG_API_RESUME_WINDOW:
                        if (parse_duration_usec(optarg, &u) < 0 || u > 24 * 3600 * USEC_PER_SEC)
                                return usage_error("--api-resume-window: '%s' is not a duration "
                                                   "between 0 and 24h",
                                                   optarg);
                        a->api_resume_window = u;
                        a->api_resume_window_set = true;
                        break;
                case ARG_NODE_LABELS:
                        json_object_put(a->node_labels);
                        a->node_labels = NULL;
                        r = parse_labels(optarg, &a->node_labels);
                        break;
                case ARG_HEALTH_ADDR:
                        r = set_str(&a->health_addr, optarg);
                        break;
                case ARG_METRICS_ADDR:
                        r = set_str(&a->metrics_addr, optarg);
                        break;
                case ARG_NO_JITTER:
                        a->no_jitter = true;
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return usage_error("invalid --log-level '%s'", optarg);
                        a->log_level = r;
                        r = 0;
                        break;
                case ARG_BUS_ADDRESS:
                        r = set_str(&a->bus_address, optarg);
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (!a->node_name) {
                char host[256] = "";
                if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
                        return usage_error("--node-name is required (no $NODE_NAME, no host name)");
                if (set_str(&a->node_name, host) < 0)
                        return -ENOMEM;
        }
        if (!manifest_is_dns_subdomain(a->node_name))
                return usage_error("--node-name '%s' is not a valid node name", a->node_name);
        if (a->object_store && *a->object_store) {
                objstore_location loc = {};
                err_info e;

                err_info_clear(&e);
                if (objstore_location_parse(a->object_store, &loc, &e) < 0)
                        return usage_error("--object-store '%s': %s", a->object_store, e.message);
                objstore_location_done(&loc);
        }
        return 1;
}

/* ---- the health and metrics listeners ------------------------------------------------ */

/* Binding can fail for a while on a healthy node: a host service started
 * early in boot, before the address it is told to use is configured, a port
 * still held by the previous instance or by another process, or a shortage
 * of descriptors or memory. None of that is a reason to stop applying
 * configuration, so the agent goes on without the listener and retries with
 * capped, jittered backoff. Only what retrying can't fix stops the start: a
 * malformed address, or a port it may not bind. */
static bool listen_error_is_fatal(int r) {
        return r == -EINVAL || r == -EACCES || r == -EPERM;
}

static int listen_one(agent *ag, const char *addr, healthd **h) {
        int r;

        if (*h)
                return 0;
        r = healthd_start(addr, 30 * USEC_PER_SEC, h);
        if (r < 0)
                return r;
        healthd_set_ready(*h, ag->ready);
        healthd_heartbeat(*h);
        log_info("Listening on %s (port %u)", addr, healthd_port(*h));
        return 0;
}

static int on_listen_retry(sd_event_source *s, uint64_t usec, void *userdata);

/* Starts whichever listener is configured and not running yet, and arms a
 * retry for any that fails. Returns < 0 only at start-up (before ready), for
 * an error that retrying can't fix; after that everything is retried. */
static int start_listeners(agent *ag) {
        args *a = &ag->a;
        bool separate = !isempty(a->metrics_addr) &&
                        (!a->health_addr || !streq(a->metrics_addr, a->health_addr));
        struct {
                const char *addr;
                healthd **h;
        } l[] = {
                {a->health_addr, &ag->health},
                {separate ? a->metrics_addr : NULL, &ag->metrics_srv},
        };
        const char *failed = NULL;
        int r, pending = 0;

        for (size_t i = 0; i < ELEMENTSOF(l); i++) {
                if (isempty(l[i].addr))
                        continue;
                r = listen_one(ag, l[i].addr, l[i].h);
                if (r < 0 && !ag->ready && listen_error_is_fatal(r))
                        return log_error_errno(r, "Cannot listen on %s: %m", l[i].addr);
                if (r < 0) {
                        pending = r;
                        failed = l[i].addr;
                }
        }
        if (pending < 0) {
                uint64_t delay = backoff_next(&ag->listen_backoff, loop_now(ag->event));

                log_warning_errno(pending,
                                  "Cannot listen on %s: %m; going on without it, retrying in "
                                  "%" PRIu64 " ms",
                                  failed, delay / USEC_PER_MSEC);
                (void) loop_timer_arm(ag->event, &ag->listen_retry, delay, on_listen_retry, ag);
        } else
                backoff_reset(&ag->listen_backoff);
        return 0;
}

static int on_listen_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) start_listeners(userdata);
        return 0;
}

/* ---- the loop's own health -------------------------------------------------------- */

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        agent *ag = userdata;

        healthd_heartbeat(ag->health);
        healthd_heartbeat(ag->metrics_srv);
        if (ag->fetch)
                fetch_update_metrics(ag->fetch);
        if (ag->kube) {
                static metric *m;
                kube_client_stats ks;

                if (!m)
                        m = metric_register("ballast_agent_kube_requests_total", METRIC_COUNTER,
                                            "Requests sent to the API server, by verb.");
                kube_client_get_stats(ag->kube, &ks);
                metric_set(m, "verb=\"get\"", (double) ks.gets);
                metric_set(m, "verb=\"watch\"", (double) ks.watches);
                metric_set(m, "verb=\"other\"",
                           (double) (ks.posts + ks.puts + ks.patches + ks.deletes));
        }
        (void) loop_timer_arm(ag->event, &ag->tick, TICK_USEC, on_tick, ag);
        return 0;
}

static int on_term(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *ag = userdata;

        log_info("Received %s, shutting down", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(ag->event, 0);
}

static int load_config(const char *path, agent_config **ret) {
        err_info e;
        int r;

        if (!path)
                return config_new_default(ret);
        err_info_clear(&e);
        r = config_load(path, ret, &e);
        if (r < 0)
                return log_error_errno(r, "Invalid config: %s", e.message[0] ? e.message : path);
        return 0;
}

/* SIGHUP: re-read the reload actions. A bad file changes nothing. */
static int on_hup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *ag = userdata;
        agent_config *c = NULL;

        if (!ag->a.config_path)
                return 0;
        if (load_config(ag->a.config_path, &c) < 0) {
                metric_inc(ag->m_config_errors, NULL);
                log_error("Keeping the previous config");
                return 0;
        }
        if (!streq(c->root_dir, ag->config->root_dir) ||
            !streq(c->cache_dir, ag->config->cache_dir))
                log_warning("rootDir and cacheDir changes take effect at the next start");
        engine_set_config(ag->engine, c);
        config_free(ag->config);
        ag->config = c;
        log_info("Reloaded %s (%zu reload actions)", ag->a.config_path, c->n_actions);
        return 0;
}

static int open_kube(agent *ag) {
        _cleanup_(kube_config_freep) kube_config *kc = NULL;
        kube_client_opts ko = {.qps = 5, .burst = 10};
        err_info e;
        int r;

        err_info_clear(&e);
        if (ag->a.kubeconfig)
                r = kube_config_load_kubeconfig(ag->a.kubeconfig, NULL, &kc, &e);
        else
                r = kube_config_load_incluster(NULL, &kc, &e);
        if (r < 0) {
                if (ag->a.kubeconfig)
                        /* Serving the cache beats not running: say it loudly. */
                        log_error_errno(r,
                                        "Cannot load --kubeconfig %s (%s); running without an "
                                        "API server",
                                        ag->a.kubeconfig, e.message);
                else
                        log_info("No --kubeconfig and no in-cluster credentials: running without "
                                 "an API server (object store and cache only)");
                return 0;
        }
        r = kube_client_new(ag->event, kc, &ko, &ag->kube);
        if (r < 0)
                return log_error_errno(r, "Cannot create the Kubernetes client: %m");
        log_info("API server %s, bundle ConfigMaps in %s, node %s", kc->server, ag->a.namespace,
                 ag->a.node_name);
        return 0;
}

static int run(agent *ag) {
        args *a = &ag->a;
        err_info e;
        int r;

        /* 1. the local config */
        r = load_config(a->config_path, &ag->config);
        if (r < 0)
                return r;
        if (a->cache_dir && set_str(&ag->config->cache_dir, a->cache_dir) < 0)
                return log_oom();
        if (a->root_dir && set_str(&ag->config->root_dir, a->root_dir) < 0)
                return log_oom();
        if (a->poll_interval)
                ag->config->poll_interval_usec = a->poll_interval;
        if (a->heartbeat_interval)
                ag->config->heartbeat_interval_usec = a->heartbeat_interval;

        /* The loop's liveness first: it never depends on anything remote. */
        r = start_listeners(ag);
        if (r < 0)
                return r;
        (void) loop_timer_arm(ag->event, &ag->tick, 0, on_tick, ag);
        healthd_heartbeat(ag->health);
        healthd_heartbeat(ag->metrics_srv);
        ag->m_config_errors = metric_register("ballast_agent_config_errors_total", METRIC_COUNTER,
                                              "Reloads of the local config that failed.");
        ag->m_cache_problems = metric_register("ballast_agent_cache_problems_total", METRIC_COUNTER,
                                               "Corrupt cache entries found (and quarantined).");

        /* 2. the cache, verified */
        err_info_clear(&e);
        r = cache_open(ag->config->cache_dir, ag->config->cache_keep, &ag->cache, &e);
        if (r < 0)
                return log_error_errno(r, "Cannot open the cache %s: %s", ag->config->cache_dir,
                                       e.message);
        {
                char *const *problems;
                size_t n = cache_get_problems(ag->cache, &problems);
                for (size_t i = 0; i < n; i++)
                        log_error("Cache: %s", problems[i]);
                metric_add(ag->m_cache_problems, NULL, (double) n);
                cache_clear_problems(ag->cache);
        }
        log_info("Cache %s: %zu bundles, %" PRIu64 " bytes", ag->config->cache_dir,
                 cache_count_bundles(ag->cache), cache_get_size(ag->cache));

        /* Remote clients are created now but not used before READY. */
        r = open_kube(ag);
        if (r < 0)
                return r;
        if (!isempty(a->object_store)) {
                objstore_config oc = {
                        .max_attempts = 2,
                        .timeout_usec = 20 * USEC_PER_SEC,
                        .max_object_size = FETCH_MAX_INDEX_SIZE,
                };
                err_info_clear(&e);
                r = objstore_open(ag->event, a->object_store, &oc, &ag->store, &e);
                if (r < 0)
                        /* Credentials missing and the like: serve the cache anyway. */
                        log_error_errno(r,
                                        "Cannot use the object store %s (%s); running without "
                                        "it",
                                        a->object_store, e.message);
        }
        if (!ag->kube && !ag->store)
                log_warning("No API server and no object store: serving the cache only");

        r = reload_ctx_new(ag->event, a->bus_address, &ag->reload);
        if (r < 0)
                return log_oom();
        {
                uint64_t resume_window =
                        a->api_resume_window_set
                                ? a->api_resume_window
                                : FETCH_RESUME_WINDOW_POLLS * ag->config->poll_interval_usec;
                engine_opts eo = {
                        .event = ag->event,
                        .cache = ag->cache,
                        .config = ag->config,
                        .root_dir = ag->config->root_dir,
                        .reload = ag->reload,
                        .no_jitter = a->no_jitter,
                };
                fetch_opts fo = {
                        .event = ag->event,
                        .cache = ag->cache,
                        .kube = ag->kube,
                        .namespace = a->namespace,
                        .node_name = a->node_name,
                        .store = ag->store,
                        .poll_interval_usec = ag->config->poll_interval_usec,
                        .api_resume_window_usec = resume_window,
                        .no_jitter = a->no_jitter,
                        .static_labels = a->node_labels,
                };
                report_opts ro = {
                        .event = ag->event,
                        .store = ag->store,
                        .node_name = a->node_name,
                        .heartbeat_usec = ag->config->heartbeat_interval_usec,
                        .no_jitter = a->no_jitter,
                };

                /* The engine's callbacks point at objects made right after it;
                 * none runs before the loop does. */
                r = engine_new(&eo, &ag->engine);
                if (r < 0)
                        return log_error_errno(r, "Cannot create the engine: %m");
                fo.engine = ag->engine;
                r = fetch_new(&fo, &ag->fetch);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up the sources: %m");
                ro.engine = ag->engine;
                ro.fetch = ag->fetch;
                r = report_new(&ro, &ag->report);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up reporting: %m");
                engine_set_callbacks(ag->engine, ag->store ? fetch_request_manifest : NULL,
                                     ag->fetch, report_changed, ag->report);
        }

        /* 3. what the cache knows, and the root made to match last-known-good */
        (void) fetch_restore(ag->fetch);
        r = engine_start(ag->engine);
        if (r > 0)
                log_info("Restored %d bundle(s) in %s from the cache", r, ag->config->root_dir);

        /* 4. ready: everything from here on is served from the cache too */
        ag->ready = true;
        healthd_set_ready(ag->health, true);
        healthd_set_ready(ag->metrics_srv, true);
        (void) sd_notify(false, "READY=1\nSTATUS=Serving last-known-good; sources starting");
        log_info("Ready: %zu bundle(s) cached, root %s", cache_count_bundles(ag->cache),
                 ag->config->root_dir);

        /* 5. the network, never waited for */
        r = fetch_start(ag->fetch);
        if (r < 0)
                log_error_errno(r, "Cannot start the sources (serving the cache): %m");
        (void) report_start(ag->report);

        r = sd_event_loop(ag->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}

int main(int argc, char *argv[]) {
        agent ag = {.listen_backoff = BACKOFF_INIT(USEC_PER_SEC, 60 * USEC_PER_SEC, 0)};
        sigset_t mask;
        int r;

        log_setup("ballast-agent", LOG_INFO, LOG_TARGET_AUTO);
        r = parse_argv(argc, argv, &ag.a);
        if (r <= 0) {
                args_done(&ag.a);
                return r < 0 ? 2 : 0;
        }
        log_setup("ballast-agent", ag.a.log_level, LOG_TARGET_AUTO);

        /* Blocked before any thread starts (healthd's inherits the mask):
         * sd-event takes these as signalfd/pidfd events. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&ag.event);
        if (r < 0) {
                log_error_errno(r, "Cannot create the event loop: %m");
                goto out;
        }
        (void) sd_event_add_signal(ag.event, NULL, SIGTERM, on_term, &ag);
        (void) sd_event_add_signal(ag.event, NULL, SIGINT, on_term, &ag);
        (void) sd_event_add_signal(ag.event, NULL, SIGHUP, on_hup, &ag);
        /* WATCHDOG=1 from the loop itself, when systemd asked for it. */
        (void) sd_event_set_watchdog(ag.event, true);

        log_info("ballast-agent %s starting on node %s", BALLAST_VERSION, ag.a.node_name);
        r = run(&ag);

out:
        report_free(ag.report);
        fetch_free(ag.fetch);
        engine_free(ag.engine);
        reload_ctx_free(ag.reload);
        objstore_free(ag.store);
        kube_client_free(ag.kube);
        cache_free(ag.cache);
        healthd_free(ag.health);
        healthd_free(ag.metrics_srv);
        sd_event_source_disable_unref(ag.tick);
        sd_event_source_disable_unref(ag.listen_retry);
        sd_event_unref(ag.event);
        config_free(ag.config);
        args_done(&ag.a);
        metrics_reset();
        if (r < 0)
                return 1;
        log_info("ballast-agent stopped");
        return 0;
}
