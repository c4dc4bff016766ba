/* SPDX-License-Identifier: Apache-2.0 */

/*
 * S3 client: request building (URLs, escaping, SigV4 headers), the retry
 * loop, and the mapping of S3 answers to errno (see s3.h and
 * docs/object-store.md). One s3_op is one logical operation; it may take
 * several HTTP attempts (retries), two stages (HEAD-then-PUT), or many pages
 * (ListObjectsV2).
 */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backoff.h"
#include "hash.h"
#include "loop.h"
#include "s3.h"

#define S3_DEFAULT_ATTEMPTS        4U
#define S3_MAX_ATTEMPTS            100U
#define S3_DEFAULT_RETRY_BASE      (200 * USEC_PER_MSEC)
#define S3_DEFAULT_RETRY_CAP       (10 * USEC_PER_SEC)
#define S3_DEFAULT_RETRY_AFTER_MAX (60 * USEC_PER_SEC)
#define S3_DEFAULT_TIMEOUT         (60 * USEC_PER_SEC)
#define S3_DEFAULT_MAX_OBJECT      (64U * 1024 * 1024)
#define S3_ERROR_BODY_MAX          (64U * 1024) /* of an error body, we keep this much */
#define S3_MAX_PAGES               1000000U     /* a server that never stops paginating */
#define S3_EMPTY_SHA256            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_client {
        sd_event *event;
        http_client *http;
        bool own_http;

        char *scheme;    /* "http" or "https" */
        char *host;      /* host[:port] of the endpoint */
        char *base_path; /* "" or "/path" (no trailing "/") */
        char *bucket;
        char *region;
        char *sigv4; /* "aws:amz:REGION:s3", NULL when anonymous */
        char *userpwd;
        char *session_token;
        bool virtual_host;

        s3_create_mode create_mode;
        bool conditional_unsupported; /* a 501 taught us (S3_CREATE_AUTO) */
        unsigned checksums;
        unsigned max_attempts;
        uint64_t retry_base;
        uint64_t retry_cap;
        uint64_t retry_after_max;
        uint64_t timeout;
        size_t max_object_size;
        const http_tls *tls;
        char *fixed_amz_date;

        s3_op *ops; /* pending, for s3_client_free() */
        http_code_counts codes;
};

typedef enum op_kind {
        OP_PUT,
        OP_GET,
        OP_HEAD,
        OP_DELETE,
        OP_LIST,
} op_kind;

struct s3_op {
        s3_client *client;
        s3_op *prev, *next;
        op_kind kind;
        char *key; /* NULL for OP_LIST */

        /* PUT */
        void *body;
        size_t body_len;
        bool body_borrowed;   /* s3_put_opts.borrow: not ours to free */
        hash_read_fn body_fn; /* s3_put_opts.body_fn */
        void *body_userdata;
        char *content_type;
        char sha256_hex[HASH_SHA256_HEX_LEN + 1];
        char *md5_b64;
        char *sha256_b64;
        bool create_only;
        bool conditional; /* sending If-None-Match: * */
        bool probing;     /* create-only fallback: the HEAD stage */

        /* GET */
        char *if_none_match;

        /* LIST */
        char *prefix;
        char *token;
        unsigned max_keys;
        unsigned pages;
        s3_page_fn page;

        /* the current attempt */
        unsigned attempt;
        backoff backoff;
        sd_event_source *timer;
        http_request *req;
        char *buf; /* response body collected by on_http_data() */
        size_t buf_len;
        bool buf_truncated;

        s3_done_fn done;
        void *userdata;
        unsigned in_callback;
        bool cancelled;
};

/* ---- small helpers ------------------------------------------------------ */

static char *strdup_nullable(const char *s, bool *oom) {
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

static bool has_ctl(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return true;
        return false;
}

static const char *op_method(const s3_op *op) {
        if (op->probing)
                return "HEAD";
        switch (op->kind) {
        case OP_PUT:
                return "PUT";
        case OP_GET:
        case OP_LIST:
                return "GET";
        case OP_HEAD:
                return "HEAD";
        case OP_DELETE:
                return "DELETE";
        }
        return "GET";
}

static char *base64(const unsigned char *d, size_t n) {
        char *s = malloc(4 * ((n + 2) / 3) + 1);

        if (!s)
                return NULL;
        EVP_EncodeBlock((unsigned char *) s, d, (int) n);
        return s;
}

/* ---- names and URLs ------------------------------------------------------ */

bool s3_key_is_valid(const char *key) {
        size_t n;
        const char *seg;

        if (!key)
                return false;
        n = strlen(key);
        if (n == 0 || n > S3_KEY_MAX || has_ctl(key))
                return false;
        /* curl removes "." and ".." segments from URL paths (RFC 3986 dot
         * segment removal), which would address another key. */
        seg = key;
        for (;;) {
                const char *e = strchrnul(seg, '/');
                size_t l = (size_t) (e - seg);

                if ((l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
                        return false;
                if (!*e)
                        break;
                seg = e + 1;
        }
        return true;
}

bool s3_bucket_is_valid(const char *b) {
        size_t n;
        bool all_digits_dots = true;

        if (!b)
                return false;
        n = strlen(b);
        if (n < 3 || n > 63)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = b[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                      ch == '-'))
                        return false;
                if (!((ch >= '0' && ch <= '9') || ch == '.'))
                        all_digits_dots = false;
        }
        if (!isalnum((unsigned char) b[0]) || !isalnum((unsigned char) b[n - 1]))
                return false;
        if (strstr(b, "..") || strstr(b, ".-") || strstr(b, "-."))
                return false;
        return !all_digits_dots; /* looks like an IPv4 address */
}

char *s3_escape_key(const char *key) {
        static const char hex[] = "0123456789ABCDEF";
        char *out, *p;
        size_t n;

        if (!key)
                return NULL;
        n = strlen(key);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = p = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        for (const unsigned char *q = (const unsigned char *) key; *q; q++) {
                if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
                    (*q >= '0' && *q <= '9') || *q == '-' || *q == '.' || *q == '_' || *q == '~' ||
                    *q == '/')
                        *p++ = (char) *q;
                else {
                        *p++ = '%';
                        *p++ = hex[*q >> 4];
                        *p++ = hex[*q & 0xf];
                }
        }
        *p = '\0';
        return out;
}

