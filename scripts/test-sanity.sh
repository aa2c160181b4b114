#!/usr/bin/env bash
# Suite "sanity": `ansible-test sanity` over the collection, with no ignore file.
# ansible-test insists on running inside a physical .../ansible_collections/pkgsign/signer
# directory (a symlink is resolved away), so we refresh a copy of the files git would ship
# (tracked + untracked-not-ignored) and run there. Every sanity test becomes one JUnit case in
# results/sanity/. The first run builds ansible-test's venvs (about 100 s), later ones ~15 s.
# Usage: scripts/test-sanity.sh [extra ansible-test sanity options, e.g. --test pep8]
set -euo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT"

COPY="$WORK_DIR/sanity/ansible_collections/pkgsign/signer"
OUT="$RESULTS_DIR/sanity"
mkdir -p "$OUT"

echo "sanity: copying the collection to $COPY"
rm -rf "$COPY"
mkdir -p "$COPY"
# -P keeps symlinks as symlinks (files/pkgsign/src/pkgsign/_gnupg.py), as in the repository.
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do
        [ -e "$path" ] || [ -L "$path" ] && printf '%s\0' "$path"
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
