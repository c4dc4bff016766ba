/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "fsx.h"
#include "jsonx.h"
#include "yamlx.h"

static json_object *parse_ok(const char *s) {
        json_object *o = (json_object *) 0x1;
        err_info e;

        err_info_clear(&e);
        if (yamlx_parse(s, strlen(s), "t.yaml", &o, &e) < 0)
                fail_msg("parse failed: %s\n---\n%s", e.message, s);
        return o;
}

static void parse_fails(const char *s, const char *want_message) {
        json_object *o = (json_object *) 0x1;
        err_info e;
        int r;

        err_info_clear(&e);
        r = yamlx_parse(s, strlen(s), "t.yaml", &o, &e);
        if (r != -EBADMSG)
                fail_msg("expected -EBADMSG, got %d for:\n%s", r, s);
        assert_ptr_equal(o, (json_object *) 0x1);
        if (!strstr(e.message, want_message))
                fail_msg("message '%s' lacks '%s'", e.message, want_message);
}

static const char kubeconfig[] = "apiVersion: v1\n"
                                 "kind: Config\n"
                                 "current-context: dev\n"
                                 "clusters:\n"
                                 "- name: dev\n"
                                 "  cluster:\n"
                                 "    server: https://127.0.0.1:6443\n"
                                 "    certificate-authority-data: LS0tLS1CRUdJTg==\n"
                                 "    insecure-skip-tls-verify: false\n"
                                 "contexts:\n"
                                 "- name: dev\n"
                                 "  context: {cluster: dev, user: admin, namespace: \"default\"}\n"
                                 "users:\n"
                                 "- name: admin\n"
                                 "  user:\n"
                                 "    token: abc.def\n"
                                 "preferences: {}\n";

static void test_kubeconfig(void **state) {
        _cleanup_json_ json_object *o = parse_ok(kubeconfig);
        json_object *clusters, *c0, *user;
        unsigned line, col;

        assert_string_equal(jsonx_get_string(o, "kind"), "Config");
        assert_string_equal(jsonx_get_string(o, "current-context"), "dev");
        clusters = jsonx_get(o, "clusters");
        assert_true(json_object_is_type(clusters, json_type_array));
        assert_int_equal(json_object_array_length(clusters), 1);
        c0 = json_object_array_get_idx(clusters, 0);
        assert_string_equal(jsonx_get_string(c0, "cluster.server"), "https://127.0.0.1:6443");
        assert_false(jsonx_get_bool(c0, "cluster.insecure-skip-tls-verify", true));
        assert_true(json_object_is_type(jsonx_get(c0, "cluster.insecure-skip-tls-verify"),
                                        json_type_boolean));
        assert_string_equal(jsonx_get_string(json_object_array_get_idx(jsonx_get(o, "contexts"), 0),
                                             "context.namespace"),
                            "default");
        user = json_object_array_get_idx(jsonx_get(o, "users"), 0);
        assert_string_equal(jsonx_get_string(user, "user.token"), "abc.def");
        assert_int_equal(json_object_object_length(jsonx_get(o, "preferences")), 0);

        /* Positions: 1-based line and column of each node. */
        assert_int_equal(yamlx_where(jsonx_get(c0, "cluster.server"), &line, &col), 0);
        assert_int_equal(line, 7);
        assert_int_equal(col, 13);
        assert_int_equal(yamlx_where(c0, &line, &col), 0);
        assert_int_equal(line, 5);
        assert_int_equal(col, 3);
        assert_int_equal(yamlx_where(jsonx_get(user, "user.token"), &line, NULL), 0);
        assert_int_equal(line, 16);
        assert_int_equal(yamlx_where(o, &line, &col), 0);
        assert_int_equal(line, 1);
        assert_int_equal(col, 1);

        /* Not ours: no position. */
        {
                _cleanup_json_ json_object *s = json_object_new_string("x");
                _cleanup_json_ json_object *d = json_object_new_double_s(1.5, "1.5");

                assert_int_equal(yamlx_where(s, &line, &col), -ENOENT);
                assert_int_equal(yamlx_where(d, &line, &col), -ENOENT);
                assert_int_equal(yamlx_where(NULL, &line, &col), -ENOENT);
        }

        /* Copies work (json_object_deep_copy() would refuse our userdata). */
        {
                _cleanup_json_ json_object *copy = NULL;
                _cleanup_free_ char *a = NULL, *b = NULL;

                assert_int_equal(jsonx_deep_copy(o, &copy), 0);
                assert_int_equal(jsonx_to_canonical(o, &a, NULL), 0);
                assert_int_equal(jsonx_to_canonical(copy, &b, NULL), 0);
                assert_string_equal(a, b);
                assert_int_equal(yamlx_where(copy, &line, &col), -ENOENT);
        }
}

