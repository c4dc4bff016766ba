/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>

#include "hash.h"
#include "jsonx.h"
#include "publish.h"

int publish_configmap_name(const char *ns, const char *name, char **ret) {
        char hex[HASH_SHA256_HEX_LEN + 1];
        _cleanup_free_ char *both = NULL;
        int r;

        if (isempty(ns) || isempty(name))
                return -EINVAL;
        if (strlen(ns) + strlen(name) + 4 <= 253)
                return asprintf(ret, "cb-%s.%s", ns, name) < 0 ? -ENOMEM : 0;
        if (asprintf(&both, "%s/%s", ns, name) < 0)
                return -ENOMEM;
        r = hash_sha256_hex(both, strlen(both), hex);
        if (r < 0)
                return r;
        return asprintf(ret, "cb-%.40s", hex) < 0 ? -ENOMEM : 0;
}

static void add_string(json_object *o, const char *k, const char *v) {
        if (v)
                json_object_object_add(o, k, json_object_new_string(v));
}

static json_object *copy_selector(json_object *sel) {
        json_object *copy = NULL;

        if (!sel)
                return json_object_new_object();
        if (jsonx_deep_copy(sel, &copy) < 0)
                return NULL;
        return copy;
}

json_object *publish_index_entry(const render_identity *id, int64_t revision, const char *digest,
                                 const char *object_key, const char *config_map,
                                 json_object *node_selector, const char *reload) {
        json_object *e = json_object_new_object();

        if (!e)
                return NULL;
        add_string(e, "namespace", id->namespace);
        add_string(e, "name", id->name);
        add_string(e, "uid", id->uid);
        json_object_object_add(e, "revision", json_object_new_int64(revision));
        add_string(e, "digest", digest);
        add_string(e, "key", object_key);
        add_string(e, "configMap", config_map);
        json_object_object_add(e, "nodeSelector", copy_selector(node_selector));
        add_string(e, "reload", reload);
        return e;
}

static json_object *new_metadata(const char *ns, const char *name, json_object **ret_labels,
                                 json_object **ret_annotations) {
        json_object *meta = json_object_new_object(), *labels = json_object_new_object(),
                    *ann = json_object_new_object();

        if (!meta || !labels || !ann) {
                json_object_put(meta);
                json_object_put(labels);
                json_object_put(ann);
                return NULL;
        }
        add_string(meta, "name", name);
        add_string(meta, "namespace", ns);
        add_string(labels, BUNDLE_LABEL_MANAGED_BY, BUNDLE_MANAGER);
        json_object_object_add(meta, "labels", labels);
        json_object_object_add(meta, "annotations", ann);
        *ret_labels = labels;
        *ret_annotations = ann;
        return meta;
}

static json_object *new_configmap(json_object *meta) {
        json_object *cm = json_object_new_object();

        if (!cm) {
                json_object_put(meta);
                return NULL;
        }
        add_string(cm, "apiVersion", "v1");
        add_string(cm, "kind", "ConfigMap");
        json_object_object_add(cm, "metadata", meta);
        return cm;
}

int publish_build_configmap(const char *cm_ns, const char *cm_name, const render_identity *id,
                            int64_t revision, const render_result *rendered, const char *object_key,
                            json_object *node_selector, const char *reload, json_object **ret,
                            bool *ret_inline) {
        _cleanup_json_ json_object *cm = NULL, *sel = NULL;
        json_object *meta, *labels, *ann, *data;
        _cleanup_free_ char *bundle = NULL, *sel_json = NULL;
        char rev[32];
        bool inline_manifest = rendered->manifest_len <= BUNDLE_CONFIGMAP_MAX_DATA;
        size_t sel_len;
        int r;

        meta = new_metadata(cm_ns, cm_name, &labels, &ann);
        if (!meta)
                return -ENOMEM;
        cm = new_configmap(meta);
        if (!cm)
                return -ENOMEM;
        if (asprintf(&bundle, "%s/%s", id->namespace, id->name) < 0)
                return -ENOMEM;
        sel = copy_selector(node_selector);
        if (!sel)
                return -ENOMEM;
        r = jsonx_to_canonical(sel, &sel_json, &sel_len);
        if (r < 0)
                return r;
        snprintf(rev, sizeof(rev), "%" PRIi64, revision);

        add_string(labels, BUNDLE_LABEL_BUNDLE, "true");
        add_string(ann, BUNDLE_ANN_BUNDLE, bundle);
        add_string(ann, BUNDLE_ANN_UID, id->uid);
        add_string(ann, BUNDLE_ANN_REVISION, rev);
        add_string(ann, BUNDLE_ANN_DIGEST, rendered->digest);
        add_string(ann, BUNDLE_ANN_OBJECT_KEY, object_key);
        add_string(ann, BUNDLE_ANN_NODE_SELECTOR, sel_json);
        add_string(ann, BUNDLE_ANN_RELOAD, reload);
        add_string(ann, BUNDLE_ANN_MANIFEST,
                   inline_manifest ? BUNDLE_MANIFEST_INLINE : BUNDLE_MANIFEST_IN_STORE);
        data = json_object_new_object();
        if (!data)
                return -ENOMEM;
        if (inline_manifest)
                json_object_object_add(data, BUNDLE_MANIFEST_DATA_KEY,
                                       json_object_new_string_len(rendered->manifest,
                                                                  (int) rendered->manifest_len));
        json_object_object_add(cm, "data", data);
        *ret = TAKE_PTR(cm);
        if (ret_inline)
                *ret_inline = inline_manifest;
        return 0;
}

