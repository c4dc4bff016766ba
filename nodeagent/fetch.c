/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's remote sources: kube watches and the object-store poller.
 * See fetch.h.
 */

#include <inttypes.h>
#include <time.h>

#include "fetch.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "parse.h"

typedef struct manifest_req manifest_req;
struct manifest_req {
        fetch *f;
        manifest_req *next;
        char *object_key;
        char digest[BUNDLE_DIGEST_SIZE];
        objstore_op *op;
};

struct fetch {
        sd_event *event;
        engine *engine;
        cache *cache;
        kube_client *kube;
        objstore *store;
        char *namespace, *node_name;
        uint64_t interval;
        uint64_t api_resume_window;
        bool no_jitter;
        json_object *static_labels;
        uint64_t started_mono;

        /* kube */
        kube_watch *cm_watch, *node_watch;
        sd_event_source *rebuild_defer;
        sd_event_source *persist_timer;
        char *persisted_view; /* last kube view written to the cache */
        json_object *labels;  /* last labels from the Node */
        bool kube_error_logged;
        int64_t kube_last_success;

        /* store */
        sd_event_source *poll_timer;
        objstore_op *poll_op;
        char *etag;
        uint64_t slot_start;
        backoff poll_backoff;
        bool store_up;
        int64_t store_last_success;
        unsigned store_failures;

        /* manifests: in flight, and waiting for a slot (FIFO) */
        manifest_req *inflight, *queue_head, *queue_tail;
        unsigned n_inflight;
        sd_event_source *pump_defer;

        fetch_stats stats;
        metric *m_up, *m_last_success, *m_polls, *m_manifests, *m_config_age, *m_bad_index;
};

/* ---- pure pieces ---------------------------------------------------------------- */

uint64_t fetch_first_poll_delay(uint64_t interval, bool jitter) {
        return jitter ? random_u64_below(interval) : 0;
}

uint64_t fetch_next_poll_delay(uint64_t *slot_start, uint64_t now, uint64_t interval, bool jitter) {
        uint64_t next = *slot_start + interval, at;

        /* A slot that is already over (a slow poll, a recovery): start anew. */
        if (next + interval <= now || next < *slot_start)
                next = now;
        *slot_start = next;
        at = next + (jitter ? random_u64_below(interval - (interval > 0)) : 0);
        return at > now ? at - now : 0;
}

uint64_t fetch_error_delay(backoff *b, uint64_t now, long retry_after_sec) {
        uint64_t d = backoff_next(b, now);

        if (retry_after_sec > 0) {
                uint64_t ra = (uint64_t) MIN(retry_after_sec, (long) FETCH_RETRY_AFTER_MAX) *
                              USEC_PER_SEC;
                d = MAX(d, ra);
        }
        return d;
}

uint64_t fetch_retry_cap(uint64_t interval) {
        uint64_t cap = interval > UINT64_MAX / 2 ? UINT64_MAX : interval * 2;

        return MIN(MAX(cap, FETCH_RETRY_CAP_MIN_USEC), FETCH_RETRY_CAP_MAX_USEC);
}

int fetch_parse_index(const char *data, size_t len, json_object **ret, err_info *ret_err) {
        _cleanup_json_ json_object *doc = NULL;
        json_object *bundles;
        int r;

        r = jsonx_parse(data, len, &doc, ret_err);
        if (r < 0)
                return r;
        if (!json_object_is_type(doc, json_type_object) ||
            !streq(strempty(jsonx_get_string(doc, "kind")), BUNDLE_KIND_INDEX))
                return err_info_set(ret_err, -EBADMSG,
                                    "the index is not a " BUNDLE_KIND_INDEX " document");
        if (!json_object_object_get_ex(doc, "bundles", &bundles) ||
            !json_object_is_type(bundles, json_type_object))
                return err_info_set(ret_err, -EBADMSG, "the index has no 'bundles' map");
        *ret = json_object_get(bundles);
        return 0;
}

