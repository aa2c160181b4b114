# shellcheck shell=bash
# Sourced by the pytest suites (scripts/test-{units,service,e2e,reliability,soak}.sh):
#   pytest_suite SUITE DIRECTORY [extra pytest options]
# runs pytest over DIRECTORY with the collection importable (ansible_collections.pkgsign.signer
# through the link of collection-paths.sh), JUnit XML in results/SUITE/, and the no_leftovers
# plugin (tests/pytest_plugins): a suite that leaves a process running fails. A tree with no
# tests yet is not a failure. Exits with pytest's status. tests/pytest_plugins also holds
# pkgsign_testlib, the service's test-instance helpers the suites import by name.
. "$(dirname "${BASH_SOURCE[0]}")/collection-paths.sh"

pytest_suite() {
    local suite="$1" directory="$2"
    shift 2
    cd "$COLLECTION_ROOT" || exit 1
    local out="$RESULTS_DIR/$suite"
    mkdir -p "$out"
    collection_link
    export PYTHONPATH="$COLLECTIONS_DIR:$COLLECTION_ROOT/tests/pytest_plugins${PYTHONPATH:+:$PYTHONPATH}"
    # Hypothesis keeps its example database out of the tree (and out of the sanity copy).
    export HYPOTHESIS_STORAGE_DIRECTORY="$WORK_DIR/hypothesis"
    echo "$suite: pytest $directory${PKGSIGN_SOAK:+ (PKGSIGN_SOAK=$PKGSIGN_SOAK)}"
    local status=0
    "$VENV_BIN/python" -m pytest "$directory" -p no_leftovers -rfE --durations=10 \
        --junitxml="$out/$suite.xml" "$@" || status=$?
    if [ "$status" -eq 5 ]; then  # pytest's "no tests collected"
        echo "$suite: no tests collected yet"
        status=0
    fi
    exit "$status"
}
