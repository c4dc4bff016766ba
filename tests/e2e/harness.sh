#!/usr/bin/env bash
# Sourced by tests/e2e/local.sh (make e2e) and tests/e2e/demo.sh (make demo):
# the driver of the local control plane. The caller sets here, top, and
# optionally id (a run id) and dir (where state and logs go).
# shellcheck disable=SC2154 # here and top come from the caller
# make e2e: Ballast end to end on the local control plane (tests/cluster):
# the real kube-apiserver, controller-manager and scheduler, and the real S3
# server as the external object store. The chart is installed for real with
# helm; there is no kubelet, so the operator (two replicas) and one agent per
# simulated node run here as processes, with the arguments, configuration and
# ServiceAccounts the chart rendered: they authenticate with tokens minted
# for the chart's own ServiceAccounts, so the chart's RBAC is what is tested.
# Each node reaches the API server through a proxy of its own, which is how a
# node gets partitioned from the control plane.

E2E_OUTAGE=${E2E_OUTAGE:-60}
E2E_CHART=$top/helm/ballast
BUILD=${BUILD:-build}
bash tests/cluster/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "${BALLAST_CLUSTER_DIR:-$top/build/cluster}/env"
id=${id:-e$$}
E2E_APPS=${E2E_APPS:-"e2e-apps-$id"}
opns="ballast-$id"
dir=${dir:-"${BALLAST_CLUSTER_DIR:-$top/build/cluster}/e2e-$id"}
mkdir -p "$dir"
nodes=("$id-node-1" "$id-node-2" "$id-node-3")
declare -A agent_pid agent_port proxy_pid proxy_port op_pid
ops=("$id-operator-0" "$id-operator-1")

e2e_kubectl() { kubectl "$@"; }
e2e_helm() { helm "$@"; }
e2e_nodes() { printf '%s\n' "${nodes[@]}"; }
e2e_operator_ns() { echo "$opns"; }
e2e_node_file() { cat "$dir/$1/root/$2"; }
e2e_node_has() { [ -e "$dir/$1/root/$2" ]; }
e2e_api_pause() { bash tests/cluster/cluster.sh pause apiserver >/dev/null; }
e2e_api_resume() { bash tests/cluster/cluster.sh resume apiserver >/dev/null; }
e2e_store_stop() { bash tests/cluster/cluster.sh stop s3 >/dev/null; }
e2e_store_start() { bash tests/cluster/cluster.sh start s3 >/dev/null; }
e2e_partition_nodes() { local n; for n in "${nodes[@]}"; do kill -STOP -- "-${proxy_pid[$n]}"; done; }
e2e_heal_nodes() { local n; for n in "${nodes[@]}"; do kill -CONT -- "-${proxy_pid[$n]}"; done; }
e2e_agent_ready() { curl -sf "http://127.0.0.1:${agent_port[$1]}/readyz" >/dev/null; }
e2e_agent_metric() {
        curl -sf "http://127.0.0.1:${agent_port[$1]}/metrics" | awk -v s="$2" '$1 == s {print $2}'
}

