/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's on-disk cache: commit and reopen, revision rules and lineage,
 * garbage collection, quarantine, and a failure or crash at every write. */

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cache.h"
#include "fsx.h"
#include "jsonx.h"
#include "manifest.h"
#include "render.h"

static char dir[64];

static int setup(void **state) {
        snprintf(dir, sizeof(dir), "/tmp/ballast-cache-XXXXXX");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        fsx_fault_hook = NULL;
        assert_int_equal(fsx_rm_rf_at(tmp, dir + 5 /* the name under /tmp */), 0);
        return 0;
}

/* A verified manifest for @ns/@name with one file holding @content. */
static manifest *mk(const char *ns, const char *name, const char *uid, int64_t rev,
                    const char *content) {
        render_identity id = {.namespace = ns, .name = name, .uid = uid};
        _cleanup_(render_result_freep) render_result *res = NULL;
        _cleanup_json_ json_object *spec = json_object_new_object(),
                                   *files = json_object_new_array(), *f = json_object_new_object();
        manifest *m = NULL;
        err_info e;

        json_object_object_add(f, "path", json_object_new_string("app.conf"));
        json_object_object_add(f, "content", json_object_new_string(content));
        json_object_array_add(files, json_object_get(f));
        json_object_object_add(spec, "files", json_object_get(files));
        err_info_clear(&e);
        assert_int_equal(render_bundle(spec, &id, rev, &res, &e), 0);
        assert_int_equal(
                manifest_parse(res->manifest, res->manifest_len, res->digest, NULL, &m, &e), 0);
        return m;
}

static cache *open_ok(unsigned keep) {
        cache *c = NULL;
        err_info e;

        err_info_clear(&e);
        if (cache_open(dir, keep, &c, &e) < 0)
                fail_msg("cache_open: %s", e.message);
        return c;
}

static void commit_ok(cache *c, const manifest *m, int want) {
        err_info e;
        int r;

        err_info_clear(&e);
        r = cache_commit(c, m, &e);
        if (r != want)
                fail_msg("commit of revision %lld: %d (%s), want %d", (long long) m->revision, r,
                         e.message, want);
}

static bool has_problem(cache *c, const char *want) {
        char *const *l;
        size_t n = cache_get_problems(c, &l);

        for (size_t i = 0; i < n; i++)
                if (strstr(l[i], want))
                        return true;
        return false;
}

static bool exists(const char *rel) {
        char p[1024];

        snprintf(p, sizeof(p), "%s/%s", dir, rel);
        return access(p, F_OK) == 0;
}

static void manifest_path(const manifest *m, char *buf, size_t size) {
        snprintf(buf, size, "bundles/%s/%s/%lld-%s.json", m->namespace, m->name,
                 (long long) m->revision, m->digest + 7);
}

static size_t count_dir(const char *rel) {
        char p[1024];
        size_t n = 0;
        DIR *d;

        snprintf(p, sizeof(p), "%s/%s", dir, rel);
        d = opendir(p);
        if (!d)
                return 0;
        for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void test_commit_and_reopen(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u-1", 1, "one\n");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u-1", 2, "two\n");
        _cleanup_(manifest_freep) manifest *o1 = mk("dev", "api.v2", "u-9", 7, "other\n");
        _cleanup_(manifest_freep) manifest *back = NULL;
        cache *c = open_ok(0);
        const cache_bundle *b;
        char p[512];
        struct stat st;
        err_info e;

        assert_null(cache_get_bundle(c, "prod", "web"));
        commit_ok(c, m1, 1);
        commit_ok(c, m2, 1);
        commit_ok(c, o1, 1);
        commit_ok(c, m2, 0); /* the same again: nothing to do */
        err_info_clear(&e);
        assert_int_equal(cache_set_applied(c, "prod", "web", 2, m2->digest, 1000, &e), 0);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 1, m1->digest, 999, &e), 0);
        assert_int_equal(
                cache_record_failure(c, "prod", "web", 2, m2->digest, "reload timed out", 1001, &e),
                0);
        cache_free(c);

        c = open_ok(0);
        assert_int_equal(cache_get_problems(c, NULL), 0);
        assert_int_equal(cache_count_bundles(c), 2);
        assert_string_equal(cache_get_bundle_at(c, 0)->namespace, "dev"); /* sorted */
        b = cache_get_bundle(c, "prod", "web");
        assert_non_null(b);
        assert_string_equal(b->uid, "u-1");
        assert_int_equal(b->n_revisions, 2);
        assert_int_equal(b->revisions[0].revision, 1);
        assert_int_equal(b->revisions[1].revision, 2);
        assert_int_equal(b->highest.revision, 2);
        assert_string_equal(b->highest.digest, m2->digest);
        assert_int_equal(b->applied.revision, 2);
        assert_int_equal(b->applied.at, 1000);
        assert_string_equal(b->applied.digest, m2->digest);
        assert_int_equal(b->lkg.revision, 1);
        assert_int_equal(b->lkg.at, 999);
        assert_int_equal(b->n_failures, 1);
        assert_string_equal(b->failures[0].reason, "reload timed out");
        assert_true(cache_is_failed(c, "prod", "web", 2, m2->digest));
        assert_false(cache_is_failed(c, "prod", "web", 1, m1->digest));

        assert_int_equal(cache_load_manifest(c, "prod", "web", 2, m2->digest, &back, &e), 0);
        assert_int_equal(back->n_bytes, m2->n_bytes);
        assert_memory_equal(back->bytes, m2->bytes, m2->n_bytes);
        assert_int_equal(cache_load_manifest(c, "prod", "web", 3, m2->digest, NULL, &e), -ENOENT);

        /* The documented layout, private modes. */
        manifest_path(m2, p, sizeof(p));
        assert_true(exists(p));
        assert_true(exists("bundles/prod/web/state.json"));
        snprintf(p, sizeof(p), "%s/bundles/prod/web/state.json", dir);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(dir, &st), 0);
        assert_true(cache_get_size(c) > m1->n_bytes + m2->n_bytes);
        cache_free(c);
}

