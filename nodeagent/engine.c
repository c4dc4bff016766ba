/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine: per bundle, what to apply and the apply/rollback sequence. See
 * engine.h and docs/agent.md.
 */

#include <inttypes.h>
#include <time.h>

#include "apply.h"
#include "backoff.h"
#include "engine.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"
#include "manifest.h"
#include "metrics.h"
#include "objstore.h"
#include "selector.h"

typedef enum job_kind {
        JOB_APPLY,
        JOB_REMOVE,
        JOB_RELOAD, /* after a start-up repair */
} job_kind;

typedef enum job_step {
        STEP_CHECK,
        STEP_RELOAD,
        STEP_ROLLBACK_RELOAD,
        STEP_REMOVE_RELOAD,
        STEP_REPAIR_RELOAD,
} job_step;

typedef struct bundle bundle;

typedef struct job {
        engine *engine;
        bundle *bundle;
        job_kind kind;
        job_step step;
        manifest *m;     /* the revision being applied (JOB_APPLY) */
        manifest *lkg_m; /* the rollback target */
        char *staged_name, *staged_path;
        char *reason; /* why the revision failed, during a rollback */
        reload_job *rj;
} job;

struct bundle {
        char *key, *ns, *name;
        char *uid; /* from the top view entry */
        int matched;
        char *last_error;
        int64_t removed_at;
        bool needs_reload; /* repaired at start-up */
        bool listed;       /* in some view at the last evaluation */
        bool no_fetch;     /* the fetcher refused: wait for a view change */

        char fetching[BUNDLE_DIGEST_SIZE]; /* the digest in flight, "" */
        uint64_t fetch_not_before;
        backoff fetch_backoff;
        uint64_t apply_not_before;
        backoff apply_backoff;

        char rejected[ENGINE_MAX_REJECTED][BUNDLE_DIGEST_SIZE + 8]; /* "SOURCE:DIGEST" */
        unsigned n_rejected, next_rejected;

        job *job;
};

struct engine {
        engine_opts o;
        char *root;
        sd_event *event;
        json_object *views[_ENGINE_SOURCE_MAX];
        bool view_live[_ENGINE_SOURCE_MAX]; /* sent since the start, not restored */
        json_object *labels;                /* NULL: unknown */

        bundle **bundles; /* sorted by key */
        size_t n_bundles, n_alloc;
        unsigned n_jobs;
        unsigned n_fetching;

        sd_event_source *eval_defer, *retry_timer;
        uint64_t retry_at;
        engine_stats stats;

        metric *m_applied, *m_lkg, *m_matched, *m_applies, *m_reloads, *m_rollbacks, *m_verify,
                *m_invalid, *m_removals, *m_cache_bytes, *m_failed;
};

typedef struct candidate {
        engine_source source;
        json_object *entry; /* borrowed from the view */
        const char *ns, *name, *uid, *digest, *object_key, *reload;
        int64_t revision;
        json_object *selector;     /* borrowed; NULL: matches all */
        json_object *inline_bytes; /* borrowed string, or NULL */
} candidate;

const char *engine_source_to_string(engine_source s) {
        switch (s) {
        case ENGINE_SOURCE_KUBE:
                return "kube";
        case ENGINE_SOURCE_STORE:
                return "store";
        default:
                return "?";
        }
}

static int64_t now_unix(void) {
        return (int64_t) time(NULL);
}

static char *label_of(const char *key, char *buf, size_t size) {
        char esc[300];

        snprintf(buf, size, "bundle=\"%s\"", metric_escape_label(key, esc, sizeof(esc)));
        return buf;
}

static void schedule_eval(engine *e);

/* ---- bundles ------------------------------------------------------------------- */

static void job_free(job *j);

static void bundle_free(bundle *b) {
        if (!b)
                return;
        if (b->job)
                job_free(b->job);
        free(b->key);
        free(b->ns);
        free(b->name);
        free(b->uid);
        free(b->last_error);
        free(b);
}

static ssize_t bundle_index(engine *e, const char *key) {
        size_t lo = 0, hi = e->n_bundles;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(e->bundles[mid]->key, key);
                if (c == 0)
                        return (ssize_t) mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -(ssize_t) lo - 1;
}

static bundle *bundle_get(engine *e, const char *ns, const char *name) {
        _cleanup_free_ char *key = NULL;
        bundle *b;
        ssize_t i;
        size_t at;

        if (asprintf(&key, "%s/%s", ns, name) < 0)
                return NULL;
        i = bundle_index(e, key);
        if (i >= 0)
                return e->bundles[i];
        at = (size_t) (-i - 1);
        if (e->n_bundles == e->n_alloc) {
                size_t n = MAX(e->n_alloc * 2, (size_t) 16);
                bundle **nb = reallocarray(e->bundles, n, sizeof(*nb));
                if (!nb)
                        return NULL;
                e->bundles = nb;
                e->n_alloc = n;
        }
        b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->key = TAKE_PTR(key);
        b->ns = strdup(ns);
        b->name = strdup(name);
        if (!b->ns || !b->name) {
                bundle_free(b);
                return NULL;
        }
        b->matched = -1;
        b->fetch_backoff = BACKOFF_INIT(e->o.retry_base_usec, e->o.retry_cap_usec, 0);
        b->apply_backoff = BACKOFF_INIT(e->o.retry_base_usec, e->o.retry_cap_usec, 0);
        b->fetch_backoff.jitter = b->apply_backoff.jitter = !e->o.no_jitter;
        memmove(e->bundles + at + 1, e->bundles + at, (e->n_bundles - at) * sizeof(*e->bundles));
        e->bundles[at] = b;
        e->n_bundles++;
        return b;
}

static void bundle_set_error(bundle *b, const char *msg) {
        free(b->last_error);
        b->last_error = msg ? strdup(msg) : NULL;
}

/* Rejections are per source and digest: a copy corrupted in one place does
 * not condemn a good copy of the same digest from the other source. */
