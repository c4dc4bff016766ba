/* SPDX-License-Identifier: Apache-2.0 */
/* Rendering: the template language, validation, and the canonical manifest. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash.h"
#include "jsonx.h"
#include "render.h"

static const render_identity ID = {.namespace = "prod", .name = "web", .uid = "u-1"};

static json_object *parse(const char *s) {
        json_object *o = NULL;
        assert_int_equal(jsonx_parse(s, strlen(s), &o, NULL), 0);
        return o;
}

static char *tmpl_ok(const char *tmpl, const char *values_json) {
        _cleanup_json_ json_object *v = values_json ? parse(values_json) : NULL;
        char *out = NULL;
        size_t len = 0;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(render_template(tmpl, v, &ID, &out, &len, &e), 0);
        assert_int_equal(len, strlen(out));
        return out;
}

/* Renders a template that must fail, and checks the message contains @want. */
static void tmpl_fails(const char *tmpl, const char *values_json, const char *want) {
        _cleanup_json_ json_object *v = values_json ? parse(values_json) : NULL;
        char *out = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(render_template(tmpl, v, &ID, &out, NULL, &e), -EINVAL);
        assert_null(out);
        if (!strstr(e.message, want))
                fail_msg("error '%s' does not contain '%s'", e.message, want);
}

static void test_template_substitutes_values_and_identity(void **state) {
        _cleanup_free_ char *a = tmpl_ok("port={{port}}\nhost = {{ host }}\n",
                                         "{\"port\":\"8080\",\"host\":\"db\"}");
        _cleanup_free_ char *b = tmpl_ok("{{ bundle.namespace }}/{{bundle.name}}", NULL);
        _cleanup_free_ char *c = tmpl_ok("plain text with } and { and }}", NULL);
        _cleanup_free_ char *d = tmpl_ok("", NULL);

        assert_string_equal(a, "port=8080\nhost = db\n");
        assert_string_equal(b, "prod/web");
        assert_string_equal(c, "plain text with } and { and }}");
        assert_string_equal(d, "");
}

static void test_template_default_and_literals(void **state) {
        _cleanup_free_ char *a = tmpl_ok("{{ level | default \"info\" }}", "{}");
        _cleanup_free_ char *b = tmpl_ok("{{ level|default \"info\" }}", "{\"level\":\"debug\"}");
        _cleanup_free_ char *c = tmpl_ok("{{ \"{{\" }} x {{ \"}}\" }}", NULL);
        _cleanup_free_ char *d = tmpl_ok("{{ \"a\\\"b\\\\c\" }}", NULL);

        assert_string_equal(a, "info");
        assert_string_equal(b, "debug");
        assert_string_equal(c, "{{ x }}");
        assert_string_equal(d, "a\"b\\c");
}

static void test_template_errors_name_the_position(void **state) {
        tmpl_fails("a\nb {{ port }}", "{}", "line 2, column 3: undefined value 'port'");
        tmpl_fails("x {{ port", "{\"port\":\"1\"}", "line 1, column 3: unterminated tag");
        tmpl_fails("{{ port\n}}", "{\"port\":\"1\"}", "unterminated tag");
        tmpl_fails("{{}}", NULL, "line 1, column 1: empty tag");
        tmpl_fails("{{ port | upper }}", "{\"port\":\"1\"}", "unknown filter");
        tmpl_fails("{{ port | default 3 }}", "{}", "'default' takes a \"string\"");
        tmpl_fails("{{ \"abc }}", NULL, "unterminated string literal");
        tmpl_fails("{{ \"a\\nb\" }}", NULL, "unknown escape");
        tmpl_fails("{{ a.b }}", "{}", "only bundle.name and bundle.namespace");
        tmpl_fails("{{ bundle.uid }}", NULL, "undefined value 'bundle.uid'");
        tmpl_fails("{{ 7 }}", NULL, "line 1, column 4: expected a value name");
        tmpl_fails("{{ a b }}", "{\"a\":\"1\"}", "expected '}}', found 'b'");
        tmpl_fails("{{ \"x\" | default \"y\" }}", NULL, "'default' needs a value name");
}

static render_result *bundle_ok(const char *spec_json, int64_t revision) {
        _cleanup_json_ json_object *spec = parse(spec_json);
        render_result *res = NULL;
        err_info e;

        err_info_clear(&e);
        if (render_bundle(spec, &ID, revision, &res, &e) < 0)
                fail_msg("render failed: %s", e.message);
        return res;
}

static void bundle_fails(const char *spec_json, int want_r, const char *want) {
        _cleanup_json_ json_object *spec = parse(spec_json);
        render_result *res = NULL;
        err_info e;

        err_info_clear(&e);
        assert_int_equal(render_bundle(spec, &ID, 1, &res, &e), want_r);
        assert_null(res);
        if (!strstr(e.message, want))
                fail_msg("error '%s' does not contain '%s'", e.message, want);
}

