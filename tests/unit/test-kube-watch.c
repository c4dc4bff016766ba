/* SPDX-License-Identifier: Apache-2.0 */

/* The client and the watch (reflector) through the fake HTTP transport: the
 * paths a real API server can't be made to take on demand (410 as status and
 * as ERROR event, 429 with Retry-After, dropped connections, garbage,
 * token rotation), plus request building, pagination and rate limiting. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "jsonx.h"
#include "kube.h"
#include "loop.h"

#define MAX_REQS 4096

typedef struct fake fake;

typedef struct fake_req {
        http_request *req; /* NULL once answered (or cancelled by the client) */
        char *method, *url, *body, *bearer, *content_type;
        uint64_t timeout_usec;
        uint64_t at; /* loop clock when the request reached the server */
} fake_req;

struct fake {
        sd_event *e;
        kube_client *client;
        fake_req reqs[MAX_REQS];
        size_t n;
        /* Answers request @idx (or keeps it open). */
        void (*script)(fake *f, fake_req *r, size_t idx);
        void *data;
};

static void on_fake_request(http_request *req, const http_request_opts *o, void *userdata) {
        fake *f = userdata;
        fake_req *r;

        assert_true(f->n < MAX_REQS);
        r = &f->reqs[f->n];
        r->req = req;
        r->method = strdup(o->method ?: "GET");
        r->url = strdup(o->url);
        r->body = o->body ? strndup(o->body, o->body_len) : NULL;
        r->bearer = o->bearer_token ? strdup(o->bearer_token) : NULL;
        r->timeout_usec = o->timeout_usec;
        r->at = loop_now(f->e);
        for (const char *const *h = o->headers; h && *h; h++)
                if (startswith(*h, "Content-Type: "))
                        r->content_type = strdup(*h + 14);
        f->n++;
        if (f->script)
                f->script(f, r, f->n - 1);
}

static fake *fake_new_with(const kube_config *cfg, const kube_client_opts *opts) {
        fake *f = calloc(1, sizeof(*f));
        http_client *http = NULL;
        kube_client_opts o = {.qps = -1}; /* no limiter unless a test wants one */

        assert_non_null(f);
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(http_client_new_fake(f->e, on_fake_request, f, &http), 0);
        if (opts)
                o = *opts;
        assert_int_equal(kube_client_new_with_http(f->e, http, cfg, &o, &f->client), 0);
        return f;
}

static fake *fake_new(const char *token_file, const kube_client_opts *opts) {
        kube_config cfg = {
                .server = (char *) "https://fake.invalid:6443",
                .token = (char *) "t0",
                .namespace = (char *) "ns",
        };

        if (token_file) {
                /* The client reads the file before its first request. */
                cfg.token_file = (char *) token_file;
                cfg.token = NULL;
        }
        return fake_new_with(&cfg, opts);
}

static void fake_free(fake *f) {
        kube_client_free(f->client);
        for (size_t i = 0; i < f->n; i++) {
                free(f->reqs[i].method);
                free(f->reqs[i].url);
                free(f->reqs[i].body);
                free(f->reqs[i].bearer);
                free(f->reqs[i].content_type);
        }
        sd_event_unref(f->e);
        free(f);
}

/* Runs the loop until at least @n requests have arrived or @timeout passes. */
static void run_until_requests(fake *f, size_t n, uint64_t timeout_usec) {
        uint64_t deadline = loop_now(f->e) + timeout_usec;

        while (f->n < n) {
                if (loop_now(f->e) > deadline)
                        fail_msg("timed out waiting for request %zu (have %zu)", n, f->n);
                assert_true(sd_event_run(f->e, 10 * USEC_PER_MSEC) >= 0);
        }
}

/* Runs the loop for @usec. */
static void run_for(fake *f, uint64_t usec) {
        uint64_t deadline = loop_now(f->e) + usec;

        while (loop_now(f->e) < deadline)
                assert_true(sd_event_run(f->e, 5 * USEC_PER_MSEC) >= 0);
}

static void reply(fake_req *r, long status, const char *body, const char *const *headers) {
        static const char *const json[] = {"Content-Type: application/json", NULL};

        assert_non_null(r->req);
        assert_int_equal(http_fake_respond(r->req, status, headers ?: json), 0);
        if (body && *body)
                (void) http_fake_send(r->req, body, strlen(body));
        http_fake_finish(r->req, 0);
        r->req = NULL;
}

static int send_line(fake_req *r, const char *line) {
        _cleanup_free_ char *s = NULL;

        assert_non_null(r->req);
        assert_int_equal(asprintf(&s, "%s\n", line) >= 0, 1);
        return http_fake_send(r->req, s, strlen(s));
}

static void drop(fake_req *r, int error) {
        assert_non_null(r->req);
        http_fake_finish(r->req, error);
        r->req = NULL;
}

/* The raw value of query parameter @key in @url, or NULL. Points to a static
 * buffer that the next call overwrites. */
static const char *param(const char *url, const char *key) {
        static char buf[512];
        const char *q = strchr(url, '?');
        size_t kl = strlen(key);

        while (q) {
                q++;
                if (strncmp(q, key, kl) == 0 && q[kl] == '=') {
                        size_t n = strcspn(q + kl + 1, "&");

                        assert_true(n < sizeof(buf));
                        memcpy(buf, q + kl + 1, n);
                        buf[n] = '\0';
                        return buf;
                }
                q = strchr(q, '&');
        }
        return NULL;
}

static bool is_watch(const fake_req *r) {
        return param(r->url, "watch") != NULL;
}

static char *cm(const char *name, const char *rv) {
        char *s;

        assert_int_equal(asprintf(&s,
                                  "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"ns\","
                                  "\"resourceVersion\":\"%s\"},\"data\":{\"k\":\"%s\"}}",
                                  name, rv, rv) >= 0,
                         1);
        return s;
}

static char *event(const char *type, const char *name, const char *rv) {
        _cleanup_free_ char *o = cm(name, rv);
        char *s;

        assert_int_equal(asprintf(&s, "{\"type\":\"%s\",\"object\":%s}", type, o) >= 0, 1);
        return s;
}

static void send_event(fake_req *r, const char *type, const char *name, const char *rv) {
        _cleanup_free_ char *ev = event(type, name, rv);

        assert_int_equal(send_line(r, ev), 0);
}

static void send_bookmark(fake_req *r, const char *rv) {
        char s[256];

        snprintf(s, sizeof(s),
                 "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{"
                 "\"resourceVersion\":\"%s\"}}}",
                 rv);
        assert_int_equal(send_line(r, s), 0);
}

