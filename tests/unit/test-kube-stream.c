/* SPDX-License-Identifier: Apache-2.0 */

/* The watch-stream NDJSON parser and Status parsing. The parser must give the
 * same events however the bytes are split, and bad input must be an error,
 * never a crash. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "jsonx.h"
#include "kube.h"

#define MAX_EVENTS 64

typedef struct recorder {
        char *events[MAX_EVENTS]; /* "TYPE name rv" */
        size_t n;
        int fail_at; /* return an error from this event (1-based); 0: never */
} recorder;

static void recorder_clear(recorder *rec) {
        for (size_t i = 0; i < rec->n; i++)
                free(rec->events[i]);
        rec->n = 0;
}

static int record(kube_event_type type, json_object *obj, void *userdata) {
        recorder *rec = userdata;
        char *s;

        assert_true(rec->n < MAX_EVENTS);
        assert_int_equal(asprintf(&s, "%s %s %s", kube_event_type_to_string(type),
                                  strna(jsonx_get_string(obj, "metadata.name")),
                                  strna(jsonx_get_string(obj, "metadata.resourceVersion"))) >= 0,
                         1);
        rec->events[rec->n++] = s;
        if (rec->fail_at > 0 && (size_t) rec->fail_at == rec->n)
                return -ENOTRECOVERABLE;
        return 0;
}

static const char stream[] =
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\","
        "\"namespace\":\"ns\",\"resourceVersion\":\"10\"},\"data\":{\"k\":\"v\\n{}\"}}}\n"
        "\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":"
        "\"11\"},\"data\":{\"unicode\":\"\\u00e9\xc3\xa9\"}}}\r\n"
        "   \n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{"
        "\"resourceVersion\":\"15\"}}}\n"
        "{ \"object\" : {\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"16\"}}, \"type\" : "
        "\"ADDED\" }\n"
        "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":"
        "\"17\"}}}\n"
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
        "\"Failure\",\"message\":\"too old resource version: 1 (17)\",\"reason\":\"Expired\","
        "\"code\":410}}\n";

static const char *const expected[] = {
        "ADDED a 10", "MODIFIED a 11", "BOOKMARK n/a 15",
        "ADDED b 16", "DELETED a 17",  "ERROR n/a n/a",
};

static void assert_expected(recorder *rec) {
        assert_int_equal(rec->n, ELEMENTSOF(expected));
        for (size_t i = 0; i < ELEMENTSOF(expected); i++)
                assert_string_equal(rec->events[i], expected[i]);
}

static void feed_chunks(const char *data, size_t len, const size_t *cuts, size_t n_cuts,
                        recorder *rec) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        size_t off = 0;
        err_info e;

        assert_int_equal(kube_stream_new(0, record, rec, &s), 0);
        for (size_t i = 0; i <= n_cuts; i++) {
                size_t end = i < n_cuts ? cuts[i] : len;
                int r = kube_stream_feed(s, data + off, end - off, &e);

                if (r < 0)
                        fail_msg("feed failed at %zu..%zu: %s", off, end, e.message);
                off = end;
        }
        assert_int_equal(kube_stream_finish(s, &e), 0);
        assert_int_equal(kube_stream_get_events(s), rec->n);
}

static void test_whole(void **state) {
        recorder rec = {};

        feed_chunks(stream, strlen(stream), NULL, 0, &rec);
        assert_expected(&rec);
        recorder_clear(&rec);
}

static void test_every_split(void **state) {
        size_t len = strlen(stream);

        for (size_t cut = 0; cut <= len; cut++) {
                recorder rec = {};

                feed_chunks(stream, len, &cut, 1, &rec);
                assert_expected(&rec);
                recorder_clear(&rec);
        }
}

