/* SPDX-License-Identifier: Apache-2.0 */

/*
 * s3.c through the fake transport (http_client_new_fake()): names and URLs,
 * the error table, the retry policy (5xx, SlowDown, Retry-After, bounded
 * attempts, no 4xx retries), conditional GET, create-only PUT and its
 * fallbacks, DELETE idempotence, ListObjectsV2 pagination, size limits and
 * cancellation. Signing is covered by test-sigv4.c, a real server by
 * tests/integration/test-s3.c.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http.h"
#include "loop.h"
#include "objstore.h"
#include "s3.h"

/* ---- a scripted fake S3 ----------------------------------------------------- */

typedef struct reply {
        long status; /* 0: transport failure @error */
        int error;
        const char *headers[6];
        const char *body;
} reply;

typedef struct seen {
        char *method;
        char *url;
        char *headers[24];
        uint64_t at;
} seen;

typedef struct fake {
        sd_event *e;
        const reply *script;
        size_t n_script, next;
        seen seen[32];
        size_t n_seen;
} fake;

static void on_fake(http_request *req, const http_request_opts *o, void *userdata) {
        fake *f = userdata;
        seen *s;
        const reply *rp;

        assert_true(f->n_seen < ELEMENTSOF(f->seen));
        s = &f->seen[f->n_seen++];
        s->method = strdup(o->method ?: "GET");
        s->url = strdup(o->url);
        s->at = loop_now(f->e);
        for (size_t i = 0; o->headers && o->headers[i] && i + 1 < ELEMENTSOF(s->headers); i++)
                s->headers[i] = strdup(o->headers[i]);

        if (f->next >= f->n_script)
                fail_msg("unexpected request %s %s", s->method, s->url);
        rp = &f->script[f->next++];
        if (rp->status == 0) {
                http_fake_finish(req, rp->error);
                return;
        }
        assert_int_equal(http_fake_respond(req, rp->status, rp->headers), 0);
        if (rp->body && *rp->body && http_fake_send(req, rp->body, strlen(rp->body)) < 0)
                return; /* aborted by on_data: already finished */
        http_fake_finish(req, 0);
}

static const char *seen_header(const seen *s, const char *name) {
        size_t n = strlen(name);

        for (size_t i = 0; s->headers[i]; i++)
                if (strncasecmp(s->headers[i], name, n) == 0 && s->headers[i][n] == ':')
                        return s->headers[i] + n + 2;
        return NULL;
}

typedef struct env {
        sd_event *e;
        http_client *http;
        s3_client *s3;
        fake fake;
} env;

static void env_open(env *v, const reply *script, size_t n, const s3_config *extra) {
        s3_config cfg = extra ? *extra : (s3_config){};
        err_info err;

        memset(v, 0, sizeof(*v));
        assert_int_equal(sd_event_new(&v->e), 0);
        v->fake.e = v->e;
        v->fake.script = script;
        v->fake.n_script = n;
        assert_int_equal(http_client_new_fake(v->e, on_fake, &v->fake, &v->http), 0);
        cfg.endpoint = cfg.endpoint ?: "http://127.0.0.1:9000";
        cfg.bucket = cfg.bucket ?: "bucket";
        cfg.access_key = cfg.access_key ?: "AKID";
        cfg.secret_key = cfg.secret_key ?: "SECRET";
        cfg.retry_base_usec = cfg.retry_base_usec ?: 1000;
        cfg.retry_cap_usec = cfg.retry_cap_usec ?: 5000;
        if (s3_client_new(v->e, v->http, &cfg, &v->s3, &err) < 0)
                fail_msg("s3_client_new: %s", err.message);
}

static void env_close(env *v) {
        s3_client_free(v->s3);
        http_client_free(v->http);
        sd_event_unref(v->e);
        for (size_t i = 0; i < v->fake.n_seen; i++) {
                free(v->fake.seen[i].method);
                free(v->fake.seen[i].url);
                for (size_t j = 0; v->fake.seen[i].headers[j]; j++)
                        free(v->fake.seen[i].headers[j]);
        }
}

#define ENV_OPEN(v, script, cfg) env_open(v, script, ELEMENTSOF(script), cfg)

/* ---- names and URLs ------------------------------------------------------------ */

static void test_escape_key(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                {"a/b/c.json", "a/b/c.json"},
                {"A-Z_a.z~0", "A-Z_a.z~0"},
                {"a b", "a%20b"},
                {"a+b=c&d", "a%2Bb%3Dc%26d"},
                {"x:y@z!$'()*,;", "x%3Ay%40z%21%24%27%28%29%2A%2C%3B"},
                {"100%", "100%25"},
                {"é", "%C3%A9"},
                {"a//b/", "a//b/"},
                {"?#[]", "%3F%23%5B%5D"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *e = s3_escape_key(cases[i].in);

                assert_non_null(e);
                assert_string_equal(e, cases[i].out);
        }
        assert_null(s3_escape_key(NULL));
}

