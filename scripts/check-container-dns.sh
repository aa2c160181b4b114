#!/usr/bin/env bash
# Preflight of the lab (scripts/demo.sh) and of molecule (molecule/default/prepare.yml), run
# right after the containers start: every container resolves every other one by name
# (getent hosts), so that a machine without container DNS stops here within seconds instead of
# failing with "Name or service not known" many minutes later. The pairs are checked in
# parallel, each bounded by a timeout. Exit 0 silently; otherwise exit 1 with one line on
# standard error that says what is missing.
# Usage: scripts/check-container-dns.sh CONTAINER CONTAINER [CONTAINER ...]
# Call it with CONTAINERS_CONF set (scripts/podman-env.sh), as every podman call here.
set -uo pipefail

[ $# -ge 2 ] || { echo "usage: $0 CONTAINER CONTAINER [CONTAINER ...]" >&2; exit 2; }
LIMIT=${PKGSIGN_DNS_TIMEOUT:-4}   # seconds per lookup
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT

pairs=0
for from in "$@"; do
    for to in "$@"; do
        [ "$from" = "$to" ] && continue
        pairs=$((pairs + 1))
        # timeout inside the container bounds the lookup, the outer one a hanging podman exec.
        ( timeout $((LIMIT + 4)) podman exec "$from" timeout "$LIMIT" getent hosts "$to" >/dev/null 2>&1 ||
              echo "$from -> $to" >"$results/$pairs" ) &
    done
done
wait

failed="$(cat "$results"/* 2>/dev/null | paste -sd, - | sed 's/,/, /g')"
[ -z "$failed" ] && exit 0

# Say why when podman can tell: the network of the first container, and whether it has DNS.
network="$(podman inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$1" 2>/dev/null |
    awk '{ print $1 }')"
dns=""
if [ -n "$network" ]; then
    dns="$(podman network inspect -f '{{.DNSEnabled}}' "$network" 2>/dev/null)"
fi
backend="$(podman info -f '{{.Host.NetworkBackend}}' 2>/dev/null)"
detail="network ${network:-?} has dns_enabled=${dns:-?}, podman network backend ${backend:-?}"
echo "containers cannot resolve each other by name ($failed; $detail): install netavark and aardvark-dns" \
    "(scripts/bootstrap.sh), use scripts/podman-env.sh (network_backend = \"netavark\") and recreate the network" \
    "(make demo-clean, or podman network rm ${network:-NETWORK})" >&2
exit 1