static void add_str(json_object *o, const char *k, const char *v) {
        if (v)
                json_object_object_add(o, k, json_object_new_string(v));
}

/* Annotation names contain dots: no dotted-path lookups here. */
static const char *ann_get(json_object *ann, const char *name) {
        json_object *v;

        return ann && json_object_object_get_ex(ann, name, &v) &&
                               json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : NULL;
}

int fetch_configmap_entry(json_object *cm, char **ret_key, json_object **ret_entry,
                          err_info *ret_err) {
        _cleanup_json_ json_object *entry = NULL;
        json_object *ann = jsonx_get(cm, "metadata.annotations"), *data;
        const char *bundle, *rev, *sel, *slash, *mode;
        _cleanup_free_ char *ns = NULL, *key = NULL;
        uint64_t revision;

        bundle = ann_get(ann, BUNDLE_ANN_BUNDLE);
        if (!bundle || !(slash = strchr(bundle, '/')) || slash == bundle || !slash[1])
                return err_info_set(ret_err, -EINVAL, "no valid %s annotation", BUNDLE_ANN_BUNDLE);
        ns = strndup(bundle, (size_t) (slash - bundle));
        key = strdup(bundle);
        entry = json_object_new_object();
        if (!ns || !key || !entry)
                return -ENOMEM;
        add_str(entry, "namespace", ns);
        add_str(entry, "name", slash + 1);
        add_str(entry, "uid", ann_get(ann, BUNDLE_ANN_UID));
        rev = ann_get(ann, BUNDLE_ANN_REVISION);
        if (rev && parse_uint(rev, 1, INT64_MAX, &revision) >= 0)
                json_object_object_add(entry, "revision",
                                       json_object_new_int64((int64_t) revision));
        add_str(entry, "digest", ann_get(ann, BUNDLE_ANN_DIGEST));
        add_str(entry, "key", ann_get(ann, BUNDLE_ANN_OBJECT_KEY));
        add_str(entry, "reload", ann_get(ann, BUNDLE_ANN_RELOAD));
        sel = ann_get(ann, BUNDLE_ANN_NODE_SELECTOR);
        if (sel) {
                json_object *s = NULL;
                /* Unparsable: keep the string, which the selector code
                 * refuses, so the bundle is neither applied nor removed. */
                if (jsonx_parse(sel, strlen(sel), &s, NULL) < 0)
                        s = json_object_new_string(sel);
                json_object_object_add(entry, "nodeSelector", s);
        }
        mode = ann_get(ann, BUNDLE_ANN_MANIFEST);
        if (!mode || !streq(mode, BUNDLE_MANIFEST_IN_STORE)) {
                data = jsonx_get(cm, "data");
                if (data && json_object_object_get_ex(data, BUNDLE_MANIFEST_DATA_KEY, &data) &&
                    json_object_is_type(data, json_type_string))
                        /* Shares the string with the watch's store: no copy. */
                        json_object_object_add(entry, "manifest", json_object_get(data));
        }
        *ret_key = TAKE_PTR(key);
        *ret_entry = TAKE_PTR(entry);
        return 0;
}

/* ---- kube --------------------------------------------------------------------------- */

static int64_t now_unix(void) {
        return (int64_t) time(NULL);
}

/* The view without inline manifests, canonical: what is saved. */
static char *view_to_saved(json_object *view) {
        _cleanup_json_ json_object *copy = NULL;
        char *text = NULL;
        size_t len;

        copy = json_object_new_object();
        if (!copy)
                return NULL;
        json_object_object_foreach(view, key, entry) {
                json_object *e = json_object_new_object();
                if (!e)
                        return NULL;
                json_object_object_foreach(entry, k, v) {
                        if (!streq(k, "manifest"))
                                json_object_object_add(e, k, json_object_get(v));
                }
                json_object_object_add(copy, key, e);
        }
        if (jsonx_to_canonical(copy, &text, &len) < 0)
                return NULL;
        return text;
}

