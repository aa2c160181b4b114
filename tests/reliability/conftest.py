# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the reliability and security suite: real pkgsign instances served on 127.0.0.1.

The instance helper (``Instance``: init, tokens, options, serve, real HTTP requests, the real
``sign`` client) is the service suite's own, from pkgsign_testlib (tests/pytest_plugins), so
that both suites drive the service the same way.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from pkgsign_testlib import Instance
from pkgsign import _gnupg


def soak_enabled():
    """Long variants (make soak) run when PKGSIGN_SOAK=1."""
    return os.environ.get("PKGSIGN_SOAK") == "1"


class ReliabilityInstance(Instance):
    """An Instance that can be killed with SIGKILL and restarted on the same state."""

    def kill9(self):
        """SIGKILL the server process alone (its gpg children are orphaned, as after an OOM kill)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def kill9_group(self):
        """SIGKILL the server and every child in its session (a crash of the whole service)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def server_log(self):
        """What the server wrote to standard error (only once it has exited)."""
        return self.process.stderr.read() if self.process and self.process.poll() is not None else ""

    def gnupg(self):
        return _gnupg.GnuPG(self.gnupg_home, create=False)


def make_instance(root, algorithm="ed25519", rate="0", options=()):
    """An initialised (not yet started) instance: ed25519 keys, no default rate limit."""
    return ReliabilityInstance.create(root, algorithm, [("rate_limit", "default", rate)] + list(options))


@pytest.fixture
def new_instance():
    """Factory of instances, stopped and their gpg-agents ended after the test.

    Short paths under /tmp: gpg-agent's socket lives in the GnuPG home, and a socket path
    longer than 107 bytes (pytest's tmp_path with a long test name) cannot be bound.
    """
    made = []
    base = tempfile.mkdtemp(prefix="pkrel-")

    def factory(name="inst", **kwargs):
        inst = make_instance(os.path.join(base, name), **kwargs)
        made.append(inst)
        return inst

    yield factory
    for inst in made:
        inst.close()
        if inst.process is not None and inst.process.stderr:
            inst.process.stderr.close()
            inst.process.stdout.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def new_instance_module():
    """One instance for a whole test module (started by the module's own fixture)."""
    base = tempfile.mkdtemp(prefix="pkrel-")
    inst = make_instance(os.path.join(base, "inst"))
    yield inst
    inst.close()
    shutil.rmtree(base, ignore_errors=True)


def keyring_state(inst):
    """(fingerprints with secret material in the keyring, fingerprints named by metadata, pending markers)."""
    gpg = inst.gnupg()
    secret = {key.fingerprint for key in gpg.list_keys(secret=True)}
    public = {key.fingerprint for key in gpg.list_keys()}
    metadata = {}
    keys_dir = os.path.join(inst.root, "keys")
    for name in os.listdir(keys_dir):
        if name.endswith(".json"):
            with open(os.path.join(keys_dir, name)) as handle:
                record = json.load(handle)
            metadata[record["name_email"]] = record["fingerprint"]
    pending = [n for n in os.listdir(os.path.join(inst.root, "pending")) if not n.startswith(".")]
    return secret, public, metadata, pending


def assert_consistent(inst):
    """Every key has its metadata and every metadata entry its key; nothing half-made."""
    secret, public, metadata, pending = keyring_state(inst)
    assert pending == [], pending
    assert public == secret, "public keys without secret part: %s" % (public - secret)
    assert set(metadata.values()) == secret, (
        "keys without metadata: %s; metadata without key: %s" % (secret - set(metadata.values()),
                                                                 set(metadata.values()) - secret))
    return metadata


def python():
    return sys.executable


def run(cmd, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, check=False, **kwargs)
