/* SPDX-License-Identifier: Apache-2.0 */

#include <zlib.h>

#include "bundle.h"
#include "hash.h"
#include "index.h"
#include "jsonx.h"
#include "loop.h"
#include "strmap.h"

typedef struct waiter {
        index_synced_fn fn;
        void *userdata;
        struct waiter *next;
} waiter;

struct bundle_index {
        sd_event *event;
        index_sink_fn sink;
        void *sink_userdata;
        uint64_t coalesce_usec;
        /* of ix_entry: "NS/NAME" -> the entry's canonical text, deflated
         * (index_text): a tree would cost ~3 KiB an entry in json-c, the
         * text ~385 bytes, the deflated text ~110. */
        strmap bundles;
        json_object *scratch; /* what index_get() last returned */
        size_t entries_len;   /* the keys and texts of all entries, in bytes */
        size_t max_len;       /* index_set_max_len() */
        bool hold;
        bool dirty; /* changed since the last write started */

        waiter *pending;  /* waiting for the next write */
        waiter *inflight; /* waiting for the write in flight */
        bool writing;
        index_doc *writing_doc; /* the document in flight */
        char writing_digest[HASH_SHA256_HEX_LEN + 1];
        /* sha256 of the bytes of the last successful write (or load); the
         * bytes themselves would double the index's memory. */
        char last_written[HASH_SHA256_HEX_LEN + 1];
        bool have_last_written;
        sd_event_source *timer;
        sd_event_source *defer; /* completes no-op syncs outside index_sync() */
        uint64_t writes;
        /* Pacing (schedule_write()): when the last write started and ended,
         * on the loop's clock. */
        uint64_t write_started, write_ended;
};

/* One entry's canonical text, deflated (raw deflate with a fixed preset
 * dictionary, so any index can inflate any text): ~110 bytes instead of
 * ~385. The same text always deflates to the same bytes, so texts compare
 * without inflating. */
struct index_text {
        unsigned refs;
        uint32_t len;   /* of the text */
        uint32_t z_len; /* of z */
        unsigned char z[];
};

/* The document around the entries: the canonical form (keys in byte order)
 * of {"apiVersion":BUNDLE_API_VERSION,"bundles":{...},"kind":BUNDLE_KIND_INDEX}. */
#define DOC_HEAD "{\"apiVersion\":\"" BUNDLE_API_VERSION "\",\"bundles\":{"
#define DOC_TAIL "},\"kind\":\"" BUNDLE_KIND_INDEX "\"}"

/* See schedule_write(): the operator and the target spend at most a third
 * of their time on this index's writes (4 MB at 10,000 bundles: each write
 * reads every entry twice, and the object store stores it whole). */
#define INDEX_PACE 2

/* Small: entries are a few hundred bytes. The output depends on these, and
 * texts compare by their deflated bytes: never change them within a process. */
#define TEXT_WINDOW_BITS 10
#define TEXT_MEM_LEVEL   4

/* What entries look like (publish_index_entry()): deflate refers back to it
 * for the field names and the fixed parts of the values. */
static const char text_dict[] =
        "{\"configMap\":\"ballast-bundle-\",\"digest\":\"sha256:\",\"key\":\"bundles/"
        "default/\",\"name\":\"\",\"namespace\":\"default\",\"nodeSelector\":{"
        "\"matchExpressions\":[{\"key\":\"\",\"operator\":\"In\",\"values\":[\"\"]}],"
        "\"matchLabels\":{\"kubernetes.io/hostname\":\"node-\",\"pool\":\"\"}},\"reload\":"
        "null,\"revision\":1,\"uid\":\"00000000-0000-0000-0000-000000000000\"}";