static void test_one_byte_chunks(void **state) {
        size_t len = strlen(stream);
        size_t *cuts = calloc(len, sizeof(size_t));
        recorder rec = {};

        assert_non_null(cuts);
        for (size_t i = 0; i < len; i++)
                cuts[i] = i + 1;
        feed_chunks(stream, len, cuts, len - 1, &rec);
        assert_expected(&rec);
        recorder_clear(&rec);
        free(cuts);
}

static void test_random_chunks(void **state) {
        size_t len = strlen(stream);
        unsigned seed = 12345;

        for (int round = 0; round < 500; round++) {
                size_t cuts[16], n = 0, pos = 0;
                recorder rec = {};

                while (n < ELEMENTSOF(cuts)) {
                        seed = seed * 1103515245u + 12345u;
                        pos += (seed >> 16) % 97;
                        if (pos >= len)
                                break;
                        cuts[n++] = pos;
                }
                feed_chunks(stream, len, cuts, n, &rec);
                assert_expected(&rec);
                recorder_clear(&rec);
        }
}

static void test_zero_length_feed(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        recorder rec = {};

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, "", 0, NULL), 0);
        assert_int_equal(kube_stream_feed(s, NULL, 0, NULL), 0);
        assert_int_equal(kube_stream_finish(s, NULL), 0);
        assert_int_equal(rec.n, 0);
}

static char *make_event(size_t total) {
        /* {"type":"ADDED","object":{"metadata":{"name":"big"},"data":{"x":"AAAA..."}}}\n */
        static const char head[] =
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"big\"},"
                "\"data\":{\"x\":\"";
        static const char tail[] = "\"}}}";
        char *s = malloc(total + 2);
        size_t fill = total - strlen(head) - strlen(tail);

        assert_non_null(s);
        memcpy(s, head, strlen(head));
        memset(s + strlen(head), 'A', fill);
        memcpy(s + strlen(head) + fill, tail, strlen(tail));
        s[total] = '\n';
        s[total + 1] = '\0';
        return s;
}

static void test_oversize(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        _cleanup_free_ char *at_limit = make_event(1000), *over = make_event(1001);
        recorder rec = {};
        err_info e;

        assert_int_equal(kube_stream_new(1000, record, &rec, &s), 0);

        /* Exactly at the cap (without the newline) is fine. */
        assert_int_equal(kube_stream_feed(s, at_limit, strlen(at_limit), &e), 0);
        assert_int_equal(rec.n, 1);

        /* One byte more, in one piece. */
        assert_int_equal(kube_stream_feed(s, over, strlen(over), &e), -EFBIG);
        assert_non_null(strstr(e.message, "limit of 1000 bytes"));
        assert_int_equal(rec.n, 1);
        /* The error is sticky until reset. */
        assert_int_equal(kube_stream_feed(s, at_limit, strlen(at_limit), &e), -EBADFD);
        kube_stream_reset(s);

        /* One byte at a time: refused as soon as the buffered line passes the
         * cap, before any newline arrives. */
        for (size_t i = 0;; i++) {
                int r = kube_stream_feed(s, over + i, 1, &e);

                if (r < 0) {
                        assert_int_equal(r, -EFBIG);
                        assert_int_equal(i, 1000);
                        break;
                }
                assert_true(i < 1000);
        }
        kube_stream_reset(s);
        assert_int_equal(kube_stream_feed(s, at_limit, strlen(at_limit), &e), 0);
        assert_int_equal(rec.n, 2);
        recorder_clear(&rec);
}

static void test_default_cap_is_16mib(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        _cleanup_free_ char *big = make_event(KUBE_MAX_EVENT_SIZE_DEFAULT + 1);
        recorder rec = {};
        size_t len = strlen(big);
        err_info e;
        int r = 0;

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        /* 64 KiB chunks, as curl delivers them. */
        for (size_t off = 0; off < len && r == 0; off += 65536)
                r = kube_stream_feed(s, big + off, MIN((size_t) 65536, len - off), &e);
        assert_int_equal(r, -EFBIG);
        assert_int_equal(rec.n, 0);
}

