# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_certification_info against real gpg: only verified certifications count."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg
from ansible_collections.pkgsign.signer.plugins.modules import openpgp_certification_info as module


def _key(gpg, name, comment=None):
    return gpg.generate_key(name, "%s@example.org" % name.lower(), comment=comment, algorithm="ed25519",
                            usage=["cert", "sign"], expires="1y")


@pytest.fixture
def ceremony(gpg):
    """The cycle key and two admins' keys in one homedir; alice has certified the cycle key."""
    target = _key(gpg, "Release", comment="c1")
    alice = _key(gpg, "Alice")
    bob = _key(gpg, "Bob")
    gpg.certify(target, alice)
    return {"target": target, "alice": alice, "bob": bob}


def test_counts_verified_certifications(run, homedir, ceremony):
    certifiers = [{"name": "alice", "fingerprint": ceremony["alice"]}, {"name": "bob", "fingerprint": ceremony["bob"]}]
    result = run(module, homedir=homedir, key=ceremony["target"], certifiers=certifiers, quorum=1)
    assert result["changed"] is False
    assert [c["name"] for c in result["certified"]] == ["alice"]
    assert [c["name"] for c in result["missing"]] == ["bob"]
    assert result["reached"] is True
    uid = "Release (c1) <release@example.org>"
    assert ceremony["alice"] in result["certifications"][uid]
    result = run(module, homedir=homedir, key=ceremony["target"], certifiers=certifiers, quorum=2, uid=uid)
    assert result["reached"] is False
    # The default quorum is every certifier; a certifier listed twice counts once.
    result = run(module, homedir=homedir, key=ceremony["target"], certifiers=certifiers + certifiers[:1])
    assert result["quorum"] == 2 and result["reached"] is False


def test_certification_by_absent_key_does_not_count(run, tmp_path, gpg, homedir):
    """A certification whose issuer's key is not in the homedir cannot be verified."""
    other = gnupg.GnuPG(str(tmp_path / "admin"))
    try:
        carol = _key(other, "Carol")
        target = _key(gpg, "Release", comment="c2")
        other.import_keys(gpg.export_public(target, armor=False))
        other.certify(target, carol)
        gpg.import_keys(other.export_public(target, armor=False))  # the signature, without carol's key
        assert any(sig["issuer"] == carol for sigs in gpg.list_signatures(target).values() for sig in sigs)
        result = run(module, homedir=homedir, key=target, certifiers=[{"name": "carol", "fingerprint": carol}], quorum=1)
        assert result["certified"] == [] and result["reached"] is False
        gpg.import_keys(other.export_public(carol, armor=False))
        result = run(module, homedir=homedir, key=target, certifiers=[{"name": "carol", "fingerprint": carol}], quorum=1)
        assert [c["name"] for c in result["certified"]] == ["carol"]
    finally:
        other.kill_agent()


@pytest.mark.parametrize("args, message", [
    ({"certifiers": [{"name": "x", "fingerprint": "ABCD"}]}, "40-digit fingerprint"),
    ({"certifiers": [], "quorum": 1}, "quorum must be between"),
    ({"uid": "Nobody <nobody@example.org>"}, "has no user id"),
])
def test_bad_input_fails_clearly(run, homedir, ceremony, args, message):
    params = {"homedir": homedir, "key": ceremony["target"]}
    params.update(args)
    result = run(module, **params)
    assert result["failed"] and message in result["msg"]


def test_unknown_key_fails(run, homedir, ceremony):
    result = run(module, homedir=homedir, key="0123456789ABCDEF0123456789ABCDEF01234567")
    assert result["failed"] and "0123456789ABCDEF0123456789ABCDEF01234567" in result["msg"]
