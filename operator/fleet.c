/* SPDX-License-Identifier: Apache-2.0 */

#include <time.h>

#include "backoff.h"
#include "fleet.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"

struct fleet {
        sd_event *event;
        objstore *store;
        bundle_index *index;
        fleet_opts opts;
        bool active, running, has_data;

        json_object *reports; /* status key -> {"etag","updated","facts"} */
        json_object *agg;     /* "NS/NAME" -> {"matched":n,"applied":{D:n},"failed":{D:n}} */
        json_object *first_unreferenced; /* manifest key -> monotonic usec first seen so */
        json_object *referenced;         /* digest -> true, from fresh and stale reports */

        /* the pass in progress */
        objstore_entry *listed;
        size_t n_listed, n_alloc, next_fetch;
        unsigned inflight;
        objstore_op *list_op;
        struct fetch **fetches; /* [concurrency]: the report GETs in flight */
        json_object *gc_candidates;
        size_t gc_next;
        objstore_op *gc_op;

        sd_event_source *timer;
        fleet_stats stats;
};

static int64_t parse_time(const char *s) {
        struct tm tm = {};
        const char *end;

        if (!s)
                return -1;
        end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
                return -1;
        if (*end == '.')
                for (end++; *end >= '0' && *end <= '9'; end++)
                        ;
        if (!streq(end, "Z"))
                return -1;
        return (int64_t) timegm(&tm);
}

static const char *digest_of(json_object *o, const char *field) {
        const char *d = jsonx_get_string(jsonx_get(o, field), "digest");

        return bundle_is_digest(d) ? d : NULL;
}

int fleet_parse_report(const char *data, size_t len, json_object **ret, int64_t *ret_updated,
                       err_info *ret_err) {
        _cleanup_json_ json_object *doc = NULL, *facts = NULL;
        json_object *bundles;
        int64_t updated;
        int r;

        r = jsonx_parse(data, len, &doc, ret_err);
        if (r < 0)
                return r;
        if (!json_object_is_type(doc, json_type_object) ||
            !streq(strempty(jsonx_get_string(doc, "kind")), BUNDLE_KIND_NODE_STATUS))
                return err_info_set(ret_err, -EBADMSG,
                                    "not a " BUNDLE_KIND_NODE_STATUS " document");
        updated = parse_time(jsonx_get_string(doc, "updated"));
        if (updated < 0)
                return err_info_set(ret_err, -EBADMSG, "'updated' is not an RFC 3339 UTC time");
        bundles = jsonx_get(doc, "bundles");
        if (bundles && !json_object_is_type(bundles, json_type_object))
                return err_info_set(ret_err, -EBADMSG, "'bundles' must be a map");
        facts = json_object_new_object();
        if (!facts)
                return -ENOMEM;
        if (bundles) {
                json_object_object_foreach(bundles, key, b) {
                        json_object *f, *failed, *list;
                        const char *d;

                        if (!strchr(key, '/') || !json_object_is_type(b, json_type_object))
                                return err_info_set(
                                        ret_err, -EBADMSG,
                                        "bundle '%s': needs a NS/NAME key and an object", key);
                        f = json_object_new_object();
                        list = json_object_new_array();
                        if (!f || !list) {
                                json_object_put(f);
                                json_object_put(list);
                                return -ENOMEM;
                        }
                        json_object_object_add(
                                f, "matched",
                                json_object_new_boolean(jsonx_get_bool(b, "matched", false)));
                        if ((d = digest_of(b, "applied")))
                                json_object_object_add(f, "applied", json_object_new_string(d));
                        if ((d = digest_of(b, "lastKnownGood")))
                                json_object_object_add(f, "lkg", json_object_new_string(d));
                        failed = jsonx_get(b, "failed");
                        for (size_t i = 0; failed && json_object_is_type(failed, json_type_array) &&
                                           i < json_object_array_length(failed);
                             i++) {
                                const char *fd = jsonx_get_string(
                                        json_object_array_get_idx(failed, i), "digest");
                                if (bundle_is_digest(fd))
                                        json_object_array_add(list, json_object_new_string(fd));
                        }
                        json_object_object_add(f, "failed", list);
                        json_object_object_add(facts, key, f);
                }
        }
        *ret = TAKE_PTR(facts);
        if (ret_updated)
                *ret_updated = updated;
        return 0;
}