static int text_deflate(const char *text, size_t len, index_text **ret) {
        _cleanup_free_ index_text *t = NULL;
        z_stream z = {};
        uLong bound;
        int r;

        if (len > UINT32_MAX / 2)
                return -E2BIG;
        if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -TEXT_WINDOW_BITS, TEXT_MEM_LEVEL,
                         Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        bound = deflateBound(&z, (uLong) len);
        t = malloc(sizeof(index_text) + bound);
        if (!t ||
            deflateSetDictionary(&z, (const Bytef *) text_dict, sizeof(text_dict) - 1) != Z_OK) {
                deflateEnd(&z);
                return -ENOMEM;
        }
        z.next_in = (Bytef *) text;
        z.avail_in = (uInt) len;
        z.next_out = t->z;
        z.avail_out = (uInt) bound;
        r = deflate(&z, Z_FINISH);
        deflateEnd(&z);
        if (r != Z_STREAM_END)
                return -EIO;
        *t = (index_text){.refs = 1, .len = (uint32_t) len, .z_len = (uint32_t) z.total_out};
        /* Give back what the bound reserved beyond the output. */
        *ret = realloc(t, sizeof(index_text) + t->z_len) ?: t;
        TAKE_PTR(t);
        return 0;
}

/* Inflates @t into @out (t->len bytes), with @z an inflate stream set up by
 * text_inflate_init() (reset here). */
static int text_inflate(z_stream *z, const index_text *t, char *out) {
        int r;

        if (inflateReset(z) != Z_OK ||
            inflateSetDictionary(z, (const Bytef *) text_dict, sizeof(text_dict) - 1) != Z_OK)
                return -EIO;
        z->next_in = (Bytef *) t->z;
        z->avail_in = t->z_len;
        z->next_out = (Bytef *) out;
        z->avail_out = t->len;
        r = inflate(z, Z_FINISH);
        if (r != Z_STREAM_END || z->total_out != t->len)
                return -EIO;
        return 0;
}

static int text_inflate_init(z_stream *z) {
        *z = (z_stream){};
        return inflateInit2(z, -TEXT_WINDOW_BITS) == Z_OK ? 0 : -ENOMEM;
}

/* The text of @t as a new NUL-terminated string. */
static char *text_plain(const index_text *t) {
        _cleanup_free_ char *s = malloc((size_t) t->len + 1);
        z_stream z;
        int r;

        if (!s || text_inflate_init(&z) < 0)
                return NULL;
        r = text_inflate(&z, t, s);
        inflateEnd(&z);
        if (r < 0)
                return NULL;
        s[t->len] = '\0';
        return TAKE_PTR(s);
}

static bool text_equal(const index_text *a, const index_text *b) {
        return a == b ||
               (a->len == b->len && a->z_len == b->z_len && memcmp(a->z, b->z, a->z_len) == 0);
}

int index_text_new(json_object *entry, index_text **ret) {
        _cleanup_free_ char *text = NULL;
        size_t n;
        int r;

        if (!entry || !ret)
                return -EINVAL;
        r = jsonx_to_canonical(entry, &text, &n);
        if (r < 0)
                return r;
        return text_deflate(text, n, ret);
}

index_text *index_text_ref(index_text *t) {
        if (t)
                t->refs++;
        return t;
}

index_text *index_text_unref(index_text *t) {
        if (t && --t->refs == 0)
                free(t);
        return NULL;
}

size_t index_text_size(const index_text *t) {
        return sizeof(index_text) + t->z_len;
}

/* What "KEY":TEXT adds to the document, with its comma (keys are Kubernetes
 * names, which need no escapes). */
static size_t member_len(const char *key, const index_text *text) {
        return strlen(key) + 4 + text->len;
}

size_t index_len_estimate(const bundle_index *ix) {
        size_t n = index_count(ix);

        /* entries_len counts a comma for each entry; there is one fewer. */
        return strlen(DOC_HEAD DOC_TAIL) + ix->entries_len - (n > 0);
}

/* What stands for the digest of a document too large to serialize: the
 * sink's summary depends on the count alone. */
static void summary_digest(const bundle_index *ix, char out[static HASH_SHA256_HEX_LEN + 1]) {
        snprintf(out, HASH_SHA256_HEX_LEN + 1, "too large: %zu entries", index_count(ix));
}

bool index_too_large(const bundle_index *ix) {
        return ix->max_len > 0 && index_len_estimate(ix) > ix->max_len;
}

