/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The Kubernetes client against the local control plane (tests/cluster):
 * `source build/cluster/env` first; KUBECONFIG must be set.
 *
 * Everything happens in a namespace of its own, deleted at the end. The
 * outage tests stop, start, pause and resume the API server with
 * tests/cluster/cluster.sh; the 410 test also cuts the watch's connection
 * with a small TCP proxy in this process (so objects can change while the
 * watch is away) and compacts etcd with etcdctl.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "jsonx.h"
#include "kube.h"
#include "loop.h"

static sd_event *event;
static kube_config *config;
static kube_client *client;
static char ns[64];
static char cluster_sh[PATH_MAX];

/* ---- helpers ------------------------------------------------------------ */

static json_object *parse(const char *s) {
        json_object *o = NULL;
        err_info e;

        if (jsonx_parse(s, strlen(s), &o, &e) < 0)
                fail_msg("bad JSON in test: %s: %s", e.message, s);
        return o;
}

static json_object *parsef(const char *fmt, ...) _printf_(1, 2);
static json_object *parsef(const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        assert_true(vasprintf(&s, fmt, ap) >= 0);
        va_end(ap);
        return parse(s);
}

static json_object *configmap(const char *name, const char *label, const char *value) {
        return parsef("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                      "\"namespace\":\"%s\",\"labels\":{\"test\":\"%s\"}},\"data\":{\"v\":\"%s\"}}",
                      name, ns, label, value);
}

static void create_cm(const char *name, const char *label, const char *value) {
        _cleanup_json_ json_object *o = configmap(name, label, value), *out = NULL;
        err_info e;
        int r;

        /* Right after an outage the server may still refuse; retry for a while. */
        for (int i = 0; i < 60; i++) {
                r = kube_create_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, o, &out, &e);
                if (r >= 0 || !err_is_transient(r))
                        break;
                loop_run_until(event, &(bool){false}, 500 * USEC_PER_MSEC);
        }
        if (r < 0)
                fail_msg("create %s: %s: %s", name, err_name(r), e.message);
}

static void delete_cm(const char *name) {
        err_info e;
        int r;

        r = kube_delete_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, name, NULL, &e);
        if (r < 0)
                fail_msg("delete %s: %s: %s", name, err_name(r), e.message);
}

static void cluster(const char *action, const char *component) {
        char cmd[PATH_MAX + 128];

        /* Bounded: a wedged script must fail the test, not hang CI. */
        snprintf(cmd, sizeof(cmd), "timeout 240 bash '%s' %s %s >&2", cluster_sh, action,
                 component);
        fprintf(stderr, "# %s %s\n", action, component);
        if (system(cmd) != 0)
                fail_msg("'%s' failed", cmd);
}

static uint64_t now_usec(void) {
        return loop_now(event);
}

/* Runs the loop until @pred(@userdata) or @timeout passes. */
static bool run_until(bool (*pred)(void *), void *userdata, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (!pred(userdata)) {
                if (now_usec() > deadline)
                        return false;
                assert_true(sd_event_run(event, 50 * USEC_PER_MSEC) >= 0);
        }
        return true;
}

static void run_for(uint64_t usec) {
        bool never = false;

        assert_int_equal(loop_run_until(event, &never, usec), -ETIMEDOUT);
}

/* ---- a recording watch -------------------------------------------------- */

typedef struct recorder {
        char log[256][96];
        size_t n;
        unsigned errors;
        int last_error;
} recorder;

static void rec_log(recorder *rec, const char *what, json_object *obj) {
        if (rec->n >= ELEMENTSOF(rec->log))
                return;
        snprintf(rec->log[rec->n++], sizeof(rec->log[0]), "%s %s=%s", what,
                 strna(jsonx_get_string(obj, "metadata.name")),
                 strna(jsonx_get_string(obj, "data.v")));
}

static void on_add(kube_watch *w, json_object *obj, void *userdata) {
        rec_log(userdata, "add", obj);
}

static void on_update(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata) {
        rec_log(userdata, "update", obj);
}

static void on_delete(kube_watch *w, json_object *obj, void *userdata) {
        rec_log(userdata, "delete", obj);
}

static void on_error(kube_watch *w, int r, const err_info *err, void *userdata) {
        recorder *rec = userdata;

        rec->errors++;
        rec->last_error = r;
        fprintf(stderr, "# watch error: %s: %s\n", err_name(r), err ? err->message : "");
}

/* A watch of the ConfigMaps labelled test=@label; with @streaming, by
 * streaming lists, and a resume splay of @splay_usec. */
