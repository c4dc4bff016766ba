/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A map of entries by string key, for maps of thousands of small entries
 * (the operator's caches hold one per bundle). The entries are the caller's
 * and carry their own key, which the map asks for with key_of(): the map
 * itself is one array of 16-byte slots, at most 3/4 full, and nothing else.
 * json-c's object map, by comparison, costs ~110 bytes an entry besides the
 * value: a 40-byte bucket at a load of 2/3 and a copy of the key.
 *
 * Open addressing with linear probing; removal shifts the following entries
 * back, so no tombstones build up and lookups stay short after any number of
 * removals. Keys are hashed with a per-process random seed. The order of
 * iteration is the order of the slots, which changes when the map grows,
 * shrinks or loses an entry: don't put or remove while iterating (collect
 * the keys first).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef const char *(*strmap_key_fn)(const void *entry);

typedef struct strmap_slot {
        void *entry; /* NULL: empty */
        uint32_t hash;
} strmap_slot;

typedef struct strmap {
        strmap_slot *slots;
        size_t cap; /* 0 or a power of two */
        size_t n;
        strmap_key_fn key_of;
} strmap;

#define STRMAP_INIT(key_fn) ((strmap){.key_of = (key_fn)})

/* Frees the slots, not the entries (free those first, with strmap_next()). */
void strmap_clear(strmap *m);

void *strmap_get(const strmap *m, const char *key);
/* Adds @entry, or replaces the entry with its key: the replaced one (or NULL)
 * goes to *@ret_old, which must then be non-NULL. -ENOMEM if the map had to
 * grow and could not; the map is then unchanged. */
int strmap_put(strmap *m, void *entry, void **ret_old);
/* Takes the entry with @key out of the map and returns it, or NULL. */
void *strmap_remove(strmap *m, const char *key);

static inline size_t strmap_count(const strmap *m) {
        return m->n;
}

/* The next entry at or after slot *@i, advancing *@i past it; NULL at the
 * end. Start with *@i = 0. */
void *strmap_next(const strmap *m, size_t *i);

/* Bytes the map itself holds (the slots). */
static inline size_t strmap_bytes(const strmap *m) {
        return m->cap * sizeof(strmap_slot);
}

#define STRMAP_FOREACH(e, m, i) for (size_t i = 0; ((e) = strmap_next((m), &i));)
