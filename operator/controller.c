/* SPDX-License-Identifier: Apache-2.0 */

#include <assert.h>
#include <inttypes.h>

#include "backoff.h"
#include "controller.h"
#include "events.h"
#include "fleet.h"
#include "index.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"
#include "publish.h"
#include "render.h"
#include "status.h"
#include "workqueue.h"

#define LAST_APPLIED_ANNOTATION "kubectl.kubernetes.io/last-applied-configuration"

const kube_resource RESOURCE_CONFIGBUNDLES = {
        .group = "ballast.dev",
        .version = "v1alpha1",
        .resource = "configbundles",
        .namespaced = true,
};

typedef struct job job;

struct controller {
        sd_event *event;
        kube_client *kube;
        objstore *store;
        controller_opts opts;
        char *namespace, *watch_namespace;

        kube_watch *cr_watch, *cm_watch;
        bool cr_synced, cm_synced;
        workqueue *queue;
        bool leading;

        bundle_index *store_index; /* index.json in the object store */
        bundle_index *cm_index;    /* the index ConfigMap */
        bool store_index_loaded, cm_index_loaded;
        bool cm_index_summary;         /* the index ConfigMap read was a summary */
        size_t cm_index_summary_count; /* ... of this many bundles */
        objstore_op *index_load_op;
        objstore_op *store_index_op; /* the index.json write in flight */
        index_sink_done_fn store_index_done;
        sd_event_source *index_load_timer;
        sd_event_source *grace_timer; /* see maybe_start_reconciling() */
        bool store_grace_over;
        backoff index_load_backoff;
        kube_request *cm_index_req;
        index_sink_done_fn cm_index_done;
        sd_event_source *cm_index_skip; /* completes a write found unneeded */

        fleet *fleet; /* agent reports and manifest GC; NULL without an object store */
        recorder *recorder;
        sd_event_source *resync_timer;
        job *jobs; /* in flight */
        bool shutting_down;
        controller_stats stats;
};

/* One reconcile of one key. Async steps each hold one reference in @pending;
 * the job finishes when the last step is done. */
struct job {
        controller *ctl;
        char *key, *ns, *name;
        json_object *cr;
        render_identity id;
        render_result *rendered;
        char *object_key, *cm_name;
        index_text *entry; /* the index entry, shared by both indexes */
        bundle_outcome out;
        json_object *old_published; /* the Published condition kept when not publishing */
        char *render_err, *store_err, *cm_err; /* job_err() */
        unsigned pending;
        int result;
        bool deleting; /* finalizer/orphan cleanup instead of publication */
        bool parked;   /* waiting for an index write without a worker */
        bool remove_finalizer;
        bool new_revision;
        bool store_written, cm_written; /* a target wrote something (see controller_stats) */
        uint64_t started;               /* loop clock, for opts.reconcile_time */
        objstore_op *store_op;
        kube_request *cm_req, *cr_req;
        job *prev, *next;
};

static void job_free(job *j) {
        controller *c = j->ctl;

        if (j->prev)
                j->prev->next = j->next;
        else
                c->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        objstore_op_cancel(j->store_op);
        kube_request_cancel(j->cm_req);
        kube_request_cancel(j->cr_req);
        json_object_put(j->cr);
        index_text_unref(j->entry);
        json_object_put(j->old_published);
        render_result_free(j->rendered);
        free(j->key);
        free(j->ns);
        free(j->name);
        free(j->object_key);
        free(j->cm_name);
        free(j->render_err);
        free(j->store_err);
        free(j->cm_err);
        free(j);
}

/* Sets one of the job's error messages (NULL on allocation failure). */
static void job_err(char **dst, const char *fmt, ...) _printf_(2, 3);
static void job_err(char **dst, const char *fmt, ...) {
        va_list ap;

        free(*dst);
        va_start(ap, fmt);
        if (vasprintf(dst, fmt, ap) < 0)
                *dst = NULL;
        va_end(ap);
}

static void job_finish(job *j) {
        controller *c = j->ctl;
        char *key = TAKE_PTR(j->key);
        int r = j->result;

        c->stats.reconciles++;
        if (r < 0)
                c->stats.reconcile_errors++;
        if (!c->shutting_down)
                metric_observe(c->opts.reconcile_time, CONTROLLER_METRICS_LABEL,
                               (double) (loop_now(c->event) - j->started) / USEC_PER_SEC);
        job_free(j);
        if (!c->shutting_down)
                workqueue_done(c->queue, key, r);
        free(key);
}

static void job_fail(job *j, int r) {
        if (r < 0 && j->result >= 0)
                j->result = r;
}

static void job_status(job *j);
static void job_cleanup_finish(job *j);

static void job_status_resume(void *userdata) {
        job_status(userdata);
}

/* Ends one async step; the last one moves the job on. */
static void step_done(job *j) {
        assert(j->pending > 0);
        if (--j->pending > 0)
                return;
        if (j->ctl->shutting_down) {
                job_finish(j);
                return;
        }
        if (j->deleting)
                job_cleanup_finish(j);
        else if (j->parked) {
                /* The status write needs a worker again. */
                j->parked = false;
                workqueue_unpark(j->ctl->queue, j->key, job_status_resume, j);
        } else
                job_status(j);
}

/* ---- the object store ---------------------------------------------------- */

static void on_store_index_synced(int r, const err_info *err, void *userdata) {
        job *j = userdata;

        if (r < 0) {
                job_err(&j->store_err, "writing %s: %s", BUNDLE_INDEX_KEY,
                        err ? err->message : strerror(-r));
                j->out.store = TARGET_FAILED;
                job_fail(j, r);
        } else if (!j->deleting) {
                j->out.store = TARGET_OK;
                j->store_written = true;
        }
        step_done(j);
}

/* Sets j->entry: one text that both indexes then hold (index_set_text()). */
static int index_entry_for(job *j) {
        json_object *spec = jsonx_get(j->cr, "spec");
        _cleanup_json_ json_object *e = publish_index_entry(
                &j->id, j->out.revision, j->rendered->digest, j->object_key, j->cm_name,
                jsonx_get(spec, "nodeSelector"), jsonx_get_string(spec, "reload"));

        if (!e)
                return -ENOMEM;
        return index_text_new(e, &j->entry);
}

/* True if @ix already stores @entry for @key: an unchanged bundle then costs
 * no index write and no wait for one. */
static bool index_holds_persisted(bundle_index *ix, const char *key, index_text *entry) {
        return index_holds_text(ix, key, entry) && index_is_persisted(ix);
}

