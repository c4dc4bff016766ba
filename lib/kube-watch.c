/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The watch: client-go's reflector in C.
 *
 *   LIST (resourceVersion=0: the watch cache; after a 410, a consistent read)
 *     -> replace the store (adds, updates, deletes for what disappeared)
 *     -> WATCH from the list's resourceVersion, bookmarks on, a random
 *        timeoutSeconds in [300, 600] and a hard transfer timeout 30 s later
 *     -> every event and bookmark advances the resourceVersion
 *     -> the watch ends: normally (timeout)        -> watch again at once
 *                        410 (status or ERROR)     -> relist
 *                        429                       -> wait Retry-After
 *                        anything else, or a watch that ended within 1 s
 *                        without an event          -> back off, watch again
 *                                                     from the last RV
 *
 * With streaming_list, a relist is one WATCH with sendInitialEvents=true
 * (KEP-3157): its ADDED events are collected, the BOOKMARK annotated
 * k8s.io/initial-events-end replaces the store with them and gives the
 * resourceVersion, and the same request goes on as the watch. A 400/422 (the
 * WatchList gate is off) falls back to LIST + WATCH for the watch's life.
 *
 * An outage (connection refused, unreachable or timed out, 5xx, 429) is
 * retried differently: with resume_splay_usec, at one random point of the
 * window and then every window after it (a random phase, so a fleet's first
 * reconnections after the server returns are uniform over one window however
 * long the outage was), and with streaming_list the resumption is a
 * streaming list from the last resourceVersion rather than a WATCH from it
 * that a restarted server answers 410. docs/kube-client.md has the reasoning.
 *
 * Every next step is started from a timer (0 delay for "at once"), never
 * from inside the HTTP data callback that noticed the end, so the stack stays
 * shallow and the stream parser is never reset under itself.
 *
 * Lifetime: callbacks may free the watch. A reference is held around every
 * callback, kube_watch_free() only marks the watch freed and cancels what is
 * pending, and the memory goes when the last reference is dropped.
 */

#include <inttypes.h>
#include <string.h>

#include "backoff.h"
#include "jsonx.h"
#include "kube-internal.h"
#include "loop.h"

#define WATCH_TIMEOUT_MIN_SEC    300
#define WATCH_TIMEOUT_SPREAD_SEC 300
#define WATCH_MARGIN_USEC        (30 * USEC_PER_SEC)
#define WATCH_SHORT_USEC         (1 * USEC_PER_SEC)
#define WATCH_BACKOFF_BASE_USEC  (800 * USEC_PER_MSEC)
#define WATCH_BACKOFF_CAP_USEC   (30 * USEC_PER_SEC)
#define WATCH_BACKOFF_RESET_USEC (120 * USEC_PER_SEC)
#define WATCH_CAPTURE_MAX        (64u * 1024u) /* of an error body */

typedef enum watch_state {
        WATCH_IDLE,
        WATCH_LISTING,
        WATCH_WATCHING,
        WATCH_WAITING,
} watch_state;

struct kube_watch {
        unsigned n_ref;
        bool freed;
        kube_client *client;

        kube_resource res; /* strings point into the copies below */
        char *group, *version, *resource;
        char *namespace, *label_selector, *field_selector;
        unsigned page_size;

        void (*on_add)(kube_watch *w, json_object *obj, void *userdata);
        void (*on_update)(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata);
        void (*on_delete)(kube_watch *w, json_object *obj, void *userdata);
        void (*on_synced)(kube_watch *w, void *userdata);
        void (*on_error)(kube_watch *w, int r, const err_info *err, void *userdata);
        void *userdata;

        kube_store *store;
        char *rv;               /* never NULL; "" before the first list */
        bool relist_consistent; /* the next list must not use the watch cache */
        bool synced;
        bool need_list;
        watch_state state;
        kube_request *req;
        kube_stream *stream;
        bool streaming;       /* relist by streaming list (until the server refuses it) */
        uint64_t splay;       /* resume_splay_usec; 0 without jitter */
        bool outage;          /* failing because the server is away */
        uint64_t outage_next; /* the splayed time of the next attempt; 0: not drawn */

        /* The current watch request. */
        uint64_t watch_started;
        uint64_t watch_events;
        kube_store *initial; /* a streaming list's objects (as text), until its end bookmark */
        bool watch_gone;
        int watch_error;
        err_info watch_err;
        char *capture; /* error body, for its Status */
        size_t capture_len;
        bool auth_retried;
        uint64_t last_gone;

