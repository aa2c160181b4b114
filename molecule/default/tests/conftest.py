"""Shared fixtures of the deploy-signer scenario (testinfra over `podman exec`)."""

import pytest
import testinfra


@pytest.fixture(scope="session")
def signer():
    return testinfra.get_host("podman://signer")


@pytest.fixture(scope="session")
def client():
    return testinfra.get_host("podman://build-client")


def run_ok(host, command, *args):
    """Run a command, failing the test with its output when it fails."""
    result = host.run(command, *args)
    assert result.rc == 0, "%s\nrc=%d\nstdout: %s\nstderr: %s" % (
        result.command, result.rc, result.stdout, result.stderr)
    return result