e2e_dump() {
        local f
        for f in "$dir"/*.log; do
                echo "==== $f (last 30 lines)"
                tail -n 30 "$f"
        done
}

# The container args the chart rendered for a workload, one a line, with the
# downward-API variables filled in as the kubelet would.
chart_args() { # KIND COMPONENT POD_NAME NODE_NAME
        kubectl -n "$opns" get "$1" -l "app.kubernetes.io/component=$2" -o json |
                jq -r '.items[0].spec.template.spec.containers[0].args[]' |
                sed -e "s|\$(POD_NAMESPACE)|$opns|g" -e "s|\$(BALLAST_NAMESPACE)|$opns|g" \
                        -e "s|\$(POD_NAME)|$3|g" -e "s|\$(NODE_NAME)|$4|g" |
                grep -v -e '^--health-addr=' -e '^--config='
}

chart_sa() { # KIND COMPONENT
        kubectl -n "$opns" get "$1" -l "app.kubernetes.io/component=$2" \
                -o jsonpath='{.items[0].spec.template.spec.serviceAccountName}'
}

token_kubeconfig() { # SA SERVER FILE
        local token
        token=$(kubectl -n "$opns" create token "$1" --duration=2h)
        cat >"$3" <<KC
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$2", certificate-authority: "$BALLAST_CA_FILE"}}]
users: [{name: sa, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: sa, namespace: "$opns"}}]
current-context: e2e
KC
}

# shellcheck source=tests/lib/ports.sh
source "$top/tests/lib/ports.sh"

# The rendered arguments are read once, at set-up: restarts happen while the
# API server is down.
start_operator() { # NAME
        local name=$1 port
        free_port port
        [ -s "$dir/$name.args" ] || chart_args deploy operator "$name" "" >"$dir/$name.args"
        mapfile -t args <"$dir/$name.args"
        setsid "$BUILD/ballast-operator" "${args[@]}" "--kubeconfig=$dir/operator.kubeconfig" \
                "--health-addr=127.0.0.1:$port" </dev/null >>"$dir/$name.log" 2>&1 &
        op_pid[$name]=$!
}

start_agent() { # NODE
        local n=$1
        [ -s "$dir/$n/args" ] || chart_args daemonset agent "" "$n" >"$dir/$n/args"
        mapfile -t args <"$dir/$n/args"
        setsid "$BUILD/ballast-agent" "${args[@]}" "--config=$dir/agent-config.yaml" \
                "--kubeconfig=$dir/$n/kubeconfig" "--root-dir=$dir/$n/root" \
                "--cache-dir=$dir/$n/cache" "--health-addr=127.0.0.1:${agent_port[$n]}" \
                </dev/null >>"$dir/agent-$n.log" 2>&1 &
        agent_pid[$n]=$!
}

e2e_agent_restart() {
        kill "${agent_pid[$1]}" 2>/dev/null || true
        wait "${agent_pid[$1]}" 2>/dev/null || true
        start_agent "$1"
}

e2e_leader_kill() {
        local holder
        holder=$(kubectl -n "$opns" get lease ballast-operator -o jsonpath='{.spec.holderIdentity}')
        [ -n "${op_pid[$holder]:-}" ] || fail "the lease holder '$holder' is not one of ours"
        kill -9 "${op_pid[$holder]}"
        wait "${op_pid[$holder]}" 2>/dev/null || true
        # Back as the standby, under a new name as a replacement pod would be:
        # with the old identity it would simply renew its own lease.
        unset "op_pid[$holder]"
        start_operator "$holder-r"
}

cleanup() { # [EXIT_STATUS]
        local rc=${1:-$?} n p
        for p in "${op_pid[@]}" "${agent_pid[@]}"; do kill "$p" 2>/dev/null || true; done
        for n in "${nodes[@]}"; do
                if [ -n "${proxy_pid[$n]:-}" ]; then
                        kill -CONT -- "-${proxy_pid[$n]}" 2>/dev/null || true
                        kill -- "-${proxy_pid[$n]}" 2>/dev/null || true
                fi
        done
        bash tests/cluster/cluster.sh resume apiserver >/dev/null 2>&1 || true
        bash tests/cluster/cluster.sh start s3 >/dev/null 2>&1 || true
        wait 2>/dev/null || true
        kubectl -n "$E2E_APPS" get cb -o name 2>/dev/null |
                xargs -r kubectl -n "$E2E_APPS" patch --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        helm uninstall ballast -n "$opns" >/dev/null 2>&1 || true
        kubectl delete namespace "$opns" --wait=false >/dev/null 2>&1 || true
        case $E2E_APPS in e2e-apps-*) kubectl delete namespace "$E2E_APPS" --wait=false >/dev/null 2>&1 || true ;; esac
        kubectl delete node "${nodes[@]}" >/dev/null 2>&1 || true
        if [ -n "${E2E_REPORT:-}" ]; then
                if [ "$rc" -eq 0 ]; then
                        echo "e2e: 8 passed, 0 failed"
                else
                        echo "e2e: 0 passed, 1 failed"
                fi
        fi
        exit "$rc"
}

# shellcheck source=tests/e2e/scenarios.sh
source "$here/scenarios.sh"

# Installs the chart and starts two operators and three agents.
e2e_setup() {
say "set-up: helm install the chart into $opns, three simulated nodes"
step "CRDs, namespaces and Node objects"
kubectl apply -f crds/ >/dev/null
kubectl get namespace "$E2E_APPS" >/dev/null 2>&1 || kubectl create namespace "$E2E_APPS" >/dev/null
roles=(web web db)
declare -gA e2e_role
for i in 0 1 2; do
        e2e_role[${nodes[$i]}]=${roles[$i]}
        kubectl apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata: {name: ${nodes[$i]}, labels: {role: ${roles[$i]}, kubernetes.io/hostname: ${nodes[$i]}}}
NODE
done
step "helm install"
cat >"$dir/values.yaml" <<VALUES
objectStore:
  location: "s3://$BALLAST_S3_BUCKET/$id?endpoint=$BALLAST_S3_ENDPOINT&region=$BALLAST_S3_REGION&path_style=true"
  credentials:
    accessKeyId: "$AWS_ACCESS_KEY_ID"
    secretAccessKey: "$AWS_SECRET_ACCESS_KEY"
operator:
  watchNamespace: "$E2E_APPS"
  fleetInterval: 2s
  leaderElection: {leaseDuration: 6s, renewDeadline: 4s, retryPeriod: 1s}
agent:
  pollInterval: 2s
  reloadActions:
    app:
      command: [/bin/sh, -c, '! grep -qs BROKEN "\$BALLAST_BUNDLE_DIR/app.conf"']
      timeout: 10s
    nginx:
      command: [/bin/sh, -c, 'echo "nginx would reload now: \$BALLAST_BUNDLE_DIR"']
      timeout: 10s
VALUES
helm install ballast "$E2E_CHART" -n "$opns" --create-namespace -f "$dir/values.yaml" >"$dir/helm.log" ||
        { cat "$dir/helm.log"; fail "helm install failed"; }
kubectl -n "$opns" get configmap -l app.kubernetes.io/component=agent \
        -o jsonpath='{.items[0].data.config\.yaml}' >"$dir/agent-config.yaml"

step "tokens for the chart's ServiceAccounts; a proxy per node"
token_kubeconfig "$(chart_sa deploy operator)" "$BALLAST_APISERVER_URL" "$dir/operator.kubeconfig"
api_hostport=${BALLAST_APISERVER_URL#https://}
for n in "${nodes[@]}"; do
        mkdir -p "$dir/$n/root" "$dir/$n/cache"
        free_port "proxy_port[$n]"
        free_port "agent_port[$n]"
        setsid socat "TCP-LISTEN:${proxy_port[$n]},bind=127.0.0.1,fork,reuseaddr" "TCP:$api_hostport" \
                </dev/null >>"$dir/proxy-$n.log" 2>&1 &
        proxy_pid[$n]=$!
        token_kubeconfig "$(chart_sa daemonset agent)" "https://127.0.0.1:${proxy_port[$n]}" "$dir/$n/kubeconfig"
done
step "two operators and three agents, with the chart's arguments"
for o in "${ops[@]}"; do start_operator "$o"; done
for n in "${nodes[@]}"; do start_agent "$n"; done
for n in "${nodes[@]}"; do wait_until 30 "agent on $n ready" e2e_agent_ready "$n"; done

}
