/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The fleet's reports, read from the object store so no agent ever writes to
 * the API server. Each agent writes status/NODE.json (docs/status-object.md;
 * the keys are lib/bundle.h's).
 * On a jittered interval the leader lists status/ (paginated), fetches only
 * the reports whose ETag changed since the last pass, and aggregates per
 * bundle: nodes matched, applied (the current digest) and failed (the current
 * digest rolled back). Keys whose counts changed are handed to a callback,
 * which queues them, so status is written only when a count moves.
 *
 * The same pass garbage-collects superseded manifests under bundles/: a
 * manifest is deleted only when no index entry and no fresh report (applied,
 * last-known-good or failed) references its digest, and it has been seen
 * unreferenced for the whole retention period.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bundle.h"
#include "index.h"
#include "macro.h"
#include "objstore.h"

typedef struct fleet fleet;

typedef void (*fleet_changed_fn)(fleet *f, const char *key, void *userdata);

typedef struct fleet_opts {
        uint64_t interval_usec;    /* 0: 30 s; each wait is jittered ±20 % */
        uint64_t stale_after_usec; /* ignore reports not updated for this long; 0: 30 min */
        uint64_t retention_usec;   /* 0: 24 h */
        unsigned concurrency;      /* report GETs in flight; 0: 8 */
        bool gc;                   /* delete superseded manifests */
        fleet_changed_fn changed;
        void *userdata;
} fleet_opts;

/* @store and @index (the object store's, for GC) are borrowed. */
int fleet_new(sd_event *e, objstore *store, bundle_index *index, const fleet_opts *o, fleet **ret);
fleet *fleet_free(fleet *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(fleet *, fleet_free);

/* Runs passes while active (the leader), none otherwise. The first pass
 * starts after a random splay within the interval. */
void fleet_set_active(fleet *f, bool active);

/* Starts a pass now (tests, and right after taking the lead). */
int fleet_run_now(fleet *f);

/* True once a pass completed; the counts below are meaningful only then. */
bool fleet_has_data(const fleet *f);

/* Counts for bundle @key ("NS/NAME") at @digest. */
void fleet_counts(const fleet *f, const char *key, const char *digest, int64_t *ret_matched,
                  int64_t *ret_applied, int64_t *ret_failed);

typedef struct fleet_stats {
        uint64_t passes, lists, reads, unchanged, bad_reports, gc_deletes;
        unsigned nodes; /* fresh reports in the last pass */
} fleet_stats;
void fleet_get_stats(const fleet *f, fleet_stats *ret);

/* Parses one report (untrusted bytes) into per-bundle facts; exposed for
 * tests. On success *@ret is {"NS/NAME":{"matched":b,"applied":D,"lkg":D,
 * "failed":[D...]}} and *@ret_updated the report's time (seconds since the
 * epoch). -EBADMSG with a message otherwise. */
int fleet_parse_report(const char *data, size_t len, json_object **ret, int64_t *ret_updated,
                       err_info *ret_err);
