/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's
 * leaderelection semantics: lease duration 15 s, renew deadline 10 s, retry
 * period 2 s (all configurable).
 *  - A candidate acquires the Lease when it is free, expired (renewTime +
 *    leaseDurationSeconds passed, measured by this process's own clock from
 *    when it last saw the record change, never by comparing clocks), or
 *    already its own. Updates carry the resourceVersion, so two candidates
 *    cannot both win.
 *  - The leader renews every retry period; if it cannot renew within the renew
 *    deadline it stops leading at once (on_stopped) before anyone else can
 *    acquire (renew deadline < lease duration).
 *  - leader_release() (on SIGTERM) clears holderIdentity and sets a 1 s lease
 *    so a standby takes over without waiting for expiry.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube.h"
#include "macro.h"

typedef struct leader leader;

typedef struct leader_opts {
        const char *namespace;        /* required */
        const char *name;             /* Lease name; required */
        const char *identity;         /* unique per process, e.g. "POD_NAME_uuid"; required */
        uint64_t lease_duration_usec; /* 0: 15 s */
        uint64_t renew_deadline_usec; /* 0: 10 s */
        uint64_t retry_period_usec;   /* 0: 2 s */
        void (*on_started)(leader *l, void *userdata); /* became leader */
        void (*on_stopped)(leader *l, void *userdata); /* lost or released the lease */
        void *userdata;
} leader_opts;

int leader_new(sd_event *e, kube_client *c, const leader_opts *opts, leader **ret);
leader *leader_free(leader *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(leader *, leader_free);

int leader_start(leader *l);
bool leader_is_leader(const leader *l);

/* Gives the lease up (if held) and calls @done when the release request has
 * finished or failed; used on SIGTERM. */
int leader_release(leader *l, void (*done)(leader *l, void *userdata), void *userdata);

/* Pure timing logic, exposed for unit tests: given when this process last saw
 * the lease record change (@observed_usec, monotonic) and the record's
 * lease duration, may a non-holder take over at @now? */
bool leader_lease_expired(uint64_t observed_usec, uint64_t lease_duration_usec, uint64_t now);