static kube_watch *watch_label_with(kube_client *c, const char *label, recorder *rec,
                                    bool streaming, uint64_t splay_usec) {
        char sel[128];
        kube_watch_opts o = {
                .resource = &KUBE_RESOURCE_CONFIGMAPS,
                .namespace = ns,
                .label_selector = sel,
                .backoff_cap_usec = 2 * USEC_PER_SEC, /* keep outage tests short */
                .streaming_list = streaming,
                .resume_splay_usec = splay_usec,
                .on_add = on_add,
                .on_update = on_update,
                .on_delete = on_delete,
                .on_error = on_error,
                .userdata = rec,
        };
        kube_watch *w = NULL;

        snprintf(sel, sizeof(sel), "test=%s", label);
        assert_int_equal(kube_watch_start(c, &o, &w), 0);
        return w;
}

static kube_watch *watch_label(kube_client *c, const char *label, recorder *rec) {
        return watch_label_with(c, label, rec, false, 0);
}

static bool pred_synced(void *w) {
        return kube_watch_is_synced(w);
}

typedef struct has_key {
        kube_watch *w;
        const char *name;
        const char *value; /* NULL: absent */
} has_key;

static bool pred_store(void *userdata) {
        has_key *h = userdata;
        char key[160];
        json_object *o;

        snprintf(key, sizeof(key), "%s/%s", ns, h->name);
        o = kube_store_get(kube_watch_get_store(h->w), key);
        if (!h->value)
                return !o;
        return o && streq(strna(jsonx_get_string(o, "data.v")), h->value);
}

static void wait_store(kube_watch *w, const char *name, const char *value, uint64_t timeout) {
        has_key h = {w, name, value};

        if (!run_until(pred_store, &h, timeout))
                fail_msg("watch store never got %s=%s", name, strna(value));
}

/* ---- setup -------------------------------------------------------------- */

static int group_setup(void **state) {
        _cleanup_json_ json_object *nso = NULL, *out = NULL;
        const char *kc = getenv("KUBECONFIG");
        struct timespec ts;
        err_info e;
        int r;

        if (isempty(kc)) {
                fprintf(stderr, "KUBECONFIG is not set: run `source build/cluster/env` after "
                                "`bash tests/cluster/cluster.sh up`\n");
                return -1;
        }
        if (getenv("BALLAST_CLUSTER_SH")) /* another script with the same interface */
                snprintf(cluster_sh, sizeof(cluster_sh), "%s", getenv("BALLAST_CLUSTER_SH"));
        else if (access("tests/cluster/cluster.sh", R_OK) == 0)
                snprintf(cluster_sh, sizeof(cluster_sh), "tests/cluster/cluster.sh");
        else if (getenv("BALLAST_CLUSTER_DIR"))
                snprintf(cluster_sh, sizeof(cluster_sh), "%s/../../tests/cluster/cluster.sh",
                         getenv("BALLAST_CLUSTER_DIR"));
        if (access(cluster_sh, R_OK) < 0) {
                fprintf(stderr, "cannot find tests/cluster/cluster.sh (run from the repo)\n");
                return -1;
        }

        assert_int_equal(sd_event_new(&event), 0);
        r = kube_config_load_kubeconfig(kc, NULL, &config, &e);
        if (r < 0) {
                fprintf(stderr, "%s\n", e.message);
                return -1;
        }
        assert_int_equal(kube_client_new(event, config, NULL, &client), 0);

        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(ns, sizeof(ns), "kube-it-%d-%ld", (int) getpid(), (long) (ts.tv_nsec % 100000));
        nso = parsef(
                "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}",
                ns);
        r = kube_create_object_sync(client, &KUBE_RESOURCE_NAMESPACES, NULL, nso, &out, &e);
        if (r < 0) {
                fprintf(stderr, "cannot create namespace %s: %s: %s\n", ns, err_name(r), e.message);
                return -1;
        }
        return 0;
}

static int group_teardown(void **state) {
        err_info e;

        if (client)
                (void) kube_delete_object_sync(client, &KUBE_RESOURCE_NAMESPACES, NULL, ns, NULL,
                                               &e);
        client = kube_client_free(client);
        config = kube_config_free(config);
        event = sd_event_unref(event);
        return 0;
}

/* ---- CRUD ----------------------------------------------------------------- */

