"""The real `sign` client against `pkgsign-admin serve` on 127.0.0.1 (real gpg, real rpm)."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ED_KEY, RSA_KEY, child_env, gpg_verify, payload_digest, rpm_checksig

from pkgsign import _gnupg


def test_ping(instance):
    proc = instance.sign("-t")
    assert proc.returncode == 0, proc.stderr
    bad = instance.sign("-t", conf=_conf(instance, "server: http://127.0.0.1:9\n"))
    assert bad.returncode == 1 and b"cannot reach" in bad.stderr


def test_t_proves_the_token_and_names_server_and_token(instance, tmp_path):
    proc = instance.sign("-t")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.decode()
    assert line.count("\n") == 1 and line.startswith(instance.url + ": token client accepted"), line
    assert "scopes keygen,sign" in line and os.path.join(instance.root, "client.token") in line
    proc = instance.sign("-t", token="limited")
    assert proc.returncode == 0 and "token limited accepted" in proc.stdout.decode() \
        and "alice#*@copr.test" in proc.stdout.decode(), proc.stderr
    wrong = os.path.join(instance.root, "wrong.token")
    with open(wrong, "w") as handle:
        handle.write("not-a-token-of-this-server\n")
    proc = instance.sign("-t", token="wrong")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and proc.stdout == b"", err
    assert err.startswith("sign: " + instance.url) and "invalid or revoked token" in err and wrong in err
    no_token = tmp_path / "no-token.conf"
    no_token.write_text("server: %s\n" % instance.url)
    proc = instance.sign("-t", conf=str(no_token))
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and "no token" in err, err


def test_help_is_for_users():
    proc = subprocess.run([sys.executable, "-m", "pkgsign.client", "--help"], env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "sign -t" in proc.stdout and "-u USER" in proc.stdout
    assert "``" not in proc.stdout and "import" not in proc.stdout and "start-up" not in proc.stdout


def _conf(instance, text):
    path = os.path.join(instance.root, "other-%d.conf" % abs(hash(text)))
    with open(path, "w") as handle:
        handle.write(text + "token_file: %s\n" % os.path.join(instance.root, "client.token"))
    return path


def test_pubkey_and_unknown_key(instance):
    proc = instance.sign("-u", ED_KEY, "-p")
    assert proc.returncode == 0 and proc.stdout.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    proc = instance.sign("-u", "nobody#none@copr.test", "-p")
    assert proc.returncode != 0
    assert proc.stderr.decode().strip() == "unknown key: nobody#none@copr.test"
    keyid = instance.sign("-u", "modern", "-k")
    assert keyid.returncode == 0 and len(keyid.stdout.strip()) == 16


@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
@pytest.mark.parametrize("digest_algo", ["sha256", "sha512"])
def test_detached_armored_and_binary_many_files(instance, verifier, tmp_path, key, digest_algo):
    files = []
    for number in range(5):
        path = tmp_path / ("f%d.bin" % number)
        path.write_bytes(os.urandom(1000 + number))
        files.append(path)
    proc = instance.sign("-u", key, "-h", digest_algo, "-d", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    proc = instance.sign("-u", key, "-h", digest_algo, "-D", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    for path in files:
        asc = path.with_name(path.name + ".asc")
        assert asc.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
        gpg_verify(verifier, asc, path)
        gpg_verify(verifier, path.with_name(path.name + ".sig"), path)
    # the hash algorithm asked for is the one in the signature
    listing = subprocess.run(["gpg", "--list-packets", str(files[0]) + ".sig"], stdout=subprocess.PIPE,
                             text=True, env={"LC_ALL": "C", "GNUPGHOME": verifier.homedir, "PATH": os.environ["PATH"]}, check=False)
    assert "digest algo %d" % {"sha256": 8, "sha512": 10}[digest_algo] in listing.stdout


def test_detached_from_stdin(instance, verifier, tmp_path):
    data = b"from standard input\n"
    proc = instance.sign("-u", "modern", "-d", input=data)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "data.asc").write_bytes(proc.stdout)
    gpg_verify(verifier, tmp_path / "data.asc", tmp_path / "data")


def test_clearsign_file_and_stdin(instance, verifier, tmp_path):
    text = "Line one\n-----BEGIN looks like armor\n- dash\ntrailing blanks   \n\nend\n"
    path = tmp_path / "note.txt"
    path.write_text(text)
    proc = instance.sign("-u", ED_KEY, "-c", str(path))
    assert proc.returncode == 0, proc.stderr
    signed = path.read_text()
    assert signed.startswith("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n")
    gpg_verify(verifier, path)
    # gpg recovers the original text
    out = tmp_path / "out.txt"
    verifier.run(["--output", str(out), "--decrypt", str(path)])
    # (trailing blanks are not part of a cleartext signature, RFC 4880 7.1)
    assert out.read_text() == text.replace("blanks   ", "blanks")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9 au lait\n")  # not UTF-8: must still verify
    assert instance.sign("-u", ED_KEY, "-c", str(latin1)).returncode == 0
    gpg_verify(verifier, latin1)
    assert b"caf\xe9" in latin1.read_bytes()
    proc = instance.sign("-u", RSA_KEY, "-h", "sha512", "-c", input=b"piped text\n")
    assert proc.returncode == 0 and b"Hash: SHA512" in proc.stdout
    (tmp_path / "piped.asc").write_bytes(proc.stdout)
    gpg_verify(verifier, tmp_path / "piped.asc")


def test_repomd_xml_signed_as_repository_metadata(instance, verifier, tmp_path):
    repodata = tmp_path / "repodata"
    repodata.mkdir()
    repomd = repodata / "repomd.xml"
    repomd.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo">\n'
                      '  <revision>1700000000</revision>\n</repomd>\n')
    proc = instance.sign("-u", "el10-x86_64", "-h", "sha256", "-d", str(repomd))
    assert proc.returncode == 0, proc.stderr
    assert gpg_verify(verifier, repodata / "repomd.xml.asc", repomd)
    # tampering with the metadata breaks the signature
    repomd.write_text(repomd.read_text().replace("1700000000", "1700000001"))
    with pytest.raises(Exception):
        gpg_verify(verifier, repodata / "repomd.xml.asc", repomd)


def conf_with(instance, tmp_path, **settings):
    """A copy of the instance's sign.conf with extra ``key: value`` lines."""
    path = tmp_path / "sign.conf"
    with open(instance.sign_conf) as handle:
        text = handle.read()
    path.write_text(text + "".join("%s: %s\n" % item for item in settings.items()))
    return str(path)


