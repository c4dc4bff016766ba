/* SPDX-License-Identifier: Apache-2.0 */
/* The bundle index: coalesced writes, skipped no-op writes, holds, failures. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "hash.h"
#include "index.h"
#include "jsonx.h"
#include "loop.h"

typedef struct sink_state {
        unsigned writes;
        uint64_t started, answered; /* loop times of the last write */
        char *last;                 /* NULL for a document too large to serialize */
        size_t last_len;
        int fail_with; /* answer writes with this error */
        bool async;    /* answer from a timer instead of at once */
        index_sink_done_fn pending_done;
        bundle_index *pending_ix;
        sd_event_source *timer;
} sink_state;

static int on_answer(sd_event_source *s, uint64_t usec, void *userdata) {
        sink_state *st = userdata;
        err_info e;

        err_info_set(&e, st->fail_with, "injected");
        st->answered = loop_now(sd_event_source_get_event(s));
        st->pending_done(st->pending_ix, st->fail_with, st->fail_with ? &e : NULL);
        return 0;
}

/* Reads the whole document in pieces of @chunk bytes, as a writer would. */
static char *read_doc(index_doc *doc, size_t len, size_t chunk) {
        char *t = malloc(len + 1);
        uint64_t at = 0;
        ssize_t k;

        assert_non_null(t);
        while ((k = index_doc_read(t + at, MIN(chunk, len - at), at, doc)) > 0)
                at += (uint64_t) k;
        assert_int_equal(k, 0);
        assert_int_equal(at, len);
        t[len] = '\0';
        return t;
}

static int sink(bundle_index *ix, index_doc *doc, size_t len, index_sink_done_fn done,
                void *userdata) {
        sink_state *st = userdata;

        st->writes++;
        st->started = loop_now(sd_event_source_get_event(st->timer));
        free(st->last);
        st->last = NULL;
        if (doc) {
                _cleanup_free_ char *whole = NULL;
                char head[10];
                size_t n = 0;

                /* A reader may go forward or start over at 0, not jump. */
                assert_int_equal(index_doc_read(head, sizeof(head), 0, doc), sizeof(head));
                assert_memory_equal(head, "{\"apiVersi", sizeof(head));
                assert_int_equal(index_doc_read(head, sizeof(head), 20, doc), -ESPIPE);
                const unsigned char *sha256, *md5;
                unsigned char want[32], want_md5[16];
                unsigned dl = 0;

                /* Read in odd pieces, the same bytes as the whole text. */
                st->last = read_doc(doc, len, 7);
                /* The digests handed to the sink are the document's. */
                index_doc_digests(doc, &sha256, &md5);
                assert_non_null(sha256);
                assert_int_equal(hash_sha256(st->last, len, want), 0);
                assert_memory_equal(sha256, want, sizeof(want));
                if (EVP_Digest(st->last, len, want_md5, &dl, EVP_md5(), NULL) == 1) {
                        assert_non_null(md5);
                        assert_memory_equal(md5, want_md5, sizeof(want_md5));
                }
                assert_int_equal(index_doc_text(doc, &whole, &n), 0);
                assert_int_equal(n, len);
                assert_string_equal(whole, st->last);
        }
        st->last_len = len;
        st->pending_done = done;
        st->pending_ix = ix;
        return loop_timer_arm(sd_event_source_get_event(st->timer), &st->timer,
                              st->async ? 50 * USEC_PER_MSEC : 0, on_answer, st);
}

typedef struct counter {
        unsigned ok, failed;
        int last_r;
} counter;

static void synced(int r, const err_info *err, void *userdata) {
        counter *c = userdata;

        c->last_r = r;
        if (r < 0)
                c->failed++;
        else
                c->ok++;
}

static json_object *entry(int64_t revision) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "revision", json_object_new_int64(revision));
        json_object_object_add(o, "digest", json_object_new_string("sha256:00"));
        return o;
}

