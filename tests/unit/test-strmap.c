/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "strmap.h"

typedef struct item {
        unsigned value;
        char key[24];
} item;

static const char *item_key(const void *e) {
        return ((const item *) e)->key;
}

static item *item_new(unsigned k, unsigned value) {
        item *it = calloc(1, sizeof(*it));

        assert_non_null(it);
        snprintf(it->key, sizeof(it->key), "ns-%u/b%05u", k % 7, k);
        it->value = value;
        return it;
}

static void test_put_get_replace_remove(void **state) {
        strmap m = STRMAP_INIT(item_key);
        item *a = item_new(1, 10), *b = item_new(2, 20), *a2 = item_new(1, 11);
        void *old = (void *) 1;
        size_t seen = 0;
        item *e;

        assert_null(strmap_get(&m, "ns-1/b00001"));
        assert_null(strmap_remove(&m, "ns-1/b00001"));
        assert_int_equal(strmap_put(&m, a, NULL), -EINVAL);
        assert_int_equal(strmap_put(&m, a, &old), 0);
        assert_null(old);
        assert_int_equal(strmap_put(&m, b, &old), 0);
        assert_int_equal(strmap_count(&m), 2);
        assert_ptr_equal(strmap_get(&m, "ns-1/b00001"), a);
        assert_ptr_equal(strmap_get(&m, "ns-2/b00002"), b);
        assert_null(strmap_get(&m, "ns-1/b0000"));
        assert_null(strmap_get(&m, "ns-1/b000011"));

        /* The same key replaces, handing back the old entry. */
        assert_int_equal(strmap_put(&m, a2, &old), 0);
        assert_ptr_equal(old, a);
        assert_int_equal(strmap_count(&m), 2);
        assert_int_equal(((item *) strmap_get(&m, "ns-1/b00001"))->value, 11);

        STRMAP_FOREACH(e, &m, i)
        seen += e->value;
        assert_int_equal(seen, 31);

        assert_ptr_equal(strmap_remove(&m, "ns-1/b00001"), a2);
        assert_null(strmap_get(&m, "ns-1/b00001"));
        assert_int_equal(strmap_count(&m), 1);
        assert_ptr_equal(strmap_remove(&m, "ns-2/b00002"), b);
        /* Empty again: the slots are given back. */
        assert_int_equal(strmap_count(&m), 0);
        assert_int_equal(strmap_bytes(&m), 0);
        strmap_clear(&m);
        free(a);
        free(a2);
        free(b);
}

/* Random puts and removes against a plain array, with a key space small
 * enough for long probe runs that wrap around the table: every lookup, the
 * count and a full iteration must agree after every step. */
static void test_against_a_reference(void **state) {
        enum { KEYS = 300, STEPS = 20000 };
        strmap m = STRMAP_INIT(item_key);
        item *ref[KEYS] = {};
        size_t n = 0, max_cap = 0;
        unsigned rnd = 12345;

        for (unsigned step = 0; step < STEPS; step++) {
                unsigned k, visits = 0;
                item *e;

                rnd = rnd * 1103515245 + 12345;
                k = (rnd >> 8) % KEYS;
                /* Phases: mostly puts, then mostly removes, so the map
                 * grows and shrinks again and again. */
                if (((rnd >> 4) % 8) < ((step / 2500) % 2 ? 2 : 6)) {
                        item *it = item_new(k, step);
                        void *old = NULL;

                        assert_int_equal(strmap_put(&m, it, &old), 0);
                        assert_ptr_equal(old, ref[k]);
                        free(old);
                        n += !ref[k];
                        ref[k] = it;
                } else {
                        char key[24];

                        snprintf(key, sizeof(key), "ns-%u/b%05u", k % 7, k);
                        assert_ptr_equal(strmap_remove(&m, key), ref[k]);
                        n -= !!ref[k];
                        free(ref[k]);
                        ref[k] = NULL;
                }
                assert_int_equal(strmap_count(&m), n);
                assert_true(m.cap == 0 || n * 4 <= m.cap * 3);
                if (m.cap > max_cap)
                        max_cap = m.cap;
                if (step % 97 != 0)
                        continue;
                for (unsigned i = 0; i < KEYS; i++) {
                        char key[24];

                        snprintf(key, sizeof(key), "ns-%u/b%05u", i % 7, i);
                        assert_ptr_equal(strmap_get(&m, key), ref[i]);
                }
                STRMAP_FOREACH(e, &m, i) {
                        unsigned id = (unsigned) strtoul(strchr(e->key, 'b') + 1, NULL, 10);

                        assert_ptr_equal(ref[id], e);
                        visits++;
                }
                assert_int_equal(visits, n);
        }
        /* No tombstones: the table never grew past what KEYS entries need. */
        assert_true(max_cap <= 512);
        for (unsigned i = 0; i < KEYS; i++)
                free(ref[i]);
        strmap_clear(&m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_get_replace_remove),
                cmocka_unit_test(test_against_a_reference),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
