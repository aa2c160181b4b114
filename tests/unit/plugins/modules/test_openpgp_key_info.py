# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_key_info against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_key_info
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg


def test_full_key_and_subkey_only_keyring(run, gpg, homedir, protected_key, passphrase, tmp_path, snapshot):
    fpr, sub = protected_key
    before = snapshot(homedir)
    info = run(openpgp_key_info, homedir=homedir)
    assert info["changed"] is False and snapshot(homedir) == before
    key = info["keys"][0]
    assert key["fingerprint"] == fpr and key["secret_primary_present"] is True
    assert key["uids"] == ["Unit Signer (cycle 1) <signer@example.org>"]
    assert key["algorithm"] == "ed25519" and key["usage"] == ["cert"] and key["expires"] is not None
    assert key["subkeys"][0]["fingerprint"] == sub and key["subkeys"][0]["usage"] == ["sign"]
    assert key["subkeys"][0]["secret_present"] is True

    target = str(tmp_path / "signer")
    signer = gnupg.GnuPG(target)
    signer.import_keys(gpg.export_secret_subkeys([sub], passphrase=passphrase))
    only = run(openpgp_key_info, homedir=target, key="signer@example.org")["keys"]
    assert len(only) == 1 and only[0]["secret_primary_present"] is False  # gpg's sec#
    assert only[0]["subkeys"][0]["secret_present"] is True
    signer.kill_agent()


def test_existing_homedir_is_left_as_it_is(run, gpg, homedir):
    os.chmod(homedir, 0o750)
    assert run(openpgp_key_info, homedir=homedir)["keys"] == []
    assert os.stat(homedir).st_mode & 0o777 == 0o750


def test_missing_homedir_is_not_created(run, tmp_path):
    path = str(tmp_path / "nothing")
    assert run(openpgp_key_info, homedir=path)["keys"] == []
    assert not os.path.exists(path)


def test_unknown_key_fails(run, homedir, protected_key):
    result = run(openpgp_key_info, homedir=homedir, key="ghost@example.org")
    assert result["failed"] is True and "no key matches" in result["msg"]
