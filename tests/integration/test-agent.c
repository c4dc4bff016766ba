/* SPDX-License-Identifier: Apache-2.0 */

/*
 * ballast-agent against the local control plane, the real S3 server and the
 * real operator (tests/cluster): three Nodes (API objects only; there is no
 * kubelet) and an agent process per node with its own cache and root.
 *
 *   - bundles land on matching nodes only, and leave a node whose labels
 *     stop matching;
 *   - an update arrives through the watch within seconds, with no manifest
 *     fetched from the object store;
 *   - API server paused: files stay, and a revision published straight to
 *     the object store still arrives;
 *   - API server and object store both down: a restarted agent with a wiped
 *     root serves last-known-good from its cache alone (/readyz 200), then
 *     converges when they come back;
 *   - a failing reload: rollback to last-known-good, the failure in
 *     status/NODE.json and then in the ConfigBundle's status.nodes.failed;
 *   - kill -9 at random moments during 200 updates (file:// store): the cache
 *     always verifies and the root always holds exactly one whole revision.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "apply.h"
#include "backoff.h"
#include "cache.h"
#include "fsx.h"
#include "jsonx.h"
#include "loop.h"
#include "manifest.h"
#include "objstore.h"
#include "publish.h"
#include "render.h"
#include "support.h"

#define N_AGENTS 3

static char opns[64], ns[64], kubectl[PATH_MAX], cluster_sh[PATH_MAX], operator_bin[PATH_MAX],
        agent_bin[PATH_MAX], location[1024], logdir[512], op_log[600];
static sd_event *event;
static objstore *store;
static pid_t op_pid;
static bool api_paused, s3_stopped;
static unsigned ports; /* the first of N_AGENTS + 1 free ports: the agents', then the operator's */

typedef struct agent {
        char name[64]; /* node name */
        char role[16]; /* its label */
        char dir[600], cache[640], root[640], config[640], log[640], flag[640];
        unsigned port;
        pid_t pid;
} agent;
static agent agents[N_AGENTS];

/* ---- helpers ------------------------------------------------------------------ */

static char *kget(const char *what, const char *jsonpath) {
        return support_sh_output("%s -n %s get %s -o jsonpath='%s' 2>/dev/null", kubectl, ns, what,
                                 jsonpath);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
}

static void kapply(const char *yaml) {
        char path[PATH_MAX + 32];

        snprintf(path, sizeof(path), "%s/apply.yaml", logdir);
        write_file(path, yaml, 0644);
        /* Other tests share the control plane and make outages of their own:
         * retry for a while. */
        for (int i = 0; support_sh(false, "%s -n %s apply -f %s", kubectl, ns, path) != 0; i++) {
                if (i >= 30)
                        fail_msg("kubectl apply failed for:\n%s", yaml);
                sleep(2);
        }
}

static void bundle_yaml(char *buf, size_t size, const char *name, const char *role,
                        const char *reload, const char *port) {
        snprintf(buf, size,
                 "apiVersion: ballast.dev/v1alpha1\n"
                 "kind: ConfigBundle\n"
                 "metadata:\n  name: %s\n"
                 "spec:\n"
                 "  nodeSelector:\n    matchLabels:\n      role: %s\n"
                 "  reload: %s\n"
                 "  values:\n    port: \"%s\"\n"
                 "  files:\n"
                 "    - path: app.conf\n"
                 "      template: \"port={{ port }}\\n\"\n"
                 "    - path: extra/extra.conf\n"
                 "      template: \"# {{ bundle.name }} {{ port }}\\n\"\n",
                 name, role, reload, port);
}

static void start_agent(agent *a) {
        char kc[PATH_MAX + 16], nsa[96], node[96], loc[1100], cache_arg[700], root[700], cfg[700],
                health[64];

        snprintf(kc, sizeof(kc), "--kubeconfig=%s", support_env("KUBECONFIG"));
        snprintf(nsa, sizeof(nsa), "--namespace=%s", opns);
        snprintf(node, sizeof(node), "--node-name=%s", a->name);
        snprintf(loc, sizeof(loc), "--object-store=%s", location);
        snprintf(cache_arg, sizeof(cache_arg), "--cache-dir=%s", a->cache);
        snprintf(root, sizeof(root), "--root-dir=%s", a->root);
        snprintf(cfg, sizeof(cfg), "--config=%s", a->config);
        snprintf(health, sizeof(health), "--health-addr=127.0.0.1:%u", a->port);
        char *argv[] = {agent_bin,
                        kc,
                        nsa,
                        node,
                        loc,
                        cache_arg,
                        root,
                        cfg,
                        health,
                        "--poll-interval=2s",
                        "--heartbeat-interval=3s",
                        "--log-level=debug",
                        NULL};
        a->pid = support_spawn(argv, a->log);
}

