/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The file:// object store backend: a plain directory where key "a/b.json"
 * is the file ROOT/a/b.json. For tests, demos and single-node setups; the
 * semantics match the S3 backend (objstore.h):
 *   - keys are checked by objstore_key_is_valid() and opened with the
 *     fsx_*_beneath() helpers, so no key (or planted symlink) leaves ROOT;
 *   - put writes with fsx_write_atomic() (a reader sees the old or the new
 *     content, never a mix); create-only writes a temporary file and link()s
 *     it into place, which fails with EEXIST atomically;
 *   - the ETag is the quoted hex sha256 of the content, so conditional gets
 *     work as on S3 (computed on each get/head/list: O(size), no cache that
 *     could go stale);
 *   - list walks the tree (no symlinks followed, ".#" temporaries skipped),
 *     sorts by byte order like S3, and pages with the last key returned as
 *     the continuation token;
 *   - delete of a missing key succeeds; emptied directories are left.
 * Operations run at once, and complete from an sd-event defer source, so
 * callers see the same callback order as with S3.
 */

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "fsx.h"
#include "hash.h"
#include "objstore.h"

#define FILE_DEFAULT_MAX_OBJECT (64U * 1024 * 1024)
#define FILE_MAX_DEPTH          256

typedef struct file_store {
        sd_event *event;
        int root_fd;
        char *root;
        size_t max_object_size;
} file_store;

/* A finished operation waiting for its defer source to deliver it. */
typedef struct file_job {
        objstore_op *op;
        sd_event_source *defer;
        bool is_list;
        int r;
        err_info err;
        objstore_object *obj;
        objstore_entry *entries;
        size_t n;
        char *next_token;
} file_job;

static void job_free(file_job *j) {
        if (!j)
                return;
        sd_event_source_disable_unref(j->defer);
        objstore_object_free(j->obj);
        objstore_entries_free(j->entries, j->n);
        free(j->next_token);
        free(j);
}

static int on_job_defer(sd_event_source *s, void *userdata) {
        file_job *j = userdata;
        objstore_op *op = j->op;
        objstore_object *obj = TAKE_PTR(j->obj);
        objstore_entry *entries = TAKE_PTR(j->entries);
        size_t n = j->n;
        _cleanup_free_ char *next = TAKE_PTR(j->next_token);
        err_info err = j->err;
        bool is_list = j->is_list;
        int r = j->r;

        j->n = 0;
        objstore_op_set_backend_data(op, NULL);
        job_free(j);
        if (is_list)
                objstore_op_page_done(op, r, entries, n, next, r < 0 ? &err : NULL);
        else
                objstore_op_complete(op, r, obj, r < 0 ? &err : NULL);
        return 0;
}

/* Hands @j to the event loop; frees it on failure. */
static int job_submit(file_store *st, objstore_op *op, file_job *j) {
        int r;

        j->op = op;
        r = sd_event_add_defer(st->event, &j->defer, on_job_defer, j);
        if (r >= 0)
                r = sd_event_source_set_enabled(j->defer, SD_EVENT_ONESHOT);
        if (r < 0) {
                job_free(j);
                return r;
        }
        objstore_op_set_backend_data(op, j);
        return 0;
}

static file_job *job_new(void) {
        file_job *j = calloc(1, sizeof(*j));

        if (j)
                err_info_clear(&j->err);
        return j;
}

static int job_fail(file_job *j, int r, const char *fmt, ...) _printf_(3, 4);
static int job_fail(file_job *j, int r, const char *fmt, ...) {
        va_list ap;

        j->r = r;
        va_start(ap, fmt);
        (void) vsnprintf(j->err.message, sizeof(j->err.message), fmt, ap);
        va_end(ap);
        return 0;
}

static int etag_of(const void *data, size_t len, char **ret) {
        char hex[HASH_SHA256_HEX_LEN + 1];
        int r;

        r = hash_sha256_hex(data, len, hex);
        if (r < 0)
                return r;
        return asprintf(ret, "\"%s\"", hex) < 0 ? -ENOMEM : 0;
}