typedef struct fixture {
        sd_event *event;
        sink_state sink;
        bundle_index *ix;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));

        assert_int_equal(sd_event_new(&f->event), 0);
        /* A disabled timer whose only job is to carry the event loop to the
         * sink. Accurate to 1 µs (0 would mean sd-event's default, 250 ms):
         * the index paces its writes by how long the sink took to answer. */
        assert_int_equal(sd_event_add_time_relative(f->event, &f->sink.timer, CLOCK_MONOTONIC,
                                                    UINT64_MAX / 2, 1, on_answer, &f->sink),
                         0);
        sd_event_source_set_enabled(f->sink.timer, SD_EVENT_OFF);
        assert_int_equal(index_new(f->event, sink, &f->sink, 20 * USEC_PER_MSEC, &f->ix), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;

        index_free(f->ix);
        sd_event_source_disable_unref(f->sink.timer);
        free(f->sink.last);
        sd_event_unref(f->event);
        free(f);
        return 0;
}

static void run(fixture *f, uint64_t usec) {
        bool never = false;
        loop_run_until(f->event, &never, usec);
}

static void test_many_syncs_share_one_write(void **state) {
        fixture *f = *state;
        counter c = {};
        char key[32];

        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "ns/b%03d", i);
                assert_int_equal(index_set(f->ix, key, entry(i + 1)), 0);
                assert_int_equal(index_sync(f->ix, synced, &c), 0);
        }
        assert_int_equal(c.ok, 0); /* never from inside index_sync() */
        run(f, 100 * USEC_PER_MSEC);
        assert_int_equal(c.ok, 100);
        assert_int_equal(f->sink.writes, 1);
        assert_non_null(
                strstr(f->sink.last, "\"ns/b099\":{\"digest\":\"sha256:00\",\"revision\":100}"));
        assert_true(startswith(
                f->sink.last, "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{\"ns/b000\""));
}

/* The document read from the entries is byte for byte the canonical JSON of
 * the whole tree, in every way it can be read. */
static void test_document_is_the_canonical_tree(void **state) {
        fixture *f = *state;
        /* '-' sorts before '/', and byte order is not insertion order. */
        const char *keys[] = {"ns/b", "ns-a/z", "ns/a", "n/x", "ns/b-1", "ns/b/"};
        _cleanup_json_ json_object *tree = json_object_new_object();
        _cleanup_json_ json_object *bundles = json_object_new_object();
        _cleanup_free_ char *want = NULL, *got = NULL;
        size_t want_len = 0, got_len = 0;

        /* Empty first. */
        assert_int_equal(index_serialize(f->ix, &got, &got_len), 0);
        assert_string_equal(got, "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{},"
                                 "\"kind\":\"BundleIndex\"}");
        assert_int_equal(got_len, strlen(got));
        assert_int_equal(got_len, index_len_estimate(f->ix));
        got = mfree(got);

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                assert_int_equal(index_set(f->ix, keys[i], entry((int) i + 1)), 0);
                json_object_object_add(bundles, keys[i], entry((int) i + 1));
        }
        json_object_object_add(tree, "kind", json_object_new_string("BundleIndex"));
        json_object_object_add(tree, "bundles", json_object_get(bundles));
        json_object_object_add(tree, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        assert_int_equal(jsonx_to_canonical(tree, &want, &want_len), 0);

        assert_int_equal(index_serialize(f->ix, &got, &got_len), 0);
        assert_int_equal(got_len, want_len);
        assert_string_equal(got, want);
        assert_int_equal(index_len_estimate(f->ix), want_len);

        /* Through a write: read in pieces of 7 bytes by the sink. */
        {
                counter c = {};

                assert_int_equal(index_sync(f->ix, synced, &c), 0);
                run(f, 100 * USEC_PER_MSEC);
                assert_int_equal(c.ok, 1);
                assert_string_equal(f->sink.last, want);
        }
}