        backoff backoff;
        sd_event_source *timer;
        kube_watch_stats stats;
};

/* The store's objects are for reconciling; metadata.managedFields (server-side
 * apply bookkeeping) is never read by them and can be as large as the rest of
 * the object, so it is dropped before storing, as controller-runtime users do
 * with a cache transform. It halves the memory of a store of applied objects. */
static void drop_managed_fields(json_object *obj) {
        json_object *meta;

        if (json_object_object_get_ex(obj, "metadata", &meta) &&
            json_object_is_type(meta, json_type_object))
                json_object_object_del(meta, "managedFields");
}

static void watch_free_now(kube_watch *w) {
        sd_event_source_disable_unref(w->timer);
        kube_store_free(w->store);
        kube_stream_free(w->stream);
        kube_store_free(w->initial);
        free(w->group);
        free(w->version);
        free(w->resource);
        free(w->namespace);
        free(w->label_selector);
        free(w->field_selector);
        free(w->rv);
        free(w->capture);
        free(w);
}

static kube_watch *watch_ref(kube_watch *w) {
        w->n_ref++;
        return w;
}

static void watch_unref(kube_watch *w) {
        if (--w->n_ref == 0)
                watch_free_now(w);
}

kube_watch *kube_watch_free(kube_watch *w) {
        if (!w || w->freed)
                return NULL;
        w->freed = true;
        if (w->req) {
                kube_request *req = TAKE_PTR(w->req);

                kube_request_cancel(req);
        }
        w->timer = sd_event_source_disable_unref(w->timer);
        watch_unref(w);
        return NULL;
}

bool kube_watch_is_synced(const kube_watch *w) {
        return w && w->synced;
}

kube_store *kube_watch_get_store(kube_watch *w) {
        return w ? w->store : NULL;
}

const char *kube_watch_get_resource_version(const kube_watch *w) {
        return w ? w->rv : NULL;
}

void kube_watch_get_stats(const kube_watch *w, kube_watch_stats *ret) {
        *ret = w ? w->stats : (kube_watch_stats){};
}

static uint64_t watch_now(kube_watch *w) {
        return loop_now(kube_client_get_event(w->client));
}

static void watch_set_rv(kube_watch *w, json_object *obj) {
        const char *rv = jsonx_get_string(obj, "metadata.resourceVersion");
        char *s;

        if (isempty(rv) || streq(rv, w->rv))
                return;
        s = strdup(rv);
        if (!s)
                return; /* keep the older one: a resume then replays a little */
        free(w->rv);
        w->rv = s;
}

/* ---- callbacks into the user --------------------------------------------- */

static void notify_add(kube_watch *w, json_object *obj) {
        if (w->on_add && !w->freed)
                w->on_add(w, obj, w->userdata);
}

static void notify_update(kube_watch *w, json_object *old_obj, json_object *obj) {
        if (w->on_update && !w->freed)
                w->on_update(w, old_obj, obj, w->userdata);
}

static void notify_delete(kube_watch *w, json_object *obj) {
        if (w->on_delete && !w->freed)
                w->on_delete(w, obj, w->userdata);
}

static void notify_error(kube_watch *w, int r, const err_info *err) {
        if (w->on_error && !w->freed)
                w->on_error(w, r, err, w->userdata);
}

/* ---- scheduling -------------------------------------------------------------- */

static void watch_attempt(kube_watch *w);

static int on_watch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        kube_watch *w = userdata;

        watch_ref(w);
        if (!w->freed)
                watch_attempt(w);
        watch_unref(w);
        return 0;
}

static void watch_schedule(kube_watch *w, uint64_t delay) {
        int r;

        if (w->freed)
                return;
        w->state = WATCH_WAITING;
        w->stats.last_delay_usec = delay;
        r = loop_timer_arm(kube_client_get_event(w->client), &w->timer, delay, on_watch_timer, w);
        if (r < 0) {
                err_info e;

                /* Nothing left to retry with: say so loudly. */
                err_info_clear(&e);
                err_info_set(&e, r, "cannot arm the watch timer: %s", strerror(-r));
                w->state = WATCH_IDLE;
                notify_error(w, r, &e);
        }
}

/* The failures that say the server is away (or overloaded) rather than
 * that this request was wrong: the whole fleet sees them at once. */
static bool is_outage_error(int r) {
        switch (r) {
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -ENETUNREACH:
        case -ETIMEDOUT:
        case -EAGAIN:
                return true;
        default:
                return false;
        }
}