void index_set_max_len(bundle_index *ix, size_t max_len) {
        ix->max_len = max_len;
}

typedef struct ix_entry {
        index_text *text; /* maybe shared with another index */
        char key[];
} ix_entry;

static const char *ix_entry_key(const void *e) {
        return ((const ix_entry *) e)->key;
}

static void map_free(strmap *m) {
        ix_entry *e;

        STRMAP_FOREACH(e, m, i) {
                index_text_unref(e->text);
                free(e);
        }
        strmap_clear(m);
}

/* Adds @t as the entry for @key (stealing the reference), keeping count of
 * the document's size. */
static int put_entry(strmap *map, size_t *len, const char *key, index_text *t) {
        size_t kl = strlen(key);
        ix_entry *e = malloc(sizeof(ix_entry) + kl + 1), *old = NULL;

        if (e) {
                e->text = t;
                memcpy(e->key, key, kl + 1);
        }
        if (!e || strmap_put(map, e, (void **) &old) < 0) {
                free(e);
                index_text_unref(t);
                return -ENOMEM;
        }
        if (old) {
                *len -= member_len(key, old->text);
                index_text_unref(old->text);
                free(old);
        }
        *len += member_len(key, t);
        return 0;
}

typedef struct doc_entry {
        const char *key; /* in index_doc.keys */
        index_text *text;
} doc_entry;

/* The canonical document, DOC_HEAD "KEY":TEXT,... DOC_TAIL with the keys in
 * byte order (what jsonx_to_canonical() makes of index_serialize()'s tree),
 * produced piece by piece. */
struct index_doc {
        doc_entry *entries;
        size_t n;
        char *keys;
        size_t len;
        /* The reader: the next byte is byte @off of piece @piece, where piece
         * 0 is the head, 4i+1..4i+4 are entry i's separator and opening
         * quote, key, closing quote and colon, text, and the last the tail. */
        uint64_t pos;
        size_t piece, off;
        /* The text of entry @plain_entry, inflated (SIZE_MAX: none yet). */
        char *plain;
        size_t plain_entry;
        z_stream inflater;
        bool have_inflater;
        /* Its digests, once doc_digest() has read it. */
        unsigned char sha256[32], md5[16];
        bool have_sha256, have_md5;
};

static index_doc *doc_free(index_doc *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n; i++)
                index_text_unref(d->entries[i].text);
        free(d->entries);
        free(d->keys);
        free(d->plain);
        if (d->have_inflater)
                inflateEnd(&d->inflater);
        free(d);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(index_doc *, doc_free);

static int doc_entry_cmp(const void *a, const void *b) {
        return strcmp(((const doc_entry *) a)->key, ((const doc_entry *) b)->key);
}

/* Freezes the entries of @ix: ~40 bytes an entry instead of the ~400 of its
 * text. */
static int doc_new(bundle_index *ix, index_doc **ret) {
        _cleanup_(doc_freep) index_doc *d = calloc(1, sizeof(*d));
        size_t n = index_count(ix), keys_len = 0, at = 0, plain_max = 0;
        ix_entry *e;
        int r;

        if (!d)
                return -ENOMEM;
        STRMAP_FOREACH(e, &ix->bundles, i) {
                keys_len += strlen(e->key) + 1;
                plain_max = MAX(plain_max, (size_t) e->text->len);
        }
        d->plain_entry = SIZE_MAX;
        d->entries = calloc(n ?: 1, sizeof(doc_entry));
        d->keys = malloc(keys_len ?: 1);
        d->plain = malloc(plain_max ?: 1);
        if (!d->entries || !d->keys || !d->plain)
                return -ENOMEM;
        r = text_inflate_init(&d->inflater);
        if (r < 0)
                return r;
        d->have_inflater = true;
        d->len = strlen(DOC_HEAD) + strlen(DOC_TAIL);
        STRMAP_FOREACH(e, &ix->bundles, i) {
                size_t kl = strlen(e->key);

                memcpy(d->keys + at, e->key, kl + 1);
                d->entries[d->n++] =
                        (doc_entry){.key = d->keys + at, .text = index_text_ref(e->text)};
                at += kl + 1;
                d->len += (d->n > 1) + kl + 3 + e->text->len;
        }
        qsort(d->entries, d->n, sizeof(doc_entry), doc_entry_cmp);
        *ret = TAKE_PTR(d);
        return 0;
}

