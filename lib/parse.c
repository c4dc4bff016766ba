/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <strings.h>

#include "macro.h"
#include "parse.h"

int parse_duration_usec(const char *s, uint64_t *ret) {
        uint64_t total = 0;
        const char *p = s;

        if (isempty(s))
                return -EINVAL;
        if (streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        while (*p) {
                uint64_t n = 0, mult;
                const char *digits = p;

                while (*p >= '0' && *p <= '9') {
                        if (n > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        n = n * 10 + (uint64_t) (*p - '0');
                        p++;
                }
                if (p == digits)
                        return -EINVAL;
                if (*p == '\0' && digits == s) {
                        mult = USEC_PER_SEC; /* a bare number: seconds */
                } else if (strneq(p, "ms", 2)) {
                        mult = USEC_PER_MSEC;
                        p += 2;
                } else if (*p == 's') {
                        mult = USEC_PER_SEC;
                        p++;
                } else if (*p == 'm') {
                        mult = 60 * USEC_PER_SEC;
                        p++;
                } else if (*p == 'h') {
                        mult = 3600 * USEC_PER_SEC;
                        p++;
                } else
                        return -EINVAL;
                if (n > (UINT64_MAX - total) / mult)
                        return -ERANGE;
                total += n * mult;
        }
        *ret = total;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off"};

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (isempty(s) || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end)
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

char *format_duration(uint64_t usec, char *buf, size_t size) {
        uint64_t h = usec / (3600 * USEC_PER_SEC), m = usec / (60 * USEC_PER_SEC) % 60,
                 sec = usec / USEC_PER_SEC % 60, ms = usec / USEC_PER_MSEC % 1000;
        size_t n = 0;

        if (usec < USEC_PER_MSEC) {
                snprintf(buf, size, "0");
                return buf;
        }
        if (h)
                n += (size_t) snprintf(buf + n, size > n ? size - n : 0, "%" PRIu64 "h", h);
        if (m)
                n += (size_t) snprintf(buf + n, size > n ? size - n : 0, "%" PRIu64 "m", m);
        if (sec)
                n += (size_t) snprintf(buf + n, size > n ? size - n : 0, "%" PRIu64 "s", sec);
        if (ms)
                snprintf(buf + n, size > n ? size - n : 0, "%" PRIu64 "ms", ms);
        return buf;
}