static void test_second_open_is_refused(void **state) {
        cache *c = open_ok(0), *d = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(cache_open(dir, 0, &d, &e), -EBUSY);
        assert_null(d);
        assert_non_null(strstr(e.message, "in use by another process"));
        cache_free(c);
        c = open_ok(0);
        cache_free(c);
}

static void test_revisions_never_go_back(void **state) {
        _cleanup_(manifest_freep) manifest *m3 = mk("prod", "web", "u-1", 3, "three");
        _cleanup_(manifest_freep) manifest *m5 = mk("prod", "web", "u-1", 5, "five");
        _cleanup_(manifest_freep) manifest *m5b = mk("prod", "web", "u-1", 5, "five, other");
        _cleanup_(manifest_freep) manifest *m6 = mk("prod", "web", "u-1", 6, "six");
        cache *c = open_ok(0);
        err_info e;

        commit_ok(c, m5, 1);
        err_info_clear(&e);
        assert_int_equal(cache_commit(c, m3, &e), -ESTALE);
        assert_non_null(strstr(e.message, "bundle prod/web revision 3 is older than revision 5 "
                                          "the cache holds"));
        err_info_clear(&e);
        assert_int_equal(cache_commit(c, m5b, &e), -ESTALE);
        assert_non_null(strstr(e.message, "revision 5 is cached with digest"));
        assert_int_equal(cache_check_revision(c, "prod", "web", "u-1", 5, m5->digest, NULL),
                         -EALREADY);
        assert_int_equal(cache_check_revision(c, "prod", "web", "u-1", 6, m6->digest, NULL), 0);
        assert_int_equal(cache_check_revision(c, "prod", "new", "u-1", 1, m6->digest, NULL), 0);
        assert_int_equal(cache_check_revision(c, "prod", "../x", "u-1", 1, m6->digest, &e),
                         -EINVAL);
        assert_int_equal(cache_check_revision(c, "Prod", "web", "u-1", 1, m6->digest, &e), -EINVAL);
        assert_int_equal(cache_check_revision(c, "prod", "web", "u-1", 1, "sha256:00", &e),
                         -EINVAL);
        cache_free(c);

        /* The floor survives a restart, and the cache still holds only 5. */
        c = open_ok(0);
        assert_int_equal(cache_commit(c, m3, NULL), -ESTALE);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 1);
        commit_ok(c, m6, 1);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->highest.revision, 6);
        cache_free(c);
}

