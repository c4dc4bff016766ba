/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The object store front: argument checks, the op list, list pagination,
 * synchronous wrappers, location strings, and the S3 backend adapter (the
 * file backend lives in objstore-file.c). See objstore.h and
 * docs/object-store.md.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsx.h"
#include "loop.h"
#include "objstore.h"
#include "s3.h"

#define OBJSTORE_DEFAULT_PAGE 1000U

typedef enum op_kind {
        OP_PUT,
        OP_GET,
        OP_HEAD,
        OP_DELETE,
        OP_LIST,
} op_kind;

struct objstore {
        sd_event *event;
        const objstore_vtable *vt;
        void *impl;
        objstore_op *ops;
};

struct objstore_op {
        objstore *store;
        objstore_op *prev, *next;
        op_kind kind;
        objstore_done_fn done;
        objstore_page_fn page;
        void *userdata;
        void *backend_data;
        bool backend_pending; /* the backend owes a completion */
        char *prefix;
        size_t page_size;
        unsigned in_callback;
        bool cancelled;
};

/* ---- results ------------------------------------------------------------- */

objstore_object *objstore_object_free(objstore_object *o) {
        if (!o)
                return NULL;
        free(o->data);
        free(o->etag);
        free(o->last_modified);
        free(o);
        return NULL;
}

void objstore_entries_free(objstore_entry *e, size_t n) {
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                free(e[i].key);
                free(e[i].etag);
        }
        free(e);
}

/* ---- keys ----------------------------------------------------------------- */

static bool has_ctl(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return true;
        return false;
}

bool objstore_key_is_valid(const char *key) {
        if (!key || !fsx_is_safe_relpath(key))
                return false;
        if (startswith(key, ".#") || strstr(key, "/.#"))
                return false;
        return true;
}

bool objstore_prefix_is_valid(const char *prefix) {
        _cleanup_free_ char *k = NULL;
        size_t n;

        if (!prefix)
                return false;
        n = strlen(prefix);
        if (n == 0)
                return true;
        if (n > FSX_PATH_MAX || has_ctl(prefix))
                return false;
        /* Valid if "prefix" + "x" is a valid key: catches "/a", "a//", "../". */
        if (asprintf(&k, "%sx", prefix) < 0)
                return false;
        return objstore_key_is_valid(k);
}

/* ---- the op list ------------------------------------------------------------ */

int objstore_new(sd_event *e, const objstore_vtable *vt, void *impl, objstore **ret) {
        objstore *s;

        if (!e || !vt || !ret)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->vt = vt;
        s->impl = impl;
        *ret = s;
        return 0;
}

static void op_unlink(objstore_op *op) {
        objstore *s = op->store;

        if (!s)
                return;
        if (op->prev)
                op->prev->next = op->next;
        else if (s->ops == op)
                s->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->prev = op->next = NULL;
}

static void op_free(objstore_op *op) {
        if (!op)
                return;
        free(op->prefix);
        free(op);
}

/* Stops backend work, unlinks and frees @op without callbacks. */
static void op_abort(objstore_op *op) {
        objstore *s = op->store;

        if (op->backend_pending && s->vt->cancel)
                s->vt->cancel(s->impl, op);
        op->backend_pending = false;
        op_unlink(op);
        op_free(op);
}

