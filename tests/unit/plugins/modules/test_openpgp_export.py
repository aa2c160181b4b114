# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_export against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_export
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_public_minimal_export_is_idempotent_on_material(run, gpg, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "public.asc")
    checked = run(openpgp_export, homedir=homedir, key=fpr, path=path, minimal=True, check_mode=True)
    assert checked["changed"] is True and not os.path.exists(path)

    first = run(openpgp_export, homedir=homedir, key=fpr, path=path, minimal=True, diff=True)
    assert first["changed"] is True and _mode(path) == 0o644
    assert first["diff"]["after"]["keys"][0]["fingerprint"] == fpr
    data = open(path, "rb").read()
    assert data.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert [k.fingerprint for k in gpg.show_keys(data)] == [fpr]

    # Same packets, different armor headers: still the same key material, nothing to do.
    with open(path, "wb") as handle:
        handle.write(data.replace(b"-----\n\n", b"-----\nComment: published by hand\n\n", 1))
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, minimal=True)["changed"] is False

    # New key material (an expiry change) makes the export stale.
    gpg.set_expire(fpr, "2y", passphrase="correct horse battery staple")
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, minimal=True)["changed"] is True
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, minimal=True)["changed"] is False
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, armor=False)["changed"] is True


def test_stripped_secret_subkey_export(run, gpg, homedir, protected_key, passphrase, tmp_path, snapshot):
    fpr, sub = protected_key
    path = str(tmp_path / "subkey.asc")
    keyring_before = snapshot(homedir)
    first = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", strip_passphrase=True,
                passphrase=passphrase, path=path, diff=True)
    assert first["changed"] is True and first["subkeys"] == [sub]
    assert _mode(path) == 0o600
    assert first["diff"]["after"]["passphrase_protected"] is False
    assert passphrase not in str(first)
    # The source keyring still protects its key.
    assert gpg.secret_protection()[gpg.get_key(fpr).subkeys[0].keygrip] == "protected"

    # A fresh homedir gets the subkey alone (sec#) and can sign without any passphrase.
    with gnupg.TemporaryGnuPG() as fresh:
        fresh.import_keys(open(path, "rb").read())
        key = fresh.get_key(fpr)
        assert key.secret_present is False and key.subkeys[0].secret_present is True
        signature = fresh.sign(b"release tarball", [fpr], passphrase=None)
        assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")

    again = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", strip_passphrase=True, path=path)
    assert again["changed"] is False  # no passphrase needed when nothing changes
    assert run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", strip_passphrase=True, path=path,
               check_mode=True)["changed"] is False
    # Protected export wanted now: differs.
    protected = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", passphrase=passphrase,
                    path=path)
    assert protected["changed"] is True
    assert run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", path=path)["changed"] is False


def test_secret_export_wrong_passphrase_and_bad_subkey(run, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "subkey.asc")
    wrong = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", strip_passphrase=True,
                passphrase="wrong one", path=path)
    assert wrong["failed"] is True and "passphrase" in wrong["msg"] and not os.path.exists(path)
    bad = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", subkeys=["DEADBEEFDEADBEEF"],
              path=path)
    assert bad["failed"] is True and "is not a subkey of" in bad["msg"]


def test_mode_is_enforced(run, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "public.asc")
    run(openpgp_export, homedir=homedir, key=fpr, path=path)
    os.chmod(path, 0o666)
    result = run(openpgp_export, homedir=homedir, key=fpr, path=path, mode="0640")
    assert result["changed"] is True and _mode(path) == 0o640


def test_missing_directory_fails_clearly(run, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    result = run(openpgp_export, homedir=homedir, key=fpr, path=str(tmp_path / "no" / "such" / "dir.asc"))
    assert result["failed"] is True and "does not exist" in result["msg"]
