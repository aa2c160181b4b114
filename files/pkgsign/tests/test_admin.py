"""pkgsign-admin: init, audit verify, import-copr, maintain; crash recovery and key-per-email."""

import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from pkgsign_testlib import Instance, run_admin, state_json
from pkgsign import _gnupg


def test_init_creates_private_instance(tmp_path):
    root = tmp_path / "fresh"
    proc = run_admin("init", str(root), "--algorithm", "ed25519")
    assert "serve" in proc.stdout
    for name in ("gnupg", "phrases"):
        assert stat.S_IMODE(os.stat(str(root / name)).st_mode) == 0o700
    for name in ("pkgsign.conf", "client.token", "sign.conf", "tokens.json"):
        assert stat.S_IMODE(os.stat(str(root / name)).st_mode) == 0o600, name
    secret = (root / "client.token").read_text().strip()
    tokens = (root / "tokens.json").read_text()
    assert secret not in tokens and json.loads(tokens)["tokens"]["client"]["scopes"] == ["keygen", "sign"]
    again = run_admin("init", str(root), check=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_admin_errors_are_one_line(tmp_path):
    proc = run_admin("token", "add", "--config", str(tmp_path / "missing.conf"), "--id", "x", "--scopes", "sign",
                     "--keys", "*", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot read configuration" in proc.stderr
    run_admin("init", str(tmp_path / "i"))
    conf = str(tmp_path / "i" / "pkgsign.conf")
    for args, fragment in ((["--scopes", "sign,root", "--keys", "*"], "unknown scope"),
                           (["--scopes", "sign", "--keys", ""], "key pattern"),
                           (["--scopes", "sign", "--keys", "*", "--rate", "fast"], "rate")):
        proc = run_admin("token", "add", "--config", conf, "--id", "t1", *args, check=False)
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr


def test_audit_log_chain_detects_edit_removal_reorder(instance, tmp_path):
    target = tmp_path / "audited.txt"
    target.write_text("audited")
    assert instance.sign("-u", "modern", "-d", str(target)).returncode == 0
    assert instance.sign("-u", "modern", "-D", str(target)).returncode == 0
    proc = run_admin("audit", "verify", "--config", instance.config)
    assert "chain intact" in proc.stdout
    lines = open(instance.audit_log, "rb").read().splitlines(keepends=True)
    assert len(lines) >= 4
    records = [json.loads(line) for line in lines]
    assert {"time", "token", "client", "operation", "result", "seq", "prev"} <= set(records[0])
    assert any(r["operation"] == "sign" and r.get("digests") for r in records)
    for secret in instance.tokens.values():
        assert secret not in open(instance.audit_log).read()

    def verify_copy(mutated):
        root = tmp_path / ("copy%d" % abs(hash(tuple(mutated))))
        root.mkdir()
        conf = root / "pkgsign.conf"
        conf.write_text("[server]\nstate_dir = %s\naudit_log = %s\n" % (root, root / "audit.log"))
        (root / "audit.log").write_bytes(b"".join(mutated))
        with open(instance.audit_log + ".head", "rb") as head:
            (root / "audit.log.head").write_bytes(head.read())
        return run_admin("audit", "verify", "--config", str(conf), check=False)

    lines = open(instance.audit_log, "rb").read().splitlines(keepends=True)
    assert verify_copy(lines).returncode == 0
    edited = list(lines)
    edited[1] = edited[1].replace(b'"result":"', b'"result":"x')
    removed = lines[:1] + lines[2:]
    reordered = [lines[1], lines[0]] + lines[2:]
    truncated = lines[:-1]
    for mutated in (edited, removed, reordered, truncated):
        proc = verify_copy(mutated)
        assert proc.returncode == 1, proc.stdout
        assert "audit log" in proc.stdout


def test_gen_key_is_one_key_per_email_under_concurrency(instance):
    email = "race#one@copr.test"
    results = []

    def call():
        status, _headers, body = instance.request("POST", "/gen_key", {"name_real": "race", "name_email": email})
        results.append((status, body.get("fingerprint")))

    threads = [threading.Thread(target=call) for _index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _fpr in results) == [200] * 11 + [201]
    assert len({fpr for _status, fpr in results}) == 1
    gpg = _gnupg.GnuPG(os.path.join(instance.root, "gnupg"), create=False)
    assert len(_gnupg.find_keys_by(gpg, "<%s>" % email)) == 1


def test_kill_9_during_keygen_leaves_no_half_made_key(tmp_path):
    """Kill the server while it generates keys; after restart metadata and keyring agree."""
    root = tmp_path / "crash"
    run_admin("init", str(root), "--algorithm", "rsa2048")
    inst = Instance(root)
    inst.tokens["client"] = (root / "client.token").read_text().strip()
    inst.start()
    answered = {}

    def call(number):
        email = "crash#p%d@copr.test" % number
        try:
            status, _headers, _body = inst.request("POST", "/gen_key", {"name_real": "crash", "name_email": email})
            answered[email] = status
        except OSError:
            pass

    threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)
    os.killpg(inst.process.pid, signal.SIGKILL)
    inst.process.wait()
    for thread in threads:
        thread.join()
    time.sleep(1.5)  # let orphaned gpg children finish or die
    inst.start()
    status, _headers, body = inst.request("GET", "/health/ready", token=None)
    assert status == 200, body
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    keyring = {email.lower(): key for key in gpg.list_keys() for email in key.emails}
    metadata = {json.load(open(str(path)))["name_email"]: json.load(open(str(path)))
                for path in (root / "keys").glob("*.json")}
    assert not list((root / "pending").iterdir())
    for email, record in metadata.items():
        assert email in keyring and keyring[email].secret_present, email
        assert keyring[email].fingerprint == record["fingerprint"]
    for email, key in keyring.items():
        assert email in metadata, "key without metadata: %s" % email
    for email, status in answered.items():
        if status == 201:
            assert email in metadata
    inst.stop()
    gpg.kill_agent()


def test_import_copr_keeps_keys_emails_and_passphrases(instance, tmp_path):
    copr_home = tmp_path / "copr-gnupg"
    phrases = tmp_path / "copr-phrases"
    phrases.mkdir()
    copr = _gnupg.GnuPG(str(copr_home))
    protected = "olduser#legacy@copr.test"
    plain = "olduser#plain@copr.test"
    copr.generate_key("olduser_legacy", protected, algorithm="ed25519", passphrase="copr-phrase-123")
    copr.generate_key("olduser_plain", plain, algorithm="ed25519")
    (phrases / protected).write_text("copr-phrase-123\n")
    copr.kill_agent()
    proc = run_admin("import-copr", "--config", instance.config, "--gnupghome", str(copr_home),
                     "--phrases", str(phrases))
    copr.kill_agent()  # import-copr exported through the old home's agent
    assert "2 imported, 0 failed" in proc.stderr, proc.stderr
    target = tmp_path / "data"
    target.write_bytes(b"legacy data")
    for email in (protected, plain):
        proc = instance.sign("-u", email, "-d", str(target))
        assert proc.returncode == 0, proc.stderr
        pub = instance.sign("-u", email, "-p").stdout
        check = _gnupg.GnuPG(str(tmp_path / ("v-" + email.split("#")[1])))
        check.import_keys(pub)
        check.verify(str(target) + ".asc", str(target))
        check.kill_agent()
    phrase_copy = os.path.join(instance.root, "phrases", protected)
    assert stat.S_IMODE(os.stat(phrase_copy).st_mode) == 0o600
    again = run_admin("import-copr", "--config", instance.config, "--gnupghome", str(copr_home),
                      "--phrases", str(phrases))
    copr.kill_agent()
    assert "already present" in again.stderr


def test_import_copr_refuses_emails_that_are_paths(instance, tmp_path):
    """A copr-keygen keyring is input: a user id "<../../x#p@c>" (gpg makes it) must neither read a
    phrase file outside --phrases nor write one outside the instance's phrases directory."""
    copr_home = tmp_path / "copr-gnupg"
    copr_home.mkdir(mode=0o700)
    phrases = tmp_path / "copr-phrases" / "inner"
    phrases.mkdir(parents=True)
    escaping = "../escape#p@copr.test"
    (phrases.parent / "escape#p@copr.test").write_text("outside-phrase-123\n")  # what ../ would reach
    env = dict(os.environ, GNUPGHOME=str(copr_home))
    made = subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                           "--quick-gen-key", "Evil <%s>" % escaping, "ed25519", "default", "never"],
                          input="", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert made.returncode == 0, made.stderr
    good = "olduser#fine@copr.test"
    copr = _gnupg.GnuPG(str(copr_home))
    copr.generate_key("olduser_fine", good, algorithm="ed25519")
    copr.kill_agent()
    proc = run_admin("import-copr", "--config", instance.config, "--gnupghome", str(copr_home),
                     "--phrases", str(phrases), check=False)
    copr.kill_agent()
    assert proc.returncode == 1, proc.stderr
    assert "1 imported, 1 failed" in proc.stderr and "is not a single file name" in proc.stderr, proc.stderr
    written = [os.path.join(d, f) for d, _s, files in os.walk(tmp_path) for f in files if f.startswith("escape#")]
    assert written == [str(phrases.parent / "escape#p@copr.test")], written  # only the planted file
    listing = _gnupg.GnuPG(os.path.join(instance.root, "gnupg"), create=False).list_keys()
    assert [key.emails for key in listing if any("escape" in e for e in key.emails)] == []