int s3_client_url(const s3_client *c, const char *key, const char *query, char **ret) {
        _cleanup_free_ char *ekey = NULL;
        char *url;
        int n;

        if (!c || !ret)
                return -EINVAL;
        if (key) {
                ekey = s3_escape_key(key);
                if (!ekey)
                        return -ENOMEM;
        }
        if (c->virtual_host)
                n = asprintf(&url, "%s://%s.%s%s/%s%s%s", c->scheme, c->bucket, c->host,
                             c->base_path, ekey ?: "", query ? "?" : "", query ?: "");
        else
                n = asprintf(&url, "%s://%s%s/%s%s%s%s%s", c->scheme, c->host, c->base_path,
                             c->bucket, ekey ? "/" : "", ekey ?: "", query ? "?" : "", query ?: "");
        if (n < 0)
                return -ENOMEM;
        *ret = url;
        return 0;
}

/* Splits "http(s)://host[:port][/path]" into its parts. */
static int endpoint_parse(const char *ep, char **ret_scheme, char **ret_host, char **ret_path,
                          err_info *ret_err) {
        _cleanup_free_ char *scheme = NULL, *host = NULL, *path = NULL;
        const char *rest, *slash;
        size_t n;

        if (startswith(ep, "https://")) {
                scheme = strdup("https");
                rest = ep + 8;
        } else if (startswith(ep, "http://")) {
                scheme = strdup("http");
                rest = ep + 7;
        } else
                return err_info_set(ret_err, -EINVAL,
                                    "S3 endpoint '%s' must start with http:// or https://", ep);
        if (!scheme)
                return -ENOMEM;
        if (has_ctl(ep) || strpbrk(ep, " @?#\\"))
                return err_info_set(ret_err, -EINVAL,
                                    "S3 endpoint '%s' must be http(s)://host[:port][/path] "
                                    "without credentials, query, fragment or spaces",
                                    ep);
        slash = strchrnul(rest, '/');
        if (slash == rest)
                return err_info_set(ret_err, -EINVAL, "S3 endpoint '%s' has no host", ep);
        host = strndup(rest, (size_t) (slash - rest));
        path = strdup(slash);
        if (!host || !path)
                return -ENOMEM;
        n = strlen(path);
        while (n > 0 && path[n - 1] == '/')
                path[--n] = '\0';
        *ret_scheme = TAKE_PTR(scheme);
        *ret_host = TAKE_PTR(host);
        *ret_path = TAKE_PTR(path);
        return 0;
}

/* ---- errors --------------------------------------------------------------- */

static bool code_is(const char *code, const char *s) {
        return code && streq(code, s);
}

int s3_error_to_errno(long status, const char *code, bool create_only) {
        static const char *const enoent[] = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion",
                                             "NotFound"};
        static const char *const eacces[] = {
                "AccessDenied",    "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                "InvalidToken",    "TokenRefreshRequired",  "AllAccessDisabled",  "AccountProblem",
                "InvalidSecurity", "RequestTimeTooSkewed",  "Forbidden",
        };
        static const char *const eagain[] = {
                "SlowDown",   "ServiceUnavailable",  "InternalError",
                "Throttling", "ThrottlingException", "RequestThrottled"};

        if ((status >= 200 && status < 300) || status == 304)
                return 0;
        if (code) {
                for (size_t i = 0; i < ELEMENTSOF(enoent); i++)
                        if (streq(code, enoent[i]))
                                return -ENOENT;
                for (size_t i = 0; i < ELEMENTSOF(eacces); i++)
                        if (streq(code, eacces[i]))
                                return -EACCES;
                for (size_t i = 0; i < ELEMENTSOF(eagain); i++)
                        if (streq(code, eagain[i]))
                                return -EAGAIN;
                if (streq(code, "PreconditionFailed"))
                        return create_only ? -EEXIST : -ESTALE;
                if (streq(code, "NotImplemented"))
                        return -EOPNOTSUPP;
                if (streq(code, "EntityTooLarge"))
                        return -EFBIG;
                if (streq(code, "BadDigest") || streq(code, "InvalidDigest") ||
                    streq(code, "XAmzContentSHA256Mismatch"))
                        return -EBADMSG;
        }
        if (status == 412)
                return create_only ? -EEXIST : -ESTALE;
        if (status == 501)
                return -EOPNOTSUPP;
        return err_from_http_status(status, code);
}

bool s3_error_is_retryable(int r, long status, const char *code) {
        if (status <= 0)
                return r < 0 && err_is_transient(r);
        if (code_is(code, "SlowDown") || code_is(code, "Throttling") ||
            code_is(code, "ThrottlingException") || code_is(code, "RequestThrottled"))
                return true;
        if (status == 429)
                return true;
        return status >= 500 && status < 600 && status != 501;
}

/* A short tag for an error without body (HEAD answers have none). */
static const char *status_tag(long status) {
        switch (status) {
        case 400:
                return "BadRequest";
        case 403:
                return "Forbidden";
        case 404:
                return "NotFound";
        case 412:
                return "PreconditionFailed";
        case 500:
                return "InternalError";
        case 501:
                return "NotImplemented";
        case 503:
                return "ServiceUnavailable";
        default:
                return NULL;
        }
}