static void test_key_and_bucket_rules(void **state) {
        char long_key[S3_KEY_MAX + 2];

        assert_true(s3_key_is_valid("a"));
        assert_true(s3_key_is_valid("dir/sub/file.json"));
        assert_true(s3_key_is_valid("a..b/.c/..d"));
        assert_true(s3_key_is_valid("spaces and ünïcode"));
        assert_false(s3_key_is_valid(NULL));
        assert_false(s3_key_is_valid(""));
        assert_false(s3_key_is_valid("."));
        assert_false(s3_key_is_valid("a/../b"));
        assert_false(s3_key_is_valid("a/./b"));
        assert_false(s3_key_is_valid("a/.."));
        assert_false(s3_key_is_valid("a\nb"));
        assert_false(s3_key_is_valid("a\x7f"));
        memset(long_key, 'k', sizeof(long_key) - 1);
        long_key[sizeof(long_key) - 1] = '\0';
        assert_false(s3_key_is_valid(long_key));
        long_key[S3_KEY_MAX] = '\0';
        assert_true(s3_key_is_valid(long_key));

        assert_true(s3_bucket_is_valid("ballast"));
        assert_true(s3_bucket_is_valid("my.bucket-1"));
        assert_false(s3_bucket_is_valid("ab"));
        assert_false(s3_bucket_is_valid("Upper"));
        assert_false(s3_bucket_is_valid("-lead"));
        assert_false(s3_bucket_is_valid("trail-"));
        assert_false(s3_bucket_is_valid("a..b"));
        assert_false(s3_bucket_is_valid("192.168.1.1"));
        assert_false(s3_bucket_is_valid("under_score"));
        assert_false(s3_bucket_is_valid(NULL));
}

static void check_url(const s3_config *cfg, const char *key, const char *query, const char *want) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(s3_client_freep) s3_client *c = NULL;
        _cleanup_free_ char *url = NULL;
        err_info err;

        assert_int_equal(sd_event_new(&e), 0);
        if (s3_client_new(e, NULL, cfg, &c, &err) < 0)
                fail_msg("s3_client_new: %s", err.message);
        assert_int_equal(s3_client_url(c, key, query, &url), 0);
        assert_string_equal(url, want);
}

static void test_urls(void **state) {
        s3_config cfg = {.bucket = "bkt", .access_key = "a", .secret_key = "s"};

        /* AWS: virtual-host by default, regional endpoint. */
        cfg.region = "eu-west-1";
        check_url(&cfg, "a b/c", NULL, "https://bkt.s3.eu-west-1.amazonaws.com/a%20b/c");
        check_url(&cfg, NULL, "list-type=2", "https://bkt.s3.eu-west-1.amazonaws.com/?list-type=2");
        /* A bucket with dots can't be a TLS host name: path-style. */
        cfg.bucket = "my.bkt";
        check_url(&cfg, "k", NULL, "https://s3.eu-west-1.amazonaws.com/my.bkt/k");
        /* Custom endpoints: path-style by default, base path kept. */
        cfg.bucket = "bkt";
        cfg.endpoint = "http://127.0.0.1:7070/";
        check_url(&cfg, "k", NULL, "http://127.0.0.1:7070/bkt/k");
        check_url(&cfg, NULL, "x=1", "http://127.0.0.1:7070/bkt?x=1");
        cfg.endpoint = "https://minio.example:9000/s3";
        check_url(&cfg, "k", NULL, "https://minio.example:9000/s3/bkt/k");
        /* Virtual-host on request. */
        cfg.endpoint = "https://r2.example.com";
        cfg.addressing = S3_ADDRESSING_VIRTUAL;
        check_url(&cfg, "k/l", NULL, "https://bkt.r2.example.com/k/l");
}

static void test_client_rejects_bad_config(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        s3_client *c = NULL;
        static const struct {
                s3_config cfg;
                const char *needle;
        } cases[] = {
                {{.access_key = "a", .secret_key = "s"}, "bucket is not set"},
                {{.bucket = "Bad_Bucket", .access_key = "a", .secret_key = "s"},
                 "bucket name 'Bad_Bucket' is invalid"},
                {{.bucket = "b12", .endpoint = "ftp://x", .access_key = "a", .secret_key = "s"},
                 "must start with http:// or https://"},
                {{.bucket = "b12", .endpoint = "http://", .access_key = "a", .secret_key = "s"},
                 "has no host"},
                {{.bucket = "b12",
                  .endpoint = "http://user:pw@host",
                  .access_key = "a",
                  .secret_key = "s"},
                 "without credentials"},
                {{.bucket = "b12", .region = "us east", .access_key = "a", .secret_key = "s"},
                 "region"},
                {{.bucket = "b12", .access_key = "a:b", .secret_key = "s"}, "invalid characters"},
                {{.bucket = "my.b12",
                  .addressing = S3_ADDRESSING_VIRTUAL,
                  .access_key = "a",
                  .secret_key = "s"},
                 "path-style"},
                {{.bucket = "b12", .max_attempts = 1000, .access_key = "a", .secret_key = "s"},
                 "max attempts"},
        };

        assert_int_equal(sd_event_new(&e), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                err_info err;

                err_info_clear(&err);
                assert_int_equal(s3_client_new(e, NULL, &cases[i].cfg, &c, &err), -EINVAL);
                assert_null(c);
                if (!strstr(err.message, cases[i].needle))
                        fail_msg("case %zu: message '%s' lacks '%s'", i, err.message,
                                 cases[i].needle);
        }
}

static void test_credentials_from_env(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        s3_client *c = NULL;
        err_info err;

        assert_int_equal(sd_event_new(&e), 0);
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        err_info_clear(&err);
        assert_int_equal(s3_client_new(e, NULL, &(s3_config){.bucket = "b12"}, &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "credentials missing"));

        setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
        assert_int_equal(s3_client_new(e, NULL, &(s3_config){.bucket = "b12"}, &c, &err), 0);
        c = s3_client_free(c);
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");

        /* Anonymous needs none. */
        assert_int_equal(
                s3_client_new(e, NULL, &(s3_config){.bucket = "b12", .anonymous = true}, &c, &err),
                0);
        s3_client_free(c);
}

/* ---- the error table ---------------------------------------------------------------- */

