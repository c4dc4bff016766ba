/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libcurl multi driven by sd-event.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * wake it up (CURLMOPT_TIMERFUNCTION); we register one sd-event io source per
 * socket and one timer per client, call curl_multi_socket_action() from their
 * callbacks and then drain curl_multi_info_read() to complete requests.
 *
 * Re-entrancy: curl forbids multi calls from inside its own callbacks, and
 * our on_data callbacks run inside curl's write callback. So while curl runs
 * (c->in_curl > 0), a cancelled request is parked on c->zombies and a new
 * request is parked with pending_add; both are dealt with right after
 * curl_multi_socket_action() returns (client_process()). Done callbacks only
 * run from client_process() or fake-client paths, i.e. from the event loop.
 */

#include <curl/curl.h>
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include "http.h"

#define HTTP_DEFAULT_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define HTTP_DEFAULT_MAX_BODY             ((size_t) 64 * 1024 * 1024)
#define HTTP_MAX_HEADERS                  1000
#define HTTP_MAX_HOST_CONNECTIONS         8

typedef struct http_sock http_sock;

struct http_sock {
        http_client *client;
        curl_socket_t fd;
        sd_event_source *source;
        http_sock *prev, *next;
};

struct http_client {
        unsigned n_ref;
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        http_sock *socks;
        http_request *requests; /* started, not finished, not cancelled */
        http_request *zombies;  /* cancelled while they could not be freed */
        unsigned in_curl;       /* > 0 while inside curl_multi_socket_action() */
        bool freed;             /* http_client_free() was called */
        bool has_pending_add;

        http_fake_fn fake;
        void *fake_userdata;

        http_stats stats;
};

/* Deep copy of the options of a fake request, handed to the fake handler. */
typedef struct fake_opts {
        http_request_opts opts;
        http_tls tls;
        char *method, *url, *bearer_token, *aws_sigv4, *userpwd;
        char *ca_file, *ca_pem, *cert_file, *key_file, *cert_pem, *key_pem;
        char **headers;
        void *body;
} fake_opts;

struct http_request {
        http_client *client;
        http_request *prev, *next; /* in client->requests or client->zombies */
        bool linked, zombie;

        CURL *easy;
        bool in_multi, pending_add;
        struct curl_slist *headers;
        char errbuf[CURL_ERROR_SIZE];

        http_done_fn done;
        http_data_fn on_data;
        void *userdata;
        size_t max_body;

        http_response resp;
        size_t body_cap, headers_cap, n_headers;
        int abort_error; /* set by a callback that made curl abort */
        /* A body curl reads through on_curl_read(): borrowed, or produced. */
        http_body_fn upload_fn;
        void *upload_userdata;
        const char *upload_buf; /* body_borrowed */
        size_t upload_len;
        uint64_t upload_off;
        bool cancelled, finished;
        unsigned busy; /* inside on_data (fake requests) */

        /* fake requests */
        sd_event_source *defer, *timeout;
        fake_opts *fake;
        bool responded;
};

/* curl's upload buffer (its minimum), for a body read through on_curl_read(). */
#define UPLOAD_BUFFER 16384

/* ---- small helpers ------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_OK;

static void curl_init_once(void) {
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool has_crlf(const char *s) {
        return s && strpbrk(s, "\r\n");
}

static bool method_is_valid(const char *m) {
        if (isempty(m) || strlen(m) > 32)
                return false;
        for (const char *p = m; *p; p++)
                if (!isupper((unsigned char) *p) && *p != '-' && *p != '_')
                        return false;
        return true;
}

static int errno_from_curl(CURLcode code) {
        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_PEER_FAILED_VERIFICATION: /* == CURLE_SSL_CACERT since 7.62 */
                return -EKEYREJECTED;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/* Parses a Retry-After value: delta-seconds or an HTTP-date. -1 if neither. */
static long parse_retry_after(const char *v) {
        char *end;
        unsigned long long n;
        time_t t;

        while (*v == ' ' || *v == '\t')
                v++;
        if (isdigit((unsigned char) *v)) {
                errno = 0;
                n = strtoull(v, &end, 10);
                while (*end == ' ' || *end == '\t')
                        end++;
                if (*end == '\0')
                        return errno == ERANGE || n > LONG_MAX ? LONG_MAX : (long) n;
                return -1;
        }
        t = curl_getdate(v, NULL);
        if (t == (time_t) -1)
                return -1;
        t -= time(NULL);
        return t < 0 ? 0 : (long) t;
}

/* ---- responses ---------------------------------------------------------- */

static void response_headers_free(http_response *resp) {
        if (resp->headers)
                for (char **h = resp->headers; *h; h++)
                        free(*h);
        free(resp->headers);
        resp->headers = NULL;
}

http_response *http_response_free(http_response *resp) {
        if (!resp)
                return NULL;
        free(resp->body);
        response_headers_free(resp);
        free(resp);
        return NULL;
}

