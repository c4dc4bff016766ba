/* SPDX-License-Identifier: Apache-2.0 */
/* The engine: revision choice across sources, the cache's floor, verification
 * failures, selection by node labels and removal, the apply -> reload ->
 * rollback sequence with real (tiny) reload scripts, start-up repair; and the
 * object-store poller: splay and backoff bounds, 304s, fetch-once per digest,
 * against the file backend. */

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "apply.h"
#include "cache.h"
#include "config.h"
#include "engine.h"
#include "fetch.h"
#include "fsx.h"
#include "jsonx.h"
#include "loop.h"
#include "metrics.h"
#include "objstore.h"
#include "publish.h"
#include "render.h"
#include "report.h"

static char dir[64], cache_dir[96], root[96], marker[96], failflag[96];
static sd_event *event;
static cache *c;
static agent_config *cfg;
static reload_ctx *rctx;
static engine *eng;

/* Fetch requests the engine made, answered by the test. */
typedef struct fetch_req {
        char key[256], digest[BUNDLE_DIGEST_SIZE];
} fetch_req;
static fetch_req reqs[32];
static unsigned n_reqs;

static int fake_fetch(engine *e, const char *bundle_key, const char *object_key, const char *digest,
                      void *userdata) {
        assert_true(n_reqs < ELEMENTSOF(reqs));
        snprintf(reqs[n_reqs].key, sizeof(reqs[n_reqs].key), "%s", object_key);
        snprintf(reqs[n_reqs].digest, sizeof(reqs[n_reqs].digest), "%s", digest);
        n_reqs++;
        return 0;
}

static void script(const char *name, const char *body) {
        char p[160];
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dir, name);
        f = fopen(p, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s\n", body);
        fclose(f);
        assert_int_equal(chmod(p, 0755), 0);
}

static void make_engine(void) {
        engine_opts o = {
                .event = event,
                .cache = c,
                .config = cfg,
                .root_dir = root,
                .reload = rctx,
                .fetch = fake_fetch,
                .retry_base_usec = 50 * USEC_PER_MSEC,
                .retry_cap_usec = 200 * USEC_PER_MSEC,
        };
        assert_int_equal(engine_new(&o, &eng), 0);
}

static void open_cache(void) {
        err_info e;

        err_info_clear(&e);
        if (cache_open(cache_dir, 3, &c, &e) < 0)
                fail_msg("cache: %s", e.message);
}

static int setup(void **state) {
        char yaml[2048], body[512];
        sigset_t mask;
        err_info e;

        snprintf(dir, sizeof(dir), "/tmp/ballast-engine-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(cache_dir, sizeof(cache_dir), "%s/cache", dir);
        snprintf(root, sizeof(root), "%s/root", dir);
        snprintf(marker, sizeof(marker), "%s/marker", dir);
        snprintf(failflag, sizeof(failflag), "%s/fail", dir);
        /* The reload records what was live when it ran; it fails while the
         * flag file exists. */
        snprintf(body, sizeof(body),
                 "echo \"$(cat %s/prod/web/app.conf 2>/dev/null || echo none)\" >> %s\n"
                 "test ! -e %s",
                 root, marker, failflag);
        script("reload", body);
        script("check", "! grep -q BAD \"$1/app.conf\"");
        snprintf(yaml, sizeof(yaml),
                 "reloadActions:\n"
                 "  app:\n"
                 "    command: [%s/reload]\n"
                 "    timeout: 5s\n"
                 "  checked:\n"
                 "    command: [%s/reload]\n"
                 "    check: [%s/check, \"{staged}\"]\n"
                 "  slow:\n"
                 "    command: [/bin/sleep, \"10\"]\n"
                 "    timeout: 200ms\n",
                 dir, dir, dir);
        err_info_clear(&e);
        if (config_parse(yaml, strlen(yaml), "t.yaml", &cfg, &e) < 0)
                fail_msg("config: %s", e.message);
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        assert_int_equal(sigprocmask(SIG_BLOCK, &mask, NULL), 0);
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(reload_ctx_new(event, NULL, &rctx), 0);
        open_cache();
        make_engine();
        n_reqs = 0;
        return 0;
}

static int teardown(void **state) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        eng = engine_free(eng);
        c = cache_free(c);
        rctx = reload_ctx_free(rctx);
        cfg = config_free(cfg);
        event = sd_event_unref(event);
        metrics_reset();
        assert_int_equal(fsx_rm_rf_at(tmp, dir + 5), 0);
        return 0;
}

