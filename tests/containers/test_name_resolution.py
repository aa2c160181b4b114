"""scripts/check-container-dns.sh, the name-resolution preflight of the lab and of molecule, on real
podman networks: one created with --disable-dns (what a machine without netavark + aardvark-dns
gets) and one with DNS. Part of the molecule suite (scripts/test-molecule.sh), which runs under
the podman lock; the containers and networks have names of their own and are removed afterwards.
"""

import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "scripts", "check-container-dns.sh")
IMAGE = "localhost/debian12-systemd"
PREFIX = "pkgsign-dnscheck-%d" % os.getpid()


def podman(*args, check=True):
    return subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120, check=check)


@pytest.fixture(scope="module", autouse=True)
def podman_ready():
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.skip("image %s not built (scripts/build-image.sh)" % IMAGE)
    assert os.environ.get("CONTAINERS_CONF"), "source scripts/podman-env.sh first"


@pytest.fixture(params=["without-dns", "with-dns"])
def lab(request):
    """Two containers on a fresh network; (kind, [names])."""
    network = "%s-%s" % (PREFIX, request.param)
    names = [network + "-a", network + "-b"]
    podman("network", "create", *(["--disable-dns"] if request.param == "without-dns" else []), network)
    try:
        for name in names:
            podman("run", "-d", "--name", name, "--label", "owner=molecule", "--network", network, IMAGE,
                   "sleep", "600")
        yield request.param, network, names
    finally:
        podman("rm", "-f", "--time", "0", *names, check=False)
        podman("network", "rm", "-f", network, check=False)


def test_preflight_fails_fast_without_dns_and_passes_with_it(lab):
    kind, network, names = lab
    dns = podman("network", "inspect", "-f", "{{.DNSEnabled}}", network).stdout.strip()
    assert dns == ("false" if kind == "without-dns" else "true")
    started = time.monotonic()
    proc = subprocess.run([CHECK] + names, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                          check=False)
    took = time.monotonic() - started
    if kind == "with-dns":
        assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr
    else:
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
        line = proc.stderr
        assert line.startswith("containers cannot resolve each other by name")
        assert "install netavark and aardvark-dns (scripts/bootstrap.sh)" in line
        assert "%s -> %s" % (names[0], names[1]) in line and "dns_enabled=false" in line
    assert took < 15, "the preflight took %.1f s" % took
