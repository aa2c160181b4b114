#!/usr/bin/env bash
# Suite "e2e": the runbook played through ansible-playbook against local GnuPG homes, and
# the runbook document's commands checked against the playbooks (tests/e2e).
# Usage: scripts/test-e2e.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/pytest-suite.sh"
pytest_suite e2e tests/e2e "$@"