/* A printable, single-line excerpt of a body for messages. */
static void body_excerpt(const char *b, size_t len, char *out, size_t out_size) {
        size_t j = 0;

        for (size_t i = 0; i < len && j + 1 < out_size && i < 160; i++) {
                unsigned char ch = (unsigned char) b[i];

                out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char) ch : ' ';
        }
        out[j] = '\0';
}

/* Fills @e from a non-2xx answer and returns the errno. */
static int op_error_from_response(s3_op *op, const http_response *resp, err_info *e) {
        _cleanup_(s3_xml_error_done) s3_xml_error x = {};
        const char *what = op->key ?: op->prefix ?: "";
        const char *code = NULL;
        int r;

        err_info_clear(e);
        e->http_status = resp->status;
        e->retry_after_sec = resp->retry_after_sec;

        if (op->buf_len > 0 && !op->buf_truncated &&
            s3_xml_parse_error(op->buf, op->buf_len, &x) >= 0)
                code = x.code;

        r = s3_error_to_errno(resp->status,
                              code ?: (op->buf_len == 0 ? status_tag(resp->status) : NULL),
                              op->create_only && op->kind == OP_PUT && !op->probing);
        if (code) {
                snprintf(e->reason, sizeof(e->reason), "%s", code);
                err_info_set(e, r, "S3 %s '%s': %s: %s (HTTP %ld%s%s)", op_method(op), what, code,
                             x.message ?: "no message", resp->status,
                             x.request_id ? ", request id " : "", x.request_id ?: "");
        } else if (op->buf_len == 0) {
                const char *tag = status_tag(resp->status);

                if (tag)
                        snprintf(e->reason, sizeof(e->reason), "%s", tag);
                err_info_set(e, r, "S3 %s '%s': HTTP %ld%s%s with an empty body", op_method(op),
                             what, resp->status, tag ? " " : "", tag ?: "");
        } else {
                const char *ct = http_response_header(resp, "Content-Type");
                char ex[161];

                body_excerpt(op->buf, op->buf_len, ex, sizeof(ex));
                err_info_set(e, r,
                             "S3 %s '%s': HTTP %ld with a body that is not an S3 error "
                             "document (Content-Type %s): %s",
                             op_method(op), what, resp->status, ct ?: "none", ex);
        }
        return r;
}

/* ---- object results -------------------------------------------------------- */

s3_object *s3_object_free(s3_object *o) {
        if (!o)
                return NULL;
        free(o->body);
        free(o->etag);
        free(o->last_modified);
        free(o->content_type);
        free(o);
        return NULL;
}

