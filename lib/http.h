/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Asynchronous HTTP on libcurl's multi interface, driven by sd-event socket
 * and timer sources: one thread runs any number of watches, API calls and S3
 * transfers at once. HTTP/2 is used over TLS when the server offers it, so
 * many requests to one API server share a connection.
 *
 * Every request has TCP keepalive on. A request ends exactly once: its done
 * callback runs (from the event loop, never from inside http_request_start())
 * unless the request was cancelled first.
 *
 * A client can also be made "fake" (http_client_new_fake()): requests then go
 * to a handler in the test instead of the network. This is the test seam for
 * kube and s3 code paths a real server can't be made to produce.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "err.h"
#include "macro.h"

typedef struct http_client http_client;
typedef struct http_request http_request;

/* TLS settings. All pointers are borrowed for the duration of
 * http_request_start(); the values are copied. */
typedef struct http_tls {
        const char *ca_file;   /* PEM file of trusted CAs, or NULL for the system store */
        const char *ca_pem;    /* PEM blob of trusted CAs (kubeconfig certificate-authority-data) */
        const char *cert_file; /* client certificate, PEM */
        const char *key_file;
        const char *cert_pem; /* client certificate/key as PEM blobs */
        const char *key_pem;
        bool insecure_skip_verify; /* only when a kubeconfig explicitly says so */
} http_tls;

typedef struct http_response {
        long status; /* HTTP status; 0 when no response was received */
        char *body;  /* whole body, NUL-terminated; empty when streamed */
        size_t body_len;
        char **headers;       /* NULL-terminated "Name: value" lines (last response only) */
        long retry_after_sec; /* Retry-After in seconds, -1 when absent */
} http_response;

/* Streaming body callback: called for each chunk as it arrives (the body is
 * then not buffered). @data is borrowed for the call. Return 0 to go on, or a
 * negative errno to abort the transfer; the done callback then gets it. */
typedef int (*http_data_fn)(http_request *req, const void *data, size_t len, void *userdata);

/* Request body producer (http_request_opts.body_fn): writes the next up to
 * @len bytes of the body, those starting at @offset, into @buf and returns
 * how many (0 only at the end), or a negative errno to abort the transfer.
 * Reads go forward from offset 0; when curl has to send the body again (a
 * redirect, a refused HTTP/2 stream) they start over at 0. Never called after
 * the done callback or a cancel. */
typedef ssize_t (*http_body_fn)(void *buf, size_t len, uint64_t offset, void *userdata);

/* Completion callback, called once. @r is 0 when an HTTP response arrived
 * (whatever its status: map it with err_from_http_status()), or a negative
 * errno for a transport failure (see err.h), in which case @err says what
 * curl said. @resp and @err are borrowed, valid for the call. The request
 * handle is freed right after the callback returns. */
typedef void (*http_done_fn)(http_request *req, int r, const http_response *resp,
                             const err_info *err, void *userdata);

typedef struct http_request_opts {
        const char *method;         /* "GET" when NULL */
        const char *url;            /* required */
        const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
        const void *body;           /* request body, copied; may be NULL */
        size_t body_len;
        /* The body's bytes are not copied: @body stays valid and unchanged
         * until the done callback or http_request_cancel(). A body of
         * megabytes then costs no second copy in curl. */
        bool body_borrowed;
        /* Non-NULL: the body_len bytes of the body come from it instead
         * (@body must be NULL), with @body_userdata. */
        http_body_fn body_fn;
        void *body_userdata;
        const http_tls *tls;      /* NULL: system CAs, verification on */
        const char *bearer_token; /* adds "Authorization: Bearer ..." */
        const char *aws_sigv4;    /* e.g. "aws:amz:us-east-1:s3": sign with CURLOPT_AWS_SIGV4 */
        const char *userpwd;      /* "ACCESS_KEY:SECRET" for SigV4 */
        uint64_t connect_timeout_usec; /* 0: 10 s */
        uint64_t timeout_usec;         /* whole-transfer limit; 0: none (watches set one) */
        size_t max_body;               /* cap on a buffered body; 0: 64 MiB. Over it: -EFBIG */
        http_data_fn on_data;          /* non-NULL: stream the body to it (status >= 200) */
} http_request_opts;

