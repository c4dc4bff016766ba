/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's manifest parser: what verifies, and every way it refuses. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash.h"
#include "jsonx.h"
#include "manifest.h"
#include "render.h"

/* operator/render.c's output for this bundle, byte for byte (see
 * tests/unit/test-render.c). */
static const char GOOD[] =
        "{\"apiVersion\":\"ballast.dev/v1alpha1\","
        "\"bundle\":{\"name\":\"web\",\"namespace\":\"prod\",\"uid\":\"u-1\"},"
        "\"files\":["
        "{\"content\":\"v=1\",\"mode\":384,\"path\":\"a.conf\",\"sha256\":"
        "\"a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fde\",\"size\":3},"
        "{\"content\":\"B\",\"mode\":420,\"path\":\"b.conf\",\"sha256\":"
        "\"df7e70e5021544f4834bbee64a9e3789febc4be81470df629cad6ddb03320a5c\",\"size\":1}],"
        "\"kind\":\"BundleManifest\",\"reload\":\"nginx\",\"revision\":3}";

static json_object *good_tree(void) {
        json_object *o = NULL;

        assert_int_equal(jsonx_parse(GOOD, strlen(GOOD), &o, NULL), 0);
        return o;
}

/* Parses raw @data with its own correct digest. */
static int parse_bytes(const char *data, size_t len, const manifest_limits *lim, manifest **ret,
                       err_info *e) {
        char digest[BUNDLE_DIGEST_SIZE];

        assert_int_equal(bundle_digest(data, len, digest), 0);
        err_info_clear(e);
        return manifest_parse(data, len, digest, lim, ret, e);
}

/* Canonicalizes @o and parses it with its own correct digest, so each test
 * reaches the check it is about. */
static int parse_tree(json_object *o, const manifest_limits *lim, manifest **ret, err_info *e) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;

        assert_int_equal(jsonx_to_canonical(o, &data, &len), 0);
        return parse_bytes(data, len, lim, ret, e);
}

static void expect_msg(const err_info *e, const char *want) {
        if (!strstr(e->message, want))
                fail_msg("error '%s' does not contain '%s'", e->message, want);
}

static void tree_fails(json_object *o, int want_r, const char *want) {
        manifest *m = NULL;
        err_info e;

        assert_int_equal(parse_tree(o, NULL, &m, &e), want_r);
        assert_null(m);
        expect_msg(&e, want);
}

static void bytes_fail(const char *s, int want_r, const char *want) {
        manifest *m = NULL;
        err_info e;

        assert_int_equal(parse_bytes(s, strlen(s), NULL, &m, &e), want_r);
        assert_null(m);
        expect_msg(&e, want);
}

static json_object *file_at(json_object *o, size_t i) {
        return json_object_array_get_idx(jsonx_get(o, "files"), i);
}

static void set(json_object *o, const char *key, json_object *v) {
        assert_int_equal(json_object_object_add(o, key, v), 0);
}

/* A file entry with a correct size and sha256. */
static json_object *new_file(const char *path, const char *content, int mode) {
        json_object *f = json_object_new_object();
        char hex[HASH_SHA256_HEX_LEN + 1];

        assert_int_equal(hash_sha256_hex(content, strlen(content), hex), 0);
        set(f, "path", json_object_new_string(path));
        set(f, "content", json_object_new_string(content));
        set(f, "mode", json_object_new_int(mode));
        set(f, "size", json_object_new_int((int) strlen(content)));
        set(f, "sha256", json_object_new_string(hex));
        return f;
}

/* The good tree with its files replaced by @n files at @paths. */
static json_object *tree_with_paths(const char *const *paths, size_t n) {
        json_object *o = good_tree(), *arr = json_object_new_array();

        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, new_file(paths[i], "x", 0644));
        set(o, "files", arr);
        return o;
}

