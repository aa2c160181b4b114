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
# Where the signer role packs files/pkgsign on the controller: one archive per checkout, as the
# pkgsign role's default pkgsign_archive_local names it (sha256 of the package directory's real path).
PACKAGE_ARCHIVE="${TMPDIR:-/tmp}/pkgsign-package-$(printf '%s' "$(realpath "$COLLECTION_ROOT/files/pkgsign")" |
    sha256sum | cut -c1-10).tar.gz"

# The venv's tools first on PATH, once (ansible-lint warns "PATH altered" when its venv is not).
venv_on_path() {
    case ":$PATH:" in
        *":$VENV_BIN:"*) ;;
        *) PATH="$VENV_BIN:$PATH" ;;
    esac
    export PATH
}

collection_link() {
    mkdir -p "$COLLECTIONS_DIR/ansible_collections/pkgsign"
    ln -sfn "$COLLECTION_ROOT" "$COLLECTIONS_DIR/ansible_collections/pkgsign/signer"
}
# A collections directory holding only this collection and the dependencies galaxy.yml declares
# (linked from the ansible bundle in .venv): with ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false, a
# module from an undeclared collection is not found, as on a host that installed ours from Galaxy.
declared_collections_link() {
    local root="$WORK_DIR/declared-collections/ansible_collections" name
    DECLARED_COLLECTIONS=()
    rm -rf "$WORK_DIR/declared-collections"
    mkdir -p "$root/pkgsign"
    ln -sfn "$COLLECTION_ROOT" "$root/pkgsign/signer"
    for name in $("$VENV_BIN/python" -c '
import sys, yaml
print("\n".join(yaml.safe_load(open(sys.argv[1])).get("dependencies") or {}))' "$COLLECTION_ROOT/galaxy.yml"); do
        local bundled
        bundled="$("$VENV_BIN/python" -c '
import sys, ansible_collections, os
print(os.path.join(list(ansible_collections.__path__)[0], *sys.argv[1].split(".")))' "$name")"
        [ -d "$bundled" ] || { echo "declared collection $name is not in the ansible bundle ($bundled)" >&2; return 1; }
        mkdir -p "$root/${name%%.*}"
        ln -sfn "$bundled" "$root/${name%%.*}/${name#*.}"
        DECLARED_COLLECTIONS+=("$name")
    done
    DECLARED_COLLECTIONS_DIR="$WORK_DIR/declared-collections"
}