static void test_configmap_crud(void **state) {
        _cleanup_json_ json_object *cm = configmap("crud", "crud", "1"), *created = NULL,
                                   *got = NULL, *updated = NULL, *patched = NULL, *applied = NULL,
                                   *dup = NULL, *stale = NULL;
        _cleanup_free_ char *uid = NULL;
        const char *merge = "{\"data\":{\"m\":\"x\"}}";
        kube_patch_opts po = {.field_manager = "ballast-test"};
        kube_delete_opts dopts = {};
        json_object *mf;
        bool found = false;
        err_info e;
        int r;

        assert_int_equal(
                kube_create_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, cm, &created, &e),
                0);
        assert_non_null(jsonx_get_string(created, "metadata.uid"));
        uid = strdup(jsonx_get_string(created, "metadata.uid"));

        /* Creating it again: -EEXIST, reason AlreadyExists. */
        assert_int_equal(
                kube_create_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, cm, &dup, &e),
                -EEXIST);
        assert_string_equal(e.reason, "AlreadyExists");

        assert_int_equal(
                kube_get_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "crud", NULL, &got, &e),
                0);
        assert_string_equal(jsonx_get_string(got, "data.v"), "1");

        /* Update with the current resourceVersion. */
        json_object_object_add(jsonx_get(got, "data"), "v", json_object_new_string("2"));
        assert_int_equal(kube_update_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, got, NULL,
                                                 &updated, &e),
                         0);
        assert_string_equal(jsonx_get_string(updated, "data.v"), "2");
        assert_string_not_equal(jsonx_get_string(updated, "metadata.resourceVersion"),
                                jsonx_get_string(got, "metadata.resourceVersion"));

        /* The same update again is stale now. */
        json_object_object_add(jsonx_get(got, "data"), "v", json_object_new_string("3"));
        r = kube_update_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, got, NULL, &stale, &e);
        assert_int_equal(r, -ESTALE);
        assert_string_equal(e.reason, "Conflict");
        assert_int_equal(e.http_status, 409);
        assert_non_null(strstr(e.message, "modified"));

        /* Merge patch. */
        assert_int_equal(kube_patch_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "crud", NULL,
                                                KUBE_PATCH_MERGE, merge, strlen(merge), &po,
                                                &patched, &e),
                         0);
        assert_string_equal(jsonx_get_string(patched, "data.m"), "x");
        assert_string_equal(jsonx_get_string(patched, "data.v"), "2");

        /* Server-side apply as a field manager of our own; force takes the
         * field over from the previous writers. */
        {
                _cleanup_json_ json_object *a = parsef(
                        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                        "\"crud\",\"namespace\":\"%s\"},\"data\":{\"v\":\"applied\"}}",
                        ns);

                assert_int_equal(kube_apply_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, a,
                                                        NULL, "ballast-applier", true, &applied,
                                                        &e),
                                 0);
        }
        assert_string_equal(jsonx_get_string(applied, "data.v"), "applied");
        mf = jsonx_get(applied, "metadata.managedFields");
        assert_non_null(mf);
        for (size_t i = 0; i < json_object_array_length(mf); i++) {
                json_object *m = json_object_array_get_idx(mf, i);

                if (streq(strna(jsonx_get_string(m, "manager")), "ballast-applier") &&
                    streq(strna(jsonx_get_string(m, "operation")), "Apply"))
                        found = true;
        }
        assert_true(found);

        /* Delete with a wrong uid precondition: refused; with the right one:
         * gone. */
        dopts.uid = "00000000-0000-0000-0000-000000000000";
        assert_int_equal(
                kube_delete_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "crud", &dopts, &e),
                -ESTALE);
        dopts.uid = uid;
        dopts.resource_version = jsonx_get_string(applied, "metadata.resourceVersion");
        assert_int_equal(
                kube_delete_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "crud", &dopts, &e),
                0);
        {
                json_object *none = NULL;

                assert_int_equal(kube_get_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "crud",
                                                      NULL, &none, &e),
                                 -ENOENT);
                assert_null(none);
                assert_string_equal(e.reason, "NotFound");
        }
}