static void test_new_uid_starts_a_new_lineage(void **state) {
        _cleanup_(manifest_freep) manifest *a7 = mk("prod", "web", "uid-a", 7, "a7");
        _cleanup_(manifest_freep) manifest *a8 = mk("prod", "web", "uid-a", 8, "a8");
        _cleanup_(manifest_freep) manifest *b1 = mk("prod", "web", "uid-b", 1, "b1");
        _cleanup_(manifest_freep) manifest *b2 = mk("prod", "web", "uid-b", 2, "b2");
        cache *c = open_ok(2);
        const cache_bundle *b;
        err_info e;

        commit_ok(c, a7, 1);
        assert_int_equal(cache_set_applied(c, "prod", "web", 7, a7->digest, 1, NULL), 0);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 7, a7->digest, 1, NULL), 0);
        assert_int_equal(cache_record_failure(c, "prod", "web", 7, a7->digest, "x", 2, NULL), 0);

        /* Recreated bundle: revision 1 of a new uid is accepted although 1 < 7. */
        commit_ok(c, b1, 1);
        b = cache_get_bundle(c, "prod", "web");
        assert_string_equal(b->uid, "uid-b");
        assert_int_equal(b->highest.revision, 1);
        assert_int_equal(b->n_retired, 1);
        assert_string_equal(b->retired_uids[0], "uid-a");
        assert_int_equal(b->n_failures, 0); /* failures of the old lineage are forgotten */
        /* The old lineage's applied revision stays pinned: it is what is on disk. */
        assert_int_equal(b->n_revisions, 2);
        assert_int_equal(b->applied.revision, 7);
        assert_string_equal(b->applied.uid, "uid-a");

        /* The old uid never comes back, whatever its revision. */
        err_info_clear(&e);
        assert_int_equal(cache_commit(c, a8, &e), -ESTALE);
        assert_non_null(strstr(e.message, "uid uid-a belongs to a deleted incarnation"));
        cache_free(c);

        c = open_ok(2);
        assert_int_equal(cache_commit(c, a8, NULL), -ESTALE);
        commit_ok(c, b2, 1);
        assert_int_equal(cache_set_applied(c, "prod", "web", 2, b2->digest, 3, NULL), 0);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 2, b2->digest, 3, NULL), 0);
        b = cache_get_bundle(c, "prod", "web");
        /* Unpinned, the old lineage is collected. */
        assert_int_equal(b->n_revisions, 2);
        assert_string_equal(b->revisions[0].uid, "uid-b");
        assert_string_equal(b->revisions[1].uid, "uid-b");
        assert_int_equal(count_dir("bundles/prod/web"), 3); /* two manifests + state.json */
        cache_free(c);
}

static void test_gc_keeps_k_and_never_applied_or_lkg(void **state) {
        manifest *m[8] = {};
        cache *c = open_ok(2);
        const cache_bundle *b;
        char p[512];

        for (int i = 1; i <= 7; i++)
                m[i] = mk("prod", "web", "u", i, i % 2 ? "odd" : "even");
        commit_ok(c, m[1], 1);
        commit_ok(c, m[2], 1);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 1, m[1]->digest, 1, NULL), 0);
        assert_int_equal(cache_set_applied(c, "prod", "web", 2, m[2]->digest, 1, NULL), 0);
        for (int i = 3; i <= 5; i++)
                commit_ok(c, m[i], 1);
        b = cache_get_bundle(c, "prod", "web");
        assert_int_equal(b->n_revisions, 4); /* 1 (lkg), 2 (applied), 4, 5 */
        assert_int_equal(b->revisions[0].revision, 1);
        assert_int_equal(b->revisions[1].revision, 2);
        assert_int_equal(b->revisions[2].revision, 4);
        assert_int_equal(b->revisions[3].revision, 5);
        manifest_path(m[3], p, sizeof(p));
        assert_false(exists(p));
        manifest_path(m[1], p, sizeof(p));
        assert_true(exists(p));

        /* Moving the pins releases the old ones at the next change. */
        assert_int_equal(cache_set_applied(c, "prod", "web", 5, m[5]->digest, 2, NULL), 0);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 5, m[5]->digest, 2, NULL), 0);
        commit_ok(c, m[6], 1);
        commit_ok(c, m[7], 1);
        b = cache_get_bundle(c, "prod", "web");
        assert_int_equal(b->n_revisions, 3); /* 5 (pinned), 6, 7 */
        assert_int_equal(b->revisions[0].revision, 5);
        assert_int_equal(count_dir("bundles/prod/web"), 4);
        cache_free(c);
        c = open_ok(2);
        assert_int_equal(cache_get_problems(c, NULL), 0);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 3);
        cache_free(c);
        for (int i = 1; i <= 7; i++)
                manifest_free(m[i]);
}

static void write_file(const char *rel, const char *data, size_t len) {
        char p[1024];
        int fd;

        snprintf(p, sizeof(p), "%s/%s", dir, rel);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        close(fd);
}

