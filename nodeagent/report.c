/* SPDX-License-Identifier: Apache-2.0 */
/*
 * status/NODE.json: on change and as a heartbeat. See report.h and
 * docs/status-object.md.
 */

#include <inttypes.h>
#include <time.h>

#include "backoff.h"
#include "bundle.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "report.h"

struct report {
        sd_event *event;
        engine *engine;
        fetch *fetch;
        objstore *store;
        char *node, *key;
        uint64_t heartbeat;
        bool no_jitter;

        sd_event_source *write_timer, *heartbeat_timer;
        objstore_op *op;
        char *last_body; /* canonical, without "updated": what was last written */
        bool dirty;      /* a change since the write in flight started */
        bool force;      /* the next write happens even if unchanged (heartbeat) */
        bool started;
        backoff retry;
        report_stats stats;
        metric *m_writes;
};

static void format_time(int64_t t, char *buf, size_t size) {
        time_t tt = (time_t) t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_object *rev_json(const cache_rev *rv, bool with_at) {
        json_object *o = json_object_new_object();
        char t[32];

        if (!o)
                return NULL;
        json_object_object_add(o, "revision", json_object_new_int64(rv->revision));
        json_object_object_add(o, "digest", json_object_new_string(rv->digest));
        if (with_at && rv->at > 0) {
                format_time(rv->at, t, sizeof(t));
                json_object_object_add(o, "at", json_object_new_string(t));
        }
        return o;
}

static int add_bundle(const engine_bundle_info *info, void *userdata) {
        json_object *bundles = userdata, *b;
        const cache_bundle *cb = info->cached;
        char t[32];

        /* A bundle for another node that this one never had: not worth a
         * line in every node's report. */
        if (info->matched == 0 &&
            !(cb && (cb->applied.revision || cb->lkg.revision || cb->n_failures)) &&
            !info->removed_at && !info->last_error)
                return 0;
        b = json_object_new_object();
        if (!b)
                return -ENOMEM;
        if (info->uid)
                json_object_object_add(b, "uid", json_object_new_string(info->uid));
        if (info->matched >= 0)
                json_object_object_add(b, "matched", json_object_new_boolean(info->matched > 0));
        else
                json_object_object_add(b, "selection", json_object_new_string("unknown"));
        if (cb && cb->applied.revision > 0)
                json_object_object_add(b, "applied", rev_json(&cb->applied, true));
        if (cb && cb->lkg.revision > 0)
                json_object_object_add(b, "lastKnownGood", rev_json(&cb->lkg, true));
        if (cb && cb->n_failures > 0) {
                json_object *list = json_object_new_array();
                for (size_t i = 0; list && i < cb->n_failures; i++) {
                        const cache_failure *cf = &cb->failures[i];
                        json_object *f = json_object_new_object();
                        if (!f)
                                break;
                        json_object_object_add(f, "revision", json_object_new_int64(cf->revision));
                        json_object_object_add(f, "digest", json_object_new_string(cf->digest));
                        json_object_object_add(f, "reason",
                                               json_object_new_string(strempty(cf->reason)));
                        format_time(cf->at, t, sizeof(t));
                        json_object_object_add(f, "at", json_object_new_string(t));
                        json_object_array_add(list, f);
                }
                json_object_object_add(b, "failed", list);
        }
        if (info->last_error)
                json_object_object_add(b, "error", json_object_new_string(info->last_error));
        if (info->removed_at && !(cb && cb->applied.revision)) {
                format_time(info->removed_at, t, sizeof(t));
                json_object_object_add(b, "removed", json_object_new_string(t));
        }
        json_object_object_add(bundles, info->key, b);
        return 0;
}

int report_build(engine *e, fetch *f, const char *node, int64_t now, json_object **ret) {
        _cleanup_json_ json_object *doc = json_object_new_object();
        json_object *bundles = json_object_new_object(), *sources;
        char t[32];
        int r;

        if (!doc || !bundles) {
                json_object_put(bundles);
                return -ENOMEM;
        }
        json_object_object_add(doc, "apiVersion", json_object_new_string(BUNDLE_API_VERSION));
        json_object_object_add(doc, "kind", json_object_new_string(BUNDLE_KIND_NODE_STATUS));
        json_object_object_add(doc, "node", json_object_new_string(node));
        json_object_object_add(doc, "agentVersion", json_object_new_string(BALLAST_VERSION));
        if (now > 0) {
                format_time(now, t, sizeof(t));
                json_object_object_add(doc, "updated", json_object_new_string(t));
        }
        json_object_object_add(doc, "bundles", bundles);
        r = engine_foreach_bundle(e, add_bundle, bundles);
        if (r < 0)
                return r;
        if (f) {
                sources = json_object_new_object();
                if (!sources)
                        return -ENOMEM;
                for (int s = 0; s < _ENGINE_SOURCE_MAX; s++) {
                        fetch_source_status st;
                        json_object *o;

                        fetch_get_source_status(f, (engine_source) s, &st);
                        if (!st.configured)
                                continue;
                        o = json_object_new_object();
                        if (!o)
                                break;
                        json_object_object_add(o, "up", json_object_new_boolean(st.up));
                        if (st.last_success > 0) {
                                format_time(st.last_success, t, sizeof(t));
                                json_object_object_add(o, "lastSuccess", json_object_new_string(t));
                        }
                        json_object_object_add(sources, engine_source_to_string(s), o);
                }
                json_object_object_add(doc, "sources", sources);
        }
        *ret = TAKE_PTR(doc);
        return 0;
}

static void write_now(report *r);

static int on_write_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        write_now(userdata);
        return 0;
}