static void test_status_subresource_and_lease(void **state) {
        _cleanup_json_ json_object *st = NULL, *st2 = NULL, *lease = NULL, *created = NULL,
                                   *got = NULL, *renewed = NULL, *stale = NULL, *sp = NULL;
        const char *phase = "{\"status\":{\"phase\":\"Active\"}}";
        err_info e;

        /* The namespace's status subresource: get, update, patch. */
        assert_int_equal(kube_get_object_sync(client, &KUBE_RESOURCE_NAMESPACES, NULL, ns, "status",
                                              &st, &e),
                         0);
        assert_string_equal(jsonx_get_string(st, "status.phase"), "Active");
        assert_int_equal(kube_update_object_sync(client, &KUBE_RESOURCE_NAMESPACES, NULL, st,
                                                 "status", &st2, &e),
                         0);
        assert_int_equal(kube_patch_object_sync(client, &KUBE_RESOURCE_NAMESPACES, NULL, ns,
                                                "status", KUBE_PATCH_MERGE, phase, strlen(phase),
                                                NULL, &sp, &e),
                         0);

        /* A Lease, as leader election uses it. */
        lease = parsef("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":"
                       "{\"name\":\"leader\",\"namespace\":\"%s\"},\"spec\":{\"holderIdentity\":"
                       "\"a\",\"leaseDurationSeconds\":15}}",
                       ns);
        assert_int_equal(
                kube_create_object_sync(client, &KUBE_RESOURCE_LEASES, NULL, lease, &created, &e),
                0);
        assert_int_equal(
                kube_get_object_sync(client, &KUBE_RESOURCE_LEASES, ns, "leader", NULL, &got, &e),
                0);
        assert_string_equal(jsonx_get_string(got, "spec.holderIdentity"), "a");
        json_object_object_add(jsonx_get(got, "spec"), "renewTime",
                               json_object_new_string("2026-01-01T00:00:00.000000Z"));
        assert_int_equal(kube_update_object_sync(client, &KUBE_RESOURCE_LEASES, NULL, got, NULL,
                                                 &renewed, &e),
                         0);
        /* A second candidate with the old resourceVersion loses. */
        json_object_object_add(jsonx_get(got, "spec"), "holderIdentity",
                               json_object_new_string("b"));
        assert_int_equal(
                kube_update_object_sync(client, &KUBE_RESOURCE_LEASES, NULL, got, NULL, &stale, &e),
                -ESTALE);
}

static void test_list_pagination(void **state) {
        _cleanup_json_ json_object *list = NULL;
        kube_list_opts lo = {.label_selector = "test=page", .limit = 3};
        kube_client_stats before, after;
        json_object *items;
        err_info e;
        char name[32];

        for (int i = 0; i < 8; i++) {
                snprintf(name, sizeof(name), "page-%d", i);
                create_cm(name, "page", "p");
        }
        kube_client_get_stats(client, &before);
        assert_int_equal(
                kube_list_objects_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, &lo, &list, &e), 0);
        kube_client_get_stats(client, &after);
        items = jsonx_get(list, "items");
        assert_int_equal(json_object_array_length(items), 8);
        /* 8 objects in pages of 3: three requests. */
        assert_int_equal(after.requests - before.requests, 3);
        assert_non_null(jsonx_get_string(list, "metadata.resourceVersion"));
        assert_string_equal(jsonx_get_string(json_object_array_get_idx(items, 0), "kind"),
                            "ConfigMap");
}

/* ---- watches ----------------------------------------------------------------- */

static bool pred_log_len(void *userdata) {
        recorder *rec = ((void **) userdata)[0];
        size_t want = (size_t) (uintptr_t) ((void **) userdata)[1];

        return rec->n >= want;
}

static void test_watch_in_order(void **state) {
        recorder rec = {};
        kube_watch *w;
        void *args[2] = {&rec, (void *) (uintptr_t) 5};
        _cleanup_json_ json_object *got = NULL, *out = NULL;
        err_info e;

        create_cm("order-0", "order", "0");
        w = watch_label(client, "order", &rec);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));
        assert_int_equal(rec.n, 1);
        assert_string_equal(rec.log[0], "add order-0=0");

        create_cm("order-a", "order", "1");
        assert_int_equal(kube_get_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "order-a",
                                              NULL, &got, &e),
                         0);
        json_object_object_add(jsonx_get(got, "data"), "v", json_object_new_string("2"));
        assert_int_equal(kube_update_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, got, NULL,
                                                 &out, &e),
                         0);
        create_cm("order-b", "order", "3");
        delete_cm("order-a");
        /* Not ours: another label. */
        create_cm("other", "not-order", "x");

        if (!run_until(pred_log_len, args, 30 * USEC_PER_SEC))
                fail_msg("only %zu events", rec.n);
        run_for(200 * USEC_PER_MSEC);
        assert_int_equal(rec.n, 5);
        assert_string_equal(rec.log[1], "add order-a=1");
        assert_string_equal(rec.log[2], "update order-a=2");
        assert_string_equal(rec.log[3], "add order-b=3");
        assert_string_equal(rec.log[4], "delete order-a=2");
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        kube_watch_free(w);
}

