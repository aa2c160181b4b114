# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pkgsign-admin backup|restore: an encrypted backup taken while the server makes keys, restored
into a fresh instance where every backed-up key signs (verified by stock gpg) and every token
works; the archive reveals nothing without the operator's key; bad archives are refused."""

import io
import json
import os
import tarfile
import threading

import pytest

from conftest import assert_consistent
from pkgsign_testlib import run_admin
from pkgsign import _gnupg

OPERATOR_PASSPHRASE = "operator-offline-passphrase"


@pytest.fixture
def operator(tmp_path):
    """The operator's key pair: cert-only ed25519 primary with a cv25519 encryption subkey."""
    home = _gnupg.GnuPG(str(tmp_path / "op"))
    fpr = home.generate_key("Backup Operator", "backup@example.org", algorithm="ed25519", usage=["cert"],
                            passphrase=OPERATOR_PASSPHRASE)
    home.add_subkey(fpr, "ed25519", "encrypt", passphrase=OPERATOR_PASSPHRASE)
    home.forget_passphrases()
    public = tmp_path / "operator.asc"
    public.write_bytes(home.export_public(fpr))
    yield home, str(public)
    home.kill_agent()


def _sign_and_verify(inst, key, token, verifier, data):
    proc = inst.sign("-u", key, "-d", str(data), token=token)
    assert proc.returncode == 0, (key, token, proc.stderr)
    proc = inst.sign("-u", key, "-p", token=token)
    assert proc.returncode == 0
    verifier.import_keys(proc.stdout)
    assert verifier.verify(str(data) + ".asc", str(data))
    os.unlink(str(data) + ".asc")


def test_backup_under_load_restores_every_key_and_token(new_instance, operator, tmp_path):
    operator_home, operator_public = operator
    source = new_instance("source")
    source.start()
    source.add_token("releng", ["sign", "keygen"], ["*"])
    source.add_token("copr", ["sign"], ["*#*@copr.test"])
    keys = []
    for number, algorithm in enumerate(["ed25519", "ed25519", "rsa2048"]):
        email = "proj%d#b@copr.test" % number
        body = {"name_real": "b", "name_email": email, "algorithm": algorithm}
        status, _ignored, body = source.request("POST", "/gen_key", body)
        assert status == 201, body
        keys.append(email)
    # A passphrase-protected copr-keygen key, so the phrase files travel too.
    copr_home = _gnupg.GnuPG(str(tmp_path / "copr-gnupg"))
    copr_home.generate_key("legacy", "legacy#old@copr.test", algorithm="ed25519", passphrase="legacy-phrase")
    phrases = tmp_path / "copr-phrases"
    phrases.mkdir(mode=0o700)
    (phrases / "legacy#old@copr.test").write_text("legacy-phrase\n")
    run_admin("import-copr", "--config", source.config, "--gnupghome", copr_home.homedir, "--phrases", str(phrases))
    copr_home.kill_agent()
    keys.append("legacy#old@copr.test")

    # Back up while other requests keep making keys.
    stop, made = threading.Event(), []

    def keep_generating():
        number = 0
        while not stop.is_set():
            number += 1
            body = {"name_real": "load", "name_email": "load%d#b@copr.test" % number}
            status, _ignored, body = source.request("POST", "/gen_key", body)
            if status == 201:
                made.append(body["name_email"])

    worker = threading.Thread(target=keep_generating)
    worker.start()
    try:
        backups = tmp_path / "backups"
        result = run_admin("backup", "--config", source.config, "--recipient-file", operator_public,
                           "--output-dir", str(backups), "--keep", "2")
    finally:
        stop.set()
        worker.join()
    archive = result.stdout.strip()
    assert os.path.dirname(archive) == str(backups) and "wrote" in result.stderr
    pinned = tmp_path / "backup-key.asc"  # the operator pins the backup key off the signer
    pinned.write_text(run_admin("backup-key", "--config", source.config).stdout)
    assert os.stat(archive).st_mode & 0o777 == 0o600 and os.stat(str(backups)).st_mode & 0o777 == 0o700
    ciphertext = open(archive, "rb").read()
    for secret in [source.tokens["releng"], "legacy-phrase", "PRIVATE KEY", "proj0#b", "tokens"]:
        assert secret.encode() not in ciphertext
    # The service keyring never saw the operator key.
    assert "backup@example.org" not in str([k.uids for k in source.gnupg().list_keys()])

    # Restore into a fresh instance (its own paths), with the operator's key.
    target = new_instance("target")
    wrong = run_admin("restore", "--config", target.config, "--archive", archive, "--gnupghome",
                      operator_home.homedir, "--backup-key", str(pinned), "--passphrase-stdin",
                      input="not-the-passphrase\n", check=False)
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr and wrong.stderr.count("\n") == 1
    operator_home.forget_passphrases()
    restored = run_admin("restore", "--config", target.config, "--archive", archive, "--gnupghome",
                         operator_home.homedir, "--backup-key", str(pinned), "--passphrase-stdin",
                         input=OPERATOR_PASSPHRASE + "\n")
    assert "restored" in restored.stderr
    manifest_keys = len(json.loads(_plaintext(operator_home, archive, str(pinned)).extractfile("MANIFEST.json").read())["keys"])
    assert manifest_keys >= len(keys)
    again = run_admin("restore", "--config", target.config, "--archive", archive, "--gnupghome",
                      operator_home.homedir, "--backup-key", str(pinned), "--passphrase-stdin",
                      input=OPERATOR_PASSPHRASE + "\n", check=False)
    assert again.returncode == 2 and "already holds keys" in again.stderr

    target.tokens.update(source.tokens)  # the restored tokens file holds the source's tokens
    for token_id in ("client", "releng", "copr"):
        path = os.path.join(target.root, token_id + ".token")
        _gnupg.write_private_file(path, (source.tokens[token_id] + "\n").encode())
    target.start()
    metadata = assert_consistent(target)
    assert set(keys) <= set(metadata)
    data = tmp_path / "artifact.txt"
    data.write_text("restored signer\n")
    with _gnupg.TemporaryGnuPG() as verifier:
        for key in keys:
            for token in ("client", "releng", "copr"):
                _sign_and_verify(target, key, token, verifier, data)
    verify = run_admin("audit", "verify", "--config", target.config, check=False)
    assert verify.returncode == 0, verify.stdout
    # The playbook's path: decrypt on the operator's machine, restore the plaintext archive (still
    # signed inside by the backup key) on a host that holds the pinned key but no operator key.
    plain = tmp_path / "plain.tar.gz.sig"
    operator_home.forget_passphrases()
    run_admin("backup-decrypt", "--archive", archive, "--gnupghome", operator_home.homedir, "--output", str(plain),
              "--backup-key", str(pinned), "--passphrase-stdin", input=OPERATOR_PASSPHRASE + "\n")
    assert os.stat(str(plain)).st_mode & 0o777 == 0o600
    third = new_instance("third")
    run_admin("restore", "--config", third.config, "--archive", str(plain), "--backup-key", str(pinned))
    assert assert_consistent(third) == metadata
    # Keys made during the backup are either in it, complete, or absent: never half.
    print("backup under load: %d keys made meanwhile, %d in the archive, %d restored"
          % (len(made), manifest_keys, len(metadata)))