/* Creates a client attached to @e (a reference is taken). */
int http_client_new(sd_event *e, http_client **ret);

/* Cancels every pending request without calling its callbacks and frees the
 * client. NULL is allowed; returns NULL. */
http_client *http_client_free(http_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(http_client *, http_client_free);

/* Starts a request. @done is required. On success, *@ret (if non-NULL) is a
 * borrowed handle valid until @done has been called or the request has been
 * cancelled. Returns -EINVAL for bad options, -ENOMEM. */
int http_request_start(http_client *c, const http_request_opts *o, http_done_fn done,
                       void *userdata, http_request **ret);

/* Aborts a pending request; its done callback is not called. NULL is fine. */
void http_request_cancel(http_request *req);

/* The userdata given to http_request_start(). */
void *http_request_get_userdata(http_request *req);

/* The HTTP status of the response being received (known once its status line
 * arrived, so on_data can tell an error body from a stream), 0 before. */
long http_request_get_status(http_request *req);

/* Synchronous convenience for start-up code and tests: starts the request and
 * runs the client's event loop until it completes. On success (a response
 * arrived, whatever its status) returns 0 and *@ret_resp owns the response;
 * on transport failure returns the negative errno and fills @ret_err. */
int http_request_run(http_client *c, const http_request_opts *o, http_response **ret_resp,
                     err_info *ret_err);

http_response *http_response_free(http_response *resp);
DEFINE_TRIVIAL_CLEANUP_FUNC(http_response *, http_response_free);

/* The value of header @name (case-insensitive), borrowed, or NULL. */
const char *http_response_header(const http_response *resp, const char *name);

/* Percent-encodes @s for a URL path segment (unreserved characters and, when
 * @keep_slash, "/" pass through) or a query value. Caller frees. */
char *http_escape(const char *s, bool keep_slash);

/* Statistics, for benchmarks and tests that count requests. */
typedef struct http_stats {
        uint64_t started;
        uint64_t completed;
        uint64_t transport_errors;
} http_stats;
void http_client_get_stats(const http_client *c, http_stats *ret);

/* Responses counted by HTTP status, for clients that export
 * rest_client_requests_total{code=...}: n[status] for 100..599, and n[0] for
 * a request that got no response (a transport error, client-go's
 * code="<error>") or a status out of that range. */
#define HTTP_CODE_MAX 600
typedef struct http_code_counts {
        uint64_t n[HTTP_CODE_MAX];
} http_code_counts;

static inline void http_code_counts_inc(http_code_counts *c, long status) {
        c->n[status >= 100 && status < HTTP_CODE_MAX ? status : 0]++;
}

/* ---- Test seam ---------------------------------------------------------- */

/* Handler of a fake client: called (from the event loop) for each request
 * started. @o and the strings in it are borrowed for the call; copy what is
 * needed. Answer now or later with http_fake_respond()/http_fake_send()/
 * http_fake_finish(). */
typedef void (*http_fake_fn)(http_request *req, const http_request_opts *o, void *userdata);

int http_client_new_fake(sd_event *e, http_fake_fn handler, void *userdata, http_client **ret);

/* Sends the status line and headers ("Name: value", NULL-terminated). */
int http_fake_respond(http_request *req, long status, const char *const *headers);
/* Delivers a body chunk: to on_data when streaming, else buffered. Returns
 * the on_data callback's negative errno if it aborted (the request is then
 * already finished). */
int http_fake_send(http_request *req, const void *data, size_t len);
/* Completes the request: @r = 0 for a normal end, or a negative errno to
 * simulate a transport failure. Calls the done callback. */
void http_fake_finish(http_request *req, int r);
