#!/usr/bin/env bash
# make bench-operator: ballast-operator publishing N ConfigBundles against the
# local control plane (real kube-apiserver + etcd + S3 server).
#
# For each N (default "1000 10000"): create N ConfigBundles with the operator
# stopped, start it, and measure the time until every bundle is published to
# both targets (its revisions counter reaches N and every status is written),
# the API requests it made by verb, its peak RSS, and the writes it makes
# during an idle resync of everything (the target is 0). Then the floor: the
# same N bundles, fresh, in namespaces of their own, and bench-kube-floor
# sending just their API writes (the three PATCHes per bundle the operator
# sends, with the same bodies, as fast as the API server answers); its time
# and the API server's CPU are measured the same way. Figures go to
# docs/benchmarks.md between the bench-operator markers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
# shellcheck source=tests/lib/ports.sh
source tests/lib/ports.sh

sizes=${BENCH_SIZES:-1000 10000}
workers=${BENCH_WORKERS:-16}
qps=${BENCH_QPS:-1000}
resync=20
# The most requests the operator has in flight: a worker per bundle starting,
# and as many again resuming their status writes (operator/workqueue.h).
floor_inflight=$((2 * workers))
floor=build/tests/bench/bench-kube-floor
make --no-print-directory -s "$floor" >&2

bash tests/cluster/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "${BALLAST_CLUSTER_DIR:-build/cluster}/env"
kubectl apply -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/configbundles.ballast.dev >/dev/null

