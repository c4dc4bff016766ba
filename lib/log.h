/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Logging for the daemons' top layers (library code returns errors and does
 * not log, except at debug level). One JSON object per line on stdout:
 *   {"ts":"2026-11-22T21:45:43.123Z","level":"error","msg":"...","error":"ECONNREFUSED",
 *    "errno":111,"src":"publish.c:88"}
 * or, under systemd (JOURNAL_STREAM names our stdout/stderr), to the journal with
 * PRIORITY, CODE_FILE/CODE_LINE and ERRNO fields.
 *
 * Levels are syslog's (LOG_ERR .. LOG_DEBUG).
 */

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

typedef enum log_target {
        LOG_TARGET_AUTO,    /* journal when JOURNAL_STREAM matches stdout, else JSON */
        LOG_TARGET_JSON,    /* JSON lines on stdout */
        LOG_TARGET_JOURNAL, /* sd_journal_send() */
        LOG_TARGET_CONSOLE, /* plain "ident: message" on stderr, for tools and tests */
} log_target;

/* Sets the program identity, the most verbose level that is emitted and the
 * target. Safe to call more than once. */
void log_setup(const char *ident, int max_level, log_target target);

/* Parses "error", "warning", "info", "debug" (or a syslog number). Returns the
 * level or -EINVAL. */
int log_level_from_string(const char *s);

int log_get_max_level(void);

/* Emits a record when @level is enabled. @error is 0 or an errno (either
 * sign); when non-zero, %m in @fmt expands to its strerror(). Returns
 * -abs(error), so `return log_error_errno(r, "...: %m");` works. */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *fmt, ...) _printf_(6, 7);
int log_internalv(int level, int error, const char *file, int line, const char *func,
                  const char *fmt, va_list ap) _printf_(6, 0);

#define log_full_errno(level, error, ...)                                                          \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(error, ...)   log_full_errno(LOG_DEBUG, (error), __VA_ARGS__)
#define log_info_errno(error, ...)    log_full_errno(LOG_INFO, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, (error), __VA_ARGS__)
#define log_error_errno(error, ...)   log_full_errno(LOG_ERR, (error), __VA_ARGS__)

/* The same, about one object: @object is "namespace/name" (or "name"), emitted
 * as "namespace" and "name" fields in JSON (what Kubernetes users grep for)
 * and BALLAST_OBJECT= in the journal. */
int log_object_internal(int level, int error, const char *object, const char *file, int line,
                        const char *func, const char *fmt, ...) _printf_(7, 8);

#define log_object_full_errno(level, error, object, ...)                                           \
        log_object_internal((level), (error), (object), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_object_debug(object, ...)   log_object_full_errno(LOG_DEBUG, 0, object, __VA_ARGS__)
#define log_object_info(object, ...)    log_object_full_errno(LOG_INFO, 0, object, __VA_ARGS__)
#define log_object_warning(object, ...) log_object_full_errno(LOG_WARNING, 0, object, __VA_ARGS__)
#define log_object_warning_errno(error, object, ...)                                               \
        log_object_full_errno(LOG_WARNING, (error), object, __VA_ARGS__)
#define log_object_error_errno(error, object, ...)                                                 \
        log_object_full_errno(LOG_ERR, (error), object, __VA_ARGS__)

/* Logs "out of memory" and returns -ENOMEM. */
#define log_oom() log_full_errno(LOG_ERR, ENOMEM, "Out of memory.")
