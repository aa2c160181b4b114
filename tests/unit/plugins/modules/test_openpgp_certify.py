# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_certify against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_certify


def _certifiers(gpg, fpr):
    return {uid: sorted(s["issuer"] for s in sigs if s["issuer"] != fpr) for uid, sigs in gpg.list_signatures(fpr).items()}


def test_new_key_signed_by_old_once(run, gpg, homedir, protected_key, passphrase, snapshot):
    old, _sub = protected_key
    new = gpg.generate_key("Unit Signer", "signer@example.org", comment="cycle 2", algorithm="ed25519",
                           usage=["cert"], expires="1y", passphrase=passphrase)
    checked = run(openpgp_certify, homedir=homedir, key=new, signer=old, passphrase=passphrase, check_mode=True,
                  diff=True)
    assert checked["changed"] is True and checked["certified_uids"] == ["Unit Signer (cycle 2) <signer@example.org>"]
    assert _certifiers(gpg, new) == {"Unit Signer (cycle 2) <signer@example.org>": []}

    done = run(openpgp_certify, homedir=homedir, key=new, signer=old, passphrase=passphrase)
    assert done["changed"] is True and done["signer"] == old
    assert _certifiers(gpg, new) == {"Unit Signer (cycle 2) <signer@example.org>": [old]}

    before = snapshot(homedir)
    assert run(openpgp_certify, homedir=homedir, key=new, signer=old)["changed"] is False
    assert run(openpgp_certify, homedir=homedir, key=new, signer=old, exportable=False)["changed"] is False
    assert snapshot(homedir) == before


def test_failures(run, gpg, homedir, protected_key, passphrase):
    old, _sub = protected_key
    new = gpg.generate_key("Other", "other@example.org", algorithm="ed25519", usage=["cert"])
    wrong = run(openpgp_certify, homedir=homedir, key=new, signer=old, passphrase="bad")
    assert wrong["failed"] is True and "passphrase" in wrong["msg"]
    itself = run(openpgp_certify, homedir=homedir, key=old, signer=old, passphrase=passphrase)
    assert itself["failed"] is True and "cannot certify itself" in itself["msg"]
    unknown = run(openpgp_certify, homedir=homedir, key="ghost@example.org", signer=old)
    assert unknown["failed"] is True and "no key matches" in unknown["msg"]
    bad_uid = run(openpgp_certify, homedir=homedir, key=new, signer=old, uids=["Nobody <n@example.org>"])
    assert bad_uid["failed"] is True and "has no user id" in bad_uid["msg"]
