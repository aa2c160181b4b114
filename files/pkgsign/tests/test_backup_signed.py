"""Backups are signed by the signer's backup key and restore checks the signature against the key
the operator pinned before decrypting anything (issue 14). An attacker who knows the operators'
public keys plants an archive encrypted to them (unsigned, or signed by a key of their own) with
their own token in it: refused in one line, nothing decrypted or installed. The plaintext that
`backup-decrypt` hands to the signer is signed too (inside the encryption), and `restore --archive`
on the signer installs only what the pinned key signed there: a bare tar, or one signed by another
key, or tampered, is refused and audited. Real pkgsign-admin, real gpg."""

import io
import json
import os
import tarfile

import pytest

from conftest import run_admin
from pkgsign import _gnupg
from pkgsign.tokens import add_token, hash_secret, new_secret


@pytest.fixture
def setup(tmp_path):
    operator = _gnupg.GnuPG(str(tmp_path / "op"))
    fpr = operator.generate_key("Backup Operator", "backup@example.org", algorithm="ed25519", usage=["cert"])
    operator.add_subkey(fpr, "ed25519", "encrypt")
    (tmp_path / "op.asc").write_bytes(operator.export_public(fpr))
    run_admin("init", str(tmp_path / "src"), "--algorithm", "ed25519")
    source = str(tmp_path / "src" / "pkgsign.conf")
    from pkgsign.config import load_config

    add_token(load_config(source).tokens_file, "genuine", ["sign"], ["*"])
    archive = run_admin("backup", "--config", source, "--recipient-file", str(tmp_path / "op.asc"),
                        "--output-dir", str(tmp_path / "backups")).stdout.strip()
    pinned = tmp_path / "backup-key.asc"
    pinned.write_text(run_admin("backup-key", "--config", source).stdout)
    run_admin("init", str(tmp_path / "dst"), "--algorithm", "ed25519")
    target = load_config(str(tmp_path / "dst" / "pkgsign.conf"))
    yield {"operator": operator, "archive": archive, "pinned": str(pinned), "target": target,
           "recipient": str(tmp_path / "op.asc"), "tmp": tmp_path}
    operator.kill_agent()
    for home in (tmp_path / "src" / "audit-gnupg", tmp_path / "src" / "gnupg"):
        if home.is_dir():
            _gnupg.GnuPG(str(home), create=False).kill_agent()


def _restore(setup, archive, *extra):
    return run_admin("restore", "--config", setup["target"].path, "--archive", archive,
                     "--gnupghome", setup["operator"].homedir, *extra, check=False)


def _genuine_plaintext(setup):
    """The genuine tar archive (the content of the inner signed message)."""
    from pkgsign.backup import verify_archive, verify_plaintext

    inner = setup["operator"].decrypt(verify_archive(open(setup["archive"], "rb").read(), setup["pinned"]))
    return verify_plaintext(inner, setup["pinned"])


def _planted_plaintext(setup):
    """What an attacker would put in: the genuine layout with a token of their own."""
    genuine = _genuine_plaintext(setup)
    source = tarfile.open(fileobj=io.BytesIO(genuine), mode="r:gz")
    buffer = io.BytesIO()
    planted_tokens = json.dumps({"tokens": {"planted": {"sha256": hash_secret(new_secret()), "scopes": ["sign"],
                                                        "keys": ["*"]}}}).encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as out:
        for member in source.getmembers():
            if member.name == "tokens.json":
                member.size = len(planted_tokens)
                out.addfile(member, io.BytesIO(planted_tokens))
            else:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    return buffer.getvalue()


def _nothing_installed(setup):
    target = setup["target"]
    if os.path.isdir(target.metadata_dir):
        assert not [n for n in os.listdir(target.metadata_dir) if n.endswith(".json")]
    tokens = open(target.tokens_file).read() if os.path.exists(target.tokens_file) else ""
    assert "planted" not in tokens and "genuine" not in tokens


def _last_audit_line(setup):
    with open(setup["target"].audit_log, encoding="utf-8") as handle:
        return json.loads(handle.read().splitlines()[-1])


def test_a_genuine_backup_restores_with_the_pinned_key(setup):
    result = _restore(setup, setup["archive"], "--backup-key", setup["pinned"])
    assert result.returncode == 0, result.stderr
    assert "genuine" in open(setup["target"].tokens_file).read()
    line = _last_audit_line(setup)  # the restore is the first line after the restored chain
    assert line["operation"] == "restore" and line["result"] == "ok" and line["verified_with"] == setup["pinned"]
    verify = run_admin("audit", "verify", "--config", setup["target"].path, check=False)
    assert verify.returncode == 0, verify.stdout


def test_restore_without_a_pinned_key_is_refused(setup):
    result = _restore(setup, setup["archive"])
    assert result.returncode == 2 and "--backup-key" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    _nothing_installed(setup)


