/* SPDX-License-Identifier: Apache-2.0 */

/*
 * SigV4 signing as it leaves the machine. libcurl signs internally, so a
 * small socket server in this test captures the raw requests.
 *
 * 1. AWS's published vectors, reproduced exactly through http.c with a fixed
 *    X-Amz-Date (curl 7.88 signs a date header it is given): the SigV4 test
 *    suite's get-vanilla, get-vanilla-query-order-key (the sorted form of
 *    get-vanilla-query-order-key-case: curl 7.88 does not sort, which is why
 *    s3.c builds sorted queries), post-vanilla, and the S3 documentation's
 *    "GET Object" example (bucket examplebucket, key test.txt, Range).
 * 2. An independent SigV4 verifier, written here from the AWS specification
 *    the way a server checks a request (decode, re-encode, sort), proven on
 *    the published vectors above, then used on requests s3.c makes: keys and
 *    prefixes with characters that need escaping, continuation tokens, PUT
 *    bodies (x-amz-content-sha256, Content-MD5), session tokens.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>

#include "hash.h"
#include "http.h"
#include "loop.h"
#include "s3.h"

/* ---- a capture server ------------------------------------------------------ */

#define CAPTURE_MAX (256 * 1024)

static int server_fd = -1;
static unsigned server_port;
static pthread_t server_thread;
static atomic_bool server_stop;
static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static char *captured; /* the last raw request: head and body */
static size_t captured_len;
static char response[8192] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

static void set_response(const char *status_and_headers, const char *body) {
        pthread_mutex_lock(&cap_lock);
        snprintf(response, sizeof(response),
                 "%s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status_and_headers,
                 strlen(body), body);
        pthread_mutex_unlock(&cap_lock);
}

/* Reads one request: the head, then Content-Length bytes of body. */
static void serve_one(int fd) {
        char *buf = malloc(CAPTURE_MAX + 1);
        size_t len = 0, need = SIZE_MAX;

        if (!buf)
                return;
        while (len < CAPTURE_MAX && len < need) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t k;

                if (poll(&p, 1, 5000) <= 0)
                        break;
                k = recv(fd, buf + len, CAPTURE_MAX - len, 0);
                if (k <= 0)
                        break;
                len += (size_t) k;
                buf[len] = '\0';
                if (need == SIZE_MAX) {
                        char *end = strstr(buf, "\r\n\r\n");

                        if (end) {
                                const char *cl = strcasestr(buf, "\r\nContent-Length:");
                                size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;

                                need = (size_t) (end + 4 - buf) + body;
                        }
                }
        }
        buf[len] = '\0';
        pthread_mutex_lock(&cap_lock);
        free(captured);
        captured = buf;
        captured_len = len;
        (void) !send(fd, response, strlen(response), MSG_NOSIGNAL);
        pthread_mutex_unlock(&cap_lock);
}

static void *server_main(void *arg) {
        while (!server_stop) {
                struct pollfd p = {.fd = server_fd, .events = POLLIN};
                int fd;

                if (poll(&p, 1, 100) <= 0)
                        continue;
                fd = accept(server_fd, NULL, NULL);
                if (fd < 0)
                        continue;
                serve_one(fd);
                close(fd);
        }
        return NULL;
}

static int server_setup(void **state) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);

        server_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(server_fd >= 0);
        assert_int_equal(bind(server_fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(server_fd, 16), 0);
        assert_int_equal(getsockname(server_fd, (struct sockaddr *) &a, &al), 0);
        server_port = ntohs(a.sin_port);
        server_stop = false;
        assert_int_equal(pthread_create(&server_thread, NULL, server_main, NULL), 0);
        return 0;
}

static int server_teardown(void **state) {
        server_stop = true;
        pthread_join(server_thread, NULL);
        close(server_fd);
        free(captured);
        captured = NULL;
        return 0;
}

/* The captured request (copy, caller frees). */
static char *take_capture(size_t *ret_len) {
        char *c;

        pthread_mutex_lock(&cap_lock);
        c = captured;
        *ret_len = captured_len;
        captured = NULL;
        pthread_mutex_unlock(&cap_lock);
        assert_non_null(c);
        return c;
}

/* The first value of header @name in a raw request, copied, or NULL. */
static char *req_header(const char *req, const char *name) {
        const char *end = strstr(req, "\r\n\r\n");
        const char *p = strstr(req, "\r\n");
        size_t n = strlen(name);

        while (p && p < end) {
                const char *line = p + 2;
                const char *eol = strstr(line, "\r\n");

                if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
                        const char *v = line + n + 1;

                        while (*v == ' ' || *v == '\t')
                                v++;
                        return strndup(v, (size_t) (eol - v));
                }
                p = eol;
        }
        return NULL;
}