static void test_error_table(void **state) {
        assert_int_equal(s3_error_to_errno(200, NULL, false), 0);
        assert_int_equal(s3_error_to_errno(304, NULL, false), 0);
        assert_int_equal(s3_error_to_errno(404, "NoSuchKey", false), -ENOENT);
        assert_int_equal(s3_error_to_errno(404, "NoSuchBucket", false), -ENOENT);
        assert_int_equal(s3_error_to_errno(404, NULL, false), -ENOENT);
        assert_int_equal(s3_error_to_errno(403, "AccessDenied", false), -EACCES);
        assert_int_equal(s3_error_to_errno(403, "SignatureDoesNotMatch", false), -EACCES);
        assert_int_equal(s3_error_to_errno(403, "InvalidAccessKeyId", false), -EACCES);
        assert_int_equal(s3_error_to_errno(401, NULL, false), -EACCES);
        assert_int_equal(s3_error_to_errno(503, "SlowDown", false), -EAGAIN);
        assert_int_equal(s3_error_to_errno(400, "SlowDown", false), -EAGAIN);
        assert_int_equal(s3_error_to_errno(503, NULL, false), -EAGAIN);
        assert_int_equal(s3_error_to_errno(500, "InternalError", false), -EAGAIN);
        assert_int_equal(s3_error_to_errno(429, NULL, false), -EAGAIN);
        assert_int_equal(s3_error_to_errno(412, "PreconditionFailed", true), -EEXIST);
        assert_int_equal(s3_error_to_errno(412, "PreconditionFailed", false), -ESTALE);
        assert_int_equal(s3_error_to_errno(412, NULL, true), -EEXIST);
        assert_int_equal(s3_error_to_errno(501, "NotImplemented", true), -EOPNOTSUPP);
        assert_int_equal(s3_error_to_errno(501, NULL, false), -EOPNOTSUPP);
        assert_int_equal(s3_error_to_errno(400, "EntityTooLarge", false), -EFBIG);
        assert_int_equal(s3_error_to_errno(400, "BadDigest", false), -EBADMSG);
        assert_int_equal(s3_error_to_errno(400, "InvalidArgument", false), -EINVAL);
        assert_int_equal(s3_error_to_errno(405, "MethodNotAllowed", false), -EPROTO);

        assert_true(s3_error_is_retryable(-EAGAIN, 503, NULL));
        assert_true(s3_error_is_retryable(-EAGAIN, 500, "InternalError"));
        assert_true(s3_error_is_retryable(-EAGAIN, 503, "SlowDown"));
        assert_true(s3_error_is_retryable(-EAGAIN, 400, "SlowDown"));
        assert_true(s3_error_is_retryable(-EAGAIN, 429, NULL));
        assert_true(s3_error_is_retryable(-ECONNREFUSED, 0, NULL));
        assert_true(s3_error_is_retryable(-ETIMEDOUT, 0, NULL));
        assert_false(s3_error_is_retryable(-EOPNOTSUPP, 501, "NotImplemented"));
        assert_false(s3_error_is_retryable(-EACCES, 403, "AccessDenied"));
        assert_false(s3_error_is_retryable(-ENOENT, 404, "NoSuchKey"));
        assert_false(s3_error_is_retryable(-EINVAL, 400, "InvalidArgument"));
        assert_false(s3_error_is_retryable(-EFBIG, 0, NULL));
        assert_false(s3_error_is_retryable(-EKEYREJECTED, 0, NULL));
}

/* ---- operations --------------------------------------------------------------- */

#define XML_ERR(code, msg)                                                                         \
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" code "</Code><Message>" msg      \
        "</Message><RequestId>RID1</RequestId></Error>"

static void test_get_and_not_modified(void **state) {
        static const reply script[] = {
                {200,
                 0,
                 {"ETag: \"e1\"", "Last-Modified: Wed, 12 Oct 2009 17:50:00 GMT",
                  "Content-Type: application/json", NULL},
                 "{\"a\":1}"},
                {304, 0, {"ETag: \"e1\"", NULL}, NULL},
        };
        _cleanup_(s3_object_freep) s3_object *o = NULL, *o2 = NULL;
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object_sync(v.s3, "dir/x.json", NULL, &o, &err), 0);
        assert_string_equal(o->body, "{\"a\":1}");
        assert_int_equal(o->body_len, 7);
        assert_string_equal(o->etag, "\"e1\"");
        assert_string_equal(o->last_modified, "Wed, 12 Oct 2009 17:50:00 GMT");
        assert_string_equal(o->content_type, "application/json");
        assert_false(o->not_modified);
        assert_string_equal(v.fake.seen[0].method, "GET");
        assert_string_equal(v.fake.seen[0].url, "http://127.0.0.1:9000/bucket/dir/x.json");
        assert_string_equal(seen_header(&v.fake.seen[0], "x-amz-content-sha256"),
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_null(seen_header(&v.fake.seen[0], "If-None-Match"));

        assert_int_equal(s3_get_object_sync(v.s3, "dir/x.json", "\"e1\"", &o2, &err), 0);
        assert_true(o2->not_modified);
        assert_null(o2->body);
        assert_string_equal(o2->etag, "\"e1\"");
        assert_string_equal(seen_header(&v.fake.seen[1], "If-None-Match"), "\"e1\"");
        env_close(&v);
}

