/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The objstore front (objstore.c: key rules, location strings, callbacks,
 * pagination) with the file:// backend (objstore-file.c) in a temporary
 * directory: put/get/304/head/list/delete, create-only, hostile keys and
 * planted symlinks, and crash-safety of every write step through the fsx
 * fault hook.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "fsx.h"
#include "hash.h"
#include "loop.h"
#include "objstore.h"
#include "s3.h"

typedef struct env {
        char dir[64];
        sd_event *e;
        objstore *s;
} env;

static int env_setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        _cleanup_free_ char *loc = NULL;
        http_code_counts codes = {.n = {[200] = 1}};
        err_info err;

        assert_non_null(v);
        strcpy(v->dir, "/tmp/test-objstore-XXXXXX");
        assert_non_null(mkdtemp(v->dir));
        assert_int_equal(sd_event_new(&v->e), 0);
        assert_true(asprintf(&loc, "file://%s", v->dir) > 0);
        if (objstore_open(v->e, loc, NULL, &v->s, &err) < 0)
                fail_msg("objstore_open: %s", err.message);
        assert_string_equal(objstore_backend_name(v->s), "file");
        /* No HTTP: no counts, and *ret zeroed. */
        assert_false(objstore_get_http_codes(v->s, &codes));
        assert_int_equal(codes.n[200], 0);
        *state = v;
        return 0;
}

static int env_teardown(void **state) {
        env *v = *state;

        fsx_fault_hook = NULL;
        objstore_free(v->s);
        sd_event_unref(v->e);
        {
                _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_int_equal(fsx_rm_rf_at(tmp, v->dir + strlen("/tmp/")), 0);
        }
        free(v);
        return 0;
}

static char *read_path(const env *v, const char *rel) {
        _cleanup_free_ char *p = NULL;
        char *data = NULL;
        size_t len;

        assert_true(asprintf(&p, "%s/%s", v->dir, rel) > 0);
        if (fsx_read_file(AT_FDCWD, p, 1 << 20, &data, &len) < 0)
                return NULL;
        return data;
}

/* Counts ".#" temporaries anywhere under the store. */
static unsigned count_temps(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                _cleanup_free_ char *sub = NULL;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (startswith(de->d_name, ".#"))
                        n++;
                if (de->d_type == DT_DIR) {
                        assert_true(asprintf(&sub, "%s/%s", dir, de->d_name) > 0);
                        n += count_temps(sub);
                }
        }
        closedir(d);
        return n;
}

/* ---- front: key rules and locations ------------------------------------------ */

static void test_key_rules(void **state) {
        static const char *const good[] = {
                "a", "a/b/c.json", "nodes/n-1/bundle.json", "a..b", ".hidden", "a/.b", "ü/ß"};
        static const char *const bad[] = {"",       "/a",  "a/",  "a//b",  ".",    "..",  "a/../b",
                                          "../etc", "a/.", ".#x", "a/.#x", "a\nb", "a\tb"};

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!objstore_key_is_valid(good[i]))
                        fail_msg("'%s' should be valid", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (objstore_key_is_valid(bad[i]))
                        fail_msg("'%s' should be invalid", bad[i]);
        assert_false(objstore_key_is_valid(NULL));

        assert_true(objstore_prefix_is_valid(""));
        assert_true(objstore_prefix_is_valid("a/"));
        assert_true(objstore_prefix_is_valid("a/b"));
        assert_true(objstore_prefix_is_valid("a/.")); /* a prefix of "a/.x" */
        assert_false(objstore_prefix_is_valid("/a"));
        assert_false(objstore_prefix_is_valid("a//"));
        assert_false(objstore_prefix_is_valid("../"));
        assert_false(objstore_prefix_is_valid("a/../"));
        assert_false(objstore_prefix_is_valid("a\n"));
}

