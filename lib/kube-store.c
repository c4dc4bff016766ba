/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The watch's local store: objects by "namespace/name", in a strmap
 * (lib/strmap.h) of entries that hold their key and their value in one
 * allocation: ~35 bytes an entry besides the value, where a json-c object
 * as the map cost ~170. An entry of a plain store holds one reference to the
 * stored object.
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
 * right after the entry's key.
 */

#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "jsonx.h"
#include "kube-internal.h"
#include "strmap.h"

/* A small window: the objects are a few KiB, and the dictionary is the last
 * DICT_MAX bytes of the first one. deflate then needs ~48 KiB, inflate 8. */
#define WINDOW_BITS 13
#define MEM_LEVEL   6
#define DICT_MAX    (1U << WINDOW_BITS)
/* The largest scratch buffers kept between calls. */
#define KEEP_BUF (64 * 1024)

/* One object: its key, NUL-terminated, then (compact) its stored value. */
typedef struct entry {
        union {
                json_object *obj; /* a plain store's object */
                uint32_t z_len;   /* a compact store's value: bytes after the key */
        };
        uint64_t seq; /* insertion order, kept when the object is replaced */
        char key[];
} entry;

static const char *entry_key(const void *e) {
        return ((const entry *) e)->key;
}

static const unsigned char *entry_value(const entry *e) {
        return (const unsigned char *) e->key + strlen(e->key) + 1;
}

struct kube_store {
        strmap map;
        uint64_t next_seq;
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
        s->map = STRMAP_INIT(entry_key);
        *ret = s;
        return 0;
}

static void entry_free(kube_store *s, entry *e) {
        if (e && !s->compact)
                json_object_put(e->obj);
        free(e);
}