static void test_truncated(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        static const char data[] =
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
                "{\"type\":\"MODIFIED\",\"object\":{\"metad";
        recorder rec = {};
        err_info e;

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, data, strlen(data), &e), 0);
        assert_int_equal(rec.n, 1);
        assert_int_equal(kube_stream_finish(s, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "truncated"));
        assert_non_null(strstr(e.message, "MODIFIED"));
        assert_int_equal(rec.n, 1);
        recorder_clear(&rec);
}

static void test_final_line_without_newline(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        static const char data[] =
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}";
        recorder rec = {};

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, data, strlen(data), NULL), 0);
        assert_int_equal(rec.n, 0);
        assert_int_equal(kube_stream_finish(s, NULL), 0);
        assert_int_equal(rec.n, 1);
        assert_string_equal(rec.events[0], "ADDED a n/a");
        recorder_clear(&rec);
}

static void garbage_fails(const char *line, const char *want) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        static const char good[] =
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n";
        recorder rec = {};
        err_info e;
        int r;

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, good, strlen(good), &e), 0);
        r = kube_stream_feed(s, line, strlen(line), &e);
        if (r != -EBADMSG)
                fail_msg("expected -EBADMSG for %s, got %d", line, r);
        if (!strstr(e.message, want))
                fail_msg("message '%s' lacks '%s'", e.message, want);
        assert_non_null(strstr(e.message, "line 2"));
        assert_int_equal(rec.n, 1);
        assert_int_equal(kube_stream_feed(s, good, strlen(good), &e), -EBADFD);
        recorder_clear(&rec);
}

static void test_garbage(void **state) {
        garbage_fails("<html><body>502 Bad Gateway</body></html>\n", "not JSON");
        garbage_fails("{\"type\":\"ADDED\",\"object\":{}}}\n", "not JSON"); /* trailing garbage */
        garbage_fails("[1,2,3]\n", "not a JSON object");
        garbage_fails("\"str\"\n", "not a JSON object");
        garbage_fails("{\"object\":{}}\n", "without \"type\"");
        garbage_fails("{\"type\":7,\"object\":{}}\n", "not a string");
        garbage_fails("{\"type\":\"EXPLODED\",\"object\":{}}\n", "unknown event type: EXPLODED");
        garbage_fails("{\"type\":\"ADDED\"}\n", "without an \"object\"");
        garbage_fails("{\"type\":\"ADDED\",\"object\":[1]}\n", "without an \"object\"");
        garbage_fails("\x01\x02\n", "not JSON");
        garbage_fails("{'type':'ADDED'}\n", "not JSON");
}

static void test_nul_in_line(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        static const char data[] = "{\"type\":\"ADDED\",\0\"object\":{}}\n";
        recorder rec = {};
        err_info e;

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, data, sizeof(data) - 1, &e), -EBADMSG);
        assert_int_equal(rec.n, 0);
}

static void test_deep_nesting(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        char buf[8192];
        size_t o = 0;
        recorder rec = {};
        err_info e;

        /* 100 levels: deeper than json-c's default of 32, as managedFields of
         * a deep custom resource can be. */
        o += (size_t) sprintf(buf + o, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
                                       "\"deep\"},\"spec\":");
        for (int i = 0; i < 100; i++)
                o += (size_t) sprintf(buf + o, "{\"a\":");
        o += (size_t) sprintf(buf + o, "1");
        for (int i = 0; i < 100; i++)
                buf[o++] = '}';
        o += (size_t) sprintf(buf + o, "}}\n");
        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, buf, o, &e), 0);
        assert_int_equal(rec.n, 1);
        recorder_clear(&rec);

        /* A nesting bomb is refused, not a stack overflow. */
        kube_stream_reset(s);
        o = (size_t) sprintf(buf, "{\"type\":\"ADDED\",\"object\":");
        for (int i = 0; i < 4000; i++)
                buf[o++] = '[';
        buf[o++] = '\n';
        assert_int_equal(kube_stream_feed(s, buf, o, &e), -EBADMSG);
}

