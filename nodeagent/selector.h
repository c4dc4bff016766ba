/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Kubernetes label selectors (metav1.LabelSelector) evaluated against a
 * node's labels, so a bundle's nodeSelector can be decided locally, from the
 * cached labels, with no API server.
 *
 *   {"matchLabels": {"k": "v", ...},
 *    "matchExpressions": [{"key": "k", "operator": "In|NotIn|Exists|DoesNotExist",
 *                          "values": ["v", ...]}, ...]}
 *
 * All requirements are ANDed. An absent (NULL or JSON null) or empty selector
 * matches every node. As in Kubernetes, NotIn and DoesNotExist match a node
 * that does not have the key at all. A malformed selector is an error, never a
 * match and never a non-match: unknown keys (a typo like "matchLabel" must not
 * silently widen the selection), an unknown operator (including NodeSelector's
 * Gt/Lt, which label selectors do not have), In/NotIn without values,
 * Exists/DoesNotExist with values, and keys or values that are not valid
 * Kubernetes label keys and values.
 */

#include <json-c/json.h>
#include <stdbool.h>

#include "err.h"

/* Evaluates @selector (borrowed; may be NULL) against @labels (borrowed; a
 * JSON object of label key to string value, or NULL for a node without
 * labels; non-string values are treated as absent). Returns 1 on a match, 0
 * on no match, -EINVAL with the reason in @ret_err ("matchExpressions[1]:
 * operator 'Gt' is not In, NotIn, Exists or DoesNotExist") for a malformed
 * selector or a @labels that is not an object. */
int selector_matches(json_object *selector, json_object *labels, err_info *ret_err);

/* Checks @selector only. Returns 0 or -EINVAL as above. */
int selector_validate(json_object *selector, err_info *ret_err);

/* Kubernetes label syntax: a key is [prefix/]name, prefix a DNS-1123
 * subdomain, name 1..63 of [A-Za-z0-9._-] starting and ending alphanumeric;
 * a value is empty or like a name. */
bool selector_is_label_key(const char *s);
bool selector_is_label_value(const char *s);
