"""Key shape (issue 13): keys made by /gen_key are a certify-only primary plus a sign-only subkey,
the service signs with the subkey only, `pkgsign-admin add-subkey` gives an imported copr-keygen
key (one RSA primary, cert+sign) a signing subkey, and a key whose only signing subkey is revoked
or expired is refused instead of signed by its primary. Real gpg, real rpmkeys, real HTTP."""

import os
import re
import shutil
import subprocess
import time

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, Instance, rpm_checksig, run_admin, state_json
from pkgsign import _gnupg
from pkgsign.agent import KeyMaterialGeneration
from pkgsign.keystore import NoSigningKey, key_record, signing_part


def _quoted(email):
    return email.replace("#", "%23")


def _shape(armored):
    """[(record type, capabilities field, key id)] of pub/sub in a fresh home's listing of ``armored``."""
    with _gnupg.TemporaryGnuPG() as fresh:
        fresh.import_keys(armored)
        out = fresh.run(["--with-colons", "--fixed-list-mode", "--list-keys"]).stdout.decode()
    return [(row[0], row[11], row[4]) for row in (line.split(":") for line in out.splitlines())
            if row[0] in ("pub", "sub")]


def _own_usage(capabilities):
    # Lower-case letters are the (sub)key's own usage, upper-case ones the whole key's.
    return "".join(sorted(c for c in capabilities if c.islower()))


def _assert_certify_primary_signing_subkey(armored, record):
    shape = _shape(armored)
    assert [(kind, _own_usage(caps)) for kind, caps, _keyid in shape] == [("pub", "c"), ("sub", "s")], shape
    assert shape[0][2] == record["key_id"] and shape[1][2] == record["signing_key_id"]


def _signature_issuer(gpg, signature, data):
    """(issuing key fingerprint, primary fingerprint) from stock gpg's VALIDSIG."""
    result = gpg.run(["--verify", str(signature), str(data)], check=False)
    valid = result.status_lines("VALIDSIG")
    assert result.returncode == 0 and valid, result.stderr
    return valid[0][0], valid[0][-1]


def _sqv_accepts(armored, signature, data, tmp_path):
    """Sequoia's sqv (the policy of rpm-sequoia and dnf5) accepts the signature; it names the primary."""
    if not shutil.which("sqv"):
        pytest.skip("sqv not installed")
    keyring = tmp_path / "sqv-keyring.asc"
    keyring.write_bytes(armored)
    proc = subprocess.run(["sqv", "--keyring", str(keyring), str(signature), str(data)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _verifying_home(tmp_path, name, armored):
    gpg = _gnupg.GnuPG(str(tmp_path / name))
    gpg.import_keys(armored)
    return gpg


def _assert_signed_by_subkey(inst, email, info, armored, tmp_path, tiny_rpm):
    """A detached signature and an RPM signed through the service name the signing subkey as the
    issuer, and gpg, sqv and rpmkeys accept them with the published public key."""
    data = tmp_path / "data"
    data.write_bytes(b"signed by a subkey\n")
    proc = inst.sign("-u", email, "-d", str(data))
    assert proc.returncode == 0, proc.stderr
    gpg = _verifying_home(tmp_path, "verify", armored)
    try:
        assert _signature_issuer(gpg, str(data) + ".asc", data) == (info["signing_fingerprint"], info["fingerprint"])
    finally:
        gpg.kill_agent()
    assert _sqv_accepts(armored, str(data) + ".asc", data, tmp_path) == [info["fingerprint"]]
    rpm = tmp_path / "tiny.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    proc = inst.sign("-u", email, "-r", str(rpm))
    assert proc.returncode == 0, proc.stderr
    pubkey = tmp_path / "key.asc"
    pubkey.write_bytes(armored)
    rc, out = rpm_checksig(rpm, [pubkey], tmp_path / "rpmdb")
    assert rc == 0 and "NOKEY" not in out and "BAD" not in out, out
    assert re.search(r"Signature, key ID %s: OK" % info["signing_key_id"][-8:].lower(), out), out


# -- /gen_key: direct generation ---------------------------------------------------------------

@pytest.mark.parametrize("email", [ED_KEY, RSA_KEY])
def test_gen_key_makes_certify_primary_and_signing_subkey(instance, tmp_path, tiny_rpm, email):
    """The session instance has no pool: ed25519 is made by gpg in one run, RSA from raced material."""
    status, _headers, info = instance.request("GET", "/keys/" + _quoted(email))
    assert status == 200
    armored = instance.sign("-u", email, "-p").stdout
    _assert_certify_primary_signing_subkey(armored, info)
    assert info["signing_fingerprint"] != info["fingerprint"]
    # the service signs with the subkey: gpg names it as the issuer, and rpm accepts it
    _assert_signed_by_subkey(instance, email, info, armored, tmp_path, tiny_rpm)


# -- /gen_key: from the pool -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    root = tmp_path_factory.mktemp("pooled")
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    inst.tokens["client"] = (root / "client.token").read_text().strip()
    inst.set_option("keygen", "pool_size", "1")
    inst.set_option("keygen", "pool_algorithms", "ed25519, rsa2048")
    proc = run_admin("pool", "fill", "--config", inst.config)
    assert "ed25519 1/1 (2 pieces" in proc.stdout and "rsa2048 1/1 (2 pieces" in proc.stdout, proc.stdout
    ready = set(os.listdir(str(root / "pool" / "ready")))
    inst.start()
    yield inst, ready
    inst.stop()
    _gnupg.GnuPG(str(root / "gnupg"), create=False).kill_agent()


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa2048"])
def test_pool_keys_are_certify_primary_and_signing_subkey(pooled, tmp_path, tiny_rpm, algorithm):
    inst, ready = pooled
    email = "pool-%s#p@copr.test" % algorithm
    status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "pooled", "name_email": email,
                                                               "algorithm": algorithm})
    assert status == 201, body
    status, _headers, info = inst.request("GET", "/keys/" + _quoted(email))
    armored = inst.sign("-u", email, "-p").stdout
    _assert_certify_primary_signing_subkey(armored, info)
    # both parts are the pool's material (claimed, not generated for the request)
    gpg = _gnupg.GnuPG(os.path.join(inst.root, "gnupg"), create=False)
    key = _gnupg.find_secret_key_by(gpg, info["fingerprint"])
    assert {"%s-%s.key" % (algorithm, part.keygrip) for part in (key, key.subkeys[0])} <= ready
    _assert_signed_by_subkey(inst, email, info, armored, tmp_path, tiny_rpm)


