# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Source this file from the test scripts. It defines where the checkout is seen as the
# collection pkgsign.signer (Ansible imports it as ansible_collections.pkgsign.signer):
#   COLLECTION_ROOT   the checkout
#   COLLECTIONS_DIR   a directory holding ansible_collections/pkgsign/signer -> checkout
#                     (a symlink: enough for pytest imports and ansible-lint)
#   WORK_DIR          per-checkout scratch directory outside the tree
# and the function `collection_link` that creates the symlink.
COLLECTION_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One scratch directory per checkout, outside it so no tool walks into the link loop.
WORK_DIR="${TMPDIR:-/tmp}/pkgsign-signer-$(printf '%s' "$COLLECTION_ROOT" | sha256sum | cut -c1-10)"
COLLECTIONS_DIR="$WORK_DIR/collections"
RESULTS_DIR="$COLLECTION_ROOT/results"
VENV_BIN="$COLLECTION_ROOT/.venv/bin"

collection_link() {
    mkdir -p "$COLLECTIONS_DIR/ansible_collections/pkgsign"
    ln -sfn "$COLLECTION_ROOT" "$COLLECTIONS_DIR/ansible_collections/pkgsign/signer"
}