static void test_scalar_types(void **state) {
        _cleanup_json_ json_object *o = parse_ok("a: true\n"
                                                 "b: \"true\"\n"
                                                 "c: 'false'\n"
                                                 "d: False\n"
                                                 "e: 42\n"
                                                 "f: \"42\"\n"
                                                 "g: -7\n"
                                                 "h: 0x1F\n"
                                                 "i: 0o17\n"
                                                 "j: 0644\n"
                                                 "k: 1.5\n"
                                                 "l: ~\n"
                                                 "m: null\n"
                                                 "n:\n"
                                                 "o: yes\n"
                                                 "p: 9223372036854775807\n"
                                                 "q: 9223372036854775808\n"
                                                 "r: -9223372036854775808\n"
                                                 "s: !!str 12\n"
                                                 "t: |\n  line1\n  line2\n"
                                                 "u: 1e3\n"
                                                 "v: .inf\n"
                                                 "w: +3\n"
                                                 "x: 0\n"
                                                 "y: \"\"\n"
                                                 "z: 12abc\n");
        json_object *v = NULL;

        assert_true(json_object_is_type(jsonx_get(o, "a"), json_type_boolean));
        assert_true(jsonx_get_bool(o, "a", false));
        assert_string_equal(jsonx_get_string(o, "b"), "true");
        assert_string_equal(jsonx_get_string(o, "c"), "false");
        assert_false(jsonx_get_bool(o, "d", true));
        assert_int_equal(jsonx_get_int(o, "e", 0), 42);
        assert_string_equal(jsonx_get_string(o, "f"), "42");
        assert_int_equal(jsonx_get_int(o, "g", 0), -7);
        assert_int_equal(jsonx_get_int(o, "h", 0), 31);
        assert_int_equal(jsonx_get_int(o, "i", 0), 15);
        assert_string_equal(jsonx_get_string(o, "j"), "0644"); /* not guessed */
        assert_string_equal(jsonx_get_string(o, "k"), "1.5");  /* floats stay strings */
        for (const char *k = "lmn"; *k; k++) {
                char key[2] = {*k, 0};

                assert_true(json_object_object_get_ex(o, key, &v));
                assert_null(v);
        }
        assert_string_equal(jsonx_get_string(o, "o"), "yes"); /* YAML 1.2: not a bool */
        assert_int_equal(jsonx_get_int(o, "p", 0), INT64_MAX);
        assert_string_equal(jsonx_get_string(o, "q"), "9223372036854775808"); /* overflow */
        assert_int_equal(jsonx_get_int(o, "r", 0), INT64_MIN);
        assert_string_equal(jsonx_get_string(o, "s"), "12");
        assert_string_equal(jsonx_get_string(o, "t"), "line1\nline2\n");
        assert_string_equal(jsonx_get_string(o, "u"), "1e3");
        assert_string_equal(jsonx_get_string(o, "v"), ".inf");
        assert_int_equal(jsonx_get_int(o, "w", 0), 3);
        assert_int_equal(jsonx_get_int(o, "x", 7), 0);
        assert_string_equal(jsonx_get_string(o, "y"), "");
        assert_string_equal(jsonx_get_string(o, "z"), "12abc");

        /* No doubles anywhere: json-c would misuse our userdata as a format. */
        json_object_object_foreach(o, key, val) {
                (void) key;
                assert_false(json_object_is_type(val, json_type_double));
        }
}

