/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The agent's two remote sources, the code that parses what they send
 * before the engine sees it:
 *
 *   - the API server: a watch on the bundle ConfigMaps in the operator's
 *     namespace (label selector BUNDLE_SELECTOR_BUNDLES), turned into a view in
 *     the index's form, with each manifest inline (or, for a ConfigMap that
 *     only points at the object store, its object key); and a watch on this
 *     node's own Node (field selector metadata.name=NODE) for its labels,
 *     which are saved in the cache.
 *   - the object store: index.json polled with If-None-Match on a fixed
 *     interval, one poll at a uniformly random point of each interval-long
 *     slot ("full jitter" within the slot, so the rate is exactly one poll per
 *     interval and a fleet that starts together is spread over the whole
 *     slot); the first poll is splayed over [0, interval]. Errors back off
 *     with capped exponential backoff and full jitter, and never sooner than
 *     a server's Retry-After (429, S3 SlowDown/503 come back as -EAGAIN
 *     with err_info.retry_after_sec). Manifests are fetched by the engine's
 *     request (only when a digest is new to the cache), at most
 *     FETCH_MAX_INFLIGHT at once.
 *
 * The last view of each source and the ETag of the index are saved in the
 * cache (sources/kube-view, sources/store-index), so after a restart during
 * an outage the engine still knows every bundle's selector, and the first
 * poll can be answered by a 304. What the operator publishes (keys, labels,
 * annotations) is lib/bundle.h's, shared with the operator.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "backoff.h"
#include "bundle.h"
#include "cache.h"
#include "engine.h"
#include "kube.h"
#include "macro.h"
#include "objstore.h"

#define FETCH_SOURCE_KUBE_VIEW   "kube-view"
#define FETCH_SOURCE_STORE_INDEX "store-index"

#define FETCH_MAX_INFLIGHT       8
#define FETCH_MAX_INDEX_SIZE     (64u * 1024 * 1024)
#define FETCH_RETRY_BASE_USEC    (1 * USEC_PER_SEC)
#define FETCH_RETRY_CAP_MIN_USEC (10 * USEC_PER_SEC)
#define FETCH_RETRY_CAP_MAX_USEC (5 * 60 * USEC_PER_SEC)
#define FETCH_RETRY_AFTER_MAX    (15 * 60) /* seconds of a server's Retry-After we honour */
#define FETCH_PERSIST_DELAY_USEC (1 * USEC_PER_SEC)
/* The default window over which the watches come back after an API server
 * outage, in poll intervals. An agent's recovery is three requests: one
 * streaming list per watch, and the status write that reports the API source
 * up again. Over ten intervals that is 0.3 of its steady rate of one poll
 * per interval, which leaves room for the noise of small fleets under a
 * recovery peak of twice the steady rate (six intervals, 0.5, peaked at
 * 2.0× in a trial run of bench-agent at 100 agents); meanwhile the polls
 * keep every node current. See docs/agent.md. */
#define FETCH_RESUME_WINDOW_POLLS 10

typedef struct fetch fetch;

typedef struct fetch_opts {
        sd_event *event;       /* referenced */
        engine *engine;        /* borrowed */
        cache *cache;          /* borrowed */
        kube_client *kube;     /* borrowed; NULL: no API server */
        const char *namespace; /* the operator's namespace; copied */
        const char *node_name; /* copied; required with @kube */
        objstore *store;       /* borrowed; NULL: no object store */
        uint64_t poll_interval_usec;
        uint64_t api_resume_window_usec; /* the watches' resume splay; 0: none */
        bool no_jitter;                  /* benchmark baseline: no splay, no jitter */
        json_object *static_labels;      /* --node-labels (borrowed, copied), or NULL */
} fetch_opts;

int fetch_new(const fetch_opts *o, fetch **ret);
fetch *fetch_free(fetch *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(fetch *, fetch_free);

/* Hands the engine what the cache remembers: node labels (or --node-labels)
 * and the saved views of the configured sources. Synchronous, no network.
 * Problems (a corrupt saved view) are logged and skipped. */
int fetch_restore(fetch *f);

/* Starts the watches and the poller. Never waits for them. */
int fetch_start(fetch *f);

/* An engine_fetch_fn: @userdata is the fetch. -ENOTCONN without a store. */
int fetch_request_manifest(engine *e, const char *bundle_key, const char *object_key,
                           const char *digest, void *userdata);

typedef struct fetch_source_status {
        bool configured;
        bool up;              /* the last attempt succeeded / the watch is healthy */
        int64_t last_success; /* Unix seconds, 0: never in this process */
} fetch_source_status;

void fetch_get_source_status(fetch *f, engine_source s, fetch_source_status *ret);

/* Refreshes the per-source metrics and config age (call every few seconds).
 * Config age: seconds since a live source last confirmed the views (since
 * start when none has). */
void fetch_update_metrics(fetch *f);

typedef struct fetch_stats {
        uint64_t polls, polls_changed, polls_unchanged, poll_errors;
        uint64_t manifest_gets, manifest_errors;
        uint64_t bad_indexes;
        uint64_t kube_views;
} fetch_stats;
void fetch_get_stats(const fetch *f, fetch_stats *ret);

/* ---- pieces exported for tests ------------------------------------------- */

/* The delay of the first poll: uniform in [0, @interval] (0 without jitter). */
uint64_t fetch_first_poll_delay(uint64_t interval, bool jitter);

/* The delay until the next poll after a success at @now: advances *@slot_start
 * by one interval (or, if that slot is already over, to @now) and picks a
 * uniform point within the new slot [slot, slot + interval) (its start
 * without jitter). */
uint64_t fetch_next_poll_delay(uint64_t *slot_start, uint64_t now, uint64_t interval, bool jitter);

/* The delay after a failed poll: the backoff's next delay, but at least the
 * server's @retry_after_sec (-1: none; capped at FETCH_RETRY_AFTER_MAX). */
uint64_t fetch_error_delay(backoff *b, uint64_t now, long retry_after_sec);

/* The backoff cap for @interval: 2 * interval, within
 * [FETCH_RETRY_CAP_MIN_USEC, FETCH_RETRY_CAP_MAX_USEC]. */
uint64_t fetch_retry_cap(uint64_t interval);

/* Parses an index document (untrusted) into its "bundles" object (a new
 * reference in *@ret). -EBADMSG with a message for anything but
 * {"kind":"BundleIndex","bundles":{...}}. */
int fetch_parse_index(const char *data, size_t len, json_object **ret, err_info *ret_err);

/* Turns a bundle ConfigMap (borrowed) into "NS/NAME" and an index-style entry
 * (new reference, with "manifest" inline unless the ConfigMap is a pointer).
 * -EINVAL with a message for a ConfigMap without a valid bundle annotation. */
int fetch_configmap_entry(json_object *cm, char **ret_key, json_object **ret_entry,
                          err_info *ret_err);
