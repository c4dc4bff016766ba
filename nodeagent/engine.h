/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The engine decides what each bundle should be on this node and drives the
 * cache, apply and reload to get there (docs/agent.md, "Choosing what to
 * apply"). It trusts nothing it is handed by the sources: views are
 * validated entry by entry, manifests are verified (manifest_parse()) before
 * they reach the cache.
 *
 * Inputs, each replacing the previous one:
 *   - a view per source (the API server's bundle ConfigMaps, the object
 *     store's index), in the index's "bundles" form: {"NS/NAME": {"namespace",
 *     "name","uid","revision","digest","key","nodeSelector","reload",
 *     "manifest" (optional: the manifest bytes inline, as a string)}};
 *   - the node's labels (NULL: unknown);
 *   - fetched manifest bytes (engine_manifest_fetched()).
 *
 * Per bundle: the highest revision from any view that verifies and that the
 * cache's floor allows (cache_check_revision()); a failed revision is not
 * retried until a newer one appears; a bundle whose selector no longer
 * matches, or that no view lists any more, is removed from the node. Applying
 * is stage -> check -> swap -> reload, and on a failed swap or reload a
 * rollback to last-known-good and a second reload, with the failure recorded
 * in the cache. Jobs of different bundles run concurrently (up to
 * ENGINE_MAX_JOBS); one bundle has at most one job.
 *
 * Everything runs on the event loop; nothing blocks except the file system
 * work of apply and the cache, which is bounded by the manifest limits.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "cache.h"
#include "config.h"
#include "err.h"
#include "macro.h"
#include "reload.h"

#define ENGINE_MAX_JOBS        4
#define ENGINE_RETRY_BASE_USEC (1 * USEC_PER_SEC)
#define ENGINE_RETRY_CAP_USEC  (5 * 60 * USEC_PER_SEC)
#define ENGINE_MAX_REJECTED    8 /* digests remembered per bundle as failing verification */

typedef enum engine_source {
        ENGINE_SOURCE_KUBE,  /* bundle ConfigMaps through the API server */
        ENGINE_SOURCE_STORE, /* index.json in the object store */
        _ENGINE_SOURCE_MAX,
} engine_source;

/* "kube", "store". */
const char *engine_source_to_string(engine_source s);

typedef struct engine engine;

/* Asks for the manifest at @object_key, which must have @digest, for bundle
 * @bundle_key. Must return 0 and later (never from inside this call) call
 * engine_manifest_fetched() exactly once for @digest, or return a negative
 * errno (no object store: the engine does not ask again for this bundle
 * until its views change). Strings are borrowed for the call. */
typedef int (*engine_fetch_fn)(engine *e, const char *bundle_key, const char *object_key,
                               const char *digest, void *userdata);

/* Called when anything a status report shows may have changed. */
typedef void (*engine_changed_fn)(engine *e, void *userdata);

typedef struct engine_opts {
        sd_event *event;            /* referenced */
        cache *cache;               /* borrowed; must outlive the engine */
        const agent_config *config; /* borrowed: reload actions; must outlive the engine */
        const char *root_dir;       /* copied */
        reload_ctx *reload;         /* borrowed */
        engine_fetch_fn fetch;      /* NULL: no object store, pointer manifests can't be had */
        void *fetch_userdata;
        engine_changed_fn changed; /* may be NULL */
        void *changed_userdata;
        bool no_jitter;           /* backoff without jitter (benchmark baseline only) */
        uint64_t retry_base_usec; /* transient fetch/apply failures; 0: ENGINE_RETRY_BASE_USEC */
        uint64_t retry_cap_usec;  /* 0: ENGINE_RETRY_CAP_USEC */
} engine_opts;

/* Creates an engine. Nothing happens until engine_start(). */
int engine_new(const engine_opts *o, engine **ret);

/* Sets (or replaces) the callbacks of engine_opts, for callers that create
 * the fetcher and reporter after the engine. */
void engine_set_callbacks(engine *e, engine_fetch_fn fetch, void *fetch_userdata,
                          engine_changed_fn changed, void *changed_userdata);

/* Cancels running jobs (their commands are killed) and frees the engine.
 * NULL is fine. */
engine *engine_free(engine *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(engine *, engine_free);

/* Start-up, synchronous: for every cached bundle make the root match its
 * last-known-good (apply_verify(), and apply_rollback() from the cache when
 * it is missing, another revision or damaged; a first revision that was
 * swapped in but never confirmed is taken off again; a live revision the
 * cache lost track of is adopted if it verifies). Bundles whose files had to
 * be rewritten get their reload action run once the loop runs. Never fails
 * for a bad bundle (it is logged); returns the number of bundles repaired. */
int engine_start(engine *e);

/* Replaces @source's view with @bundles (borrowed; the engine takes a
 * reference, so the caller must not change it afterwards). NULL: the source
 * has no view (never synced). */
int engine_set_view(engine *e, engine_source source, json_object *bundles);

/* Like engine_set_view(), for a view restored from the cache at start. It
 * serves like any other view (what it lists is applied), but it never
 * removes a bundle: it may be older than what was applied before the stop
 * (a bundle applied in the second before it was saved would look deleted).
 * Bundles no view lists are removed only once some source has sent a live
 * view since the start. */
int engine_restore_view(engine *e, engine_source source, json_object *bundles);

/* Replaces the local config (reload actions) after a reload of the file.
 * @config is borrowed like engine_opts.config; the previous one may be freed
 * as soon as this returns (jobs don't keep pointers into it). Revisions that
 * failed because an action was missing stay failed until a newer one. */
void engine_set_config(engine *e, const agent_config *config);

/* The view of @source, borrowed, or NULL. */
json_object *engine_get_view(engine *e, engine_source source);

/* Sets the node's labels (borrowed, copied; a JSON object of strings), or
 * NULL when unknown. With unknown labels a bundle with a non-empty selector
 * is neither applied nor removed. */
int engine_set_labels(engine *e, json_object *labels);

/* The outcome of an engine_fetch_fn request: @r = 0 and @len bytes at @data
 * (borrowed, untrusted), or a negative errno (with @err, may be NULL). */
void engine_manifest_fetched(engine *e, const char *digest, int r, const char *data, size_t len,
                             const err_info *err);

/* True when no job runs, no fetch is outstanding, no evaluation is queued and
 * no retry is waiting: what tests wait for. */
bool engine_is_idle(engine *e);

/* What a status report needs to know about one bundle. Borrowed for the
 * callback. */
typedef struct engine_bundle_info {
        const char *key; /* "NS/NAME" */
        const char *uid; /* from the view or the cache; NULL if unknown */
        int matched;     /* 1 yes, 0 no, -1 unknown (labels unknown or selector invalid) */
        const cache_bundle *cached; /* NULL if the cache holds nothing for it */
        const char *last_error;     /* the last transient or verification problem, or NULL */
        int64_t removed_at;         /* Unix seconds when it was taken off the node, or 0 */
        bool busy;                  /* a job runs for it */
} engine_bundle_info;

/* Calls @fn for every bundle known from a view or the cache, sorted by key,
 * until it returns non-zero (which is returned). */
int engine_foreach_bundle(engine *e, int (*fn)(const engine_bundle_info *info, void *userdata),
                          void *userdata);

typedef struct engine_stats {
        uint64_t evaluations;
        uint64_t applies;        /* revisions that applied and reloaded */
        uint64_t apply_failures; /* revisions recorded as failed */
        uint64_t rollbacks;      /* swaps back to last-known-good */
        uint64_t reloads;        /* reload actions run (check commands not included) */
        uint64_t reload_failures;
        uint64_t checks;
        uint64_t removals;
        uint64_t verify_failures; /* manifests rejected */
        uint64_t invalid_entries; /* view entries rejected */
        uint64_t fetches;         /* manifest fetches asked for */
        uint64_t repairs;         /* start-up repairs of the root */
} engine_stats;
void engine_get_stats(const engine *e, engine_stats *ret);
