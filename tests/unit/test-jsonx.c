/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jsonx.h"

static json_object *parse_ok(const char *s) {
        json_object *o = NULL;
        err_info e;

        err_info_clear(&e);
        if (jsonx_parse(s, strlen(s), &o, &e) < 0)
                fail_msg("parse of '%s' failed: %s", s, e.message);
        return o;
}

static void test_get(void **state) {
        _cleanup_json_ json_object *o = parse_ok(
                "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"42\",\"generation\":7,"
                "\"deleted\":true,\"n\":null},\"list\":[1]}");

        assert_string_equal(jsonx_get_string(o, "metadata.name"), "a");
        assert_string_equal(jsonx_get_string(o, "metadata.resourceVersion"), "42");
        assert_null(jsonx_get_string(o, "metadata.generation")); /* not a string */
        assert_null(jsonx_get_string(o, "metadata.missing"));
        assert_null(jsonx_get_string(o, "metadata.name.deeper"));
        assert_null(jsonx_get_string(o, "list.0"));
        assert_null(jsonx_get(o, "metadata."));
        assert_null(jsonx_get(o, ".metadata"));
        assert_null(jsonx_get(o, "metadata..name"));
        assert_null(jsonx_get(o, "metadata.n"));
        assert_null(jsonx_get(NULL, "a"));
        assert_ptr_equal(jsonx_get(o, ""), o);
        assert_int_equal(jsonx_get_int(o, "metadata.generation", -1), 7);
        assert_int_equal(jsonx_get_int(o, "metadata.name", -1), -1);
        assert_int_equal(jsonx_get_int(o, "nope", 5), 5);
        assert_true(jsonx_get_bool(o, "metadata.deleted", false));
        assert_false(jsonx_get_bool(o, "metadata.generation", false));
        assert_true(jsonx_get_bool(o, "x.y", true));
}

static void test_parse_errors(void **state) {
        static const struct {
                const char *in;
                const char *want_in_message;
        } bad[] = {
                {"", "end"},
                {"   ", "end"},
                {"{", "end"},
                {"{\"a\":1", "end"},
                {"{\"a\":1}x", "byte 7"},
                {"{\"a\":1} {}", "byte 8"},
                {"[1,]", ""},
                {"{'a':1}", ""},
                {"tru", ""},
                {"\"unterminated", ""},
                {"{\"a\":\"\x01\"}", ""},
                {"1 2", "byte 2"},
                {"nul", ""},
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *o = (json_object *) 0x1;
                err_info e;

                err_info_clear(&e);
                if (jsonx_parse(bad[i].in, strlen(bad[i].in), &o, &e) != -EBADMSG)
                        fail_msg("'%s' was accepted", bad[i].in);
                assert_ptr_equal(o, (json_object *) 0x1); /* untouched on failure */
                if (!strstr(e.message, bad[i].want_in_message))
                        fail_msg("'%s': message '%s' lacks '%s'", bad[i].in, e.message,
                                 bad[i].want_in_message);
                assert_true(strlen(e.message) > 0);
        }

        /* Length is honoured: no NUL terminator needed, bytes after ignored. */
        {
                _cleanup_json_ json_object *o = NULL;

                assert_int_equal(jsonx_parse("{\"a\":12}GARBAGE", 8, &o, NULL), 0);
                assert_int_equal(jsonx_get_int(o, "a", 0), 12);
        }
        /* A NUL inside the given length is garbage. */
        assert_int_equal(jsonx_parse("{}\0x", 4, NULL, NULL), -EBADMSG);
}

static void test_parse_scalars(void **state) {
        const char *ok[] = {"12", "-3", "\"s\"", "true", "null", " [ ] \n", "1.5", "{}"};

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                json_object *o = NULL;

                if (jsonx_parse(ok[i], strlen(ok[i]), &o, NULL) < 0)
                        fail_msg("'%s' rejected", ok[i]);
                json_object_put(o);
        }
}

static char *canon(json_object *o) {
        char *s = NULL;
        size_t n = 0;

        assert_int_equal(jsonx_to_canonical(o, &s, &n), 0);
        assert_int_equal(n, strlen(s));
        return s;
}