static void test_manifest_is_canonical_and_exact(void **state) {
        _cleanup_(render_result_freep) render_result *r =
                bundle_ok("{\"files\":[{\"path\":\"b.conf\",\"content\":\"B\"},"
                          "{\"path\":\"a.conf\",\"template\":\"v={{v}}\",\"mode\":384}],"
                          "\"values\":{\"v\":\"1\"},\"reload\":\"nginx\"}",
                          3);
        char want_digest[7 + 65] = "sha256:";

        assert_string_equal(
                r->manifest,
                "{\"apiVersion\":\"ballast.dev/v1alpha1\","
                "\"bundle\":{\"name\":\"web\",\"namespace\":\"prod\",\"uid\":\"u-1\"},"
                "\"files\":["
                "{\"content\":\"v=1\",\"mode\":384,\"path\":\"a.conf\",\"sha256\":"
                "\"a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fde\",\"size\":3},"
                "{\"content\":\"B\",\"mode\":420,\"path\":\"b.conf\",\"sha256\":"
                "\"df7e70e5021544f4834bbee64a9e3789febc4be81470df629cad6ddb03320a5c\",\"size\":1}],"
                "\"kind\":\"BundleManifest\",\"reload\":\"nginx\",\"revision\":3}");
        assert_int_equal(r->manifest_len, strlen(r->manifest));
        assert_int_equal(r->n_files, 2);
        assert_int_equal(r->content_size, 4);
        assert_int_equal(hash_sha256_hex(r->manifest, r->manifest_len, want_digest + 7), 0);
        assert_string_equal(r->digest, want_digest);
}

static void test_same_spec_renders_identically(void **state) {
        /* The same spec with keys, values and files in another order. */
        _cleanup_(render_result_freep) render_result *a =
                bundle_ok("{\"values\":{\"x\":\"1\",\"y\":\"2\"},\"files\":["
                          "{\"path\":\"one\",\"template\":\"{{x}}{{y}}\"},"
                          "{\"content\":\"z\",\"path\":\"two\",\"mode\":420}]}",
                          1);
        _cleanup_(render_result_freep) render_result *b =
                bundle_ok("{\"files\":[{\"mode\":420,\"path\":\"two\",\"content\":\"z\"},"
                          "{\"template\":\"{{x}}{{y}}\",\"path\":\"one\"}],"
                          "\"values\":{\"y\":\"2\",\"x\":\"1\"}}",
                          1);
        _cleanup_(render_result_freep) render_result *c =
                bundle_ok("{\"values\":{\"x\":\"1\",\"y\":\"3\"},\"files\":["
                          "{\"path\":\"one\",\"template\":\"{{x}}{{y}}\"},"
                          "{\"content\":\"z\",\"path\":\"two\",\"mode\":420}]}",
                          1);
        _cleanup_(render_result_freep) render_result *d =
                bundle_ok("{\"values\":{\"x\":\"1\",\"y\":\"2\"},\"files\":["
                          "{\"path\":\"one\",\"template\":\"{{x}}{{y}}\"},"
                          "{\"content\":\"z\",\"path\":\"two\",\"mode\":420}]}",
                          2);

        assert_string_equal(a->manifest, b->manifest);
        assert_string_equal(a->digest, b->digest);
        assert_string_not_equal(a->digest, c->digest); /* a value changed */
        assert_string_not_equal(a->digest, d->digest); /* the revision changed */
        /* Rendering again gives the same bytes. */
        for (int i = 0; i < 3; i++) {
                _cleanup_(render_result_freep) render_result *again =
                        bundle_ok("{\"files\":[{\"mode\":420,\"path\":\"two\",\"content\":\"z\"},"
                                  "{\"template\":\"{{x}}{{y}}\",\"path\":\"one\"}],"
                                  "\"values\":{\"y\":\"2\",\"x\":\"1\"}}",
                                  1);
                assert_memory_equal(again->manifest, a->manifest, a->manifest_len);
        }
}

static void test_content_is_escaped_not_interpreted(void **state) {
        _cleanup_(render_result_freep) render_result *r = bundle_ok(
                "{\"files\":[{\"path\":\"x\",\"content\":\"{{ not_a_value }}\\n\\\"q\\\"\\t/\"}]}",
                1);
        _cleanup_json_ json_object *m = NULL;

        assert_non_null(strstr(r->manifest, "\"content\":\"{{ not_a_value }}\\n\\\"q\\\"\\t/\""));
        assert_int_equal(jsonx_parse(r->manifest, r->manifest_len, &m, NULL), 0);
        assert_string_equal(
                json_object_get_string(json_object_object_get(
                        json_object_array_get_idx(json_object_object_get(m, "files"), 0),
                        "content")),
                "{{ not_a_value }}\n\"q\"\t/");
}