static void start_operator(void) {
        char ns_arg[96], wns_arg[96], loc_arg[1100], kc_arg[PATH_MAX + 16], id_arg[96],
                port_arg[64];

        snprintf(op_log, sizeof(op_log), "%s/operator.log", logdir);
        snprintf(ns_arg, sizeof(ns_arg), "--namespace=%s", opns);
        snprintf(wns_arg, sizeof(wns_arg), "--watch-namespace=%s", ns);
        snprintf(loc_arg, sizeof(loc_arg), "--object-store=%s", location);
        snprintf(kc_arg, sizeof(kc_arg), "--kubeconfig=%s", support_env("KUBECONFIG"));
        snprintf(id_arg, sizeof(id_arg), "--identity=op-%s", support_run_id());
        snprintf(port_arg, sizeof(port_arg), "--health-addr=127.0.0.1:%u", ports + N_AGENTS);
        char *argv[] = {operator_bin,
                        kc_arg,
                        ns_arg,
                        wns_arg,
                        loc_arg,
                        id_arg,
                        port_arg,
                        "--lease-duration=4s",
                        "--renew-deadline=3s",
                        "--retry-period=1s",
                        "--resync-period=5s",
                        "--fleet-interval=1s",
                        "--log-level=debug",
                        NULL};
        op_pid = support_spawn(argv, op_log);
}

static char *read_live(const agent *a, const char *bundle, const char *file) {
        char p[PATH_MAX * 2];
        char *data = NULL;

        snprintf(p, sizeof(p), "%s/%s/%s/%s", a->root, ns, bundle, file);
        if (fsx_read_file(AT_FDCWD, p, 1 << 20, &data, NULL) < 0)
                return NULL;
        return data;
}

typedef struct live_expect {
        const agent *a;
        const char *bundle, *want; /* want NULL: the bundle is absent */
} live_expect;

static bool live_is(void *userdata) {
        live_expect *x = userdata;
        _cleanup_free_ char *have = read_live(x->a, x->bundle, "app.conf");

        return x->want ? have && streq(have, x->want) : !have;
}

static void dump_agents(void) {
        for (int i = 0; i < N_AGENTS; i++)
                support_dump_log(agents[i].log, 25);
        support_dump_log(op_log, 15);
}

static void wait_live(const agent *a, const char *bundle, const char *want, unsigned ms) {
        live_expect x = {a, bundle, want};

        if (!support_wait_for(live_is, &x, ms)) {
                _cleanup_free_ char *have = read_live(a, bundle, "app.conf");
                dump_agents();
                fail_msg("%s: %s/app.conf: want '%s', have '%s'", a->name, bundle, strna(want),
                         strna(have));
        }
}

typedef struct expect {
        const char *what, *path, *want;
} expect;

static bool jsonpath_equals(void *userdata) {
        expect *e = userdata;
        _cleanup_free_ char *v = kget(e->what, e->path);

        return v && streq(v, e->want);
}

static void wait_jsonpath(const char *what, const char *path, const char *want, unsigned ms) {
        expect e = {what, path, want};

        if (!support_wait_for(jsonpath_equals, &e, ms)) {
                _cleanup_free_ char *v = kget(what, path);
                dump_agents();
                fail_msg("%s %s: want '%s', have '%s'", what, path, want, strna(v));
        }
}

/* A counter or gauge from an agent's /metrics, or -1 when absent. */
static double metric(const agent *a, const char *series) {
        _cleanup_free_ char *out =
                support_sh_output("curl -sf -m 2 http://127.0.0.1:%u/metrics", a->port);
        size_t n = strlen(series);

        for (const char *p = out; p && *p;) {
                const char *nl = strchr(p, '\n');
                if (strneq(p, series, n) && p[n] == ' ')
                        return strtod(p + n + 1, NULL);
                p = nl ? nl + 1 : NULL;
        }
        return -1;
}

typedef struct metric_expect {
        const agent *a;
        const char *series;
        double want;
} metric_expect;

static bool metric_is(void *userdata) {
        metric_expect *x = userdata;

        return metric(x->a, x->series) == x->want;
}

static void wait_metric(const agent *a, const char *series, double want, unsigned ms) {
        metric_expect x = {a, series, want};

        if (!support_wait_for(metric_is, &x, ms)) {
                dump_agents();
                fail_msg("%s: %s: want %g, have %g", a->name, series, want, metric(a, series));
        }
}

static bool http_ok(unsigned port, const char *path) {
        return support_sh(true, "curl -sf -m 2 http://127.0.0.1:%u%s", port, path) == 0;
}

/* A put that waits out someone else's short S3 outage. */
static void store_put(const char *key, const char *data, size_t len) {
        objstore_put_opts po = {.content_type = "application/json"};
        err_info e;

        for (int i = 0;; i++) {
                err_info_clear(&e);
                if (objstore_put_sync(store, key, data, len, &po, NULL, &e) >= 0)
                        return;
                if (i >= 30)
                        fail_msg("put %s: %s", key, e.message);
                sleep(2);
        }
}

static char *store_get(const char *key) {
        _cleanup_(objstore_object_freep) objstore_object *o = NULL;
        err_info e;

        if (objstore_get_sync(store, key, NULL, &o, &e) < 0)
                return NULL;
        return TAKE_PTR(o->data);
}

