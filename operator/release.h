/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * `ballast-operator check-release`, the chart's helm test: is a release
 * healthy? It GETs the operator's Deployment and the agents' DaemonSet and
 * lets rollout.h decide, checking again until both are ready or the time is
 * up, because helm test often runs right after `helm install`.
 */

#include <stdio.h>

#include "kube.h"
#include "settings.h"

/* How long release_check() waits between two checks. */
#define RELEASE_CHECK_INTERVAL_USEC (2 * USEC_PER_SEC)

/* Checks the objects @s names (in s->namespace, or the client's namespace
 * when NULL) through @k, on the client's event loop, every @interval_usec
 * until all are ready or s->timeout_usec has passed since the start (the last
 * check is at that deadline; 0: one check). Not-ready objects and failed
 * requests are checked again; a missing object (404) or a malformed one ends
 * the check at once. Then writes one line per object to @out: "Deployment
 * NS/NAME: ready: ...", "...: not ready: <every check that failed>", or "...:
 * cannot read it: <the API server's message>". Returns 0 when all are ready,
 * -ETIMEDOUT when one still was not when the time was up, the request's
 * negative errno (-ENOENT, -EACCES, ...) when reading one failed the last
 * time, or -EBADMSG for a malformed object. */
int release_check(kube_client *k, const check_settings *s, uint64_t interval_usec, FILE *out);
