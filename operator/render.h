/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Rendering: ConfigBundle spec -> canonical manifest. Pure functions, no I/O,
 * so the same spec always renders byte-identical output. The manifest's
 * format, limits and checks are lib/bundle.h's (docs/wire-format.md).
 *
 * Template language (the whole of it):
 *   {{ NAME }}                     spec.values[NAME]; undefined is an error
 *   {{ bundle.name }}              the ConfigBundle's name (also bundle.namespace)
 *   {{ NAME | default "TEXT" }}    spec.values[NAME], or TEXT when undefined
 *   {{ "TEXT" }}                   TEXT itself (write "{{" as {{ "{{" }})
 * Spaces inside the braces are optional. String literals take \" and \\.
 */

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "err.h"

typedef struct render_identity {
        const char *namespace;
        const char *name;
        const char *uid;
} render_identity;

typedef struct render_result {
        char *manifest; /* canonical JSON, NUL-terminated, owned */
        size_t manifest_len;
        char digest[BUNDLE_DIGEST_SIZE]; /* bundle_digest() of the manifest */
        unsigned n_files;
        size_t content_size; /* sum of file sizes */
} render_result;

render_result *render_result_free(render_result *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(render_result *, render_result_free);

/* Renders one template. @values is the spec.values object (may be NULL). On
 * success *@ret is the rendered text (owned, NUL-terminated) and *@ret_len
 * its length. Errors: -EINVAL for an undefined value or a malformed template,
 * -EFBIG when the output passes BUNDLE_MAX_FILE_SIZE; @ret_err says
 * "line L, column C: ..." (1-based, in the template). */
int render_template(const char *tmpl, json_object *values, const render_identity *id, char **ret,
                    size_t *ret_len, err_info *ret_err);

/* Renders @spec (the ConfigBundle's .spec) at @revision into a canonical
 * manifest. Checks what the CRD schema also checks (paths with
 * bundle_check_path(), the reload name with bundle_check_reload_name(),
 * modes, exactly one of content/template, unique paths) and the limits of
 * lib/bundle.h, so the operator is safe against a CRD installed without
 * validation and never publishes what an agent would refuse. Errors name
 * the file:
 * "files[3] (etc/app.conf): line 2, column 9: undefined value 'port'". */
int render_bundle(json_object *spec, const render_identity *id, int64_t revision,
                  render_result **ret, err_info *ret_err);
