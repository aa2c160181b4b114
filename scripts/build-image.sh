#!/bin/sh
# Build the local systemd image used by molecule and the lab (no registry is reachable here):
# a debootstrap'ed Debian 12 with systemd as PID 1. Skipped when the image already exists.
# Usage: scripts/build-image.sh [IMAGE]      (default localhost/debian12-systemd)
set -eu

IMAGE="${1:-localhost/debian12-systemd}"
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
. "$SCRIPT_DIR/podman-env.sh"

if podman image exists "$IMAGE"; then
    echo "build-image: $IMAGE already present, nothing to do"
    exit 0
fi

for tool in debootstrap podman; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-image: $tool is missing (apt-get install -y podman runc debootstrap)" >&2
        exit 1
    }
done

# Use the mirror apt already uses on this machine (the only one reachable).
MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS="$(mktemp -d /var/tmp/pkgsign-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT INT TERM

echo "build-image: [1/3] debootstrap bookworm from $MIRROR (about 80 s)"
START=$(date +%s)
# debootstrap is verbose; show one line per package stage instead of everything.
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,sudo,iproute2,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" 2>&1 |
    grep --line-buffered -E '^I: (Retrieving Release|Validating Packages|Extracting base-files|Installing core|Configuring required|Configuring the base|Base system)' |
    awk '{ print "build-image:   " $0; fflush() }'
[ -x "$ROOTFS/lib/systemd/systemd" ] || { echo "build-image: debootstrap failed" >&2; exit 1; }

echo "build-image: [2/3] trimming caches, apt sources, resolv.conf"
rm -f "$ROOTFS"/var/cache/apt/archives/*.deb
rm -rf "$ROOTFS"/var/lib/apt/lists/*
for sources in /etc/apt/sources.list.d/*.sources; do
    [ -e "$sources" ] && cp "$sources" "$ROOTFS/etc/apt/sources.list.d/"
done
: >"$ROOTFS/etc/apt/sources.list"
: >"$ROOTFS/etc/resolv.conf"

echo "build-image: [3/3] importing as $IMAGE"
tar -C "$ROOTFS" -c . | podman import --quiet \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'STOPSIGNAL SIGRTMIN+3' - "$IMAGE" >/dev/null
echo "build-image: $IMAGE built in $(( $(date +%s) - START )) s"
