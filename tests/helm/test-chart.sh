#!/usr/bin/env bash
# Tests the Helm chart (helm/ballast), the CRD copies and the CRD reference:
#
#   - Chart.yaml's version and appVersion are the VERSION file's;
#   - helm/ballast/crds/ and crds/ hold the same files, byte for byte;
#   - docs/crd-reference.md is what tests/helm/gen-crd-reference.py generates;
#   - `helm lint --strict` is clean, with the defaults and each
#     helm/ballast/ci/*-values.yaml (with Helm 4 too when $BALLAST_BINDIR or
#     PATH has helm4);
#   - `helm template` of each ci values file passes tests/helm/check-chart.py
#     (RBAC exactly as documented, restricted Pod Security fields, probes,
#     downward API, host paths, the agents' config equal to the values, the
#     object-store string and credentials, the helm test hook, and the
#     optional ServiceMonitor, PodMonitor, PrometheusRule — its alerts those
#     of docs/operations.md's table — and Grafana dashboard, whose queries
#     name only metrics the daemons export), and renders the same twice;
#   - the built daemons (build/ballast-operator, build/ballast-agent) start
#     with the arguments and config the chart renders, and the helm test
#     Pod's `ballast-operator check-release` accepts its arguments;
#   - values.schema.json and the templates refuse bad values (each case must
#     fail, and for the right reason);
#   - with an API server (KUBECONFIG, or build/cluster/env when that cluster
#     is up): Pod Security admission's verdict on the rendered pods, then a
#     real `helm install`, `helm upgrade` and `helm uninstall` in a scratch
#     namespace, with `kubectl auth can-i` checks of both ServiceAccounts and
#     of the helm test's, and check-release run as the test's ServiceAccount
#     on the installed objects (the cluster has no kubelet, so not through
#     `helm test`), and install/upgrade/uninstall with Helm 4 when it is there.
#     BALLAST_CHART_LIVE=0 skips this, =1 makes a missing API server a failure.
#
# Ends with "helm-test: N passed, N failed"; exits non-zero on a failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
chart=$repo/helm/ballast
cd "$repo" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/ballast-helm-test.XXXXXX")
live_ns=""
live_release=""