static int on_persist(sd_event_source *s, uint64_t usec, void *userdata) {
        fetch *f = userdata;
        json_object *view = engine_get_view(f->engine, ENGINE_SOURCE_KUBE);
        _cleanup_free_ char *text = NULL;
        err_info err;
        int r;

        if (!view)
                return 0;
        text = view_to_saved(view);
        if (!text)
                return 0;
        if (f->persisted_view && streq(f->persisted_view, text))
                return 0;
        err_info_clear(&err);
        r = cache_save_source(f->cache, FETCH_SOURCE_KUBE_VIEW, text, strlen(text), &err);
        if (r < 0) {
                log_warning_errno(r, "Cannot save the API server's view in the cache: %s",
                                  err.message);
                return 0;
        }
        free(f->persisted_view);
        f->persisted_view = TAKE_PTR(text);
        return 0;
}

static int build_entry(const char *key, json_object *cm, void *userdata) {
        json_object *view = userdata, *entry = NULL;
        _cleanup_free_ char *bkey = NULL;
        err_info err;

        err_info_clear(&err);
        if (fetch_configmap_entry(cm, &bkey, &entry, &err) < 0) {
                log_warning("ConfigMap %s: %s; ignored", key, err.message);
                return 0;
        }
        json_object_object_add(view, bkey, entry);
        return 0;
}

static int on_rebuild(sd_event_source *s, void *userdata) {
        fetch *f = userdata;
        _cleanup_json_ json_object *view = NULL;

        if (!f->cm_watch || !kube_watch_is_synced(f->cm_watch))
                return 0;
        view = json_object_new_object();
        if (!view)
                return log_oom(), 0;
        (void) kube_store_foreach(kube_watch_get_store(f->cm_watch), build_entry, view);
        f->stats.kube_views++;
        (void) engine_set_view(f->engine, ENGINE_SOURCE_KUBE, view);
        (void) loop_timer_arm(f->event, &f->persist_timer, FETCH_PERSIST_DELAY_USEC, on_persist, f);
        return 0;
}

static void rebuild_later(fetch *f) {
        (void) sd_event_source_set_enabled(f->rebuild_defer, SD_EVENT_ONESHOT);
}

static void cm_changed(kube_watch *w, json_object *obj, void *userdata) {
        rebuild_later(userdata);
}

static void cm_updated(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata) {
        rebuild_later(userdata);
}

static void cm_synced(kube_watch *w, void *userdata) {
        fetch *f = userdata;

        log_info("Watching bundle ConfigMaps in %s (%zu)", f->namespace,
                 kube_store_count(kube_watch_get_store(w)));
        rebuild_later(f);
}

static void kube_error(kube_watch *w, int r, const err_info *err, void *userdata) {
        fetch *f = userdata;

        /* The watch retries by itself; log the first of a series only. */
        if (!f->kube_error_logged)
                log_warning_errno(r, "API server watch failed (it retries by itself): %s",
                                  err && err->message[0] ? err->message : err_name(r));
        f->kube_error_logged = true;
}

static void node_labels(fetch *f, json_object *node) {
        json_object *labels = jsonx_get(node, "metadata.labels");
        _cleanup_json_ json_object *empty = NULL;
        err_info err;
        int r;

        if (!labels || !json_object_is_type(labels, json_type_object)) {
                empty = json_object_new_object();
                labels = empty;
        }
        if (!labels)
                return;
        if (f->labels && json_object_equal(f->labels, labels))
                return;
        json_object_put(f->labels);
        f->labels = NULL;
        if (jsonx_deep_copy(labels, &f->labels) < 0)
                return;
        (void) engine_set_labels(f->engine, f->labels);
        err_info_clear(&err);
        r = cache_save_node_labels(f->cache, f->labels, &err);
        if (r < 0)
                log_warning_errno(r, "Cannot save the node's labels in the cache: %s", err.message);
        log_info("Node %s labels: %s", f->node_name,
                 json_object_to_json_string_ext(f->labels, JSON_C_TO_STRING_PLAIN));
}

