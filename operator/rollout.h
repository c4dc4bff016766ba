/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Whether a Deployment or a DaemonSet has finished rolling out, decided from
 * the object alone as `kubectl rollout status` does. Pure: no I/O, no
 * logging. `ballast-operator check-release` (the chart's helm test) uses it.
 *
 * The API server leaves zero counts out of a status, so an absent count is 0
 * (spec.replicas: 1, the API default); a count that is present but not a
 * non-negative integer makes the object malformed.
 */

#include <json-c/json.h>

/* Decides for the Deployment @obj (borrowed). Ready when the controller has
 * seen the current spec (status.observedGeneration >= metadata.generation),
 * the spec asks for at least one replica, updatedReplicas and
 * availableReplicas both equal spec.replicas, and no other replica is left
 * (status.replicas). A Progressing condition with reason
 * ProgressDeadlineExceeded is named too. On success *@ret_summary is a new
 * one-line string the caller frees: "ready: 2 of 2 replicas updated and
 * available", or "not ready: " and every check that failed, joined by "; ".
 * Returns 1 when ready, 0 when not, -EBADMSG when @obj is not a JSON object
 * or a count is malformed, -ENOMEM. */
int rollout_check_deployment(json_object *obj, char **ret_summary);

/* The same for the DaemonSet @obj (borrowed). Ready when the controller has
 * seen the current spec, desiredNumberScheduled >= 1, updatedNumberScheduled
 * and numberReady both equal desiredNumberScheduled, and numberMisscheduled
 * is 0: an updated, ready pod on every node the DaemonSet selects and on no
 * other. "ready: 3 of 3 pods updated and ready". */
int rollout_check_daemonset(json_object *obj, char **ret_summary);
