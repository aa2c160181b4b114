#!/usr/bin/env bash
# Suite "lint": ansible-lint over the whole collection (configuration in .ansible-lint),
# offline. Counted as one test; its findings are in results/lint/ansible-lint.txt.
# Usage: scripts/test-lint.sh [extra ansible-lint options]
set -euo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT"

OUT="$RESULTS_DIR/lint"
mkdir -p "$OUT"
collection_link
venv_on_path
# FQCN names (pkgsign.signer.*) resolve through the link to this checkout.
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR"

echo "lint: ansible-lint (profile and exclusions from .ansible-lint)"
status=0
"$VENV_BIN/ansible-lint" --nocolor "$@" 2>&1 | tee "$OUT/ansible-lint.txt" || status=${PIPESTATUS[0]}

"$VENV_BIN/python" scripts/summarize.py record lint ansible-lint "$status" "$OUT/ansible-lint.txt"
exit "$status"
