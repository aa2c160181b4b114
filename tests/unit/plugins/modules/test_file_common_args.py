# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules that write a file take Ansible's file common arguments (owner, group, mode,
SELinux) and write through atomic_move, like community.crypto's modules do."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import os
import pwd
import stat

import pytest

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_export, openpgp_revocation

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")

NOBODY = "nobody"
NOGROUP = grp.getgrgid(pwd.getpwnam(NOBODY).pw_gid).gr_name


def _attributes(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


def test_public_export_owner_group_mode(run, homedir, protected_key, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "public.asc")
    first = run(openpgp_export, homedir=homedir, key=fpr, path=path, owner=NOBODY, group=NOGROUP, mode="0640")
    assert first["changed"] is True
    assert _attributes(path) == (NOBODY, NOGROUP, 0o640)
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, owner=NOBODY, group=NOGROUP,
               mode="0640")["changed"] is False

    # Only an attribute differs: check mode reports it and changes nothing, a real run applies it.
    checked = run(openpgp_export, homedir=homedir, key=fpr, path=path, mode="u=rw,g=,o=", check_mode=True)
    assert checked["changed"] is True and _attributes(path)[2] == 0o640
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path, mode="u=rw,g=,o=")["changed"] is True
    assert _attributes(path)[2] == 0o600
    # No mode given: the kind's default (0644 for a public key).
    assert run(openpgp_export, homedir=homedir, key=fpr, path=path)["changed"] is True
    assert _attributes(path)[2] == 0o644


def test_secret_export_replacing_a_world_readable_file_ends_owner_only(
        run, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    path = tmp_path / "subkey.asc"
    path.write_text("an older, public file\n")
    os.chmod(str(path), 0o644)
    result = run(openpgp_export, homedir=homedir, key=fpr, kind="secret_subkeys", passphrase=passphrase,
                 path=str(path))
    assert result["changed"] is True
    assert _attributes(str(path))[2] == 0o600
    assert b"PRIVATE KEY BLOCK" in path.read_bytes()
    # No temporary file left next to it.
    assert sorted(os.listdir(str(tmp_path))) == ["gnupg", "subkey.asc"]


def test_revocation_owner_and_default_mode(run, homedir, protected_key, passphrase, tmp_path):
    fpr, _sub = protected_key
    path = str(tmp_path / "revoke.asc")
    first = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, passphrase=passphrase, owner=NOBODY)
    assert first["changed"] is True
    assert _attributes(path)[0] == NOBODY and _attributes(path)[2] == 0o600
    again = run(openpgp_revocation, homedir=homedir, key=fpr, path=path, owner=NOBODY)
    assert again["changed"] is False
    # The owner changes back: only attributes, no new certificate, so no passphrase is needed.
    assert run(openpgp_revocation, homedir=homedir, key=fpr, path=path, owner="root")["changed"] is True
    assert _attributes(path)[0] == "root"


@pytest.mark.parametrize("bad", [dict(mode="0o9"), dict(mode="u=rw,g=q"), dict(owner="no-such-user-pkgsign"),
                                 dict(group="no-such-group-pkgsign")])
def test_unusable_file_arguments_fail_before_the_old_file_is_replaced(run, homedir, protected_key, tmp_path, bad):
    """A mode, owner or group that cannot be applied fails the task with the reason and leaves the
    existing file byte-identical (it was replaced first and the task failed after)."""
    fpr, _sub = protected_key
    path = tmp_path / "public.asc"
    path.write_bytes(b"the operator's previous export\n")
    before = os.stat(str(path))
    result = run(openpgp_export, homedir=homedir, key=fpr, path=str(path), **bad)
    assert result.get("failed") is True and list(bad)[0] in result["msg"], result
    assert path.read_bytes() == b"the operator's previous export\n"
    assert os.stat(str(path)).st_ino == before.st_ino
    assert sorted(os.listdir(str(tmp_path))) == ["gnupg", "public.asc"]