/* A rendered manifest of prod/web (uid u-1 unless given) at @rev. */
static render_result *mk(const char *uid, int64_t rev, const char *content, const char *reload) {
        render_identity id = {.namespace = "prod", .name = "web", .uid = uid ?: "u-1"};
        _cleanup_json_ json_object *spec = json_object_new_object();
        json_object *files = json_object_new_array(), *f = json_object_new_object();
        render_result *res = NULL;
        err_info e;

        json_object_object_add(f, "path", json_object_new_string("app.conf"));
        json_object_object_add(f, "content", json_object_new_string(content));
        json_object_array_add(files, f);
        json_object_object_add(spec, "files", files);
        if (reload)
                json_object_object_add(spec, "reload", json_object_new_string(reload));
        err_info_clear(&e);
        if (render_bundle(spec, &id, rev, &res, &e) < 0)
                fail_msg("render: %s", e.message);
        return res;
}

/* An index entry for @res; inline when @with_bytes (a ConfigMap), else only
 * the object key (index.json). */
static json_object *entry(const render_result *res, const char *uid, int64_t rev,
                          const char *selector, bool with_bytes) {
        json_object *o = json_object_new_object();
        _cleanup_free_ char *key = NULL;

        assert_int_equal(bundle_object_key("prod", "web", res->digest, &key), 0);
        json_object_object_add(o, "namespace", json_object_new_string("prod"));
        json_object_object_add(o, "name", json_object_new_string("web"));
        json_object_object_add(o, "uid", json_object_new_string(uid ?: "u-1"));
        json_object_object_add(o, "revision", json_object_new_int64(rev));
        json_object_object_add(o, "digest", json_object_new_string(res->digest));
        json_object_object_add(o, "key", json_object_new_string(key));
        if (selector) {
                json_object *s = NULL;
                assert_int_equal(jsonx_parse(selector, strlen(selector), &s, NULL), 0);
                json_object_object_add(o, "nodeSelector", s);
        }
        if (with_bytes)
                json_object_object_add(
                        o, "manifest",
                        json_object_new_string_len(res->manifest, (int) res->manifest_len));
        return o;
}

static void set_view(engine_source s, json_object *e) {
        _cleanup_json_ json_object *v = json_object_new_object();

        if (e)
                json_object_object_add(v, "prod/web", e);
        assert_int_equal(engine_set_view(eng, s, v), 0);
}

static void set_labels(const char *json) {
        _cleanup_json_ json_object *l = NULL;

        if (json)
                assert_int_equal(jsonx_parse(json, strlen(json), &l, NULL), 0);
        assert_int_equal(engine_set_labels(eng, l), 0);
}

/* Runs the loop until the engine has nothing left to do. */
static void settle(void) {
        uint64_t end = loop_now(NULL) + 15 * USEC_PER_SEC;
        unsigned idle = 0;

        while (idle < 3) {
                assert_true(loop_now(NULL) < end);
                assert_true(sd_event_run(event, 20 * USEC_PER_MSEC) >= 0);
                idle = engine_is_idle(eng) ? idle + 1 : 0;
        }
}

static char *live(void) {
        char p[160];
        char *data = NULL;

        snprintf(p, sizeof(p), "%s/prod/web/app.conf", root);
        if (fsx_read_file(AT_FDCWD, p, 1 << 20, &data, NULL) < 0)
                return NULL;
        return data;
}

static void assert_live(const char *want) {
        _cleanup_free_ char *have = live();

        if (!want) {
                if (have)
                        fail_msg("expected no live files, have '%s'", have);
                return;
        }
        if (!have || !streq(have, want))
                fail_msg("live app.conf: want '%s', have '%s'", want, strna(have));
}

static char *read_marker(void) {
        char *data = NULL;

        if (fsx_read_file(AT_FDCWD, marker, 1 << 20, &data, NULL) < 0)
                return strdup("");
        return data;
}

static void assert_marker(const char *want) {
        _cleanup_free_ char *have = read_marker();

        if (!streq(have, want))
                fail_msg("reload log: want '%s', have '%s'", want, have);
}

static const cache_bundle *cached(void) {
        return cache_get_bundle(c, "prod", "web");
}

