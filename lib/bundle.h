/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The contract between the planes: what ballast-operator publishes and
 * ballast-agent reads, defined once (docs/wire-format.md). The operator
 * writes with these names, limits and checks, and the agent reads and
 * verifies with the same ones, so a change to the format is made here, in
 * one place, and pinned by tests/unit/test-bundle.c.
 *
 * What is published (docs/wire-format.md has the documents themselves):
 *
 *   object store                          operator namespace
 *   bundles/NS/NAME/HEX.json (manifest)   ConfigMap per bundle (manifest.json + annotations)
 *   index.json               (index)      ConfigMap ballast-index (index.json)
 *   status/NODE.json         (agents)
 *
 * Pure functions: no I/O, no logging. The validators accept exactly what
 * the operator can publish; the agent runs the same ones over untrusted
 * bytes, so none of them trusts its input (NULL is refused, never a crash).
 */

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "hash.h"

/* ---- the documents ------------------------------------------------------ */

/* apiVersion of the manifest, the index and the status report, and their
 * kinds. */
#define BUNDLE_API_VERSION      "ballast.dev/v1alpha1"
#define BUNDLE_KIND_MANIFEST    "BundleManifest"
#define BUNDLE_KIND_INDEX       "BundleIndex"
#define BUNDLE_KIND_NODE_STATUS "NodeStatus"

/* A digest: "sha256:" and the 64 lowercase hex digits of the sha256 of the
 * manifest's exact bytes. BUNDLE_DIGEST_SIZE holds one and its NUL. */
#define BUNDLE_DIGEST_PREFIX     "sha256:"
#define BUNDLE_DIGEST_PREFIX_LEN (sizeof(BUNDLE_DIGEST_PREFIX) - 1)
#define BUNDLE_DIGEST_SIZE       (BUNDLE_DIGEST_PREFIX_LEN + HASH_SHA256_HEX_LEN + 1)

/* ---- limits ------------------------------------------------------------- */

/* What one manifest may hold. The operator refuses to render past them and
 * the agent refuses to accept past them: the same numbers on both sides. */
#define BUNDLE_MAX_FILES         256
#define BUNDLE_MAX_FILE_SIZE     (1024 * 1024)     /* one file's content, bytes */
#define BUNDLE_MAX_MANIFEST_SIZE (8 * 1024 * 1024) /* the canonical manifest, bytes */
#define BUNDLE_MAX_PATH          512               /* a file's path, bytes */
#define BUNDLE_MAX_RELOAD_NAME   63                /* a reload action's name */
#define BUNDLE_MAX_UID           128               /* the bundle's uid */

/* A ConfigMap holds at most 1 MiB; this leaves room for its metadata. A
 * manifest longer than this is not inline in its ConfigMap (which then
 * points at the object store), and an index longer than this is summarized
 * in the index ConfigMap. */
#define BUNDLE_CONFIGMAP_MAX_DATA (900 * 1024)

/* ---- the object store --------------------------------------------------- */

/* Keys, relative to the store's location (its prefix). Manifests are
 * BUNDLE_MANIFESTS_PREFIX "NS/NAME/HEX.json" (bundle_object_key()), the
 * agents' reports BUNDLE_STATUS_PREFIX "NODE.json" (bundle_status_key()). */
#define BUNDLE_INDEX_KEY        "index.json"
#define BUNDLE_MANIFESTS_PREFIX "bundles/"
#define BUNDLE_STATUS_PREFIX    "status/"

/* ---- ConfigMaps --------------------------------------------------------- */

/* The index ConfigMap, whose data key is BUNDLE_INDEX_KEY, and the data key
 * of a bundle ConfigMap's inline manifest. */
#define BUNDLE_INDEX_CONFIGMAP   "ballast-index"
#define BUNDLE_MANIFEST_DATA_KEY "manifest.json"

/* Labels. Every ConfigMap the operator writes carries
 * BUNDLE_LABEL_MANAGED_BY=BUNDLE_MANAGER; bundle ConfigMaps also
 * BUNDLE_LABEL_BUNDLE=true (what the agents' watch selects) and the index
 * ConfigMap BUNDLE_LABEL_INDEX=true. */
#define BUNDLE_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define BUNDLE_MANAGER          "ballast-operator"
#define BUNDLE_LABEL_BUNDLE     "ballast.dev/bundle"
#define BUNDLE_LABEL_INDEX      "ballast.dev/index"
#define BUNDLE_SELECTOR_MANAGED BUNDLE_LABEL_MANAGED_BY "=" BUNDLE_MANAGER
#define BUNDLE_SELECTOR_BUNDLES BUNDLE_SELECTOR_MANAGED "," BUNDLE_LABEL_BUNDLE "=true"

