/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <stdarg.h>
#include <time.h>

#include "events.h"
#include "jsonx.h"
#include "log.h"
#include "loop.h"
#include "ratelimit.h"

#define PER_OBJECT_BURST 3
#define PER_OBJECT_QPS   (1.0 / 300.0)
#define GLOBAL_QPS       5.0
#define GLOBAL_BURST     10

struct recorder {
        kube_client *kube;
        char *component, *instance;
        ratelimit global;
        json_object *buckets; /* "uid/reason" -> "TOKENS LAST_USEC" */
        recorder_stats stats;
};

int recorder_new(kube_client *kube, const char *component, const char *instance, recorder **ret) {
        recorder *r;

        if (!kube || isempty(component) || !ret)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->kube = kube;
        r->component = strdup(component);
        r->instance = strdup(strempty(instance));
        r->buckets = json_object_new_object();
        if (!r->component || !r->instance || !r->buckets) {
                recorder_free(r);
                return -ENOMEM;
        }
        ratelimit_init(&r->global, GLOBAL_QPS, GLOBAL_BURST, loop_now(kube_client_get_event(kube)));
        *ret = r;
        return 0;
}

recorder *recorder_free(recorder *r) {
        if (!r)
                return NULL;
        json_object_put(r->buckets);
        free(r->component);
        free(r->instance);
        free(r);
        return NULL;
}

/* The per-object bucket, kept as one short string of two numbers so the map
 * stays a json-c object (O(1) lookups) at ~100 bytes an entry (an array of
 * two doubles costs json-c several times that). A bucket is made only when
 * an event is posted, so events the global limit drops (most of a bundle's
 * first revisions, when thousands are published at once) make none. Buckets
 * of deleted objects are few and small; the map is reset when it grows past
 * 10,000 entries. */
static double object_tokens(recorder *r, const char *key, uint64_t now) {
        json_object *b = json_object_object_get(r->buckets, key);
        double tokens = PER_OBJECT_BURST, last;

        if (b && sscanf(json_object_get_string(b), "%lf %lf", &tokens, &last) == 2) {
                tokens += ((double) now - last) / 1e6 * PER_OBJECT_QPS;
                if (tokens > PER_OBJECT_BURST)
                        tokens = PER_OBJECT_BURST;
        }
        return tokens;
}

static void object_charge(recorder *r, const char *key, double tokens, uint64_t now) {
        char buf[64];

        if (!json_object_object_get_ex(r->buckets, key, NULL) &&
            json_object_object_length(r->buckets) > 10000) {
                json_object_put(r->buckets);
                r->buckets = json_object_new_object();
                if (!r->buckets)
                        return;
        }
        snprintf(buf, sizeof(buf), "%.6f %" PRIu64, tokens - 1, now);
        json_object_object_add(r->buckets, key, json_object_new_string(buf));
}

static void on_posted(kube_client *k, int r, json_object *obj, const err_info *err,
                      void *userdata) {
        recorder *rec = userdata;

        if (r < 0) {
                rec->stats.failed++;
                log_debug_errno(r, "Failed to post an event: %s", err ? err->message : "");
        }
}

int recorder_emit(recorder *r, json_object *obj, const char *type, const char *reason,
                  const char *fmt, ...) {
        _cleanup_json_ json_object *ev = NULL;
        _cleanup_free_ char *msg = NULL, *bucket_key = NULL, *gen = NULL;
        const char *ns = jsonx_get_string(obj, "metadata.namespace"),
                   *name = jsonx_get_string(obj, "metadata.name"),
                   *uid = jsonx_get_string(obj, "metadata.uid");
        uint64_t now = loop_now(kube_client_get_event(r->kube));
        json_object *involved, *source, *meta;
        char ts[32];
        time_t t = time(NULL);
        double tokens;
        va_list ap;
        int n;

        if (!ns || !name)
                return -EINVAL;
        if (asprintf(&bucket_key, "%s/%s", strempty(uid), reason) < 0)
                return -ENOMEM;
        tokens = object_tokens(r, bucket_key, now);
        if (tokens < 1 || ratelimit_take(&r->global, now) > 0) {
                r->stats.dropped++;
                return 0;
        }
        object_charge(r, bucket_key, tokens, now);
        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        if (strlen(msg) > 1024)
                msg[1024] = '\0'; /* the API server's limit on event messages */
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        if (asprintf(&gen, "%s.", name) < 0)
                return -ENOMEM;

        ev = json_object_new_object();
        meta = json_object_new_object();
        involved = json_object_new_object();
        source = json_object_new_object();
        if (!ev || !meta || !involved || !source) {
                json_object_put(meta);
                json_object_put(involved);
                json_object_put(source);
                return -ENOMEM;
        }
        json_object_object_add(ev, "apiVersion", json_object_new_string("v1"));
        json_object_object_add(ev, "kind", json_object_new_string("Event"));
        json_object_object_add(meta, "generateName", json_object_new_string(gen));
        json_object_object_add(meta, "namespace", json_object_new_string(ns));
        json_object_object_add(ev, "metadata", meta);
        json_object_object_add(
                involved, "apiVersion",
                json_object_new_string(strempty(jsonx_get_string(obj, "apiVersion"))));
        json_object_object_add(involved, "kind",
                               json_object_new_string(strempty(jsonx_get_string(obj, "kind"))));
        json_object_object_add(involved, "namespace", json_object_new_string(ns));
        json_object_object_add(involved, "name", json_object_new_string(name));
        if (uid)
                json_object_object_add(involved, "uid", json_object_new_string(uid));
        json_object_object_add(ev, "involvedObject", involved);
        json_object_object_add(ev, "type", json_object_new_string(type));
        json_object_object_add(ev, "reason", json_object_new_string(reason));
        json_object_object_add(ev, "message", json_object_new_string(msg));
        json_object_object_add(source, "component", json_object_new_string(r->component));
        json_object_object_add(ev, "source", source);
        json_object_object_add(ev, "reportingComponent", json_object_new_string(r->component));
        json_object_object_add(ev, "reportingInstance", json_object_new_string(r->instance));
        json_object_object_add(ev, "firstTimestamp", json_object_new_string(ts));
        json_object_object_add(ev, "lastTimestamp", json_object_new_string(ts));
        json_object_object_add(ev, "count", json_object_new_int(1));
        n = kube_create_object(r->kube, &KUBE_RESOURCE_EVENTS, ns, ev, on_posted, r, NULL);
        if (n < 0) {
                r->stats.failed++;
                return n;
        }
        r->stats.posted++;
        return 1;
}

void recorder_get_stats(const recorder *r, recorder_stats *ret) {
        *ret = r->stats;
}
