#!/usr/bin/env bash
# The end-to-end scenarios, shared by `make e2e` (tests/e2e/local.sh: the
# local control plane, operator and agents as processes) and `make kind-e2e`
# (kind-e2e/run.sh: a kind cluster, everything in containers). Source it after
# defining the driver functions:
#
#   e2e_kubectl ARGS...            kubectl against the cluster under test
#   e2e_nodes                      the simulated/real node names, one a line
#   e2e_node_file NODE PATH        print ROOT/PATH on NODE (fail if missing)
#   e2e_node_has NODE PATH         true if ROOT/PATH exists on NODE
#   e2e_api_pause / e2e_api_resume the whole API server hangs / comes back
#   e2e_partition_nodes / e2e_heal_nodes   the nodes lose / regain the API server
#   e2e_store_stop / e2e_store_start       the object store goes away / comes back
#   e2e_agent_restart NODE         restart NODE's agent (now, whatever is down)
#   e2e_agent_ready NODE           true if NODE's agent answers /readyz with 200
#   e2e_agent_metric NODE SERIES   print a value from NODE's agent /metrics
#   e2e_leader_kill                kill the operator that holds the lease, hard
#   e2e_operator_ns                the namespace the chart is installed in
#   e2e_dump                       print every component's logs (on failure)
#   e2e_helm ARGS...               helm against the cluster under test
#
# and E2E_APPS (the namespace of the test ConfigBundles), E2E_OUTAGE (seconds)
# and the associative array e2e_role (node -> its "role" label), so checks
# never need the API server, which is down in some scenarios.

set -euo pipefail

