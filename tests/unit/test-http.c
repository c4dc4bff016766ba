/* SPDX-License-Identifier: Apache-2.0 */

/*
 * http.c against a libmicrohttpd server on 127.0.0.1 that the test starts
 * (an ephemeral port; this is the transport layer, so a server we control is
 * the right peer), plus the fake client.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "fsx.h"
#include "http.h"
#include "loop.h"

/* ---- the test server ---------------------------------------------------- */

static struct MHD_Daemon *server;
static unsigned server_port;
static atomic_bool server_stopping;

typedef struct upload {
        char *data;
        size_t len;
} upload;

typedef struct stream_state {
        unsigned chunks_left;
        unsigned chunk_size;
        unsigned delay_ms;
} stream_state;

static void sleep_ms(unsigned ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        stream_state *st = cls;
        size_t n;

        if (st->chunks_left == 0 || server_stopping)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->delay_ms > 0)
                sleep_ms(st->delay_ms);
        n = MIN((size_t) st->chunk_size, max);
        memset(buf, 'a' + (int) (st->chunks_left % 26), n);
        st->chunks_left--;
        return (ssize_t) n;
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp) {
        enum MHD_Result r = MHD_queue_response(conn, status, resp);

        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
        upload *up = *con_cls;
        struct MHD_Response *resp;
        const char *v;

        if (!up) {
                up = calloc(1, sizeof(*up));
                *con_cls = up;
                return MHD_YES;
        }
        if (*upload_size > 0) {
                up->data = realloc(up->data, up->len + *upload_size + 1);
                memcpy(up->data + up->len, upload_data, *upload_size);
                up->len += *upload_size;
                *upload_size = 0;
                return MHD_YES;
        }

        if (streq(url, "/echo")) {
                resp = MHD_create_response_from_buffer(up->len, up->data ?: (char *) "",
                                                       MHD_RESPMEM_MUST_COPY);
                MHD_add_response_header(resp, "X-Method", method);
                v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Test");
                if (v)
                        MHD_add_response_header(resp, "X-Got-Test", v);
                v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
                if (v)
                        MHD_add_response_header(resp, "X-Got-Auth", v);
                v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
                MHD_add_response_header(resp, "X-Got-Content-Type", v ?: "(none)");
                v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
                MHD_add_response_header(resp, "X-Got-Expect", v ?: "(none)");
                v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "i");
                if (v)
                        MHD_add_response_header(resp, "X-I", v);
                return queue(conn, MHD_HTTP_OK, resp);
        }
        if (streq(url, "/retry")) {
                resp = MHD_create_response_from_buffer(4, (char *) "busy", MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(resp, "Retry-After", "7");
                return queue(conn, 503, resp);
        }
        if (streq(url, "/retry-date")) {
                char date[64];
                time_t t = time(NULL) + 100;
                struct tm tm;

                gmtime_r(&t, &tm);
                strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
                resp = MHD_create_response_from_buffer(0, (char *) "", MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(resp, "Retry-After", date);
                return queue(conn, 429, resp);
        }
        if (streq(url, "/notfound")) {
                resp = MHD_create_response_from_buffer(2, (char *) "{}", MHD_RESPMEM_PERSISTENT);
                return queue(conn, 404, resp);
        }
        if (streq(url, "/stream") || streq(url, "/slowstream")) {
                stream_state *st = calloc(1, sizeof(*st));

                st->chunks_left = 10;
                st->chunk_size = 1000;
                st->delay_ms = streq(url, "/slowstream") ? 100 : 30;
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, st,
                                                         free);
                return queue(conn, MHD_HTTP_OK, resp);
        }
        if (streq(url, "/big")) {
                size_t n = 1024 * 1024;
                char *b = malloc(n);

                memset(b, 'x', n);
                resp = MHD_create_response_from_buffer(n, b, MHD_RESPMEM_MUST_FREE);
                return queue(conn, MHD_HTTP_OK, resp);
        }
        if (streq(url, "/slow")) {
                for (unsigned i = 0; i < 300 && !server_stopping; i++)
                        sleep_ms(10);
                resp = MHD_create_response_from_buffer(4, (char *) "slow", MHD_RESPMEM_PERSISTENT);
                return queue(conn, MHD_HTTP_OK, resp);
        }
        resp = MHD_create_response_from_buffer(0, (char *) "", MHD_RESPMEM_PERSISTENT);
        return queue(conn, 418, resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        upload *up = *con_cls;

        if (up) {
                free(up->data);
                free(up);
                *con_cls = NULL;
        }
}

static int server_start(void **state) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        const union MHD_DaemonInfo *info;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        server_stopping = false;
        server = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                                  0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                  MHD_OPTION_CONNECTION_LIMIT, 500, MHD_OPTION_END);
        if (!server)
                return -1;
        info = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT);
        if (!info)
                return -1;
        server_port = info->port;
        return 0;
}

static int server_stop(void **state) {
        server_stopping = true;
        if (server)
                MHD_stop_daemon(server);
        server = NULL;
        return 0;
}