passed=0
failed=0
ok() {
        passed=$((passed + 1))
        printf 'ok      %s\n' "$*"
}
fail() {
        failed=$((failed + 1))
        printf 'FAILED  %s\n' "$*"
}
check() {
        local what=$1
        shift
        if "$@"; then ok "$what"; else fail "$what"; fi
}
indent() { sed 's/^/        /'; }
quiet() { "$@" >/dev/null 2>&1; }
summary() {
        echo
        echo "helm-test: $passed passed, $failed failed"
        [ "$failed" -eq 0 ]
}
cleanup() {
        if [ -n "$live_release" ]; then
                "$helm" uninstall "$live_release" -n "$live_ns" --wait=false >/dev/null 2>&1
        fi
        if [ -n "$live_ns" ]; then
                kubectl delete namespace "$live_ns" --wait=false >/dev/null 2>&1
        fi
        rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- tools

bindir=${BALLAST_BINDIR:-}
if [ -z "$bindir" ]; then
        bindir=$(bash tests/cluster/build-servers.sh --print-bindir 2>/dev/null | tail -n1) || bindir=""
fi
helm=""
for h in "${bindir:+$bindir/helm}" "$(command -v helm 2>/dev/null)"; do
        if [ -n "$h" ] && [ -x "$h" ]; then
                helm=$h
                break
        fi
done
helm4=""
for h in "${bindir:+$bindir/helm4}" "$(command -v helm4 2>/dev/null)"; do
        if [ -n "$h" ] && [ -x "$h" ]; then
                helm4=$h
                break
        fi
done
if [ -z "$helm" ]; then
        fail "helm is available (run tests/cluster/build-servers.sh, or set BALLAST_BINDIR)"
        summary
        exit
fi

# A python3 with PyYAML: the one on PATH, Debian's, or Debian's after
# installing python3-yaml.
python=""
for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then
                python=$p
                break
        fi
done
if [ -z "$python" ]; then
        echo "helm-test: installing python3-yaml" >&2
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        { "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null 2>&1 ||
                { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null 2>&1; }; } &&
                /usr/bin/python3 -c 'import yaml' 2>/dev/null && python=/usr/bin/python3
fi
if [ -z "$python" ]; then
        fail "python3 with PyYAML is available (apt-get install python3-yaml)"
        summary
        exit
fi

echo "== helm-test: $("$helm" version --short)${helm4:+ and $("$helm4" version --short)}, $("$python" --version)"

# ---------------------------------------------------------------- static checks

version=$(tr -d '[:space:]' <VERSION)
chart_version=$(sed -nE 's/^version:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' "$chart/Chart.yaml")
app_version=$(sed -nE 's/^appVersion:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' "$chart/Chart.yaml")
check "Chart.yaml version ($chart_version) and appVersion ($app_version) are VERSION ($version)" \
        [ "$chart_version" = "$version" -a "$app_version" = "$version" ]

same_crds() {
        local a b rc=0
        a=$(cd crds && find . -type f | sort)
        b=$(cd "$chart/crds" && find . -type f | sort)
        if [ "$a" != "$b" ]; then
                diff <(echo "$a") <(echo "$b") | indent
                return 1
        fi
        while read -r f; do
                cmp "crds/$f" "$chart/crds/$f" | indent || rc=1
        done <<<"$a"
        return $rc
}
check "helm/ballast/crds/ and crds/ are identical (copy crds/* there after changing the CRD)" same_crds

reference_current() {
        "$python" tests/helm/gen-crd-reference.py --check 2>&1 | tail -n 30 | indent
        return "${PIPESTATUS[0]}"
}
check "docs/crd-reference.md is up to date (make crd-reference)" reference_current

lint() { # helm-binary [values-file]
        local out
        if ! out=$("$1" lint --strict "$chart" ${2:+-f "$2"} 2>&1); then
                echo "$out" | indent
                return 1
        fi
}
check "helm lint --strict" lint "$helm"
for f in "$chart"/ci/*-values.yaml; do
        check "helm lint --strict -f ci/${f##*/}" lint "$helm" "$f"
done
if [ -n "$helm4" ]; then
        check "helm4 lint --strict" lint "$helm4"
        check "helm4 lint --strict -f ci/tricky-values.yaml" lint "$helm4" "$chart/ci/tricky-values.yaml"
else
        echo "skip    Helm 4 lint (no helm4 in \$BALLAST_BINDIR or PATH)"
fi

# ---------------------------------------------------------------- rendering

ns=ballast-system
declare -A location=(
        [default]=""
        [namespaced]="s3://ballast/cluster-b?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true"
        [tricky]="s3://ballast.configs-1/clusters/prod-a?endpoint=http://objects.storage.svc.cluster.local:9000/base&region=eu-west-3&path_style=false&create_mode=head"
        [monitoring]=""
)

render() { # helm-binary out-file values-file...
        local bin=$1 out=$2
        shift 2
        local args=()
        for v in "$@"; do args+=(-f "$v"); done
        "$bin" template ballast "$chart" -n "$ns" "${args[@]}" >"$out" 2>"$out.err"
}

check_rendered() { # rendered values-file location
        local out rc
        out=$("$python" tests/helm/check-chart.py "$1" "$2" "$ns" "--location=$3" 2>&1)
        rc=$?
        # Count each of its assertions.
        local p f
        p=$(sed -nE 's/^check-chart: ([0-9]+) passed, ([0-9]+) failed$/\1/p' <<<"$out")
        f=$(sed -nE 's/^check-chart: ([0-9]+) passed, ([0-9]+) failed$/\2/p' <<<"$out")
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        grep -v '^ok \|^check-chart:' <<<"$out" | indent
        echo "        check-chart: ${p:-0} passed, ${f:-0} failed"
        [ "$rc" -eq 0 ] || { [ -n "$f" ] || failed=$((failed + 1)); }
        return "$rc"
}

