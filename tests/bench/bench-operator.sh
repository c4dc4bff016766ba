#!/usr/bin/env bash
# make bench-operator: ballast-operator publishing N ConfigBundles against the
# local control plane (real kube-apiserver + etcd + S3 server).
#
# For each N (default "1000 10000"): create N ConfigBundles with the operator
# stopped, start it, and measure the time until every bundle is published to
# both targets (its revisions counter reaches N and every status is written),
# the API requests it made by verb, its peak RSS, and the writes it makes
# during an idle resync of everything (the target is 0). Figures go to
# docs/benchmarks.md between the bench-operator markers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

sizes=${BENCH_SIZES:-1000 10000}
workers=${BENCH_WORKERS:-16}
qps=${BENCH_QPS:-1000}
resync=20

bash tests/cluster/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "${BALLAST_CLUSTER_DIR:-build/cluster}/env"
kubectl apply -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/configbundles.ballast.dev >/dev/null

metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v s="$1" '$1 == s {print $2}'; }
writes() {
        local sum=0 t v
        for t in manifest index configmap status configbundle event; do
                v=$(metric "ballast_operator_writes_total{target=\"$t\"}")
                sum=$((sum + ${v:-0}))
        done
        echo "$sum"
}

results=()
for n in $sizes; do
        id="bench$n-$$"
        ns="b-$id"
        opns="bo-$id"
        kubectl create namespace "$ns" >/dev/null
        kubectl create namespace "$opns" >/dev/null
        echo "bench-operator: creating $n ConfigBundles in $ns" >&2
        gen=$(mktemp)
        for ((i = 0; i < n; i++)); do
                printf -- '---\napiVersion: ballast.dev/v1alpha1\nkind: ConfigBundle\nmetadata: {name: b%05d}\nspec:\n  nodeSelector: {matchLabels: {pool: p%d}}\n  values: {idx: "%d"}\n  files:\n  - {path: app.conf, template: "id={{ idx }} name={{ bundle.name }}\\n"}\n  - {path: static/motd, content: "hello from bundle %d\\n"}\n' "$i" $((i % 10)) "$i" "$i"
        done >"$gen"
        kubectl -n "$ns" create -f "$gen" >/dev/null
        rm -f "$gen"

        port=$((30000 + RANDOM % 20000))
        log="build/bench-operator-$n.log"
        loc="s3://$BALLAST_S3_BUCKET/$id?endpoint=$BALLAST_S3_ENDPOINT&region=$BALLAST_S3_REGION&path_style=true"
        cmd=(build/ballast-operator "--kubeconfig=$KUBECONFIG" "--namespace=$opns" "--watch-namespace=$ns"
                "--object-store=$loc" "--health-addr=127.0.0.1:$port" "--workers=$workers"
                "--kube-qps=$qps" "--kube-burst=$qps" "--resync-period=${resync}s" "--leader-elect=false"
                "--log-level=warning")
        start=$(date +%s.%N)
        "${cmd[@]}" >"$log" 2>&1 &
        pid=$!
        until [ "$(metric ballast_operator_revisions_total || echo 0)" = "$n" ] &&
                [ "$(metric 'ballast_operator_writes_total{target="status"}' || echo 0)" -ge "$n" ]; do
                kill -0 "$pid" 2>/dev/null || { tail "$log"; echo "operator died" >&2; exit 1; }
                sleep 0.2
        done
        end=$(date +%s.%N)
        secs=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        verbs=""
        for v in get watch post put patch delete; do
                verbs+="$v $(metric "ballast_operator_kube_requests_total{verb=\"$v\"}"), "
        done
        w0=$(writes)
        r0=$(metric ballast_operator_reconciles_total)
        sleep $((resync * 3 / 2 + 5))
        w1=$(writes)
        r1=$(metric ballast_operator_reconciles_total)
        ready=$(kubectl -n "$ns" get cb -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
        kill "$pid"
        wait "$pid" || true
        results+=("| $n | $(printf '%.1f' "$secs") s | $ready / $n | ${verbs%, } | $((hwm / 1024)) MiB | $((r1 - r0)) reconciles, $((w1 - w0)) writes |")
        echo "bench-operator: N=$n: ${secs}s, ready $ready, peak RSS $((hwm / 1024)) MiB, idle resync: $((r1 - r0)) reconciles, $((w1 - w0)) writes" >&2

        # Clean up without an operator: drop finalizers, then the namespaces.
        kubectl -n "$ns" get cb -o name | xargs -r -n 500 kubectl -n "$ns" patch --type=merge \
                -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        kubectl delete namespace "$ns" "$opns" --wait=false >/dev/null
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
section=$(mktemp)
{
        echo "<!-- bench-operator:begin -->"
        echo "## ballast-operator: publishing N ConfigBundles"
        echo
        echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), against the local control plane"
        echo "(kube-apiserver + etcd + versitygw on the same machine). The bundles exist before the operator"
        echo "starts; the clock runs from its start until every bundle is published to the object store and"
        echo "a ConfigMap and its status is written. Workers $workers, client QPS $qps. The idle resync"
        echo "re-checks every bundle ($resync s period) and must write nothing."
        echo
        echo "| bundles | time to publish all | Ready | API requests by verb | peak RSS | idle resync |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${results[@]}"
        echo
        echo "Reproduce: \`make bench-operator\` (sizes: \`BENCH_SIZES=\"1000 10000\"\`)."
        echo "<!-- bench-operator:end -->"
} >"$section"
doc=docs/benchmarks.md
# shellcheck disable=SC2016 # the backquotes are Markdown
[ -f "$doc" ] || printf '# Benchmarks\n\nFigures from `make bench`; each section says how to reproduce it.\n\n' >"$doc"
if grep -q '<!-- bench-operator:begin -->' "$doc"; then
        awk -v f="$section" '/<!-- bench-operator:begin -->/ {while ((getline l < f) > 0) print l; skip=1; next}
                /<!-- bench-operator:end -->/ {skip=0; next} !skip {print}' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
else
        cat "$section" >>"$doc"
fi
rm -f "$section"
echo "bench-operator: results in $doc" >&2
