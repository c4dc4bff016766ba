/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Private interfaces between the files of the Kubernetes client (kube.c,
 * kube-config.c, kube-stream.c, kube-store.c, kube-watch.c). Not for use
 * outside them.
 */

#include "kube.h"

/* Deepest JSON nesting accepted in API responses (json-c's default, 32, is
 * too shallow for managedFields of deep custom resources). */
#define KUBE_JSON_MAX_DEPTH 128

/* Strict JSON parse of @len bytes with KUBE_JSON_MAX_DEPTH; only whitespace
 * may follow the value. -EBADMSG with the offset in @ret_err. */
int kube_json_parse(const char *data, size_t len, json_object **ret, err_info *ret_err);

/* Writes into @buf (size @n) a printable excerpt of at most @max bytes of
 * @data: control characters and non-ASCII are escaped as \xNN, "..." marks a
 * cut. Returns @buf. */
char *kube_snippet(const char *data, size_t len, size_t max, char *buf, size_t n);

/* Reads a whole small file into a NUL-terminated buffer the caller frees.
 * -EFBIG when larger than @max_size. */
int kube_read_file(const char *path, size_t max_size, char **ret, size_t *ret_len);

/* Raw requests: the rate limiter, auth and URL handling of the client, with
 * the response handed over as is. */
typedef void (*kube_raw_done_fn)(kube_request *req, int r, const http_response *resp,
                                 const err_info *err, void *userdata);
/* Runs inside libcurl's write callback (http.c makes starting and cancelling
 * requests safe there). @status is the response's HTTP status. */
typedef int (*kube_raw_data_fn)(long status, const void *data, size_t len, void *userdata);

typedef struct kube_raw_opts {
        const char *method;       /* NULL: GET */
        const char *path;         /* "/api/v1/...?query", required */
        const char *content_type; /* with a body */
        const char *body;         /* copied */
        size_t body_len;
        uint64_t timeout_usec;    /* 0: the client's default */
        kube_raw_data_fn on_data; /* stream the body; no automatic 401 retry then */
} kube_raw_opts;

/* Starts (or queues behind the rate limiter) a request. @done is called once,
 * from the event loop, unless cancelled; the handle is freed after it
 * returns. */
int kube_raw_start(kube_client *c, const kube_raw_opts *o, kube_raw_done_fn done, void *userdata,
                   kube_request **ret);

/* Re-reads the token file now (after a 401). No-op without a token file. */
int kube_client_reload_token(kube_client *c);

/* Internal list start used by the watch, with err_info for start failures. */
int kube_list_start(kube_client *c, const kube_resource *res, const char *namespace,
                    const kube_list_opts *opts, kube_done_fn done, void *userdata,
                    kube_request **ret, err_info *ret_err);

/* "v1" or "group/version". Caller frees. */
char *kube_resource_api_version(const kube_resource *res);