static void add_count(json_object *o, const char *field, const char *digest) {
        json_object *m = json_object_object_get(o, field), *n;

        if (!m) {
                m = json_object_new_object();
                json_object_object_add(o, field, m);
        }
        n = json_object_object_get(m, digest);
        json_object_object_add(m, digest,
                               json_object_new_int64(n ? json_object_get_int64(n) + 1 : 1));
}

/* Recomputes the aggregate from the cached reports and reports changed keys. */
static void aggregate(fleet *f) {
        _cleanup_json_ json_object *agg = json_object_new_object();
        int64_t now = (int64_t) time(NULL);
        unsigned fresh = 0;

        if (!agg)
                return;
        json_object_object_foreach(f->reports, rkey, rep) {
                if (now - jsonx_get_int(rep, "updated", 0) >
                    (int64_t) (f->opts.stale_after_usec / USEC_PER_SEC))
                        continue; /* a node that stopped reporting (gone, or cut off) */
                fresh++;
                json_object_object_foreach(json_object_object_get(rep, "facts"), key, facts) {
                        json_object *a = json_object_object_get(agg, key), *failed;
                        const char *d;

                        if (!a) {
                                a = json_object_new_object();
                                json_object_object_add(a, "matched", json_object_new_int64(0));
                                json_object_object_add(agg, key, a);
                        }
                        if (jsonx_get_bool(facts, "matched", false))
                                json_object_object_add(
                                        a, "matched",
                                        json_object_new_int64(jsonx_get_int(a, "matched", 0) + 1));
                        if ((d = jsonx_get_string(facts, "applied")))
                                add_count(a, "applied", d);
                        failed = json_object_object_get(facts, "failed");
                        for (size_t i = 0; failed && i < json_object_array_length(failed); i++)
                                add_count(a, "failed",
                                          json_object_get_string(
                                                  json_object_array_get_idx(failed, i)));
                }
        }
        (void) rkey;
        f->stats.nodes = fresh;
        if (f->opts.changed) {
                json_object_object_foreach(agg, key, a) {
                        json_object *old = json_object_object_get(f->agg, key);
                        if (!old || !json_object_equal(old, a))
                                f->opts.changed(f, key, f->opts.userdata);
                }
                json_object_object_foreach(f->agg, okey, o) {
                        (void) o;
                        if (!json_object_object_get(agg, okey))
                                f->opts.changed(f, okey, f->opts.userdata);
                }
        }
        json_object_put(f->agg);
        f->agg = TAKE_PTR(agg);
        f->has_data = true;
}

void fleet_counts(const fleet *f, const char *key, const char *digest, int64_t *ret_matched,
                  int64_t *ret_applied, int64_t *ret_failed) {
        json_object *a = f->agg ? json_object_object_get(f->agg, key) : NULL;

        *ret_matched = jsonx_get_int(a, "matched", 0);
        *ret_applied = digest ? jsonx_get_int(json_object_object_get(a, "applied"), digest, 0) : 0;
        *ret_failed = digest ? jsonx_get_int(json_object_object_get(a, "failed"), digest, 0) : 0;
}

/* ---- the pass ---------------------------------------------------------------- */

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void schedule(fleet *f, bool splay) {
        uint64_t i = f->opts.interval_usec;
        uint64_t d = splay ? random_u64_below(i) : i - i / 5 + random_u64_below(2 * i / 5);

        if (f->active)
                (void) loop_timer_arm(f->event, &f->timer, d, on_timer, f);
}

