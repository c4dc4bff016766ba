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

typedef struct order {
        kube_store *s;
        char seen[64];
        const char *remove; /* removed when the first key is visited */
} order;

static int record_key(const char *key, void *userdata) {
        order *o = userdata;

        strcat(o->seen, key + 3); /* after "ns/" */
        if (o->remove) {
                json_object_put(kube_store_remove(o->s, o->remove));
                o->remove = NULL;
        }
        return 0;
}

/* Iteration is in the order keys were first stored, a replaced object keeps
 * its place, and @fn may remove what it has not visited yet. */
/* Stores @o (the store takes its own reference) and drops ours. */
static int put_new(kube_store *s, const char *key, json_object *o) {
        int r = kube_store_put(s, key, o, NULL);

        json_object_put(o);
        return r;
}

static void check_order(bool compact) {
        _cleanup_(kube_store_freep) kube_store *s = NULL;
        order o = {};
        const char *names[] = {"a", "b", "c", "d"};

        assert_int_equal(kube_store_new(&s), 0);
        if (compact)
                assert_int_equal(kube_store_set_compact(s, NULL, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char key[8];

                snprintf(key, sizeof(key), "ns/%s", names[i]);
                assert_int_equal(put_new(s, key, obj(names[i], "1", "")), 0);
        }
        assert_int_equal(put_new(s, "ns/b", obj("b", "2", "")), 0);
        json_object_put(kube_store_remove(s, "ns/a"));
        assert_int_equal(put_new(s, "ns/a", obj("a", "3", "")), 0);
        o.s = s;
        assert_int_equal(kube_store_foreach_key(s, record_key, &o), 0);
        assert_string_equal(o.seen, "bcda");

        o = (order){.s = s, .remove = "ns/d"};
        assert_int_equal(kube_store_foreach_key(s, record_key, &o), 0);
        assert_string_equal(o.seen, "bca");
        assert_int_equal(kube_store_count(s), 3);
}

static void test_iteration_order(void **state) {
        check_order(false);
        check_order(true);
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

/* Objects of one kind deflate against the first one, and big or odd ones
 * come back whole too. */
static void test_compact_deflates(void **state) {
        _cleanup_(kube_store_freep) kube_store *s = NULL;
        _cleanup_free_ char *big = malloc(300 * 1024 + 1);
        size_t bytes, text;
        char key[32];

        assert_int_equal(kube_store_new(&s), 0);
        assert_int_equal(kube_store_set_compact(s, NULL, NULL), 0);
        assert_int_equal(kube_store_bytes(s, &text), 0);
        for (int i = 0; i < 500; i++) {
                _cleanup_json_ json_object *o = NULL;
                char buf[1024];

                snprintf(buf, sizeof(buf),
                         "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"kind\":\"ConfigBundle\","
                         "\"metadata\":{\"name\":\"b%05d\",\"namespace\":\"team-a\","
                         "\"resourceVersion\":\"%d\",\"uid\":\"4a0c1f3e-%04x-4b7e-9c1d-2f6e8a9b%"
                         "04x\"},"
                         "\"spec\":{\"files\":[{\"path\":\"app.conf\",\"template\":\"id={{ idx "
                         "}}\\n\"}],"
                         "\"values\":{\"idx\":\"%d\"}},\"status\":{\"conditions\":[{\"message\":"
                         "\"Rendered revision %d\",\"reason\":\"Rendered\",\"status\":\"True\","
                         "\"type\":\"Rendered\"}],\"revision\":%d}}",
                         i, 1000 + i, i, i * 7, i, i % 9 + 1, i % 9 + 1);
                o = json_tokener_parse(buf);
                assert_non_null(o);
                snprintf(key, sizeof(key), "team-a/b%05d", i);
                assert_int_equal(kube_store_put(s, key, o, NULL), 0);
        }
        bytes = kube_store_bytes(s, &text);
        /* ~400 bytes of text each; stored in under a fifth of that (~40). */
        assert_true(text > 500 * 350);
        assert_true(bytes * 5 < text);
        for (int i = 0; i < 500; i += 37) {
                char rv[16];

                snprintf(key, sizeof(key), "team-a/b%05d", i);
                snprintf(rv, sizeof(rv), "%d", 1000 + i);
                assert_string_equal(
                        jsonx_get_string(kube_store_get(s, key), "metadata.resourceVersion"), rv);
        }

        /* Far larger than the window, and unlike the dictionary. */
        assert_non_null(big);
        for (size_t i = 0; i < 300 * 1024; i++)
                big[i] = (char) ('a' + (i * 7919 + i / 13) % 26);
        big[300 * 1024] = '\0';
        {
                _cleanup_json_ json_object *o = json_object_new_object();

                json_object_object_add(o, "data", json_object_new_string(big));
                assert_int_equal(kube_store_put(s, "team-a/big", o, NULL), 0);
                assert_true(json_object_equal(kube_store_get(s, "team-a/big"), o));
        }
        /* Removing and replacing keep the count right. */
        {
                json_object *gone = kube_store_remove(s, "team-a/big");

                assert_non_null(gone);
                json_object_put(gone);
        }
        assert_int_equal(kube_store_bytes(s, NULL), bytes);
        for (int i = 0; i < 500; i++) {
                snprintf(key, sizeof(key), "team-a/b%05d", i);
                json_object_put(kube_store_remove(s, key));
        }
        assert_int_equal(kube_store_bytes(s, &text), 0);
        assert_int_equal(text, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_iteration_order),
                cmocka_unit_test(test_tree_store),
                cmocka_unit_test(test_compact_store),
                cmocka_unit_test(test_compact_only_when_empty),
                cmocka_unit_test(test_compact_keeps_every_byte),
                cmocka_unit_test(test_compact_deflates),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
