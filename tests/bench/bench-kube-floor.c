/* SPDX-License-Identifier: Apache-2.0 */

/*
 * bench-kube-floor: the API-server floor of make bench-operator
 * (tests/bench/bench-operator.sh). How fast can anyone make the API writes
 * that publishing N ConfigBundles takes?
 *
 *   bench-kube-floor --kubeconfig=PATH --namespace=CM_NS --watch-namespace=NS
 *                    [--inflight=N] [--kube-qps=Q] [--kube-burst=B]
 *
 * It lists the ConfigBundles of NS (which no operator has seen), renders each
 * and builds, with the operator's own functions, the three requests a
 * reconcile of a new bundle sends to the API server:
 *   1. the finalizer: a merge patch of the ConfigBundle
 *      (controller_finalizer_patch(), application/merge-patch+json);
 *   2. its ConfigMap in CM_NS: server-side apply of
 *      publish_build_configmap()'s object (application/apply-patch+yaml,
 *      fieldManager ballast-operator, force);
 *   3. its status: server-side apply of status_build()'s status in
 *      controller_status_body() to the status subresource (the same).
 * The bodies are those of an operator with an object store (the ConfigMap's
 * object-key annotation, the status's objectKey and node counts).
 *
 * Then, on the clock, it sends them as fast as the server answers: @inflight
 * lanes, each taking the next bundle and sending its three requests one after
 * the other (the order a reconcile needs), over one kube client (lib/kube.c:
 * HTTP/2, the requests multiplexed on one connection, as the operator's
 * are). That is all: no watches, no object store, no index ConfigMap, no
 * Events, no cache, no retries. Everything was built before the clock
 * started; a request only serializes its body and parses the answer.
 *
 * Output, key=value lines on stdout: the bundles, the seconds the requests
 * took (wall clock, from the first request to the last answer), the
 * preparation's seconds, requests sent and failed, and per request kind the
 * latency (p50, p99, max). Exit status: 0 every request succeeded, 1 some
 * failed (the first few are logged on stderr), 2 usage error.
 */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "controller.h"
#include "jsonx.h"
#include "kube.h"
#include "log.h"
#include "loop.h"
#include "publish.h"
#include "render.h"
#include "status.h"

#define INFLIGHT_DEFAULT 32
#define LIST_PAGE        500
#define ERRORS_LOGGED    5

typedef enum step {
        STEP_FINALIZER,
        STEP_CONFIGMAP,
        STEP_STATUS,
        _STEP_MAX,
} step;

static const char *const step_names[_STEP_MAX] = {"finalizer", "configmap", "status"};

typedef struct floor_run floor_run;

typedef struct bundle {
        floor_run *run;
        char *ns, *name;
        char *finalizer;     /* the merge patch */
        json_object *cm;     /* the ConfigMap to apply; put once sent */
        json_object *status; /* the status apply body; put once sent */
        step next;
        uint64_t sent; /* now_usec() when the request in flight was sent */
} bundle;

struct floor_run {
        sd_event *event;
        kube_client *kube;
        const char *cm_ns;
        bundle *bundles;
        size_t n, started;
        unsigned inflight;
        bool finished;
        uint64_t t0, t1;
        uint64_t ok[_STEP_MAX], failed[_STEP_MAX], n_failed;
        uint64_t *latency[_STEP_MAX]; /* usec, one per answered request */
};

/* CLOCK_MONOTONIC now: loop_now() is the time of the loop's last wakeup,
 * which is stale after work done outside the loop (the preparation). */
static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

static void floor_run_clear(floor_run *run) {
        for (size_t i = 0; i < run->n; i++) {
                bundle *b = &run->bundles[i];

                free(b->ns);
                free(b->name);
                free(b->finalizer);
                json_object_put(b->cm);
                json_object_put(b->status);
        }
        free(run->bundles);
        for (unsigned s = 0; s < _STEP_MAX; s++)
                free(run->latency[s]);
}

