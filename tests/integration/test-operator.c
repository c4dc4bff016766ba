/* SPDX-License-Identifier: Apache-2.0 */

/*
 * ballast-operator against the local control plane and the real S3 server
 * (tests/cluster): the CRD, publication to both targets, revisions, render
 * failures, outages of the object store and the API server, a resync that
 * writes nothing, fleet counts from agent reports, leader failover and
 * deletion. The operator runs as a real process; the test drives it with
 * kubectl and reads the object store with lib/'s client.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

#include "hash.h"
#include "jsonx.h"
#include "loop.h"
#include "objstore.h"
#include "support.h"

static char opns[64], ns[64], kubectl[PATH_MAX], cluster_sh[PATH_MAX], operator_bin[PATH_MAX];
static char location[1024], logdir[PATH_MAX];
static sd_event *event;
static objstore *store;

typedef struct op_proc {
        pid_t pid;
        char identity[64];
        char log[PATH_MAX + 128];
        unsigned port;
} op_proc;
static op_proc op1, op2;

/* ---- helpers ------------------------------------------------------------------ */

static char *kget(const char *what, const char *jsonpath) {
        return support_sh_output("%s -n %s get %s -o jsonpath='%s' 2>/dev/null", kubectl, ns, what,
                                 jsonpath);
}

static void kapply(const char *yaml) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        assert_true(asprintf(&path, "%s/apply.yaml", logdir) > 0);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(yaml, f);
        fclose(f);
        if (support_sh(false, "%s -n %s apply -f %s", kubectl, ns, path) != 0)
                fail_msg("kubectl apply failed for:\n%s", yaml);
}

static void start_operator(op_proc *p, const char *name) {
        char port_arg[64], identity_arg[96], ns_arg[96], wns_arg[96], loc_arg[1100],
                kc_arg[PATH_MAX + 16];

        snprintf(p->identity, sizeof(p->identity), "%s-%s", name, support_run_id());
        snprintf(p->log, sizeof(p->log), "%s/%s.log", logdir, name);
        p->port = support_free_ports(1);
        snprintf(port_arg, sizeof(port_arg), "--health-addr=127.0.0.1:%u", p->port);
        snprintf(identity_arg, sizeof(identity_arg), "--identity=%s", p->identity);
        snprintf(ns_arg, sizeof(ns_arg), "--namespace=%s", opns);
        snprintf(wns_arg, sizeof(wns_arg), "--watch-namespace=%s", ns);
        snprintf(loc_arg, sizeof(loc_arg), "--object-store=%s", location);
        snprintf(kc_arg, sizeof(kc_arg), "--kubeconfig=%s", support_env("KUBECONFIG"));
        char *argv[] = {operator_bin,
                        kc_arg,
                        ns_arg,
                        wns_arg,
                        loc_arg,
                        identity_arg,
                        port_arg,
                        "--lease-duration=4s",
                        "--renew-deadline=3s",
                        "--retry-period=1s",
                        "--resync-period=3s",
                        "--fleet-interval=1s",
                        "--kube-qps=200",
                        "--kube-burst=400",
                        "--log-level=debug",
                        NULL};
        p->pid = support_spawn(argv, p->log);
}

/* The value of an operator counter from its /metrics, or -1. */
static double metric(const op_proc *p, const char *series) {
        _cleanup_free_ char *out = support_sh_output(
                "curl -sf http://127.0.0.1:%u/metrics | awk -v s='%s' '$1 == s {print $2}'",
                p->port, series);
        return out && *out ? strtod(out, NULL) : -1;
}

static double writes(const op_proc *p) {
        static const char *const targets[] = {"manifest", "index", "configmap", "status",
                                              "configbundle"};
        double sum = 0;

        for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                char series[128];
                snprintf(series, sizeof(series), "ballast_operator_writes_total{target=\"%s\"}",
                         targets[i]);
                sum += MAX(metric(p, series), 0);
        }
        return sum;
}

typedef struct expect {
        const char *what, *path, *want;
} expect;