def _plaintext(operator_home, archive, pinned):
    from pkgsign.backup import verify_archive, verify_plaintext

    operator_home.forget_passphrases()
    data = operator_home.decrypt(verify_archive(open(archive, "rb").read(), pinned), passphrase=OPERATOR_PASSPHRASE)
    data = verify_plaintext(data, pinned)
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


@pytest.fixture
def signed_by_pinned(tmp_path):
    """sign(data) -> path of ``data`` signed by a key pinned as the backup key, and that pin: what
    restore checks behind the signature (a backup key that signed something it should not have)."""
    with _gnupg.TemporaryGnuPG() as signer:
        fpr = signer.generate_key("pkgsign backups", "backup@pkgsign.invalid", algorithm="ed25519",
                                  usage=("cert",), subkey_usage=("sign",))
        pin = tmp_path / "pinned.asc"
        pin.write_bytes(signer.export_public(fpr))

        def sign(data):
            path = tmp_path / "signed.bin"
            path.write_bytes(signer.sign(data, [fpr], mode="inline", armor=False))
            return str(path), str(pin)

        yield sign


@pytest.mark.parametrize("member", ["../escape", "/etc/cron.d/evil", "gnupg/../../escape", "unexpected.txt",
                                    "link"])
def test_restore_refuses_archives_that_reach_outside(new_instance, tmp_path, member, signed_by_pinned):
    target = new_instance("target")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        manifest = json.dumps({"format": 1, "keys": []}).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            archive.addfile(info)
        else:
            info.size = 4
            archive.addfile(info, io.BytesIO(b"evil"))
    path, pin = signed_by_pinned(buffer.getvalue())
    result = run_admin("restore", "--config", target.config, "--archive", path, "--backup-key", pin, check=False)
    assert result.returncode == 2 and ("refusing" in result.stderr or "unexpected" in result.stderr), result.stderr
    assert not os.path.exists(os.path.join(os.path.dirname(target.root), "escape"))


def test_restore_refuses_garbage_with_one_line(new_instance, tmp_path, signed_by_pinned):
    target = new_instance("target")
    path = tmp_path / "garbage"
    path.write_bytes(b"\x1f\x8b not really gzip")
    signed, pin = signed_by_pinned(b"\x1f\x8b not really gzip")
    for archive, reason in ((str(path), "bare tar"), (signed, "damaged"), (pin, "not signed")):
        result = run_admin("restore", "--config", target.config, "--archive", archive, "--backup-key", pin,
                           check=False)
        assert result.returncode == 2 and reason in result.stderr and result.stderr.count("\n") == 1, result.stderr