# The value of metric $1, read with bash alone: wait_metric() polls five
# times a second, and a curl and an awk each time cost about 0.2 cores, taken
# from the API server during the operator's run and not during the floor's.
metric() {
        local fd k v
        { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
        printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
        while read -r k v _ <&"$fd"; do
                if [ "$k" = "$1" ]; then
                        exec {fd}>&-
                        echo "${v%$'\r'}"
                        return 0
                fi
        done
        exec {fd}>&-
        return 1
}
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
server_pid() { cat "${BALLAST_CLUSTER_DIR:-build/cluster}/run/$1.pid" 2>/dev/null || echo 0; }
servers_cpu() { awk -v a="$(cpu_of "$(server_pid apiserver)")" -v b="$(cpu_of "$(server_pid etcd)")" 'BEGIN {print a + b}'; }
s3_cpu() { cpu_of "$(server_pid s3)"; }
# The machine's busy and idle CPU time so far (jiffies), and the share of it
# that was busy between two such readings: how much of the machine a run used,
# and whether it left cores idle.
machine_cpu() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }
busy_since() { awk -v a="$1" -v b="$(machine_cpu)" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[1] - x[1] + y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'; }
# Waits (at most 120 s) until the control plane is quiet: kube-apiserver,
# etcd and kube-controller-manager together used under 0.2 CPU-seconds in the
# last 2 s. Creating N bundles leaves them busy for a while (the controller
# manager's garbage collector and quota controllers digest every new object),
# and a run that starts then measures their backlog too.
wait_quiet() {
        local t0=$SECONDS c0 c1
        while ((SECONDS - t0 < 120)); do
                c0=$(awk -v a="$(servers_cpu)" -v b="$(cpu_of "$(server_pid controller-manager)")" 'BEGIN {print a + b}')
                sleep 2
                c1=$(awk -v a="$(servers_cpu)" -v b="$(cpu_of "$(server_pid controller-manager)")" 'BEGIN {print a + b}')
                awk -v a="$c0" -v b="$c1" 'BEGIN {exit !(b - a < 0.2)}' && return 0
        done
        echo "bench-operator: the control plane is still busy after 120 s; starting anyway" >&2
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
# Starts the operator in the background: sets pid.
start_operator() {
        "${cmd[@]}" >>"$log" 2>&1 &
        pid=$!
}
# Waits until metric $1 reaches $2 (the operator must stay alive), keeping
# the largest anonymous RSS seen (KiB) in anon_max: the part of the RSS that is
# the operator's own memory rather than pages of the libraries it maps.
anon_max=0 heap_at_max=
wait_metric() {
        local a k v
        until [ "$(metric "$1" || echo 0)" -ge "$2" ] 2>/dev/null; do
                kill -0 "$pid" 2>/dev/null || { tail "$log"; echo "operator died" >&2; exit 1; }
                a=0
                while read -r k v _; do
                        [ "$k" = RssAnon: ] && a=$v && break
                done <"/proc/$pid/status" 2>/dev/null
                if ((a > anon_max)); then
                        anon_max=$a
                        # What malloc says about its heap at that moment.
                        heap_at_max="$(metric 'ballast_operator_heap_bytes{state="in_use"}' || true) in use, $(metric 'ballast_operator_heap_bytes{state="free"}' || true) free"
                fi
                sleep 0.2
        done
}
# Creates namespace $1 with $3 ConfigBundles (two files each, one a
# template) and namespace $2 for the ConfigMaps published from them, then
# waits until the control plane has digested them.
create_bundles() {
        local gen i
        kubectl create namespace "$1" >/dev/null
        kubectl create namespace "$2" >/dev/null
        echo "bench-operator: creating $3 ConfigBundles in $1" >&2
        gen=$(mktemp)
        for ((i = 0; i < $3; i++)); do
                printf -- '---\napiVersion: ballast.dev/v1alpha1\nkind: ConfigBundle\nmetadata: {name: b%05d}\nspec:\n  nodeSelector: {matchLabels: {pool: p%d}}\n  values: {idx: "%d"}\n  files:\n  - {path: app.conf, template: "id={{ idx }} name={{ bundle.name }}\\n"}\n  - {path: static/motd, content: "hello from bundle %d\\n"}\n' "$i" $((i % 10)) "$i" "$i"
        done >"$gen"
        kubectl -n "$1" create -f "$gen" >/dev/null
        rm -f "$gen"
        wait_quiet
}
# Cleans up without an operator: drops the finalizers of the bundles in
# namespace $1 (kubectl patches one object at a time: eight in parallel),
# deletes the namespaces $@ and waits until they are gone, so that the next
# run doesn't measure their deletion.
drop_namespaces() {
        kubectl -n "$1" get cb --chunk-size=500 -o name | xargs -r -P 8 -n 100 kubectl -n "$1" patch --type=merge \
                -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        kubectl delete namespace "$@" --wait=false >/dev/null
        kubectl wait --for=delete --timeout=600s "${@/#/namespace/}" >/dev/null 2>&1 ||
                echo "bench-operator: namespaces $* still there after 600 s" >&2
}
# From bench-kube-floor's output in $flog: the value of key $1, and the p50
# and p99 latency of request kind $1.
fval() { awk -F= -v k="$1" '$1 == k {print $2}' "$flog"; }
flat() { awk -v k="$1:" '$1 == k {gsub(/[a-z0-9_]+=/, ""); print $4 " / " $5 " ms"}' "$flog"; }
writes() {
        local sum=0 t v
        for t in manifest index configmap status configbundle event; do
                v=$(metric "ballast_operator_writes_total{target=\"$t\"}")
                sum=$((sum + ${v:-0}))
        done
        echo "$sum"
}

results=() notes=() port=0
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
for n in $sizes; do
        id="bench$n-$$"
        ns="b-$id"
        opns="bo-$id"
        create_bundles "$ns" "$opns" "$n"

        free_port port
        log="build/bench-operator-$n.log"
        loc="s3://$BALLAST_S3_BUCKET/$id?endpoint=$BALLAST_S3_ENDPOINT&region=$BALLAST_S3_REGION&path_style=true"
        cmd=(build/ballast-operator "--kubeconfig=$KUBECONFIG" "--namespace=$opns" "--watch-namespace=$ns"
                "--object-store=$loc" "--health-addr=127.0.0.1:$port" "--workers=$workers"
                "--kube-qps=$qps" "--kube-burst=$qps" "--resync-period=${resync}s" "--leader-elect=false"
                "--log-level=warning")
        : >"$log"
        load=$(cut -d' ' -f1 /proc/loadavg)
        s0=$(servers_cpu)
        x0=$(s3_cpu)
        m0=$(machine_cpu)
        start=$(date +%s.%N)
        start_operator
        anon_max=0
        wait_metric ballast_operator_revisions_total "$n"
        pub_secs=$(elapsed "$start")
        wait_metric 'ballast_operator_writes_total{target="status"}' "$n"
        secs=$(elapsed "$start")
        busy=$(busy_since "$m0")
        anon=$anon_max
        heap=$heap_at_max
        op_cpu=$(cpu_of "$pid")
        srv_cpu=$(awk -v a="$s0" -v b="$(servers_cpu)" 'BEGIN {printf "%.1f", b - a}')
        s3cpu=$(awk -v a="$x0" -v b="$(s3_cpu)" 'BEGIN {printf "%.1f", b - a}')
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        verbs=""
        for v in get watch post put patch delete; do
                verbs+="$v $(metric "ballast_operator_kube_requests_total{verb=\"$v\"}"), "
        done
        # The idle window starts once the queue is empty and nothing is in flight.
        for _ in $(seq 150); do
                [ "$(metric 'workqueue_depth{name="configbundle"}')$(metric ballast_operator_workqueue_inflight)$(metric ballast_operator_workqueue_parked)" = 000 ] && break
                sleep 0.2
        done
        w0=$(writes)
        r0=$(metric ballast_operator_reconciles_total)
        sleep $((resync * 3 / 2 + 5))
        w1=$(writes)
        r1=$(metric ballast_operator_reconciles_total)
        ready=$(kubectl -n "$ns" get cb --chunk-size=500 -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
        kill "$pid"
        wait "$pid" || true

        # A restart: re-read both indexes and every bundle, re-render, and
        # write nothing.
        start=$(date +%s.%N)
        start_operator
        anon_max=0
        wait_metric ballast_operator_reconciles_total "$n"
        rsecs=$(elapsed "$start")
        ranon=$anon_max
        rhwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        rw=$(writes)
        kill "$pid"
        wait "$pid" || true

        notes+=("N=$n: load average $load when the operator started (after the control plane had been quiet for 2 s); the machine's CPUs were $busy% busy until every status was written; at the peak anonymous RSS the malloc heap had ${heap:-?} bytes.")
        echo "bench-operator: N=$n: published ${pub_secs}s, statuses ${secs}s, ready $ready, peak RSS $(mib "$hwm") MiB (anon $(mib "$anon")), CPU operator ${op_cpu}s / API server + etcd ${srv_cpu}s / S3 server ${s3cpu}s, idle resync: $((r1 - r0)) reconciles, $((w1 - w0)) writes; restart: ${rsecs}s, $(mib "$rhwm") MiB, $rw writes" >&2
        drop_namespaces "$ns" "$opns"

        # The floor: the same bundles, fresh, and only their API writes.
        fns="f-$id"
        fopns="fo-$id"
        create_bundles "$fns" "$fopns" "$n"
        flog="build/bench-kube-floor-$n.log"
        fload=$(cut -d' ' -f1 /proc/loadavg)
        s0=$(servers_cpu)
        m0=$(machine_cpu)
        start=$(date +%s.%N)
        if ! "$floor" "--kubeconfig=$KUBECONFIG" "--namespace=$fopns" "--watch-namespace=$fns" \
                "--inflight=$floor_inflight" "--kube-qps=$qps" "--kube-burst=$qps" >"$flog" 2>&1; then
                cat "$flog" >&2
                echo "bench-operator: bench-kube-floor failed" >&2
                exit 1
        fi
        fsecs=$(elapsed "$start")
        fsrv_cpu=$(awk -v a="$s0" -v b="$(servers_cpu)" 'BEGIN {printf "%.1f", b - a}')
        fbusy=$(busy_since "$m0")
        fready=$(kubectl -n "$fns" get cb --chunk-size=500 -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
        echo "bench-operator: N=$n floor: ${fsecs}s ($(fval seconds)s sending), CPU API server + etcd ${fsrv_cpu}s, $(fval patches) PATCHes, $(fval failed) failed, ready $fready" >&2
        drop_namespaces "$fns" "$fopns"

        results+=("| $n | $pub_secs s | $secs s | $fsecs s / $fsrv_cpu s | $ready / $n | ${verbs%, } | $(mib "$hwm") MiB ($(mib "$anon") anon) | $op_cpu s / $srv_cpu s / $s3cpu s | $((r1 - r0)) reconciles, $((w1 - w0)) writes | $rsecs s, $(mib "$rhwm") MiB ($(mib "$ranon") anon), $rw writes |")
        notes+=("N=$n, floor: load average $fload at its start, the machine's CPUs $fbusy% busy while it ran; $(fval prepare_seconds) s to list and render the bundles and build the requests, then $(fval seconds) s sending $(fval patches) PATCHes, $floor_inflight at a time ($(fval failed) failed, $fready / $n Ready); latency p50 / p99: finalizer $(flat finalizer), ConfigMap $(flat configmap), status $(flat status); its own CPU $(fval cpu_seconds) s.")
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
section=$(mktemp)
{
        echo "<!-- bench-operator:begin -->"
        echo "## ballast-operator: publishing N ConfigBundles"
        echo
        echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, against the"
        echo "local control plane (kube-apiserver + etcd + versitygw on the same machine). The bundles (two"
        echo "files each, one a template) exist before the operator starts; the clocks run from its start"
        echo "until every bundle is published to both targets (manifest and index.json in the object store,"
        echo "its ConfigMap and the index ConfigMap: the operator's revisions counter reaches N), and until"
        echo "every status is written. The peak anonymous RSS (in brackets) is the operator's own memory,"
        echo "without the pages of the shared libraries it maps."
        echo "Workers $workers, client QPS $qps. \"CPU\" is the operator's CPU time beside that of the"
        echo "kube-apiserver and etcd, and of the S3 server, over the same interval. The idle resync re-checks every bundle"
        echo "($resync s period) and must write nothing. The restart is a second operator process over the"
        echo "published state: it reads both indexes and every bundle, re-renders all of them and must also"
        echo "write nothing; its time runs until it has reconciled every bundle. The API-server floor is"
        echo "\`bench-kube-floor\` on the same N bundles, fresh: only the three PATCHes per bundle the operator"
        echo "sends (finalizer, ConfigMap, status; same bodies and content types), $floor_inflight in flight on one"
        echo "HTTP/2 connection; its time runs from its start to its exit, and the CPU beside it is that of"
        echo "the kube-apiserver and etcd over the same interval."
        echo
        echo "| bundles | published to both targets | every status written | API-server floor: time / API server + etcd CPU | Ready | API requests by verb | peak RSS | CPU: operator / API server + etcd / S3 server | idle resync | restart: time, peak RSS, writes |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${results[@]}"
        echo
        printf -- '- %s\n' "${notes[@]}"
        echo
        echo "Reproduce: \`make bench-operator\` (sizes: \`BENCH_SIZES=\"$sizes\"\`, \`BENCH_WORKERS=$workers\`,"
        echo "\`BENCH_QPS=$qps\`; with \`BALLAST_CLUSTER_DIR\` it uses or starts the control plane there)."
        echo
        cat <<'EOF_READING'
**Reading the figures.** Publishing costs the API server three writes per new bundle (the
finalizer, the ConfigMap, the status) besides one object-store PUT of the manifest; the index
writes are coalesced (one starts at most 200 ms after the first change it carries, and waits twice
as long as the last one took). The CPU column shows where the time goes: the
operator needs a small fraction of what the kube-apiserver and etcd spend serving its writes on the
same two cores, so the time to publish is bounded by the API server's write throughput, not by the
operator. Memory: the watch caches keep each ConfigBundle as deflated JSON text and each bundle
ConfigMap as a summary with `sha256:` digests instead of the manifest (see "Compact stores" in
docs/kube-client.md); both indexes share one text per entry; every per-bundle map is a `strmap`
(~35 bytes an entry); `index.json` is produced piece by piece as it is hashed and sent, and read
back entry by entry; reconciles waiting for an index write hold neither the manifest nor the spec
and take a worker again for their status write. Peak RSS includes the shared libraries' pages (about 11 MiB
of an idle operator's 13.1 MiB, since expat replaced libxml2, ICU and libstdc++); the anonymous
figure is the rest. `ballast_operator_heap_bytes` splits the heap into what is in use and what
malloc holds free.

**Operator against the floor.** The floor (`tests/bench/bench-kube-floor.c`) is the fastest writer
of the same API work: it lists the bundles, builds each one's three requests with the operator's
own functions (`controller_finalizer_patch()`, `publish_build_configmap()`, `status_build()`), and
sends them in the order a reconcile needs, a bundle after another in each of as many lanes as the
operator can have requests in flight, over the same kube client — no watches, no object store, no
index ConfigMap, no Events. Its time is what the API server on this machine needs for those writes;
the operator's time above it is the operator's own cost: its start-up (watches, reading both
indexes), the object store (whose server, like the operator, takes CPU from the same two cores),
the coalesced index writes its status writes wait for, and any moment it leaves the API server idle
(the notes say how busy the machine's CPUs were in each run). The two CPU figures say whether the
difference is work or waiting: API server + etcd CPU per bundle close to the floor's with a longer
time means the server waited; more CPU per bundle means the operator asked for more (the index
ConfigMap, Events, its watches).
EOF_READING
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