/* The server answered: whatever outage there was is over. */
static void watch_outage_end(kube_watch *w) {
        w->outage = false;
        w->outage_next = 0;
}

/* The wait before the next attempt after a failure during (or starting)
 * an outage. Without a splay: the backoff. With one: a point drawn
 * uniformly in the window when the outage starts, then the same point of
 * every following window while it lasts. A random phase with a fixed period
 * makes the first attempt after the server's return, whenever that is,
 * uniform over one window for a fleet; redrawing from the backoff instead
 * would bunch the fleet up at the return (a renewal process's waits are
 * front-loaded, twice the mean density right after any instant). Probes
 * before the return are refused connections the server never sees.
 * @may_have_restarted is false for a 429: that server is up. */
static uint64_t watch_outage_delay(kube_watch *w, uint64_t now, bool may_have_restarted) {
        if (!w->outage) {
                w->outage = true;
                w->outage_next = 0;
                w->stats.outages++;
        }
        /* A restarted API server answers a resumed WATCH with 410 (its watch
         * cache is new), and the relist follows: two requests. A streaming
         * list from the last resourceVersion is one request either way,
         * served from the watch cache, and never 410 (NotOlderThan). It
         * resends the watched objects, which a WATCH resumed on a server that
         * did not restart would not; ours are few (the agent's bundles and
         * its Node). A 429 comes from a server that is up: resume there. */
        if (w->streaming && may_have_restarted)
                w->need_list = true;
        if (w->splay == 0)
                return backoff_next(&w->backoff, now);
        if (w->outage_next == 0)
                w->outage_next = now + random_u64_below(w->splay);
        while (w->outage_next <= now)
                w->outage_next += w->splay;
        return w->outage_next - now;
}

static void watch_failed(kube_watch *w, int r, const err_info *err) {
        uint64_t now = watch_now(w), delay;

        w->stats.failures++;
        w->stats.consecutive_failures++;
        notify_error(w, r, err);
        if (w->freed)
                return;
        if (is_outage_error(r) && (w->splay > 0 || w->streaming))
                delay = watch_outage_delay(w, now, !(err && err->http_status == 429));
        else if (w->outage && w->splay > 0 && !(err && err->http_status > 0))
                /* A reset or a TLS failure while the server is away is still
                 * the outage: keep to the drawn schedule. */
                delay = watch_outage_delay(w, now, true);
        else {
                if (err && err->http_status > 0)
                        watch_outage_end(w);
                delay = backoff_next(&w->backoff, now);
        }
        watch_schedule(w, delay);
}

/* After a 410: relist (consistently), at once unless 410s come in a loop. */
static void watch_gone(kube_watch *w, const err_info *err) {
        uint64_t now = watch_now(w), delay = 0;

        w->stats.relists_gone++;
        w->need_list = true;
        w->relist_consistent = true;
        watch_outage_end(w); /* the splay, if any, already spread this attempt */
        if (w->last_gone > 0 && now - w->last_gone < WATCH_SHORT_USEC)
                delay = backoff_next(&w->backoff, now);
        w->last_gone = now;
        notify_error(w, -EGONE, err);
        watch_schedule(w, delay);
}

/* ---- list and replace ---------------------------------------------------------- */

static int collect_missing(const char *key, void *userdata) {
        json_object **ctx = userdata; /* [0]: seen keys, [1]: keys to delete */

        if (!json_object_object_get_ex(ctx[0], key, NULL))
                return json_object_array_add(ctx[1], json_object_new_string(key)) < 0 ? -ENOMEM : 0;
        return 0;
}

static bool same_rv(json_object *a, json_object *b) {
        const char *ra = jsonx_get_string(a, "metadata.resourceVersion");
        const char *rb = jsonx_get_string(b, "metadata.resourceVersion");

        return ra && rb && streq(ra, rb);
}

/* One object of a list (or of a streaming list's initial events): stored,
 * and added or updated; its key goes into @seen. */
static int replace_one(kube_watch *w, const char *key, json_object *it, json_object *seen) {
        json_object *old = NULL;
        int r;

        if (json_object_object_add(seen, key, NULL) < 0)
                return -ENOMEM;
        drop_managed_fields(it);
        r = kube_store_put(w->store, key, it, &old);
        if (r < 0)
                return r;
        if (!old)
                notify_add(w, it);
        else if (!same_rv(old, it))
                notify_update(w, old, it);
        json_object_put(old);
        return 0;
}

