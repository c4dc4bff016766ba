/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * ConfigBundle status: building the desired status from what a reconcile
 * found, in the standard condition format. Pure functions. A status that
 * means the same as the current one compares equal, so a resync with nothing
 * changed writes nothing: lastTransitionTime only moves when a condition's
 * status does.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef enum target_state {
        TARGET_UNKNOWN, /* not attempted (e.g. no object store configured) */
        TARGET_OK,
        TARGET_FAILED,
        TARGET_DISABLED, /* not configured */
} target_state;

typedef struct bundle_outcome {
        int64_t generation;
        bool rendered;            /* the current spec rendered */
        const char *render_error; /* why not, when !rendered */
        bool suspended;
        int64_t revision;       /* the latest published revision (0: none yet) */
        const char *digest;     /* its digest */
        const char *config_map; /* where it is published */
        const char *object_key;
        bool manifest_in_cm; /* false: the ConfigMap carries only a pointer */
        target_state store, cm;
        const char *store_error, *cm_error;
        bool has_counts;
        int64_t matched, applied, failed; /* from the fleet's reports */
} bundle_outcome;

/* Builds the full status object for @o, keeping each condition's
 * lastTransitionTime from @old_status (may be NULL) when its status is
 * unchanged; @now is the RFC 3339 time to use otherwise. Caller owns *@ret. */
int status_build(json_object *old_status, const bundle_outcome *o, const char *now,
                 json_object **ret);

/* True if @a and @b (status objects, either may be NULL) say the same. */
bool status_equal(json_object *a, json_object *b);

/* Formats the current UTC time as RFC 3339 with second precision, as
 * metav1.Time serializes ("2026-11-22T21:45:43Z"). */
void status_format_now(char buf[static 32]);
