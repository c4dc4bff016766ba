/* SPDX-License-Identifier: Apache-2.0 */
/* The wire format between the operator and the agent (lib/bundle.h): its
 * constants, pinned so that changing one is a deliberate change here too,
 * and the edges of every check both planes run. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "bundle.h"
#include "fsx.h"
#include "macro.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* What agents already in the field read: changing any of these changes the
 * wire format (docs/wire-format.md), and needs a plan for mixed versions. */
static void test_constants_are_the_wire_format(void **state) {
        assert_string_equal(BUNDLE_API_VERSION, "ballast.dev/v1alpha1");
        assert_string_equal(BUNDLE_KIND_MANIFEST, "BundleManifest");
        assert_string_equal(BUNDLE_KIND_INDEX, "BundleIndex");
        assert_string_equal(BUNDLE_KIND_NODE_STATUS, "NodeStatus");

        assert_string_equal(BUNDLE_DIGEST_PREFIX, "sha256:");
        assert_int_equal(BUNDLE_DIGEST_PREFIX_LEN, 7);
        assert_int_equal(BUNDLE_DIGEST_SIZE, 7 + 64 + 1);

        assert_int_equal(BUNDLE_MAX_FILES, 256);
        assert_int_equal(BUNDLE_MAX_FILE_SIZE, 1048576);
        assert_int_equal(BUNDLE_MAX_MANIFEST_SIZE, 8388608);
        assert_int_equal(BUNDLE_MAX_PATH, 512);
        assert_int_equal(BUNDLE_MAX_RELOAD_NAME, 63);
        assert_int_equal(BUNDLE_MAX_UID, 128);
        assert_int_equal(BUNDLE_CONFIGMAP_MAX_DATA, 921600);

        assert_string_equal(BUNDLE_INDEX_KEY, "index.json");
        assert_string_equal(BUNDLE_MANIFESTS_PREFIX, "bundles/");
        assert_string_equal(BUNDLE_STATUS_PREFIX, "status/");

        assert_string_equal(BUNDLE_INDEX_CONFIGMAP, "ballast-index");
        assert_string_equal(BUNDLE_MANIFEST_DATA_KEY, "manifest.json");

        assert_string_equal(BUNDLE_LABEL_MANAGED_BY, "app.kubernetes.io/managed-by");
        assert_string_equal(BUNDLE_MANAGER, "ballast-operator");
        assert_string_equal(BUNDLE_LABEL_BUNDLE, "ballast.dev/bundle");
        assert_string_equal(BUNDLE_LABEL_INDEX, "ballast.dev/index");
        assert_string_equal(BUNDLE_SELECTOR_MANAGED,
                            "app.kubernetes.io/managed-by=ballast-operator");
        assert_string_equal(
                BUNDLE_SELECTOR_BUNDLES,
                "app.kubernetes.io/managed-by=ballast-operator,ballast.dev/bundle=true");

        assert_string_equal(BUNDLE_ANN_PREFIX, "ballast.dev/");
        assert_string_equal(BUNDLE_ANN_BUNDLE, "ballast.dev/bundle");
        assert_string_equal(BUNDLE_ANN_UID, "ballast.dev/uid");
        assert_string_equal(BUNDLE_ANN_REVISION, "ballast.dev/revision");
        assert_string_equal(BUNDLE_ANN_DIGEST, "ballast.dev/digest");
        assert_string_equal(BUNDLE_ANN_OBJECT_KEY, "ballast.dev/object-key");
        assert_string_equal(BUNDLE_ANN_NODE_SELECTOR, "ballast.dev/node-selector");
        assert_string_equal(BUNDLE_ANN_RELOAD, "ballast.dev/reload");
        assert_string_equal(BUNDLE_ANN_MANIFEST, "ballast.dev/manifest");
        assert_string_equal(BUNDLE_MANIFEST_INLINE, "inline");
        assert_string_equal(BUNDLE_MANIFEST_IN_STORE, "object-store");
}