/* Annotations of a bundle ConfigMap: the fields of its index entry. Every
 * annotation the operator owns starts with BUNDLE_ANN_PREFIX. */
#define BUNDLE_ANN_PREFIX        "ballast.dev/"
#define BUNDLE_ANN_BUNDLE        BUNDLE_ANN_PREFIX "bundle"        /* "NS/NAME" */
#define BUNDLE_ANN_UID           BUNDLE_ANN_PREFIX "uid"           /* the ConfigBundle's uid */
#define BUNDLE_ANN_REVISION      BUNDLE_ANN_PREFIX "revision"      /* decimal, >= 1 */
#define BUNDLE_ANN_DIGEST        BUNDLE_ANN_PREFIX "digest"        /* of the manifest */
#define BUNDLE_ANN_OBJECT_KEY    BUNDLE_ANN_PREFIX "object-key"    /* in the object store */
#define BUNDLE_ANN_NODE_SELECTOR BUNDLE_ANN_PREFIX "node-selector" /* canonical JSON */
#define BUNDLE_ANN_RELOAD        BUNDLE_ANN_PREFIX "reload"        /* absent: none */
#define BUNDLE_ANN_MANIFEST      BUNDLE_ANN_PREFIX "manifest"      /* where the manifest is: */
#define BUNDLE_MANIFEST_INLINE   "inline"       /* in data[BUNDLE_MANIFEST_DATA_KEY] */
#define BUNDLE_MANIFEST_IN_STORE "object-store" /* only at the object key */

/* ---- checks ------------------------------------------------------------- */

/* True if @s is a digest: BUNDLE_DIGEST_PREFIX and exactly 64 lowercase hex
 * digits. NULL is not. */
bool bundle_is_digest(const char *s);

/* Writes the digest of @len bytes at @data into @ret. Returns 0 or -EIO. */
int bundle_digest(const void *data, size_t len, char ret[static BUNDLE_DIGEST_SIZE]);

/* Checks a file path of a bundle: at most BUNDLE_MAX_PATH bytes of segments
 * separated by single '/', each made of A-Z a-z 0-9 . _ -, none empty, "."
 * or starting with ".." (so no file can collide with the agent's "..data"
 * and "..rev-*" entries), none longer than NAME_MAX; no leading or trailing
 * '/'. Everything it accepts, fsx_is_safe_relpath() accepts too. Returns 0,
 * or -EINVAL with the reason in @ret_err (may be NULL), worded to follow
 * "path 'P' is not ...: " and never quoting @path, which may be untrusted:
 * "a segment starts with '..'". */
int bundle_check_path(const char *path, err_info *ret_err);
bool bundle_is_path(const char *path); /* bundle_check_path() == 0 */

/* Checks the name of a reload action (a bundle's "reload", the keys of the
 * agent's reloadActions): 1 to BUNDLE_MAX_RELOAD_NAME of a-z 0-9 -, not
 * starting or ending with '-'. Returns 0, or -EINVAL with the reason in
 * @ret_err (may be NULL), without quoting @name ("it starts or ends with
 * '-'"). */
int bundle_check_reload_name(const char *name, err_info *ret_err);
bool bundle_is_reload_name(const char *name); /* bundle_check_reload_name() == 0 */

/* True if @s is a bundle uid as a manifest carries it: 1 to BUNDLE_MAX_UID
 * of A-Z a-z 0-9 -. (Kubernetes writes UUIDs.) Where the uid is optional,
 * callers accept "" themselves. */
bool bundle_is_uid(const char *s);

/* ---- object-store keys --------------------------------------------------- */

/* The key of the manifest of bundle @ns/@name with digest @digest:
 * BUNDLE_MANIFESTS_PREFIX "NS/NAME/HEX.json". -EINVAL for an empty @ns or
 * @name or an invalid @digest. *@ret is the caller's to free. */
int bundle_object_key(const char *ns, const char *name, const char *digest, char **ret);

/* The inverse of bundle_object_key() for a key from a listing (untrusted):
 * "NS/NAME" into *@ret_bundle (the caller's to free) and the digest into
 * @ret_digest. -EINVAL for any key bundle_object_key() can't produce (no
 * prefix, an empty or extra segment, a name that is not 64 lowercase hex
 * digits and ".json"), -ENOMEM; nothing is written then. */
int bundle_parse_object_key(const char *key, char **ret_bundle,
                            char ret_digest[static BUNDLE_DIGEST_SIZE]);

/* The key of node @node's status report: BUNDLE_STATUS_PREFIX "NODE.json".
 * -EINVAL if @node is empty, has a '/' or makes a key the object store
 * refuses (objstore_key_is_valid()). *@ret is the caller's to free. */
int bundle_status_key(const char *node, char **ret);
