/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Parsers for settings given as flags, environment or config files. Each
 * returns 0 or -EINVAL (-ERANGE on overflow) and writes *ret only on success. */

#include <stdbool.h>
#include <stdint.h>

/* Go-style durations: "1h30m", "30s", "500ms", "2m5s", "0". A bare number is
 * seconds. Units: ms, s, m, h. No negative values. */
int parse_duration_usec(const char *s, uint64_t *ret);

/* "true/false", "yes/no", "on/off", "1/0" (case-insensitive). */
int parse_bool(const char *s, bool *ret);

/* A decimal unsigned integer within [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Formats @usec as a duration parse_duration_usec() accepts ("1m30s", "250ms").
 * Returns @buf. */
char *format_duration(uint64_t usec, char *buf, size_t size);