static void test_bundle_validation(void **state) {
        bundle_fails("{}", -EINVAL, "files: at least one file is required");
        bundle_fails("{\"files\":[]}", -EINVAL, "at least one file");
        bundle_fails("[]", -EINVAL, "spec must be an object");
        bundle_fails("{\"files\":[{\"content\":\"x\"}]}", -EINVAL, "files[0]: path is required");
        static const char *const bad_paths[] = {
                "/etc/passwd", "../x",  "a/../b", "a//b", "a/./b",  "a/",
                "..data/x",    "a/..b", "sp ace", "",     "a\\\\b",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_paths); i++) {
                char spec[256];
                snprintf(spec, sizeof(spec), "{\"files\":[{\"path\":\"%s\",\"content\":\"x\"}]}",
                         bad_paths[i]);
                bundle_fails(spec, -EINVAL, "is not a clean relative path");
        }
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\"},{\"path\":\"a\",\"content\":"
                     "\"y\"}]}",
                     -EINVAL, "path 'a' appears twice");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\"},{\"path\":\"a-b\",\"content\":"
                     "\"y\"},{\"path\":\"a/b\",\"content\":\"z\"}]}",
                     -EINVAL, "'a' is a file, so 'a/b' can't be inside it");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\",\"template\":\"y\"}]}", -EINVAL,
                     "exactly one of content or template");
        bundle_fails("{\"files\":[{\"path\":\"a\"}]}", -EINVAL,
                     "exactly one of content or template");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\",\"mode\":512}]}", -EINVAL,
                     "mode 512 is outside");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\",\"mode\":\"0644\"}]}", -EINVAL,
                     "mode must be an integer");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\"}],\"values\":{\"n\":1}}",
                     -EINVAL, "values.n: must be a string");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\"}],\"values\":{\"a-b\":\"1\"}}",
                     -EINVAL, "values.a-b: names must match");
        bundle_fails("{\"files\":[{\"path\":\"a\",\"content\":\"x\"}],\"reload\":\"Bad_Name\"}",
                     -EINVAL, "reload: 'Bad_Name' is not a valid action name");
        bundle_fails("{\"files\":[{\"path\":\"ok\",\"content\":\"x\"},"
                     "{\"path\":\"etc/app.conf\",\"template\":\"a\\n  {{ port }}\"}]}",
                     -EINVAL, "files[1] (etc/app.conf): line 2, column 3: undefined value 'port'");
}

static void test_bundle_accepts_dotfiles_and_nested_paths(void **state) {
        _cleanup_(render_result_freep) render_result *r =
                bundle_ok("{\"files\":[{\"path\":\".env\",\"content\":\"\"},"
                          "{\"path\":\"conf.d/10-x.conf\",\"content\":\"x\"},"
                          "{\"path\":\"a/.hidden/b_c-d.e\",\"content\":\"y\"}]}",
                          7);
        assert_int_equal(r->n_files, 3);
        assert_non_null(strstr(r->manifest, "\"path\":\".env\",\"sha256\":\"e3b0c44298fc1c149a"
                                            "fbf4c8996fb92427ae41e4649b934ca495991b7852b855\""));
}

static void test_bundle_size_limits(void **state) {
        size_t big = BUNDLE_MAX_FILE_SIZE + 1;
        _cleanup_free_ char *spec = malloc(big + 128);
        _cleanup_json_ json_object *o = NULL;
        render_result *res = NULL;
        err_info e;
        int n;

        /* A template that expands past the per-file limit. */
        n = snprintf(spec, big + 128, "{\"files\":[{\"path\":\"a\",\"template\":\"");
        for (int i = 0; i < 40000; i++)
                n += snprintf(spec + n, big + 128 - n, "{{v}}");
        snprintf(spec + n, big + 128 - n, "\"}],\"values\":{\"v\":\"%s\"}}",
                 "0123456789012345678901234567890123456789");
        o = parse(spec);
        err_info_clear(&e);
        assert_int_equal(render_bundle(o, &ID, 1, &res, &e), -EFBIG);
        assert_null(res);
        assert_non_null(strstr(e.message, "files[0] (a): rendered output exceeds"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_template_substitutes_values_and_identity),
                cmocka_unit_test(test_template_default_and_literals),
                cmocka_unit_test(test_template_errors_name_the_position),
                cmocka_unit_test(test_manifest_is_canonical_and_exact),
                cmocka_unit_test(test_same_spec_renders_identically),
                cmocka_unit_test(test_content_is_escaped_not_interpreted),
                cmocka_unit_test(test_bundle_validation),
                cmocka_unit_test(test_bundle_accepts_dotfiles_and_nested_paths),
                cmocka_unit_test(test_bundle_size_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