static void pass_end(fleet *f, int r, const char *what, const err_info *err) {
        objstore_entries_free(f->listed, f->n_listed);
        f->listed = NULL;
        f->n_listed = f->n_alloc = f->next_fetch = 0;
        f->gc_candidates = NULL;
        f->running = false;
        if (r < 0)
                log_warning_errno(r, "Fleet pass: %s: %s", what, err ? err->message : "");
        schedule(f, false);
}

/* Every digest any report names, fresh or stale: a node that stopped
 * reporting may still hold it, so its manifest stays. */
static void collect_references(fleet *f) {
        json_object *refs = json_object_new_object();

        if (!refs)
                return;
        json_object_object_foreach(f->reports, rkey, rep) {
                (void) rkey;
                json_object_object_foreach(json_object_object_get(rep, "facts"), key, facts) {
                        json_object *failed = json_object_object_get(facts, "failed");
                        const char *d;

                        (void) key;
                        if ((d = jsonx_get_string(facts, "applied")))
                                json_object_object_add(refs, d, NULL);
                        if ((d = jsonx_get_string(facts, "lkg")))
                                json_object_object_add(refs, d, NULL);
                        for (size_t i = 0; failed && i < json_object_array_length(failed); i++)
                                json_object_object_add(
                                        refs,
                                        json_object_get_string(
                                                json_object_array_get_idx(failed, i)),
                                        NULL);
                }
        }
        json_object_put(f->referenced);
        f->referenced = refs;
}

static void gc_next(fleet *f);

static void on_gc_deleted(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                          void *userdata) {
        fleet *f = userdata;

        f->gc_op = NULL;
        if (r >= 0)
                f->stats.gc_deletes++;
        else
                log_warning_errno(r, "Failed to delete a superseded manifest: %s",
                                  err ? err->message : "");
        gc_next(f);
}

static void gc_next(fleet *f) {
        json_object *cands = f->gc_candidates;

        while (cands && f->gc_next < json_object_array_length(cands)) {
                const char *key =
                        json_object_get_string(json_object_array_get_idx(cands, f->gc_next++));

                if (objstore_delete(f->store, key, on_gc_deleted, f, &f->gc_op) >= 0) {
                        log_info("Deleting superseded manifest %s", key);
                        json_object_object_del(f->first_unreferenced, key);
                        return;
                }
        }
        json_object_put(cands);
        pass_end(f, 0, NULL, NULL);
}

/* A manifest's key (bundle_object_key()) -> is it current or referenced? */
static bool manifest_in_use(fleet *f, const char *key) {
        _cleanup_free_ char *bundle = NULL;
        char digest[BUNDLE_DIGEST_SIZE];
        json_object *entry;

        if (bundle_parse_object_key(key, &bundle, digest) < 0)
                return true; /* not ours to judge (or out of memory: keep it) */
        entry = f->index ? index_get(f->index, bundle) : NULL;
        if (entry && streq(strempty(jsonx_get_string(entry, "digest")), digest))
                return true;
        return !f->referenced || json_object_object_get_ex(f->referenced, digest, NULL);
}

static int on_gc_page(objstore_op *op, objstore_entry *entries, size_t n, void *userdata) {
        fleet *f = userdata;
        uint64_t now = loop_now(f->event);

        for (size_t i = 0; i < n; i++) {
                json_object *first;

                if (manifest_in_use(f, entries[i].key)) {
                        json_object_object_del(f->first_unreferenced, entries[i].key);
                        continue;
                }
                first = json_object_object_get(f->first_unreferenced, entries[i].key);
                if (!first) {
                        json_object_object_add(f->first_unreferenced, entries[i].key,
                                               json_object_new_int64((int64_t) now));
                        continue;
                }
                if (now - (uint64_t) json_object_get_int64(first) >= f->opts.retention_usec)
                        json_object_array_add(f->gc_candidates,
                                              json_object_new_string(entries[i].key));
        }
        return 0;
}