static void answer(unsigned i, const render_result *res, bool tamper) {
        _cleanup_free_ char *copy = strdup(res->manifest);

        if (tamper)
                copy[res->manifest_len / 2] ^= 1;
        engine_manifest_fetched(eng, reqs[i].digest, 0, copy, res->manifest_len, NULL);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_highest_revision_across_sources(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app");

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        set_view(ENGINE_SOURCE_STORE, entry(r2, NULL, 2, NULL, false));
        /* The higher revision must be fetched first: nothing applies yet. */
        assert_true(sd_event_run(event, 0) >= 0);
        assert_int_equal(n_reqs, 1);
        assert_string_equal(reqs[0].digest, r2->digest);
        assert_non_null(strstr(reqs[0].key, r2->digest + 7));
        answer(0, r2, false);
        settle();
        assert_live("v2");
        assert_int_equal(cached()->lkg.revision, 2);
        assert_int_equal(cached()->applied.revision, 2);
        /* Revision 1 was never applied on the way. */
        assert_marker("v2\n");
        assert_int_equal(
                metric_get(metric_register("ballast_agent_applied_revision", METRIC_GAUGE, "x"),
                           "bundle=\"prod/web\""),
                2);

        /* A new revision through the watch arrives with its bytes. */
        _cleanup_(render_result_freep) render_result *r3 = mk(NULL, 3, "v3", "app");
        set_view(ENGINE_SOURCE_KUBE, entry(r3, NULL, 3, NULL, true));
        settle();
        assert_live("v3");
        assert_int_equal(n_reqs, 1); /* no fetch: it came inline */
}

static void test_never_below_the_cache_floor(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app");

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_live("v2");
        /* Both sources go stale and say revision 1. */
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        set_view(ENGINE_SOURCE_STORE, entry(r1, NULL, 1, NULL, false));
        settle();
        assert_live("v2");
        assert_int_equal(n_reqs, 0);
        assert_marker("v2\n");

        /* After a restart too: the floor is on disk. */
        eng = engine_free(eng);
        c = cache_free(c);
        open_cache();
        make_engine();
        set_labels("{}");
        assert_int_equal(engine_start(eng), 0);
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v2");
        assert_int_equal(cached()->highest.revision, 2);
}

static void test_verification_failures_change_nothing(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app"),
                                                     *r3 = mk(NULL, 3, "v3", "app");
        metric *verify;
        json_object *bad;

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v1");
        verify = metric_register("ballast_agent_verification_failures_total", METRIC_COUNTER, "x");

        /* The object store serves tampered bytes for revision 2. */
        set_view(ENGINE_SOURCE_STORE, entry(r2, NULL, 2, NULL, false));
        assert_true(sd_event_run(event, 0) >= 0);
        assert_int_equal(n_reqs, 1);
        answer(0, r2, true);
        settle();
        assert_live("v1");
        assert_int_equal(metric_get(verify, "source=\"store\""), 1);
        assert_int_equal(cached()->highest.revision, 1);
        /* Rejected for good: no refetch loop. */
        set_view(ENGINE_SOURCE_STORE, entry(r2, NULL, 2, NULL, false));
        settle();
        assert_int_equal(n_reqs, 1);

        /* Rejection is per source: the same digest's good bytes through the
         * API server are applied. */
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_live("v2");

        /* A tampered inline revision 4 beside a good revision 3 in the store:
         * the highest that verifies wins. */
        _cleanup_(render_result_freep) render_result *r4x = mk(NULL, 4, "v4x", "app");
        bad = entry(r4x, NULL, 4, NULL, false);
        {
                _cleanup_free_ char *copy = strdup(r4x->manifest);
                copy[10] ^= 1;
                json_object_object_add(bad, "manifest",
                                       json_object_new_string_len(copy, (int) r4x->manifest_len));
        }
        set_view(ENGINE_SOURCE_KUBE, bad);
        set_view(ENGINE_SOURCE_STORE, entry(r3, NULL, 3, NULL, false));
        assert_true(sd_event_run(event, 0) >= 0);
        assert_int_equal(n_reqs, 2);
        assert_string_equal(reqs[1].digest, r3->digest);
        answer(1, r3, false);
        settle();
        assert_live("v3");
        assert_int_equal(metric_get(verify, "source=\"kube\""), 1);

        /* An entry whose bytes verify but claim another revision. */
        _cleanup_(render_result_freep) render_result *r4 = mk(NULL, 5, "v5", "app");
        set_view(ENGINE_SOURCE_KUBE, entry(r4, NULL, 9, NULL, true));
        set_view(ENGINE_SOURCE_STORE, NULL);
        settle();
        assert_live("v3");
        assert_int_equal(metric_get(verify, "source=\"kube\""), 2);

        /* A malformed entry is counted and ignored. */
        _cleanup_json_ json_object *v = json_object_new_object();
        json_object *e = entry(r4, NULL, 5, NULL, true);
        json_object_object_add(e, "revision", json_object_new_string("five"));
        json_object_object_add(v, "prod/web", e);
        assert_int_equal(engine_set_view(eng, ENGINE_SOURCE_KUBE, v), 0);
        settle();
        assert_live("v3");
        assert_int_equal(metric_get(metric_register("ballast_agent_invalid_entries_total",
                                                    METRIC_COUNTER, "x"),
                                    "source=\"kube\""),
                         1);
        assert_marker("v1\nv2\nv3\n");
}

/* The counters the alerts of docs/operations.md watch with increase() exist
 * at 0 from the start: a series first seen at 1 has nothing to rise from,
 * and the first rollback would raise no alert. */
static void test_alerted_counters_start_at_zero(void **state) {
        _cleanup_free_ char *text = NULL;

        assert_int_equal(metrics_render(&text, NULL), 0);
        assert_non_null(strstr(text, "\nballast_agent_rollbacks_total 0\n"));
        assert_non_null(
                strstr(text, "\nballast_agent_verification_failures_total{source=\"kube\"} 0\n"));
        assert_non_null(
                strstr(text, "\nballast_agent_verification_failures_total{source=\"store\"} 0\n"));
}

static void test_selection_and_removal(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app");
        const char *sel = "{\"matchLabels\":{\"role\":\"web\"}}";
        int matched = -2;

        /* Unknown labels: a selective bundle is left alone. */
        set_labels(NULL);
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, sel, true));
        settle();
        assert_live(NULL);

        set_labels("{\"role\":\"db\"}");
        settle();
        assert_live(NULL);
        assert_null(cached());

        set_labels("{\"role\":\"web\",\"zone\":\"a\"}");
        settle();
        assert_live("v1");

        /* Unknown again: nothing is removed. */
        set_labels(NULL);
        settle();
        assert_live("v1");

        /* No longer selected: removed from the node and the cache, and the
         * reload runs so the service lets go of the files. */
        set_labels("{\"role\":\"db\"}");
        settle();
        assert_live(NULL);
        assert_null(cached());
        assert_marker("v1\nnone\n");
        {
                _cleanup_json_ json_object *doc = NULL;
                json_object *b;
                assert_int_equal(report_build(eng, NULL, "n1", 1767000000, &doc), 0);
                b = jsonx_get(jsonx_get(doc, "bundles"), "prod/web");
                assert_non_null(b);
                matched = jsonx_get_bool(b, "matched", true) ? 1 : 0;
                assert_non_null(jsonx_get_string(b, "removed"));
                assert_null(jsonx_get(b, "applied"));
        }
        assert_int_equal(matched, 0);

        /* Selected again, then deleted from every source. */
        set_labels("{\"role\":\"web\"}");
        settle();
        assert_live("v1");
        set_view(ENGINE_SOURCE_KUBE, NULL);
        set_view(ENGINE_SOURCE_STORE, NULL);
        {
                _cleanup_json_ json_object *empty = json_object_new_object();
                assert_int_equal(engine_set_view(eng, ENGINE_SOURCE_STORE, empty), 0);
        }
        settle();
        assert_live(NULL);
}