static void test_good_manifest_verifies(void **state) {
        _cleanup_(manifest_freep) manifest *m = NULL;
        char want[BUNDLE_DIGEST_SIZE];
        err_info e;

        assert_int_equal(parse_bytes(GOOD, strlen(GOOD), NULL, &m, &e), 0);
        assert_non_null(m);
        assert_string_equal(m->namespace, "prod");
        assert_string_equal(m->name, "web");
        assert_string_equal(m->uid, "u-1");
        assert_int_equal(m->revision, 3);
        assert_string_equal(m->reload, "nginx");
        assert_int_equal(m->n_files, 2);
        assert_string_equal(m->files[0].path, "a.conf");
        assert_int_equal(m->files[0].mode, 0600);
        assert_int_equal(m->files[0].size, 3);
        assert_memory_equal(m->files[0].content, "v=1", 4);
        assert_string_equal(m->files[1].path, "b.conf");
        assert_int_equal(m->files[1].mode, 0644);
        assert_string_equal(m->files[1].sha256,
                            "df7e70e5021544f4834bbee64a9e3789febc4be81470df629cad6ddb03320a5c");
        assert_int_equal(m->content_size, 4);
        assert_int_equal(m->n_bytes, strlen(GOOD));
        assert_memory_equal(m->bytes, GOOD, strlen(GOOD));
        assert_int_equal(bundle_digest(GOOD, strlen(GOOD), want), 0);
        assert_string_equal(m->digest, want);
        assert_ptr_equal(manifest_find_file(m, "b.conf"), &m->files[1]);
        assert_null(manifest_find_file(m, "c.conf"));
        assert_null(manifest_find_file(m, "a"));
}

/* Whatever the operator renders, the agent accepts: same bytes, same digest. */
static void test_operator_output_round_trips(void **state) {
        static const render_identity id = {
                .namespace = "team-a", .name = "edge.proxy", .uid = NULL};
        _cleanup_(render_result_freep) render_result *res = NULL;
        _cleanup_(manifest_freep) manifest *m = NULL;
        _cleanup_json_ json_object *spec = NULL;
        const char *spec_json =
                "{\"files\":[{\"path\":\"z/deep/f.txt\",\"content\":\"zz\\n\"},"
                "{\"path\":\"conf/app.yaml\",\"template\":\"name: {{ bundle.name }}\","
                "\"mode\":256},{\"path\":\"bin.dat\",\"content\":\"\\u0000\\u0001x\"}]}";
        err_info e;

        assert_int_equal(jsonx_parse(spec_json, strlen(spec_json), &spec, NULL), 0);
        err_info_clear(&e);
        assert_int_equal(render_bundle(spec, &id, 17, &res, &e), 0);
        assert_int_equal(
                manifest_parse(res->manifest, res->manifest_len, res->digest, NULL, &m, &e), 0);
        assert_string_equal(m->namespace, "team-a");
        assert_string_equal(m->name, "edge.proxy");
        assert_string_equal(m->uid, ""); /* rendered without a uid */
        assert_null(m->reload);
        assert_int_equal(m->revision, 17);
        assert_int_equal(m->n_files, 3);
        assert_string_equal(m->files[0].path, "bin.dat");
        assert_int_equal(m->files[0].size, 3);
        assert_memory_equal(m->files[0].content, "\0\1x", 3);
        assert_string_equal(m->files[1].path, "conf/app.yaml");
        assert_string_equal(m->files[1].content, "name: edge.proxy");
        assert_int_equal(m->files[1].mode, 0400);
        assert_string_equal(m->files[2].path, "z/deep/f.txt");
        assert_string_equal(m->digest, res->digest);
}

