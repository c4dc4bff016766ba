/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The operator's settings. They come only from flags, the environment and a
 * static YAML file (--config), never from anything the operator manages, so
 * it can always start and recover on its own. Precedence: flag > environment >
 * file > default. See `ballast-operator --help` and docs/operator.md.
 */

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "macro.h"

typedef struct settings {
        char *kubeconfig;      /* NULL: in-cluster */
        char *kube_context;    /* NULL: the kubeconfig's current context */
        char *namespace;       /* the operator's own namespace: ConfigMaps and the Lease */
        char *watch_namespace; /* NULL: ConfigBundles in all namespaces */
        char *object_store;    /* location string (docs/object-store.md); NULL: none */
        char *identity;        /* leader-election identity */
        char *lease_name;
        bool leader_elect;
        uint64_t lease_duration_usec, renew_deadline_usec, retry_period_usec;
        unsigned workers;
        double kube_qps;
        unsigned kube_burst;
        char *health_addr;                /* "HOST:PORT"; "" disables */
        uint64_t resync_usec;             /* re-check every bundle this often */
        uint64_t fleet_interval_usec;     /* agent status aggregation period (jittered) */
        uint64_t manifest_retention_usec; /* keep unreferenced manifests this long */
        int log_level;
} settings;

settings *settings_free(settings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(settings *, settings_free);

/* Builds the settings from @argv, the environment and the --config file.
 * Returns 1 to run, 0 when --help or --version was handled, or a negative
 * errno with the reason in @ret_err (a usage error: exit 2). */
int settings_load(int argc, char *argv[], settings **ret, err_info *ret_err);
