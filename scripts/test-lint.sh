#!/usr/bin/env bash
# Suite "lint": ansible-lint over the whole collection (configuration in .ansible-lint),
# offline. Counted as one test; its findings are in results/lint/ansible-lint.txt.
# Usage: scripts/test-lint.sh [extra ansible-lint options]
set -euo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT"

OUT="$RESULTS_DIR/lint"
mkdir -p "$OUT"
venv_on_path
# FQCN names resolve to this checkout and to the collections galaxy.yml declares, nothing else:
# an undeclared dependency fails here instead of on a user's host.
declared_collections_link
export ANSIBLE_COLLECTIONS_PATH="$DECLARED_COLLECTIONS_DIR"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
echo "lint: collections: pkgsign.signer and the declared ${DECLARED_COLLECTIONS[*]}"

echo "lint: ansible-lint (profile and exclusions from .ansible-lint)"
status=0
"$VENV_BIN/ansible-lint" --nocolor "$@" 2>&1 | tee "$OUT/ansible-lint.txt" || status=${PIPESTATUS[0]}

# ansible-lint only warns when a module's collection cannot be loaded: that is a failure here.
if grep -E "Error loading plugin|couldn't resolve module/action" "$OUT/ansible-lint.txt" >&2; then
    echo "lint: a module above comes from a collection galaxy.yml does not declare" | tee -a "$OUT/ansible-lint.txt" >&2
    status=1
fi
"$VENV_BIN/python" scripts/summarize.py record lint ansible-lint "$status" "$OUT/ansible-lint.txt"
exit "$status"
