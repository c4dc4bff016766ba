#!/usr/bin/env bash
# Smoke test of the built images (tests/images/build-images.sh): each binary
# runs and reports the repository's version, and each daemon starts the way
# the Helm chart runs it (read-only root file system, no capabilities, no
# privilege escalation) with no API server reachable:
#
#   agent     as root with no capabilities, on a cache and target root that
#             are host directories (as the chart's hostPaths), a file://
#             object store and a kubeconfig naming a dead API server:
#             1. from an empty cache and store it comes up and answers
#                /healthz and /readyz with 200, and exits 0 on SIGTERM;
#             2. it applies a bundle published into the store;
#             3. with the store emptied too, a restarted agent is ready from
#                its cache alone and the node's files are intact.
#   operator  as uid 65532, same dead API server: /healthz must answer 200
#             (it never depends on the API server), /readyz must not (its
#             caches can't sync), and it exits 0 on SIGTERM.
#
# Usage: tests/images/smoke.sh
# Environment: BALLAST_OPERATOR_IMAGE, BALLAST_AGENT_IMAGE (default
# ballast-operator:VERSION, ballast-agent:VERSION), DOCKER (default docker),
# SMOKE_TIMEOUT (seconds to wait for start-up, default 30).
#
# Ends with "images-smoke: N passed, N failed"; exits non-zero on a failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
docker=${DOCKER:-docker}
version=$(tr -d '[:space:]' <"$repo/VERSION")
operator_image=${BALLAST_OPERATOR_IMAGE:-ballast-operator:$version}
agent_image=${BALLAST_AGENT_IMAGE:-ballast-agent:$version}
wait_s=${SMOKE_TIMEOUT:-30}
operator_port=8081
agent_port=8082

passed=0
failed=0
containers=()
work=$(mktemp -d "${TMPDIR:-/tmp}/ballast-smoke.XXXXXX")

ok() {
        passed=$((passed + 1))
        printf 'ok      %s\n' "$*"
}
fail() {
        failed=$((failed + 1))
        printf 'FAILED  %s\n' "$*"
}
# check DESCRIPTION COMMAND...: one assertion.
check() {
        local what=$1
        shift
        if "$@"; then ok "$what"; else fail "$what"; fi
}

cleanup() {
        local c
        for c in "${containers[@]}"; do
                "$docker" rm -f "$c" >/dev/null 2>&1
        done
        # The agent (root in its container) wrote into the bind mounts.
        "$docker" run --rm -v "$work:/w" --entrypoint /bin/rm "$agent_image" -rf /w/agent >/dev/null 2>&1
        rm -rf "$work"
}
trap cleanup EXIT

summary() {
        echo
        echo "images-smoke: $passed passed, $failed failed"
        [ "$failed" -eq 0 ]
}

command -v "$docker" >/dev/null || {
        fail "docker is installed"
        summary
        exit
}
for img in "$operator_image" "$agent_image"; do
        if ! "$docker" image inspect "$img" >/dev/null 2>&1; then
                fail "image $img exists (build it with 'make images')"
                summary
                exit
        fi
done