static void test_digests(void **state) {
        static const char *const bad[] = {
                "",
                "sha256:",
                HEX64,                /* no prefix */
                "sha256:" HEX64 "0",  /* 65 digits */
                "sha256:" HEX64 "\n", /* trailing byte */
                "SHA256:" HEX64,      /* prefix case */
                "sha512:" HEX64,      /* another algorithm */
                "sha256: " HEX64,     /* a space */
                "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                "sha256:g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        };
        char d[BUNDLE_DIGEST_SIZE];

        assert_true(bundle_is_digest("sha256:" HEX64));
        assert_false(bundle_is_digest(NULL));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (bundle_is_digest(bad[i]))
                        fail_msg("'%s' was accepted as a digest", bad[i]);

        /* The sha256 of no bytes, and of "abc" (FIPS 180-2). */
        assert_int_equal(bundle_digest("", 0, d), 0);
        assert_string_equal(
                d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_int_equal(bundle_digest("abc", 3, d), 0);
        assert_string_equal(
                d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_int_equal(strlen(d) + 1, BUNDLE_DIGEST_SIZE);
        assert_true(bundle_is_digest(d));
}

/* "a/b/c..." of exactly @n bytes: segments of @seg bytes. */
static void make_path(char *buf, size_t n, size_t seg) {
        for (size_t i = 0; i < n; i++)
                buf[i] = (i + 1) % (seg + 1) == 0 && i + 1 < n ? '/' : 'a';
        buf[n] = '\0';
}

typedef int (*check_fn)(const char *s, err_info *ret_err);
typedef bool (*is_fn)(const char *s);

/* @check refuses @s with -EINVAL and a reason that contains @want, and its
 * predicate @is agrees. */
static void refused(check_fn check, is_fn is, const char *s, const char *want) {
        err_info e;

        err_info_clear(&e);
        if (check(s, &e) != -EINVAL)
                fail_msg("'%s' was accepted", strna(s));
        if (!strstr(e.message, want))
                fail_msg("'%s': '%s' does not say '%s'", strna(s), e.message, want);
        assert_false(is(s));
}

static void path_fails(const char *path, const char *want) {
        refused(bundle_check_path, bundle_is_path, path, want);
}

static void test_paths(void **state) {
        static const char *const good[] = {
                "a",           ".hidden", "a.b/c-d_e", "x/.y/z",
                "a..b",        "A/B/C",   "a.",        "_",
                "-",           "0",       "a/b.",      ".a/b",
                "x/y/z/w/v/u", "a...b",   "._",        "conf.d/site.conf",
        };
        static const struct {
                const char *path;
                const char *why;
        } bad[] = {
                {"", "it is empty"},
                {"/abs", "it starts with '/'"},
                {"/", "it starts with '/'"},
                {"a/", "it ends with '/'"},
                {"a//b", "it has an empty segment"},
                {".", "it has a '.' segment"},
                {"./a", "it has a '.' segment"},
                {"a/./b", "it has a '.' segment"},
                {"..", "a segment starts with '..'"},
                {"../x", "a segment starts with '..'"},
                {"a/../b", "a segment starts with '..'"},
                {"..data", "a segment starts with '..'"},
                {"x/..data", "a segment starts with '..'"},
                {"..rev-1-ab", "a segment starts with '..'"},
                {"a/..x", "a segment starts with '..'"},
                {"a b", "byte 0x20 is not one of A-Z a-z 0-9 . _ -"},
                {"a\\b", "'\\' is not one of A-Z a-z 0-9 . _ -"},
                {"a:b", "':' is not one of"},
                {"a*", "'*' is not one of"},
                {"\xc3\xa9", "byte 0xc3 is not one of"},
                {"\x01", "byte 0x01 is not one of"},
                {"a\x7f", "byte 0x7f is not one of"},
                {"a\tb", "byte 0x09 is not one of"},
        };
        char p[BUNDLE_MAX_PATH + 2];
        err_info e;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                err_info_clear(&e);
                if (bundle_check_path(good[i], &e) != 0)
                        fail_msg("path '%s' was refused: %s", good[i], e.message);
                assert_true(bundle_is_path(good[i]));
                /* What the agent's apply relies on. */
                assert_true(fsx_is_safe_relpath(good[i]));
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                path_fails(bad[i].path, bad[i].why);
        path_fails(NULL, "it is empty");

        /* At most BUNDLE_MAX_PATH bytes. */
        make_path(p, BUNDLE_MAX_PATH, 100);
        assert_int_equal(strlen(p), BUNDLE_MAX_PATH);
        assert_true(bundle_is_path(p));
        make_path(p, BUNDLE_MAX_PATH + 1, 100);
        path_fails(p, "it is 513 bytes, more than the 512 allowed");

        /* A segment of at most NAME_MAX bytes. */
        make_path(p, 255, 255);
        assert_true(bundle_is_path(p));
        make_path(p, 256, 256);
        path_fails(p, "a segment is 256 bytes, more than the 255 allowed");
        make_path(p, 300, 256); /* 256 bytes, '/', 43 bytes */
        path_fails(p, "a segment is 256 bytes");
}

static void name_fails(const char *name, const char *want) {
        refused(bundle_check_reload_name, bundle_is_reload_name, name, want);
}

static void test_reload_names(void **state) {
        static const char *const good[] = {"a",     "0",    "nginx", "nginx-reload",
                                           "a-b-c", "a--b", "9x",    "x9"};
        char n[BUNDLE_MAX_RELOAD_NAME + 2];

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (bundle_check_reload_name(good[i], NULL) != 0 || !bundle_is_reload_name(good[i]))
                        fail_msg("reload name '%s' was refused", good[i]);

        name_fails(NULL, "it is empty");
        name_fails("", "it is empty");
        name_fails("-", "it starts or ends with '-'");
        name_fails("-a", "it starts or ends with '-'");
        name_fails("a-", "it starts or ends with '-'");
        name_fails("Nginx", "'N' is not one of a-z 0-9 -");
        name_fails("nginx_reload", "'_' is not one of a-z 0-9 -");
        name_fails("a.b", "'.' is not one of");
        name_fails("a b", "byte 0x20 is not one of");
        name_fails("a/b", "'/' is not one of");
        name_fails("\xc3\xa9", "byte 0xc3 is not one of");

        memset(n, 'a', BUNDLE_MAX_RELOAD_NAME);
        n[BUNDLE_MAX_RELOAD_NAME] = '\0';
        assert_true(bundle_is_reload_name(n));
        n[BUNDLE_MAX_RELOAD_NAME] = 'a';
        n[BUNDLE_MAX_RELOAD_NAME + 1] = '\0';
        name_fails(n, "it is 64 characters, more than the 63 allowed");
}

static void test_uids(void **state) {
        static const char *const good[] = {
                "a", "0", "-", "0b5c9e2a-6d3f-4c1e-9a7b-123456789abc", "ABC-def-012", "u-1"};
        static const char *const bad[] = {"", "a_b", "a.b", "a b", "a/b", "\xc3\xa9", "a\n"};
        char u[BUNDLE_MAX_UID + 2];

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!bundle_is_uid(good[i]))
                        fail_msg("uid '%s' was refused", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (bundle_is_uid(bad[i]))
                        fail_msg("uid '%s' was accepted", bad[i]);
        assert_false(bundle_is_uid(NULL));

        memset(u, 'A', BUNDLE_MAX_UID);
        u[BUNDLE_MAX_UID] = '\0';
        assert_true(bundle_is_uid(u));
        u[BUNDLE_MAX_UID] = 'A';
        u[BUNDLE_MAX_UID + 1] = '\0';
        assert_false(bundle_is_uid(u));
}

static void test_object_keys(void **state) {
        static const char *const not_manifests[] = {
                "index.json",
                "status/node-1.json",
                "bundles/",
                "bundles/prod/" HEX64 ".json",             /* no name */
                "bundles//web/" HEX64 ".json",             /* empty namespace */
                "bundles/prod//" HEX64 ".json",            /* empty name */
                "bundles/prod/web/x/" HEX64 ".json",       /* an extra segment */
                "bundles/prod/web/" HEX64,                 /* no suffix */
                "bundles/prod/web/" HEX64 ".jsonx",        /* another suffix */
                "bundles/prod/web/" HEX64 "0.json",        /* 65 digits */
                "bundles/prod/web/0123.json",              /* too short */
                "bundles/prod/web/.#" HEX64 ".json",       /* a temporary file */
                "cluster/bundles/prod/web/" HEX64 ".json", /* not at the root */
                "bundles/prod/web/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
                ".json", /* upper case */
                "bundles/prod/web/z123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                ".json", /* not hex */
        };
        _cleanup_free_ char *key = NULL, *bundle = NULL;
        char digest[BUNDLE_DIGEST_SIZE];

        assert_int_equal(bundle_object_key("prod", "web", "sha256:" HEX64, &key), 0);
        assert_string_equal(key, "bundles/prod/web/" HEX64 ".json");
        assert_int_equal(bundle_parse_object_key(key, &bundle, digest), 0);
        assert_string_equal(bundle, "prod/web");
        assert_string_equal(digest, "sha256:" HEX64);

        /* Names with dots, as Kubernetes allows. */
        free(key);
        free(bundle);
        assert_int_equal(bundle_object_key("kube-system", "a.b.c", "sha256:" HEX64, &key), 0);
        assert_int_equal(bundle_parse_object_key(key, &bundle, digest), 0);
        assert_string_equal(bundle, "kube-system/a.b.c");

        /* What no manifest can be published under. */
        char *none = NULL;
        assert_int_equal(bundle_object_key("", "web", "sha256:" HEX64, &none), -EINVAL);
        assert_int_equal(bundle_object_key("prod", NULL, "sha256:" HEX64, &none), -EINVAL);
        assert_int_equal(bundle_object_key("prod", "web", "md5:abc", &none), -EINVAL);
        assert_int_equal(bundle_object_key("prod", "web", "sha256:../../x", &none), -EINVAL);
        assert_int_equal(bundle_object_key("prod", "web", NULL, &none), -EINVAL);
        assert_null(none);

        /* Keys bundle_object_key() can't make are not manifests: GC leaves
         * them alone, and nothing is written. */
        for (size_t i = 0; i < ELEMENTSOF(not_manifests); i++) {
                char *b = NULL;
                char d[BUNDLE_DIGEST_SIZE] = "untouched";

                if (bundle_parse_object_key(not_manifests[i], &b, d) != -EINVAL)
                        fail_msg("'%s' was taken for a manifest's key", not_manifests[i]);
                assert_null(b);
                assert_string_equal(d, "untouched");
        }
        assert_int_equal(bundle_parse_object_key(NULL, &bundle, digest), -EINVAL);
}

static void test_status_keys(void **state) {
        /* Node names are DNS subdomains (the agent checks its own at
         * start-up); this only refuses what would not be one object under
         * status/. */
        static const char *const bad[] = {"", "a/b", "/n", "n/", ".#n", "n\x01"};
        _cleanup_free_ char *key = NULL;

        assert_int_equal(bundle_status_key("node-1", &key), 0);
        assert_string_equal(key, "status/node-1.json");
        free(key);
        key = NULL;
        assert_int_equal(bundle_status_key("ip-10-0-0-1.ec2.internal", &key), 0);
        assert_string_equal(key, "status/ip-10-0-0-1.ec2.internal.json");

        assert_int_equal(bundle_status_key(NULL, &key), -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *k = NULL;

                if (bundle_status_key(bad[i], &k) != -EINVAL)
                        fail_msg("node '%s' made a status key", bad[i]);
                assert_null(k);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_constants_are_the_wire_format),
                cmocka_unit_test(test_digests),
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_reload_names),
                cmocka_unit_test(test_uids),
                cmocka_unit_test(test_object_keys),
                cmocka_unit_test(test_status_keys),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
