# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_import against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_import
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg


def test_imports_public_key_once(run, gpg, protected_key, tmp_path, snapshot):
    fpr, _sub = protected_key
    public = gpg.export_public(fpr).decode()
    target = str(tmp_path / "target")
    checked = run(openpgp_import, homedir=target, content=public, check_mode=True)
    assert checked["changed"] is True and checked["fingerprints"] == [fpr]
    assert not gnupg.GnuPG(target).list_keys()

    first = run(openpgp_import, homedir=target, content=public, diff=True)
    assert first["changed"] is True and first["counts"]["imported"] == 1
    assert first["diff"]["before"] == {} and fpr in first["diff"]["after"]
    assert "BEGIN PGP" not in str(first["diff"])

    before = snapshot(target)
    assert run(openpgp_import, homedir=target, content=public)["changed"] is False
    assert run(openpgp_import, homedir=target, content=public, check_mode=True)["changed"] is False
    assert snapshot(target) == before
    gnupg.GnuPG(target).kill_agent()


def test_imports_secret_subkeys_from_file(run, gpg, protected_key, passphrase, tmp_path):
    fpr, sub = protected_key
    path = tmp_path / "sub.asc"
    path.write_bytes(gpg.export_secret_subkeys([sub], passphrase=passphrase))
    target = str(tmp_path / "signer")
    first = run(openpgp_import, homedir=target, src=str(path))
    assert first["changed"] is True and first["counts"]["sec_imported"] == 1
    key = gnupg.GnuPG(target).get_key(fpr)
    assert key.secret_present is False and key.subkeys[0].secret_present is True
    # Adding the secret part to a keyring that has only the public key is a change too.
    assert run(openpgp_import, homedir=target, src=str(path))["changed"] is False
    gnupg.GnuPG(target).kill_agent()


def test_garbage_and_missing_file_fail_clearly(run, homedir, tmp_path):
    garbage = run(openpgp_import, homedir=homedir, content="this is not a key")
    assert garbage["failed"] is True and "no valid OpenPGP data" in garbage["msg"]
    missing = run(openpgp_import, homedir=homedir, src=str(tmp_path / "nope.asc"))
    assert missing["failed"] is True and "not a readable file" in missing["msg"]


def test_bare_revocation_certificate_revokes_a_known_key(run, gpg, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    certificate = gpg.generate_revocation(fpr, reason="retired", passphrase=passphrase).decode()
    target = str(tmp_path / "target")
    gnupg.GnuPG(target).import_keys(gpg.export_public(fpr))
    checked = run(openpgp_import, homedir=target, content=certificate, check_mode=True)
    assert checked["changed"] is True and gnupg.GnuPG(target).get_key(fpr).revoked is False
    done = run(openpgp_import, homedir=target, content=certificate, diff=True)
    assert done["changed"] is True and done["fingerprints"] == [fpr] and done["counts"]["n_revoc"] == 1
    assert done["diff"]["after"][fpr]["revoked"] is True
    assert gnupg.GnuPG(target).get_key(fpr).revoked is True
    assert run(openpgp_import, homedir=target, content=certificate)["changed"] is False
    # Without the key it revokes, a certificate cannot be applied: a clear failure.
    lonely = run(openpgp_import, homedir=str(tmp_path / "empty"), content=certificate)
    assert lonely["failed"] is True and "can't apply revocation certificate" in lonely["msg"]
    gnupg.GnuPG(target).kill_agent()