const char *http_response_header(const http_response *resp, const char *name) {
        size_t n;

        if (!resp || !resp->headers || !name)
                return NULL;
        n = strlen(name);
        for (char **h = resp->headers; *h; h++)
                if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':') {
                        const char *v = *h + n + 1;

                        while (*v == ' ' || *v == '\t')
                                v++;
                        return v;
                }
        return NULL;
}

/* Forgets the headers of an interim (1xx) or earlier response. */
static void request_reset_headers(http_request *req) {
        for (size_t i = 0; i < req->n_headers; i++) {
                free(req->resp.headers[i]);
                req->resp.headers[i] = NULL;
        }
        req->n_headers = 0;
        req->resp.retry_after_sec = -1;
}

static int request_add_header(http_request *req, const char *line, size_t len) {
        char *copy;

        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
                len--;
        if (len == 0)
                return 0;
        if (req->n_headers >= HTTP_MAX_HEADERS)
                return -EFBIG;
        if (req->n_headers + 2 > req->headers_cap) {
                size_t cap = MAX(req->headers_cap * 2, (size_t) 16);
                char **h = realloc(req->resp.headers, cap * sizeof(char *));

                if (!h)
                        return -ENOMEM;
                req->resp.headers = h;
                req->headers_cap = cap;
        }
        copy = strndup(line, len);
        if (!copy)
                return -ENOMEM;
        req->resp.headers[req->n_headers++] = copy;
        req->resp.headers[req->n_headers] = NULL;

        if (len > 12 && strncasecmp(copy, "Retry-After:", 12) == 0)
                req->resp.retry_after_sec = parse_retry_after(copy + 12);
        return 0;
}

/* Appends to the buffered body, or hands the chunk to on_data. Returns
 * -ECANCELED if the request was cancelled from on_data. */
static int request_deliver(http_request *req, const void *data, size_t len) {
        if (req->on_data && req->resp.status >= 200) {
                int r;

                req->busy++;
                r = req->on_data(req, data, len, req->userdata);
                req->busy--;
                if (req->cancelled)
                        return -ECANCELED;
                return r < 0 ? r : 0;
        }

        if (len > req->max_body || req->resp.body_len > req->max_body - len)
                return -EFBIG;
        if (req->resp.body_len + len + 1 > req->body_cap) {
                size_t cap = MAX(req->body_cap * 2, req->resp.body_len + len + 1);
                char *b;

                cap = MIN(cap, req->max_body + 1);
                b = realloc(req->resp.body, cap);
                if (!b)
                        return -ENOMEM;
                req->resp.body = b;
                req->body_cap = cap;
        }
        memcpy(req->resp.body + req->resp.body_len, data, len);
        req->resp.body_len += len;
        req->resp.body[req->resp.body_len] = '\0';
        return 0;
}

/* ---- request lifetime --------------------------------------------------- */

static void fake_opts_free(fake_opts *f) {
        if (!f)
                return;
        free(f->method);
        free(f->url);
        free(f->bearer_token);
        free(f->aws_sigv4);
        free(f->userpwd);
        free(f->ca_file);
        free(f->ca_pem);
        free(f->cert_file);
        free(f->key_file);
        free(f->cert_pem);
        free(f->key_pem);
        if (f->headers)
                for (char **h = f->headers; *h; h++)
                        free(*h);
        free(f->headers);
        free(f->body);
        free(f);
}

static void request_unlink(http_request *req) {
        http_client *c = req->client;
        http_request **head;

        if (!req->linked)
                return;
        head = req->zombie ? &c->zombies : &c->requests;
        if (req->prev)
                req->prev->next = req->next;
        else
                *head = req->next;
        if (req->next)
                req->next->prev = req->prev;
        req->prev = req->next = NULL;
        req->linked = false;
}

static void request_link(http_request *req, bool zombie) {
        http_client *c = req->client;
        http_request **head = zombie ? &c->zombies : &c->requests;

        request_unlink(req);
        req->zombie = zombie;
        req->next = *head;
        if (*head)
                (*head)->prev = req;
        *head = req;
        req->linked = true;
}

static void request_free(http_request *req) {
        if (!req)
                return;
        request_unlink(req);
        if (req->easy) {
                if (req->in_multi)
                        (void) curl_multi_remove_handle(req->client->multi, req->easy);
                curl_easy_cleanup(req->easy);
        }
        curl_slist_free_all(req->headers);
        free(req->resp.body);
        response_headers_free(&req->resp);
        sd_event_source_disable_unref(req->defer);
        sd_event_source_disable_unref(req->timeout);
        fake_opts_free(req->fake);
        free(req);
}

static void client_free_now(http_client *c);

static http_client *client_ref(http_client *c) {
        c->n_ref++;
        return c;
}

static void client_unref(http_client *c) {
        if (--c->n_ref == 0)
                client_free_now(c);
}