static void node_added(kube_watch *w, json_object *obj, void *userdata) {
        node_labels(userdata, obj);
}

static void node_updated(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata) {
        node_labels(userdata, obj);
}

static void node_deleted(kube_watch *w, json_object *obj, void *userdata) {
        fetch *f = userdata;

        /* Keep the last labels: a deleted Node is an administrator's business,
         * not a reason to strip the node's configuration. */
        log_warning("Node %s was deleted from the API server; keeping its last labels",
                    f->node_name);
}

/* ---- store: manifests --------------------------------------------------------------- */

static void req_start(fetch *f, manifest_req *q);

static void req_free(manifest_req *q) {
        if (!q)
                return;
        objstore_op_cancel(q->op);
        free(q->object_key);
        free(q);
}

static void req_pump(fetch *f) {
        while (f->n_inflight < FETCH_MAX_INFLIGHT && f->queue_head) {
                manifest_req *q = f->queue_head;
                f->queue_head = q->next;
                if (!f->queue_head)
                        f->queue_tail = NULL;
                q->next = NULL;
                req_start(f, q);
        }
}

static void req_unlink_inflight(fetch *f, manifest_req *q) {
        for (manifest_req **p = &f->inflight; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        f->n_inflight--;
                        return;
                }
}

static void on_manifest(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                        void *userdata) {
        manifest_req *q = userdata;
        fetch *f = q->f;
        char lbl[32];

        q->op = NULL;
        req_unlink_inflight(f, q);
        snprintf(lbl, sizeof(lbl), "result=\"%s\"", r < 0 ? "error" : "ok");
        metric_inc(f->m_manifests, lbl);
        if (r < 0)
                f->stats.manifest_errors++;
        engine_manifest_fetched(f->engine, q->digest, r, r >= 0 && obj ? obj->data : NULL,
                                r >= 0 && obj ? obj->size : 0, err);
        req_free(q);
        req_pump(f);
}

static void req_start(fetch *f, manifest_req *q) {
        err_info err;
        int r;

        f->stats.manifest_gets++;
        r = objstore_get(f->store, q->object_key, NULL, on_manifest, q, &q->op);
        if (r < 0) {
                /* Report from the loop like any completion: a zero-delay retry
                 * would spin, so the engine's backoff takes it from here. */
                err_info_clear(&err);
                err_info_set(&err, r, "cannot start the GET of %s", q->object_key);
                q->op = NULL;
                engine_manifest_fetched(f->engine, q->digest, r, NULL, 0, &err);
                req_free(q);
                return;
        }
        q->next = f->inflight;
        f->inflight = q;
        f->n_inflight++;
}

int fetch_request_manifest(engine *e, const char *bundle_key, const char *object_key,
                           const char *digest, void *userdata) {
        fetch *f = userdata;
        manifest_req *q;

        if (!f || !f->store)
                return -ENOTCONN;
        if (!objstore_key_is_valid(object_key) || !bundle_is_digest(digest))
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->f = f;
        q->object_key = strdup(object_key);
        if (!q->object_key) {
                free(q);
                return -ENOMEM;
        }
        snprintf(q->digest, sizeof(q->digest), "%s", digest);
        /* Always queued, so the engine hears back from the loop, never from
         * inside this call. */
        if (f->queue_tail)
                f->queue_tail->next = q;
        else
                f->queue_head = q;
        f->queue_tail = q;
        (void) sd_event_source_set_enabled(f->pump_defer, SD_EVENT_ONESHOT);
        return 0;
}

static int on_pump(sd_event_source *s, void *userdata) {
        req_pump(userdata);
        return 0;
}

