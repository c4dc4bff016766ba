/* SPDX-License-Identifier: Apache-2.0 */
/* Apply: atomic materialization under ROOT/NS/NAME, rollback, removal, and
 * what a hostile manifest, planted symlinks, failures and crashes can do. */

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "apply.h"
#include "fsx.h"
#include "jsonx.h"
#include "manifest.h"
#include "render.h"

static char base[64], root[96], outside[96];

static int setup(void **state) {
        char victim[128];
        int fd;

        snprintf(base, sizeof(base), "/tmp/ballast-apply-XXXXXX");
        assert_non_null(mkdtemp(base));
        snprintf(root, sizeof(root), "%s/root", base);
        snprintf(outside, sizeof(outside), "%s/outside", base);
        assert_int_equal(mkdir(outside, 0755), 0);
        /* Something a hostile layout would like to overwrite. */
        snprintf(victim, sizeof(victim), "%s/victim", outside);
        fd = open(victim, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "original", 8), 8);
        close(fd);
        return 0;
}

static int teardown(void **state) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        apply_fault_hook = NULL;
        assert_int_equal(fsx_rm_rf_at(tmp, base + 5), 0);
        return 0;
}

/* The outside directory still holds only "victim", unchanged. */
static void outside_untouched(void) {
        char p[160], buf[16] = "";
        size_t n = 0;
        DIR *d = opendir(outside);
        int fd;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        assert_int_equal(n, 1);
        snprintf(p, sizeof(p), "%s/victim", outside);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), 8);
        close(fd);
        assert_string_equal(buf, "original");
}

/* A verified manifest of prod/web at @rev with @files_json as spec.files. */
static manifest *mkm(int64_t rev, const char *files_json) {
        static const render_identity id = {.namespace = "prod", .name = "web", .uid = "u-1"};
        _cleanup_(render_result_freep) render_result *res = NULL;
        _cleanup_json_ json_object *spec = NULL;
        _cleanup_free_ char *s = NULL;
        manifest *m = NULL;
        err_info e;

        assert_true(asprintf(&s, "{\"files\":%s}", files_json) > 0);
        assert_int_equal(jsonx_parse(s, strlen(s), &spec, NULL), 0);
        err_info_clear(&e);
        if (render_bundle(spec, &id, rev, &res, &e) < 0)
                fail_msg("render: %s", e.message);
        assert_int_equal(
                manifest_parse(res->manifest, res->manifest_len, res->digest, NULL, &m, &e), 0);
        return m;
}

static const char FILES1[] = "[{\"path\":\"app.conf\",\"content\":\"port=80\\n\"},"
                             "{\"path\":\"secret.key\",\"content\":\"k\\u0000ey\",\"mode\":384},"
                             "{\"path\":\"conf.d/a.conf\",\"content\":\"a\"},"
                             "{\"path\":\"conf.d/sub/run.sh\",\"content\":\"#!/bin/sh\\n\","
                             "\"mode\":493}]";
static const char FILES2[] = "[{\"path\":\"app.conf\",\"content\":\"port=8080\\n\"},"
                             "{\"path\":\"conf.d/a.conf\",\"content\":\"a2\"},"
                             "{\"path\":\"new.conf\",\"content\":\"\"}]";
static const char FILES3[] = "[{\"path\":\"app.conf\",\"content\":\"port=3\\n\"}]";

static void bpath(char *buf, size_t size, const char *rel) {
        snprintf(buf, size, "%s/prod/web/%s", root, rel);
}

/* Reads ROOT/prod/web/@rel (following the links, as an application does). */
static char *read_rel(const char *rel, size_t *ret_len) {
        char p[1024];
        char *data = NULL;
        size_t len = 0;
        int r;

        bpath(p, sizeof(p), rel);
        r = fsx_read_file(AT_FDCWD, p, 1 << 20, &data, &len);
        if (r < 0)
                return NULL;
        if (ret_len)
                *ret_len = len;
        return data;
}