static bool bundle_is_rejected(bundle *b, const char *origin, const char *digest) {
        char k[BUNDLE_DIGEST_SIZE + 8];

        snprintf(k, sizeof(k), "%s:%s", origin, digest);
        for (unsigned i = 0; i < b->n_rejected; i++)
                if (streq(b->rejected[i], k))
                        return true;
        return false;
}

static void bundle_reject(bundle *b, const char *origin, const char *digest) {
        if (bundle_is_rejected(b, origin, digest))
                return;
        snprintf(b->rejected[b->next_rejected], sizeof(b->rejected[0]), "%s:%s", origin, digest);
        b->next_rejected = (b->next_rejected + 1) % ENGINE_MAX_REJECTED;
        if (b->n_rejected < ENGINE_MAX_REJECTED)
                b->n_rejected++;
}

static void update_bundle_metrics(engine *e, bundle *b) {
        const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
        char lbl[400];

        label_of(b->key, lbl, sizeof(lbl));
        if (cb && cb->applied.revision > 0)
                metric_set(e->m_applied, lbl, (double) cb->applied.revision);
        else
                metric_remove(e->m_applied, lbl);
        if (cb && cb->lkg.revision > 0)
                metric_set(e->m_lkg, lbl, (double) cb->lkg.revision);
        else
                metric_remove(e->m_lkg, lbl);
        metric_set(e->m_matched, lbl, b->matched);
        metric_set(e->m_cache_bytes, NULL, (double) cache_get_size(e->o.cache));
}

static void notify_changed(engine *e) {
        if (e->o.changed)
                e->o.changed(e, e->o.changed_userdata);
}

/* ---- candidates from views ------------------------------------------------------ */

static const char *str_field(json_object *o, const char *k) {
        json_object *v;

        return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : NULL;
}

/* Validates view entry @entry under @key. Returns 0 and fills @c, or -EINVAL
 * with the reason in @ret_err. */
static int candidate_parse(engine_source src, const char *key, json_object *entry, candidate *c,
                           err_info *ret_err) {
        json_object *v;
        char want[600];

        *c = (candidate){.source = src, .entry = entry};
        if (!json_object_is_type(entry, json_type_object))
                return err_info_set(ret_err, -EINVAL, "entry is not an object");
        c->ns = str_field(entry, "namespace");
        c->name = str_field(entry, "name");
        if (!c->ns || !manifest_is_dns_label(c->ns) || !c->name ||
            !manifest_is_dns_subdomain(c->name))
                return err_info_set(ret_err, -EINVAL, "invalid namespace or name");
        snprintf(want, sizeof(want), "%s/%s", c->ns, c->name);
        if (!streq(want, key))
                return err_info_set(ret_err, -EINVAL, "key does not match %s", want);
        c->uid = str_field(entry, "uid") ?: "";
        if (*c->uid && !bundle_is_uid(c->uid))
                return err_info_set(ret_err, -EINVAL, "invalid uid");
        if (!json_object_object_get_ex(entry, "revision", &v) ||
            !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)
                return err_info_set(ret_err, -EINVAL, "invalid revision");
        c->revision = json_object_get_int64(v);
        c->digest = str_field(entry, "digest");
        if (!c->digest || !bundle_is_digest(c->digest))
                return err_info_set(ret_err, -EINVAL, "invalid digest");
        c->object_key = str_field(entry, "key");
        if (c->object_key && !objstore_key_is_valid(c->object_key))
                return err_info_set(ret_err, -EINVAL, "invalid object key");
        c->reload = str_field(entry, "reload");
        if (json_object_object_get_ex(entry, "nodeSelector", &v) &&
            !json_object_is_type(v, json_type_null))
                c->selector = v;
        if (json_object_object_get_ex(entry, "manifest", &v) &&
            json_object_is_type(v, json_type_string))
                c->inline_bytes = v;
        return 0;
}

/* Collects the valid candidates for @key from every view, highest revision
 * first. Returns the count; *@ret_listed says whether any view lists the key
 * at all (valid or not). */
static size_t gather(engine *e, const char *key, candidate *out, size_t max, bool *ret_listed) {
        size_t n = 0;

        *ret_listed = false;
        for (int s = 0; s < _ENGINE_SOURCE_MAX; s++) {
                json_object *entry;
                candidate c;

                if (!e->views[s] || !json_object_object_get_ex(e->views[s], key, &entry))
                        continue;
                *ret_listed = true;
                if (candidate_parse((engine_source) s, key, entry, &c, NULL) < 0 || n >= max)
                        continue;
                /* insertion sort, descending by revision */
                size_t i = n++;
                while (i > 0 && out[i - 1].revision < c.revision) {
                        out[i] = out[i - 1];
                        i--;
                }
                out[i] = c;
        }
        return n;
}

/* ---- jobs --------------------------------------------------------------------------- */

static void job_free(job *j) {
        if (!j)
                return;
        reload_job_cancel(j->rj);
        manifest_free(j->m);
        manifest_free(j->lkg_m);
        free(j->staged_name);
        free(j->staged_path);
        free(j->reason);
        if (j->bundle && j->bundle->job == j)
                j->bundle->job = NULL;
        free(j);
}

static void job_done(job *j) {
        engine *e = j->engine;
        bundle *b = j->bundle;

        e->n_jobs--;
        job_free(j);
        update_bundle_metrics(e, b);
        notify_changed(e);
        schedule_eval(e);
}

static void record_failure(job *j, const char *reason) {
        engine *e = j->engine;
        bundle *b = j->bundle;
        err_info err;
        int r;

        err_info_clear(&err);
        r = cache_record_failure(e->o.cache, b->ns, b->name, j->m->revision, j->m->digest, reason,
                                 now_unix(), &err);
        if (r < 0)
                log_error_errno(r, "Bundle %s revision %" PRIi64 ": cannot record the failure: %s",
                                b->key, j->m->revision, err.message);
        log_error("Bundle %s revision %" PRIi64 " (%s) failed and will not be retried until a "
                  "newer revision arrives: %s",
                  b->key, j->m->revision, j->m->digest, reason);
        e->stats.apply_failures++;
        metric_inc(e->m_applies, "result=\"failed\"");
        bundle_set_error(b, reason);
}