static void store_index_update(job *j) {
        int r;

        if (index_holds_persisted(j->ctl->store_index, j->key, j->entry)) {
                index_share(j->ctl->store_index, j->key, j->entry);
                j->out.store = TARGET_OK;
                step_done(j);
                return;
        }
        r = index_set_text(j->ctl->store_index, j->key, j->entry);
        if (r >= 0)
                r = index_sync(j->ctl->store_index, on_store_index_synced, j);
        if (r < 0) {
                job_err(&j->store_err, "updating the index: %s", strerror(-r));
                j->out.store = TARGET_FAILED;
                job_fail(j, r);
                step_done(j);
        } else if (workqueue_park(j->ctl->queue, j->key))
                /* Waiting for the coalesced write needs no worker. */
                j->parked = true;
}

static void on_manifest_put(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                            void *userdata) {
        job *j = userdata;

        j->store_op = NULL;
        if (r == -EEXIST)
                r = 0; /* content-addressed: an existing object is this very manifest */
        if (r < 0) {
                job_err(&j->store_err, "writing %s: %s", j->object_key,
                        err ? err->message : strerror(-r));
                j->out.store = TARGET_FAILED;
                job_fail(j, r);
                step_done(j);
                return;
        }
        j->ctl->stats.manifest_puts++;
        j->store_written = true;
        store_index_update(j);
}

static void publish_store(job *j) {
        controller *c = j->ctl;
        objstore_put_opts po = {.content_type = "application/json", .create_only = true};
        json_object *entry;
        int r;

        j->pending++;
        if (!c->store) {
                j->out.store = TARGET_DISABLED;
                step_done(j);
                return;
        }
        if (!c->store_index_loaded) {
                job_err(&j->store_err,
                        "the object store's %s has not been read yet (is the object store "
                        "reachable?)",
                        BUNDLE_INDEX_KEY);
                j->out.store = TARGET_FAILED;
                job_fail(j, -EAGAIN);
                step_done(j);
                return;
        }
        /* The manifest is already there (a resync, or after a restart): at most
         * the index needs a write, and store_index_update() skips even that
         * when the entry is unchanged. */
        entry = index_get(c->store_index, j->key);
        if (entry && jsonx_get_int(entry, "revision", 0) == j->out.revision &&
            streq(strempty(jsonx_get_string(entry, "digest")), j->rendered->digest)) {
                store_index_update(j);
                return;
        }
        r = objstore_put(c->store, j->object_key, j->rendered->manifest, j->rendered->manifest_len,
                         &po, on_manifest_put, j, &j->store_op);
        if (r < 0) {
                job_err(&j->store_err, "writing %s: %s", j->object_key, strerror(-r));
                j->out.store = TARGET_FAILED;
                job_fail(j, r);
                step_done(j);
        }
}

/* ---- ConfigMaps ------------------------------------------------------------ */

static void on_cm_index_synced(int r, const err_info *err, void *userdata) {
        job *j = userdata;

        if (r < 0) {
                job_err(&j->cm_err, "writing ConfigMap %s: %s", BUNDLE_INDEX_CONFIGMAP,
                        err ? err->message : strerror(-r));
                j->out.cm = TARGET_FAILED;
                job_fail(j, r);
        } else if (!j->deleting) {
                j->out.cm = TARGET_OK;
                j->cm_written = true;
        }
        step_done(j);
}

static void cm_index_update(job *j) {
        int r;

        if (index_holds_persisted(j->ctl->cm_index, j->key, j->entry)) {
                index_share(j->ctl->cm_index, j->key, j->entry);
                j->out.cm = TARGET_OK;
                step_done(j);
                return;
        }
        r = index_set_text(j->ctl->cm_index, j->key, j->entry);
        if (r >= 0)
                r = index_sync(j->ctl->cm_index, on_cm_index_synced, j);
        if (r < 0) {
                job_err(&j->cm_err, "updating the index: %s", strerror(-r));
                j->out.cm = TARGET_FAILED;
                job_fail(j, r);
                step_done(j);
        } else if (workqueue_park(j->ctl->queue, j->key))
                /* Waiting for the coalesced write needs no worker. */
                j->parked = true;
}

static void on_cm_applied(kube_client *k, int r, json_object *obj, const err_info *err,
                          void *userdata) {
        job *j = userdata;

        j->cm_req = NULL;
        if (r < 0) {
                job_err(&j->cm_err, "applying ConfigMap %s: %s", j->cm_name,
                        err ? err->message : strerror(-r));
                j->out.cm = TARGET_FAILED;
                job_fail(j, r);
                step_done(j);
                return;
        }
        j->ctl->stats.cm_writes++;
        j->cm_written = true;
        cm_index_update(j);
}