static char *url(const char *path) {
        static char buf[8][256];
        static unsigned next;
        char *b = buf[next++ % ELEMENTSOF(buf)];

        snprintf(b, sizeof(buf[0]), "http://127.0.0.1:%u%s", server_port, path);
        return b;
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct result {
        bool done;
        int calls;
        int r;
        long status;
        char *body;
        size_t body_len;
        char *header;
        const char *header_name;
        long retry_after;
        err_info err;
        bool in_start; /* set around http_request_start() */
        bool called_in_start;
        /* streaming */
        size_t streamed;
        unsigned chunks;
        int abort_with;
        bool cancel_in_data;
        http_request *cancel_other;
} result;

static void on_done(http_request *req, int r, const http_response *resp, const err_info *err,
                    void *userdata) {
        result *res = userdata;

        res->calls++;
        res->done = true;
        res->r = r;
        if (res->in_start)
                res->called_in_start = true;
        res->status = resp->status;
        res->body = resp->body ? strndup(resp->body, resp->body_len) : NULL;
        res->body_len = resp->body_len;
        res->retry_after = resp->retry_after_sec;
        if (res->header_name) {
                const char *v = http_response_header(resp, res->header_name);

                res->header = v ? strdup(v) : NULL;
        }
        if (err)
                res->err = *err;
        if (res->cancel_other)
                http_request_cancel(res->cancel_other);
}

static int on_data(http_request *req, const void *data, size_t len, void *userdata) {
        result *res = userdata;

        res->streamed += len;
        res->chunks++;
        res->status = http_request_get_status(req);
        if (res->cancel_in_data) {
                http_request_cancel(req);
                res->done = true;
                return 0;
        }
        if (res->abort_with < 0)
                return res->abort_with;
        return 0;
}

static void result_done(result *res) {
        free(res->body);
        free(res->header);
}

static sd_event *new_event(void) {
        sd_event *e = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        return e;
}

static int start(http_client *c, const http_request_opts *o, result *res, http_request **ret) {
        int r;

        res->in_start = true;
        r = http_request_start(c, o, on_done, res, ret);
        res->in_start = false;
        return r;
}

/* ---- real transfers ----------------------------------------------------- */

static void test_get_headers_and_status(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        const char *hdrs[] = {"X-Test: hello", NULL};
        http_request_opts o = {.url = url("/echo"), .headers = hdrs, .bearer_token = "tok123"};
        result res = {.header_name = "x-got-test"};

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(start(c, &o, &res, NULL), 0);
        assert_false(res.called_in_start);
        assert_int_equal(loop_run_until(e, &res.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.header, "hello");
        assert_int_equal(res.body_len, 0);
        assert_string_equal(res.body, "");
        assert_int_equal(res.retry_after, -1);
        result_done(&res);
}

static void test_put_body_round_trip(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *resp = NULL;
        /* Binary, with NUL bytes, bigger than one socket read. */
        size_t n = 200000;
        _cleanup_free_ char *body = malloc(n);
        const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
        http_request_opts o = {.method = "PUT",
                               .url = url("/echo"),
                               .body = body,
                               .body_len = n,
                               .headers = hdrs,
                               .bearer_token = "secret"};
        err_info err;

        for (size_t i = 0; i < n; i++)
                body[i] = (char) (i * 7);
        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_run(c, &o, &resp, &err), 0);
        assert_int_equal(resp->status, 200);
        assert_int_equal(resp->body_len, n);
        assert_memory_equal(resp->body, body, n);
        assert_int_equal(resp->body[n], '\0');
        assert_string_equal(http_response_header(resp, "X-Method"), "PUT");
        assert_string_equal(http_response_header(resp, "X-Got-Auth"), "Bearer secret");
        assert_string_equal(http_response_header(resp, "x-got-content-type"),
                            "application/octet-stream");
        assert_string_equal(http_response_header(resp, "X-Got-Expect"), "(none)");
        assert_null(http_response_header(resp, "X-Not-There"));
}

/* A body producer: byte i of the body is (char) (i * 7); it checks that
 * reads go forward from 0 and gives at most @chunk bytes a call. */
typedef struct producer {
        size_t len, chunk;
        uint64_t next; /* the offset the next read must start at */
        unsigned calls, restarts;
        unsigned fail_at;   /* > 0: that call fails with -EIO */
        unsigned cancel_at; /* > 0: that call cancels the request */
        http_request *req;
        bool out_of_order;
} producer;

static ssize_t produce(void *buf, size_t len, uint64_t offset, void *userdata) {
        producer *p = userdata;
        size_t n;

        p->calls++;
        if (offset == 0 && p->next > 0)
                p->restarts++;
        else if (offset != p->next)
                p->out_of_order = true;
        if (p->fail_at > 0 && p->calls == p->fail_at)
                return -EIO;
        if (p->cancel_at > 0 && p->calls == p->cancel_at)
                http_request_cancel(p->req);
        n = MIN(MIN(len, p->chunk), p->len - (size_t) offset);
        for (size_t i = 0; i < n; i++)
                ((char *) buf)[i] = (char) ((offset + i) * 7);
        p->next = offset + n;
        return (ssize_t) n;
}

static void test_borrowed_and_produced_bodies(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        size_t n = 200000;
        _cleanup_free_ char *body = malloc(n);
        producer p = {.len = n, .chunk = 999};
        err_info err;

        for (size_t i = 0; i < n; i++)
                body[i] = (char) (i * 7);
        assert_int_equal(http_client_new(e, &c), 0);

        /* Borrowed: sent from the caller's buffer as it is. */
        for (unsigned i = 0; i < 2; i++) {
                const char *method = i == 0 ? "PUT" : "POST";
                _cleanup_(http_response_freep) http_response *resp = NULL;
                http_request_opts o = {.method = method,
                                       .url = url("/echo"),
                                       .body = body,
                                       .body_len = n,
                                       .body_borrowed = true};

                assert_int_equal(http_request_run(c, &o, &resp, &err), 0);
                assert_int_equal(resp->status, 200);
                assert_int_equal(resp->body_len, n);
                assert_memory_equal(resp->body, body, n);
                assert_string_equal(http_response_header(resp, "X-Method"), method);
                assert_string_equal(http_response_header(resp, "X-Got-Expect"), "(none)");
        }

        /* Produced: read forward in the producer's chunks, all of it. */
        {
                _cleanup_(http_response_freep) http_response *resp = NULL;
                http_request_opts o = {.method = "PATCH",
                                       .url = url("/echo"),
                                       .body_len = n,
                                       .body_fn = produce,
                                       .body_userdata = &p};

                assert_int_equal(http_request_run(c, &o, &resp, &err), 0);
                assert_int_equal(resp->status, 200);
                assert_int_equal(resp->body_len, n);
                assert_memory_equal(resp->body, body, n);
                assert_string_equal(http_response_header(resp, "X-Method"), "PATCH");
                assert_false(p.out_of_order);
                assert_int_equal(p.next, n);
                assert_true(p.calls >= n / p.chunk);
        }

        /* An empty produced body is a body of zero bytes. */
        {
                _cleanup_(http_response_freep) http_response *resp = NULL;
                producer empty = {.len = 0, .chunk = 10};
                http_request_opts o = {.method = "PUT",
                                       .url = url("/echo"),
                                       .body_fn = produce,
                                       .body_userdata = &empty};

                assert_int_equal(http_request_run(c, &o, &resp, &err), 0);
                assert_int_equal(resp->status, 200);
                assert_int_equal(resp->body_len, 0);
        }

        /* A body and a producer at once is a caller's mistake. */
        {
                result res = {};
                http_request_opts o = {.method = "PUT",
                                       .url = url("/echo"),
                                       .body = body,
                                       .body_len = n,
                                       .body_fn = produce,
                                       .body_userdata = &p};

                assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
                o.body = NULL;
                o.body_borrowed = true;
                assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
                /* ... and so is a producer for a method that sends no body. */
                o.body_borrowed = false;
                o.method = NULL;
                assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
                o.method = "HEAD";
                assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
                assert_int_equal(res.calls, 0);
        }
}

static void test_produced_body_fails_or_is_cancelled(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        size_t n = 1 << 20;
        producer failing = {.len = n, .chunk = 4096, .fail_at = 3};
        producer cancelled = {.len = n, .chunk = 4096, .cancel_at = 2};
        result res = {}, res2 = {};
        bool never = false;

        assert_int_equal(http_client_new(e, &c), 0);

        /* The producer's error ends the request with that error. */
        assert_int_equal(start(c,
                               &(http_request_opts){.method = "PUT",
                                                    .url = url("/echo"),
                                                    .body_len = n,
                                                    .body_fn = produce,
                                                    .body_userdata = &failing},
                               &res, NULL),
                         0);
        assert_int_equal(loop_run_until(e, &res.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.r, -EIO);
        assert_int_equal(failing.calls, 3);

        /* A producer that ends before the announced length fails the request. */
        {
                producer shorter = {.len = n / 2, .chunk = 4096};
                result res3 = {};

                assert_int_equal(start(c,
                                       &(http_request_opts){.method = "PUT",
                                                            .url = url("/echo"),
                                                            .body_len = n,
                                                            .body_fn = produce,
                                                            .body_userdata = &shorter},
                                       &res3, NULL),
                                 0);
                assert_int_equal(loop_run_until(e, &res3.done, 5 * USEC_PER_SEC), 0);
                assert_int_equal(res3.calls, 1);
                assert_int_equal(res3.r, -EIO);
                result_done(&res3);
        }

        /* Cancelled from inside the producer (curl is running): the producer
         * is never called again and the request never completes. */
        assert_int_equal(start(c,
                               &(http_request_opts){.method = "PUT",
                                                    .url = url("/echo"),
                                                    .body_len = n,
                                                    .body_fn = produce,
                                                    .body_userdata = &cancelled},
                               &res2, &cancelled.req),
                         0);
        assert_int_equal(loop_run_until(e, &never, 500 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_int_equal(cancelled.calls, 2);
        assert_int_equal(res2.calls, 0);
        result_done(&res);
}

static void test_methods(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        const char *methods[] = {"POST", "PATCH", "DELETE", "GET"};

        assert_int_equal(http_client_new(e, &c), 0);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                _cleanup_(http_response_freep) http_response *resp = NULL;
                http_request_opts o = {.method = methods[i], .url = url("/echo")};
                bool with_body = !streq(methods[i], "DELETE") && !streq(methods[i], "GET");

                if (with_body) {
                        o.body = "{\"a\":1}";
                        o.body_len = 7;
                }
                assert_int_equal(http_request_run(c, &o, &resp, NULL), 0);
                assert_int_equal(resp->status, 200);
                assert_string_equal(http_response_header(resp, "X-Method"), methods[i]);
                assert_string_equal(resp->body, with_body ? "{\"a\":1}" : "");
                /* No form content type slipped in by curl. */
                assert_string_equal(http_response_header(resp, "X-Got-Content-Type"), "(none)");
        }

        /* HEAD: status and headers, no body. */
        {
                _cleanup_(http_response_freep) http_response *resp = NULL;
                http_request_opts o = {.method = "HEAD", .url = url("/notfound")};

                assert_int_equal(http_request_run(c, &o, &resp, NULL), 0);
                assert_int_equal(resp->status, 404);
                assert_int_equal(resp->body_len, 0);
        }
}

static void test_bad_options(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        const char *bad_hdrs[] = {"X-Evil: a\r\nX-Injected: b", NULL};
        http_request_opts o = {.url = url("/echo")};
        result res = {};

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_start(c, &o, NULL, &res, NULL), -EINVAL);
        o.url = NULL;
        assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
        o.url = url("/echo");
        o.headers = bad_hdrs;
        assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
        o.headers = NULL;
        o.bearer_token = "x\ny";
        assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
        o.bearer_token = NULL;
        o.method = "get you";
        assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
        o.method = NULL;
        o.body_len = 3;
        assert_int_equal(start(c, &o, &res, NULL), -EINVAL);
        assert_int_equal(res.calls, 0);
}

static void test_status_and_retry_after(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *r1 = NULL, *r2 = NULL, *r3 = NULL;
        http_request_opts o = {.url = url("/retry")};

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_run(c, &o, &r1, NULL), 0);
        assert_int_equal(r1->status, 503);
        assert_int_equal(r1->retry_after_sec, 7);
        assert_string_equal(r1->body, "busy");
        assert_int_equal(err_from_http_status(r1->status, NULL), -EAGAIN);

        o.url = url("/retry-date");
        assert_int_equal(http_request_run(c, &o, &r2, NULL), 0);
        assert_int_equal(r2->status, 429);
        assert_in_range(r2->retry_after_sec, 95, 101);

        o.url = url("/notfound");
        assert_int_equal(http_request_run(c, &o, &r3, NULL), 0);
        assert_int_equal(r3->status, 404);
        assert_int_equal(r3->retry_after_sec, -1);
        assert_int_equal(err_from_http_status(r3->status, NULL), -ENOENT);
}

static void test_streaming(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        http_request_opts o = {.url = url("/stream"), .on_data = on_data};
        result res = {};

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(start(c, &o, &res, NULL), 0);
        assert_int_equal(loop_run_until(e, &res.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.streamed, 10000);
        assert_true(res.chunks >= 2);      /* arrived in pieces, not as one buffer */
        assert_int_equal(res.body_len, 0); /* streamed bodies are not buffered */
        assert_string_equal(res.body, "");
        result_done(&res);
}

static void test_abort_from_on_data(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        http_request_opts o = {.url = url("/slowstream"), .on_data = on_data};
        result res = {.abort_with = -EPIPE};
        http_stats st;

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(start(c, &o, &res, NULL), 0);
        assert_int_equal(loop_run_until(e, &res.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.r, -EPIPE);
        assert_int_equal(res.chunks, 1);
        assert_int_equal(res.err.http_status, 200);
        http_client_get_stats(c, &st);
        assert_int_equal(st.started, 1);
        assert_int_equal(st.completed, 1);
        assert_int_equal(st.transport_errors, 1);
        result_done(&res);
}

static void test_max_body(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *resp = NULL;
        http_request_opts o = {.url = url("/big"), .max_body = 1000};
        err_info err;

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_run(c, &o, &resp, &err), -EFBIG);
        assert_null(resp);
        assert_non_null(strstr(err.message, "1000"));

        o.max_body = 1024 * 1024; /* exactly fits */
        assert_int_equal(http_request_run(c, &o, &resp, &err), 0);
        assert_int_equal(resp->body_len, 1024 * 1024);
}

static void test_timeout(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        http_request_opts o = {.url = url("/slow"), .timeout_usec = 200 * USEC_PER_MSEC};
        err_info err;
        uint64_t t0 = loop_now(NULL);

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_run(c, &o, NULL, &err), -ETIMEDOUT);
        assert_true(loop_now(NULL) - t0 < 2 * USEC_PER_SEC);
        assert_string_equal(err.reason, "ETIMEDOUT");
        assert_non_null(strstr(err.message, "imed out"));
        assert_int_equal(err.http_status, 0);
}

static void test_connection_refused(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        char u[64];
        err_info err;
        result res = {};
        int fd;

        /* A port that was free a moment ago and has no listener. */
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        close(fd);
        snprintf(u, sizeof(u), "http://127.0.0.1:%u/", ntohs(sa.sin_port));

        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(http_request_run(c, &(http_request_opts){.url = u}, NULL, &err),
                         -ECONNREFUSED);
        assert_true(err_is_transient(-ECONNREFUSED));
        assert_true(strlen(err.message) > 0);

        /* Even a failure that curl knows at once is reported from the loop. */
        assert_int_equal(start(c, &(http_request_opts){.url = u}, &res, NULL), 0);
        assert_false(res.called_in_start);
        assert_int_equal(res.calls, 0);
        assert_int_equal(loop_run_until(e, &res.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(res.r, -ECONNREFUSED);
        result_done(&res);
}

static void test_unsupported_scheme(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        err_info err;

        assert_int_equal(http_client_new(e, &c), 0);
        /* Only http and https: never file://, whatever a config says. */
        assert_int_equal(
                http_request_run(c, &(http_request_opts){.url = "file:///etc/passwd"}, NULL, &err),
                -EIO);
        assert_true(strlen(err.message) > 0);
}

#define N_CONCURRENT 100

static void test_concurrent(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        result *res = calloc(N_CONCURRENT, sizeof(result));
        char bodies[N_CONCURRENT][32];
        http_stats st;
        bool all = false;
        uint64_t deadline;

        assert_int_equal(http_client_new(e, &c), 0);
        for (unsigned i = 0; i < N_CONCURRENT; i++) {
                char path[32];
                http_request_opts o = {.method = "POST", .url = NULL};

                snprintf(path, sizeof(path), "/echo?i=%u", i);
                snprintf(bodies[i], sizeof(bodies[i]), "body-%u", i);
                o.url = url(path);
                o.body = bodies[i];
                o.body_len = strlen(bodies[i]);
                res[i].header_name = "X-I";
                assert_int_equal(start(c, &o, &res[i], NULL), 0);
        }

        deadline = loop_now(NULL) + 20 * USEC_PER_SEC;
        while (!all && loop_now(NULL) < deadline) {
                assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
                all = true;
                for (unsigned i = 0; i < N_CONCURRENT; i++)
                        all = all && res[i].done;
        }
        assert_true(all);
        for (unsigned i = 0; i < N_CONCURRENT; i++) {
                char want[16];

                snprintf(want, sizeof(want), "%u", i);
                assert_int_equal(res[i].calls, 1);
                assert_int_equal(res[i].r, 0);
                assert_int_equal(res[i].status, 200);
                assert_string_equal(res[i].body, bodies[i]);
                assert_string_equal(res[i].header, want);
                result_done(&res[i]);
        }
        http_client_get_stats(c, &st);
        assert_int_equal(st.started, N_CONCURRENT);
        assert_int_equal(st.completed, N_CONCURRENT);
        assert_int_equal(st.transport_errors, 0);
        free(res);
}

static void test_cancel(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        result slow = {}, fast = {}, other = {}, in_data = {.cancel_in_data = true};
        http_request *slow_req = NULL, *other_req = NULL;
        bool never = false;
        http_stats st;

        assert_int_equal(http_client_new(e, &c), 0);

        /* Plain cancel of a request in flight. */
        assert_int_equal(start(c, &(http_request_opts){.url = url("/slow")}, &slow, &slow_req), 0);
        assert_int_equal(loop_run_until(e, &never, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        http_request_cancel(slow_req);

        /* Cancel from another request's done callback. */
        assert_int_equal(start(c, &(http_request_opts){.url = url("/slow")}, &other, &other_req),
                         0);
        fast.cancel_other = other_req;
        assert_int_equal(start(c, &(http_request_opts){.url = url("/echo")}, &fast, NULL), 0);

        /* Cancel from its own on_data callback. */
        assert_int_equal(start(c,
                               &(http_request_opts){.url = url("/slowstream"), .on_data = on_data},
                               &in_data, NULL),
                         0);

        assert_int_equal(loop_run_until(e, &fast.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(loop_run_until(e, &in_data.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(in_data.chunks, 1);
        /* Give cancelled transfers time to have (wrongly) completed. */
        assert_int_equal(loop_run_until(e, &never, 500 * USEC_PER_MSEC), -ETIMEDOUT);

        assert_int_equal(fast.calls, 1);
        assert_int_equal(slow.calls, 0);
        assert_int_equal(other.calls, 0);
        assert_int_equal(in_data.calls, 0);
        assert_int_equal(in_data.chunks, 1);
        http_client_get_stats(c, &st);
        assert_int_equal(st.started, 4);
        assert_int_equal(st.completed, 1);

        /* The client still works afterwards. */
        {
                _cleanup_(http_response_freep) http_response *resp = NULL;

                assert_int_equal(
                        http_request_run(c, &(http_request_opts){.url = url("/echo")}, &resp, NULL),
                        0);
                assert_int_equal(resp->status, 200);
        }
        http_request_cancel(NULL);
        result_done(&fast);
}

static int on_data_start_new(http_request *req, const void *data, size_t len, void *userdata);

typedef struct nested {
        http_client *client;
        result inner;
        bool started;
        bool free_client_in_done;
        result outer;
} nested;

static int on_data_start_new(http_request *req, const void *data, size_t len, void *userdata) {
        nested *n = http_request_get_userdata(req) == userdata ? userdata : NULL;

        assert_non_null(n);
        if (!n->started) {
                /* Starting a request from inside curl's write callback. */
                n->started = true;
                assert_int_equal(start(n->client, &(http_request_opts){.url = url("/echo")},
                                       &n->inner, NULL),
                                 0);
        }
        return 0;
}

static void on_nested_done(http_request *req, int r, const http_response *resp, const err_info *err,
                           void *userdata) {
        nested *n = userdata;

        n->outer.done = true;
        n->outer.calls++;
        n->outer.r = r;
}

static void test_start_from_on_data(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        nested n = {};

        assert_int_equal(http_client_new(e, &c), 0);
        n.client = c;
        assert_int_equal(http_request_start(c,
                                            &(http_request_opts){.url = url("/stream"),
                                                                 .on_data = on_data_start_new},
                                            on_nested_done, &n, NULL),
                         0);
        assert_int_equal(loop_run_until(e, &n.outer.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(loop_run_until(e, &n.inner.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(n.outer.r, 0);
        assert_int_equal(n.inner.r, 0);
        assert_int_equal(n.inner.status, 200);
        result_done(&n.inner);
}

static void on_done_free_client(http_request *req, int r, const http_response *resp,
                                const err_info *err, void *userdata) {
        http_client **c = userdata;

        *c = http_client_free(*c);
}

static void test_free_client_with_pending(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        http_client *c = NULL;
        result a = {}, b = {};
        bool never = false;

        /* Freed with requests in flight: no callbacks. */
        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(start(c, &(http_request_opts){.url = url("/slow")}, &a, NULL), 0);
        assert_int_equal(start(c, &(http_request_opts){.url = url("/echo")}, &b, NULL), 0);
        assert_int_equal(loop_run_until(e, &never, 50 * USEC_PER_MSEC), -ETIMEDOUT);
        c = http_client_free(c);
        assert_null(c);
        assert_int_equal(loop_run_until(e, &never, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_int_equal(a.calls, 0);
        result_done(&b);

        /* Freed from a done callback while another request is pending. */
        assert_int_equal(http_client_new(e, &c), 0);
        assert_int_equal(start(c, &(http_request_opts){.url = url("/slow")}, &a, NULL), 0);
        assert_int_equal(http_request_start(c, &(http_request_opts){.url = url("/echo")},
                                            on_done_free_client, &c, NULL),
                         0);
        assert_int_equal(loop_run_until(e, &never, 300 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_null(c);
        assert_int_equal(a.calls, 0);
        assert_null(http_client_free(NULL));
}

/* ---- fake client -------------------------------------------------------- */

typedef struct fake_ctx {
        unsigned calls;
        char method[16];
        char url[128];
        char body[64];
        char auth_header[64];
        http_request *held; /* answered later by the test */
        bool hold;
} fake_ctx;

static void fake_handler(http_request *req, const http_request_opts *o, void *userdata) {
        fake_ctx *f = userdata;
        const char *hdrs[] = {"Content-Type: application/json", "Retry-After: 3", NULL};

        f->calls++;
        snprintf(f->method, sizeof(f->method), "%s", o->method);
        snprintf(f->url, sizeof(f->url), "%s", o->url);
        snprintf(f->body, sizeof(f->body), "%.*s", (int) o->body_len,
                 o->body ? (const char *) o->body : "");
        if (o->headers && o->headers[0])
                snprintf(f->auth_header, sizeof(f->auth_header), "%s", o->headers[0]);

        if (f->hold) {
                f->held = req;
                return;
        }
        if (strstr(o->url, "/fail")) {
                http_fake_finish(req, -ECONNRESET);
                return;
        }
        if (strstr(o->url, "/timeout"))
                return; /* never answered: the request's timeout ends it */

        assert_int_equal(http_fake_respond(req, strstr(o->url, "/busy") ? 503 : 200, hdrs), 0);
        if (http_fake_send(req, "{\"a\":", 5) < 0)
                return;
        if (http_fake_send(req, "1}", 2) < 0)
                return;
        http_fake_finish(req, 0);
}

static void test_fake_buffered(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *resp = NULL;
        fake_ctx f = {};
        char body[] = "payload";
        const char *hdrs[] = {"X-A: 1", NULL};
        http_request_opts o = {.method = "PUT",
                               .url = "https://api/busy",
                               .body = body,
                               .body_len = 7,
                               .headers = hdrs};
        result res = {};

        assert_int_equal(http_client_new_fake(e, fake_handler, &f, &c), 0);
        assert_int_equal(http_request_run(c, &o, &resp, NULL), 0);
        assert_int_equal(f.calls, 1);
        assert_string_equal(f.method, "PUT");
        assert_string_equal(f.url, "https://api/busy");
        assert_string_equal(f.body, "payload");
        assert_string_equal(f.auth_header, "X-A: 1");
        assert_int_equal(resp->status, 503);
        assert_int_equal(resp->retry_after_sec, 3);
        assert_string_equal(resp->body, "{\"a\":1}");
        assert_string_equal(http_response_header(resp, "content-type"), "application/json");

        /* The handler runs from the loop, not inside start, and sees a copy
         * of the options. */
        o.url = "https://api/ok";
        assert_int_equal(start(c, &o, &res, NULL), 0);
        body[0] = 'X';
        assert_int_equal(f.calls, 1);
        assert_int_equal(loop_run_until(e, &res.done, USEC_PER_SEC), 0);
        assert_false(res.called_in_start);
        assert_string_equal(f.body, "payload");
        assert_int_equal(res.status, 200);
        result_done(&res);
}

static void test_fake_streaming_and_errors(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        fake_ctx f = {};
        result s = {}, ab = {.abort_with = -EBADMSG}, fail = {}, to = {}, big = {};
        err_info err;
        http_stats st;

        assert_int_equal(http_client_new_fake(e, fake_handler, &f, &c), 0);
        assert_int_equal(
                start(c, &(http_request_opts){.url = "https://x/s", .on_data = on_data}, &s, NULL),
                0);
        assert_int_equal(
                start(c, &(http_request_opts){.url = "https://x/a", .on_data = on_data}, &ab, NULL),
                0);
        assert_int_equal(start(c, &(http_request_opts){.url = "https://x/fail"}, &fail, NULL), 0);
        assert_int_equal(start(c,
                               &(http_request_opts){.url = "https://x/timeout",
                                                    .timeout_usec = 50 * USEC_PER_MSEC},
                               &to, NULL),
                         0);
        assert_int_equal(
                start(c, &(http_request_opts){.url = "https://x/big", .max_body = 6}, &big, NULL),
                0);
        assert_int_equal(loop_run_until(e, &to.done, USEC_PER_SEC), 0);

        assert_int_equal(s.r, 0);
        assert_int_equal(s.streamed, 7);
        assert_int_equal(s.chunks, 2);
        assert_int_equal(s.body_len, 0);

        assert_int_equal(ab.r, -EBADMSG);
        assert_int_equal(ab.chunks, 1);
        assert_int_equal(ab.calls, 1);

        assert_int_equal(fail.r, -ECONNRESET);
        assert_int_equal(fail.status, 0);
        assert_int_equal(to.r, -ETIMEDOUT);
        assert_int_equal(big.r, -EFBIG);
        assert_int_equal(big.calls, 1);

        http_client_get_stats(c, &st);
        assert_int_equal(st.started, 5);
        assert_int_equal(st.completed, 5);
        assert_int_equal(st.transport_errors, 4);

        err = fail.err;
        assert_string_equal(err.reason, "ECONNRESET");
        result_done(&s);
        result_done(&ab);
        result_done(&fail);
        result_done(&to);
        result_done(&big);
}

static void test_fake_held_and_cancel(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        fake_ctx f = {.hold = true};
        result a = {}, b = {.cancel_in_data = true};
        http_request *req = NULL;
        bool never = false;

        assert_int_equal(http_client_new_fake(e, fake_handler, &f, &c), 0);

        /* Cancelled before the handler ran: the handler never sees it. */
        assert_int_equal(start(c, &(http_request_opts){.url = "https://x/1"}, &a, &req), 0);
        http_request_cancel(req);
        assert_int_equal(loop_run_until(e, &never, 20 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_int_equal(f.calls, 0);

        /* Answered later, from outside the handler. */
        assert_int_equal(start(c, &(http_request_opts){.url = "https://x/2"}, &a, NULL), 0);
        assert_int_equal(loop_run_until(e, &never, 20 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_int_equal(f.calls, 1);
        assert_non_null(f.held);
        assert_int_equal(a.calls, 0);
        assert_int_equal(http_fake_respond(f.held, 201, NULL), 0);
        assert_int_equal(http_fake_send(f.held, "ok", 2), 0);
        http_fake_finish(f.held, 0);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.status, 201);
        assert_string_equal(a.body, "ok");

        /* Cancelled from its own on_data. */
        f.held = NULL;
        assert_int_equal(
                start(c, &(http_request_opts){.url = "https://x/3", .on_data = on_data}, &b, NULL),
                0);
        assert_int_equal(loop_run_until(e, &never, 20 * USEC_PER_MSEC), -ETIMEDOUT);
        assert_non_null(f.held);
        assert_int_equal(http_fake_send(f.held, "x", 1), -ECANCELED);
        assert_int_equal(b.chunks, 1);
        assert_int_equal(b.calls, 0);
        result_done(&a);
}

/* ---- TLS ---------------------------------------------------------------- */

/* Certificates made once per run with the openssl tool: a CA, a server
 * certificate for IP 127.0.0.1 signed by it, a client certificate, and an
 * unrelated CA. */
static char tls_dir[64];
static char *tls_ca_pem, *tls_other_ca_pem, *tls_srv_key, *tls_srv_crt, *tls_cli_key, *tls_cli_crt;
static struct MHD_Daemon *tls_server;
static unsigned tls_port;

static char *slurp(const char *name) {
        char path[128];
        FILE *f;
        char *buf;
        long n;

        snprintf(path, sizeof(path), "%s/%s", tls_dir, name);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = calloc(1, (size_t) n + 1);
        if (fread(buf, 1, (size_t) n, f) != (size_t) n) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        return buf;
}

static bool tls_make_certs(void) {
        char cmd[2048];

        if (tls_ca_pem)
                return true;
        snprintf(tls_dir, sizeof(tls_dir), "/tmp/test-http-tls-XXXXXX");
        if (!mkdtemp(tls_dir))
                return false;
        snprintf(
                cmd, sizeof(cmd),
                "set -e; cd %s; exec >/dev/null 2>&1\n"
                "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
                "openssl req -x509 $ec -keyout ca.key -out ca.crt -days 3650 -subj /CN=test-ca\n"
                "openssl req -x509 $ec -keyout o.key -out other-ca.crt -days 3650 -subj /CN=other\n"
                "printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext\n"
                "openssl req $ec -keyout srv.key -out srv.csr -subj /CN=127.0.0.1\n"
                "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-out srv.crt -days 3650 -extfile srv.ext\n"
                "openssl req $ec -keyout cli.key -out cli.csr -subj /CN=client\n"
                "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-out cli.crt -days 3650\n",
                tls_dir);
        if (system(cmd) != 0)
                return false;
        tls_ca_pem = slurp("ca.crt");
        tls_other_ca_pem = slurp("other-ca.crt");
        tls_srv_key = slurp("srv.key");
        tls_srv_crt = slurp("srv.crt");
        tls_cli_key = slurp("cli.key");
        tls_cli_crt = slurp("cli.crt");
        return tls_ca_pem && tls_other_ca_pem && tls_srv_key && tls_srv_crt && tls_cli_key &&
               tls_cli_crt;
}

static void tls_cleanup(void) {
        if (tls_dir[0]) {
                int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                (void) fsx_rm_rf_at(tmp, tls_dir + strlen("/tmp/"));
                close(tmp);
        }
        free(tls_ca_pem);
        free(tls_other_ca_pem);
        free(tls_srv_key);
        free(tls_srv_crt);
        free(tls_cli_key);
        free(tls_cli_crt);
}

static int tls_setup(void **state) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        const union MHD_DaemonInfo *info;

        if (!MHD_is_feature_supported(MHD_FEATURE_TLS) || !tls_make_certs())
                return 0; /* the tests skip */
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        tls_server = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS, 0,
                NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_HTTPS_MEM_KEY,
                tls_srv_key, MHD_OPTION_HTTPS_MEM_CERT, tls_srv_crt, MHD_OPTION_HTTPS_MEM_TRUST,
                tls_ca_pem, MHD_OPTION_END);
        if (!tls_server)
                return -1;
        info = MHD_get_daemon_info(tls_server, MHD_DAEMON_INFO_BIND_PORT);
        if (!info)
                return -1;
        tls_port = info->port;
        return 0;
}

static int tls_teardown(void **state) {
        if (tls_server)
                MHD_stop_daemon(tls_server);
        tls_server = NULL;
        return 0;
}

static int tls_get(const http_tls *tls, long *ret_status, err_info *err) {
        _cleanup_(sd_event_unrefp) sd_event *e = new_event();
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_(http_response_freep) http_response *resp = NULL;
        char u[64];
        int r;

        snprintf(u, sizeof(u), "https://127.0.0.1:%u/echo", tls_port);
        assert_int_equal(http_client_new(e, &c), 0);
        r = http_request_run(c, &(http_request_opts){.url = u, .tls = tls, .bearer_token = "t"},
                             &resp, err);
        if (r >= 0)
                *ret_status = resp->status;
        return r;
}

static void test_tls_verification(void **state) {
        char ca_file[128];
        long status = 0;
        err_info err;

        if (!tls_server)
                skip();
        snprintf(ca_file, sizeof(ca_file), "%s/ca.crt", tls_dir);

        /* Trusted through a PEM blob (kubeconfig certificate-authority-data). */
        assert_int_equal(tls_get(&(http_tls){.ca_pem = tls_ca_pem}, &status, &err), 0);
        assert_int_equal(status, 200);
        /* Through a CA file. */
        status = 0;
        assert_int_equal(tls_get(&(http_tls){.ca_file = ca_file}, &status, &err), 0);
        assert_int_equal(status, 200);
        /* The wrong CA, and the system store, don't know this server. */
        assert_int_equal(tls_get(&(http_tls){.ca_pem = tls_other_ca_pem}, &status, &err),
                         -EKEYREJECTED);
        assert_true(strlen(err.message) > 0);
        assert_int_equal(tls_get(NULL, &status, &err), -EKEYREJECTED);
        /* Unless verification is explicitly off. */
        status = 0;
        assert_int_equal(tls_get(&(http_tls){.insecure_skip_verify = true}, &status, &err), 0);
        assert_int_equal(status, 200);
}

static void test_tls_client_cert(void **state) {
        char cert_file[128], key_file[128];
        long status = 0;
        err_info err;

        if (!tls_server)
                skip();
        snprintf(cert_file, sizeof(cert_file), "%s/cli.crt", tls_dir);
        snprintf(key_file, sizeof(key_file), "%s/cli.key", tls_dir);

        assert_int_equal(tls_get(&(http_tls){.ca_pem = tls_ca_pem,
                                             .cert_pem = tls_cli_crt,
                                             .key_pem = tls_cli_key},
                                 &status, &err),
                         0);
        assert_int_equal(status, 200);
        status = 0;
        assert_int_equal(tls_get(&(http_tls){.ca_pem = tls_ca_pem,
                                             .cert_file = cert_file,
                                             .key_file = key_file},
                                 &status, &err),
                         0);
        assert_int_equal(status, 200);
        /* A key that doesn't parse is a transport failure, not a crash. */
        assert_int_equal(tls_get(&(http_tls){.ca_pem = tls_ca_pem,
                                             .cert_pem = tls_cli_crt,
                                             .key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                        "-----END PRIVATE KEY-----\n"},
                                 &status, &err),
                         -EIO);
        assert_true(strlen(err.message) > 0);
}

/* ---- helpers (URL escaping) --------------------------------------------- */

static void test_escape(void **state) {
        _cleanup_free_ char *a = http_escape("a b/c?d=e&f~g.h-i_j%", false);
        _cleanup_free_ char *b = http_escape("ns/name with space", true);
        _cleanup_free_ char *u = http_escape("\xc3\xa9", false);

        assert_string_equal(a, "a%20b%2Fc%3Fd%3De%26f~g.h-i_j%25");
        assert_string_equal(b, "ns/name%20with%20space");
        assert_string_equal(u, "%C3%A9");
        assert_null(http_escape(NULL, false));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_headers_and_status),
                cmocka_unit_test(test_put_body_round_trip),
                cmocka_unit_test(test_borrowed_and_produced_bodies),
                cmocka_unit_test(test_produced_body_fails_or_is_cancelled),
                cmocka_unit_test(test_methods),
                cmocka_unit_test(test_bad_options),
                cmocka_unit_test(test_status_and_retry_after),
                cmocka_unit_test(test_streaming),
                cmocka_unit_test(test_abort_from_on_data),
                cmocka_unit_test(test_max_body),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_connection_refused),
                cmocka_unit_test(test_unsupported_scheme),
                cmocka_unit_test(test_concurrent),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_start_from_on_data),
                cmocka_unit_test(test_free_client_with_pending),
                cmocka_unit_test(test_fake_buffered),
                cmocka_unit_test(test_fake_streaming_and_errors),
                cmocka_unit_test(test_fake_held_and_cancel),
                cmocka_unit_test_setup_teardown(test_tls_verification, tls_setup, tls_teardown),
                cmocka_unit_test_setup_teardown(test_tls_client_cert, tls_setup, tls_teardown),
                cmocka_unit_test(test_escape),
        };
        int r;

        /* The test server is on loopback: no proxy from the environment. */
        unsetenv("http_proxy");
        unsetenv("HTTP_PROXY");
        unsetenv("https_proxy");
        unsetenv("HTTPS_PROXY");
        unsetenv("all_proxy");
        unsetenv("ALL_PROXY");
        r = cmocka_run_group_tests(tests, server_start, server_stop);
        tls_cleanup();
        return r;
}