static void test_too_large_is_not_serialized(void **state) {
        fixture *f = *state;
        counter c = {};
        char key[32];
        size_t exact;

        for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof(key), "ns/b%03d", i);
                assert_int_equal(index_set(f->ix, key, entry(i + 1)), 0);
        }
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_non_null(f->sink.last);
        exact = strlen(f->sink.last);
        /* The estimate is the size (keys without escapes). */
        assert_int_equal(index_len_estimate(f->ix), exact);

        index_set_max_len(f->ix, exact);
        assert_false(index_too_large(f->ix));
        assert_int_equal(index_set(f->ix, "ns/b010", entry(11)), 0);
        assert_true(index_too_large(f->ix));
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 2);
        assert_null(f->sink.last);
        assert_true(f->sink.last_len > exact);
        /* A changed entry leaves the summary as it was: no write. */
        assert_int_equal(index_set(f->ix, "ns/b010", entry(12)), 0);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 2);
        /* One more entry changes the count: a write. */
        assert_int_equal(index_set(f->ix, "ns/b011", entry(1)), 0);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 3);
        /* Back under the limit: the document again. */
        index_remove(f->ix, "ns/b010");
        index_remove(f->ix, "ns/b011");
        assert_false(index_too_large(f->ix));
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 4);
        assert_non_null(f->sink.last);
        assert_int_equal(strlen(f->sink.last), exact);
        assert_int_equal(c.ok, 5);
}

static void test_adopt_counts_as_written_when_too_large(void **state) {
        fixture *f = *state;
        _cleanup_(index_freep) bundle_index *other = NULL;
        counter c = {};
        char key[32];

        assert_int_equal(index_new(f->event, sink, &f->sink, 20 * USEC_PER_MSEC, &other), 0);
        for (int i = 0; i < 20; i++) {
                snprintf(key, sizeof(key), "ns/b%03d", i);
                assert_int_equal(index_set(other, key, entry(i + 1)), 0);
        }
        index_set_max_len(f->ix, 100);
        /* A summary of another count: adopted, but it needs a write. */
        assert_int_equal(index_adopt(f->ix, other, 19), 0);
        assert_false(index_is_persisted(f->ix));
        /* Under the limit: the full document needs a write. */
        index_set_max_len(f->ix, 100000);
        assert_int_equal(index_adopt(f->ix, other, 20), 0);
        assert_false(index_is_persisted(f->ix));
        index_set_max_len(f->ix, 100);
        assert_int_equal(index_adopt(f->ix, other, 20), 0);
        assert_int_equal(index_count(f->ix), 20);
        assert_int_equal(index_len_estimate(f->ix), index_len_estimate(other));
        assert_true(index_is_persisted(f->ix));
        /* Setting what is there already writes nothing; a new entry does. */
        assert_int_equal(index_set(f->ix, "ns/b003", entry(4)), 0);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 0);
        assert_int_equal(index_set(f->ix, "ns/b100", entry(1)), 0);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 1);
        assert_int_equal(c.ok, 2);
        /* The entries are the other index's. */
        assert_int_equal(jsonx_get_int(index_get(f->ix, "ns/b019"), "revision", 0), 20);
}

static void test_unchanged_index_is_not_rewritten(void **state) {
        fixture *f = *state;
        counter c = {};

        assert_false(index_is_persisted(f->ix)); /* never written */
        index_set(f->ix, "ns/a", entry(1));
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_true(index_is_persisted(f->ix));
        index_set(f->ix, "ns/a", entry(1)); /* the same entry again */
        assert_true(index_is_persisted(f->ix));
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(c.ok, 2);
        assert_int_equal(f->sink.writes, 1);
        index_remove(f->ix, "ns/a");
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 2);
        assert_string_equal(f->sink.last, "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{},"
                                          "\"kind\":\"BundleIndex\"}");
}

static void test_changes_during_a_write_get_a_second_write(void **state) {
        fixture *f = *state;
        counter a = {}, b = {};

        f->sink.async = true;
        index_set(f->ix, "ns/a", entry(1));
        index_sync(f->ix, synced, &a);
        for (int i = 0; i < 500 && f->sink.writes == 0; i++)
                run(f, 5 * USEC_PER_MSEC);
        assert_int_equal(a.ok, 0); /* the first write is in flight now */
        assert_int_equal(f->sink.writes, 1);
        index_set(f->ix, "ns/b", entry(1));
        index_sync(f->ix, synced, &b);
        /* Both answers take 50 ms each; wait for them without a tight deadline. */
        for (int i = 0; i < 500 && b.ok + b.failed == 0; i++)
                run(f, 10 * USEC_PER_MSEC);
        assert_int_equal(a.ok, 1);
        assert_int_equal(b.ok, 1);
        assert_int_equal(f->sink.writes, 2);
        assert_non_null(strstr(f->sink.last, "ns/b"));
}