/* ---- store: the index poller ------------------------------------------------------------ */

static void poll_schedule(fetch *f, uint64_t delay);

static void store_success(fetch *f) {
        f->store_up = true;
        f->store_failures = 0;
        f->store_last_success = now_unix();
        backoff_success(&f->poll_backoff, loop_now(f->event));
        backoff_reset(&f->poll_backoff);
}

static void save_index(fetch *f, const char *etag, const char *data, size_t len) {
        _cleanup_free_ char *blob = NULL;
        err_info err;
        size_t elen = strlen(strempty(etag));
        int r;

        blob = malloc(elen + 1 + len + 1);
        if (!blob)
                return;
        memcpy(blob, strempty(etag), elen);
        blob[elen] = '\n';
        memcpy(blob + elen + 1, data, len);
        err_info_clear(&err);
        r = cache_save_source(f->cache, FETCH_SOURCE_STORE_INDEX, blob, elen + 1 + len, &err);
        if (r < 0)
                log_warning_errno(r, "Cannot save the index in the cache: %s", err.message);
}

static void on_index(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                     void *userdata) {
        fetch *f = userdata;
        uint64_t now = loop_now(f->event), delay;

        f->poll_op = NULL;
        f->stats.polls++;
        if (r >= 0 && obj && obj->not_modified) {
                f->stats.polls_unchanged++;
                metric_inc(f->m_polls, "result=\"unchanged\"");
                store_success(f);
        } else if (r >= 0 && obj) {
                _cleanup_json_ json_object *bundles = NULL;
                err_info perr;

                err_info_clear(&perr);
                r = fetch_parse_index(obj->data, obj->size, &bundles, &perr);
                if (r < 0) {
                        /* Keep the last good view; the store itself answered. */
                        log_error("The object store's %s is invalid and was ignored: %s",
                                  BUNDLE_INDEX_KEY, perr.message);
                        f->stats.bad_indexes++;
                        metric_inc(f->m_bad_index, NULL);
                        metric_inc(f->m_polls, "result=\"invalid\"");
                        f->store_up = true;
                } else {
                        f->stats.polls_changed++;
                        metric_inc(f->m_polls, "result=\"changed\"");
                        log_debug("Index changed (%zu bytes, %d bundles)", obj->size,
                                  json_object_object_length(bundles));
                        (void) engine_set_view(f->engine, ENGINE_SOURCE_STORE, bundles);
                        free(f->etag);
                        f->etag = obj->etag ? strdup(obj->etag) : NULL;
                        save_index(f, f->etag, obj->data, obj->size);
                        store_success(f);
                }
        } else {
                f->stats.poll_errors++;
                metric_inc(f->m_polls, "result=\"error\"");
                delay = fetch_error_delay(&f->poll_backoff, now, err ? err->retry_after_sec : -1);
                if (f->store_up || f->store_failures == 0)
                        log_warning_errno(r,
                                          "Polling %s failed, keeping the last view (next try in "
                                          "%" PRIu64 " ms): %s",
                                          BUNDLE_INDEX_KEY, delay / USEC_PER_MSEC,
                                          err && err->message[0] ? err->message : err_name(r));
                else
                        log_debug("Polling %s failed again (%s), next try in %" PRIu64 " ms",
                                  BUNDLE_INDEX_KEY, err_name(r), delay / USEC_PER_MSEC);
                f->store_up = false;
                f->store_failures++;
                /* The next success re-anchors the slots. */
                f->slot_start = 0;
                poll_schedule(f, delay);
                return;
        }
        if (f->slot_start == 0)
                f->slot_start = now;
        poll_schedule(f, fetch_next_poll_delay(&f->slot_start, now, f->interval, !f->no_jitter));
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        fetch *f = userdata;
        err_info err;
        int r;

        if (f->poll_op)
                return 0;
        r = objstore_get(f->store, BUNDLE_INDEX_KEY, f->etag, on_index, f, &f->poll_op);
        if (r < 0) {
                err_info_clear(&err);
                log_error_errno(r, "Cannot poll %s: %m", BUNDLE_INDEX_KEY);
                poll_schedule(f, fetch_error_delay(&f->poll_backoff, loop_now(f->event), -1));
        }
        return 0;
}