objstore *objstore_free(objstore *s) {
        if (!s)
                return NULL;
        while (s->ops)
                op_abort(s->ops);
        if (s->vt->free)
                s->vt->free(s->impl);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

const char *objstore_backend_name(const objstore *s) {
        return s ? s->vt->name : NULL;
}

bool objstore_get_http_codes(const objstore *s, http_code_counts *ret) {
        if (!s || !s->vt->http_codes) {
                *ret = (http_code_counts){};
                return false;
        }
        s->vt->http_codes(s->impl, ret);
        return true;
}

sd_event *objstore_get_event(const objstore *s) {
        return s ? s->event : NULL;
}

void objstore_op_set_backend_data(objstore_op *op, void *data) {
        op->backend_data = data;
}

void *objstore_op_get_backend_data(objstore_op *op) {
        return op->backend_data;
}

static int op_new(objstore *s, op_kind kind, objstore_done_fn done, void *userdata,
                  objstore_op **ret) {
        objstore_op *op;

        if (!s || !done)
                return -EINVAL;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->store = s;
        op->kind = kind;
        op->done = done;
        op->userdata = userdata;
        *ret = op;
        return 0;
}

/* After a successful backend start: links @op. On failure frees it. */
static int op_started(objstore_op *op, int r, objstore_op **ret) {
        objstore *s = op->store;

        if (r < 0) {
                op_free(op);
                return r;
        }
        op->backend_pending = true;
        op->next = s->ops;
        if (s->ops)
                s->ops->prev = op;
        s->ops = op;
        if (ret)
                *ret = op;
        return 0;
}

void objstore_op_complete(objstore_op *op, int r, objstore_object *obj, const err_info *err) {
        err_info e;

        op->backend_pending = false;
        op_unlink(op);
        if (r < 0 && !err) {
                err_info_clear(&e);
                err_info_set(&e, r, "%s", strerror(-r));
                err = &e;
        }
        if (!op->cancelled) {
                op->in_callback++;
                op->done(op, r, r < 0 ? NULL : obj, r < 0 ? err : NULL, op->userdata);
                op->in_callback--;
        }
        objstore_object_free(obj);
        op_free(op);
}

void objstore_op_page_done(objstore_op *op, int r, objstore_entry *entries, size_t n,
                           const char *next_token, const err_info *err) {
        objstore *s = op->store;
        err_info e;
        int k = 0;

        op->backend_pending = false;
        if (r < 0) {
                objstore_entries_free(entries, n);
                objstore_op_complete(op, r, NULL, err);
                return;
        }
        if (op->page && n > 0) {
                op->in_callback++;
                k = op->page(op, entries, n, op->userdata);
                op->in_callback--;
        }
        objstore_entries_free(entries, n);
        if (op->cancelled) {
                op_unlink(op);
                op_free(op);
                return;
        }
        if (k < 0) {
                err_info_clear(&e);
                err_info_set(&e, k, "listing aborted by the page callback: %s", strerror(-k));
                objstore_op_complete(op, k, NULL, &e);
                return;
        }
        if (k > 0 || !next_token) {
                objstore_op_complete(op, 0, NULL, NULL);
                return;
        }
        r = s->vt->list_page(s->impl, op, op->prefix, next_token, op->page_size);
        if (r < 0) {
                err_info_clear(&e);
                err_info_set(&e, r, "failed to request the next page: %s", strerror(-r));
                objstore_op_complete(op, r, NULL, &e);
                return;
        }
        op->backend_pending = true;
}

void objstore_op_cancel(objstore_op *op) {
        if (!op)
                return;
        if (op->in_callback > 0) {
                op->cancelled = true;
                return;
        }
        op_abort(op);
}

/* ---- operations ------------------------------------------------------------- */

int objstore_put(objstore *s, const char *key, const void *data, size_t len,
                 const objstore_put_opts *o, objstore_done_fn done, void *userdata,
                 objstore_op **ret) {
        objstore_op *op;
        int r;

        if (!objstore_key_is_valid(key) || (o && o->body_fn ? data != NULL : !data && len > 0))
                return -EINVAL;
        if (o && o->content_type && has_ctl(o->content_type))
                return -EINVAL;
        r = op_new(s, OP_PUT, done, userdata, &op);
        if (r < 0)
                return r;
        return op_started(op, s->vt->put(s->impl, op, key, data, len, o), ret);
}

int objstore_get(objstore *s, const char *key, const char *if_none_match, objstore_done_fn done,
                 void *userdata, objstore_op **ret) {
        objstore_op *op;
        int r;

        if (!objstore_key_is_valid(key))
                return -EINVAL;
        if (if_none_match && (!*if_none_match || has_ctl(if_none_match)))
                return -EINVAL;
        r = op_new(s, OP_GET, done, userdata, &op);
        if (r < 0)
                return r;
        return op_started(op, s->vt->get(s->impl, op, key, if_none_match), ret);
}

int objstore_head(objstore *s, const char *key, objstore_done_fn done, void *userdata,
                  objstore_op **ret) {
        objstore_op *op;
        int r;

        if (!objstore_key_is_valid(key))
                return -EINVAL;
        r = op_new(s, OP_HEAD, done, userdata, &op);
        if (r < 0)
                return r;
        return op_started(op, s->vt->head(s->impl, op, key), ret);
}

int objstore_delete(objstore *s, const char *key, objstore_done_fn done, void *userdata,
                    objstore_op **ret) {
        objstore_op *op;
        int r;

        if (!objstore_key_is_valid(key))
                return -EINVAL;
        r = op_new(s, OP_DELETE, done, userdata, &op);
        if (r < 0)
                return r;
        return op_started(op, s->vt->del(s->impl, op, key), ret);
}

int objstore_list(objstore *s, const char *prefix, size_t page_size, objstore_page_fn page,
                  objstore_done_fn done, void *userdata, objstore_op **ret) {
        objstore_op *op;
        int r;

        if (prefix && !objstore_prefix_is_valid(prefix))
                return -EINVAL;
        r = op_new(s, OP_LIST, done, userdata, &op);
        if (r < 0)
                return r;
        op->page = page;
        op->page_size = page_size == 0 || page_size > OBJSTORE_DEFAULT_PAGE ? OBJSTORE_DEFAULT_PAGE
                                                                            : page_size;
        op->prefix = strdup(prefix ?: "");
        if (!op->prefix) {
                op_free(op);
                return -ENOMEM;
        }
        return op_started(op, s->vt->list_page(s->impl, op, op->prefix, NULL, op->page_size), ret);
}

/* ---- synchronous wrappers --------------------------------------------------- */

typedef struct sync_state {
        bool done;
        int r;
        objstore_object *obj;
        err_info err;
        objstore_entry *entries;
        size_t n, cap;
} sync_state;

static void sync_init(sync_state *st) {
        *st = (sync_state){};
        err_info_clear(&st->err);
}

static void on_sync_done(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                         void *userdata) {
        sync_state *st = userdata;

        st->done = true;
        st->r = r;
        if (r < 0) {
                if (err)
                        st->err = *err;
                return;
        }
        if (obj) {
                st->obj = malloc(sizeof(*obj));
                if (!st->obj) {
                        st->r = -ENOMEM;
                        return;
                }
                *st->obj = *obj;
                *obj = (objstore_object){};
        }
}

static int on_sync_page(objstore_op *op, objstore_entry *entries, size_t n, void *userdata) {
        sync_state *st = userdata;

        if (st->n + n > st->cap) {
                size_t cap = MAX(st->cap * 2, st->n + n);
                objstore_entry *a = realloc(st->entries, cap * sizeof(*a));

                if (!a)
                        return -ENOMEM;
                st->entries = a;
                st->cap = cap;
        }
        for (size_t i = 0; i < n; i++) {
                st->entries[st->n++] = entries[i];
                entries[i] = (objstore_entry){};
        }
        return 0;
}

static int sync_wait(objstore *s, sync_state *st, int r, objstore_object **ret, err_info *ret_err) {
        if (r < 0)
                return err_info_set(ret_err, r, "%s", strerror(-r));
        r = loop_run_until(s->event, &st->done, 0);
        if (r < 0)
                return err_info_set(ret_err, r, "event loop failed: %s", strerror(-r));
        if (st->r < 0) {
                if (ret_err)
                        *ret_err = st->err;
                objstore_object_free(st->obj);
                return st->r;
        }
        if (ret)
                *ret = st->obj;
        else
                objstore_object_free(st->obj);
        return 0;
}

int objstore_put_sync(objstore *s, const char *key, const void *data, size_t len,
                      const objstore_put_opts *o, objstore_object **ret, err_info *ret_err) {
        sync_state st;

        sync_init(&st);
        return sync_wait(s, &st, objstore_put(s, key, data, len, o, on_sync_done, &st, NULL), ret,
                         ret_err);
}

int objstore_get_sync(objstore *s, const char *key, const char *if_none_match,
                      objstore_object **ret, err_info *ret_err) {
        sync_state st;

        sync_init(&st);
        return sync_wait(s, &st, objstore_get(s, key, if_none_match, on_sync_done, &st, NULL), ret,
                         ret_err);
}

int objstore_head_sync(objstore *s, const char *key, objstore_object **ret, err_info *ret_err) {
        sync_state st;

        sync_init(&st);
        return sync_wait(s, &st, objstore_head(s, key, on_sync_done, &st, NULL), ret, ret_err);
}

int objstore_delete_sync(objstore *s, const char *key, err_info *ret_err) {
        sync_state st;

        sync_init(&st);
        return sync_wait(s, &st, objstore_delete(s, key, on_sync_done, &st, NULL), NULL, ret_err);
}

int objstore_list_sync(objstore *s, const char *prefix, size_t page_size,
                       objstore_entry **ret_entries, size_t *ret_n, err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = sync_wait(s, &st,
                      objstore_list(s, prefix, page_size, on_sync_page, on_sync_done, &st, NULL),
                      NULL, ret_err);
        if (r < 0) {
                objstore_entries_free(st.entries, st.n);
                return r;
        }
        if (ret_entries)
                *ret_entries = st.entries;
        else
                objstore_entries_free(st.entries, st.n);
        if (ret_n)
                *ret_n = st.n;
        return 0;
}

/* ---- location strings ------------------------------------------------------- */

void objstore_location_done(objstore_location *l) {
        if (!l)
                return;
        free(l->bucket);
        free(l->prefix);
        free(l->endpoint);
        free(l->region);
        free(l->path);
        *l = (objstore_location){.path_style = -1, .create_mode = -1};
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decodes @n bytes of @s. Rejects bad escapes, %00 and control
 * characters. */
static int pct_decode(const char *s, size_t n, char **ret) {
        char *out, *p;

        out = p = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];

                if (ch == '%') {
                        int hi, lo;

                        if (i + 2 >= n) {
                                free(out);
                                return -EINVAL;
                        }
                        hi = unhex(s[i + 1]);
                        lo = unhex(s[i + 2]);
                        if (hi < 0 || lo < 0) {
                                free(out);
                                return -EINVAL;
                        }
                        ch = (unsigned char) (hi << 4 | lo);
                        i += 2;
                }
                if (ch < 0x20 || ch == 0x7f) {
                        free(out);
                        return -EINVAL;
                }
                *p++ = (char) ch;
        }
        *p = '\0';
        *ret = out;
        return 0;
}