static void test_corrupt_manifest_is_quarantined(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u", 2, "two");
        cache *c = open_ok(0);
        const cache_bundle *b;
        char p[512];
        char *bad;
        err_info e;

        commit_ok(c, m1, 1);
        commit_ok(c, m2, 1);
        assert_int_equal(cache_set_applied(c, "prod", "web", 1, m1->digest, 1, NULL), 0);
        assert_int_equal(cache_set_lkg(c, "prod", "web", 1, m1->digest, 1, NULL), 0);
        cache_free(c);

        /* Bit rot in revision 1 (the last-known-good). */
        manifest_path(m1, p, sizeof(p));
        bad = strdup(m1->bytes);
        bad[m1->n_bytes - 3] ^= 1;
        write_file(p, bad, m1->n_bytes);
        free(bad);

        c = open_ok(0);
        assert_true(has_problem(c, "digest mismatch"));
        assert_true(has_problem(c, "quarantined as quarantine/"));
        assert_false(exists(p));
        assert_int_equal(count_dir("quarantine"), 1);
        b = cache_get_bundle(c, "prod", "web");
        assert_int_equal(b->n_revisions, 1);
        assert_int_equal(b->revisions[0].revision, 2);
        /* Never returned... */
        assert_int_equal(cache_load_manifest(c, "prod", "web", 1, m1->digest, NULL, &e), -ENOENT);
        /* ...but the lost last-known-good may be fetched again, though lower. */
        assert_int_equal(cache_check_revision(c, "prod", "web", "u", 1, m1->digest, NULL), 0);
        commit_ok(c, m1, 1);
        assert_int_equal(cache_load_manifest(c, "prod", "web", 1, m1->digest, NULL, &e), 0);
        cache_clear_problems(c);
        assert_int_equal(cache_get_problems(c, NULL), 0);
        cache_free(c);

        /* A file that is fine on disk at open but rots later. */
        c = open_ok(0);
        manifest_path(m2, p, sizeof(p));
        write_file(p, "{}", 2);
        err_info_clear(&e);
        assert_int_equal(cache_load_manifest(c, "prod", "web", 2, m2->digest, NULL, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "bundle prod/web revision 2: the cached manifest is "
                                          "corrupt"));
        assert_true(has_problem(c, "quarantined as"));
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 1);
        cache_free(c);
        c = open_ok(0);
        assert_int_equal(cache_get_problems(c, NULL), 0);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 1);

        /* A file deleted behind the cache's back: missing, not corrupt. */
        manifest_path(m1, p, sizeof(p));
        {
                char full[1024];

                snprintf(full, sizeof(full), "%s/%s", dir, p);
                assert_int_equal(unlink(full), 0);
        }
        err_info_clear(&e);
        assert_int_equal(cache_load_manifest(c, "prod", "web", 1, m1->digest, NULL, &e), -ENOENT);
        assert_non_null(strstr(e.message, "missing; refetch it"));
        assert_true(has_problem(c, "listed but missing"));
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 0);
        /* Pinned as applied and last-known-good, so it may come back. */
        assert_int_equal(cache_get_bundle(c, "prod", "web")->lkg.revision, 1);
        commit_ok(c, m1, 1);
        cache_free(c);
}

static void test_manifest_under_wrong_name_is_quarantined(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *x = mk("prod", "other", "u", 1, "one");
        cache *c = open_ok(0);
        char p[512];

        commit_ok(c, m1, 1);
        cache_free(c);
        /* Another bundle's (valid) manifest under this bundle's listed name. */
        manifest_path(m1, p, sizeof(p));
        write_file(p, x->bytes, x->n_bytes);
        c = open_ok(0);
        assert_true(has_problem(c, "bundles/prod/web/1-"));
        assert_int_equal(count_dir("quarantine"), 1);
        /* No manifest is left, but the floor is: the same revision may be
         * fetched again, a lower one not. */
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 0);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->highest.revision, 1);
        assert_int_equal(cache_check_revision(c, "prod", "web", "u", 1, m1->digest, NULL), 0);
        commit_ok(c, m1, 1);
        cache_free(c);
}