/* Runs the done callback and frees the request. Only from the event loop. */
static void request_finish(http_request *req, int r, const char *fmt, ...) _printf_(3, 4);
static void request_finish(http_request *req, int r, const char *fmt, ...) {
        http_client *c = req->client;
        err_info err;

        if (req->finished || req->cancelled)
                return;
        request_unlink(req);
        req->finished = true;

        err_info_clear(&err);
        err.http_status = req->resp.status;
        err.retry_after_sec = req->resp.retry_after_sec;
        if (r < 0) {
                va_list ap;

                snprintf(err.reason, sizeof(err.reason), "%s", err_name(r));
                va_start(ap, fmt);
                (void) vsnprintf(err.message, sizeof(err.message), fmt, ap);
                va_end(ap);
        }

        c->stats.completed++;
        if (r < 0)
                c->stats.transport_errors++;

        client_ref(c);
        req->done(req, r, &req->resp, &err, req->userdata);
        request_free(req);
        client_unref(c);
}

/* Frees cancelled requests once nothing (curl, an on_data call) uses them. */
static void client_reap(http_client *c) {
        http_request *req, *next;

        if (c->in_curl > 0)
                return;
        for (req = c->zombies; req; req = next) {
                next = req->next;
                if (req->busy == 0)
                        request_free(req);
        }
}

void http_request_cancel(http_request *req) {
        http_client *c;

        if (!req || req->cancelled || req->finished)
                return;
        c = req->client;
        req->cancelled = true;
        if (c->in_curl > 0 || req->busy > 0) {
                /* curl (or the fake client's on_data) is using the request:
                 * its callbacks see ->cancelled and make curl abort it; it is
                 * freed once curl has returned. */
                request_link(req, true);
                return;
        }
        request_free(req);
}

void *http_request_get_userdata(http_request *req) {
        return req ? req->userdata : NULL;
}

long http_request_get_status(http_request *req) {
        return req ? req->resp.status : 0;
}

/* ---- curl callbacks ----------------------------------------------------- */

static size_t on_curl_header(char *data, size_t size, size_t n, void *userdata) {
        http_request *req = userdata;
        size_t len = size * n;
        int r;

        if (req->cancelled)
                return CURL_WRITEFUNC_ERROR;

        if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
                /* A new response (after 1xx, or a retried one): keep only the
                 * headers of the last. "HTTP/1.1 200 OK", "HTTP/2 200". */
                const char *sp = memchr(data, ' ', len);

                request_reset_headers(req);
                req->resp.status = 0;
                if (sp && (size_t) (sp - data) + 4 <= len && isdigit((unsigned char) sp[1]) &&
                    isdigit((unsigned char) sp[2]) && isdigit((unsigned char) sp[3]))
                        req->resp.status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
                return len;
        }

        r = request_add_header(req, data, len);
        if (r < 0) {
                req->abort_error = r;
                return CURL_WRITEFUNC_ERROR;
        }
        return len;
}

