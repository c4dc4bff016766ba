/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <time.h>

#include "jsonx.h"
#include "status.h"

void status_format_now(char buf[static 32]) {
        time_t t = time(NULL);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_object *find_condition(json_object *status, const char *type) {
        json_object *conds;
        size_t n;

        if (!status || !json_object_object_get_ex(status, "conditions", &conds) ||
            !json_object_is_type(conds, json_type_array))
                return NULL;
        n = json_object_array_length(conds);
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(conds, i);
                const char *t = jsonx_get_string(c, "type");

                if (t && streq(t, type))
                        return c;
        }
        return NULL;
}

static int add_condition(json_object *conds, json_object *old_status, int64_t generation,
                         const char *type, bool ok, const char *reason, const char *message,
                         const char *now) {
        json_object *old = find_condition(old_status, type), *c;
        const char *status = ok ? "True" : "False";
        const char *old_status_s = old ? jsonx_get_string(old, "status") : NULL;
        const char *old_time = old ? jsonx_get_string(old, "lastTransitionTime") : NULL;
        const char *when = old_status_s && old_time && streq(old_status_s, status) ? old_time : now;

        c = json_object_new_object();
        if (!c)
                return -ENOMEM;
        json_object_object_add(c, "type", json_object_new_string(type));
        json_object_object_add(c, "status", json_object_new_string(status));
        json_object_object_add(c, "observedGeneration", json_object_new_int64(generation));
        json_object_object_add(c, "lastTransitionTime", json_object_new_string(when));
        json_object_object_add(c, "reason", json_object_new_string(reason));
        json_object_object_add(c, "message", json_object_new_string(message));
        return json_object_array_add(conds, c);
}

int status_build(json_object *old_status, const bundle_outcome *o, const char *now,
                 json_object **ret) {
        _cleanup_json_ json_object *s = NULL;
        json_object *conds, *nodes;
        char pub_msg[1024], ready_msg[1024];
        bool published;
        const char *pub_reason;
        int r;

        s = json_object_new_object();
        conds = json_object_new_array();
        if (!s || !conds) {
                json_object_put(conds);
                return -ENOMEM;
        }
        json_object_object_add(s, "observedGeneration", json_object_new_int64(o->generation));
        if (o->revision > 0) {
                json_object_object_add(s, "revision", json_object_new_int64(o->revision));
                json_object_object_add(s, "digest", json_object_new_string(strempty(o->digest)));
                if (o->config_map)
                        json_object_object_add(s, "configMap",
                                               json_object_new_string(o->config_map));
                if (o->object_key)
                        json_object_object_add(s, "objectKey",
                                               json_object_new_string(o->object_key));
        }
        if (o->has_counts) {
                nodes = json_object_new_object();
                json_object_object_add(nodes, "matched", json_object_new_int64(o->matched));
                json_object_object_add(nodes, "applied", json_object_new_int64(o->applied));
                json_object_object_add(nodes, "failed", json_object_new_int64(o->failed));
                json_object_object_add(s, "nodes", nodes);
        }
        json_object_object_add(s, "conditions", conds);

        r = add_condition(conds, old_status, o->generation, "Rendered", o->rendered,
                          o->rendered ? "Rendered" : "RenderFailed",
                          o->rendered ? "the spec rendered into a canonical manifest"
                                      : strempty(o->render_error),
                          now);
        if (r < 0)
                return r;

        /* Published: every configured target holds the latest revision. */
        published = o->revision > 0 && o->store != TARGET_FAILED && o->cm != TARGET_FAILED &&
                    !(o->store == TARGET_DISABLED && o->cm == TARGET_DISABLED);
        if (o->revision == 0) {
                pub_reason = o->suspended ? "Suspended" : "NotPublished";
                snprintf(pub_msg, sizeof(pub_msg), "%s",
                         o->suspended ? "suspended before any revision was published"
                                      : "no revision has been published yet");
        } else if (o->store == TARGET_FAILED && o->cm == TARGET_FAILED) {
                pub_reason = "PublishFailed";
                snprintf(pub_msg, sizeof(pub_msg),
                         "revision %" PRIi64 ": object store: %s; ConfigMap: %s", o->revision,
                         strempty(o->store_error), strempty(o->cm_error));
        } else if (o->store == TARGET_FAILED) {
                pub_reason = "ObjectStoreFailed";
                snprintf(pub_msg, sizeof(pub_msg),
                         "revision %" PRIi64 " is in ConfigMap %s but not in the object store: %s",
                         o->revision, strempty(o->config_map), strempty(o->store_error));
        } else if (o->cm == TARGET_FAILED) {
                pub_reason = "ConfigMapFailed";
                snprintf(pub_msg, sizeof(pub_msg),
                         "revision %" PRIi64
                         " is in the object store (%s) but not in a ConfigMap: %s",
                         o->revision, strempty(o->object_key), strempty(o->cm_error));
        } else {
                pub_reason = o->manifest_in_cm || o->cm == TARGET_DISABLED ? "Published"
                                                                           : "PublishedPointer";
                snprintf(pub_msg, sizeof(pub_msg), "revision %" PRIi64 " (%s) is published%s%s%s",
                         o->revision, strempty(o->digest),
                         o->store == TARGET_OK ? " to the object store" : "",
                         o->cm == TARGET_OK
                                 ? (o->store == TARGET_OK ? " and ConfigMap " : " to ConfigMap ")
                                 : "",
                         o->cm == TARGET_OK ? strempty(o->config_map) : "");
                if (!o->manifest_in_cm && o->cm == TARGET_OK)
                        strncat(pub_msg,
                                "; the manifest is too large for a ConfigMap, which carries only "
                                "a pointer to the object store",
                                sizeof(pub_msg) - strlen(pub_msg) - 1);
        }
        r = add_condition(conds, old_status, o->generation, "Published", published, pub_reason,
                          pub_msg, now);
        if (r < 0)
                return r;

        if (!o->rendered)
                snprintf(ready_msg, sizeof(ready_msg), "the latest spec does not render%s",
                         o->revision > 0 ? "; the previous revision stays published" : "");
        else if (o->suspended)
                snprintf(ready_msg, sizeof(ready_msg), "suspended: no new revisions are published");
        else if (!published)
                snprintf(ready_msg, sizeof(ready_msg), "%s", pub_msg);
        else
                snprintf(ready_msg, sizeof(ready_msg), "revision %" PRIi64 " is published",
                         o->revision);
        r = add_condition(conds, old_status, o->generation, "Ready",
                          o->rendered && published && !o->suspended,
                          !o->rendered   ? "RenderFailed"
                          : o->suspended ? "Suspended"
                          : !published   ? pub_reason
                                         : "Ready",
                          ready_msg, now);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

bool status_equal(json_object *a, json_object *b) {
        if (!a || !b)
                return !a && !b;
        return json_object_equal(a, b);
}
