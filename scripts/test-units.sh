#!/usr/bin/env bash
# Suite "units": the Ansible modules against real gpg (tests/unit), imported as
# ansible_collections.pkgsign.signer. The fast suite to run while working on plugins/.
# Usage: scripts/test-units.sh [extra pytest options, e.g. -k expire]
set -uo pipefail
. "$(dirname "$0")/pytest-suite.sh"
pytest_suite units tests/unit "$@"