static void test_canonical_order(void **state) {
        json_object *a = json_object_new_object(), *b = json_object_new_object();
        json_object *ai = json_object_new_object(), *bi = json_object_new_object();
        _cleanup_free_ char *ca = NULL, *cb = NULL;

        json_object_object_add(ai, "z", json_object_new_int(1));
        json_object_object_add(ai, "a", json_object_new_string("x"));
        json_object_object_add(ai, "B", json_object_new_boolean(0));
        json_object_object_add(a, "outer", ai);
        json_object_object_add(a, "list", json_object_new_array());
        json_object_object_add(a, "aa", NULL);
        json_object_object_add(a, "a", json_object_new_int64(-9007199254740993LL));

        json_object_object_add(b, "a", json_object_new_int64(-9007199254740993LL));
        json_object_object_add(b, "aa", NULL);
        json_object_object_add(bi, "B", json_object_new_boolean(0));
        json_object_object_add(bi, "a", json_object_new_string("x"));
        json_object_object_add(bi, "z", json_object_new_int(1));
        json_object_object_add(b, "list", json_object_new_array());
        json_object_object_add(b, "outer", bi);

        ca = canon(a);
        cb = canon(b);
        assert_string_equal(ca, cb);
        assert_string_equal(ca, "{\"a\":-9007199254740993,\"aa\":null,\"list\":[],"
                                "\"outer\":{\"B\":false,\"a\":\"x\",\"z\":1}}");
        json_object_put(a);
        json_object_put(b);
}

static void test_canonical_escaping(void **state) {
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *c = NULL;
        const char raw[] = "q\"b\\s/\x01\x1f\b\f\n\r\t\xc3\xa9\x7f";

        json_object_object_add(o, "k\"/", json_object_new_string(raw));
        json_object_object_add(o, "nul", json_object_new_string_len("a\0b", 3));
        json_object_object_add(o, "arr", json_object_new_array());
        json_object_array_add(json_object_object_get(o, "arr"), json_object_new_int(3));
        json_object_array_add(json_object_object_get(o, "arr"), json_object_new_boolean(1));
        json_object_array_add(json_object_object_get(o, "arr"), NULL);
        c = canon(o);
        assert_string_equal(c,
                            "{\"arr\":[3,true,null],"
                            "\"k\\\"/\":\"q\\\"b\\\\s/\\u0001\\u001f\\b\\f\\n\\r\\t\xc3\xa9\x7f\","
                            "\"nul\":\"a\\u0000b\"}");

        /* And it parses back to the same tree. */
        {
                _cleanup_json_ json_object *back = NULL;
                _cleanup_free_ char *again = NULL;

                assert_int_equal(jsonx_parse(c, strlen(c), &back, NULL), 0);
                again = canon(back);
                assert_string_equal(again, c);
        }
}

static void test_canonical_scalars(void **state) {
        _cleanup_free_ char *n = NULL, *s = NULL, *d = NULL, *u = NULL;
        _cleanup_json_ json_object *str = json_object_new_string("");
        _cleanup_json_ json_object *dbl = json_object_new_double(0.5);
        _cleanup_json_ json_object *big = json_object_new_uint64(UINT64_MAX);

        n = canon(NULL);
        assert_string_equal(n, "null");
        s = canon(str);
        assert_string_equal(s, "\"\"");
        d = canon(dbl);
        assert_string_equal(d, "0.5");
        u = canon(big);
        assert_string_equal(u, "18446744073709551615");

        /* Equal doubles print the same whatever their source text. */
        {
                _cleanup_json_ json_object *x = parse_ok("[1.50, 2e0]");
                _cleanup_json_ json_object *y = parse_ok("[1.5, 2.0]");
                _cleanup_free_ char *cx = canon(x), *cy = canon(y);

                assert_string_equal(cx, cy);
                assert_string_equal(cx, "[1.5,2.0]");
        }
}

static void free_userdata(json_object *o, void *p) {
        free(p);
}