/* A steady stream of syncs does not push the write back: it starts within
 * the window of the first one (a debounce would write only once they stop). */
static void test_steady_syncs_do_not_postpone_writes(void **state) {
        fixture *f = *state;
        counter c = {};
        char key[32];

        for (int i = 0; i < 60; i++) {
                snprintf(key, sizeof(key), "ns/b%03d", i);
                assert_int_equal(index_set(f->ix, key, entry(1)), 0);
                assert_int_equal(index_sync(f->ix, synced, &c), 0);
                run(f, 5 * USEC_PER_MSEC); /* 4 syncs per 20 ms window */
        }
        assert_true(f->sink.writes >= 2);
        assert_true(c.ok >= 1);
        for (int i = 0; i < 100 && c.ok < 60; i++)
                run(f, 10 * USEC_PER_MSEC);
        assert_int_equal(c.ok, 60);
        assert_non_null(strstr(f->sink.last, "ns/b059"));
}

/* After a write that took D, the next starts no sooner than 2 D after it
 * ended, however many syncs wait. */
static void test_writes_are_paced_by_their_duration(void **state) {
        fixture *f = *state;
        counter a = {}, b = {};
        uint64_t started, answered;

        f->sink.async = true; /* each write takes 50 ms */
        index_set(f->ix, "ns/a", entry(1));
        index_sync(f->ix, synced, &a);
        for (int i = 0; i < 500 && a.ok == 0; i++)
                run(f, 5 * USEC_PER_MSEC);
        assert_int_equal(a.ok, 1);
        started = f->sink.started;
        answered = f->sink.answered;
        assert_true(answered - started >= 50 * USEC_PER_MSEC);
        index_set(f->ix, "ns/b", entry(1));
        index_sync(f->ix, synced, &b);
        for (int i = 0; i < 500 && b.ok == 0; i++)
                run(f, 5 * USEC_PER_MSEC);
        assert_int_equal(b.ok, 1);
        assert_int_equal(f->sink.writes, 2);
        assert_true(f->sink.started - answered >= 2 * (answered - started));
}

static void test_failures_reach_every_waiter_and_hold_defers(void **state) {
        fixture *f = *state;
        counter c = {};

        index_set_hold(f->ix, true);
        index_set(f->ix, "ns/a", entry(1));
        index_sync(f->ix, synced, &c);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 0); /* held */
        f->sink.fail_with = -EAGAIN;
        index_set_hold(f->ix, false);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(c.failed, 2);
        assert_int_equal(c.last_r, -EAGAIN);
        /* A failed write is not remembered: the next sync writes again. */
        f->sink.fail_with = 0;
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(c.ok, 1);
        assert_int_equal(f->sink.writes, 2);
}

static void test_load_validates_and_is_not_rewritten(void **state) {
        fixture *f = *state;
        const char *good = "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{\"ns/a\":"
                           "{\"digest\":\"sha256:00\",\"revision\":4}},\"kind\":\"BundleIndex\"}";
        counter c = {};
        err_info e;

        assert_int_equal(index_load(f->ix, "{", 1, &e), -EBADMSG);
        assert_int_equal(index_load(f->ix, "[]", 2, &e), -EBADMSG);
        const char *bad = "{\"kind\":\"BundleIndex\",\"bundles\":{\"x\":{}}}";
        assert_int_equal(index_load(f->ix, bad, strlen(bad), &e), -EBADMSG);
        assert_non_null(strstr(e.message, "'x' has no positive revision"));
        {
                /* A key that would need escaping could inject members when
                 * the document is written again: refused. */
                const char *quoted = "{\"kind\":\"BundleIndex\",\"bundles\":{\"a\\\"b\":"
                                     "{\"revision\":1}}}";

                assert_int_equal(index_load(f->ix, quoted, strlen(quoted), &e), -EBADMSG);
                assert_non_null(strstr(e.message, "is not a namespace/name"));
                assert_int_equal(index_count(f->ix), 0);
        }
        assert_int_equal(index_load(f->ix, good, strlen(good), &e), 0);
        assert_int_equal(index_count(f->ix), 1);
        assert_int_equal(jsonx_get_int(index_get(f->ix, "ns/a"), "revision", 0), 4);
        assert_true(index_contains(f->ix, "ns/a"));
        assert_false(index_contains(f->ix, "ns/b"));
        {
                /* Entries compare by content, whatever the key order. */
                _cleanup_json_ json_object *same = json_tokener_parse(
                                                   "{\"revision\":4,\"digest\":\"sha256:00\"}"),
                                           *newer = json_tokener_parse(
                                                   "{\"revision\":5,\"digest\":\"sha256:00\"}");

                assert_true(index_holds(f->ix, "ns/a", same));
                assert_false(index_holds(f->ix, "ns/a", newer));
                assert_false(index_holds(f->ix, "ns/b", same));
        }
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(c.ok, 1);
        assert_int_equal(f->sink.writes, 0); /* what was loaded is what is there */
}