/* Compares an If-None-Match value with an ETag: quotes and a W/ prefix are
 * ignored, "*" matches anything. */
static bool etag_matches(const char *inm, const char *etag) {
        size_t a, b;

        if (streq(inm, "*"))
                return true;
        if (startswith(inm, "W/"))
                inm += 2;
        a = strlen(inm);
        if (a >= 2 && inm[0] == '"' && inm[a - 1] == '"') {
                inm++;
                a -= 2;
        }
        b = strlen(etag);
        if (b >= 2 && etag[0] == '"' && etag[b - 1] == '"') {
                etag++;
                b -= 2;
        }
        return a == b && strneq(inm, etag, a);
}

static char *http_date(time_t t) {
        struct tm tm;
        char buf[64];

        if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
                return NULL;
        return strdup(buf);
}

/* ---- get/head ----------------------------------------------------------------- */

static int read_fd(int fd, size_t max, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t k;

                if (len == cap) {
                        size_t ncap = cap == 0 ? 16384 : cap * 2;
                        char *b;

                        if (cap > max)
                                return -EFBIG;
                        b = realloc(buf, ncap + 1);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        cap = ncap;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max)
                        return -EFBIG;
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Reads @key into a new object (data kept when @keep_data). */
static int file_read_object(file_store *st, const char *key, bool keep_data, const char *inm,
                            file_job *j) {
        _cleanup_(objstore_object_freep) objstore_object *o = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        struct stat s;
        size_t len = 0;
        int r;

        fd = fsx_open_beneath(st->root_fd, key, O_RDONLY | O_NOCTTY, 0);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return job_fail(j, -ENOENT, "no such key '%s'", key);
        if (fd < 0)
                return job_fail(j, fd, "failed to open '%s': %s", key, strerror(-fd));
        if (fstat(fd, &s) < 0)
                return job_fail(j, -errno, "failed to stat '%s': %m", key);
        if (!S_ISREG(s.st_mode))
                return job_fail(j, -ENOENT, "no such key '%s' (not a regular file)", key);
        r = read_fd(fd, st->max_object_size, &data, &len);
        if (r == -EFBIG)
                return job_fail(j, r, "'%s' is larger than %zu bytes", key, st->max_object_size);
        if (r < 0)
                return job_fail(j, r, "failed to read '%s': %s", key, strerror(-r));

        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        r = etag_of(data, len, &o->etag);
        if (r < 0)
                return r;
        o->last_modified = http_date(s.st_mtime);
        o->size = len;
        if (inm && etag_matches(inm, o->etag))
                o->not_modified = true;
        else if (keep_data)
                o->data = TAKE_PTR(data);
        j->obj = TAKE_PTR(o);
        return 0;
}

static int fb_get(void *impl, objstore_op *op, const char *key, const char *if_none_match) {
        file_store *st = impl;
        file_job *j = job_new();
        int r;

        if (!j)
                return -ENOMEM;
        r = file_read_object(st, key, true, if_none_match, j);
        if (r < 0) {
                job_free(j);
                return r;
        }
        return job_submit(st, op, j);
}

static int fb_head(void *impl, objstore_op *op, const char *key) {
        file_store *st = impl;
        file_job *j = job_new();
        int r;

        if (!j)
                return -ENOMEM;
        r = file_read_object(st, key, false, NULL, j);
        if (r < 0) {
                job_free(j);
                return r;
        }
        return job_submit(st, op, j);
}

/* ---- put ------------------------------------------------------------------------ */

static int fault(fsx_step step) {
        int r;

        if (!fsx_fault_hook)
                return 0;
        r = fsx_fault_hook(step);
        return r < 0 ? r : 0;
}

static int write_all(int fd, const void *data, size_t len) {
        const char *p = data;

        while (len > 0) {
                ssize_t k = write(fd, p, len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                len -= (size_t) k;
        }
        return 0;
}

/* Writes @name in @dir_fd only if it does not exist: a whole temporary file,
 * then link(), which fails with EEXIST if @name appeared meanwhile. Steps
 * report to fsx_fault_hook like fsx_write_atomic()'s. */
static int write_exclusive(int dir_fd, const char *name, const void *data, size_t len,
                           mode_t mode) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1];
        int r;

        r = fault(FSX_STEP_OPEN_TEMP);
        if (r < 0)
                return r;
        for (unsigned attempt = 0; attempt < 100 && fd < 0; attempt++) {
                snprintf(tmp, sizeof(tmp), ".#%.*s.%06" PRIx64, NAME_MAX - 12, name,
                         random_u64_below(0xffffff));
                fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            mode);
                if (fd < 0 && errno != EEXIST)
                        return -errno;
        }
        if (fd < 0)
                return -EEXIST;
        if (fchmod(fd, mode) < 0) {
                r = -errno;
                goto out_unlink;
        }
        r = fault(FSX_STEP_WRITE);
        if (r >= 0)
                r = write_all(fd, data, len);
        if (r < 0)
                goto out_unlink;
        r = fault(FSX_STEP_FSYNC_FILE);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                goto out_unlink;
        r = fault(FSX_STEP_RENAME);
        if (r >= 0 && linkat(dir_fd, tmp, dir_fd, name, 0) < 0)
                r = -errno;
        (void) unlinkat(dir_fd, tmp, 0);
        if (r < 0)
                return r;
        r = fault(FSX_STEP_FSYNC_DIR);
        if (r >= 0)
                r = fsx_fsync_dir(dir_fd);
        return r;