/* Deletes what the list did not have (@seen: the keys it had), with a
 * notification carrying each object's last known state. */
static int replace_finish(kube_watch *w, json_object *seen) {
        _cleanup_json_ json_object *gone = json_object_new_array();
        json_object *ctx[2] = {seen, gone};
        size_t n;
        int r;

        if (!gone)
                return -ENOMEM;
        r = kube_store_foreach_key(w->store, collect_missing, ctx);
        if (r < 0)
                return r;
        n = json_object_array_length(gone);
        for (size_t i = 0; i < n; i++) {
                _cleanup_json_ json_object *obj = NULL;

                obj = kube_store_remove(w->store,
                                        json_object_get_string(json_object_array_get_idx(gone, i)));
                if (obj)
                        notify_delete(w, obj);
                if (w->freed)
                        return 0;
        }
        return 0;
}

/* Makes the store equal to @items (DeltaFIFO's Replace): new objects are
 * added, changed ones updated, and objects that are gone are deleted. */
static int watch_replace(kube_watch *w, json_object *items) {
        _cleanup_json_ json_object *seen = json_object_new_object();
        size_t n = items ? json_object_array_length(items) : 0;
        int r;

        if (!seen)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *it = json_object_array_get_idx(items, i);
                _cleanup_free_ char *key = NULL;

                if (kube_object_key(it, &key) < 0)
                        continue; /* no name: nothing to key it by */
                r = replace_one(w, key, it, seen);
                if (r < 0)
                        return r;
                if (w->freed)
                        return 0;
        }
        return replace_finish(w, seen);
}

static void on_watch_list_done(kube_client *c, int r, json_object *list, const err_info *err,
                               void *userdata) {
        kube_watch *w = userdata;
        const char *rv;
        err_info e;

        w->req = NULL;
        watch_ref(w);
        if (r < 0) {
                /* The RV we asked for is too old for the server: next time a
                 * consistent read. */
                if (r == -EGONE)
                        w->relist_consistent = true;
                watch_failed(w, r, err);
                goto out;
        }

        rv = jsonx_get_string(list, "metadata.resourceVersion");
        if (isempty(rv)) {
                err_info_clear(&e);
                watch_failed(w, err_info_set(&e, -EBADMSG, "list response has no resourceVersion"),
                             &e);
                goto out;
        }
        r = watch_replace(w, jsonx_get(list, "items"));
        if (w->freed)
                goto out;
        if (r < 0) {
                err_info_clear(&e);
                watch_failed(w, err_info_set(&e, r, "cannot apply list: %s", strerror(-r)), &e);
                goto out;
        }
        free(w->rv);
        w->rv = strdup(rv);
        if (!w->rv) {
                w->rv = strdup("");
                if (!w->rv)
                        abort(); /* a 1-byte allocation failed */
                err_info_clear(&e);
                watch_failed(w, err_info_set(&e, -ENOMEM, "out of memory"), &e);
                goto out;
        }
        w->stats.lists++;
        w->stats.consecutive_failures = 0;
        w->relist_consistent = false;
        w->need_list = false;
        watch_outage_end(w);
        backoff_success(&w->backoff, watch_now(w));

        if (!w->synced) {
                w->synced = true;
                if (w->on_synced)
                        w->on_synced(w, w->userdata);
                if (w->freed)
                        goto out;
        }
        watch_attempt(w);
out:
        watch_unref(w);
}

static int watch_list_start(kube_watch *w, err_info *e) {
        kube_list_opts lo = {
                .label_selector = w->label_selector,
                .field_selector = w->field_selector,
                /* The first list may come from the watch cache; after a 410
                 * we need what etcd has. */
                /* The watch cache ignores limit for resourceVersion=0 and
                 * answers with everything in one response; a paginated
                 * list must be a consistent read to get pages. */
                .resource_version = w->relist_consistent || w->page_size ? NULL : "0",
                .limit = w->page_size,
        };
        int r;

        r = kube_list_start(w->client, &w->res, w->namespace, &lo, on_watch_list_done, w, &w->req,
                            e);
        if (r < 0)
                return r;
        w->state = WATCH_LISTING;
        return 0;
}

/* ---- the streaming list --------------------------------------------------------- */

/* The end of a streaming list's initial events: a BOOKMARK whose object has
 * metadata.annotations["k8s.io/initial-events-end"] == "true". (jsonx paths
 * split at dots, which the annotation's name has.) */