kube_store *kube_store_free(kube_store *s) {
        entry *e;

        if (!s)
                return NULL;
        json_object_put(s->scratch);
        STRMAP_FOREACH(e, &s->map, i)
        entry_free(s, e);
        strmap_clear(&s->map);
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

/* A compact entry for @key with @len bytes of @text: see the top of this file. */
static entry *deflate_text(kube_store *s, const char *key, const char *text, size_t len) {
        size_t bound, kl = strlen(key);
        entry *v = NULL;
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
        if (r == Z_STREAM_END && 4 + s->def.total_out <= UINT32_MAX) {
                v = malloc(sizeof(entry) + kl + 1 + 4 + s->def.total_out);
                if (v) {
                        v->z_len = (uint32_t) (4 + s->def.total_out);
                        memcpy(v->key, key, kl + 1);
                        memcpy(v->key + kl + 1, s->out, v->z_len);
                }
        }
        if (s->out_cap > KEEP_BUF) {
                /* A rare large object: don't hold its size for good. */
                s->out = mfree(s->out);
                s->out_cap = 0;
        }
        return v;
}

/* The text of a compact entry, in s->text (NUL-terminated), or NULL. */
static const char *inflate_text(kube_store *s, const entry *v, size_t *ret_len) {
        const unsigned char *in = entry_value(v);
        size_t in_len = v->z_len, len = 0;
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
        if (strmap_count(&s->map) > 0)
                return -EBUSY;
        s->compact = true;
        s->transform = transform;
        s->transform_userdata = userdata;
        return 0;
}

/* The object an entry stands for, as a new reference. */
static json_object *expand(kube_store *s, const entry *v) {
        const char *text;
        size_t len;
        json_object *o = NULL;

        if (!v)
                return NULL;
        if (!s->compact)
                return json_object_get(v->obj);
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
        if (!s || !key)
                return NULL;
        return expand(s, strmap_get(&s->map, key));
}

json_object *kube_store_get(kube_store *s, const char *key) {
        entry *v;

        if (!s || !key)
                return NULL;
        v = strmap_get(&s->map, key);
        if (!v)
                return NULL;
        if (!s->compact)
                return v->obj;
        json_object_put(s->scratch);
        s->scratch = expand(s, v);
        return s->scratch;
}

bool kube_store_contains(kube_store *s, const char *key) {
        return s && key && strmap_get(&s->map, key);
}

size_t kube_store_count(kube_store *s) {
        return s ? strmap_count(&s->map) : 0;
}

typedef struct key_ref {
        uint64_t seq;
        size_t at; /* in the key buffer */
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
        uint64_t x = ((const key_ref *) a)->seq, y = ((const key_ref *) b)->seq;

        return x < y ? -1 : x > y;
}

/* The keys in the order they were first stored, collected first (@fn may
 * change the store): one buffer of NUL-terminated keys, *@ret_len bytes. */
static int collect_keys(kube_store *s, char **ret, size_t *ret_len) {
        _cleanup_free_ key_ref *refs = NULL;
        _cleanup_free_ char *scratch = NULL;
        size_t len = 0, at = 0, n = 0;
        char *keys;
        entry *e;

        STRMAP_FOREACH(e, &s->map, i)
        len += strlen(e->key) + 1;
        refs = calloc(strmap_count(&s->map) ?: 1, sizeof(key_ref));
        scratch = malloc(len ?: 1);
        keys = malloc(len ?: 1);
        if (!refs || !scratch || !keys) {
                free(keys);
                return -ENOMEM;
        }
        STRMAP_FOREACH(e, &s->map, i) {
                size_t kl = strlen(e->key) + 1;

                memcpy(scratch + at, e->key, kl);
                refs[n++] = (key_ref){.seq = e->seq, .at = at};
                at += kl;
        }
        qsort(refs, n, sizeof(key_ref), key_ref_cmp);
        at = 0;
        for (size_t i = 0; i < n; i++) {
                size_t kl = strlen(scratch + refs[i].at) + 1;

                memcpy(keys + at, scratch + refs[i].at, kl);
                at += kl;
        }
        *ret = keys;
        *ret_len = len;
        return 0;
}

int kube_store_foreach(kube_store *s, int (*fn)(const char *key, json_object *obj, void *userdata),
                       void *userdata) {
        _cleanup_free_ char *keys = NULL;
        size_t len;
        int r;

        if (!s || !fn)
                return -EINVAL;
        r = collect_keys(s, &keys, &len);
        if (r < 0)
                return r;
        for (const char *k = keys; k < keys + len; k += strlen(k) + 1) {
                entry *v = strmap_get(&s->map, k);
                _cleanup_json_ json_object *obj = NULL;

                if (!v)
                        continue; /* removed by @fn */
                obj = expand(s, v);
                if (!obj)
                        return -ENOMEM;
                r = fn(k, obj, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

int kube_store_foreach_key(kube_store *s, int (*fn)(const char *key, void *userdata),
                           void *userdata) {
        _cleanup_free_ char *keys = NULL;
        size_t len;
        int r;

        if (!s || !fn)
                return -EINVAL;
        r = collect_keys(s, &keys, &len);
        if (r < 0)
                return r;
        for (const char *k = keys; k < keys + len; k += strlen(k) + 1) {
                if (!strmap_get(&s->map, k))
                        continue;
                r = fn(k, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* The entry to store for @obj under @key: @obj itself, or its (transformed)
 * text, deflated. */
static entry *condense(kube_store *s, const char *key, json_object *obj) {
        _cleanup_json_ json_object *t = NULL;
        const char *text;
        size_t len;
        entry *e;

        if (!s->compact) {
                size_t kl = strlen(key);

                e = malloc(sizeof(entry) + kl + 1);
                if (!e)
                        return NULL;
                e->obj = json_object_get(obj);
                memcpy(e->key, key, kl + 1);
                return e;
        }
        if (s->transform) {
                t = s->transform(obj, s->transform_userdata);
                if (!t)
                        return NULL;
        }
        text = json_object_to_json_string_length(
                t ?: obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return NULL;
        return deflate_text(s, key, text, len);
}

/* Counts @v in (@sign 1) or out (-1) of the store's sizes. */
static void account(kube_store *s, const entry *v, int sign) {
        const unsigned char *p;
        size_t len = 0;

        if (!s->compact || !v || v->z_len < 4)
                return;
        p = entry_value(v);
        for (unsigned i = 0; i < 4; i++)
                len |= (size_t) p[i] << (8 * i);
        if (sign > 0) {
                s->bytes += v->z_len;
                s->text_bytes += len;
        } else {
                s->bytes -= v->z_len;
                s->text_bytes -= len;
        }
}

size_t kube_store_bytes(kube_store *s, size_t *ret_text_bytes) {
        if (ret_text_bytes)
                *ret_text_bytes = s ? s->text_bytes : 0;
        return s ? s->bytes : 0;
}

int kube_store_put(kube_store *s, const char *key, json_object *obj, json_object **ret_old) {
        entry *v, *old = NULL;
        int r;

        if (!s || !key || !obj)
                return -EINVAL;
        v = condense(s, key, obj);
        if (!v)
                return -ENOMEM;
        v->seq = s->next_seq;
        r = strmap_put(&s->map, v, (void **) &old);
        if (r < 0) {
                entry_free(s, v);
                return r;
        }
        if (old)
                v->seq = old->seq; /* a replaced object keeps its place */
        else
                s->next_seq++;
        account(s, old, -1);
        account(s, v, 1);
        if (ret_old)
                *ret_old = expand(s, old);
        entry_free(s, old);
        return 0;
}

json_object *kube_store_remove(kube_store *s, const char *key) {
        entry *old;
        json_object *ret;

        if (!s || !key)
                return NULL;
        old = strmap_remove(&s->map, key);
        if (!old)
                return NULL;
        ret = expand(s, old);
        account(s, old, -1);
        entry_free(s, old);
        return ret;
}