static void test_corrupt_state_is_rebuilt(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u-7", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u-7", 2, "two");
        cache *c = open_ok(0);
        const cache_bundle *b;

        commit_ok(c, m1, 1);
        commit_ok(c, m2, 1);
        cache_free(c);
        write_file("bundles/prod/web/state.json", "{\"format\":1,", 12);

        c = open_ok(0);
        assert_true(has_problem(c, "state.json: not valid JSON"));
        assert_true(has_problem(c, "rebuilding from the manifests"));
        b = cache_get_bundle(c, "prod", "web");
        assert_non_null(b);
        assert_string_equal(b->uid, "u-7");
        assert_int_equal(b->n_revisions, 2);
        assert_int_equal(b->highest.revision, 2);
        assert_int_equal(b->applied.revision, 0); /* unknown now */
        assert_int_equal(count_dir("quarantine"), 1);
        assert_int_equal(cache_commit(c, m1, NULL), 0); /* still cached */
        cache_free(c);

        /* The rebuilt state was written back. */
        c = open_ok(0);
        assert_int_equal(cache_get_problems(c, NULL), 0);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 2);
        cache_free(c);

        /* A state.json that parses but lies (wrong bundle) is corrupt too. */
        write_file("bundles/prod/web/state.json",
                   "{\"bundle\":{\"name\":\"x\",\"namespace\":\"prod\"},\"format\":1}", 53);
        c = open_ok(0);
        assert_true(has_problem(c, "bundle is not prod/web"));
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 2);
        cache_free(c);
}

static void test_leftovers_are_cleaned(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u", 2, "two");
        cache *c = open_ok(0);
        char p[512];

        commit_ok(c, m1, 1);
        cache_free(c);
        /* An uncommitted manifest (written, state.json not yet), a temporary
         * of an interrupted write, a half-removed bundle, junk. */
        manifest_path(m2, p, sizeof(p));
        write_file(p, m2->bytes, m2->n_bytes);
        write_file("bundles/prod/web/.#state.json.abc123", "{", 1);
        write_file(".#node-labels.json.xyz987", "{", 1);
        snprintf(p, sizeof(p), "%s/bundles/prod/.trash-old", dir);
        assert_int_equal(mkdir(p, 0700), 0);
        write_file("bundles/prod/.trash-old/state.json", "{}", 2);
        write_file("bundles/prod/web/notes.txt", "hi", 2);

        c = open_ok(0);
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_revisions, 1);
        manifest_path(m2, p, sizeof(p));
        assert_false(exists(p));
        assert_false(exists("bundles/prod/web/.#state.json.abc123"));
        assert_false(exists(".#node-labels.json.xyz987"));
        assert_false(exists("bundles/prod/.trash-old"));
        assert_true(has_problem(c, "notes.txt: not a cache file (ignored)"));
        /* Revision 2 can still be committed normally. */
        commit_ok(c, m2, 1);
        cache_free(c);
}

static void test_remove_bundle(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        cache *c = open_ok(0);

        commit_ok(c, m1, 1);
        assert_int_equal(cache_remove_bundle(c, "prod", "web", NULL), 0);
        assert_null(cache_get_bundle(c, "prod", "web"));
        assert_false(exists("bundles/prod"));
        assert_int_equal(cache_remove_bundle(c, "prod", "web", NULL), 0);
        assert_int_equal(cache_remove_bundle(c, "prod", "../..", NULL), -EINVAL);
        cache_free(c);
        c = open_ok(0);
        assert_int_equal(cache_count_bundles(c), 0);
        cache_free(c);
}

static void test_failures_are_bounded_and_persisted(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        char digest[BUNDLE_DIGEST_SIZE], reason[700];
        cache *c = open_ok(0);
        const cache_bundle *b;

        assert_int_equal(cache_record_failure(c, "prod", "web", 1, m1->digest, "x", 1, NULL),
                         -ENOENT);
        commit_ok(c, m1, 1);
        memset(reason, 'r', sizeof(reason) - 1);
        reason[sizeof(reason) - 1] = '\0';
        for (int i = 1; i <= 20; i++) {
                assert_int_equal(bundle_digest(&i, sizeof(i), digest), 0);
                assert_int_equal(cache_record_failure(c, "prod", "web", i, digest, reason, i, NULL),
                                 0);
        }
        /* Recording the same revision again replaces its entry. */
        assert_int_equal(cache_record_failure(c, "prod", "web", 20, digest, "again", 21, NULL), 0);
        b = cache_get_bundle(c, "prod", "web");
        assert_int_equal(b->n_failures, CACHE_MAX_FAILURES);
        assert_int_equal(b->failures[0].revision, 5);
        assert_string_equal(b->failures[CACHE_MAX_FAILURES - 1].reason, "again");
        assert_int_equal(strlen(b->failures[0].reason), CACHE_MAX_REASON);
        cache_free(c);
        c = open_ok(0);
        assert_true(cache_is_failed(c, "prod", "web", 20, digest));
        assert_int_equal(cache_get_bundle(c, "prod", "web")->n_failures, CACHE_MAX_FAILURES);
        cache_free(c);
}