static int parse_bool(const char *v) {
        if (streq(v, "true") || streq(v, "1") || streq(v, "yes"))
                return 1;
        if (streq(v, "false") || streq(v, "0") || streq(v, "no"))
                return 0;
        return -EINVAL;
}

static int parse_s3_query(const char *q, objstore_location *l, err_info *ret_err) {
        while (*q) {
                const char *amp = strchrnul(q, '&');
                const char *eq = memchr(q, '=', (size_t) (amp - q));
                _cleanup_free_ char *name = NULL, *value = NULL;
                int r;

                if (amp == q) {
                        q++;
                        continue;
                }
                if (!eq)
                        return err_info_set(ret_err, -EINVAL,
                                            "location parameter '%.*s' has no value",
                                            (int) (amp - q), q);
                name = strndup(q, (size_t) (eq - q));
                if (!name)
                        return -ENOMEM;
                r = pct_decode(eq + 1, (size_t) (amp - eq - 1), &value);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return err_info_set(ret_err, -EINVAL,
                                            "location parameter '%s' has a bad %%-escape", name);

                if (streq(name, "endpoint")) {
                        if (l->endpoint)
                                goto repeated;
                        if (!startswith(value, "http://") && !startswith(value, "https://"))
                                return err_info_set(ret_err, -EINVAL,
                                                    "location endpoint '%s' must start with "
                                                    "http:// or https://",
                                                    value);
                        l->endpoint = TAKE_PTR(value);
                } else if (streq(name, "region")) {
                        if (l->region)
                                goto repeated;
                        if (isempty(value) || strpbrk(value, ":/ "))
                                return err_info_set(ret_err, -EINVAL,
                                                    "location region '%s' is invalid", value);
                        l->region = TAKE_PTR(value);
                } else if (streq(name, "path_style")) {
                        if (l->path_style >= 0)
                                goto repeated;
                        r = parse_bool(value);
                        if (r < 0)
                                return err_info_set(ret_err, -EINVAL,
                                                    "location path_style='%s': expected true or "
                                                    "false",
                                                    value);
                        l->path_style = r;
                } else if (streq(name, "create_mode")) {
                        if (l->create_mode >= 0)
                                goto repeated;
                        if (streq(value, "conditional"))
                                l->create_mode = S3_CREATE_CONDITIONAL;
                        else if (streq(value, "auto"))
                                l->create_mode = S3_CREATE_AUTO;
                        else if (streq(value, "head"))
                                l->create_mode = S3_CREATE_HEAD_THEN_PUT;
                        else
                                return err_info_set(ret_err, -EINVAL,
                                                    "location create_mode='%s': expected "
                                                    "conditional, auto or head",
                                                    value);
                } else if (strstr(name, "key") || strstr(name, "secret") || strstr(name, "token") ||
                           strstr(name, "password")) {
                        return err_info_set(ret_err, -EINVAL,
                                            "location parameter '%s': credentials do not belong "
                                            "in a location string; use the environment or the "
                                            "configuration",
                                            name);
                } else
                        return err_info_set(ret_err, -EINVAL,
                                            "unknown location parameter '%s' (known: endpoint, "
                                            "region, path_style, create_mode)",
                                            name);
                q = *amp ? amp + 1 : amp;
                continue;
        repeated:
                return err_info_set(ret_err, -EINVAL, "location parameter '%s' is repeated", name);
        }
        return 0;
}

