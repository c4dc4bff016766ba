/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Bundle manifests as the agent receives them: untrusted bytes plus the
 * digest the index (or ConfigMap) says they must have. This is the only code
 * in the agent that parses manifest bytes; everything downstream (the cache,
 * apply) works on the verified struct it returns.
 *
 * The format is what operator/render.c writes (docs/wire-format.md; its
 * names, limits and checks are lib/bundle.h's):
 *
 *   {"apiVersion":"ballast.dev/v1alpha1","kind":"BundleManifest",
 *    "bundle":{"namespace":NS,"name":NAME,"uid":UID},"revision":N,
 *    "reload":ACTION,                                      (optional)
 *    "files":[{"path","mode","size","sha256","content"}, ...sorted by path]}
 *
 * serialized canonically (jsonx_to_canonical), and its digest is
 * bundle_digest() of exactly those bytes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bundle.h"
#include "err.h"
#include "hash.h"
#include "macro.h"

/* Older names of lib/bundle.h's, kept only because
 * tests/fuzz/fuzz-manifest.c is written against them; new code uses the
 * bundle_ names. */
#define MANIFEST_DIGEST_SIZE    BUNDLE_DIGEST_SIZE
#define MANIFEST_MAX_FILES      BUNDLE_MAX_FILES
#define MANIFEST_MAX_FILE_SIZE  BUNDLE_MAX_FILE_SIZE
#define manifest_digest         bundle_digest
#define manifest_is_bundle_path bundle_is_path
#define manifest_is_reload_name bundle_is_reload_name

typedef struct manifest_limits {
        size_t max_size;       /* bytes of manifest; 0: BUNDLE_MAX_MANIFEST_SIZE */
        size_t max_files;      /* 0: BUNDLE_MAX_FILES */
        size_t max_file_size;  /* 0: BUNDLE_MAX_FILE_SIZE */
        size_t max_total_size; /* sum of file sizes; 0: BUNDLE_MAX_MANIFEST_SIZE */
} manifest_limits;

typedef struct manifest_file {
        char *path; /* owned; a bundle_is_path() path */
        mode_t mode;
        size_t size;
        char sha256[HASH_SHA256_HEX_LEN + 1];
        char *content; /* owned; @size bytes plus a NUL (content may hold NULs) */
} manifest_file;

typedef struct manifest {
        char *namespace; /* owned; a DNS-1123 label */
        char *name;      /* owned; a DNS-1123 subdomain */
        char *uid;       /* owned; "" when the manifest carries none */
        int64_t revision;
        char *reload; /* owned; NULL when the manifest names no reload action */
        char digest[BUNDLE_DIGEST_SIZE];
        manifest_file *files; /* owned; sorted by path, unique */
        size_t n_files;
        size_t content_size; /* sum of the files' sizes */
        char *bytes;         /* owned; the exact verified manifest bytes plus a NUL */
        size_t n_bytes;
} manifest;

manifest *manifest_free(manifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(manifest *, manifest_free);

/* Parses and verifies @len untrusted bytes at @data against @expected_digest
 * ("sha256:" + 64 lowercase hex digits). @limits may be NULL (defaults).
 *
 * Rejects, in this order: a malformed @expected_digest (-EINVAL); more than
 * max_size bytes (-EFBIG); bytes whose sha256 is not @expected_digest; JSON
 * that does not parse or is not byte-identical to its canonical
 * re-serialization (duplicate keys, whitespace, key order, escapes); a wrong
 * apiVersion or kind; unknown keys anywhere; a missing or invalid identity
 * (namespace must be a DNS-1123 label, name a DNS-1123 subdomain, uid if
 * present bundle_is_uid()); revision < 1; a reload action name that is not
 * bundle_is_reload_name(); no files or more than max_files; per file: a path
 * that is not bundle_is_path(), a mode outside 0..0777, a size that differs
 * from the content length, a sha256 that does not match the content; paths
 * not strictly ascending (unsorted or duplicate); a file whose path is also
 * a directory of another file ("a" and "a/b"); a file over max_file_size or
 * a total over max_total_size (-EFBIG). All of these return -EBADMSG unless
 * noted, with a message in @ret_err naming the bundle, the revision and the
 * field once they are known ("bundle prod/web revision 3: files[1]
 * (etc/app.conf): size 5 does not match the content length 4").
 *
 * On success *@ret is a new manifest owned by the caller (free with
 * manifest_free()). -ENOMEM on allocation failure. */
int manifest_parse(const void *data, size_t len, const char *expected_digest,
                   const manifest_limits *limits, manifest **ret, err_info *ret_err);

/* Kubernetes name rules: a DNS-1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?,
 * at most 63) and a DNS-1123 subdomain (dot-separated labels, at most 253).
 * Both are safe as a single path component. */
bool manifest_is_dns_label(const char *s);
bool manifest_is_dns_subdomain(const char *s);

/* Returns a borrowed pointer to the file at @path in @m (binary search), or
 * NULL. */
const manifest_file *manifest_find_file(const manifest *m, const char *path);
