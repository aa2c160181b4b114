#!/usr/bin/env bash
# Suite "sanity": `ansible-test sanity` over the collection, with no ignore file.
# ansible-test insists on running inside a physical .../ansible_collections/pkgsign/signer
# directory (a symlink is resolved away), so we make a copy of the files git would ship
# (tracked + untracked-not-ignored) and run there. Every sanity test becomes one JUnit case in
# results/sanity/. The first run builds ansible-test's venvs (about 100 s), later ones ~15 s.
# Usage: scripts/test-sanity.sh [extra ansible-test sanity options, e.g. --test pep8]
set -euo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT"

# A fresh copy per run, so that two runs at the same time do not share one (ansible-test keeps
# its venvs in ~/.ansible/test/venv, so nothing is lost by removing the copy afterwards).
mkdir -p "$WORK_DIR"
RUN_DIR="$(mktemp -d "$WORK_DIR/sanity.XXXXXX")"
trap 'rm -rf "$RUN_DIR"' EXIT
COPY="$RUN_DIR/ansible_collections/pkgsign/signer"
OUT="$RESULTS_DIR/sanity"
mkdir -p "$OUT" "$COPY"

echo "sanity: copying the collection to $COPY"
# -P keeps symlinks as symlinks (files/pkgsign/src/pkgsign/_gnupg/*.py), as in the repository.
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do
        if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi  # skip deleted files
    done |
    xargs -0 --no-run-if-empty cp -P --parents -t "$COPY"

echo "sanity: ansible-test sanity --venv --python 3.11 $*"
cd "$COPY"
status=0
"$VENV_BIN/ansible-test" sanity --venv --python 3.11 --junit --color no "$@" 2>&1 |
    tee "$OUT/ansible-test.log" || status=${PIPESTATUS[0]}

# ansible-test writes one JUnit file per sanity test under tests/output/junit.
cp tests/output/junit/*.xml "$OUT"/ 2>/dev/null || true
exit "$status"