static void test_node_labels_and_sources(void **state) {
        _cleanup_json_ json_object *labels = NULL, *back = NULL, *bad = json_object_new_array();
        const char *lj = "{\"zone\":\"a\",\"kubernetes.io/hostname\":\"n1\"}";
        _cleanup_free_ char *blob = NULL;
        cache *c = open_ok(0);
        size_t len = 0;
        err_info e;

        assert_int_equal(cache_load_node_labels(c, &back, NULL), -ENOENT);
        assert_int_equal(jsonx_parse(lj, strlen(lj), &labels, NULL), 0);
        assert_int_equal(cache_save_node_labels(c, labels, NULL), 0);
        assert_int_equal(cache_save_node_labels(c, bad, NULL), -EINVAL);
        assert_int_equal(cache_load_node_labels(c, &back, NULL), 0);
        assert_string_equal(jsonx_get_string(back, "zone"), "a");
        json_object_put(back);
        back = NULL;

        assert_int_equal(cache_load_source(c, "s3", &blob, &len, NULL), -ENOENT);
        assert_int_equal(cache_save_source(c, "s3", "{\"etag\":\"x\"}", 12, NULL), 0);
        assert_int_equal(cache_save_source(c, "../x", "{}", 2, NULL), -EINVAL);
        assert_int_equal(cache_load_source(c, "s3", &blob, &len, NULL), 0);
        assert_int_equal(len, 12);
        assert_string_equal(blob, "{\"etag\":\"x\"}");
        cache_free(c);

        write_file("node-labels.json", "{\"zone\":3}", 10);
        c = open_ok(0);
        err_info_clear(&e);
        assert_int_equal(cache_load_node_labels(c, &back, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "node-labels.json is corrupt and was quarantined"));
        assert_true(has_problem(c, "node-labels.json: corrupt"));
        assert_false(exists("node-labels.json"));
        assert_int_equal(cache_load_node_labels(c, &back, NULL), -ENOENT);
        cache_free(c);
}

/* ---- failure injection -------------------------------------------------- */

static int fault_at, fault_calls, fault_errno;
static bool fault_crash;

static int fault_hook(fsx_step step) {
        if (fault_calls++ != fault_at)
                return 0;
        if (fault_crash)
                _exit(42); /* like kill -9 / power cut at this instant */
        return -fault_errno;
}

/* The state before the commit under test: revisions 1 and 2, 2 applied. */
static void prepare(manifest *m1, manifest *m2) {
        cache *c = open_ok(2);

        commit_ok(c, m1, 1);
        commit_ok(c, m2, 1);
        assert_int_equal(cache_set_applied(c, "prod", "web", 2, m2->digest, 5, NULL), 0);
        cache_free(c);
}

/* After a failure or crash: the cache opens clean and is wholly the old
 * state or wholly the new one; every listed manifest loads. Returns true
 * for "new". */
static bool check_old_or_new(const manifest *m3) {
        cache *c = open_ok(2);
        const cache_bundle *b = cache_get_bundle(c, "prod", "web");
        bool is_new;

        if (cache_get_problems(c, NULL) != 0) {
                char *const *l;

                cache_get_problems(c, &l);
                fail_msg("problem after failure at step %d: %s", fault_at, l[0]);
        }
        assert_non_null(b);
        is_new = b->highest.revision == 3;
        if (is_new) {
                /* keep=2: 2 (applied) and 3; revision 1 collected. */
                assert_int_equal(b->n_revisions, 2);
                assert_int_equal(b->revisions[1].revision, 3);
                assert_string_equal(b->highest.digest, m3->digest);
        } else {
                assert_int_equal(b->highest.revision, 2);
                assert_int_equal(b->n_revisions, 2);
                assert_int_equal(b->revisions[0].revision, 1);
        }
        assert_int_equal(b->applied.revision, 2);
        for (size_t i = 0; i < b->n_revisions; i++) {
                manifest *m = NULL;

                assert_int_equal(cache_load_manifest(c, "prod", "web", b->revisions[i].revision,
                                                     b->revisions[i].digest, &m, NULL),
                                 0);
                manifest_free(m);
        }
        /* Exactly the listed manifests and state.json; no temporaries. */
        assert_int_equal(count_dir("bundles/prod/web"), b->n_revisions + 1);
        cache_free(c);
        return is_new;
}

