/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * json-c conveniences. json-c owns the json_ prefix, so ours is jsonx_.
 *
 * Ownership reminder: json_object_object_add() and json_object_array_add()
 * steal the reference to the value; json_object_object_get_ex() returns a
 * borrowed pointer valid while the parent lives.
 */

#include <json-c/json.h>
#include <stdint.h>

#include "err.h"
#include "macro.h"

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Borrowed lookups by a dotted path ("metadata.resourceVersion"). Return NULL
 * (or @def) when a segment is missing or has another type. */
json_object *jsonx_get(json_object *o, const char *dotted_path);
const char *jsonx_get_string(json_object *o, const char *dotted_path);
int64_t jsonx_get_int(json_object *o, const char *dotted_path, int64_t def);
bool jsonx_get_bool(json_object *o, const char *dotted_path, bool def);

/* Parses @len bytes (no NUL needed) into a tree. Returns -EBADMSG with the
 * json-c error and byte offset in @ret_err on malformed or trailing input. */
int jsonx_parse(const char *data, size_t len, json_object **ret, err_info *ret_err);

/* Walks the members of the JSON object in @data without building a tree of
 * it: @fn gets each key (decoded) and the text of its value, unparsed, in
 * document order; a non-zero return stops the walk and is returned. For
 * documents too large to hold as one tree: a caller parses each value on its
 * own. The object's own syntax is checked here, the values' only by whoever
 * parses them. -EBADMSG with the byte offset in @ret_err on bad syntax. */
typedef int (*jsonx_member_fn)(const char *key, const char *value, size_t value_len,
                               void *userdata);
int jsonx_object_members(const char *data, size_t len, jsonx_member_fn fn, void *userdata,
                         err_info *ret_err);

/* Serializes @o canonically: object keys sorted bytewise at every level, no
 * insignificant whitespace, "/" not escaped. The result is owned by the
 * caller. Byte-identical for equal trees; used for content digests. */
int jsonx_to_canonical(json_object *o, char **ret, size_t *ret_len);

/* A value that is already canonical JSON text (@len bytes, copied), kept as
 * one json-c string instead of a tree: jsonx_to_canonical() and json-c's own
 * serializers emit the text verbatim. A tree costs ~800 bytes per JSON
 * object in json-c; caches of many small documents keep them this way.
 * jsonx_raw_text() returns the text of a raw value, NULL for anything else.
 * The caller vouches that the text is canonical JSON. */
json_object *jsonx_new_raw(const char *text, size_t len);
const char *jsonx_raw_text(json_object *o);

/* Deep copy of @o into *@ret (a new reference; NULL for a NULL @o). Unlike
 * json_object_deep_copy(), it also copies trees made by yamlx_parse() (whose
 * nodes carry source positions as userdata); the copy has no positions.
 * Returns 0 or -ENOMEM. */
int jsonx_deep_copy(json_object *o, json_object **ret);