static void test_watch_survives_stop_start(void **state) {
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        w = watch_label(client, "restart", &rec);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));

        cluster("stop", "apiserver");
        run_for(3 * USEC_PER_SEC); /* the watch notices and retries meanwhile */
        cluster("start", "apiserver");

        create_cm("after-restart", "restart", "1");
        wait_store(w, "after-restart", "1", 60 * USEC_PER_SEC);
        kube_watch_get_stats(w, &s);
        assert_true(s.failures >= 1);
        assert_true(s.watches >= 2);
        assert_true(rec.errors >= 1);
        kube_watch_free(w);
}

/* The local control plane (v1.36) has the WatchList gate on: one request
 * lists and watches. */
static void test_watch_streaming_list(void **state) {
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        create_cm("stream-a", "stream", "1");
        create_cm("stream-b", "stream", "2");
        create_cm("stream-other", "not-stream", "x");
        w = watch_label_with(client, "stream", &rec, true, 0);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        assert_int_equal(rec.n, 2);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.streaming_lists, 1);
        assert_int_equal(s.lists, 1);
        assert_int_equal(s.watches, 1);
        assert_int_equal(rec.errors, 0);
        assert_false(isempty(kube_watch_get_resource_version(w)));

        /* The same request goes on as the watch. */
        create_cm("stream-c", "stream", "3");
        delete_cm("stream-a");
        wait_store(w, "stream-c", "3", 30 * USEC_PER_SEC);
        wait_store(w, "stream-a", NULL, 30 * USEC_PER_SEC);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.watches, 1);
        assert_int_equal(s.lists, 1);
        kube_watch_free(w);
}

/* After a restart, a streaming list from the last resourceVersion: no 410
 * from the new watch cache, and what changed since arrives. */
static void test_watch_streaming_resume_after_restart(void **state) {
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        create_cm("resume-a", "resume", "1");
        w = watch_label_with(client, "resume", &rec, true, 3 * USEC_PER_SEC);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));

        cluster("stop", "apiserver");
        run_for(3 * USEC_PER_SEC);
        cluster("start", "apiserver");

        create_cm("resume-b", "resume", "2");
        wait_store(w, "resume-b", "2", 60 * USEC_PER_SEC);
        kube_watch_get_stats(w, &s);
        assert_true(s.outages >= 1);
        assert_int_equal(s.relists_gone, 0);
        assert_true(s.streaming_lists >= 2);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        kube_watch_free(w);
}

static void test_watch_survives_pause_resume(void **state) {
        recorder rec = {};
        kube_watch *w;

        w = watch_label(client, "pause", &rec);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));
        create_cm("before-pause", "pause", "1");
        wait_store(w, "before-pause", "1", 30 * USEC_PER_SEC);

        cluster("pause", "apiserver");
        run_for(3 * USEC_PER_SEC);
        cluster("resume", "apiserver");

        create_cm("after-pause", "pause", "2");
        wait_store(w, "after-pause", "2", 60 * USEC_PER_SEC);
        kube_watch_free(w);
}

/* ---- a TCP proxy that can cut its connections ---------------------------------- */

typedef struct relay relay;
typedef struct proxy {
        int listen_fd;
        uint16_t port;
        uint16_t upstream_port;
        sd_event_source *listen_src;
        relay *relays;
} proxy;

struct relay {
        proxy *p;
        relay *next;
        int fd[2]; /* 0: client side, 1: upstream */
        sd_event_source *src[2];
        char buf[2][65536]; /* buf[i]: read from fd[i], to be written to fd[!i] */
        size_t len[2], off[2];
};

static void relay_close(relay *r) {
        relay **pp;

        for (pp = &r->p->relays; *pp; pp = &(*pp)->next)
                if (*pp == r) {
                        *pp = r->next;
                        break;
                }
        for (int i = 0; i < 2; i++) {
                sd_event_source_disable_unref(r->src[i]);
                safe_close(r->fd[i]);
        }
        free(r);
}

static void relay_update(relay *r) {
        for (int i = 0; i < 2; i++) {
                uint32_t ev = 0;

                if (r->len[i] == 0)
                        ev |= EPOLLIN; /* room to read */
                if (r->len[!i] > r->off[!i])
                        ev |= EPOLLOUT; /* data for this side */
                (void) sd_event_source_set_io_events(r->src[i], ev);
        }
}