static int parse_s3(const char *s, objstore_location *l, err_info *ret_err) {
        const char *rest = s + 5, *q, *slash;
        _cleanup_free_ char *bucket = NULL, *prefix = NULL;
        size_t n;
        int r;

        q = strchrnul(rest, '?');
        slash = memchr(rest, '/', (size_t) (q - rest));
        if (!slash)
                slash = q;
        bucket = strndup(rest, (size_t) (slash - rest));
        if (!bucket)
                return -ENOMEM;
        if (isempty(bucket))
                return err_info_set(ret_err, -EINVAL, "location '%s' names no bucket", s);
        if (!s3_bucket_is_valid(bucket))
                return err_info_set(ret_err, -EINVAL,
                                    "location '%s': bucket name '%s' is invalid (3-63 characters "
                                    "of a-z, 0-9, '.', '-')",
                                    s, bucket);

        /* The prefix, without leading or trailing "/", then with one "/". */
        if (*slash == '/')
                slash++;
        r = pct_decode(slash, (size_t) (q - slash), &prefix);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return err_info_set(ret_err, -EINVAL, "location '%s': bad prefix", s);
        n = strlen(prefix);
        while (n > 0 && prefix[n - 1] == '/')
                prefix[--n] = '\0';
        if (n > 0) {
                char *p;

                if (!objstore_key_is_valid(prefix))
                        return err_info_set(ret_err, -EINVAL,
                                            "location '%s': prefix '%s' is invalid (no empty, "
                                            "'.' or '..' segments)",
                                            s, prefix);
                if (asprintf(&p, "%s/", prefix) < 0)
                        return -ENOMEM;
                free(prefix);
                prefix = p;
        }

        r = parse_s3_query(*q ? q + 1 : q, l, ret_err);
        if (r < 0)
                return r;
        l->kind = OBJSTORE_S3;
        l->bucket = TAKE_PTR(bucket);
        l->prefix = TAKE_PTR(prefix);
        return 0;
}