static bool is_initial_events_end(json_object *obj) {
        json_object *meta, *ann, *v;

        return json_object_object_get_ex(obj, "metadata", &meta) &&
               json_object_object_get_ex(meta, "annotations", &ann) &&
               json_object_object_get_ex(ann, "k8s.io/initial-events-end", &v) &&
               json_object_is_type(v, json_type_string) && streq(json_object_get_string(v), "true");
}

static int replace_one_initial(const char *key, json_object *obj, void *userdata) {
        void **ctx = userdata; /* [0]: the watch, [1]: seen keys */
        kube_watch *w = ctx[0];
        int r;

        r = replace_one(w, key, obj, ctx[1]);
        if (r < 0)
                return r;
        return w->freed ? -ECANCELED : 0;
}

/* The initial events are the list: the store is replaced with them at the
 * end bookmark, as one list would replace it, so a stream cut short changes
 * nothing and the resourceVersion stays where it was until the list is
 * whole. Until then they are kept as text without managedFields (a compact
 * store): an operator's 10,000 bundles would be ~400 MiB of json-c trees
 * with their managedFields, ~15 MiB this way; each is parsed once more to
 * go into the store, one at a time. */
static int watch_initial_end(kube_watch *w, json_object *bookmark) {
        _cleanup_(kube_store_freep) kube_store *initial = TAKE_PTR(w->initial);
        _cleanup_json_ json_object *seen = json_object_new_object();
        const char *rv = jsonx_get_string(bookmark, "metadata.resourceVersion");
        void *ctx[2] = {w, seen};
        int r;

        if (isempty(rv))
                return -EBADMSG;
        if (!seen)
                return -ENOMEM;
        r = kube_store_foreach(initial, replace_one_initial, ctx);
        if (r >= 0 && !w->freed)
                r = replace_finish(w, seen);
        if (w->freed)
                return -ECANCELED;
        if (r < 0)
                return r;
        watch_set_rv(w, bookmark);
        w->stats.lists++;
        w->stats.streaming_lists++;
        w->relist_consistent = false;
        w->need_list = false;
        if (!w->synced) {
                w->synced = true;
                if (w->on_synced)
                        w->on_synced(w, w->userdata);
        }
        return w->freed ? -ECANCELED : 0;
}

static int watch_initial_event(kube_watch *w, kube_event_type type, json_object *obj) {
        _cleanup_free_ char *key = NULL;

        switch (type) {
        case KUBE_EVENT_ADDED:
        case KUBE_EVENT_MODIFIED:
                if (kube_object_key(obj, &key) < 0)
                        return 0;
                drop_managed_fields(obj);
                return kube_store_put(w->initial, key, obj, NULL);
        case KUBE_EVENT_DELETED:
                if (kube_object_key(obj, &key) >= 0)
                        json_object_put(kube_store_remove(w->initial, key));
                return 0;
        case KUBE_EVENT_BOOKMARK:
                w->stats.bookmarks++;
                return is_initial_events_end(obj) ? watch_initial_end(w, obj) : 0;
        default:
                return -EBADMSG;
        }
}

/* The server refused sendInitialEvents (400/422: the WatchList gate is off,
 * or a server older than streaming lists): LIST + WATCH from now on, at
 * once. Reported through on_error, for the logs. */
static void watch_streaming_refused(kube_watch *w, int r, const err_info *err) {
        w->streaming = false;
        notify_error(w, r, err);
        watch_schedule(w, 0);
}

/* ---- the watch request ----------------------------------------------------------- */

static void watch_handle_end(kube_watch *w, int r, long status, const http_response *resp,
                             const err_info *err);

