#!/usr/bin/env bash
# Suite "reliability": fuzzing, concurrency, kill -9, secrets, access control, backup/restore
# (tests/reliability), short variants. `make soak` runs the long ones.
# Usage: scripts/test-reliability.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/pytest-suite.sh"
pytest_suite reliability tests/reliability "$@"