def test_maintain_prolongs_expiring_keys(tmp_path):
    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    inst.tokens["client"] = (root / "client.token").read_text().strip()
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    client = create_app(load_config(inst.config)).test_client()
    headers = {"Authorization": "Bearer " + inst.tokens["client"]}
    soon = client.post("/gen_key", json={"name_real": "s", "name_email": "soon#p@copr.test", "expire": 10},
                       headers=headers)
    never = client.post("/gen_key", json={"name_real": "n", "name_email": "never#p@copr.test"}, headers=headers)
    assert soon.status_code == 201 and never.status_code == 201
    before = client.get("/keys/soon%23p@copr.test", headers=headers).get_json()["expires"]
    assert before and before < time.time() + 11 * 86400
    exported_before = client.get("/pubkey/soon%23p@copr.test", headers=headers).data
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "30", "--extend", "1825d")
    assert "1 key(s) expire within 30 days" in proc.stderr and "extended" in proc.stderr, proc.stderr
    after = client.get("/keys/soon%23p@copr.test", headers=headers).get_json()["expires"]
    assert after > time.time() + 1800 * 86400
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    assert _gnupg.find_secret_key_by(gpg, "<soon#p@copr.test>").expires == after
    assert "no-auto-check-trustdb" in (root / "gnupg" / "gpg.conf").read_text()
    # the served public key carries the new expiry (the cached export was dropped)
    exported_after = client.get("/pubkey/soon%23p@copr.test", headers=headers).data
    assert exported_after != exported_before
    check = _gnupg.GnuPG(str(tmp_path / "check"))
    check.import_keys(exported_after)
    assert check.list_keys()[0].expires == after
    check.kill_agent()
    # a key revoked by hand in the keyring stops signing at once (the keyring changed), and
    # maintain writes the revocation into its metadata
    fpr = never.get_json()["fingerprint"]
    sign_body = {"key": "never#p@copr.test", "states": [state_json(b"maintained")]}
    assert client.post("/sign", json=sign_body, headers=headers).status_code == 200
    certificate = (root / "gnupg" / "openpgp-revocs.d" / (fpr + ".rev")).read_text()
    gpg.import_keys(certificate.replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK"))
    response = client.post("/sign", json=sign_body, headers=headers)
    assert response.status_code == 409 and "revoked" in response.get_json()["error"]
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "30")
    assert "metadata of 1 key(s) refreshed" in proc.stderr, proc.stderr
    response = client.post("/sign", json=sign_body, headers=headers)
    assert response.status_code == 409 and "revoked" in response.get_json()["error"]
    gpg.kill_agent()


