/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A small S3 client for any S3-compatible store (AWS S3, versitygw, MinIO,
 * Ceph RGW, R2): PUT, GET, HEAD, DELETE and ListObjectsV2 on one bucket,
 * asynchronous on sd-event through http.h, with synchronous wrappers for
 * start-up code and tests.
 *
 * Requests are signed with libcurl's SigV4 signer; this module adds the
 * x-amz-content-sha256 header curl 7.88 leaves out, builds canonical
 * (sorted, AWS-escaped) query strings because curl 7.88 signs the query as
 * given (both in docs/object-store.md, "Signing (S3)"), and escapes each key
 * segment per AWS rules ("/" kept).
 *
 * Errors (see docs/object-store.md for the whole table): the S3 XML error
 * document is parsed (expat, no DTD/entities) and its Code goes
 * to err_info.reason, "Code: Message (request id ...)" to err_info.message.
 *   NoSuchKey, NoSuchBucket, HEAD 404                -ENOENT
 *   AccessDenied, SignatureDoesNotMatch,
 *   InvalidAccessKeyId, other 401/403                -EACCES
 *   SlowDown, 429, 500, 503, other 5xx               -EAGAIN (retried first)
 *   PreconditionFailed / 412                         -EEXIST for create-only PUT, else -ESTALE
 *   NotImplemented / 501                             -EOPNOTSUPP (not retried)
 *   304 Not Modified on GET                          0 with obj->not_modified
 *   a non-XML error body (proxy HTML, empty)         err_from_http_status(), message names
 *                                                    the HTTP status
 * Transport failures keep the errno from http.h (-ETIMEDOUT, -ECONNREFUSED...).
 *
 * Retries: transport errors, 5xx (but 501), 429 and SlowDown are retried up to
 * max_attempts in all, with capped exponential backoff and full jitter
 * (backoff.h); a Retry-After from the server is honoured as a lower bound
 * (capped at retry_after_max_usec). Other 4xx are never retried.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "err.h"
#include "hash.h"
#include "http.h"
#include "macro.h"

#define S3_KEY_MAX       1024                /* bytes, as in AWS S3 */
#define S3_XML_MAX       (16U * 1024 * 1024) /* largest XML document we parse */
#define S3_LIST_MAX_KEYS 1000                /* the most a ListObjectsV2 page returns */

typedef struct s3_client s3_client;
typedef struct s3_op s3_op;

typedef enum s3_addressing {
        S3_ADDRESSING_AUTO, /* virtual-host for AWS (no endpoint), path-style for custom endpoints
                             */
        S3_ADDRESSING_PATH, /* http://endpoint/bucket/key */
        S3_ADDRESSING_VIRTUAL, /* http://bucket.endpoint/key */
} s3_addressing;

/* How a create-only PUT makes sure it does not overwrite. */
typedef enum s3_create_mode {
        S3_CREATE_CONDITIONAL,   /* If-None-Match: *; a server without support: -EOPNOTSUPP */
        S3_CREATE_AUTO,          /* conditional; after a 501 fall back (for this client) to ... */
        S3_CREATE_HEAD_THEN_PUT, /* HEAD, then PUT if 404. Racy: two writers can both win */
} s3_create_mode;

/* Checksums sent with a PUT (flags). x-amz-content-sha256 is always sent. */
enum {
        S3_CHECKSUM_MD5 = 1 << 0,    /* Content-MD5 (base64): every S3 implementation checks it */
        S3_CHECKSUM_SHA256 = 1 << 1, /* x-amz-checksum-sha256 (base64) */
};

/* Client configuration. Strings are copied by s3_client_new(). */
typedef struct s3_config {
        const char *endpoint;   /* "http://127.0.0.1:9000"; NULL: https://s3.REGION.amazonaws.com */
        const char *bucket;     /* required */
        const char *region;     /* NULL: $AWS_REGION, $AWS_DEFAULT_REGION, else "us-east-1" */
        const char *access_key; /* NULL: $AWS_ACCESS_KEY_ID */
        const char *secret_key; /* NULL: $AWS_SECRET_ACCESS_KEY */
        const char *session_token; /* NULL: $AWS_SESSION_TOKEN (optional) */
        bool anonymous;            /* send unsigned requests (public buckets) */
        s3_addressing addressing;
        s3_create_mode create_mode;
        unsigned checksums;            /* S3_CHECKSUM_* flags; 0: S3_CHECKSUM_MD5 */
        unsigned max_attempts;         /* attempts in all, 1..100; 0: 4 */
        uint64_t retry_base_usec;      /* first backoff window; 0: 200 ms */
        uint64_t retry_cap_usec;       /* largest backoff window; 0: 10 s */
        uint64_t retry_after_max_usec; /* cap on a server's Retry-After; 0: 60 s */
        uint64_t timeout_usec;         /* per attempt; 0: 60 s */
        size_t max_object_size;        /* GET body cap; 0: 64 MiB (larger: -EFBIG) */
        const http_tls *tls;           /* copied by http.h per request; borrowed until free */
        const char *fixed_amz_date;    /* tests only: send this X-Amz-Date (curl signs it) */
} s3_config;

