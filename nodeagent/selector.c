/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Label selector evaluation. Validation and evaluation are one pass: the
 * whole selector is validated even when an early requirement already fails
 * to match, so a malformed selector is reported the same way on every node.
 */

#include <stdio.h>

#include "manifest.h"
#include "selector.h"

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A label name or a non-empty label value: 1..63 of [A-Za-z0-9._-], starting
 * and ending alphanumeric. */
static bool is_name(const char *s, size_t n) {
        if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
                        return false;
        return true;
}

bool selector_is_label_key(const char *s) {
        const char *slash;

        if (!s)
                return false;
        slash = strchr(s, '/');
        if (!slash)
                return is_name(s, strlen(s));
        if (slash - s > 253)
                return false;
        {
                char prefix[254];

                memcpy(prefix, s, (size_t) (slash - s));
                prefix[slash - s] = '\0';
                if (!manifest_is_dns_subdomain(prefix))
                        return false;
        }
        return is_name(slash + 1, strlen(slash + 1));
}

bool selector_is_label_value(const char *s) {
        return s && (s[0] == '\0' || is_name(s, strlen(s)));
}

/* The string value of @key in @labels, or NULL when absent. */
static const char *label_get(json_object *labels, const char *key) {
        json_object *v;

        if (!labels || !json_object_object_get_ex(labels, key, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* A printable, bounded copy of untrusted @s for messages. */
static const char *shown(const char *s, char buf[static 68]) {
        size_t i;

        for (i = 0; s[i] && i < 64; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

static bool is_plain_string(json_object *v) {
        return json_object_is_type(v, json_type_string) &&
               strlen(json_object_get_string(v)) == (size_t) json_object_get_string_len(v);
}

static int eval_match_labels(json_object *ml, json_object *labels, bool *matched, err_info *e) {
        char buf[68];

        if (!json_object_is_type(ml, json_type_null) && !json_object_is_type(ml, json_type_object))
                return err_info_set(e, -EINVAL, "matchLabels must be an object");
        if (json_object_is_type(ml, json_type_null))
                return 0;
        json_object_object_foreach(ml, k, v) {
                const char *have;

                if (!selector_is_label_key(k))
                        return err_info_set(e, -EINVAL,
                                            "matchLabels: '%s' is not a valid label key",
                                            shown(k, buf));
                if (!is_plain_string(v) || !selector_is_label_value(json_object_get_string(v)))
                        return err_info_set(e, -EINVAL,
                                            "matchLabels.%s: the value must be a valid label "
                                            "value (a string of at most 63 [A-Za-z0-9._-])",
                                            k);
                have = label_get(labels, k);
                if (!have || !streq(have, json_object_get_string(v)))
                        *matched = false;
        }
        return 0;
}

static int eval_expression(json_object *x, size_t i, json_object *labels, bool *matched,
                           err_info *e) {
        json_object *key_obj, *op_obj, *values = NULL;
        const char *key, *op, *have;
        size_t n = 0;
        bool in = false;
        char buf[68];

        if (!json_object_is_type(x, json_type_object))
                return err_info_set(e, -EINVAL, "matchExpressions[%zu] must be an object", i);
        json_object_object_foreach(x, k, v) {
                (void) v;
                if (!streq(k, "key") && !streq(k, "operator") && !streq(k, "values"))
                        return err_info_set(e, -EINVAL, "matchExpressions[%zu]: unknown key '%s'",
                                            i, shown(k, buf));
        }
        if (!json_object_object_get_ex(x, "key", &key_obj) || !is_plain_string(key_obj))
                return err_info_set(e, -EINVAL, "matchExpressions[%zu]: key is required", i);
        key = json_object_get_string(key_obj);
        if (!selector_is_label_key(key))
                return err_info_set(e, -EINVAL,
                                    "matchExpressions[%zu]: '%s' is not a valid label key", i,
                                    shown(key, buf));
        if (!json_object_object_get_ex(x, "operator", &op_obj) || !is_plain_string(op_obj))
                return err_info_set(e, -EINVAL, "matchExpressions[%zu] (%s): operator is required",
                                    i, key);
        op = json_object_get_string(op_obj);

        if (json_object_object_get_ex(x, "values", &values) &&
            !json_object_is_type(values, json_type_null)) {
                if (!json_object_is_type(values, json_type_array))
                        return err_info_set(e, -EINVAL,
                                            "matchExpressions[%zu] (%s): values must be a list", i,
                                            key);
                n = json_object_array_length(values);
        }
        for (size_t j = 0; j < n; j++) {
                json_object *val = json_object_array_get_idx(values, j);

                if (!is_plain_string(val) || !selector_is_label_value(json_object_get_string(val)))
                        return err_info_set(e, -EINVAL,
                                            "matchExpressions[%zu] (%s): values[%zu] is not a "
                                            "valid label value",
                                            i, key, j);
        }

        have = label_get(labels, key);
        if (streq(op, "In") || streq(op, "NotIn")) {
                if (n == 0)
                        return err_info_set(e, -EINVAL,
                                            "matchExpressions[%zu] (%s): operator %s needs at "
                                            "least one value",
                                            i, key, op);
                for (size_t j = 0; have && j < n; j++)
                        if (streq(have,
                                  json_object_get_string(json_object_array_get_idx(values, j))))
                                in = true;
                /* In: the key is present with one of the values. NotIn: it
                 * is absent or has none of them (Kubernetes semantics). */
                if (streq(op, "In") ? !in : in)
                        *matched = false;
        } else if (streq(op, "Exists") || streq(op, "DoesNotExist")) {
                if (n > 0)
                        return err_info_set(e, -EINVAL,
                                            "matchExpressions[%zu] (%s): operator %s takes no "
                                            "values",
                                            i, key, op);
                if (streq(op, "Exists") ? !have : !!have)
                        *matched = false;
        } else
                return err_info_set(e, -EINVAL,
                                    "matchExpressions[%zu] (%s): operator '%s' is not In, NotIn, "
                                    "Exists or DoesNotExist",
                                    i, key, shown(op, buf));
        return 0;
}

int selector_matches(json_object *selector, json_object *labels, err_info *ret_err) {
        json_object *ml, *exprs;
        bool matched = true;
        char buf[68];
        int r;

        if (labels && !json_object_is_type(labels, json_type_object) &&
            !json_object_is_type(labels, json_type_null))
                return err_info_set(ret_err, -EINVAL, "node labels must be an object");
        if (!selector || json_object_is_type(selector, json_type_null))
                return 1;
        if (!json_object_is_type(selector, json_type_object))
                return err_info_set(ret_err, -EINVAL, "the selector must be an object");
        json_object_object_foreach(selector, k, v) {
                (void) v;
                if (!streq(k, "matchLabels") && !streq(k, "matchExpressions"))
                        return err_info_set(ret_err, -EINVAL,
                                            "unknown key '%s' (a selector has matchLabels and "
                                            "matchExpressions)",
                                            shown(k, buf));
        }

        if (json_object_object_get_ex(selector, "matchLabels", &ml)) {
                r = eval_match_labels(ml, labels, &matched, ret_err);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(selector, "matchExpressions", &exprs) &&
            !json_object_is_type(exprs, json_type_null)) {
                if (!json_object_is_type(exprs, json_type_array))
                        return err_info_set(ret_err, -EINVAL, "matchExpressions must be a list");
                for (size_t i = 0; i < json_object_array_length(exprs); i++) {
                        r = eval_expression(json_object_array_get_idx(exprs, i), i, labels,
                                            &matched, ret_err);
                        if (r < 0)
                                return r;
                }
        }
        return matched ? 1 : 0;
}

int selector_validate(json_object *selector, err_info *ret_err) {
        int r = selector_matches(selector, NULL, ret_err);

        return r < 0 ? r : 0;
}