static int on_relay_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        relay *r = userdata;
        int i = fd == r->fd[0] ? 0 : 1;

        if ((revents & EPOLLOUT) && r->len[!i] > r->off[!i]) {
                ssize_t n = write(fd, r->buf[!i] + r->off[!i], r->len[!i] - r->off[!i]);

                if (n < 0 && errno != EAGAIN) {
                        relay_close(r);
                        return 0;
                }
                if (n > 0)
                        r->off[!i] += (size_t) n;
                if (r->off[!i] == r->len[!i])
                        r->off[!i] = r->len[!i] = 0;
        }
        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && r->len[i] == 0) {
                ssize_t n = read(fd, r->buf[i], sizeof(r->buf[i]));

                if (n == 0 || (n < 0 && errno != EAGAIN)) {
                        relay_close(r);
                        return 0;
                }
                if (n > 0) {
                        ssize_t w = write(r->fd[!i], r->buf[i], (size_t) n);

                        if (w < 0 && errno != EAGAIN) {
                                relay_close(r);
                                return 0;
                        }
                        if (w < n) {
                                r->len[i] = (size_t) n;
                                r->off[i] = w > 0 ? (size_t) w : 0;
                        }
                }
        }
        relay_update(r);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        proxy *p = userdata;
        struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(p->upstream_port)};
        relay *r;
        int c;

        c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
                return 0;
        r = calloc(1, sizeof(*r));
        assert_non_null(r);
        r->p = p;
        r->fd[0] = c;
        r->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        /* Blocking connect: loopback answers at once (or refuses). */
        if (r->fd[1] < 0 || connect(r->fd[1], (struct sockaddr *) &up, sizeof(up)) < 0) {
                safe_close(r->fd[1]);
                safe_close(c);
                free(r);
                return 0;
        }
        (void) fcntl(r->fd[1], F_SETFL, O_NONBLOCK);
        r->next = p->relays;
        p->relays = r;
        for (int i = 0; i < 2; i++)
                assert_int_equal(
                        sd_event_add_io(event, &r->src[i], r->fd[i], EPOLLIN, on_relay_io, r), 0);
        return 0;
}

static void proxy_listen(proxy *p) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p->port)};
        socklen_t al = sizeof(a);
        int one = 1;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(p->listen_fd >= 0);
        assert_int_equal(setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
        assert_int_equal(bind(p->listen_fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(p->listen_fd, 16), 0);
        assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *) &a, &al), 0);
        p->port = ntohs(a.sin_port);
        assert_int_equal(
                sd_event_add_io(event, &p->listen_src, p->listen_fd, EPOLLIN, on_accept, p), 0);
}

/* Cuts every connection and refuses new ones until proxy_listen(). */
static void proxy_cut(proxy *p) {
        while (p->relays)
                relay_close(p->relays);
        p->listen_src = sd_event_source_disable_unref(p->listen_src);
        p->listen_fd = safe_close(p->listen_fd);
}

static void proxy_free(proxy *p) {
        proxy_cut(p);
        free(p);
}

static uint16_t server_port(const char *server) {
        const char *c = strrchr(server, ':');

        assert_non_null(c);
        return (uint16_t) atoi(c + 1);
}

typedef struct gone_state {
        kube_watch *w;
        recorder *rec;
} gone_state;

static bool pred_relisted(void *userdata) {
        gone_state *g = userdata;
        kube_watch_stats s;
        char k1[128], k2[128], k3[128];
        kube_store *st = kube_watch_get_store(g->w);

        kube_watch_get_stats(g->w, &s);
        snprintf(k1, sizeof(k1), "%s/gone-1", ns);
        snprintf(k2, sizeof(k2), "%s/gone-2", ns);
        snprintf(k3, sizeof(k3), "%s/gone-3", ns);
        return s.relists_gone >= 1 && !kube_store_get(st, k1) && kube_store_get(st, k2) &&
               kube_store_get(st, k3);
}

