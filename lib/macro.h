/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Small helpers every file uses: cleanup attributes, ownership transfer and
 * a few predicates. Modelled on systemd's src/basic/macro.h.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f)         __attribute__((cleanup(f)))
#define _unused_             __attribute__((unused))
#define _printf_(a, b)       __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _likely_(x)          __builtin_expect(!!(x), 1)
#define _unlikely_(x)        __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Hands the value of a pointer or fd to the caller and clears the variable, so
 * the cleanup attribute on it no longer frees it. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                typeof(p) _take_p = (p);                                                           \
                (p) = NULL;                                                                        \
                _take_p;                                                                           \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _take_fd = (fd);                                                               \
                (fd) = -1;                                                                         \
                _take_fd;                                                                          \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes an fd without disturbing errno; -1 is a no-op. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}
static inline void closep(int *fd) {
        safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Declares static inline void funcp(type *p) that calls func(*p) when *p is non-NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
        static inline void func##p(type *p) {                                                      \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }

#define streq(a, b)     (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)
#define isempty(s)      (!(s) || !*(s))
#define strna(s)        ((s) ? (s) : "n/a")
#define strempty(s)     ((s) ? (s) : "")

static inline bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define NSEC_PER_USEC UINT64_C(1000)

/* Frees @p and returns NULL: `x = mfree(x);`. */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}