e2e_step=""
say() { printf '\n[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step() {
        e2e_step="$*"
        printf '[e2e %s]   - %s\n' "$(date +%H:%M:%S)" "$*"
}
fail() {
        printf '\n[e2e] FAILED in step: %s\n[e2e] %s\n' "$e2e_step" "$*" >&2
        e2e_dump >&2 || true
        exit 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s.
wait_until() {
        local secs=$1 what=$2 end
        shift 2
        end=$((SECONDS + secs))
        until "$@" >/dev/null 2>&1; do
                [ "$SECONDS" -lt "$end" ] || fail "timed out after ${secs}s waiting for: $what"
                sleep 0.5
        done
}

cb() { e2e_kubectl -n "$E2E_APPS" "$@"; }
cb_field() { cb get configbundle "$1" -o "jsonpath=$2" 2>/dev/null; }
field_is() { [ "$(cb_field "$1" "$2")" = "$3" ]; }
node_content_is() { [ "$(e2e_node_file "$1" "$2" 2>/dev/null)" = "$3" ]; }
node_lacks() { ! e2e_node_has "$1" "$2"; }

# A bundle for the web nodes whose reload action ("app", defined in the
# chart's values) fails when the live files contain BROKEN.
apply_web() { # VERSION_TEXT
        cb apply -f - <<YAML
apiVersion: ballast.dev/v1alpha1
kind: ConfigBundle
metadata: {name: web}
spec:
  nodeSelector: {matchLabels: {role: web}}
  values: {text: "$1"}
  reload: app
  files:
    - path: app.conf
      template: "{{ text }}"
YAML
}

apply_motd() {
        cb apply -f - <<YAML
apiVersion: ballast.dev/v1alpha1
kind: ConfigBundle
metadata: {name: motd}
spec:
  files:
    - {path: motd, content: "managed by ballast"}
YAML
}

relabel() { # NODE ROLE
        e2e_kubectl label node "$1" "role=$2" --overwrite >/dev/null
        e2e_role[$1]=$2
}

web_nodes_have() { # TEXT: every node labelled role=web holds TEXT, the others nothing
        local n
        for n in $(e2e_nodes); do
                if [ "${e2e_role[$n]}" = web ]; then
                        node_content_is "$n" "$E2E_APPS/web/app.conf" "$1" || return 1
                else
                        node_lacks "$n" "$E2E_APPS/web/app.conf" || return 1
                fi
        done
}

all_nodes_have_motd() {
        local n
        for n in $(e2e_nodes); do
                node_content_is "$n" "$E2E_APPS/motd/motd" "managed by ballast" || return 1
        done
}

scenario_install() {
        say "1. install: bundles land on exactly the matching nodes"
        step "apply the web bundle (role=web) and the motd bundle (every node)"
        apply_web "v1"
        apply_motd
        step "files on the matching nodes, none elsewhere"
        wait_until 60 "web v1 on the web nodes only" web_nodes_have "v1"
        wait_until 60 "motd on every node" all_nodes_have_motd
        step "status shows the node counts"
        wait_until 60 "web status counts 2/2/0" web_counts_are "2 2 0"
        e2e_kubectl -n "$E2E_APPS" get configbundles
}

web_counts_are() {
        [ "$(cb_field web '{.status.nodes.matched} {.status.nodes.applied} {.status.nodes.failed}')" = "$1" ]
}

scenario_update() {
        say "2. update: a new revision everywhere; label changes move bundles"
        local rev
        rev=$(cb_field web '{.status.revision}')
        step "change the web bundle"
        apply_web "v2"
        wait_until 30 "revision $((rev + 1))" field_is web '{.status.revision}' "$((rev + 1))"
        wait_until 30 "web v2 on the web nodes" web_nodes_have "v2"
        local first third
        first=$(e2e_nodes | sed -n 1p)
        third=$(e2e_nodes | sed -n 3p)
        step "relabel: $third becomes a web node, $first stops being one"
        relabel "$third" web
        relabel "$first" db
        wait_until 30 "web moved to $third and off $first" web_nodes_have "v2"
        step "and back"
        relabel "$third" db
        relabel "$first" web
        wait_until 30 "web back on the original nodes" web_nodes_have "v2"
}

scenario_api_outage() {
        say "3. the API server is unreachable from the nodes for ${E2E_OUTAGE}s"
        local end
        step "partition every node from the API server"
        e2e_partition_nodes
        step "publish an update: the operator still reaches the API server and the object store"
        apply_web "v3"
        step "it reaches the nodes through the object store"
        wait_until 60 "web v3 on the web nodes through the object store" web_nodes_have "v3"
        step "the nodes keep their files for the rest of the outage"
        end=$((SECONDS + E2E_OUTAGE))
        while [ "$SECONDS" -lt "$end" ]; do
                web_nodes_have "v3" || fail "a node lost its files during the partition"
                all_nodes_have_motd || fail "a node lost motd during the partition"
                sleep 2
        done
        e2e_heal_nodes
        step "the whole API server paused for 15 s: files stay, agents stay alive"
        e2e_api_pause
        sleep 15
        web_nodes_have "v3" || fail "files changed while the API server was paused"
        for n in $(e2e_nodes); do
                e2e_agent_ready "$n" || fail "agent on $n not ready during the pause"
        done
        e2e_api_resume
}

scenario_both_down() {
        say "4. API server and object store both down: a restarted agent serves its cache"
        local n
        n=$(e2e_nodes | sed -n 2p)
        e2e_api_pause
        e2e_store_stop
        step "restart the agent on $n mid-outage"
        e2e_agent_restart "$n"
        wait_until 20 "agent on $n ready from its cache alone" e2e_agent_ready "$n"
        step "its files are intact"
        node_content_is "$n" "$E2E_APPS/web/app.conf" "v3" || fail "$n lost web after restart"
        node_content_is "$n" "$E2E_APPS/motd/motd" "managed by ballast" || fail "$n lost motd"
}

sum_metric() { # SERIES-PREFIX: sum over all agents
        local n total=0 v
        for n in $(e2e_nodes); do
                v=$(e2e_agent_metric "$n" "$1")
                total=$((total + ${v:-0}))
        done
        echo "$total"
}

scenario_recovery() {
        say "5. recovery: everything converges, within the agents' backoff budget"
        local before after budget
        before=$(( $(sum_metric 'ballast_agent_kube_requests_total{verb="get"}') + \
                   $(sum_metric 'ballast_agent_kube_requests_total{verb="watch"}') ))
        e2e_store_start
        e2e_api_resume
        step "an update after recovery reaches every node"
        apply_web "v4"
        wait_until 60 "web v4 everywhere" web_nodes_have "v4"
        sleep 10
        after=$(( $(sum_metric 'ballast_agent_kube_requests_total{verb="get"}') + \
                  $(sum_metric 'ballast_agent_kube_requests_total{verb="watch"}') ))
        # Each agent needs at most a relist and a new watch per watched
        # resource (2 resources) plus backoff retries capped at one per 0.8 s
        # doubling window: 12 per agent is generous for a polite agent and far
        # below a hot loop.
        budget=$(( $(e2e_nodes | wc -l) * 12 ))
        step "API requests by the agents since the outage ended: $((after - before)) (budget $budget)"
        [ $((after - before)) -le "$budget" ] || fail "agents made $((after - before)) API requests (budget $budget)"
}

scenario_bad_revision() {
        say "6. a revision whose reload fails is rolled back on every node"
        local rev
        rev=$(cb_field web '{.status.revision}')
        apply_web "BROKEN"
        wait_until 30 "revision $((rev + 1)) published" field_is web '{.status.revision}' "$((rev + 1))"
        step "every web node rolls back to the last-known-good revision (v4)"
        sleep 3
        wait_until 60 "web v4 back on the web nodes" web_nodes_have "v4"
        step "the failure is visible in kubectl get configbundles"
        wait_until 60 "2 nodes failed" web_counts_are "2 0 2"
        e2e_kubectl -n "$E2E_APPS" get configbundles -o wide
        step "a good revision after it applies again"
        apply_web "v5"
        wait_until 60 "web v5 everywhere" web_nodes_have "v5"
}

scenario_leader() {
        say "7. the operator leader is killed: the standby takes over"
        local holder new
        holder=$(e2e_kubectl -n "$(e2e_operator_ns)" get lease ballast-operator -o jsonpath='{.spec.holderIdentity}')
        step "kill $holder"
        e2e_leader_kill
        wait_until 40 "a new lease holder" lease_moved_from "$holder"
        new=$(e2e_kubectl -n "$(e2e_operator_ns)" get lease ballast-operator -o jsonpath='{.spec.holderIdentity}')
        step "$new leads; publishing continues"
        apply_web "v6"
        wait_until 60 "web v6 everywhere" web_nodes_have "v6"
}

lease_moved_from() {
        local h
        h=$(e2e_kubectl -n "$(e2e_operator_ns)" get lease ballast-operator -o jsonpath='{.spec.holderIdentity}')
        [ -n "$h" ] && [ "$h" != "$1" ]
}

scenario_helm() {
        say "8. helm upgrade and helm uninstall behave as documented"
        local ns
        ns=$(e2e_operator_ns)
        step "upgrade with a changed value (operator.fleetInterval=3s)"
        e2e_helm upgrade ballast "$E2E_CHART" -n "$ns" --reuse-values --set operator.fleetInterval=3s \
                >/dev/null || fail "helm upgrade failed"
        e2e_kubectl -n "$ns" get deploy -l app.kubernetes.io/component=operator \
                -o jsonpath='{.items[0].spec.template.spec.containers[0].args}' | grep -q -- '--fleet-interval=3s' ||
                fail "the upgrade did not change the operator's arguments"
        step "uninstall: the release goes, the CRD and the ConfigBundles stay"
        e2e_helm uninstall ballast -n "$ns" >/dev/null || fail "helm uninstall failed"
        e2e_kubectl get crd configbundles.ballast.dev >/dev/null || fail "uninstall deleted the CRD"
        cb get configbundle web >/dev/null || fail "uninstall deleted a ConfigBundle"
        [ -z "$(e2e_kubectl -n "$ns" get deploy,daemonset -l app.kubernetes.io/instance=ballast -o name)" ] ||
                fail "uninstall left the workloads behind"
}
