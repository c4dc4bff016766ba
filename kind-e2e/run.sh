#!/usr/bin/env bash
# make kind-e2e: the end-to-end scenarios of `make e2e` (tests/e2e/scenarios.sh,
# shared) on a real kind cluster, where the operator and the agents run as pods
# from the images this repository builds, plus what only real nodes show
# (kind-e2e/scenarios-kind.sh). Works offline: see kind-e2e/README.md.
#
#   - kind, kubectl and helm built from pinned Go modules
#     (tests/cluster/build-servers.sh --node), the node image built here
#     (kind-e2e/node-image.sh) unless KIND_NODE_IMAGE names one or the
#     upstream kindest/node image can be pulled;
#   - a kind cluster: one control-plane node, two workers;
#   - the images of `make images`, loaded with `kind load`;
#   - versitygw as a container OUTSIDE the cluster, on a docker network of its
#     own that every node joins: an external object store, no self-dependency;
#   - `helm install --wait` of helm/ballast, then `helm test`;
#   - outages: the API server process paused inside the control-plane
#     container; partitions: iptables rules inside each node container that
#     drop only the traffic to the API server; the object store: `docker stop`.
#
# KEEP=1 leaves the cluster running; `make kind-e2e-down` (run.sh down)
# removes it and everything the suite created; `run.sh again SCENARIO...` runs
# scenarios once more on a cluster a KEEP=1 run left (while writing them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

cluster=${KIND_CLUSTER:-ballast-e2e}
version=$(cat VERSION)
s3=$cluster-s3
s3net=$cluster-store
opns=ballast-system
E2E_APPS=e2e-apps
E2E_OUTAGE=${E2E_OUTAGE:-60}
E2E_CHART=$top/helm/ballast
work=$top/build/kind-e2e
access=ballaste2e
secret=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The agents' projected token lives this long (the API server's minimum), so
# the kubelet rotates it during the suite and the first one expires.
token_ttl=600
t_start=$SECONDS

log() { printf 'kind-e2e: %s\n' "$*" >&2; }
die() {
        log "error: $*"
        exit 2
}

need() { # COMMAND HOW-TO-GET-IT
        command -v "$1" >/dev/null 2>&1 || die "'$1' is required: $2"
}
need docker "install Docker Engine (https://docs.docker.com/engine/install/)"
need jq "apt-get install jq"
need curl "apt-get install curl"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon"

export KUBECONFIG="$work/kubeconfig"
mkdir -p "$work"

# Everything the suite creates is labelled, so `down` finds it even after a
# run that was killed.
owned_label=dev.ballast.kind-e2e=$cluster