def test_key_pool_binds_pregenerated_keys_and_refills(tmp_path):
    root = tmp_path / "pool"
    run_admin("init", str(root), "--algorithm", "ed25519")
    conf = root / "pkgsign.conf"
    conf.write_text(conf.read_text().replace("[keygen]\n", "[keygen]\npool_size = 2\npool_algorithms = ed25519, rsa2048\n"))
    proc = run_admin("pool", "fill", "--config", str(conf))
    assert "ed25519 2/2" in proc.stdout and "rsa2048 2/2" in proc.stdout, proc.stdout + proc.stderr
    ready = sorted(os.listdir(str(root / "pool" / "ready")))
    # two keys per algorithm, two pieces of key material each (certify-only primary, signing subkey)
    assert len(ready) == 8 and all(stat.S_IMODE(os.stat(str(root / "pool" / "ready" / n)).st_mode) & 0o077 == 0
                                   for n in ready)
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    app = create_app(load_config(str(conf)))
    client = app.test_client()
    headers = {"Authorization": "Bearer " + (root / "client.token").read_text().strip()}
    started = time.monotonic()
    response = client.post("/gen_key", json={"name_real": "fast", "name_email": "fast#rsa@copr.test",
                                             "key_length": 2048}, headers=headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.get_json()
    info = client.get("/keys/fast%23rsa@copr.test", headers=headers).get_json()
    assert info["algorithm"] == "rsa2048" and info["uids"] == ["fast <fast#rsa@copr.test>"]
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    key = _gnupg.find_secret_key_by(gpg, info["fingerprint"])
    # the pool's material, not fresh keys, for both parts
    assert "rsa2048-%s.key" % key.keygrip in ready and "rsa2048-%s.key" % key.subkeys[0].keygrip in ready
    assert key.usage == ["cert"] and [sub.usage for sub in key.subkeys] == [["sign"]]
    assert info["signing_fingerprint"] == key.subkeys[0].fingerprint
    assert elapsed < 5
    # the pool key signs and the signature verifies
    signed = client.post("/sign", json={"key": "fast#rsa@copr.test", "states": [state_json(b"pool")],
                                        "armor": True}, headers=headers).get_json()
    (tmp_path / "d").write_bytes(b"pool")
    (tmp_path / "d.asc").write_text(signed["signatures"][0]["armored"])
    assert gpg.verify(str(tmp_path / "d.asc"), str(tmp_path / "d")) == [info["fingerprint"]]
    # the background thread tops the pool up again
    deadline = time.time() + 60
    while time.time() < deadline and len(os.listdir(str(root / "pool" / "ready"))) < 8:
        time.sleep(0.2)
    assert len(os.listdir(str(root / "pool" / "ready"))) == 8
    app.extensions["pkgsign"].keys.pool.stop()
    gpg.kill_agent()
    # pool keys are made by agents that were our children: no agent or scratch home is left
    assert not (root / "pool" / "gnupg").exists()
    assert [name for name in os.listdir(str(root / "keygen")) if not name.startswith(".")] == []


def _ceremony_key(tmp_path, expires):
    """A key as the ceremony leaves it on a signer: primary on the 'bastion' (with a passphrase),
    only its signing subkey exported; returns (primary fingerprint, subkey-only export)."""
    bastion = _gnupg.GnuPG(str(tmp_path / "bastion"))
    fpr = bastion.generate_key("Ceremony", "release@ceremony.test", algorithm="ed25519", usage=("cert",),
                               expires=expires, passphrase="bastion secret")
    sub = bastion.add_subkey(fpr, algorithm="ed25519", usage="sign", passphrase="bastion secret")
    export = bastion.export_secret_subkeys([sub], passphrase="bastion secret")
    bastion.kill_agent()
    return fpr, export


def test_maintain_skips_sec_stub_keys_and_warns_before_they_expire(tmp_path):
    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    fpr, export = _ceremony_key(tmp_path, "20d")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    gpg.import_keys(export)
    assert not gpg.get_key(fpr).secret_present  # sec#
    before = gpg.get_key(fpr).expires
    inst = Instance(root)
    inst.set_option("maintenance", "warn_days", "30")
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "365", check=False)
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if "skipped " + fpr in line]
    assert len(skipped) == 1, proc.stderr
    date = time.strftime("%Y-%m-%d", time.gmtime(before))
    assert skipped[0].startswith("WARNING: ") and "sec#" in skipped[0] and date in skipped[0], skipped[0]
    assert "FAILED" not in proc.stderr and "0 key(s) expire within 365 days" in proc.stderr, proc.stderr
    assert gpg.get_key(fpr).expires == before
    # outside the warning window: still reported as skipped, without the warning
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "365", "--warn-days", "10")
    skipped = [line for line in proc.stderr.splitlines() if "skipped " + fpr in line]
    assert len(skipped) == 1 and not skipped[0].startswith("WARNING"), proc.stderr
    # outside both windows: not mentioned
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "5", "--warn-days", "10")
    assert fpr not in proc.stderr, proc.stderr
    gpg.kill_agent()