static void poll_schedule(fetch *f, uint64_t delay) {
        int r = loop_timer_arm(f->event, &f->poll_timer, delay, on_poll, f);

        if (r < 0)
                log_error_errno(r, "Cannot schedule the next poll: %m");
}

/* ---- public ------------------------------------------------------------------------------- */

int fetch_new(const fetch_opts *o, fetch **ret) {
        _cleanup_(fetch_freep) fetch *f = NULL;
        int r;

        if (!o || !o->event || !o->engine || !o->cache || !ret)
                return -EINVAL;
        if (o->kube && (isempty(o->node_name) || isempty(o->namespace)))
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->event = sd_event_ref(o->event);
        f->engine = o->engine;
        f->cache = o->cache;
        f->kube = o->kube;
        f->store = o->store;
        f->interval = o->poll_interval_usec ?: CONFIG_DEFAULT_POLL_INTERVAL_USEC;
        f->no_jitter = o->no_jitter;
        f->api_resume_window = o->api_resume_window_usec;
        f->started_mono = loop_now(o->event);
        f->namespace = strdup(strempty(o->namespace));
        f->node_name = strdup(strempty(o->node_name));
        if (!f->namespace || !f->node_name)
                return -ENOMEM;
        if (o->static_labels && jsonx_deep_copy(o->static_labels, &f->static_labels) < 0)
                return -ENOMEM;
        f->poll_backoff = BACKOFF_INIT(FETCH_RETRY_BASE_USEC, fetch_retry_cap(f->interval), 0);
        f->poll_backoff.jitter = !o->no_jitter;
        r = sd_event_add_defer(f->event, &f->rebuild_defer, on_rebuild, f);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(f->rebuild_defer, SD_EVENT_OFF);
        r = sd_event_add_defer(f->event, &f->pump_defer, on_pump, f);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(f->pump_defer, SD_EVENT_OFF);

        f->m_up = metric_register("ballast_agent_source_up", METRIC_GAUGE,
                                  "1 while the source answers (watch healthy, last poll ok).");
        f->m_last_success =
                metric_register("ballast_agent_source_last_success_timestamp_seconds", METRIC_GAUGE,
                                "When the source last answered, Unix seconds.");
        f->m_polls =
                metric_register("ballast_agent_index_polls_total", METRIC_COUNTER,
                                "Index polls, by result (changed, unchanged, invalid, error).");
        f->m_manifests = metric_register("ballast_agent_manifest_fetches_total", METRIC_COUNTER,
                                         "Manifest GETs from the object store, by result.");
        f->m_config_age = metric_register(
                "ballast_agent_config_age_seconds", METRIC_GAUGE,
                "Seconds since a live source last confirmed what the agent applies.");
        f->m_bad_index = metric_register("ballast_agent_invalid_index_total", METRIC_COUNTER,
                                         "Index documents that did not parse.");
        *ret = TAKE_PTR(f);
        return 0;
}

fetch *fetch_free(fetch *f) {
        if (!f)
                return NULL;
        kube_watch_free(f->cm_watch);
        kube_watch_free(f->node_watch);
        objstore_op_cancel(f->poll_op);
        while (f->inflight) {
                manifest_req *q = f->inflight;
                f->inflight = q->next;
                req_free(q);
        }
        while (f->queue_head) {
                manifest_req *q = f->queue_head;
                f->queue_head = q->next;
                req_free(q);
        }
        sd_event_source_disable_unref(f->rebuild_defer);
        sd_event_source_disable_unref(f->pump_defer);
        /* A stop within the persist delay of a view change: save it now. */
        if (f->persist_timer && sd_event_source_get_enabled(f->persist_timer, NULL) > 0)
                (void) on_persist(f->persist_timer, 0, f);
        sd_event_source_disable_unref(f->persist_timer);
        sd_event_source_disable_unref(f->poll_timer);
        json_object_put(f->static_labels);
        json_object_put(f->labels);
        sd_event_unref(f->event);
        free(f->persisted_view);
        free(f->etag);
        free(f->namespace);
        free(f->node_name);
        free(f);
        return NULL;
}