static void reset_dir(void) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_int_equal(fsx_rm_rf_at(tmp, dir + 5), 0);
        assert_int_equal(mkdir(dir, 0700), 0);
}

static void test_failure_at_every_write_step(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u", 2, "two");
        _cleanup_(manifest_freep) manifest *m3 = mk("prod", "web", "u", 3, "three");
        static const int errnos[] = {EIO, ENOSPC, EROFS};
        unsigned n_old = 0, n_new = 0;

        for (size_t k = 0; k < ELEMENTSOF(errnos); k++)
                for (fault_at = 0;; fault_at++) {
                        const cache_bundle *b;
                        err_info e;
                        cache *c;
                        int r;

                        reset_dir();
                        prepare(m1, m2);
                        c = open_ok(2);
                        fault_calls = 0;
                        fault_errno = errnos[k];
                        fault_crash = false;
                        fsx_fault_hook = fault_hook;
                        err_info_clear(&e);
                        r = cache_commit(c, m3, &e);
                        fsx_fault_hook = NULL;
                        if (fault_calls <= fault_at) {
                                /* Every step passed: done with this errno. */
                                assert_int_equal(r, 1);
                                cache_free(c);
                                assert_true(check_old_or_new(m3));
                                break;
                        }
                        /* The error is clear, and this process's view unchanged. */
                        assert_int_equal(r, -errnos[k]);
                        assert_non_null(strstr(e.message, strerror(errnos[k])));
                        assert_non_null(strstr(e.message, "bundles/prod/web/"));
                        b = cache_get_bundle(c, "prod", "web");
                        assert_int_equal(b->highest.revision, 2);
                        assert_int_equal(b->n_revisions, 2);
                        cache_free(c);
                        if (check_old_or_new(m3))
                                n_new++;
                        else
                                n_old++;
                }
        /* Two writes of five steps each, three errnos; only a failed final
         * directory fsync of state.json leaves the new state. */
        assert_int_equal(n_old + n_new, 3 * 10);
        assert_int_equal(n_new, 3);
}

static void test_crash_at_every_write_step(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u", 2, "two");
        _cleanup_(manifest_freep) manifest *m3 = mk("prod", "web", "u", 3, "three");
        unsigned n_old = 0, n_new = 0;

        /* Also with named temporaries (filesystems without O_TMPFILE), which
         * a crash can leave behind. */
        for (int tmpfile = 0; tmpfile < 2; tmpfile++)
                for (fault_at = 0;; fault_at++) {
                        pid_t pid;
                        int status;

                        reset_dir();
                        prepare(m1, m2);
                        pid = fork();
                        assert_true(pid >= 0);
                        if (pid == 0) {
                                cache *c = NULL;

                                fsx_disable_tmpfile = tmpfile == 1;
                                if (cache_open(dir, 2, &c, NULL) < 0)
                                        _exit(2);
                                fault_calls = 0;
                                fault_crash = true;
                                fsx_fault_hook = fault_hook;
                                _exit(cache_commit(c, m3, NULL) == 1 ? 0 : 3);
                        }
                        assert_int_equal(waitpid(pid, &status, 0), pid);
                        assert_true(WIFEXITED(status));
                        if (WEXITSTATUS(status) == 0) {
                                assert_true(check_old_or_new(m3));
                                break;
                        }
                        assert_int_equal(WEXITSTATUS(status), 42);
                        if (check_old_or_new(m3))
                                n_new++;
                        else
                                n_old++;
                }
        /* A crash before the rename of state.json is the old state; at its
         * directory fsync (after the rename) the new one. */
        assert_int_equal(n_old, 2 * 9);
        assert_int_equal(n_new, 2 * 1);
}

/* The very first commit of a bundle (no state.json yet) crashing at each
 * step: afterwards the bundle is either unknown or holds the revision. */