static int on_stream_event(kube_event_type type, json_object *obj, void *userdata) {
        kube_watch *w = userdata;
        _cleanup_free_ char *key = NULL;
        json_object *old = NULL;
        int r;

        if (w->freed || w->state != WATCH_WATCHING)
                return -ECANCELED;

        w->watch_events++;
        if (w->watch_events == 1) {
                /* The watch works: health starts now. */
                backoff_success(&w->backoff, watch_now(w));
                w->stats.consecutive_failures = 0;
                w->auth_retried = false;
                watch_outage_end(w);
        }

        if (w->initial && type != KUBE_EVENT_ERROR) {
                r = watch_initial_event(w, type, obj);
                return r < 0 ? r : w->freed ? -ECANCELED : 0;
        }

        switch (type) {
        case KUBE_EVENT_ADDED:
        case KUBE_EVENT_MODIFIED:
                if (kube_object_key(obj, &key) < 0)
                        break;
                drop_managed_fields(obj);
                r = kube_store_put(w->store, key, obj, &old);
                if (r < 0)
                        return r;
                w->stats.events++;
                watch_set_rv(w, obj);
                if (old)
                        notify_update(w, old, obj);
                else
                        notify_add(w, obj);
                json_object_put(old);
                break;

        case KUBE_EVENT_DELETED:
                if (kube_object_key(obj, &key) < 0)
                        break;
                old = kube_store_remove(w->store, key);
                w->stats.events++;
                watch_set_rv(w, obj);
                if (old)
                        notify_delete(w, obj);
                json_object_put(old);
                break;

        case KUBE_EVENT_BOOKMARK:
                w->stats.bookmarks++;
                watch_set_rv(w, obj);
                break;

        case KUBE_EVENT_ERROR: {
                err_info e;

                r = kube_status_from_object(obj, 200, &e);
                if (r == -EGONE)
                        w->watch_gone = true;
                else if (!w->watch_error) {
                        w->watch_error = r;
                        w->watch_err = e;
                }
                /* The server ends the stream after an ERROR; don't wait for
                 * it. Cancelling from here is safe (http.c parks it). */
                if (w->req) {
                        kube_request *req = TAKE_PTR(w->req);

                        kube_request_cancel(req);
                }
                watch_handle_end(w, 0, 200, NULL, NULL);
                return -ECANCELED;
        }

        default:
                return -EBADMSG;
        }
        return w->freed ? -ECANCELED : 0;
}

static int on_watch_data(long status, const void *data, size_t len, void *userdata) {
        kube_watch *w = userdata;
        err_info e;
        int r;

        if (w->freed)
                return -ECANCELED;

        if (status < 200 || status >= 300) {
                /* An error body: keep its start for the Status. */
                size_t n = MIN(len, WATCH_CAPTURE_MAX - w->capture_len);

                if (n > 0) {
                        if (!w->capture) {
                                w->capture = malloc(WATCH_CAPTURE_MAX + 1);
                                if (!w->capture)
                                        return -ENOMEM;
                        }
                        memcpy(w->capture + w->capture_len, data, n);
                        w->capture_len += n;
                        w->capture[w->capture_len] = '\0';
                }
                return 0;
        }

        watch_ref(w);
        err_info_clear(&e);
        r = kube_stream_feed(w->stream, data, len, &e);
        if (w->freed)
                r = -ECANCELED;
        else if (r < 0 && r != -ECANCELED && !w->watch_error) {
                /* Garbage or an oversized event: abort this watch; the done
                 * callback reports it and backs off. */
                w->watch_error = r;
                w->watch_err = e;
        }
        watch_unref(w);
        return r;
}

static void on_watch_done(kube_request *req, int r, const http_response *resp, const err_info *err,
                          void *userdata) {
        kube_watch *w = userdata;
        long status = resp ? resp->status : 0;

        w->req = NULL;
        watch_ref(w);
        if (r >= 0 && status >= 200 && status < 300 && !w->watch_error && !w->watch_gone) {
                err_info e;
                int q;

                /* A final event without its newline still counts; a partial
                 * one is an error. */
                err_info_clear(&e);
                q = kube_stream_finish(w->stream, &e);
                if (q < 0 && q != -EBADFD && q != -ECANCELED && !w->watch_error) {
                        w->watch_error = q;
                        w->watch_err = e;
                }
        }
        if (!w->freed && w->state == WATCH_WATCHING)
                watch_handle_end(w, r, status, resp, err);
        watch_unref(w);
}

