/* SPDX-License-Identifier: Apache-2.0 */

#include "macro.h"
#include "ratelimit.h"

void ratelimit_init(ratelimit *rl, double qps, unsigned burst, uint64_t now) {
        rl->qps = qps;
        rl->burst = MAX((double) burst, 1.0);
        rl->tokens = rl->burst;
        rl->last_usec = now;
}

/* Refills for the time since the last call; a clock that went backwards
 * adds nothing. */
static void refill(ratelimit *rl, uint64_t now) {
        if (now > rl->last_usec) {
                rl->tokens += (double) (now - rl->last_usec) * rl->qps / 1e6;
                if (rl->tokens > rl->burst)
                        rl->tokens = rl->burst;
                rl->last_usec = now;
        }
}

uint64_t ratelimit_reserve(ratelimit *rl, uint64_t now) {
        double wait;

        if (!(rl->qps > 0))
                return 0;
        refill(rl, now);
        rl->tokens -= 1.0;
        if (rl->tokens >= 0)
                return 0;
        wait = -rl->tokens * 1e6 / rl->qps;
        return wait >= 1e18 ? UINT64_C(1000000000000000000) : (uint64_t) wait + 1;
}

uint64_t ratelimit_take(ratelimit *rl, uint64_t now) {
        double wait;
        uint64_t w;

        if (!(rl->qps > 0))
                return 0;
        refill(rl, now);

        if (rl->tokens >= 1.0) {
                rl->tokens -= 1.0;
                return 0;
        }

        /* Round up so a caller that waits this long finds a whole token. */
        wait = (1.0 - rl->tokens) * 1e6 / rl->qps;
        if (wait >= 1e18)
                return UINT64_C(1000000000000000000);
        w = (uint64_t) wait;
        if ((double) w < wait)
                w++;
        return MAX(w, (uint64_t) 1);
}