static size_t count_tree(const char *path) {
        size_t n = 0;
        DIR *d = opendir(path);

        if (!d)
                return 0;
        for (struct dirent *de; (de = readdir(d));) {
                char p[1024];
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
                assert_int_equal(lstat(p, &st), 0);
                if (S_ISDIR(st.st_mode))
                        n += count_tree(p);
                else
                        n++;
        }
        closedir(d);
        return n;
}

/* What "..data" points at is exactly @m: content, mode, nothing else. */
static bool data_is(const manifest *m) {
        char p[1024];

        for (size_t i = 0; i < m->n_files; i++) {
                _cleanup_free_ char *rel = NULL, *data = NULL;
                struct stat st;
                size_t len = 0;

                assert_true(asprintf(&rel, "..data/%s", m->files[i].path) > 0);
                data = read_rel(rel, &len);
                if (!data || len != m->files[i].size || memcmp(data, m->files[i].content, len) != 0)
                        return false;
                bpath(p, sizeof(p), rel);
                if (stat(p, &st) < 0 || (st.st_mode & 0777) != m->files[i].mode)
                        return false;
        }
        bpath(p, sizeof(p), "..data/");
        return count_tree(p) == m->n_files;
}

static size_t count_entries(const char *prefix) {
        char p[256];
        size_t n = 0;
        DIR *d;

        bpath(p, sizeof(p), "");
        d = opendir(p);
        if (!d)
                return 0;
        for (struct dirent *de; (de = readdir(d));)
                if (startswith(de->d_name, prefix) && !streq(de->d_name, ".") &&
                    !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static bool is_link_to(const char *rel, const char *want) {
        char p[1024], have[512];
        ssize_t n;

        bpath(p, sizeof(p), rel);
        n = readlink(p, have, sizeof(have) - 1);
        if (n < 0)
                return false;
        have[n] = '\0';
        return streq(have, want);
}

static void apply_ok(const manifest *m) {
        _cleanup_free_ char *name = NULL, *path = NULL;
        err_info e;

        err_info_clear(&e);
        if (apply_stage(root, m, &name, &path, &e) < 0)
                fail_msg("stage: %s", e.message);
        if (apply_swap(root, m->namespace, m->name, name, NULL, &e) < 0)
                fail_msg("swap: %s", e.message);
}

static void test_stage_and_swap_give_exact_files(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(1, FILES1);
        _cleanup_free_ char *name = NULL, *path = NULL, *prev = NULL, *app = NULL, *key = NULL;
        char p[1024], want[512];
        apply_live live;
        struct stat st;
        size_t len = 0;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(apply_current(root, "prod", "web", &live, &e), -ENOENT);
        assert_int_equal(apply_stage(root, m, &name, &path, &e), 0);
        snprintf(want, sizeof(want), "..rev-1-%.12s", m->digest + 7);
        assert_string_equal(name, want);
        snprintf(want, sizeof(want), "%s/prod/web/..rev-1-%.12s", root, m->digest + 7);
        assert_string_equal(path, want);
        /* Staged, not live: a check command can read it, nothing else changed. */
        assert_int_equal(apply_current(root, "prod", "web", &live, &e), -ENOENT);
        snprintf(p, sizeof(p), "%s/conf.d/sub/run.sh", path);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0755);
        assert_int_equal(apply_verify(root, m, &e), -ENOENT);

        assert_int_equal(apply_swap(root, "prod", "web", name, &prev, &e), 0);
        assert_null(prev);
        assert_true(is_link_to("..data", name));
        assert_true(is_link_to("app.conf", "..data/app.conf"));
        assert_true(is_link_to("secret.key", "..data/secret.key"));
        assert_true(is_link_to("conf.d", "..data/conf.d"));
        assert_true(data_is(m));
        app = read_rel("app.conf", &len);
        assert_string_equal(app, "port=80\n");
        key = read_rel("secret.key", &len);
        assert_int_equal(len, 4);
        assert_memory_equal(key, "k\0ey", 4);
        bpath(p, sizeof(p), "secret.key");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_true(S_ISREG(st.st_mode));
        bpath(p, sizeof(p), "conf.d/sub/run.sh");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0755);

        assert_int_equal(apply_current(root, "prod", "web", &live, &e), 0);
        assert_int_equal(live.revision, 1);
        assert_memory_equal(live.digest_prefix, m->digest + 7, 12);
        assert_string_equal(live.dir, name);
        assert_int_equal(apply_verify(root, m, &e), 0);
        /* Only what the layout says. */
        assert_int_equal(count_entries(""), 5); /* ..data, ..rev-1-*, three links */
}