@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
@pytest.mark.parametrize("digest_algo", ["sha256", "sha512"])
@pytest.mark.parametrize("method", ["native", "rpmsign"])
def test_rpm_signed_verified_by_rpmkeys(instance, tiny_rpm, tmp_path, key, digest_algo, method):
    conf = conf_with(instance, tmp_path, rpm_signing=method)
    pubkey = tmp_path / "key.asc"
    pubkey.write_bytes(instance.sign("-u", key, "-p").stdout)
    rpms = []
    for number in range(3):
        rpm = tmp_path / ("tiny-%d.rpm" % number)
        shutil.copy(str(tiny_rpm), str(rpm))
        rpms.append(rpm)
    before = payload_digest(tiny_rpm)
    proc = instance.sign("-4", "-h", digest_algo, "-u", key, "-r", *map(str, rpms), conf=conf)
    assert proc.returncode == 0, proc.stderr
    for rpm in rpms:
        rc, out = rpm_checksig(rpm, [pubkey], tmp_path / "rpmdb")
        assert rc == 0 and "Signature, key ID" in out and "OK" in out and "NOKEY" not in out, out
        assert ("/%s Signature" % digest_algo.upper()) in out, out
        assert payload_digest(rpm) == before  # payload unchanged
    # without the key imported, rpm does not accept it as signed-and-trusted
    rc, out = rpm_checksig(rpms[0], [], tmp_path / "emptydb")
    assert "NOKEY" in out