static void test_deep_copy(void **state) {
        _cleanup_json_ json_object *o = parse_ok("{\"a\":[1,{\"b\":\"c\"}],\"d\":0.25}");
        _cleanup_json_ json_object *c = NULL;
        _cleanup_free_ char *s1 = NULL, *s2 = NULL;
        json_object *none = (json_object *) 0x1;

        /* Userdata json-c doesn't know makes json_object_deep_copy() fail. */
        json_object_set_userdata(jsonx_get(o, "a"), strdup("pos"), free_userdata);
        assert_int_equal(jsonx_deep_copy(o, &c), 0);
        assert_ptr_not_equal(c, o);
        s1 = canon(o);
        s2 = canon(c);
        assert_string_equal(s1, s2);
        assert_null(json_object_get_userdata(jsonx_get(c, "a")));
        assert_int_equal(jsonx_deep_copy(NULL, &none), 0);
        assert_null(none);
}

/* A raw value is emitted verbatim, by ours and by json-c's serializer,
 * and only a raw value has raw text. */
static void test_raw_values(void **state) {
        _cleanup_json_ json_object *doc = json_object_new_object(), *plain = NULL;
        _cleanup_free_ char *out = NULL;
        const char *text = "{\"a\":[1,2],\"b\":\"x/y\"}";

        json_object_object_add(doc, "z", json_object_new_int(1));
        json_object_object_add(doc, "e", jsonx_new_raw(text, strlen(text)));
        assert_int_equal(jsonx_to_canonical(doc, &out, NULL), 0);
        assert_string_equal(out, "{\"e\":{\"a\":[1,2],\"b\":\"x/y\"},\"z\":1}");
        assert_string_equal(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN),
                            "{\"z\":1,\"e\":{\"a\":[1,2],\"b\":\"x/y\"}}");
        assert_string_equal(jsonx_raw_text(json_object_object_get(doc, "e")), text);
        plain = json_object_new_string(text);
        assert_null(jsonx_raw_text(plain));
        assert_null(jsonx_raw_text(json_object_object_get(doc, "z")));
        assert_null(jsonx_raw_text(NULL));
}

typedef struct members {
        char seen[512];
        int stop_at; /* 1-based member to stop at, 0 for none */
        int n;
} members;

static int collect_member(const char *key, const char *value, size_t len, void *userdata) {
        members *m = userdata;
        size_t used = strlen(m->seen);

        snprintf(m->seen + used, sizeof(m->seen) - used, "%s=%.*s;", key, (int) len, value);
        return ++m->n == m->stop_at ? 42 : 0;
}

static void test_object_members(void **state) {
        const char *doc = " {\"a\" : 1 ,\"b\\\"q\":\"x,}\\\"y\", \"c\":{\"d\":[1,{\"e\":\"]\"}]},"
                          "\"f\":[],\"g\":null}\n";
        const char *bad[] = {
                "",
                "[]",
                "{",
                "{\"a\"}",
                "{\"a\":}",
                "{\"a\":1,}",
                "{\"a\":1 \"b\":2}",
                "{\"a\":1} x",
                "{a:1}",
                "{\"a\":\"open}",
                "{\"a\":{\"b\":1}",
        };
        members m = {};
        err_info e;

        (void) state;
        assert_int_equal(jsonx_object_members(doc, strlen(doc), collect_member, &m, &e), 0);
        assert_string_equal(m.seen,
                            "a=1;b\"q=\"x,}\\\"y\";c={\"d\":[1,{\"e\":\"]\"}]};f=[];g=null;");
        m = (members){.stop_at = 2};
        assert_int_equal(jsonx_object_members(doc, strlen(doc), collect_member, &m, &e), 42);
        assert_int_equal(m.n, 2);
        m = (members){};
        assert_int_equal(jsonx_object_members(" { } ", 5, collect_member, &m, &e), 0);
        assert_int_equal(m.n, 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                m = (members){};
                assert_int_equal(
                        jsonx_object_members(bad[i], strlen(bad[i]), collect_member, &m, &e),
                        -EBADMSG);
                assert_non_null(strstr(e.message, "byte"));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_parse_scalars),
                cmocka_unit_test(test_canonical_order),
                cmocka_unit_test(test_canonical_escaping),
                cmocka_unit_test(test_canonical_scalars),
                cmocka_unit_test(test_deep_copy),
                cmocka_unit_test(test_raw_values),
                cmocka_unit_test(test_object_members),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
