/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A backend-neutral object store, what the operator publishes to and the
 * agent fetches from: put (optionally create-only), get (optionally
 * conditional on an ETag), head, delete and a paginated, sorted list. Two
 * backends implement the vtable below: S3 (s3.h) and a plain directory
 * (objstore-file.c). objstore_open() picks one from a location string
 * (docs/object-store.md):
 *
 *   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false
 *                        &create_mode=conditional|auto|head]
 *   file:///ABSOLUTE/DIR
 *
 * Both backends complete from the event loop (never inside the start call),
 * return the same errors and the same kinds of ETags (a quoted string that
 * changes when the content does), so callers can't tell them apart:
 *   -ENOENT     no such key (get, head)
 *   -EEXIST     create-only put of an existing key
 *   -EOPNOTSUPP the server can't do create-only puts (S3, create_mode=conditional)
 *   -EINVAL     a bad key or prefix (see objstore_key_is_valid())
 *   -EACCES     credentials refused, or file permissions
 *   -EAGAIN     the store is overloaded or failing (after retries)
 *   others      transport and file system errors (err.h)
 * delete of a missing key succeeds (idempotent).
 *
 * Keys are relative to the location's prefix: "s3://b/ballast" and key
 * "nodes/a.json" is the S3 object "ballast/nodes/a.json".
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "err.h"
#include "hash.h"
#include "http.h"
#include "macro.h"

typedef struct objstore objstore;
typedef struct objstore_op objstore_op;

/* The result of get/head/put. Strings are owned by the struct. */
typedef struct objstore_object {
        char *data; /* get: the content, NUL-terminated; else NULL */
        size_t size;
        char *etag;          /* quoted, e.g. "\"9f86...\""; NULL if the store sent none */
        char *last_modified; /* HTTP-date, or NULL */
        bool not_modified;   /* get with if_none_match matched: no data */
} objstore_object;

