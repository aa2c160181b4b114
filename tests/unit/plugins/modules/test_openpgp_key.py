# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_key against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_key
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

PASSPHRASE = "correct horse battery staple"

BASE = dict(name="Unit Test", email="unit@example.org", comment="cycle 1", algorithm="ed25519")


def test_creates_key_with_passphrase_and_is_idempotent(run, homedir):
    first = run(openpgp_key, homedir=homedir, passphrase=PASSPHRASE, expires="1y", diff=True, **BASE)
    assert first["changed"] is True
    assert first["uids"] == ["Unit Test (cycle 1) <unit@example.org>"]
    assert first["algorithm"] == "ed25519" and first["usage"] == ["cert"]
    assert first["expires"] is not None and first["secret_primary_present"] is True
    assert first["diff"]["before"] == {} and first["diff"]["after"]["fingerprint"] == first["fingerprint"]
    assert stat.S_IMODE(os.stat(homedir).st_mode) == 0o700
    assert PASSPHRASE not in str(first)

    second = run(openpgp_key, homedir=homedir, passphrase=PASSPHRASE, expires="1y", **BASE)
    assert second["changed"] is False
    assert second["fingerprint"] == first["fingerprint"]

    # The key really is protected: the passphrase is needed to use it.
    gpg = gnupg.GnuPG(homedir)
    gpg.forget_passphrases()
    with pytest.raises(gnupg.BadPassphrase):
        gpg.add_subkey(first["fingerprint"], "ed25519", "sign", "0", passphrase="wrong")


def test_check_mode_changes_nothing(run, homedir, snapshot):
    result = run(openpgp_key, homedir=homedir, check_mode=True, **BASE)
    assert result["changed"] is True and result["fingerprint"] is None
    assert not os.path.exists(homedir)

    run(openpgp_key, homedir=homedir, **BASE)
    before = snapshot(homedir)
    again = run(openpgp_key, homedir=homedir, check_mode=True, **BASE)
    assert again["changed"] is False
    assert snapshot(homedir) == before


def test_new_comment_is_a_new_key_next_to_the_old(run, homedir):
    old = run(openpgp_key, homedir=homedir, **BASE)
    new = run(openpgp_key, homedir=homedir, **dict(BASE, comment="cycle 2"))
    assert new["changed"] is True and new["fingerprint"] != old["fingerprint"]
    assert len(gnupg.GnuPG(homedir).list_keys(selector="unit@example.org")) == 2


def test_regenerate_fail_never_and_always(run, homedir):
    old = run(openpgp_key, homedir=homedir, **BASE)
    failed = run(openpgp_key, homedir=homedir, regenerate="fail", **dict(BASE, algorithm="rsa2048"))
    assert failed["failed"] is True and "algorithm is ed25519, not rsa2048" in failed["msg"]

    kept = run(openpgp_key, homedir=homedir, **dict(BASE, algorithm="rsa2048"))
    assert kept["changed"] is False and kept["fingerprint"] == old["fingerprint"]
    assert "differs" in str(kept.get("warnings")), kept

    replaced = run(openpgp_key, homedir=homedir, regenerate="always", **BASE)
    assert replaced["changed"] is True and replaced["replaced"] == [old["fingerprint"]]
    fingerprints = [k.fingerprint for k in gnupg.GnuPG(homedir).list_keys()]
    assert fingerprints == [replaced["fingerprint"]]


def test_absent_deletes_only_on_request_and_is_idempotent(run, homedir):
    key = run(openpgp_key, homedir=homedir, **BASE)
    checked = run(openpgp_key, homedir=homedir, state="absent", email=BASE["email"], check_mode=True)
    assert checked["changed"] is True and checked["removed"] == [key["fingerprint"]]
    assert gnupg.GnuPG(homedir).list_keys() != []
    removed = run(openpgp_key, homedir=homedir, state="absent", email=BASE["email"])
    assert removed["changed"] is True and gnupg.GnuPG(homedir).list_keys() == []
    assert run(openpgp_key, homedir=homedir, state="absent", email=BASE["email"])["changed"] is False


@pytest.mark.parametrize("field,value,message", [
    ("name", "Evil\nKey-Type: DSA", "newlines or control characters"),
    ("email", "a@b.org\n%commit", "newlines or control characters"),
    ("comment", "bell\x07", "newlines or control characters"),
    ("email", "not-an-email", "not of the form"),
])
def test_bad_uid_fields_fail_before_gpg(run, homedir, field, value, message):
    args = dict(BASE)
    args[field] = value
    result = run(openpgp_key, homedir=homedir, **args)
    assert result["failed"] is True and message in result["msg"]
    assert not os.path.exists(homedir) or gnupg.GnuPG(homedir).list_keys() == []


def test_unsupported_algorithm_is_refused(run, homedir):
    result = run(openpgp_key, homedir=homedir, **dict(BASE, algorithm="dsa1024"))
    assert result["failed"] is True and "dsa1024" in result["msg"]


def test_bad_expiry_is_refused(run, homedir):
    result = run(openpgp_key, homedir=homedir, expires="tomorrow", **BASE)
    assert result["failed"] is True and "expires" in result["msg"]


def test_passphrase_with_newline_is_refused(run, homedir):
    result = run(openpgp_key, homedir=homedir, passphrase="line one\nKey-Type: DSA", **BASE)
    assert result["failed"] is True and "newlines" in result["msg"]
    assert "Key-Type: DSA" not in result["msg"]
    assert not os.path.exists(homedir) or gnupg.GnuPG(homedir).list_keys() == []
