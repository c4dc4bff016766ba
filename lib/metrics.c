/* SPDX-License-Identifier: Apache-2.0 */

#include <math.h>
#include <pthread.h>

#include "metrics.h"

typedef struct series {
        char *labels;
        double value;
        struct series *next;
} series;

struct metric {
        const char *name, *help;
        metric_type type;
        series *series; /* O(n) lookups: a family has a few series per bundle at most */
        struct metric *next;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metric *families, *families_tail;

metric *metric_register(const char *name, metric_type type, const char *help) {
        metric *m;

        pthread_mutex_lock(&metrics_lock);
        for (m = families; m; m = m->next)
                if (streq(m->name, name))
                        goto out;
        m = calloc(1, sizeof(*m));
        if (!m)
                goto out;
        *m = (metric){.name = name, .help = help, .type = type};
        if (families_tail)
                families_tail->next = m;
        else
                families = m;
        families_tail = m;
out:
        pthread_mutex_unlock(&metrics_lock);
        return m;
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
        if (!s->labels) {
                free(s);
                return NULL;
        }
        s->next = m->series;
        m->series = s;
        return s;
}

void metric_set(metric *m, const char *labels, double value) {
        series *s;

        if (!m)
                return;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, true);
        if (s)
                s->value = value;
        pthread_mutex_unlock(&metrics_lock);
}

void metric_add(metric *m, const char *labels, double delta) {
        series *s;

        if (!m)
                return;
        pthread_mutex_lock(&metrics_lock);
        s = series_find(m, labels, true);
        if (s)
                s->value += delta;
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
                        free(s->labels);
                        free(s);
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

int metrics_render(char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        pthread_mutex_lock(&metrics_lock);
        for (metric *m = families; m; m = m->next) {
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                        m->type == METRIC_COUNTER ? "counter" : "gauge");
                for (series *s = m->series; s; s = s->next) {
                        if (isempty(s->labels))
                                fprintf(f, "%s", m->name);
                        else
                                fprintf(f, "%s{%s}", m->name, s->labels);
                        if (s->value == floor(s->value) && fabs(s->value) < 1e15)
                                fprintf(f, " %.0f\n", s->value);
                        else
                                fprintf(f, " %.6f\n", s->value);
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
                        free(s->labels);
                        free(s);
                }
                free(m);
        }
        families_tail = NULL;
        pthread_mutex_unlock(&metrics_lock);
}