out_unlink:
        (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

/* The @len bytes @fn produces, in one buffer. */
static int read_body(hash_read_fn fn, void *userdata, size_t len, char **ret) {
        _cleanup_free_ char *b = malloc(len ?: 1);
        size_t at = 0;

        if (!b)
                return -ENOMEM;
        for (;;) {
                ssize_t k = fn(b + at, len - at, at, userdata);

                if (k < 0)
                        return (int) k;
                if (k == 0 || (size_t) k > len - at)
                        break;
                at += (size_t) k;
                if (at == len)
                        break;
        }
        if (at != len)
                return -EIO;
        *ret = TAKE_PTR(b);
        return 0;
}

static int fb_put(void *impl, objstore_op *op, const char *key, const void *data, size_t len,
                  const objstore_put_opts *o) {
        file_store *st = impl;
        _cleanup_free_ char *dir = NULL, *produced = NULL;
        _cleanup_close_ int dfd = -1;
        const char *slash = strrchr(key, '/'), *base = slash ? slash + 1 : key;
        _cleanup_(objstore_object_freep) objstore_object *obj = NULL;
        file_job *j;
        int r;

        if (o && o->body_fn) {
                /* A file is written whole: read the body into memory. */
                r = read_body(o->body_fn, o->body_userdata, len, &produced);
                if (r < 0)
                        return r;
                data = produced;
        }
        j = job_new();
        if (!j)
                return -ENOMEM;
        if (slash) {
                dir = strndup(key, (size_t) (slash - key));
                if (!dir) {
                        job_free(j);
                        return -ENOMEM;
                }
                dfd = fsx_mkdir_beneath(st->root_fd, dir, 0755);
                if (dfd < 0) {
                        job_fail(j, dfd, "failed to create the directory of '%s': %s", key,
                                 strerror(-dfd));
                        return job_submit(st, op, j);
                }
        }

        if (o && o->create_only) {
                r = write_exclusive(dfd >= 0 ? dfd : st->root_fd, base, data, len, 0644);
                if (r == -EEXIST) {
                        job_fail(j, r, "key '%s' exists (create-only put)", key);
                        snprintf(j->err.reason, sizeof(j->err.reason), "PreconditionFailed");
                        return job_submit(st, op, j);
                }
        } else
                r = fsx_write_atomic(dfd >= 0 ? dfd : st->root_fd, base, data, len, 0644);
        if (r < 0) {
                job_fail(j, r, "failed to write '%s': %s", key, strerror(-r));
                return job_submit(st, op, j);
        }

        obj = calloc(1, sizeof(*obj));
        if (!obj) {
                job_free(j);
                return -ENOMEM;
        }
        r = etag_of(data, len, &obj->etag);
        if (r < 0) {
                job_free(j);
                return r;
        }
        obj->size = len;
        j->obj = TAKE_PTR(obj);
        return job_submit(st, op, j);
}

/* ---- delete ------------------------------------------------------------------ */

static int fb_del(void *impl, objstore_op *op, const char *key) {
        file_store *st = impl;
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int dfd = -1;
        const char *slash = strrchr(key, '/'), *base = slash ? slash + 1 : key;
        file_job *j;

        j = job_new();
        if (!j)
                return -ENOMEM;
        if (slash) {
                dir = strndup(key, (size_t) (slash - key));
                if (!dir) {
                        job_free(j);
                        return -ENOMEM;
                }
                dfd = fsx_open_beneath(st->root_fd, dir, O_RDONLY | O_DIRECTORY, 0);
                if (dfd == -ENOENT || dfd == -ENOTDIR)
                        return job_submit(st, op, j); /* nothing to delete */
                if (dfd < 0) {
                        job_fail(j, dfd, "failed to open the directory of '%s': %s", key,
                                 strerror(-dfd));
                        return job_submit(st, op, j);
                }
        }
        if (unlinkat(dfd >= 0 ? dfd : st->root_fd, base, 0) < 0) {
                /* Missing, or a directory (not an object): nothing to delete. */
                if (errno != ENOENT && errno != EISDIR)
                        job_fail(j, -errno, "failed to delete '%s': %m", key);
        } else {
                int r = fsx_fsync_dir(dfd >= 0 ? dfd : st->root_fd);

                if (r < 0)
                        job_fail(j, r, "failed to sync the directory of '%s': %s", key,
                                 strerror(-r));
        }
        return job_submit(st, op, j);
}

/* ---- list ----------------------------------------------------------------------- */

typedef struct key_list {
        char **keys;
        size_t n, cap;
} key_list;

static void key_list_done(key_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->keys[i]);
        free(l->keys);
        *l = (key_list){};
}