static void test_updates_change_links_and_collect_old_revisions(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        _cleanup_(manifest_freep) manifest *m3 = mkm(3, FILES3);
        _cleanup_free_ char *name = NULL, *prev = NULL, *s = NULL;
        char p[1024];
        err_info e;

        apply_ok(m1);
        err_info_clear(&e);
        assert_int_equal(apply_stage(root, m2, &name, NULL, &e), 0);
        assert_int_equal(apply_swap(root, "prod", "web", name, &prev, &e), 0);
        assert_non_null(prev);
        assert_true(startswith(prev, "..rev-1-"));
        assert_true(data_is(m2));
        s = read_rel("app.conf", NULL);
        assert_string_equal(s, "port=8080\n");
        assert_true(is_link_to("new.conf", "..data/new.conf"));
        bpath(p, sizeof(p), "secret.key");
        assert_int_equal(access(p, F_OK), -1); /* gone with the revision that had it */
        assert_int_equal(errno, ENOENT);
        assert_int_equal(count_entries("..rev-"), 2); /* 2 live, 1 kept for rollback */
        assert_int_equal(apply_verify(root, m2, &e), 0);
        assert_int_equal(apply_verify(root, m1, &e), -ESTALE);

        apply_ok(m3);
        assert_true(data_is(m3));
        assert_int_equal(count_entries("..rev-"), 2); /* 3 and 2; 1 collected */
        assert_int_equal(count_entries("..rev-1-"), 0);
        assert_int_equal(count_entries(""), 4); /* ..data, two revisions, app.conf */
        bpath(p, sizeof(p), "conf.d");
        assert_int_equal(access(p, F_OK), -1);
        outside_untouched();
}

static void test_rollback_restores_exact_previous_content(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        _cleanup_(manifest_freep) manifest *m3 = mkm(3, FILES3);
        err_info e;

        apply_ok(m1);
        apply_ok(m2);
        apply_ok(m3);
        /* 2 is still there (kept); reused. */
        err_info_clear(&e);
        assert_int_equal(apply_rollback(root, m2, &e), 0);
        assert_true(data_is(m2));
        assert_int_equal(apply_verify(root, m2, &e), 0);
        /* 1 was collected long ago: staged again from the manifest. */
        assert_int_equal(apply_rollback(root, m1, &e), 0);
        assert_true(data_is(m1));
        assert_int_equal(apply_verify(root, m1, &e), 0);
        assert_true(is_link_to("secret.key", "..data/secret.key"));

        /* A kept directory someone edited is not reused. */
        apply_ok(m3);
        {
                char p[1024];
                int fd;

                snprintf(p, sizeof(p), "%s/prod/web/..rev-1-%.12s/app.conf", root, m1->digest + 7);
                fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "tampered", 8), 8);
                close(fd);
        }
        assert_int_equal(apply_rollback(root, m1, &e), 0);
        assert_true(data_is(m1));
        /* Rolling back to what is live is harmless. */
        assert_int_equal(apply_rollback(root, m1, &e), 0);
        assert_true(data_is(m1));
}