static void test_head(void **state) {
        static const reply script[] = {
                {200, 0, {"ETag: \"e2\"", "Content-Length: 12345", NULL}, NULL},
                {404, 0, {NULL}, NULL},
                {403, 0, {NULL}, NULL},
        };
        _cleanup_(s3_object_freep) s3_object *o = NULL;
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_head_object_sync(v.s3, "k", &o, &err), 0);
        assert_int_equal(o->size, 12345);
        assert_string_equal(o->etag, "\"e2\"");
        assert_string_equal(v.fake.seen[0].method, "HEAD");

        err_info_clear(&err);
        assert_int_equal(s3_head_object_sync(v.s3, "missing", NULL, &err), -ENOENT);
        assert_int_equal(err.http_status, 404);
        assert_string_equal(err.reason, "NotFound");
        assert_non_null(strstr(err.message, "HTTP 404"));

        assert_int_equal(s3_head_object_sync(v.s3, "secret", NULL, &err), -EACCES);
        assert_int_equal(v.fake.n_seen, 3); /* 403: no retry */
        env_close(&v);
}

static void test_error_document(void **state) {
        static const reply script[] = {
                {404,
                 0,
                 {"Content-Type: application/xml", NULL},
                 XML_ERR("NoSuchKey", "The specified key does not exist.")},
                {403,
                 0,
                 {NULL},
                 XML_ERR("SignatureDoesNotMatch", "The request signature we calculated does not "
                                                  "match the signature you provided.")},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(v.s3, "nope", NULL, NULL, &err), -ENOENT);
        assert_int_equal(err.http_status, 404);
        assert_string_equal(err.reason, "NoSuchKey");
        assert_non_null(strstr(err.message, "NoSuchKey: The specified key does not exist."));
        assert_non_null(strstr(err.message, "request id RID1"));
        assert_non_null(strstr(err.message, "'nope'"));

        assert_int_equal(s3_put_object_sync(v.s3, "k", "x", 1, NULL, NULL, &err), -EACCES);
        assert_string_equal(err.reason, "SignatureDoesNotMatch");
        assert_non_null(strstr(err.message, "SignatureDoesNotMatch"));
        assert_int_equal(v.fake.n_seen, 2);
        env_close(&v);
}

static void test_non_xml_errors(void **state) {
        static const reply script[] = {
                {502,
                 0,
                 {"Content-Type: text/html", NULL},
                 "<html><head><title>502 Bad Gateway</title></head></html>"},
                {500, 0, {NULL}, NULL},
                {418, 0, {"Content-Type: text/plain", NULL}, "I'm a teapot\n\x01\x02"},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.max_attempts = 1}));
        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EAGAIN);
        assert_int_equal(err.http_status, 502);
        assert_string_equal(err.reason, "");
        assert_non_null(strstr(err.message, "HTTP 502"));
        assert_non_null(strstr(err.message, "not an S3 error document"));
        assert_non_null(strstr(err.message, "text/html"));
        assert_non_null(strstr(err.message, "502 Bad Gateway"));

        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EAGAIN);
        assert_non_null(strstr(err.message, "HTTP 500"));
        assert_non_null(strstr(err.message, "empty body"));

        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EPROTO);
        assert_non_null(strstr(err.message, "HTTP 418"));
        assert_null(strchr(err.message, '\x01')); /* made printable */
        env_close(&v);
}

static void test_retry_then_success(void **state) {
        static const reply script[] = {
                {503, 0, {NULL}, XML_ERR("ServiceUnavailable", "busy")},
                {0, -ECONNRESET, {NULL}, NULL},
                {200, 0, {"ETag: \"ok\"", NULL}, "data"},
        };
        _cleanup_(s3_object_freep) s3_object *o = NULL;
        http_code_counts codes;
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, &o, &err), 0);
        assert_string_equal(o->body, "data");
        assert_int_equal(v.fake.n_seen, 3);
        /* Each retry waited for a timer (never re-sent from the callback). */
        assert_true(v.fake.seen[1].at >= v.fake.seen[0].at);
        assert_true(v.fake.seen[2].at >= v.fake.seen[1].at);
        /* Every attempt counts by its status; no response counts as 0. */
        s3_client_get_http_codes(v.s3, &codes);
        assert_int_equal(codes.n[503], 1);
        assert_int_equal(codes.n[0], 1);
        assert_int_equal(codes.n[200], 1);
        env_close(&v);
}

static void test_retry_after_honoured(void **state) {
        static const reply script[] = {
                {503,
                 0,
                 {"Retry-After: 1", NULL},
                 XML_ERR("SlowDown", "Please reduce your request rate.")},
                {200, 0, {NULL}, "ok"},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), 0);
        assert_int_equal(v.fake.n_seen, 2);
        /* The backoff window is 1-5 ms here; Retry-After: 1 wins. */
        assert_true(v.fake.seen[1].at - v.fake.seen[0].at >= 950 * USEC_PER_MSEC);
        env_close(&v);
}

static void test_retry_after_capped(void **state) {
        static const reply script[] = {
                {429, 0, {"Retry-After: 86400", NULL}, NULL},
                {200, 0, {NULL}, "ok"},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.retry_after_max_usec = 20 * USEC_PER_MSEC}));
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), 0);
        assert_int_equal(v.fake.n_seen, 2);
        assert_true(v.fake.seen[1].at - v.fake.seen[0].at < 2 * USEC_PER_SEC);
        env_close(&v);
}

static void test_slowdown_400_retried(void **state) {
        /* Some S3-compatible servers send SlowDown with a 4xx status. */
        static const reply script[] = {
                {400, 0, {NULL}, XML_ERR("SlowDown", "slow")},
                {200, 0, {NULL}, "ok"},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), 0);
        assert_int_equal(v.fake.n_seen, 2);
        env_close(&v);
}

