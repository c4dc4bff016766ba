/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballast-operator: renders ConfigBundle resources into immutable,
 * content-addressed bundles and publishes them to ConfigMaps and an object
 * store. Its settings come only from flags, environment and a static file:
 * it never depends on anything it manages to start or recover, and after a
 * restart it re-renders everything from the ConfigBundles.
 */

#include <malloc.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "controller.h"
#include "healthd.h"
#include "kube.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "objstore.h"
#include "release.h"
#include "settings.h"

typedef struct manager {
        sd_event *event;
        settings *settings;
        kube_client *kube;
        objstore *store;
        controller *controller;
        leader *leader;
        healthd *health;
        sd_event_source *tick;
        bool stopping;
} manager;

static void on_started_leading(leader *l, void *userdata) {
        manager *op = userdata;

        controller_set_leading(op->controller, true);
}

static void on_stopped_leading(leader *l, void *userdata) {
        manager *op = userdata;

        /* Stop acting at once; the caches stay warm for when we lead again. */
        controller_set_leading(op->controller, false);
}

static void on_released(leader *l, void *userdata) {
        manager *op = userdata;

        sd_event_exit(op->event, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager *op = userdata;

        if (op->stopping) {
                log_warning("Second signal, exiting at once");
                return sd_event_exit(op->event, 0);
        }
        op->stopping = true;
        log_info("Received %s, shutting down", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        controller_set_leading(op->controller, false);
        if (op->leader)
                return leader_release(op->leader, on_released, op) < 0 ? sd_event_exit(op->event, 0)
                                                                       : 0;
        return sd_event_exit(op->event, 0);
}

/* The operator's metrics (docs/operator.md lists them): the names operator
 * users know from controller-runtime and client-go where there is one, and
 * ballast_operator_* for the rest. Registered before the controller, which
 * observes reconcile_time itself; the tick copies everything else from the
 * stats structs. */
#define QUEUE_LABEL "name=\"" CONTROLLER_NAME "\""

static struct {
        metric *reconciles, *errors, *revisions, *writes, *reads, *gc, *leading, *requests;
        metric *queue_depth, *queue_adds, *queue_retries, *queue_inflight, *queue_parked;
        metric *cr_reconciles, *cr_errors, *reconcile_time, *publishes, *codes, *store_codes;
        metric *cache_bytes;
        metric *heap_bytes;
} m;

static void register_metrics(void) {
        /* controller-runtime's buckets for reconcile_time_seconds. */
        static const double reconcile_buckets[] = {
                0.005, 0.01, 0.025, 0.05, 0.1,  0.15, 0.2,  0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
                0.7,   0.8,  0.9,   1,    1.25, 1.5,  1.75, 2,    2.5, 3,    3.5, 4,    4.5, 5,
                6,     7,    8,     9,    10,   15,   20,   25,   30,  40,   50,  60,
        };

        m.reconciles = metric_register("ballast_operator_reconciles_total", METRIC_COUNTER,
                                       "Reconciles finished.");
        m.errors = metric_register("ballast_operator_reconcile_errors_total", METRIC_COUNTER,
                                   "Reconciles that failed and were requeued with backoff.");
        m.revisions = metric_register("ballast_operator_revisions_total", METRIC_COUNTER,
                                      "New bundle revisions published.");
        m.writes = metric_register("ballast_operator_writes_total", METRIC_COUNTER,
                                   "Writes by target.");
        m.reads = metric_register("ballast_operator_fleet_reads_total", METRIC_COUNTER,
                                  "Agent reports read from the object store.");
        m.gc = metric_register("ballast_operator_gc_deletes_total", METRIC_COUNTER,
                               "Superseded manifests deleted.");
        m.leading = metric_register("ballast_operator_leader", METRIC_GAUGE,
                                    "1 while this replica holds the lease.");
        m.requests = metric_register("ballast_operator_kube_requests_total", METRIC_COUNTER,
                                     "Requests sent to the API server, by verb.");
        m.queue_depth = metric_register("workqueue_depth", METRIC_GAUGE,
                                        "Keys waiting in the work queue (ready or delayed).");
        m.queue_adds =
                metric_register("workqueue_adds_total", METRIC_COUNTER,
                                "Keys queued (adds that found the key waiting not counted).");
        m.queue_retries = metric_register("workqueue_retries_total", METRIC_COUNTER,
                                          "Failed reconciles requeued with backoff.");
        m.queue_inflight = metric_register("ballast_operator_workqueue_inflight", METRIC_GAUGE,
                                           "Reconciles holding a worker.");
        m.queue_parked = metric_register("ballast_operator_workqueue_parked", METRIC_GAUGE,
                                         "Reconciles waiting for a coalesced index write, "
                                         "without a worker.");
        m.cr_reconciles = metric_register("controller_runtime_reconcile_total", METRIC_COUNTER,
                                          "Reconciles finished, by result.");
        m.cr_errors = metric_register("controller_runtime_reconcile_errors_total", METRIC_COUNTER,
                                      "Reconciles that returned an error.");
        m.reconcile_time = metric_register_histogram(
                "controller_runtime_reconcile_time_seconds",
                "Time from a reconcile's start to its end (workqueue done).", reconcile_buckets,
                ELEMENTSOF(reconcile_buckets));
        m.publishes = metric_register("ballast_operator_publish_total", METRIC_COUNTER,
                                      "Publications by target and result (targets with nothing "
                                      "to write not counted).");
        m.codes = metric_register("rest_client_requests_total", METRIC_COUNTER,
                                  "Responses from the API server by HTTP status "
                                  "(<error>: none).");
        m.store_codes = metric_register("ballast_operator_objstore_requests_total", METRIC_COUNTER,
                                        "Responses from the object store by HTTP status "
                                        "(<error>: none).");
        m.cache_bytes = metric_register("ballast_operator_cache_bytes", METRIC_GAUGE,
                                        "Bytes the caches hold: ConfigBundles and ConfigMaps as "
                                        "stored (deflated), the index as its document.");
        m.heap_bytes = metric_register("ballast_operator_heap_bytes", METRIC_GAUGE,
                                       "The malloc heap (mallinfo2): in_use by allocations, free "
                                       "held by malloc but not in use, mapped in large blocks of "
                                       "their own (counted in in_use).");
}

/* One series per status seen; code 0 is client-go's "<error>". */
static void set_codes(metric *family, const http_code_counts *codes) {
        char labels[32];

        for (size_t i = 0; i < HTTP_CODE_MAX; i++) {
                if (codes->n[i] == 0)
                        continue;
                if (i == 0)
                        snprintf(labels, sizeof(labels), "code=\"<error>\"");
                else
                        snprintf(labels, sizeof(labels), "code=\"%zu\"", i);
                metric_set(family, labels, (double) codes->n[i]);
        }
}

static void set_publishes(const char *target, uint64_t ok, uint64_t failed) {
        char labels[64];

        snprintf(labels, sizeof(labels), "target=\"%s\",result=\"success\"", target);
        metric_set(m.publishes, labels, (double) ok);
        snprintf(labels, sizeof(labels), "target=\"%s\",result=\"error\"", target);
        metric_set(m.publishes, labels, (double) failed);
}

static void update_metrics(manager *op) {
        controller_stats cs;
        kube_client_stats ks;
        http_code_counts store_codes;

        controller_get_stats(op->controller, &cs);
        kube_client_get_stats(op->kube, &ks);
        metric_set(m.reconciles, NULL, (double) cs.reconciles);
        metric_set(m.errors, NULL, (double) cs.reconcile_errors);
        metric_set(m.revisions, NULL, (double) cs.revisions);
        metric_set(m.writes, "target=\"manifest\"", (double) cs.manifest_puts);
        metric_set(m.writes, "target=\"index\"", (double) cs.index_writes);
        metric_set(m.writes, "target=\"configmap\"", (double) cs.cm_writes);
        metric_set(m.writes, "target=\"status\"", (double) cs.status_writes);
        metric_set(m.writes, "target=\"configbundle\"", (double) cs.cr_writes);
        metric_set(m.writes, "target=\"event\"", (double) cs.events);
        metric_set(m.reads, NULL, (double) cs.fleet_reads);
        metric_set(m.gc, NULL, (double) cs.gc_deletes);
        metric_set(m.leading, NULL, !op->leader || leader_is_leader(op->leader) ? 1 : 0);
        metric_set(m.requests, "verb=\"get\"", (double) ks.gets);
        metric_set(m.requests, "verb=\"watch\"", (double) ks.watches);
        metric_set(m.requests, "verb=\"post\"", (double) ks.posts);
        metric_set(m.requests, "verb=\"put\"", (double) ks.puts);
        metric_set(m.requests, "verb=\"patch\"", (double) ks.patches);
        metric_set(m.requests, "verb=\"delete\"", (double) ks.deletes);

        metric_set(m.queue_depth, QUEUE_LABEL, (double) cs.queue_depth);
        metric_set(m.queue_adds, QUEUE_LABEL, (double) cs.queue_adds);
        metric_set(m.queue_retries, QUEUE_LABEL, (double) cs.queue_retries);
        metric_set(m.queue_inflight, NULL, (double) cs.queue_inflight);
        metric_set(m.queue_parked, NULL, (double) cs.queue_parked);
        metric_set(m.cr_reconciles, CONTROLLER_METRICS_LABEL ",result=\"success\"",
                   (double) (cs.reconciles - cs.reconcile_errors));
        metric_set(m.cr_reconciles, CONTROLLER_METRICS_LABEL ",result=\"error\"",
                   (double) cs.reconcile_errors);
        metric_set(m.cr_errors, CONTROLLER_METRICS_LABEL, (double) cs.reconcile_errors);
        if (op->store)
                set_publishes("objectstore", cs.store_publishes, cs.store_publish_errors);
        set_publishes("configmap", cs.cm_publishes, cs.cm_publish_errors);
        set_publishes("status", cs.status_writes, cs.status_write_errors);
        metric_set(m.cache_bytes, "cache=\"configbundles\"", (double) cs.cr_cache_bytes);
        metric_set(m.cache_bytes, "cache=\"configmaps\"", (double) cs.cm_cache_bytes);
        metric_set(m.cache_bytes, "cache=\"index\"", (double) cs.index_bytes);
        {
                struct mallinfo2 mi = mallinfo2();

                metric_set(m.heap_bytes, "state=\"in_use\"", (double) (mi.uordblks + mi.hblkhd));
                metric_set(m.heap_bytes, "state=\"free\"", (double) mi.fordblks);
                metric_set(m.heap_bytes, "state=\"mapped\"", (double) mi.hblkhd);
        }
        set_codes(m.codes, &ks.codes);
        if (objstore_get_http_codes(op->store, &store_codes))
                set_codes(m.store_codes, &store_codes);
}

/* The loop's heartbeat for /healthz and the systemd watchdog, readiness
 * (the caches), and the metrics: once a second. */
static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        manager *op = userdata;

        healthd_heartbeat(op->health);
        healthd_set_ready(op->health, controller_is_synced(op->controller));
        update_metrics(op);
        (void) loop_timer_arm(op->event, &op->tick, USEC_PER_SEC, on_tick, op);
        return 0;
}

/* Credentials from @kubeconfig (its @context), or in-cluster when NULL. Logs
 * why they could not be loaded. */
static int load_credentials(const char *kubeconfig, const char *context, kube_config **ret) {
        err_info e;
        int r;

        err_info_clear(&e);
        if (kubeconfig)
                r = kube_config_load_kubeconfig(kubeconfig, context, ret, &e);
        else
                r = kube_config_load_incluster(NULL, ret, &e);
        if (r < 0)
                return log_error_errno(r, "Failed to load Kubernetes credentials: %s", e.message);
        return 0;
}

static int run(manager *op) {
        _cleanup_(kube_config_freep) kube_config *kc = NULL;
        settings *s = op->settings;
        kube_client_opts ko = {.qps = s->kube_qps, .burst = s->kube_burst};
        controller_opts co = {
                .namespace = s->namespace,
                .watch_namespace = s->watch_namespace,
                .identity = s->identity,
                .workers = s->workers,
                .resync_usec = s->resync_usec,
                .fleet_interval_usec = s->fleet_interval_usec,
                .manifest_retention_usec = s->manifest_retention_usec,
        };
        err_info e;
        int r;

        r = load_credentials(s->kubeconfig, s->kube_context, &kc);
        if (r < 0)
                return r;
        r = kube_client_new(op->event, kc, &ko, &op->kube);
        if (r < 0)
                return log_error_errno(r, "Failed to create the Kubernetes client: %m");

        if (!isempty(s->object_store)) {
                r = objstore_open(op->event, s->object_store, NULL, &op->store, &e);
                if (r < 0)
                        return log_error_errno(r, "Invalid object store '%s': %s", s->object_store,
                                               e.message);
                log_info("Publishing to ConfigMaps in %s and the %s object store", s->namespace,
                         objstore_backend_name(op->store));
        } else
                log_warning("No --object-store: publishing to ConfigMaps only; agents can't "
                            "survive an API server outage on a fresh start");

        if (!isempty(s->health_addr)) {
                r = healthd_start(s->health_addr, 30 * USEC_PER_SEC, &op->health);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", s->health_addr);
        }

        register_metrics();
        co.reconcile_time = m.reconcile_time;
        r = controller_new(op->event, op->kube, op->store, &co, &op->controller);
        if (r < 0)
                return log_error_errno(r, "Failed to create the controller: %m");
        r = controller_start(op->controller);
        if (r < 0)
                return log_error_errno(r, "Failed to start watching: %m");

        if (s->leader_elect) {
                leader_opts lo = {
                        .namespace = s->namespace,
                        .name = s->lease_name,
                        .identity = s->identity,
                        .lease_duration_usec = s->lease_duration_usec,
                        .renew_deadline_usec = s->renew_deadline_usec,
                        .retry_period_usec = s->retry_period_usec,
                        .on_started = on_started_leading,
                        .on_stopped = on_stopped_leading,
                        .userdata = op,
                };

                r = leader_new(op->event, op->kube, &lo, &op->leader);
                if (r < 0)
                        return log_error_errno(r, "Invalid leader election settings: %m");
                r = leader_start(op->leader);
                if (r < 0)
                        return log_error_errno(r, "Failed to start leader election: %m");
                log_info("Candidate for lease %s/%s as %s", s->namespace, s->lease_name,
                         s->identity);
        } else
                controller_set_leading(op->controller, true);

        (void) loop_timer_arm(op->event, &op->tick, 0, on_tick, op);
        (void) sd_notify(false, "READY=1");
        r = sd_event_loop(op->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}

/* `ballast-operator check-release ...` (the chart's helm test): exit 0 when
 * the release is healthy, 1 when not, 2 on a usage error. It prints its
 * verdict (release.h) rather than logging: a person reads it in the test
 * pod's log. */
static int run_check_release(int argc, char *argv[]) {
        _cleanup_(check_settings_freep) check_settings *s = NULL;
        _cleanup_(kube_config_freep) kube_config *kc = NULL;
        _cleanup_(kube_client_freep) kube_client *k = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        /* A request that hangs must not use up the whole --timeout. */
        kube_client_opts ko = {.timeout_usec = 10 * USEC_PER_SEC};
        err_info e;
        int r;

        err_info_clear(&e);
        r = check_settings_load(argc, argv, &s, &e);
        if (r < 0) {
                fprintf(stderr,
                        "ballast-operator check-release: %s\n"
                        "Try 'ballast-operator check-release --help'.\n",
                        e.message[0] ? e.message : strerror(-r));
                return 2;
        }
        if (r == 0)
                return 0;

        if (load_credentials(s->kubeconfig, s->kube_context, &kc) < 0)
                return 1;
        r = sd_event_new(&event);
        if (r >= 0)
                r = kube_client_new(event, kc, &ko, &k);
        if (r < 0) {
                log_error_errno(r, "Failed to create the Kubernetes client: %m");
                return 1;
        }
        return release_check(k, s, RELEASE_CHECK_INTERVAL_USEC, stdout) < 0 ? 1 : 0;
}

int main(int argc, char *argv[]) {
        manager op = {};
        err_info e;
        sigset_t mask;
        int r;

        /* glibc raises its mmap threshold each time a large block is freed,
         * up to 32 MiB, after which every index document and list page is
         * carved from the heap and the holes it leaves stay resident. A fixed
         * threshold keeps blocks this large out of the heap: mapped on
         * demand and returned to the kernel on free. */
        (void) mallopt(M_MMAP_THRESHOLD, 64 * 1024);
        (void) mallopt(M_TRIM_THRESHOLD, 256 * 1024);
        log_setup("ballast-operator", LOG_INFO, LOG_TARGET_AUTO);
        if (argc > 1 && streq(argv[1], "check-release"))
                return run_check_release(argc - 1, argv + 1);
        err_info_clear(&e);
        r = settings_load(argc, argv, &op.settings, &e);
        if (r < 0) {
                fprintf(stderr, "ballast-operator: %s\nTry 'ballast-operator --help'.\n",
                        e.message[0] ? e.message : strerror(-r));
                return 2;
        }
        if (r == 0)
                return 0;
        log_setup("ballast-operator", op.settings->log_level, LOG_TARGET_AUTO);

        r = sd_event_default(&op.event);
        if (r < 0) {
                log_error_errno(r, "Failed to create the event loop: %m");
                goto out;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) sd_event_add_signal(op.event, NULL, SIGTERM, on_signal, &op);
        (void) sd_event_add_signal(op.event, NULL, SIGINT, on_signal, &op);
        (void) sd_event_set_watchdog(op.event, true);
        signal(SIGPIPE, SIG_IGN);

        log_info("ballast-operator %s starting", BALLAST_VERSION);
        r = run(&op);

out:
        leader_free(op.leader);
        controller_free(op.controller);
        healthd_free(op.health);
        objstore_free(op.store);
        kube_client_free(op.kube);
        sd_event_source_disable_unref(op.tick);
        sd_event_unref(op.event);
        settings_free(op.settings);
        metrics_reset();
        if (r < 0)
                return 1;
        log_info("ballast-operator stopped");
        return 0;
}
