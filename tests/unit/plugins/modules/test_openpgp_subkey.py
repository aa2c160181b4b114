# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_subkey against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg
from ansible_collections.pkgsign.signer.plugins.modules import openpgp_subkey


def _primary(gpg, passphrase):
    return gpg.generate_key("Sub Test", "sub@example.org", algorithm="ed25519", usage=["cert"],
                            expires="1y", passphrase=passphrase)


def test_adds_signing_subkey_once(run, gpg, homedir, passphrase, snapshot):
    fpr = _primary(gpg, passphrase)
    checked = run(openpgp_subkey, homedir=homedir, key=fpr, passphrase=passphrase, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["fingerprint"] is None
    assert checked["diff"]["after"]["subkeys"][-1]["usage"] == ["sign"]
    assert gpg.get_key(fpr).subkeys == []

    added = run(openpgp_subkey, homedir=homedir, key="sub@example.org", passphrase=passphrase)
    assert added["changed"] is True and added["usage"] == ["sign"] and added["algorithm"] == "ed25519"
    assert [s.fingerprint for s in gpg.get_key(fpr).subkeys] == [added["fingerprint"]]
    assert passphrase not in str(added)

    before = snapshot(homedir)
    again = run(openpgp_subkey, homedir=homedir, key=fpr, passphrase=passphrase)
    assert again["changed"] is False and again["fingerprint"] == added["fingerprint"]
    assert run(openpgp_subkey, homedir=homedir, key=fpr, check_mode=True)["changed"] is False
    assert snapshot(homedir) == before


def test_encryption_subkey_of_ed25519_is_cv25519(run, gpg, homedir, passphrase):
    fpr = _primary(gpg, passphrase)
    added = run(openpgp_subkey, homedir=homedir, key=fpr, usage="encrypt", passphrase=passphrase)
    assert added["changed"] is True and added["algorithm"] == "cv25519" and added["usage"] == ["encrypt"]
    assert run(openpgp_subkey, homedir=homedir, key=fpr, usage="encrypt", passphrase=passphrase)["changed"] is False


def test_wrong_passphrase_fails_clearly(run, gpg, homedir, passphrase):
    fpr = _primary(gpg, passphrase)
    result = run(openpgp_subkey, homedir=homedir, key=fpr, passphrase="not it")
    assert result["failed"] is True and "passphrase" in result["msg"]
    assert "not it" not in result["msg"]
    assert gpg.get_key(fpr).subkeys == []


def test_unknown_key_fails_clearly(run, homedir):
    result = run(openpgp_subkey, homedir=homedir, key="nobody@example.org")
    assert result["failed"] is True and "no key matches" in result["msg"]


def test_absent_removes_subkey(run, gpg, homedir, passphrase):
    fpr = _primary(gpg, passphrase)
    added = run(openpgp_subkey, homedir=homedir, key=fpr, passphrase=passphrase)
    checked = run(openpgp_subkey, homedir=homedir, key=fpr, state="absent", check_mode=True)
    assert checked["changed"] is True and len(gpg.get_key(fpr).subkeys) == 1
    removed = run(openpgp_subkey, homedir=homedir, key=fpr, state="absent")
    assert removed["changed"] is True and removed["removed"] == [added["fingerprint"]]
    assert gpg.get_key(fpr).subkeys == []
    assert run(openpgp_subkey, homedir=homedir, key=fpr, state="absent")["changed"] is False


def test_secret_absent_retires_a_signing_subkey(run, gpg, homedir, protected_key, tmp_path, passphrase):
    """A signer holding a signing-subkey-only key: after secret_absent it signs no more, while
    what it signed before still verifies and the public key stays."""
    fpr, sub = protected_key
    exported = gpg.export_secret_subkeys([sub], armor=False, passphrase=passphrase)
    signer = gnupg.GnuPG(str(tmp_path / "signer"))
    try:
        signer.import_keys(exported)
        data = tmp_path / "artifact.txt"
        data.write_bytes(b"signed before the switch-over\n")
        signature = tmp_path / "artifact.txt.sig"
        signature.write_bytes(signer.sign(data.read_bytes(), fpr, armor=False, passphrase=passphrase))

        checked = run(openpgp_subkey, homedir=signer.homedir, key=fpr, state="secret_absent", check_mode=True, diff=True)
        assert checked["changed"] is True and checked["removed"] == [sub]
        assert checked["diff"]["after"]["subkeys"][0]["secret_present"] is False
        assert signer.get_key(fpr).subkeys[0].secret_present

        retired = run(openpgp_subkey, homedir=signer.homedir, key=fpr, state="secret_absent")
        assert retired["changed"] is True and retired["removed"] == [sub]
        key = signer.get_key(fpr)
        assert not key.secret_present and not key.subkeys[0].secret_present
        assert signer.list_keys(secret=True) == []
        with pytest.raises(gnupg.GpgError):
            signer.sign(b"after the switch-over\n", fpr, passphrase=passphrase)
        assert signer.verify(str(signature), str(data))

        again = run(openpgp_subkey, homedir=signer.homedir, key=fpr, state="secret_absent")
        assert again["changed"] is False and again["removed"] == []
        missing = run(openpgp_subkey, homedir=signer.homedir, key="0" * 40, state="secret_absent")
        assert missing["changed"] is False and missing["primary_fingerprint"] is None
    finally:
        signer.kill_agent()