/* A list response with objects "name:rv" given as a NULL-terminated list. */
static void reply_list(fake_req *r, const char *rv, ...) {
        _cleanup_free_ char *body = NULL, *items = strdup("");
        const char *spec;
        va_list ap;

        va_start(ap, rv);
        while ((spec = va_arg(ap, const char *))) {
                char name[64], *colon, *n;
                _cleanup_free_ char *o = NULL;

                snprintf(name, sizeof(name), "%s", spec);
                colon = strchr(name, ':');
                assert_non_null(colon);
                *colon = '\0';
                o = cm(name, colon + 1);
                assert_int_equal(asprintf(&n, "%s%s%s", items, *items ? "," : "", o) >= 0, 1);
                free(items);
                items = n;
        }
        va_end(ap);
        assert_int_equal(asprintf(&body,
                                  "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                                  "{\"resourceVersion\":\"%s\"},\"items\":[%s]}",
                                  rv, items) >= 0,
                         1);
        reply(r, 200, body, NULL);
}

/* ---- a recording watch ---------------------------------------------------- */

typedef struct recorder {
        char log[64][96];
        size_t n;
        unsigned synced;
        unsigned errors;
        int last_error;
        char last_message[512];
        bool free_on_add;
        kube_watch **self;
} recorder;

static void rec_log(recorder *rec, const char *what, json_object *obj) {
        assert_true(rec->n < ELEMENTSOF(rec->log));
        snprintf(rec->log[rec->n++], sizeof(rec->log[0]), "%s %s %s", what,
                 strna(jsonx_get_string(obj, "metadata.name")),
                 strna(jsonx_get_string(obj, "metadata.resourceVersion")));
}

static void on_add(kube_watch *w, json_object *obj, void *userdata) {
        recorder *rec = userdata;

        rec_log(rec, "add", obj);
        if (rec->free_on_add) {
                *rec->self = kube_watch_free(*rec->self);
                rec->free_on_add = false;
        }
}

static void on_update(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata) {
        recorder *rec = userdata;
        char both[64];

        snprintf(both, sizeof(both), "update(%s)",
                 strna(jsonx_get_string(old_obj, "metadata.resourceVersion")));
        rec_log(rec, both, obj);
}

static void on_delete(kube_watch *w, json_object *obj, void *userdata) {
        rec_log(userdata, "delete", obj);
}

static void on_synced(kube_watch *w, void *userdata) {
        ((recorder *) userdata)->synced++;
}

static void on_error(kube_watch *w, int r, const err_info *err, void *userdata) {
        recorder *rec = userdata;

        rec->errors++;
        rec->last_error = r;
        snprintf(rec->last_message, sizeof(rec->last_message), "%s", err ? err->message : "");
}

static kube_watch *watch_new(fake *f, recorder *rec, const kube_watch_opts *extra) {
        kube_watch_opts o = {
                .resource = &KUBE_RESOURCE_CONFIGMAPS,
                .namespace = "ns",
                .label_selector = "app=ballast,tier in (a,b)",
                .backoff_base_usec = 20 * USEC_PER_MSEC,
                .backoff_cap_usec = 80 * USEC_PER_MSEC,
        };
        kube_watch *w = NULL;

        if (extra)
                o = *extra;
        o.on_add = on_add;
        o.on_update = on_update;
        o.on_delete = on_delete;
        o.on_synced = on_synced;
        o.on_error = on_error;
        o.userdata = rec;
        assert_int_equal(kube_watch_start(f->client, &o, &w), 0);
        return w;
}

static void assert_log(recorder *rec, ...) {
        const char *want;
        size_t i = 0;
        va_list ap;

        va_start(ap, rec);
        while ((want = va_arg(ap, const char *))) {
                if (i >= rec->n)
                        fail_msg("log has %zu entries, want more: '%s'", rec->n, want);
                if (!streq(rec->log[i], want))
                        fail_msg("log[%zu] is '%s', want '%s'", i, rec->log[i], want);
                i++;
        }
        va_end(ap);
        if (i != rec->n)
                fail_msg("log has %zu entries, want %zu (next: '%s')", rec->n, i, rec->log[i]);
}

/* Scripts keep every request open; tests answer from their bodies. */
static void keep_open(fake *f, fake_req *r, size_t idx) {
}

/* ---- watch tests ------------------------------------------------------------ */

static void test_list_then_watch(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;
        kube_store *st;
        kube_watch_stats s;
        const char *ts;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        assert_false(kube_watch_is_synced(w));
        run_until_requests(f, 1, 5 * USEC_PER_SEC);

        /* The first list comes from the watch cache. */
        assert_false(is_watch(&f->reqs[0]));
        assert_string_equal(param(f->reqs[0].url, "resourceVersion"), "0");
        assert_string_equal(param(f->reqs[0].url, "labelSelector"),
                            "app%3Dballast%2Ctier%20in%20%28a%2Cb%29");
        assert_non_null(strstr(f->reqs[0].url, "/api/v1/namespaces/ns/configmaps?"));
        assert_string_equal(f->reqs[0].bearer, "t0");
        reply_list(&f->reqs[0], "100", "a:90", "b:95", NULL);

        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        assert_true(kube_watch_is_synced(w));
        assert_int_equal(rec.synced, 1);
        assert_log(&rec, "add a 90", "add b 95", NULL);

        /* Then the watch, from the list's RV, with bookmarks and a random
         * timeout in [300, 600] plus a 30 s hard limit. */
        assert_true(is_watch(&f->reqs[1]));
        assert_string_equal(param(f->reqs[1].url, "resourceVersion"), "100");
        assert_string_equal(param(f->reqs[1].url, "allowWatchBookmarks"), "true");
        assert_string_equal(param(f->reqs[1].url, "labelSelector"),
                            "app%3Dballast%2Ctier%20in%20%28a%2Cb%29");
        ts = param(f->reqs[1].url, "timeoutSeconds");
        assert_non_null(ts);
        assert_in_range(atoi(ts), 300, 600);
        assert_int_equal(f->reqs[1].timeout_usec, (uint64_t) (atoi(ts) + 30) * USEC_PER_SEC);

        send_event(&f->reqs[1], "ADDED", "c", "101");
        send_event(&f->reqs[1], "MODIFIED", "a", "102");
        send_event(&f->reqs[1], "DELETED", "b", "103");
        assert_string_equal(kube_watch_get_resource_version(w), "103");
        send_bookmark(&f->reqs[1], "150");
        run_for(f, 10 * USEC_PER_MSEC);

        assert_log(&rec, "add a 90", "add b 95", "add c 101", "update(90) a 102", "delete b 103",
                   NULL);
        assert_string_equal(kube_watch_get_resource_version(w), "150");
        st = kube_watch_get_store(w);
        assert_int_equal(kube_store_count(st), 2);
        assert_string_equal(
                jsonx_get_string(kube_store_get(st, "ns/a"), "metadata.resourceVersion"), "102");
        assert_null(kube_store_get(st, "ns/b"));
        assert_non_null(kube_store_get(st, "ns/c"));
        /* List items got their kind and apiVersion filled in. */
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.lists, 1);
        assert_int_equal(s.watches, 1);
        assert_int_equal(s.events, 3);
        assert_int_equal(s.bookmarks, 1);
        assert_int_equal(s.failures, 0);
        assert_int_equal(rec.errors, 0);

        kube_watch_free(w);
        fake_free(f);
}

static void test_list_items_get_kind(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;
        json_object *o;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", "a:90", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        o = kube_store_get(kube_watch_get_store(w), "ns/a");
        assert_non_null(o);
        assert_string_equal(jsonx_get_string(o, "kind"), "ConfigMap");
        assert_string_equal(jsonx_get_string(o, "apiVersion"), "v1");
        kube_watch_free(w);
        fake_free(f);
}

static void test_bookmark_then_resume(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", "a:90", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        send_event(&f->reqs[1], "ADDED", "x", "120");
        send_bookmark(&f->reqs[1], "777");
        /* The connection drops. */
        drop(&f->reqs[1], -ECONNRESET);

        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        /* Resumed without a relist, from the bookmark's RV. */
        assert_true(is_watch(&f->reqs[2]));
        assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "777");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.lists, 1);
        assert_int_equal(s.watches, 2);
        assert_int_equal(s.failures, 1);
        assert_int_equal(rec.last_error, -ECONNRESET);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        kube_watch_free(w);
        fake_free(f);
}

static const char status_410[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"too old resource version: 100 (200)\",\"reason\":\"Expired\",\"code\":410}";

static void test_gone_status_relists(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", "a:90", "b:95", "c:96", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        /* The watch is refused with HTTP 410. */
        reply(&f->reqs[1], 410, status_410, NULL);
        run_until_requests(f, 3, 5 * USEC_PER_SEC);

        /* A relist, as a consistent read (no resourceVersion). */
        assert_false(is_watch(&f->reqs[2]));
        assert_null(param(f->reqs[2].url, "resourceVersion"));
        /* b changed, c is gone, d is new. */
        reply_list(&f->reqs[2], "300", "a:90", "b:250", "d:260", NULL);
        run_until_requests(f, 4, 5 * USEC_PER_SEC);

        assert_log(&rec, "add a 90", "add b 95", "add c 96", "update(95) b 250", "add d 260",
                   "delete c 96", NULL);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 3);
        assert_null(kube_store_get(kube_watch_get_store(w), "ns/c"));
        assert_true(is_watch(&f->reqs[3]));
        assert_string_equal(param(f->reqs[3].url, "resourceVersion"), "300");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.relists_gone, 1);
        assert_int_equal(s.lists, 2);
        assert_int_equal(rec.synced, 1); /* on_synced only once */
        assert_int_equal(rec.last_error, -EGONE);
        kube_watch_free(w);
        fake_free(f);
}

