#!/usr/bin/env bash
# Run test suites one after the other (each one even when an earlier one failed), then print a
# per-suite table and the closing line "N passed, N failed" (scripts/summarize.py).
# Exit status: 0 only when every suite passed.
# Usage: scripts/run-tests.sh SUITE [SUITE ...]     suites: units sanity lint molecule
set -uo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT" || exit 1

[ $# -gt 0 ] || { echo "usage: $0 SUITE [SUITE ...]" >&2; exit 2; }

suites=()
if ! scripts/bootstrap.sh; then
    # Without the tools nothing else can run: count the set-up itself as the failure.
    rm -rf "$RESULTS_DIR/bootstrap" && mkdir -p "$RESULTS_DIR/bootstrap"
    echo "exit=1 seconds=0" >"$RESULTS_DIR/bootstrap/exit-status"
    exec /usr/bin/python3 scripts/summarize.py report bootstrap
fi

for suite in "$@"; do
    script="scripts/test-$suite.sh"
    [ -x "$script" ] || { echo "run-tests: unknown suite '$suite'" >&2; exit 2; }
    suites+=("$suite")
    rm -rf "${RESULTS_DIR:?}/$suite"
    mkdir -p "$RESULTS_DIR/$suite"
    echo ""
    echo "=== $suite: $script ($(date +%H:%M:%S))"
    start=$(date +%s)
    status=0
    "$script" || status=$?
    seconds=$(($(date +%s) - start))
    echo "exit=$status seconds=$seconds" >"$RESULTS_DIR/$suite/exit-status"
    echo "=== $suite: exit status $status after $seconds s"
done

# What stays outside the checkout and results/ (both reused by the next run).
echo ""
echo "run-tests: left outside the checkout: $WORK_DIR (collection link, test scratch)" \
    "and ~/.ansible/test (ansible-test's venvs and offline pip stand-in)"
exec "$VENV_BIN/python" scripts/summarize.py report "${suites[@]}"
