/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Prometheus metrics in the text exposition format. Counters, gauges and
 * histograms with up to one set of labels each series, registered once and
 * updated from the event loop; the health server's thread renders them, so
 * updates and rendering take one mutex (cheap: a handful of updates per
 * reconcile).
 */

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum metric_type {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM, /* metric_register_histogram() */
} metric_type;

typedef struct metric metric;

/* Registers (or finds) the family @name. @help and @name are borrowed and must
 * be string literals. Returns NULL on OOM. */
metric *metric_register(const char *name, metric_type type, const char *help);

/* Registers (or finds) the histogram family @name with @n upper bucket bounds
 * @bounds (copied; strictly increasing, finite; "+Inf" is implicit). Each
 * series renders as client_golang's do: cumulative NAME_bucket{...,le="B"}
 * lines, le="+Inf", NAME_sum and NAME_count. @name and @help as above.
 * Returns NULL on OOM or bad bounds (n == 0, not increasing). */
metric *metric_register_histogram(const char *name, const char *help, const double *bounds,
                                  size_t n);

/* Adds one observation of @value to the series of histogram @m with @labels
 * (as for metric_set()). Does nothing for NULL or a counter or gauge. */
void metric_observe(metric *m, const char *labels, double value);

/* Sets, adds to, or increments the series of @m with @labels, a
 * Prometheus label list without braces such as `bundle="ns/name"` (NULL or ""
 * for none). The caller escapes label values with metric_escape_label().
 * They do nothing to a histogram. */
void metric_set(metric *m, const char *labels, double value);
void metric_add(metric *m, const char *labels, double delta);
static inline void metric_inc(metric *m, const char *labels) {
        metric_add(m, labels, 1);
}
/* Removes one series (a bundle that went away). */
void metric_remove(metric *m, const char *labels);
/* The current value of a series (a histogram's: its count), 0 when absent
 * (for tests). */
double metric_get(metric *m, const char *labels);

/* Escapes \, " and newlines for a label value into @buf (always
 * NUL-terminated, truncated to @size). Returns @buf. */
char *metric_escape_label(const char *value, char *buf, size_t size);

/* Renders every family. The caller frees *@ret. */
int metrics_render(char **ret, size_t *ret_len);

/* Drops every family (tests, and leak-free exit). */
void metrics_reset(void);
