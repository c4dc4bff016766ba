/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One place that maps remote failures to negative errno values (see
 * docs/errors.md). Functions return 0 (or a count) on success and a negative
 * errno on failure; the details a caller may want to show a person (HTTP
 * status, Kubernetes Status reason and message, S3 error code, parse
 * position) come back through an optional `err_info *ret_err` out-parameter.
 *
 *   2xx, 304                       0
 *   400, 422 (Invalid)             -EINVAL
 *   401, 403                       -EACCES     (http_status tells them apart)
 *   404                            -ENOENT
 *   409 Conflict, 412              -ESTALE     (stale resourceVersion/precondition)
 *   409 AlreadyExists              -EEXIST     (by Kubernetes reason)
 *   410 Gone, "Expired"            -EGONE      (a watch must relist)
 *   413                            -EFBIG
 *   429, 5xx, S3 SlowDown          -EAGAIN     (retry_after_sec when the server said)
 *   other 4xx                      -EPROTO
 *   transport timeout              -ETIMEDOUT
 *   connection refused             -ECONNREFUSED
 *   name resolution, no route      -EHOSTUNREACH
 *   TLS verification failure       -EKEYREJECTED
 *   other transport failure        -EIO
 *   unparsable input               -EBADMSG
 */

#include <errno.h>
#include <stdbool.h>

#include "macro.h"

/* 410 Gone from the API server, as an HTTP status or a watch ERROR event. */
#define EGONE EKEYEXPIRED

typedef struct err_info {
        long http_status;     /* 0 when no HTTP response was received */
        char reason[64];      /* Kubernetes Status.reason, S3 error Code, or a short tag */
        char message[512];    /* human-readable detail from the server, transport or parser */
        long retry_after_sec; /* Retry-After in seconds, -1 when the server gave none */
} err_info;

/* Resets @e to "no error". NULL is allowed. */
void err_info_clear(err_info *e);

/* Formats the message of @e (NULL is allowed) and returns @r unchanged, so a
 * caller can write `return err_info_set(ret_err, -EBADMSG, "line %u: ...", n);`. */
int err_info_set(err_info *e, int r, const char *fmt, ...) _printf_(3, 4);

/* Maps an HTTP status to 0 or a negative errno as in the table above. @reason,
 * when non-NULL, is the Kubernetes Status reason or S3 error Code and refines
 * 409 (AlreadyExists) and 410/Expired. */
int err_from_http_status(long status, const char *reason);

/* A short stable name for a negative errno this project uses ("ENOENT",
 * "EGONE", ...), for logs and metrics. Never NULL. */
const char *err_name(int r);

/* True for errors a caller should retry with backoff (-EAGAIN, -ETIMEDOUT,
 * -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -EIO). */
bool err_is_transient(int r);