static void test_digest_mismatch_is_rejected_and_names_the_claim(void **state) {
        char other[BUNDLE_DIGEST_SIZE];
        manifest *m = NULL;
        err_info e;

        assert_int_equal(bundle_digest("x", 1, other), 0);
        err_info_clear(&e);
        assert_int_equal(manifest_parse(GOOD, strlen(GOOD), other, NULL, &m, &e), -EBADMSG);
        assert_null(m);
        expect_msg(&e, "digest mismatch: expected sha256:2d711642b726");
        expect_msg(&e, "claim to be bundle prod/web revision 3");
        expect_msg(&e, "manifest sha256:2d711642b726:");

        /* One flipped byte anywhere is a mismatch. */
        char *copy = strdup(GOOD);
        char digest[BUNDLE_DIGEST_SIZE];

        assert_int_equal(bundle_digest(GOOD, strlen(GOOD), digest), 0);
        copy[strlen(copy) - 2] = '4';
        err_info_clear(&e);
        assert_int_equal(manifest_parse(copy, strlen(copy), digest, NULL, &m, &e), -EBADMSG);
        expect_msg(&e, "digest mismatch");
        /* Garbage bytes: still a clean mismatch message. */
        err_info_clear(&e);
        assert_int_equal(manifest_parse("\xff\x00garbage", 9, digest, NULL, &m, &e), -EBADMSG);
        expect_msg(&e, "digest mismatch");
        free(copy);
}

static void test_expected_digest_must_be_well_formed(void **state) {
        manifest *m = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(manifest_parse(GOOD, strlen(GOOD), NULL, NULL, &m, &e), -EINVAL);
        assert_int_equal(manifest_parse(GOOD, strlen(GOOD), "sha256:abc", NULL, &m, &e), -EINVAL);
        assert_int_equal(
                manifest_parse(
                        GOOD, strlen(GOOD),
                        "sha256:A798DE8EE75AEB5519C5266239190385C84B21AE031FF12CBEBFED7CD2C84FDE",
                        NULL, &m, &e),
                -EINVAL);
        assert_int_equal(
                manifest_parse(
                        GOOD, strlen(GOOD),
                        "md5:a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fde",
                        NULL, &m, &e),
                -EINVAL);
        expect_msg(&e, "expected digest");
        assert_null(m);
        assert_true(bundle_is_digest(
                "sha256:a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fde"));
        assert_false(bundle_is_digest(
                "sha256:a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fd"));
}

static void test_file_sha_mismatch(void **state) {
        _cleanup_json_ json_object *o = good_tree();

        /* Same length, other bytes: only the sha256 can tell. */
        set(file_at(o, 0), "content", json_object_new_string("v=2"));
        tree_fails(o, -EBADMSG,
                   "bundle prod/web revision 3: files[0] (a.conf): sha256 mismatch: the "
                   "manifest says a798de8ee75a");
}

static void test_file_sha_malformed(void **state) {
        _cleanup_json_ json_object *o = good_tree();

        set(file_at(o, 1), "sha256", json_object_new_string("DF7E"));
        tree_fails(o, -EBADMSG, "files[1] (b.conf): sha256 is missing or not 64 lowercase hex");
}

static void test_size_mismatch(void **state) {
        _cleanup_json_ json_object *o = good_tree();

        set(file_at(o, 0), "size", json_object_new_int(5));
        tree_fails(o, -EBADMSG,
                   "bundle prod/web revision 3: files[0] (a.conf): size 5 does not match the "
                   "content length 3");
        set(file_at(o, 0), "size", json_object_new_int(-3));
        tree_fails(o, -EBADMSG, "size -3 does not match");
        set(file_at(o, 0), "size", json_object_new_string("3"));
        tree_fails(o, -EBADMSG, "files[0] (a.conf): size is missing or not an integer");
}

