# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_export with strip_passphrase killed with SIGKILL part-way: the unprotected key material
in its scratch GnuPG home is shredded by the next run at the latest (issue 14). Real gpg, the module
in a subprocess of its own, killed at several points."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

DRIVER = """
import json, sys
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pkgsign.signer.plugins.modules import openpgp_export
with patch_module_args(json.loads(sys.stdin.read())):
    openpgp_export.main()
"""


def _key_files(root):
    """(path, unprotected?) of every gpg secret key file under ``root``."""
    found = []
    for directory, _dirs, files in os.walk(root):
        if os.path.basename(directory) != "private-keys-v1.d":
            continue
        for name in files:
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if data.strip(b"\0"):
                found.append((path, b"protected-private-key" not in data))
    return found


def _agents_under(root):
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if b"gpg-agent" in cmdline and root.encode() in cmdline:
                pids.append(int(pid))
    return pids


@pytest.fixture
def tmpdir_short():
    # Short: gpg-agent's socket path inside a scratch home must stay below 108 bytes.
    path = tempfile.mkdtemp(prefix="pk-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(args, tmpdir_short):
    env = dict(os.environ, TMPDIR=tmpdir_short, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdin.write(json.dumps(args).encode())
    proc.stdin.close()
    return proc


def _kill_when(proc, root, condition, extra_delay, timeout=60):
    """SIGKILL ``proc`` once ``condition(root)`` holds (plus ``extra_delay``); True if it was killed."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition(root):
            if extra_delay:
                time.sleep(extra_delay)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


def _scratch_exists(root):
    return os.path.isdir(root) and any(name.startswith("pkgsign-") for name in os.listdir(root))


def _any_key(root):
    return bool(_key_files(root))


def _unprotected_key(root):
    return any(unprotected for _path, unprotected in _key_files(root))


# (where, condition on the scratch root, extra delay, export file present before the run): with no
# export the run strips the passphrase in a scratch home; with one it first inspects the existing
# stripped export in another scratch home (gpg-agent stores it protected with the empty passphrase:
# as good as clear).
KILL_POINTS = [("scratch home made", _scratch_exists, 0, False), ("first key file", _any_key, 0, False),
               ("unprotected key file", _unprotected_key, 0, False),
               ("unprotected key file +5 ms", _unprotected_key, 0.005, False),
               ("unprotected key file +15 ms", _unprotected_key, 0.015, False),
               ("inspecting the existing export", _any_key, 0, True)]


def test_strip_passphrase_scratch_is_shredded_after_sigkill(gpg, homedir, protected_key, passphrase, tmp_path,
                                                            tmpdir_short):
    fpr, sub = protected_key
    root = os.path.join(tmpdir_short, "%s%d" % (gnupg.SCRATCH_ROOT_PREFIX, os.geteuid()))
    path = str(tmp_path / "signing-subkey.asc")
    args = {"homedir": homedir, "key": fpr, "kind": "secret_subkeys", "subkeys": [sub], "strip_passphrase": True,
            "passphrase": passphrase, "path": path}
    killed_with_unprotected = killed_with_keys = 0
    for what, condition, delay, existing in KILL_POINTS:
        if existing and not os.path.exists(path):
            finished = _start(args, tmpdir_short)
            assert finished.wait(120) == 0, finished.stderr.read()
        elif not existing and os.path.exists(path):
            os.unlink(path)
        killed = _kill_when(_start(args, tmpdir_short), root, condition, delay)
        left = _unprotected_key(root)
        print("kill at %s: killed=%s, key files left=%d, in clear=%s" % (what, killed, len(_key_files(root)), left))
        killed_with_unprotected += killed and left
        killed_with_keys += killed and bool(_key_files(root))
        assert len(_key_files(root)) <= 1  # only this run's: the previous run's leftovers are gone
        # What a killed run leaves is shredded by the next run, before it makes a scratch home of its own.
        assert os.stat(root).st_mode & 0o777 == 0o700 and os.stat(root).st_uid == os.geteuid()
    # The kills did leave key material behind (else this test would prove nothing)...
    assert killed_with_unprotected >= 2 and killed_with_keys >= 4, (killed_with_unprotected, killed_with_keys)
    # ...and the next run shreds it before anything else.
    done = _start(args, tmpdir_short)
    assert done.wait(120) == 0, done.stderr.read()
    assert not json.loads(done.stdout.read()).get("failed")
    assert _key_files(root) == [] and os.listdir(root) == []
    assert _agents_under(tmpdir_short) == []


def test_sweep_spares_homes_in_use_and_refuses_a_squatted_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    try:
        root = gnupg.scratch_root()
        abandoned = os.path.join(root, "pkgsign-strip-dead")
        os.makedirs(os.path.join(abandoned, "private-keys-v1.d"))
        with open(os.path.join(abandoned, ".pkgsign-scratch.lock"), "w"):
            pass
        with open(os.path.join(abandoned, "private-keys-v1.d", "A" * 40 + ".key"), "w") as handle:
            handle.write("(private-key ...)")
        with gnupg.TemporaryGnuPG(prefix="pkgsign-live-") as live:
            assert not os.path.exists(abandoned)  # swept when the live one was made
            assert gnupg.sweep_scratch(root) == 0 and os.path.isdir(live.homedir)  # its lock is held
        assert os.listdir(root) == []
        os.chmod(root, 0o755)
        with pytest.raises(gnupg.GpgError, match="not a private directory"):
            gnupg.TemporaryGnuPG()
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
