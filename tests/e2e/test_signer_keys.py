# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The signer role's keys, retire_keys and aliases task files through ansible-playbook, on
real gpg homes: after retirement the earlier key signs no more while its signatures verify, a
re-run changes nothing, and an alias naming the retired key is refused by name."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))


def _playbook(tmp_path, extra):
    command = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(command):
        pytest.skip("ansible-playbook is not installed next to %s" % sys.executable)
    if os.geteuid() != 0:
        pytest.skip("the role's tasks become the signer user (root here)")
    collections = tmp_path / "collections" / "ansible_collections" / "pkgsign"
    if not collections.exists():
        collections.mkdir(parents=True)
        os.symlink(CHECKOUT, str(collections / "signer"))
    variables = tmp_path / "vars.json"
    fd = os.open(str(variables), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(extra, handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_HOME=str(tmp_path / "ansible-home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    proc = subprocess.run([command, "-i", "localhost,", os.path.join(HERE, "signer_keys.yml"),
                           "-e", "@%s" % variables], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _changed(output):
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def test_retired_key_signs_no_more_and_aliases_are_checked(tmp_path):
    bastion = gnupg.GnuPG(str(tmp_path / "bastion.gnupg"))
    signer = None
    try:
        exports, fingerprints = [], []
        for cycle in ("c1", "c2"):
            fpr = bastion.generate_key("Unit Ceremony", "ceremony@example.org", comment=cycle, algorithm="ed25519",
                                       usage=["cert"], expires="1y")
            sub = bastion.add_subkey(fpr, "ed25519", "sign", "0")
            exports.append(bastion.export_secret_subkeys([sub]).decode())
            fingerprints.append(fpr)
        old, new = fingerprints
        old_file = tmp_path / "c1-subkey.asc"
        old_file.write_text(exports[0])
        os.chmod(str(old_file), 0o600)
        workdir = tmp_path / "work"
        workdir.mkdir(mode=0o700)
        keys = [{"file": str(old_file), "fingerprint": old}, {"content": exports[1], "fingerprint": new}]

        # Cycle 1's key in service: an artifact signed with it.
        rc, output = _playbook(tmp_path, {"workdir": str(workdir), "keys": keys[:1], "retired": [],
                                          "aliases": {"release": old}})
        assert rc == 0, output[-4000:]
        signer = gnupg.GnuPG(str(workdir / "signer.gnupg"), create=False)
        artifact = tmp_path / "artifact.txt"
        artifact.write_bytes(b"signed by cycle 1\n")
        signature = tmp_path / "artifact.txt.asc"
        signature.write_bytes(signer.sign(artifact.read_bytes(), old))

        # Switch-over to cycle 2 (handed over in memory), cycle 1 retired, twice.
        switch = {"workdir": str(workdir), "keys": keys, "retired": [old], "aliases": {"release": new, "other": "release"}}
        rc, output = _playbook(tmp_path, switch)
        assert rc == 0, output[-4000:]
        assert _changed(output) > 0
        assert "retired (secret signing subkey deleted, public key kept): %s" % old in output
        assert "earlier keys public only (their signatures verify, they sign no more): 0x%s" % old[-16:] in output
        assert exports[1] not in output and "PRIVATE KEY" not in output
        key = signer.get_key(old)
        assert not key.secret_present and not any(sub.secret_present for sub in key.subkeys)
        with pytest.raises(gnupg.GpgError):
            signer.sign(b"after the switch-over\n", old)
        assert signer.verify(str(signature), str(artifact)) == [old]
        assert signer.sign(b"new\n", new)
        # keys.yml must not re-import the retired secret: cycle 1 is public only from now on.
        switch["keys"] = [{"file": str(tmp_path / "c1-public.asc"), "fingerprint": old, "public_only": True}, keys[1]]
        (tmp_path / "c1-public.asc").write_bytes(bastion.export_public(old))
        rc, output = _playbook(tmp_path, switch)
        assert rc == 0 and _changed(output) == 0, output[-4000:]

        # An alias still naming the retired key is refused by name.
        stale = dict(switch, aliases={"release": new, "legacy": old})
        rc, output = _playbook(tmp_path, stale)
        assert rc != 0
        assert "alias 'legacy' names %s, but that key cannot sign here" % old in output, output[-3000:]
        missing = dict(switch, aliases={"release": "0" * 40})
        rc, output = _playbook(tmp_path, missing)
        assert rc != 0 and "no key in %s matches it" % (workdir / "signer.gnupg") in output, output[-3000:]
    finally:
        bastion.kill_agent()
        if signer is not None:
            signer.kill_agent()