static void test_crash_during_first_commit(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        unsigned n_old = 0, n_new = 0;

        for (fault_at = 0;; fault_at++) {
                const cache_bundle *b;
                pid_t pid;
                int status;
                cache *c;

                reset_dir();
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        cache *cc = NULL;

                        if (cache_open(dir, 2, &cc, NULL) < 0)
                                _exit(2);
                        fault_calls = 0;
                        fault_crash = true;
                        fsx_fault_hook = fault_hook;
                        _exit(cache_commit(cc, m1, NULL) == 1 ? 0 : 3);
                }
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status));
                c = open_ok(2);
                assert_int_equal(cache_get_problems(c, NULL), 0);
                b = cache_get_bundle(c, "prod", "web");
                if (b) {
                        assert_int_equal(b->highest.revision, 1);
                        assert_int_equal(b->n_revisions, 1);
                        assert_int_equal(
                                cache_load_manifest(c, "prod", "web", 1, m1->digest, NULL, NULL),
                                0);
                        assert_int_equal(count_dir("bundles/prod/web"), 2);
                        n_new++;
                } else {
                        assert_int_equal(count_dir("bundles/prod/web"), 0);
                        n_old++;
                }
                cache_free(c);
                if (WEXITSTATUS(status) == 0)
                        break;
                assert_int_equal(WEXITSTATUS(status), 42);
        }
        /* Until the manifest file is renamed into place (4 steps) nothing is
         * there; from then on a manifest without state.json is adopted (the
         * state is rebuilt): 6 crash points and the run without a crash. */
        assert_int_equal(n_old, 4);
        assert_int_equal(n_new, 7);
}

/* A real read-only cache directory (a read-only bind mount in a private
 * mount namespace) and a real full disk (a tiny tmpfs). Skipped where
 * namespaces are not allowed. */
static void test_read_only_and_full_disk_for_real(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mk("prod", "web", "u", 1, "one");
        _cleanup_(manifest_freep) manifest *m2 = mk("prod", "web", "u", 2, "two");
        char full[80];
        pid_t pid;
        int status;

        prepare(m1, m2);
        snprintf(full, sizeof(full), "%s-full", dir);
        assert_int_equal(mkdir(full, 0700), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                _cleanup_(manifest_freep) manifest *m3 = NULL;
                char big[200 * 1024];
                const cache_bundle *b;
                cache *c = NULL;
                err_info e;

                if (unshare(CLONE_NEWNS) < 0 ||
                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount(dir, dir, NULL, MS_BIND, NULL) < 0 ||
                    mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                        _exit(77);
                m3 = mk("prod", "web", "u", 3, "three");
                err_info_clear(&e);
                if (cache_open(dir, 2, &c, &e) < 0)
                        _exit(10);
                err_info_clear(&e);
                if (cache_commit(c, m3, &e) != -EROFS ||
                    !strstr(e.message, "Read-only file system"))
                        _exit(11);
                b = cache_get_bundle(c, "prod", "web");
                if (b->highest.revision != 2 || b->n_revisions != 2)
                        _exit(12);
                if (cache_set_lkg(c, "prod", "web", 1, m1->digest, 1, NULL) != -EROFS ||
                    cache_get_bundle(c, "prod", "web")->lkg.revision != 0)
                        _exit(13);
                cache_free(c);

                /* A full disk: a 64 KiB tmpfs and a 200 KiB manifest. */
                if (mount("tmpfs", full, "tmpfs", 0, "size=64k") < 0)
                        _exit(77);
                memset(big, 'x', sizeof(big) - 1);
                big[sizeof(big) - 1] = '\0';
                manifest_free(m3);
                m3 = mk("prod", "web", "u", 3, big);
                if (cache_open(full, 2, &c, NULL) < 0)
                        _exit(20);
                if (cache_commit(c, m1, NULL) != 1)
                        _exit(21);
                err_info_clear(&e);
                if (cache_commit(c, m3, &e) != -ENOSPC || !strstr(e.message, "No space left"))
                        _exit(22);
                if (cache_get_bundle(c, "prod", "web")->highest.revision != 1)
                        _exit(23);
                cache_free(c);
                if (cache_open(full, 2, &c, NULL) < 0 || cache_get_problems(c, NULL) != 0 ||
                    cache_get_bundle(c, "prod", "web")->highest.revision != 1)
                        _exit(24);
                cache_free(c);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(rmdir(full), 0);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77)
                skip();
        assert_int_equal(WEXITSTATUS(status), 0);
        /* Outside the namespace nothing changed either. */
        assert_true(check_old_or_new(m2) == false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_commit_and_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revisions_never_go_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_uid_starts_a_new_lineage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_keeps_k_and_never_applied_or_lkg, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_manifest_is_quarantined, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_manifest_under_wrong_name_is_quarantined,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_state_is_rebuilt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_leftovers_are_cleaned, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_bundle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failures_are_bounded_and_persisted, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_node_labels_and_sources, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failure_at_every_write_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_at_every_write_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_during_first_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_only_and_full_disk_for_real, setup,
                                                teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