static void count_reload(engine *e, const reload_result *res) {
        e->stats.reloads++;
        if (res->r == 0)
                metric_inc(e->m_reloads, "result=\"success\"");
        else {
                e->stats.reload_failures++;
                metric_inc(e->m_reloads,
                           res->r == -ETIMEDOUT ? "result=\"timeout\"" : "result=\"failed\"");
        }
}

static const config_action *action_for(engine *e, const manifest *m) {
        return m && m->reload ? config_find_action(e->o.config, m->reload) : NULL;
}

static void on_job_reload(const reload_result *res, void *userdata);

/* Runs @a for @j at @step; a failure to start is reported like a failed run. */
static void job_run_reload(job *j, const config_action *a, job_step step) {
        reload_result res = {.exit_status = -1};
        int r;

        _cleanup_free_ char *dir = NULL;

        j->step = step;
        if (asprintf(&dir, "%s/%s/%s", j->engine->root, j->bundle->ns, j->bundle->name) < 0)
                dir = NULL; /* the variable is a convenience; run without it */
        r = reload_run_action(j->engine->o.reload, a, dir, on_job_reload, j, &j->rj);
        if (r < 0) {
                res.r = r;
                snprintf(res.reason, sizeof(res.reason), "reload '%s' could not be started: %s",
                         a->name, strerror(-r));
                on_job_reload(&res, j);
        }
}

/* The revision failed after (or during) the swap: back to last-known-good. */
static void job_rollback(job *j, const char *reason) {
        engine *e = j->engine;
        bundle *b = j->bundle;
        const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
        const config_action *a;
        err_info err;
        int r;

        free(j->reason);
        j->reason = strdup(reason);
        e->stats.rollbacks++;
        metric_inc(e->m_rollbacks, NULL);
        err_info_clear(&err);

        if (!cb || cb->lkg.revision == 0) {
                /* Nothing was ever good here: take the failed files away. */
                r = apply_remove(e->root, b->ns, b->name, &err);
                if (r < 0)
                        log_error_errno(r, "Bundle %s: cannot remove the failed revision: %s",
                                        b->key, err.message);
                else
                        log_warning("Bundle %s: no last-known-good revision; removed the failed "
                                    "revision %" PRIi64 " from the node",
                                    b->key, j->m->revision);
                record_failure(j, reason);
                job_done(j);
                return;
        }
        r = cache_load_manifest(e->o.cache, b->ns, b->name, cb->lkg.revision, cb->lkg.digest,
                                &j->lkg_m, &err);
        if (r < 0) {
                log_error_errno(r,
                                "Bundle %s: cannot roll back, last-known-good revision %" PRIi64
                                " is not in the cache: %s",
                                b->key, cb->lkg.revision, err.message);
                record_failure(j, reason);
                job_done(j);
                return;
        }
        r = apply_rollback(e->root, j->lkg_m, &err);
        if (r < 0) {
                log_error_errno(r, "Bundle %s: rollback to revision %" PRIi64 " failed: %s", b->key,
                                j->lkg_m->revision, err.message);
                record_failure(j, reason);
                job_done(j);
                return;
        }
        log_warning("Bundle %s: rolled back from revision %" PRIi64 " to last-known-good %" PRIi64,
                    b->key, j->m->revision, j->lkg_m->revision);
        r = cache_set_applied(e->o.cache, b->ns, b->name, j->lkg_m->revision, j->lkg_m->digest,
                              now_unix(), &err);
        if (r < 0)
                log_error_errno(r, "Bundle %s: cannot record the rollback: %s", b->key,
                                err.message);
        a = action_for(e, j->lkg_m);
        if (a) {
                job_run_reload(j, a, STEP_ROLLBACK_RELOAD);
                return;
        }
        record_failure(j, reason);
        job_done(j);
}

static void job_succeeded(job *j) {
        engine *e = j->engine;
        bundle *b = j->bundle;
        err_info err;
        int r;

        err_info_clear(&err);
        r = cache_set_lkg(e->o.cache, b->ns, b->name, j->m->revision, j->m->digest, now_unix(),
                          &err);
        if (r < 0)
                log_error_errno(
                        r, "Bundle %s: cannot record revision %" PRIi64 " as last-known-good: %s",
                        b->key, j->m->revision, err.message);
        log_info("Bundle %s: revision %" PRIi64 " (%s) applied", b->key, j->m->revision,
                 j->m->digest);
        e->stats.applies++;
        metric_inc(e->m_applies, "result=\"success\"");
        bundle_set_error(b, NULL);
        backoff_reset(&b->apply_backoff);
        b->removed_at = 0;
        job_done(j);
}

static void job_swap(job *j) {
        engine *e = j->engine;
        bundle *b = j->bundle;
        const config_action *a = action_for(e, j->m);
        char reason[CACHE_MAX_REASON + 200];
        err_info err;
        int r;

        err_info_clear(&err);
        r = apply_swap(e->root, b->ns, b->name, j->staged_name, NULL, &err);
        if (r < 0) {
                snprintf(reason, sizeof(reason), "swap failed: %s", err.message);
                job_rollback(j, reason);
                return;
        }
        r = cache_set_applied(e->o.cache, b->ns, b->name, j->m->revision, j->m->digest, now_unix(),
                              &err);
        if (r < 0)
                log_error_errno(r, "Bundle %s: cannot record revision %" PRIi64 " as applied: %s",
                                b->key, j->m->revision, err.message);
        update_bundle_metrics(e, b);
        if (a) {
                job_run_reload(j, a, STEP_RELOAD);
                return;
        }
        job_succeeded(j);
}

