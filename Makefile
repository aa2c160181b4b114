# pkgsign.signer: developer and CI entry points.
# Every test target sets the machine up first (scripts/bootstrap.sh: apt packages, .venv,
# ansible-test's offline pip bootstrap) and ends with the line "N passed, N failed".

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Pick one molecule scenario: make molecule SCENARIO=signer
SCENARIO ?=

.PHONY: help
help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-10s %s\n", $$1, $$2 }'

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

.PHONY: venv
venv:  ## apt packages, .venv with requirements-dev.txt, ansible-test pip stand-in
	scripts/bootstrap.sh

# ---------------------------------------------------------------------------------------------
# Tests (results/<suite>/ holds JUnit XML and logs)
# ---------------------------------------------------------------------------------------------

.PHONY: test
test:  ## every suite: units, service, e2e, sanity, lint, molecule, soak (60-70 minutes on 2 cores; CI allows 90)
	scripts/run-tests.sh units service e2e sanity lint molecule soak

.PHONY: units
units:  ## pytest: the Ansible modules against real gpg (tests/unit; about 1 minute)
	scripts/run-tests.sh units

.PHONY: service
service:  ## pytest: the service, pkgsign-admin and the sign client (files/pkgsign/tests)
	scripts/run-tests.sh service

.PHONY: e2e
e2e:  ## pytest: the runbook through ansible-playbook and the runbook document's commands (tests/e2e)
	scripts/run-tests.sh e2e

.PHONY: reliability
reliability:  ## pytest: fuzzing, concurrency, kill -9, secrets, access, backup (tests/reliability)
	scripts/run-tests.sh reliability

.PHONY: soak
soak:  ## the reliability suite's long variants (more kill -9 rounds, keys, fuzzing examples)
	scripts/run-tests.sh soak

.PHONY: sanity
sanity:  ## ansible-test sanity (no ignore file)
	scripts/run-tests.sh sanity

.PHONY: lint
lint:  ## ansible-lint, offline
	scripts/run-tests.sh lint

.PHONY: molecule
molecule:  ## molecule test for every scenario, or SCENARIO=name
	SCENARIO="$(SCENARIO)" scripts/run-tests.sh molecule

# ---------------------------------------------------------------------------------------------
# Performance (never part of `make test`; docs/performance.md)
# ---------------------------------------------------------------------------------------------

# Extra options for the harness: make bench BENCH_ARGS="--quick" or "--sign-conf F --key ..."
BENCH_ARGS ?=

.PHONY: bench
bench:  ## benchmark: gpg floor, sign end to end, start-up, keyring scale, /gen_key (BENCH_ARGS=--quick)
	test -x .venv/bin/python || scripts/bootstrap.sh
	.venv/bin/python bench/run.py $(BENCH_ARGS)

# ---------------------------------------------------------------------------------------------
# Lab
# ---------------------------------------------------------------------------------------------

.PHONY: demo
demo:  ## lab in podman: deploy signer + client, key ceremony, sign an RPM and a tarball remotely, verify
	scripts/demo.sh

.PHONY: demo-clean
demo-clean:  ## remove the demo lab (containers, network, lab/, the package archive; the image stays)
	scripts/demo.sh clean

# ---------------------------------------------------------------------------------------------
# Housekeeping
# ---------------------------------------------------------------------------------------------

.PHONY: clean
clean:  ## remove results and test output (keeps .venv)
	rm -rf results tests/output .pytest_cache

.PHONY: distclean
distclean: clean  ## also remove .venv
	rm -rf .venv