static void test_texts_are_kept_and_shared(void **state) {
        fixture *f = *state;
        const char *good = "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{\"ns/a\":"
                           "{\"digest\":\"sha256:00\",\"revision\":4}},\"kind\":\"BundleIndex\"}";
        _cleanup_json_ json_object *same_json = json_tokener_parse(
                                           "{\"revision\":4,\"digest\":\"sha256:00\"}"),
                                   *other_json = json_tokener_parse(
                                           "{\"digest\":\"sha256:01\",\"revision\":5}");
        _cleanup_(index_text_unrefp) index_text *same = NULL, *newer = NULL;
        _cleanup_(index_freep) bundle_index *other = NULL;
        counter c = {};
        err_info e;

        assert_int_equal(index_text_new(same_json, &same), 0);
        assert_int_equal(index_text_new(other_json, &newer), 0);
        assert_int_equal(index_load(f->ix, good, strlen(good), &e), 0);
        /* The same text: held in place of the loaded one, and nothing to write. */
        index_share(f->ix, "ns/a", same);
        index_share(f->ix, "ns/b", same);
        index_share(f->ix, "ns/a", newer);
        assert_true(index_is_persisted(f->ix));
        assert_false(index_contains(f->ix, "ns/b"));
        assert_true(index_holds_text(f->ix, "ns/a", same));
        assert_false(index_holds_text(f->ix, "ns/a", newer));
        assert_int_equal(index_set_text(f->ix, "ns/a", same), 0);
        assert_true(index_is_persisted(f->ix));
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 0);
        /* A new text is written; the index holds its own reference. */
        assert_int_equal(index_set_text(f->ix, "ns/a", newer), 0);
        newer = index_text_unref(newer);
        assert_false(index_is_persisted(f->ix));
        assert_int_equal(jsonx_get_int(index_get(f->ix, "ns/a"), "revision", 0), 5);
        index_sync(f->ix, synced, &c);
        run(f, 60 * USEC_PER_MSEC);
        assert_int_equal(f->sink.writes, 1);
        assert_string_equal(f->sink.last, "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundles\":{"
                                          "\"ns/a\":{\"digest\":\"sha256:01\",\"revision\":5}},"
                                          "\"kind\":\"BundleIndex\"}");
        assert_int_equal(c.ok, 2);
        /* A second index holding the first one's text reads the same entry. */
        assert_int_equal(index_new(f->event, sink, &f->sink, 0, &other), 0);
        assert_int_equal(index_set(other, "ns/a", json_object_get(other_json)), 0);
        assert_true(index_holds(other, "ns/a", other_json));
        assert_false(index_holds(other, "ns/a", same_json));
}

/* A typical entry (publish_index_entry()'s fields) is kept deflated, at well
 * under half its text, and every text reads back byte for byte however the
 * document is read. */