for name in default namespaced tricky monitoring; do
        f=$chart/ci/$name-values.yaml
        if render "$helm" "$work/$name.yaml" "$f"; then
                ok "helm template -f ci/$name-values.yaml"
                echo "== check-chart: ci/$name-values.yaml"
                check_rendered "$work/$name.yaml" "$f" "${location[$name]}"
                render "$helm" "$work/$name.again.yaml" "$f"
                check "ci/$name-values.yaml renders the same twice" cmp -s "$work/$name.yaml" "$work/$name.again.yaml"
        else
                fail "helm template -f ci/$name-values.yaml: $(head -c 400 "$work/$name.yaml.err")"
        fi
        if [ -n "$helm4" ]; then
                if render "$helm4" "$work/$name.h4.yaml" "$f"; then
                        echo "== check-chart (helm4): ci/$name-values.yaml"
                        check_rendered "$work/$name.h4.yaml" "$f" "${location[$name]}"
                else
                        fail "helm4 template -f ci/$name-values.yaml: $(head -c 400 "$work/$name.h4.yaml.err")"
                fi
        fi
done

# The daemons accept the arguments (and the agents the config file) the chart
# gives them: each built binary is started with them, a dead API server and
# temporary directories, and must still be running and answering /healthz a
# few seconds later rather than exit on a bad flag.
cat >"$work/dead-kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: dead, context: {cluster: dead, user: u}}]
current-context: dead
EOF
# shellcheck source=tests/lib/ports.sh
source "$here/../lib/ports.sh"
starts_with_chart_args() { # binary rendered kind
        local bin=$1 rendered=$2 kind=$3 port log pid args=() a rc=0 i
        free_port port
        mapfile -t args < <("$python" tests/helm/check-chart.py --print-args "$rendered" "$kind" \
                POD_NAMESPACE=$ns POD_NAME=chart-test-0 NODE_NAME=chart-test-node BALLAST_NAMESPACE=$ns)
        for i in "${!args[@]}"; do
                a=${args[$i]}
                case $a in
                --health-addr=*) args[i]=--health-addr=127.0.0.1:$port ;;
                --config=*)
                        # The chart's config with this test's directories.
                        mkdir -p "$work/agent-$port/root" "$work/agent-$port/cache"
                        "$python" - "$rendered" "$work/agent-$port" >"$work/agent-$port/config.yaml" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}):
        cfg = yaml.safe_load(d["data"]["config.yaml"])
        cfg["rootDir"], cfg["cacheDir"] = sys.argv[2] + "/root", sys.argv[2] + "/cache"
        print(yaml.safe_dump(cfg))
PY
                        args[i]=--config=$work/agent-$port/config.yaml
                        ;;
                esac
        done
        log=$work/run-$port.log
        # AWS_* as the pods get them from the object-store Secret.
        AWS_ACCESS_KEY_ID=chart-test AWS_SECRET_ACCESS_KEY=chart-test \
                "$bin" --kubeconfig="$work/dead-kubeconfig" "${args[@]}" >"$log" 2>&1 &
        pid=$!
        for i in 1 2 3 4 5 6 7 8 9 10; do
                sleep 0.5
                kill -0 "$pid" 2>/dev/null || break
                curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        done
        if ! kill -0 "$pid" 2>/dev/null; then
                rc=1
        elif ! curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
                echo "        /healthz on 127.0.0.1:$port does not answer 200"
                rc=1
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [ "$rc" -eq 0 ] || tail -n 5 "$log" | indent
        return "$rc"
}
if [ -x build/ballast-operator ]; then
        for name in default namespaced tricky; do
                [ -s "$work/$name.yaml" ] || continue
                check "build/ballast-operator starts with the chart's args (ci/$name-values.yaml)" \
                        starts_with_chart_args build/ballast-operator "$work/$name.yaml" Deployment
        done
else
        echo "skip    the operator with the chart's args (no build/ballast-operator: run make)"
fi
if [ -x build/ballast-agent ] && build/ballast-agent --help 2>&1 | grep -q -- '--config'; then
        for name in default namespaced tricky; do
                [ -s "$work/$name.yaml" ] || continue
                check "build/ballast-agent starts with the chart's args and config (ci/$name-values.yaml)" \
                        starts_with_chart_args build/ballast-agent "$work/$name.yaml" DaemonSet
        done
else
        echo "skip    the agent with the chart's args (no build/ballast-agent with --config yet)"
fi

