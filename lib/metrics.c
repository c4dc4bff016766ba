/* SPDX-License-Identifier: Apache-2.0 */

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>

#include "metrics.h"

typedef struct series {
        char *labels;
        double value;      /* a histogram's: its count */
        double sum;        /* histograms: the sum of observations */
        uint64_t *buckets; /* histograms: observations per bound, not cumulative */
        struct series *next;
} series;

struct metric {
        const char *name, *help;
        metric_type type;
        double *bounds; /* histograms: upper bounds, increasing */
        size_t n_bounds;
        series *series; /* O(n) lookups: a family has a few series per bundle at most */
        struct metric *next;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metric *families, *families_tail;

static void series_free(series *s) {
        free(s->labels);
        free(s->buckets);
        free(s);
}

static metric *family_register(const char *name, metric_type type, const char *help,
                               const double *bounds, size_t n_bounds) {
        metric *m;

        pthread_mutex_lock(&metrics_lock);
        for (m = families; m; m = m->next)
                if (streq(m->name, name))
                        goto out;
        m = calloc(1, sizeof(*m));
        if (!m)
                goto out;
        *m = (metric){.name = name, .help = help, .type = type, .n_bounds = n_bounds};
        if (n_bounds > 0) {
                m->bounds = malloc(n_bounds * sizeof(*bounds));
                if (!m->bounds) {
                        free(m);
                        m = NULL;
                        goto out;
                }
                memcpy(m->bounds, bounds, n_bounds * sizeof(*bounds));
        }
        if (families_tail)
                families_tail->next = m;
        else
                families = m;
        families_tail = m;
out:
        pthread_mutex_unlock(&metrics_lock);
        return m;
}

metric *metric_register(const char *name, metric_type type, const char *help) {
        assert(type != METRIC_HISTOGRAM);
        return family_register(name, type, help, NULL, 0);
}

metric *metric_register_histogram(const char *name, const char *help, const double *bounds,
                                  size_t n) {
        if (n == 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
                        return NULL;
        return family_register(name, METRIC_HISTOGRAM, help, bounds, n);
}

/* Called with the lock held. */
static series *series_find(metric *m, const char *labels, bool create) {
        series *s;

        labels = strempty(labels);
        for (s = m->series; s; s = s->next)
                if (streq(s->labels, labels))
                        return s;
        if (!create)
                return NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->labels = strdup(labels);
        if (m->n_bounds > 0)
                s->buckets = calloc(m->n_bounds, sizeof(*s->buckets));
        if (!s->labels || (m->n_bounds > 0 && !s->buckets)) {
                series_free(s);
                return NULL;
        }
        s->next = m->series;
        m->series = s;
        return s;
}

void metric_set(metric *m, const char *labels, double value) {
        series *s;

        if (!m || m->type == METRIC_HISTOGRAM)
                return;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, true);
        if (s)
                s->value = value;
        pthread_mutex_unlock(&metrics_lock);
}

void metric_add(metric *m, const char *labels, double delta) {
        series *s;

        if (!m || m->type == METRIC_HISTOGRAM)
                return;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, true);
        if (s)
                s->value += delta;
        pthread_mutex_unlock(&metrics_lock);
}

void metric_observe(metric *m, const char *labels, double value) {
        series *s;

        if (!m || m->type != METRIC_HISTOGRAM)
                return;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, true);
        if (s) {
                /* One bucket per observation; render() makes them cumulative.
                 * A value above every bound lands only in +Inf (the count). */
                for (size_t i = 0; i < m->n_bounds; i++)
                        if (value <= m->bounds[i]) {
                                s->buckets[i]++;
                                break;
                        }
                s->value++;
                s->sum += value;
        }
        pthread_mutex_unlock(&metrics_lock);
}

void metric_remove(metric *m, const char *labels) {
        if (!m)
                return;
        pthread_mutex_lock(&metrics_lock);
        for (series **p = &m->series; *p; p = &(*p)->next)
                if (streq((*p)->labels, strempty(labels))) {
                        series *s = *p;

                        *p = s->next;
                        series_free(s);
                        break;
                }
        pthread_mutex_unlock(&metrics_lock);
}

double metric_get(metric *m, const char *labels) {
        series *s;
        double v = 0;

        if (!m)
                return 0;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, false);
        if (s)
                v = s->value;
        pthread_mutex_unlock(&metrics_lock);
        return v;
}

char *metric_escape_label(const char *value, char *buf, size_t size) {
        size_t n = 0;

        for (const char *p = strempty(value); *p && n + 3 < size; p++) {
                if (*p == '\\' || *p == '"') {
                        buf[n++] = '\\';
                        buf[n++] = *p;
                } else if (*p == '\n') {
                        buf[n++] = '\\';
                        buf[n++] = 'n';
                } else
                        buf[n++] = *p;
        }
        if (size > 0)
                buf[MIN(n, size - 1)] = '\0';
        return buf;
}

static void render_value(FILE *f, double v) {
        if (v == floor(v) && fabs(v) < 1e15)
                fprintf(f, " %.0f\n", v);
        else
                fprintf(f, " %.6f\n", v);
}

/* NAME{LABELS} or NAME when there are none. */
static void render_name(FILE *f, const char *name, const char *suffix, const char *labels) {
        if (isempty(labels))
                fprintf(f, "%s%s", name, suffix);
        else
                fprintf(f, "%s%s{%s}", name, suffix, labels);
}

static void render_histogram(FILE *f, const metric *m, const series *s) {
        const char *sep = isempty(s->labels) ? "" : ",";
        uint64_t cum = 0;

        for (size_t i = 0; i < m->n_bounds; i++) {
                cum += s->buckets[i];
                /* %g: the shortest form for the usual bounds (0.005, 2.5, 60),
                 * as client_golang writes them. */
                fprintf(f, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", m->name, s->labels, sep,
                        m->bounds[i], cum);
        }
        fprintf(f, "%s_bucket{%s%sle=\"+Inf\"}", m->name, s->labels, sep);
        render_value(f, s->value);
        render_name(f, m->name, "_sum", s->labels);
        render_value(f, s->sum);
        render_name(f, m->name, "_count", s->labels);
        render_value(f, s->value);
}

int metrics_render(char **ret, size_t *ret_len) {
        static const char *const type_names[] = {
                [METRIC_COUNTER] = "counter",
                [METRIC_GAUGE] = "gauge",
                [METRIC_HISTOGRAM] = "histogram",
        };
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        pthread_mutex_lock(&metrics_lock);
        for (metric *m = families; m; m = m->next) {
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                        type_names[m->type]);
                for (series *s = m->series; s; s = s->next) {
                        if (m->type == METRIC_HISTOGRAM) {
                                render_histogram(f, m, s);
                                continue;
                        }
                        render_name(f, m->name, "", s->labels);
                        render_value(f, s->value);
                }
        }
        pthread_mutex_unlock(&metrics_lock);
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

void metrics_reset(void) {
        pthread_mutex_lock(&metrics_lock);
        while (families) {
                metric *m = families;

                families = m->next;
                while (m->series) {
                        series *s = m->series;

                        m->series = s->next;
                        series_free(s);
                }
                free(m->bounds);
                free(m);
        }
        families_tail = NULL;
        pthread_mutex_unlock(&metrics_lock);
}