static void on_job_reload(const reload_result *res, void *userdata) {
        job *j = userdata;
        engine *e = j->engine;
        bundle *b = j->bundle;
        err_info err;

        j->rj = NULL;
        err_info_clear(&err);
        switch (j->step) {
        case STEP_CHECK:
                e->stats.checks++;
                if (res->r == 0) {
                        job_swap(j);
                        return;
                }
                (void) apply_discard(e->root, b->ns, b->name, j->staged_name, &err);
                record_failure(j, res->reason);
                job_done(j);
                return;
        case STEP_RELOAD:
                count_reload(e, res);
                if (res->r == 0)
                        job_succeeded(j);
                else
                        job_rollback(j, res->reason);
                return;
        case STEP_ROLLBACK_RELOAD:
                count_reload(e, res);
                if (res->r < 0)
                        log_error("Bundle %s: reload after the rollback to revision %" PRIi64
                                  " failed too: %s",
                                  b->key, j->lkg_m->revision, res->reason);
                record_failure(j, j->reason ?: "failed");
                job_done(j);
                return;
        case STEP_REMOVE_RELOAD:
        case STEP_REPAIR_RELOAD:
                count_reload(e, res);
                if (res->r < 0)
                        log_error("Bundle %s: %s", b->key, res->reason);
                job_done(j);
                return;
        }
}

static job *job_new(engine *e, bundle *b, job_kind kind) {
        job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->engine = e;
        j->bundle = b;
        j->kind = kind;
        b->job = j;
        e->n_jobs++;
        return j;
}

/* Errors that staging the same manifest again would hit again: the revision
 * is recorded as failed. Anything else (a full disk, I/O errors) is retried
 * with backoff. */
static bool is_permanent_stage_error(int r) {
        return r == -EINVAL || r == -ELOOP || r == -EFBIG || r == -ENAMETOOLONG || r == -ENOTDIR ||
               r == -EISDIR;
}

static void start_apply(engine *e, bundle *b, manifest *m) {
        const config_action *a = NULL;
        char reason[CACHE_MAX_REASON + 200];
        err_info err;
        job *j;
        int r;

        j = job_new(e, b, JOB_APPLY);
        if (!j) {
                manifest_free(m);
                return;
        }
        j->m = m;
        log_info("Bundle %s: applying revision %" PRIi64 " (%s)", b->key, m->revision, m->digest);
        if (m->reload) {
                a = config_find_action(e->o.config, m->reload);
                if (!a) {
                        snprintf(reason, sizeof(reason),
                                 "reload action '%s' is not configured on this node", m->reload);
                        record_failure(j, reason);
                        job_done(j);
                        return;
                }
        }
        err_info_clear(&err);
        r = apply_stage(e->root, m, &j->staged_name, &j->staged_path, &err);
        if (r < 0) {
                if (is_permanent_stage_error(r)) {
                        snprintf(reason, sizeof(reason), "staging failed: %s", err.message);
                        record_failure(j, reason);
                } else {
                        uint64_t d = backoff_next(&b->apply_backoff, loop_now(e->event));
                        b->apply_not_before = loop_now(e->event) + d;
                        log_error_errno(
                                r, "Bundle %s revision %" PRIi64 ": staging failed, retrying: %s",
                                b->key, m->revision, err.message);
                        bundle_set_error(b, err.message);
                }
                job_done(j);
                return;
        }
        if (a && a->check) {
                j->step = STEP_CHECK;
                r = reload_run_check(e->o.reload, a, j->staged_path, on_job_reload, j, &j->rj);
                if (r < 0) {
                        reload_result res = {.r = r, .exit_status = -1};
                        snprintf(res.reason, sizeof(res.reason),
                                 "check '%s' could not be started: %s", a->name, strerror(-r));
                        on_job_reload(&res, j);
                }
                return;
        }
        job_swap(j);
}

static void start_remove(engine *e, bundle *b, const char *why) {
        const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
        _cleanup_(manifest_freep) manifest *lkg = NULL;
        const config_action *a;
        err_info err;
        job *j;
        int r;

        j = job_new(e, b, JOB_REMOVE);
        if (!j)
                return;
        err_info_clear(&err);
        if (cb && cb->lkg.revision > 0)
                (void) cache_load_manifest(e->o.cache, b->ns, b->name, cb->lkg.revision,
                                           cb->lkg.digest, &lkg, NULL);
        r = apply_remove(e->root, b->ns, b->name, &err);
        if (r < 0) {
                uint64_t d = backoff_next(&b->apply_backoff, loop_now(e->event));
                b->apply_not_before = loop_now(e->event) + d;
                log_error_errno(r, "Bundle %s: cannot remove it from the node: %s", b->key,
                                err.message);
                bundle_set_error(b, err.message);
                job_done(j);
                return;
        }
        r = cache_remove_bundle(e->o.cache, b->ns, b->name, &err);
        if (r < 0)
                log_error_errno(r, "Bundle %s: cannot remove it from the cache: %s", b->key,
                                err.message);
        b->removed_at = now_unix();
        e->stats.removals++;
        metric_inc(e->m_removals, NULL);
        log_info("Bundle %s: removed from the node (%s)", b->key, why);
        bundle_set_error(b, NULL);
        a = action_for(e, lkg);
        if (a) {
                job_run_reload(j, a, STEP_REMOVE_RELOAD);
                return;
        }
        job_done(j);
}

static void start_repair_reload(engine *e, bundle *b, const config_action *a) {
        job *j = job_new(e, b, JOB_RELOAD);

        b->needs_reload = false;
        if (!j)
                return;
        job_run_reload(j, a, STEP_REPAIR_RELOAD);
}

/* ---- verification ------------------------------------------------------------------- */

/* Verifies @len untrusted bytes against candidate @c and commits them. Returns
 * 0 when cached, -EBADMSG (rejected, counted) or a cache error. */