static void test_location_s3(void **state) {
        objstore_location l;
        err_info err;

        assert_int_equal(objstore_location_parse("s3://ballast", &l, &err), 0);
        assert_int_equal(l.kind, OBJSTORE_S3);
        assert_string_equal(l.bucket, "ballast");
        assert_string_equal(l.prefix, "");
        assert_null(l.endpoint);
        assert_null(l.region);
        assert_int_equal(l.path_style, -1);
        assert_int_equal(l.create_mode, -1);
        objstore_location_done(&l);

        assert_int_equal(objstore_location_parse(
                                 "s3://my-bucket/cluster/a/?endpoint=http%3A%2F%2F127.0.0.1%3A9000"
                                 "&region=eu-west-1&path_style=false&create_mode=auto",
                                 &l, &err),
                         0);
        assert_string_equal(l.bucket, "my-bucket");
        assert_string_equal(l.prefix, "cluster/a/");
        assert_string_equal(l.endpoint, "http://127.0.0.1:9000");
        assert_string_equal(l.region, "eu-west-1");
        assert_int_equal(l.path_style, 0);
        assert_int_equal(l.create_mode, S3_CREATE_AUTO);
        objstore_location_done(&l);

        /* Unescaped URL values work too; "&&" is harmless. */
        assert_int_equal(
                objstore_location_parse(
                        "s3://b12/p?endpoint=https://s3.example:8443/base&&path_style=1", &l, &err),
                0);
        assert_string_equal(l.prefix, "p/");
        assert_string_equal(l.endpoint, "https://s3.example:8443/base");
        assert_int_equal(l.path_style, 1);
        objstore_location_done(&l);
}

static void test_location_file(void **state) {
        objstore_location l;
        err_info err;

        assert_int_equal(objstore_location_parse("file:///var/lib/ballast-store/", &l, &err), 0);
        assert_int_equal(l.kind, OBJSTORE_FILE);
        assert_string_equal(l.path, "/var/lib/ballast-store");
        objstore_location_done(&l);
        assert_int_equal(objstore_location_parse("file://localhost/srv/a%20b", &l, &err), 0);
        assert_string_equal(l.path, "/srv/a b");
        objstore_location_done(&l);
}