/* Piece @p of the document (see struct index_doc); NULL if an entry's text
 * cannot be inflated. */
static const char *doc_piece(index_doc *d, size_t p, size_t *ret_len) {
        const doc_entry *e;
        size_t i;

        if (p == 0) {
                *ret_len = strlen(DOC_HEAD);
                return DOC_HEAD;
        }
        if (p > 4 * d->n) {
                *ret_len = p == 4 * d->n + 1 ? strlen(DOC_TAIL) : 0;
                return DOC_TAIL;
        }
        i = (p - 1) / 4;
        e = &d->entries[i];
        switch ((p - 1) % 4) {
        case 0: /* a comma between entries */
                *ret_len = 1 + (p > 1);
                return &",\""[p == 1];
        case 1:
                *ret_len = strlen(e->key);
                return e->key;
        case 2:
                *ret_len = 2;
                return "\":";
        default:
                if (d->plain_entry != i) {
                        d->plain_entry = SIZE_MAX;
                        if (text_inflate(&d->inflater, e->text, d->plain) < 0)
                                return NULL;
                        d->plain_entry = i;
                }
                *ret_len = e->text->len;
                return d->plain;
        }
}

ssize_t index_doc_read(void *buf, size_t len, uint64_t offset, void *userdata) {
        index_doc *d = userdata;
        size_t done = 0;

        if (offset == 0)
                d->pos = 0, d->piece = 0, d->off = 0;
        else if (offset != d->pos)
                return -ESPIPE; /* only forward, or from the start */
        while (done < len) {
                size_t pl, k;
                const char *p;

                if (d->piece > 4 * d->n + 1)
                        break; /* the end */
                p = doc_piece(d, d->piece, &pl);
                if (!p)
                        return -EIO;
                k = MIN(len - done, pl - d->off);
                memcpy((char *) buf + done, p + d->off, k);
                done += k;
                d->off += k;
                if (d->off == pl) {
                        d->piece++;
                        d->off = 0;
                }
        }
        d->pos += done;
        return (ssize_t) done;
}

int index_doc_text(index_doc *d, char **ret, size_t *ret_len) {
        _cleanup_free_ char *t = malloc(d->len + 1);
        ssize_t k;

        if (!t)
                return -ENOMEM;
        k = index_doc_read(t, d->len, 0, d);
        if (k < 0)
                return (int) k;
        if ((size_t) k != d->len)
                return -EIO;
        t[d->len] = '\0';
        *ret = TAKE_PTR(t);
        if (ret_len)
                *ret_len = d->len;
        return 0;
}

/* sha256 of the document, read as a writer would, and its MD5 in the same
 * pass: an S3 sink sends both without reading the document again. */
static int doc_digest(index_doc *d, char out[static HASH_SHA256_HEX_LEN + 1]) {
        int r;

        r = hash_read(index_doc_read, d, d->len, d->sha256, d->md5);
        d->have_md5 = r >= 0;
        if (r == -EOPNOTSUPP) /* no MD5 (FIPS mode) */
                r = hash_read(index_doc_read, d, d->len, d->sha256, NULL);
        if (r < 0)
                return r;
        d->have_sha256 = true;
        hash_sha256_to_hex(d->sha256, out);
        return 0;
}

void index_doc_digests(const index_doc *d, const unsigned char **ret_sha256,
                       const unsigned char **ret_md5) {
        *ret_sha256 = d->have_sha256 ? d->sha256 : NULL;
        *ret_md5 = d->have_md5 ? d->md5 : NULL;
}