static void test_gone_error_event_relists(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;
        _cleanup_free_ char *ev = NULL;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", "a:90", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        /* 200, then an ERROR event with code 410; the server does not even
         * close the stream. The client must drop it and relist. */
        assert_int_equal(http_fake_respond(f->reqs[1].req, 200, NULL), 0);
        assert_int_equal(asprintf(&ev, "{\"type\":\"ERROR\",\"object\":%s}", status_410) >= 0, 1);
        assert_int_equal(send_line(&f->reqs[1], ev), -ECANCELED);
        f->reqs[1].req = NULL; /* cancelled by the client */

        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        assert_false(is_watch(&f->reqs[2]));
        assert_null(param(f->reqs[2].url, "resourceVersion"));
        reply_list(&f->reqs[2], "300", NULL); /* everything is gone */
        run_until_requests(f, 4, 5 * USEC_PER_SEC);
        assert_log(&rec, "add a 90", "delete a 90", NULL);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 0);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.relists_gone, 1);
        kube_watch_free(w);
        fake_free(f);
}

static void test_error_event_other_backs_off(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        send_event(&f->reqs[1], "ADDED", "a", "110");
        assert_int_equal(send_line(&f->reqs[1],
                                   "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                                   "\"code\":500,\"message\":\"internal error\"}}"),
                         -ECANCELED);
        f->reqs[1].req = NULL;
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        /* Not a relist: the watch resumes from the last RV. */
        assert_true(is_watch(&f->reqs[2]));
        assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "110");
        assert_int_equal(rec.last_error, -EAGAIN);
        assert_string_equal(rec.last_message, "internal error");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.relists_gone, 0);
        assert_int_equal(s.failures, 1);
        kube_watch_free(w);
        fake_free(f);
}

static void test_429_retry_after(void **state) {
        static const char *const ra1[] = {"Content-Type: application/json", "Retry-After: 1", NULL};
        static const char *const ra3[] = {"Content-Type: application/json", "Retry-After: 3", NULL};
        static const char body[] = "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\","
                                   "\"code\":429,\"message\":\"slow down\"}";
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;
        uint64_t t0;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        t0 = loop_now(f->e);
        reply(&f->reqs[1], 429, body, ra1);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.throttled, 1);
        assert_int_equal(s.last_delay_usec, 1 * USEC_PER_SEC);
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        /* Waited for Retry-After on the loop's clock, then resumed the watch. */
        assert_true(f->reqs[2].at - t0 >= 1 * USEC_PER_SEC);
        assert_true(is_watch(&f->reqs[2]));
        assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "100");
        assert_int_equal(rec.last_error, -EAGAIN);

        /* Retry-After: 3 arms a 3 s wait: no request for 2.5 s. */
        reply(&f->reqs[2], 429, body, ra3);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.last_delay_usec, 3 * USEC_PER_SEC);
        assert_int_equal(s.throttled, 2);
        run_for(f, 2500 * USEC_PER_MSEC);
        assert_int_equal(f->n, 3);
        kube_watch_free(w);
        fake_free(f);
}

static void test_backoff_grows_and_resets(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;
        uint64_t window = 20 * USEC_PER_MSEC;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);

        for (size_t i = 1; i <= 6; i++) {
                run_until_requests(f, i + 1, 5 * USEC_PER_SEC);
                assert_true(is_watch(&f->reqs[i]));
                if (i >= 2) {
                        /* The previous delay was within its window and was
                         * actually waited. */
                        kube_watch_get_stats(w, &s);
                        assert_true(s.last_delay_usec <= window);
                        assert_true(f->reqs[i].at - f->reqs[i - 1].at + USEC_PER_MSEC >=
                                    s.last_delay_usec);
                        window = MIN(window * 2, 80 * USEC_PER_MSEC);
                }
                reply(&f->reqs[i], 503, "<html>503 Service Unavailable</html>", NULL);
                kube_watch_get_stats(w, &s);
                assert_int_equal(s.consecutive_failures, i);
                assert_int_equal(s.failures, i);
                assert_int_equal(rec.last_error, -EAGAIN);
                assert_non_null(strstr(rec.last_message, "503"));
        }
        /* The window is capped: 6 failures, never above 80 ms. */
        kube_watch_get_stats(w, &s);
        assert_true(s.last_delay_usec <= 80 * USEC_PER_MSEC);

        /* A working watch resets the failure count. */
        run_until_requests(f, 8, 5 * USEC_PER_SEC);
        send_event(&f->reqs[7], "ADDED", "a", "101");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.consecutive_failures, 0);
        assert_int_equal(s.lists, 1); /* never relisted */
        kube_watch_free(w);
        fake_free(f);
}

static void test_list_failure_backs_off_and_relists(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        drop(&f->reqs[0], -ECONNREFUSED);
        assert_int_equal(rec.last_error, -ECONNREFUSED);
        assert_false(kube_watch_is_synced(w));
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        assert_false(is_watch(&f->reqs[1]));
        assert_string_equal(param(f->reqs[1].url, "resourceVersion"), "0");
        reply_list(&f->reqs[1], "5", "a:4", NULL);
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        assert_true(kube_watch_is_synced(w));
        assert_true(is_watch(&f->reqs[2]));
        kube_watch_free(w);
        fake_free(f);
}

static void test_short_watch_is_failure(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        /* 200 and an immediate clean end, no events. */
        reply(&f->reqs[1], 200, "", NULL);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.short_watches, 1);
        assert_int_equal(s.failures, 1);
        assert_int_equal(s.consecutive_failures, 1);
        assert_non_null(strstr(rec.last_message, "without events"));

        /* A watch that delivered events and then ended is a normal end: it is
         * restarted at once, with no failure counted. */
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        send_event(&f->reqs[2], "ADDED", "a", "101");
        reply(&f->reqs[2], 200, "", NULL);
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.short_watches, 1);
        assert_int_equal(s.failures, 1);
        assert_int_equal(s.last_delay_usec, 0);
        run_until_requests(f, 4, 5 * USEC_PER_SEC);
        assert_string_equal(param(f->reqs[3].url, "resourceVersion"), "101");
        kube_watch_free(w);
        fake_free(f);
}

static void test_oversize_event_restarts_watch(void **state) {
        kube_watch_opts o = {
                .resource = &KUBE_RESOURCE_CONFIGMAPS,
                .namespace = "ns",
                .max_event_size = 300,
                .backoff_base_usec = 10 * USEC_PER_MSEC,
                .backoff_cap_usec = 10 * USEC_PER_MSEC,
        };
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        char big[1024];
        kube_watch *w;
        int n;

        f->script = keep_open;
        w = watch_new(f, &rec, &o);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        send_event(&f->reqs[1], "ADDED", "a", "101");
        n = snprintf(big, sizeof(big),
                     "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"b\"},"
                     "\"data\":{\"x\":\"%0400d\"}}}\n",
                     0);
        assert_int_equal(http_fake_send(f->reqs[1].req, big, (size_t) n), -EFBIG);
        f->reqs[1].req = NULL; /* the transfer was aborted */
        assert_int_equal(rec.last_error, -EFBIG);
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        assert_true(is_watch(&f->reqs[2]));
        assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "101");
        assert_log(&rec, "add a 101", NULL);
        kube_watch_free(w);
        fake_free(f);
}