static void test_restaging_the_live_revision_uses_the_other_name(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(4, FILES3);
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(apply_stage(root, m, &a, NULL, &e), 0);
        assert_int_equal(apply_swap(root, "prod", "web", a, NULL, &e), 0);
        /* The live directory is never written into. */
        assert_int_equal(apply_stage(root, m, &b, NULL, &e), 0);
        assert_false(streq(a, b));
        assert_true(strlen(b) > 2 && streq(b + strlen(b) - 2, ".1"));
        assert_int_equal(apply_swap(root, "prod", "web", b, NULL, &e), 0);
        assert_int_equal(apply_verify(root, m, &e), 0);
        assert_int_equal(apply_stage(root, m, &c, NULL, &e), 0);
        assert_string_equal(c, a);
        assert_int_equal(apply_discard(root, "prod", "web", b, &e), -EBUSY);
        assert_int_equal(apply_discard(root, "prod", "web", c, &e), 0);
        assert_int_equal(apply_discard(root, "prod", "web", "app.conf", &e), -EINVAL);
        assert_int_equal(count_entries("..rev-"), 1);
        assert_int_equal(apply_verify(root, m, &e), 0);
}

/* A manifest built by hand, as if manifest_parse() had a bug. */
static void test_hostile_manifests_cannot_leave_root(void **state) {
        static const char *const paths[] = {
                "../escape", "/abs/x", "a/../../x",         "..data",
                "..data/x",  "a//b",   "../outside/victim", "x/..rev-1-aaaaaaaaaaaa"};
        static const char *const names[][2] = {{"../etc", "web"}, {"prod", "../outside"},
                                               {"prod", "a/b"},   {"prod", ".."},
                                               {"", "web"},       {"prod", "..data"}};
        _cleanup_(manifest_freep) manifest *good = mkm(1, FILES3);
        char p[1024];
        err_info e;

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char *saved = good->files[0].path;

                good->files[0].path = (char *) paths[i];
                err_info_clear(&e);
                assert_int_equal(apply_stage(root, good, NULL, NULL, &e), -EINVAL);
                assert_non_null(strstr(e.message, "refusing unsafe file path"));
                good->files[0].path = saved;
        }
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char *ns = good->namespace, *name = good->name;

                good->namespace = (char *) names[i][0];
                good->name = (char *) names[i][1];
                assert_int_equal(apply_stage(root, good, NULL, NULL, &e), -EINVAL);
                assert_int_equal(apply_rollback(root, good, &e), -EINVAL);
                assert_int_equal(apply_remove(root, names[i][0], names[i][1], &e), -EINVAL);
                assert_int_equal(apply_swap(root, names[i][0], names[i][1], "..rev-1-aaaaaaaaaaaa",
                                            NULL, &e),
                                 -EINVAL);
                good->namespace = ns;
                good->name = name;
        }
        /* A mode with more than permission bits. */
        good->files[0].mode = 04755;
        assert_int_equal(apply_stage(root, good, NULL, NULL, &e), -EINVAL);
        good->files[0].mode = 0644;
        /* Swap to something that is not a revision directory. */
        apply_ok(good);
        assert_int_equal(apply_swap(root, "prod", "web", "../../outside", NULL, &e), -EINVAL);
        assert_int_equal(apply_swap(root, "prod", "web", "app.conf", NULL, &e), -EINVAL);
        bpath(p, sizeof(p), "..rev-9-aaaaaaaaaaaa");
        assert_int_equal(symlink(outside, p), 0);
        assert_int_equal(apply_swap(root, "prod", "web", "..rev-9-aaaaaaaaaaaa", NULL, &e), -ELOOP);
        assert_true(data_is(good));
        outside_untouched();
}

static void plant(const char *rel, const char *target) {
        char p[1024];

        bpath(p, sizeof(p), rel);
        if (symlink(target, p) < 0)
                fail_msg("symlink %s: %m", p);
}

