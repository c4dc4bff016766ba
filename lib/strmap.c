/* SPDX-License-Identifier: Apache-2.0 */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "strmap.h"

#define MIN_CAP 16

static uint64_t seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void) {
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t) sizeof(seed)) {
                struct timespec ts;

                /* Early boot without entropy: still differs per process. */
                clock_gettime(CLOCK_MONOTONIC, &ts);
                seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) getpid();
        }
}

/* FNV-1a over the seed and the key, then murmur3's finalizer to spread it. */
static uint32_t hash_key(const char *key) {
        uint64_t h = 0xcbf29ce484222325ULL ^ seed;

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= 0x100000001b3ULL;
        }
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return (uint32_t) h;
}

void strmap_clear(strmap *m) {
        free(m->slots);
        m->slots = NULL;
        m->cap = m->n = 0;
}

/* The slot holding @key, or the empty slot where it would go. */
static size_t find(const strmap *m, const char *key, uint32_t h) {
        size_t mask = m->cap - 1, i = h & mask;

        while (m->slots[i].entry &&
               (m->slots[i].hash != h || strcmp(m->key_of(m->slots[i].entry), key) != 0))
                i = (i + 1) & mask;
        return i;
}

static int resize(strmap *m, size_t cap) {
        strmap_slot *old = m->slots, *slots;
        size_t old_cap = m->cap;

        slots = calloc(cap, sizeof(strmap_slot));
        if (!slots)
                return -ENOMEM;
        m->slots = slots;
        m->cap = cap;
        for (size_t i = 0; i < old_cap; i++)
                if (old[i].entry) {
                        size_t j = old[i].hash & (cap - 1);

                        while (slots[j].entry)
                                j = (j + 1) & (cap - 1);
                        slots[j] = old[i];
                }
        free(old);
        return 0;
}

void *strmap_get(const strmap *m, const char *key) {
        if (!m || !key || m->n == 0)
                return NULL;
        return m->slots[find(m, key, hash_key(key))].entry;
}

int strmap_put(strmap *m, void *entry, void **ret_old) {
        const char *key;
        uint32_t h;
        size_t i;

        if (!m || !entry || !ret_old)
                return -EINVAL;
        (void) pthread_once(&seed_once, seed_init);
        key = m->key_of(entry);
        h = hash_key(key);
        if (m->cap > 0) {
                i = find(m, key, h);
                if (m->slots[i].entry) {
                        *ret_old = m->slots[i].entry;
                        m->slots[i].entry = entry;
                        return 0;
                }
        }
        /* At most 3/4 full, so every probe ends at an empty slot. */
        if ((m->n + 1) * 4 > m->cap * 3) {
                int r = resize(m, m->cap ? m->cap * 2 : MIN_CAP);

                if (r < 0)
                        return r;
        }
        i = find(m, key, h);
        m->slots[i] = (strmap_slot){.entry = entry, .hash = h};
        m->n++;
        *ret_old = NULL;
        return 0;
}

void *strmap_remove(strmap *m, const char *key) {
        size_t mask, i, j;
        void *e;

        if (!m || !key || m->n == 0)
                return NULL;
        mask = m->cap - 1;
        i = find(m, key, hash_key(key));
        e = m->slots[i].entry;
        if (!e)
                return NULL;
        /* Shift back each following entry that may not stay behind the hole
         * (its home slot is not cyclically in (i, j]). */
        for (j = (i + 1) & mask; m->slots[j].entry; j = (j + 1) & mask) {
                size_t home = m->slots[j].hash & mask;

                if (i <= j ? home <= i || home > j : home <= i && home > j) {
                        m->slots[i] = m->slots[j];
                        i = j;
                }
        }
        m->slots[i] = (strmap_slot){};
        m->n--;
        /* Give memory back after mass removal; a failed shrink changes nothing. */
        if (m->n == 0)
                strmap_clear(m);
        else if (m->cap > MIN_CAP && m->n * 8 < m->cap)
                (void) resize(m, m->cap / 2);
        return e;
}

void *strmap_next(const strmap *m, size_t *i) {
        if (!m)
                return NULL;
        for (; *i < m->cap; (*i)++)
                if (m->slots[*i].entry)
                        return m->slots[(*i)++].entry;
        return NULL;
}
