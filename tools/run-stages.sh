#!/usr/bin/env bash
# Run Makefile targets one after the other, then print how long each took and whether it
# passed. Targets before `--` are prerequisites: the first one that fails stops the run.
# Targets after it all run, even when an earlier one failed. Exits 1 if any failed.
#
# pytest's own summary line (from .cache/pytest.log) is printed again as the very last
# line, so that it closes the output of `make test` / .ci/run, after the count of Citus
# tests that ran or were skipped (tests/citus_summary.py).
#
# Usage: tools/run-stages.sh [PREREQUISITE... --] TARGET...
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAKE_CMD="${MAKE:-make}"

names=()
results=()
times=()
failed=0
required=0
[[ " $* " == *" -- "* ]] && required=1

summary() {
    echo
    echo "======== summary ========"
    for i in "${!names[@]}"; do
        printf '%-10s %-7s %4ds\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
    done
}

for stage in "$@"; do
    if [[ "$stage" == -- ]]; then
        required=0
        continue
    fi
    echo
    echo "======== make $stage ========"
    start=$SECONDS
    if "$MAKE_CMD" -C "$ROOT" --no-print-directory "$stage"; then
        results+=(ok)
    else
        results+=(FAILED)
        failed=1
    fi
    names+=("$stage")
    times+=($((SECONDS - start)))
    if ((failed && required)); then
        summary
        echo "make $stage failed: stopping" >&2
        exit 1
    fi
done

summary

log="$ROOT/.cache/pytest.log"
if [[ " $* " == *" pytest "* && -f "$log" ]]; then
    # e.g. "=========== 120 passed, 2 skipped in 81.23s (0:01:21) ==========="
    line="$(grep -E '^=+ .*(passed|failed|error|skipped|deselected|no tests ran).* in [0-9.]+s' "$log" | tail -1 || true)"
    citus="$(grep -E '^citus tests: ' "$log" | tail -1 || true)"
    if [[ -n "$line" ]]; then
        echo "pytest result:"
        [[ -n "$citus" ]] && echo "$citus"
        echo "$line"
    fi
fi

exit "$failed"