int fetch_restore(fetch *f) {
        _cleanup_json_ json_object *labels = NULL;
        err_info err;
        char *data = NULL;
        size_t len;
        int r;

        err_info_clear(&err);
        if (f->static_labels) {
                (void) engine_set_labels(f->engine, f->static_labels);
                log_info("Node labels from --node-labels: %s",
                         json_object_to_json_string_ext(f->static_labels, JSON_C_TO_STRING_PLAIN));
        } else {
                r = cache_load_node_labels(f->cache, &labels, &err);
                if (r >= 0) {
                        (void) engine_set_labels(f->engine, labels);
                        log_info("Node labels from the cache: %s",
                                 json_object_to_json_string_ext(labels, JSON_C_TO_STRING_PLAIN));
                } else if (r != -ENOENT)
                        log_warning_errno(r, "Cannot read the cached node labels: %s", err.message);
                else if (!f->kube)
                        log_warning("No node labels: no API server, no --node-labels and none "
                                    "cached; only bundles without a nodeSelector apply");
        }

        if (f->store) {
                _cleanup_free_ char *blob = NULL;
                err_info_clear(&err);
                r = cache_load_source(f->cache, FETCH_SOURCE_STORE_INDEX, &blob, &len, &err);
                if (r >= 0) {
                        char *nl = memchr(blob, '\n', len);
                        _cleanup_json_ json_object *bundles = NULL;

                        if (nl && fetch_parse_index(nl + 1, len - (size_t) (nl + 1 - blob),
                                                    &bundles, &err) >= 0) {
                                *nl = '\0';
                                f->etag = blob[0] ? strdup(blob) : NULL;
                                (void) engine_restore_view(f->engine, ENGINE_SOURCE_STORE, bundles);
                                log_info("Restored the object store's index from the cache "
                                         "(%d bundles)",
                                         json_object_object_length(bundles));
                        } else
                                log_warning("The cached index is unusable, ignored: %s",
                                            err.message);
                } else if (r != -ENOENT)
                        log_warning_errno(r, "Cannot read the cached index: %s", err.message);
        }
        if (f->kube) {
                err_info_clear(&err);
                r = cache_load_source(f->cache, FETCH_SOURCE_KUBE_VIEW, &data, &len, &err);
                if (r >= 0) {
                        _cleanup_free_ char *text = data;
                        _cleanup_json_ json_object *view = NULL;

                        if (jsonx_parse(text, len, &view, &err) >= 0 &&
                            json_object_is_type(view, json_type_object)) {
                                (void) engine_restore_view(f->engine, ENGINE_SOURCE_KUBE, view);
                                f->persisted_view = TAKE_PTR(text);
                                log_info("Restored the API server's view from the cache (%d "
                                         "bundles)",
                                         json_object_object_length(view));
                        } else
                                log_warning("The cached API server view is unusable, ignored: %s",
                                            err.message);
                } else if (r != -ENOENT)
                        log_warning_errno(r, "Cannot read the cached API server view: %s",
                                          err.message);
        }
        return 0;
}