static void waiters_complete(waiter *w, int r, const err_info *err) {
        while (w) {
                waiter *next = w->next;

                w->fn(r, err, w->userdata);
                free(w);
                w = next;
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* A write starts at most coalesce_usec after the first sync it answers: the
 * window is not pushed back by the syncs that follow, or a steady stream of
 * them would hold every write back (a debounce). Nor does it start sooner
 * than INDEX_PACE times the last write's duration after that write ended,
 * so that a large index on a slow or busy target is written less often
 * rather than all the time: the target sets the pace. */
static void schedule_write(bundle_index *ix) {
        uint64_t now, delay = ix->coalesce_usec;
        int enabled = SD_EVENT_OFF;

        if (ix->writing || ix->hold || !ix->pending)
                return;
        if (ix->timer && sd_event_source_get_enabled(ix->timer, &enabled) >= 0 &&
            enabled != SD_EVENT_OFF)
                return; /* the window is open */
        if (ix->write_ended > 0) {
                uint64_t earliest =
                        ix->write_ended + INDEX_PACE * (ix->write_ended - ix->write_started);

                now = loop_now(ix->event);
                if (earliest > now && earliest - now > delay)
                        delay = earliest - now;
        }
        (void) loop_timer_arm(ix->event, &ix->timer, delay, on_timer, ix);
}

static void on_written(bundle_index *ix, int r, const err_info *err) {
        waiter *done = TAKE_PTR(ix->inflight);

        ix->writing = false;
        ix->write_ended = loop_now(ix->event);
        if (r >= 0) {
                memcpy(ix->last_written, ix->writing_digest, sizeof(ix->last_written));
                ix->have_last_written = true;
        } else
                ix->dirty = true; /* what was set is not stored anywhere */
        ix->writing_doc = doc_free(ix->writing_doc);
        schedule_write(ix);
        waiters_complete(done, r, err);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        bundle_index *ix = userdata;
        _cleanup_(doc_freep) index_doc *doc = NULL;
        char sha[HASH_SHA256_HEX_LEN + 1];
        size_t len = 0;
        err_info e;
        int r;

        if (ix->writing || ix->hold || !ix->pending)
                return 0;
        if (index_too_large(ix)) {
                /* The sink writes a summary that depends on the count alone. */
                summary_digest(ix, sha);
                len = index_len_estimate(ix);
                r = 0;
        } else {
                r = doc_new(ix, &doc);
                if (r >= 0) {
                        len = doc->len;
                        r = doc_digest(doc, sha);
                }
        }
        if (r < 0) {
                err_info_set(&e, r, "cannot serialize the index");
                waiters_complete(TAKE_PTR(ix->pending), r, &e);
                return 0;
        }
        ix->dirty = false;
        if (ix->have_last_written && streq(ix->last_written, sha)) {
                /* Nothing changed since the last successful write. */
                waiters_complete(TAKE_PTR(ix->pending), 0, NULL);
                return 0;
        }
        ix->inflight = TAKE_PTR(ix->pending);
        ix->writing = true;
        ix->writing_doc = TAKE_PTR(doc);
        memcpy(ix->writing_digest, sha, sizeof(sha));
        ix->writes++;
        ix->write_started = loop_now(ix->event);
        r = ix->sink(ix, ix->writing_doc, len, on_written, ix->sink_userdata);
        if (r < 0) {
                err_info_set(&e, r, "cannot start the index write");
                on_written(ix, r, &e);
        }
        return 0;
}

int index_new(sd_event *e, index_sink_fn sink, void *sink_userdata, uint64_t coalesce_usec,
              bundle_index **ret) {
        bundle_index *ix;

        if (!e || !sink || !ret)
                return -EINVAL;
        ix = calloc(1, sizeof(*ix));
        if (!ix)
                return -ENOMEM;
        ix->bundles = STRMAP_INIT(ix_entry_key);
        ix->event = sd_event_ref(e);
        ix->sink = sink;
        ix->sink_userdata = sink_userdata;
        ix->coalesce_usec = coalesce_usec;
        *ret = ix;
        return 0;
}

bundle_index *index_free(bundle_index *ix) {
        err_info e;

        if (!ix)
                return NULL;
        err_info_set(&e, -ECANCELED, "shutting down");
        waiters_complete(TAKE_PTR(ix->inflight), -ECANCELED, &e);
        waiters_complete(TAKE_PTR(ix->pending), -ECANCELED, &e);
        sd_event_source_disable_unref(ix->timer);
        sd_event_source_disable_unref(ix->defer);
        map_free(&ix->bundles);
        json_object_put(ix->scratch);
        doc_free(ix->writing_doc);
        sd_event_unref(ix->event);
        free(ix);
        return NULL;
}

typedef struct load_state {
        strmap *raw; /* the entries read so far */
        size_t len;  /* their size, as entries_len */
        bool is_index, has_bundles;
        err_info *err;
} load_state;

static int load_entry(const char *key, const char *value, size_t len, void *userdata) {
        load_state *st = userdata;
        _cleanup_json_ json_object *entry = NULL;
        index_text *t;
        int r;

        /* The document is written with its keys as they are (index_doc):
         * a key that would need escaping is no "NS/NAME" of Kubernetes. */
        for (const char *p = key; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == '"' || *p == '\\')
                        return err_info_set(st->err, -EBADMSG,
                                            "index entry key '%s' is not a namespace/name", key);
        r = jsonx_parse(value, len, &entry, st->err);
        if (r < 0)
                return r;
        if (!json_object_is_type(entry, json_type_object) ||
            jsonx_get_int(entry, "revision", 0) < 1)
                return err_info_set(st->err, -EBADMSG, "index entry '%s' has no positive revision",
                                    key);
        r = index_text_new(entry, &t);
        if (r < 0)
                return r;
        return put_entry(st->raw, &st->len, key, t);
}

static int load_member(const char *key, const char *value, size_t len, void *userdata) {
        load_state *st = userdata;
        _cleanup_json_ json_object *v = NULL;
        int r;

        if (streq(key, "bundles")) {
                /* Entry by entry: the whole document as one tree would cost
                 * ~3 KiB an entry (30 MiB for 10,000 bundles). */
                st->has_bundles = true;
                return jsonx_object_members(value, len, load_entry, st, st->err);
        }
        r = jsonx_parse(value, len, &v, st->err);
        if (r < 0)
                return r;
        if (streq(key, "kind"))
                st->is_index = streq(strempty(json_object_get_string(v)), BUNDLE_KIND_INDEX) &&
                               json_object_is_type(v, json_type_string);
        return 0;
}

int index_load(bundle_index *ix, const char *data, size_t len, err_info *ret_err) {
        strmap raw = STRMAP_INIT(ix_entry_key);
        load_state st = {.raw = &raw, .err = ret_err};
        int r;

        r = jsonx_object_members(data, len, load_member, &st, ret_err);
        if (r >= 0 && (!st.is_index || !st.has_bundles))
                r = err_info_set(ret_err, -EBADMSG,
                                 "not a " BUNDLE_KIND_INDEX
                                 " document (kind and a bundles map needed)");
        if (r < 0) {
                map_free(&raw);
                return r;
        }
        map_free(&ix->bundles);
        ix->bundles = raw;
        ix->entries_len = st.len;
        ix->have_last_written = hash_sha256_hex(data, len, ix->last_written) >= 0;
        ix->dirty = false;
        return 0;
}

int index_adopt(bundle_index *ix, bundle_index *from, size_t written_count) {
        strmap map = STRMAP_INIT(ix_entry_key);
        size_t len = 0;
        ix_entry *e;

        STRMAP_FOREACH(e, &from->bundles, i)
        if (put_entry(&map, &len, e->key, index_text_ref(e->text)) < 0) {
                map_free(&map);
                return -ENOMEM;
        }
        map_free(&ix->bundles);
        ix->bundles = map;
        ix->entries_len = from->entries_len;
        ix->dirty = false;
        /* Written only if the target's summary is the one these entries make;
         * otherwise (fewer now, or another count) the next sync writes. */
        ix->have_last_written = index_too_large(ix) && index_count(ix) == written_count;
        if (ix->have_last_written)
                summary_digest(ix, ix->last_written);
        return 0;
}

/* The stored text of the entry for @key, or NULL. */
static index_text *stored(bundle_index *ix, const char *key) {
        ix_entry *e = strmap_get(&ix->bundles, key);

        return e ? e->text : NULL;
}

int index_set_text(bundle_index *ix, const char *key, index_text *text) {
        index_text *old = stored(ix, key);

        if (!text)
                return -EINVAL;
        if (old && text_equal(old, text))
                return 0;
        ix->dirty = true;
        return put_entry(&ix->bundles, &ix->entries_len, key, index_text_ref(text));
}

int index_set(bundle_index *ix, const char *key, json_object *entry) {
        _cleanup_json_ json_object *owned = entry; /* consumed, whatever happens */
        _cleanup_(index_text_unrefp) index_text *t = NULL;
        int r;

        r = index_text_new(owned, &t);
        if (r < 0)
                return r;
        return index_set_text(ix, key, t);
}

void index_share(bundle_index *ix, const char *key, index_text *text) {
        index_text *old = stored(ix, key);

        if (old && text && old != text && text_equal(old, text))
                (void) put_entry(&ix->bundles, &ix->entries_len, key, index_text_ref(text));
}

void index_remove(bundle_index *ix, const char *key) {
        ix_entry *e = strmap_remove(&ix->bundles, key);

        if (!e)
                return;
        ix->entries_len -= member_len(key, e->text);
        ix->dirty = true;
        index_text_unref(e->text);
        free(e);
}

bool index_is_persisted(const bundle_index *ix) {
        return !ix->dirty && !ix->writing && ix->have_last_written;
}

json_object *index_get(bundle_index *ix, const char *key) {
        index_text *t = stored(ix, key);
        _cleanup_free_ char *plain = NULL;

        if (!t)
                return NULL;
        plain = text_plain(t);
        json_object_put(ix->scratch);
        ix->scratch = plain ? json_tokener_parse(plain) : NULL;
        return ix->scratch;
}

bool index_contains(bundle_index *ix, const char *key) {
        return stored(ix, key);
}

bool index_holds_text(bundle_index *ix, const char *key, const index_text *text) {
        index_text *t = stored(ix, key);

        return t && text && text_equal(t, text);
}

bool index_holds(bundle_index *ix, const char *key, json_object *entry) {
        _cleanup_(index_text_unrefp) index_text *t = NULL;

        return index_text_new(entry, &t) >= 0 && index_holds_text(ix, key, t);
}

size_t index_count(const bundle_index *ix) {
        return strmap_count(&ix->bundles);
}

int index_foreach_key(bundle_index *ix, int (*fn)(const char *key, void *userdata),
                      void *userdata) {
        ix_entry *e;

        STRMAP_FOREACH(e, &ix->bundles, i) {
                int r = fn(e->key, userdata);

                if (r != 0)
                        return r;
        }
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        schedule_write(userdata);
        return 0;
}

int index_sync(bundle_index *ix, index_synced_fn done, void *userdata) {
        waiter *w;

        if (!done)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (waiter){.fn = done, .userdata = userdata, .next = ix->pending};
        ix->pending = w;
        /* Even with a zero coalescing window the write starts from the loop. */
        if (!ix->defer) {
                int r = sd_event_add_defer(ix->event, &ix->defer, on_defer, ix);
                if (r < 0)
                        return r;
        }
        return sd_event_source_set_enabled(ix->defer, SD_EVENT_ONESHOT);
}

void index_set_hold(bundle_index *ix, bool hold) {
        ix->hold = hold;
        if (!hold)
                schedule_write(ix);
}

int index_serialize(bundle_index *ix, char **ret, size_t *ret_len) {
        _cleanup_(doc_freep) index_doc *doc = NULL;
        int r;

        r = doc_new(ix, &doc);
        if (r < 0)
                return r;
        return index_doc_text(doc, ret, ret_len);
}

uint64_t index_writes(const bundle_index *ix) {
        return ix->writes;
}