/* ---- an independent SigV4 verifier ------------------------------------------- */

static void hex(const unsigned char *d, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32]) {
        unsigned int ol = 32;

        assert_non_null(HMAC(EVP_sha256(), key, (int) klen, (const unsigned char *) msg,
                             strlen(msg), out, &ol));
}

/* Decodes %XX in [s, s+n). */
static char *decode(const char *s, size_t n) {
        char *o = malloc(n + 1), *p = o;

        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%' && i + 2 < n + 1 && isxdigit((unsigned char) s[i + 1]) &&
                    isxdigit((unsigned char) s[i + 2])) {
                        char h[3] = {s[i + 1], s[i + 2], 0};

                        *p++ = (char) strtol(h, NULL, 16);
                        i += 2;
                } else
                        *p++ = s[i];
        }
        *p = '\0';
        return o;
}

/* AWS's UriEncode(): unreserved characters stay, everything else %XX. */
static char *encode(const char *s, bool keep_slash) {
        char *o = malloc(strlen(s) * 3 + 1), *p = o;

        for (const unsigned char *q = (const unsigned char *) s; *q; q++) {
                if (isalnum(*q) || strchr("-_.~", *q) || (keep_slash && *q == '/'))
                        *p++ = (char) *q;
                else
                        p += sprintf(p, "%%%02X", *q);
        }
        *p = '\0';
        return o;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Canonical query: each name=value decoded, re-encoded, sorted. */
static char *canonical_query(const char *q) {
        char *parts[64];
        size_t n = 0, total = 1;
        char *out;

        while (q && *q) {
                const char *amp = strchrnul(q, '&');
                const char *eq = memchr(q, '=', (size_t) (amp - q));
                char *name = decode(q, (size_t) ((eq ?: amp) - q));
                char *value = eq ? decode(eq + 1, (size_t) (amp - eq - 1)) : strdup("");
                char *en = encode(name, false), *ev = encode(value, false);

                assert_true(n < ELEMENTSOF(parts));
                assert_true(asprintf(&parts[n], "%s=%s", en, ev) > 0);
                total += strlen(parts[n]) + 1;
                n++;
                free(name);
                free(value);
                free(en);
                free(ev);
                q = *amp ? amp + 1 : amp;
        }
        qsort(parts, n, sizeof(char *), cmp_str);
        out = calloc(1, total);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(out, "&");
                strcat(out, parts[i]);
                free(parts[i]);
        }
        return out;
}

typedef struct verdict {
        char signed_headers[256];
        char signature[65];
        char expected[65];
        char payload_hash[65];
        char body_sha256[65];
} verdict;

/* Checks the SigV4 Authorization of raw request @req (@len bytes) with
 * @secret, as a server would. Returns true if the signature is right. */
