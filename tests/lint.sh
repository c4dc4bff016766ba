#!/usr/bin/env bash
# make lint: formatting (the committed .clang-format), layering (lib/ never
# includes from operator/ or nodeagent/), and shellcheck on our scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
rc=0

mapfile -t cfiles < <(git ls-files '*.c' '*.h' 2>/dev/null || find lib operator nodeagent tests -name '*.[ch]')
if [ ${#cfiles[@]} -gt 0 ]; then
        if ! clang-format --dry-run --Werror "${cfiles[@]}" 2>/tmp/ballast-lint.$$; then
                echo "lint: these files need clang-format -i:" >&2
                grep -o '^[^:]*\.[ch]' /tmp/ballast-lint.$$ | sort -u >&2
                rc=1
        fi
        rm -f /tmp/ballast-lint.$$
fi

if grep -nE '#\s*include\s*[<"](\.\./)*(operator|nodeagent)/' lib/*.[ch] 2>/dev/null; then
        echo "lint: lib/ must not include from operator/ or nodeagent/" >&2
        rc=1
fi
if grep -nE '#\s*include\s*"[^"]*(render|publish|leader|cache|apply|fetch|engine|controller)\.h"' lib/*.[ch] 2>/dev/null; then
        echo "lint: lib/ includes a daemon header" >&2
        rc=1
fi

mapfile -t shfiles < <(git ls-files '*.sh' .ci/run kind-e2e/docker-shim kind-e2e/node/entrypoint-pre 2>/dev/null)
if [ ${#shfiles[@]} -gt 0 ]; then
        shellcheck -x "${shfiles[@]}" || rc=1
fi

[ $rc -eq 0 ] && echo "lint: clean"
exit $rc
