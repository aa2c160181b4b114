# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_revocation against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import subprocess

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_revocation
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

WHY = "To be used if the key cannot be recovered."


def _unguarded(path):
    """The documented way to use a stored certificate: delete the colon before the armor line."""
    proc = subprocess.run(["sed", "s/^:-----BEGIN/-----BEGIN/", path], stdout=subprocess.PIPE, check=True)
    return proc.stdout


def test_certificate_really_revokes_and_is_idempotent(run, gpg, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "revoke.asc")
    checked = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY,
                  passphrase=passphrase, check_mode=True)
    assert checked["changed"] is True and not os.path.exists(path)

    first = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY, passphrase=passphrase,
                diff=True)
    assert first["changed"] is True and first["reason"] == "compromised"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first["diff"]["after"]["description"] == WHY
    assert passphrase not in str(first)
    details = gpg.revocation_details(_unguarded(path))
    assert details == {"issuer": fpr, "reason": "compromised", "description": WHY}
    assert gpg.get_key(fpr).revoked is False  # writing the certificate does not revoke

    # Importing it, once the guard is removed, revokes the key (on a copy).
    with gnupg.TemporaryGnuPG() as copy:
        copy.import_keys(gpg.export_public(fpr))
        copy.import_keys(_unguarded(path))
        assert copy.get_key(fpr).revoked is True

    assert run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY)["changed"] is False
    changed_reason = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, reason="superseded",
                         passphrase=passphrase)
    assert changed_reason["changed"] is True
    assert gpg.revocation_details(_unguarded(path))["reason"] == "superseded"


def test_wrong_passphrase_and_unknown_key(run, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "revoke.asc")
    wrong = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, passphrase="nope")
    assert wrong["failed"] is True and "passphrase" in wrong["msg"] and not os.path.exists(path)
    unknown = run(openpgp_revocation, homedir=homedir, key="0123456789ABCDEF", path=path)
    assert unknown["failed"] is True and "no key matches" in unknown["msg"]


def test_foreign_file_is_replaced(run, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    path = tmp_path / "revoke.asc"
    path.write_text("not a certificate\n")
    result = run(openpgp_revocation, homedir=homedir, key=fpr, path=str(path), passphrase=passphrase)
    assert result["changed"] is True and b"BEGIN PGP" in path.read_bytes()


def test_certificate_of_another_key_is_never_overwritten(run, gpg, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    other = gpg.generate_key("Other", "other@example.org", algorithm="ed25519", usage=["cert"])
    path = tmp_path / "revoke.asc"
    run(openpgp_revocation, homedir=homedir, key=other, path=str(path))
    kept = path.read_bytes()
    result = run(openpgp_revocation, homedir=homedir, key=fpr, path=str(path), passphrase=passphrase)
    assert result["failed"] is True and "refusing to overwrite" in result["msg"] and other in result["msg"]
    assert path.read_bytes() == kept


def test_import_guard_plain_import_does_not_revoke(run, gpg, homedir, protected_key, passphrase, tmp_path):
    """gpg's own guard: a plain `gpg --import` of the stored file revokes nothing; with the colon
    deleted (the runbook's procedure) it revokes."""
    fpr, _sub = protected_key
    path = str(tmp_path / "revoke.asc")
    made = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY, passphrase=passphrase)
    assert made["import_guard"] is True
    text = open(path, "rb").read()
    assert b"\n:-----BEGIN PGP PUBLIC KEY BLOCK-----\n" in text and fpr.encode() in text.split(b":-----")[0]
    assert b"\n-----BEGIN PGP" not in text and not text.startswith(b"-----BEGIN")
    with gnupg.TemporaryGnuPG() as copy:
        copy.import_keys(gpg.export_public(fpr))
        plain = subprocess.run(["gpg", "--homedir", copy.homedir, "--batch", "--import", path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        assert plain.returncode != 0, plain.stderr
        assert copy.get_key(fpr).revoked is False
        unguarded = tmp_path / "revoke-unguarded.asc"
        unguarded.write_bytes(_unguarded(path))
        subprocess.run(["gpg", "--homedir", copy.homedir, "--batch", "--import", str(unguarded)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        assert copy.get_key(fpr).revoked is True
    # Same certificate, guard switched: rewritten without a new certificate (no passphrase).
    plain_run = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY, import_guard=False)
    assert plain_run["changed"] is True
    assert open(path, "rb").read() == b"-----BEGIN" + text.split(b"\n:-----BEGIN", 1)[1]
    assert open(path, "rb").read().startswith(b"-----BEGIN PGP")
    assert gpg.revocation_details(open(path, "rb").read())["description"] == WHY
    regarded = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY)
    assert regarded["changed"] is True and open(path, "rb").read() == text
    assert run(openpgp_revocation, homedir=homedir, key=fpr, path=path, description=WHY)["changed"] is False
