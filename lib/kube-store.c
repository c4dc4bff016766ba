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
 *
 * The text is deflated (zlib, raw), with the text of the first object stored
 * as a preset dictionary: objects of one kind share their field names and
 * much of their values, and a dictionary lets even a 1 KiB object refer to
 * them. In the operator's benchmark a ConfigBundle with its status (~2 KiB
 * of text) is stored in ~400 bytes, a ConfigMap summary in ~230. A value is
 * the text's length (4 bytes, little-endian) followed by the deflated text,
 * held in a json-c string.
 */

#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "jsonx.h"
#include "kube-internal.h"

/* A small window: the objects are a few KiB, and the dictionary is the last
 * DICT_MAX bytes of the first one. deflate then needs ~48 KiB, inflate 8. */
#define WINDOW_BITS 13
#define MEM_LEVEL   6
#define DICT_MAX    (1U << WINDOW_BITS)
/* The largest scratch buffers kept between calls. */
#define KEEP_BUF (64 * 1024)

struct kube_store {
        json_object *map;
        bool compact;
        kube_store_transform_fn transform;
        void *transform_userdata;
        json_object *scratch; /* compact: what kube_store_get() last returned */
        /* compact */
        char *dict;
        size_t dict_len;
        z_stream def, inf;
        bool def_ready, inf_ready;
        unsigned char *out; /* deflate's output buffer */
        size_t out_cap;
        char *text; /* inflate's output buffer */
        size_t text_cap;
        size_t bytes, text_bytes; /* kube_store_bytes() */
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
        if (s->def_ready)
                deflateEnd(&s->def);
        if (s->inf_ready)
                inflateEnd(&s->inf);
        free(s->dict);
        free(s->out);
        free(s->text);
        free(s);
        return NULL;
}

static int grow(void *pp, size_t *cap, size_t need) {
        void **p = pp, *n;

        if (need <= *cap)
                return 0;
        need = MAX(need, *cap * 2);
        n = realloc(*p, need);
        if (!n)
                return -ENOMEM;
        *p = n;
        *cap = need;
        return 0;
}

/* The stored value for @len bytes of @text: see the top of this file. */
static json_object *deflate_text(kube_store *s, const char *text, size_t len) {
        json_object *v;
        size_t bound;
        int r;

        if (len > UINT32_MAX || len > INT_MAX / 2)
                return NULL;
        if (!s->dict) {
                /* The first object's text, or its end: deflate reaches back at most a window. */
                s->dict_len = MIN(len, DICT_MAX);
                s->dict = malloc(s->dict_len ?: 1);
                if (!s->dict)
                        return NULL;
                memcpy(s->dict, text + len - s->dict_len, s->dict_len);
        }
        if (!s->def_ready) {
                if (deflateInit2(&s->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -WINDOW_BITS,
                                 MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
                        return NULL;
                s->def_ready = true;
        } else if (deflateReset(&s->def) != Z_OK)
                return NULL;
        if (deflateSetDictionary(&s->def, (const Bytef *) s->dict, (uInt) s->dict_len) != Z_OK)
                return NULL;
        bound = 4 + deflateBound(&s->def, (uLong) len);
        if (grow(&s->out, &s->out_cap, bound) < 0)
                return NULL;
        for (unsigned i = 0; i < 4; i++)
                s->out[i] = (unsigned char) (len >> (8 * i));
        s->def.next_in = (Bytef *) text;
        s->def.avail_in = (uInt) len;
        s->def.next_out = s->out + 4;
        s->def.avail_out = (uInt) (bound - 4);
        r = deflate(&s->def, Z_FINISH);
        v = r == Z_STREAM_END ? json_object_new_string_len((const char *) s->out,
                                                           (int) (4 + s->def.total_out))
                              : NULL;
        if (s->out_cap > KEEP_BUF) {
                /* A rare large object: don't hold its size for good. */
                s->out = mfree(s->out);
                s->out_cap = 0;
        }
        return v;
}

/* The text of a stored value, in s->text (NUL-terminated), or NULL. */
static const char *inflate_text(kube_store *s, json_object *v, size_t *ret_len) {
        const unsigned char *in = (const unsigned char *) json_object_get_string(v);
        size_t in_len = (size_t) json_object_get_string_len(v), len = 0;
        int r;

        if (in_len < 4)
                return NULL;
        for (unsigned i = 0; i < 4; i++)
                len |= (size_t) in[i] << (8 * i);
        if (grow(&s->text, &s->text_cap, len + 1) < 0)
                return NULL;
        if (!s->inf_ready) {
                if (inflateInit2(&s->inf, -WINDOW_BITS) != Z_OK)
                        return NULL;
                s->inf_ready = true;
        } else if (inflateReset(&s->inf) != Z_OK)
                return NULL;
        if (inflateSetDictionary(&s->inf, (const Bytef *) s->dict, (uInt) s->dict_len) != Z_OK)
                return NULL;
        s->inf.next_in = (Bytef *) in + 4;
        s->inf.avail_in = (uInt) (in_len - 4);
        s->inf.next_out = (Bytef *) s->text;
        s->inf.avail_out = (uInt) len;
        r = inflate(&s->inf, Z_FINISH);
        if (r != Z_STREAM_END || s->inf.total_out != len)
                return NULL;
        s->text[len] = '\0';
        *ret_len = len;
        return s->text;
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
        const char *text;
        size_t len;
        json_object *o = NULL;

        if (!v)
                return NULL;
        if (!s->compact)
                return json_object_get(v);
        text = inflate_text(s, v, &len);
        if (text)
                (void) jsonx_parse(text, len, &o, NULL);
        if (s->text_cap > KEEP_BUF) {
                s->text = mfree(s->text);
                s->text_cap = 0;
        }
        return o;
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
        return deflate_text(s, text, len);
}

/* Counts @v in (@sign 1) or out (-1) of the store's sizes. */
static void account(kube_store *s, json_object *v, int sign) {
        const unsigned char *p;
        size_t len = 0;

        if (!s->compact || !v || json_object_get_string_len(v) < 4)
                return;
        p = (const unsigned char *) json_object_get_string(v);
        for (unsigned i = 0; i < 4; i++)
                len |= (size_t) p[i] << (8 * i);
        if (sign > 0) {
                s->bytes += (size_t) json_object_get_string_len(v);
                s->text_bytes += len;
        } else {
                s->bytes -= (size_t) json_object_get_string_len(v);
                s->text_bytes -= len;
        }
}

size_t kube_store_bytes(kube_store *s, size_t *ret_text_bytes) {
        if (ret_text_bytes)
                *ret_text_bytes = s ? s->text_bytes : 0;
        return s ? s->bytes : 0;
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
        account(s, old, -1);
        account(s, v, 1);
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
        account(s, old, -1);
        json_object_object_del(s->map, key);
        return ret;
}