static void test_garbage_and_truncation_restart_watch(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);

        send_event(&f->reqs[1], "ADDED", "a", "101");
        assert_int_equal(send_line(&f->reqs[1], "this is not json"), -EBADMSG);
        f->reqs[1].req = NULL;
        assert_int_equal(rec.last_error, -EBADMSG);
        assert_non_null(strstr(rec.last_message, "this is not json"));

        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "101");
        send_event(&f->reqs[2], "ADDED", "b", "102");
        /* A final event cut in the middle. */
        assert_int_equal(http_fake_send(f->reqs[2].req, "{\"type\":\"ADDED\",\"obj", 20), 0);
        drop(&f->reqs[2], 0);
        assert_int_equal(rec.last_error, -EBADMSG);
        assert_non_null(strstr(rec.last_message, "truncated"));

        run_until_requests(f, 4, 5 * USEC_PER_SEC);
        assert_string_equal(param(f->reqs[3].url, "resourceVersion"), "102");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.failures, 2);
        assert_int_equal(s.lists, 1);
        assert_log(&rec, "add a 101", "add b 102", NULL);
        kube_watch_free(w);
        fake_free(f);
}

static void test_non_json_error_body(void **state) {
        static const char *const html[] = {"Content-Type: text/html", NULL};
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        reply(&f->reqs[1], 502,
              "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n",
              html);
        assert_int_equal(rec.last_error, -EAGAIN);
        assert_non_null(strstr(rec.last_message, "HTTP 502"));
        assert_non_null(strstr(rec.last_message, "502 Bad Gateway"));
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        assert_true(is_watch(&f->reqs[2]));
        kube_watch_free(w);
        fake_free(f);
}

static void test_free_from_callback(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {.free_on_add = true};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, NULL);
        rec.self = &w;
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[0], "100", "a:1", "b:2", NULL);
        /* on_add freed the watch after the first object: no more callbacks,
         * no watch request, no crash. */
        assert_null(w);
        run_for(f, 50 * USEC_PER_MSEC);
        assert_int_equal(f->n, 1);
        assert_log(&rec, "add a 1", NULL);

        /* The same from inside a streamed event. */
        rec = (recorder){};
        w = watch_new(f, &rec, NULL);
        rec.self = &w;
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        reply_list(&f->reqs[1], "100", NULL);
        run_until_requests(f, 3, 5 * USEC_PER_SEC);
        rec.free_on_add = true;
        assert_int_equal(send_line(&f->reqs[2], "{\"type\":\"ADDED\",\"object\":{\"metadata\":{"
                                                "\"name\":\"x\",\"namespace\":\"ns\"}}}\n"
                                                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{"
                                                "\"name\":\"y\",\"namespace\":\"ns\"}}}"),
                         -ECANCELED);
        f->reqs[2].req = NULL;
        assert_null(w);
        assert_log(&rec, "add x n/a", NULL);
        run_for(f, 50 * USEC_PER_MSEC);
        assert_int_equal(f->n, 3);
        fake_free(f);
}

static void test_node_field_selector(void **state) {
        kube_watch_opts o = {
                .resource = &KUBE_RESOURCE_NODES,
                .namespace = "ignored",
                .field_selector = "metadata.name=node-1",
        };
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, &o);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        assert_non_null(strstr(f->reqs[0].url, "https://fake.invalid:6443/api/v1/nodes?"));
        assert_string_equal(param(f->reqs[0].url, "fieldSelector"), "metadata.name%3Dnode-1");
        reply(&f->reqs[0], 200,
              "{\"kind\":\"NodeList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"
              "\"9\"},\"items\":[{\"metadata\":{\"name\":\"node-1\",\"resourceVersion\":\"8\"}}]}",
              NULL);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        assert_non_null(kube_store_get(kube_watch_get_store(w), "node-1"));
        assert_string_equal(
                jsonx_get_string(kube_store_get(kube_watch_get_store(w), "node-1"), "kind"),
                "Node");
        assert_string_equal(param(f->reqs[1].url, "fieldSelector"), "metadata.name%3Dnode-1");
        kube_watch_free(w);
        fake_free(f);
}

/* ---- token rotation ----------------------------------------------------------- */

static char tmpdir[64];

static void write_token(const char *token) {
        char path[128], tmp[140];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/token", tmpdir);
        snprintf(tmp, sizeof(tmp), "%s/.token.tmp", tmpdir);
        fp = fopen(tmp, "we");
        assert_non_null(fp);
        fprintf(fp, "%s\n", token);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(rename(tmp, path), 0); /* as the kubelet does: atomically */
}

/* 401 for "old", 200 for anything else. */
static void script_auth(fake *f, fake_req *r, size_t idx) {
        if (r->bearer && streq(r->bearer, "old")) {
                write_token("new"); /* the kubelet rotated it meanwhile */
                reply(r, 401,
                      "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401,\"message\":"
                      "\"Unauthorized\"}",
                      NULL);
                return;
        }
        if (!is_watch(r) && strstr(r->url, "configmaps?"))
                reply_list(r, "100", NULL);
        else if (!is_watch(r))
                reply(r, 200, "{\"metadata\":{\"name\":\"x\"}}", NULL);
}

static void test_401_reloads_token(void **state) {
        _cleanup_json_ json_object *obj = NULL;
        char path[128];
        kube_client_stats cs;
        kube_watch_stats ws;
        kube_config *cfg = NULL;
        err_info e;
        fake *f;

        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-kube-watch.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        snprintf(path, sizeof(path), "%s/token", tmpdir);
        write_token("old");
        {
                char ca[160];
                FILE *fp;

                snprintf(ca, sizeof(ca), "%s/ca.crt", tmpdir);
                fp = fopen(ca, "we");
                assert_non_null(fp);
                fputs("-----BEGIN CERTIFICATE-----\n", fp);
                assert_int_equal(fclose(fp), 0);
        }
        /* A client from the in-cluster config (token file in a temp dir). */
        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1), 0);
        assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "443", 1), 0);
        assert_int_equal(kube_config_load_incluster(tmpdir, &cfg, &e), 0);
        assert_string_equal(cfg->token, "old");
        f = fake_new_with(cfg, NULL);
        cfg = kube_config_free(cfg);
        f->script = script_auth;
        /* A plain request: 401 with "old", the file now says "new", one retry. */
        assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "x", NULL,
                                              &obj, &e),
                         0);
        assert_string_equal(jsonx_get_string(obj, "metadata.name"), "x");
        assert_int_equal(f->n, 2);
        assert_string_equal(f->reqs[0].bearer, "old");
        assert_string_equal(f->reqs[1].bearer, "new");
        assert_non_null(strstr(f->reqs[0].url, "https://10.0.0.1:443/api/v1/"));
        kube_client_get_stats(f->client, &cs);
        assert_int_equal(cs.auth_retries, 1);
        assert_int_equal(cs.token_reloads, 1);
        fake_free(f);

        /* A watch: the list is retried like any request; an open watch that
         * ends with 401 re-reads the token and starts again at once. */
        write_token("old");
        f = fake_new(path, NULL);
        f->script = script_auth;
        {
                recorder rec = {};
                kube_watch *w = watch_new(f, &rec, NULL);

                run_until_requests(f, 3, 5 * USEC_PER_SEC);
                assert_string_equal(f->reqs[0].bearer, "old");
                assert_string_equal(f->reqs[1].bearer, "new");
                assert_true(is_watch(&f->reqs[2]));
                assert_string_equal(f->reqs[2].bearer, "new");

                write_token("newer");
                reply(&f->reqs[2], 401, "{\"kind\":\"Status\",\"code\":401}", NULL);
                kube_watch_get_stats(w, &ws);
                assert_int_equal(ws.last_delay_usec, 0);
                run_until_requests(f, 4, 5 * USEC_PER_SEC);
                assert_true(is_watch(&f->reqs[3]));
                assert_string_equal(f->reqs[3].bearer, "newer");
                assert_int_equal(rec.last_error, -EACCES);
                kube_watch_free(w);
        }
        fake_free(f);

        /* Periodic reload without any 401. */
        {
                kube_client_opts o = {.qps = -1, .token_reload_usec = 1};
                _cleanup_json_ json_object *o1 = NULL, *o2 = NULL;

                write_token("p1");
                f = fake_new(path, &o);
                f->script = script_auth;
                assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns",
                                                      "x", NULL, &o1, &e),
                                 0);
                write_token("p2");
                run_for(f, 2 * USEC_PER_MSEC);
                assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns",
                                                      "x", NULL, &o2, &e),
                                 0);
                assert_string_equal(f->reqs[0].bearer, "p1");
                assert_string_equal(f->reqs[1].bearer, "p2");
                kube_client_get_stats(f->client, &cs);
                assert_true(cs.token_reloads >= 1);
                assert_int_equal(cs.auth_retries, 0);
                fake_free(f);
        }

        {
                char cmd[128];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
                assert_int_equal(system(cmd), 0);
        }
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_PORT"), 0);
}

