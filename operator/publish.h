/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What the operator publishes, as pure functions: names, the desired
 * ConfigMaps and index entries. The controller does the I/O. The layout,
 * keys, labels and annotations are lib/bundle.h's, shared with the agent
 * (docs/wire-format.md):
 *
 *   object store                           operator namespace
 *   bundles/NS/NAME/HEX.json  (manifest)   ConfigMap cb-NS.NAME   (manifest + annotations)
 *   index.json                (index)      ConfigMap ballast-index (index.json)
 *   status/NODE.json          (agents)
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "bundle.h"
#include "render.h"

/* The operator's own names in the API server, which agents never read. */
#define PUBLISH_FIELD_MANAGER "ballast-operator"
#define PUBLISH_FINALIZER     "ballast.dev/cleanup"

/* The ConfigMap name of bundle NS/NAME: "cb-NS.NAME" when that fits in 253
 * characters, else "cb-" and the first 40 hex digits of sha256("NS/NAME").
 * Caller frees. */
int publish_configmap_name(const char *ns, const char *name, char **ret);

/* The index entry of a published revision. @node_selector (borrowed, may be
 * NULL) is copied; @config_map and @reload may be NULL. */
json_object *publish_index_entry(const render_identity *id, int64_t revision, const char *digest,
                                 const char *object_key, const char *config_map,
                                 json_object *node_selector, const char *reload);

/* The desired bundle ConfigMap (apiVersion, kind, metadata, data) in
 * namespace @cm_ns. The manifest goes inline when it fits
 * BUNDLE_CONFIGMAP_MAX_DATA, else only the annotations (a pointer to the
 * object store) and *@ret_inline is false. */
int publish_build_configmap(const char *cm_ns, const char *cm_name, const render_identity *id,
                            int64_t revision, const render_result *rendered, const char *object_key,
                            json_object *node_selector, const char *reload, json_object **ret,
                            bool *ret_inline);

/* The desired index ConfigMap holding @index_json (borrowed). */
int publish_build_index_configmap(const char *cm_ns, const char *index_json, size_t len,
                                  json_object **ret);

/* True if @existing (a ConfigMap from the API server or its summary, may be
 * NULL) already carries the labels, annotations and data of @desired, so no
 * write is needed. Extra labels or annotations others added don't matter. */
bool publish_configmap_is_current(json_object *existing, json_object *desired);

/* What the operator's ConfigMap cache keeps of a bundle ConfigMap (a
 * kube_store_transform_fn): name, namespace, resourceVersion, uid, labels,
 * the BUNDLE_ANN_PREFIX annotations, and each data value as the
 * bundle_digest() of it, marked with PUBLISH_SUMMARY_MARK;
 * publish_configmap_is_current() then compares digests. Manifests of up to
 * BUNDLE_CONFIGMAP_MAX_DATA each are not worth caching whole. Other ConfigMaps (the index) are kept
 * as they are. New reference, or NULL when out of memory. */
#define PUBLISH_SUMMARY_MARK "ballast.dev/summary"
json_object *publish_configmap_summary(json_object *cm, void *userdata);
