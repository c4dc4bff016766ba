/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "err.h"
#include "log.h"

static char log_ident[64] = "ballast";
static int log_max_level = LOG_INFO;
static log_target log_requested = LOG_TARGET_AUTO;
static log_target log_resolved = LOG_TARGET_AUTO; /* AUTO: not resolved yet */

/* True if $JOURNAL_STREAM ("DEV:INO", set by systemd for services whose
 * output goes to the journal) names our stdout or stderr. */
static bool journal_stream_is_ours(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (isempty(e) || sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != '\0')
                return false;
        for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++)
                if (fstat(fd, &st) >= 0 && (unsigned long long) st.st_dev == dev &&
                    (unsigned long long) st.st_ino == ino)
                        return true;
        return false;
}

static log_target resolve_target(void) {
        if (log_resolved == LOG_TARGET_AUTO)
                log_resolved = log_requested != LOG_TARGET_AUTO ? log_requested
                               : journal_stream_is_ours()       ? LOG_TARGET_JOURNAL
                                                                : LOG_TARGET_JSON;
        return log_resolved;
}

void log_setup(const char *ident, int max_level, log_target target) {
        if (ident)
                snprintf(log_ident, sizeof(log_ident), "%s", ident);
        log_max_level = max_level < LOG_EMERG ? LOG_EMERG : MIN(max_level, LOG_DEBUG);
        log_requested = target;
        log_resolved = LOG_TARGET_AUTO;
        (void) resolve_target();
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } names[] = {
                {"emerg", LOG_EMERG},     {"alert", LOG_ALERT},  {"crit", LOG_CRIT},
                {"critical", LOG_CRIT},   {"err", LOG_ERR},      {"error", LOG_ERR},
                {"warning", LOG_WARNING}, {"warn", LOG_WARNING}, {"notice", LOG_NOTICE},
                {"info", LOG_INFO},       {"debug", LOG_DEBUG},
        };

        if (isempty(s))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(s, names[i].name) == 0)
                        return names[i].level;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

static const char *level_name(int level) {
        switch (level) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
                return "critical";
        case LOG_ERR:
                return "error";
        case LOG_WARNING:
                return "warning";
        case LOG_NOTICE:
                return "notice";
        case LOG_INFO:
                return "info";
        default:
                return "debug";
        }
}

/* ---- JSON line ---------------------------------------------------------- */

typedef struct line {
        char *data;
        size_t len, cap;
        bool oom;
} line;

static void line_put(line *l, const char *s, size_t n) {
        if (l->oom)
                return;
        if (l->len + n + 1 > l->cap) {
                size_t cap = MAX(l->cap * 2, l->len + n + 1);
                char *d = realloc(l->data, cap);

                if (!d) {
                        l->oom = true;
                        return;
                }
                l->data = d;
                l->cap = cap;
        }
        memcpy(l->data + l->len, s, n);
        l->len += n;
        l->data[l->len] = '\0';
}

static void line_puts(line *l, const char *s) {
        line_put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
        size_t len;
        uint32_t cp;

        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xe0) == 0xc0) {
                len = 2;
                cp = s[0] & 0x1f;
        } else if ((s[0] & 0xf0) == 0xe0) {
                len = 3;
                cp = s[0] & 0x0f;
        } else if ((s[0] & 0xf8) == 0xf0) {
                len = 4;
                cp = s[0] & 0x07;
        } else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond Unicode. */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return len;
}

/* A JSON string: control characters escaped, invalid UTF-8 replaced by
 * U+FFFD, so every line is valid JSON whatever a message contains. */
static void line_put_string(line *l, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        size_t n = strlen(s);

        line_put(l, "\"", 1);
        while (n > 0) {
                size_t k;

                switch (*p) {
                case '"':
                        line_puts(l, "\\\"");
                        break;
                case '\\':
                        line_puts(l, "\\\\");
                        break;
                case '\n':
                        line_puts(l, "\\n");
                        break;
                case '\r':
                        line_puts(l, "\\r");
                        break;
                case '\t':
                        line_puts(l, "\\t");
                        break;
                default:
                        if (*p < 0x20 || *p == 0x7f) {
                                char esc[7] = {'\\',         'u',           '0', '0',
                                               hex[*p >> 4], hex[*p & 0xf], '\0'};

                                line_puts(l, esc);
                                break;
                        }
                        k = utf8_len(p, n);
                        if (k == 0) {
                                line_puts(l, "\\ufffd");
                                break;
                        }
                        line_put(l, (const char *) p, k);
                        p += k;
                        n -= k;
                        continue;
                }
                p++;
                n--;
        }
        line_put(l, "\"", 1);
}

static void write_full(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, s, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return; /* nowhere left to report it */
                }
                s += k;
                n -= (size_t) k;
        }
}

/* The object the record is about ("namespace/name"), or NULL; see
 * log_object_internal(). Single-threaded by design: only the event loop logs. */
static const char *log_object;