static void test_top_level_and_empty(void **state) {
        json_object *o = (json_object *) 0x1;

        assert_int_equal(yamlx_parse("", 0, "e.yaml", &o, NULL), 0);
        assert_null(o);
        o = (json_object *) 0x1;
        assert_int_equal(yamlx_parse("# only a comment\n", 17, "e.yaml", &o, NULL), 0);
        assert_null(o);
        o = (json_object *) 0x1;
        assert_int_equal(yamlx_parse("---\n", 4, "e.yaml", &o, NULL), 0);
        assert_null(o);
        o = (json_object *) 0x1;
        assert_int_equal(yamlx_parse("--- ~\n...\n", 10, "e.yaml", &o, NULL), 0);
        assert_null(o);

        o = parse_ok("just text");
        assert_string_equal(json_object_get_string(o), "just text");
        json_object_put(o);
        o = parse_ok("[1, two, {three: 3}]");
        assert_int_equal(json_object_array_length(o), 3);
        assert_int_equal(json_object_get_int(json_object_array_get_idx(o, 0)), 1);
        json_object_put(o);
        /* Length is honoured: no NUL needed. */
        assert_int_equal(yamlx_parse("a: 1\nb: [", 4, NULL, &o, NULL), 0);
        assert_int_equal(jsonx_get_int(o, "a", 0), 1);
        json_object_put(o);
}

static void test_rejections(void **state) {
        parse_fails("a: 1\na: 2\n", "t.yaml:2:1: duplicate key 'a'");
        parse_fails("x:\n  y: 1\n  z: 2\n  y: 3\n", "t.yaml:4:3: duplicate key 'y'");
        parse_fails("a: &x 1\nb: *x\n", "anchors are not supported");
        parse_fails("b: *x\n", "t.yaml:1:4:");
        parse_fails("? [a, b]\n: 1\n", "t.yaml:1:3: keys must be scalars");
        parse_fails("{? {a: 1} : 2}\n", "keys must be scalars");
        parse_fails("a: 1\n---\nb: 2\n", "t.yaml:2:1: multiple documents");
        parse_fails("a: \"x\\0y\"\n", "NUL");
        parse_fails("\"a\\0b\": 1\n", "NUL");
        parse_fails("a: !!binary aGVsbG8=\n", "unsupported tag");
        parse_fails("a: !custom x\n", "unsupported tag");
        parse_fails("a: !!int abc\n", "not a valid");
        parse_fails("a: !!bool 1\n", "not a valid");
        /* Billion laughs never gets to expand. */
        parse_fails("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n", "anchors");
}

static void test_syntax_error_positions(void **state) {
        /* libyaml's own problems carry FILE:LINE:COL. */
        parse_fails("a: 1\nb: [1, 2\nc: 3\n", "t.yaml:");
        parse_fails("a: 1\n  b: 2\n", "t.yaml:2:4: mapping values are not allowed");
        parse_fails("key: \"unterminated\n", "t.yaml:");
        parse_fails("a:\n\t- 1\n", "t.yaml:2:1:");
        parse_fails("a: \xff\xfe\n", "t.yaml: byte 3: invalid");
}

static void test_depth_limit(void **state) {
        size_t n = 100000;
        _cleanup_free_ char *deep = malloc(n + 1);
        _cleanup_json_ json_object *ok = NULL;
        char nested[512];
        size_t i;

        memset(deep, '[', n);
        deep[n] = '\0';
        parse_fails(deep, "nesting deeper than");

        /* 200 levels are fine. */
        for (i = 0; i < 200; i++)
                nested[i] = '[';
        for (; i < 400; i++)
                nested[i] = ']';
        nested[i] = '\0';
        ok = parse_ok(nested);
        assert_true(json_object_is_type(ok, json_type_array));
}