static void test_bare_status_is_error_event(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        static const char data[] =
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
                "\"message\":\"x\",\"reason\":\"Expired\",\"code\":410}\n";
        recorder rec = {};

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, data, strlen(data), NULL), 0);
        assert_int_equal(rec.n, 1);
        assert_string_equal(rec.events[0], "ERROR n/a n/a");
        recorder_clear(&rec);
}

static void test_callback_error_stops(void **state) {
        _cleanup_(kube_stream_freep) kube_stream *s = NULL;
        recorder rec = {.fail_at = 2};

        assert_int_equal(kube_stream_new(0, record, &rec, &s), 0);
        assert_int_equal(kube_stream_feed(s, stream, strlen(stream), NULL), -ENOTRECOVERABLE);
        assert_int_equal(rec.n, 2);
        assert_int_equal(kube_stream_finish(s, NULL), -EBADFD);
        recorder_clear(&rec);
}

/* ---- Status ------------------------------------------------------------- */

static json_object *parse(const char *s) {
        json_object *o = NULL;

        assert_int_equal(jsonx_parse(s, strlen(s), &o, NULL), 0);
        return o;
}

static void status_is(long http, const char *body, int want_r, long want_status,
                      const char *want_reason, const char *want_msg) {
        err_info e;
        int r;

        r = kube_status_parse(http, body, body ? strlen(body) : 0, &e);
        if (r != want_r)
                fail_msg("HTTP %ld %s: want %d, got %d (%s)", http, strna(body), want_r, r,
                         e.message);
        assert_int_equal(e.http_status, want_status);
        assert_string_equal(e.reason, want_reason);
        if (!strstr(e.message, want_msg))
                fail_msg("message '%s' lacks '%s'", e.message, want_msg);
}

static void test_status_json(void **state) {
        status_is(409,
                  "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
                  "\"Operation cannot be fulfilled on configmaps \\\"x\\\": the object has been "
                  "modified\",\"reason\":\"Conflict\",\"code\":409}",
                  -ESTALE, 409, "Conflict", "the object has been modified");
        status_is(409,
                  "{\"kind\":\"Status\",\"message\":\"configmaps \\\"x\\\" already exists\","
                  "\"reason\":\"AlreadyExists\",\"code\":409}",
                  -EEXIST, 409, "AlreadyExists", "already exists");
        status_is(
                403,
                "{\"kind\":\"Status\",\"message\":\"configmaps is forbidden: User cannot create\","
                "\"reason\":\"Forbidden\",\"code\":403}",
                -EACCES, 403, "Forbidden", "forbidden");
        status_is(404, "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"code\":404}", -ENOENT, 404,
                  "NotFound", "HTTP 404 NotFound");
        status_is(410, "{\"kind\":\"Status\",\"reason\":\"Expired\",\"message\":\"too old\"}",
                  -EGONE, 410, "Expired", "too old");
        status_is(422,
                  "{\"kind\":\"Status\",\"reason\":\"Invalid\",\"message\":\"metadata.name: "
                  "Invalid value\",\"code\":422}",
                  -EINVAL, 422, "Invalid", "Invalid value");
        status_is(200, "{}", 0, 200, "", "");
}

static void test_status_retry_after(void **state) {
        err_info e;
        const char *b = "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\",\"code\":429,"
                        "\"details\":{\"retryAfterSeconds\":3}}";

        assert_int_equal(kube_status_parse(429, b, strlen(b), &e), -EAGAIN);
        assert_int_equal(e.retry_after_sec, 3);
        b = "{\"kind\":\"Status\",\"code\":500,\"message\":\"etcdserver: leader changed\"}";
        assert_int_equal(kube_status_parse(500, b, strlen(b), &e), -EAGAIN);
        assert_int_equal(e.retry_after_sec, -1);
}

