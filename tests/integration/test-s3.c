/* SPDX-License-Identifier: Apache-2.0 */

/*
 * s3.c and the objstore S3 backend against the real S3 server of the local
 * control plane (versitygw, started by tests/cluster/cluster.sh up; its
 * build/cluster/env exports BALLAST_S3_ENDPOINT, BALLAST_S3_BUCKET,
 * BALLAST_S3_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Every run
 * works under its own prefix and deletes what it wrote.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <time.h>

#include "loop.h"
#include "objstore.h"
#include "s3.h"

static const char *endpoint, *bucket, *region;
static char prefix[64];
static sd_event *event;
static s3_client *s3;

static s3_client *client_new(const char *secret, s3_create_mode mode) {
        s3_client *c = NULL;
        err_info err;

        err_info_clear(&err);
        if (s3_client_new(event, NULL,
                          &(s3_config){.endpoint = endpoint,
                                       .bucket = bucket,
                                       .region = region,
                                       .secret_key = secret,
                                       .create_mode = mode,
                                       .checksums = S3_CHECKSUM_MD5 | S3_CHECKSUM_SHA256,
                                       .max_attempts = 2,
                                       .timeout_usec = 30 * USEC_PER_SEC},
                          &c, &err) < 0)
                fail_msg("s3_client_new: %s", err.message);
        return c;
}

static int group_setup(void **state) {
        endpoint = getenv("BALLAST_S3_ENDPOINT");
        bucket = getenv("BALLAST_S3_BUCKET");
        region = getenv("BALLAST_S3_REGION");
        if (isempty(endpoint) || isempty(bucket) || isempty(getenv("AWS_ACCESS_KEY_ID")) ||
            isempty(getenv("AWS_SECRET_ACCESS_KEY"))) {
                fprintf(stderr, "test-s3: BALLAST_S3_ENDPOINT, BALLAST_S3_BUCKET, "
                                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set: run "
                                "'bash tests/cluster/cluster.sh up' and "
                                "'source build/cluster/env'\n");
                return -1;
        }
        snprintf(prefix, sizeof(prefix), "it-s3-%ld-%d/", (long) time(NULL), (int) getpid());
        if (sd_event_new(&event) < 0)
                return -1;
        s3 = client_new(NULL, S3_CREATE_CONDITIONAL);
        return 0;
}

static int group_teardown(void **state) {
        s3_list_entry *e = NULL;
        size_t n = 0;
        err_info err;

        /* Remove everything this run wrote. */
        if (s3 && s3_list_objects_sync(s3, prefix, 0, &e, &n, &err) >= 0) {
                for (size_t i = 0; i < n; i++)
                        (void) s3_delete_object_sync(s3, e[i].key, &err);
                s3_list_entries_free(e, n);
        }
        s3_client_free(s3);
        sd_event_unref(event);
        return 0;
}

static char *key(const char *name) {
        static char buf[4][256];
        static unsigned i;
        char *b = buf[i++ % 4];

        snprintf(b, sizeof(buf[0]), "%s%s", prefix, name);
        return b;
}

static void test_put_get_head_304(void **state) {
        _cleanup_(s3_object_freep) s3_object *p = NULL, *g = NULL, *h = NULL, *nm = NULL,
                                             *g2 = NULL;
        static const char body[] = "{\"hello\":\"versitygw\"}";
        err_info err;

        err_info_clear(&err);
        if (s3_put_object_sync(s3, key("a.json"), body, strlen(body),
                               &(s3_put_opts){.content_type = "application/json"}, &p, &err) < 0)
                fail_msg("PUT: %s", err.message);
        assert_non_null(p->etag);

        if (s3_get_object_sync(s3, key("a.json"), NULL, &g, &err) < 0)
                fail_msg("GET: %s", err.message);
        assert_int_equal(g->body_len, strlen(body));
        assert_memory_equal(g->body, body, strlen(body));
        assert_string_equal(g->etag, p->etag);
        assert_non_null(g->last_modified);
        assert_false(g->not_modified);

        assert_int_equal(s3_head_object_sync(s3, key("a.json"), &h, &err), 0);
        assert_int_equal(h->size, strlen(body));
        assert_string_equal(h->etag, p->etag);

        /* Conditional GET: unchanged. */
        assert_int_equal(s3_get_object_sync(s3, key("a.json"), p->etag, &nm, &err), 0);
        assert_true(nm->not_modified);
        assert_null(nm->body);

        /* Changed: a new ETag and the new body. */
        assert_int_equal(s3_put_object_sync(s3, key("a.json"), "v2", 2, NULL, NULL, &err), 0);
        assert_int_equal(s3_get_object_sync(s3, key("a.json"), p->etag, &g2, &err), 0);
        assert_false(g2->not_modified);
        assert_string_equal(g2->body, "v2");
        assert_string_not_equal(g2->etag, p->etag);
}

