/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <time.h>

#include "backoff.h"
#include "jsonx.h"
#include "leader.h"
#include "log.h"
#include "loop.h"

struct leader {
        sd_event *event;
        kube_client *client;
        leader_opts opts;
        char *namespace, *name, *identity;

        bool leading;
        kube_request *req;         /* the one in-flight get/create/update */
        sd_event_source *retry;    /* next acquire/renew attempt */
        sd_event_source *deadline; /* renew deadline while leading */
        uint64_t last_renew;       /* monotonic time of the last successful renew */

        /* What we last saw of the record, and when it last changed (our clock). */
        char *observed_holder, *observed_renew;
        int64_t observed_duration_sec;
        uint64_t observed_at;
        json_object *lease; /* the last Lease object read or written */

        void (*release_done)(leader *l, void *userdata);
        void *release_userdata;
};

bool leader_lease_expired(uint64_t observed_usec, uint64_t lease_duration_usec, uint64_t now) {
        return now >= observed_usec + lease_duration_usec;
}

static void format_micro_time(char buf[static 64]) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(buf, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

static void stop_leading(leader *l, const char *why) {
        if (!l->leading)
                return;
        l->leading = false;
        loop_timer_disarm(l->deadline);
        log_warning("Stopped leading %s/%s: %s", l->namespace, l->name, why);
        if (l->opts.on_stopped)
                l->opts.on_stopped(l, l->opts.userdata);
}

static void start_leading(leader *l) {
        if (l->leading)
                return;
        l->leading = true;
        log_info("Became leader of %s/%s as %s", l->namespace, l->name, l->identity);
        if (l->opts.on_started)
                l->opts.on_started(l, l->opts.userdata);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);

/* Next attempt after the retry period, with client-go's jitter factor 1.2 for
 * candidates so standbys don't poll in lockstep. */
static void schedule_retry(leader *l) {
        uint64_t d = l->opts.retry_period_usec;

        if (!l->leading)
                d += random_u64_below(d / 5);
        (void) loop_timer_arm(l->event, &l->retry, d, on_retry, l);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        leader *l = userdata;

        if (!l->leading)
                return 0;
        /* A renew hanging on a paused API server must not keep us leading. */
        kube_request_cancel(TAKE_PTR(l->req));
        stop_leading(l, "could not renew the lease within the renew deadline");
        schedule_retry(l);
        return 0;
}

static void remember_record(leader *l, json_object *lease) {
        const char *holder = jsonx_get_string(lease, "spec.holderIdentity");
        const char *renew = jsonx_get_string(lease, "spec.renewTime");
        int64_t duration = jsonx_get_int(lease, "spec.leaseDurationSeconds", 0);

        if (!streq(strempty(holder), strempty(l->observed_holder)) ||
            !streq(strempty(renew), strempty(l->observed_renew)) ||
            duration != l->observed_duration_sec) {
                free(l->observed_holder);
                free(l->observed_renew);
                l->observed_holder = holder ? strdup(holder) : NULL;
                l->observed_renew = renew ? strdup(renew) : NULL;
                l->observed_duration_sec = duration;
                l->observed_at = loop_now(l->event);
        }
        json_object_put(l->lease);
        l->lease = json_object_get(lease);
}

static void on_written(kube_client *c, int r, json_object *obj, const err_info *err,
                       void *userdata) {
        leader *l = userdata;

        l->req = NULL;
        if (r < 0) {
                log_full_errno(r == -ESTALE || r == -EEXIST ? LOG_DEBUG : LOG_WARNING, r,
                               "Failed to %s lease %s/%s: %s", l->leading ? "renew" : "acquire",
                               l->namespace, l->name, err ? err->message : "");
                /* While leading, keep trying until the renew deadline says stop. */
                schedule_retry(l);
                return;
        }
        remember_record(l, obj);
        l->last_renew = loop_now(l->event);
        (void) loop_timer_arm(l->event, &l->deadline, l->opts.renew_deadline_usec, on_deadline, l);
        start_leading(l);
        schedule_retry(l);
}

/* Builds the Lease we want to hold, based on @current (NULL: none exists). */
static json_object *lease_for_us(leader *l, json_object *current) {
        json_object *lease, *meta, *spec;
        char now[64];
        const char *holder = current ? jsonx_get_string(current, "spec.holderIdentity") : NULL;
        bool ours = holder && streq(holder, l->identity);
        int64_t transitions = current ? jsonx_get_int(current, "spec.leaseTransitions", 0) : 0;
        const char *acquired = current ? jsonx_get_string(current, "spec.acquireTime") : NULL;

        format_micro_time(now);
        lease = current ? json_object_get(current) : json_object_new_object();
        if (!lease)
                return NULL;
        if (!current) {
                json_object_object_add(lease, "apiVersion",
                                       json_object_new_string("coordination.k8s.io/v1"));
                json_object_object_add(lease, "kind", json_object_new_string("Lease"));
                meta = json_object_new_object();
                json_object_object_add(meta, "name", json_object_new_string(l->name));
                json_object_object_add(meta, "namespace", json_object_new_string(l->namespace));
                json_object_object_add(lease, "metadata", meta);
        }
        spec = json_object_new_object();
        json_object_object_add(spec, "holderIdentity", json_object_new_string(l->identity));
        json_object_object_add(
                spec, "leaseDurationSeconds",
                json_object_new_int64((int64_t) (l->opts.lease_duration_usec / USEC_PER_SEC)));
        json_object_object_add(spec, "acquireTime",
                               json_object_new_string(ours && acquired ? acquired : now));
        json_object_object_add(spec, "renewTime", json_object_new_string(now));
        json_object_object_add(
                spec, "leaseTransitions",
                json_object_new_int64(ours || !holder || !*holder ? transitions : transitions + 1));
        json_object_object_add(lease, "spec", spec); /* replaces the old spec */
        return lease;
}

static void on_got(kube_client *c, int r, json_object *obj, const err_info *err, void *userdata) {
        _cleanup_json_ json_object *want = NULL;
        leader *l = userdata;
        const char *holder;
        uint64_t now = loop_now(l->event);

        l->req = NULL;
        if (r == -ENOENT) {
                want = lease_for_us(l, NULL);
                if (!want || kube_create_object(l->client, &KUBE_RESOURCE_LEASES, l->namespace,
                                                want, on_written, l, &l->req) < 0)
                        schedule_retry(l);
                return;
        }
        if (r < 0) {
                log_debug_errno(r, "Failed to read lease %s/%s: %s", l->namespace, l->name,
                                err ? err->message : "");
                schedule_retry(l);
                return;
        }
        remember_record(l, obj);
        holder = jsonx_get_string(obj, "spec.holderIdentity");
        if (!isempty(holder) && !streq(holder, l->identity) &&
            !leader_lease_expired(l->observed_at,
                                  (uint64_t) MAX(l->observed_duration_sec, 1) * USEC_PER_SEC,
                                  now)) {
                /* Someone else holds a live lease. If we thought we led, we don't. */
                stop_leading(l, "the lease is held by another candidate");
                schedule_retry(l);
                return;
        }
        want = lease_for_us(l, obj);
        if (!want || kube_update_object(l->client, &KUBE_RESOURCE_LEASES, l->namespace, want, NULL,
                                        on_written, l, &l->req) < 0)
                schedule_retry(l);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        leader *l = userdata;

        if (l->req || l->release_done)
                return 0;
        if (kube_get_object(l->client, &KUBE_RESOURCE_LEASES, l->namespace, l->name, NULL, on_got,
                            l, &l->req) < 0)
                schedule_retry(l);
        return 0;
}

int leader_new(sd_event *e, kube_client *c, const leader_opts *opts, leader **ret) {
        _cleanup_(leader_freep) leader *l = NULL;

        if (!e || !c || !opts || isempty(opts->namespace) || isempty(opts->name) ||
            isempty(opts->identity) || !ret)
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(e);
        l->client = c;
        l->opts = *opts;
        l->namespace = strdup(opts->namespace);
        l->name = strdup(opts->name);
        l->identity = strdup(opts->identity);
        if (!l->namespace || !l->name || !l->identity)
                return -ENOMEM;
        if (!l->opts.lease_duration_usec)
                l->opts.lease_duration_usec = 15 * USEC_PER_SEC;
        if (!l->opts.renew_deadline_usec)
                l->opts.renew_deadline_usec = 10 * USEC_PER_SEC;
        if (!l->opts.retry_period_usec)
                l->opts.retry_period_usec = 2 * USEC_PER_SEC;
        /* client-go's rules: the leader must give up before anyone may take over. */
        if (l->opts.renew_deadline_usec >= l->opts.lease_duration_usec ||
            l->opts.retry_period_usec >= l->opts.renew_deadline_usec)
                return -EINVAL;
        *ret = TAKE_PTR(l);
        return 0;
}

leader *leader_free(leader *l) {
        if (!l)
                return NULL;
        kube_request_cancel(l->req);
        sd_event_source_disable_unref(l->retry);
        sd_event_source_disable_unref(l->deadline);
        json_object_put(l->lease);
        free(l->observed_holder);
        free(l->observed_renew);
        free(l->namespace);
        free(l->name);
        free(l->identity);
        sd_event_unref(l->event);
        free(l);
        return NULL;
}

int leader_start(leader *l) {
        return loop_timer_arm(l->event, &l->retry, 0, on_retry, l);
}

bool leader_is_leader(const leader *l) {
        return l && l->leading;
}

static void on_released(kube_client *c, int r, json_object *obj, const err_info *err,
                        void *userdata) {
        leader *l = userdata;

        l->req = NULL;
        if (r < 0)
                log_warning_errno(r, "Failed to release lease %s/%s: %s", l->namespace, l->name,
                                  err ? err->message : "");
        else
                log_info("Released lease %s/%s", l->namespace, l->name);
        if (l->release_done)
                l->release_done(l, l->release_userdata);
}

int leader_release(leader *l, void (*done)(leader *l, void *userdata), void *userdata) {
        _cleanup_json_ json_object *lease = NULL;
        json_object *spec;
        char now[64];
        bool was_leading = l->leading;
        int r;

        kube_request_cancel(TAKE_PTR(l->req));
        loop_timer_disarm(l->retry);
        l->release_done = done;
        l->release_userdata = userdata;
        stop_leading(l, "shutting down");
        if (!was_leading || !l->lease) {
                if (done)
                        done(l, userdata);
                return 0;
        }
        /* client-go's ReleaseOnCancel: empty holder, 1 s duration, same resourceVersion. */
        lease = json_object_get(l->lease);
        format_micro_time(now);
        spec = json_object_new_object();
        json_object_object_add(spec, "holderIdentity", json_object_new_string(""));
        json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int64(1));
        json_object_object_add(spec, "renewTime", json_object_new_string(now));
        json_object_object_add(spec, "acquireTime", json_object_new_string(now));
        json_object_object_add(
                spec, "leaseTransitions",
                json_object_new_int64(jsonx_get_int(lease, "spec.leaseTransitions", 0)));
        json_object_object_add(lease, "spec", spec);
        r = kube_update_object(l->client, &KUBE_RESOURCE_LEASES, l->namespace, lease, NULL,
                               on_released, l, &l->req);
        if (r < 0 && done)
                done(l, userdata);
        return r;
}