static void test_attempts_bounded(void **state) {
        static const reply script[] = {
                {500, 0, {NULL}, XML_ERR("InternalError", "a")},
                {503, 0, {NULL}, NULL},
                {0, -ETIMEDOUT, {NULL}, NULL},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.max_attempts = 3}));
        err_info_clear(&err);
        /* The last failure is reported. */
        assert_int_equal(s3_put_object_sync(v.s3, "k", "x", 1, NULL, NULL, &err), -ETIMEDOUT);
        assert_int_equal(v.fake.n_seen, 3);
        assert_non_null(strstr(err.message, "S3 PUT 'k': "));
        env_close(&v);
}

static void test_4xx_not_retried(void **state) {
        static const reply script[] = {
                {403, 0, {NULL}, XML_ERR("AccessDenied", "Access Denied")},
                {400, 0, {NULL}, XML_ERR("InvalidArgument", "bad")},
                {0, -EKEYREJECTED, {NULL}, NULL},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EACCES);
        assert_string_equal(err.reason, "AccessDenied");
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EINVAL);
        /* TLS verification failures are not transient either. */
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EKEYREJECTED);
        assert_int_equal(v.fake.n_seen, 3);
        env_close(&v);
}

static void test_put_headers(void **state) {
        static const reply script[] = {
                {200, 0, {"ETag: \"5d41402abc4b2a76b9719d911017c592\"", NULL}, NULL},
                {200, 0, {NULL}, NULL},
        };
        _cleanup_(s3_object_freep) s3_object *o = NULL;
        err_info err;
        env v;

        ENV_OPEN(&v, script,
                 &((s3_config){.checksums = S3_CHECKSUM_MD5 | S3_CHECKSUM_SHA256,
                               .session_token = "TOKEN"}));
        assert_int_equal(s3_put_object_sync(v.s3, "a b.txt", "hello", 5,
                                            &(s3_put_opts){.content_type = "text/plain"}, &o, &err),
                         0);
        assert_string_equal(o->etag, "\"5d41402abc4b2a76b9719d911017c592\"");
        assert_int_equal(o->size, 5);
        assert_string_equal(v.fake.seen[0].method, "PUT");
        assert_string_equal(v.fake.seen[0].url, "http://127.0.0.1:9000/bucket/a%20b.txt");
        /* printf hello | sha256sum; | openssl md5 -binary | base64; sha256 likewise */
        assert_string_equal(seen_header(&v.fake.seen[0], "x-amz-content-sha256"),
                            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_string_equal(seen_header(&v.fake.seen[0], "Content-MD5"),
                            "XUFAKrxLKna5cZ2REBfFkg==");
        assert_string_equal(seen_header(&v.fake.seen[0], "x-amz-checksum-sha256"),
                            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        assert_string_equal(seen_header(&v.fake.seen[0], "Content-Type"), "text/plain");
        assert_string_equal(seen_header(&v.fake.seen[0], "x-amz-security-token"), "TOKEN");
        assert_null(seen_header(&v.fake.seen[0], "If-None-Match"));

        /* An empty body; default content type. */
        assert_int_equal(s3_put_object_sync(v.s3, "empty", "", 0, NULL, NULL, &err), 0);
        assert_string_equal(seen_header(&v.fake.seen[1], "x-amz-content-sha256"),
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_string_equal(seen_header(&v.fake.seen[1], "Content-Type"),
                            "application/octet-stream");
        env_close(&v);
}

static void test_create_only_conditional(void **state) {
        static const reply script[] = {
                {200, 0, {"ETag: \"n\"", NULL}, NULL},
                {412,
                 0,
                 {NULL},
                 XML_ERR("PreconditionFailed",
                         "At least one of the pre-conditions you specified did not hold")},
                {412, 0, {NULL}, XML_ERR("PreconditionFailed", "x")},
                {501,
                 0,
                 {NULL},
                 XML_ERR("NotImplemented",
                         "A header you provided implies functionality that is not implemented")},
        };
        s3_put_opts co = {.create_only = true};
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_put_object_sync(v.s3, "k", "1", 1, &co, NULL, &err), 0);
        assert_string_equal(seen_header(&v.fake.seen[0], "If-None-Match"), "*");

        err_info_clear(&err);
        assert_int_equal(s3_put_object_sync(v.s3, "k", "2", 1, &co, NULL, &err), -EEXIST);
        assert_string_equal(err.reason, "PreconditionFailed");
        assert_int_equal(err.http_status, 412);

        /* The same answer to a plain PUT is a stale precondition. */
        assert_int_equal(s3_put_object_sync(v.s3, "k", "2", 1, NULL, NULL, &err), -ESTALE);

        /* A server without conditional writes: the caller is told. */
        assert_int_equal(s3_put_object_sync(v.s3, "k", "3", 1, &co, NULL, &err), -EOPNOTSUPP);
        assert_string_equal(err.reason, "NotImplemented");
        assert_int_equal(v.fake.n_seen, 4);
        env_close(&v);
}

static void test_create_only_auto_fallback(void **state) {
        static const reply script[] = {
                /* First create-only PUT: 501, then HEAD 404, then PUT. */
                {501, 0, {NULL}, XML_ERR("NotImplemented", "no")},
                {404, 0, {NULL}, NULL},
                {200, 0, {"ETag: \"c\"", NULL}, NULL},
                /* Second: straight to HEAD, which finds the key. */
                {200, 0, {"ETag: \"c\"", NULL}, NULL},
        };
        s3_put_opts co = {.create_only = true};
        _cleanup_(s3_object_freep) s3_object *o = NULL;
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.create_mode = S3_CREATE_AUTO}));
        assert_int_equal(s3_put_object_sync(v.s3, "k", "1", 1, &co, &o, &err), 0);
        assert_string_equal(o->etag, "\"c\"");
        assert_string_equal(v.fake.seen[0].method, "PUT");
        assert_string_equal(seen_header(&v.fake.seen[0], "If-None-Match"), "*");
        assert_string_equal(v.fake.seen[1].method, "HEAD");
        assert_string_equal(v.fake.seen[2].method, "PUT");
        assert_null(seen_header(&v.fake.seen[2], "If-None-Match"));

        err_info_clear(&err);
        assert_int_equal(s3_put_object_sync(v.s3, "k", "2", 1, &co, NULL, &err), -EEXIST);
        assert_string_equal(v.fake.seen[3].method, "HEAD");
        assert_string_equal(err.reason, "PreconditionFailed");
        assert_int_equal(v.fake.n_seen, 4);
        env_close(&v);
}