int publish_build_index_configmap(const char *cm_ns, const char *index_json, size_t len,
                                  json_object **ret) {
        json_object *meta, *labels, *ann, *data, *cm;

        meta = new_metadata(cm_ns, BUNDLE_INDEX_CONFIGMAP, &labels, &ann);
        if (!meta)
                return -ENOMEM;
        add_string(labels, BUNDLE_LABEL_INDEX, "true");
        cm = new_configmap(meta);
        data = json_object_new_object();
        if (!cm || !data) {
                json_object_put(cm);
                json_object_put(data);
                return -ENOMEM;
        }
        json_object_object_add(data, BUNDLE_INDEX_KEY,
                               json_object_new_string_len(index_json, (int) len));
        json_object_object_add(cm, "data", data);
        *ret = cm;
        return 0;
}

/* True if every key of @want is in @have with an equal value. */
static bool is_subset(json_object *want, json_object *have) {
        if (!want)
                return true;
        if (!have)
                return json_object_object_length(want) == 0;
        json_object_object_foreach(want, k, v) {
                json_object *h;

                if (!json_object_object_get_ex(have, k, &h) || !json_object_equal(v, h))
                        return false;
        }
        return true;
}

/* True if every BUNDLE_ANN_PREFIX key of @have is also in @want: one we stopped
 * setting (a reload name removed) must make the object stale. */
static bool has_no_stale_own_keys(json_object *want, json_object *have) {
        if (!have)
                return true;
        json_object_object_foreach(have, k, v) {
                if (startswith(k, BUNDLE_ANN_PREFIX) &&
                    (!want || !json_object_object_get_ex(want, k, NULL)))
                        return false;
        }
        return true;
}

/* The bundle_digest() of @v's string, into @buf. */
static int value_digest(json_object *v, char buf[static BUNDLE_DIGEST_SIZE]) {
        return bundle_digest(json_object_get_string(v), (size_t) json_object_get_string_len(v),
                             buf);
}

json_object *publish_configmap_summary(json_object *cm, void *userdata) {
        _cleanup_json_ json_object *sum = NULL;
        json_object *meta, *labels, *ann, *data, *have;
        const char *keep[] = {"name", "namespace", "resourceVersion", "uid"};

        (void) userdata;
        /* The index ConfigMap is read back whole (index_load()); there is one. */
        if (!json_object_object_get_ex(jsonx_get(cm, "metadata.labels"), BUNDLE_LABEL_BUNDLE, NULL))
                return json_object_get(cm);
        sum = json_object_new_object();
        meta = json_object_new_object();
        data = json_object_new_object();
        if (!sum || !meta || !data) {
                json_object_put(meta);
                json_object_put(data);
                return NULL;
        }
        json_object_object_add(sum, PUBLISH_SUMMARY_MARK, json_object_new_boolean(true));
        json_object_object_add(sum, "metadata", meta);
        json_object_object_add(sum, "data", data);
        for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                if (json_object_object_get_ex(jsonx_get(cm, "metadata"), keep[i], &have))
                        json_object_object_add(meta, keep[i], json_object_get(have));
        labels = jsonx_get(cm, "metadata.labels");
        if (labels)
                json_object_object_add(meta, "labels", json_object_get(labels));
        ann = json_object_new_object();
        if (!ann)
                return NULL;
        json_object_object_add(meta, "annotations", ann);
        json_object_object_foreach(jsonx_get(cm, "metadata.annotations"), k,
                                   v) if (startswith(k, BUNDLE_ANN_PREFIX))
                json_object_object_add(ann, k, json_object_get(v));
        json_object_object_foreach(jsonx_get(cm, "data"), dk, dv) {
                char digest[BUNDLE_DIGEST_SIZE];

                if (value_digest(dv, digest) < 0)
                        return NULL;
                json_object_object_add(data, dk, json_object_new_string(digest));
        }
        return TAKE_PTR(sum);
}

/* True if @have holds the data of @want: the same values, or in a summary
 * their digests. */
static bool data_matches(json_object *want, json_object *have, bool summary) {
        if (!summary)
                return is_subset(want, have);
        json_object_object_foreach(want, k, v) {
                char digest[BUNDLE_DIGEST_SIZE];
                json_object *h;

                if (!json_object_object_get_ex(have, k, &h) || value_digest(v, digest) < 0 ||
                    !streq(strempty(json_object_get_string(h)), digest))
                        return false;
        }
        return true;
}

bool publish_configmap_is_current(json_object *existing, json_object *desired) {
        json_object *ed = jsonx_get(existing, "data"), *dd = jsonx_get(desired, "data");

        if (!existing)
                return false;
        /* Data must match exactly (a stale extra key would confuse readers). */
        if (json_object_object_length(dd) != (ed ? json_object_object_length(ed) : 0) ||
            !data_matches(dd, ed, json_object_object_get_ex(existing, PUBLISH_SUMMARY_MARK, NULL)))
                return false;
        return is_subset(jsonx_get(desired, "metadata.labels"),
                         jsonx_get(existing, "metadata.labels")) &&
               is_subset(jsonx_get(desired, "metadata.annotations"),
                         jsonx_get(existing, "metadata.annotations")) &&
               has_no_stale_own_keys(jsonx_get(desired, "metadata.annotations"),
                                     jsonx_get(existing, "metadata.annotations"));
}
