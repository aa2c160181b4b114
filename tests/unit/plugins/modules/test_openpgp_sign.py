# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_sign against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_sign


def test_detached_signature_once(run, gpg, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    src = tmp_path / "release.tar.gz"
    src.write_bytes(b"\x1f\x8b pretend tarball")
    dest = str(tmp_path / "release.tar.gz.asc")
    checked = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr], passphrase=passphrase,
                  check_mode=True)
    assert checked["changed"] is True and not os.path.exists(dest)
    done = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr], passphrase=passphrase, diff=True)
    assert done["changed"] is True and done["signers"] == [fpr]
    assert gpg.verify(dest, str(src)) == [fpr]
    assert passphrase not in str(done)
    assert run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr])["changed"] is False
    # New content: the old signature no longer verifies, so it is signed again.
    src.write_bytes(b"another tarball")
    assert run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr],
               passphrase=passphrase)["changed"] is True
    assert gpg.verify(dest, str(src)) == [fpr]


def test_clearsigned_announcement_by_two_keys(run, gpg, homedir, protected_key, passphrase, tmp_path):
    old, _sub = protected_key
    new = gpg.generate_key("Unit Signer", "signer@example.org", comment="cycle 2", algorithm="ed25519",
                           usage=["cert", "sign"], expires="1y", passphrase=passphrase)
    src = tmp_path / "announce.txt"
    src.write_text("The signing key changes.\n- old key retires\nFrom the infra team\n")
    dest = str(tmp_path / "announce.txt.asc")
    one = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[old], signature_mode="clearsign",
              passphrase=passphrase)
    assert one["changed"] is True
    both = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[old, new], signature_mode="clearsign",
               passphrase=passphrase, diff=True)
    assert both["changed"] is True and both["diff"]["before"]["signers"] == [old]
    text, signers = gpg.decrypt_clearsigned(open(dest, "rb").read())
    assert sorted(signers) == sorted([old, new]) and b"old key retires" in text
    assert run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[new, old], signature_mode="clearsign")["changed"] is False


def test_failures(run, gpg, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    src = tmp_path / "file"
    src.write_bytes(b"data")
    dest = str(tmp_path / "file.sig")
    wrong = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr], passphrase="wrong")
    assert wrong["failed"] is True and "passphrase" in wrong["msg"] and not os.path.exists(dest)
    unknown = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=["ghost@example.org"])
    assert unknown["failed"] is True and "no key matches" in unknown["msg"]
    public_only = gpg.generate_key("Cert Only", "cert@example.org", algorithm="ed25519", usage=["cert"])
    cannot = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[public_only])
    assert cannot["failed"] is True and "no usable signing key" in cannot["msg"]
    missing = run(openpgp_sign, homedir=homedir, src=str(tmp_path / "nope"), dest=dest, key=[fpr])
    assert missing["failed"] is True and "not a readable file" in missing["msg"]