static void test_create_only_head_then_put(void **state) {
        static const reply script[] = {
                {404, 0, {NULL}, NULL},
                {200, 0, {NULL}, NULL},
                {403, 0, {NULL}, NULL},
        };
        s3_put_opts co = {.create_only = true};
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.create_mode = S3_CREATE_HEAD_THEN_PUT}));
        assert_int_equal(s3_put_object_sync(v.s3, "k", "1", 1, &co, NULL, &err), 0);
        assert_string_equal(v.fake.seen[0].method, "HEAD");
        assert_string_equal(v.fake.seen[1].method, "PUT");
        assert_null(seen_header(&v.fake.seen[1], "If-None-Match"));
        /* A HEAD that fails otherwise fails the PUT. */
        assert_int_equal(s3_put_object_sync(v.s3, "k", "1", 1, &co, NULL, &err), -EACCES);
        assert_int_equal(v.fake.n_seen, 3);
        env_close(&v);
}

static void test_delete_idempotent(void **state) {
        static const reply script[] = {
                {204, 0, {NULL}, NULL},
                {404, 0, {NULL}, XML_ERR("NoSuchKey", "gone")},
                {404, 0, {NULL}, XML_ERR("NoSuchBucket", "no bucket")},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_delete_object_sync(v.s3, "k", &err), 0);
        assert_string_equal(v.fake.seen[0].method, "DELETE");
        assert_int_equal(s3_delete_object_sync(v.s3, "k", &err), 0);
        /* A missing bucket is a configuration error, not a deleted key. */
        assert_int_equal(s3_delete_object_sync(v.s3, "k", &err), -ENOENT);
        assert_string_equal(err.reason, "NoSuchBucket");
        env_close(&v);
}

#define PAGE(contents, trunc, token)                                                               \
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" contents            \
        "<IsTruncated>" trunc "</IsTruncated>" token "</ListBucketResult>"

static void test_list_pagination(void **state) {
        static const reply script[] = {
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>p/a</Key><Size>1</Size></Contents>"
                      "<Contents><Key>p/b</Key><Size>2</Size></Contents>",
                      "true", "<NextContinuationToken>t+1/=</NextContinuationToken>")},
                {503, 0, {NULL}, NULL}, /* a retry inside pagination */
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>p/c</Key><Size>3</Size></Contents>"
                      "<Contents><Key>p/d</Key><Size>4</Size></Contents>",
                      "true", "<NextContinuationToken>t2</NextContinuationToken>")},
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>p/e</Key><Size>5</Size></Contents>", "false", "")},
        };
        s3_list_entry *e = NULL;
        size_t n = 0;
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_list_objects_sync(v.s3, "p/", 2, &e, &n, &err), 0);
        assert_int_equal(n, 5);
        for (size_t i = 0; i < n; i++) {
                char want[8];

                snprintf(want, sizeof(want), "p/%c", (char) ('a' + i));
                assert_string_equal(e[i].key, want);
                assert_int_equal(e[i].size, i + 1);
        }
        s3_list_entries_free(e, n);
        assert_int_equal(v.fake.n_seen, 4);
        assert_string_equal(v.fake.seen[0].url,
                            "http://127.0.0.1:9000/bucket?list-type=2&max-keys=2&prefix=p%2F");
        assert_string_equal(
                v.fake.seen[1].url,
                "http://127.0.0.1:9000/bucket?continuation-token=t%2B1%2F%3D&list-type=2"
                "&max-keys=2&prefix=p%2F");
        assert_string_equal(v.fake.seen[2].url, v.fake.seen[1].url);
        assert_string_equal(v.fake.seen[3].url,
                            "http://127.0.0.1:9000/bucket?continuation-token=t2&list-type=2"
                            "&max-keys=2&prefix=p%2F");
        env_close(&v);
}

typedef struct list_state {
        unsigned pages;
        size_t keys;
        int stop_after;
        bool done;
        int r;
        err_info err;
} list_state;

static int on_page(s3_op *op, s3_list_page *page, void *userdata) {
        list_state *ls = userdata;

        ls->pages++;
        ls->keys += page->n_entries;
        return (int) ls->pages == ls->stop_after ? 1 : 0;
}

static void on_done(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata) {
        list_state *ls = userdata;

        ls->done = true;
        ls->r = r;
        if (err)
                ls->err = *err;
}

