#!/usr/bin/env bash
# Suite "units": pytest over
#   - tests/unit          the Ansible modules, imported as ansible_collections.pkgsign.signer
#                         through a symlink on PYTHONPATH (see collection-paths.sh);
#   - tests/e2e           the issue-2 runbook played through ansible-playbook, twice;
#   - files/pkgsign/tests the pkgsign service and client (installed editable in .venv);
#   - tests/reliability   fuzzing, concurrency, kill -9, secrets, access control, backup/restore
#                         (PKGSIGN_SOAK=1, set by `make soak`, runs their long variants).
# JUnit XML goes to results/units/. A test tree with no tests yet is not a failure.
# Usage: scripts/test-units.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT" || exit 1

OUT="$RESULTS_DIR/units"
mkdir -p "$OUT"
collection_link
export PYTHONPATH="$COLLECTIONS_DIR${PYTHONPATH:+:$PYTHONPATH}"
# Hypothesis keeps its example database out of the tree (and out of the sanity copy).
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK_DIR/hypothesis"

overall=0
run_pytest() {  # NAME DIRECTORY [extra pytest options]
    local name="$1" directory="$2"
    shift 2
    if [ ! -d "$directory" ]; then
        echo "units: $directory does not exist yet, no $name tests"
        return
    fi
    echo "units: pytest $directory"
    local status=0
    "$VENV_BIN/python" -m pytest "$directory" -rfE --durations=5 --junitxml="$OUT/$name.xml" "$@" || status=$?
    case "$status" in
        0) ;;
        5) echo "units: no $name tests collected yet" ;;  # pytest's "no tests" status
        *) overall=1 ;;
    esac
}

run_pytest modules tests/unit "$@"
run_pytest e2e tests/e2e "$@"
run_pytest service files/pkgsign/tests "$@"
run_pytest reliability tests/reliability "$@"
exit "$overall"