static void script_always_401(fake *f, fake_req *r, size_t idx) {
        reply(r, 401, "{\"kind\":\"Status\",\"code\":401,\"message\":\"Unauthorized\"}", NULL);
}

static void test_401_retried_once(void **state) {
        char path[128];
        fake *f;
        err_info e;
        json_object *obj = NULL;

        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-kube-watch.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        snprintf(path, sizeof(path), "%s/token", tmpdir);
        write_token("tok");
        f = fake_new(path, NULL);
        f->script = script_always_401;
        assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "x", NULL,
                                              &obj, &e),
                         -EACCES);
        assert_null(obj);
        assert_int_equal(e.http_status, 401);
        assert_int_equal(f->n, 2);
        fake_free(f);

        /* Without a token file, a 401 is final at once. */
        f = fake_new(NULL, NULL);
        f->script = script_always_401;
        assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "x", NULL,
                                              &obj, &e),
                         -EACCES);
        assert_int_equal(f->n, 1);
        fake_free(f);
        {
                char cmd[128];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
                assert_int_equal(system(cmd), 0);
        }
}

/* ---- streaming lists ------------------------------------------------------------ */

static const kube_watch_opts streaming_opts = {
        .resource = &KUBE_RESOURCE_CONFIGMAPS,
        .namespace = "ns",
        .label_selector = "app=ballast",
        .backoff_base_usec = 20 * USEC_PER_MSEC,
        .backoff_cap_usec = 80 * USEC_PER_MSEC,
        .streaming_list = true,
};

static bool is_streaming_list(const fake_req *r) {
        const char *s;

        if (!is_watch(r))
                return false;
        s = param(r->url, "sendInitialEvents"); /* a static buffer: use it now */
        if (!s)
                return false;
        assert_string_equal(s, "true");
        assert_string_equal(param(r->url, "resourceVersionMatch"), "NotOlderThan");
        assert_string_equal(param(r->url, "allowWatchBookmarks"), "true");
        return true;
}

static void send_end_bookmark(fake_req *r, const char *rv) {
        char s[256];

        snprintf(s, sizeof(s),
                 "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{"
                 "\"resourceVersion\":\"%s\",\"annotations\":{\"k8s.io/initial-events-end\":"
                 "\"true\"}}}}",
                 rv);
        assert_int_equal(send_line(r, s), 0);
}

static void test_streaming_list_replaces_store(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch_stats s;
        kube_watch *w;
        _cleanup_free_ char *ev = NULL;

        f->script = keep_open;
        w = watch_new(f, &rec, &streaming_opts);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);

        /* One request: a watch that lists first, as a consistent read. */
        assert_true(is_streaming_list(&f->reqs[0]));
        assert_null(param(f->reqs[0].url, "resourceVersion"));
        assert_string_equal(param(f->reqs[0].url, "labelSelector"), "app%3Dballast");
        assert_int_equal(http_fake_respond(f->reqs[0].req, 200, NULL), 0);
        send_event(&f->reqs[0], "ADDED", "a", "90");
        send_event(&f->reqs[0], "ADDED", "b", "95");
        /* A progress bookmark without the annotation ends nothing. */
        send_bookmark(&f->reqs[0], "97");
        /* Until the end bookmark nothing is applied: the list is not whole. */
        assert_int_equal(rec.n, 0);
        assert_int_equal(rec.synced, 0);
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 0);
        assert_string_equal(kube_watch_get_resource_version(w), "");

        send_end_bookmark(&f->reqs[0], "100");
        assert_int_equal(rec.synced, 1);
        assert_true(kube_watch_is_synced(w));
        assert_log(&rec, "add a 90", "add b 95", NULL);
        assert_string_equal(kube_watch_get_resource_version(w), "100");
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);

        /* The same request goes on as the watch. */
        send_event(&f->reqs[0], "MODIFIED", "a", "101");
        assert_string_equal(kube_watch_get_resource_version(w), "101");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.lists, 1);
        assert_int_equal(s.streaming_lists, 1);
        assert_int_equal(s.watches, 1);
        assert_int_equal(s.events, 1);
        assert_int_equal(f->n, 1);

        /* A 410 relists by streaming again, consistently; b is gone, c new,
         * a unchanged (no update). */
        assert_int_equal(asprintf(&ev, "{\"type\":\"ERROR\",\"object\":%s}", status_410) >= 0, 1);
        assert_int_equal(send_line(&f->reqs[0], ev), -ECANCELED);
        f->reqs[0].req = NULL;
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        assert_true(is_streaming_list(&f->reqs[1]));
        assert_null(param(f->reqs[1].url, "resourceVersion"));
        assert_int_equal(http_fake_respond(f->reqs[1].req, 200, NULL), 0);
        send_event(&f->reqs[1], "ADDED", "c", "150");
        send_event(&f->reqs[1], "ADDED", "a", "101");
        send_end_bookmark(&f->reqs[1], "200");
        assert_log(&rec, "add a 90", "add b 95", "update(90) a 101", "add c 150", "delete b 95",
                   NULL);
        assert_int_equal(rec.synced, 1); /* on_synced only once */
        assert_null(kube_store_get(kube_watch_get_store(w), "ns/b"));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        assert_string_equal(kube_watch_get_resource_version(w), "200");
        kube_watch_get_stats(w, &s);
        assert_int_equal(s.lists, 2);
        assert_int_equal(s.streaming_lists, 2);
        assert_int_equal(s.relists_gone, 1);
        kube_watch_free(w);
        fake_free(f);
}

/* The store keeps the transform's output; callbacks see the objects as they
 * came (data intact), also from a streaming list's initial events. */
static json_object *data_to_marker(json_object *o, void *userdata) {
        json_object *copy = NULL;

        (*(unsigned *) userdata)++;
        assert_int_equal(json_object_deep_copy(o, &copy, NULL), 0);
        json_object_object_add(copy, "data", json_object_new_string("dropped"));
        return copy;
}

static void on_add_check_data(kube_watch *w, json_object *obj, void *userdata) {
        unsigned *seen = userdata;

        assert_true(json_object_is_type(jsonx_get(obj, "data"), json_type_object));
        assert_null(jsonx_get(obj, "metadata.managedFields"));
        seen[1]++;
}

static void test_streaming_list_into_compact_store(void **state) {
        fake *f = fake_new(NULL, NULL);
        kube_watch_opts o = streaming_opts;
        unsigned seen[2] = {0, 0}; /* [0]: transforms, [1]: adds */
        json_object *got;
        kube_watch *w = NULL;
        static const char with_mf[] =
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"m\",\"namespace\":"
                "\"ns\",\"resourceVersion\":\"91\",\"managedFields\":[{\"manager\":\"x\"}]},"
                "\"data\":{\"k\":\"v\"}}}";

        f->script = keep_open;
        o.on_add = on_add_check_data;
        o.userdata = seen;
        assert_int_equal(kube_watch_start(f->client, &o, &w), 0);
        assert_int_equal(kube_store_set_compact(kube_watch_get_store(w), data_to_marker, seen), 0);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        assert_true(is_streaming_list(&f->reqs[0]));
        assert_int_equal(http_fake_respond(f->reqs[0].req, 200, NULL), 0);
        send_event(&f->reqs[0], "ADDED", "a", "90");
        assert_int_equal(send_line(&f->reqs[0], with_mf), 0);
        send_event(&f->reqs[0], "ADDED", "b", "95");
        send_event(&f->reqs[0], "DELETED", "b", "96");
        /* Collected, not yet in the store, and not transformed yet. */
        assert_int_equal(seen[0], 0);
        send_end_bookmark(&f->reqs[0], "100");
        assert_int_equal(seen[1], 2);
        assert_int_equal(seen[0], 2); /* once per stored object, not twice */
        got = kube_store_get(kube_watch_get_store(w), "ns/m");
        assert_non_null(got);
        assert_string_equal(strna(json_object_get_string(jsonx_get(got, "data"))), "dropped");
        assert_null(jsonx_get(got, "metadata.managedFields"));
        assert_false(kube_store_contains(kube_watch_get_store(w), "ns/b"));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 2);
        kube_watch_free(w);
        fake_free(f);
}