# -- add-subkey on an imported copr-keygen key -------------------------------------------------

def test_add_subkey_to_an_imported_copr_keygen_key(pooled, tmp_path, tiny_rpm):
    inst, _ready = pooled
    email = "olduser#rsa@copr.test"
    copr_home, phrases = tmp_path / "copr-gnupg", tmp_path / "copr-phrases"
    phrases.mkdir()
    copr = _gnupg.GnuPG(str(copr_home))
    # what copr-keygen makes: one RSA primary key with cert and sign usage, passphrase protected
    copr.generate_key("olduser", email, algorithm="rsa2048", usage=("cert", "sign"), expires=400,
                      passphrase="copr-phrase-456")
    (phrases / email).write_text("copr-phrase-456\n")
    copr.kill_agent()
    proc = run_admin("import-copr", "--config", inst.config, "--gnupghome", str(copr_home), "--phrases", str(phrases))
    copr.kill_agent()
    assert "1 imported, 0 failed" in proc.stderr, proc.stderr
    _status, _headers, old = inst.request("GET", "/keys/" + _quoted(email))
    assert old["signing_fingerprint"] == old["fingerprint"]  # no subkey: the primary still signs
    old_armored = inst.sign("-u", email, "-p").stdout
    data = tmp_path / "data"
    data.write_bytes(b"old key data\n")
    assert inst.sign("-u", email, "-d", str(data)).returncode == 0
    check = _verifying_home(tmp_path, "verify-old", old_armored)
    assert _signature_issuer(check, str(data) + ".asc", data) == (old["fingerprint"], old["fingerprint"])
    check.kill_agent()

    dry = run_admin("add-subkey", "--config", inst.config, "--check", email)
    assert "would get a rsa2048 signing subkey" in dry.stderr, dry.stderr
    assert inst.sign("-u", email, "-p").stdout == old_armored  # --check changed nothing
    proc = run_admin("add-subkey", "--config", inst.config, email)
    assert "added signing subkey" in proc.stderr and "re-import" in proc.stderr, proc.stderr

    _status, _headers, new = inst.request("GET", "/keys/" + _quoted(email))
    assert new["fingerprint"] == old["fingerprint"] and new["signing_fingerprint"] != old["fingerprint"]
    armored = inst.sign("-u", email, "-p").stdout  # /pubkey serves the updated key at once
    shape = _shape(armored)
    assert [(kind, _own_usage(caps)) for kind, caps, _keyid in shape] == [("pub", "cs"), ("sub", "s")], shape
    assert shape[1][2] == new["signing_key_id"]
    gpg = _gnupg.GnuPG(os.path.join(inst.root, "gnupg"), create=False)
    key = _gnupg.find_secret_key_by(gpg, old["fingerprint"])
    assert key.subkeys[0].algorithm == "rsa2048" and key.subkeys[0].expires == key.expires  # expires with it
    # the protected key's subkey signs with the same phrase file; issuer is the subkey now
    assert inst.sign("-u", email, "-d", str(data)).returncode == 0
    check = _verifying_home(tmp_path, "verify-new", armored)
    try:
        assert _signature_issuer(check, str(data) + ".asc", data) == (new["signing_fingerprint"], old["fingerprint"])
    finally:
        check.kill_agent()
    rpm = tmp_path / "tiny.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    assert inst.sign("-u", email, "-r", str(rpm)).returncode == 0
    pubkey = tmp_path / "key.asc"
    pubkey.write_bytes(armored)
    rc, out = rpm_checksig(rpm, [pubkey], tmp_path / "rpmdb")
    assert rc == 0 and re.search(r"Signature, key ID %s: OK" % new["signing_key_id"][-8:].lower(), out), out

    # idempotent: a usable signing subkey exists, nothing is added, exit 0
    again = run_admin("add-subkey", "--config", inst.config, new["fingerprint"])
    assert "already has a usable signing subkey %s" % new["signing_fingerprint"] in again.stderr, again.stderr
    assert len(_gnupg.find_secret_key_by(gpg, old["fingerprint"]).subkeys) == 1
    missing = run_admin("add-subkey", "--config", inst.config, "nobody#x@copr.test", check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no key" in missing.stderr


# -- a key whose signing subkey cannot sign is refused, never signed by its primary -------------

@pytest.fixture
def private_app(tmp_path):
    root = tmp_path / "refuse"
    run_admin("init", str(root), "--algorithm", "ed25519")
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    config = load_config(str(root / "pkgsign.conf"))
    app = create_app(config)
    headers = {"Authorization": "Bearer " + (root / "client.token").read_text().strip()}
    config.file = str(root / "pkgsign.conf")
    yield app.test_client(), headers, config
    _gnupg.GnuPG(config.gnupg_home, create=False).kill_agent()


def _revoke_subkey(gpg, fingerprint):
    # --edit-key: select subkey 1 ("key 1" is one command: a bare "revkey" revokes the whole key),
    # revkey, confirm, reason 0, empty description, confirm, save
    gpg.run(["--edit-key", fingerprint, "key 1", "revkey", "save"], command_input=["y", "0", "", "y"])


def test_a_key_whose_only_signing_subkey_is_revoked_is_refused(private_app):
    client, headers, config = private_app
    made = client.post("/gen_key", json={"name_real": "r", "name_email": "rev#p@copr.test"}, headers=headers)
    assert made.status_code == 201
    gpg = _gnupg.GnuPG(config.gnupg_home, create=False)
    _revoke_subkey(gpg, made.get_json()["fingerprint"])
    listed = _gnupg.find_secret_key_by(gpg, "<rev#p@copr.test>")
    assert listed.subkeys[0].revoked and not listed.revoked  # the subkey only: the primary could sign
    proc = run_admin("maintain", "--config", config.file, "--within-days", "0")
    assert "metadata of 1 key(s) refreshed" in proc.stderr, proc.stderr
    response = client.post("/sign", json={"key": "rev#p@copr.test", "states": [state_json(b"data")]}, headers=headers)
    assert response.status_code == 409 and "revoked" in response.get_json()["error"]
    info = client.get("/keys/rev%23p@copr.test", headers=headers).get_json()
    assert info["signing_fingerprint"] != info["fingerprint"]  # never the primary in its place
    from pkgsign.keystore import KeyStore

    stored = KeyStore(config).get_metadata("rev#p@copr.test")
    assert stored["revoked"] and "revoked" in stored["signing_problem"]
    # add-subkey gives it a new signing subkey; it signs again, with that one
    proc = run_admin("add-subkey", "--config", config.file, "rev#p@copr.test")
    assert "added signing subkey" in proc.stderr, proc.stderr
    prepared = client.post("/sign", json={"key": "rev#p@copr.test", "states": [state_json(b"data")]}, headers=headers)
    assert prepared.status_code == 200
    fresh = _gnupg.find_secret_key_by(gpg, info["fingerprint"])
    assert [sub.revoked for sub in fresh.subkeys] == [True, False]
    assert prepared.get_json()["signing_fingerprint"] == fresh.subkeys[1].fingerprint


def test_a_key_whose_only_signing_subkey_has_expired_is_refused(private_app):
    client, headers, config = private_app
    from pkgsign.admin import _refresh_metadata
    from pkgsign.keystore import KeyStore

    made = client.post("/gen_key", json={"name_real": "e", "name_email": "exp#p@copr.test"}, headers=headers)
    assert made.status_code == 201
    fingerprint = made.get_json()["fingerprint"]
    gpg = _gnupg.GnuPG(config.gnupg_home, create=False)
    subkey = _gnupg.find_secret_key_by(gpg, fingerprint).subkeys[0].fingerprint
    gpg.run(["--quick-set-expire", fingerprint, "seconds=1", subkey], passphrase="")
    time.sleep(2.1)
    listed = _gnupg.find_secret_key_by(gpg, fingerprint)
    assert listed.subkeys[0].expired and not listed.expired
    assert _refresh_metadata(KeyStore(config)) == 1  # what maintain does after prolonging
    response = client.post("/sign", json={"key": "exp#p@copr.test", "states": [state_json(b"data")]}, headers=headers)
    assert response.status_code == 409 and "expired" in response.get_json()["error"]
    with pytest.raises(NoSigningKey, match="expired"):
        signing_part(listed)
    record = key_record(listed, "exp#p@copr.test")
    assert record["signing_fingerprint"] == subkey and "expired" in record["signing_problem"]


def test_signing_part_rules_on_real_keys(tmp_path):
    """Primary only when there is no signing subkey; a subkey whose secret is not here is not usable;
    a certify-only key without subkeys cannot sign."""
    with _gnupg.TemporaryGnuPG() as gpg:
        legacy = gpg.generate_key("legacy", "legacy@x.test", algorithm="ed25519", usage=("cert", "sign"))
        key = _gnupg.find_secret_key_by(gpg, legacy)
        assert signing_part(key) is key and key_record(key)["signing_problem"] is None
        shaped = gpg.generate_key("shaped", "shaped@x.test", algorithm="ed25519", usage=("cert",),
                                  subkey_usage=("sign",))
        key = _gnupg.find_secret_key_by(gpg, shaped)
        assert signing_part(key) is key.subkeys[0]
        # the subkey's secret goes (a stub, ssb#): the key may not fall back to its primary
        gpg.run(["--yes", "--delete-secret-keys", key.subkeys[0].fingerprint + "!"])
        key = _gnupg.find_secret_key_by(gpg, shaped)
        assert key.secret_present and not key.subkeys[0].secret_present
        with pytest.raises(NoSigningKey, match="without its secret"):
            signing_part(key)
        assert key_record(key)["signing_fingerprint"] == key.subkeys[0].fingerprint
        certify = gpg.generate_key("cert", "cert@x.test", algorithm="ed25519", usage=("cert",))
        with pytest.raises(NoSigningKey, match="may not sign"):
            signing_part(_gnupg.find_secret_key_by(gpg, certify))


def test_state_from_before_subkeys_keeps_signing_with_the_primary(tmp_path):
    """A state directory written by earlier versions: a primary-only generated key (cert+sign) whose
    metadata has no signing_problem field, and a pool file from then. The key still signs with its
    primary; the pool file serves as a piece of a new key."""
    root = tmp_path / "old"
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    inst.tokens["client"] = (root / "client.token").read_text().strip()
    inst.set_option("keygen", "pool_size", "1")
    inst.set_option("keygen", "pool_algorithms", "ed25519")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    email = "legacy#gen@copr.test"
    fingerprint = gpg.generate_key("legacy", email, algorithm="ed25519", usage=("cert", "sign"))
    old_record = key_record(_gnupg.find_secret_key_by(gpg, fingerprint), email, origin="generated")
    del old_record["signing_problem"]  # what the old code wrote
    from pkgsign.config import load_config
    from pkgsign.keystore import KeyStore

    KeyStore(load_config(inst.config)).save_metadata(old_record)
    scratch = tmp_path / "old-pool"
    keygrip = KeyMaterialGeneration(str(scratch), "ed25519").wait()
    os.makedirs(str(root / "pool" / "ready"), exist_ok=True)
    os.rename(str(scratch / "private-keys-v1.d" / (keygrip + ".key")),
              str(root / "pool" / "ready" / ("ed25519-%s.key" % keygrip)))
    inst.start()
    try:
        data = tmp_path / "data"
        data.write_bytes(b"legacy\n")
        assert inst.sign("-u", email, "-d", str(data)).returncode == 0
        check = _verifying_home(tmp_path, "verify", inst.sign("-u", email, "-p").stdout)
        try:
            assert _signature_issuer(check, str(data) + ".asc", data) == (fingerprint, fingerprint)
        finally:
            check.kill_agent()
        status, _headers, _body = inst.request("POST", "/gen_key", {"name_real": "n", "name_email": "new#p@copr.test"})
        assert status == 201
        _status, _headers, info = inst.request("GET", "/keys/new%23p@copr.test")
        key = _gnupg.find_secret_key_by(gpg, info["fingerprint"])
        assert keygrip in (key.keygrip, key.subkeys[0].keygrip)
        _assert_certify_primary_signing_subkey(inst.sign("-u", "new#p@copr.test", "-p").stdout, info)
    finally:
        inst.stop()
        gpg.kill_agent()
