#!/usr/bin/env bash
# make demo-down: stops what `make demo` left running and the control plane.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
dir="$top/build/demo"
if [ -e "$dir/pids" ]; then
        while read -r p; do kill -CONT -- "$p" 2>/dev/null; kill -- "$p" 2>/dev/null; done <"$dir/pids"
        rm -f "$dir/pids"
fi
bash tests/cluster/cluster.sh down
echo "demo: stopped; logs and node directories remain in $dir"