/* The watch cache ignores limit for resourceVersion=0, so a paginated list
 * is a consistent read, and follows continue tokens. */
static void test_paginated_list_is_consistent(void **state) {
        fake *f = fake_new(NULL, NULL);
        kube_watch_opts o = {
                .resource = &KUBE_RESOURCE_CONFIGMAPS,
                .namespace = "ns",
                .page_size = 2,
        };
        recorder rec = {};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, &o);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        assert_false(is_watch(&f->reqs[0]));
        assert_string_equal(param(f->reqs[0].url, "limit"), "2");
        assert_null(param(f->reqs[0].url, "resourceVersion"));
        kube_watch_free(w);
        fake_free(f);
}

static void test_streaming_list_cut_short(void **state) {
        fake *f = fake_new(NULL, NULL);
        recorder rec = {};
        kube_watch *w;

        f->script = keep_open;
        w = watch_new(f, &rec, &streaming_opts);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        assert_int_equal(http_fake_respond(f->reqs[0].req, 200, NULL), 0);
        send_event(&f->reqs[0], "ADDED", "a", "90");
        drop(&f->reqs[0], -ECONNRESET);

        /* Nothing of the partial list was applied; it is asked for again. */
        assert_int_equal(rec.n, 0);
        assert_false(kube_watch_is_synced(w));
        assert_int_equal(rec.last_error, -ECONNRESET);
        run_until_requests(f, 2, 5 * USEC_PER_SEC);
        assert_true(is_streaming_list(&f->reqs[1]));
        assert_null(param(f->reqs[1].url, "resourceVersion"));
        assert_int_equal(http_fake_respond(f->reqs[1].req, 200, NULL), 0);
        send_end_bookmark(&f->reqs[1], "120");
        assert_true(kube_watch_is_synced(w));
        assert_int_equal(kube_store_count(kube_watch_get_store(w)), 0);
        kube_watch_free(w);
        fake_free(f);
}