static int object_from_response(const http_response *resp, s3_object **ret) {
        _cleanup_(s3_object_freep) s3_object *o = NULL;
        const char *v;
        bool oom = false;

        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->etag = strdup_nullable(http_response_header(resp, "ETag"), &oom);
        o->last_modified = strdup_nullable(http_response_header(resp, "Last-Modified"), &oom);
        o->content_type = strdup_nullable(http_response_header(resp, "Content-Type"), &oom);
        if (oom)
                return -ENOMEM;
        v = http_response_header(resp, "Content-Length");
        if (v) {
                char *end;
                unsigned long long n;

                errno = 0;
                n = strtoull(v, &end, 10);
                if (errno == 0 && end != v)
                        o->size = n;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* ---- ops ----------------------------------------------------------------- */

static void op_free(s3_op *op) {
        if (!op)
                return;
        if (op->req)
                http_request_cancel(op->req);
        sd_event_source_disable_unref(op->timer);
        free(op->key);
        if (!op->body_borrowed)
                free(op->body);
        free(op->content_type);
        free(op->md5_b64);
        free(op->sha256_b64);
        free(op->if_none_match);
        free(op->prefix);
        free(op->token);
        free(op->buf);
        free(op);
}

static void op_unlink(s3_op *op) {
        s3_client *c = op->client;

        if (!c)
                return;
        if (op->prev)
                op->prev->next = op->next;
        else if (c->ops == op)
                c->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->prev = op->next = NULL;
        op->client = NULL;
}

/* Ends @op: calls done (unless cancelled) and frees it and @obj. */
static void op_finish(s3_op *op, int r, s3_object *obj, const err_info *err) {
        op_unlink(op);
        if (op->req) {
                http_request_cancel(op->req);
                op->req = NULL;
        }
        if (op->done && !op->cancelled) {
                op->in_callback++;
                op->done(op, r, r < 0 ? NULL : obj, r < 0 ? err : NULL, op->userdata);
                op->in_callback--;
        }
        s3_object_free(obj);
        op_free(op);
}

static void op_fail(s3_op *op, int r, const char *fmt, ...) _printf_(3, 4);
static void op_fail(s3_op *op, int r, const char *fmt, ...) {
        err_info e;
        va_list ap;

        err_info_clear(&e);
        va_start(ap, fmt);
        (void) vsnprintf(e.message, sizeof(e.message), fmt, ap);
        va_end(ap);
        op_finish(op, r, NULL, &e);
}

static int op_start_attempt(s3_op *op);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        s3_op *op = userdata;
        int r;

        r = op_start_attempt(op);
        if (r < 0)
                op_fail(op, r, "S3 %s: failed to start a retry: %s", op_method(op), strerror(-r));
        return 0;
}

/* Schedules the next attempt if the policy allows; returns false if not. */
static bool op_maybe_retry(s3_op *op, int r, long status, const char *code, long retry_after) {
        s3_client *c = op->client;
        uint64_t delay;

        if (op->attempt >= c->max_attempts || !s3_error_is_retryable(r, status, code))
                return false;
        delay = backoff_next(&op->backoff, loop_now(c->event));
        if (retry_after >= 0) {
                uint64_t ra = (uint64_t) retry_after > c->retry_after_max / USEC_PER_SEC
                                      ? c->retry_after_max
                                      : (uint64_t) retry_after * USEC_PER_SEC;

                delay = MAX(delay, ra);
        }
        if (loop_timer_arm(c->event, &op->timer, delay, on_retry_timer, op) < 0)
                return false;
        return true;
}

static void op_next_stage(s3_op *op) {
        int r;

        op->attempt = 0;
        backoff_reset(&op->backoff);
        /* From the event loop, like every attempt: a zero-delay timer. */
        r = loop_timer_arm(op->client->event, &op->timer, 0, on_retry_timer, op);
        if (r < 0)
                op_fail(op, r, "S3 %s: failed to arm a timer: %s", op_method(op), strerror(-r));
}

static void op_handle_list_page(s3_op *op) {
        s3_list_page page = {};
        int r;

        r = s3_xml_parse_list(op->buf, op->buf_len, &page);
        if (r < 0) {
                op_fail(op, r, "S3 ListObjectsV2 '%s': malformed response (%s)", op->prefix ?: "",
                        strerror(-r));
                return;
        }
        if (page.is_truncated && op->token && streq(op->token, page.next_token)) {
                s3_list_page_done(&page);
                op_fail(op, -EBADMSG, "S3 ListObjectsV2 '%s': server repeated continuation token",
                        op->prefix ?: "");
                return;
        }
        op->pages++;
        if (op->page) {
                op->in_callback++;
                r = op->page(op, &page, op->userdata);
                op->in_callback--;
        } else
                r = 0;
        if (op->cancelled) {
                s3_list_page_done(&page);
                op_finish(op, -ECANCELED, NULL, NULL);
                return;
        }
        if (r < 0) {
                s3_list_page_done(&page);
                op_fail(op, r, "S3 ListObjectsV2 '%s': aborted by the page callback",
                        op->prefix ?: "");
                return;
        }
        if (r > 0 || !page.is_truncated) {
                s3_list_page_done(&page);
                op_finish(op, 0, NULL, NULL);
                return;
        }
        if (op->pages >= S3_MAX_PAGES) {
                s3_list_page_done(&page);
                op_fail(op, -EBADMSG, "S3 ListObjectsV2 '%s': more than %u pages", op->prefix ?: "",
                        S3_MAX_PAGES);
                return;
        }
        free(op->token);
        op->token = TAKE_PTR(page.next_token);
        s3_list_page_done(&page);
        op_next_stage(op);
}

static void op_handle_success(s3_op *op, const http_response *resp) {
        s3_object *obj = NULL;
        int r;

        if (op->probing) {
                /* HEAD said the key exists: a create-only PUT must not write. */
                err_info e;

                err_info_clear(&e);
                e.http_status = resp->status;
                snprintf(e.reason, sizeof(e.reason), "PreconditionFailed");
                err_info_set(&e, -EEXIST, "S3 PUT '%s': key exists (HEAD before create-only PUT)",
                             op->key);
                op_finish(op, -EEXIST, NULL, &e);
                return;
        }

        switch (op->kind) {
        case OP_LIST:
                op_handle_list_page(op);
                return;
        case OP_DELETE:
                op_finish(op, 0, NULL, NULL);
                return;
        case OP_PUT:
        case OP_HEAD:
        case OP_GET:
                break;
        }

        r = object_from_response(resp, &obj);
        if (r < 0) {
                op_fail(op, r, "out of memory");
                return;
        }
        if (op->kind == OP_PUT)
                obj->size = op->body_len;
        else if (op->kind == OP_GET) {
                if (resp->status == 304) {
                        obj->not_modified = true;
                        if (!obj->etag && op->if_none_match) {
                                obj->etag = strdup(op->if_none_match);
                                if (!obj->etag) {
                                        s3_object_free(obj);
                                        op_fail(op, -ENOMEM, "out of memory");
                                        return;
                                }
                        }
                } else {
                        if (!op->buf) {
                                op->buf = strdup("");
                                if (!op->buf) {
                                        s3_object_free(obj);
                                        op_fail(op, -ENOMEM, "out of memory");
                                        return;
                                }
                        }
                        obj->body = TAKE_PTR(op->buf);
                        obj->body_len = op->buf_len;
                        obj->size = op->buf_len;
                        op->buf_len = 0;
                }
        }
        op_finish(op, 0, obj, NULL);
}

static void on_http_done(http_request *req, int r, const http_response *resp, const err_info *err,
                         void *userdata) {
        s3_op *op = userdata;
        s3_client *c = op->client;
        err_info e;
        long status;

        op->req = NULL;
        http_code_counts_inc(&c->codes, r >= 0 && resp ? resp->status : 0);
        if (r < 0) {
                if (op_maybe_retry(op, r, 0, NULL, -1))
                        return;
                err_info_clear(&e);
                if (err)
                        e = *err;
                /* Say which request failed: curl's message names no key. */
                err_info_set(&e, r, "S3 %s '%s': %s", op_method(op), op->key ?: op->prefix ?: "",
                             err ? err->message : strerror(-r));
                op_finish(op, r, NULL, &e);
                return;
        }

        status = resp->status;
        if ((status >= 200 && status < 300) || (status == 304 && op->kind == OP_GET)) {
                op_handle_success(op, resp);
                return;
        }

        r = op_error_from_response(op, resp, &e);
        if (r == 0) /* 304 to anything but GET, which we never ask for */
                r = err_info_set(&e, -EPROTO, "S3 %s: unexpected HTTP %ld", op_method(op), status);

        /* DELETE is idempotent: a missing key is what the caller wanted. */
        if (op->kind == OP_DELETE && r == -ENOENT && !code_is(e.reason, "NoSuchBucket")) {
                op_finish(op, 0, NULL, NULL);
                return;
        }
        if (op->probing && r == -ENOENT) {
                op->probing = false;
                op_next_stage(op);
                return;
        }
        if (op->kind == OP_PUT && op->conditional && r == -EOPNOTSUPP &&
            c->create_mode == S3_CREATE_AUTO) {
                c->conditional_unsupported = true;
                op->conditional = false;
                op->probing = true;
                op_next_stage(op);
                return;
        }
        if (op_maybe_retry(op, r, status, e.reason[0] ? e.reason : NULL, resp->retry_after_sec))
                return;
        op_finish(op, r, NULL, &e);
}

static int on_http_data(http_request *req, const void *data, size_t len, void *userdata) {
        s3_op *op = userdata;
        long status = http_request_get_status(req);
        bool ok = status >= 200 && status < 300;
        size_t cap = ok && op->kind == OP_GET ? op->client->max_object_size : S3_XML_MAX;
        char *b;

        if (!ok)
                cap = S3_ERROR_BODY_MAX;
        if (op->buf_len + len > cap || op->buf_len + len < op->buf_len) {
                if (ok)
                        return -EFBIG;
                /* Keep the head of an oversized error body; drop the rest. */
                op->buf_truncated = true;
                len = op->buf_len < cap ? cap - op->buf_len : 0;
                if (len == 0)
                        return 0;
        }
        b = realloc(op->buf, op->buf_len + len + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + op->buf_len, data, len);
        op->buf = b;
        op->buf_len += len;
        op->buf[op->buf_len] = '\0';
        return 0;
}

/* "continuation-token=..&list-type=2&max-keys=..&prefix=..": sorted by name,
 * values escaped as SigV4 requires; curl 7.88 signs the query as given. */
static int list_query(const s3_op *op, char **ret) {
        _cleanup_free_ char *tok = NULL, *pfx = NULL;
        int n;

        if (op->token) {
                tok = http_escape(op->token, false);
                if (!tok)
                        return -ENOMEM;
        }
        if (!isempty(op->prefix)) {
                pfx = http_escape(op->prefix, false);
                if (!pfx)
                        return -ENOMEM;
        }
        n = asprintf(ret, "%s%s%slist-type=2&max-keys=%u%s%s", tok ? "continuation-token=" : "",
                     tok ?: "", tok ? "&" : "", op->max_keys, pfx ? "&prefix=" : "", pfx ?: "");
        return n < 0 ? -ENOMEM : 0;
}

#define MAX_REQ_HEADERS 12

static int op_start_attempt(s3_op *op) {
        s3_client *c = op->client;
        _cleanup_free_ char *url = NULL, *query = NULL;
        char *hdr[MAX_REQ_HEADERS + 1] = {};
        size_t n = 0;
        bool is_put = op->kind == OP_PUT && !op->probing;
        http_request_opts o;
        int r;

        if (op->kind == OP_LIST) {
                r = list_query(op, &query);
                if (r < 0)
                        return r;
        }
        r = s3_client_url(c, op->key, query, &url);
        if (r < 0)
                return r;

#define ADD(...)                                                                                   \
        do {                                                                                       \
                if (asprintf(&hdr[n], __VA_ARGS__) < 0) {                                          \
                        hdr[n] = NULL;                                                             \
                        r = -ENOMEM;                                                               \
                        goto out;                                                                  \
                }                                                                                  \
                n++;                                                                               \
        } while (0)

        ADD("x-amz-content-sha256: %s", is_put ? op->sha256_hex : S3_EMPTY_SHA256);
        if (c->fixed_amz_date)
                ADD("X-Amz-Date: %s", c->fixed_amz_date);
        if (c->session_token)
                ADD("x-amz-security-token: %s", c->session_token);
        if (is_put) {
                ADD("Content-Type: %s", op->content_type ?: "application/octet-stream");
                if (op->md5_b64)
                        ADD("Content-MD5: %s", op->md5_b64);
                if (op->sha256_b64)
                        ADD("x-amz-checksum-sha256: %s", op->sha256_b64);
                if (op->conditional)
                        ADD("If-None-Match: *");
        }
        if (op->kind == OP_GET && op->if_none_match)
                ADD("If-None-Match: %s", op->if_none_match);
#undef ADD

        o = (http_request_opts){
                .method = op_method(op),
                .url = url,
                .headers = (const char *const *) hdr,
                .body = is_put && !op->body_fn ? (op->body ?: "") : NULL,
                .body_len = is_put ? op->body_len : 0,
                /* The op keeps its body until the request ends: no copy. */
                .body_borrowed = is_put && !op->body_fn,
                .body_fn = is_put ? op->body_fn : NULL,
                .body_userdata = is_put ? op->body_userdata : NULL,
                .tls = c->tls,
                .aws_sigv4 = c->sigv4,
                .userpwd = c->userpwd,
                .timeout_usec = c->timeout,
                .on_data = on_http_data,
        };

        free(op->buf);
        op->buf = NULL;
        op->buf_len = 0;
        op->buf_truncated = false;
        r = http_request_start(c->http, &o, on_http_done, op, &op->req);
        if (r >= 0)
                op->attempt++;
out:
        for (size_t i = 0; i < n; i++)
                free(hdr[i]);
        return r;
}

static int op_new(s3_client *c, op_kind kind, const char *key, s3_done_fn done, void *userdata,
                  s3_op **ret) {
        s3_op *op;

        if (!c || !done)
                return -EINVAL;
        if (kind != OP_LIST && !s3_key_is_valid(key))
                return -EINVAL;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->kind = kind;
        op->done = done;
        op->userdata = userdata;
        op->backoff = BACKOFF_INIT(c->retry_base, c->retry_cap, 0);
        if (key) {
                op->key = strdup(key);
                if (!op->key) {
                        free(op);
                        return -ENOMEM;
                }
        }
        op->client = c;
        *ret = op;
        return 0;
}

/* Links @op into the client and starts its first attempt. Frees it on
 * failure. */
static int op_launch(s3_op *op, s3_op **ret) {
        s3_client *c = op->client;
        int r;

        r = op_start_attempt(op);
        if (r < 0) {
                op->client = NULL;
                op_free(op);
                return r;
        }
        op->next = c->ops;
        if (c->ops)
                c->ops->prev = op;
        c->ops = op;
        if (ret)
                *ret = op;
        return 0;
}

int s3_put_object(s3_client *c, const char *key, const void *data, size_t len, const s3_put_opts *o,
                  s3_done_fn done, void *userdata, s3_op **ret) {
        unsigned char sha[32], md5[16];
        bool want_md5, have_md5 = false;
        s3_op *op;
        int r;

        if (!c)
                return -EINVAL;
        want_md5 = c->checksums & S3_CHECKSUM_MD5;

        if (o && o->body_fn ? data != NULL : !data && len > 0)
                return -EINVAL;
        if (o && o->content_type && has_ctl(o->content_type))
                return -EINVAL;
        r = op_new(c, OP_PUT, key, done, userdata, &op);
        if (r < 0)
                return r;

        r = -ENOMEM;
        if (o && o->body_fn) {
                op->body_fn = o->body_fn;
                op->body_userdata = o->body_userdata;
        } else if (o && o->borrow && len > 0) {
                op->body = (void *) data;
                op->body_borrowed = true;
        } else {
                op->body = malloc(len ?: 1);
                if (!op->body)
                        goto fail;
                if (len > 0)
                        memcpy(op->body, data, len);
        }
        op->body_len = len;
        if (o && o->content_type) {
                op->content_type = strdup(o->content_type);
                if (!op->content_type)
                        goto fail;
        }
        /* MD5 may be unavailable (FIPS mode): then send no Content-MD5. */
        if (op->body_fn && o->sha256 && (!want_md5 || o->md5)) {
                memcpy(sha, o->sha256, sizeof(sha));
                if (want_md5)
                        memcpy(md5, o->md5, sizeof(md5));
                have_md5 = want_md5;
                r = 0;
        } else if (op->body_fn) {
                r = hash_read(op->body_fn, op->body_userdata, len, sha, want_md5 ? md5 : NULL);
                have_md5 = want_md5 && r >= 0;
                if (r == -EOPNOTSUPP && want_md5)
                        r = hash_read(op->body_fn, op->body_userdata, len, sha, NULL);
        } else {
                unsigned dl = 0;

                r = hash_sha256(op->body, len, sha);
                have_md5 = want_md5 && EVP_Digest(op->body, len, md5, &dl, EVP_md5(), NULL) == 1 &&
                           dl == sizeof(md5);
        }
        if (r < 0)
                goto fail;
        hash_sha256_to_hex(sha, op->sha256_hex);
        r = -ENOMEM;
        if (c->checksums & S3_CHECKSUM_SHA256) {
                op->sha256_b64 = base64(sha, sizeof(sha));
                if (!op->sha256_b64)
                        goto fail;
        }
        if (have_md5) {
                op->md5_b64 = base64(md5, sizeof(md5));
                if (!op->md5_b64)
                        goto fail;
        }
        if (o && o->create_only) {
                op->create_only = true;
                if (c->create_mode == S3_CREATE_HEAD_THEN_PUT ||
                    (c->create_mode == S3_CREATE_AUTO && c->conditional_unsupported))
                        op->probing = true;
                else
                        op->conditional = true;
        }
        return op_launch(op, ret);

fail:
        op->client = NULL;
        op_free(op);
        return r;
}

int s3_get_object(s3_client *c, const char *key, const char *if_none_match, s3_done_fn done,
                  void *userdata, s3_op **ret) {
        s3_op *op;
        int r;

        if (if_none_match && (!*if_none_match || has_ctl(if_none_match)))
                return -EINVAL;
        r = op_new(c, OP_GET, key, done, userdata, &op);
        if (r < 0)
                return r;
        if (if_none_match) {
                op->if_none_match = strdup(if_none_match);
                if (!op->if_none_match) {
                        op->client = NULL;
                        op_free(op);
                        return -ENOMEM;
                }
        }
        return op_launch(op, ret);
}

int s3_head_object(s3_client *c, const char *key, s3_done_fn done, void *userdata, s3_op **ret) {
        s3_op *op;
        int r;

        r = op_new(c, OP_HEAD, key, done, userdata, &op);
        if (r < 0)
                return r;
        return op_launch(op, ret);
}

int s3_delete_object(s3_client *c, const char *key, s3_done_fn done, void *userdata, s3_op **ret) {
        s3_op *op;
        int r;

        r = op_new(c, OP_DELETE, key, done, userdata, &op);
        if (r < 0)
                return r;
        return op_launch(op, ret);
}

int s3_list_objects(s3_client *c, const char *prefix, unsigned max_keys, const char *start_token,
                    s3_page_fn page, s3_done_fn done, void *userdata, s3_op **ret) {
        s3_op *op;
        int r;

        if (prefix && (strlen(prefix) > S3_KEY_MAX || has_ctl(prefix)))
                return -EINVAL;
        if (start_token && (!*start_token || has_ctl(start_token)))
                return -EINVAL;
        r = op_new(c, OP_LIST, NULL, done, userdata, &op);
        if (r < 0)
                return r;
        op->page = page;
        op->max_keys = max_keys == 0 || max_keys > S3_LIST_MAX_KEYS ? S3_LIST_MAX_KEYS : max_keys;
        if (prefix) {
                op->prefix = strdup(prefix);
                if (!op->prefix)
                        goto oom;
        }
        if (start_token) {
                op->token = strdup(start_token);
                if (!op->token)
                        goto oom;
        }
        return op_launch(op, ret);
oom:
        op->client = NULL;
        op_free(op);
        return -ENOMEM;
}

void s3_op_cancel(s3_op *op) {
        if (!op)
                return;
        if (op->in_callback > 0) {
                /* From its own callback: the code that called it frees it. */
                op->cancelled = true;
                return;
        }
        op_unlink(op);
        op_free(op);
}

/* ---- client ---------------------------------------------------------------- */

static const char *env_nonempty(const char *name) {
        const char *v = getenv(name);

        return isempty(v) ? NULL : v;
}

int s3_client_new(sd_event *e, http_client *http, const s3_config *cfg, s3_client **ret,
                  err_info *ret_err) {
        _cleanup_(s3_client_freep) s3_client *c = NULL;
        const char *region, *ak, *sk, *tok;
        bool oom = false;
        int r;

        if (!e || !cfg || !ret)
                return -EINVAL;
        if (isempty(cfg->bucket))
                return err_info_set(ret_err, -EINVAL, "S3 bucket is not set");
        if (!s3_bucket_is_valid(cfg->bucket))
                return err_info_set(ret_err, -EINVAL,
                                    "S3 bucket name '%s' is invalid (3-63 characters of a-z, 0-9, "
                                    "'.', '-', starting and ending with a letter or digit)",
                                    cfg->bucket);
        region = cfg->region ?: env_nonempty("AWS_REGION") ?: env_nonempty("AWS_DEFAULT_REGION")
                                                                       ?: "us-east-1";
        if (has_ctl(region) || strpbrk(region, ": /") || !*region)
                return err_info_set(ret_err, -EINVAL, "S3 region '%s' is invalid", region);
        if (cfg->max_attempts > S3_MAX_ATTEMPTS)
                return err_info_set(ret_err, -EINVAL, "S3 max attempts %u is over %u",
                                    cfg->max_attempts, S3_MAX_ATTEMPTS);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);

        if (cfg->endpoint) {
                r = endpoint_parse(cfg->endpoint, &c->scheme, &c->host, &c->base_path, ret_err);
                if (r < 0)
                        return r;
        } else {
                c->scheme = strdup("https");
                c->base_path = strdup("");
                if (asprintf(&c->host, "s3.%s.amazonaws.com", region) < 0)
                        c->host = NULL;
                if (!c->scheme || !c->base_path || !c->host)
                        return -ENOMEM;
        }
        switch (cfg->addressing) {
        case S3_ADDRESSING_PATH:
                c->virtual_host = false;
                break;
        case S3_ADDRESSING_VIRTUAL:
                if (strchr(cfg->bucket, '.') && streq(c->scheme, "https"))
                        return err_info_set(ret_err, -EINVAL,
                                            "S3 bucket '%s' contains '.': virtual-host addressing "
                                            "over TLS cannot work, use path-style",
                                            cfg->bucket);
                c->virtual_host = true;
                break;
        case S3_ADDRESSING_AUTO:
        default:
                c->virtual_host = !cfg->endpoint && !strchr(cfg->bucket, '.');
                break;
        }

        c->bucket = strdup_nullable(cfg->bucket, &oom);
        c->region = strdup_nullable(region, &oom);
        c->fixed_amz_date = strdup_nullable(cfg->fixed_amz_date, &oom);
        if (oom)
                return -ENOMEM;
        if (c->fixed_amz_date && has_ctl(c->fixed_amz_date))
                return err_info_set(ret_err, -EINVAL, "bad fixed X-Amz-Date");

        if (!cfg->anonymous) {
                ak = cfg->access_key ?: env_nonempty("AWS_ACCESS_KEY_ID");
                sk = cfg->secret_key ?: env_nonempty("AWS_SECRET_ACCESS_KEY");
                tok = cfg->session_token ?: env_nonempty("AWS_SESSION_TOKEN");
                if (isempty(ak) || isempty(sk))
                        return err_info_set(ret_err, -EINVAL,
                                            "S3 credentials missing: set an access key and a "
                                            "secret key (or AWS_ACCESS_KEY_ID and "
                                            "AWS_SECRET_ACCESS_KEY)");
                if (strchr(ak, ':') || has_ctl(ak) || has_ctl(sk) || (tok && has_ctl(tok)))
                        return err_info_set(ret_err, -EINVAL,
                                            "S3 credentials contain invalid characters");
                if (asprintf(&c->userpwd, "%s:%s", ak, sk) < 0) {
                        c->userpwd = NULL;
                        return -ENOMEM;
                }
                if (asprintf(&c->sigv4, "aws:amz:%s:s3", region) < 0) {
                        c->sigv4 = NULL;
                        return -ENOMEM;
                }
                if (!isempty(tok)) {
                        c->session_token = strdup(tok);
                        if (!c->session_token)
                                return -ENOMEM;
                }
        }

        c->create_mode = cfg->create_mode;
        c->checksums = cfg->checksums ?: S3_CHECKSUM_MD5;
        c->max_attempts = cfg->max_attempts ?: S3_DEFAULT_ATTEMPTS;
        c->retry_base = cfg->retry_base_usec ?: S3_DEFAULT_RETRY_BASE;
        c->retry_cap = MAX(cfg->retry_cap_usec ?: S3_DEFAULT_RETRY_CAP, c->retry_base);
        c->retry_after_max = cfg->retry_after_max_usec ?: S3_DEFAULT_RETRY_AFTER_MAX;
        c->timeout = cfg->timeout_usec ?: S3_DEFAULT_TIMEOUT;
        c->max_object_size = cfg->max_object_size ?: S3_DEFAULT_MAX_OBJECT;
        c->tls = cfg->tls;

        if (http)
                c->http = http;
        else {
                r = http_client_new(e, &c->http);
                if (r < 0)
                        return err_info_set(ret_err, r, "failed to create HTTP client: %s",
                                            strerror(-r));
                c->own_http = true;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

s3_client *s3_client_free(s3_client *c) {
        if (!c)
                return NULL;
        while (c->ops) {
                s3_op *op = c->ops;

                op_unlink(op);
                op_free(op);
        }
        if (c->own_http)
                http_client_free(c->http);
        sd_event_unref(c->event);
        free(c->scheme);
        free(c->host);
        free(c->base_path);
        free(c->bucket);
        free(c->region);
        free(c->sigv4);
        if (c->userpwd)
                explicit_bzero(c->userpwd, strlen(c->userpwd));
        free(c->userpwd);
        free(c->session_token);
        free(c->fixed_amz_date);
        free(c);
        return NULL;
}

void s3_client_get_http_codes(const s3_client *c, http_code_counts *ret) {
        *ret = c->codes;
}

sd_event *s3_client_get_event(s3_client *c) {
        return c ? c->event : NULL;
}

/* ---- synchronous wrappers --------------------------------------------------- */

typedef struct sync_state {
        bool done;
        int r;
        s3_object *obj;
        err_info err;
        s3_list_entry *entries;
        size_t n, cap;
} sync_state;

static void on_sync_done(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata) {
        sync_state *st = userdata;
        s3_object *copy;

        st->done = true;
        st->r = r;
        if (r < 0) {
                if (err)
                        st->err = *err;
                return;
        }
        if (!obj)
                return;
        copy = malloc(sizeof(*copy));
        if (!copy) {
                st->r = -ENOMEM;
                return;
        }
        *copy = *obj;
        *obj = (s3_object){};
        st->obj = copy;
}

static int on_sync_page(s3_op *op, s3_list_page *page, void *userdata) {
        sync_state *st = userdata;

        if (st->n + page->n_entries > st->cap) {
                size_t cap = MAX(st->cap * 2, st->n + page->n_entries);
                s3_list_entry *a = realloc(st->entries, cap * sizeof(*a));

                if (!a)
                        return -ENOMEM;
                st->entries = a;
                st->cap = cap;
        }
        memcpy(st->entries + st->n, page->entries, page->n_entries * sizeof(*page->entries));
        st->n += page->n_entries;
        /* The strings moved to st: leave an empty page to be freed. */
        page->n_entries = 0;
        return 0;
}

static int sync_wait(s3_client *c, sync_state *st, s3_object **ret, err_info *ret_err) {
        int r;

        r = loop_run_until(c->event, &st->done, 0);
        if (r < 0)
                return err_info_set(ret_err, r, "event loop failed: %s", strerror(-r));
        if (st->r < 0) {
                if (ret_err)
                        *ret_err = st->err;
                s3_object_free(st->obj);
                return st->r;
        }
        if (ret)
                *ret = st->obj;
        else
                s3_object_free(st->obj);
        return 0;
}

static void sync_init(sync_state *st) {
        *st = (sync_state){};
        err_info_clear(&st->err);
}

int s3_put_object_sync(s3_client *c, const char *key, const void *data, size_t len,
                       const s3_put_opts *o, s3_object **ret, err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = s3_put_object(c, key, data, len, o, on_sync_done, &st, NULL);
        if (r < 0)
                return err_info_set(ret_err, r, "S3 PUT '%s': %s", strna(key), strerror(-r));
        return sync_wait(c, &st, ret, ret_err);
}

int s3_get_object_sync(s3_client *c, const char *key, const char *if_none_match, s3_object **ret,
                       err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = s3_get_object(c, key, if_none_match, on_sync_done, &st, NULL);
        if (r < 0)
                return err_info_set(ret_err, r, "S3 GET '%s': %s", strna(key), strerror(-r));
        return sync_wait(c, &st, ret, ret_err);
}

int s3_head_object_sync(s3_client *c, const char *key, s3_object **ret, err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = s3_head_object(c, key, on_sync_done, &st, NULL);
        if (r < 0)
                return err_info_set(ret_err, r, "S3 HEAD '%s': %s", strna(key), strerror(-r));
        return sync_wait(c, &st, ret, ret_err);
}

int s3_delete_object_sync(s3_client *c, const char *key, err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = s3_delete_object(c, key, on_sync_done, &st, NULL);
        if (r < 0)
                return err_info_set(ret_err, r, "S3 DELETE '%s': %s", strna(key), strerror(-r));
        return sync_wait(c, &st, NULL, ret_err);
}

int s3_list_objects_sync(s3_client *c, const char *prefix, unsigned max_keys,
                         s3_list_entry **ret_entries, size_t *ret_n, err_info *ret_err) {
        sync_state st;
        int r;

        sync_init(&st);
        r = s3_list_objects(c, prefix, max_keys, NULL, on_sync_page, on_sync_done, &st, NULL);
        if (r < 0)
                return err_info_set(ret_err, r, "S3 ListObjectsV2 '%s': %s", strna(prefix),
                                    strerror(-r));
        r = sync_wait(c, &st, NULL, ret_err);
        if (r < 0) {
                s3_list_entries_free(st.entries, st.n);
                return r;
        }
        if (ret_entries)
                *ret_entries = st.entries;
        else
                s3_list_entries_free(st.entries, st.n);
        if (ret_n)
                *ret_n = st.n;
        return 0;
}
