"""Backups are signed by the signer's backup key and restore checks the signature against the key
the operator pinned before decrypting anything (issue 14). An attacker who knows the operators'
public keys plants an archive encrypted to them (unsigned, or signed by a key of their own) with
their own token in it: refused in one line, nothing decrypted or installed. The plaintext that
`backup-decrypt` hands to the signer is signed too (inside the encryption), and `restore --archive`
on the signer installs only what the pinned key signed there: a bare tar, or one signed by another
key, or tampered, is refused and audited. Real pkgsign-admin, real gpg."""

import json
import os

from pkgsign_testlib import planted_backup_plaintext, run_admin
from pkgsign import _gnupg


def _restore(backup, archive, *extra):
    return run_admin("restore", "--config", backup["target"].path, "--archive", archive,
                     "--gnupghome", backup["operator"].homedir, *extra, check=False)


def _genuine_plaintext(backup):
    """The genuine tar archive (the content of the inner signed message)."""
    from pkgsign.backup import verify_archive, verify_plaintext

    inner = backup["operator"].decrypt(verify_archive(open(backup["archive"], "rb").read(), backup["pinned"]))
    return verify_plaintext(inner, backup["pinned"])


def _nothing_installed(backup):
    target = backup["target"]
    if os.path.isdir(target.metadata_dir):
        assert not [n for n in os.listdir(target.metadata_dir) if n.endswith(".json")]
    tokens = open(target.tokens_file).read() if os.path.exists(target.tokens_file) else ""
    assert "planted" not in tokens and "genuine" not in tokens


def _last_audit_line(backup):
    with open(backup["target"].audit_log, encoding="utf-8") as handle:
        return json.loads(handle.read().splitlines()[-1])


def test_a_genuine_backup_restores_with_the_pinned_key(backup):
    result = _restore(backup, backup["archive"], "--backup-key", backup["pinned"])
    assert result.returncode == 0, result.stderr
    assert "genuine" in open(backup["target"].tokens_file).read()
    line = _last_audit_line(backup)  # the restore is the first line after the restored chain
    assert line["operation"] == "restore" and line["result"] == "ok" and line["verified_with"] == backup["pinned"]
    verify = run_admin("audit", "verify", "--config", backup["target"].path, check=False)
    assert verify.returncode == 0, verify.stdout


def test_restore_without_a_pinned_key_is_refused(backup):
    result = _restore(backup, backup["archive"])
    assert result.returncode == 2 and "--backup-key" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    _nothing_installed(backup)


def test_an_unsigned_archive_encrypted_to_the_operators_is_refused(backup):
    with _gnupg.TemporaryGnuPG() as attacker:
        planted = attacker.encrypt(planted_backup_plaintext(backup), [backup["recipient"]])
    path = backup["tmp"] / "planted.tar.gz.gpg"
    path.write_bytes(planted)
    before = os.listdir(backup["target"].state_dir)
    result = _restore(backup, str(path), "--backup-key", backup["pinned"])
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    _nothing_installed(backup)
    assert set(os.listdir(backup["target"].state_dir)) - set(before) <= {"audit.log", "audit.log.head"}
    line = _last_audit_line(backup)
    assert line["operation"] == "restore" and line["result"] == "refused" and "not signed" in line["reason"]
    out = backup["tmp"] / "out.tar.gz"
    result = run_admin("backup-decrypt", "--archive", str(path), "--gnupghome", backup["operator"].homedir,
                       "--output", str(out), "--backup-key", backup["pinned"], check=False)
    assert result.returncode == 2 and "not signed" in result.stderr and not out.exists()


def test_an_archive_signed_by_another_key_is_refused(backup):
    with _gnupg.TemporaryGnuPG() as attacker:
        fpr = attacker.generate_key("pkgsign backups", "backup@pkgsign.invalid", algorithm="ed25519",
                                    usage=("cert",), subkey_usage=("sign",))
        ciphertext = attacker.encrypt(planted_backup_plaintext(backup), [backup["recipient"]])
        planted = attacker.sign(ciphertext, [fpr], mode="inline", armor=False)
        other_pin = backup["tmp"] / "attacker.asc"
        other_pin.write_bytes(attacker.export_public(fpr))
    path = backup["tmp"] / "planted.tar.gz.gpg"
    path.write_bytes(planted)
    result = _restore(backup, str(path), "--backup-key", backup["pinned"])
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr, result.stderr
    _nothing_installed(backup)
    # and the genuine archive does not verify against the attacker's key either
    result = _restore(backup, backup["archive"], "--backup-key", str(other_pin))
    assert result.returncode == 2 and "not signed by the pinned backup key" in result.stderr
    _nothing_installed(backup)


