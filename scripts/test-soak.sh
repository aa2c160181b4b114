#!/usr/bin/env bash
# Suite "soak": the reliability suite with PKGSIGN_SOAK=1: more kill -9 rounds, keys,
# fuzzing examples, and the service suite re-run under a command-line sampler (test_secrets).
# Usage: scripts/test-soak.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/pytest-suite.sh"
export PKGSIGN_SOAK=1
pytest_suite soak tests/reliability "$@"
