/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The work queue of controller-runtime (client-go's workqueue), on sd-event:
 *  - a key ("namespace/name") is queued at most once however often it is added;
 *  - a key is never reconciled concurrently: added while in flight, it is
 *    marked dirty and queued again when the reconcile finishes;
 *  - failures back off per key, exponentially from 5 ms, capped (1000 s by
 *    default), and a success forgets the key's failures;
 *  - a global token bucket (10 qps, burst 100 by default) bounds how fast
 *    failed keys come back overall (new work is never throttled by it);
 *  - at most @workers reconciles are in flight at once.
 *
 * Reconciles are asynchronous: the queue calls the reconcile function, which
 * starts work and later calls workqueue_done() exactly once for that key.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct workqueue workqueue;

/* Starts reconciling @key (borrowed for the call; copy it to keep it). The
 * function must call workqueue_done(q, key, r) exactly once, possibly from
 * within this call. */
typedef void (*workqueue_reconcile_fn)(workqueue *q, const char *key, void *userdata);

typedef struct workqueue_opts {
        unsigned workers;         /* in-flight limit; 0: 4 */
        uint64_t base_delay_usec; /* first failure backoff; 0: 5 ms */
        uint64_t max_delay_usec;  /* cap; 0: 1000 s */
        double qps;               /* global token bucket; 0: 10 */
        unsigned burst;           /* 0: 100 */
} workqueue_opts;

int workqueue_new(sd_event *e, const workqueue_opts *opts, workqueue_reconcile_fn fn,
                  void *userdata, workqueue **ret);
workqueue *workqueue_free(workqueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(workqueue *, workqueue_free);

/* Queues @key now (deduplicated). Returns 0 or -ENOMEM. */
int workqueue_add(workqueue *q, const char *key);

/* Queues @key after @delay_usec (an earlier pending time wins). */
int workqueue_add_after(workqueue *q, const char *key, uint64_t delay_usec);

/* Ends the reconcile of @key: r >= 0 forgets its failures; r < 0 requeues it
 * with the key's next backoff delay. A key added meanwhile is queued again. */
void workqueue_done(workqueue *q, const char *key, int r);

/* The reconcile of @key (in flight) now only waits for a write it shares with
 * others (the coalesced index writes): it stops counting against @workers, so
 * another key can start, though @key stays in flight (never reconciled
 * concurrently) until workqueue_done(). At most
 * WORKQUEUE_PARKED_PER_WORKER × @workers keys are parked at once, which bounds
 * the memory of waiting reconciles if the shared write stalls; beyond that,
 * or for a key not in flight, it returns false and changes nothing. Parking
 * twice is harmless. Without it, every reconcile would hold a worker through
 * the index's coalescing window, and @workers ÷ that window would cap how
 * many bundles a second can be published. */
#define WORKQUEUE_PARKED_PER_WORKER 16
bool workqueue_park(workqueue *q, const char *key);

/* Ends the wait of parked @key: @fn(@userdata) runs once a worker is free for
 * it, at once (before this returns) if one is, else as soon as one is, ahead
 * of keys that have not started and even while paused. Resumed keys may use
 * up to 2 × @workers workers (new keys still start only below @workers). That keeps the
 * continuations of hundreds of parked reconciles, which all become due when
 * one shared write lands, from all making their requests at once. A key that
 * is not parked runs @fn at once. */
typedef void (*workqueue_resume_fn)(void *userdata);
void workqueue_unpark(workqueue *q, const char *key, workqueue_resume_fn fn, void *userdata);
unsigned workqueue_parked(const workqueue *q); /* keys parked */

/* Removes any pending (not in-flight) entry and the failure history of @key. */
void workqueue_forget(workqueue *q, const char *key);

/* Stops handing out keys (paused) or resumes; queued keys are kept. The
 * operator pauses while it does not hold the lease. */
void workqueue_set_paused(workqueue *q, bool paused);

unsigned workqueue_len(const workqueue *q);      /* pending keys */
unsigned workqueue_inflight(const workqueue *q); /* reconciles running */
/* Keys the queue holds state for: queued, in flight, waiting or failing. A
 * key that went idle costs nothing. */
size_t workqueue_keys(const workqueue *q);
unsigned workqueue_failures(const workqueue *q, const char *key);

/* Counters since creation, client-go's workqueue_adds_total and
 * workqueue_retries_total: adds that queued a key (immediately, or when a
 * delayed add or a backoff came due) or marked an in-flight key to run again,
 * but not those that found it already waiting; and failures requeued with
 * backoff by workqueue_done(). */
uint64_t workqueue_adds(const workqueue *q);
uint64_t workqueue_retries(const workqueue *q);
