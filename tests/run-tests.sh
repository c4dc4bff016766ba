#!/usr/bin/env bash
# Runs cmocka test programs one after another, prints each program's summary
# and a closing "N passed, N failed" line over all test cases. Exits non-zero
# if any program failed.
set -uo pipefail
kind=$1
shift
passed=0
failed=0
failed_progs=()
for t in "$@"; do
        name=${t##*/}
        echo "== $kind: $name"
        out=$(mktemp)
        "$t" 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        if [ "$rc" -ne 0 ]; then
                failed_progs+=("$name")
                [ -z "$f" ] && failed=$((failed + 1))
        fi
        rm -f "$out"
done
echo
echo "$kind: $passed passed, $failed failed"
if [ ${#failed_progs[@]} -gt 0 ]; then
        echo "$kind: failing programs: ${failed_progs[*]}" >&2
        exit 1
fi
