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

/* The settings of `ballast-operator check-release`, the chart's helm test
 * (see `ballast-operator check-release --help`): flags and the environment
 * only, no file. */
typedef struct check_settings {
        char *kubeconfig;      /* NULL: in-cluster */
        char *kube_context;    /* NULL: the kubeconfig's current context */
        char *namespace;       /* NULL: the credentials' namespace */
        char *deployment;      /* the operator's Deployment; NULL: not checked */
        char *daemonset;       /* the agents' DaemonSet; NULL: not checked */
        uint64_t timeout_usec; /* keep checking this long; 0: once */
} check_settings;

check_settings *check_settings_free(check_settings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(check_settings *, check_settings_free);

/* Builds the check-release settings from @argv (argv[0] is the subcommand's
 * name) and the environment. Rejects unknown options, a missing value, a bad
 * duration, stray arguments, neither --deployment nor --daemonset, and an
 * empty name. Returns 1 to run, 0 when --help or --version was handled, or a
 * negative errno with the reason in @ret_err (-EINVAL: a usage error, exit 2). */
int check_settings_load(int argc, char *argv[], check_settings **ret, err_info *ret_err);