static void test_escaped_keys(void **state) {
        /* Keys whose escaping must match the server's canonical form, or the
         * signature would not verify. */
        static const char *const names[] = {"sp ace/a b.json", "plus+eq=amp&.txt", "ü-ñ/ß.txt",
                                            "tilde~(paren)!*'.json"};
        err_info err;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_(s3_object_freep) s3_object *g = NULL;
                s3_list_entry *e = NULL;
                size_t n = 0;

                err_info_clear(&err);
                if (s3_put_object_sync(s3, key(names[i]), names[i], strlen(names[i]), NULL, NULL,
                                       &err) < 0)
                        fail_msg("PUT '%s': %s", names[i], err.message);
                if (s3_get_object_sync(s3, key(names[i]), NULL, &g, &err) < 0)
                        fail_msg("GET '%s': %s", names[i], err.message);
                assert_string_equal(g->body, names[i]);
                /* The key as a list prefix (query escaping). */
                if (s3_list_objects_sync(s3, key(names[i]), 0, &e, &n, &err) < 0)
                        fail_msg("LIST '%s': %s", names[i], err.message);
                assert_int_equal(n, 1);
                assert_string_equal(e[0].key, key(names[i]));
                s3_list_entries_free(e, n);
                assert_int_equal(s3_delete_object_sync(s3, key(names[i]), &err), 0);
        }
}

typedef struct pages {
        unsigned pages;
        size_t keys;
        bool done;
        int r;
        err_info err;
} pages;

static int on_page(s3_op *op, s3_list_page *page, void *userdata) {
        pages *p = userdata;

        p->pages++;
        p->keys += page->n_entries;
        return 0;
}

static void on_done(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata) {
        pages *p = userdata;

        p->done = true;
        p->r = r;
        if (err)
                p->err = *err;
}

static void test_list_pages(void **state) {
        s3_list_entry *e = NULL;
        size_t n = 0;
        pages p = {};
        err_info err;
        char name[32];

        for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "list/obj-%d", i);
                assert_int_equal(
                        s3_put_object_sync(s3, key(name), name, strlen(name), NULL, NULL, &err), 0);
        }
        /* Something outside the listed prefix. */
        assert_int_equal(s3_put_object_sync(s3, key("listx"), "x", 1, NULL, NULL, &err), 0);

        assert_int_equal(s3_list_objects(s3, key("list/"), 2, NULL, on_page, on_done, &p, NULL), 0);
        assert_int_equal(loop_run_until(event, &p.done, 60 * USEC_PER_SEC), 0);
        if (p.r < 0)
                fail_msg("LIST: %s", p.err.message);
        assert_int_equal(p.pages, 3);
        assert_int_equal(p.keys, 5);

        assert_int_equal(s3_list_objects_sync(s3, key("list/"), 2, &e, &n, &err), 0);
        assert_int_equal(n, 5);
        for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "list/obj-%d", i);
                assert_string_equal(e[i].key, key(name));
                assert_int_equal(e[i].size, strlen(name));
                assert_non_null(e[i].etag);
        }
        s3_list_entries_free(e, n);
}

static void test_missing_and_delete(void **state) {
        err_info err;

        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(s3, key("does-not-exist"), NULL, NULL, &err), -ENOENT);
        assert_string_equal(err.reason, "NoSuchKey");
        assert_int_equal(err.http_status, 404);
        assert_non_null(strstr(err.message, "NoSuchKey"));

        err_info_clear(&err);
        assert_int_equal(s3_head_object_sync(s3, key("does-not-exist"), NULL, &err), -ENOENT);

        assert_int_equal(s3_put_object_sync(s3, key("del"), "x", 1, NULL, NULL, &err), 0);
        assert_int_equal(s3_delete_object_sync(s3, key("del"), &err), 0);
        assert_int_equal(s3_get_object_sync(s3, key("del"), NULL, NULL, &err), -ENOENT);
        /* Idempotent. */
        assert_int_equal(s3_delete_object_sync(s3, key("del"), &err), 0);
}

static void test_create_only(void **state) {
        _cleanup_(s3_client_freep) s3_client *head = NULL;
        _cleanup_(s3_object_freep) s3_object *g = NULL, *g2 = NULL;
        s3_put_opts co = {.create_only = true};
        err_info err;
        int r;

        err_info_clear(&err);
        r = s3_put_object_sync(s3, key("once"), "first", 5, &co, NULL, &err);
        if (r < 0)
                fail_msg("first create-only PUT: %s", err.message);
        err_info_clear(&err);
        r = s3_put_object_sync(s3, key("once"), "second", 6, &co, NULL, &err);
        /* versitygw implements If-None-Match: * on PUT (412). A server that
         * did not would answer 501 (-EOPNOTSUPP); one that ignored the header
         * would overwrite, which the GET below catches. */
        if (r != -EEXIST)
                fail_msg("second create-only PUT: %d (%s), want -EEXIST", r, err.message);
        assert_string_equal(err.reason, "PreconditionFailed");
        assert_int_equal(err.http_status, 412);
        assert_int_equal(s3_get_object_sync(s3, key("once"), NULL, &g, &err), 0);
        assert_string_equal(g->body, "first");

        /* The HEAD-then-PUT fallback gives the same answers. */
        head = client_new(NULL, S3_CREATE_HEAD_THEN_PUT);
        assert_int_equal(s3_put_object_sync(head, key("once"), "third", 5, &co, NULL, &err),
                         -EEXIST);
        assert_int_equal(s3_put_object_sync(head, key("once-head"), "h", 1, &co, NULL, &err), 0);
        assert_int_equal(s3_get_object_sync(head, key("once-head"), NULL, &g2, &err), 0);
        assert_string_equal(g2->body, "h");
}