static void watch_handle_end(kube_watch *w, int r, long status, const http_response *resp,
                             const err_info *err) {
        uint64_t now = watch_now(w);
        err_info e;

        err_info_clear(&e);
        if (w->watch_gone) {
                err_info_set(&e, -EGONE, "watch from resourceVersion %s expired (410 Gone)", w->rv);
                e.http_status = 410;
                watch_gone(w, &e);
                return;
        }
        if (w->watch_error) {
                /* Our own abort (garbage, oversize, truncation) or an ERROR
                 * event other than 410. */
                if (w->initial && w->watch_error == -EINVAL && w->watch_err.http_status > 0)
                        watch_streaming_refused(w, w->watch_error, &w->watch_err);
                else
                        watch_failed(w, w->watch_error, &w->watch_err);
                return;
        }
        if (r < 0) {
                watch_failed(w, r, err);
                return;
        }
        if (status < 200 || status >= 300) {
                r = kube_status_parse(status, w->capture, w->capture_len, &e);
                if (e.retry_after_sec < 0 && resp)
                        e.retry_after_sec = resp->retry_after_sec;
                if (r == -EGONE) {
                        watch_gone(w, &e);
                        return;
                }
                if (w->initial && (status == 400 || status == 422)) {
                        watch_outage_end(w);
                        watch_streaming_refused(w, r, &e);
                        return;
                }
                if (status == 401 && !w->auth_retried) {
                        /* The token may have rotated: read it again and retry
                         * at once, once. */
                        w->auth_retried = true;
                        (void) kube_client_reload_token(w->client);
                        watch_outage_end(w);
                        notify_error(w, r, &e);
                        watch_schedule(w, 0);
                        return;
                }
                if (status == 429) {
                        w->stats.throttled++;
                        if (e.retry_after_sec >= 0) {
                                uint64_t delay = (uint64_t) e.retry_after_sec * USEC_PER_SEC;

                                notify_error(w, r, &e);
                                if (w->freed)
                                        return;
                                /* An overloaded server's Retry-After is short
                                 * (APF says 1 s) and the same for everyone;
                                 * with a splay, the fleet spreads instead. */
                                if (w->splay > 0)
                                        delay = MAX(delay, watch_outage_delay(w, now, false));
                                watch_schedule(w, delay);
                                return;
                        }
                }
                watch_failed(w, r, &e);
                return;
        }
        if (w->initial) {
                /* Ended before the end bookmark. After the server's own
                 * timeout, it never meant to send one: it ignored
                 * sendInitialEvents. Sooner, the list was cut short. */
                if (now - w->watch_started >= WATCH_TIMEOUT_MIN_SEC * USEC_PER_SEC) {
                        err_info_set(&e, -EPROTO,
                                     "streaming list ended after %" PRIu64
                                     " s without its end bookmark: falling back to LIST",
                                     (now - w->watch_started) / USEC_PER_SEC);
                        watch_streaming_refused(w, -EPROTO, &e);
                } else
                        watch_failed(w,
                                     err_info_set(&e, -ECONNRESET,
                                                  "streaming list ended before its end bookmark"),
                                     &e);
                return;
        }
        if (w->watch_events == 0 && now - w->watch_started < WATCH_SHORT_USEC) {
                /* A server that closes watches at once would otherwise make
                 * us spin. */
                w->stats.short_watches++;
                watch_failed(w,
                             err_info_set(&e, -ECONNRESET,
                                          "watch closed after %" PRIu64 " ms without events",
                                          (now - w->watch_started) / USEC_PER_MSEC),
                             &e);
                return;
        }
        /* A normal end (timeoutSeconds): watch again from where we are. */
        watch_schedule(w, 0);
}

static int query_append(char **q, const char *key, const char *value) {
        _cleanup_free_ char *esc = NULL;
        char *s;

        if (!value)
                return 0;
        esc = http_escape(value, false);
        if (!esc)
                return -ENOMEM;
        if (asprintf(&s, "%s&%s=%s", *q, key, esc) < 0)
                return -ENOMEM;
        free(*q);
        *q = s;
        return 0;
}

/* A WATCH from the last resourceVersion, or with @w->need_list a streaming
 * list: sendInitialEvents=true&resourceVersionMatch=NotOlderThan, with no
 * resourceVersion (a consistent read, from the watch cache once it has
 * caught up with etcd) at first and after a 410, else from the last one. */