static bool jsonpath_equals(void *userdata) {
        expect *e = userdata;
        _cleanup_free_ char *v = kget(e->what, e->path);

        return v && streq(v, e->want);
}

/* Waits until `kubectl get WHAT -o jsonpath=PATH` prints @want. */
static void wait_jsonpath(const char *what, const char *path, const char *want, unsigned ms) {
        expect e = {what, path, want};

        if (!support_wait_for(jsonpath_equals, &e, ms)) {
                _cleanup_free_ char *v = kget(what, path);
                _cleanup_free_ char *all = kget(what, "{.status}");
                support_dump_log(op1.log, 40);
                fail_msg("%s %s: want '%s', have '%s' (status: %s; operator %s)", what, path, want,
                         strna(v), strna(all),
                         op1.pid > 0 && support_alive(op1.pid) ? "running" : "NOT RUNNING");
        }
}

#define READY            "{.status.conditions[?(@.type==\"Ready\")].status}"
#define RENDERED         "{.status.conditions[?(@.type==\"Rendered\")].status}"
#define PUBLISHED_REASON "{.status.conditions[?(@.type==\"Published\")].reason}"

static char *store_get(const char *key) {
        _cleanup_(objstore_object_freep) objstore_object *o = NULL;
        err_info e;

        if (objstore_get_sync(store, key, NULL, &o, &e) < 0)
                return NULL;
        return TAKE_PTR(o->data);
}

static void bundle_yaml(char *buf, size_t size, const char *name, const char *value) {
        snprintf(buf, size,
                 "apiVersion: ballast.dev/v1alpha1\n"
                 "kind: ConfigBundle\n"
                 "metadata:\n  name: %s\n"
                 "spec:\n"
                 "  nodeSelector:\n    matchLabels:\n      role: web\n"
                 "  values:\n    port: \"%s\"\n"
                 "  files:\n"
                 "    - path: app/app.conf\n"
                 "      template: \"listen {{ port }} # {{ bundle.name }}\\n\"\n"
                 "    - path: motd\n"
                 "      content: hello\n"
                 "      mode: 384\n",
                 name, value);
}

/* ---- set-up -------------------------------------------------------------------- */

static int setup(void **state) {
        char self[PATH_MAX], top[PATH_MAX];
        ssize_t n;
        err_info e;

        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        assert_true(n > 0);
        self[n] = '\0';
        /* BUILD/tests/integration/test-operator -> BUILD/ballast-operator */
        snprintf(top, sizeof(top), "%s", self);
        snprintf(operator_bin, sizeof(operator_bin), "%s/../../ballast-operator", dirname(top));
        assert_int_equal(access(operator_bin, X_OK), 0);
        snprintf(kubectl, sizeof(kubectl), "%s/kubectl", support_env("BALLAST_BINDIR"));
        snprintf(cluster_sh, sizeof(cluster_sh), "%s/../../../../tests/cluster/cluster.sh",
                 dirname(strcpy(top, self)));
        if (access(cluster_sh, R_OK) != 0)
                snprintf(cluster_sh, sizeof(cluster_sh), "tests/cluster/cluster.sh");
        snprintf(opns, sizeof(opns), "ballast-%s", support_run_id());
        snprintf(ns, sizeof(ns), "apps-%s", support_run_id());
        snprintf(logdir, sizeof(logdir), "%s/operator-%s", support_env("BALLAST_CLUSTER_DIR"),
                 support_run_id());
        assert_int_equal(support_sh(true, "mkdir -p %s", logdir), 0);
        snprintf(location, sizeof(location), "s3://%s/%s?endpoint=%s&region=%s&path_style=true",
                 support_env("BALLAST_S3_BUCKET"), support_run_id(),
                 support_env("BALLAST_S3_ENDPOINT"), support_env("BALLAST_S3_REGION"));

        assert_int_equal(support_sh(false, "%s apply -f crds/", kubectl), 0);
        assert_int_equal(support_sh(false,
                                    "%s wait --for condition=established --timeout=60s "
                                    "crd/configbundles.ballast.dev",
                                    kubectl),
                         0);
        assert_int_equal(support_sh(false, "%s create namespace %s && %s create namespace %s",
                                    kubectl, opns, kubectl, ns),
                         0);
        assert_int_equal(sd_event_new(&event), 0);
        err_info_clear(&e);
        if (objstore_open(event, location, NULL, &store, &e) < 0)
                fail_msg("object store %s: %s", location, e.message);
        start_operator(&op1, "op1");
        return 0;
}