static void test_failed_reload_rolls_back_and_is_not_retried(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app"),
                                                     *r3 = mk(NULL, 3, "v3", "app");
        const cache_bundle *cb;
        int fd;

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v1");

        fd = open(failflag, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        /* v2 was live for its (failed) reload, then v1 again with a reload. */
        assert_live("v1");
        assert_marker("v1\nv2\nv1\n");
        cb = cached();
        assert_int_equal(cb->lkg.revision, 1);
        assert_int_equal(cb->applied.revision, 1);
        assert_int_equal(cb->n_failures, 1);
        assert_int_equal(cb->failures[0].revision, 2);
        if (!strstr(cb->failures[0].reason, "reload 'app' exited with status 1"))
                fail_msg("reason: %s", cb->failures[0].reason);
        assert_true(cache_is_failed(c, "prod", "web", 2, r2->digest));
        assert_int_equal(
                metric_get(metric_register("ballast_agent_rollbacks_total", METRIC_COUNTER, "x"),
                           NULL),
                1);

        /* The failure is in the status report. */
        {
                _cleanup_json_ json_object *doc = NULL;
                json_object *b, *f;
                assert_int_equal(report_build(eng, NULL, "n1", 1767000000, &doc), 0);
                assert_string_equal(jsonx_get_string(doc, "updated"), "2025-12-29T09:20:00Z");
                b = jsonx_get(jsonx_get(doc, "bundles"), "prod/web");
                assert_true(jsonx_get_bool(b, "matched", false));
                assert_int_equal(jsonx_get_int(b, "applied.revision", 0), 1);
                assert_string_equal(jsonx_get_string(b, "lastKnownGood.digest"), r1->digest);
                f = json_object_array_get_idx(jsonx_get(b, "failed"), 0);
                assert_string_equal(jsonx_get_string(f, "digest"), r2->digest);
                assert_non_null(strstr(jsonx_get_string(f, "reason"), "exited with status 1"));
        }

        /* Not retried, whatever the sources keep saying, even after a restart. */
        unlink(failflag);
        set_view(ENGINE_SOURCE_STORE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_marker("v1\nv2\nv1\n");
        eng = engine_free(eng);
        make_engine();
        set_labels("{}");
        assert_int_equal(engine_start(eng), 0);
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_marker("v1\nv2\nv1\n");
        assert_live("v1");

        /* A newer revision is tried. */
        set_view(ENGINE_SOURCE_KUBE, entry(r3, NULL, 3, NULL, true));
        settle();
        assert_live("v3");
        assert_int_equal(cached()->lkg.revision, 3);
}

static void test_first_revision_failing_leaves_nothing(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "slow");

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        /* The reload timed out, and there is no last-known-good to go back to. */
        assert_live(NULL);
        assert_true(cache_is_failed(c, "prod", "web", 1, r1->digest));
        assert_non_null(strstr(cached()->failures[0].reason, "timed out after 200ms"));
        assert_int_equal(
                metric_get(metric_register("ballast_agent_reloads_total", METRIC_COUNTER, "x"),
                           "result=\"timeout\""),
                1);
}

static void test_check_failure_never_swaps(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "checked"),
                                                     *r2 = mk(NULL, 2, "BAD", "checked");
        char p[160];
        struct stat st;

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v1");
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_live("v1");
        assert_marker("v1\n"); /* the reload never ran for BAD */
        assert_true(cache_is_failed(c, "prod", "web", 2, r2->digest));
        assert_non_null(strstr(cached()->failures[0].reason, "check 'checked' exited with status"));
        /* The staged directory was discarded. */
        snprintf(p, sizeof(p), "%s/prod/web/..rev-2-%.12s", root, r2->digest + 7);
        assert_int_equal(stat(p, &st), -1);
}

