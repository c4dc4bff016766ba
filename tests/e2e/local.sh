#!/usr/bin/env bash
# make e2e: Ballast end to end on the local control plane (tests/cluster):
# the real kube-apiserver, controller-manager and scheduler, and the real S3
# server as the external object store. The chart is installed for real with
# helm; there is no kubelet, so the operator (two replicas) and one agent per
# simulated node run here as processes, with the arguments, configuration and
# ServiceAccounts the chart rendered: they authenticate with tokens minted
# for the chart's own ServiceAccounts, so the chart's RBAC is what is tested.
# Each node reaches the API server through a proxy of its own, which is how a
# node gets partitioned from the control plane.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
export E2E_REPORT=1
# shellcheck source=tests/e2e/harness.sh
source "$here/harness.sh"
trap cleanup EXIT INT TERM

e2e_setup
scenario_install
scenario_update
scenario_api_outage
scenario_both_down
scenario_recovery
scenario_bad_revision
scenario_leader
scenario_helm
say "all scenarios passed"