/* Builds @b's three requests from @cr (a listed ConfigBundle, borrowed). */
static int bundle_prepare(floor_run *run, bundle *b, json_object *cr) {
        _cleanup_(render_result_freep) render_result *rendered = NULL;
        _cleanup_free_ char *object_key = NULL, *cm_name = NULL;
        json_object *spec = jsonx_get(cr, "spec"), *status = NULL;
        render_identity id;
        bundle_outcome o;
        bool in_cm = true;
        char now[32];
        err_info e;
        int r;

        b->run = run;
        b->ns = strdup(strempty(jsonx_get_string(cr, "metadata.namespace")));
        b->name = strdup(strempty(jsonx_get_string(cr, "metadata.name")));
        if (!b->ns || !b->name)
                return -ENOMEM;
        id = (render_identity){
                .namespace = b->ns, .name = b->name, .uid = jsonx_get_string(cr, "metadata.uid")};
        r = controller_finalizer_patch(cr, true, &b->finalizer);
        if (r < 0)
                return r;
        err_info_clear(&e);
        r = render_bundle(spec, &id, 1, &rendered, &e);
        if (r < 0)
                return log_error_errno(r, "%s/%s does not render: %s", b->ns, b->name, e.message);
        if (bundle_object_key(b->ns, b->name, rendered->digest, &object_key) < 0 ||
            publish_configmap_name(b->ns, b->name, &cm_name) < 0)
                return -ENOMEM;
        r = publish_build_configmap(run->cm_ns, cm_name, &id, 1, rendered, object_key,
                                    jsonx_get(spec, "nodeSelector"),
                                    jsonx_get_string(spec, "reload"), &b->cm, &in_cm);
        if (r < 0)
                return r;
        /* What a reconcile that published revision 1 to both targets reports. */
        o = (bundle_outcome){
                .generation = jsonx_get_int(cr, "metadata.generation", 0),
                .rendered = true,
                .revision = 1,
                .digest = rendered->digest,
                .config_map = cm_name,
                .object_key = object_key,
                .manifest_in_cm = in_cm,
                .store = TARGET_OK,
                .cm = TARGET_OK,
                .store_error = "",
                .cm_error = "",
                .has_counts = true,
        };
        status_format_now(now);
        r = status_build(NULL, &o, now, &status);
        if (r < 0)
                return r;
        b->status = controller_status_body(b->ns, b->name, status);
        return b->status ? 0 : -ENOMEM;
}

static int prepare(floor_run *run, const char *ns) {
        _cleanup_json_ json_object *list = NULL;
        kube_list_opts lo = {.limit = LIST_PAGE};
        json_object *items;
        err_info e;
        int r;

        err_info_clear(&e);
        r = kube_list_objects_sync(run->kube, &RESOURCE_CONFIGBUNDLES, ns, &lo, &list, &e);
        if (r < 0)
                return log_error_errno(r, "Failed to list the ConfigBundles of %s: %s", ns,
                                       e.message);
        items = jsonx_get(list, "items");
        run->n = items ? json_object_array_length(items) : 0;
        run->bundles = calloc(MAX(run->n, 1), sizeof(bundle));
        if (!run->bundles)
                return log_oom();
        for (unsigned s = 0; s < _STEP_MAX; s++)
                if (!(run->latency[s] = calloc(MAX(run->n, 1), sizeof(uint64_t))))
                        return log_oom();
        for (size_t i = 0; i < run->n; i++) {
                r = bundle_prepare(run, &run->bundles[i], json_object_array_get_idx(items, i));
                if (r < 0)
                        return log_error_errno(
                                r, "Failed to prepare the requests of bundle %zu: %m", i);
        }
        return 0;
}

static void bundle_send(bundle *b);

/* A lane is free: the next bundle, or the end once none is left. */
static void lane_next(floor_run *run) {
        if (run->started < run->n) {
                bundle_send(&run->bundles[run->started++]);
                return;
        }
        if (run->inflight == 0) {
                run->t1 = now_usec();
                run->finished = true;
        }
}

static void on_answer(kube_client *k, int r, json_object *obj, const err_info *err,
                      void *userdata) {
        bundle *b = userdata;
        floor_run *run = b->run;
        step s = b->next;

        run->inflight--;
        if (r < 0) {
                if (run->n_failed++ < ERRORS_LOGGED)
                        log_warning_errno(r, "%s/%s: %s failed: %s", b->ns, b->name, step_names[s],
                                          err ? err->message : "");
                run->failed[s]++;
                lane_next(run);
                return;
        }
        run->latency[s][run->ok[s]++] = now_usec() - b->sent;
        if (++b->next < _STEP_MAX)
                bundle_send(b);
        else
                lane_next(run);
}