static void test_planted_namespace_and_bundle_links_are_replaced(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(1, FILES1);
        char p[1024];
        apply_live live;
        err_info e;

        /* ROOT/prod -> outside */
        assert_int_equal(mkdir(root, 0755), 0);
        snprintf(p, sizeof(p), "%s/prod", root);
        assert_int_equal(symlink(outside, p), 0);
        err_info_clear(&e);
        assert_int_equal(apply_current(root, "prod", "web", &live, &e), -ELOOP);
        assert_int_equal(apply_verify(root, m, &e), -EUCLEAN);
        apply_ok(m);
        assert_true(data_is(m));
        outside_untouched();

        /* ROOT/prod/web -> outside */
        {
                _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_int_equal(fsx_rm_rf_at(fd, "prod"), 0);
                assert_int_equal(mkdirat(fd, "prod", 0755), 0);
        }
        snprintf(p, sizeof(p), "%s/prod/web", root);
        assert_int_equal(symlink(outside, p), 0);
        apply_ok(m);
        assert_true(data_is(m));
        outside_untouched();
        /* Removing through a planted link removes the link, not the target. */
        {
                _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_int_equal(fsx_rm_rf_at(fd, "prod"), 0);
                assert_int_equal(symlinkat(outside, fd, "prod"), 0);
        }
        assert_int_equal(apply_remove(root, "prod", "web", &e), 0);
        snprintf(p, sizeof(p), "%s/prod", root);
        assert_int_equal(access(p, F_OK), -1);
        outside_untouched();
}

static void test_planted_data_link_is_not_followed(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        _cleanup_free_ char *name = NULL;
        apply_live live;
        char p[1024];
        err_info e;

        apply_ok(m1);
        /* ..data -> the outside directory. */
        bpath(p, sizeof(p), "..data");
        assert_int_equal(unlink(p), 0);
        plant("..data", outside);
        err_info_clear(&e);
        assert_int_equal(apply_current(root, "prod", "web", &live, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "..data is not a symlink to a revision directory"));
        assert_int_equal(apply_verify(root, m1, &e), -EUCLEAN);
        assert_int_equal(apply_discard(root, "prod", "web", "..rev-5-aaaaaaaaaaaa", &e), 0);
        apply_ok(m2);
        assert_true(data_is(m2));
        outside_untouched();

        /* ..data as a real directory full of someone's files. */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0755), 0);
        bpath(p, sizeof(p), "..data/app.conf");
        assert_int_equal(symlink("/etc/passwd", p), 0);
        assert_int_equal(apply_current(root, "prod", "web", &live, &e), -EBADMSG);
        assert_int_equal(apply_stage(root, m1, &name, NULL, &e), 0);
        assert_int_equal(apply_swap(root, "prod", "web", name, NULL, &e), 0);
        assert_true(data_is(m1));
        assert_int_equal(apply_verify(root, m1, &e), 0);
}

static void test_planted_entries_are_replaced_or_refused(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        char p[1024], rev[300];
        err_info e;

        apply_ok(m1);
        /* A top-level link pointed elsewhere, one replaced by a directory,
         * and a stray entry. */
        bpath(p, sizeof(p), "app.conf");
        assert_int_equal(unlink(p), 0);
        snprintf(rev, sizeof(rev), "%s/victim", outside);
        plant("app.conf", rev);
        bpath(p, sizeof(p), "conf.d");
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0755), 0);
        plant("stray", outside);
        err_info_clear(&e);
        assert_int_equal(apply_verify(root, m1, &e), -EUCLEAN);
        assert_non_null(strstr(e.message, "is not a link to ..data/"));
        apply_ok(m2);
        assert_true(is_link_to("app.conf", "..data/app.conf"));
        assert_true(is_link_to("conf.d", "..data/conf.d"));
        bpath(p, sizeof(p), "stray");
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(apply_verify(root, m2, &e), 0);
        outside_untouched();

        /* A file inside the live revision replaced by a symlink. */
        snprintf(rev, sizeof(rev), "..rev-2-%.12s/app.conf", m2->digest + 7);
        bpath(p, sizeof(p), rev);
        assert_int_equal(unlink(p), 0);
        plant(rev, "/etc/passwd");
        assert_int_equal(apply_verify(root, m2, &e), -EUCLEAN);
        assert_non_null(strstr(e.message, "app.conf"));
        /* Repair: re-apply the same revision (into the other name). */
        apply_ok(m2);
        assert_int_equal(apply_verify(root, m2, &e), 0);
        assert_true(data_is(m2));
}

/* Plants conf.d -> outside inside the directory being staged, just before
 * the first file below it is written. */
