# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_sign against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import os
import pwd
import stat

import pytest

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_sign

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")


def _attributes(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


@pytest.fixture
def release(tmp_path):
    src = tmp_path / "release.tar.gz"
    src.write_bytes(b"\x1f\x8b pretend tarball")
    return str(src), str(tmp_path / "release.tar.gz.asc")


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


@needs_root
def test_owner_group_mode_applied_and_idempotent(run, gpg, homedir, protected_key, passphrase, release):
    fpr, _sub = protected_key
    src, dest = release
    nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    task = dict(homedir=homedir, src=src, dest=dest, key=[fpr], owner="nobody", group=nogroup, mode="0640")
    first = run(openpgp_sign, passphrase=passphrase, **task)
    assert first["changed"] is True and first["signature_mode"] == "detached"
    assert _attributes(dest) == ("nobody", nogroup, 0o640)
    assert gpg.verify(dest, src) == [fpr]
    # Same signature, same attributes: nothing to do, and no passphrase needed to find that out.
    again = run(openpgp_sign, **task)
    assert again["changed"] is False and again["mode"] == "0640" and again["owner"] == "nobody"


def test_check_mode_reports_an_attribute_change_without_making_it(run, gpg, homedir, protected_key, passphrase,
                                                                  release):
    fpr, _sub = protected_key
    src, dest = release
    assert run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], passphrase=passphrase)["changed"] is True
    assert _attributes(dest)[2] == 0o644  # the default, as before the file arguments
    signature = open(dest, "rb").read()
    checked = run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], mode="u=rw,g=r,o=", check_mode=True)
    assert checked["changed"] is True and _attributes(dest)[2] == 0o644
    done = run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], mode="u=rw,g=r,o=")
    assert done["changed"] is True and _attributes(dest)[2] == 0o640
    # Only the mode changed: the signature is the same bytes, not a new one.
    assert open(dest, "rb").read() == signature
    assert run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], mode="0640",
               check_mode=True)["changed"] is False


def test_deprecated_mode_clearsign_still_clearsigns_and_warns(run, gpg, homedir, protected_key, passphrase,
                                                              tmp_path):
    fpr, _sub = protected_key
    src = tmp_path / "announce.txt"
    src.write_text("The signing key changes.\n")
    dest = str(tmp_path / "announce.txt.asc")
    result = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr], mode="clearsign",
                 passphrase=passphrase)
    assert result["changed"] is True and result["signature_mode"] == "clearsign"
    text, signers = gpg.decrypt_clearsigned(open(dest, "rb").read())
    assert signers == [fpr] and b"signing key changes" in text
    # The file mode is the default: "clearsign" was taken as the signature style, not as a mode.
    assert _attributes(dest)[2] == 0o644
    deprecations = result.get("deprecations", [])
    assert len(deprecations) == 1
    # ansible-core 2.19 nests message and collection; older versions have them at the top.
    deprecation = deprecations[0]
    message = deprecation.get("msg") or deprecation["event"]["msg"]
    collection = deprecation.get("collection_name") or deprecation["deprecator"]["resolved_name"]
    assert "signature_mode=clearsign" in message and collection == "pkgsign.signer"
    assert deprecation["version"] == "1.0.0"
    # The new spelling finds the same clearsigned file up to date and adds no deprecation (Ansible
    # collects them per process, so the one from the run above is still listed here).
    same = run(openpgp_sign, homedir=homedir, src=str(src), dest=dest, key=[fpr], signature_mode="clearsign")
    assert same["changed"] is False and same.get("deprecations", []) == deprecations


def test_signature_mode_and_a_deprecated_mode_together_fail(run, gpg, homedir, protected_key, release):
    fpr, _sub = protected_key
    src, dest = release
    both = run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], signature_mode="detached",
               mode="clearsign")
    assert both["failed"] is True
    assert "signature_mode" in both["msg"] and "mode=clearsign" in both["msg"] and not os.path.exists(dest)


def test_existing_dest_replaced_atomically_never_world_readable(run, gpg, homedir, protected_key, passphrase,
                                                                release, monkeypatch):
    fpr, _sub = protected_key
    src, dest = release
    with open(dest, "wb") as handle:
        handle.write(b"an old signature\n")
    os.chmod(dest, 0o644)
    old_inode = os.stat(dest).st_ino
    renames = []
    real_rename = os.rename

    # A spy, not a stub: it records what the two files look like at the moment of the move and moves.
    def rename(source, target):
        renames.append((os.path.basename(os.fsdecode(source)), stat.S_IMODE(os.stat(source).st_mode),
                        stat.S_IMODE(os.stat(target).st_mode) if os.path.exists(target) else None))
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    result = run(openpgp_sign, homedir=homedir, src=src, dest=dest, key=[fpr], passphrase=passphrase, mode="0600")
    monkeypatch.undo()
    assert result["changed"] is True and gpg.verify(dest, src) == [fpr]
    assert os.stat(dest).st_ino != old_inode
    assert _attributes(dest)[2] == 0o600
    moves = [entry for entry in renames if entry[0].startswith(".pkgsign-")]
    assert len(moves) == 1
    _name, new_mode, old_mode = moves[0]
    # Neither the new file nor the one it replaces is readable by others while it is moved in.
    assert new_mode & 0o077 == 0 and old_mode & 0o077 == 0
    # No temporary file left next to it.
    assert sorted(name for name in os.listdir(os.path.dirname(dest)) if name.startswith(".")) == []
