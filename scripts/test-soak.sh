#!/usr/bin/env bash
# Suite "soak": tests/reliability with PKGSIGN_SOAK=1 (more kill -9 rounds, more concurrent
# keys, more fuzzing examples than the default run in "units"). JUnit XML in results/soak/.
# Usage: scripts/test-soak.sh [extra pytest options]
set -uo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT" || exit 1

OUT="$RESULTS_DIR/soak"
mkdir -p "$OUT"
collection_link
export PYTHONPATH="$COLLECTIONS_DIR${PYTHONPATH:+:$PYTHONPATH}"
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK_DIR/hypothesis"
export PKGSIGN_SOAK=1
echo "soak: pytest tests/reliability (PKGSIGN_SOAK=1)"
exec "$VENV_BIN/python" -m pytest tests/reliability -rfE --durations=10 --junitxml="$OUT/reliability.xml" "$@"