static void test_non_canonical_is_rejected(void **state) {
        /* Whitespace. */
        _cleanup_free_ char *spaced = NULL;
        assert_true(asprintf(&spaced, "%s\n", GOOD) > 0);
        char want[80];
        snprintf(want, sizeof(want),
                 "not in canonical form (first difference at byte %zu:", strlen(GOOD));
        bytes_fail(spaced, -EBADMSG, want);
        /* Keys out of order. */
        bytes_fail("{\"kind\":\"BundleManifest\",\"apiVersion\":\"ballast.dev/v1alpha1\"}",
                   -EBADMSG, "not in canonical form (first difference at byte 2");
        /* A duplicate key: json-c keeps one, the bytes had two. */
        _cleanup_free_ char *dup = NULL;
        assert_true(asprintf(&dup, "{\"apiVersion\":\"x\",%s", GOOD + 1) > 0);
        bytes_fail(dup, -EBADMSG, "not in canonical form");
        /* Escapes canonical form does not use. */
        bytes_fail("{\"a\":\"\\/\"}", -EBADMSG, "not in canonical form");
        bytes_fail("{\"a\":\"\\u0041\"}", -EBADMSG, "not in canonical form");
        /* Numbers in another spelling: json-c keeps a double's text, so
         * "3.0" survives canonicalization; the type check refuses it. */
        _cleanup_free_ char *dbl = strndup(GOOD, strlen(GOOD) - 1);
        _cleanup_free_ char *dbl2 = NULL;
        assert_true(asprintf(&dbl2, "%s.0}", dbl) > 0);
        bytes_fail(dbl2, -EBADMSG, "bundle prod/web: revision is missing or not an integer");
        bytes_fail("{\"a\":01}", -EBADMSG, "");
        /* Not JSON, or trailing bytes. */
        bytes_fail("{\"a\":", -EBADMSG, "not valid JSON");
        bytes_fail("", -EBADMSG, "not valid JSON");
        bytes_fail("{}{}", -EBADMSG, "not valid JSON");
}

static void test_bad_paths_are_rejected(void **state) {
        static const char *const bad[] = {
                "../x", "/abs", "..data",     "a/../b",   "a//b",  "a/./b",
                "",     "a/",   "..rev-1-ab", "x/..data", "a b",   "a\\b",
                "a:b",  "é",    ".",          "..",       "a/..x", "\x01",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_object *o = tree_with_paths(&bad[i], 1);

                tree_fails(o, -EBADMSG, "files[0]: path");
                tree_fails(o, -EBADMSG, "is not a safe bundle path");
                assert_false(bundle_is_path(bad[i]));
        }

        /* A path with a NUL inside: C would see "a", the hash saw more. */
        _cleanup_json_ json_object *o = good_tree();
        set(file_at(o, 0), "path", json_object_new_string_len("a\0/../../etc", 12));
        tree_fails(o, -EBADMSG, "files[0]: path is missing or not a string");

        /* Too long. */
        char longp[600];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = '\0';
        for (size_t i = 100; i < sizeof(longp) - 1; i += 100)
                longp[i] = '/';
        assert_false(bundle_is_path(longp));

        static const char *const good[] = {".hidden", "a.b/c-d_e", "x/.y/z", "a..b", "A/B/C"};
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_true(bundle_is_path(good[i]));
}

static void test_unsorted_and_duplicate_paths(void **state) {
        static const char *const unsorted[] = {"b", "a"};
        static const char *const dup[] = {"a", "a"};
        static const char *const nested[] = {"a", "a/b"};
        static const char *const nested2[] = {"x/a", "x/a-b", "x/a/c"};
        static const char *const fine[] = {"a-b", "a/b", "ab"};
        _cleanup_json_ json_object *o1 = tree_with_paths(unsorted, 2);
        _cleanup_json_ json_object *o2 = tree_with_paths(dup, 2);
        _cleanup_json_ json_object *o3 = tree_with_paths(nested, 2);
        _cleanup_json_ json_object *o4 = tree_with_paths(nested2, 3);
        _cleanup_json_ json_object *o5 = tree_with_paths(fine, 3);
        _cleanup_(manifest_freep) manifest *m = NULL;
        err_info e;

        tree_fails(o1, -EBADMSG, "files[1] (a): not sorted by path (after 'b')");
        tree_fails(o2, -EBADMSG, "files[1] (a): duplicate path");
        tree_fails(o3, -EBADMSG, "files[1] (a/b): 'a' is also a file");
        tree_fails(o4, -EBADMSG, "files[2] (x/a/c): 'x/a' is also a file");
        assert_int_equal(parse_tree(o5, NULL, &m, &e), 0);
        assert_int_equal(m->n_files, 3);
}