def test_maintain_prolongs_held_key_by_months_next_to_a_sec_stub(tmp_path):
    # One grammar for lifetimes: in [maintenance] extend, m is months as in gpg and the modules.
    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    inst.set_option("maintenance", "extend", "2m")
    gpg = _gnupg.GnuPG(str(root / "gnupg"), create=False)
    held = gpg.generate_key("Held", "held@signer.test", algorithm="ed25519", expires="5d")
    stub, export = _ceremony_key(tmp_path, "5d")
    gpg.import_keys(export)
    proc = run_admin("maintain", "--config", inst.config, "--within-days", "30", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "extended " + held in proc.stderr and "skipped " + stub in proc.stderr, proc.stderr
    expires = gpg.get_key(held).expires
    assert abs(expires - (time.time() + 60 * 86400)) < 2 * 86400, "2m is two months"
    assert gpg.get_key(stub).expires < time.time() + 6 * 86400
    gpg.kill_agent()


def test_maintain_extend_is_a_lifetime_in_the_modules_grammar(tmp_path):
    from pkgsign.config import ConfigError, load_config

    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    assert load_config(inst.config).maintain_extend == "1825d"
    for good, spec in (("6m", "6m"), ("5y", "5y"), ("90", "90d"), ("2w", "2w")):
        inst.set_option("maintenance", "extend", good)
        assert load_config(inst.config).maintain_extend == spec
    for bad in ("0", "never", "5h", "2030-01-01", "m"):
        inst.set_option("maintenance", "extend", bad)
        with pytest.raises(ConfigError, match="lifetime"):
            load_config(inst.config)
    proc = run_admin("maintain", "--config", inst.config, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "lifetime" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start pkgsign-admin as root")
def test_admin_started_as_root_runs_as_the_state_owner_and_the_service_keeps_answering(tmp_path):
    import pwd
    import shutil
    import subprocess
    import tempfile

    from pkgsign_testlib import PYTHON, child_env, free_port

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="pkgsign-owner-test-", dir="/tmp")  # reachable by nobody
    try:
        root = os.path.join(base, "inst")
        run_admin("init", root, "--algorithm", "ed25519")
        for directory, dirs, files in os.walk(base):
            for name in [directory] + [os.path.join(directory, n) for n in dirs + files]:
                os.chown(name, nobody.pw_uid, nobody.pw_gid)
        inst = Instance(root)
        inst.tokens["client"] = open(os.path.join(root, "client.token")).read().strip()
        port = free_port()
        server = subprocess.Popen(
            [PYTHON, "-m", "pkgsign.admin", "serve", "--config", inst.config, "--bind", "127.0.0.1:%d" % port],
            env=child_env(HOME=base), user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            inst.url = "http://127.0.0.1:%d" % port
            deadline = time.time() + 30
            while not _up(inst):
                assert server.poll() is None and time.time() < deadline, "server did not start"
                time.sleep(0.1)
            tokens = os.stat(inst.tokens_file)
            # as root, the default configuration from $PKGSIGN_CONFIG, no --config
            proc = subprocess.run([PYTHON, "-m", "pkgsign.admin", "token", "add", "--id", "added-by-root",
                                   "--scopes", "keygen", "--keys", "*"], env=child_env(PKGSIGN_CONFIG=inst.config),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
            assert proc.returncode == 0, proc.stderr
            after = os.stat(inst.tokens_file)
            assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == \
                (tokens.st_uid, tokens.st_gid, stat.S_IMODE(tokens.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o600)
            inst.tokens["added-by-root"] = proc.stdout.strip()
            status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "r", "name_email": "r#o@x.test"},
                                                  token="added-by-root")
            assert status == 201, body
            assert inst.request("GET", "/keys/r%23o@x.test")[0] == 200
            not_owned = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
                         if os.lstat(os.path.join(d, n)).st_uid != nobody.pw_uid]
            assert not_owned == []
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        # a state directory that does not exist: refused in one line, nothing created
        missing = os.path.join(base, "missing.conf")
        with open(inst.config) as handle:
            text = handle.read().replace(root, os.path.join(base, "gone"))
        with open(missing, "w") as handle:
            handle.write(text)
        proc = run_admin("token", "list", "--config", missing, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "state directory" in proc.stderr
        assert not os.path.exists(os.path.join(base, "gone"))
    finally:
        # the agent the server (as nobody) started, by its own socket
        subprocess.run(["gpgconf", "--homedir", os.path.join(base, "inst", "gnupg"), "--kill", "gpg-agent"],
                       user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], env=child_env(HOME=base),
                       check=False)
        shutil.rmtree(base, ignore_errors=True)


def _up(inst):
    try:
        return inst.request("GET", "/ping", token=None)[0] == 200
    except OSError:
        return False