static void on_gc_listed(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                         void *userdata) {
        fleet *f = userdata;

        f->gc_op = NULL;
        if (r < 0) {
                json_object_put(TAKE_PTR(f->gc_candidates));
                pass_end(f, r, "listing manifests", err);
                return;
        }
        f->gc_next = 0;
        gc_next(f);
}

static void pass_gc(fleet *f) {
        int r;

        /* Never judge manifests against an index we have not read. */
        if (!f->opts.gc || !f->index) {
                pass_end(f, 0, NULL, NULL);
                return;
        }
        f->gc_candidates = json_object_new_array();
        r = objstore_list(f->store, BUNDLE_MANIFESTS_PREFIX, 1000, on_gc_page, on_gc_listed, f,
                          &f->gc_op);
        if (r < 0) {
                json_object_put(TAKE_PTR(f->gc_candidates));
                pass_end(f, r, "listing manifests", NULL);
        }
}

static void fetch_more(fleet *f);

typedef struct fetch {
        fleet *f;
        unsigned slot;
        char *key;
        char *etag;
        objstore_op *op;
} fetch;

static void fetch_free(fetch *ft) {
        if (!ft)
                return;
        objstore_op_cancel(ft->op);
        free(ft->key);
        free(ft->etag);
        free(ft);
}

static void on_fetched(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                       void *userdata) {
        fetch *ft = userdata;
        fleet *f = ft->f;
        _cleanup_json_ json_object *facts = NULL;
        int64_t updated = 0;
        err_info e;

        ft->op = NULL;
        f->fetches[ft->slot] = NULL;
        f->inflight--;
        f->stats.reads++;
        if (r >= 0) {
                err_info_clear(&e);
                r = fleet_parse_report(obj->data, obj->size, &facts, &updated, &e);
                if (r < 0) {
                        f->stats.bad_reports++;
                        log_warning("Ignoring agent report %s: %s", ft->key, e.message);
                        json_object_object_del(f->reports, ft->key);
                } else {
                        json_object *rep = json_object_new_object();

                        json_object_object_add(
                                rep, "etag",
                                json_object_new_string(strempty(obj->etag ?: ft->etag)));
                        json_object_object_add(rep, "updated", json_object_new_int64(updated));
                        json_object_object_add(rep, "facts", TAKE_PTR(facts));
                        json_object_object_add(f->reports, ft->key, rep);
                }
        } else if (r != -ENOENT)
                log_debug_errno(r, "Failed to read %s: %s", ft->key, err ? err->message : "");
        fetch_free(ft);
        fetch_more(f);
}

static void fetch_more(fleet *f) {
        while (f->next_fetch < f->n_listed && f->inflight < f->opts.concurrency) {
                objstore_entry *en = &f->listed[f->next_fetch++];
                json_object *cached = json_object_object_get(f->reports, en->key);
                fetch *ft;
                unsigned slot;

                if (cached && en->etag &&
                    streq(strempty(jsonx_get_string(cached, "etag")), en->etag)) {
                        f->stats.unchanged++;
                        continue;
                }
                for (slot = 0; f->fetches[slot]; slot++)
                        ;
                ft = calloc(1, sizeof(*ft));
                if (!ft || !(ft->key = strdup(en->key))) {
                        free(ft);
                        continue;
                }
                ft->f = f;
                ft->slot = slot;
                ft->etag = en->etag ? strdup(en->etag) : NULL;
                if (objstore_get(f->store, en->key, NULL, on_fetched, ft, &ft->op) < 0) {
                        fetch_free(ft);
                        continue;
                }
                f->fetches[slot] = ft;
                f->inflight++;
        }
        if (f->inflight > 0 || f->next_fetch < f->n_listed)
                return;

        /* Every report read: drop the nodes that are gone, aggregate, then GC. */
        {
                _cleanup_json_ json_object *listed = json_object_new_object();

                for (size_t i = 0; listed && i < f->n_listed; i++)
                        json_object_object_add(listed, f->listed[i].key, NULL);
                json_object_object_foreach(f->reports, rkey, rep) {
                        (void) rep;
                        if (listed && !json_object_object_get_ex(listed, rkey, NULL))
                                json_object_object_del(f->reports, rkey);
                }
        }
        aggregate(f);
        collect_references(f);
        f->stats.passes++;
        pass_gc(f);
}

