#!/usr/bin/env bash
# make kind-e2e: the end-to-end scenarios of `make e2e` (tests/e2e/scenarios.sh,
# shared) on a real kind cluster, for users with Docker, kind and internet.
# See kind-e2e/README.md for each step. KEEP=1 leaves the cluster running.
#
#   - a kind cluster: one control-plane node, two workers;
#   - the images built here (make images) and loaded with `kind load`;
#   - versitygw as a container OUTSIDE the cluster, on a docker network of its
#     own that every node joins: an external object store, no self-dependency;
#   - `helm install --wait` of helm/ballast;
#   - outages: the API server process paused inside the control-plane
#     container (connections hang, as with `docker pause`, while the node and
#     its agent stay observable); partitions: iptables rules inside each node
#     container that drop only the traffic to the API server, so the nodes
#     keep reaching the object store; the object store: `docker stop`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

cluster=${KIND_CLUSTER:-ballast-e2e}
version=$(cat VERSION)
s3_image=${S3_IMAGE:-versity/versitygw:v1.8.0}
s3=ballast-e2e-s3
s3net=ballast-e2e-store
opns=ballast-system
E2E_APPS=e2e-apps
E2E_OUTAGE=${E2E_OUTAGE:-60}
E2E_CHART=$top/helm/ballast
access=ballaste2e
secret=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')

need() { # COMMAND HOW-TO-GET-IT
        command -v "$1" >/dev/null 2>&1 || {
                echo "kind-e2e: '$1' is required: $2" >&2
                exit 2
        }
}
need docker "install Docker Engine (https://docs.docker.com/engine/install/)"
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
need helm "install Helm 3 or 4 (https://helm.sh/docs/intro/install/)"
need jq "apt-get install jq"
need curl "apt-get install curl"
docker info >/dev/null 2>&1 || { echo "kind-e2e: cannot talk to the Docker daemon" >&2; exit 2; }

export KUBECONFIG="$top/build/kind-e2e/kubeconfig"
mkdir -p "$top/build/kind-e2e"

# ---- the driver of tests/e2e/scenarios.sh --------------------------------------

e2e_kubectl() { kubectl "$@"; }
e2e_helm() { helm "$@"; }
e2e_nodes() { kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }
e2e_operator_ns() { echo "$opns"; }
e2e_node_file() { docker exec "$1" cat "/etc/ballast/$2"; }
e2e_node_has() { docker exec "$1" test -e "/etc/ballast/$2"; }
apiserver_signal() { docker exec "$cluster-control-plane" sh -c "kill -$1 \$(pidof kube-apiserver)"; }
e2e_api_pause() { apiserver_signal STOP; }
e2e_api_resume() { apiserver_signal CONT; }
api_ip() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$cluster-control-plane" | awk '{print $1}'; }
partition_rule() { # -I|-D NODE
        local ip
        ip=$(api_ip)
        docker exec "$2" iptables "$1" FORWARD -d "$ip" -p tcp --dport 6443 -j DROP
        docker exec "$2" iptables "$1" OUTPUT -d "$ip" -p tcp --dport 6443 -j DROP
}
e2e_partition_nodes() { local n; for n in $(e2e_nodes | grep -v control-plane); do partition_rule -I "$n"; done; }
e2e_heal_nodes() { local n; for n in $(e2e_nodes | grep -v control-plane); do partition_rule -D "$n"; done; }
e2e_store_stop() { docker stop "$s3" >/dev/null; }
e2e_store_start() { docker start "$s3" >/dev/null; }
e2e_agent_restart() { # the kubelet restarts the container, no API server needed
        docker exec "$1" sh -c 'crictl ps --name agent -q | xargs -r crictl stop' >/dev/null
}
e2e_agent_ready() { docker exec "$1" curl -sf "http://127.0.0.1:8082/readyz" >/dev/null; }
e2e_agent_metric() {
        docker exec "$1" curl -sf "http://127.0.0.1:8082/metrics" | awk -v s="$2" '$1 == s {print $2}'
}
e2e_leader_kill() {
        local holder
        holder=$(kubectl -n "$opns" get lease ballast-operator -o jsonpath='{.spec.holderIdentity}')
        kubectl -n "$opns" delete pod "$holder" --grace-period=0 --force >/dev/null 2>&1
}
e2e_dump() {
        kubectl -n "$opns" logs -l app.kubernetes.io/instance=ballast --all-containers --tail=40 --prefix || true
        docker logs --tail 20 "$s3" || true
}

