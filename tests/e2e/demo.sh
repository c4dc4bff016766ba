#!/usr/bin/env bash
# make demo: the main job on one machine, narrated. Builds what it needs,
# starts the local control plane and the S3 server, helm-installs Ballast,
# brings up three simulated nodes (agents as processes, each with its own
# root and cache directory), applies docs/examples/, shows what was published
# where and what each node applied, cuts the nodes off from the API server
# while an update still arrives through the object store, pauses the API
# server, recovers, and leaves everything running for you to poke at.
# `make demo-down` stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
id=demo
dir="$top/build/demo"
E2E_APPS=default # where docs/examples/ put their bundles
E2E_OUTAGE=0
if [ -e "$dir/pids" ]; then
        echo "demo: already running; \`make demo-down\` first" >&2
        exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
# shellcheck source=tests/e2e/harness.sh
source "$here/harness.sh"

keep=0
on_exit() {
        local rc=$?
        if [ $rc -ne 0 ] || [ $keep -eq 0 ]; then
                echo "demo: stopping (exit $rc); logs are in $dir" >&2
                cleanup "$rc"
        fi
        exit "$rc"
}
trap on_exit EXIT INT TERM

show_nodes() {
        local n f
        for n in "${nodes[@]}"; do
                printf '    %-14s role=%-4s' "$n" "${e2e_role[$n]}"
                for f in nginx-site/conf.d/site.conf node-motd/motd; do
                        if [ -e "$dir/$n/root/default/$f" ]; then
                                printf '  %s: yes' "${f%%/*}"
                        else
                                printf '  %s: no ' "${f%%/*}"
                        fi
                done
                echo
        done
}

say "Ballast demo: a control plane, an object store, and three nodes"
cat <<TXT
  The API server, etcd, controller-manager and scheduler run on 127.0.0.1 (tests/cluster),
  and versitygw is the external S3 object store. There is no kubelet: the operator and the
  node agents run as local processes with the arguments and ServiceAccounts of the Helm chart.
TXT
e2e_setup

say "Apply the samples: kubectl apply -f docs/examples/"
kubectl apply -f docs/examples/ | sed 's/^/    /'
wait_until 60 "nginx-site published" bash -c \
        "[ \"\$(kubectl -n default get cb nginx-site -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"
say "What the operator published, and where"
kubectl -n default get configbundles -o wide | sed 's/^/    /'
echo "    ConfigMaps in $opns:"
kubectl -n "$opns" get configmaps -l app.kubernetes.io/managed-by=ballast-operator | sed 's/^/      /'
echo "    The object store's index.json lists:"
curl -s --aws-sigv4 "aws:amz:$BALLAST_S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        "$BALLAST_S3_ENDPOINT/$BALLAST_S3_BUCKET/$id/index.json" |
        jq -r '.bundles | to_entries[] | "      \(.key): revision \(.value.revision), \(.value.key)"'

say "What each node applied (nginx-site goes to role=web only; node-motd everywhere)"
wait_until 60 "motd on every node" bash -c "for n in ${nodes[*]}; do [ -e \"$dir/\$n/root/default/node-motd/motd\" ] || exit 1; done"
show_nodes
echo "    $dir/${nodes[0]}/root/default/nginx-site/conf.d/site.conf:"
sed 's/^/      | /' "$dir/${nodes[0]}/root/default/nginx-site/conf.d/site.conf"

say "Outage: the nodes lose the API server; an update still arrives through the object store"
e2e_partition_nodes
echo "    (each node's connection to the API server now hangs)"
kubectl -n default patch cb nginx-site --type=merge -p '{"spec":{"values":{"port":"9090"}}}' | sed 's/^/    /'
wait_until 60 "port 9090 on the web nodes" grep -q "listen 9090" "$dir/${nodes[0]}/root/default/nginx-site/conf.d/site.conf"
echo "    the web nodes polled index.json (If-None-Match), fetched the new manifest and applied it:"
grep -h "listen" "$dir/${nodes[0]}/root/default/nginx-site/conf.d/site.conf" | sed 's/^/      /'
e2e_heal_nodes

say "Outage: the whole API server is paused (SIGSTOP) for 20 seconds"
e2e_api_pause
for i in 1 2; do
        sleep 10
        echo "    t+$((i * 10))s: agents ready: $(for n in "${nodes[@]}"; do e2e_agent_ready "$n" && printf '%s ' "$n"; done)"
done
show_nodes
e2e_api_resume
say "Recovery: the API server is back; the fleet converges without a stampede"
kubectl -n default patch cb nginx-site --type=merge -p '{"spec":{"values":{"port":"8080"}}}' | sed 's/^/    /'
wait_until 60 "port 8080 again" grep -q "listen 8080" "$dir/${nodes[0]}/root/default/nginx-site/conf.d/site.conf"
sleep 3
kubectl -n default get configbundles | sed 's/^/    /'

{
        printf '%s\n' "${op_pid[@]}" "${agent_pid[@]}"
        for n in "${nodes[@]}"; do echo "-${proxy_pid[$n]}"; done
} >"$dir/pids"
echo "$opns" >"$dir/namespace"
printf '%s\n' "${nodes[@]}" >"$dir/nodes"
keep=1
say "Summary"
cat <<TXT
  Ballast is running: two operators (one leads), three agents, the control plane and S3.

  Poke at it:
    source build/cluster/env
    kubectl get cb -A                       # revisions, node counts, readiness
    kubectl -n default edit cb nginx-site   # change a value, watch the nodes follow
    ls $dir/${nodes[0]}/root/default/       # a node's live files (..data is the atomic swap)
    ls $dir/${nodes[0]}/cache/              # its last-known-good cache
    bash tests/cluster/cluster.sh pause apiserver   # and resume: the nodes keep serving
    tail -f $dir/agent-${nodes[0]}.log

  Stop it: make demo-down
TXT