static size_t on_curl_write(char *data, size_t size, size_t n, void *userdata) {
        http_request *req = userdata;
        size_t len = size * n;
        int r;

        if (req->cancelled)
                return CURL_WRITEFUNC_ERROR;
        if (req->resp.status == 0) {
                long status = 0;

                (void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
                req->resp.status = status;
        }
        r = request_deliver(req, data, len);
        if (r < 0) {
                req->abort_error = r;
                return CURL_WRITEFUNC_ERROR;
        }
        return len;
}

/* The body of a borrowed request, as a producer. */
static ssize_t read_borrowed(void *buf, size_t len, uint64_t offset, void *userdata) {
        http_request *req = userdata;
        size_t n;

        if (offset >= req->upload_len)
                return 0;
        n = MIN(len, req->upload_len - (size_t) offset);
        memcpy(buf, req->upload_buf + offset, n);
        return (ssize_t) n;
}

static size_t on_curl_read(char *buf, size_t size, size_t n, void *userdata) {
        http_request *req = userdata;
        ssize_t k;

        /* A cancelled request's body may be gone already. */
        if (req->cancelled)
                return CURL_READFUNC_ABORT;
        k = req->upload_fn(buf, size * n, req->upload_off, req->upload_userdata);
        if (k < 0) {
                req->abort_error = (int) k;
                return CURL_READFUNC_ABORT;
        }
        if ((size_t) k > size * n || (uint64_t) k > req->upload_len - req->upload_off ||
            (k == 0 && size * n > 0 && req->upload_off < req->upload_len)) {
                /* More than asked for or announced, or less than announced. */
                req->abort_error = -EIO;
                return CURL_READFUNC_ABORT;
        }
        req->upload_off += (uint64_t) k;
        return (size_t) k;
}

/* curl rewinds to send the body again (a redirect, a refused stream). */
static int on_curl_seek(void *userdata, curl_off_t offset, int origin) {
        http_request *req = userdata;

        if (req->cancelled || origin != SEEK_SET || offset < 0 ||
            (uint64_t) offset > req->upload_len)
                return CURL_SEEKFUNC_FAIL;
        /* A producer starts over; only a borrowed buffer can start anywhere. */
        if (offset != 0 && req->upload_fn != read_borrowed)
                return CURL_SEEKFUNC_CANTSEEK;
        req->upload_off = (uint64_t) offset;
        return CURL_SEEKFUNC_OK;
}

static void sock_free(http_sock *s) {
        http_client *c = s->client;

        if (s->prev)
                s->prev->next = s->next;
        else
                c->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        sd_event_source_disable_unref(s->source);
        free(s);
}

static void client_process(http_client *c);

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        http_sock *s = userdata;
        http_client *c = s->client; /* s may be gone after socket_action */
        int action = 0, running = 0;

        if (revents & (EPOLLIN | EPOLLHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;

        client_ref(c);
        c->in_curl++;
        (void) curl_multi_socket_action(c->multi, fd, action, &running);
        c->in_curl--;
        client_process(c);
        client_unref(c);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        http_client *c = userdata;
        int running = 0;

        client_ref(c);
        c->in_curl++;
        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        c->in_curl--;
        client_process(c);
        client_unref(c);
        return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        http_client *c = userp;
        http_sock *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        (void) curl_multi_assign(c->multi, fd, NULL);
                        sock_free(s);
                }
                return 0;
        }

        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                s->client = c;
                s->fd = fd;
                r = sd_event_add_io(c->event, &s->source, fd, events, on_io, s);
                if (r < 0) {
                        free(s);
                        return -1;
                }
                (void) sd_event_source_set_description(s->source, "http-socket");
                s->next = c->socks;
                if (c->socks)
                        c->socks->prev = s;
                c->socks = s;
                (void) curl_multi_assign(c->multi, fd, s);
        } else if (events != 0) {
                r = sd_event_source_set_io_events(s->source, events);
                if (r < 0)
                        return -1;
        }
        r = sd_event_source_set_enabled(s->source, events != 0 ? SD_EVENT_ON : SD_EVENT_OFF);
        return r < 0 ? -1 : 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        http_client *c = userp;
        uint64_t usec;
        int r;

        if (timeout_ms < 0) {
                if (c->timer)
                        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return 0;
        }

        /* Even 0 goes through the loop: curl must not be re-entered here. */
        usec = (uint64_t) timeout_ms * USEC_PER_MSEC;
        if (!c->timer) {
                r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, usec, 1,
                                               on_timer, c);
                if (r < 0)
                        return -1;
                (void) sd_event_source_set_description(c->timer, "http-timer");
                return 0;
        }
        r = sd_event_source_set_time_relative(c->timer, usec);
        if (r < 0)
                return -1;
        r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

static void request_complete_curl(http_request *req, CURLcode code) {
        long status = 0;
        int r;

        (void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status > 0)
                req->resp.status = status;
        (void) curl_multi_remove_handle(req->client->multi, req->easy);
        req->in_multi = false;

        if (code == CURLE_OK) {
                request_finish(req, 0, "%s", "");
                return;
        }
        if (req->abort_error < 0) {
                r = req->abort_error;
                if (r == -EFBIG)
                        request_finish(req, r, "response body larger than %zu bytes",
                                       req->max_body);
                else
                        request_finish(req, r, "transfer aborted: %s", strerror(-r));
                return;
        }
        r = errno_from_curl(code);
        request_finish(req, r, "%s", req->errbuf[0] ? req->errbuf : curl_easy_strerror(code));
}

static void client_process(http_client *c) {
        CURLMsg *msg;
        int left;

        if (c->in_curl > 0)
                return;

        client_ref(c);
        while (!c->freed && (msg = curl_multi_info_read(c->multi, &left))) {
                http_request *req = NULL;
                CURL *easy = msg->easy_handle;
                CURLcode code = msg->data.result;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
                if (!req || req->cancelled || req->finished)
                        continue;
                request_complete_curl(req, code);
        }

        /* Requests started while curl was running. */
        while (!c->freed && c->has_pending_add) {
                http_request *req;

                c->has_pending_add = false;
                for (req = c->requests; req; req = req->next)
                        if (req->pending_add) {
                                CURLMcode mc;

                                req->pending_add = false;
                                mc = curl_multi_add_handle(c->multi, req->easy);
                                if (mc != CURLM_OK) {
                                        request_finish(req, -ENOMEM, "curl_multi_add_handle: %s",
                                                       curl_multi_strerror(mc));
                                        c->has_pending_add = true; /* list changed: rescan */
                                        break;
                                }
                                req->in_multi = true;
                        }
        }

        client_reap(c);
        client_unref(c);
}

/* ---- clients ------------------------------------------------------------ */

