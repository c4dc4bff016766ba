/* SPDX-License-Identifier: Apache-2.0 */

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "jsonx.h"
#include "rollout.h"

/* A count at a dotted path of the object, and what it is when absent. */
typedef struct count {
        const char *path;
        int64_t def;
        int64_t *ret;
} count;

/* The checks that failed, joined by "; " (truncated: a line, not a report). */
typedef struct problems {
        char text[512];
        size_t len;
        unsigned n;
} problems;

static void problem_add(problems *p, const char *fmt, ...) _printf_(2, 3);
static void problem_add(problems *p, const char *fmt, ...) {
        va_list ap;
        int k;

        if (p->n++ > 0 && p->len < sizeof(p->text))
                p->len += (size_t) snprintf(p->text + p->len, sizeof(p->text) - p->len, "; ");
        if (p->len >= sizeof(p->text))
                return;
        va_start(ap, fmt);
        k = vsnprintf(p->text + p->len, sizeof(p->text) - p->len, fmt, ap);
        va_end(ap);
        p->len += k > 0 ? (size_t) k : 0;
}

/* Writes the summary (@ready_text when nothing failed) and returns 1 when
 * ready, 0 when not. */
static int finish(const problems *p, const char *ready_text, char **ret_summary) {
        char *s;

        if (p->n == 0)
                s = strdup(ready_text);
        else if (asprintf(&s, "not ready: %s", p->text) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret_summary = s;
        return p->n == 0;
}

/* Reads the @n counts @c of @obj, whose first two must be
 * metadata.generation and status.observedGeneration. Until the controller
 * has seen the current spec, the status describes an older one: kubectl
 * waits for that first, and so does this, with that one problem in @p.
 * Returns 1 when the spec was seen, 0 when not, -EBADMSG for a malformed
 * object. */
static int read_counts(json_object *obj, const count *c, size_t n, problems *p) {
        assert(n >= 2 && streq(c[0].path, "metadata.generation") &&
               streq(c[1].path, "status.observedGeneration"));
        if (!json_object_is_type(obj, json_type_object))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                json_object *v = jsonx_get(obj, c[i].path);

                if (!v) {
                        *c[i].ret = c[i].def;
                        continue;
                }
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                        return -EBADMSG;
                *c[i].ret = json_object_get_int64(v);
        }
        if (*c[1].ret >= *c[0].ret)
                return 1;
        problem_add(p,
                    "the controller has not seen the current spec yet (generation %" PRIi64
                    ", observed %" PRIi64 ")",
                    *c[0].ret, *c[1].ret);
        return 0;
}

static bool has_deadline_exceeded(json_object *obj) {
        json_object *conds = jsonx_get(obj, "status.conditions");
        size_t n =
                json_object_is_type(conds, json_type_array) ? json_object_array_length(conds) : 0;

        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(conds, i);

                if (streq(strempty(jsonx_get_string(c, "type")), "Progressing") &&
                    streq(strempty(jsonx_get_string(c, "reason")), "ProgressDeadlineExceeded"))
                        return true;
        }
        return false;
}

int rollout_check_deployment(json_object *obj, char **ret_summary) {
        int64_t generation, observed, want, replicas, updated, available;
        const count counts[] = {
                {"metadata.generation", 0, &generation},
                {"status.observedGeneration", 0, &observed},
                {"spec.replicas", 1, &want},
                {"status.replicas", 0, &replicas},
                {"status.updatedReplicas", 0, &updated},
                {"status.availableReplicas", 0, &available},
        };
        char ready[128];
        problems p = {};
        int r;

        r = read_counts(obj, counts, ELEMENTSOF(counts), &p);
        if (r < 0)
                return r;
        if (r > 0) {
                if (has_deadline_exceeded(obj))
                        problem_add(&p, "progress deadline exceeded");
                if (want == 0)
                        problem_add(&p, "scaled to 0 replicas");
                if (updated < want)
                        problem_add(&p, "%" PRIi64 " of %" PRIi64 " replicas updated", updated,
                                    want);
                if (available < want)
                        problem_add(&p, "%" PRIi64 " of %" PRIi64 " replicas available", available,
                                    want);
                if (replicas > updated)
                        problem_add(&p, "%" PRIi64 " old replica%s still running",
                                    replicas - updated, replicas - updated == 1 ? "" : "s");
                if (updated > want)
                        problem_add(&p, "%" PRIi64 " replicas for %" PRIi64 " wanted", updated,
                                    want);
        }
        snprintf(ready, sizeof(ready),
                 "ready: %" PRIi64 " of %" PRIi64 " replicas updated and available", available,
                 want);
        return finish(&p, ready, ret_summary);
}

int rollout_check_daemonset(json_object *obj, char **ret_summary) {
        int64_t generation, observed, desired, updated, ready_pods, misscheduled;
        const count counts[] = {
                {"metadata.generation", 0, &generation},
                {"status.observedGeneration", 0, &observed},
                {"status.desiredNumberScheduled", 0, &desired},
                {"status.updatedNumberScheduled", 0, &updated},
                {"status.numberReady", 0, &ready_pods},
                {"status.numberMisscheduled", 0, &misscheduled},
        };
        char ready[128];
        problems p = {};
        int r;

        r = read_counts(obj, counts, ELEMENTSOF(counts), &p);
        if (r < 0)
                return r;
        if (r > 0) {
                if (desired == 0)
                        problem_add(&p, "no node to run on (desiredNumberScheduled is 0)");
                if (updated < desired)
                        problem_add(&p, "%" PRIi64 " of %" PRIi64 " pods updated", updated,
                                    desired);
                if (ready_pods < desired)
                        problem_add(&p, "%" PRIi64 " of %" PRIi64 " pods ready", ready_pods,
                                    desired);
                if (misscheduled > 0)
                        problem_add(&p, "%" PRIi64 " pod%s on nodes it should not run on",
                                    misscheduled, misscheduled == 1 ? "" : "s");
                if (updated > desired || ready_pods > desired)
                        problem_add(&p,
                                    "%" PRIi64 " pods updated and %" PRIi64 " ready for %" PRIi64
                                    " nodes",
                                    updated, ready_pods, desired);
        }
        snprintf(ready, sizeof(ready), "ready: %" PRIi64 " of %" PRIi64 " pods updated and ready",
                 ready_pods, desired);
        return finish(&p, ready, ret_summary);
}
