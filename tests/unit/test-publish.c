/* SPDX-License-Identifier: Apache-2.0 */
/* Publication layout: names, keys, desired ConfigMaps, and "is current". */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonx.h"
#include "publish.h"

static const render_identity ID = {.namespace = "prod", .name = "web", .uid = "u-1"};

static render_result *render(const char *content) {
        _cleanup_json_ json_object *spec = json_object_new_object(),
                                   *files = json_object_new_array(), *f = json_object_new_object();
        render_result *res = NULL;

        json_object_object_add(f, "path", json_object_new_string("a.conf"));
        json_object_object_add(f, "content", json_object_new_string(content));
        json_object_array_add(files, json_object_get(f));
        json_object_object_add(spec, "files", json_object_get(files));
        assert_int_equal(render_bundle(spec, &ID, 2, &res, NULL), 0);
        return res;
}

static void test_names_and_keys(void **state) {
        _cleanup_free_ char *cm = NULL, *key = NULL, *long_cm = NULL;
        char ns[64], name[254];
        char *bad = NULL;

        assert_int_equal(publish_configmap_name("prod", "web", &cm), 0);
        assert_string_equal(cm, "cb-prod.web");
        memset(ns, 'n', sizeof(ns) - 1);
        ns[63] = '\0';
        memset(name, 'x', sizeof(name) - 1);
        name[253] = '\0';
        assert_int_equal(publish_configmap_name(ns, name, &long_cm), 0);
        assert_int_equal(strlen(long_cm), 43); /* "cb-" + 40 hex digits */
        assert_true(startswith(long_cm, "cb-"));

        assert_int_equal(bundle_object_key("prod", "web",
                                           "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b9"
                                           "34ca495991b7852b855",
                                           &key),
                         0);
        assert_string_equal(key, "bundles/prod/web/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934"
                                 "ca495991b7852b855.json");
        assert_int_equal(bundle_object_key("prod", "web", "md5:abc", &bad), -EINVAL);
        assert_int_equal(bundle_object_key("prod", "web", "sha256:../../x", &bad), -EINVAL);
        assert_null(bad);
}

static void test_configmap_carries_manifest_and_pointer(void **state) {
        _cleanup_(render_result_freep) render_result *res = render("hello");
        _cleanup_json_ json_object *cm = NULL, *sel = NULL;
        bool in_cm = false;

        const char *sel_json = "{\"matchLabels\":{\"role\":\"web\"}}";
        assert_int_equal(jsonx_parse(sel_json, strlen(sel_json), &sel, NULL), 0);
        assert_int_equal(publish_build_configmap("ballast-system", "cb-prod.web", &ID, 2, res,
                                                 "bundles/prod/web/x.json", sel, "nginx", &cm,
                                                 &in_cm),
                         0);
        assert_true(in_cm);
        assert_string_equal(jsonx_get_string(cm, "metadata.namespace"), "ballast-system");
        json_object *data = jsonx_get(cm, "data");
        assert_string_equal(json_object_get_string(json_object_object_get(data, "manifest.json")),
                            res->manifest);
        json_object *ann = jsonx_get(cm, "metadata.annotations");
        assert_string_equal(
                json_object_get_string(json_object_object_get(ann, BUNDLE_ANN_REVISION)), "2");
        assert_string_equal(json_object_get_string(json_object_object_get(ann, BUNDLE_ANN_DIGEST)),
                            res->digest);
        assert_string_equal(
                json_object_get_string(json_object_object_get(ann, BUNDLE_ANN_NODE_SELECTOR)),
                "{\"matchLabels\":{\"role\":\"web\"}}");
        json_object *labels = jsonx_get(cm, "metadata.labels");
        assert_string_equal(
                json_object_get_string(json_object_object_get(labels, BUNDLE_LABEL_BUNDLE)),
                "true");
}

static void test_oversized_manifest_is_a_pointer(void **state) {
        char *big = malloc(BUNDLE_CONFIGMAP_MAX_DATA + 10);
        memset(big, 'a', BUNDLE_CONFIGMAP_MAX_DATA + 9);
        big[BUNDLE_CONFIGMAP_MAX_DATA + 9] = '\0';
        _cleanup_(render_result_freep) render_result *res = render(big);
        _cleanup_json_ json_object *cm = NULL;
        bool in_cm = true;

        free(big);
        assert_int_equal(
                publish_build_configmap("ns", "cb", &ID, 2, res, "k", NULL, NULL, &cm, &in_cm), 0);
        assert_false(in_cm);
        assert_int_equal(json_object_object_length(jsonx_get(cm, "data")), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(
                                    jsonx_get(cm, "metadata.annotations"), BUNDLE_ANN_MANIFEST)),
                            "object-store");
}

