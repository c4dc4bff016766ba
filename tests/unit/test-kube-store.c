/* SPDX-License-Identifier: Apache-2.0 */
/* The watch store, tree and compact: what goes in comes back (through the
 * transform), old values are handed over on replace and remove. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonx.h"
#include "kube.h"

static json_object *obj(const char *name, const char *rv, const char *extra) {
        char buf[512];

        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"ns\",\"resourceVersion\":\"%s\"},"
                 "\"spec\":{\"x\":[1,2,{\"y\":\"%s\"}]}}",
                 name, rv, extra);
        return json_tokener_parse(buf);
}

/* Drops spec.x: proves the store keeps what the transform returned. */
static json_object *drop_x(json_object *o, void *userdata) {
        json_object *copy = NULL;

        (*(unsigned *) userdata)++;
        if (json_object_deep_copy(o, &copy, NULL) < 0)
                return NULL;
        json_object_object_del(jsonx_get(copy, "spec"), "x");
        return copy;
}

static int count_keys(const char *key, void *userdata) {
        (void) key;
        (*(unsigned *) userdata)++;
        return 0;
}

static int collect_rv(const char *key, json_object *o, void *userdata) {
        json_object *seen = userdata;

        json_object_object_add(
                seen, key, json_object_new_string(jsonx_get_string(o, "metadata.resourceVersion")));
        return 0;
}

static void exercise(bool compact) {
        _cleanup_(kube_store_freep) kube_store *s = NULL;
        _cleanup_json_ json_object *a1 = obj("a", "1", "first"), *a2 = obj("a", "2", "second"),
                                   *b = obj("b", "7", "bee"), *seen = json_object_new_object();
        json_object *old = NULL, *got, *ref;
        unsigned calls = 0, keys = 0;

        assert_int_equal(kube_store_new(&s), 0);
        if (compact)
                assert_int_equal(kube_store_set_compact(s, drop_x, &calls), 0);

        assert_int_equal(kube_store_put(s, "ns/a", a1, &old), 0);
        assert_null(old);
        assert_int_equal(kube_store_put(s, "ns/b", b, NULL), 0);
        assert_int_equal(kube_store_count(s), 2);
        assert_true(kube_store_contains(s, "ns/a"));
        assert_false(kube_store_contains(s, "ns/zz"));
        assert_null(kube_store_get(s, "ns/zz"));

        /* The caller's object is never changed by the transform. */
        assert_non_null(jsonx_get(a1, "spec.x"));

        got = kube_store_get(s, "ns/a");
        assert_non_null(got);
        assert_string_equal(jsonx_get_string(got, "metadata.resourceVersion"), "1");
        if (compact) {
                assert_null(jsonx_get(got, "spec.x"));
                assert_non_null(jsonx_get(got, "spec"));
                assert_int_equal(calls, 2);
        } else
                assert_ptr_equal(got, a1);

        /* A reference outlives later gets and the replacement. */
        ref = kube_store_ref(s, "ns/a");
        assert_non_null(kube_store_get(s, "ns/b"));
        assert_int_equal(kube_store_put(s, "ns/a", a2, &old), 0);
        assert_non_null(old);
        assert_string_equal(jsonx_get_string(old, "metadata.resourceVersion"), "1");
        assert_string_equal(jsonx_get_string(ref, "metadata.resourceVersion"), "1");
        json_object_put(old);
        json_object_put(ref);
        assert_string_equal(jsonx_get_string(kube_store_get(s, "ns/a"), "metadata.resourceVersion"),
                            "2");

        assert_int_equal(kube_store_foreach(s, collect_rv, seen), 0);
        assert_int_equal(json_object_object_length(seen), 2);
        assert_string_equal(json_object_get_string(json_object_object_get(seen, "ns/a")), "2");
        assert_string_equal(json_object_get_string(json_object_object_get(seen, "ns/b")), "7");
        assert_int_equal(kube_store_foreach_key(s, count_keys, &keys), 0);
        assert_int_equal(keys, 2);

        old = kube_store_remove(s, "ns/b");
        assert_non_null(old);
        assert_string_equal(jsonx_get_string(old, "metadata.name"), "b");
        if (compact)
                assert_null(jsonx_get(old, "spec.x"));
        else
                assert_ptr_equal(old, b);
        json_object_put(old);
        assert_null(kube_store_remove(s, "ns/b"));
        assert_int_equal(kube_store_count(s), 1);
}

static void test_tree_store(void **state) {
        exercise(false);
}

static void test_compact_store(void **state) {
        exercise(true);
}

static void test_compact_only_when_empty(void **state) {
        _cleanup_(kube_store_freep) kube_store *s = NULL;
        _cleanup_json_ json_object *a = obj("a", "1", "x");

        assert_int_equal(kube_store_new(&s), 0);
        assert_int_equal(kube_store_put(s, "ns/a", a, NULL), 0);
        assert_int_equal(kube_store_set_compact(s, NULL, NULL), -EBUSY);
}

/* Text survives exactly: strings with quotes, slashes, unicode and NULs. */
static void test_compact_keeps_every_byte(void **state) {
        _cleanup_(kube_store_freep) kube_store *s = NULL;
        _cleanup_json_ json_object *o = json_object_new_object(), *back = NULL;
        static const char odd[] = "a\"b\\c/d\n\xc3\xa9\x00z";

        json_object_object_add(o, "v", json_object_new_string_len(odd, sizeof(odd) - 1));
        assert_int_equal(kube_store_new(&s), 0);
        assert_int_equal(kube_store_set_compact(s, NULL, NULL), 0);
        assert_int_equal(kube_store_put(s, "k", o, NULL), 0);
        back = kube_store_ref(s, "k");
        assert_non_null(back);
        assert_true(json_object_equal(o, back));
        assert_int_equal(json_object_get_string_len(json_object_object_get(back, "v")),
                         sizeof(odd) - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tree_store),
                cmocka_unit_test(test_compact_store),
                cmocka_unit_test(test_compact_only_when_empty),
                cmocka_unit_test(test_compact_keeps_every_byte),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