static int verify_and_commit(engine *e, bundle *b, const candidate *c, const char *origin,
                             const char *data, size_t len) {
        _cleanup_(manifest_freep) manifest *m = NULL;
        char lbl[64], msg[1024];
        err_info err;
        int r;

        err_info_clear(&err);
        r = manifest_parse(data, len, c->digest, NULL, &m, &err);
        if (r >= 0 && (!streq(m->namespace, c->ns) || !streq(m->name, c->name) ||
                       m->revision != c->revision || !streq(m->uid, c->uid))) {
                r = -EBADMSG;
                snprintf(err.message, sizeof(err.message),
                         "the manifest is %s/%s revision %" PRIi64 " uid '%s', not what the "
                         "index entry says (revision %" PRIi64 " uid '%s')",
                         m->namespace, m->name, m->revision, m->uid, c->revision, c->uid);
        }
        if (r < 0) {
                snprintf(msg, sizeof(msg), "manifest %s from the %s rejected: %s", c->digest,
                         origin, err.message);
                log_error("Bundle %s revision %" PRIi64 ": %s", b->key, c->revision, msg);
                bundle_reject(b, origin, c->digest);
                bundle_set_error(b, msg);
                e->stats.verify_failures++;
                snprintf(lbl, sizeof(lbl), "source=\"%s\"", origin);
                metric_inc(e->m_verify, lbl);
                notify_changed(e);
                return -EBADMSG;
        }
        r = cache_commit(e->o.cache, m, &err);
        if (r < 0 && r != -ESTALE) {
                uint64_t d = backoff_next(&b->apply_backoff, loop_now(e->event));
                b->apply_not_before = loop_now(e->event) + d;
                log_error_errno(r, "Bundle %s revision %" PRIi64 ": cannot cache it: %s", b->key,
                                c->revision, err.message);
                bundle_set_error(b, err.message);
                return r;
        }
        if (r < 0)
                return r;
        metric_set(e->m_cache_bytes, NULL, (double) cache_get_size(e->o.cache));
        return 0;
}

/* ---- evaluation ------------------------------------------------------------------------- */

static void want_retry_at(engine *e, uint64_t at) {
        if (e->retry_at == 0 || at < e->retry_at)
                e->retry_at = at;
}

static bool selector_is_empty(json_object *sel) {
        return !sel || json_object_is_type(sel, json_type_null) ||
               (json_object_is_type(sel, json_type_object) && json_object_object_length(sel) == 0);
}

static int decide_matched(engine *e, bundle *b, const candidate *top) {
        err_info err;
        int r;

        if (!top)
                return b->matched;
        if (!e->labels && !selector_is_empty(top->selector))
                return -1;
        err_info_clear(&err);
        r = selector_matches(top->selector, e->labels, &err);
        if (r < 0) {
                char msg[700];
                snprintf(msg, sizeof(msg), "invalid nodeSelector: %s", err.message);
                if (!b->last_error || !streq(b->last_error, msg)) {
                        log_error("Bundle %s: %s; leaving it as it is", b->key, msg);
                        bundle_set_error(b, msg);
                }
                return -1;
        }
        return r;
}

static bool has_live_files(engine *e, bundle *b) {
        apply_live live;

        return apply_current(e->root, b->ns, b->name, &live, NULL) != -ENOENT;
}

static bool rev_eq(const cache_rev *r, const manifest *m) {
        return r->revision == m->revision && streq(r->digest, m->digest);
}

static void evaluate_bundle(engine *e, bundle *b, bool any_live_view) {
        candidate cands[_ENGINE_SOURCE_MAX];
        const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
        uint64_t now = loop_now(e->event);
        const candidate *target = NULL;
        bool listed;
        size_t n;
        int matched;

        n = gather(e, b->key, cands, ELEMENTSOF(cands), &listed);
        b->listed = listed;
        if (n > 0 && (!b->uid || !streq(b->uid, cands[0].uid))) {
                free(b->uid);
                b->uid = strdup(cands[0].uid);
        }
        if (b->job)
                return;

        if (!listed) {
                /* No view lists it: deleted, if some source has a live view
                 * (never on views restored from the cache alone). */
                if (any_live_view && (cb || has_live_files(e, b)) && e->n_jobs < ENGINE_MAX_JOBS &&
                    now >= b->apply_not_before)
                        start_remove(e, b, "no source lists it any more");
                return;
        }
        matched = decide_matched(e, b, n > 0 ? &cands[0] : NULL);
        if (matched != b->matched) {
                b->matched = matched;
                update_bundle_metrics(e, b);
                notify_changed(e);
        }
        if (matched == 0) {
                if ((cb || has_live_files(e, b)) && e->n_jobs < ENGINE_MAX_JOBS &&
                    now >= b->apply_not_before)
                        start_remove(e, b, "its nodeSelector no longer matches this node");
                return;
        }
        if (matched < 0)
                return;

        for (size_t i = 0; i < n && !target; i++) {
                const candidate *c = &cands[i];
                int r;

                /* Inline bytes come from the candidate's source; anything
                 * else from the object store. */
                if (bundle_is_rejected(
                            b, c->inline_bytes ? engine_source_to_string(c->source) : "store",
                            c->digest))
                        continue;
                r = cache_check_revision(e->o.cache, c->ns, c->name, c->uid, c->revision, c->digest,
                                         NULL);
                if (r == -EALREADY) {
                        if (cb && streq(c->uid, cb->uid) && c->revision < cb->highest.revision)
                                continue; /* cached, but below what the cache has seen */
                        target = c;
                        break;
                }
                if (r < 0)
                        continue; /* -ESTALE: would go back */
                if (c->inline_bytes) {
                        r = verify_and_commit(e, b, c, engine_source_to_string(c->source),
                                              json_object_get_string(c->inline_bytes),
                                              (size_t) json_object_get_string_len(c->inline_bytes));
                        if (r == 0) {
                                target = c;
                                cb = cache_get_bundle(e->o.cache, b->ns, b->name);
                                break;
                        }
                        if (r == -EBADMSG || r == -ESTALE)
                                continue;
                        want_retry_at(e, b->apply_not_before);
                        return;
                }
                if (!c->object_key || !e->o.fetch || b->no_fetch)
                        continue;
                if (streq(b->fetching, c->digest))
                        return; /* wait for it */
                if (b->fetching[0])
                        return; /* another fetch is in flight; it will re-evaluate */
                if (now < b->fetch_not_before) {
                        want_retry_at(e, b->fetch_not_before);
                        return;
                }
                snprintf(b->fetching, sizeof(b->fetching), "%s", c->digest);
                e->n_fetching++;
                e->stats.fetches++;
                log_debug("Bundle %s: fetching revision %" PRIi64 " from %s", b->key, c->revision,
                          c->object_key);
                r = e->o.fetch(e, b->key, c->object_key, c->digest, e->o.fetch_userdata);
                if (r < 0) {
                        b->fetching[0] = '\0';
                        e->n_fetching--;
                        b->no_fetch = true;
                        continue;
                }
                return;
        }
        if (!target)
                return;
        if (cache_is_failed(e->o.cache, b->ns, b->name, target->revision, target->digest))
                return;
        if (cb && cb->lkg.revision == target->revision && streq(cb->lkg.digest, target->digest) &&
            cb->applied.revision == target->revision && streq(cb->applied.digest, target->digest)) {
                if (b->needs_reload && e->n_jobs < ENGINE_MAX_JOBS) {
                        _cleanup_(manifest_freep) manifest *m = NULL;
                        const config_action *a;

                        b->needs_reload = false;
                        if (cache_load_manifest(e->o.cache, b->ns, b->name, target->revision,
                                                target->digest, &m, NULL) >= 0 &&
                            (a = action_for(e, m)))
                                start_repair_reload(e, b, a);
                }
                return;
        }
        if (e->n_jobs >= ENGINE_MAX_JOBS)
                return; /* a job's end re-evaluates */
        if (now < b->apply_not_before) {
                want_retry_at(e, b->apply_not_before);
                return;
        }
        {
                manifest *m = NULL;
                err_info err;
                int r;

                err_info_clear(&err);
                r = cache_load_manifest(e->o.cache, b->ns, b->name, target->revision,
                                        target->digest, &m, &err);
                if (r < 0) {
                        /* Quarantined under us: it is refetched on the next pass. */
                        log_error_errno(r, "Bundle %s revision %" PRIi64 ": %s", b->key,
                                        target->revision, err.message);
                        schedule_eval(e);
                        return;
                }
                start_apply(e, b, m);
        }
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        engine *e = userdata;

        e->retry_at = 0;
        schedule_eval(e);
        return 0;
}

