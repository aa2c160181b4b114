# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: the signing-key runbook (seed 002) as a playbook of openpgp_* modules.

Runs ansible-playbook for real, twice: the first run must build everything, the second must
change nothing, and neither -vvv log may contain the passphrase. The signature made on the
signing host must verify against the public key exported from the bastion's keyring.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import secrets
import subprocess
import sys
import time

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))


def _playbook_command():
    found = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(found):
        pytest.skip("ansible-playbook is not installed next to %s" % sys.executable)
    return found


def _recap(output):
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return {name: int(value) for name, value in zip(("ok", "changed", "unreachable", "failed"), match.groups())}


def test_runbook_twice(tmp_path):
    collections = tmp_path / "collections" / "ansible_collections" / "pkgsign"
    collections.mkdir(parents=True)
    os.symlink(CHECKOUT, str(collections / "signer"))
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    passphrase = "pp-" + secrets.token_urlsafe(24)
    secrets_file = tmp_path / "secrets.yml"
    fd = os.open(str(secrets_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("signing_passphrase: %s\n" % passphrase)

    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    command = [_playbook_command(), "-vvv", "--diff", "-i", "localhost,", os.path.join(HERE, "runbook.yml"),
               "-e", "workdir=%s" % workdir, "-e", "@%s" % secrets_file]
    logs = []
    try:
        for run in (1, 2):
            started = time.time()
            proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
            output = proc.stdout.decode("utf-8", "replace")
            logs.append(output)
            (tmp_path / ("run%d.log" % run)).write_text(output)
            print("run %d: %.1f s, exit %d" % (run, time.time() - started, proc.returncode))
            assert proc.returncode == 0, output[-4000:]
            recap = _recap(output)
            assert recap["failed"] == 0
            if run == 1:
                assert recap["changed"] >= 7, recap
            else:
                assert recap["changed"] == 0, output[-6000:]
        for output in logs:
            assert passphrase not in output
            assert "-----BEGIN PGP" not in output  # diffs and results carry metadata, never key material
            assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # -vvv did show the (masked) arguments

        bastion = gnupg.GnuPG(str(workdir / "signing.gnupg"), create=False)
        master = bastion.get_key("infra-root@openstack.org")
        assert master.algorithm == "rsa4096" and master.secret_present
        assert master.uids == ["OpenStack Infra (Some Cycle) <infra-root@openstack.org>"]
        assert os.stat(str(workdir / "signing.gnupg" / "revoke.asc")).st_mode & 0o777 == 0o600
        assert os.stat(str(workdir / "signing-subkey.asc")).st_mode & 0o777 == 0o600
        # The bastion's key is still protected after the stripped export.
        protection = bastion.secret_protection()
        assert {protection[part.keygrip] for part in [master] + master.subkeys} == {"protected"}

        # The signature from the signing host verifies with nothing but the published public key.
        public = (workdir / ("0x%s.txt" % master.fingerprint.lower())).read_bytes()
        with gnupg.TemporaryGnuPG() as verifier:
            verifier.import_keys(public)
            signers = verifier.verify(str(workdir / "release-1.0.tar.gz.asc"), str(workdir / "release-1.0.tar.gz"))
        assert signers == [master.fingerprint]
    finally:
        for home in ("signing.gnupg", "jenkins.gnupg"):
            path = workdir / home
            if path.is_dir():
                gnupg.GnuPG(str(path), create=False).kill_agent()