static int parse_file(const char *s, objstore_location *l, err_info *ret_err) {
        const char *rest = s + 7;
        _cleanup_free_ char *path = NULL;
        size_t n;
        int r;

        if (startswith(rest, "localhost/"))
                rest += 9;
        if (*rest != '/')
                return err_info_set(ret_err, -EINVAL,
                                    "location '%s': a file location is file:///ABSOLUTE/PATH", s);
        if (strpbrk(rest, "?#"))
                return err_info_set(ret_err, -EINVAL,
                                    "location '%s': file locations take no query or fragment", s);
        r = pct_decode(rest, strlen(rest), &path);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return err_info_set(ret_err, -EINVAL, "location '%s': bad %%-escape", s);
        n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
                path[--n] = '\0';
        if (n <= 1 || !fsx_is_safe_relpath(path + 1))
                return err_info_set(ret_err, -EINVAL,
                                    "location '%s': the path must be an absolute directory other "
                                    "than / without empty, '.' or '..' segments",
                                    s);
        l->kind = OBJSTORE_FILE;
        l->path = TAKE_PTR(path);
        return 0;
}

int objstore_location_parse(const char *s, objstore_location *ret, err_info *ret_err) {
        objstore_location l = {.path_style = -1, .create_mode = -1};
        int r;

        if (!ret)
                return -EINVAL;
        if (isempty(s))
                return err_info_set(ret_err, -EINVAL, "object store location is empty");
        if (has_ctl(s) || strchr(s, ' '))
                return err_info_set(ret_err, -EINVAL,
                                    "object store location contains spaces or control characters");
        if (startswith(s, "s3://"))
                r = parse_s3(s, &l, ret_err);
        else if (startswith(s, "file://"))
                r = parse_file(s, &l, ret_err);
        else
                return err_info_set(ret_err, -EINVAL,
                                    "object store location '%s' must start with s3:// or file://",
                                    s);
        if (r < 0) {
                objstore_location_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

/* ---- the S3 backend ------------------------------------------------------- */

typedef struct s3_store {
        s3_client *client;
        char *prefix; /* "" or "a/b/" */
} s3_store;

/* Per-op state: the S3 op to cancel and, for list, the page being built. */
typedef struct s3_ctx {
        s3_store *st;
        objstore_op *op;
        s3_op *s3op;
        objstore_entry *entries;
        size_t n;
        char *next_token;
} s3_ctx;

static void s3_ctx_free(s3_ctx *x) {
        if (!x)
                return;
        objstore_entries_free(x->entries, x->n);
        free(x->next_token);
        free(x);
}

static void s3_store_free(void *impl) {
        s3_store *st = impl;

        if (!st)
                return;
        s3_client_free(st->client);
        free(st->prefix);
        free(st);
}

static int s3_ctx_new(s3_store *st, objstore_op *op, s3_ctx **ret) {
        s3_ctx *x = calloc(1, sizeof(*x));

        if (!x)
                return -ENOMEM;
        x->st = st;
        x->op = op;
        *ret = x;
        return 0;
}

static int full_key(const s3_store *st, const char *key, char **ret) {
        return asprintf(ret, "%s%s", st->prefix, key) < 0 ? -ENOMEM : 0;
}

static void on_s3_done(s3_op *s3op, int r, s3_object *obj, const err_info *err, void *userdata) {
        s3_ctx *x = userdata;
        objstore_op *op = x->op;
        objstore_object *o = NULL;

        s3_ctx_free(x);
        if (r >= 0 && obj) {
                o = calloc(1, sizeof(*o));
                if (!o)
                        r = -ENOMEM;
                else {
                        o->data = TAKE_PTR(obj->body);
                        o->size = obj->body_len ?: (size_t) obj->size;
                        o->etag = TAKE_PTR(obj->etag);
                        o->last_modified = TAKE_PTR(obj->last_modified);
                        o->not_modified = obj->not_modified;
                }
        }
        objstore_op_complete(op, r, o, err);
}

static int s3_start(s3_store *st, objstore_op *op, op_kind kind, const char *key, const void *data,
                    size_t len, const objstore_put_opts *po, const char *if_none_match) {
        _cleanup_free_ char *k = NULL;
        s3_ctx *x;
        int r;

        r = full_key(st, key, &k);
        if (r < 0)
                return r;
        r = s3_ctx_new(st, op, &x);
        if (r < 0)
                return r;
        switch (kind) {
        case OP_PUT:
                r = s3_put_object(st->client, k, data, len,
                                  &(s3_put_opts){.content_type = po ? po->content_type : NULL,
                                                 .create_only = po && po->create_only,
                                                 .borrow = po && po->borrow,
                                                 .body_fn = po ? po->body_fn : NULL,
                                                 .body_userdata = po ? po->body_userdata : NULL,
                                                 .sha256 = po ? po->sha256 : NULL,
                                                 .md5 = po ? po->md5 : NULL},
                                  on_s3_done, x, &x->s3op);
                break;
        case OP_GET:
                r = s3_get_object(st->client, k, if_none_match, on_s3_done, x, &x->s3op);
                break;
        case OP_HEAD:
                r = s3_head_object(st->client, k, on_s3_done, x, &x->s3op);
                break;
        case OP_DELETE:
                r = s3_delete_object(st->client, k, on_s3_done, x, &x->s3op);
                break;
        case OP_LIST:
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                s3_ctx_free(x);
                return r;
        }
        objstore_op_set_backend_data(op, x);
        return 0;
}

static int s3b_put(void *impl, objstore_op *op, const char *key, const void *data, size_t len,
                   const objstore_put_opts *o) {
        return s3_start(impl, op, OP_PUT, key, data, len, o, NULL);
}

static int s3b_get(void *impl, objstore_op *op, const char *key, const char *if_none_match) {
        return s3_start(impl, op, OP_GET, key, NULL, 0, NULL, if_none_match);
}

static int s3b_head(void *impl, objstore_op *op, const char *key) {
        return s3_start(impl, op, OP_HEAD, key, NULL, 0, NULL, NULL);
}

static int s3b_del(void *impl, objstore_op *op, const char *key) {
        return s3_start(impl, op, OP_DELETE, key, NULL, 0, NULL, NULL);
}

static int on_s3_page(s3_op *s3op, s3_list_page *page, void *userdata) {
        s3_ctx *x = userdata;
        size_t plen = strlen(x->st->prefix);

        x->entries = calloc(page->n_entries ?: 1, sizeof(*x->entries));
        if (!x->entries)
                return -ENOMEM;
        for (size_t i = 0; i < page->n_entries; i++) {
                s3_list_entry *e = &page->entries[i];
                char *rel;

                /* Keys outside our prefix or that objstore could not address
                 * (written by someone else) are not listed. */
                if (!startswith(e->key, x->st->prefix) || !objstore_key_is_valid(e->key + plen))
                        continue;
                rel = strdup(e->key + plen);
                if (!rel)
                        return -ENOMEM;
                x->entries[x->n++] =
                        (objstore_entry){.key = rel, .size = e->size, .etag = TAKE_PTR(e->etag)};
        }
        if (page->is_truncated) {
                x->next_token = TAKE_PTR(page->next_token);
                return 1; /* one page per list_page call */
        }
        return 0;
}

static void on_s3_list_done(s3_op *s3op, int r, s3_object *obj, const err_info *err,
                            void *userdata) {
        s3_ctx *x = userdata;
        objstore_op *op = x->op;
        objstore_entry *entries = TAKE_PTR(x->entries);
        size_t n = x->n;
        _cleanup_free_ char *next = TAKE_PTR(x->next_token);

        x->n = 0;
        s3_ctx_free(x);
        if (r < 0) {
                objstore_entries_free(entries, n);
                objstore_op_page_done(op, r, NULL, 0, NULL, err);
                return;
        }
        objstore_op_page_done(op, 0, entries, n, next, NULL);
}

static int s3b_list_page(void *impl, objstore_op *op, const char *prefix, const char *token,
                         size_t max) {
        s3_store *st = impl;
        _cleanup_free_ char *p = NULL;
        s3_ctx *x;
        int r;

        if (asprintf(&p, "%s%s", st->prefix, prefix ?: "") < 0)
                return -ENOMEM;
        r = s3_ctx_new(st, op, &x);
        if (r < 0)
                return r;
        r = s3_list_objects(st->client, p, (unsigned) max, token, on_s3_page, on_s3_list_done, x,
                            &x->s3op);
        if (r < 0) {
                s3_ctx_free(x);
                return r;
        }
        objstore_op_set_backend_data(op, x);
        return 0;
}

static void s3b_cancel(void *impl, objstore_op *op) {
        s3_ctx *x = objstore_op_get_backend_data(op);

        if (!x)
                return;
        s3_op_cancel(x->s3op);
        s3_ctx_free(x);
        objstore_op_set_backend_data(op, NULL);
}

static void s3b_http_codes(void *impl, http_code_counts *ret) {
        s3_store *st = impl;

        s3_client_get_http_codes(st->client, ret);
}

static const objstore_vtable s3_vtable = {
        .name = "s3",
        .put = s3b_put,
        .get = s3b_get,
        .head = s3b_head,
        .del = s3b_del,
        .list_page = s3b_list_page,
        .cancel = s3b_cancel,
        .free = s3_store_free,
        .http_codes = s3b_http_codes,
};

static int open_s3(sd_event *e, const objstore_location *l, const objstore_config *cfg,
                   objstore **ret, err_info *ret_err) {
        s3_config sc = {
                .endpoint = l->endpoint ?: cfg->endpoint,
                .bucket = l->bucket,
                .region = l->region ?: cfg->region,
                .access_key = cfg->access_key,
                .secret_key = cfg->secret_key,
                .session_token = cfg->session_token,
                .addressing = l->path_style < 0   ? S3_ADDRESSING_AUTO
                              : l->path_style > 0 ? S3_ADDRESSING_PATH
                                                  : S3_ADDRESSING_VIRTUAL,
                .create_mode = l->create_mode < 0 ? S3_CREATE_CONDITIONAL
                                                  : (s3_create_mode) l->create_mode,
                .max_attempts = cfg->max_attempts,
                .retry_base_usec = cfg->retry_base_usec,
                .timeout_usec = cfg->timeout_usec,
                .max_object_size = cfg->max_object_size,
                .tls = cfg->tls,
        };
        s3_store *st;
        int r;

        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->prefix = strdup(l->prefix ?: "");
        if (!st->prefix) {
                s3_store_free(st);
                return -ENOMEM;
        }
        r = s3_client_new(e, cfg->http, &sc, &st->client, ret_err);
        if (r < 0) {
                s3_store_free(st);
                return r;
        }
        r = objstore_new(e, &s3_vtable, st, ret);
        if (r < 0)
                s3_store_free(st);
        return r;
}

int objstore_open(sd_event *e, const char *location, const objstore_config *cfg, objstore **ret,
                  err_info *ret_err) {
        _cleanup_(objstore_location_done) objstore_location l = {};
        static const objstore_config empty = {};
        int r;

        if (!e || !ret)
                return -EINVAL;
        r = objstore_location_parse(location, &l, ret_err);
        if (r < 0)
                return r;
        if (l.kind == OBJSTORE_FILE)
                return objstore_file_new(e, l.path, cfg, ret, ret_err);
        return open_s3(e, &l, cfg ?: &empty, ret, ret_err);
}