def test_an_unsigned_archive_encrypted_to_the_operators_is_refused(setup):
    with _gnupg.TemporaryGnuPG() as attacker:
        planted = attacker.encrypt(_planted_plaintext(setup), [setup["recipient"]])
    path = setup["tmp"] / "planted.tar.gz.gpg"
    path.write_bytes(planted)
    before = os.listdir(setup["target"].state_dir)
    result = _restore(setup, str(path), "--backup-key", setup["pinned"])
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    _nothing_installed(setup)
    assert set(os.listdir(setup["target"].state_dir)) - set(before) <= {"audit.log", "audit.log.head"}
    line = _last_audit_line(setup)
    assert line["operation"] == "restore" and line["result"] == "refused" and "not signed" in line["reason"]
    out = setup["tmp"] / "out.tar.gz"
    result = run_admin("backup-decrypt", "--archive", str(path), "--gnupghome", setup["operator"].homedir,
                       "--output", str(out), "--backup-key", setup["pinned"], check=False)
    assert result.returncode == 2 and "not signed" in result.stderr and not out.exists()


def test_an_archive_signed_by_another_key_is_refused(setup):
    with _gnupg.TemporaryGnuPG() as attacker:
        fpr = attacker.generate_key("pkgsign backups", "backup@pkgsign.invalid", algorithm="ed25519",
                                    usage=("cert",), subkey_usage=("sign",))
        ciphertext = attacker.encrypt(_planted_plaintext(setup), [setup["recipient"]])
        planted = attacker.sign(ciphertext, [fpr], mode="inline", armor=False)
        other_pin = setup["tmp"] / "attacker.asc"
        other_pin.write_bytes(attacker.export_public(fpr))
    path = setup["tmp"] / "planted.tar.gz.gpg"
    path.write_bytes(planted)
    result = _restore(setup, str(path), "--backup-key", setup["pinned"])
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr, result.stderr
    _nothing_installed(setup)
    # and the genuine archive does not verify against the attacker's key either
    result = _restore(setup, setup["archive"], "--backup-key", str(other_pin))
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr
    _nothing_installed(setup)


