/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for the operator's index_load() (operator/index.c): after
 * a restart the operator reads index.json back from the object store and the
 * index ConfigMap, which anyone with write access to either can have changed,
 * so the bytes are untrusted. `make fuzz FUZZER=fuzz-index-load` runs it
 * under libFuzzer; `make check` replays tests/fuzz/corpus/index-load/ through
 * tests/fuzz/replay.c.
 *
 * Besides "never crash", it checks:
 *   - a failure is -EBADMSG (with a message) or -ENOMEM and leaves the index
 *     exactly as it was (it is loaded with one entry first);
 *   - after a success the index counts as persisted, its size estimate is
 *     the exact length of index_serialize()'s document, and that document
 *     is canonical JSON (jsonx_to_canonical() of its tree gives it back byte
 *     for byte) whose "bundles" are exactly the entries: each one is
 *     index_get()'s, with a positive revision, and index_holds() it;
 *   - the document loads again, into a fresh index and over the same one,
 *     and serializes to the same bytes (parse, write, parse, write: stable);
 *   - the agent's parser (fetch_parse_index()) reads what the operator
 *     writes, and sees the same bundles.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "fetch.h"
#include "index.h"
#include "jsonx.h"

#define SEED_DOC                                                                                   \
        "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{\"seed/x\":{\"digest\":"            \
        "\"sha256:00\",\"revision\":1}},\"kind\":\"BundleIndex\"}"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails (a crash, for libFuzzer) naming the broken promise. */
#define check(ok) check_at((ok), #ok, __LINE__)
static void check_at(bool ok, const char *what, int line) {
        if (ok)
                return;
        fprintf(stderr, "fuzz-index-load.c:%d: check failed: %s\n", line, what);
        abort();
}

/* Never called: nothing here syncs. */
static int sink(bundle_index *ix, index_doc *doc, size_t len, index_sink_done_fn done,
                void *userdata) {
        abort();
}

static sd_event *event(void) {
        static sd_event *e;

        if (!e)
                check(sd_event_new(&e) >= 0);
        return e;
}

static bundle_index *new_index(void) {
        bundle_index *ix = NULL;

        check(index_new(event(), sink, NULL, 0, &ix) == 0);
        return ix;
}

/* The document @ix writes, or NULL when out of memory. */
static char *serialize(bundle_index *ix, size_t *ret_len) {
        char *text = NULL;
        int r = index_serialize(ix, &text, ret_len);

        check(r == 0 || r == -ENOMEM);
        return r == 0 ? text : NULL;
}

/* What the agent makes of the operator's document @text. */
static void check_agent_reads(const char *text, size_t len, json_object *bundles) {
        _cleanup_json_ json_object *seen = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;
        int r;

        r = fetch_parse_index(text, len, &seen, NULL);
        if (r == -ENOMEM)
                return;
        check(r == 0);
        if (jsonx_to_canonical(bundles, &a, NULL) >= 0 && jsonx_to_canonical(seen, &b, NULL) >= 0)
                check(streq(a, b));
}

static void check_loaded(bundle_index *ix) {
        _cleanup_free_ char *text = NULL, *canon = NULL, *again = NULL, *over = NULL;
        _cleanup_json_ json_object *doc = NULL;
        _cleanup_(index_freep) bundle_index *fresh = NULL;
        json_object *bundles;
        size_t len = 0, canon_len = 0, again_len = 0, over_len = 0;
        err_info e;
        int r;

        check(index_is_persisted(ix));
        text = serialize(ix, &len);
        if (!text)
                return;
        check(strlen(text) == len);
        check(index_len_estimate(ix) == len);

        r = jsonx_parse(text, len, &doc, &e);
        if (r == -ENOMEM)
                return;
        check(r == 0 && json_object_is_type(doc, json_type_object));
        check(streq(strempty(jsonx_get_string(doc, "kind")), "BundleIndex"));
        if (jsonx_to_canonical(doc, &canon, &canon_len) < 0)
                return;
        check(canon_len == len && memcmp(canon, text, len) == 0);
        check(json_object_object_get_ex(doc, "bundles", &bundles) &&
              json_object_is_type(bundles, json_type_object));
        check((size_t) json_object_object_length(bundles) == index_count(ix));
        json_object_object_foreach(bundles, key, entry) {
                _cleanup_free_ char *want = NULL, *got = NULL;
                json_object *stored;

                check(index_contains(ix, key));
                check(json_object_is_type(entry, json_type_object) &&
                      jsonx_get_int(entry, "revision", 0) >= 1);
                stored = index_get(ix, key);
                if (!stored)
                        continue; /* out of memory */
                if (jsonx_to_canonical(entry, &want, NULL) >= 0 &&
                    jsonx_to_canonical(stored, &got, NULL) >= 0)
                        check(streq(want, got));
                check(index_holds(ix, key, entry));
        }
        check_agent_reads(text, len, bundles);

        /* Read back, into a fresh index and over the same one. */
        fresh = new_index();
        r = index_load(fresh, text, len, &e);
        if (r == -ENOMEM)
                return;
        check(r == 0 && index_count(fresh) == index_count(ix));
        again = serialize(fresh, &again_len);
        if (again)
                check(again_len == len && memcmp(again, text, len) == 0);
        r = index_load(ix, text, len, &e);
        if (r == -ENOMEM)
                return;
        check(r == 0);
        over = serialize(ix, &over_len);
        if (over)
                check(over_len == len && memcmp(over, text, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(index_freep) bundle_index *ix = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        size_t before_len = 0, after_len = 0;
        err_info e;
        int r;

        if (size > 1024 * 1024)
                return 0;
        ix = new_index();
        check(index_load(ix, SEED_DOC, strlen(SEED_DOC), NULL) == 0);
        before = serialize(ix, &before_len);
        if (!before)
                return 0;

        err_info_clear(&e);
        r = index_load(ix, (const char *) data, size, &e);
        if (r < 0) {
                check(r == -EBADMSG || r == -ENOMEM);
                check(r != -EBADMSG || e.message[0] != '\0');
                /* Nothing changed. */
                check(index_count(ix) == 1 && index_contains(ix, "seed/x"));
                check(index_len_estimate(ix) == before_len);
                after = serialize(ix, &after_len);
                if (after)
                        check(after_len == before_len && memcmp(after, before, before_len) == 0);
                return 0;
        }
        check(r == 0);
        check_loaded(ix);
        return 0;
}
