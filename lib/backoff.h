/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Capped exponential backoff with full jitter (AWS Architecture Blog,
 * "Exponential Backoff And Jitter"): the n-th delay is uniform in
 * [0, min(cap, base * 2^n)]. Full jitter spreads a fleet that failed together
 * over the whole window, so it cannot come back together.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct backoff {
        uint64_t base_usec;        /* first window, e.g. 800 ms */
        uint64_t cap_usec;         /* largest window, e.g. 30 s */
        uint64_t reset_after_usec; /* healthy this long -> start from base again; 0: on success */
        bool jitter;               /* false only for the naive baseline in benchmarks */
        /* private */
        unsigned attempt;
        uint64_t healthy_since;
} backoff;

#define BACKOFF_INIT(base, cap, reset)                                                             \
        ((backoff){.base_usec = (base),                                                            \
                   .cap_usec = (cap),                                                              \
                   .reset_after_usec = (reset),                                                    \
                   .jitter = true})

/* Returns the next delay in microseconds and advances the attempt counter.
 * @now is CLOCK_MONOTONIC in usec; a failure after reset_after_usec of health
 * starts again from the base window. */
uint64_t backoff_next(backoff *b, uint64_t now);

/* Marks the start of a healthy period (a successful connect, a good event). */
void backoff_success(backoff *b, uint64_t now);

/* Starts over at the base window. */
void backoff_reset(backoff *b);

/* The window the next delay will be drawn from, without advancing. */
uint64_t backoff_window(const backoff *b);

/* Uniform random in [0, max], from a per-process generator seeded with
 * getrandom(). Used for splay and jitter. */
uint64_t random_u64_below(uint64_t max_inclusive);
