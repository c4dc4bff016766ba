/* SPDX-License-Identifier: Apache-2.0 */

#include <pthread.h>
#include <sys/random.h>
#include <time.h>

#include "backoff.h"
#include "macro.h"

uint64_t backoff_window(const backoff *b) {
        uint64_t w = b->base_usec;

        /* min(cap, base << attempt) without overflowing: stop doubling once
         * the cap (or the top bit) is reached. */
        for (unsigned i = 0; i < b->attempt; i++) {
                if (w >= b->cap_usec || w > UINT64_MAX / 2)
                        break;
                w *= 2;
        }
        return MIN(w, b->cap_usec);
}

uint64_t backoff_next(backoff *b, uint64_t now) {
        uint64_t w;

        /* A failure after a long enough healthy period is a new incident, not
         * the continuation of the old one. reset_after_usec == 0 means any
         * recorded success resets. */
        if (b->healthy_since > 0 && now >= b->healthy_since &&
            now - b->healthy_since >= b->reset_after_usec)
                b->attempt = 0;
        b->healthy_since = 0;

        w = backoff_window(b);
        if (b->attempt < 64)
                b->attempt++;
        return b->jitter ? random_u64_below(w) : w;
}

void backoff_success(backoff *b, uint64_t now) {
        /* Remember when health started; repeated successes don't move it. */
        if (b->healthy_since == 0)
                b->healthy_since = MAX(now, (uint64_t) 1);
}

void backoff_reset(backoff *b) {
        b->attempt = 0;
        b->healthy_since = 0;
}

/* xoshiro256** (Blackman, Vigna), seeded from getrandom() through splitmix64.
 * Not for secrets; for spreading timers. */
static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rng_state[4];
static bool rng_seeded;

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void) {
        uint64_t *s = rng_state;
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

static void rng_seed(void) {
        uint64_t seed = 0;

        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t) sizeof(seed)) {
                /* Early boot without entropy: time and pid still differ across
                 * a fleet well enough for jitter. */
                struct timespec ts;

                (void) clock_gettime(CLOCK_REALTIME, &ts);
                seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 20) ^
                       ((uint64_t) getpid() << 40);
        }
        for (unsigned i = 0; i < 4; i++)
                rng_state[i] = splitmix64(&seed);
        rng_seeded = true;
}

uint64_t random_u64_below(uint64_t max_inclusive) {
        uint64_t x, range, limit;

        pthread_mutex_lock(&rng_lock);
        if (!rng_seeded)
                rng_seed();

        if (max_inclusive == UINT64_MAX) {
                x = rng_next();
                pthread_mutex_unlock(&rng_lock);
                return x;
        }

        /* Rejection sampling: draw from the largest multiple of range below
         * 2^64 so every residue is equally likely (no modulo bias). */
        range = max_inclusive + 1;
        limit = UINT64_MAX - (UINT64_MAX % range + 1) % range;
        do
                x = rng_next();
        while (x > limit);
        pthread_mutex_unlock(&rng_lock);
        return x % range;
}