teardown() {
        local c
        if command -v kind >/dev/null 2>&1; then
                kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
        fi
        # kind's own node containers, should kind be gone or have failed.
        for c in $(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$cluster"); do
                docker rm -f -v "$c" >/dev/null 2>&1 || true
        done
        for c in $(docker ps -aq --filter "label=$owned_label"); do
                docker rm -f -v "$c" >/dev/null 2>&1 || true
        done
        docker network rm "$s3net" >/dev/null 2>&1 || true
        # kind's network, when this suite made it and nothing else uses it.
        if [[ -f $work/kind-network-created ]] &&
                [[ -z $(docker network inspect kind -f '{{range .Containers}}x{{end}}' 2>/dev/null) ]]; then
                docker network rm kind >/dev/null 2>&1 || true
        fi
        rm -f "$work/kind-network-created"
        # Images the suite made or loaded; the node image stays in the cache.
        for c in $(docker images -q --filter "label=$owned_label" | sort -u); do
                docker rmi -f "$c" >/dev/null 2>&1 || true
        done
        if [[ -f $work/node-image ]]; then docker rmi "$(cat "$work/node-image")" >/dev/null 2>&1 || true; fi
        rm -f "$work/node-image"
}

if [[ ${1:-} == down ]]; then
        bindir=$(bash tests/cluster/build-servers.sh --node --print-bindir 2>/dev/null | tail -n1) || bindir=""
        [[ -n $bindir ]] && export PATH="$bindir:$PATH"
        teardown
        log "removed cluster $cluster, the object store and what the suite made"
        exit 0
fi

again=0
if [[ ${1:-} == again ]]; then
        again=1
        shift
        [[ $# -gt 0 ]] || die "usage: run.sh again SCENARIO... (e.g. scenario_install)"
fi

# ---- tools, the node image, the host's quirks -------------------------------------

# KIND_KUBERNETES=MINOR: another Kubernetes minor version (tools/kubernetes-MINOR).
kube_args=()
[[ -z ${KIND_KUBERNETES:-} ]] || kube_args=(--kubernetes "$KIND_KUBERNETES")
log "building (or reusing) kind, kubectl, helm and the node's binaries"
bindir=$(bash tests/cluster/build-servers.sh --node "${kube_args[@]}" | tail -n1)
export PATH="$bindir:$PATH"
kversion=$(kubectl version --client -o json | jq -r .clientVersion.gitVersion)

# A stale cluster or store of the same name (a killed run) goes first.
((again)) || teardown

if ((again)); then
        node_image=$(docker inspect -f '{{.Config.Image}}' "$cluster-control-plane") ||
                die "no cluster $cluster to run scenarios on again (KEEP=1 leaves one)"
elif [[ -n ${KIND_NODE_IMAGE:-} ]]; then
        node_image=$KIND_NODE_IMAGE
        log "node image: $node_image (KIND_NODE_IMAGE)"
elif [[ ${KIND_NODE_PULL:-1} != 0 ]] && timeout 120 docker pull -q "kindest/node:$kversion" >/dev/null 2>&1; then
        node_image=kindest/node:$kversion
        log "node image: $node_image (pulled)"
else
        node_image=$(bash "$here/node-image.sh" "$bindir" | tail -n1)
        printf '%s\n' "$node_image" >"$work/node-image"
        log "node image: $node_image (built here; kindest/node:$kversion cannot be pulled)"
fi

# Quirk 1: `docker run --privileged` fails when the host's capability bounding
# set lacks a capability (CAP_SYS_RESOURCE on some VMs): kind runs its nodes
# through a docker shim that asks for every capability but that one.
shim=$work/shim
rm -rf "$shim"
if ((again)); then
        : # no new cluster: the quirks matter only to kind create
elif ! out=$(docker run --rm --privileged --entrypoint /bin/true "$node_image" 2>&1); then
        missing=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
        [[ $out == *"apply caps"* || $out == *"operation not permitted"* ]] ||
                die "docker run --privileged fails for another reason than capabilities: $out"
        log "quirk: docker run --privileged fails here (capability bounding set $missing): kind runs nodes with every capability but CAP_SYS_RESOURCE, through $shim/docker"
        mkdir -p "$shim"
        sed "s|@DOCKER@|$(command -v docker)|" "$here/docker-shim" >"$shim/docker"
        chmod +x "$shim/docker"
        export PATH="$shim:$PATH"
fi
# Quirk 2: a cgroup v1 host; the kubelet refuses cgroup v1 from 1.35 on unless told.
cgroup_patch=""
kminor=${kversion#v1.}
kminor=${kminor%%.*}
if [[ $(stat -f -c %T /sys/fs/cgroup) != cgroup2fs ]] && ((kminor >= 35)); then
        log "quirk: the host runs cgroup v1: the kubelets get failCgroupV1: false"
        cgroup_patch=$'kubeadmConfigPatches:\n  - |\n    apiVersion: kubelet.config.k8s.io/v1beta1\n    kind: KubeletConfiguration\n    failCgroupV1: false'
fi
# Quirk 3: the Docker storage driver is fuse-overlayfs; the node image picks
# the overlayfs snapshotter on /var (kind-e2e/node/entrypoint-pre).
if [[ $(docker info -f '{{.Driver}}') == fuse-overlayfs ]]; then
        log "quirk: Docker's storage driver is fuse-overlayfs: node containerd uses the overlayfs snapshotter on /var"
fi

{
        cat "$here/kind-config.yaml"
        [[ -z $cgroup_patch ]] || printf '%s\n' "$cgroup_patch"
} >"$work/kind-config.yaml"

# ---- the driver of tests/e2e/scenarios.sh --------------------------------------

e2e_kubectl() { kubectl "$@"; }
e2e_helm() { helm "$@"; }
# The node names, read once the cluster is up: checks work with the API server down.
e2e_nodes() { printf '%s\n' "${nodes_cached[@]}"; }
e2e_operator_ns() { echo "$opns"; }
e2e_node_file() { docker exec "$1" cat "/etc/ballast/$2"; }
e2e_node_has() { docker exec "$1" test -e "/etc/ballast/$2"; }
apiserver_signal() { docker exec "$cluster-control-plane" sh -c "kill -$1 \$(pidof kube-apiserver)"; }
e2e_api_pause() { apiserver_signal STOP; }
e2e_api_resume() { apiserver_signal CONT; }
# The API server's address on kind's network (the control plane is on the
# store's network too).
api_ip() { docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$cluster-control-plane"; }
api_reachable_from() { docker exec "$1" curl -sk -m 3 -o /dev/null "https://$(api_ip):6443/livez"; }
# Only the node's own traffic (its kubelet and the host-network agent):
# routed pod traffic (FORWARD), such as the operator's, keeps the API server.
partition_rule() { # -I|-D NODE
        local ip
        ip=$(api_ip)
        docker exec "$2" iptables "$1" OUTPUT -d "$ip" -p tcp --dport 6443 -j DROP
        if [[ $1 == -I ]] && api_reachable_from "$2"; then
                fail "$2 still reaches the API server at $ip after the partition"
        fi
}
workers() { printf '%s\n' "${nodes_cached[@]}" | grep -v control-plane; }
e2e_partition_nodes() { local n; for n in $(workers); do partition_rule -I "$n"; done; }
e2e_heal_nodes() { local n; for n in $(workers); do partition_rule -D "$n"; done; }
e2e_store_stop() { docker stop "$s3" >/dev/null; }
e2e_store_start() { docker start "$s3" >/dev/null; }
agent_container() { # NODE: the running agent container's ID (no API server needed)
        docker exec "$1" crictl ps --name '^agent$' --state running -q 2>/dev/null | head -n1
}
e2e_agent_restart() { # the kubelet restarts the container, no API server needed
        local before
        before=$(agent_container "$1")
        [[ -n $before ]] || fail "no running agent container on $1"
        docker exec "$1" crictl stop "$before" >/dev/null
        wait_until 60 "the kubelet restarts the agent container on $1" agent_replaced "$1" "$before"
}
agent_replaced() { local c; c=$(agent_container "$1"); [[ -n $c && $c != "$2" ]]; }
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
        kubectl get pods -A -o wide || true
        kubectl -n "$opns" logs -l app.kubernetes.io/instance=ballast --all-containers --tail=40 --prefix || true
        docker logs --tail 20 "$s3" || true
}

cleanup() {
        local rc=$?
        if [[ ${KEEP:-0} == 1 || $again == 1 ]]; then
                log "KEEP=1: cluster $cluster and container $s3 left running (KUBECONFIG=$KUBECONFIG); make kind-e2e-down removes them"
        else
                teardown
        fi
        log "took $(((SECONDS - t_start) / 60))m$(((SECONDS - t_start) % 60))s"
        if [[ $rc -eq 0 ]]; then echo "kind-e2e: $passed passed, 0 failed"; else echo "kind-e2e: $passed passed, 1 failed"; fi
        exit $rc
}
passed=0
trap cleanup EXIT INT TERM

# shellcheck source=tests/e2e/scenarios.sh
source "$top/tests/e2e/scenarios.sh"
# shellcheck source=kind-e2e/scenarios-kind.sh
source "$here/scenarios-kind.sh"

run_scenario() { "$@" && passed=$((passed + 1)); }
if ((again)); then
        mapfile -t nodes_cached < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
        declare -A e2e_role
        for n in "${nodes_cached[@]}"; do e2e_role[$n]=$(kubectl get node "$n" -o jsonpath='{.metadata.labels.role}'); done
        secret=$(kubectl -n "$opns" get secret -l app.kubernetes.io/instance=ballast \
                -o jsonpath='{.items[0].data.AWS_SECRET_ACCESS_KEY}' | base64 -d)
        token_record
        for s in "$@"; do run_scenario "$s"; done
        exit 0
fi

say "set-up: kind cluster $cluster ($kversion), images, an external object store, helm install"
step "images (make images)"
make --no-print-directory images
step "kind create cluster"
docker network inspect kind >/dev/null 2>&1 || touch "$work/kind-network-created"
kind create cluster --name "$cluster" --config "$work/kind-config.yaml" --image "$node_image" \
        --kubeconfig "$KUBECONFIG" --wait 180s
mapfile -t nodes_cached < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
wait_until 180 "every node Ready" all_nodes_ready
kind load docker-image "ballast-operator:$version" "ballast-agent:$version" --name "$cluster"

step "the object store: versitygw on docker network $s3net, outside the cluster"
s3_image=$(s3_image_build)
docker network create --label "$owned_label" "$s3net" >/dev/null
docker run -d --name "$s3" --label "$owned_label" --network "$s3net" -p 127.0.0.1::7070 \
        -e ROOT_ACCESS_KEY="$access" -e ROOT_SECRET_KEY="$secret" \
        "$s3_image" posix /data >/dev/null
for n in "${nodes_cached[@]}"; do docker network connect "$s3net" "$n"; done
s3_host_port=$(docker port "$s3" 7070 | head -n1)
wait_until 60 "the S3 server answers" curl -s -o /dev/null "http://$s3_host_port/"
curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access:$secret" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        "http://$s3_host_port/ballast" >/dev/null || fail "cannot create the bucket"

step "label the nodes: two web, one db"
roles=(web web db)
declare -A e2e_role
i=0
for n in "${nodes_cached[@]}"; do
        kubectl label node "$n" "role=${roles[$i]}" --overwrite >/dev/null
        e2e_role[$n]=${roles[$i]}
        i=$((i + 1))
done

step "helm install --wait"
kubectl create namespace "$E2E_APPS" >/dev/null
cat >"$work/values.yaml" <<VALUES
objectStore:
  location: "s3://ballast/kind?endpoint=http://$s3:7070&region=us-east-1&path_style=true"
  credentials:
    accessKeyId: "$access"
    secretAccessKey: "$secret"
operator:
  image: {tag: "$version", pullPolicy: Never}
  watchNamespace: "$E2E_APPS"
  fleetInterval: 2s
  leaderElection: {leaseDuration: 6s, renewDeadline: 4s, retryPeriod: 1s}
agent:
  image: {tag: "$version", pullPolicy: Never}
  hostNetwork: true
  pollInterval: 2s
  serviceAccountToken: {expirationSeconds: $token_ttl}
  # The host-service scenario moves one node's agent out of the DaemonSet.
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: ballast.dev/agent, operator: NotIn, values: [host]}]
  reloadActions:
    app:
      command: [/bin/sh, -c, '! grep -qs BROKEN "\$BALLAST_BUNDLE_DIR/app.conf"']
      timeout: 10s
VALUES
helm install ballast "$E2E_CHART" -n "$opns" --create-namespace -f "$work/values.yaml" \
        --wait --timeout 5m
token_record
say "helm test"
helm test ballast -n "$opns" --logs --timeout 3m || fail "helm test failed"
passed=$((passed + 1))

run_scenario scenario_rbac
run_scenario scenario_operator_pods
run_scenario scenario_install
run_scenario scenario_update
run_scenario scenario_api_outage_no_restarts
run_scenario scenario_both_down
run_scenario scenario_recovery
run_scenario scenario_bad_revision
run_scenario scenario_leader
run_scenario scenario_host_service_reboot
run_scenario scenario_token_rotation
run_scenario scenario_helm
say "all scenarios passed on kind ($node_image)"
