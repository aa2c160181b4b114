# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the shared GnuPG layer against real gpg in temporary homes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import time

import pytest

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def gpg(tmp_path):
    home = gnupg.GnuPG(str(tmp_path / "home"))
    # Test speed only, as the modules' fixtures do: a fixed low passphrase-hashing count
    # instead of the agent's calibration (seconds per key on a busy machine).
    with open(os.path.join(home.homedir, "gpg-agent.conf"), "w") as handle:
        handle.write("s2k-count 65536\n")
    yield home
    home.kill_agent()


@pytest.fixture
def protected_key(gpg):
    fpr = gpg.generate_key("Layer Test", "layer@example.org", comment="unit", algorithm="ed25519",
                           usage=["cert"], expires="1y", passphrase=PASSPHRASE)
    sub = gpg.add_subkey(fpr, "ed25519", "sign", "0", passphrase=PASSPHRASE)
    return fpr, sub


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\there", "nul\x00", "del\x7f", " lead", "x<y", "(c)"])
def test_uid_fields_reject_injection_and_ambiguity(value):
    with pytest.raises(gnupg.InvalidInput):
        gnupg.validate_uid_field(value, "name")


@pytest.mark.parametrize("email", ["user#project@copr.example.org", "infra-root@openstack.org",
                                   "@group#project@copr.example.org"])  # Copr's group keys: two "@" (issue 15)
def test_copr_style_emails_are_accepted(email):
    assert gnupg.validate_uid_field(email, "email") == email


@pytest.mark.parametrize("email", ["no-at-sign", "a b@c.d", "x@y\n%commit", "a@<b>", "(a)@b"])
def test_malformed_emails_are_rejected(email):
    with pytest.raises(gnupg.InvalidInput):
        gnupg.validate_uid_field(email, "email")


def test_overlong_field_is_rejected():
    with pytest.raises(gnupg.InvalidInput, match="longer than"):
        gnupg.validate_uid_field("x" * 300, "comment")


def test_field_length_is_counted_in_utf8_bytes_and_capped_at_what_a_batch_line_holds():
    assert gnupg.validate_uid_field(u"\u00e9" * 128, "name") == u"\u00e9" * 128  # 256 bytes
    with pytest.raises(gnupg.InvalidInput, match="longer than 256 bytes"):
        gnupg.validate_uid_field(u"\u00e9" * 129, "name")
    with pytest.raises(gnupg.InvalidInput, match="longer than 1000 bytes"):
        gnupg.validate_uid_field("x" * 1001, "name", max_length=5000)  # gpg: "line too long"


@pytest.mark.parametrize("value", [u"a\u202eb", u"a\u200bb", u"a\u0085b", u"a\uff1cb", u"a\u2039b", u"a\u2985b",
                                   u"a\u207db"])
def test_deceptive_characters_are_rejected(value):
    with pytest.raises(gnupg.InvalidInput, match="U\\+"):
        gnupg.validate_uid_field(value, "name")


@pytest.mark.parametrize("given,expected", [
    (0, "0"), ("never", "0"), (None, "0"), (30, "30d"), ("30", "30d"), ("2Y", "2y"), ("7m", "7m"),
    ("2027-02-01", "2027-02-01"),
])
def test_expiry_forms(given, expected):
    assert gnupg.parse_expires(given) == expected


@pytest.mark.parametrize("given", ["-1", "1x", "2027-13-01", "tomorrow", True, -5])
def test_bad_expiry_forms(given):
    with pytest.raises(gnupg.InvalidInput):
        gnupg.parse_expires(given)


def test_expires_to_epoch_counts_like_gpg():
    now = 1_700_000_000
    assert gnupg.expires_to_epoch("2w", now=now) == now + 14 * 86400
    assert gnupg.expires_to_epoch("never", now=now) is None


def test_homedir_is_created_private(tmp_path):
    path = tmp_path / "a" / "b"
    gnupg.GnuPG(str(path))
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o700


def test_unsupported_algorithm_never_reaches_gpg(gpg):
    with pytest.raises(gnupg.InvalidInput, match="unsupported algorithm"):
        gpg.generate_key("Name", "n@example.org", algorithm="dsa1024")
    assert gpg.list_keys() == []


def test_listing_reports_uids_usage_and_expiry(gpg, protected_key):
    fpr, sub = protected_key
    key = gpg.get_key("layer@example.org")
    assert key.fingerprint == fpr
    assert key.uids == ["Layer Test (unit) <layer@example.org>"]
    assert key.usage == ["cert"]
    assert key.algorithm == "ed25519"
    assert 360 * 86400 < key.expires - time.time() < 370 * 86400
    assert [s.fingerprint for s in key.signing_subkeys()] == [sub]
    assert key.secret_present is True
    assert gpg.get_key(sub).fingerprint == fpr  # a subkey fingerprint selects its primary
    assert gpg.get_key(fpr[-16:]).fingerprint == fpr


def test_wrong_passphrase_is_reported_as_such(gpg, protected_key):
    fpr, _sub = protected_key
    with pytest.raises(gnupg.BadPassphrase):
        gpg.sign(b"data", [fpr], passphrase="wrong")


def test_subkey_only_export_leaves_primary_as_stub(gpg, protected_key, tmp_path):
    fpr, sub = protected_key
    exported = gpg.export_secret_subkeys([sub], passphrase=PASSPHRASE)
    other = gnupg.GnuPG(str(tmp_path / "other"))
    try:
        assert other.import_keys(exported) == [fpr]
        key = other.get_key(fpr, secret=True)
        assert key.secret_present is False
        assert [s.secret_present for s in key.subkeys] == [True]
    finally:
        other.kill_agent()


def test_detached_signature_verifies_and_tampering_does_not(gpg, protected_key, tmp_path):
    fpr, _sub = protected_key
    data = tmp_path / "artifact.tar.gz"
    data.write_bytes(b"release tarball")
    signature = tmp_path / "artifact.tar.gz.asc"
    signature.write_bytes(gpg.sign(data.read_bytes(), [fpr], passphrase=PASSPHRASE))
    assert gpg.verify(str(signature), str(data)) == [fpr]
    data.write_bytes(b"release tarball, altered")
    with pytest.raises(gnupg.GpgError, match="does not verify"):
        gpg.verify(str(signature), str(data))


def test_keys_expiring_within_window(gpg, protected_key):
    fpr, _sub = protected_key
    assert [k.fingerprint for k in gpg.keys_expiring_within(400)] == [fpr]
    assert gpg.keys_expiring_within(100) == []


def test_delete_removes_public_and_secret(gpg, protected_key):
    fpr, _sub = protected_key
    gpg.delete_key(fpr)
    assert gpg.list_keys() == []
    with pytest.raises(gnupg.KeyNotFound):
        gpg.delete_key(fpr)


def test_private_file_is_0600_and_shred_removes_tree(tmp_path):
    target = tmp_path / "secret.key"
    gnupg.write_private_file(str(target), b"material")
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o600
    gnupg.shred_tree(str(tmp_path))
    assert not tmp_path.exists()