static void test_unknown_action_is_a_failure(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "nope");

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live(NULL);
        assert_true(cache_is_failed(c, "prod", "web", 1, r1->digest));
        assert_non_null(
                strstr(cached()->failures[0].reason, "reload action 'nope' is not configured"));
}

static void test_startup_repairs_the_root(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app");
        _cleanup_close_ int tmp = -1;
        char p[160];
        int fd;

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v1");
        eng = engine_free(eng);

        /* The root is wiped (a tmpfs after reboot): restored from the cache
         * alone, with no view at all, and the service reloaded. */
        tmp = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(fsx_rm_rf_at(tmp, "root"), 0);
        make_engine();
        assert_int_equal(engine_start(eng), 1);
        assert_live("v1");
        settle();
        assert_marker("v1\nv1\n");

        /* A live file damaged by hand is repaired too. */
        eng = engine_free(eng);
        snprintf(p, sizeof(p), "%s/prod/web/..data/app.conf", root);
        fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "tampered", 8), 8);
        close(fd);
        make_engine();
        assert_int_equal(engine_start(eng), 1);
        assert_live("v1");

        /* A crash after the swap of revision 2, before its reload finished:
         * the root goes back to last-known-good, then revision 2 is applied
         * again normally. */
        {
                _cleanup_(manifest_freep) manifest *m = NULL;
                _cleanup_free_ char *name = NULL;
                assert_int_equal(
                        manifest_parse(r2->manifest, r2->manifest_len, r2->digest, NULL, &m, NULL),
                        0);
                assert_int_equal(cache_commit(c, m, NULL), 1);
                assert_int_equal(apply_stage(root, m, &name, NULL, NULL), 0);
                assert_int_equal(apply_swap(root, "prod", "web", name, NULL, NULL), 0);
                assert_int_equal(cache_set_applied(c, "prod", "web", 2, r2->digest, 1, NULL), 0);
        }
        eng = engine_free(eng);
        make_engine();
        assert_int_equal(engine_start(eng), 1);
        assert_live("v1");
        assert_int_equal(cached()->applied.revision, 1);
        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r2, NULL, 2, NULL, true));
        settle();
        assert_live("v2");
}

/* Found on kind: a bundle applied in the second before the agent stopped is
 * in the cache but not in the views saved with it. After a restart with
 * both sources down, those restored views must not remove it; the first
 * live view that doesn't list it does. */