/* Sends @b's next request; a request that cannot start counts as failed. */
static void bundle_send(bundle *b) {
        floor_run *run = b->run;
        int r;

        b->sent = now_usec();
        run->inflight++;
        switch (b->next) {
        case STEP_FINALIZER:
                r = kube_patch_object(run->kube, &RESOURCE_CONFIGBUNDLES, b->ns, b->name, NULL,
                                      KUBE_PATCH_MERGE, b->finalizer, strlen(b->finalizer), NULL,
                                      on_answer, b, NULL);
                break;
        case STEP_CONFIGMAP:
                r = kube_apply_object(run->kube, &KUBE_RESOURCE_CONFIGMAPS, run->cm_ns, b->cm, NULL,
                                      PUBLISH_FIELD_MANAGER, true, on_answer, b, NULL);
                /* The request has its own copy of the body. */
                json_object_put(TAKE_PTR(b->cm));
                break;
        case STEP_STATUS:
                r = kube_apply_object(run->kube, &RESOURCE_CONFIGBUNDLES, b->ns, b->status,
                                      "status", PUBLISH_FIELD_MANAGER, true, on_answer, b, NULL);
                json_object_put(TAKE_PTR(b->status));
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                on_answer(run->kube, r, NULL, NULL, b);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* The latency at quantile @q of the @n sorted values at @v, in ms. */
static double quantile_ms(const uint64_t *v, uint64_t n, double q) {
        return n ? (double) v[(size_t) ((double) (n - 1) * q)] / USEC_PER_MSEC : 0;
}

static void report(floor_run *run, unsigned lanes, double prepare_secs) {
        kube_client_stats ks;
        struct rusage ru;
        kube_client_get_stats(run->kube, &ks);
        (void) getrusage(RUSAGE_SELF, &ru);
        printf("bundles=%zu\n", run->n);
        printf("inflight=%u\n", lanes);
        printf("prepare_seconds=%.2f\n", prepare_secs);
        printf("seconds=%.2f\n", (double) (run->t1 - run->t0) / USEC_PER_SEC);
        /* The client's counters include the list before the clock. */
        printf("requests=%" PRIu64 "\n", ks.requests);
        printf("patches=%" PRIu64 "\n", ks.patches);
        printf("failed=%" PRIu64 "\n", run->n_failed);
        printf("cpu_seconds=%.2f\n",
               (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / USEC_PER_SEC);
        for (unsigned s = 0; s < _STEP_MAX; s++) {
                qsort(run->latency[s], run->ok[s], sizeof(uint64_t), cmp_u64);
                printf("%s: ok=%" PRIu64 " failed=%" PRIu64
                       " p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
                       step_names[s], run->ok[s], run->failed[s],
                       quantile_ms(run->latency[s], run->ok[s], 0.5),
                       quantile_ms(run->latency[s], run->ok[s], 0.99),
                       quantile_ms(run->latency[s], run->ok[s], 1));
        }
}

static int usage(void) {
        fprintf(stderr, "usage: bench-kube-floor --kubeconfig=PATH --namespace=CM_NS "
                        "--watch-namespace=NS [--inflight=N] [--kube-qps=Q] [--kube-burst=B]\n");
        return 2;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"kubeconfig", required_argument, NULL, 'k'},
                {"namespace", required_argument, NULL, 'n'},
                {"watch-namespace", required_argument, NULL, 'w'},
                {"inflight", required_argument, NULL, 'i'},
                {"kube-qps", required_argument, NULL, 'q'},
                {"kube-burst", required_argument, NULL, 'b'},
                {},
        };
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(kube_config_freep) kube_config *kc = NULL;
        _cleanup_(kube_client_freep) kube_client *kube = NULL;
        const char *kubeconfig = NULL, *watch_ns = NULL;
        kube_client_opts ko = {.qps = KUBE_DEFAULT_QPS, .burst = KUBE_DEFAULT_BURST};
        floor_run run = {};
        unsigned lanes = INFLIGHT_DEFAULT;
        uint64_t p0;
        err_info e;
        int c, r;

        log_setup("bench-kube-floor", LOG_WARNING, LOG_TARGET_CONSOLE);
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'k':
                        kubeconfig = optarg;
                        break;
                case 'n':
                        run.cm_ns = optarg;
                        break;
                case 'w':
                        watch_ns = optarg;
                        break;
                case 'i':
                        lanes = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'q':
                        ko.qps = strtod(optarg, NULL);
                        break;
                case 'b':
                        ko.burst = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                default:
                        return usage();
                }
        }
        if (optind != argc || isempty(kubeconfig) || isempty(run.cm_ns) || isempty(watch_ns) ||
            lanes == 0 || ko.qps == 0 || ko.burst == 0)
                return usage();

        err_info_clear(&e);
        r = kube_config_load_kubeconfig(kubeconfig, NULL, &kc, &e);
        if (r < 0) {
                log_error_errno(r, "Failed to load %s: %s", kubeconfig, e.message);
                return 1;
        }
        r = sd_event_new(&event);
        if (r >= 0)
                r = kube_client_new(event, kc, &ko, &kube);
        if (r < 0) {
                log_error_errno(r, "Failed to create the Kubernetes client: %m");
                return 1;
        }
        run.event = event;
        run.kube = kube;

        p0 = now_usec();
        r = prepare(&run, watch_ns);
        if (r < 0) {
                floor_run_clear(&run);
                return 1;
        }
        run.t0 = now_usec();
        for (unsigned i = 0; i < lanes && run.started < run.n; i++)
                lane_next(&run);
        if (run.n == 0)
                run.finished = true;
        r = loop_run_until(event, &run.finished, 0);
        if (r < 0) {
                log_error_errno(r, "The event loop failed: %m");
                floor_run_clear(&run);
                return 1;
        }
        report(&run, lanes, (double) (run.t0 - p0) / USEC_PER_SEC);
        c = run.n_failed > 0;
        floor_run_clear(&run);
        return c;
}