/* Undoes our outages after a failed test, so the next one starts whole. */
static int restore_cluster(void **state) {
        if (api_paused)
                support_sh(false, "bash %s resume apiserver", cluster_sh);
        if (s3_stopped)
                support_sh(false, "bash %s start s3", cluster_sh);
        api_paused = s3_stopped = false;
        return 0;
}

static void cluster(const char *verb, const char *what) {
        assert_int_equal(support_sh(false, "bash %s %s %s", cluster_sh, verb, what), 0);
        if (streq(what, "apiserver"))
                api_paused = streq(verb, "pause");
        if (streq(what, "s3"))
                s3_stopped = streq(verb, "stop");
}

/* ---- set-up ---------------------------------------------------------------------- */

static int setup(void **state) {
        char self[PATH_MAX], tmp[PATH_MAX], script[800], text[8192];
        ssize_t n;
        err_info e;

        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        assert_true(n > 0);
        self[n] = '\0';
        /* BUILD/tests/integration/test-agent -> BUILD/ballast-agent */
        snprintf(tmp, sizeof(tmp), "%s", self);
        snprintf(agent_bin, sizeof(agent_bin), "%s/../../ballast-agent", dirname(tmp));
        snprintf(tmp, sizeof(tmp), "%s", self);
        snprintf(operator_bin, sizeof(operator_bin), "%s/../../ballast-operator", dirname(tmp));
        assert_int_equal(access(agent_bin, X_OK), 0);
        assert_int_equal(access(operator_bin, X_OK), 0);
        snprintf(kubectl, sizeof(kubectl), "%s/kubectl", support_env("BALLAST_BINDIR"));
        snprintf(tmp, sizeof(tmp), "%s", self);
        snprintf(cluster_sh, sizeof(cluster_sh), "%s/../../../../tests/cluster/cluster.sh",
                 dirname(tmp));
        if (access(cluster_sh, R_OK) != 0)
                snprintf(cluster_sh, sizeof(cluster_sh), "tests/cluster/cluster.sh");
        snprintf(opns, sizeof(opns), "ballast-%s", support_run_id());
        snprintf(ns, sizeof(ns), "apps-%s", support_run_id());
        snprintf(logdir, sizeof(logdir), "%s/agent-%s", support_env("BALLAST_CLUSTER_DIR"),
                 support_run_id());
        assert_int_equal(support_sh(true, "mkdir -p %s", logdir), 0);
        snprintf(location, sizeof(location),
                 "s3://%s/agent-%s?endpoint=%s&region=%s&path_style=true",
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
        ports = support_free_ports(N_AGENTS + 1);
        err_info_clear(&e);
        if (objstore_open(event, location, NULL, &store, &e) < 0)
                fail_msg("object store %s: %s", location, e.message);

        for (int i = 0; i < N_AGENTS; i++) {
                agent *a = &agents[i];

                snprintf(a->name, sizeof(a->name), "node-%s-%c", support_run_id(), 'a' + i);
                snprintf(a->role, sizeof(a->role), "%s", i < 2 ? "web" : "db");
                char d[600];

                snprintf(d, sizeof(d), "%s/%c", logdir, 'a' + i);
                snprintf(a->dir, sizeof(a->dir), "%s", d);
                snprintf(a->cache, sizeof(a->cache), "%s/cache", d);
                snprintf(a->root, sizeof(a->root), "%s/root", d);
                snprintf(a->config, sizeof(a->config), "%s/config.yaml", d);
                snprintf(a->log, sizeof(a->log), "%s/agent.log", d);
                snprintf(a->flag, sizeof(a->flag), "%s/fail", d);
                a->port = ports + (unsigned) i;
                assert_int_equal(mkdir(a->dir, 0755), 0);
                /* The reload records what it saw; "flaky" fails while the flag exists. */
                snprintf(script, sizeof(script), "%s/reload.sh", a->dir);
                snprintf(text, sizeof(text),
                         "#!/bin/sh\necho \"$(date +%%s.%%N) $(cat %s/%s/web/app.conf "
                         "2>/dev/null)\" "
                         ">> %s/reloads\n",
                         a->root, ns, a->dir);
                write_file(script, text, 0755);
                snprintf(script, sizeof(script), "%s/flaky.sh", a->dir);
                snprintf(text, sizeof(text), "#!/bin/sh\necho flaky >> %s/reloads\ntest ! -e %s\n",
                         a->dir, a->flag);
                write_file(script, text, 0755);
                snprintf(text, sizeof(text),
                         "reloadActions:\n"
                         "  app:\n    command: [%s/reload.sh]\n    timeout: 10s\n"
                         "  flaky:\n    command: [%s/flaky.sh]\n    timeout: 10s\n",
                         a->dir, a->dir);
                write_file(a->config, text, 0644);
                snprintf(text, sizeof(text),
                         "apiVersion: v1\nkind: Node\nmetadata:\n  name: %.63s\n  labels:\n"
                         "    role: %.15s\n    ballast-test: %.15s\n",
                         a->name, a->role, support_run_id());
                snprintf(script, sizeof(script), "%s/node.yaml", a->dir);
                write_file(script, text, 0644);
                assert_int_equal(support_sh(false, "%s apply -f %s", kubectl, script), 0);
        }
        start_operator();
        for (int i = 0; i < N_AGENTS; i++)
                start_agent(&agents[i]);
        return 0;
}

static int teardown(void **state) {
        restore_cluster(state);
        for (int i = 0; i < N_AGENTS; i++)
                if (agents[i].pid > 0)
                        support_stop(agents[i].pid, SIGTERM);
        if (op_pid > 0)
                support_stop(op_pid, SIGTERM);
        support_sh(true,
                   "%s -n %s get cb -o name | xargs -r %s -n %s patch --type=merge -p "
                   "'{\"metadata\":{\"finalizers\":null}}'",
                   kubectl, ns, kubectl, ns);
        support_sh(true, "%s delete namespace %s %s --wait=false", kubectl, ns, opns);
        support_sh(true, "%s delete node -l ballast-test=%s --wait=false", kubectl,
                   support_run_id());
        objstore_free(store);
        sd_event_unref(event);
        return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_applied_on_matching_nodes_only(void **state) {
        char yaml[2048];
        _cleanup_free_ char *extra = NULL, *reloads = NULL;
        char p[PATH_MAX * 2];

        bundle_yaml(yaml, sizeof(yaml), "web", "web", "app", "8080");
        kapply(yaml);
        wait_live(&agents[0], "web", "port=8080\n", 30000);
        wait_live(&agents[1], "web", "port=8080\n", 10000);
        extra = read_live(&agents[0], "web", "extra/extra.conf");
        assert_string_equal(strempty(extra), "# web 8080\n");
        /* The reload ran with the new files in place. */
        snprintf(p, sizeof(p), "%s/reloads", agents[0].dir);
        for (int i = 0; i < 100; i++) {
                reloads = mfree(reloads);
                if (fsx_read_file(AT_FDCWD, p, 1 << 20, &reloads, NULL) >= 0 &&
                    strstr(reloads, " port=8080"))
                        break;
                usleep(100 * 1000);
        }
        assert_non_null(strstr(strempty(reloads), " port=8080"));
        /* The db node never gets it. */
        sleep(2);
        wait_live(&agents[2], "web", NULL, 1);
        if (!http_ok(agents[2].port, "/readyz")) {
                dump_agents();
                fail_msg("%s is not ready", agents[2].name);
        }

        /* Labels change on the Node: the bundle leaves node b, then comes back. */
        assert_int_equal(
                support_sh(false, "%s label node %s role=db --overwrite", kubectl, agents[1].name),
                0);
        wait_live(&agents[1], "web", NULL, 15000);
        assert_int_equal(
                support_sh(false, "%s label node %s role=web --overwrite", kubectl, agents[1].name),
                0);
        wait_live(&agents[1], "web", "port=8080\n", 15000);
}

static void test_update_arrives_by_watch(void **state) {
        char yaml[2048];
        double fetches0 = metric(&agents[0], "ballast_agent_manifest_fetches_total{result=\"ok\"}");
        char series[256];
        uint64_t t0, ms;

        /* The revision so far came through the watch too. */
        snprintf(series, sizeof(series), "ballast_agent_applied_revision{bundle=\"%s/web\"}", ns);
        assert_true(metric(&agents[0], series) >= 1);

        bundle_yaml(yaml, sizeof(yaml), "web", "web", "app", "8081");
        t0 = support_now_ms();
        kapply(yaml);
        wait_live(&agents[0], "web", "port=8081\n", 10000);
        ms = support_now_ms() - t0;
        wait_live(&agents[1], "web", "port=8081\n", 5000);
        fprintf(stderr, "update applied %" PRIu64 " ms after kubectl apply returned\n", ms);
        /* Operator reconcile + watch + apply: about a second; generous for ASan. */
        assert_true(ms < 4000);
        /* It came inline through the watch: nothing was fetched from the store. */
        assert_true(metric(&agents[0], "ballast_agent_manifest_fetches_total{result=\"ok\"}") ==
                    fetches0);
}

/* Renders what the operator would publish for "web" with port @port at
 * @revision, and publishes it to the object store as the operator does:
 * the manifest, then the index. */
static void publish_direct(json_object *spec, const char *uid, int64_t revision, const char *port) {
        _cleanup_(render_result_freep) render_result *res = NULL;
        _cleanup_json_ json_object *s = NULL, *ix = NULL;
        _cleanup_free_ char *key = NULL, *index = NULL, *text = NULL;
        render_identity id = {.namespace = ns, .name = "web", .uid = uid};
        json_object *entry;
        char bkey[128];
        size_t len;
        err_info e;

        assert_int_equal(jsonx_deep_copy(spec, &s), 0);
        json_object_object_add(jsonx_get(s, "values"), "port", json_object_new_string(port));
        err_info_clear(&e);
        if (render_bundle(s, &id, revision, &res, &e) < 0)
                fail_msg("render: %s", e.message);
        assert_int_equal(bundle_object_key(ns, "web", res->digest, &key), 0);
        store_put(key, res->manifest, res->manifest_len);
        for (int i = 0; !(index = store_get("index.json")) && i < 30; i++)
                sleep(2);
        assert_non_null(index);
        assert_int_equal(jsonx_parse(index, strlen(index), &ix, NULL), 0);
        snprintf(bkey, sizeof(bkey), "%s/web", ns);
        entry = json_object_object_get(jsonx_get(ix, "bundles"), bkey);
        assert_non_null(entry);
        json_object_object_add(entry, "revision", json_object_new_int64(revision));
        json_object_object_add(entry, "digest", json_object_new_string(res->digest));
        json_object_object_add(entry, "key", json_object_new_string(key));
        assert_int_equal(jsonx_to_canonical(ix, &text, &len), 0);
        store_put("index.json", text, len);
}

typedef struct revision_expect {
        const agent *a;
        double revision;
} revision_expect;

static bool applied_revision_is(void *userdata) {
        revision_expect *x = userdata;
        char series[256];

        snprintf(series, sizeof(series), "ballast_agent_applied_revision{bundle=\"%s/web\"}", ns);
        return metric(x->a, series) == x->revision;
}

/* Waits until the operator has published the current spec of "web" and the
 * agents of nodes a and b have applied that revision. On its way there the
 * operator may publish a revision for the spec it had cached (above one
 * published behind its back), so the files alone don't tell. */
static void wait_converged(void) {
        _cleanup_free_ char *gen = kget("cb/web", "{.metadata.generation}"), *rev = NULL;

        assert_non_null(gen);
        wait_jsonpath("cb/web", "{.status.observedGeneration}", gen, 30000);
        rev = kget("cb/web", "{.status.revision}");
        assert_non_null(rev);
        for (int i = 0; i < 2; i++) {
                revision_expect x = {&agents[i], strtod(rev, NULL)};

                if (!support_wait_for(applied_revision_is, &x, 30000)) {
                        dump_agents();
                        fail_msg("%s did not apply revision %s of web", agents[i].name, rev);
                }
        }
}

static void test_api_server_paused_store_update_arrives(void **state) {
        _cleanup_free_ char *spec_text = kget("cb/web", "{.spec}"),
                            *uid = kget("cb/web", "{.metadata.uid}"),
                            *rev = kget("cb/web", "{.status.revision}");
        _cleanup_json_ json_object *spec = NULL;
        char yaml[2048];

        assert_non_null(spec_text);
        assert_non_null(uid);
        assert_non_null(rev);
        assert_int_equal(jsonx_parse(spec_text, strlen(spec_text), &spec, NULL), 0);

        cluster("pause", "apiserver");
        sleep(1);
        for (int i = 0; i < 2; i++)
                wait_live(&agents[i], "web", "port=8081\n", 1);
        /* What the operator will publish for port 9999, published now. */
        publish_direct(spec, uid, strtoll(rev, NULL, 10) + 1, "9999");
        wait_live(&agents[0], "web", "port=9999\n", 15000);
        wait_live(&agents[1], "web", "port=9999\n", 15000);
        wait_live(&agents[2], "web", NULL, 1);
        for (int i = 0; i < N_AGENTS; i++)
                if (!support_alive(agents[i].pid) || !http_ok(agents[i].port, "/healthz")) {
                        dump_agents();
                        fail_msg("%s is not alive and live", agents[i].name);
                }
        cluster("resume", "apiserver");

        /* The API server is back: the operator catches up (it continues above
         * what the index lists, so revisions only go up), and the same spec
         * through the API converges everyone on port 9999 again. */
        bundle_yaml(yaml, sizeof(yaml), "web", "web", "app", "9999");
        kapply(yaml);
        wait_converged();
}

static void test_both_down_restart_serves_cache(void **state) {
        agent *a = &agents[0];
        _cleanup_close_ int dirfd = -1;
        char yaml[2048];
        uint64_t t0;

        cluster("stop", "s3");
        cluster("pause", "apiserver");
        support_stop(a->pid, SIGTERM);
        /* The root is gone too (a tmpfs after a reboot). */
        dirfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dirfd >= 0);
        assert_int_equal(fsx_rm_rf_at(dirfd, "root"), 0);
        wait_live(a, "web", NULL, 1);

        t0 = support_now_ms();
        start_agent(a);
        for (;;) {
                if (http_ok(a->port, "/readyz"))
                        break;
                if (support_now_ms() - t0 > 10000) {
                        support_dump_log(a->log, 40);
                        fail_msg("the agent did not become ready from its cache alone");
                }
                usleep(100 * 1000);
        }
        fprintf(stderr, "ready from the cache in %" PRIu64 " ms\n", support_now_ms() - t0);
        /* Ready means the root already matches last-known-good. */
        wait_live(a, "web", "port=9999\n", 1);
        sleep(3);
        assert_true(support_alive(a->pid));
        assert_true(http_ok(a->port, "/healthz"));
        wait_live(a, "web", "port=9999\n", 1);

        /* Recovery: everything converges on what is published next. */
        cluster("resume", "apiserver");
        cluster("start", "s3");
        bundle_yaml(yaml, sizeof(yaml), "web", "web", "app", "7777");
        kapply(yaml);
        wait_live(&agents[0], "web", "port=7777\n", 60000);
        wait_live(&agents[1], "web", "port=7777\n", 30000);
        wait_live(&agents[2], "web", NULL, 1);
}

typedef struct report_expect {
        const char *node, *bundle, *digest;
} report_expect;

static bool report_has_failure(void *userdata) {
        report_expect *x = userdata;
        _cleanup_free_ char *text = NULL;
        _cleanup_json_ json_object *doc = NULL;
        char key[256];
        json_object *failed;

        snprintf(key, sizeof(key), "status/%s.json", x->node);
        text = store_get(key);
        if (!text || jsonx_parse(text, strlen(text), &doc, NULL) < 0)
                return false;
        failed = jsonx_get(json_object_object_get(jsonx_get(doc, "bundles"), x->bundle), "failed");
        for (size_t i = 0; failed && i < json_object_array_length(failed); i++) {
                json_object *f = json_object_array_get_idx(failed, i);
                if (streq(strempty(jsonx_get_string(f, "digest")), x->digest) &&
                    strstr(strempty(jsonx_get_string(f, "reason")), "exited with status 1"))
                        return true;
        }
        return false;
}

static void test_failing_reload_rolls_back(void **state) {
        char yaml[2048], bundle[128], series[256];
        _cleanup_free_ char *d2 = NULL;
        int fd;

        bundle_yaml(yaml, sizeof(yaml), "flaky", "web", "flaky", "1");
        /* The template reads "port=1" for a bundle named flaky. */
        kapply(yaml);
        wait_live(&agents[0], "flaky", "port=1\n", 30000);
        wait_live(&agents[1], "flaky", "port=1\n", 10000);
        /* Live is not yet confirmed: wait for the reload to make it
         * last-known-good. */
        snprintf(series, sizeof(series),
                 "ballast_agent_last_known_good_revision{bundle=\"%s/flaky\"}", ns);
        wait_metric(&agents[0], series, 1, 10000);

        /* Node a's reload now fails. */
        fd = open(agents[0].flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        bundle_yaml(yaml, sizeof(yaml), "flaky", "web", "flaky", "2");
        kapply(yaml);
        wait_jsonpath("cb/flaky", "{.status.revision}", "2", 30000);
        d2 = kget("cb/flaky", "{.status.digest}");
        wait_live(&agents[1], "flaky", "port=2\n", 15000);
        /* Node a tried, failed, and is back on revision 1. */
        snprintf(bundle, sizeof(bundle), "%s/flaky", ns);
        report_expect x = {agents[0].name, bundle, d2};
        if (!support_wait_for(report_has_failure, &x, 30000)) {
                dump_agents();
                fail_msg("no failure for %s in status/%s.json", d2, agents[0].name);
        }
        wait_live(&agents[0], "flaky", "port=1\n", 1);
        assert_true(metric(&agents[0], "ballast_agent_rollbacks_total") >= 1);

        /* And the operator counts it. */
        wait_jsonpath("cb/flaky", "{.status.nodes.failed}", "1", 30000);
        wait_jsonpath("cb/flaky", "{.status.nodes.applied}", "1", 10000);
        wait_jsonpath("cb/flaky", "{.status.nodes.matched}", "2", 10000);
        unlink(agents[0].flag);
}

/* ---- kill -9 during 200 updates (file:// store, no API server) ---------------------- */

#define KILL_UPDATES 200

static render_result *kill_revs[KILL_UPDATES + 1];

static render_result *render_kill(int64_t rev) {
        render_identity id = {.namespace = "kill", .name = "loop", .uid = "k-1"};
        _cleanup_json_ json_object *spec = json_object_new_object();
        json_object *files = json_object_new_array();
        render_result *res = NULL;
        static const char *const paths[] = {"a.conf", "b.conf", "sub/c.conf", "sub/d/e.conf"};
        err_info e;

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                json_object *f = json_object_new_object();
                char content[128];
                /* Sizes vary with the revision, so a torn file shows. */
                snprintf(content, sizeof(content), "%s revision %" PRIi64 " %.*s\n", paths[i], rev,
                         (int) (rev % 50), "..................................................");
                json_object_object_add(f, "path", json_object_new_string(paths[i]));
                json_object_object_add(f, "content", json_object_new_string(content));
                json_object_array_add(files, f);
        }
        json_object_object_add(spec, "files", files);
        err_info_clear(&e);
        if (render_bundle(spec, &id, rev, &res, &e) < 0)
                fail_msg("render: %s", e.message);
        return res;
}

static void kill_publish(objstore *fs, int64_t rev) {
        _cleanup_json_ json_object *ix = json_object_new_object();
        json_object *bundles = json_object_new_object(), *e = json_object_new_object();
        _cleanup_free_ char *key = NULL, *text = NULL;
        render_result *res = kill_revs[rev];
        size_t len;
        err_info err;

        assert_int_equal(bundle_object_key("kill", "loop", res->digest, &key), 0);
        assert_int_equal(
                objstore_put_sync(fs, key, res->manifest, res->manifest_len, NULL, NULL, &err), 0);
        json_object_object_add(e, "namespace", json_object_new_string("kill"));
        json_object_object_add(e, "name", json_object_new_string("loop"));
        json_object_object_add(e, "uid", json_object_new_string("k-1"));
        json_object_object_add(e, "revision", json_object_new_int64(rev));
        json_object_object_add(e, "digest", json_object_new_string(res->digest));
        json_object_object_add(e, "key", json_object_new_string(key));
        json_object_object_add(bundles, "kill/loop", e);
        json_object_object_add(ix, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(ix, "kind", json_object_new_string("BundleIndex"));
        json_object_object_add(ix, "bundles", bundles);
        assert_int_equal(jsonx_to_canonical(ix, &text, &len), 0);
        assert_int_equal(objstore_put_sync(fs, "index.json", text, len, NULL, NULL, &err), 0);
}

static pid_t kill_start(const char *dir, const char *storedir, const char *health_addr) {
        char loc[PATH_MAX + 16], cache_arg[PATH_MAX + 32], root[PATH_MAX + 32], log[PATH_MAX + 32],
                health[128];

        snprintf(loc, sizeof(loc), "--object-store=file://%s", storedir);
        snprintf(cache_arg, sizeof(cache_arg), "--cache-dir=%s/cache", dir);
        snprintf(root, sizeof(root), "--root-dir=%s/root", dir);
        snprintf(log, sizeof(log), "%s/agent.log", dir);
        snprintf(health, sizeof(health), "--health-addr=%s", strempty(health_addr));
        char *argv[] = {agent_bin,
                        loc,
                        cache_arg,
                        root,
                        "--node-name=k1",
                        "--poll-interval=100ms",
                        health,
                        "--heartbeat-interval=1h",
                        "--log-level=info",
                        NULL};
        return support_spawn(argv, log);
}

/* After a kill: the cache opens without problems and the root is one whole
 * revision (or nothing yet). Returns the live revision, 0 for none. */
static int64_t kill_check(const char *dir) {
        _cleanup_(cache_freep) cache *c = NULL;
        _cleanup_(manifest_freep) manifest *m = NULL;
        char cdir[PATH_MAX + 16], root[PATH_MAX + 16];
        char *const *problems;
        apply_live live;
        err_info e;
        size_t n;
        int r;

        snprintf(cdir, sizeof(cdir), "%s/cache", dir);
        snprintf(root, sizeof(root), "%s/root", dir);
        err_info_clear(&e);
        r = cache_open(cdir, 0, &c, &e);
        if (r < 0)
                fail_msg("cache_open after kill: %s", e.message);
        n = cache_get_problems(c, &problems);
        if (n > 0)
                fail_msg("cache problems after kill: %s", problems[0]);
        err_info_clear(&e);
        r = apply_current(root, "kill", "loop", &live, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                fail_msg("apply_current after kill: %s", e.message);
        assert_true(live.revision >= 1 && live.revision <= KILL_UPDATES);
        assert_int_equal(manifest_parse(kill_revs[live.revision]->manifest,
                                        kill_revs[live.revision]->manifest_len,
                                        kill_revs[live.revision]->digest, NULL, &m, NULL),
                         0);
        err_info_clear(&e);
        r = apply_verify(root, m, &e);
        if (r < 0)
                fail_msg("root after kill is not exactly revision %" PRIi64 ": %s", live.revision,
                         e.message);
        /* And through the links, as an application reads it. */
        for (size_t i = 0; i < m->n_files; i++) {
                char p[PATH_MAX * 2];
                _cleanup_free_ char *data = NULL;
                size_t len = 0;

                snprintf(p, sizeof(p), "%s/kill/loop/%s", root, m->files[i].path);
                assert_int_equal(fsx_read_file(AT_FDCWD, p, 1 << 20, &data, &len), 0);
                assert_int_equal(len, m->files[i].size);
                assert_memory_equal(data, m->files[i].content, len);
        }
        return live.revision;
}

/* A file:// object store in LOGDIR/@name/store for agents run in
 * LOGDIR/@name; fills @dir and @storedir (PATH_MAX + 32 bytes each). */
static objstore *file_store(const char *name, char *dir, char *storedir) {
        char loc[PATH_MAX + 48];
        objstore *fs = NULL;
        err_info e;

        snprintf(dir, PATH_MAX + 32, "%s/%s", logdir, name);
        snprintf(storedir, PATH_MAX + 32, "%s/store", dir);
        assert_int_equal(support_sh(true, "mkdir -p %s", storedir), 0);
        snprintf(loc, sizeof(loc), "file://%s", storedir);
        err_info_clear(&e);
        if (objstore_open(event, loc, NULL, &fs, &e) < 0)
                fail_msg("%s: %s", loc, e.message);
        return fs;
}

static void test_kill9_during_200_updates(void **state) {
        char dir[PATH_MAX + 32], storedir[PATH_MAX + 32];
        _cleanup_(objstore_freep) objstore *fs = file_store("kill", dir, storedir);
        unsigned kills = 0, next_kill;
        int64_t last = 0, seen;
        pid_t pid;

        for (int64_t r = 1; r <= KILL_UPDATES; r++)
                kill_revs[r] = render_kill(r);

        kill_publish(fs, 1);
        pid = kill_start(dir, storedir, NULL);
        next_kill = 5 + (unsigned) random_u64_below(15);
        for (int64_t r = 2; r <= KILL_UPDATES; r++) {
                kill_publish(fs, r);
                usleep((useconds_t) (10000 + random_u64_below(40000)));
                if ((unsigned) r == next_kill) {
                        /* A random moment: within the next 0-150 ms. */
                        usleep((useconds_t) random_u64_below(150000));
                        support_stop(pid, SIGKILL);
                        kills++;
                        seen = kill_check(dir);
                        /* Never backwards across restarts. */
                        assert_true(seen >= last);
                        last = seen;
                        pid = kill_start(dir, storedir, NULL);
                        next_kill = (unsigned) r + 5 + (unsigned) random_u64_below(25);
                }
        }
        /* Converges on the last revision. */
        {
                uint64_t t0 = support_now_ms();
                _cleanup_free_ char *want = NULL;
                char p[PATH_MAX * 2];

                assert_true(asprintf(&want, "a.conf revision %d %.*s\n", KILL_UPDATES,
                                     KILL_UPDATES % 50,
                                     "..................................................") > 0);
                snprintf(p, sizeof(p), "%s/root/kill/loop/a.conf", dir);
                for (;;) {
                        _cleanup_free_ char *have = NULL;
                        if (fsx_read_file(AT_FDCWD, p, 1 << 20, &have, NULL) >= 0 &&
                            streq(have, want))
                                break;
                        if (support_now_ms() - t0 > 20000) {
                                char lp[PATH_MAX + 48];
                                snprintf(lp, sizeof(lp), "%s/agent.log", dir);
                                support_dump_log(lp, 30);
                                fail_msg("did not converge on revision %d", KILL_UPDATES);
                        }
                        usleep(100 * 1000);
                }
        }
        support_stop(pid, SIGKILL);
        assert_int_equal(kill_check(dir), KILL_UPDATES);
        fprintf(stderr, "%u kills during %d updates; the cache and root were whole each time\n",
                kills, KILL_UPDATES);
        assert_true(kills >= 5);
        for (int64_t r = 1; r <= KILL_UPDATES; r++)
                kill_revs[r] = render_result_free(kill_revs[r]);
}

/* ---- a health port that is taken ---------------------------------------------------- */

static bool file_has(void *userdata) {
        const char *const *x = userdata; /* path, wanted substring */
        _cleanup_free_ char *have = NULL;

        return fsx_read_file(AT_FDCWD, x[0], 1 << 20, &have, NULL) >= 0 && strstr(have, x[1]);
}

static bool health_ready(void *userdata) {
        return http_ok(*(unsigned *) userdata, "/readyz");
}

/* The port is held by someone else when the agent starts: it applies what
 * the object store publishes anyway, and serves its endpoints once the port
 * is free, without a restart. */
static void test_health_port_taken(void **state) {
        char dir[PATH_MAX + 32], storedir[PATH_MAX + 32], conf[PATH_MAX + 64], log[PATH_MAX + 48],
                addr[64];
        _cleanup_(objstore_freep) objstore *fs = file_store("porttaken", dir, storedir);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        unsigned port = support_free_ports(1);
        const char *applied[2], *warned[2];
        pid_t pid;
        int fd;

        kill_revs[1] = render_kill(1);
        kill_publish(fs, 1);

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        sa.sin_port = htons((uint16_t) port);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 1), 0);

        snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
        pid = kill_start(dir, storedir, addr);
        snprintf(conf, sizeof(conf), "%s/root/kill/loop/a.conf", dir);
        applied[0] = conf;
        applied[1] = "a.conf revision 1 ";
        snprintf(log, sizeof(log), "%s/agent.log", dir);
        warned[0] = log;
        warned[1] = "going on without it";
        if (!support_wait_for(file_has, applied, 20000) ||
            !support_wait_for(file_has, warned, 5000)) {
                support_dump_log(log, 30);
                fail_msg("not applied, or no warning, while the health port was taken");
        }
        assert_true(support_alive(pid));
        assert_false(http_ok(port, "/readyz"));

        close(fd);
        if (!support_wait_for(health_ready, &port, 20000)) {
                support_dump_log(log, 30);
                fail_msg("the agent did not listen once port %u was free", port);
        }
        assert_true(http_ok(port, "/healthz"));
        assert_true(support_alive(pid));
        assert_int_equal(support_stop(pid, SIGTERM), 0);
        kill_revs[1] = render_result_free(kill_revs[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_applied_on_matching_nodes_only, restore_cluster),
                cmocka_unit_test_teardown(test_update_arrives_by_watch, restore_cluster),
                cmocka_unit_test_teardown(test_api_server_paused_store_update_arrives,
                                          restore_cluster),
                cmocka_unit_test_teardown(test_both_down_restart_serves_cache, restore_cluster),
                cmocka_unit_test_teardown(test_failing_reload_rolls_back, restore_cluster),
                cmocka_unit_test_teardown(test_kill9_during_200_updates, restore_cluster),
                cmocka_unit_test_teardown(test_health_port_taken, restore_cluster),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