static void test_limits(void **state) {
        _cleanup_json_ json_object *o = good_tree();
        manifest_limits lim = {.max_file_size = 2};
        manifest *m = NULL;
        err_info e;

        assert_int_equal(parse_tree(o, &lim, &m, &e), -EFBIG);
        expect_msg(&e, "files[0] (a.conf): content is 3 bytes, more than the 2 allowed");
        lim = (manifest_limits){.max_total_size = 3};
        assert_int_equal(parse_tree(o, &lim, &m, &e), -EFBIG);
        expect_msg(&e, "the contents add up to more than the 3 bytes allowed");
        lim = (manifest_limits){.max_files = 1};
        assert_int_equal(parse_tree(o, &lim, &m, &e), -EFBIG);
        expect_msg(&e, "files: 2 files, at most 1 allowed");
        lim = (manifest_limits){.max_size = 100};
        assert_int_equal(parse_tree(o, &lim, &m, &e), -EFBIG);
        expect_msg(&e, "bytes, more than the 100 allowed");
        assert_null(m);

        /* The default per-file limit: 1 MiB + 1 byte of content. */
        size_t n = BUNDLE_MAX_FILE_SIZE + 1;
        char *big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = '\0';
        _cleanup_json_ json_object *huge = good_tree();
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, new_file("huge", big, 0644));
        set(huge, "files", arr);
        free(big);
        tree_fails(huge, -EFBIG, "files[0] (huge): content is 1048577 bytes");
}