static void emit_json(int level, int error, const char *file, int line_no, const char *msg) {
        line l = {};
        struct timespec ts;
        struct tm tm;
        char buf[96];
        const char *base = file ? strrchr(file, '/') : NULL;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) gmtime_r(&ts.tv_sec, &tm);
        strftime(buf, sizeof(buf), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
        line_puts(&l, buf);
        snprintf(buf, sizeof(buf), ".%03ldZ\",\"level\":\"%s\",\"msg\":", ts.tv_nsec / 1000000L,
                 level_name(level));
        line_puts(&l, buf);
        line_put_string(&l, msg);
        if (log_object) {
                const char *slash = strchr(log_object, '/');

                if (slash) {
                        char ns[256];

                        snprintf(ns, sizeof(ns), "%.*s",
                                 (int) MIN((size_t) (slash - log_object), sizeof(ns) - 1),
                                 log_object);
                        line_puts(&l, ",\"namespace\":");
                        line_put_string(&l, ns);
                        line_puts(&l, ",\"name\":");
                        line_put_string(&l, slash + 1);
                } else {
                        line_puts(&l, ",\"name\":");
                        line_put_string(&l, log_object);
                }
        }
        if (error != 0) {
                snprintf(buf, sizeof(buf), ",\"error\":\"%s\",\"errno\":%d", err_name(error),
                         abs(error));
                line_puts(&l, buf);
        }
        if (file) {
                snprintf(buf, sizeof(buf), "%s:%d", base ? base + 1 : file, line_no);
                line_puts(&l, ",\"src\":");
                line_put_string(&l, buf);
        }
        line_puts(&l, "}\n");

        if (l.oom)
                write_full(STDOUT_FILENO, "{\"level\":\"error\",\"msg\":\"Out of memory.\"}\n", 41);
        else
                write_full(STDOUT_FILENO, l.data, l.len); /* one write: lines don't interleave */
        free(l.data);
}

static void emit_console(const char *msg) {
        line l = {};

        line_puts(&l, log_ident);
        line_puts(&l, ": ");
        line_puts(&l, msg);
        line_puts(&l, "\n");
        if (!l.oom)
                write_full(STDERR_FILENO, l.data, l.len);
        free(l.data);
}

static void emit_journal(int level, int error, const char *file, int line_no, const char *func,
                         const char *msg) {
        int r;

        if (log_object)
                r = sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "CODE_FILE=%s",
                                    strna(file), "CODE_LINE=%d", line_no, "CODE_FUNC=%s",
                                    strna(func), "SYSLOG_IDENTIFIER=%s", log_ident, "ERRNO=%d",
                                    abs(error), "BALLAST_OBJECT=%s", log_object, NULL);
        else if (error != 0)
                r = sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "CODE_FILE=%s",
                                    strna(file), "CODE_LINE=%d", line_no, "CODE_FUNC=%s",
                                    strna(func), "SYSLOG_IDENTIFIER=%s", log_ident, "ERRNO=%d",
                                    abs(error), NULL);
        else
                r = sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "CODE_FILE=%s",
                                    strna(file), "CODE_LINE=%d", line_no, "CODE_FUNC=%s",
                                    strna(func), "SYSLOG_IDENTIFIER=%s", log_ident, NULL);
        if (r < 0)
                emit_json(level, error, file, line_no, msg); /* journal gone: don't lose it */
}

int log_internalv(int level, int error, const char *file, int line_no, const char *func,
                  const char *fmt, va_list ap) {
        int saved_errno = errno, ret = error == 0 ? 0 : -abs(error);
        char small[1024];
        char *msg = small, *big = NULL;
        va_list aq;
        int n;

        if ((level & LOG_PRIMASK) > log_max_level) {
                errno = saved_errno;
                return ret;
        }
        level &= LOG_PRIMASK;

        /* %m expands to strerror(errno): make that the error we log. */
        va_copy(aq, ap);
        errno = error != 0 ? abs(error) : saved_errno;
        n = vsnprintf(small, sizeof(small), fmt, aq);
        va_end(aq);
        if (n < 0)
                msg = (char *) "(unformattable log message)";
        else if ((size_t) n >= sizeof(small)) {
                big = malloc((size_t) n + 1);
                if (big) {
                        errno = error != 0 ? abs(error) : saved_errno;
                        (void) vsnprintf(big, (size_t) n + 1, fmt, ap);
                        msg = big;
                }
        }

        switch (resolve_target()) {
        case LOG_TARGET_JOURNAL:
                emit_journal(level, error, file, line_no, func, msg);
                break;
        case LOG_TARGET_CONSOLE:
                emit_console(msg);
                break;
        default:
                emit_json(level, error, file, line_no, msg);
                break;
        }

        free(big);
        errno = saved_errno;
        return ret;
}

int log_internal(int level, int error, const char *file, int line_no, const char *func,
                 const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_internalv(level, error, file, line_no, func, fmt, ap);
        va_end(ap);
        return r;
}

int log_object_internal(int level, int error, const char *object, const char *file, int line_no,
                        const char *func, const char *fmt, ...) {
        va_list ap;
        int r;

        log_object = object;
        va_start(ap, fmt);
        r = log_internalv(level, error, file, line_no, func, fmt, ap);
        va_end(ap);
        log_object = NULL;
        return r;
}