def test_a_genuine_signature_over_other_bytes_is_refused(setup):
    """The genuine signed message with one byte flipped (in the content, in the signature) or cut short."""
    data = open(setup["archive"], "rb").read()
    flips = [200, len(data) // 2, len(data) - 10]
    for mutated in [data[:at] + bytes([data[at] ^ 1]) + data[at + 1:] for at in flips] + [data[:-50]]:
        path = setup["tmp"] / "mutated.gpg"
        path.write_bytes(mutated)
        result = _restore(setup, str(path), "--backup-key", setup["pinned"])
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        _nothing_installed(setup)


# -- the signer's door: restore --archive PLAINTEXT (what backup-decrypt wrote) ------------------

def _decrypt(setup, archive, output):
    return run_admin("backup-decrypt", "--archive", archive, "--gnupghome", setup["operator"].homedir,
                     "--output", str(output), "--backup-key", setup["pinned"], check=False)


def _restore_plain(setup, archive, *extra):
    return run_admin("restore", "--config", setup["target"].path, "--archive", str(archive), *extra, check=False)


def test_the_decrypted_archive_is_signed_inside_and_restores_without_the_operator_key(setup):
    output = setup["tmp"] / "plain.sig"
    result = _decrypt(setup, setup["archive"], output)
    assert result.returncode == 0 and "signed by the backup key inside" in result.stderr, result.stderr
    signed = output.read_bytes()
    assert signed[:2] != b"\x1f\x8b" and os.stat(str(output)).st_mode & 0o777 == 0o600
    # Stock gpg with only the pinned key agrees: a signed message by the backup key, its content the tar.
    with _gnupg.TemporaryGnuPG() as verifier:
        pinned = verifier.import_keys(open(setup["pinned"], "rb").read())
        checked = verifier.run(["--decrypt"], input=signed, check=False)
    assert checked.returncode == 0 and [f[-1] for f in checked.status_lines("VALIDSIG")] == pinned
    assert checked.stdout == _genuine_plaintext(setup)
    result = _restore_plain(setup, output, "--backup-key", setup["pinned"])
    assert result.returncode == 0 and "(inner)" in result.stderr, result.stderr
    assert "genuine" in open(setup["target"].tokens_file).read()
    assert output.read_bytes() == signed
    line = _last_audit_line(setup)
    assert line["operation"] == "restore" and line["result"] == "ok", line
    assert line["verified_with"] == setup["pinned"] and line["signatures"] == "inner", line
    verify = run_admin("audit", "verify", "--config", setup["target"].path, check=False)
    assert verify.returncode == 0, verify.stdout


def test_the_operator_key_door_checks_both_signatures(setup):
    result = _restore(setup, setup["archive"], "--backup-key", setup["pinned"])
    assert result.returncode == 0 and "(outer+inner)" in result.stderr, result.stderr
    assert _last_audit_line(setup)["signatures"] == "outer+inner"


def _attacker_signed(setup, data):
    """``data`` signed by a key of the attacker's that looks like a backup key."""
    with _gnupg.TemporaryGnuPG() as attacker:
        fpr = attacker.generate_key("pkgsign backups", "backup@pkgsign.invalid", algorithm="ed25519",
                                    usage=("cert",), subkey_usage=("sign",))
        return attacker.sign(data, [fpr], mode="inline", armor=False)


def test_the_signer_s_door_installs_nothing_the_pinned_key_did_not_sign_inside(setup):
    """Every way of handing the signer a plaintext: refused in one line, nothing installed, the
    refusal audited with its reason, the handed file left as it was."""
    genuine_signed = setup["tmp"] / "genuine.sig"
    assert _decrypt(setup, setup["archive"], genuine_signed).returncode == 0
    inner = genuine_signed.read_bytes()
    planted = _planted_plaintext(setup)
    with _gnupg.TemporaryGnuPG() as attacker:
        stored = attacker.run(["--store"], input=planted).stdout  # a literal packet, no signature
    flips = [40, len(inner) // 2, len(inner) - 10]
    cases = {
        "bare planted tar": (planted, ["--backup-key", setup["pinned"]], "bare tar"),
        "bare genuine tar": (_genuine_plaintext(setup), ["--backup-key", setup["pinned"]], "bare tar"),
        "bare tar, no key": (planted, [], "--backup-key"),
        "genuine signed, no key": (inner, [], "--backup-key"),
        "signed by another key": (_attacker_signed(setup, planted), ["--backup-key", setup["pinned"]], "not signed"),
        "unsigned literal": (stored, ["--backup-key", setup["pinned"]], "not signed"),
        "genuine then attacker's": (inner + _attacker_signed(setup, planted), ["--backup-key", setup["pinned"]],
                                    "not signed"),
        "attacker's then genuine": (_attacker_signed(setup, planted) + inner, ["--backup-key", setup["pinned"]],
                                    "not signed"),
        "genuine then literal": (inner + stored, ["--backup-key", setup["pinned"]], "not signed"),
        "literal then genuine": (stored + inner, ["--backup-key", setup["pinned"]], "not signed"),
        "cut short": (inner[:-40], ["--backup-key", setup["pinned"]], "not signed"),
        "encrypted backup without --gnupghome": (open(setup["archive"], "rb").read(),
                                                 ["--backup-key", setup["pinned"]], "not a tar archive"),
    }
    for at in flips:
        cases["byte %d flipped" % at] = (inner[:at] + bytes([inner[at] ^ 1]) + inner[at + 1:],
                                         ["--backup-key", setup["pinned"]], "")
    other_pin = setup["tmp"] / "other.asc"
    with _gnupg.TemporaryGnuPG() as other:
        fpr = other.generate_key("other", "other@example.org", algorithm="ed25519")
        other_pin.write_bytes(other.export_public(fpr))
    cases["genuine, pinned to another key"] = (inner, ["--backup-key", str(other_pin)], "not signed")
    for name, (data, extra, reason) in cases.items():
        path = setup["tmp"] / "handed.bin"
        path.write_bytes(data)
        for force in ([], ["--force"]):
            result = _restore_plain(setup, path, *(extra + force))
            assert result.returncode == 2, (name, result.stderr)
            assert result.stderr.count("\n") == 1 and reason in result.stderr, (name, result.stderr)
            _nothing_installed(setup)
            assert path.read_bytes() == data, name
            line = _last_audit_line(setup)
            assert line["operation"] == "restore" and line["result"] == "refused", (name, line)
            assert result.stderr.strip().endswith(line["reason"]), (name, line, result.stderr)


def test_an_archive_of_the_previous_format_restores_only_through_the_operator_key_door(setup):
    """Made before the inner signature (signed outside only): the operator-key door verified the
    outer signature and may install it; its plaintext is a bare tar and never passes the signer's door."""
    from pkgsign.audit import audit_gnupg, read_audit_key
    from pkgsign.config import load_config

    source = load_config(str(setup["tmp"] / "src" / "pkgsign.conf"))
    with _gnupg.TemporaryGnuPG() as scratch:
        ciphertext = scratch.encrypt(_genuine_plaintext(setup), [setup["recipient"]])
    backup_gpg = audit_gnupg(source)
    old = backup_gpg.sign(ciphertext, [read_audit_key(source, "backup")["signing_fingerprint"] + "!"],
                          mode="inline", armor=False)
    backup_gpg.kill_agent()
    path = setup["tmp"] / "old-format.tar.gz.gpg"
    path.write_bytes(old)
    output = setup["tmp"] / "old.tar.gz"
    result = _decrypt(setup, str(path), output)
    assert result.returncode == 0 and "previous format" in result.stderr, result.stderr
    assert output.read_bytes()[:2] == b"\x1f\x8b"
    result = _restore_plain(setup, output, "--backup-key", setup["pinned"])
    assert result.returncode == 2 and "bare tar" in result.stderr, result.stderr
    _nothing_installed(setup)
    result = _restore(setup, str(path), "--backup-key", setup["pinned"])
    assert result.returncode == 0 and "(outer)" in result.stderr, result.stderr
    assert "genuine" in open(setup["target"].tokens_file).read()
    assert _last_audit_line(setup)["signatures"] == "outer"