def test_rpm_resigned_with_another_key(instance, tiny_rpm, tmp_path):
    """A signed package goes through rpmsign, which replaces the old header signature."""
    rsa_pubkey = tmp_path / "rsa.asc"
    rsa_pubkey.write_bytes(instance.sign("-u", RSA_KEY, "-p").stdout)
    rpm = tmp_path / "again.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    assert instance.sign("-u", ED_KEY, "-r", str(rpm)).returncode == 0
    proc = instance.sign("-u", RSA_KEY, "-r", str(rpm))
    assert proc.returncode == 0, proc.stderr
    query = ["rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}|%{DSAHEADER:pgpsig}", str(rpm)]
    rsa, ed = subprocess.run(query, stdout=subprocess.PIPE, text=True, check=False).stdout.split("|")
    assert "RSA" in rsa and ed == "(none)", (rsa, ed)
    rc, out = rpm_checksig(rpm, [rsa_pubkey], tmp_path / "rpmdb")
    assert rc == 0 and "Header V4 RSA/SHA256 Signature" in out and "NOKEY" not in out, out


def test_rpm_unsign(instance, tiny_rpm, tmp_path):
    rpm = tmp_path / "u.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    assert instance.sign("-u", ED_KEY, "-r", str(rpm)).returncode == 0
    query = ["rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}|%{DSAHEADER:pgpsig}", str(rpm)]
    assert "Key ID" in subprocess.run(query, stdout=subprocess.PIPE, text=True, check=False).stdout
    proc = instance.sign("--unsign", str(rpm))
    assert proc.returncode == 0, proc.stderr
    assert subprocess.run(query, stdout=subprocess.PIPE, text=True, check=False).stdout == "(none)|(none)"


def test_copr_call_sequence(instance, tiny_rpm, tmp_path):
    """What Copr's backend does: -p fails with 'unknown key:', POST /gen_key, then -r signs."""
    email = "copruser#coprproject@copr.test"
    proc = instance.sign("-u", email, "-p")
    assert proc.returncode != 0 and "unknown key:" in proc.stderr.decode()
    status, _headers, body = instance.request("POST", "/gen_key", form={"name_real": "copruser_coprproject",
                                                                        "name_email": email})
    assert status == 201, body
    pubkey = tmp_path / "pubkey.gpg"
    proc = instance.sign("-u", email, "-p")
    assert proc.returncode == 0
    pubkey.write_bytes(proc.stdout)
    rpm = tmp_path / "copr.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    proc = instance.sign("-4", "-h", "sha256", "-u", email, "-r", str(rpm))
    assert proc.returncode == 0, proc.stderr
    rc, out = rpm_checksig(rpm, [pubkey], tmp_path / "db")
    assert rc == 0 and "NOKEY" not in out, out