static void evaluate(engine *e) {
        bool any_live_view = false;

        e->stats.evaluations++;
        e->retry_at = 0;
        for (int s = 0; s < _ENGINE_SOURCE_MAX; s++)
                if (e->views[s]) {
                        any_live_view = any_live_view || e->view_live[s];
                        json_object_object_foreach(e->views[s], key, entry) {
                                const char *ns = str_field(entry, "namespace"),
                                           *name = str_field(entry, "name");
                                char want[600];

                                (void) entry;
                                if (!ns || !name || !manifest_is_dns_label(ns) ||
                                    !manifest_is_dns_subdomain(name))
                                        goto invalid;
                                snprintf(want, sizeof(want), "%s/%s", ns, name);
                                if (!streq(want, key))
                                        goto invalid;
                                if (!bundle_get(e, ns, name))
                                        log_oom();
                                continue;
                        invalid:
                                /* Counted once per view change, see engine_set_view(). */
                                continue;
                        }
                }
        for (size_t i = 0; i < cache_count_bundles(e->o.cache); i++) {
                const cache_bundle *cb = cache_get_bundle_at(e->o.cache, i);
                if (!bundle_get(e, cb->namespace, cb->name))
                        log_oom();
        }

        for (size_t i = 0; i < e->n_bundles; i++)
                evaluate_bundle(e, e->bundles[i], any_live_view);

        /* Forget bundles nobody knows any more (after their removal was
         * reported: a report is written on the change that removed them). */
        for (size_t i = 0; i < e->n_bundles;) {
                bundle *b = e->bundles[i];
                if (!b->listed && !b->job && !b->fetching[0] &&
                    !cache_get_bundle(e->o.cache, b->ns, b->name) &&
                    (b->removed_at == 0 || now_unix() - b->removed_at > 3600)) {
                        char lbl[400];
                        label_of(b->key, lbl, sizeof(lbl));
                        metric_remove(e->m_matched, lbl);
                        metric_remove(e->m_applied, lbl);
                        metric_remove(e->m_lkg, lbl);
                        bundle_free(b);
                        memmove(e->bundles + i, e->bundles + i + 1,
                                (e->n_bundles - i - 1) * sizeof(*e->bundles));
                        e->n_bundles--;
                        continue;
                }
                i++;
        }

        if (e->retry_at > 0) {
                uint64_t now = loop_now(e->event);
                (void) loop_timer_arm(e->event, &e->retry_timer,
                                      e->retry_at > now ? e->retry_at - now : 0, on_retry, e);
        } else
                loop_timer_disarm(e->retry_timer);
}

static int on_eval(sd_event_source *s, void *userdata) {
        engine *e = userdata;

        evaluate(e);
        return 0;
}

static void schedule_eval(engine *e) {
        (void) sd_event_source_set_enabled(e->eval_defer, SD_EVENT_ONESHOT);
}

/* ---- public -------------------------------------------------------------------------- */

