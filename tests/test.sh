#!/usr/bin/env bash
# make test: the one test command. Installs what is missing, builds, starts
# the local control plane, runs unit and integration tests (then again under
# AddressSanitizer + UBSan) and the kind suite, and tears the control plane
# down even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc 2>/dev/null || echo 2)

start=$SECONDS
step() { printf '\n==== [%dm%02ds] %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

step "dependencies"
bash .ci/install-deps.sh

step "build"
make -j"$jobs" all tests-build
make -j"$jobs" SANITIZER=address,undefined tests-build

step "local control plane"
cleanup() {
        local rc=$?
        step "teardown"
        bash tests/cluster/cluster.sh down || true
        exit $rc
}
trap cleanup EXIT INT TERM
bash tests/cluster/cluster.sh up
# shellcheck disable=SC1091
source "${BALLAST_CLUSTER_DIR:-$top/build/cluster}/env"

total_pass=0
total_fail=0
run() {
        local label=$1
        shift
        local log
        log=$(mktemp)
        set +e
        "$@" 2>&1 | tee "$log"
        local rc=${PIPESTATUS[0]}
        set -e
        local line
        line=$(grep -E '^[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1 || true)
        rm -f "$log"
        if [ -n "$line" ]; then
                local p f
                p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
                f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
                total_pass=$((total_pass + p))
                total_fail=$((total_fail + f))
        fi
        if [ "$rc" -ne 0 ]; then
                echo "make test: $label failed" >&2
                if [ -z "$line" ]; then
                        total_fail=$((total_fail + 1))
                fi
                failed_suites+=("$label")
        fi
        return 0
}
failed_suites=()

step "lint (clang-format, layering, shellcheck)"
run lint make --no-print-directory lint
step "unit tests"
run unit make --no-print-directory check
step "integration tests"
run integration make --no-print-directory check-integration
step "Helm chart"
run helm-test make --no-print-directory helm-test
step "end to end (the chart installed for real, operator and agents as processes)"
run e2e make --no-print-directory e2e
step "container images and their smoke tests"
run images-smoke make --no-print-directory images-smoke
step "end to end on a kind cluster (the daemons as pods on real kubelets)"
run kind-e2e make --no-print-directory kind-e2e

step "unit + integration tests under AddressSanitizer + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run asan-unit make --no-print-directory SANITIZER=address,undefined check
run asan-integration make --no-print-directory SANITIZER=address,undefined check-integration

step "done"
if [ ${#failed_suites[@]} -gt 0 ]; then
        echo "make test: FAILED: ${failed_suites[*]}"
        echo "total: $total_pass passed, $total_fail failed"
        exit 1
fi
echo "total: $total_pass passed, $total_fail failed"