static void test_restored_views_never_remove(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app");
        _cleanup_json_ json_object *empty = json_object_new_object();

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r1, NULL, 1, NULL, true));
        settle();
        assert_live("v1");
        eng = engine_free(eng);

        make_engine();
        assert_int_equal(engine_start(eng), 0);
        set_labels("{}");
        assert_int_equal(engine_restore_view(eng, ENGINE_SOURCE_KUBE, empty), 0);
        assert_int_equal(engine_restore_view(eng, ENGINE_SOURCE_STORE, empty), 0);
        settle();
        assert_live("v1");
        assert_non_null(cached());

        /* A live view of one source that lists it keeps it; one that doesn't,
         * with the other source's view restored, removes it. */
        set_view(ENGINE_SOURCE_STORE, entry(r1, NULL, 1, NULL, false));
        settle();
        assert_live("v1");
        assert_int_equal(engine_set_view(eng, ENGINE_SOURCE_STORE, empty), 0);
        settle();
        assert_live(NULL);
        assert_null(cached());
}

static void test_new_lineage_replaces_the_old(void **state) {
        _cleanup_(render_result_freep) render_result *r5 = mk("u-1", 5, "old", "app"),
                                                     *n1 = mk("u-2", 6, "new", "app");

        set_labels("{}");
        set_view(ENGINE_SOURCE_KUBE, entry(r5, "u-1", 5, NULL, true));
        settle();
        assert_live("old");
        /* Recreated bundle: the operator continues above the old revisions. */
        set_view(ENGINE_SOURCE_KUBE, entry(n1, "u-2", 6, NULL, true));
        settle();
        assert_live("new");
        /* A stale store still serving the old incarnation can't bring it back. */
        set_view(ENGINE_SOURCE_STORE, entry(r5, "u-1", 5, NULL, true));
        settle();
        assert_live("new");
}

/* ---- the poller ---------------------------------------------------------------------- */

static void test_splay_and_backoff_bounds(void **state) {
        const uint64_t I = 30 * USEC_PER_SEC;
        uint64_t lo = UINT64_MAX, hi = 0, slot, d;
        backoff b = BACKOFF_INIT(FETCH_RETRY_BASE_USEC, fetch_retry_cap(I), 0);

        for (int i = 0; i < 2000; i++) {
                d = fetch_first_poll_delay(I, true);
                assert_true(d <= I);
                lo = MIN(lo, d);
                hi = MAX(hi, d);
        }
        /* Spread over the whole interval, not clustered. */
        assert_true(lo < I / 20);
        assert_true(hi > I - I / 20);
        assert_int_equal(fetch_first_poll_delay(I, false), 0);

        /* One poll per slot: the next poll lies in the next slot. */
        for (int i = 0; i < 1000; i++) {
                uint64_t now = 1000 * USEC_PER_SEC + (uint64_t) i, start = now - I / 2;
                slot = start;
                d = fetch_next_poll_delay(&slot, now, I, true);
                assert_int_equal(slot, start + I);
                assert_true(now + d >= start + I && now + d < start + 2 * I);
        }
        slot = 1000 * USEC_PER_SEC;
        assert_int_equal(fetch_next_poll_delay(&slot, slot + 1, I, false), I - 1);
        /* A slot long gone: start anew from now. */
        slot = 1000 * USEC_PER_SEC;
        d = fetch_next_poll_delay(&slot, slot + 10 * I, I, true);
        assert_int_equal(slot, 1000 * USEC_PER_SEC + 10 * I);
        assert_true(d < I);

        /* Backoff: full jitter under a doubling window, capped. */
        assert_int_equal(fetch_retry_cap(I), 2 * I);
        assert_int_equal(fetch_retry_cap(USEC_PER_SEC), FETCH_RETRY_CAP_MIN_USEC);
        assert_int_equal(fetch_retry_cap(3600 * USEC_PER_SEC), FETCH_RETRY_CAP_MAX_USEC);
        for (int n = 0; n < 12; n++) {
                uint64_t w = backoff_window(&b);
                d = fetch_error_delay(&b, 1, -1);
                assert_true(d <= w);
                assert_true(w <= fetch_retry_cap(I));
        }
        assert_int_equal(backoff_window(&b), fetch_retry_cap(I));
        /* Retry-After is a floor, within reason. */
        backoff_reset(&b);
        for (int n = 0; n < 50; n++)
                assert_true(fetch_error_delay(&b, 1, 7) >= 7 * USEC_PER_SEC);
        assert_true(fetch_error_delay(&b, 1, 1000000) <= FETCH_RETRY_AFTER_MAX * USEC_PER_SEC);
        /* Without jitter: the window itself (the naive baseline). */
        b = BACKOFF_INIT(USEC_PER_SEC, 8 * USEC_PER_SEC, 0);
        b.jitter = false;
        assert_int_equal(fetch_error_delay(&b, 1, -1), USEC_PER_SEC);
        assert_int_equal(fetch_error_delay(&b, 1, -1), 2 * USEC_PER_SEC);
}