int engine_new(const engine_opts *o, engine **ret) {
        _cleanup_(engine_freep) engine *e = NULL;
        int r;

        if (!o || !o->event || !o->cache || !o->config || !o->reload || isempty(o->root_dir) ||
            !ret)
                return -EINVAL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->o = *o;
        e->o.root_dir = NULL;
        if (!e->o.retry_base_usec)
                e->o.retry_base_usec = ENGINE_RETRY_BASE_USEC;
        if (!e->o.retry_cap_usec)
                e->o.retry_cap_usec = ENGINE_RETRY_CAP_USEC;
        e->root = strdup(o->root_dir);
        if (!e->root)
                return -ENOMEM;
        e->event = sd_event_ref(o->event);
        r = sd_event_add_defer(e->event, &e->eval_defer, on_eval, e);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(e->eval_defer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(e->eval_defer, "engine-eval");

        e->m_applied = metric_register("ballast_agent_applied_revision", METRIC_GAUGE,
                                       "The revision whose files are live, per bundle.");
        e->m_lkg = metric_register("ballast_agent_last_known_good_revision", METRIC_GAUGE,
                                   "The last revision that applied and reloaded, per bundle.");
        e->m_matched = metric_register(
                "ballast_agent_bundle_matched", METRIC_GAUGE,
                "1 if the bundle's nodeSelector matches this node, 0 if not, -1 if unknown.");
        e->m_applies = metric_register("ballast_agent_applies_total", METRIC_COUNTER,
                                       "Revisions applied (success) or recorded as failed.");
        e->m_reloads = metric_register("ballast_agent_reloads_total", METRIC_COUNTER,
                                       "Reload actions run, by result.");
        e->m_rollbacks = metric_register("ballast_agent_rollbacks_total", METRIC_COUNTER,
                                         "Rollbacks to last-known-good.");
        e->m_verify = metric_register("ballast_agent_verification_failures_total", METRIC_COUNTER,
                                      "Manifests rejected by verification, by source.");
        e->m_invalid = metric_register("ballast_agent_invalid_entries_total", METRIC_COUNTER,
                                       "Index or ConfigMap entries rejected, by source.");
        e->m_removals = metric_register("ballast_agent_removals_total", METRIC_COUNTER,
                                        "Bundles taken off the node.");
        e->m_cache_bytes = metric_register("ballast_agent_cache_bytes", METRIC_GAUGE,
                                           "Bytes of manifests in the cache.");
        /* The counters the alerts watch with increase() start at 0: a series
         * that first appears at 1 has no earlier sample to rise from, so the
         * first rollback would go unnoticed (docs/operations.md). */
        metric_add(e->m_rollbacks, NULL, 0);
        for (int src = 0; src < _ENGINE_SOURCE_MAX; src++) {
                char lbl[32];

                snprintf(lbl, sizeof(lbl), "source=\"%s\"",
                         engine_source_to_string((engine_source) src));
                metric_add(e->m_verify, lbl, 0);
        }
        *ret = TAKE_PTR(e);
        return 0;
}

engine *engine_free(engine *e) {
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->n_bundles; i++)
                bundle_free(e->bundles[i]);
        free(e->bundles);
        for (int s = 0; s < _ENGINE_SOURCE_MAX; s++)
                json_object_put(e->views[s]);
        json_object_put(e->labels);
        sd_event_source_disable_unref(e->eval_defer);
        sd_event_source_disable_unref(e->retry_timer);
        sd_event_unref(e->event);
        free(e->root);
        free(e);
        return NULL;
}

static int set_view(engine *e, engine_source source, json_object *bundles, bool live) {
        char lbl[64];

        if (!e || source < 0 || source >= _ENGINE_SOURCE_MAX)
                return -EINVAL;
        if (bundles && !json_object_is_type(bundles, json_type_object))
                return -EINVAL;
        snprintf(lbl, sizeof(lbl), "source=\"%s\"", engine_source_to_string(source));
        if (bundles) {
                json_object_object_foreach(bundles, key, entry) {
                        candidate c;
                        err_info err;

                        err_info_clear(&err);
                        if (candidate_parse(source, key, entry, &c, &err) < 0) {
                                log_error("The %s source lists bundle '%s' with an invalid entry "
                                          "(%s); ignoring that entry",
                                          engine_source_to_string(source), key, err.message);
                                e->stats.invalid_entries++;
                                metric_inc(e->m_invalid, lbl);
                        }
                }
        }
        json_object_put(e->views[source]);
        e->views[source] = bundles ? json_object_get(bundles) : NULL;
        e->view_live[source] = bundles && live;
        /* A view change may make a pointer manifest reachable again. */
        for (size_t i = 0; i < e->n_bundles; i++)
                e->bundles[i]->no_fetch = false;
        schedule_eval(e);
        return 0;
}

int engine_set_view(engine *e, engine_source source, json_object *bundles) {
        return set_view(e, source, bundles, true);
}

int engine_restore_view(engine *e, engine_source source, json_object *bundles) {
        return set_view(e, source, bundles, false);
}

void engine_set_callbacks(engine *e, engine_fetch_fn fetch, void *fetch_userdata,
                          engine_changed_fn changed, void *changed_userdata) {
        e->o.fetch = fetch;
        e->o.fetch_userdata = fetch_userdata;
        e->o.changed = changed;
        e->o.changed_userdata = changed_userdata;
}

void engine_set_config(engine *e, const agent_config *config) {
        if (!e || !config)
                return;
        e->o.config = config;
        schedule_eval(e);
}

json_object *engine_get_view(engine *e, engine_source source) {
        return e && source >= 0 && source < _ENGINE_SOURCE_MAX ? e->views[source] : NULL;
}

int engine_set_labels(engine *e, json_object *labels) {
        json_object *copy = NULL;
        int r;

        if (!e)
                return -EINVAL;
        if (labels && !json_object_is_type(labels, json_type_object))
                return -EINVAL;
        if (labels && e->labels && json_object_equal(labels, e->labels))
                return 0;
        if (labels) {
                r = jsonx_deep_copy(labels, &copy);
                if (r < 0)
                        return r;
        }
        json_object_put(e->labels);
        e->labels = copy;
        schedule_eval(e);
        return 0;
}

void engine_manifest_fetched(engine *e, const char *digest, int r, const char *data, size_t len,
                             const err_info *err) {
        bundle *b = NULL;

        if (!e || !digest)
                return;
        for (size_t i = 0; i < e->n_bundles; i++)
                if (streq(e->bundles[i]->fetching, digest)) {
                        b = e->bundles[i];
                        break;
                }
        if (!b)
                return; /* the bundle went away meanwhile */
        b->fetching[0] = '\0';
        e->n_fetching--;
        schedule_eval(e);
        if (r < 0) {
                uint64_t d = backoff_next(&b->fetch_backoff, loop_now(e->event));
                char msg[700];

                b->fetch_not_before = loop_now(e->event) + d;
                snprintf(msg, sizeof(msg), "fetching manifest %s failed: %s", digest,
                         err && err->message[0] ? err->message : strerror(-r));
                log_warning("Bundle %s: %s; retrying in %" PRIu64 " ms", b->key, msg,
                            d / USEC_PER_MSEC);
                bundle_set_error(b, msg);
                return;
        }
        backoff_reset(&b->fetch_backoff);
        /* Verify against the candidate that asked for it. */
        {
                candidate cands[_ENGINE_SOURCE_MAX];
                bool listed;
                size_t n = gather(e, b->key, cands, ELEMENTSOF(cands), &listed);

                for (size_t i = 0; i < n; i++)
                        if (streq(cands[i].digest, digest)) {
                                (void) verify_and_commit(e, b, &cands[i], "store", data, len);
                                return;
                        }
        }
}

