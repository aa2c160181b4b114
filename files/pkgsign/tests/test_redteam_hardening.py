"""Red team, hardening2's rules: signed backups (an archive no pinned backup key vouched for is
never installed, whichever door of `pkgsign-admin restore` it comes through), per-token key
quotas (a burst of concurrent /gen_key never makes more keys than the quota), tokens pinned to
fingerprints (a key deleted and made again under the same email is not the token's).

Real pkgsign-admin, real gpg, real HTTP. Each test skips while the feature it attacks is absent
(hardening2 not merged)."""

import io
import os
import tarfile
import threading

import pytest

from pkgsign_testlib import Instance, planted_backup_plaintext, run_admin
from pkgsign import _gnupg
from test_redteam_compat import bearer, gen_key, raw_request, sign_with

SIGNED_BACKUPS = run_admin("backup-key", "--help", check=False).returncode == 0


@pytest.mark.skipif(not SIGNED_BACKUPS, reason="backups are not signed by this pkgsign-admin (hardening2 not merged)")
def test_restore_never_installs_an_archive_no_pinned_key_vouched_for(backup):
    planted = backup["tmp"] / "planted.tar.gz"
    planted.write_bytes(planted_backup_plaintext(backup, scopes=("sign", "admin")))
    target = backup["target"]
    for extra in ([], ["--backup-key", backup["pinned"]], ["--force"]):
        result = run_admin("restore", "--config", target.path, "--archive", str(planted), *extra, check=False)
        tokens = open(target.tokens_file).read() if os.path.exists(target.tokens_file) else ""
        assert "planted" not in tokens, ("installed: restore %s" % " ".join(extra), result.stdout, result.stderr)
        assert result.returncode != 0


@pytest.mark.skipif(not SIGNED_BACKUPS, reason="backups are not signed by this pkgsign-admin (hardening2 not merged)")
def test_a_signed_archive_swapped_for_another_instance_s_is_refused(backup, tmp_path):
    """An archive signed by another instance's backup key (the attacker runs pkgsign too, and
    encrypts to the operators' public key) does not verify with the pinned key, in either door;
    nor does it when concatenated before or after the genuine archive (gpg reads both messages),
    nor the genuine archive with one bit flipped. What may ever be installed is the genuine content."""
    from pkgsign.config import load_config
    from pkgsign.tokens import add_token

    run_admin("init", str(tmp_path / "evil"), "--algorithm", "ed25519")
    add_token(load_config(str(tmp_path / "evil" / "pkgsign.conf")).tokens_file, "evil-marker", ["sign", "admin"], ["*"])
    evil = run_admin("backup", "--config", str(tmp_path / "evil" / "pkgsign.conf"), "--recipient-file",
                     str(backup["tmp"] / "op.asc"), "--output-dir", str(tmp_path / "evil-backups")).stdout.strip().split()[-1]
    result = run_admin("restore", "--config", backup["target"].path, "--archive", evil, "--gnupghome",
                       backup["operator"].homedir, "--backup-key", backup["pinned"], check=False)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    output = tmp_path / "out.tar.gz"
    result = run_admin("backup-decrypt", "--archive", evil, "--gnupghome", backup["operator"].homedir, "--output",
                       str(output), "--backup-key", backup["pinned"], check=False)
    assert result.returncode != 0 and not output.exists(), result.stderr
    genuine = open(backup["archive"], "rb").read()
    evil_bytes = open(evil, "rb").read()
    for name, tampered in (("genuine+evil", genuine + evil_bytes), ("evil+genuine", evil_bytes + genuine),
                           ("bit flipped", genuine[:-1] + bytes([genuine[-1] ^ 1]))):
        path = tmp_path / "t.gpg"
        path.write_bytes(tampered)
        result = run_admin("restore", "--config", backup["target"].path, "--archive", str(path), "--gnupghome",
                           backup["operator"].homedir, "--backup-key", backup["pinned"], "--force", check=False)
        tokens = open(backup["target"].tokens_file).read() if os.path.exists(backup["target"].tokens_file) else ""
        assert "evil-marker" not in tokens, (name, "the other instance's archive was installed", result.stderr)
        if name == "bit flipped":
            assert result.returncode != 0, result.stdout
        output.unlink() if output.exists() else None
        result = run_admin("backup-decrypt", "--archive", str(path), "--gnupghome", backup["operator"].homedir,
                           "--output", str(output), "--backup-key", backup["pinned"], check=False)
        if output.exists():
            from pkgsign.backup import GZIP_MAGIC, verify_plaintext

            plain = output.read_bytes()
            if plain[:2] != GZIP_MAGIC:  # signed inside: the pinned key must vouch for it as well
                plain = verify_plaintext(plain, backup["pinned"])
            with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as archive:
                names = archive.getnames()
                data = archive.extractfile("tokens.json").read() if "tokens.json" in names else b""
            assert b"evil-marker" not in data, (name, "backup-decrypt gave the other instance's archive")