static void test_header_fields(void **state) {
        struct {
                const char *key;
                json_object *value;
                const char *want;
        } cases[] = {
                {"apiVersion", json_object_new_string("ballast.dev/v1"),
                 "bundle prod/web revision 3: apiVersion 'ballast.dev/v1' is not"},
                {"kind", json_object_new_string("ConfigMap"), "kind 'ConfigMap' is not"},
                {"revision", json_object_new_int(0), "bundle prod/web: revision 0 is not positive"},
                {"revision", json_object_new_int(-4), "revision -4 is not positive"},
                {"revision", json_object_new_string("3"), "revision is missing or not an integer"},
                {"reload", json_object_new_string("Nginx"), "reload 'Nginx' is not a valid"},
                {"reload", json_object_new_string("-x"), "reload '-x' is not a valid"},
                {"reload", json_object_new_int(1), "reload '' is not a valid"},
                {"extra", json_object_new_int(1), "unknown key 'extra'"},
                {"files", json_object_new_array(), "files: at least one file is required"},
                {"files", json_object_new_object(), "files is missing or not an array"},
                {"bundle", json_object_new_string("x"), "bundle is missing or not an object"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_json_ json_object *o = good_tree();

                set(o, cases[i].key, cases[i].value);
                tree_fails(o, -EBADMSG, cases[i].want);
        }
        _cleanup_json_ json_object *o = good_tree();
        json_object_object_del(o, "kind");
        tree_fails(o, -EBADMSG, "kind '' is not 'BundleManifest'");
        _cleanup_json_ json_object *p = good_tree();
        json_object_object_del(p, "revision");
        tree_fails(p, -EBADMSG, "bundle prod/web: revision is missing");
        /* Not an object at all. */
        bytes_fail("[]", -EBADMSG, "the manifest is not a JSON object");
}

static void test_identity_fields(void **state) {
        struct {
                const char *key;
                json_object *value;
                const char *want;
        } cases[] = {
                {"namespace", json_object_new_string("Prod"),
                 "bundle.namespace 'Prod' is missing or not a DNS-1123 label"},
                {"namespace", json_object_new_string("a.b"), "bundle.namespace 'a.b'"},
                {"namespace", json_object_new_string("../etc"), "bundle.namespace '../etc'"},
                {"namespace", json_object_new_int(3), "bundle.namespace ''"},
                {"name", json_object_new_string("web/x"),
                 "bundle.name 'web/x' is missing or not a"},
                {"name", json_object_new_string(".."), "bundle.name '..'"},
                {"name", json_object_new_string(""), "bundle.name ''"},
                {"uid", json_object_new_string("u 1"), "bundle.uid 'u 1' is not"},
                {"uid", json_object_new_string(""), "bundle.uid '' is not"},
                {"other", json_object_new_string("x"),
                 "bundle prod/web: bundle: unknown key 'other'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_json_ json_object *o = good_tree();

                set(jsonx_get(o, "bundle"), cases[i].key, cases[i].value);
                tree_fails(o, -EBADMSG, cases[i].want);
        }
}

static void test_file_fields(void **state) {
        struct {
                const char *key;
                json_object *value;
                const char *want;
        } cases[] = {
                {"mode", json_object_new_int(01000),
                 "files[0] (a.conf): mode 512 is outside 0..0777"},
                {"mode", json_object_new_int(-1), "mode -1 is outside"},
                {"mode", json_object_new_string("0644"), "mode is missing or not an integer"},
                {"content", json_object_new_int(1), "content is missing or not a string"},
                {"encoding", json_object_new_string("base64"),
                 "files[0] (a.conf): unknown key 'encoding'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_json_ json_object *o = good_tree();

                set(file_at(o, 0), cases[i].key, cases[i].value);
                tree_fails(o, -EBADMSG, cases[i].want);
        }
        _cleanup_json_ json_object *o = good_tree();
        json_object_array_put_idx(jsonx_get(o, "files"), 1, json_object_new_string("b.conf"));
        tree_fails(o, -EBADMSG, "files[1]: must be an object");
}

static void test_name_rules(void **state) {
        assert_true(manifest_is_dns_label("a"));
        assert_true(manifest_is_dns_label("kube-system"));
        assert_true(manifest_is_dns_label("0a9"));
        assert_false(manifest_is_dns_label(""));
        assert_false(manifest_is_dns_label("-a"));
        assert_false(manifest_is_dns_label("a-"));
        assert_false(manifest_is_dns_label("a.b"));
        assert_false(manifest_is_dns_label("A"));
        assert_false(manifest_is_dns_label(NULL));
        char l64[65];
        memset(l64, 'a', 64);
        l64[64] = '\0';
        assert_false(manifest_is_dns_label(l64));
        l64[63] = '\0';
        assert_true(manifest_is_dns_label(l64));

        assert_true(manifest_is_dns_subdomain("a.b-c.d"));
        assert_false(manifest_is_dns_subdomain("a..b"));
        assert_false(manifest_is_dns_subdomain(".a"));
        assert_false(manifest_is_dns_subdomain("a."));
        assert_false(manifest_is_dns_subdomain("a/b"));
        assert_false(manifest_is_dns_subdomain(".."));

        assert_true(bundle_is_reload_name("nginx-reload"));
        assert_false(bundle_is_reload_name("nginx_reload"));
        assert_false(bundle_is_reload_name(""));
        assert_false(bundle_is_reload_name("a-"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good_manifest_verifies),
                cmocka_unit_test(test_operator_output_round_trips),
                cmocka_unit_test(test_digest_mismatch_is_rejected_and_names_the_claim),
                cmocka_unit_test(test_expected_digest_must_be_well_formed),
                cmocka_unit_test(test_file_sha_mismatch),
                cmocka_unit_test(test_file_sha_malformed),
                cmocka_unit_test(test_size_mismatch),
                cmocka_unit_test(test_non_canonical_is_rejected),
                cmocka_unit_test(test_bad_paths_are_rejected),
                cmocka_unit_test(test_unsorted_and_duplicate_paths),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_header_fields),
                cmocka_unit_test(test_identity_fields),
                cmocka_unit_test(test_file_fields),
                cmocka_unit_test(test_name_rules),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
