/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A bundle index: the list of every published bundle with its revision,
 * digest, object key, node selector and reload name, written as one
 * canonical JSON document (docs/wire-format.md):
 *
 *   {"apiVersion":"ballast.dev/v1alpha1","kind":"BundleIndex",
 *    "bundles":{"NS/NAME":{"configMap":...,"digest":"sha256:...","key":...,
 *                          "name":...,"namespace":...,"nodeSelector":{...},
 *                          "reload":...,"revision":N,"uid":...}}}
 *
 * The operator keeps one for the object store (index.json) and one for the
 * index ConfigMap. Changes are coalesced: index_sync() asks for a write that
 * contains everything set so far, and many reconciles share one write, so
 * publishing 10,000 bundles costs a few hundred index writes, not 10,000. A
 * write starts at most coalesce_usec after the first sync it answers, and no
 * sooner than twice the last write's duration after that one ended: a slow
 * target, or a large index, is written less often. A write whose bytes
 * equal the last one written is skipped.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "err.h"
#include "macro.h"

typedef struct bundle_index bundle_index;

/* One entry's canonical text, kept deflated (~110 bytes instead of ~385 for
 * a typical entry) and reference-counted, so that both indexes hold the same
 * one. Equal entries have equal texts, and texts compare without inflating. */
typedef struct index_text index_text;

int index_text_new(json_object *entry, index_text **ret); /* @entry borrowed */
index_text *index_text_ref(index_text *t);
index_text *index_text_unref(index_text *t); /* NULL is allowed */
DEFINE_TRIVIAL_CLEANUP_FUNC(index_text *, index_text_unref);
size_t index_text_size(const index_text *t); /* bytes it holds */

/* Completion of a sink write: r = 0 or a negative errno, @err borrowed. */
typedef void (*index_sink_done_fn)(bundle_index *ix, int r, const err_info *err);

/* The document of one write: a frozen view of the entries, whose texts are
 * shared with the index rather than copied, so writing an index of 10,000
 * bundles (~4 MB) never holds the document in memory. */
typedef struct index_doc index_doc;

/* Reads the document: http_body_fn's shape (lib/http.h), @userdata the doc.
 * Reads go forward from offset 0 and may start over at 0. */
ssize_t index_doc_read(void *buf, size_t len, uint64_t offset, void *userdata);
/* Its sha256 (32 bytes) and MD5 (16 bytes), as read before the sink was
 * called, so that the sink needn't read it again for its checksums; either
 * may be NULL (MD5 unavailable). Valid as long as @doc. */
void index_doc_digests(const index_doc *doc, const unsigned char **ret_sha256,
                       const unsigned char **ret_md5);
/* The whole document as one string (for a small target). */
int index_doc_text(index_doc *doc, char **ret, size_t *ret_len);

/* Writes the @len bytes of @doc (borrowed until @done is called) and calls
 * @done exactly once, asynchronously. Returns < 0 if it could not start (then
 * @done is not called). @doc is NULL when the document would pass the
 * index's maximum length (index_set_max_len()): the sink then writes what it
 * writes instead (a summary), and @len is an estimate of the full size. */
typedef int (*index_sink_fn)(bundle_index *ix, index_doc *doc, size_t len, index_sink_done_fn done,
                             void *userdata);

/* Called when a write that includes the state at the time of index_sync()
 * finished (r = 0) or failed (r < 0, @err says why). */
typedef void (*index_synced_fn)(int r, const err_info *err, void *userdata);

int index_new(sd_event *e, index_sink_fn sink, void *sink_userdata, uint64_t coalesce_usec,
              bundle_index **ret);
/* Past @max_len bytes (0: no limit) the document is not even serialized:
 * see index_sink_fn. The length is an estimate kept as entries change, so
 * deciding costs nothing; rewriting a summary is skipped while the number of
 * entries stays the same. */
void index_set_max_len(bundle_index *ix, size_t max_len);
size_t index_len_estimate(const bundle_index *ix);
bool index_too_large(const bundle_index *ix);

/* Fails pending syncs with -ECANCELED. NULL is allowed. */
bundle_index *index_free(bundle_index *ix);
DEFINE_TRIVIAL_CLEANUP_FUNC(bundle_index *, index_free);

/* Replaces the entries with those of a previously written index document
 * (@data, untrusted). -EBADMSG with a message on a malformed document. */
int index_load(bundle_index *ix, const char *data, size_t len, err_info *ret_err);

/* Sets the entry for "NS/NAME" (takes ownership of @entry), stored as its
 * canonical text. */
int index_set(bundle_index *ix, const char *key, json_object *entry);
/* The same with a text (borrowed: the index takes its own reference), so
 * that two indexes can share one. */
int index_set_text(bundle_index *ix, const char *key, index_text *text);

/* For an index whose target holds only a summary, of @written_count entries:
 * takes the entries of @from (shared, not copied), as if read from the
 * target, so that rebuilding it after a restart doesn't rewrite the summary
 * once per entry added. They count as written if they are still too many for
 * the target (index_too_large()) and as many as the summary says; otherwise
 * the next sync writes. */
int index_adopt(bundle_index *ix, bundle_index *from, size_t written_count);

/* If the entry for @key has the text @text, holds @text in its place:
 * nothing changes but the memory, which two indexes then share. */
void index_share(bundle_index *ix, const char *key, index_text *text);
void index_remove(bundle_index *ix, const char *key);

/* The entry for "NS/NAME", parsed, or NULL. Entries are kept as canonical
 * text, so this is a copy: borrowed, valid until the next index_get() on
 * @ix. */
json_object *index_get(bundle_index *ix, const char *key);
bool index_contains(bundle_index *ix, const char *key);
/* True if the entry for @key equals @entry (borrowed). */
bool index_holds(bundle_index *ix, const char *key, json_object *entry);
bool index_holds_text(bundle_index *ix, const char *key, const index_text *text);
size_t index_count(const bundle_index *ix);

/* Calls @fn for each key until it returns non-zero; @fn must not change
 * the index. */
int index_foreach_key(bundle_index *ix, int (*fn)(const char *key, void *userdata), void *userdata);

/* Asks for a write including the current state; @done is called later (never
 * from inside this call). While writes are held (index_set_hold()), syncs
 * wait. */
int index_sync(bundle_index *ix, index_synced_fn done, void *userdata);

/* Holds writes back (true) until the index has been loaded from its target,
 * so a restarted operator never overwrites entries it has not read yet. */
void index_set_hold(bundle_index *ix, bool hold);

/* Serializes the index canonically (for tests and the sinks). */
int index_serialize(bundle_index *ix, char **ret, size_t *ret_len);

uint64_t index_writes(const bundle_index *ix); /* sink writes started */

/* True when the target holds exactly the current entries: nothing changed
 * since the last successful write (or load) and no write is in flight. A
 * reconcile whose entry is unchanged then needs no sync at all. */
bool index_is_persisted(const bundle_index *ix);
