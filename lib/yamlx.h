/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * YAML (libyaml) into json-c trees, so kubeconfig, the agent's local config
 * and the operator's static config share one representation. Every node
 * remembers where it came from, so semantic errors found after parsing can
 * still name FILE:LINE:COLUMN.
 *
 * Mapping -> object (keys must be scalars; a duplicate key is an error),
 * sequence -> array, scalar -> string, except plain (unquoted) scalars that
 * are YAML 1.2 core-schema null/bool/int (int64) which become those types.
 * Floats stay strings, and so do ints that don't fit int64 and decimals with
 * a leading zero ("0644": octal in YAML 1.1, decimal in 1.2 — the consumer
 * decides). Explicit tags !!str/!!int/!!bool/!!null/!!float are honoured,
 * others are an error; scalars with NUL characters are an error. Anchors and
 * aliases are rejected (billion laughs), as are non-scalar and duplicate
 * keys and nesting deeper than 256. Only the first document is read; a second
 * one is an error.
 *
 * Positions are kept as json-c userdata on each node, so
 * json_object_deep_copy() refuses these trees: use jsonx_deep_copy() (the
 * copy has no positions). Don't set userdata on these nodes yourself.
 */

#include <json-c/json.h>
#include <stddef.h>

#include "err.h"

/* Parses @len bytes of YAML. @filename is only used in messages. On malformed
 * input returns -EBADMSG with "FILE:LINE:COL: problem" in @ret_err->message.
 * An empty document yields a NULL tree and returns 0. */
int yamlx_parse(const char *data, size_t len, const char *filename, json_object **ret,
                err_info *ret_err);

/* Reads and parses @path (at most @max_size bytes; 0: 4 MiB). -ENOENT,
 * -EACCES, -EFBIG or -EBADMSG with the reason in @ret_err. */
int yamlx_load_file(const char *path, size_t max_size, json_object **ret, err_info *ret_err);

/* Where node @o was in its source: returns 0 and fills line/column (1-based)
 * for nodes made by yamlx_parse(), -ENOENT for other nodes. */
int yamlx_where(json_object *o, unsigned *ret_line, unsigned *ret_column);

/* Formats "FILE:LINE:COL: message" for node @o into @ret_err and returns @r
 * (typically -EINVAL). For config validation. */
int yamlx_error(err_info *ret_err, int r, const char *filename, json_object *o, const char *fmt,
                ...) _printf_(5, 6);