static int client_new(sd_event *e, http_client **ret) {
        http_client *c;

        if (!e || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->event = sd_event_ref(e);
        *ret = c;
        return 0;
}

int http_client_new(sd_event *e, http_client **ret) {
        http_client *c = NULL;
        int r;

        (void) pthread_once(&curl_once, curl_init_once);
        if (curl_init_result != CURLE_OK)
                return -EIO;

        r = client_new(e, &c);
        if (r < 0)
                return r;
        c->multi = curl_multi_init();
        if (!c->multi) {
                client_unref(c);
                return -ENOMEM;
        }
        (void) curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        (void) curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        (void) curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        (void) curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        (void) curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
        /* PIPEWAIT alone does not stop curl 7.88 from opening a connection
         * per transfer when many start together: 250 concurrent requests of
         * the operator's bulk reconcile made 185 TLS connections to the API
         * server (185 handshakes for it, ~30 MiB of buffers for us). With a
         * cap, the excess waits in curl's queue and then rides the HTTP/2
         * connection as streams. Over HTTP/1.1 (the S3 server here) it bounds
         * how many requests we have in flight to one server. */
        (void) curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                                 (long) HTTP_MAX_HOST_CONNECTIONS);
        *ret = c;
        return 0;
}

int http_client_new_fake(sd_event *e, http_fake_fn handler, void *userdata, http_client **ret) {
        http_client *c = NULL;
        int r;

        if (!handler)
                return -EINVAL;
        r = client_new(e, &c);
        if (r < 0)
                return r;
        c->fake = handler;
        c->fake_userdata = userdata;
        *ret = c;
        return 0;
}

static void client_free_now(http_client *c) {
        while (c->requests)
                request_free(c->requests);
        while (c->zombies)
                request_free(c->zombies);
        if (c->multi)
                (void) curl_multi_cleanup(c->multi);
        /* curl_multi_cleanup() reports CURL_POLL_REMOVE for what it still
         * watched; anything left is ours to drop. */
        while (c->socks)
                sock_free(c->socks);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c);
}

http_client *http_client_free(http_client *c) {
        if (!c)
                return NULL;
        if (c->freed)
                return NULL;
        c->freed = true;
        /* Cancel without callbacks; requests curl is using right now are
         * parked and freed with the client once curl returns. */
        while (c->requests)
                http_request_cancel(c->requests);
        client_unref(c);
        return NULL;
}

void http_client_get_stats(const http_client *c, http_stats *ret) {
        if (c && ret)
                *ret = c->stats;
}

/* ---- starting requests -------------------------------------------------- */

static int validate_opts(const http_request_opts *o) {
        if (!o || isempty(o->url))
                return -EINVAL;
        if (o->method && !method_is_valid(o->method))
                return -EINVAL;
        if (o->body_fn ? o->body || o->body_borrowed : !o->body && o->body_len > 0)
                return -EINVAL;
        if (o->body_fn && (!o->method || streq(o->method, "GET") || streq(o->method, "HEAD")))
                return -EINVAL; /* a producer needs a method that sends a body */
        if (has_crlf(o->url) || has_crlf(o->bearer_token) || has_crlf(o->aws_sigv4) ||
            has_crlf(o->userpwd))
                return -EINVAL;
        if (o->headers)
                for (const char *const *h = o->headers; *h; h++)
                        if (has_crlf(*h) || !strpbrk(*h, ":;"))
                                return -EINVAL;
        return 0;
}

static bool headers_have(const char *const *headers, const char *name) {
        size_t n = strlen(name);

        if (headers)
                for (const char *const *h = headers; *h; h++)
                        if (strncasecmp(*h, name, n) == 0 && ((*h)[n] == ':' || (*h)[n] == ';'))
                                return true;
        return false;
}

