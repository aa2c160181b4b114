# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the openpgp_* module tests: run a module's main() for real, read its JSON."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

PASSPHRASE = "correct horse battery staple"


class ModuleRunner:
    """Calls a module's main() with arguments and returns the result dict it printed."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, module, check_mode=False, diff=False, **args):
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        self.capsys.readouterr()
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        out = self.capsys.readouterr().out
        return json.loads(out)


@pytest.fixture
def run(capsys):
    return ModuleRunner(capsys)


@pytest.fixture
def homedir(tmp_path):
    path = str(tmp_path / "gnupg")
    yield path
    if os.path.isdir(path):
        gnupg.GnuPG(path, create=False).kill_agent()


@pytest.fixture
def gpg(homedir):
    home = gnupg.GnuPG(homedir)
    # Test speed only: the agent calibrates passphrase hashing to its own timing, which costs
    # seconds per key on a busy machine; a fixed low count keeps the protection real but quick.
    with open(os.path.join(homedir, "gpg-agent.conf"), "w") as handle:
        handle.write("s2k-count 65536\n")
    return home


@pytest.fixture
def protected_key(gpg):
    """An ed25519 primary (cert only, passphrase) with an ed25519 signing subkey."""
    fpr = gpg.generate_key("Unit Signer", "signer@example.org", comment="cycle 1", algorithm="ed25519",
                           usage=["cert"], expires="1y", passphrase=PASSPHRASE)
    sub = gpg.add_subkey(fpr, "ed25519", "sign", "0", passphrase=PASSPHRASE)
    gpg.forget_passphrases()
    return fpr, sub


@pytest.fixture
def passphrase():
    return PASSPHRASE


@pytest.fixture
def snapshot():
    return _snapshot


def _snapshot(homedir):
    """Everything a module could change in a homedir: file names, sizes and contents' hashes."""
    import hashlib
    found = {}
    if not os.path.isdir(homedir):
        return found
    for root, _dirs, files in os.walk(homedir):
        for name in files:
            full = os.path.join(root, name)
            # Sockets, locks, the RNG seed and gpg's trust cache (rewritten by any listing after
            # a key was added) are gpg's own upkeep, not something a module changed.
            if name.startswith("S.") or name.endswith(".lock") or name in ("random_seed", "trustdb.gpg"):
                continue
            try:
                with open(full, "rb") as handle:
                    found[os.path.relpath(full, homedir)] = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                pass
    return found