static int key_list_add(key_list *l, char *key) {
        if (l->n == l->cap) {
                size_t cap = MAX(l->cap * 2, (size_t) 64);
                char **a = realloc(l->keys, cap * sizeof(char *));

                if (!a)
                        return -ENOMEM;
                l->keys = a;
                l->cap = cap;
        }
        l->keys[l->n++] = key;
        return 0;
}

/* Adds every regular file under @dir_fd (whose path relative to ROOT is
 * @rel, "" for ROOT) that starts with @prefix and sorts after @after. Takes
 * ownership of @dir_fd. Symlinks and ".#" temporaries are skipped. */
static int walk(int dir_fd, const char *rel, const char *prefix, const char *after, unsigned depth,
                key_list *out) {
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (depth > FILE_MAX_DEPTH) {
                safe_close(dir_fd);
                return -ELOOP;
        }
        d = fdopendir(dir_fd);
        if (!d) {
                r = -errno;
                safe_close(dir_fd);
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                struct stat s;
                size_t plen;

                if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
                    startswith(de->d_name, ".#"))
                        continue;
                if (asprintf(&path, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (!objstore_key_is_valid(path))
                        continue;
                /* Prune: the subtree must be able to hold keys with @prefix. */
                plen = strlen(path);
                if (!strneq(path, prefix, MIN(plen, strlen(prefix))))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &s, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue; /* deleted meanwhile */
                        r = -errno;
                        break;
                }
                if (S_ISDIR(s.st_mode)) {
                        int fd = openat(dirfd(d), de->d_name,
                                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                        if (fd < 0) {
                                if (errno == ENOENT)
                                        continue;
                                r = -errno;
                                break;
                        }
                        r = walk(fd, path, prefix, after, depth + 1, out);
                        if (r < 0)
                                break;
                } else if (S_ISREG(s.st_mode)) {
                        if (!startswith(path, prefix) || (after && strcmp(path, after) <= 0))
                                continue;
                        r = key_list_add(out, path);
                        if (r < 0)
                                break;
                        path = NULL;
                }
        }
        if (r == 0 && errno != 0)
                r = -errno;
        closedir(d);
        return r;
}

static int cmp_keys(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int fb_list_page(void *impl, objstore_op *op, const char *prefix, const char *token,
                        size_t max) {
        file_store *st = impl;
        _cleanup_(key_list_done) key_list keys = {};
        file_job *j;
        int fd, r;

        if (token && !objstore_key_is_valid(token))
                return -EINVAL;
        j = job_new();
        if (!j)
                return -ENOMEM;
        j->is_list = true;

        fd = openat(st->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                job_fail(j, -errno, "failed to open '%s': %m", st->root);
                return job_submit(st, op, j);
        }
        r = walk(fd, "", prefix ?: "", token, 0, &keys);
        if (r == -ENOMEM) {
                job_free(j);
                return r;
        }
        if (r < 0) {
                job_fail(j, r, "failed to list '%s': %s", st->root, strerror(-r));
                return job_submit(st, op, j);
        }
        if (keys.n > 1)
                qsort(keys.keys, keys.n, sizeof(char *), cmp_keys);

        j->entries = calloc(MIN(keys.n, max) ?: 1, sizeof(objstore_entry));
        if (!j->entries) {
                job_free(j);
                return -ENOMEM;
        }
        for (size_t i = 0; i < keys.n && j->n < max; i++) {
                file_job tmp = {.r = 0};

                err_info_clear(&tmp.err);

                /* Sizes and ETags as get would report them; a key deleted
                 * since the walk is skipped. */
                r = file_read_object(st, keys.keys[i], false, NULL, &tmp);
                if (r < 0) {
                        job_free(j);
                        return r;
                }
                if (tmp.r == -ENOENT)
                        continue;
                if (tmp.r < 0) {
                        j->r = tmp.r;
                        j->err = tmp.err;
                        break;
                }
                j->entries[j->n++] = (objstore_entry){.key = TAKE_PTR(keys.keys[i]),
                                                      .size = tmp.obj->size,
                                                      .etag = TAKE_PTR(tmp.obj->etag)};
                objstore_object_free(tmp.obj);
                if (j->n == max && i + 1 < keys.n) {
                        j->next_token = strdup(j->entries[j->n - 1].key);
                        if (!j->next_token) {
                                job_free(j);
                                return -ENOMEM;
                        }
                }
        }
        return job_submit(st, op, j);
}

/* ---- store ------------------------------------------------------------------------ */

static void fb_cancel(void *impl, objstore_op *op) {
        file_job *j = objstore_op_get_backend_data(op);

        job_free(j);
        objstore_op_set_backend_data(op, NULL);
}

static void fb_free(void *impl) {
        file_store *st = impl;

        if (!st)
                return;
        safe_close(st->root_fd);
        sd_event_unref(st->event);
        free(st->root);
        free(st);
}

static const objstore_vtable file_vtable = {
        .name = "file",
        .put = fb_put,
        .get = fb_get,
        .head = fb_head,
        .del = fb_del,
        .list_page = fb_list_page,
        .cancel = fb_cancel,
        .free = fb_free,
};

int objstore_file_new(sd_event *e, const char *root, const objstore_config *cfg, objstore **ret,
                      err_info *ret_err) {
        file_store *st;
        int r;

        if (!e || !root || !ret)
                return -EINVAL;
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->root_fd = -1;
        st->event = sd_event_ref(e);
        st->max_object_size =
                cfg && cfg->max_object_size ? cfg->max_object_size : FILE_DEFAULT_MAX_OBJECT;
        st->root = strdup(root);
        if (!st->root) {
                fb_free(st);
                return -ENOMEM;
        }
        st->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (st->root_fd < 0) {
                r = -errno;
                fb_free(st);
                return err_info_set(ret_err, r, "object store directory '%s': %s", root,
                                    strerror(-r));
        }
        r = objstore_new(e, &file_vtable, st, ret);
        if (r < 0)
                fb_free(st);
        return r;
}
