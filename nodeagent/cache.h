/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The agent's on-disk cache (hostPath, default /var/lib/ballast): verified
 * manifests per bundle revision, a state record per bundle (applied and
 * last-known-good revisions, failed revisions, lineage), the node's labels
 * and the last index seen per source. It is what the agent serves from when
 * the API server and the object store are both away, including after a
 * restart. Layout, commit order and recovery: docs/agent-cache.md.
 *
 * Every write goes through fsx_write_atomic() (temporary, fsync, rename,
 * fsync of the directory). Each bundle's state.json is its commit point: a
 * manifest file it does not list is not in the cache. A failed write leaves
 * the on-disk state and this in-memory view unchanged and returns the error
 * with a message that names the file.
 *
 * Bundles are keyed by namespace/name (both validated as DNS names, so they
 * are safe path components). Within one lineage (one bundle uid) revisions
 * only go up; a manifest with a new uid (the ConfigBundle was deleted and
 * created again) starts a new lineage and the old uid is retired for good.
 *
 * Not thread-safe; one process per cache directory (cache_open() takes an
 * exclusive lock).
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "macro.h"
#include "manifest.h"

#define CACHE_DEFAULT_KEEP   5
#define CACHE_MAX_FAILURES   16 /* failed revisions remembered per bundle */
#define CACHE_MAX_RETIRED    16 /* retired uids remembered per bundle */
#define CACHE_MAX_REASON     512
#define CACHE_MAX_STATE_SIZE (1024 * 1024)
#define CACHE_MAX_BLOB_SIZE  (16 * 1024 * 1024)

typedef struct cache cache;

/* One revision of one bundle. */
typedef struct cache_rev {
        int64_t revision; /* 0: none */
        char digest[BUNDLE_DIGEST_SIZE];
        char *uid;  /* owned; the lineage ("" for manifests without a uid) */
        int64_t at; /* Unix seconds when it became applied / last-known-good; 0 otherwise */
} cache_rev;

typedef struct cache_failure {
        int64_t revision;
        char digest[BUNDLE_DIGEST_SIZE];
        char *reason; /* owned */
        int64_t at;   /* Unix seconds */
} cache_failure;

/* A bundle as the cache knows it. Read-only for callers: every change goes
 * through the cache_* functions below. */
typedef struct cache_bundle {
        char *namespace, *name; /* owned */
        char *uid;              /* owned; the current lineage */
        cache_rev highest;      /* highest revision committed in this lineage: a floor
                                 * even if its manifest is later lost */
        cache_rev applied;      /* what was last swapped in (revision 0: none) */
        cache_rev lkg;          /* last-known-good: applied and reloaded successfully */
        cache_rev *revisions;   /* owned; the cached manifests, ascending by revision */
        size_t n_revisions;
        cache_failure *failures; /* owned; oldest first */
        size_t n_failures;
        char **retired_uids; /* owned; lineages that must not come back */
        size_t n_retired;
} cache_bundle;