static void schedule_write(report *r, uint64_t delay) {
        (void) loop_timer_arm(r->event, &r->write_timer, delay, on_write_timer, r);
}

/* The body without its "sources" health (which changes with every poll and
 * is not worth a write): the part whose changes trigger a write. */
static char *body_for_compare(json_object *doc) {
        json_object *copy = NULL;
        char *text = NULL;
        size_t len;

        if (jsonx_deep_copy(doc, &copy) < 0)
                return NULL;
        json_object_object_del(copy, "sources");
        json_object_object_del(copy, "updated");
        (void) jsonx_to_canonical(copy, &text, &len);
        json_object_put(copy);
        return text;
}

static void on_written(objstore_op *op, int rr, objstore_object *obj, const err_info *err,
                       void *userdata) {
        report *r = userdata;

        r->op = NULL;
        if (rr < 0) {
                uint64_t d = backoff_next(&r->retry, loop_now(r->event));
                if (err && err->retry_after_sec > 0)
                        d = MAX(d, (uint64_t) MIN(err->retry_after_sec, 900L) * USEC_PER_SEC);
                r->stats.write_errors++;
                metric_inc(r->m_writes, "result=\"error\"");
                log_warning_errno(rr, "Cannot write %s (retrying in %" PRIu64 " ms): %s", r->key,
                                  d / USEC_PER_MSEC,
                                  err && err->message[0] ? err->message : err_name(rr));
                r->last_body = mfree(r->last_body);
                r->force = true;
                schedule_write(r, d);
                return;
        }
        backoff_reset(&r->retry);
        r->stats.writes++;
        metric_inc(r->m_writes, "result=\"ok\"");
        if (r->dirty) {
                r->dirty = false;
                schedule_write(r, REPORT_DEBOUNCE_USEC);
        }
}