# -- per-token key quotas, fingerprint pins ---------------------------------------------------------

@pytest.fixture
def quota_lab(tmp_path):
    from pkgsign.tokens import add_token

    try:
        add_token(str(tmp_path / "probe.json"), "probe", ["keygen"], ["*"], max_keys=1)
    except TypeError:
        pytest.skip("no per-token key quota in this pkgsign (hardening2 not merged)")
    root = tmp_path / "kq"
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    inst.set_option("audit", "checkpoint_interval", "0")
    inst.tokens["quota"] = add_token(inst.tokens_file, "quota", ["keygen", "sign"], ["future:q#*@copr.test"],
                                     rate="100000/1", max_keys=2)
    inst.add_token("admin", ["sign", "keygen", "admin"], ["*"], rate="100000/1")
    inst.start()
    yield inst
    inst.stop()
    _gnupg.GnuPG(os.path.join(str(root), "gnupg"), create=False).kill_agent()


def test_a_burst_of_concurrent_gen_key_makes_no_more_keys_than_the_quota(quota_lab):
    results = []

    def one(number):
        results.append(gen_key(quota_lab, "q#n%d@copr.test" % number, token="quota"))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    created = [body for status, body in results if status == 201]
    assert len(created) <= 2, created
    assert all(status in (201, 403, 429, 503) for status, _body in results), results
    # case variants and the same names again cost nothing and make nothing
    for status, body in results:
        if status == 201:
            again = gen_key(quota_lab, body["name_email"].upper(), token="quota")
            assert again[0] in (200, 403) and again[1].get("fingerprint", body["fingerprint"]) == body["fingerprint"]
    status, listing = raw_request(quota_lab, "GET", "/keys/q%23n0@copr.test", headers=bearer(quota_lab, "admin"))
    made = sum(1 for n in range(12) if raw_request(quota_lab, "GET", "/keys/q%%23n%d@copr.test" % n,
                                                   headers=bearer(quota_lab, "admin"))[0] == 200)
    assert made <= 2, made


def test_a_pinned_token_does_not_follow_an_email_to_a_new_key(quota_lab):
    """A token pinned to the key an email named when it was made: the key deleted and a new one
    made under the same email (by someone else) is not its key."""
    from pkgsign.config import load_config
    from pkgsign.keystore import KeyStore

    status, body = gen_key(quota_lab, "pin#p@copr.test", token="admin")
    assert status == 201, body
    old = body["fingerprint"]
    config = load_config(quota_lab.config)
    keys = KeyStore(config)
    if not hasattr(keys, "pin_patterns"):
        pytest.skip("no fingerprint pins (hardening2 not merged)")
    from pkgsign.tokens import add_token

    pinned = keys.pin_patterns(["pin#*@copr.test"])
    quota_lab.tokens["pinned"] = add_token(quota_lab.tokens_file, "pinned", ["sign"], ["pin#*@copr.test"],
                                           rate="100000/1", pinned=pinned)
    assert sign_with(quota_lab, "pinned", "pin#p@copr.test")[0] == 200
    assert raw_request(quota_lab, "DELETE", "/keys/pin%23p@copr.test", headers=bearer(quota_lab, "admin"))[0] == 200
    status, body = gen_key(quota_lab, "pin#p@copr.test", token="admin")
    assert status == 201 and body["fingerprint"] != old, body
    for name in ("pin#p@copr.test", body["fingerprint"], "PIN#P@copr.test"):
        status, answer = sign_with(quota_lab, "pinned", name)
        assert status == 403, (name, answer)