static int teardown(void **state) {
        if (op1.pid > 0)
                support_stop(op1.pid, SIGTERM);
        if (op2.pid > 0)
                support_stop(op2.pid, SIGTERM);
        /* Bundles keep a finalizer; without an operator, drop it so the
         * namespace can go. */
        support_sh(true,
                   "%s -n %s get cb -o name | xargs -r %s -n %s patch --type=merge -p "
                   "'{\"metadata\":{\"finalizers\":null}}'",
                   kubectl, ns, kubectl, ns);
        support_sh(true, "%s delete namespace %s %s --wait=false", kubectl, ns, opns);
        objstore_free(store);
        sd_event_unref(event);
        return 0;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_schema_rejects_bad_bundles(void **state) {
        static const struct {
                const char *spec, *want;
        } bad[] = {
                {"files: [{path: a, content: x, template: yy}]",
                 "exactly one of content or template must be set"},
                {"files: [{path: ../etc/passwd, content: x}]", "spec.files[0].path"},
                {"files: [{path: /abs, content: x}]", "spec.files[0].path"},
                {"files: [{path: a, content: x}, {path: a, content: y}]", "Duplicate value"},
                {"files: [{path: a, content: x, mode: 644}]", "spec.files[0].mode"},
                {"files: []", "spec.files"},
                {"reload: Bad_Name\n  files: [{path: a, content: x}]", "spec.reload"},
                {"values: {a-b: x}\n  files: [{path: a, content: x}]", "value names must match"},
                {"nodeSelector: {matchExpressions: [{key: k, operator: In}]}\n"
                 "  files: [{path: a, content: x}]",
                 "In and NotIn need at least one value"},
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = support_sh_output(
                        "printf 'apiVersion: ballast.dev/v1alpha1\\nkind: ConfigBundle\\n"
                        "metadata: {name: bad%zu}\\nspec:\\n  %s\\n' | %s -n %s apply -f - 2>&1; "
                        "true",
                        i, bad[i].spec, kubectl, ns);
                if (!out || !strstr(out, bad[i].want))
                        fail_msg("case %zu: expected '%s' in: %s", i, bad[i].want, strna(out));
        }
        _cleanup_free_ char *none = kget("cb", "{.items[*].metadata.name}");
        assert_string_equal(strempty(none), "");
}

static void test_create_publishes_to_both_targets(void **state) {
        char yaml[2048], key[256];
        _cleanup_free_ char *digest = NULL, *cm_manifest = NULL, *object = NULL, *index = NULL,
                            *object_key = NULL;
        _cleanup_json_ json_object *ix = NULL, *m = NULL;
        char hex[HASH_SHA256_HEX_LEN + 1];

        bundle_yaml(yaml, sizeof(yaml), "web", "8080");
        kapply(yaml);
        wait_jsonpath("cb/web", READY, "True", 30000);
        wait_jsonpath("cb/web", "{.status.revision}", "1", 1000);

        digest = kget("cb/web", "{.status.digest}");
        object_key = kget("cb/web", "{.status.objectKey}");
        assert_non_null(digest);
        assert_true(startswith(digest, "sha256:"));

        /* The ConfigMap carries the manifest, whose sha256 is the digest. */
        cm_manifest =
                support_sh_output("%s -n %s get cm cb-%s.web -o jsonpath='{.data.manifest\\.json}'",
                                  kubectl, opns, ns);
        assert_non_null(cm_manifest);
        assert_int_equal(hash_sha256_hex(cm_manifest, strlen(cm_manifest), hex), 0);
        assert_string_equal(hex, digest + 7);
        assert_int_equal(jsonx_parse(cm_manifest, strlen(cm_manifest), &m, NULL), 0);
        assert_non_null(strstr(cm_manifest, "\"content\":\"listen 8080 # web\\n\""));
        assert_int_equal(jsonx_get_int(m, "revision", 0), 1);

        /* The object store holds the same bytes, and the index points at them. */
        snprintf(key, sizeof(key), "bundles/%s/web/%s.json", ns, digest + 7);
        assert_string_equal(object_key, key);
        object = store_get(key);
        assert_non_null(object);
        assert_string_equal(object, cm_manifest);
        index = store_get("index.json");
        assert_non_null(index);
        assert_int_equal(jsonx_parse(index, strlen(index), &ix, NULL), 0);
        snprintf(key, sizeof(key), "%s/web", ns);
        json_object *entry = json_object_object_get(jsonx_get(ix, "bundles"), key);
        assert_non_null(entry);
        assert_string_equal(jsonx_get_string(entry, "digest"), digest);
        assert_int_equal(jsonx_get_int(entry, "revision", 0), 1);
        assert_string_equal(jsonx_get_string(entry, "nodeSelector.matchLabels.role"), "web");

        /* And an Event says so. */
        for (int i = 0; i < 50; i++) {
                _cleanup_free_ char *ev =
                        support_sh_output("%s -n %s get events --field-selector "
                                          "involvedObject.name=web,reason=Published "
                                          "-o jsonpath='{.items[*].message}'",
                                          kubectl, ns);
                if (ev && strstr(ev, "Published revision 1"))
                        return;
                usleep(100 * 1000);
        }
        fail_msg("no Published event for web");
}

static void test_revisions_follow_content(void **state) {
        char yaml[2048];
        _cleanup_free_ char *d1 = kget("cb/web", "{.status.digest}"), *d2 = NULL, *d3 = NULL;

        bundle_yaml(yaml, sizeof(yaml), "web", "9090");
        kapply(yaml);
        wait_jsonpath("cb/web", "{.status.revision}", "2", 30000);
        wait_jsonpath("cb/web", READY, "True", 10000);
        d2 = kget("cb/web", "{.status.digest}");
        assert_string_not_equal(d1, d2);

        /* Metadata-only changes don't mint revisions. */
        assert_int_equal(support_sh(true, "%s -n %s label cb web team=a", kubectl, ns), 0);
        /* Back to the first content: still a new, higher revision. */
        bundle_yaml(yaml, sizeof(yaml), "web", "8080");
        kapply(yaml);
        wait_jsonpath("cb/web", "{.status.revision}", "3", 30000);
        d3 = kget("cb/web", "{.status.digest}");
        assert_string_not_equal(d3, d1); /* the revision is part of the manifest */
}

static void test_render_error_keeps_the_published_revision(void **state) {
        _cleanup_free_ char *msg = NULL, *cm_rev = NULL;

        kapply("apiVersion: ballast.dev/v1alpha1\nkind: ConfigBundle\nmetadata:\n  name: web\n"
               "spec:\n  files:\n    - path: app/app.conf\n      template: \"a\\n{{ missing "
               "}}\"\n");
        wait_jsonpath("cb/web", RENDERED, "False", 30000);
        msg = kget("cb/web", "{.status.conditions[?(@.type==\"Rendered\")].message}");
        assert_non_null(msg);
        if (!strstr(msg, "files[0] (app/app.conf): line 2, column 1: undefined value 'missing'"))
                fail_msg("unexpected message: %s", msg);
        wait_jsonpath("cb/web", READY, "False", 5000);
        _cleanup_free_ char *rev = kget("cb/web", "{.status.revision}");
        assert_string_equal(rev, "3");
        cm_rev = support_sh_output("%s -n %s get cm cb-%s.web -o "
                                   "jsonpath='{.metadata.annotations.ballast\\.dev/revision}'",
                                   kubectl, opns, ns);
        assert_string_equal(cm_rev, "3");
}

static void test_object_store_outage_still_publishes_configmaps(void **state) {
        char yaml[2048];
        _cleanup_free_ char *digest = NULL, *msg = NULL, *object = NULL;
        char key[256];

        assert_int_equal(support_sh(false, "bash %s stop s3", cluster_sh), 0);
        bundle_yaml(yaml, sizeof(yaml), "web", "7070");
        kapply(yaml);
        wait_jsonpath("cb/web", PUBLISHED_REASON, "ObjectStoreFailed", 60000);
        wait_jsonpath("cb/web", "{.status.revision}", "4", 1000);
        msg = kget("cb/web", "{.status.conditions[?(@.type==\"Published\")].message}");
        assert_non_null(strstr(strempty(msg), "not in the object store"));
        _cleanup_free_ char *cm_rev =
                support_sh_output("%s -n %s get cm cb-%s.web -o "
                                  "jsonpath='{.metadata.annotations.ballast\\.dev/revision}'",
                                  kubectl, opns, ns);
        assert_string_equal(cm_rev, "4");
        assert_true(support_alive(op1.pid));

        assert_int_equal(support_sh(false, "bash %s start s3", cluster_sh), 0);
        wait_jsonpath("cb/web", READY, "True", 90000);
        digest = kget("cb/web", "{.status.digest}");
        snprintf(key, sizeof(key), "bundles/%s/web/%s.json", ns, digest + 7);
        object = store_get(key);
        assert_non_null(object);
}

static void test_api_server_pause_is_survived(void **state) {
        char yaml[2048];

        assert_int_equal(support_sh(false, "bash %s pause apiserver", cluster_sh), 0);
        sleep(6); /* longer than the renew deadline: the operator stops leading */
        assert_int_equal(support_sh(false, "bash %s resume apiserver", cluster_sh), 0);
        assert_true(support_alive(op1.pid));
        bundle_yaml(yaml, sizeof(yaml), "web", "6060");
        kapply(yaml);
        wait_jsonpath("cb/web", "{.status.revision}", "5", 60000);
        wait_jsonpath("cb/web", READY, "True", 30000);
}

typedef struct count_ready {
        unsigned want;
} count_ready;

static bool all_ready(void *userdata) {
        count_ready *c = userdata;
        _cleanup_free_ char *out = support_sh_output(
                "%s -n %s get cb -l bulk=yes -o jsonpath='%s' | tr ' ' '\\n' | grep -c True",
                kubectl, ns, "{.items[*].status.conditions[?(@.type==\"Ready\")].status}");

        return out && strtoul(out, NULL, 10) == c->want;
}

static void test_resync_of_unchanged_bundles_writes_nothing(void **state) {
        _cleanup_free_ char *path = NULL;
        count_ready c = {100};
        double w0, w1, r0, r1;
        FILE *f;

        assert_true(asprintf(&path, "%s/bulk.yaml", logdir) > 0);
        f = fopen(path, "w");
        for (int i = 0; i < 100; i++)
                fprintf(f,
                        "---\napiVersion: ballast.dev/v1alpha1\nkind: ConfigBundle\n"
                        "metadata: {name: bulk-%03d, labels: {bulk: \"yes\"}}\n"
                        "spec: {files: [{path: f, content: \"n=%d\"}]}\n",
                        i, i);
        fclose(f);
        assert_int_equal(support_sh(true, "%s -n %s apply -f %s", kubectl, ns, path), 0);
        if (!support_wait_for(all_ready, &c, 90000)) {
                support_dump_log(op1.log, 30);
                fail_msg("not all 100 bundles became ready");
        }
        /* Let the last writes land, then watch two full resyncs (every 3 s). */
        sleep(3);
        w0 = writes(&op1);
        r0 = metric(&op1, "ballast_operator_reconciles_total");
        assert_true(r0 >= 100); /* the metrics are there */
        /* ...and under the names operator users know (docs/operator.md). The
         * queue is empty between resyncs: its depth is there, maybe 0. */
        assert_true(metric(&op1, "workqueue_depth{name=\"configbundle\"}") >= 0);
        assert_true(metric(&op1, "workqueue_adds_total{name=\"configbundle\"}") >= 100);
        assert_true(metric(&op1, "controller_runtime_reconcile_time_seconds_count"
                                 "{controller=\"configbundle\"}") >= 100);
        assert_true(metric(&op1, "controller_runtime_reconcile_total"
                                 "{controller=\"configbundle\",result=\"success\"}") >= 100);
        assert_true(metric(&op1, "rest_client_requests_total{code=\"200\"}") > 0);
        assert_true(metric(&op1, "ballast_operator_objstore_requests_total{code=\"200\"}") > 0);
        assert_true(metric(&op1, "ballast_operator_publish_total"
                                 "{target=\"configmap\",result=\"success\"}") >= 100);
        sleep(8);
        w1 = writes(&op1);
        r1 = metric(&op1, "ballast_operator_reconciles_total");
        fprintf(stderr, "resync: %.0f reconciles, %.0f writes\n", r1 - r0, w1 - w0);
        if (w1 != w0)
                support_sh(false, "curl -sf http://127.0.0.1:%u/metrics | grep writes_total",
                           op1.port);
        assert_true(r1 - r0 >= 200); /* the resyncs did happen */
        assert_true(w1 == w0);       /* and wrote nothing */
}

static void test_fleet_reports_become_node_counts(void **state) {
        _cleanup_free_ char *digest = kget("cb/web", "{.status.digest}");
        objstore_put_opts po = {.content_type = "application/json"};
        char key[128], now[32], bundle[128];
        time_t t = time(NULL);
        err_info e;

        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        snprintf(bundle, sizeof(bundle), "%s/web", ns);
        for (int n = 0; n < 3; n++) {
                /* Two nodes applied the current revision; the third rolled it back. */
                _cleanup_json_ json_object *rep = json_object_new_object();
                json_object *bundles = json_object_new_object(), *b = json_object_new_object(),
                            *applied = json_object_new_object(), *failed = json_object_new_array();
                _cleanup_free_ char *text = NULL;
                size_t len;

                json_object_object_add(rep, "apiVersion",
                                       json_object_new_string("ballast.dev/v1alpha1"));
                json_object_object_add(rep, "kind", json_object_new_string("NodeStatus"));
                snprintf(key, sizeof(key), "node-%d", n);
                json_object_object_add(rep, "node", json_object_new_string(key));
                json_object_object_add(rep, "updated", json_object_new_string(now));
                json_object_object_add(b, "matched", json_object_new_boolean(true));
                json_object_object_add(applied, "digest", json_object_new_string(digest));
                if (n < 2)
                        json_object_object_add(b, "applied", applied);
                else {
                        json_object *fd = json_object_new_object();
                        json_object_object_add(fd, "digest", json_object_new_string(digest));
                        json_object_object_add(fd, "reason",
                                               json_object_new_string("reload failed"));
                        json_object_array_add(failed, fd);
                        json_object_put(applied);
                }
                json_object_object_add(b, "failed", failed);
                json_object_object_add(bundles, bundle, b);
                json_object_object_add(rep, "bundles", bundles);
                assert_int_equal(jsonx_to_canonical(rep, &text, &len), 0);
                snprintf(key, sizeof(key), "status/node-%d.json", n);
                assert_int_equal(objstore_put_sync(store, key, text, len, &po, NULL, &e), 0);
        }
        wait_jsonpath("cb/web", "{.status.nodes.matched}", "3", 30000);
        wait_jsonpath("cb/web", "{.status.nodes.applied}", "2", 5000);
        wait_jsonpath("cb/web", "{.status.nodes.failed}", "1", 5000);
}

static bool lease_held_by(void *userdata) {
        _cleanup_free_ char *h = support_sh_output(
                "%s -n %s get lease ballast-operator -o jsonpath='{.spec.holderIdentity}'", kubectl,
                opns);
        return h && streq(h, (const char *) userdata);
}

static void test_leader_failover(void **state) {
        char yaml[2048];
        uint64_t t0;

        assert_true(support_wait_for(lease_held_by, op1.identity, 10000));
        start_operator(&op2, "op2");
        sleep(3);
        /* The standby does not take over a live lease. */
        assert_true(lease_held_by(op1.identity));
        assert_true(metric(&op2, "ballast_operator_leader") == 0);

        /* Kill the leader without a chance to release: the standby waits out
         * the lease (4 s) and takes over. */
        t0 = support_now_ms();
        support_stop(op1.pid, SIGKILL);
        op1.pid = 0;
        if (!support_wait_for(lease_held_by, op2.identity, 15000)) {
                support_dump_log(op2.log, 30);
                fail_msg("the standby did not take over");
        }
        fprintf(stderr, "failover took %" PRIu64 " ms\n", support_now_ms() - t0);
        assert_true(support_now_ms() - t0 < 4000 + 2 * 1000 + 2000);

        bundle_yaml(yaml, sizeof(yaml), "web", "5050");
        kapply(yaml);
        wait_jsonpath("cb/web", "{.status.revision}", "6", 30000);
        wait_jsonpath("cb/web", READY, "True", 30000);

        /* SIGTERM releases the lease: no waiting for expiry. */
        support_stop(op2.pid, SIGTERM);
        op2.pid = 0;
        _cleanup_free_ char *h = support_sh_output(
                "%s -n %s get lease ballast-operator -o jsonpath='{.spec.holderIdentity}'", kubectl,
                opns);
        assert_string_equal(strempty(h), "");
        start_operator(&op1, "op1");
        assert_true(support_wait_for(lease_held_by, op1.identity, 5000));
}

static bool gone(void *userdata) {
        return support_sh(true, "%s", (const char *) userdata) != 0;
}

static void test_delete_cleans_up(void **state) {
        _cleanup_free_ char *digest = kget("cb/web", "{.status.digest}"), *get_cb = NULL,
                            *get_cm = NULL, *index = NULL, *object = NULL;
        char key[256];

        assert_int_equal(support_sh(false, "%s -n %s delete cb web --wait=false", kubectl, ns), 0);
        assert_true(asprintf(&get_cb, "%s -n %s get cb web", kubectl, ns) > 0);
        assert_true(asprintf(&get_cm, "%s -n %s get cm cb-%s.web", kubectl, opns, ns) > 0);
        if (!support_wait_for(gone, get_cb, 30000)) {
                support_dump_log(op1.log, 30);
                fail_msg("the ConfigBundle was not finalized");
        }
        assert_true(support_wait_for(gone, get_cm, 5000));
        index = store_get("index.json");
        snprintf(key, sizeof(key), "\"%s/web\"", ns);
        assert_null(strstr(strempty(index), key));
        /* The manifest stays for the retention period. */
        snprintf(key, sizeof(key), "bundles/%s/web/%s.json", ns, digest + 7);
        object = store_get(key);
        assert_non_null(object);
}

static void test_sigterm_exits_cleanly(void **state) {
        int status = support_stop(op1.pid, SIGTERM);

        op1.pid = 0;
        /* Under ASan a leak or an error would make the exit status non-zero. */
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                support_dump_log(op1.log, 40);
                fail_msg("the operator exited with status %d", status);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schema_rejects_bad_bundles),
                cmocka_unit_test(test_create_publishes_to_both_targets),
                cmocka_unit_test(test_revisions_follow_content),
                cmocka_unit_test(test_render_error_keeps_the_published_revision),
                cmocka_unit_test(test_object_store_outage_still_publishes_configmaps),
                cmocka_unit_test(test_api_server_pause_is_survived),
                cmocka_unit_test(test_resync_of_unchanged_bundles_writes_nothing),
                cmocka_unit_test(test_fleet_reports_become_node_counts),
                cmocka_unit_test(test_leader_failover),
                cmocka_unit_test(test_delete_cleans_up),
                cmocka_unit_test(test_sigterm_exits_cleanly),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