static bool sigv4_verify(const char *req, size_t len, const char *secret, verdict *v) {
        _cleanup_free_ char *auth = req_header(req, "Authorization");
        _cleanup_free_ char *date = req_header(req, "x-amz-date");
        _cleanup_free_ char *content_sha = req_header(req, "x-amz-content-sha256");
        _cleanup_free_ char *path = NULL, *query = NULL, *dpath = NULL, *cpath = NULL;
        _cleanup_free_ char *canon = NULL, *sts = NULL, *scope = NULL, *kk = NULL;
        char method[16], target[4096], cred[256], region[64], service[64], day[16];
        char canon_headers[8192] = "", creq_hash[65], *qm;
        const char *body = strstr(req, "\r\n\r\n") + 4;
        unsigned char d[32], k[32];

        memset(v, 0, sizeof(*v));
        assert_non_null(auth);
        assert_non_null(date);
        assert_int_equal(sscanf(req, "%15s %4095s", method, target), 2);
        assert_int_equal(sscanf(auth,
                                "AWS4-HMAC-SHA256 Credential=%255[^,], SignedHeaders=%255[^,], "
                                "Signature=%64s",
                                cred, v->signed_headers, v->signature),
                         3);
        assert_int_equal(sscanf(strchr(cred, '/') + 1, "%15[^/]/%63[^/]/%63[^/]/aws4_request", day,
                                region, service),
                         3);

        hash_sha256_hex(body, len - (size_t) (body - req), v->body_sha256);
        snprintf(v->payload_hash, sizeof(v->payload_hash), "%s", content_sha ?: v->body_sha256);

        qm = strchr(target, '?');
        path = qm ? strndup(target, (size_t) (qm - target)) : strdup(target);
        query = canonical_query(qm ? qm + 1 : NULL);
        dpath = decode(path, strlen(path));
        cpath = encode(dpath, true);

        for (char *h = v->signed_headers, *next; h && *h; h = next) {
                char name[64];
                _cleanup_free_ char *val = NULL;
                size_t o = strlen(canon_headers);

                next = strchr(h, ';');
                snprintf(name, sizeof(name), "%.*s", (int) (next ? next - h : (long) strlen(h)), h);
                if (next)
                        next++;
                val = req_header(req, name);
                if (!val)
                        fail_msg("a signed header is missing: %s", name);
                snprintf(canon_headers + o, sizeof(canon_headers) - o, "%s:%s\n", name, val ?: "");
        }
        assert_true(asprintf(&canon, "%s\n%s\n%s\n%s\n%s\n%s", method, cpath, query, canon_headers,
                             v->signed_headers, v->payload_hash) > 0);
        hash_sha256_hex(canon, strlen(canon), creq_hash);
        assert_true(asprintf(&scope, "%s/%s/%s/aws4_request", day, region, service) > 0);
        assert_true(asprintf(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, scope, creq_hash) > 0);

        assert_true(asprintf(&kk, "AWS4%s", secret) > 0);
        hmac(kk, strlen(kk), day, k);
        hmac(k, 32, region, d);
        hmac(d, 32, service, k);
        hmac(k, 32, "aws4_request", d);
        hmac(d, 32, sts, k);
        hex(k, 32, v->expected);
        return streq(v->expected, v->signature);
}

/* ---- 1. published vectors through http.c --------------------------------------- */

#define SUITE_KEY    "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_CRED   "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"

/* Sends a request to the capture server and returns the raw request. */
static char *send_capture(const char *method, const char *path_query, const char *const *headers,
                          const char *sigv4, const char *userpwd, size_t *ret_len) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *resp = NULL;
        _cleanup_free_ char *url = NULL;
        err_info err;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(http_client_new(e, &c), 0);
        assert_true(asprintf(&url, "http://127.0.0.1:%u%s", server_port, path_query) > 0);
        assert_int_equal(http_request_run(c,
                                          &(http_request_opts){.method = method,
                                                               .url = url,
                                                               .headers = headers,
                                                               .aws_sigv4 = sigv4,
                                                               .userpwd = userpwd},
                                          &resp, &err),
                         0);
        assert_int_equal(resp->status, 200);
        return take_capture(ret_len);
}

static void check_suite_vector(const char *method, const char *path_query, const char *signature) {
        static const char *const headers[] = {"Host: example.amazonaws.com",
                                              "X-Amz-Date: 20150830T123600Z", NULL};
        _cleanup_free_ char *req = NULL, *auth = NULL, *want = NULL;
        size_t len;
        verdict v;

        req = send_capture(method, path_query, headers, "aws:amz:us-east-1:service",
                           SUITE_KEY ":" SUITE_SECRET, &len);
        auth = req_header(req, "Authorization");
        assert_true(asprintf(&want, SUITE_CRED ", SignedHeaders=host;x-amz-date, Signature=%s",
                             signature) > 0);
        assert_non_null(auth);
        assert_string_equal(auth, want);
        /* The verifier agrees with AWS on the published vector. */
        assert_true(sigv4_verify(req, len, SUITE_SECRET, &v));
        assert_string_equal(v.expected, signature);
}

