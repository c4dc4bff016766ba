/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The agent's status report: status/NODE.json in the object store
 * (bundle_status_key(); docs/status-object.md), never anything in the API
 * server. Written when what it says changes (debounced: REPORT_DEBOUNCE_USEC
 * plus up to twice that again of jitter, so a fleet that applied the same
 * revision in the same second does not write in the same second), and as a
 * heartbeat on a jittered interval (uniform within ±20 % of the heartbeat
 * interval). The first write after start is splayed over min(heartbeat,
 * REPORT_FIRST_MAX_USEC). A failed write is retried with capped exponential
 * backoff and full jitter; 429/SlowDown's Retry-After is honoured.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "engine.h"
#include "fetch.h"
#include "macro.h"
#include "objstore.h"

#define REPORT_DEBOUNCE_USEC  (1 * USEC_PER_SEC)
#define REPORT_FIRST_MAX_USEC (30 * USEC_PER_SEC)
#define REPORT_RETRY_CAP_USEC (5 * 60 * USEC_PER_SEC)

typedef struct report report;

typedef struct report_opts {
        sd_event *event;         /* referenced */
        engine *engine;          /* borrowed */
        fetch *fetch;            /* borrowed, may be NULL: source health in the report */
        objstore *store;         /* borrowed; NULL: reports are disabled */
        const char *node_name;   /* copied */
        uint64_t heartbeat_usec; /* 0: CONFIG_DEFAULT_HEARTBEAT_USEC */
        bool no_jitter;
} report_opts;

int report_new(const report_opts *o, report **ret);
report *report_free(report *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(report *, report_free);

/* Starts the heartbeat and schedules the first write. */
int report_start(report *r);

/* Something may have changed (an engine_changed_fn adapter: @userdata is the
 * report). Schedules a write if the content differs from the last one. */
void report_changed(engine *e, void *userdata);

/* Builds the report document for @node at Unix time @now (a new reference).
 * @f may be NULL. */
int report_build(engine *e, fetch *f, const char *node, int64_t now, json_object **ret);

typedef struct report_stats {
        uint64_t writes, write_errors, skipped_unchanged;
} report_stats;
void report_get_stats(const report *r, report_stats *ret);
