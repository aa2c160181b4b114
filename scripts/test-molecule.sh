#!/usr/bin/env bash
# Suite "molecule": `molecule test` for every scenario in molecule/ (or the one named), after
# the container name-resolution preflight's own test (results/molecule/name-resolution.xml).
# Per scenario, results/molecule/ gets
#   <scenario>-testinfra.xml   the verifier's tests (pytest's JUnit, via PYTEST_ADDOPTS)
#   <scenario>.xml             one case "converge + idempotence": passed when molecule succeeded,
#                              or when it reached the verifier (which failed on its own count)
#   <scenario>.log             the full molecule output.
# Usage: scripts/test-molecule.sh [SCENARIO]   (or SCENARIO=name in the environment)
set -uo pipefail
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT" || exit 1

OUT="$RESULTS_DIR/molecule"
mkdir -p "$OUT"

wanted="${1:-${SCENARIO:-}}"
if [ -n "$wanted" ]; then
    scenarios=("$wanted")
    [ -f "molecule/$wanted/molecule.yml" ] || { echo "molecule: no scenario molecule/$wanted" >&2; exit 2; }
else
    scenarios=()
    for file in molecule/*/molecule.yml; do
        [ -f "$file" ] && scenarios+=("$(basename "$(dirname "$file")")")
    done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
    echo "molecule: no scenarios yet (molecule/*/molecule.yml)"
    exit 0
fi

# Podman settings this VM needs (CONTAINERS_CONF) and the local systemd image.
# shellcheck source=/dev/null
[ -f scripts/podman-env.sh ] && . scripts/podman-env.sh
if [ -x scripts/build-image.sh ]; then
    scripts/build-image.sh || { echo "molecule: image build failed" >&2; exit 1; }
fi
# In CI the machine is ours: remove containers left by a killed run.
if [ "${CI:-}" = "true" ]; then
    podman rm -f --filter label=owner=molecule >/dev/null 2>&1 || true
fi

venv_on_path
collection_link
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR"
# molecule's prerun installs the collection under ANSIBLE_HOME (default ~/.ansible): keep it in
# the checkout's git-ignored .ansible/ instead of the user's home.
export ANSIBLE_HOME="$COLLECTION_ROOT/.ansible"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

overall=0
# The name-resolution preflight (scripts/check-container-dns.sh) that the lab and the scenarios
# run: it must fail within seconds on a network without DNS and pass on one with it.
echo "molecule: name-resolution preflight on networks with and without DNS (tests/containers)"
"$VENV_BIN/python" -m pytest tests/containers -q -p no:cacheprovider --junitxml="$OUT/name-resolution.xml" ||
    overall=1
for scenario in "${scenarios[@]}"; do
    echo "molecule: [$scenario] molecule test -s $scenario (log: results/molecule/$scenario.log)"
    junit="$OUT/$scenario-testinfra.xml"
    status=0
    PYTEST_ADDOPTS="--junitxml=$junit ${PYTEST_ADDOPTS:-}" \
        molecule test -s "$scenario" 2>&1 | tee "$OUT/$scenario.log" || status=${PIPESTATUS[0]}
    converged=$status
    # Reaching the verifier means converge and idempotence passed; its own failures are
    # already counted in the testinfra JUnit file.
    if [ "$status" -ne 0 ] && [ -f "$junit" ] && grep -q '<failure\|<error' "$junit"; then
        converged=0
    fi
    "$VENV_BIN/python" scripts/summarize.py record molecule "$scenario" "$converged" "$OUT/$scenario.log"
    echo "molecule: [$scenario] exit status $status"
    [ "$status" -eq 0 ] || overall=1
done
rm -f "$PACKAGE_ARCHIVE"  # packed by the signer role on this controller
exit "$overall"