static void test_list_stop_early_and_bad_tokens(void **state) {
        static const reply script[] = {
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>a</Key></Contents>", "true",
                      "<NextContinuationToken>t1</NextContinuationToken>")},
                /* A server that repeats its token would page forever. */
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>a</Key></Contents>", "true",
                      "<NextContinuationToken>t1</NextContinuationToken>")},
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>b</Key></Contents>", "true",
                      "<NextContinuationToken>t1</NextContinuationToken>")},
                /* Truncated without a token. */
                {200, 0, {NULL}, PAGE("", "true", "")},
        };
        list_state ls = {.stop_after = 1};
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_list_objects(v.s3, NULL, 0, NULL, on_page, on_done, &ls, NULL), 0);
        assert_false(ls.done); /* never completes inside the call */
        assert_int_equal(loop_run_until(v.e, &ls.done, 0), 0);
        assert_int_equal(ls.r, 0);
        assert_int_equal(ls.pages, 1);
        assert_int_equal(v.fake.n_seen, 1);
        assert_string_equal(v.fake.seen[0].url,
                            "http://127.0.0.1:9000/bucket?list-type=2&max-keys=1000");

        ls = (list_state){.stop_after = -1};
        assert_int_equal(s3_list_objects(v.s3, NULL, 0, NULL, on_page, on_done, &ls, NULL), 0);
        assert_int_equal(loop_run_until(v.e, &ls.done, 0), 0);
        assert_int_equal(ls.r, -EBADMSG);
        assert_non_null(strstr(ls.err.message, "repeated continuation token"));
        assert_int_equal(ls.pages, 1); /* the repeat is refused before delivery */

        ls = (list_state){.stop_after = -1};
        assert_int_equal(s3_list_objects(v.s3, NULL, 0, NULL, on_page, on_done, &ls, NULL), 0);
        assert_int_equal(loop_run_until(v.e, &ls.done, 0), 0);
        assert_int_equal(ls.r, -EBADMSG);
        assert_non_null(strstr(ls.err.message, "malformed"));
        assert_int_equal(ls.pages, 0);
        env_close(&v);
}

static void test_get_too_large(void **state) {
        static const reply script[] = {
                {200, 0, {NULL}, "0123456789abcdef"},
        };
        err_info err;
        env v;

        ENV_OPEN(&v, script, &((s3_config){.max_object_size = 10}));
        assert_int_equal(s3_get_object_sync(v.s3, "big", NULL, NULL, &err), -EFBIG);
        assert_int_equal(v.fake.n_seen, 1); /* not retried */
        env_close(&v);
}

static void test_huge_error_body(void **state) {
        /* An error body far over the cap: the head is kept, the rest dropped,
         * and the error is still reported with its status. */
        static char body[512 * 1024];
        reply script[] = {{500, 0, {NULL}, body}};
        err_info err;
        env v;

        memset(body, 'x', sizeof(body) - 1);
        memcpy(body, "<Error><Code>InternalError</Code>", 33);
        env_open(&v, script, 1, &((s3_config){.max_attempts = 1}));
        err_info_clear(&err);
        assert_int_equal(s3_get_object_sync(v.s3, "k", NULL, NULL, &err), -EAGAIN);
        assert_int_equal(err.http_status, 500);
        assert_non_null(strstr(err.message, "HTTP 500"));
        env_close(&v);
}

static void never_called(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata) {
        fail_msg("callback of a cancelled op");
}

static void test_cancel_and_free(void **state) {
        static const reply script[] = {
                {503, 0, {NULL}, NULL},
                {200, 0, {NULL}, "x"},
        };
        s3_op *op = NULL;
        env v;

        ENV_OPEN(&v, script,
                 &((s3_config){.retry_base_usec = 50 * USEC_PER_MSEC,
                               .retry_cap_usec = 50 * USEC_PER_MSEC}));
        /* Cancelled before the request went out. */
        assert_int_equal(s3_get_object(v.s3, "k", NULL, never_called, NULL, &op), 0);
        s3_op_cancel(op);
        assert_true(sd_event_run(v.e, 10 * USEC_PER_MSEC) >= 0);
        assert_int_equal(v.fake.n_seen, 0);

        /* Pending in its retry timer when the client is freed. */
        assert_int_equal(s3_get_object(v.s3, "k", NULL, never_called, NULL, &op), 0);
        while (v.fake.n_seen < 1)
                assert_true(sd_event_run(v.e, UINT64_MAX) >= 0);
        v.s3 = s3_client_free(v.s3);
        assert_true(sd_event_run(v.e, 100 * USEC_PER_MSEC) >= 0);
        assert_int_equal(v.fake.n_seen, 1);
        env_close(&v);
}