cleanup() {
        local rc=$?
        if [ "${KEEP:-0}" = 1 ]; then
                echo "kind-e2e: KEEP=1: cluster $cluster and container $s3 left running"
        else
                kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
                docker rm -f "$s3" >/dev/null 2>&1 || true
                docker network rm "$s3net" >/dev/null 2>&1 || true
        fi
        if [ $rc -eq 0 ]; then echo "kind-e2e: 8 passed, 0 failed"; else echo "kind-e2e: 0 passed, 1 failed"; fi
        exit $rc
}
trap cleanup EXIT INT TERM

# shellcheck source=tests/e2e/scenarios.sh
source "$top/tests/e2e/scenarios.sh"

say "set-up: kind cluster $cluster, images, an external object store, helm install"
step "images (make images)"
make images
step "kind create cluster"
kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait 120s
kind load docker-image "ballast-operator:$version" "ballast-agent:$version" --name "$cluster"

step "the object store: $s3_image on docker network $s3net, outside the cluster"
docker network create "$s3net" >/dev/null
docker run -d --name "$s3" --network "$s3net" -p 127.0.0.1::7070 \
        -e ROOT_ACCESS_KEY="$access" -e ROOT_SECRET_KEY="$secret" \
        "$s3_image" posix /tmp >/dev/null
for n in $(e2e_nodes); do docker network connect "$s3net" "$n"; done
s3_host_port=$(docker port "$s3" 7070 | head -n1)
wait_until 60 "the S3 server answers" curl -s -o /dev/null "http://$s3_host_port/"
curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access:$secret" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        "http://$s3_host_port/ballast" >/dev/null || fail "cannot create the bucket"

step "label the nodes: two web, one db"
roles=(web web db)
declare -A e2e_role
i=0
for n in $(e2e_nodes); do
        kubectl label node "$n" "role=${roles[$i]}" --overwrite >/dev/null
        e2e_role[$n]=${roles[$i]}
        i=$((i + 1))
done

step "helm install --wait"
kubectl create namespace "$E2E_APPS" >/dev/null
cat >"$top/build/kind-e2e/values.yaml" <<VALUES
objectStore:
  location: "s3://ballast/kind?endpoint=http://$s3:7070&region=us-east-1&path_style=true"
  credentials:
    accessKeyId: "$access"
    secretAccessKey: "$secret"
operator:
  image: {tag: "$version", pullPolicy: IfNotPresent}
  watchNamespace: "$E2E_APPS"
  fleetInterval: 2s
  leaderElection: {leaseDuration: 6s, renewDeadline: 4s, retryPeriod: 1s}
agent:
  image: {tag: "$version", pullPolicy: IfNotPresent}
  hostNetwork: true
  pollInterval: 2s
  reloadActions:
    app:
      command: [/bin/sh, -c, '! grep -qs BROKEN "\$BALLAST_BUNDLE_DIR/app.conf"']
      timeout: 10s
VALUES
helm install ballast "$E2E_CHART" -n "$opns" --create-namespace -f "$top/build/kind-e2e/values.yaml" \
        --wait --timeout 5m

scenario_install
scenario_update
scenario_api_outage
scenario_both_down
scenario_recovery
scenario_bad_revision
scenario_leader
scenario_helm
say "all scenarios passed on kind"
