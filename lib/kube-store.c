/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The watch's local store: objects by "namespace/name". A json-c object is
 * the hash table (json-c's linkhash: O(1) lookups, insertion-ordered
 * iteration); each value holds one reference to the stored object.
 */

#include "jsonx.h"
#include "kube-internal.h"

struct kube_store {
        json_object *map;
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
        json_object_put(s->map);
        free(s);
        return NULL;
}

json_object *kube_store_get(kube_store *s, const char *key) {
        json_object *v;

        if (!s || !key)
                return NULL;
        if (!json_object_object_get_ex(s->map, key, &v))
                return NULL;
        return v;
}

size_t kube_store_count(kube_store *s) {
        return s ? (size_t) json_object_object_length(s->map) : 0;
}

int kube_store_foreach(kube_store *s, int (*fn)(const char *key, json_object *obj, void *userdata),
                       void *userdata) {
        if (!s || !fn)
                return -EINVAL;
        json_object_object_foreach(s->map, key, obj) {
                int r = fn(key, obj, userdata);

                if (r != 0)
                        return r;
        }
        return 0;
}

int kube_store_put(kube_store *s, const char *key, json_object *obj, json_object **ret_old) {
        json_object *old = NULL;

        if (!s || !key || !obj)
                return -EINVAL;
        /* Keep the previous value alive across the replacement, which puts
         * the store's reference to it. */
        if (json_object_object_get_ex(s->map, key, &old) && old)
                json_object_get(old);
        if (json_object_object_add(s->map, key, json_object_get(obj)) < 0) {
                json_object_put(obj);
                json_object_put(old);
                return -ENOMEM;
        }
        if (ret_old)
                *ret_old = old;
        else
                json_object_put(old);
        return 0;
}

json_object *kube_store_remove(kube_store *s, const char *key) {
        json_object *old;

        if (!s || !key)
                return NULL;
        if (!json_object_object_get_ex(s->map, key, &old) || !old)
                return NULL;
        json_object_get(old);
        json_object_object_del(s->map, key);
        return old;
}