static void test_texts_are_deflated(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *doc = NULL, *expect = NULL;
        _cleanup_json_ json_object *tree = json_object_new_object(),
                                   *bundles = json_object_new_object();
        size_t text_len = 0, kept = 0, len;

        assert_non_null(tree);
        assert_non_null(bundles);
        for (int i = 0; i < 300; i++) {
                char key[64], entry[1024], digest[65];
                _cleanup_json_ json_object *v = NULL;
                _cleanup_(index_text_unrefp) index_text *t = NULL;
                _cleanup_free_ char *canon = NULL;
                size_t n;

                /* Digests and uids are what deflate cannot shrink: vary them. */
                for (int k = 0; k < 64; k++)
                        digest[k] = "0123456789abcdef"[(unsigned) (i * 7919 + k * 104729) % 16];
                digest[64] = '\0';
                snprintf(key, sizeof(key), "team-%d/app-%03d", i % 7, i);
                snprintf(entry, sizeof(entry),
                         "{\"configMap\":\"ballast-bundle-team-%d-app-%03d\",\"digest\":\"sha256:%"
                         "s\","
                         "\"key\":\"bundles/team-%d/app-%03d/%s.json\",\"name\":\"app-%03d\","
                         "\"namespace\":\"team-%d\",\"nodeSelector\":{\"matchLabels\":{\"pool\":"
                         "\"p%d\"}},"
                         "\"reload\":null,\"revision\":%d,\"uid\":\"%.8s-%.4s-%.4s-%.4s-%.12s\"}",
                         i % 7, i, digest, i % 7, i, digest, i, i % 7, i % 10, i + 1, digest + 3,
                         digest + 11, digest + 17, digest + 23, digest + 41);
                v = json_tokener_parse(entry);
                assert_non_null(v);
                assert_int_equal(jsonx_to_canonical(v, &canon, &n), 0);
                assert_string_equal(canon, entry); /* written canonical */
                assert_int_equal(index_text_new(v, &t), 0);
                text_len += n;
                kept += index_text_size(t);
                assert_int_equal(index_set_text(f->ix, key, t), 0);
                assert_int_equal(json_object_object_add(bundles, key, json_object_get(v)), 0);
                /* What index_get() returns is the entry. */
                assert_true(json_object_equal(index_get(f->ix, key), v));
        }
        assert_true(kept * 2 < text_len);
        json_object_object_add(tree, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(tree, "bundles", json_object_get(bundles));
        json_object_object_add(tree, "kind", json_object_new_string("BundleIndex"));
        assert_int_equal(jsonx_to_canonical(tree, &expect, NULL), 0);
        assert_int_equal(index_serialize(f->ix, &doc, &len), 0);
        assert_int_equal(len, strlen(expect));
        assert_string_equal(doc, expect);
        assert_int_equal(index_len_estimate(f->ix), len);
}

static void test_load_reads_any_layout(void **state) {
        fixture *f = *state;
        const char *pretty = "{\n  \"kind\": \"BundleIndex\",\n  \"bundles\": {\n    \"ns/a\": "
                             "{ \"revision\": 2, \"digest\": \"sha256:aa\" },\n    \"ns/b\": "
                             "{\"revision\":3}\n  },\n  \"apiVersion\": \"x\"\n}\n";
        const char *bad[] = {
                "{\"kind\":\"BundleIndex\"}",
                "{\"kind\":\"Other\",\"bundles\":{}}",
                "{\"kind\":[\"BundleIndex\"],\"bundles\":{}}",
                "{\"kind\":\"BundleIndex\",\"bundles\":[]}",
                "{\"kind\":\"BundleIndex\",\"bundles\":{\"x\":{\"revision\":1]}}",
                "{\"kind\":\"BundleIndex\",\"bundles\":{},\"apiVersion\":tru}",
        };
        err_info e;

        assert_int_equal(index_load(f->ix, pretty, strlen(pretty), &e), 0);
        assert_int_equal(index_count(f->ix), 2);
        assert_string_equal(jsonx_get_string(index_get(f->ix, "ns/a"), "digest"), "sha256:aa");
        assert_int_equal(jsonx_get_int(index_get(f->ix, "ns/b"), "revision", 0), 3);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(index_load(f->ix, bad[i], strlen(bad[i]), &e), -EBADMSG);
                assert_int_equal(index_count(f->ix), 2); /* a bad document changes nothing */
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_many_syncs_share_one_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_texts_are_kept_and_shared, setup, teardown),
                cmocka_unit_test_setup_teardown(test_texts_are_deflated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_reads_any_layout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_document_is_the_canonical_tree, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_too_large_is_not_serialized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_adopt_counts_as_written_when_too_large, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unchanged_index_is_not_rewritten, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_changes_during_a_write_get_a_second_write,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_steady_syncs_do_not_postpone_writes, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_writes_are_paced_by_their_duration, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_failures_reach_every_waiter_and_hold_defers,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_validates_and_is_not_rewritten, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
