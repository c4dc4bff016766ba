/* SPDX-License-Identifier: Apache-2.0 */
/* Label selectors: the Kubernetes truth table, and malformed selectors. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonx.h"
#include "selector.h"

static const char NODE[] = "{\"kubernetes.io/hostname\":\"node-1\",\"zone\":\"a\","
                           "\"role\":\"edge\",\"empty\":\"\",\"tier\":\"gold\"}";

static json_object *parse(const char *s) {
        json_object *o = NULL;

        if (!s)
                return NULL;
        assert_int_equal(jsonx_parse(s, strlen(s), &o, NULL), 0);
        return o;
}

/* Evaluates @sel against @labels (JSON or NULL). */
static int eval(const char *sel, const char *labels, err_info *e) {
        _cleanup_json_ json_object *s = parse(sel), *l = parse(labels);

        err_info_clear(e);
        return selector_matches(s, l, e);
}

static void matches(const char *sel, int want) {
        err_info e;
        int r = eval(sel, NODE, &e);

        if (r != want)
                fail_msg("selector %s: got %d, want %d (%s)", sel, r, want, e.message);
}

static void malformed(const char *sel, const char *want) {
        _cleanup_json_ json_object *s = parse(sel);
        err_info e;

        /* The same error whatever the node: never a silent match or miss. */
        assert_int_equal(eval(sel, NODE, &e), -EINVAL);
        if (!strstr(e.message, want))
                fail_msg("selector %s: error '%s' does not contain '%s'", sel, e.message, want);
        assert_int_equal(eval(sel, "{}", &e), -EINVAL);
        assert_int_equal(eval(sel, NULL, &e), -EINVAL);
        err_info_clear(&e);
        assert_int_equal(selector_validate(s, &e), -EINVAL);
}

static void test_absent_and_empty_match_everything(void **state) {
        err_info e;

        assert_int_equal(eval(NULL, NODE, &e), 1);
        assert_int_equal(eval(NULL, NULL, &e), 1);
        assert_int_equal(eval("null", NODE, &e), 1);
        assert_int_equal(eval("{}", NODE, &e), 1);
        assert_int_equal(eval("{}", "{}", &e), 1);
        assert_int_equal(eval("{\"matchLabels\":{}}", NULL, &e), 1);
        assert_int_equal(eval("{\"matchExpressions\":[]}", NULL, &e), 1);
        assert_int_equal(eval("{\"matchLabels\":null,\"matchExpressions\":null}", NODE, &e), 1);
}

static void test_match_labels(void **state) {
        matches("{\"matchLabels\":{\"zone\":\"a\"}}", 1);
        matches("{\"matchLabels\":{\"zone\":\"b\"}}", 0);
        matches("{\"matchLabels\":{\"zone\":\"a\",\"role\":\"edge\"}}", 1);
        matches("{\"matchLabels\":{\"zone\":\"a\",\"role\":\"core\"}}", 0);
        matches("{\"matchLabels\":{\"missing\":\"x\"}}", 0);
        matches("{\"matchLabels\":{\"kubernetes.io/hostname\":\"node-1\"}}", 1);
        /* An empty value matches a present, empty label only. */
        matches("{\"matchLabels\":{\"empty\":\"\"}}", 1);
        matches("{\"matchLabels\":{\"missing\":\"\"}}", 0);
        /* Case matters. */
        matches("{\"matchLabels\":{\"zone\":\"A\"}}", 0);
}

static void test_expressions_truth_table(void **state) {
        static const struct {
                const char *expr;
                int present; /* on NODE (zone=a) */
                int absent;  /* on a node without the key */
        } table[] = {
                {"{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]}", 1, 0},
                {"{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"b\"]}", 0, 0},
                {"{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"a\"]}", 0, 1},
                {"{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"b\",\"c\"]}", 1, 1},
                {"{\"key\":\"zone\",\"operator\":\"Exists\"}", 1, 0},
                {"{\"key\":\"zone\",\"operator\":\"Exists\",\"values\":[]}", 1, 0},
                {"{\"key\":\"zone\",\"operator\":\"DoesNotExist\"}", 0, 1},
                {"{\"key\":\"zone\",\"operator\":\"DoesNotExist\",\"values\":null}", 0, 1},
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_free_ char *sel = NULL;
                err_info e;

                assert_true(asprintf(&sel, "{\"matchExpressions\":[%s]}", table[i].expr) > 0);
                if (eval(sel, NODE, &e) != table[i].present)
                        fail_msg("%s on a node with zone=a: want %d", sel, table[i].present);
                if (eval(sel, "{\"role\":\"edge\"}", &e) != table[i].absent)
                        fail_msg("%s on a node without zone: want %d", sel, table[i].absent);
                if (eval(sel, NULL, &e) != table[i].absent)
                        fail_msg("%s on a node without labels: want %d", sel, table[i].absent);
        }
}