static void publish_cm(job *j) {
        controller *c = j->ctl;
        _cleanup_json_ json_object *desired = NULL;
        _cleanup_free_ char *cm_key = NULL;
        json_object *spec = jsonx_get(j->cr, "spec");
        bool in_cm = true;
        int r;

        j->pending++;
        r = publish_build_configmap(c->namespace, j->cm_name, &j->id, j->out.revision, j->rendered,
                                    c->store ? j->object_key : NULL,
                                    jsonx_get(spec, "nodeSelector"),
                                    jsonx_get_string(spec, "reload"), &desired, &in_cm);
        if (r < 0)
                goto fail;
        j->out.manifest_in_cm = in_cm;
        if (asprintf(&cm_key, "%s/%s", c->namespace, j->cm_name) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if (publish_configmap_is_current(kube_store_get(kube_watch_get_store(c->cm_watch), cm_key),
                                         desired)) {
                cm_index_update(j);
                return;
        }
        r = kube_apply_object(c->kube, &KUBE_RESOURCE_CONFIGMAPS, c->namespace, desired, NULL,
                              PUBLISH_FIELD_MANAGER, true, on_cm_applied, j, &j->cm_req);
        if (r >= 0)
                return;
fail:
        job_err(&j->cm_err, "applying ConfigMap %s: %s", j->cm_name, strerror(-r));
        j->out.cm = TARGET_FAILED;
        job_fail(j, r);
        step_done(j);
}

/* ---- status ----------------------------------------------------------------- */

static void on_status_applied(kube_client *k, int r, json_object *obj, const err_info *err,
                              void *userdata) {
        job *j = userdata;

        j->cr_req = NULL;
        if (r < 0) {
                log_object_warning_errno(r, j->key, "Failed to write status: %s",
                                         err ? err->message : "");
                job_fail(j, r);
                j->ctl->stats.status_write_errors++;
        } else
                j->ctl->stats.status_writes++;
        job_finish(j);
}

/* Replaces the Published condition in @status with @kept (when not publishing,
 * the last word on publication stands). */
static void keep_published(json_object *status, json_object *kept) {
        json_object *conds = jsonx_get(status, "conditions");
        size_t n = conds ? json_object_array_length(conds) : 0;

        for (size_t i = 0; kept && i < n; i++) {
                json_object *cond = json_object_array_get_idx(conds, i);

                if (streq(strempty(jsonx_get_string(cond, "type")), "Published")) {
                        json_object_array_put_idx(conds, i, json_object_get(kept));
                        return;
                }
        }
}

/* True unless the status already reports this very render failure (so a
 * resync doesn't post the same event again). */
static bool render_error_is_new(job *j) {
        json_object *conds = jsonx_get(jsonx_get(j->cr, "status"), "conditions");
        size_t n = conds ? json_object_array_length(conds) : 0;

        for (size_t i = 0; i < n; i++) {
                json_object *cond = json_object_array_get_idx(conds, i);

                if (streq(strempty(jsonx_get_string(cond, "type")), "Rendered"))
                        return !streq(strempty(jsonx_get_string(cond, "status")), "False") ||
                               !streq(strempty(jsonx_get_string(cond, "message")),
                                      strempty(j->render_err));
        }
        return true;
}

/* One outcome of a target per reconcile: see controller_stats. */
static void count_publish(target_state state, bool written, uint64_t *ok, uint64_t *failed) {
        if (state == TARGET_FAILED)
                (*failed)++;
        else if (written)
                (*ok)++;
}

json_object *controller_status_body(const char *ns, const char *name, json_object *status) {
        _cleanup_json_ json_object *body = json_object_new_object();
        json_object *meta = json_object_new_object();

        if (!body || !meta) {
                json_object_put(meta);
                json_object_put(status);
                return NULL;
        }
        json_object_object_add(body, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(body, "kind", json_object_new_string("ConfigBundle"));
        json_object_object_add(meta, "name", json_object_new_string(name));
        json_object_object_add(meta, "namespace", json_object_new_string(ns));
        json_object_object_add(body, "metadata", meta);
        json_object_object_add(body, "status", status);
        return TAKE_PTR(body);
}

static void job_status(job *j) {
        controller *c = j->ctl;
        _cleanup_json_ json_object *status = NULL, *body = NULL;
        json_object *old = jsonx_get(j->cr, "status");
        char now[32];
        int r;

        count_publish(j->out.store, j->store_written, &c->stats.store_publishes,
                      &c->stats.store_publish_errors);
        count_publish(j->out.cm, j->cm_written, &c->stats.cm_publishes,
                      &c->stats.cm_publish_errors);

        if (j->new_revision && j->out.store != TARGET_FAILED && j->out.cm != TARGET_FAILED) {
                c->stats.revisions++;
                log_object_info(j->key, "Published revision %" PRIi64 " (%s)", j->out.revision,
                                j->rendered->digest);
                if (recorder_emit(c->recorder, j->cr, "Normal", "Published",
                                  "Published revision %" PRIi64 " (%s)", j->out.revision,
                                  j->rendered->digest) > 0)
                        c->stats.events++;
        }
        if (j->out.store == TARGET_FAILED || j->out.cm == TARGET_FAILED) {
                log_object_warning(j->key,
                                   "Publication incomplete: object store: %s; ConfigMap: %s",
                                   j->out.store == TARGET_FAILED ? strempty(j->store_err) : "ok",
                                   j->out.cm == TARGET_FAILED ? strempty(j->cm_err) : "ok");
                if (recorder_emit(c->recorder, j->cr, "Warning", "PublishFailed",
                                  "Revision %" PRIi64 ": object store: %s; ConfigMap: %s",
                                  j->out.revision,
                                  j->out.store == TARGET_FAILED ? strempty(j->store_err) : "ok",
                                  j->out.cm == TARGET_FAILED ? strempty(j->cm_err) : "ok") > 0)
                        c->stats.events++;
        }
        if (!j->out.rendered && render_error_is_new(j) &&
            recorder_emit(c->recorder, j->cr, "Warning", "RenderFailed", "%s",
                          strempty(j->render_err)) > 0)
                c->stats.events++;

        /* With an object store the counts are always there (0 until agents
         * report), so the first fleet pass doesn't rewrite every status. */
        if (c->fleet && j->out.revision > 0) {
                j->out.has_counts = true;
                fleet_counts(c->fleet, j->key, j->out.digest, &j->out.matched, &j->out.applied,
                             &j->out.failed);
        }
        /* Set now: the messages were written as the targets answered. */
        j->out.store_error = strempty(j->store_err);
        j->out.cm_error = strempty(j->cm_err);
        status_format_now(now);
        r = status_build(old, &j->out, now, &status);
        if (r < 0) {
                job_fail(j, r);
                job_finish(j);
                return;
        }
        keep_published(status, j->old_published);
        if (status_equal(old, status)) {
                job_finish(j);
                return;
        }
        body = controller_status_body(j->ns, j->name, TAKE_PTR(status));
        if (!body) {
                job_fail(j, -ENOMEM);
                job_finish(j);
                return;
        }
        r = kube_apply_object(c->kube, &RESOURCE_CONFIGBUNDLES, j->ns, body, "status",
                              PUBLISH_FIELD_MANAGER, true, on_status_applied, j, &j->cr_req);
        if (r < 0) {
                c->stats.status_write_errors++;
                job_fail(j, r);
                job_finish(j);
        }
}

/* ---- rendering: which revision to publish ---------------------------------- */

/* What the indexes say was published for this key, beyond the status: a
 * revision published by a previous incarnation (another uid) is a floor the
 * new one must exceed, so agents never see a revision go backwards; one of
 * this uid newer than the status means the status write was lost. */
static void consult_index(bundle_index *ix, job *j, int64_t *floor, int64_t *rev,
                          char digest[static BUNDLE_DIGEST_SIZE]) {
        json_object *e = ix ? index_get(ix, j->key) : NULL;
        int64_t er;

        if (!e)
                return;
        er = jsonx_get_int(e, "revision", 0);
        if (!streq(strempty(jsonx_get_string(e, "uid")), strempty(j->id.uid)))
                *floor = MAX(*floor, er);
        else if (er > *rev) {
                *rev = er;
                snprintf(digest, BUNDLE_DIGEST_SIZE, "%s", strempty(jsonx_get_string(e, "digest")));
        }
}

static int job_render(job *j) {
        controller *c = j->ctl;
        json_object *spec = jsonx_get(j->cr, "spec"), *old_status = jsonx_get(j->cr, "status");
        int64_t rev = jsonx_get_int(old_status, "revision", 0), floor = 0;
        char digest[BUNDLE_DIGEST_SIZE];
        err_info e;
        int r;

        snprintf(digest, sizeof(digest), "%s", strempty(jsonx_get_string(old_status, "digest")));
        consult_index(c->store_index_loaded ? c->store_index : NULL, j, &floor, &rev, digest);
        consult_index(c->cm_index_loaded ? c->cm_index : NULL, j, &floor, &rev, digest);
        j->out.suspended = jsonx_get_bool(spec, "suspend", false);

        err_info_clear(&e);
        if (rev >= 1) {
                r = render_bundle(spec, &j->id, rev, &j->rendered, &e);
                if (r >= 0 && streq(j->rendered->digest, digest)) {
                        j->out.revision = rev;
                        j->out.rendered = true;
                        return 0; /* unchanged */
                }
                j->rendered = render_result_free(j->rendered);
                if (r < 0)
                        goto failed;
        }
        if (j->out.suspended) {
                /* Nothing new is published; what was published stays. */
                j->out.rendered = true;
                j->out.revision = rev;
                return 1;
        }
        r = render_bundle(spec, &j->id, MAX(rev, floor) + 1, &j->rendered, &e);
        if (r < 0)
                goto failed;
        j->out.revision = MAX(rev, floor) + 1;
        j->out.rendered = true;
        j->new_revision = true;
        return 0;

failed:
        job_err(&j->render_err, "%s", e.message[0] ? e.message : strerror(-r));
        j->out.render_error = strempty(j->render_err);
        j->out.rendered = false;
        j->out.revision = rev;
        /* A resync of a bundle that still doesn't render is not news. */
        log_object_full_errno(render_error_is_new(j) ? LOG_WARNING : LOG_DEBUG, 0, j->key,
                              "Does not render: %s", strempty(j->render_err));
        return 1;
}

/* Once both targets have their requests (each holds its own copy of what it
 * sends), the job only waits: for them, for the index writes (parked, see
 * workqueue_park()) and then to write the status. Hundreds of jobs can be
 * waiting at once, so they let go of the manifest and the spec; the status,
 * metadata and digest are all that is left to read. */
static void job_slim(job *j) {
        j->rendered->manifest = mfree(j->rendered->manifest);
        j->rendered->manifest_len = 0;
        json_object_object_del(j->cr, "spec");
}

static void job_publish(job *j) {
        json_object *old_status = jsonx_get(j->cr, "status");
        int r;

        j->out.generation = jsonx_get_int(j->cr, "metadata.generation", 0);
        r = job_render(j);
        if (r < 0) {
                job_fail(j, r);
                job_finish(j);
                return;
        }
        if (r > 0) {
                /* Not publishing (render failure, suspended): keep the last word. */
                json_object *conds = jsonx_get(old_status, "conditions");
                size_t n = conds ? json_object_array_length(conds) : 0;

                for (size_t i = 0; i < n; i++) {
                        json_object *cond = json_object_array_get_idx(conds, i);
                        if (streq(strempty(jsonx_get_string(cond, "type")), "Published"))
                                j->old_published = json_object_get(cond);
                }
                j->out.digest = jsonx_get_string(old_status, "digest");
                j->out.config_map = jsonx_get_string(old_status, "configMap");
                j->out.object_key = jsonx_get_string(old_status, "objectKey");
                j->out.store = j->out.cm = TARGET_OK;
                j->out.manifest_in_cm = true;
                job_status(j);
                return;
        }
        if (bundle_object_key(j->ns, j->name, j->rendered->digest, &j->object_key) < 0 ||
            publish_configmap_name(j->ns, j->name, &j->cm_name) < 0) {
                job_fail(j, -ENOMEM);
                job_finish(j);
                return;
        }
        if (index_entry_for(j) < 0) {
                job_fail(j, -ENOMEM);
                job_finish(j);
                return;
        }
        j->out.digest = j->rendered->digest;
        j->out.config_map = j->cm_name;
        j->out.object_key = j->ctl->store ? j->object_key : NULL;
        /* Both targets at once; step_done() moves on to the status. */
        j->pending++;
        publish_store(j);
        publish_cm(j);
        job_slim(j);
        step_done(j);
}

/* ---- finalizer and cleanup ------------------------------------------------ */

static bool has_finalizer(json_object *cr) {
        json_object *f = jsonx_get(cr, "metadata.finalizers");
        size_t n = f && json_object_is_type(f, json_type_array) ? json_object_array_length(f) : 0;

        for (size_t i = 0; i < n; i++)
                if (streq(strempty(json_object_get_string(json_object_array_get_idx(f, i))),
                          PUBLISH_FINALIZER))
                        return true;
        return false;
}

int controller_finalizer_patch(json_object *cr, bool add, char **ret) {
        _cleanup_json_ json_object *patch = json_object_new_object();
        json_object *meta = json_object_new_object(), *list = json_object_new_array();
        json_object *f = jsonx_get(cr, "metadata.finalizers");
        size_t n = f && json_object_is_type(f, json_type_array) ? json_object_array_length(f) : 0;
        size_t len;

        if (!patch || !meta || !list) {
                json_object_put(meta);
                json_object_put(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *item = json_object_array_get_idx(f, i);
                if (!streq(strempty(json_object_get_string(item)), PUBLISH_FINALIZER))
                        json_object_array_add(list, json_object_get(item));
        }
        if (add)
                json_object_array_add(list, json_object_new_string(PUBLISH_FINALIZER));
        json_object_object_add(meta, "finalizers", list);
        json_object_object_add(
                meta, "resourceVersion",
                json_object_new_string(strempty(jsonx_get_string(cr, "metadata.resourceVersion"))));
        json_object_object_add(patch, "metadata", meta);
        return jsonx_to_canonical(patch, ret, &len);
}

static void on_finalizer_added(kube_client *k, int r, json_object *obj, const err_info *err,
                               void *userdata) {
        job *j = userdata;

        j->cr_req = NULL;
        if (r < 0) {
                log_object_full_errno(r == -ESTALE ? LOG_DEBUG : LOG_WARNING, r, j->key,
                                      "Failed to add the finalizer: %s", err ? err->message : "");
                job_fail(j, r);
                job_finish(j);
                return;
        }
        j->ctl->stats.cr_writes++;
        /* j->id.uid pointed into the old object: take it from the new one. */
        json_object_put(j->cr);
        j->cr = json_object_get(obj);
        if (jsonx_get(j->cr, "metadata"))
                json_object_object_del(jsonx_get(j->cr, "metadata"), "managedFields");
        j->id.uid = jsonx_get_string(j->cr, "metadata.uid");
        job_publish(j);
}

static void on_finalizer_removed(kube_client *k, int r, json_object *obj, const err_info *err,
                                 void *userdata) {
        job *j = userdata;

        j->cr_req = NULL;
        if (r < 0 && r != -ENOENT) {
                log_object_full_errno(r == -ESTALE ? LOG_DEBUG : LOG_WARNING, r, j->key,
                                      "Failed to remove the finalizer: %s",
                                      err ? err->message : "");
                job_fail(j, r);
        } else {
                j->ctl->stats.cr_writes++;
                log_object_info(j->key,
                                "Deleted: removed from both indexes, its ConfigMap deleted");
        }
        job_finish(j);
}

static void job_cleanup_finish(job *j) {
        _cleanup_free_ char *patch = NULL;
        int r;

        if (j->result < 0 || !j->remove_finalizer) {
                job_finish(j);
                return;
        }
        r = controller_finalizer_patch(j->cr, false, &patch);
        if (r >= 0)
                r = kube_patch_object(j->ctl->kube, &RESOURCE_CONFIGBUNDLES, j->ns, j->name, NULL,
                                      KUBE_PATCH_MERGE, patch, strlen(patch), NULL,
                                      on_finalizer_removed, j, &j->cr_req);
        if (r < 0) {
                job_fail(j, r);
                job_finish(j);
        }
}

static void on_cm_deleted(kube_client *k, int r, json_object *obj, const err_info *err,
                          void *userdata) {
        job *j = userdata;

        j->cm_req = NULL;
        if (r < 0 && r != -ENOENT) {
                job_err(&j->cm_err, "deleting ConfigMap %s: %s", j->cm_name,
                        err ? err->message : strerror(-r));
                job_fail(j, r);
        } else if (r >= 0)
                j->ctl->stats.cm_writes++;
        step_done(j);
}

/* Removes @j's bundle from both indexes and deletes its ConfigMap. */
static void job_cleanup(job *j) {
        controller *c = j->ctl;
        _cleanup_free_ char *cm_key = NULL;
        int r;

        j->deleting = true;
        j->pending++;
        if (publish_configmap_name(j->ns, j->name, &j->cm_name) < 0 ||
            asprintf(&cm_key, "%s/%s", c->namespace, j->cm_name) < 0) {
                job_fail(j, -ENOMEM);
                step_done(j);
                return;
        }
        if (c->store) {
                j->pending++;
                if (!c->store_index_loaded) {
                        job_fail(j, -EAGAIN); /* retried once the index is readable */
                        step_done(j);
                } else if (!index_contains(c->store_index, j->key))
                        step_done(j);
                else {
                        index_remove(c->store_index, j->key);
                        if (index_sync(c->store_index, on_store_index_synced, j) < 0) {
                                job_fail(j, -ENOMEM);
                                step_done(j);
                        }
                }
        }
        if (index_contains(c->cm_index, j->key)) {
                j->pending++;
                index_remove(c->cm_index, j->key);
                if (index_sync(c->cm_index, on_cm_index_synced, j) < 0) {
                        job_fail(j, -ENOMEM);
                        step_done(j);
                }
        }
        if (kube_store_contains(kube_watch_get_store(c->cm_watch), cm_key)) {
                j->pending++;
                r = kube_delete_object(c->kube, &KUBE_RESOURCE_CONFIGMAPS, c->namespace, j->cm_name,
                                       NULL, on_cm_deleted, j, &j->cm_req);
                if (r < 0) {
                        job_fail(j, r);
                        step_done(j);
                }
        }
        step_done(j);
}

/* ---- the reconcile ---------------------------------------------------------- */

static void reconcile(workqueue *q, const char *key, void *userdata) {
        controller *c = userdata;
        _cleanup_free_ char *patch = NULL;
        const char *slash = strchr(key, '/');
        json_object *cr;
        job *j;
        int r;

        j = calloc(1, sizeof(*j));
        if (!j || !slash || !(j->key = strdup(key)) || !(j->ns = strndup(key, slash - key)) ||
            !(j->name = strdup(slash + 1))) {
                if (j) {
                        free(j->key);
                        free(j->ns);
                        free(j);
                }
                workqueue_done(q, key, slash ? -ENOMEM : 0);
                return;
        }
        j->ctl = c;
        j->started = loop_now(c->event);
        j->next = c->jobs;
        if (c->jobs)
                c->jobs->prev = j;
        c->jobs = j;

        cr = kube_store_get(kube_watch_get_store(c->cr_watch), key);
        if (!cr) {
                /* Gone without our finalizer having run: clean up what we published. */
                job_cleanup(j);
                return;
        }
        j->cr = json_object_get(cr);
        j->id = (render_identity){.namespace = j->ns,
                                  .name = j->name,
                                  .uid = jsonx_get_string(j->cr, "metadata.uid")};
        if (jsonx_get(j->cr, "metadata.deletionTimestamp")) {
                j->remove_finalizer = has_finalizer(j->cr);
                if (j->remove_finalizer)
                        job_cleanup(j);
                else
                        job_finish(j);
                return;
        }
        if (!has_finalizer(j->cr)) {
                r = controller_finalizer_patch(j->cr, true, &patch);
                if (r >= 0)
                        r = kube_patch_object(c->kube, &RESOURCE_CONFIGBUNDLES, j->ns, j->name,
                                              NULL, KUBE_PATCH_MERGE, patch, strlen(patch), NULL,
                                              on_finalizer_added, j, &j->cr_req);
                if (r < 0) {
                        job_fail(j, r);
                        job_finish(j);
                }
                return;
        }
        job_publish(j);
}

/* ---- caches ------------------------------------------------------------------ */

static void enqueue_object(controller *c, json_object *obj) {
        _cleanup_free_ char *key = NULL;

        if (kube_object_key(obj, &key) >= 0)
                (void) workqueue_add(c->queue, key);
}

static void on_cr_add(kube_watch *w, json_object *obj, void *userdata) {
        enqueue_object(userdata, obj);
}

/* Status writes and other changes that don't touch the spec (metadata.generation),
 * deletion or our finalizer's removal don't need a reconcile: that is what
 * keeps our own status writes from looping back. Adding the finalizer is our
 * own doing too, by the reconcile that goes on to publish; another one right
 * after it would read the cache before our status write reaches it and write
 * the same status again. */
static void on_cr_update(kube_watch *w, json_object *old, json_object *obj, void *userdata) {
        if (jsonx_get_int(old, "metadata.generation", -1) ==
                    jsonx_get_int(obj, "metadata.generation", -2) &&
            !jsonx_get(old, "metadata.deletionTimestamp") ==
                    !jsonx_get(obj, "metadata.deletionTimestamp") &&
            !(has_finalizer(old) && !has_finalizer(obj)))
                return;
        enqueue_object(userdata, obj);
}

static void on_cr_delete(kube_watch *w, json_object *obj, void *userdata) {
        enqueue_object(userdata, obj);
}

/* Reconciling starts once the caches are synced and the indexes read. If
 * the object store can't be read, STORE_GRACE_USEC later it starts anyway,
 * so the ConfigMaps keep being published through an object-store outage;
 * waiting that long first keeps a restart with a healthy store from writing
 * a transient failure into every status. */
#define STORE_GRACE_USEC (10 * USEC_PER_SEC)

static void maybe_start_reconciling(controller *c) {
        bool ready = c->leading && c->cr_synced && c->cm_synced && c->cm_index_loaded &&
                     (!c->store || c->store_index_loaded || c->store_grace_over);

        /* The index ConfigMap held only a summary: its entries are those of
         * index.json, which the object store has in full. */
        if (ready && c->cm_index_summary && c->store_index_loaded &&
            index_count(c->cm_index) == 0) {
                c->cm_index_summary = false;
                if (index_adopt(c->cm_index, c->store_index, c->cm_index_summary_count) < 0)
                        log_warning("Out of memory taking the index ConfigMap's entries from %s",
                                    BUNDLE_INDEX_KEY);
        }
        workqueue_set_paused(c->queue, !ready);
}

/* What the ConfigBundle cache keeps: all but kubectl's copy of the last
 * applied object, which doubles the size of every bundle created with
 * `kubectl apply` and is never read here. */
static json_object *cr_slim(json_object *cr, void *userdata) {
        json_object *ann = jsonx_get(cr, "metadata.annotations"), *copy = NULL;

        (void) userdata;
        if (!json_object_object_get_ex(ann, LAST_APPLIED_ANNOTATION, NULL))
                return json_object_get(cr);
        if (json_object_deep_copy(cr, &copy, NULL) < 0)
                return NULL;
        json_object_object_del(jsonx_get(copy, "metadata.annotations"), LAST_APPLIED_ANNOTATION);
        return copy;
}

static int enqueue_cr(const char *key, void *userdata) {
        controller *c = userdata;

        (void) workqueue_add(c->queue, key);
        return 0;
}

static int enqueue_orphan(const char *key, void *userdata) {
        controller *c = userdata;

        if (!kube_store_contains(kube_watch_get_store(c->cr_watch), key))
                (void) workqueue_add(c->queue, key);
        return 0;
}

/* Every bundle, and every index entry whose bundle no longer exists. */
static void enqueue_all(controller *c) {
        kube_store_foreach_key(kube_watch_get_store(c->cr_watch), enqueue_cr, c);
        if (c->cm_index_loaded)
                index_foreach_key(c->cm_index, enqueue_orphan, c);
        if (c->store_index_loaded)
                index_foreach_key(c->store_index, enqueue_orphan, c);
}

static void on_cr_synced(kube_watch *w, void *userdata) {
        controller *c = userdata;

        c->cr_synced = true;
        log_info("ConfigBundle cache synced (%zu bundles)",
                 kube_store_count(kube_watch_get_store(w)));
        maybe_start_reconciling(c);
}

static void load_cm_index(controller *c) {
        _cleanup_free_ char *key = NULL;
        json_object *cm, *data;
        err_info e;
        int r;

        if (asprintf(&key, "%s/%s", c->namespace, BUNDLE_INDEX_CONFIGMAP) < 0)
                return;
        cm = kube_store_get(kube_watch_get_store(c->cm_watch), key);
        data = cm ? json_object_object_get(jsonx_get(cm, "data"), BUNDLE_INDEX_KEY) : NULL;
        if (data) {
                r = index_load(c->cm_index, json_object_get_string(data),
                               (size_t) json_object_get_string_len(data), &e);
                if (r < 0)
                        log_warning_errno(r, "Ignoring ConfigMap %s: %s", key, e.message);
                c->cm_index_summary = r >= 0 && index_count(c->cm_index) == 0 &&
                                      strstr(json_object_get_string(data), "\"truncated\":true");
                if (c->cm_index_summary) {
                        /* A summary is small: parse it for its count. */
                        _cleanup_json_ json_object *doc = NULL;

                        if (jsonx_parse(json_object_get_string(data),
                                        (size_t) json_object_get_string_len(data), &doc, NULL) >= 0)
                                c->cm_index_summary_count =
                                        (size_t) MAX(jsonx_get_int(doc, "count", 0), 0);
                }
        }
        c->cm_index_loaded = true;
        index_set_hold(c->cm_index, false);
}

static void on_cm_synced(kube_watch *w, void *userdata) {
        controller *c = userdata;

        c->cm_synced = true;
        if (c->leading && !c->cm_index_loaded)
                load_cm_index(c);
        maybe_start_reconciling(c);
}

/* A bundle ConfigMap deleted or changed by someone else: repair it. */
static void on_cm_delete(kube_watch *w, json_object *obj, void *userdata) {
        controller *c = userdata;
        const char *bundle = json_object_get_string(
                json_object_object_get(jsonx_get(obj, "metadata.annotations"), BUNDLE_ANN_BUNDLE));
        if (bundle && strchr(bundle, '/'))
                (void) workqueue_add(c->queue, bundle);
        else if (streq(strempty(jsonx_get_string(obj, "metadata.name")), BUNDLE_INDEX_CONFIGMAP))
                enqueue_all(c);
}

/* ---- index sinks and loading --------------------------------------------------- */

static void on_store_index_put(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                               void *userdata) {
        controller *c = userdata;

        c->store_index_op = NULL;
        c->store_index_done(c->store_index, r, err);
}

/* One write at a time per index: the index waits for @done before the next. */
static int store_index_sink(bundle_index *ix, index_doc *doc, size_t len, index_sink_done_fn done,
                            void *userdata) {
        controller *c = userdata;
        /* Read from the index's entries as it is sent: a document of
         * megabytes is never held whole. */
        objstore_put_opts po = {.content_type = "application/json",
                                .body_fn = index_doc_read,
                                .body_userdata = doc};

        if (!doc)
                return -EINVAL; /* the object store has no size limit */
        /* The index read the document for its digest: one pass less. */
        index_doc_digests(doc, &po.sha256, &po.md5);
        c->store_index_done = done;
        c->stats.index_writes++;
        return objstore_put(c->store, BUNDLE_INDEX_KEY, NULL, len, &po, on_store_index_put, c,
                            &c->store_index_op);
}

static void on_cm_index_applied(kube_client *k, int r, json_object *obj, const err_info *err,
                                void *userdata) {
        controller *c = userdata;

        c->cm_index_req = NULL;
        if (r >= 0)
                c->stats.cm_writes++;
        c->cm_index_done(c->cm_index, r, err);
}

static int on_cm_index_skip(sd_event_source *s, uint64_t usec, void *userdata) {
        controller *c = userdata;

        c->cm_index_done(c->cm_index, 0, NULL);
        return 0;
}

/* True if the cached index ConfigMap already holds @cm's data: nothing to
 * write. After a restart over an index past 900 KiB the ConfigMap holds
 * the summary while the index itself is rebuilt entry by entry, and each
 * coalesced write would otherwise apply the same summary again. */
static bool cm_index_is_current(controller *c, json_object *cm) {
        _cleanup_free_ char *key = NULL;
        json_object *have, *want;

        if (asprintf(&key, "%s/%s", c->namespace, BUNDLE_INDEX_CONFIGMAP) < 0)
                return false;
        have = json_object_object_get(
                jsonx_get(kube_store_get(kube_watch_get_store(c->cm_watch), key), "data"),
                BUNDLE_INDEX_KEY);
        want = json_object_object_get(jsonx_get(cm, "data"), BUNDLE_INDEX_KEY);
        return have && want && json_object_equal(have, want);
}

static int cm_index_sink(bundle_index *ix, index_doc *doc, size_t len, index_sink_done_fn done,
                         void *userdata) {
        controller *c = userdata;
        _cleanup_json_ json_object *cm = NULL;
        _cleanup_free_ char *data = NULL;
        int r;

        if (!doc || len > BUNDLE_CONFIGMAP_MAX_DATA) {
                /* The object store's index.json is the complete one; agents read
                 * bundle ConfigMaps on the API path. Keep a summary. */
                _cleanup_free_ char *summary = NULL;

                if (asprintf(&summary,
                             "{\"apiVersion\":\"" BUNDLE_API_VERSION
                             "\",\"bundles\":{},\"count\":%zu,\"kind\":\"" BUNDLE_KIND_INDEX
                             "\",\"truncated\":true}",
                             index_count(ix)) < 0)
                        return -ENOMEM;
                r = publish_build_index_configmap(c->namespace, summary, strlen(summary), &cm);
        } else {
                r = index_doc_text(doc, &data, &len);
                if (r >= 0)
                        r = publish_build_index_configmap(c->namespace, data, len, &cm);
        }
        if (r < 0)
                return r;
        c->cm_index_done = done;
        if (cm_index_is_current(c, cm))
                /* The sink answers asynchronously, as a write would. */
                return loop_timer_arm(c->event, &c->cm_index_skip, 0, on_cm_index_skip, c);
        return kube_apply_object(c->kube, &KUBE_RESOURCE_CONFIGMAPS, c->namespace, cm, NULL,
                                 PUBLISH_FIELD_MANAGER, true, on_cm_index_applied, c,
                                 &c->cm_index_req);
}

static int on_index_load_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void on_store_index_loaded(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                                  void *userdata) {
        controller *c = userdata;
        err_info e;

        c->index_load_op = NULL;
        if (r == -ENOENT)
                r = 0; /* a new store: nothing published yet */
        else if (r >= 0) {
                r = index_load(c->store_index, obj->data, obj->size, &e);
                if (r < 0) {
                        /* Never overwrite what we can't read: an operator of a newer
                         * version may have written it. Keep retrying, loudly. */
                        log_error_errno(r, "Cannot read the object store's %s: %s",
                                        BUNDLE_INDEX_KEY, e.message);
                }
        }
        if (r < 0) {
                uint64_t d = backoff_next(&c->index_load_backoff, loop_now(c->event));

                if (r != -EBADMSG)
                        log_warning_errno(r, "Failed to read the object store's %s (retrying): %s",
                                          BUNDLE_INDEX_KEY, err ? err->message : "");
                (void) loop_timer_arm(c->event, &c->index_load_timer, d, on_index_load_timer, c);
                return;
        }
        backoff_reset(&c->index_load_backoff);
        c->store_index_loaded = true;
        index_set_hold(c->store_index, false);
        log_info("Read the object store's %s (%zu bundles)", BUNDLE_INDEX_KEY,
                 index_count(c->store_index));
        /* Bundles that failed for want of the index can go now. */
        if (c->leading) {
                loop_timer_disarm(c->grace_timer);
                enqueue_all(c);
                if (c->fleet)
                        fleet_set_active(c->fleet, true);
                maybe_start_reconciling(c);
        }
}

static int on_grace_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        controller *c = userdata;

        if (!c->leading || c->store_index_loaded)
                return 0;
        c->store_grace_over = true;
        log_warning("The object store's %s is still unreadable: publishing to ConfigMaps alone "
                    "until it is back",
                    BUNDLE_INDEX_KEY);
        maybe_start_reconciling(c);
        return 0;
}

static int on_index_load_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        controller *c = userdata;

        if (!c->leading || c->store_index_loaded || c->index_load_op)
                return 0;
        if (objstore_get(c->store, BUNDLE_INDEX_KEY, NULL, on_store_index_loaded, c,
                         &c->index_load_op) < 0)
                (void) loop_timer_arm(c->event, &c->index_load_timer,
                                      backoff_next(&c->index_load_backoff, loop_now(c->event)),
                                      on_index_load_timer, c);
        return 0;
}

static int on_resync(sd_event_source *s, uint64_t usec, void *userdata) {
        controller *c = userdata;

        if (c->leading && c->cr_synced)
                enqueue_all(c);
        /* Jittered so replicas and restarts don't line up. */
        (void) loop_timer_arm(c->event, &c->resync_timer,
                              c->opts.resync_usec - c->opts.resync_usec / 10 +
                                      random_u64_below(c->opts.resync_usec / 5),
                              on_resync, c);
        return 0;
}

/* Node counts of @key moved: write them into its status. */
static void on_fleet_changed(fleet *f, const char *key, void *userdata) {
        controller *c = userdata;

        (void) workqueue_add(c->queue, key);
}

/* ---- life cycle -------------------------------------------------------------- */

int controller_new(sd_event *e, kube_client *kube, objstore *store, const controller_opts *o,
                   controller **ret) {
        _cleanup_(controller_freep) controller *c = NULL;
        workqueue_opts qo = {};
        int r;

        if (!e || !kube || !o || isempty(o->namespace) || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->kube = kube;
        c->store = store;
        c->opts = *o;
        c->namespace = strdup(o->namespace);
        if (!c->namespace)
                return -ENOMEM;
        if (o->watch_namespace && !(c->watch_namespace = strdup(o->watch_namespace)))
                return -ENOMEM;
        if (!c->opts.index_coalesce_usec)
                c->opts.index_coalesce_usec = 200 * USEC_PER_MSEC;
        c->index_load_backoff = BACKOFF_INIT(USEC_PER_SEC, 30 * USEC_PER_SEC, 0);

        r = recorder_new(kube, "ballast-operator", o->identity, &c->recorder);
        if (r < 0)
                return r;
        qo.workers = o->workers;
        r = workqueue_new(e, &qo, reconcile, c, &c->queue);
        if (r < 0)
                return r;
        workqueue_set_paused(c->queue, true);
        if (store) {
                r = index_new(e, store_index_sink, c, c->opts.index_coalesce_usec, &c->store_index);
                if (r < 0)
                        return r;
                index_set_hold(c->store_index, true);

                fleet_opts fo = {
                        .interval_usec = o->fleet_interval_usec,
                        .retention_usec = o->manifest_retention_usec,
                        .gc = true,
                        .changed = on_fleet_changed,
                        .userdata = c,
                };
                r = fleet_new(e, store, c->store_index, &fo, &c->fleet);
                if (r < 0)
                        return r;
        }
        r = index_new(e, cm_index_sink, c, c->opts.index_coalesce_usec, &c->cm_index);
        if (r < 0)
                return r;
        index_set_max_len(c->cm_index, BUNDLE_CONFIGMAP_MAX_DATA);
        index_set_hold(c->cm_index, true);
        *ret = TAKE_PTR(c);
        return 0;
}

controller *controller_free(controller *c) {
        if (!c)
                return NULL;
        c->shutting_down = true;
        kube_watch_free(c->cr_watch);
        kube_watch_free(c->cm_watch);
        objstore_op_cancel(c->index_load_op);
        objstore_op_cancel(c->store_index_op); /* it borrows the index's bytes */
        kube_request_cancel(c->cm_index_req);
        fleet_free(c->fleet);
        recorder_free(c->recorder);
        /* Fails index waiters, which ends their jobs... */
        index_free(c->store_index);
        index_free(c->cm_index);
        /* ...and whatever is left has nothing else to wait for. */
        while (c->jobs)
                job_free(c->jobs);
        workqueue_free(c->queue);
        sd_event_source_disable_unref(c->index_load_timer);
        sd_event_source_disable_unref(c->cm_index_skip);
        sd_event_source_disable_unref(c->grace_timer);
        sd_event_source_disable_unref(c->resync_timer);
        free(c->namespace);
        free(c->watch_namespace);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

int controller_start(controller *c) {
        /* Streaming lists: the objects arrive one event at a time and are
         * kept as text until the list is whole, where a LIST's response is
         * one document parsed whole (10,000 bundles with their managedFields
         * are ~400 MiB of json-c). The fallback LIST is paged for the same
         * reason. */
        kube_watch_opts cr = {
                .resource = &RESOURCE_CONFIGBUNDLES,
                .namespace = c->watch_namespace,
                .page_size = 100,
                .streaming_list = true,
                .on_add = on_cr_add,
                .on_update = on_cr_update,
                .on_delete = on_cr_delete,
                .on_synced = on_cr_synced,
                .userdata = c,
        };
        kube_watch_opts cm = {
                .resource = &KUBE_RESOURCE_CONFIGMAPS,
                .namespace = c->namespace,
                .label_selector = BUNDLE_SELECTOR_MANAGED,
                .page_size = 100,
                .streaming_list = true,
                .on_delete = on_cm_delete,
                .on_synced = on_cm_synced,
                .userdata = c,
        };
        int r;

        r = kube_watch_start(c->kube, &cr, &c->cr_watch);
        if (r < 0)
                return r;
        r = kube_watch_start(c->kube, &cm, &c->cm_watch);
        if (r < 0)
                return r;
        /* Both caches as text: see kube_store_set_compact(). */
        r = kube_store_set_compact(kube_watch_get_store(c->cr_watch), cr_slim, NULL);
        if (r < 0)
                return r;
        r = kube_store_set_compact(kube_watch_get_store(c->cm_watch), publish_configmap_summary,
                                   NULL);
        if (r < 0)
                return r;
        if (c->opts.resync_usec)
                (void) loop_timer_arm(c->event, &c->resync_timer, c->opts.resync_usec, on_resync,
                                      c);
        return 0;
}

void controller_set_leading(controller *c, bool leading) {
        if (c->leading == leading)
                return;
        c->leading = leading;
        if (!leading) {
                /* Whoever leads next may change the indexes: read them again. */
                workqueue_set_paused(c->queue, true);
                c->store_index_loaded = false;
                c->cm_index_loaded = false;
                if (c->store_index)
                        index_set_hold(c->store_index, true);
                index_set_hold(c->cm_index, true);
                objstore_op_cancel(TAKE_PTR(c->index_load_op));
                loop_timer_disarm(c->index_load_timer);
                loop_timer_disarm(c->grace_timer);
                if (c->fleet)
                        fleet_set_active(c->fleet, false);
                return;
        }
        if (c->cm_synced)
                load_cm_index(c);
        if (c->store) {
                c->store_grace_over = false;
                (void) loop_timer_arm(c->event, &c->index_load_timer, 0, on_index_load_timer, c);
                (void) loop_timer_arm(c->event, &c->grace_timer, STORE_GRACE_USEC, on_grace_timer,
                                      c);
        }
        if (c->cr_synced)
                enqueue_all(c);
        maybe_start_reconciling(c);
}

bool controller_is_synced(const controller *c) {
        /* Only the leader reads the object store's index: a standby is ready
         * once its caches are warm, which is all it needs to take over. (A
         * standby never ready would hold every rollout of the Deployment.) */
        return c->cr_synced && c->cm_synced && (!c->store || !c->leading || c->store_index_loaded);
}

void controller_get_stats(const controller *c, controller_stats *ret) {
        *ret = c->stats;
        ret->queue_depth = workqueue_len(c->queue);
        ret->queue_inflight = workqueue_inflight(c->queue);
        ret->queue_parked = workqueue_parked(c->queue);
        ret->queue_adds = workqueue_adds(c->queue);
        ret->queue_retries = workqueue_retries(c->queue);
        ret->cr_cache_bytes = kube_store_bytes(kube_watch_get_store(c->cr_watch), NULL);
        ret->cm_cache_bytes = kube_store_bytes(kube_watch_get_store(c->cm_watch), NULL);
        ret->index_bytes = index_len_estimate(c->store ? c->store_index : c->cm_index);
        if (c->fleet) {
                fleet_stats fs;

                fleet_get_stats(c->fleet, &fs);
                ret->fleet_reads = fs.reads;
                ret->gc_deletes = fs.gc_deletes;
        }
}

int controller_fleet_pass(controller *c) {
        return c->fleet ? fleet_run_now(c->fleet) : -EOPNOTSUPP;
}