static void test_bad_arguments(void **state) {
        static const reply script[] = {{200, 0, {NULL}, NULL}};
        env v;

        ENV_OPEN(&v, script, NULL);
        assert_int_equal(s3_get_object(v.s3, "a/../b", NULL, on_done, NULL, NULL), -EINVAL);
        assert_int_equal(s3_get_object(v.s3, "", NULL, on_done, NULL, NULL), -EINVAL);
        assert_int_equal(s3_get_object(v.s3, "k", "bad\r\netag", on_done, NULL, NULL), -EINVAL);
        assert_int_equal(s3_get_object(v.s3, "k", NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(s3_put_object(v.s3, "k", NULL, 3, NULL, on_done, NULL, NULL), -EINVAL);
        assert_int_equal(s3_put_object(v.s3, "k", "x", 1, &(s3_put_opts){.content_type = "a\nb"},
                                       on_done, NULL, NULL),
                         -EINVAL);
        assert_int_equal(s3_list_objects(v.s3, "p\n", 0, NULL, NULL, on_done, NULL, NULL), -EINVAL);
        assert_int_equal(v.fake.n_seen, 0);
        env_close(&v);
}

/* ---- the objstore S3 backend ---------------------------------------------------- */

static void objstore_never_called(objstore_op *op, int r, objstore_object *obj, const err_info *err,
                                  void *userdata) {
        fail_msg("callback of a dropped op");
}

static void test_objstore_s3_backend(void **state) {
        static const reply script[] = {
                {200, 0, {"ETag: \"p1\"", NULL}, NULL},
                {200, 0, {"ETag: \"p1\"", NULL}, "one"},
                {404, 0, {NULL}, XML_ERR("NoSuchKey", "no")},
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>pfx/n/a</Key><Size>1</Size><ETag>\"x\"</ETag></Contents>"
                      "<Contents><Key>pfx/n//bad</Key><Size>1</Size></Contents>",
                      "true", "<NextContinuationToken>tok</NextContinuationToken>")},
                {200,
                 0,
                 {NULL},
                 PAGE("<Contents><Key>pfx/n/b</Key><Size>2</Size></Contents>"
                      "<Contents><Key>other/n/c</Key><Size>3</Size></Contents>",
                      "false", "")},
                {412, 0, {NULL}, XML_ERR("PreconditionFailed", "exists")},
        };
        _cleanup_(objstore_object_freep) objstore_object *p = NULL, *g = NULL;
        objstore *os = NULL;
        objstore_entry *e = NULL;
        http_code_counts codes;
        size_t n = 0;
        err_info err;
        env v;

        ENV_OPEN(&v, script, NULL);
        err_info_clear(&err);
        if (objstore_open(v.e, "s3://bucket/pfx/?endpoint=http://127.0.0.1:9000&region=us-east-1",
                          &(objstore_config){.http = v.http,
                                             .access_key = "AKID",
                                             .secret_key = "SECRET",
                                             .retry_base_usec = 1000},
                          &os, &err) < 0)
                fail_msg("objstore_open: %s", err.message);
        assert_string_equal(objstore_backend_name(os), "s3");

        assert_int_equal(objstore_put_sync(os, "n/a", "one", 3, NULL, &p, &err), 0);
        assert_string_equal(p->etag, "\"p1\"");
        assert_int_equal(p->size, 3);
        assert_string_equal(v.fake.seen[0].url, "http://127.0.0.1:9000/bucket/pfx/n/a");

        assert_int_equal(objstore_get_sync(os, "n/a", NULL, &g, &err), 0);
        assert_string_equal(g->data, "one");
        assert_int_equal(g->size, 3);

        assert_int_equal(objstore_get_sync(os, "n/zz", NULL, NULL, &err), -ENOENT);
        assert_string_equal(err.reason, "NoSuchKey");

        /* Keys relative to the prefix; ones it can't address are left out. */
        assert_int_equal(objstore_list_sync(os, "n/", 2, &e, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].key, "n/a");
        assert_string_equal(e[0].etag, "\"x\"");
        assert_string_equal(e[1].key, "n/b");
        assert_int_equal(e[1].size, 2);
        objstore_entries_free(e, n);
        assert_string_equal(
                v.fake.seen[3].url,
                "http://127.0.0.1:9000/bucket?list-type=2&max-keys=2&prefix=pfx%2Fn%2F");
        assert_string_equal(v.fake.seen[4].url,
                            "http://127.0.0.1:9000/bucket?continuation-token=tok&list-type=2"
                            "&max-keys=2&prefix=pfx%2Fn%2F");

        assert_int_equal(objstore_put_sync(os, "n/a", "x", 1,
                                           &(objstore_put_opts){.create_only = true}, NULL, &err),
                         -EEXIST);
        assert_string_equal(seen_header(&v.fake.seen[5], "If-None-Match"), "*");

        /* Checked before anything is sent. */
        assert_int_equal(objstore_get_sync(os, "a/../b", NULL, NULL, &err), -EINVAL);
        assert_int_equal(v.fake.n_seen, 6);

        /* The S3 client's counts by status, through the store. */
        assert_true(objstore_get_http_codes(os, &codes));
        assert_int_equal(codes.n[200], 4);
        assert_int_equal(codes.n[404], 1);
        assert_int_equal(codes.n[412], 1);

        /* A pending op is dropped with the store. */
        assert_int_equal(objstore_get(os, "n/a", NULL, objstore_never_called, NULL, NULL), 0);
        objstore_free(os);
        assert_true(sd_event_run(v.e, 10 * USEC_PER_MSEC) >= 0);
        env_close(&v);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escape_key),
                cmocka_unit_test(test_key_and_bucket_rules),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_client_rejects_bad_config),
                cmocka_unit_test(test_credentials_from_env),
                cmocka_unit_test(test_error_table),
                cmocka_unit_test(test_get_and_not_modified),
                cmocka_unit_test(test_head),
                cmocka_unit_test(test_error_document),
                cmocka_unit_test(test_non_xml_errors),
                cmocka_unit_test(test_retry_then_success),
                cmocka_unit_test(test_retry_after_honoured),
                cmocka_unit_test(test_retry_after_capped),
                cmocka_unit_test(test_slowdown_400_retried),
                cmocka_unit_test(test_attempts_bounded),
                cmocka_unit_test(test_4xx_not_retried),
                cmocka_unit_test(test_put_headers),
                cmocka_unit_test(test_create_only_conditional),
                cmocka_unit_test(test_create_only_auto_fallback),
                cmocka_unit_test(test_create_only_head_then_put),
                cmocka_unit_test(test_delete_idempotent),
                cmocka_unit_test(test_list_pagination),
                cmocka_unit_test(test_list_stop_early_and_bad_tokens),
                cmocka_unit_test(test_get_too_large),
                cmocka_unit_test(test_huge_error_body),
                cmocka_unit_test(test_cancel_and_free),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_objstore_s3_backend),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