static void test_watch_relists_after_compaction(void **state) {
        _cleanup_(kube_client_freep) kube_client *via_proxy = NULL;
        _cleanup_json_ json_object *list = NULL, *o2 = NULL, *out = NULL;
        kube_config cfg = *config;
        char server[64], cmd[PATH_MAX + 256];
        const char *etcd = getenv("BALLAST_ETCD_ENDPOINT"), *bindir = getenv("BALLAST_BINDIR");
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;
        gone_state g;
        proxy *p;
        const char *rv;
        bool deleted_seen = false;
        err_info e;

        if (isempty(etcd) || isempty(bindir))
                fail_msg("BALLAST_ETCD_ENDPOINT and BALLAST_BINDIR must be set");

        p = calloc(1, sizeof(*p));
        assert_non_null(p);
        p->upstream_port = server_port(config->server);
        proxy_listen(p);
        snprintf(server, sizeof(server), "https://127.0.0.1:%u", p->port);
        cfg.server = server;
        assert_int_equal(kube_client_new(event, &cfg, NULL, &via_proxy), 0);

        create_cm("gone-1", "gone", "1");
        create_cm("gone-2", "gone", "2");
        w = watch_label(via_proxy, "gone", &rec);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);

        /* The watch loses its connection and can't come back for now. */
        proxy_cut(p);
        run_for(500 * USEC_PER_MSEC);

        /* Meanwhile: one object goes, one comes, one changes. */
        delete_cm("gone-1");
        create_cm("gone-3", "gone", "3");
        assert_int_equal(kube_get_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, "gone-2", NULL,
                                              &o2, &e),
                         0);
        json_object_object_add(jsonx_get(o2, "data"), "v", json_object_new_string("22"));
        assert_int_equal(kube_update_object_sync(client, &KUBE_RESOURCE_CONFIGMAPS, NULL, o2, NULL,
                                                 &out, &e),
                         0);

        /* Compact etcd up to now: the watch's resourceVersion is history. */
        assert_int_equal(
                kube_list_objects_sync(client, &KUBE_RESOURCE_CONFIGMAPS, ns, NULL, &list, &e), 0);
        rv = jsonx_get_string(list, "metadata.resourceVersion");
        assert_non_null(rv);
        snprintf(cmd, sizeof(cmd), "'%s/etcdctl' --endpoints='%s' compact %s >&2", bindir, etcd,
                 rv);
        fprintf(stderr, "# %s\n", cmd);
        assert_int_equal(system(cmd), 0);
        /* A fresh watch cache, so the old RV can't be served from memory. */
        cluster("stop", "apiserver");
        cluster("start", "apiserver");

        proxy_listen(p);
        g = (gone_state){w, &rec};
        if (!run_until(pred_relisted, &g, 90 * USEC_PER_SEC)) {
                kube_watch_get_stats(w, &s);
                fail_msg("no relist: relists_gone=%" PRIu64 " store=%zu rv=%s", s.relists_gone,
                         kube_store_count(kube_watch_get_store(w)),
                         kube_watch_get_resource_version(w));
        }
        kube_watch_get_stats(w, &s);
        assert_true(s.relists_gone >= 1);
        assert_true(s.lists >= 2);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        for (size_t i = 0; i < rec.n; i++)
                if (streq(rec.log[i], "delete gone-1=1"))
                        deleted_seen = true;
        assert_true(deleted_seen);
        {
                char k[128];

                snprintf(k, sizeof(k), "%s/gone-2", ns);
                assert_string_equal(
                        jsonx_get_string(kube_store_get(kube_watch_get_store(w), k), "data.v"),
                        "22");
        }
        kube_watch_free(w);
        via_proxy = kube_client_free(via_proxy);
        proxy_free(p);
}

/* ---- ServiceAccount token + RBAC ------------------------------------------------- */