objstore_object *objstore_object_free(objstore_object *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(objstore_object *, objstore_object_free);

typedef struct objstore_entry {
        char *key; /* relative to the store's prefix */
        uint64_t size;
        char *etag; /* may be NULL */
} objstore_entry;

void objstore_entries_free(objstore_entry *e, size_t n);

typedef struct objstore_put_opts {
        const char *content_type; /* NULL: application/octet-stream */
        bool create_only;         /* -EEXIST if the key exists */
        /* @data is not copied: the caller keeps it valid and unchanged until
         * the done callback has run or the op is cancelled (large bodies). */
        bool borrow;
        /* Non-NULL: the body comes from it instead of @data (which must be
         * NULL), read piece by piece, valid until done or cancel: a document
         * of megabytes is never held whole (S3). The file:// store reads it
         * into memory once, to write the file. */
        hash_read_fn body_fn;
        void *body_userdata;
        /* With body_fn: the body's sha256 and MD5 if the caller has them (see
         * s3_put_opts): S3 then needn't read the body for its checksums. */
        const unsigned char *sha256;
        const unsigned char *md5;
} objstore_put_opts;

/* Completion of put/get/head/delete. @obj is owned by the op and freed after
 * the callback (take fields with TAKE_PTR() to keep them); NULL on failure
 * and for delete. @err is borrowed, NULL on success. */
typedef void (*objstore_done_fn)(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                                 void *userdata);

/* A page of a listing, sorted by key (byte order). @entries is borrowed (take
 * strings with TAKE_PTR()). Return 0 for the next page, 1 to stop (done gets
 * 0), or a negative errno to abort (done gets it). */
typedef int (*objstore_page_fn)(objstore_op *op, objstore_entry *entries, size_t n, void *userdata);

/* Settings that are not part of the location string. Strings are copied. */
typedef struct objstore_config {
        const char *access_key;    /* S3; NULL: $AWS_ACCESS_KEY_ID */
        const char *secret_key;    /* S3; NULL: $AWS_SECRET_ACCESS_KEY */
        const char *session_token; /* S3; NULL: $AWS_SESSION_TOKEN */
        const char *region;        /* S3 default when the location has none */
        const char *endpoint;      /* S3 default when the location has none */
        http_client *http;         /* S3; borrowed; NULL: the store makes one */
        const http_tls *tls;       /* S3; borrowed until objstore_free() */
        unsigned max_attempts;     /* S3 retries; 0: 4 */
        uint64_t retry_base_usec;  /* S3 backoff; 0: 200 ms */
        uint64_t timeout_usec;     /* S3 per attempt; 0: 60 s */
        size_t max_object_size;    /* largest object get returns; 0: 64 MiB (-EFBIG) */
} objstore_config;

/* The parsed form of a location string. */
typedef enum objstore_kind {
        OBJSTORE_S3,
        OBJSTORE_FILE,
} objstore_kind;

typedef struct objstore_location {
        objstore_kind kind;
        char *bucket;    /* S3 */
        char *prefix;    /* S3: "" or "a/b/" (always ends in "/") */
        char *endpoint;  /* S3: NULL if not given */
        char *region;    /* S3: NULL if not given */
        int path_style;  /* S3: -1 not given, 0 virtual-host, 1 path-style */
        int create_mode; /* S3: -1 not given, else an s3_create_mode */
        char *path;      /* file: absolute directory, no trailing "/" */
} objstore_location;

void objstore_location_done(objstore_location *l);

/* Parses @s (see top). Query values are percent-decoded. Rejects unknown
 * schemes, a missing or invalid bucket, a prefix with "." or ".." segments,
 * unknown or repeated parameters, credentials in the string, file:// paths
 * that are relative, have a host, or contain "." or ".." segments: -EINVAL
 * with a message naming the problem in @ret_err. */
int objstore_location_parse(const char *s, objstore_location *ret, err_info *ret_err);

/* Opens the store at @location on @e (referenced). @cfg may be NULL. The
 * file backend requires the directory to exist. */
int objstore_open(sd_event *e, const char *location, const objstore_config *cfg, objstore **ret,
                  err_info *ret_err);

/* Cancels pending ops (no callbacks) and frees the store. NULL is fine. Must
 * not be called from one of this store's callbacks. */
objstore *objstore_free(objstore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(objstore *, objstore_free);

/* "s3" or "file". */
const char *objstore_backend_name(const objstore *s);
sd_event *objstore_get_event(const objstore *s);

/* The backend's requests by HTTP status (http_code_counts) into *@ret, and
 * true; a backend without HTTP (file) zeroes *@ret and returns false. */
bool objstore_get_http_codes(const objstore *s, http_code_counts *ret);

/* Keys are what fsx_is_safe_relpath() accepts (relative, no empty, "." or
 * ".." segments, no control characters, at most FSX_PATH_MAX bytes), and no
 * segment may start with ".#" (the file backend's temporary files). The same
 * rule for both backends, so a key that works on one works on the other. */
bool objstore_key_is_valid(const char *key);
/* A list prefix: "" or a key prefix (may end in "/"), same characters. */
bool objstore_prefix_is_valid(const char *prefix);

/* Operations. @key/@prefix are checked first (-EINVAL); @data is copied. On
 * success *@ret (if non-NULL) is a handle valid until the done callback has
 * run or objstore_op_cancel(). */
int objstore_put(objstore *s, const char *key, const void *data, size_t len,
                 const objstore_put_opts *o, objstore_done_fn done, void *userdata,
                 objstore_op **ret);
int objstore_get(objstore *s, const char *key, const char *if_none_match, objstore_done_fn done,
                 void *userdata, objstore_op **ret);
int objstore_head(objstore *s, const char *key, objstore_done_fn done, void *userdata,
                  objstore_op **ret);
int objstore_delete(objstore *s, const char *key, objstore_done_fn done, void *userdata,
                    objstore_op **ret);
/* Lists keys starting with @prefix (NULL: all) in pages of up to @page_size
 * (0: 1000) entries, sorted by key. */
int objstore_list(objstore *s, const char *prefix, size_t page_size, objstore_page_fn page,
                  objstore_done_fn done, void *userdata, objstore_op **ret);

/* Aborts a pending op; no callback runs. NULL is fine. */
void objstore_op_cancel(objstore_op *op);

/* Synchronous wrappers for start-up code, tools and tests: run the store's
 * event loop until the op ends. *@ret (if non-NULL) owns the result. */
int objstore_put_sync(objstore *s, const char *key, const void *data, size_t len,
                      const objstore_put_opts *o, objstore_object **ret, err_info *ret_err);
int objstore_get_sync(objstore *s, const char *key, const char *if_none_match,
                      objstore_object **ret, err_info *ret_err);
int objstore_head_sync(objstore *s, const char *key, objstore_object **ret, err_info *ret_err);
int objstore_delete_sync(objstore *s, const char *key, err_info *ret_err);
/* Every page accumulated: *@ret_entries (free with objstore_entries_free()). */
int objstore_list_sync(objstore *s, const char *prefix, size_t page_size,
                       objstore_entry **ret_entries, size_t *ret_n, err_info *ret_err);

/* ---- Backends --------------------------------------------------------------
 *
 * A backend implements these; objstore.c validates arguments, keeps the op
 * list and drives list pagination. Each start function gets the op, starts
 * the work and returns 0 (then it must complete the op exactly once, from
 * the event loop, with objstore_op_complete() or objstore_op_page_done(),
 * unless cancel is called first) or a negative errno (then it must not
 * complete it). */
typedef struct objstore_vtable {
        const char *name;
        int (*put)(void *impl, objstore_op *op, const char *key, const void *data, size_t len,
                   const objstore_put_opts *o);
        int (*get)(void *impl, objstore_op *op, const char *key, const char *if_none_match);
        int (*head)(void *impl, objstore_op *op, const char *key);
        int (*del)(void *impl, objstore_op *op, const char *key);
        /* One page of at most @max keys that start with @prefix (full,
         * relative to the store), sorted, after @token: the backend's own
         * continuation token from the previous page (NULL at first). */
        int (*list_page)(void *impl, objstore_op *op, const char *prefix, const char *token,
                         size_t max);
        /* Stops the backend's work for @op; no completion may follow. */
        void (*cancel)(void *impl, objstore_op *op);
        void (*free)(void *impl);
        /* Optional: requests by HTTP status (backends that speak HTTP). */
        void (*http_codes)(void *impl, http_code_counts *ret);
} objstore_vtable;

/* Wraps a backend: takes ownership of @impl (freed with vt->free). */
int objstore_new(sd_event *e, const objstore_vtable *vt, void *impl, objstore **ret);

/* For backends: their per-op state (set when starting, read by cancel). */
void objstore_op_set_backend_data(objstore_op *op, void *data);
void *objstore_op_get_backend_data(objstore_op *op);

/* For backends: completes a put/get/head/delete. Takes ownership of @obj
 * (may be NULL); @err is borrowed. The op is freed. */
void objstore_op_complete(objstore_op *op, int r, objstore_object *obj, const err_info *err);

/* For backends: completes one list page. Takes ownership of @entries;
 * @next_token (borrowed) is NULL on the last page. */
void objstore_op_page_done(objstore_op *op, int r, objstore_entry *entries, size_t n,
                           const char *next_token, const err_info *err);

/* The file backend, for tests and objstore_open(): @root must be an existing
 * directory; only cfg->max_object_size is used (@cfg may be NULL). */
int objstore_file_new(sd_event *e, const char *root, const objstore_config *cfg, objstore **ret,
                      err_info *ret_err);
