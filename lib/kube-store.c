/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The watch's local store: objects by "namespace/name". A json-c object is
 * the hash table (json-c's linkhash: O(1) lookups, insertion-ordered
 * iteration); each value holds one reference to the stored object.
 *
 * A compact store keeps each object as its serialized JSON text instead (a
 * json-c string), first passed through the owner's transform. json-c spends
 * about 800 bytes on every JSON object (a 16-slot hash table each), so a
 * typical custom resource costs ~15 KiB as a tree and ~1.5 KiB as text; the
 * operator's caches of 10,000 bundles are the difference between 150 MiB and
 * 15 MiB. Objects are parsed again when they are read, which readers do once
 * per reconcile.
 */

#include "jsonx.h"
#include "kube-internal.h"

struct kube_store {
        json_object *map;
        bool compact;
        kube_store_transform_fn transform;
        void *transform_userdata;
        json_object *scratch; /* compact: what kube_store_get() last returned */
};

int kube_store_new(kube_store **ret) {
        kube_store *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->map = json_object_new_object();
        if (!s->map) {
                free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

kube_store *kube_store_free(kube_store *s) {
        if (!s)
                return NULL;
        json_object_put(s->scratch);
        json_object_put(s->map);
        free(s);
        return NULL;
}

int kube_store_set_compact(kube_store *s, kube_store_transform_fn transform, void *userdata) {
        if (!s)
                return -EINVAL;
        if (json_object_object_length(s->map) > 0)
                return -EBUSY;
        s->compact = true;
        s->transform = transform;
        s->transform_userdata = userdata;
        return 0;
}

/* The object a stored value stands for, as a new reference. */
static json_object *expand(kube_store *s, json_object *v) {
        if (!v)
                return NULL;
        if (!s->compact)
                return json_object_get(v);
        return json_tokener_parse(json_object_get_string(v));
}

json_object *kube_store_ref(kube_store *s, const char *key) {
        json_object *v;

        if (!s || !key)
                return NULL;
        if (!json_object_object_get_ex(s->map, key, &v))
                return NULL;
        return expand(s, v);
}

json_object *kube_store_get(kube_store *s, const char *key) {
        json_object *v;

        if (!s || !key)
                return NULL;
        if (!json_object_object_get_ex(s->map, key, &v))
                return NULL;
        if (!s->compact)
                return v;
        json_object_put(s->scratch);
        s->scratch = expand(s, v);
        return s->scratch;
}

bool kube_store_contains(kube_store *s, const char *key) {
        return s && key && json_object_object_get_ex(s->map, key, NULL);
}

size_t kube_store_count(kube_store *s) {
        return s ? (size_t) json_object_object_length(s->map) : 0;
}

int kube_store_foreach(kube_store *s, int (*fn)(const char *key, json_object *obj, void *userdata),
                       void *userdata) {
        if (!s || !fn)
                return -EINVAL;
        json_object_object_foreach(s->map, key, v) {
                _cleanup_json_ json_object *obj = expand(s, v);
                int r;

                if (!obj)
                        return -ENOMEM;
                r = fn(key, obj, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

int kube_store_foreach_key(kube_store *s, int (*fn)(const char *key, void *userdata),
                           void *userdata) {
        if (!s || !fn)
                return -EINVAL;
        json_object_object_foreach(s->map, key, v) {
                int r;

                (void) v;
                r = fn(key, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* The value to store for @obj: @obj itself, or its (transformed) text. */
static json_object *condense(kube_store *s, json_object *obj) {
        _cleanup_json_ json_object *t = NULL;
        const char *text;
        size_t len;

        if (!s->compact)
                return json_object_get(obj);
        if (s->transform) {
                t = s->transform(obj, s->transform_userdata);
                if (!t)
                        return NULL;
        }
        text = json_object_to_json_string_length(
                t ?: obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return NULL;
        return json_object_new_string_len(text, (int) len);
}

int kube_store_put(kube_store *s, const char *key, json_object *obj, json_object **ret_old) {
        json_object *old = NULL, *v;

        if (!s || !key || !obj)
                return -EINVAL;
        v = condense(s, obj);
        if (!v)
                return -ENOMEM;
        /* Keep the previous value alive across the replacement, which puts
         * the store's reference to it. */
        if (json_object_object_get_ex(s->map, key, &old) && old)
                json_object_get(old);
        if (json_object_object_add(s->map, key, v) < 0) {
                json_object_put(v);
                json_object_put(old);
                return -ENOMEM;
        }
        if (ret_old && old && s->compact) {
                *ret_old = expand(s, old);
                json_object_put(old);
        } else if (ret_old)
                *ret_old = old;
        else
                json_object_put(old);
        return 0;
}

json_object *kube_store_remove(kube_store *s, const char *key) {
        json_object *old, *ret;

        if (!s || !key)
                return NULL;
        if (!json_object_object_get_ex(s->map, key, &old) || !old)
                return NULL;
        ret = expand(s, old);
        json_object_object_del(s->map, key);
        return ret;
}