static void write_now(report *r) {
        _cleanup_json_ json_object *doc = NULL;
        _cleanup_free_ char *cmp = NULL, *text = NULL;
        objstore_put_opts po = {.content_type = "application/json"};
        size_t len;
        int rr;

        if (r->op) {
                r->dirty = true;
                return;
        }
        rr = report_build(r->engine, r->fetch, r->node, (int64_t) time(NULL), &doc);
        if (rr < 0)
                return (void) log_error_errno(rr, "Cannot build the status report: %m");
        cmp = body_for_compare(doc);
        if (!r->force && cmp && r->last_body && streq(cmp, r->last_body)) {
                r->stats.skipped_unchanged++;
                return;
        }
        rr = jsonx_to_canonical(doc, &text, &len);
        if (rr < 0)
                return;
        rr = objstore_put(r->store, r->key, text, len, &po, on_written, r, &r->op);
        if (rr < 0) {
                log_error_errno(rr, "Cannot write %s: %m", r->key);
                schedule_write(r, backoff_next(&r->retry, loop_now(r->event)));
                return;
        }
        r->force = false;
        free(r->last_body);
        r->last_body = TAKE_PTR(cmp);
}

static uint64_t heartbeat_delay(report *r) {
        if (r->no_jitter)
                return r->heartbeat;
        /* uniform in [0.8, 1.2] * heartbeat */
        return r->heartbeat - r->heartbeat / 5 + random_u64_below(r->heartbeat / 5 * 2);
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        report *r = userdata;

        r->force = true;
        write_now(r);
        (void) loop_timer_arm(r->event, &r->heartbeat_timer, heartbeat_delay(r), on_heartbeat, r);
        return 0;
}

int report_new(const report_opts *o, report **ret) {
        _cleanup_(report_freep) report *r = NULL;
        int k;

        if (!o || !o->event || !o->engine || isempty(o->node_name) || !ret)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(o->event);
        r->engine = o->engine;
        r->fetch = o->fetch;
        r->store = o->store;
        r->heartbeat = o->heartbeat_usec ?: CONFIG_DEFAULT_HEARTBEAT_USEC;
        r->no_jitter = o->no_jitter;
        r->node = strdup(o->node_name);
        if (!r->node)
                return -ENOMEM;
        k = bundle_status_key(o->node_name, &r->key);
        if (k < 0)
                return k;
        r->retry = BACKOFF_INIT(USEC_PER_SEC, REPORT_RETRY_CAP_USEC, 0);
        r->retry.jitter = !o->no_jitter;
        r->m_writes = metric_register("ballast_agent_status_writes_total", METRIC_COUNTER,
                                      "Writes of status/NODE.json, by result.");
        *ret = TAKE_PTR(r);
        return 0;
}

report *report_free(report *r) {
        if (!r)
                return NULL;
        objstore_op_cancel(r->op);
        sd_event_source_disable_unref(r->write_timer);
        sd_event_source_disable_unref(r->heartbeat_timer);
        sd_event_unref(r->event);
        free(r->last_body);
        free(r->node);
        free(r->key);
        free(r);
        return NULL;
}

int report_start(report *r) {
        uint64_t first;

        if (!r->store)
                return 0;
        r->started = true;
        first = MIN(r->heartbeat, REPORT_FIRST_MAX_USEC);
        first = r->no_jitter ? REPORT_DEBOUNCE_USEC : random_u64_below(first);
        r->force = true;
        schedule_write(r, first);
        return loop_timer_arm(r->event, &r->heartbeat_timer, first + heartbeat_delay(r),
                              on_heartbeat, r);
}

void report_changed(engine *e, void *userdata) {
        report *r = userdata;
        uint64_t delay;
        int enabled = 0;

        if (!r || !r->store || !r->started)
                return;
        /* Already scheduled (the first write, a retry, an earlier change):
         * that write will carry this change too. */
        if (r->write_timer && sd_event_source_get_enabled(r->write_timer, &enabled) >= 0 &&
            enabled != SD_EVENT_OFF)
                return;
        delay = REPORT_DEBOUNCE_USEC +
                (r->no_jitter ? 0 : random_u64_below(2 * REPORT_DEBOUNCE_USEC));
        schedule_write(r, delay);
}

void report_get_stats(const report *r, report_stats *ret) {
        *ret = r->stats;
}