static int slist_add(struct curl_slist **l, const char *s) {
        struct curl_slist *n = curl_slist_append(*l, s);

        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int setup_easy(http_request *req, const http_request_opts *o) {
        const char *method = o->method ?: "GET";
        bool has_body = o->body || o->body_fn || streq(method, "POST") || streq(method, "PUT") ||
                        streq(method, "PATCH");
        uint64_t connect_timeout = o->connect_timeout_usec ?: HTTP_DEFAULT_CONNECT_TIMEOUT_USEC;
        CURL *e;
        CURLcode rc = CURLE_OK;
        int r;

        e = req->easy = curl_easy_init();
        if (!e)
                return -ENOMEM;

#define SET(opt, val)                                                                              \
        do {                                                                                       \
                rc = curl_easy_setopt(e, opt, val);                                                \
                if (rc != CURLE_OK)                                                                \
                        goto fail;                                                                 \
        } while (0)

        SET(CURLOPT_PRIVATE, req);
        SET(CURLOPT_URL, o->url);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_ERRORBUFFER, req->errbuf);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_TCP_KEEPIDLE, 30L);
        SET(CURLOPT_TCP_KEEPINTVL, 10L);
        SET(CURLOPT_CONNECTTIMEOUT_MS,
            (long) MIN((connect_timeout + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (uint64_t) LONG_MAX));
        if (o->timeout_usec > 0)
                SET(CURLOPT_TIMEOUT_MS,
                    (long) MIN((o->timeout_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC,
                               (uint64_t) LONG_MAX));
        /* curl's default upload buffer is 64 KiB per transfer; bodies here
         * are small and a big one streams fine in 16 KiB (the minimum). With
         * hundreds of PATCHes in flight that is the bulk of our heap. */
        SET(CURLOPT_UPLOAD_BUFFERSIZE, (long) UPLOAD_BUFFER);
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        /* Wait for a connection that may multiplex rather than opening a
         * parallel one: many watches share one HTTP/2 connection. */
        if (strncasecmp(o->url, "https:", 6) == 0)
                SET(CURLOPT_PIPEWAIT, 1L);
        SET(CURLOPT_HEADERFUNCTION, on_curl_header);
        SET(CURLOPT_HEADERDATA, req);
        SET(CURLOPT_WRITEFUNCTION, on_curl_write);
        SET(CURLOPT_WRITEDATA, req);

        if (streq(method, "HEAD"))
                SET(CURLOPT_NOBODY, 1L);
        else if (streq(method, "GET") && !o->body)
                SET(CURLOPT_HTTPGET, 1L);
        else {
                /* A borrowed body of at most the upload buffer curl would
                 * allocate to read it is cheaper to copy. */
                if (has_body && (o->body_fn || (o->body_borrowed && o->body_len > UPLOAD_BUFFER))) {
                        /* Through on_curl_read(): nothing copied, and a
                         * cancelled request never touches the body again. */
                        req->upload_fn = o->body_fn ?: read_borrowed;
                        req->upload_userdata = o->body_fn ? o->body_userdata : req;
                        req->upload_buf = o->body_fn ? NULL : o->body;
                        req->upload_len = o->body_len;
                        SET(CURLOPT_POST, 1L);
                        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) o->body_len);
                        SET(CURLOPT_READFUNCTION, on_curl_read);
                        SET(CURLOPT_READDATA, req);
                        SET(CURLOPT_SEEKFUNCTION, on_curl_seek);
                        SET(CURLOPT_SEEKDATA, req);
                } else if (has_body) {
                        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) o->body_len);
                        SET(CURLOPT_COPYPOSTFIELDS, o->body ? (const char *) o->body : "");
                }
                if (!streq(method, "POST"))
                        SET(CURLOPT_CUSTOMREQUEST, method);
        }

        if (o->headers)
                for (const char *const *h = o->headers; *h; h++) {
                        r = slist_add(&req->headers, *h);
                        if (r < 0)
                                return r;
                }
        if (o->bearer_token) {
                _cleanup_free_ char *auth = NULL;

                if (asprintf(&auth, "Authorization: Bearer %s", o->bearer_token) < 0)
                        return -ENOMEM;
                r = slist_add(&req->headers, auth);
                if (r < 0)
                        return r;
        }
        /* No "Expect: 100-continue" round trip; no form content type unless
         * the caller set one. Not when signing with SigV4: curl 7.88 signs
         * these blank (header-removing) entries as "expect:" and
         * "content-type:" although it never sends them, so no server can
         * verify the signature. */
        if (!o->aws_sigv4) {
                r = slist_add(&req->headers, "Expect:");
                if (r < 0)
                        return r;
        }
        if (has_body && !o->aws_sigv4 && !headers_have(o->headers, "Content-Type")) {
                r = slist_add(&req->headers, "Content-Type:");
                if (r < 0)
                        return r;
        }
        SET(CURLOPT_HTTPHEADER, req->headers);

        if (o->tls) {
                const http_tls *t = o->tls;

                if (t->ca_pem) {
                        struct curl_blob blob = {.data = (void *) t->ca_pem,
                                                 .len = strlen(t->ca_pem),
                                                 .flags = CURL_BLOB_COPY};

                        /* Trust exactly this bundle, not the system's too. */
                        SET(CURLOPT_CAINFO, NULL);
                        SET(CURLOPT_CAPATH, NULL);
                        SET(CURLOPT_CAINFO_BLOB, &blob);
                } else if (t->ca_file) {
                        SET(CURLOPT_CAINFO, t->ca_file);
                        SET(CURLOPT_CAPATH, NULL);
                }
                if (t->cert_pem) {
                        struct curl_blob blob = {.data = (void *) t->cert_pem,
                                                 .len = strlen(t->cert_pem),
                                                 .flags = CURL_BLOB_COPY};

                        SET(CURLOPT_SSLCERT_BLOB, &blob);
                        SET(CURLOPT_SSLCERTTYPE, "PEM");
                } else if (t->cert_file) {
                        SET(CURLOPT_SSLCERT, t->cert_file);
                        SET(CURLOPT_SSLCERTTYPE, "PEM");
                }
                if (t->key_pem) {
                        struct curl_blob blob = {.data = (void *) t->key_pem,
                                                 .len = strlen(t->key_pem),
                                                 .flags = CURL_BLOB_COPY};

                        SET(CURLOPT_SSLKEY_BLOB, &blob);
                        SET(CURLOPT_SSLKEYTYPE, "PEM");
                } else if (t->key_file) {
                        SET(CURLOPT_SSLKEY, t->key_file);
                        SET(CURLOPT_SSLKEYTYPE, "PEM");
                }
                if (t->insecure_skip_verify) {
                        SET(CURLOPT_SSL_VERIFYPEER, 0L);
                        SET(CURLOPT_SSL_VERIFYHOST, 0L);
                }
        }

        if (o->aws_sigv4) {
                SET(CURLOPT_AWS_SIGV4, o->aws_sigv4);
                if (o->userpwd)
                        SET(CURLOPT_USERPWD, o->userpwd);
        }
