# shellcheck shell=sh
# Source this file (". scripts/podman-env.sh") before running podman, molecule or the lab
# playbooks on these machines. It writes a containers.conf with the settings the VM needs
# and exports CONTAINERS_CONF so that every podman call made by molecule and Ansible's
# podman connection sees them:
#   - ulimits: without them crun/runc fail with "setrlimit RLIMIT_NOFILE: Operation not permitted";
#   - runc:    crun refuses cgroups in hybrid mode;
#   - netavark: containers resolve each other by name only with netavark + aardvark-dns
#     (podman keeps the DNS-less CNI backend once it has run with it unless told).
PKGSIGN_CONTAINERS_CONF="${PKGSIGN_CONTAINERS_CONF:-${XDG_RUNTIME_DIR:-/tmp}/pkgsign-containers.conf}"
if ! grep -qs '^network_backend = "netavark"' "$PKGSIGN_CONTAINERS_CONF"; then
    cat >"$PKGSIGN_CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONF
fi
CONTAINERS_CONF="$PKGSIGN_CONTAINERS_CONF"
export CONTAINERS_CONF

# Callers hold /tmp/pkgsign-podman.lock with flock(1), whose lock descriptor every child
# inherits. podman starts daemons that outlive the run (aardvark-dns for the networks'
# name resolution, conmon): one that inherits the descriptor keeps the lock after the run
# ended, and every later `flock /tmp/pkgsign-podman.lock ...` waits forever. Close such a
# descriptor in this shell (the flock process itself keeps holding the lock).
for pkgsign_fd in "/proc/$$/fd/"*; do
    if [ "$(readlink "$pkgsign_fd" 2>/dev/null)" = /tmp/pkgsign-podman.lock ]; then
        pkgsign_fd="${pkgsign_fd##*/}"
        case "$pkgsign_fd" in
            [3-9]) eval "exec $pkgsign_fd<&-" ;;
        esac
    fi
done
unset pkgsign_fd
