#!/usr/bin/env bash
# Suite "service": the pkgsign service, pkgsign-admin and the sign client (files/pkgsign/tests),
# real gpg, rpm, git, apt and dnf against services started on loopback.
# Usage: scripts/test-service.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/pytest-suite.sh"
pytest_suite service files/pkgsign/tests "$@"