#undef SET
        return 0;

fail:
        return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

static char *strdup_or_null(const char *s, bool *oom) {
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

static int fake_opts_copy(const http_request_opts *o, fake_opts **ret) {
        fake_opts *f;
        bool oom = false;
        size_t n = 0;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->opts = *o;
        f->opts.method = f->method = strdup_or_null(o->method ?: "GET", &oom);
        f->opts.url = f->url = strdup_or_null(o->url, &oom);
        f->opts.bearer_token = f->bearer_token = strdup_or_null(o->bearer_token, &oom);
        f->opts.aws_sigv4 = f->aws_sigv4 = strdup_or_null(o->aws_sigv4, &oom);
        f->opts.userpwd = f->userpwd = strdup_or_null(o->userpwd, &oom);
        if (o->tls) {
                f->tls = *o->tls;
                f->tls.ca_file = f->ca_file = strdup_or_null(o->tls->ca_file, &oom);
                f->tls.ca_pem = f->ca_pem = strdup_or_null(o->tls->ca_pem, &oom);
                f->tls.cert_file = f->cert_file = strdup_or_null(o->tls->cert_file, &oom);
                f->tls.key_file = f->key_file = strdup_or_null(o->tls->key_file, &oom);
                f->tls.cert_pem = f->cert_pem = strdup_or_null(o->tls->cert_pem, &oom);
                f->tls.key_pem = f->key_pem = strdup_or_null(o->tls->key_pem, &oom);
                f->opts.tls = &f->tls;
        }
        if (o->headers)
                while (o->headers[n])
                        n++;
        f->headers = calloc(n + 1, sizeof(char *));
        if (!f->headers)
                oom = true;
        else
                for (size_t i = 0; i < n; i++)
                        f->headers[i] = strdup_or_null(o->headers[i], &oom);
        f->opts.headers = o->headers ? (const char *const *) f->headers : NULL;
        /* One extra NUL byte so a handler may treat a text body as a string. */
        f->body = malloc(o->body_len + 1);
        if (!f->body)
                oom = true;
        else {
                if (o->body_fn) {
                        /* The handler sees the produced body as one buffer. */
                        for (size_t off = 0; off < o->body_len;) {
                                ssize_t k = o->body_fn((char *) f->body + off, o->body_len - off,
                                                       off, o->body_userdata);

                                if (k <= 0 || (size_t) k > o->body_len - off) {
                                        fake_opts_free(f);
                                        return k < 0 ? (int) k : -EIO;
                                }
                                off += (size_t) k;
                        }
                } else if (o->body_len > 0)
                        memcpy(f->body, o->body, o->body_len);
                ((char *) f->body)[o->body_len] = '\0';
        }
        f->opts.body = o->body || o->body_fn ? f->body : NULL;
        f->opts.body_borrowed = false;
        f->opts.body_fn = NULL;
        f->opts.body_userdata = NULL;
        if (oom) {
                fake_opts_free(f);
                return -ENOMEM;
        }
        *ret = f;
        return 0;
}

static int on_fake_defer(sd_event_source *s, void *userdata) {
        http_request *req = userdata;
        http_client *c = req->client;

        client_ref(c);
        c->fake(req, &req->fake->opts, c->fake_userdata);
        client_unref(c);
        return 0;
}

static int on_fake_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        http_request *req = userdata;

        request_finish(req, -ETIMEDOUT, "Operation timed out after %" PRIu64 " milliseconds (fake)",
                       req->fake->opts.timeout_usec / USEC_PER_MSEC);
        return 0;
}

