/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The ConfigBundle controller. It watches ConfigBundles (everywhere, or in
 * one namespace) and the operator's own ConfigMaps, and for each bundle key
 * reconciles, in this order (docs/operator.md):
 *   1. render the spec (a new revision only when the digest changes);
 *   2. object store: the manifest, create-only, then index.json;
 *   3. ConfigMaps: the bundle's, then the index ConfigMap — server-side apply,
 *      only when the content differs;
 *   4. status, only when it changed.
 * The two targets are independent: one failing doesn't stop the other; the
 * condition says which failed and why, and the key is retried with backoff.
 * Caches (watches) run on every replica; only the leader reconciles and
 * writes.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube.h"
#include "macro.h"
#include "metrics.h"
#include "objstore.h"

/* The controller's name in controller-runtime's metrics, and their label. */
#define CONTROLLER_NAME          "configbundle"
#define CONTROLLER_METRICS_LABEL "controller=\"" CONTROLLER_NAME "\""

extern const kube_resource RESOURCE_CONFIGBUNDLES;

typedef struct controller controller;

typedef struct controller_opts {
        const char *namespace;            /* the operator's: ConfigMaps live here */
        const char *watch_namespace;      /* NULL: ConfigBundles in every namespace */
        const char *identity;             /* this replica, for Events */
        unsigned workers;                 /* 0: 4 */
        uint64_t resync_usec;             /* 0: no periodic resync */
        uint64_t index_coalesce_usec;     /* 0: 200 ms */
        uint64_t fleet_interval_usec;     /* 0: 30 s; agent reports read this often (jittered) */
        uint64_t manifest_retention_usec; /* 0: 24 h */
        /* A histogram (borrowed) that gets each reconcile's duration in
         * seconds, from its start to its workqueue_done(), with the label
         * CONTROLLER_METRICS_LABEL; NULL: none. */
        metric *reconcile_time;
} controller_opts;

typedef struct controller_stats {
        uint64_t reconciles;
        uint64_t reconcile_errors;
        uint64_t revisions;     /* new revisions minted */
        uint64_t manifest_puts; /* object-store manifest writes */
        uint64_t index_writes;  /* object-store index writes */
        uint64_t cm_writes;     /* ConfigMap applies and deletes */
        uint64_t status_writes;
        uint64_t cr_writes;   /* finalizer patches */
        uint64_t events;      /* Kubernetes Events posted */
        uint64_t fleet_reads; /* agent report objects read */
        uint64_t gc_deletes;  /* superseded manifests deleted */
        /* Publication by target, one outcome per reconcile that publishes: a
         * target that wrote (manifest, index entry, ConfigMap) and succeeded,
         * or that failed; one with nothing to write counts neither. Status
         * writes that succeeded are status_writes. */
        uint64_t store_publishes, store_publish_errors;
        uint64_t cm_publishes, cm_publish_errors;
        uint64_t status_write_errors;
        /* the work queue: keys waiting, reconciles holding a worker, parked
         * ones (workqueue_park()), and workqueue_adds()/workqueue_retries() */
        uint64_t queue_depth, queue_inflight, queue_parked;
        uint64_t queue_adds, queue_retries;
        /* What the caches hold, in bytes: the ConfigBundle and ConfigMap
         * caches as stored (deflated text, see kube_store_bytes()), and the
         * object-store index as its document would be. */
        uint64_t cr_cache_bytes, cm_cache_bytes, index_bytes;
} controller_stats;

/* @store may be NULL (no object store configured). @kube and @store are
 * borrowed and must outlive the controller. */
int controller_new(sd_event *e, kube_client *kube, objstore *store, const controller_opts *o,
                   controller **ret);
controller *controller_free(controller *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(controller *, controller_free);

/* Starts the watches (the caches). Reconciling waits for leadership. */
int controller_start(controller *c);

/* Becomes (or stops being) the one that reconciles and writes. Stopping
 * takes effect at once: no new reconcile starts; in-flight ones finish. */
void controller_set_leading(controller *c, bool leading);

/* True once both caches are synced and, with an object store, its index has
 * been read. */
bool controller_is_synced(const controller *c);

void controller_get_stats(const controller *c, controller_stats *ret);

/* Reads the agents' reports now instead of at the next interval. */
int controller_fleet_pass(controller *c);

/* The requests a reconcile sends, for tests/bench/bench-kube-floor.c, which
 * sends the same ones without the controller around them. */

/* A merge patch (as text, caller frees *@ret) that sets metadata.finalizers
 * of @cr (borrowed) to its current list plus (@add) or minus ours, guarded by
 * the resourceVersion the list was read at. */
int controller_finalizer_patch(json_object *cr, bool add, char **ret);

/* The server-side apply body of a ConfigBundle's status subresource:
 * apiVersion, kind, metadata.name and .namespace, and @status, which it takes
 * ownership of (also on failure). Returns a new reference, or NULL when out
 * of memory. */
json_object *controller_status_body(const char *ns, const char *name, json_object *status);