def test_a_genuine_signature_over_other_bytes_is_refused(backup):
    """The genuine signed message with one byte flipped (in the content, in the signature) or cut short."""
    data = open(backup["archive"], "rb").read()
    flips = [200, len(data) // 2, len(data) - 10]
    for mutated in [data[:at] + bytes([data[at] ^ 1]) + data[at + 1:] for at in flips] + [data[:-50]]:
        path = backup["tmp"] / "mutated.gpg"
        path.write_bytes(mutated)
        result = _restore(backup, str(path), "--backup-key", backup["pinned"])
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        _nothing_installed(backup)


# -- the signer's door: restore --archive PLAINTEXT (what backup-decrypt wrote) ------------------

def _decrypt(backup, archive, output):
    return run_admin("backup-decrypt", "--archive", archive, "--gnupghome", backup["operator"].homedir,
                     "--output", str(output), "--backup-key", backup["pinned"], check=False)


def _restore_plain(backup, archive, *extra):
    return run_admin("restore", "--config", backup["target"].path, "--archive", str(archive), *extra, check=False)


def test_the_decrypted_archive_is_signed_inside_and_restores_without_the_operator_key(backup):
    output = backup["tmp"] / "plain.sig"
    result = _decrypt(backup, backup["archive"], output)
    assert result.returncode == 0 and "signed by the backup key inside" in result.stderr, result.stderr
    signed = output.read_bytes()
    assert signed[:2] != b"\x1f\x8b" and os.stat(str(output)).st_mode & 0o777 == 0o600
    # Stock gpg with only the pinned key agrees: a signed message by the backup key, its content the tar.
    with _gnupg.TemporaryGnuPG() as verifier:
        pinned = verifier.import_keys(open(backup["pinned"], "rb").read())
        checked = verifier.run(["--decrypt"], input=signed, check=False)
    assert checked.returncode == 0 and [f[-1] for f in checked.status_lines("VALIDSIG")] == pinned
    assert checked.stdout == _genuine_plaintext(backup)
    result = _restore_plain(backup, output, "--backup-key", backup["pinned"])
    assert result.returncode == 0 and "(inner)" in result.stderr, result.stderr
    assert "genuine" in open(backup["target"].tokens_file).read()
    assert output.read_bytes() == signed
    line = _last_audit_line(backup)
    assert line["operation"] == "restore" and line["result"] == "ok", line
    assert line["verified_with"] == backup["pinned"] and line["signatures"] == "inner", line
    verify = run_admin("audit", "verify", "--config", backup["target"].path, check=False)
    assert verify.returncode == 0, verify.stdout


def test_the_operator_key_door_checks_both_signatures(backup):
    result = _restore(backup, backup["archive"], "--backup-key", backup["pinned"])
    assert result.returncode == 0 and "(outer+inner)" in result.stderr, result.stderr
    assert _last_audit_line(backup)["signatures"] == "outer+inner"


def _attacker_signed(backup, data):
    """``data`` signed by a key of the attacker's that looks like a backup key."""
    with _gnupg.TemporaryGnuPG() as attacker:
        fpr = attacker.generate_key("pkgsign backups", "backup@pkgsign.invalid", algorithm="ed25519",
                                    usage=("cert",), subkey_usage=("sign",))
        return attacker.sign(data, [fpr], mode="inline", armor=False)


def test_the_signer_s_door_installs_nothing_the_pinned_key_did_not_sign_inside(backup):
    """Every way of handing the signer a plaintext: refused in one line, nothing installed, the
    refusal audited with its reason, the handed file left as it was."""
    genuine_signed = backup["tmp"] / "genuine.sig"
    assert _decrypt(backup, backup["archive"], genuine_signed).returncode == 0
    inner = genuine_signed.read_bytes()
    planted = planted_backup_plaintext(backup)
    with _gnupg.TemporaryGnuPG() as attacker:
        stored = attacker.run(["--store"], input=planted).stdout  # a literal packet, no signature
    flips = [40, len(inner) // 2, len(inner) - 10]
    cases = {
        "bare planted tar": (planted, ["--backup-key", backup["pinned"]], "bare tar"),
        "bare genuine tar": (_genuine_plaintext(backup), ["--backup-key", backup["pinned"]], "bare tar"),
        "bare tar, no key": (planted, [], "--backup-key"),
        "genuine signed, no key": (inner, [], "--backup-key"),
        "signed by another key": (_attacker_signed(backup, planted), ["--backup-key", backup["pinned"]], "not signed"),
        "unsigned literal": (stored, ["--backup-key", backup["pinned"]], "not signed"),
        "genuine then attacker's": (inner + _attacker_signed(backup, planted), ["--backup-key", backup["pinned"]],
                                    "not signed"),
        "attacker's then genuine": (_attacker_signed(backup, planted) + inner, ["--backup-key", backup["pinned"]],
                                    "not signed"),
        "genuine then literal": (inner + stored, ["--backup-key", backup["pinned"]], "not signed"),
        "literal then genuine": (stored + inner, ["--backup-key", backup["pinned"]], "not signed"),
        "cut short": (inner[:-40], ["--backup-key", backup["pinned"]], "not signed"),
        "encrypted backup without --gnupghome": (open(backup["archive"], "rb").read(),
                                                 ["--backup-key", backup["pinned"]], "not a tar archive"),
    }
    for at in flips:
        cases["byte %d flipped" % at] = (inner[:at] + bytes([inner[at] ^ 1]) + inner[at + 1:],
                                         ["--backup-key", backup["pinned"]], "")
    other_pin = backup["tmp"] / "other.asc"
    with _gnupg.TemporaryGnuPG() as other:
        fpr = other.generate_key("other", "other@example.org", algorithm="ed25519")
        other_pin.write_bytes(other.export_public(fpr))
    cases["genuine, pinned to another key"] = (inner, ["--backup-key", str(other_pin)], "not signed")
    for name, (data, extra, reason) in cases.items():
        path = backup["tmp"] / "handed.bin"
        path.write_bytes(data)
        for force in ([], ["--force"]):
            result = _restore_plain(backup, path, *(extra + force))
            assert result.returncode == 2, (name, result.stderr)
            assert result.stderr.count("\n") == 1 and reason in result.stderr, (name, result.stderr)
            _nothing_installed(backup)
            assert path.read_bytes() == data, name
            line = _last_audit_line(backup)
            assert line["operation"] == "restore" and line["result"] == "refused", (name, line)
            assert result.stderr.strip().endswith(line["reason"]), (name, line, result.stderr)


def test_an_archive_of_the_previous_format_restores_only_through_the_operator_key_door(backup):
    """Made before the inner signature (signed outside only): the operator-key door verified the
    outer signature and may install it; its plaintext is a bare tar and never passes the signer's door."""
    from pkgsign.audit import audit_gnupg, read_audit_key
    from pkgsign.config import load_config

    source = load_config(str(backup["tmp"] / "src" / "pkgsign.conf"))
    with _gnupg.TemporaryGnuPG() as scratch:
        ciphertext = scratch.encrypt(_genuine_plaintext(backup), [backup["recipient"]])
    backup_gpg = audit_gnupg(source)
    old = backup_gpg.sign(ciphertext, [read_audit_key(source, "backup")["signing_fingerprint"] + "!"],
                          mode="inline", armor=False)
    backup_gpg.kill_agent()
    path = backup["tmp"] / "old-format.tar.gz.gpg"
    path.write_bytes(old)
    output = backup["tmp"] / "old.tar.gz"
    result = _decrypt(backup, str(path), output)
    assert result.returncode == 0 and "previous format" in result.stderr, result.stderr
    assert output.read_bytes()[:2] == b"\x1f\x8b"
    result = _restore_plain(backup, output, "--backup-key", backup["pinned"])
    assert result.returncode == 2 and "bare tar" in result.stderr, result.stderr
    _nothing_installed(backup)
    result = _restore(backup, str(path), "--backup-key", backup["pinned"])
    assert result.returncode == 0 and "(outer)" in result.stderr, result.stderr
    assert "genuine" in open(backup["target"].tokens_file).read()
    assert _last_audit_line(backup)["signatures"] == "outer"