static const char status_422[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
        "\"ListOptions.meta.k8s.io \\\"\\\" is invalid: sendInitialEvents: Forbidden: "
        "sendInitialEvents is forbidden for watch unless the WatchList feature gate is "
        "enabled\",\"reason\":\"Invalid\",\"code\":422}";
static const char status_400[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
                                 "\"Failure\",\"message\":\"bad request\",\"reason\":"
                                 "\"BadRequest\",\"code\":400}";

static void test_streaming_list_refused_falls_back(void **state) {
        for (unsigned i = 0; i < 2; i++) {
                fake *f = fake_new(NULL, NULL);
                recorder rec = {};
                kube_watch_stats s;
                kube_watch *w;

                f->script = keep_open;
                w = watch_new(f, &rec, &streaming_opts);
                run_until_requests(f, 1, 5 * USEC_PER_SEC);
                assert_true(is_streaming_list(&f->reqs[0]));
                reply(&f->reqs[0], i == 0 ? 422 : 400, i == 0 ? status_422 : status_400, NULL);
                assert_int_equal(rec.last_error, -EINVAL);

                /* At once: LIST (from the watch cache), then a plain WATCH. */
                run_until_requests(f, 2, 5 * USEC_PER_SEC);
                assert_false(is_watch(&f->reqs[1]));
                assert_string_equal(param(f->reqs[1].url, "resourceVersion"), "0");
                reply_list(&f->reqs[1], "100", "a:90", NULL);
                run_until_requests(f, 3, 5 * USEC_PER_SEC);
                assert_true(kube_watch_is_synced(w));
                assert_true(is_watch(&f->reqs[2]));
                assert_null(param(f->reqs[2].url, "sendInitialEvents"));
                assert_string_equal(param(f->reqs[2].url, "resourceVersion"), "100");

                /* Remembered: the relist after a 410 is a LIST too. */
                reply(&f->reqs[2], 410, status_410, NULL);
                run_until_requests(f, 4, 5 * USEC_PER_SEC);
                assert_false(is_watch(&f->reqs[3]));
                assert_null(param(f->reqs[3].url, "resourceVersion"));
                reply_list(&f->reqs[3], "200", NULL);
                run_until_requests(f, 5, 5 * USEC_PER_SEC);
                assert_log(&rec, "add a 90", "delete a 90", NULL);
                kube_watch_get_stats(w, &s);
                assert_int_equal(s.lists, 2);
                assert_int_equal(s.streaming_lists, 0);
                assert_int_equal(rec.synced, 1);
                kube_watch_free(w);
                fake_free(f);
        }
}

/* ---- resumption after an outage -------------------------------------------------- */

/* A server that is up (streaming lists answered at once with an empty list,
 * kept open) or down (connections refused), for many watches at once. */
typedef struct outage_server {
        bool down;
        uint64_t up_at;   /* when it came back */
        size_t n_after;   /* requests since then */
        uint64_t *after;  /* their arrival, relative to up_at */
        size_t n_resumed; /* of which streaming lists from a resourceVersion */
} outage_server;

static void script_outage(fake *f, fake_req *r, size_t idx) {
        outage_server *srv = f->data;

        if (srv->down) {
                drop(r, -ECONNREFUSED);
                return;
        }
        if (srv->up_at > 0) {
                srv->after[srv->n_after++] = r->at - srv->up_at;
                if (is_streaming_list(r) && param(r->url, "resourceVersion"))
                        srv->n_resumed++;
        }
        assert_true(is_streaming_list(r));
        assert_int_equal(http_fake_respond(r->req, 200, NULL), 0);
        send_end_bookmark(r, "100");
}

#define OUTAGE_WATCHES 400
/* Real time on a loaded machine (CI runs these under ASan beside other
 * work): a window of seconds, so a loop that falls behind by a few hundred
 * milliseconds delays reconnections without changing what is asserted. A
 * late loop only moves arrivals later, out of the first tenth. */
#define OUTAGE_WINDOW_USEC (2 * USEC_PER_SEC)
#define OUTAGE_SLACK_USEC  (700 * USEC_PER_MSEC)

/* @no_jitter: the baseline. Returns how many reconnections came in the first
 * tenth of @window_usec after the return, after checking that each watch
 * came back exactly once and within the window. */
static size_t run_outage(bool no_jitter, uint64_t window_usec, uint64_t outage_usec,
                         uint64_t *ret_max) {
        kube_watch_opts o = streaming_opts;
        uint64_t after[OUTAGE_WATCHES * 2] = {};
        outage_server srv = {.after = after};
        kube_watch *w[OUTAGE_WATCHES];
        recorder rec[OUTAGE_WATCHES] = {};
        uint64_t max = 0;
        size_t early = 0, n_open;
        fake *f = fake_new(NULL, NULL);

        o.resume_splay_usec = window_usec;
        o.no_jitter = no_jitter;
        f->script = script_outage;
        f->data = &srv;
        for (size_t i = 0; i < OUTAGE_WATCHES; i++)
                w[i] = watch_new(f, &rec[i], &o);
        run_until_requests(f, OUTAGE_WATCHES, 5 * USEC_PER_SEC);
        run_for(f, 20 * USEC_PER_MSEC);
        for (size_t i = 0; i < OUTAGE_WATCHES; i++)
                assert_true(kube_watch_is_synced(w[i]));

        /* The server goes away: open watches are cut, new connections are
         * refused. */
        n_open = f->n;
        srv.down = true;
        for (size_t i = 0; i < n_open; i++)
                if (f->reqs[i].req)
                        drop(&f->reqs[i], -ECONNRESET);
        run_for(f, outage_usec);
        srv.down = false;
        srv.up_at = loop_now(f->e);
        run_for(f, window_usec + OUTAGE_SLACK_USEC);

        /* Each watch came back once: no probes once the server answers. */
        assert_int_equal(srv.n_after, OUTAGE_WATCHES);
        /* And resumed with one streaming list from its resourceVersion. */
        assert_int_equal(srv.n_resumed, OUTAGE_WATCHES);
        for (size_t i = 0; i < srv.n_after; i++) {
                max = MAX(max, after[i]);
                if (after[i] < window_usec / 10)
                        early++;
        }
        for (size_t i = 0; i < OUTAGE_WATCHES; i++) {
                kube_watch_stats s;

                kube_watch_get_stats(w[i], &s);
                assert_int_equal(s.outages, 1);
                assert_int_equal(s.streaming_lists, 2);
                assert_int_equal(s.relists_gone, 0);
                kube_watch_free(w[i]);
        }
        fake_free(f);
        *ret_max = max;
        return early;
}

static void test_resume_splay_spreads_reconnections(void **state) {
        uint64_t window = OUTAGE_WINDOW_USEC, max;
        size_t early;

        /* An outage longer than the window: the drawn point repeats every
         * window, and the first one after the return is what counts. */
        early = run_outage(false, window, window * 3 / 2, &max);
        /* Uniform: about 10% in the first tenth (40 ± 6). Backing off from the
         * return (or a renewal with uniform waits: 19%) would put more there. */
        assert_true(early <= OUTAGE_WATCHES * 16 / 100);
        assert_true(max <= window + OUTAGE_SLACK_USEC);
        /* Spread: the last came late in the window. */
        assert_true(max >= window * 8 / 10);

        /* A short outage: the same. */
        early = run_outage(false, window, window * 3 / 8, &max);
        assert_true(early <= OUTAGE_WATCHES * 16 / 100);
        assert_true(max <= window + OUTAGE_SLACK_USEC);
        assert_true(max >= window * 8 / 10);
}

static void test_resume_no_jitter_no_splay(void **state) {
        uint64_t window = OUTAGE_WINDOW_USEC, max;
        size_t early;

        /* The naive baseline: the backoff (no jitter, 80 ms cap) brings the
         * whole fleet back together, one backoff step after the return,
         * nowhere near the window's end. (How many within its first tenth
         * depends on how fast this machine handles 400 reconnections.) */
        /* (A short outage: without jitter the 400 watches retry every 80 ms,
         * each retry a request the fake keeps.) */
        early = run_outage(true, window, 300 * USEC_PER_MSEC, &max);
        assert_true(max < window / 2);
        assert_true(early > 0);
}

/* ---- requests ------------------------------------------------------------------ */

static void script_echo(fake *f, fake_req *r, size_t idx) {
        if (strstr(r->url, "/conflict"))
                reply(r, 409,
                      "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                      "\"message\":\"Operation cannot be fulfilled on configmaps \\\"conflict\\\": "
                      "the object has been modified; please apply your changes to the latest "
                      "version and try again\",\"reason\":\"Conflict\",\"code\":409}",
                      NULL);
        else if (strstr(r->url, "/html"))
                reply(r, 200, "<html>hello</html>", NULL);
        else if (streq(r->method, "DELETE"))
                reply(r, 200, "{\"kind\":\"Status\",\"status\":\"Success\"}", NULL);
        else
                reply(r, streq(r->method, "POST") ? 201 : 200,
                      r->body ?: "{\"kind\":\"ConfigMap\"}", NULL);
}

static json_object *parse(const char *s) {
        json_object *o = NULL;

        assert_int_equal(jsonx_parse(s, strlen(s), &o, NULL), 0);
        return o;
}

static void test_requests(void **state) {
        _cleanup_json_ json_object *obj = parse(
                "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c1\","
                "\"namespace\":\"other\",\"resourceVersion\":\"5\"},\"data\":{\"a\":\"b/c\"}}");
        _cleanup_json_ json_object *stale =
                parse("{\"metadata\":{\"name\":\"conflict\",\"resourceVersion\":\"1\"}}");
        kube_delete_opts dopts = {.uid = "u-1", .resource_version = "7"};
        kube_patch_opts popts = {.field_manager = "ballast"};
        fake *f = fake_new(NULL, NULL);
        json_object *out = NULL;
        err_info e;

        f->script = script_echo;

        assert_int_equal(
                kube_create_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, obj, &out, &e),
                0);
        assert_string_equal(f->reqs[0].method, "POST");
        assert_string_equal(f->reqs[0].url,
                            "https://fake.invalid:6443/api/v1/namespaces/other/configmaps");
        assert_string_equal(f->reqs[0].content_type, "application/json");
        assert_string_equal(jsonx_get_string(out, "data.a"), "b/c");
        assert_non_null(strstr(f->reqs[0].body, "\"b/c\"")); /* no "\/" escaping */
        json_object_put(TAKE_PTR(out));

        assert_int_equal(kube_update_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, obj,
                                                 "status", &out, &e),
                         0);
        assert_string_equal(f->reqs[1].method, "PUT");
        assert_string_equal(
                f->reqs[1].url,
                "https://fake.invalid:6443/api/v1/namespaces/other/configmaps/c1/status");
        assert_non_null(strstr(f->reqs[1].body, "\"resourceVersion\":\"5\""));
        json_object_put(TAKE_PTR(out));

        assert_int_equal(kube_update_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", stale,
                                                 NULL, &out, &e),
                         -ESTALE);
        assert_null(out);
        assert_string_equal(e.reason, "Conflict");
        assert_int_equal(e.http_status, 409);
        assert_non_null(strstr(e.message, "the object has been modified"));

        assert_int_equal(kube_patch_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, "c1",
                                                NULL, KUBE_PATCH_MERGE, "{\"data\":null}", 13,
                                                &popts, &out, &e),
                         0);
        assert_string_equal(f->reqs[3].method, "PATCH");
        assert_string_equal(f->reqs[3].content_type, "application/merge-patch+json");
        assert_string_equal(f->reqs[3].url, "https://fake.invalid:6443/api/v1/namespaces/ns/"
                                            "configmaps/c1?fieldManager=ballast");
        json_object_put(TAKE_PTR(out));

        assert_int_equal(kube_patch_object_sync(f->client, &KUBE_RESOURCE_LEASES, "kube-system",
                                                "l", NULL, KUBE_PATCH_JSON, "[]", 2, NULL, &out,
                                                &e),
                         0);
        assert_string_equal(f->reqs[4].content_type, "application/json-patch+json");
        assert_string_equal(f->reqs[4].url, "https://fake.invalid:6443/apis/coordination.k8s.io/"
                                            "v1/namespaces/kube-system/leases/l");
        json_object_put(TAKE_PTR(out));

        assert_int_equal(kube_apply_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, obj,
                                                NULL, "ballast-operator", true, &out, &e),
                         0);
        assert_string_equal(f->reqs[5].content_type, "application/apply-patch+yaml");
        assert_string_equal(f->reqs[5].url,
                            "https://fake.invalid:6443/api/v1/namespaces/other/configmaps/"
                            "c1?fieldManager=ballast-operator&force=true");
        json_object_put(TAKE_PTR(out));

        /* Apply without a field manager, or of an object without kind, is
         * refused before anything is sent. */
        assert_int_equal(kube_apply_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, obj,
                                                NULL, NULL, false, &out, &e),
                         -EINVAL);
        assert_int_equal(kube_apply_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", stale,
                                                NULL, "m", false, &out, &e),
                         -EINVAL);
        assert_int_equal(f->n, 6);

        assert_int_equal(kube_delete_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, NULL, "c1",
                                                 &dopts, &e),
                         0);
        assert_string_equal(f->reqs[6].method, "DELETE");
        assert_string_equal(f->reqs[6].url,
                            "https://fake.invalid:6443/api/v1/namespaces/ns/configmaps/c1");
        {
                _cleanup_json_ json_object *b = parse(f->reqs[6].body);

                assert_string_equal(jsonx_get_string(b, "kind"), "DeleteOptions");
                assert_string_equal(jsonx_get_string(b, "preconditions.uid"), "u-1");
                assert_string_equal(jsonx_get_string(b, "preconditions.resourceVersion"), "7");
        }

        /* A 200 whose body is not JSON. */
        assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "html",
                                              NULL, &out, &e),
                         -EBADMSG);
        assert_non_null(strstr(e.message, "<html>hello</html>"));

        /* Bad names never reach the wire. */
        assert_int_equal(kube_get_object_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "../x",
                                              NULL, &out, &e),
                         -EINVAL);
        assert_int_equal(f->n, 8);
        fake_free(f);
}