static const manifest *plant_m;
static int plant_calls;
static int plant_hook(apply_step step) {
        if (step == APPLY_STEP_WRITE_FILE && plant_calls++ == 0) {
                char p[1024];

                snprintf(p, sizeof(p), "%s/prod/web/..rev-%lld-%.12s/conf.d", root,
                         (long long) plant_m->revision, plant_m->digest + 7);
                assert_int_equal(symlink(outside, p), 0);
        }
        return 0;
}

static void test_symlink_raced_into_staging_is_refused(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(1, FILES1);
        err_info e;

        plant_m = m;
        plant_calls = 0;
        apply_fault_hook = plant_hook;
        err_info_clear(&e);
        assert_int_equal(apply_stage(root, m, NULL, NULL, &e), -ELOOP);
        apply_fault_hook = NULL;
        assert_non_null(
                strstr(e.message, "bundle prod/web revision 1: cannot write conf.d/a.conf"));
        outside_untouched();
        /* The next apply starts over cleanly. */
        apply_ok(m);
        assert_true(data_is(m));
        outside_untouched();
}

/* ---- failures and crashes ------------------------------------------------ */

static int fault_at, fault_calls;
static bool fault_crash;

static int fault_hook(apply_step step) {
        if (fault_calls++ != fault_at)
                return 0;
        if (fault_crash)
                _exit(42);
        return -EIO;
}

static void reset_root(void) {
        _cleanup_close_ int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_int_equal(fsx_rm_rf_at(fd, "root"), 0);
}

/* After a failure or crash at some step of applying @m2 over @m1: "..data"
 * names a whole revision, then a clean apply of @m2 leaves exactly @m2 and
 * no leftovers. Returns true if @m2 was already live. */
static bool check_whole_then_recover(const manifest *m1, const manifest *m2) {
        bool is_new;

        is_new = data_is(m2);
        if (!is_new && !data_is(m1))
                fail_msg("after a failure at step %d, ..data is neither revision", fault_at);
        apply_ok(m2);
        assert_int_equal(apply_verify(root, m2, NULL), 0);
        assert_int_equal(count_entries("..data_tmp"), 0);
        assert_int_equal(count_entries("..link_tmp"), 0);
        assert_true(count_entries("..rev-") <= 2);
        assert_int_equal(count_entries(""), 1 + count_entries("..rev-") + 3); /* ..data, 3 links */
        outside_untouched();
        return is_new;
}

static int stage_and_swap(const manifest *m, err_info *e) {
        _cleanup_free_ char *name = NULL;
        int r;

        r = apply_stage(root, m, &name, NULL, e);
        if (r < 0)
                return r;
        return apply_swap(root, m->namespace, m->name, name, NULL, e);
}

static void test_failure_at_every_step(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        unsigned n_old = 0, n_new = 0;

        for (fault_at = 0;; fault_at++) {
                err_info e;
                int r;

                reset_root();
                apply_ok(m1);
                fault_calls = 0;
                fault_crash = false;
                apply_fault_hook = fault_hook;
                err_info_clear(&e);
                r = stage_and_swap(m2, &e);
                apply_fault_hook = NULL;
                if (fault_calls <= fault_at) {
                        assert_int_equal(r, 0);
                        break;
                }
                assert_int_equal(r, -EIO);
                assert_non_null(strstr(e.message, "bundle prod/web"));
                if (check_whole_then_recover(m1, m2))
                        n_new++;
                else
                        n_old++;
        }
        /* Staging 3 files: mkdir, 3 x (write, fsync), 2 directory fsyncs;
         * then the ..data_tmp symlink and its rename: 11 steps leave the
         * old revision live. From the directory fsync after the rename on
         * (then one link added, one removed), the new one: 3 steps. */
        assert_int_equal(n_old, 11);
        assert_int_equal(n_new, 3);
}