static void test_configmap_entries(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app");
        render_identity id = {.namespace = "prod", .name = "web", .uid = "u-1"};
        _cleanup_json_ json_object *cm = NULL, *sel = NULL, *e = NULL;
        _cleanup_free_ char *key = NULL, *okey = NULL;
        const char *s = "{\"matchLabels\":{\"role\":\"web\"}}";
        bool is_inline = false;

        assert_int_equal(jsonx_parse(s, strlen(s), &sel, NULL), 0);
        assert_int_equal(bundle_object_key("prod", "web", r1->digest, &okey), 0);
        assert_int_equal(publish_build_configmap("ballast-system", "cb-prod.web", &id, 1, r1, okey,
                                                 sel, "app", &cm, &is_inline),
                         0);
        assert_true(is_inline);
        assert_int_equal(fetch_configmap_entry(cm, &key, &e, NULL), 0);
        assert_string_equal(key, "prod/web");
        assert_int_equal(jsonx_get_int(e, "revision", 0), 1);
        assert_string_equal(jsonx_get_string(e, "digest"), r1->digest);
        assert_string_equal(jsonx_get_string(e, "key"), okey);
        assert_string_equal(jsonx_get_string(e, "reload"), "app");
        assert_string_equal(jsonx_get_string(e, "uid"), "u-1");
        assert_string_equal(jsonx_get_string(e, "nodeSelector.matchLabels.role"), "web");
        assert_string_equal(jsonx_get_string(e, "manifest"), r1->manifest);

        /* The engine accepts what this produced, and applies it. */
        {
                _cleanup_json_ json_object *v = json_object_new_object();
                json_object_object_add(v, key, json_object_get(e));
                set_labels("{\"role\":\"web\"}");
                assert_int_equal(engine_set_view(eng, ENGINE_SOURCE_KUBE, v), 0);
                settle();
                assert_live("v1");
        }

        /* A ConfigMap without the bundle annotation is refused. */
        json_object_object_del(jsonx_get(cm, "metadata.annotations"), BUNDLE_ANN_BUNDLE);
        free(key);
        key = NULL;
        json_object_put(e);
        e = NULL;
        assert_int_equal(fetch_configmap_entry(cm, &key, &e, NULL), -EINVAL);
}

/* Index documents are parsed strictly. */
static void test_index_parsing(void **state) {
        json_object *b = NULL;
        const char *ok = "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"kind\":\"BundleIndex\","
                         "\"bundles\":{}}";
        err_info e;

        assert_int_equal(fetch_parse_index(ok, strlen(ok), &b, NULL), 0);
        json_object_put(b);
        err_info_clear(&e);
        assert_int_equal(fetch_parse_index("{\"kind\":\"Other\"}", 16, &b, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "BundleIndex"));
        assert_int_equal(
                fetch_parse_index("{\"kind\":\"BundleIndex\",\"bundles\":[]}", 35, &b, NULL),
                -EBADMSG);
        assert_int_equal(fetch_parse_index("not json", 8, &b, NULL), -EBADMSG);
}

static void put_file(objstore *st, const char *key, const char *data, size_t len) {
        err_info e;

        err_info_clear(&e);
        if (objstore_put_sync(st, key, data, len, NULL, NULL, &e) < 0)
                fail_msg("put %s: %s", key, e.message);
}