static int on_status_page(objstore_op *op, objstore_entry *entries, size_t n, void *userdata) {
        fleet *f = userdata;

        if (f->n_listed + n > f->n_alloc) {
                size_t na = MAX(f->n_alloc * 2, f->n_listed + n);
                objstore_entry *p = realloc(f->listed, na * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                f->listed = p;
                f->n_alloc = na;
        }
        for (size_t i = 0; i < n; i++) {
                /* Take the strings; the page's array is freed by the store. */
                f->listed[f->n_listed++] = (objstore_entry){.key = TAKE_PTR(entries[i].key),
                                                            .size = entries[i].size,
                                                            .etag = TAKE_PTR(entries[i].etag)};
        }
        return 0;
}

static void on_status_listed(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                             void *userdata) {
        fleet *f = userdata;

        f->list_op = NULL;
        f->stats.lists++;
        if (r < 0) {
                pass_end(f, r, "listing agent reports", err);
                return;
        }
        fetch_more(f);
}

int fleet_run_now(fleet *f) {
        int r;

        if (f->running)
                return 0;
        f->running = true;
        r = objstore_list(f->store, BUNDLE_STATUS_PREFIX, 1000, on_status_page, on_status_listed, f,
                          &f->list_op);
        if (r < 0)
                pass_end(f, r, "listing agent reports", NULL);
        return r;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        fleet *f = userdata;

        if (f->active)
                (void) fleet_run_now(f);
        return 0;
}

int fleet_new(sd_event *e, objstore *store, bundle_index *index, const fleet_opts *o, fleet **ret) {
        fleet *f;

        if (!e || !store || !o || !ret)
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->event = sd_event_ref(e);
        f->store = store;
        f->index = index;
        f->opts = *o;
        if (!f->opts.interval_usec)
                f->opts.interval_usec = 30 * USEC_PER_SEC;
        if (!f->opts.stale_after_usec)
                f->opts.stale_after_usec = 30 * 60 * USEC_PER_SEC;
        if (!f->opts.retention_usec)
                f->opts.retention_usec = 24 * 3600 * USEC_PER_SEC;
        if (!f->opts.concurrency)
                f->opts.concurrency = 8;
        f->reports = json_object_new_object();
        f->agg = json_object_new_object();
        f->first_unreferenced = json_object_new_object();
        f->fetches = calloc(f->opts.concurrency, sizeof(*f->fetches));
        if (!f->reports || !f->agg || !f->first_unreferenced || !f->fetches) {
                fleet_free(f);
                return -ENOMEM;
        }
        *ret = f;
        return 0;
}

fleet *fleet_free(fleet *f) {
        if (!f)
                return NULL;
        objstore_op_cancel(f->list_op);
        objstore_op_cancel(f->gc_op);
        for (unsigned i = 0; f->fetches && i < f->opts.concurrency; i++)
                fetch_free(f->fetches[i]);
        free(f->fetches);
        objstore_entries_free(f->listed, f->n_listed);
        json_object_put(f->gc_candidates);
        json_object_put(f->reports);
        json_object_put(f->agg);
        json_object_put(f->first_unreferenced);
        json_object_put(f->referenced);
        sd_event_source_disable_unref(f->timer);
        sd_event_unref(f->event);
        free(f);
        return NULL;
}

void fleet_set_active(fleet *f, bool active) {
        if (f->active == active)
                return;
        f->active = active;
        if (active)
                schedule(f, true);
        else
                loop_timer_disarm(f->timer);
}

bool fleet_has_data(const fleet *f) {
        return f->has_data;
}

void fleet_get_stats(const fleet *f, fleet_stats *ret) {
        *ret = f->stats;
}