static void test_status_non_json(void **state) {
        err_info e;
        char big[4096];

        status_is(502, "<html><head><title>502 Bad Gateway</title></head></html>", -EAGAIN, 502,
                  "NonJSONBody", "HTTP 502: non-JSON response body: \"<html><head><title>502");
        status_is(403, "Forbidden\r\n", -EACCES, 403, "NonJSONBody", "Forbidden\\x0d\\x0a");
        status_is(503, "", -EAGAIN, 503, "EmptyBody", "HTTP 503 with an empty response body");
        status_is(400, NULL, -EINVAL, 400, "EmptyBody", "empty");
        status_is(418, "[1,2]", -EPROTO, 418, "NonJSONBody", "[1,2]");
        status_is(500, "{\"kind\":", -EAGAIN, 500, "NonJSONBody", "{\\x22kind\\x22:");

        /* A long body is cut to a short snippet. */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_int_equal(kube_status_parse(504, big, strlen(big), &e), -EAGAIN);
        assert_true(strlen(e.message) < 250);
        assert_non_null(strstr(e.message, "..."));

        /* Binary garbage with NULs never crashes. */
        assert_int_equal(kube_status_parse(500, "\0\xff\xfe", 3, &e), -EAGAIN);
        assert_non_null(strstr(e.message, "\\x00\\xff\\xfe"));
}

static void test_status_object(void **state) {
        _cleanup_json_ json_object *gone = NULL, *expired = NULL, *internal = NULL, *empty = NULL;
        err_info e;

        gone = parse("{\"kind\":\"Status\",\"code\":410,\"reason\":\"Gone\"}");
        assert_int_equal(kube_status_from_object(gone, 200, &e), -EGONE);
        assert_int_equal(e.http_status, 410);

        expired = parse("{\"kind\":\"Status\",\"reason\":\"Expired\"}");
        assert_int_equal(kube_status_from_object(expired, 200, &e), -EGONE);

        internal = parse("{\"kind\":\"Status\",\"code\":500,\"message\":\"boom\"}");
        assert_int_equal(kube_status_from_object(internal, 200, &e), -EAGAIN);
        assert_string_equal(e.message, "boom");

        empty = parse("{}");
        assert_int_equal(kube_status_from_object(empty, 200, &e), -EPROTO);
        assert_int_equal(kube_status_from_object(NULL, 0, &e), -EPROTO);
}

static void test_object_key(void **state) {
        _cleanup_json_ json_object *ns = NULL, *cluster = NULL, *noname = NULL;
        _cleanup_free_ char *k1 = NULL, *k2 = NULL;
        char *k3 = NULL;

        ns = parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"}}");
        assert_int_equal(kube_object_key(ns, &k1), 0);
        assert_string_equal(k1, "n/a");
        cluster = parse("{\"metadata\":{\"name\":\"node1\"}}");
        assert_int_equal(kube_object_key(cluster, &k2), 0);
        assert_string_equal(k2, "node1");
        noname = parse("{\"metadata\":{}}");
        assert_int_equal(kube_object_key(noname, &k3), -EINVAL);
        assert_null(k3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_whole),
                cmocka_unit_test(test_every_split),
                cmocka_unit_test(test_one_byte_chunks),
                cmocka_unit_test(test_random_chunks),
                cmocka_unit_test(test_zero_length_feed),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_default_cap_is_16mib),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_final_line_without_newline),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_nul_in_line),
                cmocka_unit_test(test_deep_nesting),
                cmocka_unit_test(test_bare_status_is_error_event),
                cmocka_unit_test(test_callback_error_stops),
                cmocka_unit_test(test_status_json),
                cmocka_unit_test(test_status_retry_after),
                cmocka_unit_test(test_status_non_json),
                cmocka_unit_test(test_status_object),
                cmocka_unit_test(test_object_key),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