static void test_truncations_never_crash(void **state) {
        const char *docs[] = {
                kubeconfig,
                "a: [1, {b: \"c\\u00e9\", d: 'e''f'}, |\n  lit\n  more\n]\n",
                "- &x a\n- *x\n- !!str 1\n- ? complex\n  : v\n",
                "%YAML 1.2\n---\nk: >-\n  folded\n  text\n...\n",
        };

        for (size_t d = 0; d < ELEMENTSOF(docs); d++) {
                size_t len = strlen(docs[d]);

                for (size_t i = 0; i <= len; i++) {
                        /* A copy of exactly i bytes, so ASan sees any overread. */
                        char *buf = malloc(i ? i : 1);
                        json_object *o = NULL;
                        err_info e;
                        int r;

                        memcpy(buf, docs[d], i);
                        err_info_clear(&e);
                        r = yamlx_parse(buf, i, "trunc.yaml", &o, &e);
                        if (r < 0) {
                                assert_int_equal(r, -EBADMSG);
                                assert_true(startswith(e.message, "trunc.yaml"));
                        } else
                                json_object_put(o);
                        /* And with one byte flipped. */
                        if (i > 0) {
                                buf[i / 2] ^= 0x5a;
                                o = NULL;
                                if (yamlx_parse(buf, i, "trunc.yaml", &o, NULL) >= 0)
                                        json_object_put(o);
                        }
                        free(buf);
                }
        }
}

static void test_error_helper(void **state) {
        _cleanup_json_ json_object *o = parse_ok("spec:\n  replicas: many\n");
        _cleanup_json_ json_object *mine = json_object_new_string("x");
        err_info e;

        assert_int_equal(yamlx_error(&e, -EINVAL, "cfg.yaml", jsonx_get(o, "spec.replicas"),
                                     "replicas must be an integer, not '%s'", "many"),
                         -EINVAL);
        assert_string_equal(e.message, "cfg.yaml:2:13: replicas must be an integer, not 'many'");
        assert_int_equal(yamlx_error(&e, -EINVAL, "cfg.yaml", mine, "bad"), -EINVAL);
        assert_string_equal(e.message, "cfg.yaml: bad");
        assert_int_equal(yamlx_error(NULL, -EINVAL, "cfg.yaml", mine, "bad"), -EINVAL);
}

static void test_load_file(void **state) {
        char dir[] = "/tmp/test-yamlx-XXXXXX";
        char path[256];
        int dfd;
        json_object *o = NULL;
        err_info e;

        assert_non_null(mkdtemp(dir));
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(fsx_write_atomic(dfd, "config", kubeconfig, strlen(kubeconfig), 0600), 0);
        snprintf(path, sizeof(path), "%s/config", dir);

        assert_int_equal(yamlx_load_file(path, 0, &o, &e), 0);
        assert_string_equal(jsonx_get_string(o, "kind"), "Config");
        json_object_put(o);

        assert_int_equal(yamlx_load_file(path, 10, &o, &e), -EFBIG);
        assert_non_null(strstr(e.message, path));

        snprintf(path, sizeof(path), "%s/missing", dir);
        assert_int_equal(yamlx_load_file(path, 0, &o, &e), -ENOENT);
        assert_non_null(strstr(e.message, "missing"));

        assert_int_equal(fsx_write_atomic(dfd, "bad", "a: [\n", 5, 0600), 0);
        snprintf(path, sizeof(path), "%s/bad", dir);
        assert_int_equal(yamlx_load_file(path, 0, &o, &e), -EBADMSG);
        assert_true(startswith(e.message, path));

        assert_int_equal(fsx_rm_rf_at(AT_FDCWD, "."), -EINVAL);
        close(dfd);
        {
                int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_int_equal(fsx_rm_rf_at(tmp, dir + strlen("/tmp/")), 0);
                close(tmp);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kubeconfig),
                cmocka_unit_test(test_scalar_types),
                cmocka_unit_test(test_top_level_and_empty),
                cmocka_unit_test(test_rejections),
                cmocka_unit_test(test_syntax_error_positions),
                cmocka_unit_test(test_depth_limit),
                cmocka_unit_test(test_truncations_never_crash),
                cmocka_unit_test(test_error_helper),
                cmocka_unit_test(test_load_file),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