# The helm test Pod's check-release takes the arguments the chart gives it:
# against a dead API server it must fail as "not healthy" (1) and name both
# objects, not as a usage error (2).
check_release_args() { # rendered
        local args=() out rc
        mapfile -t args < <("$python" tests/helm/check-chart.py --print-args "$1" Pod)
        out=$(build/ballast-operator "${args[@]}" --kubeconfig="$work/dead-kubeconfig" --timeout=0s 2>&1)
        rc=$?
        if [ "$rc" -ne 1 ] || ! grep -q "^Deployment $ns/.*: cannot read it: " <<<"$out" ||
                ! grep -q "^DaemonSet $ns/.*: cannot read it: " <<<"$out"; then
                echo "$out" | indent
                echo "        exit status $rc"
                return 1
        fi
}
if [ -x build/ballast-operator ] && build/ballast-operator check-release --help >/dev/null 2>&1; then
        for name in default tricky; do
                [ -s "$work/$name.yaml" ] || continue
                check "build/ballast-operator check-release takes the helm test Pod's args (ci/$name-values.yaml)" \
                        check_release_args "$work/$name.yaml"
        done
else
        echo "skip    check-release with the helm test Pod's args (no build/ballast-operator with check-release: run make)"
fi

# The agents' config checksum rolls the DaemonSet only when the config changes.
agent_checksum() {
        "$python" -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "DaemonSet":
        print(d["spec"]["template"]["metadata"]["annotations"]["checksum/config"])' "$1"
}
printf 'operator:\n  logLevel: debug\n' >"$work/v-oplog.yaml"
printf 'agent:\n  reloadActions:\n    noop:\n      command: [/bin/true]\n' >"$work/v-action.yaml"
render "$helm" "$work/oplog.yaml" "$work/v-oplog.yaml"
render "$helm" "$work/action.yaml" "$work/v-action.yaml"
base=$(agent_checksum "$work/default.yaml")
check "an operator-only change leaves the agents' pod template alone" [ "$(agent_checksum "$work/oplog.yaml")" = "$base" ]
check "a new reload action changes the agents' pod template (rolls them)" [ "$(agent_checksum "$work/action.yaml")" != "$base" ]

# ---------------------------------------------------------------- bad values