bool engine_is_idle(engine *e) {
        return e->n_jobs == 0 && e->n_fetching == 0 &&
               sd_event_source_get_enabled(e->eval_defer, NULL) == 0 && e->retry_at == 0;
}

int engine_start(engine *e) {
        int repaired = 0;
        size_t n;

        if (!e)
                return -EINVAL;
        n = cache_count_bundles(e->o.cache);
        for (size_t i = 0; i < n; i++) {
                const cache_bundle *cb = cache_get_bundle_at(e->o.cache, i);
                _cleanup_(manifest_freep) manifest *m = NULL;
                _cleanup_free_ char *ns = strdup(cb->namespace), *name = strdup(cb->name);
                bundle *b;
                err_info err;
                int r;

                if (!ns || !name)
                        return log_oom();
                b = bundle_get(e, ns, name);
                if (!b)
                        return log_oom();
                err_info_clear(&err);
                if (cb->lkg.revision > 0) {
                        r = cache_load_manifest(e->o.cache, ns, name, cb->lkg.revision,
                                                cb->lkg.digest, &m, &err);
                        /* A quarantine may have changed the bundle: refresh. */
                        cb = cache_get_bundle(e->o.cache, ns, name);
                        if (r < 0) {
                                log_error_errno(r,
                                                "Bundle %s: the last-known-good manifest is "
                                                "gone (%s); it will be fetched again",
                                                b->key, err.message);
                                continue;
                        }
                        r = apply_verify(e->root, m, &err);
                        if (r < 0) {
                                log_warning_errno(r,
                                                  "Bundle %s: the live files are not "
                                                  "last-known-good revision %" PRIi64
                                                  " (%s); restoring them from the cache",
                                                  b->key, m->revision, err.message);
                                err_info_clear(&err);
                                r = apply_rollback(e->root, m, &err);
                                if (r < 0) {
                                        log_error_errno(r, "Bundle %s: cannot restore: %s", b->key,
                                                        err.message);
                                        bundle_set_error(b, err.message);
                                        continue;
                                }
                                repaired++;
                                e->stats.repairs++;
                                b->needs_reload = true;
                        }
                        cb = cache_get_bundle(e->o.cache, ns, name);
                        if (cb && !rev_eq(&cb->applied, m)) {
                                r = cache_set_applied(e->o.cache, ns, name, m->revision, m->digest,
                                                      now_unix(), &err);
                                if (r < 0)
                                        log_error_errno(r, "Bundle %s: %s", b->key, err.message);
                        }
                } else if (cb->applied.revision > 0) {
                        /* A first revision swapped in but never confirmed (a
                         * crash during its reload): nothing was ever good. */
                        log_warning("Bundle %s: revision %" PRIi64 " was applied but never "
                                    "confirmed; taking it off until it is applied again",
                                    b->key, cb->applied.revision);
                        r = apply_remove(e->root, ns, name, &err);
                        if (r < 0)
                                log_error_errno(r, "Bundle %s: %s", b->key, err.message);
                        else
                                repaired++;
                } else {
                        /* The state was rebuilt: adopt what is live if it verifies. */
                        apply_live live;

                        if (apply_current(e->root, ns, name, &live, NULL) < 0)
                                continue;
                        for (size_t k = 0; k < cb->n_revisions; k++) {
                                const cache_rev *rv = &cb->revisions[k];
                                _cleanup_(manifest_freep) manifest *lm = NULL;

                                if (rv->revision != live.revision ||
                                    !startswith(rv->digest + BUNDLE_DIGEST_PREFIX_LEN,
                                                live.digest_prefix))
                                        continue;
                                if (cache_load_manifest(e->o.cache, ns, name, rv->revision,
                                                        rv->digest, &lm, NULL) < 0 ||
                                    apply_verify(e->root, lm, NULL) < 0)
                                        break;
                                (void) cache_set_applied(e->o.cache, ns, name, lm->revision,
                                                         lm->digest, now_unix(), NULL);
                                (void) cache_set_lkg(e->o.cache, ns, name, lm->revision, lm->digest,
                                                     now_unix(), NULL);
                                log_info("Bundle %s: adopted live revision %" PRIi64
                                         " as last-known-good",
                                         b->key, lm->revision);
                                break;
                        }
                }
        }
        for (size_t i = 0; i < e->n_bundles; i++)
                update_bundle_metrics(e, e->bundles[i]);
        /* Reloads of repaired bundles, and everything else, from the loop. */
        for (size_t i = 0; i < e->n_bundles; i++) {
                bundle *b = e->bundles[i];
                const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
                _cleanup_(manifest_freep) manifest *m = NULL;
                const config_action *a;

                if (!b->needs_reload || !cb || cb->lkg.revision == 0)
                        continue;
                if (cache_load_manifest(e->o.cache, b->ns, b->name, cb->lkg.revision,
                                        cb->lkg.digest, &m, NULL) < 0)
                        continue;
                a = action_for(e, m);
                if (a && e->n_jobs < ENGINE_MAX_JOBS)
                        start_repair_reload(e, b, a);
        }
        schedule_eval(e);
        return repaired;
}

int engine_foreach_bundle(engine *e, int (*fn)(const engine_bundle_info *info, void *userdata),
                          void *userdata) {
        for (size_t i = 0; i < e->n_bundles; i++) {
                bundle *b = e->bundles[i];
                const cache_bundle *cb = cache_get_bundle(e->o.cache, b->ns, b->name);
                engine_bundle_info info = {
                        .key = b->key,
                        .uid = b->uid ?: (cb ? cb->uid : NULL),
                        .matched = b->matched,
                        .cached = cb,
                        .last_error = b->last_error,
                        .removed_at = b->removed_at,
                        .busy = b->job != NULL,
                };
                int r = fn(&info, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

void engine_get_stats(const engine *e, engine_stats *ret) {
        *ret = e->stats;
}