/* Pages of 2 out of 5 objects; the second continue token has expired when
 * @expire is set. */
typedef struct pager {
        bool expire;
        unsigned expired_once;
} pager;

static void script_pages(fake *f, fake_req *r, size_t idx) {
        pager *p = f->data;
        _cleanup_free_ char *cont =
                param(r->url, "continue") ? strdup(param(r->url, "continue")) : NULL;
        _cleanup_free_ char *limit = param(r->url, "limit") ? strdup(param(r->url, "limit")) : NULL;

        if (!limit) {
                /* The unpaginated restart after an expired token. */
                reply(r, 200,
                      "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                      "{\"resourceVersion\":\"60\"},\"items\":[{\"metadata\":{\"name\":\"z\"}}]}",
                      NULL);
                return;
        }
        assert_string_equal(limit, "2");
        if (!cont) {
                assert_string_equal(param(r->url, "resourceVersion"), "0");
                reply(r, 200,
                      "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{"
                      "\"resourceVersion\":\"50\",\"continue\":\"tok/1=\"},\"items\":["
                      "{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}",
                      NULL);
        } else if (streq(cont, "tok%2F1%3D")) {
                assert_null(param(r->url, "resourceVersion"));
                reply(r, 200,
                      "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{"
                      "\"resourceVersion\":\"50\",\"continue\":\"tok2\"},\"items\":["
                      "{\"metadata\":{\"name\":\"c\"}},{\"metadata\":{\"name\":\"d\"}}]}",
                      NULL);
        } else if (streq(cont, "tok2") && p->expire) {
                p->expired_once++;
                reply(r, 410,
                      "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\",\"message\":"
                      "\"The provided continue parameter is too old\"}",
                      NULL);
        } else if (streq(cont, "tok2")) {
                reply(r, 200,
                      "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{"
                      "\"resourceVersion\":\"50\",\"continue\":\"\"},\"items\":["
                      "{\"metadata\":{\"name\":\"e\"}}]}",
                      NULL);
        } else
                fail_msg("unexpected %s", r->url);
}

static void test_list_pagination(void **state) {
        kube_list_opts lo = {.limit = 2, .resource_version = "0", .label_selector = "x=y"};
        pager p = {};
        fake *f = fake_new(NULL, NULL);
        _cleanup_json_ json_object *list = NULL, *list2 = NULL;
        json_object *items;
        err_info e;

        f->script = script_pages;
        f->data = &p;
        assert_int_equal(
                kube_list_objects_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", &lo, &list, &e),
                0);
        assert_int_equal(f->n, 3);
        items = jsonx_get(list, "items");
        assert_int_equal(json_object_array_length(items), 5);
        assert_string_equal(jsonx_get_string(json_object_array_get_idx(items, 4), "metadata.name"),
                            "e");
        assert_string_equal(jsonx_get_string(json_object_array_get_idx(items, 0), "kind"),
                            "ConfigMap");
        assert_string_equal(jsonx_get_string(list, "metadata.resourceVersion"), "50");
        assert_string_equal(jsonx_get_string(list, "kind"), "ConfigMapList");
        assert_string_equal(param(f->reqs[1].url, "labelSelector"), "x%3Dy");

        /* An expired continue token: the list starts over in one piece. */
        p.expire = true;
        assert_int_equal(
                kube_list_objects_sync(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", &lo, &list2, &e),
                0);
        assert_int_equal(p.expired_once, 1);
        items = jsonx_get(list2, "items");
        assert_int_equal(json_object_array_length(items), 1);
        assert_string_equal(jsonx_get_string(list2, "metadata.resourceVersion"), "60");
        fake_free(f);
}

static void must_not_be_called(kube_client *c, int r, json_object *obj, const err_info *err,
                               void *userdata) {
        fail_msg("callback of a cancelled request was called");
}

static void test_rate_limit(void **state) {
        kube_client_opts o = {.qps = 10, .burst = 2};
        fake *f = fake_new(NULL, &o);
        kube_client_stats cs;
        kube_request *reqs[4];

        f->script = keep_open;
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(kube_get_object(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "x",
                                                 NULL, NULL, NULL, &reqs[i]),
                                 -EINVAL); /* done is required */
        for (size_t i = 0; i < 4; i++) {
                assert_int_equal(kube_call_start(f->client,
                                                 &(kube_call){.resource = &KUBE_RESOURCE_CONFIGMAPS,
                                                              .namespace = "ns"},
                                                 must_not_be_called, NULL, &reqs[i]),
                                 0);
        }
        kube_client_get_stats(f->client, &cs);
        assert_int_equal(cs.throttled, 2);
        run_until_requests(f, 4, 5 * USEC_PER_SEC);
        /* Burst of 2 at once, then one every 100 ms, started by a timer. */
        assert_true(f->reqs[1].at - f->reqs[0].at < 50 * USEC_PER_MSEC);
        assert_true(f->reqs[2].at - f->reqs[0].at >= 90 * USEC_PER_MSEC);
        assert_true(f->reqs[3].at - f->reqs[0].at >= 190 * USEC_PER_MSEC);
        /* Cancelled requests never call back. */
        for (size_t i = 0; i < 4; i++)
                kube_request_cancel(reqs[i]);
        run_for(f, 10 * USEC_PER_MSEC);
        fake_free(f);
}

static void test_client_free_with_pending(void **state) {
        kube_client_opts o = {.qps = 1, .burst = 1};
        fake *f = fake_new(NULL, &o);

        f->script = keep_open;
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(kube_get_object(f->client, &KUBE_RESOURCE_CONFIGMAPS, "ns", "x",
                                                 NULL, must_not_be_called, NULL, NULL),
                                 0);
        run_until_requests(f, 1, 5 * USEC_PER_SEC);
        /* One in flight, two queued: freeing the client cancels all. */
        fake_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_list_then_watch),
                cmocka_unit_test(test_list_items_get_kind),
                cmocka_unit_test(test_bookmark_then_resume),
                cmocka_unit_test(test_gone_status_relists),
                cmocka_unit_test(test_gone_error_event_relists),
                cmocka_unit_test(test_error_event_other_backs_off),
                cmocka_unit_test(test_429_retry_after),
                cmocka_unit_test(test_backoff_grows_and_resets),
                cmocka_unit_test(test_list_failure_backs_off_and_relists),
                cmocka_unit_test(test_short_watch_is_failure),
                cmocka_unit_test(test_oversize_event_restarts_watch),
                cmocka_unit_test(test_garbage_and_truncation_restart_watch),
                cmocka_unit_test(test_non_json_error_body),
                cmocka_unit_test(test_free_from_callback),
                cmocka_unit_test(test_node_field_selector),
                cmocka_unit_test(test_streaming_list_replaces_store),
                cmocka_unit_test(test_streaming_list_cut_short),
                cmocka_unit_test(test_streaming_list_into_compact_store),
                cmocka_unit_test(test_paginated_list_is_consistent),
                cmocka_unit_test(test_streaming_list_refused_falls_back),
                cmocka_unit_test(test_resume_splay_spreads_reconnections),
                cmocka_unit_test(test_resume_no_jitter_no_splay),
                cmocka_unit_test(test_401_reloads_token),
                cmocka_unit_test(test_401_retried_once),
                cmocka_unit_test(test_requests),
                cmocka_unit_test(test_list_pagination),
                cmocka_unit_test(test_rate_limit),
                cmocka_unit_test(test_client_free_with_pending),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
