#!/usr/bin/env bash
# Prepare this machine for the test suites, idempotently (fast when everything is there):
#   1. apt packages (only when one is missing: one `apt-get update`, then one install);
#   2. .venv from /usr/bin/python3 with requirements-dev.txt (re-installed when it changes),
#      plus the pkgsign service package (editable) once it exists;
#   3. the pip bootstrap stand-in that ansible-test needs without internet (it fetches
#      get-pip.py from the internet otherwise).
# Usage: scripts/bootstrap.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv
say() { echo "bootstrap: $*"; }

# --- 1. system packages -------------------------------------------------------------------
APT_PACKAGES=(
    git make                                   # the harness itself
    gnupg gpg-agent rpm                        # real GnuPG and rpmbuild/rpmsign/rpmkeys in tests
    sqv                                        # Sequoia's verifier (rpm-sequoia's and dnf5's policy)
    dnf createrepo-c                           # dnf installs from repositories signed through the service
    sq sq-keyring-linter                       # Sequoia's inspector and SHA-1 self-signature linter
    shellcheck                                 # ansible-test sanity checks our shell scripts
    python3-venv python3-flask python3-jsonschema   # .venv; Flask and jsonschema as the hosts have them
    podman runc fuse-overlayfs slirp4netns uidmap debootstrap   # molecule on podman
    # Container name resolution (the lab's client reaches pkgsign-signer by name): podman's
    # netavark backend with aardvark-dns. Both are only *recommended* by Debian's podman, so
    # --no-install-recommends below would leave them out and podman falls back to CNI,
    # whose networks have no DNS. scripts/podman-env.sh selects the backend. netavark sets up
    # each network with the iptables command (without it: "Error: netavark: No such file or
    # directory", and the containers get no network); Debian's netavark does not depend on it.
    netavark aardvark-dns iptables
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' ||
        missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing apt packages: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        "${missing[@]}"
else
    say "apt packages present"
fi

# --- 2. virtualenv --------------------------------------------------------------------------
# pip's configuration on these machines lists local indexes and link directories that may
# not exist; hide only those machine-specific warnings so real errors stay visible.
PIP_NOISE='is ignored: it is neither a file nor a directory|Skipping link: not a file|Looking in (links|indexes):'
pip_quiet() {
    local status=0
    "$VENV/bin/pip" "$@" 2>&1 | { grep -v -E "$PIP_NOISE" || true; } || status=${PIPESTATUS[0]}
    return "$status"
}

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV from /usr/bin/python3"
    /usr/bin/python3 -m venv "$VENV"
fi

# Re-install when the requirements (or the service package's metadata) change.
SERVICE_DIR=files/pkgsign
service_meta=""
for f in "$SERVICE_DIR/pyproject.toml" "$SERVICE_DIR/setup.cfg" "$SERVICE_DIR/setup.py"; do
    [ -f "$f" ] && service_meta="$service_meta $f"
done
# shellcheck disable=SC2086  # word splitting of the file list is intended
wanted_stamp="$(cat requirements-dev.txt $service_meta | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.pkgsign-requirements.sha256"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted_stamp" ]; then
    say "installing requirements-dev.txt into $VENV (a few minutes on a fresh machine)"
    pip_quiet install --quiet --upgrade pip
    pip_quiet install --quiet -r requirements-dev.txt
    installed=yes
    if [ -n "$service_meta" ]; then
        say "installing $SERVICE_DIR (editable, no extra dependencies)"
        # A broken service package must not stop the other suites: its own tests will fail.
        # Built with the venv's setuptools (Debian 12's 66.1), as the roles build it on the hosts
        # (--no-build-isolation): one setuptools for the pyproject metadata, no newer one
        # fetched that warns about what 66.1 requires (the license as a table).
        pip_quiet install --quiet --no-deps --no-build-isolation -e "$SERVICE_DIR" ||
            { installed=no; say "WARNING: $SERVICE_DIR did not install; retried next time"; }
    fi
    [ "$installed" = no ] || echo "$wanted_stamp" >"$STAMP"
    say "$VENV ready: $(PYTHONWARNINGS=ignore "$VENV/bin/ansible" --version | sed -n 1p)"
else
    say "$VENV up to date"
fi

# --- 3. ansible-test's pip bootstrap, offline -------------------------------------------------
# ansible-test creates each sanity venv without pip and then downloads get-pip; with no
# internet we put a stand-in at the cache path it checks first. It runs ensurepip in a
# subprocess (in-process ensurepip sets PIP_CONFIG_FILE=/dev/null, which would hide the
# machine's pip configuration) and then upgrades pip to the version asked for.
GET_PIP="$HOME/.ansible/test/cache/get_pip_24_2.py"
if ! cmp -s scripts/get_pip_standin.py "$GET_PIP"; then
    say "writing ansible-test pip bootstrap stand-in $GET_PIP"
    mkdir -p "$(dirname "$GET_PIP")"
    cp scripts/get_pip_standin.py "$GET_PIP"
else
    say "ansible-test pip bootstrap stand-in present"
fi
