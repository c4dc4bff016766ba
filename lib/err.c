/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"

void err_info_clear(err_info *e) {
        if (!e)
                return;
        *e = (err_info){.retry_after_sec = -1};
}

int err_info_set(err_info *e, int r, const char *fmt, ...) {
        va_list ap;

        if (!e)
                return r;

        /* Only the message is written: a caller may have filled http_status or
         * reason before and wants to keep them. */
        va_start(ap, fmt);
        (void) vsnprintf(e->message, sizeof(e->message), fmt, ap);
        va_end(ap);
        return r;
}

static bool reason_is(const char *reason, const char *s) {
        return reason && strcasecmp(reason, s) == 0;
}

int err_from_http_status(long status, const char *reason) {
        if ((status >= 200 && status < 300) || status == 304)
                return 0;
        if (status <= 0)
                return -EIO; /* no response at all */

        /* Kubernetes reports "resourceVersion too old" as 410 or, in watch
         * ERROR events, as a Status with reason Expired (or Gone). */
        if (status == 410 || reason_is(reason, "Expired") || reason_is(reason, "Gone"))
                return -EGONE;
        if (reason_is(reason, "SlowDown"))
                return -EAGAIN;

        switch (status) {
        case 400:
        case 422:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 409:
                if (reason_is(reason, "AlreadyExists") ||
                    reason_is(reason, "BucketAlreadyOwnedByYou"))
                        return -EEXIST;
                return -ESTALE;
        case 412:
                return -ESTALE;
        case 413:
                return -EFBIG;
        case 429:
                return -EAGAIN;
        default:
                break;
        }
        if (status >= 500 && status < 600)
                return -EAGAIN;
        /* Other 4xx, 1xx that reached us, 3xx we don't follow. */
        return -EPROTO;
}

static const struct {
        int errnum;
        const char *name;
} err_names[] = {
        {0, "OK"},
        {EPERM, "EPERM"},
        {ENOENT, "ENOENT"},
        {ESRCH, "ESRCH"},
        {EINTR, "EINTR"},
        {EIO, "EIO"},
        {ENXIO, "ENXIO"},
        {E2BIG, "E2BIG"},
        {EBADF, "EBADF"},
        {ECHILD, "ECHILD"},
        {EAGAIN, "EAGAIN"},
        {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},
        {EFAULT, "EFAULT"},
        {EBUSY, "EBUSY"},
        {EEXIST, "EEXIST"},
        {EXDEV, "EXDEV"},
        {ENODEV, "ENODEV"},
        {ENOTDIR, "ENOTDIR"},
        {EISDIR, "EISDIR"},
        {EINVAL, "EINVAL"},
        {ENFILE, "ENFILE"},
        {EMFILE, "EMFILE"},
        {ETXTBSY, "ETXTBSY"},
        {EFBIG, "EFBIG"},
        {ENOSPC, "ENOSPC"},
        {ESPIPE, "ESPIPE"},
        {EROFS, "EROFS"},
        {EMLINK, "EMLINK"},
        {EPIPE, "EPIPE"},
        {EDOM, "EDOM"},
        {ERANGE, "ERANGE"},
        {EDEADLK, "EDEADLK"},
        {ENAMETOOLONG, "ENAMETOOLONG"},
        {ENOSYS, "ENOSYS"},
        {ENOTEMPTY, "ENOTEMPTY"},
        {ELOOP, "ELOOP"},
        {ENOMSG, "ENOMSG"},
        {ENODATA, "ENODATA"},
        {ETIME, "ETIME"},
        {EPROTO, "EPROTO"},
        {EBADMSG, "EBADMSG"},
        {EOVERFLOW, "EOVERFLOW"},
        {EILSEQ, "EILSEQ"},
        {EUSERS, "EUSERS"},
        {ENOTSOCK, "ENOTSOCK"},
        {EMSGSIZE, "EMSGSIZE"},
        {EPROTONOSUPPORT, "EPROTONOSUPPORT"},
        {EOPNOTSUPP, "EOPNOTSUPP"},
        {EAFNOSUPPORT, "EAFNOSUPPORT"},
        {EADDRINUSE, "EADDRINUSE"},
        {EADDRNOTAVAIL, "EADDRNOTAVAIL"},
        {ENETDOWN, "ENETDOWN"},
        {ENETUNREACH, "ENETUNREACH"},
        {ECONNABORTED, "ECONNABORTED"},
        {ECONNRESET, "ECONNRESET"},
        {ENOBUFS, "ENOBUFS"},
        {EISCONN, "EISCONN"},
        {ENOTCONN, "ENOTCONN"},
        {ETIMEDOUT, "ETIMEDOUT"},
        {ECONNREFUSED, "ECONNREFUSED"},
        {EHOSTDOWN, "EHOSTDOWN"},
        {EHOSTUNREACH, "EHOSTUNREACH"},
        {EALREADY, "EALREADY"},
        {EINPROGRESS, "EINPROGRESS"},
        {ESTALE, "ESTALE"},
        {EDQUOT, "EDQUOT"},
        {ECANCELED, "ECANCELED"},
        {ENOKEY, "ENOKEY"},
        {EGONE, "EGONE"},
        {EKEYREVOKED, "EKEYREVOKED"},
        {EKEYREJECTED, "EKEYREJECTED"},
        {EOWNERDEAD, "EOWNERDEAD"},
        {ENOTRECOVERABLE, "ENOTRECOVERABLE"},
        {ENOMEDIUM, "ENOMEDIUM"},
};

const char *err_name(int r) {
        int n = r < 0 ? -r : r;

        for (size_t i = 0; i < ELEMENTSOF(err_names); i++)
                if (err_names[i].errnum == n)
                        return err_names[i].name;
        return "EUNKNOWN";
}

bool err_is_transient(int r) {
        switch (r) {
        case -EAGAIN:
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EHOSTUNREACH:
        case -EIO:
                return true;
        default:
                return false;
        }
}
