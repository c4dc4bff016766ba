/* SPDX-License-Identifier: Apache-2.0 */

#include <stdio.h>

#include "jsonx.h"
#include "loop.h"
#include "release.h"
#include "rollout.h"

static const kube_resource RESOURCE_DEPLOYMENTS = {"apps", "v1", "deployments", true};
static const kube_resource RESOURCE_DAEMONSETS = {"apps", "v1", "daemonsets", true};

/* One object to check, and what its last check found. */
typedef struct target {
        const char *kind;
        const kube_resource *resource;
        const char *name; /* NULL: not checked */
        int (*decide)(json_object *obj, char **ret_summary);
        int r;          /* 1 ready, 0 not ready, or a negative errno */
        char line[640]; /* what follows "KIND NS/NAME: " */
} target;

static void check_target(kube_client *k, const char *namespace, target *t) {
        _cleanup_json_ json_object *obj = NULL;
        _cleanup_free_ char *summary = NULL;
        err_info e;

        err_info_clear(&e);
        t->r = kube_get_object_sync(k, t->resource, namespace, t->name, NULL, &obj, &e);
        if (t->r < 0) {
                snprintf(t->line, sizeof(t->line), "cannot read it: %s (%s)",
                         e.message[0] ? e.message : strerror(-t->r), err_name(t->r));
                return;
        }
        t->r = t->decide(obj, &summary);
        if (t->r == -EBADMSG)
                snprintf(t->line, sizeof(t->line),
                         "malformed: a count in its spec or status is not a non-negative integer");
        else if (t->r < 0)
                snprintf(t->line, sizeof(t->line), "cannot decide: %s", strerror(-t->r));
        else
                snprintf(t->line, sizeof(t->line), "%s", summary);
}

int release_check(kube_client *k, const check_settings *s, uint64_t interval_usec, FILE *out) {
        sd_event *e = kube_client_get_event(k);
        const char *namespace = s->namespace ? s->namespace : kube_client_get_namespace(k);
        target targets[] = {
                {"Deployment", &RESOURCE_DEPLOYMENTS, s->deployment, rollout_check_deployment},
                {"DaemonSet", &RESOURCE_DAEMONSETS, s->daemonset, rollout_check_daemonset},
        };
        uint64_t now, deadline = loop_now(e) + s->timeout_usec;
        int r = 0;

        for (;;) {
                bool all_ready = true, final = false;

                for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                        target *t = &targets[i];

                        if (!t->name)
                                continue;
                        check_target(k, namespace, t);
                        all_ready = all_ready && t->r == 1;
                        /* A wrong name or a broken object won't mend while we
                         * wait; anything else may (RBAC propagating, pods
                         * starting, the API server coming back). */
                        final = final || t->r == -ENOENT || t->r == -EBADMSG;
                }
                now = loop_now(e);
                if (all_ready || final || now >= deadline)
                        break;
                /* Nothing else runs on this loop: waiting on it costs nothing.
                 * The last check is at the deadline. */
                (void) loop_run_until(e, &(bool){false}, MIN(interval_usec, deadline - now));
        }

        for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                const target *t = &targets[i];

                if (!t->name)
                        continue;
                fprintf(out, "%s %s/%s: %s\n", t->kind, namespace, t->name, t->line);
                if (r == 0 && t->r != 1)
                        r = t->r < 0 ? t->r : -ETIMEDOUT;
        }
        fflush(out);
        return r;
}