static void test_suite_get_vanilla(void **state) {
        check_suite_vector("GET", "/",
                           "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void test_suite_get_vanilla_query_order_key(void **state) {
        check_suite_vector("GET", "/?Param1=value1&Param2=value2",
                           "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_suite_post_vanilla(void **state) {
        check_suite_vector("POST", "/",
                           "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void test_s3_doc_get_object(void **state) {
        /* docs.aws.amazon.com, "Signature Calculations for the Authorization
         * Header": Example GET Object. */
        static const char *const headers[] = {
                "Host: examplebucket.s3.amazonaws.com",
                "Range: bytes=0-9",
                "x-amz-content-sha256: "
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "x-amz-date: 20130524T000000Z",
                NULL,
        };
        static const char secret[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        _cleanup_free_ char *req = NULL, *auth = NULL;
        size_t len;
        verdict v;

        req = send_capture("GET", "/test.txt", headers, "aws:amz:us-east-1:s3",
                           "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &len);
        auth = req_header(req, "Authorization");
        assert_non_null(auth);
        assert_string_equal(auth,
                            "AWS4-HMAC-SHA256 "
                            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                            "Signature="
                            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        assert_true(sigv4_verify(req, len, secret, &v));
}

static void test_verifier_rejects_tampering(void **state) {
        static const char *const headers[] = {"Host: example.amazonaws.com",
                                              "X-Amz-Date: 20150830T123600Z", NULL};
        _cleanup_free_ char *req = NULL;
        char *p;
        size_t len;
        verdict v;

        req = send_capture("GET", "/", headers, "aws:amz:us-east-1:service",
                           SUITE_KEY ":" SUITE_SECRET, &len);
        assert_true(sigv4_verify(req, len, SUITE_SECRET, &v));
        assert_false(sigv4_verify(req, len, "wrong-secret", &v));
        /* Another signed header value. */
        p = strstr(req, "example.amazonaws.com");
        assert_non_null(p);
        p[0] = 'E';
        assert_false(sigv4_verify(req, len, SUITE_SECRET, &v));
}

/* ---- 2. what s3.c sends ----------------------------------------------------------- */

#define S3_SECRET "s3cr3t/with+special=chars"

static s3_client *new_s3(sd_event *e, const char *token) {
        _cleanup_free_ char *ep = NULL;
        s3_client *c = NULL;
        err_info err;

        assert_true(asprintf(&ep, "http://127.0.0.1:%u", server_port) > 0);
        assert_int_equal(
                s3_client_new(e, NULL,
                              &(s3_config){.endpoint = ep,
                                           .bucket = "my-bucket",
                                           .region = "eu-west-3",
                                           .access_key = "AKIDTEST",
                                           .secret_key = S3_SECRET,
                                           .session_token = token,
                                           .checksums = S3_CHECKSUM_MD5 | S3_CHECKSUM_SHA256,
                                           .max_attempts = 1},
                              &c, &err),
                0);
        return c;
}

static unsigned body_passes; /* reads of the body from its start */

static ssize_t produce_body(void *buf, size_t len, uint64_t offset, void *userdata) {
        const char *b = userdata;
        size_t n = MIN(MIN(len, (size_t) 5), strlen(b) - (size_t) offset);

        if (offset == 0)
                body_passes++;
        memcpy(buf, b + offset, n);
        return (ssize_t) n;
}

typedef enum { BODY_COPIED, BODY_PRODUCED, BODY_PRODUCED_DIGESTS } body_mode;

static void put_signed(body_mode mode) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(s3_client_freep) s3_client *c = NULL;
        _cleanup_(s3_object_freep) s3_object *obj = NULL;
        _cleanup_free_ char *req = NULL, *csha = NULL, *md5 = NULL, *ct = NULL, *ck = NULL;
        static const char body[] = "{\"hello\": \"world\"}\n";
        err_info err;
        size_t len;
        verdict v;

        set_response("HTTP/1.1 200 OK\r\nETag: \"abc\"", "");
        assert_int_equal(sd_event_new(&e), 0);
        c = new_s3(e, NULL);
        body_passes = 0;
        if (mode != BODY_COPIED) {
                /* Read from a producer in 5-byte pieces: the same request. With
                 * the digests given, the body is read only to be sent. */
                unsigned char given_sha[32], given_md5[16];
                unsigned dl = 0;

                assert_int_equal(hash_sha256(body, strlen(body), given_sha), 0);
                assert_int_equal(EVP_Digest(body, strlen(body), given_md5, &dl, EVP_md5(), NULL),
                                 1);
                assert_int_equal(
                        s3_put_object_sync(
                                c, "dir/a b+c~d=é.json", NULL, strlen(body),
                                &(s3_put_opts){
                                        .content_type = "application/json",
                                        .body_fn = produce_body,
                                        .body_userdata = (void *) body,
                                        .sha256 = mode == BODY_PRODUCED_DIGESTS ? given_sha : NULL,
                                        .md5 = mode == BODY_PRODUCED_DIGESTS ? given_md5 : NULL},
                                &obj, &err),
                        0);
                assert_int_equal(body_passes, mode == BODY_PRODUCED_DIGESTS ? 1 : 2);
        } else
                assert_int_equal(
                        s3_put_object_sync(c, "dir/a b+c~d=é.json", body, strlen(body),
                                           &(s3_put_opts){.content_type = "application/json"}, &obj,
                                           &err),
                        0);
        assert_string_equal(obj->etag, "\"abc\"");
        req = take_capture(&len);

        /* The request line carries the AWS-escaped key, path-style. */
        assert_true(startswith(req, "PUT /my-bucket/dir/a%20b%2Bc~d%3D%C3%A9.json HTTP/1.1\r\n"));
        assert_true(sigv4_verify(req, len, S3_SECRET, &v));
        assert_string_equal(v.signed_headers, "content-md5;content-type;host;x-amz-checksum-sha256;"
                                              "x-amz-content-sha256;x-amz-date");
        /* x-amz-content-sha256 is the body's, as S3 checks. */
        assert_string_equal(v.payload_hash, v.body_sha256);
        csha = req_header(req, "x-amz-content-sha256");
        /* printf '{"hello": "world"}\n' | sha256sum */
        assert_string_equal(csha,
                            "44aff4ab2d7c3250525675a08f0cfa9591168cffe51791c5f5bbc417c15a6c38");
        md5 = req_header(req, "Content-MD5");
        /* ... | openssl md5 -binary | base64 */
        assert_string_equal(md5, "UFIauregE76D7gDe0/n0JA==");
        ct = req_header(req, "Content-Type");
        assert_string_equal(ct, "application/json");
        ck = req_header(req, "x-amz-checksum-sha256");
        /* ... | openssl sha256 -binary | base64 */
        assert_string_equal(ck, "RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=");
}

static void test_s3_put_signed(void **state) {
        put_signed(BODY_COPIED);
        put_signed(BODY_PRODUCED);
        put_signed(BODY_PRODUCED_DIGESTS);
}

static void test_s3_list_signed(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(s3_client_freep) s3_client *c = NULL;
        _cleanup_free_ char *req = NULL;
        s3_list_entry *entries = NULL;
        size_t n = 0, len;
        err_info err;
        verdict v;

        set_response("HTTP/1.1 200 OK\r\nContent-Type: application/xml",
                     "<ListBucketResult><IsTruncated>false</IsTruncated>"
                     "<Contents><Key>p q/x</Key><Size>3</Size></Contents></ListBucketResult>");
        assert_int_equal(sd_event_new(&e), 0);
        c = new_s3(e, "session/token+=");

        /* A first page from a continuation token with '+', '/' and '=' and a
         * prefix with a space: the query must be sorted and escaped. */
        assert_int_equal(s3_list_objects(c, "p q/", 2, "1ueGcx+LPRx/1Tr=", NULL, NULL, NULL, NULL),
                         -EINVAL); /* done is required */
        assert_int_equal(s3_list_objects_sync(c, "p q/", 2, &entries, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(entries[0].key, "p q/x");
        s3_list_entries_free(entries, n);
        req = take_capture(&len);
        assert_true(startswith(req, "GET /my-bucket?list-type=2&max-keys=2&prefix=p%20q%2F "));
        assert_true(sigv4_verify(req, len, S3_SECRET, &v));
        assert_string_equal(v.signed_headers,
                            "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
        assert_string_equal(v.payload_hash,
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void on_list_done(s3_op *op, int r, s3_object *obj, const err_info *err, void *userdata) {
        *(int *) userdata = r;
}

static void test_s3_list_token_signed(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(s3_client_freep) s3_client *c = NULL;
        _cleanup_free_ char *req = NULL;
        int result = 1;
        size_t len;
        verdict v;

        set_response("HTTP/1.1 200 OK", "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                        "</ListBucketResult>");
        assert_int_equal(sd_event_new(&e), 0);
        c = new_s3(e, NULL);
        assert_int_equal(
                s3_list_objects(c, NULL, 0, "1ueGcx+LPRx/1Tr=", NULL, on_list_done, &result, NULL),
                0);
        while (result == 1)
                assert_true(sd_event_run(e, UINT64_MAX) >= 0);
        assert_int_equal(result, 0);
        req = take_capture(&len);
        assert_true(startswith(
                req,
                "GET "
                "/my-bucket?continuation-token=1ueGcx%2BLPRx%2F1Tr%3D&list-type=2&max-keys=1000 "));
        assert_true(sigv4_verify(req, len, S3_SECRET, &v));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_suite_get_vanilla),
                cmocka_unit_test(test_suite_get_vanilla_query_order_key),
                cmocka_unit_test(test_suite_post_vanilla),
                cmocka_unit_test(test_s3_doc_get_object),
                cmocka_unit_test(test_verifier_rejects_tampering),
                cmocka_unit_test(test_s3_put_signed),
                cmocka_unit_test(test_s3_list_signed),
                cmocka_unit_test(test_s3_list_token_signed),
        };

        return cmocka_run_group_tests(tests, server_setup, server_teardown);
}