int http_request_start(http_client *c, const http_request_opts *o, http_done_fn done,
                       void *userdata, http_request **ret) {
        http_request *req;
        int r;

        if (!c || !done || c->freed)
                return -EINVAL;
        r = validate_opts(o);
        if (r < 0)
                return r;

        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->client = c;
        req->done = done;
        req->on_data = o->on_data;
        req->userdata = userdata;
        req->max_body = o->max_body ?: HTTP_DEFAULT_MAX_BODY;
        req->resp.retry_after_sec = -1;
        req->resp.body = calloc(1, 1);
        req->resp.headers = calloc(16, sizeof(char *));
        req->body_cap = 1;
        req->headers_cap = 16;
        if (!req->resp.body || !req->resp.headers) {
                request_free(req);
                return -ENOMEM;
        }

        if (c->fake) {
                r = fake_opts_copy(o, &req->fake);
                if (r >= 0)
                        r = sd_event_add_defer(c->event, &req->defer, on_fake_defer, req);
                if (r >= 0)
                        r = sd_event_source_set_enabled(req->defer, SD_EVENT_ONESHOT);
                if (r >= 0 && o->timeout_usec > 0)
                        r = sd_event_add_time_relative(c->event, &req->timeout, CLOCK_MONOTONIC,
                                                       o->timeout_usec, 1, on_fake_timeout, req);
                if (r < 0) {
                        request_free(req);
                        return r;
                }
        } else {
                r = setup_easy(req, o);
                if (r < 0) {
                        request_free(req);
                        return r;
                }
                if (c->in_curl > 0) {
                        /* Started from an on_data callback: curl can't take
                         * it now, client_process() adds it. */
                        req->pending_add = true;
                        c->has_pending_add = true;
                } else {
                        CURLMcode mc = curl_multi_add_handle(c->multi, req->easy);

                        if (mc != CURLM_OK) {
                                request_free(req);
                                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
                        }
                        req->in_multi = true;
                }
        }

        request_link(req, false);
        c->stats.started++;
        if (ret)
                *ret = req;
        return 0;
}

/* ---- synchronous convenience -------------------------------------------- */

typedef struct run_state {
        bool done;
        int r;
        http_response *resp;
        err_info err;
} run_state;

static void on_run_done(http_request *req, int r, const http_response *resp, const err_info *err,
                        void *userdata) {
        run_state *st = userdata;

        st->done = true;
        st->r = r;
        if (err)
                st->err = *err;
        if (r < 0)
                return;

        /* Steal the response from the request, which is freed next. */
        st->resp = malloc(sizeof(http_response));
        if (!st->resp) {
                st->r = -ENOMEM;
                return;
        }
        *st->resp = req->resp;
        req->resp = (http_response){};
}

int http_request_run(http_client *c, const http_request_opts *o, http_response **ret_resp,
                     err_info *ret_err) {
        run_state st = {};
        http_request *req = NULL;
        int r;

        err_info_clear(&st.err);
        r = http_request_start(c, o, on_run_done, &st, &req);
        if (r < 0)
                return err_info_set(ret_err, r, "failed to start request: %s", strerror(-r));

        while (!st.done) {
                r = sd_event_run(c->event, UINT64_MAX);
                if (r < 0) {
                        http_request_cancel(req);
                        return err_info_set(ret_err, r, "event loop failed: %s", strerror(-r));
                }
        }

        if (st.r < 0) {
                if (ret_err)
                        *ret_err = st.err;
                return st.r;
        }
        if (ret_resp)
                *ret_resp = st.resp;
        else
                http_response_free(st.resp);
        return 0;
}

/* ---- fake responses ----------------------------------------------------- */

int http_fake_respond(http_request *req, long status, const char *const *headers) {
        int r;

        if (!req || !req->fake || req->finished || req->cancelled)
                return -EINVAL;
        request_reset_headers(req);
        req->resp.status = status;
        req->responded = true;
        if (headers)
                for (const char *const *h = headers; *h; h++) {
                        r = request_add_header(req, *h, strlen(*h));
                        if (r < 0)
                                return r;
                }
        return 0;
}

int http_fake_send(http_request *req, const void *data, size_t len) {
        http_client *c;
        int r;

        if (!req || !req->fake || req->finished || req->cancelled || (!data && len > 0))
                return -EINVAL;
        c = req->client;
        if (!req->responded) {
                req->resp.status = 200;
                req->responded = true;
        }

        client_ref(c);
        r = request_deliver(req, data ?: "", len);
        if (r == -ECANCELED) {
                client_reap(c); /* cancelled from on_data: free it now */
        } else if (r < 0) {
                if (r == -EFBIG)
                        request_finish(req, r, "response body larger than %zu bytes",
                                       req->max_body);
                else
                        request_finish(req, r, "transfer aborted: %s", strerror(-r));
        }
        client_unref(c);
        return r;
}

void http_fake_finish(http_request *req, int r) {
        if (!req || !req->fake || req->finished || req->cancelled || req->busy > 0)
                return;
        if (r < 0)
                request_finish(req, r, "fake transport failure: %s", strerror(-r));
        else
                request_finish(req, 0, "%s", "");
}

/* ---- helpers ------------------------------------------------------------ */

char *http_escape(const char *s, bool keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n;
        char *out, *p;

        if (!s)
                return NULL;
        n = strlen(s);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = p = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        for (const unsigned char *q = (const unsigned char *) s; *q; q++) {
                bool unreserved = (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
                                  (*q >= '0' && *q <= '9') || strchr("-._~", *q);

                if (unreserved || (keep_slash && *q == '/'))
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