def test_unknown_key_on_sign_paths(instance, tiny_rpm, tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("x")
    rpm = tmp_path / "x.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    for args in (["-d", str(target)], ["-r", str(rpm)], ["-c", str(target)]):
        proc = instance.sign("-u", "ghost#none@copr.test", *args)
        assert proc.returncode != 0
        assert proc.stderr.decode().strip() == "unknown key: ghost#none@copr.test"
    assert not (tmp_path / "x.txt.asc").exists()


def test_client_auth_errors(instance, tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("a")
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-valid-token-at-all\n")
    env_conf = _conf(instance, "server: %s\n" % instance.url)
    proc = subprocess.run(instance_cmd(), env=_env(instance, env_conf, SIGN_TOKEN_FILE=str(bad)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 1 and b"authentication failed" in proc.stderr
    proc = instance.sign("-u", RSA_KEY, "-d", str(target), token="limited")
    assert proc.returncode == 1 and b"may not use key" in proc.stderr
    proc = instance.sign("-u", ED_KEY, "-d", str(target), token="keygen-only")
    assert proc.returncode == 1 and b"scope" in proc.stderr


def instance_cmd():
    import sys

    return [sys.executable, "-m", "pkgsign.client", "-u", ED_KEY, "-p"]


def _env(instance, conf, **extra):
    from conftest import child_env

    return child_env(SIGN_CONF=conf, **extra)


def test_client_rate_limited(instance, tmp_path):
    instance.add_token("tiny-rate", ["sign"], ["*"], rate="2/3600")
    results = [instance.sign("-u", ED_KEY, "-p", token="tiny-rate") for _index in range(3)]
    assert [r.returncode for r in results] == [0, 0, 1]
    assert b"rate limited" in results[2].stderr and b"Retry-After" in results[2].stderr


def test_token_changes_apply_without_restart(instance):
    from conftest import run_admin

    proc = run_admin("token", "add", "--config", instance.config, "--id", "ci-runner", "--scopes", "sign",
                     "--keys", "*")
    secret = proc.stdout.strip()
    assert secret and secret not in proc.stderr
    token_file = os.path.join(instance.root, "ci-runner.token")
    with open(token_file, "w") as handle:
        handle.write(secret + "\n")
    assert instance.sign("-u", ED_KEY, "-p", token="ci-runner").returncode == 0
    run_admin("token", "rotate", "--config", instance.config, "--id", "ci-runner", "--stdin",
              input="rotated-secret-0123456789abcdef\n")
    assert instance.sign("-u", ED_KEY, "-p", token="ci-runner").returncode == 1  # old secret is dead
    with open(token_file, "w") as handle:
        handle.write("rotated-secret-0123456789abcdef\n")
    assert instance.sign("-u", ED_KEY, "-p", token="ci-runner").returncode == 0
    run_admin("token", "revoke", "--config", instance.config, "--id", "ci-runner")
    proc = instance.sign("-u", ED_KEY, "-p", token="ci-runner")
    assert proc.returncode == 1 and b"authentication failed" in proc.stderr
    listing = run_admin("token", "list", "--config", instance.config).stdout
    assert "ci-runner" in listing and "revoked" in listing and "rotated-secret" not in listing


def test_rpm_errors_are_reported_and_other_packages_still_signed(instance, tiny_rpm, tmp_path):
    junk = tmp_path / "junk.rpm"
    junk.write_bytes(b"not an rpm at all\n")
    good = tmp_path / "good.rpm"
    shutil.copy(str(tiny_rpm), str(good))
    proc = instance.sign("-u", ED_KEY, "--jobs", "1", "-r", str(junk), str(good))
    assert proc.returncode == 1 and b"junk.rpm: not an RPM package" in proc.stderr, proc.stderr
    assert b"good.rpm" not in proc.stderr
    shutil.copy(str(tiny_rpm), str(good))
    through_rpmsign = conf_with(instance, tmp_path, rpm_signing="rpmsign")
    proc = instance.sign("-u", ED_KEY, "-r", str(junk), str(good), conf=through_rpmsign)  # separate rpmsign runs
    assert proc.returncode == 1 and b"rpmsign failed for %s" % str(junk).encode() in proc.stderr
    query = ["rpm", "-qp", "--qf", "%{DSAHEADER:pgpsig}", str(good)]
    assert "Key ID" in subprocess.run(query, stdout=subprocess.PIPE, text=True, check=False).stdout
    missing = instance.sign("-u", ED_KEY, "-r", str(tmp_path / "absent.rpm"))
    assert missing.returncode == 1 and b"no such file" in missing.stderr
    assert not [name for name in os.listdir(tempfile_dir()) if name.startswith("pkgsign-rpm-")]


def tempfile_dir():
    import tempfile

    return tempfile.gettempdir()


def test_consecutive_runs_share_a_cached_hashed_area(instance, verifier, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env_conf = instance.sign_conf
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first\n")
    second.write_bytes(b"second\n")
    for path in (first, second):
        proc = subprocess.run([sys.executable, "-m", "pkgsign.client", "-u", ED_KEY, "-D", str(path)],
                              env=child_env(SIGN_CONF=env_conf, XDG_RUNTIME_DIR=str(runtime)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert gpg_verify(verifier, str(path) + ".sig", path)
    cache = runtime / "pkgsign"
    entries = os.listdir(str(cache))
    assert len(entries) == 1 and entries[0].startswith("prepared-")
    assert os.stat(str(cache)).st_mode & 0o777 == 0o700 and os.stat(str(cache / entries[0])).st_mode & 0o777 == 0o600
    # The second run used the first run's hashed area: the packets agree up to the hashed area's end.
    first_packet, second_packet = (open(str(p) + ".sig", "rb").read() for p in (first, second))
    body = 2 if first_packet[0] & 3 == 0 else 3  # old-format packet with a 1- or 2-byte length
    area_end = body + 6 + int.from_bytes(first_packet[body + 4:body + 6], "big")
    assert first_packet[:area_end] == second_packet[:area_end]


def test_cached_hashed_area_of_a_replaced_key_is_renewed(instance, verifier, tmp_path):
    """A key replaced behind the same name: the cached area names the old key, the run still signs."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    email = "replaced@copr.test"
    env = child_env(SIGN_CONF=instance.sign_conf, XDG_RUNTIME_DIR=str(runtime))
    fingerprints = []
    for round_number in range(2):
        status, _headers, body = instance.request("POST", "/gen_key", {"name_real": "replaced", "name_email": email})
        assert status == 201, body
        data = tmp_path / ("data-%d" % round_number)
        data.write_bytes(b"round %d\n" % round_number)
        proc = subprocess.run([sys.executable, "-m", "pkgsign.client", "-u", email, "-D", str(data)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        pubkey = subprocess.run([sys.executable, "-m", "pkgsign.client", "-u", email, "-p"], env=env,
                                stdout=subprocess.PIPE, check=True).stdout
        gpg = _gnupg.GnuPG(str(tmp_path / ("verify-%d" % round_number)))
        gpg.import_keys(pubkey)
        assert gpg_verify(gpg, str(data) + ".sig", data)
        gpg.kill_agent()
        fingerprints.append(instance.request("GET", "/keys/" + email)[2]["fingerprint"])
        status, _headers, body = instance.request("DELETE", "/keys/" + email, token="admin")
        assert status == 200, body
    assert fingerprints[0] != fingerprints[1]


def test_prepare_cache_off_and_unsafe_directories(instance, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x\n")
    off = tmp_path / "off.conf"
    off.write_text(open(instance.sign_conf).read() + "prepare_cache: no\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run([sys.executable, "-m", "pkgsign.client", "-u", ED_KEY, "-D", str(data)],
                          env=child_env(SIGN_CONF=str(off), XDG_RUNTIME_DIR=str(runtime)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(str(runtime / "pkgsign"))
    # A cache directory others can write is neither read nor written.
    shared = tmp_path / "shared"
    (shared / "pkgsign").mkdir(parents=True)
    os.chmod(str(shared / "pkgsign"), 0o777)
    proc = subprocess.run([sys.executable, "-m", "pkgsign.client", "-u", ED_KEY, "-D", str(data)],
                          env=child_env(SIGN_CONF=instance.sign_conf, XDG_RUNTIME_DIR=str(shared)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(str(shared / "pkgsign")) == []


def test_whoami_needs_a_token_and_names_it(instance):
    assert instance.request("GET", "/whoami", token=None)[0] == 401
    status, _headers, body = instance.request("GET", "/whoami", token="limited")
    assert status == 200 and body == {"token": "limited", "scopes": ["sign"], "keys": ["alice#*@copr.test"]}