int fetch_start(fetch *f) {
        int r;

        if (f->kube) {
                _cleanup_free_ char *field = NULL;
                kube_watch_opts cm = {
                        .resource = &KUBE_RESOURCE_CONFIGMAPS,
                        .namespace = f->namespace,
                        .label_selector = BUNDLE_SELECTOR_BUNDLES,
                        .page_size = 500,
                        .on_add = cm_changed,
                        .on_update = cm_updated,
                        .on_delete = cm_changed,
                        .on_synced = cm_synced,
                        .on_error = kube_error,
                        .userdata = f,
                        .no_jitter = f->no_jitter,
                        .streaming_list = true,
                        .resume_splay_usec = f->api_resume_window,
                };
                kube_watch_opts node = {
                        .resource = &KUBE_RESOURCE_NODES,
                        .on_add = node_added,
                        .on_update = node_updated,
                        .on_delete = node_deleted,
                        .on_error = kube_error,
                        .userdata = f,
                        .no_jitter = f->no_jitter,
                        .streaming_list = true,
                        .resume_splay_usec = f->api_resume_window,
                };

                if (asprintf(&field, "metadata.name=%s", f->node_name) < 0)
                        return -ENOMEM;
                node.field_selector = field;
                r = kube_watch_start(f->kube, &cm, &f->cm_watch);
                if (r < 0)
                        return log_error_errno(r, "Cannot watch ConfigMaps: %m");
                r = kube_watch_start(f->kube, &node, &f->node_watch);
                if (r < 0)
                        return log_error_errno(r, "Cannot watch Node %s: %m", f->node_name);
        }
        if (f->store) {
                uint64_t d = fetch_first_poll_delay(f->interval, !f->no_jitter);
                log_info("Polling %s every %" PRIu64 " s; first poll in %" PRIu64 " ms",
                         BUNDLE_INDEX_KEY, f->interval / USEC_PER_SEC, d / USEC_PER_MSEC);
                poll_schedule(f, d);
        }
        return 0;
}

static void kube_status(fetch *f, bool *ret_up) {
        kube_watch_stats cs = {}, ns = {};

        if (f->cm_watch)
                kube_watch_get_stats(f->cm_watch, &cs);
        if (f->node_watch)
                kube_watch_get_stats(f->node_watch, &ns);
        *ret_up = f->cm_watch && kube_watch_is_synced(f->cm_watch) &&
                  cs.consecutive_failures == 0 && ns.consecutive_failures == 0;
}

void fetch_get_source_status(fetch *f, engine_source s, fetch_source_status *ret) {
        *ret = (fetch_source_status){};
        if (s == ENGINE_SOURCE_KUBE) {
                ret->configured = f->kube != NULL;
                if (f->kube)
                        kube_status(f, &ret->up);
                ret->last_success = f->kube_last_success;
        } else if (s == ENGINE_SOURCE_STORE) {
                ret->configured = f->store != NULL;
                ret->up = f->store_up;
                ret->last_success = f->store_last_success;
        }
}

void fetch_update_metrics(fetch *f) {
        int64_t now = now_unix(), last = 0;

        for (int s = 0; s < _ENGINE_SOURCE_MAX; s++) {
                fetch_source_status st;
                char lbl[32];

                fetch_get_source_status(f, (engine_source) s, &st);
                if (!st.configured)
                        continue;
                if (s == ENGINE_SOURCE_KUBE) {
                        if (st.up) {
                                f->kube_last_success = st.last_success = now;
                                f->kube_error_logged = false;
                        }
                }
                snprintf(lbl, sizeof(lbl), "source=\"%s\"", engine_source_to_string(s));
                metric_set(f->m_up, lbl, st.up ? 1 : 0);
                if (st.last_success > 0)
                        metric_set(f->m_last_success, lbl, (double) st.last_success);
                last = MAX(last, st.last_success);
        }
        if (last > 0)
                metric_set(f->m_config_age, NULL, (double) (now - last));
        else
                metric_set(f->m_config_age, NULL,
                           (double) ((loop_now(f->event) - f->started_mono) / USEC_PER_SEC));
}

void fetch_get_stats(const fetch *f, fetch_stats *ret) {
        *ret = f->stats;
}
