/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Prometheus metrics in the text exposition format. Counters and gauges with
 * up to one set of labels each series, registered once and updated from the
 * event loop; the health server's thread renders them, so updates and
 * rendering take one mutex (cheap: a handful of updates per reconcile).
 */

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum metric_type {
        METRIC_COUNTER,
        METRIC_GAUGE,
} metric_type;

typedef struct metric metric;

/* Registers (or finds) the family @name. @help and @name are borrowed and must
 * be string literals. Returns NULL on OOM. */
metric *metric_register(const char *name, metric_type type, const char *help);

/* Sets, adds to, or increments the series of @m with @labels, a
 * Prometheus label list without braces such as `bundle="ns/name"` (NULL or ""
 * for none). The caller escapes label values with metric_escape_label(). */
void metric_set(metric *m, const char *labels, double value);
void metric_add(metric *m, const char *labels, double delta);
static inline void metric_inc(metric *m, const char *labels) {
        metric_add(m, labels, 1);
}
/* Removes one series (a bundle that went away). */
void metric_remove(metric *m, const char *labels);
/* The current value of a series, 0 when absent (for tests). */
double metric_get(metric *m, const char *labels);

/* Escapes \, " and newlines for a label value into @buf (always
 * NUL-terminated, truncated to @size). Returns @buf. */
char *metric_escape_label(const char *value, char *buf, size_t size);

/* Renders every family. The caller frees *@ret. */
int metrics_render(char **ret, size_t *ret_len);

/* Drops every family (tests, and leak-free exit). */
void metrics_reset(void);
