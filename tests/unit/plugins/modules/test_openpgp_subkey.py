# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_subkey against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

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