static void put_index(objstore *st, const render_result *res, int64_t rev) {
        _cleanup_json_ json_object *ix = json_object_new_object(),
                                   *bundles = json_object_new_object();
        _cleanup_free_ char *text = NULL;
        size_t len;

        json_object_object_add(ix, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(ix, "kind", json_object_new_string("BundleIndex"));
        json_object_object_add(bundles, "prod/web", entry(res, NULL, rev, NULL, false));
        json_object_object_add(ix, "bundles", json_object_get(bundles));
        assert_int_equal(jsonx_to_canonical(ix, &text, &len), 0);
        put_file(st, "index.json", text, len);
}

static void test_poller_against_a_file_store(void **state) {
        _cleanup_(render_result_freep) render_result *r1 = mk(NULL, 1, "v1", "app"),
                                                     *r2 = mk(NULL, 2, "v2", "app");
        _cleanup_(objstore_freep) objstore *st = NULL;
        _cleanup_(fetch_freep) fetch *f = NULL;
        _cleanup_free_ char *k1 = NULL, *k2 = NULL;
        char sdir[128], loc[160];
        fetch_stats fs;
        err_info e;
        uint64_t end;

        snprintf(sdir, sizeof(sdir), "%s/store", dir);
        assert_int_equal(mkdir(sdir, 0755), 0);
        snprintf(loc, sizeof(loc), "file://%s", sdir);
        err_info_clear(&e);
        assert_int_equal(objstore_open(event, loc, NULL, &st, &e), 0);
        assert_int_equal(bundle_object_key("prod", "web", r1->digest, &k1), 0);
        assert_int_equal(bundle_object_key("prod", "web", r2->digest, &k2), 0);
        put_file(st, k1, r1->manifest, r1->manifest_len);
        put_file(st, k2, r2->manifest, r2->manifest_len);
        put_index(st, r1, 1);

        fetch_opts fo = {
                .event = event,
                .engine = eng,
                .cache = c,
                .store = st,
                .poll_interval_usec = 100 * USEC_PER_MSEC,
        };
        assert_int_equal(fetch_new(&fo, &f), 0);
        engine_set_callbacks(eng, fetch_request_manifest, f, NULL, NULL);
        set_labels("{}");
        assert_int_equal(fetch_start(f), 0);
        /* The first poll comes within the interval (splayed). */
        end = loop_now(NULL) + 3 * USEC_PER_SEC;
        for (fetch_get_stats(f, &fs); fs.polls < 1; fetch_get_stats(f, &fs)) {
                assert_true(loop_now(NULL) < end);
                assert_true(sd_event_run(event, 10 * USEC_PER_MSEC) >= 0);
        }
        settle();
        assert_live("v1");

        /* Unchanged index: 304s, and no manifest fetched again. */
        end = loop_now(NULL) + 5 * USEC_PER_SEC;
        for (fetch_get_stats(f, &fs); fs.polls_unchanged < 3; fetch_get_stats(f, &fs)) {
                assert_true(loop_now(NULL) < end);
                assert_true(sd_event_run(event, 10 * USEC_PER_MSEC) >= 0);
        }
        assert_int_equal(fs.polls_changed, 1);
        assert_int_equal(fs.manifest_gets, 1);

        /* A new revision in the index: fetched once, applied. */
        put_index(st, r2, 2);
        end = loop_now(NULL) + 5 * USEC_PER_SEC;
        for (;;) {
                _cleanup_free_ char *l = live();
                if (l && streq(l, "v2"))
                        break;
                assert_true(loop_now(NULL) < end);
                assert_true(sd_event_run(event, 10 * USEC_PER_MSEC) >= 0);
        }
        fetch_get_stats(f, &fs);
        assert_int_equal(fs.manifest_gets, 2);

        /* An invalid index changes nothing. */
        put_file(st, "index.json", "{\"kind\":", 8);
        end = loop_now(NULL) + 5 * USEC_PER_SEC;
        for (fetch_get_stats(f, &fs); fs.bad_indexes < 1; fetch_get_stats(f, &fs)) {
                assert_true(loop_now(NULL) < end);
                assert_true(sd_event_run(event, 10 * USEC_PER_MSEC) >= 0);
        }
        settle();
        assert_live("v2");

        /* The index is saved with its ETag: a new fetcher restores it. */
        engine_set_callbacks(eng, NULL, NULL, NULL, NULL);
        f = fetch_free(f);
        assert_int_equal(fetch_new(&fo, &f), 0);
        assert_int_equal(engine_set_view(eng, ENGINE_SOURCE_STORE, NULL), 0);
        assert_int_equal(fetch_restore(f), 0);
        assert_non_null(engine_get_view(eng, ENGINE_SOURCE_STORE));
        assert_int_equal(
                jsonx_get_int(json_object_object_get(engine_get_view(eng, ENGINE_SOURCE_STORE),
                                                     "prod/web"),
                              "revision", 0),
                2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_highest_revision_across_sources, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_never_below_the_cache_floor, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verification_failures_change_nothing, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_alerted_counters_start_at_zero, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_selection_and_removal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_reload_rolls_back_and_is_not_retried,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_revision_failing_leaves_nothing, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_check_failure_never_swaps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_action_is_a_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_startup_repairs_the_root, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restored_views_never_remove, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_lineage_replaces_the_old, setup, teardown),
                cmocka_unit_test(test_splay_and_backoff_bounds),
                cmocka_unit_test_setup_teardown(test_configmap_entries, setup, teardown),
                cmocka_unit_test(test_index_parsing),
                cmocka_unit_test_setup_teardown(test_poller_against_a_file_store, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