static void test_wrong_secret(void **state) {
        _cleanup_(s3_client_freep) s3_client *bad = NULL;
        err_info err;
        int r;

        bad = client_new("not-the-secret", S3_CREATE_CONDITIONAL);
        err_info_clear(&err);
        r = s3_get_object_sync(bad, key("a.json"), NULL, NULL, &err);
        assert_int_equal(r, -EACCES);
        assert_int_equal(err.http_status, 403);
        assert_string_equal(err.reason, "SignatureDoesNotMatch");
        assert_non_null(strstr(err.message, "SignatureDoesNotMatch"));

        err_info_clear(&err);
        assert_int_equal(s3_put_object_sync(bad, key("x"), "x", 1, NULL, NULL, &err), -EACCES);
        assert_string_equal(err.reason, "SignatureDoesNotMatch");
}

static void test_large_object(void **state) {
        /* Over curl's 1 MiB "Expect: 100-continue" threshold. */
        size_t n = 3 * 1024 * 1024 + 17;
        _cleanup_free_ char *data = malloc(n);
        _cleanup_(s3_object_freep) s3_object *g = NULL;
        err_info err;

        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (char) ('a' + i % 23);
        err_info_clear(&err);
        if (s3_put_object_sync(s3, key("big.bin"), data, n, NULL, NULL, &err) < 0)
                fail_msg("PUT big: %s", err.message);
        assert_int_equal(s3_get_object_sync(s3, key("big.bin"), NULL, &g, &err), 0);
        assert_int_equal(g->body_len, n);
        assert_memory_equal(g->body, data, n);

        /* Borrowed (not copied) bodies arrive the same. */
        for (size_t i = 0; i < n; i++)
                data[i] = (char) ('A' + i % 19);
        if (s3_put_object_sync(s3, key("big.bin"), data, n, &(s3_put_opts){.borrow = true}, NULL,
                               &err) < 0)
                fail_msg("PUT big, borrowed: %s", err.message);
        g = s3_object_free(g);
        assert_int_equal(s3_get_object_sync(s3, key("big.bin"), NULL, &g, &err), 0);
        assert_int_equal(g->body_len, n);
        assert_memory_equal(g->body, data, n);
}

static void test_objstore_s3(void **state) {
        _cleanup_(objstore_freep) objstore *os = NULL;
        _cleanup_(objstore_object_freep) objstore_object *p = NULL, *g = NULL, *nm = NULL;
        _cleanup_free_ char *loc = NULL;
        objstore_entry *e = NULL;
        size_t n = 0;
        err_info err;

        err_info_clear(&err);
        assert_true(asprintf(&loc, "s3://%s/%sstore?endpoint=%s&region=%s&path_style=true", bucket,
                             prefix, endpoint, region ?: "us-east-1") > 0);
        if (objstore_open(event, loc, NULL, &os, &err) < 0)
                fail_msg("objstore_open(%s): %s", loc, err.message);
        assert_string_equal(objstore_backend_name(os), "s3");

        assert_int_equal(objstore_put_sync(os, "n/1.json", "one", 3, NULL, &p, &err), 0);
        assert_int_equal(objstore_put_sync(os, "n/2.json", "two", 3, NULL, NULL, &err), 0);
        assert_int_equal(objstore_put_sync(os, "n/3.json", "three", 5, NULL, NULL, &err), 0);
        assert_int_equal(objstore_get_sync(os, "n/1.json", NULL, &g, &err), 0);
        assert_string_equal(g->data, "one");
        assert_int_equal(g->size, 3);
        assert_int_equal(objstore_get_sync(os, "n/1.json", p->etag, &nm, &err), 0);
        assert_true(nm->not_modified);

        /* Keys come back relative to the location's prefix. */
        assert_int_equal(objstore_list_sync(os, "n/", 2, &e, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].key, "n/1.json");
        assert_string_equal(e[2].key, "n/3.json");
        assert_int_equal(e[2].size, 5);
        objstore_entries_free(e, n);

        assert_int_equal(objstore_put_sync(os, "n/1.json", "x", 1,
                                           &(objstore_put_opts){.create_only = true}, NULL, &err),
                         -EEXIST);
        assert_int_equal(objstore_delete_sync(os, "n/1.json", &err), 0);
        assert_int_equal(objstore_head_sync(os, "n/1.json", NULL, &err), -ENOENT);
        assert_int_equal(objstore_get_sync(os, "../escape", NULL, NULL, &err), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_get_head_304), cmocka_unit_test(test_escaped_keys),
                cmocka_unit_test(test_list_pages),       cmocka_unit_test(test_missing_and_delete),
                cmocka_unit_test(test_create_only),      cmocka_unit_test(test_wrong_secret),
                cmocka_unit_test(test_large_object),     cmocka_unit_test(test_objstore_s3),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