/* An object's data and metadata, as a GET, HEAD or PUT returned it. All
 * strings are NUL-terminated and owned by the struct. */
typedef struct s3_object {
        char *body; /* GET: the content (NUL-terminated); else NULL */
        size_t body_len;
        uint64_t size;       /* GET: body_len; HEAD: Content-Length; PUT: bytes sent */
        char *etag;          /* as the server sent it, quotes included; may be NULL */
        char *last_modified; /* HTTP-date as sent; may be NULL */
        char *content_type;  /* may be NULL */
        bool not_modified;   /* GET with if_none_match answered 304: no body */
} s3_object;

s3_object *s3_object_free(s3_object *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(s3_object *, s3_object_free);

typedef struct s3_list_entry {
        char *key;
        uint64_t size;
        char *etag;          /* may be NULL */
        char *last_modified; /* ISO 8601 as sent; may be NULL */
} s3_list_entry;

/* One ListObjectsV2 page. */
typedef struct s3_list_page {
        s3_list_entry *entries;
        size_t n_entries;
        bool is_truncated;
        char *next_token; /* NextContinuationToken; NULL when not truncated */
} s3_list_page;

/* Frees the contents of @p (not @p itself) and zeroes it. */
void s3_list_page_done(s3_list_page *p);
/* Frees @n entries and the array. */
void s3_list_entries_free(s3_list_entry *e, size_t n);

/* Completion of PUT/GET/HEAD/DELETE. @r is 0 or a negative errno (see top).
 * @obj (NULL on failure and for DELETE) is owned by the op and freed after
 * the callback returns; the callback may take fields with TAKE_PTR(). @err is
 * borrowed, NULL on success. The op handle is invalid after the callback. */
typedef void (*s3_done_fn)(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata);

/* A ListObjectsV2 page arrived. @page is borrowed (the callback may take
 * entries' strings with TAKE_PTR()). Return 0 to fetch the next page, 1 to
 * stop early (the done callback then gets 0), or a negative errno to abort
 * (the done callback gets it). */
typedef int (*s3_page_fn)(s3_op *op, s3_list_page *page, void *userdata);

/* Creates a client. @e is referenced. @http is borrowed and must outlive the
 * client (a fake one in tests); NULL: the client makes its own. Rejects a
 * missing bucket, a bucket name S3 would reject, an endpoint that is not
 * http(s)://host[:port][/path], missing credentials (unless anonymous) with
 * -EINVAL and a message in @ret_err. */
int s3_client_new(sd_event *e, http_client *http, const s3_config *cfg, s3_client **ret,
                  err_info *ret_err);

/* Cancels pending ops (no callbacks) and frees the client. NULL is fine. Must
 * not be called from one of this client's callbacks. */
s3_client *s3_client_free(s3_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(s3_client *, s3_client_free);

/* The event loop the client runs on (borrowed). */
sd_event *s3_client_get_event(s3_client *c);

/* Every HTTP exchange so far (each attempt, retries included) by the status
 * it ended with; n[0]: no response (see http_code_counts). */
void s3_client_get_http_codes(const s3_client *c, http_code_counts *ret);

/* Options of a PUT. */
typedef struct s3_put_opts {
        const char *content_type; /* NULL: application/octet-stream */
        bool create_only;         /* fail with -EEXIST if the key exists (see s3_create_mode) */
        bool borrow; /* @data is not copied: valid and unchanged until @done or cancel */
        /* Non-NULL: the @len bytes of the body come from it (@data must be
         * NULL), with @body_userdata, valid until @done or cancel. It is read
         * once for the checksums, then once per attempt. */
        hash_read_fn body_fn;
        void *body_userdata;
        /* With body_fn: the body's sha256 (32 bytes) and MD5 (16 bytes, NULL
         * if unknown) when the caller has already read it for them; the
         * checksum pass is then skipped when every checksum the client sends
         * is given. Trusted: a wrong one only makes the server refuse the PUT. */
        const unsigned char *sha256;
        const unsigned char *md5;
} s3_put_opts;

/* Starts an operation. @key is 1..S3_KEY_MAX bytes, without control
 * characters and without "." or ".." segments (curl would squash them):
 * others -EINVAL. @data of PUT is copied unless borrowed (s3_put_opts). On success *@ret (if
 * non-NULL) is a handle valid until @done has run or s3_op_cancel(); @done always runs from the
 * event loop, never from inside these calls. */
int s3_put_object(s3_client *c, const char *key, const void *data, size_t len, const s3_put_opts *o,
                  s3_done_fn done, void *userdata, s3_op **ret);
/* GET; with @if_none_match (an ETag), a 304 completes with
 * obj->not_modified and no body. */
int s3_get_object(s3_client *c, const char *key, const char *if_none_match, s3_done_fn done,
                  void *userdata, s3_op **ret);
int s3_head_object(s3_client *c, const char *key, s3_done_fn done, void *userdata, s3_op **ret);
/* DELETE is idempotent: deleting a missing key succeeds (S3 answers 204 for
 * both; a 404 NoSuchKey from a stricter server is also mapped to 0). */
int s3_delete_object(s3_client *c, const char *key, s3_done_fn done, void *userdata, s3_op **ret);

/* ListObjectsV2 of keys starting with @prefix (NULL or "" for all), in
 * @max_keys pages (0 or over 1000: 1000). With @start_token, starts at that
 * continuation token. Calls @page for each page, then @done (with obj NULL).
 * A server that claims more pages without a new token gets -EBADMSG. */
int s3_list_objects(s3_client *c, const char *prefix, unsigned max_keys, const char *start_token,
                    s3_page_fn page, s3_done_fn done, void *userdata, s3_op **ret);

/* Aborts a pending op; its callbacks are not called. NULL is fine. */
void s3_op_cancel(s3_op *op);

/* Synchronous wrappers: run the client's event loop until the op ends. On
 * success *@ret (if non-NULL) owns the object (HEAD/GET/PUT). */
int s3_put_object_sync(s3_client *c, const char *key, const void *data, size_t len,
                       const s3_put_opts *o, s3_object **ret, err_info *ret_err);
int s3_get_object_sync(s3_client *c, const char *key, const char *if_none_match, s3_object **ret,
                       err_info *ret_err);
int s3_head_object_sync(s3_client *c, const char *key, s3_object **ret, err_info *ret_err);
int s3_delete_object_sync(s3_client *c, const char *key, err_info *ret_err);
/* Accumulates every page: *@ret_entries (owned, free with
 * s3_list_entries_free()) and *@ret_n. */
int s3_list_objects_sync(s3_client *c, const char *prefix, unsigned max_keys,
                         s3_list_entry **ret_entries, size_t *ret_n, err_info *ret_err);

/* ---- Pieces, exported for tests and objstore.c -------------------------- */

/* True if @key is acceptable as described at s3_put_object(). */
bool s3_key_is_valid(const char *key);

/* True if @bucket follows S3's bucket naming rules (3..63 of [a-z0-9.-],
 * starting and ending with a letter or digit, not an IPv4 address). */
bool s3_bucket_is_valid(const char *bucket);

/* Percent-encodes @key per AWS SigV4 rules for S3: every byte but
 * A-Z a-z 0-9 - . _ ~ and "/" becomes %XX (uppercase hex). Caller frees;
 * NULL on OOM. */
char *s3_escape_key(const char *key);

/* Builds the URL of @key (NULL: the bucket itself, for listing) with the
 * client's endpoint and addressing. @query (already canonical) is appended
 * after "?" when non-NULL. Caller frees. */
int s3_client_url(const s3_client *c, const char *key, const char *query, char **ret);

/* Maps an S3 error to a negative errno as in the table at the top. @code may
 * be NULL (no XML body). @create_only refines 412. */
int s3_error_to_errno(long status, const char *code, bool create_only);

/* True if an attempt that failed this way may be retried: @r < 0 and
 * @status == 0 is a transport failure (err_is_transient()); otherwise 5xx but
 * 501, 429, or Code SlowDown. */
bool s3_error_is_retryable(int r, long status, const char *code);

/* ---- XML (s3-xml.c): untrusted input, fuzzed by tests/fuzz/fuzz-s3-xml.c -- */

typedef struct s3_xml_error {
        char *code;       /* required */
        char *message;    /* may be NULL */
        char *request_id; /* may be NULL */
        char *resource;   /* may be NULL */
} s3_xml_error;

void s3_xml_error_done(s3_xml_error *e);

/* Parses an S3 <Error> document of @len bytes (need not be NUL-terminated).
 * Returns 0 and fills *@ret (owned by the caller, free with
 * s3_xml_error_done()); -EBADMSG if it is not XML, has a DTD, is not an
 * <Error> or has no <Code>; -EFBIG over S3_XML_MAX; -ENOMEM. */
int s3_xml_parse_error(const char *data, size_t len, s3_xml_error *ret);

/* Parses a ListObjectsV2 <ListBucketResult>. Returns 0 and fills *@ret
 * (free with s3_list_page_done()); -EBADMSG for malformed documents (no XML,
 * a DTD, a Contents without Key, a bad Size, IsTruncated without
 * NextContinuationToken), -EFBIG, -ENOMEM. */
int s3_xml_parse_list(const char *data, size_t len, s3_list_page *ret);
