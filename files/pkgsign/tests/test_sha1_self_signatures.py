"""Old copr-keygen keys carry SHA-1 self-signatures, which Sequoia's policy (rpm-sequoia, dnf5,
sqv) rejects: `pkgsign-admin maintain` and `import-copr` re-make them with SHA-256.

The old keys are made for real with gpg 2.2 (``--cert-digest-algo SHA1``), checked with
``gpg --list-packets``, and judged by Debian's ``sqv`` (and ``sq-keyring-linter`` when installed)
before and after; RPMs are checked with ``rpmkeys --checksig``."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from pkgsign_testlib import rpm_checksig, run_admin
from pkgsign import _gnupg

pytestmark = pytest.mark.skipif(not shutil.which("sqv"), reason="sqv (Sequoia's verifier) not installed")

OLD_BATCH = """Key-Type: RSA
Key-Length: 2048
Key-Usage: sign,cert
Name-Real: %s
Name-Email: %s
Expire-Date: %s
%%no-protection
%%commit
"""


def old_copr_key(gpg, name, email, expires="0", passphrase=None):
    """What copr-keygen made for years: one RSA primary (sign+certify), SHA-1 self-signature."""
    batch = OLD_BATCH % (name, email, expires)
    if passphrase:
        batch = batch.replace("%no-protection", "Passphrase: %s" % passphrase)
    result = gpg.run(["--cert-digest-algo", "SHA1", "--gen-key"], input=batch.encode())
    return [a[1] for a in result.status_lines("KEY_CREATED")][0]


def old_subkey_key(gpg, email, expires):
    """A certify-only primary (SHA-256) whose signing subkey has a SHA-1 binding and back-signature."""
    gpg.run(["--quick-gen-key", "sub <%s>" % email, "rsa2048", "cert", expires], passphrase="")
    fpr = gpg.get_key(email).fingerprint
    gpg.run(["--cert-digest-algo", "SHA1", "--digest-algo", "SHA1", "--allow-weak-key-signatures",
             "--quick-add-key", fpr, "rsa2048", "sign", expires], passphrase="")
    return fpr


def packets(gpg, fpr, options=()):
    """[(sigclass, digest, backsig digest or None)] of every signature in the exported key."""
    data = gpg.run(list(options) + ["--export", fpr]).stdout
    text = gpg.run(["--list-packets"], input=data).stdout.decode()
    found = []
    for block in text.split(":signature packet:")[1:]:
        sigclass = re.search(r"sigclass 0x([0-9a-f]{2})", block).group(1)
        digest = int(re.search(r"digest algo (\d+),", block).group(1))
        backsig = re.search(r"subpkt 32 len \d+ \(signature: v4, class 0x19, algo \d+, digest algo (\d+)\)", block)
        found.append((sigclass, digest, int(backsig.group(1)) if backsig else None))
    return found


def sqv(keyring, signature, data):
    return subprocess.run(["sqv", "--keyring", str(keyring), str(signature), str(data)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)


def sq_judgement(keyring, signature, data):
    """(sq verify's exit status, sq inspect's report) with Sequoia's own CLI, None without it.

    sq 0.27 marks a user id whose certification its policy rejects as Invalid and leaves a
    subkey whose binding it rejects out of the report."""
    if not shutil.which("sq"):
        return None
    verify = subprocess.run(["sq", "verify", "--signer-cert", str(keyring), "--detached", str(signature), str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    inspect = subprocess.run(["sq", "inspect", str(keyring)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, check=False).stdout
    return verify.returncode, inspect


def linter_flags(keyring):
    """sq-keyring-linter's exit status (0: nothing protected by SHA-1 in force), None without it."""
    if not shutil.which("sq-keyring-linter"):
        return None
    return subprocess.run(["sq-keyring-linter", str(keyring)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False).returncode


def export(gpg, fpr, path):
    path.write_bytes(gpg.export_public(fpr, armor=True))
    return path


def detach_sign(gpg, fpr, data, out):
    gpg.run(["--digest-algo", "SHA256", "--local-user", fpr, "--output", str(out),
             "--detach-sign", str(data)], passphrase="")
    return out


def audit_records(root):
    with open(os.path.join(str(root), "audit.log"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_maintain_remakes_sha1_self_signatures_keeping_expiry(tmp_path):
    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    plain = old_copr_key(gpg, "olduser_proj", "olduser#proj@copr.test")  # never expires
    bound = old_subkey_key(gpg, "olduser#sub@copr.test", "400d")       # expires, beyond --within-days
    before = {fpr: gpg.get_key(fpr) for fpr in (plain, bound)}
    # really SHA-1 (hash id 2): the user-id certification, the subkey binding and its back-signature
    assert ("13", 2, None) in packets(gpg, plain)
    assert ("18", 2, 2) in packets(gpg, bound)
    signer = {plain: plain, bound: before[bound].subkeys[0].fingerprint + "!"}
    data = tmp_path / "data"
    data.write_bytes(b"built by copr")
    time.sleep(2.1)  # the signatures below are made after every old self-signature, in a later second
    old_sigs = {}
    for fpr in (plain, bound):
        keyring = export(gpg, fpr, tmp_path / ("before-%s.asc" % fpr))
        old_sigs[fpr] = detach_sign(gpg, signer[fpr], data, tmp_path / ("before-%s.sig" % fpr))
        refused = sqv(keyring, old_sigs[fpr], data)
        assert refused.returncode != 0 and "SHA1" in refused.stdout, refused.stdout
        assert linter_flags(keyring) not in (0,)
        judged = sq_judgement(keyring, old_sigs[fpr], data)
        if judged is not None:
            assert judged[0] != 0
            assert "SHA1 is not considered secure" in judged[1] if fpr == plain else \
                before[fpr].subkeys[0].fingerprint not in judged[1], judged[1]

    proc = run_admin("maintain", "--config", str(root / "pkgsign.conf"), "--within-days", "30")
    assert "2 key(s) carry self-signatures weaker than SHA256" in proc.stderr, proc.stderr
    for fpr in (plain, bound):
        assert re.search(r"re-made self-signatures of %s .* with SHA256" % fpr, proc.stderr), proc.stderr
    assert "clients need the refreshed public key" in proc.stderr

    for fpr in (plain, bound):
        after = gpg.get_key(fpr)
        # same parts, same expiry: a key that did not expire still does not, the other keeps its date
        assert [(p.fingerprint, p.expires) for p in [after] + after.subkeys] == \
            [(p.fingerprint, p.expires) for p in [before[fpr]] + before[fpr].subkeys]
        # every usable self-signature (what export-clean keeps) is SHA-256 or better, back-signature too
        clean = packets(gpg, fpr, ["--export-options", "export-clean"])
        assert clean and all(digest >= 8 and (back is None or back >= 8) for _c, digest, back in clean), clean
        keyring = export(gpg, fpr, tmp_path / ("after-%s.asc" % fpr))
        assert linter_flags(keyring) in (0, None)
        fresh = detach_sign(gpg, signer[fpr], data, tmp_path / ("after-%s.sig" % fpr))
        accepted = sqv(keyring, fresh, data)
        assert accepted.returncode == 0 and fpr in accepted.stdout, accepted.stdout
        judged = sq_judgement(keyring, fresh, data)
        if judged is not None:
            assert judged[0] == 0 and "Invalid" not in judged[1] and "SHA1" not in judged[1], judged[1]
            assert all(sub.fingerprint in judged[1] for sub in after.subkeys), judged[1]
        # a signature made before the re-make (but after the old self-signatures) verifies too
        assert sqv(keyring, old_sigs[fpr], data).returncode == 0
    assert before[plain].expires is None and gpg.get_key(plain).expires is None
    assert gpg.get_key(bound).expires == before[bound].expires and before[bound].expires > time.time() + 399 * 86400

    audited = [r for r in audit_records(root) if r["operation"] == "remake_self_signatures"]
    assert sorted(r["fingerprint"] for r in audited if r["result"] == "ok") == sorted([plain, bound])

    # a second run changes nothing and says so
    exported = {fpr: gpg.export_public(fpr, armor=False) for fpr in (plain, bound)}
    again = run_admin("maintain", "--config", str(root / "pkgsign.conf"), "--within-days", "30")
    assert "nothing to re-make" in again.stderr and "re-made" not in again.stderr, again.stderr
    assert {fpr: gpg.export_public(fpr, armor=False) for fpr in (plain, bound)} == exported
    assert len([r for r in audit_records(root) if r["operation"] == "remake_self_signatures"]) == len(audited)
    gpg.kill_agent()


def test_maintain_prolongs_with_sha256_and_remakes_the_back_signature(tmp_path):
    """A key due for prolongation: its new expiry comes with SHA-256 self-signatures, and the SHA-1
    back-signature gpg would copy into the new binding is made anew."""
    root = tmp_path / "p"
    run_admin("init", str(root), "--algorithm", "ed25519")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    fpr = old_subkey_key(gpg, "soon#sub@copr.test", "10d")
    proc = run_admin("maintain", "--config", str(root / "pkgsign.conf"), "--within-days", "30", "--extend", "365d")
    assert "extended %s" % fpr in proc.stderr and "re-made self-signatures of %s" % fpr in proc.stderr, proc.stderr
    key = gpg.get_key(fpr)
    assert key.expires > time.time() + 360 * 86400 and key.subkeys[0].expires == key.expires
    clean = packets(gpg, fpr, ["--export-options", "export-clean"])
    assert all(digest >= 8 and (back is None or back >= 8) for _c, digest, back in clean), clean
    data = tmp_path / "data"
    data.write_bytes(b"x")
    sig = detach_sign(gpg, key.subkeys[0].fingerprint + "!", data, tmp_path / "x.sig")
    assert sqv(export(gpg, fpr, tmp_path / "k.asc"), sig, data).returncode == 0
    gpg.kill_agent()


def test_maintain_reports_sec_stub_keys_needing_the_offline_primary(tmp_path):
    root = tmp_path / "s"
    run_admin("init", str(root), "--algorithm", "ed25519")
    bastion = _gnupg.GnuPG(str(tmp_path / "bastion"))
    fpr = old_subkey_key(bastion, "ceremony#sub@copr.test", "400d")
    stub = bastion.export_secret_subkeys([bastion.get_key(fpr).subkeys[0].fingerprint], passphrase="")
    bastion.kill_agent()
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    gpg.import_keys(stub)
    assert not gpg.get_key(fpr).secret_present
    exported = gpg.export_public(fpr, armor=False)
    proc = run_admin("maintain", "--config", str(root / "pkgsign.conf"), "--within-days", "30")
    lines = [line for line in proc.stderr.splitlines() if fpr in line]
    assert len(lines) == 1 and "needs the offline primary key" in lines[0] and "SHA1" in lines[0], proc.stderr
    assert gpg.export_public(fpr, armor=False) == exported  # nothing changed
    assert any(r["operation"] == "remake_self_signatures" and r["result"] == "refused" and r["fingerprint"] == fpr
               for r in audit_records(root))
    gpg.kill_agent()


def test_import_copr_remakes_sha1_keys_and_rpm_accepts(instance, tiny_rpm, tmp_path):
    copr_home = tmp_path / "copr-gnupg"
    phrases = tmp_path / "copr-phrases"
    phrases.mkdir()
    copr = _gnupg.GnuPG(str(copr_home))
    email = "olduser#sha1@copr.test"
    fpr = old_copr_key(copr, "olduser_sha1", email)
    assert ("13", 2, None) in packets(copr, fpr)
    protected = "olduser#sha1phrase@copr.test"
    protected_fpr = old_copr_key(copr, "olduser_sha1phrase", protected, expires="3y", passphrase="copr-phrase-456")
    (phrases / protected).write_text("copr-phrase-456\n")
    protected_expiry = copr.get_key(protected_fpr).expires
    copr.kill_agent()
    proc = run_admin("import-copr", "--config", instance.config, "--gnupghome", str(copr_home),
                     "--phrases", str(phrases))
    copr.kill_agent()
    assert "re-made its self-signatures with SHA256" in proc.stderr, proc.stderr
    assert "clients need the refreshed public key" in proc.stderr
    assert "2 imported, 0 failed" in proc.stderr and \
        "2 key(s) got SHA256 self-signatures instead of SHA-1" in proc.stderr, proc.stderr
    # the protected key: re-made with its passphrase, still protected, same expiry, and it signs
    store = _gnupg.GnuPG(os.path.join(instance.root, "gnupg"), create=False)
    assert store.get_key(protected_fpr).expires == protected_expiry
    assert store.secret_protection()[store.get_key(protected_fpr).keygrip] == "protected"
    assert all(d >= 8 for _c, d, _b in packets(store, protected_fpr, ["--export-options", "export-clean"]))
    protected_data = tmp_path / "protected-payload"
    protected_data.write_bytes(b"signed with the protected key")
    assert instance.sign("-u", protected, "-d", str(protected_data)).returncode == 0
    protected_pub = tmp_path / "protected.asc"
    protected_pub.write_bytes(instance.sign("-u", protected, "-p").stdout)
    assert sqv(protected_pub, str(protected_data) + ".asc", protected_data).returncode == 0
    pub = tmp_path / "refreshed.asc"
    pub.write_bytes(instance.sign("-u", email, "-p").stdout)
    check = _gnupg.GnuPG(str(tmp_path / "check"))
    check.import_keys(pub.read_bytes())
    clean = packets(check, fpr, ["--export-options", "export-clean"])
    assert clean and all(digest >= 8 for _c, digest, _b in clean), clean
    check.kill_agent()
    data = tmp_path / "payload"
    data.write_bytes(b"signed through the service")
    assert instance.sign("-u", email, "-d", str(data)).returncode == 0
    verified = sqv(pub, str(data) + ".asc", data)
    assert verified.returncode == 0, verified.stdout
    rpm = tmp_path / "old.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    signed = instance.sign("-u", email, "-r", str(rpm))
    assert signed.returncode == 0, signed.stderr
    rc, out = rpm_checksig(rpm, [pub], tmp_path / "rpmdb")
    assert rc == 0 and "NOKEY" not in out and "Signature, key ID %s: OK" % fpr[-8:].lower() in out, out


def test_maintain_refuses_keys_it_cannot_remake_without_waiting_or_changing_them(tmp_path):
    """A hostile or broken keyring: a SHA-1 key dated a day ahead (maintain must not wait for that
    moment, nor sign into the future) and a key whose SHA-1-bound subkey secret is not here (its
    back-signature needs it). One FAILED line each, exit status 1, keyring unchanged, audited."""
    root = tmp_path / "h"
    run_admin("init", str(root), "--algorithm", "ed25519")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    ahead = int(time.time()) + 86400
    result = gpg.run(["--faked-system-time", str(ahead), "--cert-digest-algo", "SHA1", "--gen-key"],
                     input=(OLD_BATCH % ("future_proj", "future#proj@copr.test", "0")).encode())
    future = [a[1] for a in result.status_lines("KEY_CREATED")][0]
    stubbed = old_subkey_key(gpg, "stub#sub@copr.test", "400d")
    gpg.delete_secret(stubbed, subkeys=[gpg.get_key(stubbed).subkeys[0].fingerprint])
    exported = {fpr: gpg.export_public(fpr, armor=False) for fpr in (future, stubbed)}
    started = time.time()
    proc = run_admin("maintain", "--config", str(root / "pkgsign.conf"), "--within-days", "30", check=False)
    assert time.time() - started < 120  # did not wait for the day ahead
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 2, proc.stderr
    assert any(future in line and "dated in the future" in line for line in failed), failed
    assert any(stubbed in line and "secret of subkey" in line for line in failed), failed
    assert {fpr: gpg.export_public(fpr, armor=False) for fpr in (future, stubbed)} == exported
    results = {r["fingerprint"]: r["result"] for r in audit_records(root) if r["operation"] == "remake_self_signatures"}
    assert results == {future: "failed", stubbed: "failed"}
    gpg.kill_agent()