# Each case: description | values YAML | text the error must contain.
bad_cases=(
        "replicas of the wrong type|operator:\n  replicas: two|/operator/replicas"
        "an unknown top-level key|replica: 2|replica"
        "an unknown operator key|operator:\n  replica: 2|replica"
        "a bad log level|agent:\n  logLevel: verbose|/agent/logLevel"
        "a bad pull policy|operator:\n  image:\n    pullPolicy: Sometimes|pullPolicy"
        "a bad bucket name|objectStore:\n  bucket: My_Bucket|/objectStore/bucket"
        "a non-http endpoint|objectStore:\n  bucket: bkt\n  endpoint: ftp://host|/objectStore/endpoint"
        "a relative cacheDir|agent:\n  cacheDir: var/lib/ballast|/agent/cacheDir"
        "a cacheDir with ..|agent:\n  cacheDir: /var/../etc|/agent/cacheDir"
        "a bad duration|agent:\n  pollInterval: 30 seconds|/agent/pollInterval"
        "a bad resume window|agent:\n  apiResumeWindow: 3 minutes|/agent/apiResumeWindow"
        "a fractional duration|operator:\n  resyncPeriod: 1.5m|/operator/resyncPeriod"
        "cacheKeep out of range|agent:\n  cacheKeep: 0|/agent/cacheKeep"
        "an upper-case action name|agent:\n  reloadActions:\n    Nginx:\n      systemdUnit: nginx.service|Nginx"
        "an action with command and systemdUnit|agent:\n  reloadActions:\n    a:\n      command: [/bin/true]\n      systemdUnit: a.service|/agent/reloadActions/a"
        "an action with neither|agent:\n  reloadActions:\n    a:\n      timeout: 5s|/agent/reloadActions/a"
        "a relative command|agent:\n  reloadActions:\n    a:\n      command: [true]|/agent/reloadActions/a"
        "{staged} in a command|agent:\n  reloadActions:\n    a:\n      command: [/bin/echo, \"{staged}\"]|/agent/reloadActions/a"
        "a unit name without a unit type|agent:\n  reloadActions:\n    a:\n      systemdUnit: nginx|/agent/reloadActions/a"
        "an unknown action key|agent:\n  reloadActions:\n    a:\n      command: [/bin/true]\n      shell: true|shell"
        "a fractional timeout|agent:\n  reloadActions:\n    a:\n      command: [/bin/true]\n      timeout: 0.5|/agent/reloadActions/a/timeout"
        "a string where an object goes|agent:\n  reloadActions: nginx|/agent/reloadActions"
        "a bad updateStrategy type|agent:\n  updateStrategy:\n    type: Recreate|/agent/updateStrategy/type"
        "rootDir inside cacheDir|agent:\n  cacheDir: /var/lib/ballast\n  rootDir: /var/lib/ballast/live|must not overlap"
        "rootDir equal to cacheDir|agent:\n  cacheDir: /srv/b/\n  rootDir: /srv/b|must not overlap"
        "two replicas without leader election|operator:\n  leaderElection:\n    enabled: false|leaderElection"
        "both bucket and location|objectStore:\n  bucket: bkt\n  location: s3://bkt2|not both"
        "an endpoint without a bucket|objectStore:\n  endpoint: http://h:9000|bucket is empty"
        "existingSecret and inline keys|objectStore:\n  bucket: bkt\n  credentials:\n    existingSecret: s\n    accessKeyId: a\n    secretAccessKey: b|not both"
        "half the inline keys|objectStore:\n  bucket: bkt\n  credentials:\n    accessKeyId: a|must both be set"
        "an S3 bucket without credentials|objectStore:\n  bucket: bkt|needs S3 credentials"
        "agents without credentials|objectStore:\n  location: s3://bkt\noperator:\n  extraEnv:\n    - name: AWS_ACCESS_KEY_ID\n      value: x|the agent needs S3 credentials"
        "credentials without an object store|objectStore:\n  credentials:\n    accessKeyId: a\n    secretAccessKey: b|no object store"
        "a bad digest|agent:\n  image:\n    digest: sha256:xyz|/agent/image/digest"
        "a bad helm test timeout|helmTest:\n  timeout: 1 minute|/helmTest/timeout"
        "an unknown monitoring key|monitoring:\n  serviceMonitors:\n    enabled: true|serviceMonitors"
        "a bad scrape interval|monitoring:\n  podMonitor:\n    interval: 30|/monitoring/podMonitor/interval"
        "a fractional freshness target|monitoring:\n  prometheusRule:\n    configAgeSeconds: 1.5|/monitoring/prometheusRule/configAgeSeconds"
        "a bad sidecar label key|monitoring:\n  grafanaDashboard:\n    label: \"grafana dashboard\"|/monitoring/grafanaDashboard/label"
        "a bad sidecar label value|monitoring:\n  grafanaDashboard:\n    labelValue: \"yes please\"|/monitoring/grafanaDashboard/labelValue"
        "extra labels that are not strings|monitoring:\n  prometheusRule:\n    labels:\n      release: 1|/monitoring/prometheusRule/labels"
)
i=0
for case in "${bad_cases[@]}"; do
        i=$((i + 1))
        desc=${case%%|*}
        rest=${case#*|}
        want=${rest##*|}
        body=${rest%|*}
        printf '%b\n' "$body" >"$work/bad-$i.yaml"
        if "$helm" template ballast "$chart" -n "$ns" -f "$work/bad-$i.yaml" >/dev/null 2>"$work/bad-$i.err"; then
                fail "rejects $desc (it rendered)"
        elif grep -qF -- "$want" "$work/bad-$i.err"; then
                ok "rejects $desc"
        else
                fail "rejects $desc for the right reason (no '$want' in: $(tr '\n' ' ' <"$work/bad-$i.err" | head -c 300))"
        fi
done

# ---------------------------------------------------------------- live

live=${BALLAST_CHART_LIVE:-auto}
if [ "$live" != 0 ] && [ -z "${KUBECONFIG:-}" ] && [ -f build/cluster/env ] &&
        bash tests/cluster/cluster.sh status 2>/dev/null | grep -q 'apiserver.*running'; then
        # shellcheck disable=SC1091
        source build/cluster/env
fi
api_up() { [ -n "${KUBECONFIG:-}" ] && command -v kubectl >/dev/null && kubectl get --raw=/readyz --request-timeout=5s >/dev/null 2>&1; }

if [ "$live" = 0 ]; then
        echo "skip    live install (BALLAST_CHART_LIVE=0)"
elif ! api_up; then
        if [ "$live" = 1 ]; then
                fail "an API server is reachable for the live install (KUBECONFIG=${KUBECONFIG:-unset})"
        else
                echo "skip    live install (no API server; start one with 'make cluster-up')"
        fi
else
        echo "== live: $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
        live_ns=ballast-chart-test-$$
        rel=bt$$
        live_release=$rel
        kubectl create namespace "$live_ns" >/dev/null
        # Pod Security admission in warn mode judges workloads' pod templates.
        kubectl label namespace "$live_ns" pod-security.kubernetes.io/warn=restricted \
                pod-security.kubernetes.io/warn-version=latest >/dev/null

        # Schedule nothing onto the cluster's (kubelet-less) nodes, so no pod
        # outlives the test in Terminating.
        cat >"$work/live.yaml" <<EOF
objectStore:
  bucket: ballast-chart-test
  prefix: t$$
  endpoint: http://127.0.0.1:9
  credentials:
    accessKeyId: test
    secretAccessKey: test
operator:
  nodeSelector:
    ballast.dev/chart-test: none
agent:
  nodeSelector:
    ballast.dev/chart-test: none
  reloadActions:
    noop:
      command: [/bin/true]
EOF
        "$helm" template "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" >"$work/live-rendered.yaml"
        "$python" - "$work/live-rendered.yaml" "$work" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for kind in ("Deployment", "DaemonSet"):
    with open(f"{sys.argv[2]}/live-{kind}.yaml", "w") as f:
        yaml.safe_dump([d for d in docs if d["kind"] == kind][0], f)
EOF
        only_hostpath_and_root() {
                [[ $1 == *hostPath* ]] &&
                        ! grep -qiE 'privileged|allowPrivilegeEscalation|unrestricted capabilities|seccompProfile|host namespaces' <<<"$1"
        }
        agent_config_has() {
                kubectl -n "$live_ns" get cm "$rel-ballast-agent-config" -o jsonpath='{.data.config\.yaml}' | grep -qF -- "$1"
        }
        revisions_are() { [ "$("$helm" history "$rel" -n "$live_ns" -o json | grep -o '"revision"' | wc -l)" = "$1" ]; }
        none_left() { [ -z "$(kubectl "$@" -o name 2>/dev/null)" ]; }
        explain_has() { # the API server publishes a new CRD's OpenAPI some time after Established
                local i
                for i in $(seq 30); do
                        kubectl explain "$1" 2>/dev/null | grep -q -- "$2" && return 0
                        sleep 1
                done
                return 1
        }
        pss() { # kind -> the API server's PodSecurity warnings for it
                kubectl apply --dry-run=server -n "$live_ns" -f "$work/live-$1.yaml" 2>&1 >/dev/null | grep -i 'podsecurity' || true
        }
        w=$(pss Deployment)
        check "API server: the operator Deployment meets PodSecurity 'restricted'${w:+ ($w)}" [ -z "$w" ]
        w=$(pss DaemonSet)
        check "API server: the agent DaemonSet is flagged only for its hostPath volumes and uid 0 (${w:-no warning})" \
                only_hostpath_and_root "$w"

        crd_before=$(kubectl get crd configbundles.ballast.dev -o name 2>/dev/null)
        if out=$("$helm" install "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" 2>&1); then
                ok "helm install"
        else
                fail "helm install: $out"
        fi
        check "NOTES.txt rendered on install" grep -q "helm uninstall" <<<"$out"
        check "the ConfigBundle CRD is installed" quiet kubectl get crd configbundles.ballast.dev
        kubectl wait --for=condition=Established crd/configbundles.ballast.dev --timeout=30s >/dev/null 2>&1
        check "kubectl explain configbundle.spec.files works" explain_has configbundle.spec.files path

        op=system:serviceaccount:$live_ns:$rel-ballast-operator
        ag=system:serviceaccount:$live_ns:$rel-ballast-agent
        can() { # yes|no user verb resource namespace|- name|- subresource|-
                local want=$1 user=$2 verb=$3 res=$4 n=${5#-} name=${6#-} sub=${7#-} got
                got=$(kubectl auth can-i --as="$user" "$verb" "$res${name:+/$name}" \
                        ${n:+-n "$n"} ${sub:+--subresource="$sub"} 2>/dev/null)
                [ "$got" = "$want" ]
        }
        cb=configbundles.ballast.dev
        lease=leases.coordination.k8s.io
        for t in \
                "yes $ag list nodes - - -" "yes $ag watch nodes - - -" "yes $ag get configmaps $live_ns - -" \
                "yes $ag watch configmaps $live_ns - -" "no $ag create configmaps $live_ns - -" \
                "no $ag get configmaps default - -" "no $ag get secrets $live_ns - -" "no $ag patch nodes - - -" \
                "no $ag list $cb default - -" "no $ag create events $live_ns - -" "no $ag create $lease $live_ns - -" \
                "yes $op watch $cb default - -" "yes $op patch $cb default - status" \
                "yes $op update $cb kube-system - finalizers" "no $op create $cb default - -" \
                "no $op delete $cb default - -" "yes $op create events default - -" \
                "yes $op patch configmaps $live_ns - -" "yes $op delete configmaps $live_ns - -" \
                "no $op get configmaps default - -" "yes $op create $lease $live_ns - -" \
                "yes $op update $lease $live_ns ballast-operator -" "no $op update $lease $live_ns other-lease -" \
                "no $op get secrets $live_ns - -" "no $op list nodes - - -"; do
                # shellcheck disable=SC2086 # split the case into its words
                set -- $t
                label="${2##*:} $3 $4"
                [ "$6" = - ] || label+="/$6"
                [ "$7" = - ] || label+=" ($7)"
                [ "$5" = - ] || label+=" in $5"
                check "can-i: $label: $1" can "$@"
        done

        # The helm test's identity, made from its hooks as `helm test` makes
        # it, may get the two objects and nothing else; check-release, run as
        # it, reads them. Without a kubelet the operator has no available
        # replica and the DaemonSet no node: both "not ready", exit 1. The
        # hooks go before the uninstall checks below.
        "$helm" template "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" \
                --show-only templates/tests/check-release-rbac.yaml >"$work/test-rbac.yaml"
        check "the helm test's ServiceAccount, Role and RoleBinding apply" \
                quiet kubectl -n "$live_ns" apply -f "$work/test-rbac.yaml"
        tsa=system:serviceaccount:$live_ns:$rel-ballast-test
        for t in \
                "yes $tsa get deployments.apps $live_ns $rel-ballast-operator -" \
                "yes $tsa get daemonsets.apps $live_ns $rel-ballast-agent -" \
                "no $tsa get deployments.apps $live_ns other -" "no $tsa list deployments.apps $live_ns - -" \
                "no $tsa watch daemonsets.apps $live_ns $rel-ballast-agent -" \
                "no $tsa get deployments.apps default $rel-ballast-operator -" \
                "no $tsa get pods $live_ns - -" "no $tsa get secrets $live_ns - -"; do
                # shellcheck disable=SC2086 # split the case into its words
                set -- $t
                label="helm test: $3 $4"
                [ "$6" = - ] || label+="/$6"
                check "can-i: $label in $5: $1" can "$@"
        done
        release_not_ready() { # kubeconfig
                local out rc
                out=$(build/ballast-operator check-release --kubeconfig="$1" --namespace="$live_ns" \
                        --deployment="$rel-ballast-operator" --daemonset="$rel-ballast-agent" --timeout=0s 2>&1)
                rc=$?
                echo "$out" | indent
                [ "$rc" -eq 1 ] &&
                        grep -q "^Deployment $live_ns/$rel-ballast-operator: not ready: " <<<"$out" &&
                        grep -q "^DaemonSet $live_ns/$rel-ballast-agent: not ready: " <<<"$out"
        }
        token=$(kubectl -n "$live_ns" create token "$rel-ballast-test" --duration=10m 2>/dev/null)
        kubectl config view --minify --flatten >"$work/helm-test.kubeconfig" &&
                KUBECONFIG=$work/helm-test.kubeconfig kubectl config set-credentials helm-test --token="$token" >/dev/null &&
                KUBECONFIG=$work/helm-test.kubeconfig kubectl config set-context --current --user=helm-test >/dev/null
        if [ -x build/ballast-operator ] && [ -n "$token" ]; then
                check "check-release as the helm test's ServiceAccount reads the release: not ready without a kubelet" \
                        release_not_ready "$work/helm-test.kubeconfig"
        else
                echo "skip    check-release on the live release (no build/ballast-operator, or no token)"
        fi
        quiet kubectl -n "$live_ns" delete -f "$work/test-rbac.yaml"

        # upgrade: a new reload action rolls the agents; CRDs untouched.
        ds=$rel-ballast-agent
        before=$(kubectl -n "$live_ns" get ds "$ds" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')
        if out=$("$helm" upgrade "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" \
                --set-json 'agent.reloadActions.nginx={"systemdUnit":"nginx.service"}' 2>&1); then
                ok "helm upgrade"
        else
                fail "helm upgrade: $out"
        fi
        after=$(kubectl -n "$live_ns" get ds "$ds" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')
        check "helm upgrade with a new reload action rolls the agents (pod template changed)" [ -n "$after" -a "$before" != "$after" ]
        check "the upgraded agent config has the new action" \
                agent_config_has nginx.service
        check "helm history shows 2 revisions" revisions_are 2

        # A ConfigBundle (no operator runs, so no finalizer is added) survives uninstall.
        cat >"$work/cb.yaml" <<'EOF'
apiVersion: ballast.dev/v1alpha1
kind: ConfigBundle
metadata:
  name: chart-test
spec:
  files:
    - path: a.conf
      content: "x\n"
EOF
        check "a ConfigBundle can be created" quiet kubectl -n "$live_ns" apply -f "$work/cb.yaml"

        if out=$("$helm" uninstall "$rel" -n "$live_ns" --wait 2>&1); then
                ok "helm uninstall"
                live_release=""
        else
                fail "helm uninstall: $out"
        fi
        check "uninstall removed the Deployment, DaemonSet, ServiceAccounts and agent config" \
                none_left -n "$live_ns" get deploy,ds,sa,cm,secret,role,rolebinding -l "app.kubernetes.io/instance=$rel"
        check "uninstall removed the cluster-wide RBAC" \
                none_left get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$rel"
        check "uninstall kept the ConfigBundle CRD" quiet kubectl get crd configbundles.ballast.dev
        check "uninstall kept the ConfigBundle" quiet kubectl -n "$live_ns" get configbundle chart-test
        [ -n "$crd_before" ] && echo "        (the CRD existed before the install: Helm left it as it was)"

        # The same with Helm 4.
        if [ -n "$helm4" ]; then
                rel=bt4x$$
                live_release=$rel
                if out=$("$helm4" install "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" 2>&1); then
                        ok "helm4 install"
                else
                        fail "helm4 install: $out"
                fi
                check "helm4 install created the operator and the agents" \
                        quiet kubectl -n "$live_ns" get deploy/"$rel-ballast-operator" ds/"$rel-ballast-agent"
                if out=$("$helm4" upgrade "$rel" "$chart" -n "$live_ns" -f "$work/live.yaml" --set agent.logLevel=debug 2>&1); then
                        ok "helm4 upgrade"
                else
                        fail "helm4 upgrade: $out"
                fi
                if out=$("$helm4" uninstall "$rel" -n "$live_ns" --wait 2>&1); then
                        ok "helm4 uninstall"
                        live_release=""
                else
                        fail "helm4 uninstall: $out"
                fi
                check "helm4 uninstall removed what the chart made" \
                        none_left -n "$live_ns" get deploy,ds,sa,cm,secret,role,rolebinding -l "app.kubernetes.io/instance=$rel"
                check "helm4 uninstall kept the ConfigBundle CRD" quiet kubectl get crd configbundles.ballast.dev
        fi
        kubectl delete namespace "$live_ns" --wait=false >/dev/null 2>&1
        live_ns=""
fi

summary