static void test_is_current(void **state) {
        _cleanup_(render_result_freep) render_result *res = render("v1");
        _cleanup_json_ json_object *want = NULL, *have = NULL, *other = NULL, *no_reload = NULL;

        publish_build_configmap("ns", "cb", &ID, 2, res, "k", NULL, "nginx", &want, NULL);
        assert_false(publish_configmap_is_current(NULL, want));
        /* What the server returns: ours plus fields and annotations of others. */
        json_object_deep_copy(want, &have, NULL);
        json_object_object_add(jsonx_get(have, "metadata"), "resourceVersion",
                               json_object_new_string("42"));
        json_object_object_add(jsonx_get(have, "metadata.annotations"), "someone/else",
                               json_object_new_string("x"));
        assert_true(publish_configmap_is_current(have, want));

        /* Different data: stale. */
        publish_build_configmap("ns", "cb", &ID, 3, res, "k", NULL, "nginx", &other, NULL);
        assert_false(publish_configmap_is_current(have, other));
        /* We stopped setting an annotation (no reload any more): stale. */
        publish_build_configmap("ns", "cb", &ID, 2, res, "k", NULL, NULL, &no_reload, NULL);
        assert_false(publish_configmap_is_current(have, no_reload));
        /* An extra data key someone added: stale. */
        json_object_object_add(jsonx_get(have, "data"), "extra", json_object_new_string("x"));
        assert_false(publish_configmap_is_current(have, want));
}

/* The operator caches summaries: digests instead of manifests. The same
 * answers as for the whole object. */
static void test_is_current_on_summaries(void **state) {
        _cleanup_(render_result_freep) render_result *res = render("v1");
        _cleanup_json_ json_object *want = NULL, *have = NULL, *sum = NULL, *other = NULL,
                                   *no_reload = NULL, *forged = NULL, *ix = NULL, *ix_sum = NULL;
        char expect[80];

        publish_build_configmap("ns", "cb", &ID, 2, res, "k", NULL, "nginx", &want, NULL);
        json_object_deep_copy(want, &have, NULL);
        json_object_object_add(jsonx_get(have, "metadata"), "resourceVersion",
                               json_object_new_string("42"));
        json_object_object_add(jsonx_get(have, "metadata.annotations"), "someone/else",
                               json_object_new_string("x"));
        sum = publish_configmap_summary(have, NULL);
        assert_non_null(sum);
        /* No manifest, only its digest; others' annotations dropped. */
        /* The manifest's digest is the bundle digest: sha256 of those bytes. */
        snprintf(expect, sizeof(expect), "%s", res->digest);
        assert_string_equal(strempty(json_object_get_string(json_object_object_get(
                                    jsonx_get(sum, "data"), BUNDLE_MANIFEST_DATA_KEY))),
                            expect);
        assert_string_equal(jsonx_get_string(sum, "metadata.resourceVersion"), "42");
        assert_null(json_object_object_get(jsonx_get(sum, "metadata.annotations"), "someone/else"));
        assert_true(publish_configmap_is_current(sum, want));

        publish_build_configmap("ns", "cb", &ID, 3, res, "k", NULL, "nginx", &other, NULL);
        assert_false(publish_configmap_is_current(sum, other));
        publish_build_configmap("ns", "cb", &ID, 2, res, "k", NULL, NULL, &no_reload, NULL);
        assert_false(publish_configmap_is_current(sum, no_reload));
        /* A data value that equals the digest, in an object that is not a
         * summary, is not taken for one. */
        json_object_deep_copy(want, &forged, NULL);
        json_object_object_add(jsonx_get(forged, "data"), BUNDLE_MANIFEST_DATA_KEY,
                               json_object_new_string(expect));
        assert_false(publish_configmap_is_current(forged, want));

        /* The index ConfigMap is kept whole. */
        assert_int_equal(publish_build_index_configmap("ns", "{\"a\":1}", 7, &ix), 0);
        ix_sum = publish_configmap_summary(ix, NULL);
        assert_ptr_equal(ix_sum, ix);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names_and_keys),
                cmocka_unit_test(test_configmap_carries_manifest_and_pointer),
                cmocka_unit_test(test_oversized_manifest_is_a_pointer),
                cmocka_unit_test(test_is_current),
                cmocka_unit_test(test_is_current_on_summaries),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