# HTTP status code of GET PATH on 127.0.0.1:PORT inside container C, using
# only bash (the images have no curl); "000" when nothing answers.
http_status() {
        local c=$1 port=$2 path=$3 line
        # shellcheck disable=SC2016 # expanded in the container
        line=$("$docker" exec "$c" timeout 5 bash -c '
                exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
                printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3
                head -n1 <&3' "$port" "$path" 2>/dev/null)
        if [[ $line =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]]; then
                echo "${BASH_REMATCH[1]}"
        else
                echo 000
        fi
}

# Waits until GET PATH answers WANT (or the container dies or time runs out).
wait_status() {
        local c=$1 port=$2 path=$3 want=$4 i got=000
        for ((i = 0; i < wait_s * 2; i++)); do
                got=$(http_status "$c" "$port" "$path")
                [ "$got" = "$want" ] && return 0
                [ "$("$docker" inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] || break
                sleep 0.5
        done
        echo "        GET $path: $got, want $want"
        return 1
}

running() { [ "$("$docker" inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# SIGTERM (what the kubelet sends) must end the daemon cleanly, well within
# the grace period: exit status 0, not the SIGKILL's 137.
stops_cleanly() {
        local c=$1 rc
        "$docker" stop -t 15 "$c" >/dev/null 2>&1
        rc=$("$docker" inspect -f '{{.State.ExitCode}}' "$c")
        [ "$rc" = 0 ] || echo "        exit status $rc"
        [ "$rc" = 0 ]
}

show_logs() {
        echo "---- logs of $1"
        "$docker" logs "$1" 2>&1 | tail -n 30 | sed 's/^/        /'
}

# A kubeconfig whose API server is dead (a closed port on the container's own
# loopback): start-up must not depend on reaching it.
cat >"$work/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
  - name: dead
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
users:
  - name: smoke
    user:
      token: smoke-test-token
contexts:
  - name: dead
    context: {cluster: dead, user: smoke}
current-context: dead
EOF
chmod 0644 "$work/kubeconfig"

# The settings the chart gives every container.
restricted=(--read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs "/tmp:rw,noexec,nosuid,size=16m")

echo "== images-smoke: $operator_image, $agent_image"

# ---------------------------------------------------------------- --version

for pair in "ballast-operator:$operator_image" "ballast-agent:$agent_image"; do
        bin=${pair%%:*}
        img=${pair#*:}
        out=$("$docker" run --rm "${restricted[@]}" "$img" --version 2>&1)
        check "$bin --version prints '$bin $version' (got '$out')" [ "$out" = "$bin $version" ]
done

uid=$("$docker" image inspect -f '{{.Config.User}}' "$operator_image")
check "operator image runs as a non-root user (USER $uid)" [ "${uid%%:*}" = 65532 ]

# ---------------------------------------------------------------- agent

mkdir -p "$work/agent/cache" "$work/agent/root" "$work/agent/store" "$work/agent/config"
cat >"$work/agent/config/config.yaml" <<'EOF'
reloadActions:
  noop:
    command: [/bin/true]
    timeout: 5s
EOF

# run_agent NAME [ARGS...]: the agent as the chart runs it, on this test's
# cache, root and file:// object store (host directories, like hostPaths).
run_agent() {
        local name=$1
        shift
        containers+=("$name")
        "$docker" run -d --name "$name" "${restricted[@]}" \
                -e NODE_NAME=smoke-node -e BALLAST_NAMESPACE=ballast-system \
                -v "$work/kubeconfig:/etc/ballast-smoke/kubeconfig:ro" \
                -v "$work/agent/config:/etc/ballast-agent:ro" \
                -v "$work/agent/cache:/var/lib/ballast" \
                -v "$work/agent/root:/etc/ballast" \
                -v "$work/agent/store:/objstore" \
                "$agent_image" \
                --kubeconfig=/etc/ballast-smoke/kubeconfig --node-name=smoke-node \
                --namespace=ballast-system --object-store=file:///objstore \
                --cache-dir=/var/lib/ballast --root-dir=/etc/ballast \
                --config=/etc/ballast-agent/config.yaml --health-addr=:$agent_port "$@" >/dev/null 2>"$work/err"
}

# Publishes one bundle into the file:// store as the operator would: the
# canonical manifest under its digest, then index.json.
publish_probe_bundle() {
        local sha manifest digest key
        sha=$(printf 'smoke\n' | sha256sum | cut -d' ' -f1)
        manifest='{"apiVersion":"ballast.dev/v1alpha1","bundle":{"name":"probe","namespace":"smoke","uid":"smoke-uid-1"},"files":[{"content":"smoke\n","mode":420,"path":"smoke.conf","sha256":"'"$sha"'","size":6}],"kind":"BundleManifest","revision":1}'
        digest=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
        key=bundles/smoke/probe/$digest.json
        mkdir -p "$work/agent/store/bundles/smoke/probe"
        printf '%s' "$manifest" >"$work/agent/store/$key"
        printf '%s' '{"apiVersion":"ballast.dev/v1alpha1","bundles":{"smoke/probe":{"configMap":"cb-smoke.probe","digest":"sha256:'"$digest"'","key":"'"$key"'","name":"probe","namespace":"smoke","revision":1,"uid":"smoke-uid-1"}},"kind":"BundleIndex"}' \
                >"$work/agent/store/index.json"
}

probe_file=$work/agent/root/smoke/probe/smoke.conf
probe_applied() { [ "$(cat "$probe_file" 2>/dev/null)" = smoke ]; }
wait_applied() {
        local i
        for ((i = 0; i < wait_s * 2; i++)); do
                probe_applied && return 0
                sleep 0.5
        done
        echo "        $probe_file never appeared"
        return 1
}

# 1. First start: empty cache, empty store, dead API server.
f0=$failed
c=ballast-smoke-agent-$$
if run_agent "$c"; then
        check "agent answers /healthz 200 with no API server" wait_status "$c" $agent_port /healthz 200
        check "agent answers /readyz 200 from an empty cache" wait_status "$c" $agent_port /readyz 200
        sleep 2
        check "agent is still running" running "$c"
        check "agent exits 0 on SIGTERM" stops_cleanly "$c"
else
        fail "agent container starts: $(cat "$work/err")"
fi
[ "$failed" -eq "$f0" ] || show_logs "$c"

# 2. A bundle in the object store is applied: files written as root with no
# capabilities on a read-only root file system, as in the chart.
f0=$failed
publish_probe_bundle
c=ballast-smoke-agent-apply-$$
if run_agent "$c" --poll-interval=1s; then
        check "agent applies a bundle from the object store (no API server, no capabilities)" wait_applied
        check "agent exits 0 on SIGTERM after applying" stops_cleanly "$c"
else
        fail "agent container starts again: $(cat "$work/err")"
fi
[ "$failed" -eq "$f0" ] || show_logs "$c"

# 3. Both sources gone (dead API server, object store emptied): a restarted
# agent comes back from its cache alone, with the node's files intact.
f0=$failed
rm -rf "${work:?}/agent/store/"*
c=ballast-smoke-agent-cache-$$
if run_agent "$c" --poll-interval=1s; then
        check "agent restarted with no API server and an empty object store is ready" \
                wait_status "$c" $agent_port /readyz 200
        sleep 3
        check "the node's files are intact after that restart" probe_applied
        check "agent is still running from its cache" running "$c"
        check "agent exits 0 on SIGTERM (cache only)" stops_cleanly "$c"
else
        fail "agent container starts from its cache: $(cat "$work/err")"
fi
[ "$failed" -eq "$f0" ] || show_logs "$c"

# ---------------------------------------------------------------- operator

mkdir -p "$work/operator/store"
chmod 0777 "$work/operator/store"
f0=$failed
c=ballast-smoke-operator-$$
containers+=("$c")
if "$docker" run -d --name "$c" "${restricted[@]}" \
        -e POD_NAMESPACE=ballast-system -e POD_NAME=smoke-operator \
        -v "$work/kubeconfig:/etc/ballast-smoke/kubeconfig:ro" \
        -v "$work/operator/store:/objstore" \
        "$operator_image" \
        --kubeconfig=/etc/ballast-smoke/kubeconfig --object-store=file:///objstore \
        --health-addr=:$operator_port >/dev/null 2>"$work/err"; then
        check "operator answers /healthz 200 with no API server" wait_status "$c" $operator_port /healthz 200
        code=$(http_status "$c" $operator_port /readyz)
        check "operator /readyz is not 200 without an API server (got $code)" \
                [ "$code" != 200 -a "$code" != 000 ]
        code=$(http_status "$c" $operator_port /metrics)
        check "operator answers /metrics (got $code)" [ "$code" = 200 ]
        check "operator is still running" running "$c"
        check "operator exits 0 on SIGTERM" stops_cleanly "$c"
else
        fail "operator container starts: $(cat "$work/err")"
fi
[ "$failed" -eq "$f0" ] || show_logs "$c"

summary