cache *cache_free(cache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(cache *, cache_free);

/* Opens (creating it, mode 0700, if missing) the cache at @dir and verifies
 * every cached manifest: its file must hash to the digest in its name and in
 * state.json and parse as the bundle and revision it is listed as. A corrupt
 * manifest or state record is moved to @dir/quarantine/ and reported (see
 * cache_get_problems()), never returned. Leftovers of interrupted writes are
 * removed. @keep is the number of revisions to keep per bundle (0: the
 * default). Takes an exclusive lock on @dir: -EBUSY if another process holds
 * it. A read-only @dir opens (quarantining is then reported as failed). On
 * success *@ret is owned by the caller. */
int cache_open(const char *dir, unsigned keep, cache **ret, err_info *ret_err);

/* Problems found by cache_open(), cache_load_manifest() and
 * cache_load_node_labels(), one message each, for the caller to log and count
 * ("bundles/prod/web/3-ab12....json: ...: digest mismatch ... (quarantined as
 * ...)"). Returns the count; *@ret is borrowed, valid until
 * cache_clear_problems() or cache_free(). At most 64 are kept. */
size_t cache_get_problems(cache *c, char *const **ret);
void cache_clear_problems(cache *c);

const char *cache_get_dir(cache *c);

/* Borrowed view of bundle @ns/@name, valid until the next cache call that
 * changes it; NULL when the cache has no such bundle. */
const cache_bundle *cache_get_bundle(cache *c, const char *ns, const char *name);

/* The bundles, sorted by namespace then name; @i < cache_count_bundles(). */
size_t cache_count_bundles(cache *c);
const cache_bundle *cache_get_bundle_at(cache *c, size_t i);

/* Decides whether a manifest (identified by its bundle, uid, revision and
 * digest) may enter the cache, before fetching it. Returns 0 if it may (a
 * new revision or lineage), -EALREADY if exactly this manifest is cached,
 * -ESTALE if it would go back (a lower revision than the lineage's highest,
 * the same revision with another digest, or a retired uid), -EINVAL for
 * invalid arguments; the reason in @ret_err. */
int cache_check_revision(cache *c, const char *ns, const char *name, const char *uid,
                         int64_t revision, const char *digest, err_info *ret_err);

/* Stores verified manifest @m (borrowed) and records it as the lineage's
 * highest revision, then garbage-collects: per bundle it keeps the @keep
 * highest revisions of the current lineage plus the applied and
 * last-known-good revisions, whatever their age or lineage. Returns 1 if @m
 * was stored, 0 if it was already cached, or the errors of
 * cache_check_revision() and of the disk (-ENOSPC, -EROFS, -EIO, ...). */
int cache_commit(cache *c, const manifest *m, err_info *ret_err);

/* Reads and re-verifies the cached manifest of @ns/@name at @revision with
 * @digest. On success *@ret is owned by the caller. -ENOENT if it is not
 * cached; -EBADMSG if the file no longer verifies (it is then quarantined and
 * dropped from the cache, and the caller should refetch). */
int cache_load_manifest(cache *c, const char *ns, const char *name, int64_t revision,
                        const char *digest, manifest **ret, err_info *ret_err);

/* Record that @revision/@digest (which must be cached: -ENOENT) is now
 * applied, or is last-known-good, at Unix time @now. */
int cache_set_applied(cache *c, const char *ns, const char *name, int64_t revision,
                      const char *digest, int64_t now, err_info *ret_err);
int cache_set_lkg(cache *c, const char *ns, const char *name, int64_t revision, const char *digest,
                  int64_t now, err_info *ret_err);

/* Persists that @revision/@digest failed to apply, with @reason (truncated to
 * CACHE_MAX_REASON). Keeps the newest CACHE_MAX_FAILURES per bundle. The
 * bundle must be known to the cache (-ENOENT). */
int cache_record_failure(cache *c, const char *ns, const char *name, int64_t revision,
                         const char *digest, const char *reason, int64_t now, err_info *ret_err);

/* True if @revision/@digest of @ns/@name is recorded as failed. */
bool cache_is_failed(cache *c, const char *ns, const char *name, int64_t revision,
                     const char *digest);

/* Forgets bundle @ns/@name: its state and manifests (an atomic rename to a
 * trash name, then removal). Missing is not an error. The lineage is
 * forgotten too; see docs/agent-cache.md. */
int cache_remove_bundle(cache *c, const char *ns, const char *name, err_info *ret_err);

/* The node's labels (a JSON object of strings), so selection works without
 * the API server. Load returns a new reference; -ENOENT when none were
 * saved, -EBADMSG (and quarantine) when the file is corrupt. */
int cache_save_node_labels(cache *c, json_object *labels, err_info *ret_err);
int cache_load_node_labels(cache *c, json_object **ret, err_info *ret_err);

/* Opaque per-source blobs (the last index and its ETag, as the fetcher
 * likes), named by @source ([a-z0-9-], 1..63). They are untrusted on the way
 * back in: the reader must parse and verify them as it would from the
 * network. Load: *@ret is owned, NUL-terminated; -ENOENT when absent. */
int cache_save_source(cache *c, const char *source, const void *data, size_t len,
                      err_info *ret_err);
int cache_load_source(cache *c, const char *source, char **ret, size_t *ret_len, err_info *ret_err);

/* Bytes of cached manifests (for the cache size metric). */
uint64_t cache_get_size(cache *c);