static void test_serviceaccount_token_rbac(void **state) {
        _cleanup_json_ json_object *sa = NULL, *role = NULL, *rb = NULL, *tr = NULL, *tok = NULL,
                                   *o1 = NULL, *o2 = NULL, *o3 = NULL, *list = NULL, *cm = NULL,
                                   *denied = NULL;
        _cleanup_(kube_client_freep) kube_client *reader = NULL;
        kube_config cfg = {};
        kube_watch *w;
        recorder rec = {};
        err_info e;
        int r = 0;

        sa = parsef("{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":"
                    "\"reader\",\"namespace\":\"%s\"}}",
                    ns);
        assert_int_equal(
                kube_create_object_sync(client, &KUBE_RESOURCE_SERVICEACCOUNTS, NULL, sa, &o1, &e),
                0);
        role = parsef("{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\","
                      "\"metadata\":{\"name\":\"cm-reader\",\"namespace\":\"%s\"},\"rules\":[{"
                      "\"apiGroups\":[\"\"],\"resources\":[\"configmaps\"],\"verbs\":[\"get\","
                      "\"list\",\"watch\"]}]}",
                      ns);
        assert_int_equal(kube_create_object_sync(client, &KUBE_RESOURCE_ROLES, NULL, role, &o2, &e),
                         0);
        rb = parsef("{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\","
                    "\"metadata\":{\"name\":\"cm-reader\",\"namespace\":\"%s\"},\"roleRef\":{"
                    "\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":"
                    "\"cm-reader\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":"
                    "\"reader\",\"namespace\":\"%s\"}]}",
                    ns, ns);
        assert_int_equal(
                kube_create_object_sync(client, &KUBE_RESOURCE_ROLEBINDINGS, NULL, rb, &o3, &e), 0);

        /* TokenRequest: POST serviceaccounts/reader/token. */
        {
                const char *body = "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":"
                                   "\"TokenRequest\",\"spec\":{\"expirationSeconds\":600}}";
                kube_call call = {
                        .method = "POST",
                        .resource = &KUBE_RESOURCE_SERVICEACCOUNTS,
                        .namespace = ns,
                        .name = "reader",
                        .subresource = "token",
                        .body = body,
                        .body_len = strlen(body),
                };

                r = kube_call_run(client, &call, &tok, &e);
                if (r < 0)
                        fail_msg("TokenRequest: %s: %s", err_name(r), e.message);
        }
        assert_non_null(jsonx_get_string(tok, "status.token"));

        cfg.server = config->server;
        cfg.ca_file = config->ca_file ?: getenv("BALLAST_CA_FILE");
        cfg.ca_pem = config->ca_pem;
        cfg.token = (char *) jsonx_get_string(tok, "status.token");
        cfg.namespace = ns;
        assert_int_equal(kube_client_new(event, &cfg, NULL, &reader), 0);

        create_cm("readable", "rbac", "1");
        /* RBAC reaches the authorizer's cache within moments. */
        for (int i = 0; i < 40; i++) {
                r = kube_list_objects_sync(reader, &KUBE_RESOURCE_CONFIGMAPS, ns, NULL, &list, &e);
                if (r != -EACCES)
                        break;
                run_for(250 * USEC_PER_MSEC);
        }
        if (r < 0)
                fail_msg("list as the ServiceAccount: %s: %s", err_name(r), e.message);
        assert_true(json_object_array_length(jsonx_get(list, "items")) >= 1);

        /* Watching works too. */
        w = watch_label(reader, "rbac", &rec);
        assert_true(run_until(pred_synced, w, 30 * USEC_PER_SEC));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 1);
        kube_watch_free(w);

        /* Creating is not allowed. */
        cm = configmap("forbidden", "rbac", "x");
        r = kube_create_object_sync(reader, &KUBE_RESOURCE_CONFIGMAPS, NULL, cm, &denied, &e);
        assert_int_equal(r, -EACCES);
        assert_int_equal(e.http_status, 403);
        assert_string_equal(e.reason, "Forbidden");
        assert_non_null(strstr(e.message, "forbidden"));
        assert_null(denied);

        /* Nor is reading elsewhere. */
        {
                json_object *none = NULL;

                r = kube_list_objects_sync(reader, &KUBE_RESOURCE_CONFIGMAPS, "kube-system", NULL,
                                           &none, &e);
                assert_int_equal(r, -EACCES);
        }
}

static void test_bad_token_is_eacces(void **state) {
        _cleanup_(kube_client_freep) kube_client *bad = NULL;
        kube_config cfg = {};
        json_object *none = NULL;
        err_info e;

        cfg.server = config->server;
        cfg.ca_file = config->ca_file ?: getenv("BALLAST_CA_FILE");
        cfg.ca_pem = config->ca_pem;
        cfg.token = (char *) "not-a-valid-token";
        assert_int_equal(kube_client_new(event, &cfg, NULL, &bad), 0);
        assert_int_equal(
                kube_list_objects_sync(bad, &KUBE_RESOURCE_CONFIGMAPS, ns, NULL, &none, &e),
                -EACCES);
        assert_int_equal(e.http_status, 401);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_configmap_crud),
                cmocka_unit_test(test_status_subresource_and_lease),
                cmocka_unit_test(test_list_pagination),
                cmocka_unit_test(test_watch_in_order),
                cmocka_unit_test(test_watch_streaming_list),
                cmocka_unit_test(test_serviceaccount_token_rbac),
                cmocka_unit_test(test_bad_token_is_eacces),
                cmocka_unit_test(test_watch_survives_pause_resume),
                cmocka_unit_test(test_watch_survives_stop_start),
                cmocka_unit_test(test_watch_streaming_resume_after_restart),
                cmocka_unit_test(test_watch_relists_after_compaction),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