static void test_location_errors(void **state) {
        static const struct {
                const char *s, *needle;
        } cases[] = {
                {"", "empty"},
                {"http://bucket", "must start with s3:// or file://"},
                {"S3://bucket", "must start with s3://"},
                {"s3://", "names no bucket"},
                {"s3:///prefix", "names no bucket"},
                {"s3://Bad_Bucket", "bucket name 'Bad_Bucket' is invalid"},
                {"s3://b12/a/../b", "prefix 'a/../b' is invalid"},
                {"s3://b12//a", "prefix"},
                {"s3://b12?foo=1", "unknown location parameter 'foo'"},
                {"s3://b12?region", "has no value"},
                {"s3://b12?region=", "region '' is invalid"},
                {"s3://b12?region=a&region=b", "repeated"},
                {"s3://b12?path_style=maybe", "expected true or false"},
                {"s3://b12?create_mode=yolo", "expected conditional, auto or head"},
                {"s3://b12?endpoint=ftp://x", "must start with http:// or https://"},
                {"s3://b12?endpoint=%zz", "bad %-escape"},
                {"s3://b12?access_key=AKIA", "credentials do not belong"},
                {"s3://b12?secret=x", "credentials do not belong"},
                {"s3://b12 x", "spaces"},
                {"file://relative/dir", "file:///ABSOLUTE/PATH"},
                {"file:///", "other than /"},
                {"file:///a/../etc", "'.' or '..'"},
                {"file:///a//b", "empty"},
                {"file:///a?x=1", "no query"},
                {"file:///a%00b", "bad %-escape"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                objstore_location l = {};
                err_info err;

                err_info_clear(&err);
                if (objstore_location_parse(cases[i].s, &l, &err) != -EINVAL)
                        fail_msg("'%s' was accepted", cases[i].s);
                if (!strstr(err.message, cases[i].needle))
                        fail_msg("'%s': message '%s' lacks '%s'", cases[i].s, err.message,
                                 cases[i].needle);
                assert_null(l.bucket);
                assert_null(l.path);
        }
}

static void test_open_errors(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        objstore *s = NULL;
        err_info err;

        assert_int_equal(sd_event_new(&e), 0);
        err_info_clear(&err);
        assert_int_equal(objstore_open(e, "file:///nonexistent/ballast-store", NULL, &s, &err),
                         -ENOENT);
        assert_non_null(strstr(err.message, "/nonexistent/ballast-store"));
        assert_null(s);
        assert_int_equal(objstore_open(e, "gs://bucket", NULL, &s, &err), -EINVAL);
}

/* ---- the file backend ----------------------------------------------------------- */

static void test_put_get_head(void **state) {
        env *v = *state;
        _cleanup_(objstore_object_freep) objstore_object *p = NULL, *g = NULL, *h = NULL;
        _cleanup_free_ char *disk = NULL;
        char hex[HASH_SHA256_HEX_LEN + 1], want[HASH_SHA256_HEX_LEN + 3];
        err_info err;

        assert_int_equal(
                objstore_put_sync(v->s, "nodes/n1/bundle.json", "{\"v\":1}", 7, NULL, &p, &err), 0);
        assert_int_equal(hash_sha256_hex("{\"v\":1}", 7, hex), 0);
        snprintf(want, sizeof(want), "\"%s\"", hex);
        assert_string_equal(p->etag, want);
        assert_int_equal(p->size, 7);

        disk = read_path(v, "nodes/n1/bundle.json");
        assert_string_equal(disk, "{\"v\":1}");

        assert_int_equal(objstore_get_sync(v->s, "nodes/n1/bundle.json", NULL, &g, &err), 0);
        assert_string_equal(g->data, "{\"v\":1}");
        assert_int_equal(g->size, 7);
        assert_string_equal(g->etag, want);
        assert_non_null(g->last_modified);
        assert_non_null(strstr(g->last_modified, " GMT"));
        assert_false(g->not_modified);

        assert_int_equal(objstore_head_sync(v->s, "nodes/n1/bundle.json", &h, &err), 0);
        assert_null(h->data);
        assert_int_equal(h->size, 7);
        assert_string_equal(h->etag, want);

        /* An empty object. */
        objstore_object_free(g);
        g = NULL;
        assert_int_equal(objstore_put_sync(v->s, "empty", "", 0, NULL, NULL, &err), 0);
        assert_int_equal(objstore_get_sync(v->s, "empty", NULL, &g, &err), 0);
        assert_string_equal(g->data, "");
        assert_int_equal(g->size, 0);
}

static void test_not_modified(void **state) {
        env *v = *state;
        _cleanup_(objstore_object_freep) objstore_object *p = NULL, *g = NULL, *g2 = NULL,
                                                         *g3 = NULL;
        err_info err;

        assert_int_equal(objstore_put_sync(v->s, "k", "one", 3, NULL, &p, &err), 0);
        assert_int_equal(objstore_get_sync(v->s, "k", p->etag, &g, &err), 0);
        assert_true(g->not_modified);
        assert_null(g->data);
        assert_string_equal(g->etag, p->etag);

        /* A weak or unquoted form of the same tag matches too. */
        {
                _cleanup_free_ char *weak = NULL;

                assert_true(asprintf(&weak, "W/%s", p->etag) > 0);
                assert_int_equal(objstore_get_sync(v->s, "k", weak, &g3, &err), 0);
                assert_true(g3->not_modified);
        }

        /* After a change the old tag no longer matches. */
        assert_int_equal(objstore_put_sync(v->s, "k", "two", 3, NULL, NULL, &err), 0);
        assert_int_equal(objstore_get_sync(v->s, "k", p->etag, &g2, &err), 0);
        assert_false(g2->not_modified);
        assert_string_equal(g2->data, "two");
        assert_string_not_equal(g2->etag, p->etag);
}

static void test_missing_and_not_objects(void **state) {
        env *v = *state;
        err_info err;

        err_info_clear(&err);
        assert_int_equal(objstore_get_sync(v->s, "nope", NULL, NULL, &err), -ENOENT);
        assert_non_null(strstr(err.message, "nope"));
        assert_int_equal(objstore_head_sync(v->s, "no/such/dir/x", NULL, &err), -ENOENT);
        /* A directory is not an object; a file is not a directory. */
        assert_int_equal(objstore_put_sync(v->s, "d/x", "1", 1, NULL, NULL, &err), 0);
        assert_int_equal(objstore_get_sync(v->s, "d", NULL, NULL, &err), -ENOENT);
        assert_int_equal(objstore_get_sync(v->s, "d/x/y", NULL, NULL, &err), -ENOENT);
        assert_true(objstore_put_sync(v->s, "d/x/y", "1", 1, NULL, NULL, &err) < 0);
}

static void test_delete(void **state) {
        env *v = *state;
        err_info err;

        assert_int_equal(objstore_put_sync(v->s, "a/b", "x", 1, NULL, NULL, &err), 0);
        assert_int_equal(objstore_delete_sync(v->s, "a/b", &err), 0);
        assert_int_equal(objstore_get_sync(v->s, "a/b", NULL, NULL, &err), -ENOENT);
        /* Idempotent: a missing key, a missing directory, a directory. */
        assert_int_equal(objstore_delete_sync(v->s, "a/b", &err), 0);
        assert_int_equal(objstore_delete_sync(v->s, "zz/top", &err), 0);
        assert_int_equal(objstore_delete_sync(v->s, "a", &err), 0);
}

static void test_create_only(void **state) {
        env *v = *state;
        _cleanup_(objstore_object_freep) objstore_object *p = NULL, *g = NULL;
        objstore_put_opts co = {.create_only = true};
        err_info err;

        assert_int_equal(objstore_put_sync(v->s, "locks/a", "first", 5, &co, &p, &err), 0);
        assert_non_null(p->etag);
        err_info_clear(&err);
        assert_int_equal(objstore_put_sync(v->s, "locks/a", "second", 6, &co, NULL, &err), -EEXIST);
        assert_string_equal(err.reason, "PreconditionFailed");
        assert_int_equal(objstore_get_sync(v->s, "locks/a", NULL, &g, &err), 0);
        assert_string_equal(g->data, "first");
        assert_int_equal(count_temps(v->dir), 0);
        /* A plain put still overwrites. */
        assert_int_equal(objstore_put_sync(v->s, "locks/a", "third", 5, NULL, NULL, &err), 0);
}

static void test_list_sorted_paginated(void **state) {
        env *v = *state;
        static const char *const keys[] = {"b", "a/b", "a-b", "a/a/z", "c/d/e/f", "ab", "a0"};
        /* strcmp order: '-' (0x2d) < '/' (0x2f) < '0' (0x30) < 'b'. */
        static const char *const sorted[] = {"a-b", "a/a/z", "a/b", "a0", "ab", "b", "c/d/e/f"};
        objstore_entry *e = NULL;
        size_t n = 0;
        err_info err;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                assert_int_equal(objstore_put_sync(v->s, keys[i], keys[i], strlen(keys[i]), NULL,
                                                   NULL, &err),
                                 0);
        /* Noise the listing must skip: a temporary and a symlink. */
        {
                _cleanup_free_ char *tmp = NULL, *lnk = NULL;

                assert_true(asprintf(&tmp, "%s/.#b.abc123", v->dir) > 0);
                assert_true(asprintf(&lnk, "%s/link", v->dir) > 0);
                assert_int_equal(close(open(tmp, O_CREAT | O_WRONLY, 0644)), 0);
                assert_int_equal(symlink("/etc/passwd", lnk), 0);
        }

        for (size_t page = 1; page <= 8; page++) {
                assert_int_equal(objstore_list_sync(v->s, NULL, page, &e, &n, &err), 0);
                assert_int_equal(n, ELEMENTSOF(sorted));
                for (size_t i = 0; i < n; i++) {
                        assert_string_equal(e[i].key, sorted[i]);
                        assert_int_equal(e[i].size, strlen(sorted[i]));
                        assert_non_null(e[i].etag);
                }
                objstore_entries_free(e, n);
        }

        assert_int_equal(objstore_list_sync(v->s, "a/", 2, &e, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].key, "a/a/z");
        assert_string_equal(e[1].key, "a/b");
        objstore_entries_free(e, n);

        assert_int_equal(objstore_list_sync(v->s, "a", 0, &e, &n, &err), 0);
        assert_int_equal(n, 5);
        objstore_entries_free(e, n);

        assert_int_equal(objstore_list_sync(v->s, "c/d/e", 0, &e, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].key, "c/d/e/f");
        objstore_entries_free(e, n);

        assert_int_equal(objstore_list_sync(v->s, "zzz", 0, &e, &n, &err), 0);
        assert_int_equal(n, 0);
        objstore_entries_free(e, n);

        assert_int_equal(objstore_list_sync(v->s, "../", 0, &e, &n, &err), -EINVAL);
}

typedef struct cb_state {
        bool done;
        int r;
        unsigned pages;
        size_t entries;
        int stop_at;
        objstore_object *obj;
} cb_state;

static void on_done(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                    void *userdata) {
        cb_state *st = userdata;

        st->done = true;
        st->r = r;
        if (obj) {
                st->obj = calloc(1, sizeof(*obj));
                *st->obj = *obj;
                *obj = (objstore_object){};
        }
}

static int on_page(objstore_op *op, objstore_entry *e, size_t n, void *userdata) {
        cb_state *st = userdata;

        st->pages++;
        st->entries += n;
        return (int) st->pages == st->stop_at ? 1 : 0;
}

static void never(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                  void *userdata) {
        fail_msg("callback of a cancelled op");
}

static void test_async_semantics(void **state) {
        env *v = *state;
        cb_state st = {};
        objstore_op *op = NULL;
        err_info err;

        /* The callback runs from the event loop, never inside the call. */
        assert_int_equal(objstore_put(v->s, "x", "1", 1, NULL, on_done, &st, &op), 0);
        assert_non_null(op);
        assert_false(st.done);
        assert_int_equal(loop_run_until(v->e, &st.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(st.r, 0);
        assert_non_null(st.obj);
        objstore_object_free(st.obj);

        /* Cancelled: no callback, and the write already happened. */
        assert_int_equal(objstore_get(v->s, "x", NULL, never, NULL, &op), 0);
        objstore_op_cancel(op);
        assert_true(sd_event_run(v->e, 10 * USEC_PER_MSEC) >= 0);

        /* A listing stopped after the first page. */
        for (char k = 'a'; k <= 'e'; k++)
                assert_int_equal(
                        objstore_put_sync(v->s, (char[]){'p', '/', k, 0}, "1", 1, NULL, NULL, &err),
                        0);
        st = (cb_state){.stop_at = 1};
        assert_int_equal(objstore_list(v->s, "p/", 2, on_page, on_done, &st, NULL), 0);
        assert_int_equal(loop_run_until(v->e, &st.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(st.r, 0);
        assert_int_equal(st.pages, 1);
        assert_int_equal(st.entries, 2);

        st = (cb_state){.stop_at = -1};
        assert_int_equal(objstore_list(v->s, "p/", 2, on_page, on_done, &st, NULL), 0);
        assert_int_equal(loop_run_until(v->e, &st.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(st.pages, 3);
        assert_int_equal(st.entries, 5);

        /* Pending ops are dropped by objstore_free() in the teardown, without
         * callbacks (and without leaks, under ASan). */
        assert_int_equal(objstore_get(v->s, "x", NULL, never, NULL, NULL), 0);
        assert_int_equal(objstore_list(v->s, NULL, 1, on_page, never, NULL, NULL), 0);
}

static void test_hostile_keys(void **state) {
        env *v = *state;
        static const char *const bad[] = {"../escape", "/etc/passwd", "a/../../x", "a//b",
                                          ".#tmp",     "a/.#b",       "x\n",       ""};
        _cleanup_free_ char *outside = NULL, *lnk = NULL, *flnk = NULL, *probe = NULL;
        _cleanup_free_ char *target = NULL;
        err_info err;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(objstore_put_sync(v->s, bad[i], "x", 1, NULL, NULL, &err),
                                 -EINVAL);
                assert_int_equal(objstore_get_sync(v->s, bad[i], NULL, NULL, &err), -EINVAL);
                assert_int_equal(objstore_head_sync(v->s, bad[i], NULL, &err), -EINVAL);
                assert_int_equal(objstore_delete_sync(v->s, bad[i], &err), -EINVAL);
        }
        assert_int_equal(objstore_put_sync(v->s, NULL, "x", 1, NULL, NULL, &err), -EINVAL);

        /* Symlinks planted in the store lead nowhere. */
        assert_true(asprintf(&outside, "%s-outside", v->dir) > 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        assert_true(asprintf(&lnk, "%s/dirlink", v->dir) > 0);
        assert_true(asprintf(&flnk, "%s/filelink", v->dir) > 0);
        assert_int_equal(symlink(outside, lnk), 0);
        assert_true(asprintf(&target, "%s/target", outside) > 0);
        assert_int_equal(close(open(target, O_CREAT | O_WRONLY, 0644)), 0);
        assert_int_equal(symlink(target, flnk), 0);

        assert_int_equal(objstore_put_sync(v->s, "dirlink/x", "pwned", 5, NULL, NULL, &err),
                         -ELOOP);
        assert_int_equal(objstore_put_sync(v->s, "dirlink/x", "pwned", 5,
                                           &(objstore_put_opts){.create_only = true}, NULL, &err),
                         -ELOOP);
        assert_true(asprintf(&probe, "%s/x", outside) > 0);
        assert_int_equal(access(probe, F_OK), -1);
        assert_true(objstore_get_sync(v->s, "filelink", NULL, NULL, &err) < 0);
        assert_true(objstore_get_sync(v->s, "dirlink/x", NULL, NULL, &err) < 0);
        /* Deleting through the link does not touch the target either (the
         * key does not exist in the store, so this "succeeds"). */
        assert_int_equal(close(open(probe, O_CREAT | O_WRONLY, 0644)), 0);
        (void) objstore_delete_sync(v->s, "dirlink/x", &err);
        assert_int_equal(access(probe, F_OK), 0);
        assert_int_equal(objstore_delete_sync(v->s, "filelink", &err), 0);
        assert_int_equal(access(target, F_OK), 0);
        unlink(probe);
        unlink(target);
        rmdir(outside);
}

static void test_size_limit(void **state) {
        env *v = *state;
        _cleanup_(objstore_object_freep) objstore_object *o = NULL;
        objstore *small = NULL;
        err_info err;

        assert_int_equal(objstore_put_sync(v->s, "big", "0123456789", 10, NULL, NULL, &err), 0);
        assert_int_equal(objstore_file_new(v->e, v->dir, &(objstore_config){.max_object_size = 4},
                                           &small, &err),
                         0);
        assert_int_equal(objstore_get_sync(small, "big", NULL, NULL, &err), -EFBIG);
        assert_int_equal(objstore_put_sync(small, "ok", "abcd", 4, NULL, NULL, &err), 0);
        assert_int_equal(objstore_get_sync(small, "ok", NULL, &o, &err), 0);
        assert_string_equal(o->data, "abcd");
        objstore_free(small);
}

/* ---- crash safety ------------------------------------------------------------------ */

static fsx_step fail_step;

static int fail_at(fsx_step step) {
        return step == fail_step ? -EIO : 0;
}

static void test_atomic_writes(void **state) {
        env *v = *state;
        err_info err;

        for (fsx_step step = 0; step < _FSX_STEP_MAX; step++) {
                _cleanup_free_ char *disk = NULL, *fresh = NULL;
                char key[32];

                assert_int_equal(objstore_put_sync(v->s, "dir/k", "old", 3, NULL, NULL, &err), 0);
                fail_step = step;
                fsx_fault_hook = fail_at;
                assert_int_equal(objstore_put_sync(v->s, "dir/k", "new!", 4, NULL, NULL, &err),
                                 -EIO);
                snprintf(key, sizeof(key), "dir/fresh%d", (int) step);
                assert_int_equal(objstore_put_sync(v->s, key, "new!", 4,
                                                   &(objstore_put_opts){.create_only = true}, NULL,
                                                   &err),
                                 -EIO);
                fsx_fault_hook = NULL;

                /* Whole old content, or (when only the final directory
                 * fsync failed) whole new content; never a mix, no temps. */
                disk = read_path(v, "dir/k");
                fresh = read_path(v, key);
                assert_non_null(disk);
                if (step == FSX_STEP_FSYNC_DIR) {
                        assert_string_equal(disk, "new!");
                        assert_string_equal(fresh, "new!");
                } else {
                        assert_string_equal(disk, "old");
                        assert_null(fresh);
                }
                assert_int_equal(count_temps(v->dir), 0);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key_rules),
                cmocka_unit_test(test_location_s3),
                cmocka_unit_test(test_location_file),
                cmocka_unit_test(test_location_errors),
                cmocka_unit_test(test_open_errors),
                cmocka_unit_test_setup_teardown(test_put_get_head, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_not_modified, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_missing_and_not_objects, env_setup,
                                                env_teardown),
                cmocka_unit_test_setup_teardown(test_delete, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_create_only, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_list_sorted_paginated, env_setup,
                                                env_teardown),
                cmocka_unit_test_setup_teardown(test_async_semantics, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_hostile_keys, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_size_limit, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_atomic_writes, env_setup, env_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
