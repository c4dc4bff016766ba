/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Token bucket (client-go's flowcontrol.NewTokenBucketRateLimiter): @qps
 * tokens per second, at most @burst stored. Callers ask how long to wait and
 * schedule a timer; nothing sleeps.
 */

#include <stdint.h>

typedef struct ratelimit {
        double qps;
        double burst;
        double tokens;
        uint64_t last_usec;
} ratelimit;

/* qps <= 0 disables limiting. The bucket starts full. */
void ratelimit_init(ratelimit *rl, double qps, unsigned burst, uint64_t now);

/* Takes one token if available and returns 0; otherwise returns the number of
 * microseconds until one will be (nothing taken). */
uint64_t ratelimit_take(ratelimit *rl, uint64_t now);

/* Takes one token now, borrowing from the future when none is left (the
 * bucket goes negative), and returns how long the caller must wait before
 * using it: Go's rate.Limiter.Reserve(). Successive reservations are spaced
 * 1/qps apart. */
uint64_t ratelimit_reserve(ratelimit *rl, uint64_t now);