static void test_crash_at_every_step(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        unsigned n_old = 0, n_new = 0;

        for (fault_at = 0;; fault_at++) {
                pid_t pid;
                int status;

                reset_root();
                apply_ok(m1);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        fault_calls = 0;
                        fault_crash = true;
                        apply_fault_hook = fault_hook;
                        _exit(stage_and_swap(m2, NULL) < 0 ? 3 : 0);
                }
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status));
                if (WEXITSTATUS(status) == 0) {
                        assert_true(check_whole_then_recover(m1, m2));
                        break;
                }
                assert_int_equal(WEXITSTATUS(status), 42);
                if (check_whole_then_recover(m1, m2))
                        n_new++;
                else
                        n_old++;
        }
        assert_int_equal(n_old, 11);
        assert_int_equal(n_new, 3);
}

static void test_leftovers_of_a_crash_are_ignored_and_cleaned(void **state) {
        _cleanup_(manifest_freep) manifest *m1 = mkm(1, FILES1);
        _cleanup_(manifest_freep) manifest *m2 = mkm(2, FILES2);
        char p[1024], half[64];
        int fd;

        apply_ok(m1);
        /* A crash mid-stage of revision 2 (half its files), and a crash
         * between creating ..data_tmp and the rename. */
        snprintf(half, sizeof(half), "..rev-2-%.12s", m2->digest + 7);
        bpath(p, sizeof(p), half);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/prod/web/%s/app.conf", root, half);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "port=80", 7), 7); /* truncated */
        close(fd);
        plant("..data_tmp", half);
        plant("..link_tmp", "..data/x");
        assert_true(data_is(m1)); /* readers still see revision 1 */

        apply_ok(m2);
        assert_true(data_is(m2));
        assert_int_equal(apply_verify(root, m2, NULL), 0);
        assert_int_equal(count_entries("..data_tmp"), 0);
        assert_int_equal(count_entries("..link_tmp"), 0);
}

static void test_remove(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(1, FILES1);
        char p[1024];
        err_info e;

        err_info_clear(&e);
        assert_int_equal(apply_remove(root, "prod", "web", &e), 0); /* nothing there */
        apply_ok(m);
        /* Another bundle in the namespace stays. */
        snprintf(p, sizeof(p), "%s/prod/other", root);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/prod/..del-old", root); /* an interrupted remove */
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(apply_remove(root, "prod", "web", &e), 0);
        bpath(p, sizeof(p), "");
        assert_int_equal(access(p, F_OK), -1);
        snprintf(p, sizeof(p), "%s/prod/..del-old", root);
        assert_int_equal(access(p, F_OK), -1);
        snprintf(p, sizeof(p), "%s/prod/other", root);
        assert_int_equal(access(p, F_OK), 0);
        assert_int_equal(rmdir(p), 0);
        /* The last bundle takes its namespace directory with it. */
        apply_ok(m);
        assert_int_equal(apply_remove(root, "prod", "web", &e), 0);
        snprintf(p, sizeof(p), "%s/prod", root);
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(apply_current(root, "prod", "web", NULL, &e), -ENOENT);
        outside_untouched();
}

static void test_root_must_be_absolute(void **state) {
        _cleanup_(manifest_freep) manifest *m = mkm(1, FILES3);
        err_info e;

        err_info_clear(&e);
        assert_int_equal(apply_stage("relative/root", m, NULL, NULL, &e), -EINVAL);
        assert_non_null(strstr(e.message, "not an absolute path"));
        assert_int_equal(apply_stage(NULL, m, NULL, NULL, &e), -EINVAL);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_stage_and_swap_give_exact_files),
                T(test_updates_change_links_and_collect_old_revisions),
                T(test_rollback_restores_exact_previous_content),
                T(test_restaging_the_live_revision_uses_the_other_name),
                T(test_hostile_manifests_cannot_leave_root),
                T(test_planted_namespace_and_bundle_links_are_replaced),
                T(test_planted_data_link_is_not_followed),
                T(test_planted_entries_are_replaced_or_refused),
                T(test_symlink_raced_into_staging_is_refused),
                T(test_failure_at_every_step),
                T(test_crash_at_every_step),
                T(test_leftovers_of_a_crash_are_ignored_and_cleaned),
                T(test_remove),
                T(test_root_must_be_absolute),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
