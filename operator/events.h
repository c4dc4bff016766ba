/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Kubernetes Events on ConfigBundles (new revisions, publish and render
 * failures), rate-limited like client-go's EventCorrelator spam filter: per
 * object and reason a token bucket (burst 3, one more every 5 minutes), and
 * all events together at most 5 per second. An event dropped by the limits is
 * only counted; events are never worth loading the API server for.
 */

#include <json-c/json.h>

#include "kube.h"
#include "macro.h"

typedef struct recorder recorder;

/* @kube is borrowed. @component names the source ("ballast-operator"),
 * @instance the replica. */
int recorder_new(kube_client *kube, const char *component, const char *instance, recorder **ret);
recorder *recorder_free(recorder *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(recorder *, recorder_free);

/* Posts an event about @obj (borrowed; its apiVersion, kind and metadata are
 * read) unless a limit says no. @type is "Normal" or "Warning"; @reason is
 * CamelCase. Returns 1 if posted, 0 if dropped by a limit, < 0 on error. */
int recorder_emit(recorder *r, json_object *obj, const char *type, const char *reason,
                  const char *fmt, ...) _printf_(5, 6);

typedef struct recorder_stats {
        uint64_t posted, dropped, failed;
} recorder_stats;
void recorder_get_stats(const recorder *r, recorder_stats *ret);