static int watch_stream_start(kube_watch *w, err_info *e) {
        _cleanup_free_ char *path = NULL, *q = NULL;
        _cleanup_(kube_store_freep) kube_store *initial = NULL;
        unsigned timeout_sec =
                WATCH_TIMEOUT_MIN_SEC +
                (w->backoff.jitter ? (unsigned) random_u64_below(WATCH_TIMEOUT_SPREAD_SEC) : 0);
        const char *rv = isempty(w->rv) ? NULL : w->rv;
        kube_raw_opts o;
        int r;

        if (w->need_list) {
                r = kube_store_new(&initial);
                if (r >= 0)
                        r = kube_store_set_compact(initial, NULL, NULL);
                if (r < 0)
                        return r;
                if (w->relist_consistent)
                        rv = NULL;
        }
        r = kube_resource_path(&w->res, w->namespace, NULL, NULL, &path);
        if (r < 0)
                return err_info_set(e, r, "invalid resource path");
        if (asprintf(&q, "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%u%s", path,
                     timeout_sec,
                     initial ? "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan" : "") <
            0) {
                q = NULL;
                return -ENOMEM;
        }
        if ((r = query_append(&q, "resourceVersion", rv)) < 0 ||
            (r = query_append(&q, "labelSelector", w->label_selector)) < 0 ||
            (r = query_append(&q, "fieldSelector", w->field_selector)) < 0)
                return r;

        kube_stream_reset(w->stream);
        kube_store_free(w->initial);
        w->initial = TAKE_PTR(initial);
        w->watch_events = 0;
        w->watch_gone = false;
        w->watch_error = 0;
        err_info_clear(&w->watch_err);
        w->capture_len = 0;
        w->watch_started = watch_now(w);

        o = (kube_raw_opts){
                .method = "GET",
                .path = q,
                /* A dead connection (no FIN, no RST) is noticed at the latest
                 * here; keepalive usually notices sooner. */
                .timeout_usec = (uint64_t) timeout_sec * USEC_PER_SEC + WATCH_MARGIN_USEC,
                .on_data = on_watch_data,
        };
        w->state = WATCH_WATCHING;
        r = kube_raw_start(w->client, &o, on_watch_done, w, &w->req);
        if (r < 0) {
                w->state = WATCH_IDLE;
                return err_info_set(e, r, "cannot start watch: %s", strerror(-r));
        }
        w->stats.watches++;
        return 0;
}

static void watch_attempt(kube_watch *w) {
        err_info e;
        int r;

        err_info_clear(&e);
        if (w->need_list && !w->streaming)
                r = watch_list_start(w, &e);
        else
                r = watch_stream_start(w, &e);
        if (r < 0)
                watch_failed(w, r, &e);
}

/* ---- construction ------------------------------------------------------------------- */

static int strdup_opt(char **dst, const char *src) {
        if (!src)
                return 0;
        *dst = strdup(src);
        return *dst ? 0 : -ENOMEM;
}

int kube_watch_start(kube_client *c, const kube_watch_opts *o, kube_watch **ret) {
        kube_watch *w;
        err_info e;
        int r;

        if (!c || !o || !o->resource || isempty(o->resource->version) ||
            isempty(o->resource->resource) || !ret)
                return -EINVAL;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->n_ref = 1;
        w->client = c;
        if ((r = strdup_opt(&w->group, o->resource->group ?: "")) < 0 ||
            (r = strdup_opt(&w->version, o->resource->version)) < 0 ||
            (r = strdup_opt(&w->resource, o->resource->resource)) < 0 ||
            (r = strdup_opt(&w->namespace, o->resource->namespaced ? o->namespace : NULL)) < 0 ||
            (r = strdup_opt(&w->label_selector, o->label_selector)) < 0 ||
            (r = strdup_opt(&w->field_selector, o->field_selector)) < 0 ||
            (r = strdup_opt(&w->rv, "")) < 0)
                goto fail;
        w->res = (kube_resource){
                .group = w->group,
                .version = w->version,
                .resource = w->resource,
                .namespaced = o->resource->namespaced,
        };
        w->page_size = o->page_size;
        w->on_add = o->on_add;
        w->on_update = o->on_update;
        w->on_delete = o->on_delete;
        w->on_synced = o->on_synced;
        w->on_error = o->on_error;
        w->userdata = o->userdata;
        w->backoff = BACKOFF_INIT(o->backoff_base_usec ?: WATCH_BACKOFF_BASE_USEC,
                                  o->backoff_cap_usec ?: WATCH_BACKOFF_CAP_USEC,
                                  WATCH_BACKOFF_RESET_USEC);
        w->backoff.jitter = !o->no_jitter;
        w->need_list = true;
        w->streaming = o->streaming_list;
        w->splay = o->no_jitter ? 0 : o->resume_splay_usec;

        r = kube_store_new(&w->store);
        if (r < 0)
                goto fail;
        r = kube_stream_new(o->max_event_size, on_stream_event, w, &w->stream);
        if (r < 0)
                goto fail;

        err_info_clear(&e);
        r = w->streaming ? watch_stream_start(w, &e) : watch_list_start(w, &e);
        if (r < 0)
                goto fail;
        *ret = w;
        return 0;
fail:
        watch_free_now(w);
        return r;
}