static void test_requirements_are_anded(void **state) {
        matches("{\"matchLabels\":{\"zone\":\"a\"},\"matchExpressions\":["
                "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"gold\",\"silver\"]},"
                "{\"key\":\"legacy\",\"operator\":\"DoesNotExist\"}]}",
                1);
        matches("{\"matchLabels\":{\"zone\":\"a\"},\"matchExpressions\":["
                "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"silver\"]}]}",
                0);
        matches("{\"matchLabels\":{\"zone\":\"b\"},\"matchExpressions\":["
                "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"gold\"]}]}",
                0);
        matches("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"Exists\"},"
                "{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}",
                0);
}

static void test_malformed_selectors_are_errors(void **state) {
        malformed("[]", "the selector must be an object");
        malformed("{\"matchLabel\":{\"zone\":\"a\"}}", "unknown key 'matchLabel'");
        malformed("{\"matchLabels\":[]}", "matchLabels must be an object");
        malformed("{\"matchLabels\":{\"zone\":1}}", "matchLabels.zone: the value must be");
        malformed("{\"matchLabels\":{\"zone\":\"a b\"}}", "matchLabels.zone: the value must be");
        malformed("{\"matchLabels\":{\"bad key\":\"a\"}}", "'bad key' is not a valid label key");
        malformed("{\"matchLabels\":{\"Bad.Prefix/k\":\"a\"}}", "is not a valid label key");
        malformed("{\"matchExpressions\":{}}", "matchExpressions must be a list");
        malformed("{\"matchExpressions\":[1]}", "matchExpressions[0] must be an object");
        malformed("{\"matchExpressions\":[{\"operator\":\"Exists\"}]}",
                  "matchExpressions[0]: key is required");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\"}]}",
                  "matchExpressions[0] (zone): operator is required");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"in\",\"values\":[\"a\"]}"
                  "]}",
                  "operator 'in' is not In, NotIn, Exists or DoesNotExist");
        malformed("{\"matchExpressions\":[{\"key\":\"n\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}",
                  "operator 'Gt' is not");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\"}]}",
                  "matchExpressions[0] (zone): operator In needs at least one value");
        malformed(
                "{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[]}]}",
                "operator NotIn needs at least one value");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"Exists\",\"values\":["
                  "\"a\"]}]}",
                  "operator Exists takes no values");
        malformed(
                "{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":\"a\"}]}",
                "values must be a list");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":[2]}]}",
                  "values[0] is not a valid label value");
        malformed("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"a\"],"
                  "\"extra\":1}]}",
                  "matchExpressions[0]: unknown key 'extra'");
        /* A malformed requirement after one that already fails is still an error. */
        malformed("{\"matchLabels\":{\"zone\":\"nope\"},\"matchExpressions\":[{\"key\":\"zone\","
                  "\"operator\":\"Lt\",\"values\":[\"1\"]}]}",
                  "operator 'Lt'");
}

static void test_labels_must_be_an_object(void **state) {
        err_info e;

        assert_int_equal(eval("{}", "[]", &e), -EINVAL);
        assert_int_equal(eval(NULL, "\"x\"", &e), -EINVAL);
        /* Non-string label values count as absent. */
        assert_int_equal(eval("{\"matchLabels\":{\"zone\":\"1\"}}", "{\"zone\":1}", &e), 0);
        assert_int_equal(
                eval("{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"DoesNotExist\"}]}",
                     "{\"zone\":1}", &e),
                1);
}

static void test_label_syntax(void **state) {
        char k63[64], k64[65], p254[300];

        assert_true(selector_is_label_key("app"));
        assert_true(selector_is_label_key("app.kubernetes.io/name"));
        assert_true(selector_is_label_key("A_b-c.D"));
        assert_false(selector_is_label_key(""));
        assert_false(selector_is_label_key("/name"));
        assert_false(selector_is_label_key("prefix/"));
        assert_false(selector_is_label_key("a/b/c"));
        assert_false(selector_is_label_key("-a"));
        assert_false(selector_is_label_key("a_"));
        memset(k63, 'k', 63);
        k63[63] = '\0';
        memset(k64, 'k', 64);
        k64[64] = '\0';
        assert_true(selector_is_label_key(k63));
        assert_false(selector_is_label_key(k64));
        memset(p254, 'p', 254);
        strcpy(p254 + 254, "/k");
        assert_false(selector_is_label_key(p254));

        assert_true(selector_is_label_value(""));
        assert_true(selector_is_label_value("v1.2_3-x"));
        assert_false(selector_is_label_value("v/1"));
        assert_false(selector_is_label_value("-v"));
        assert_false(selector_is_label_value(k64));
        assert_true(selector_is_label_value(k63));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_absent_and_empty_match_everything),
                cmocka_unit_test(test_match_labels),
                cmocka_unit_test(test_expressions_truth_table),
                cmocka_unit_test(test_requirements_are_anded),
                cmocka_unit_test(test_malformed_selectors_are_errors),
                cmocka_unit_test(test_labels_must_be_an_object),
                cmocka_unit_test(test_label_syntax),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
