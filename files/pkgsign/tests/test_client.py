"""The real `sign` client against `pkgsign-admin serve` on 127.0.0.1 (real gpg, real rpm)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, child_env, gpg_verify, payload_digest, rpm_checksig

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
    assert keyid.returncode == 0 and re.fullmatch(rb"[0-9A-F]{8}\n", keyid.stdout), keyid.stdout  # obs-sign's form


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
    from pkgsign_testlib import child_env

    return child_env(SIGN_CONF=conf, **extra)


def test_client_rate_limited(instance, tmp_path):
    instance.add_token("tiny-rate", ["sign"], ["*"], rate="2/3600")
    results = [instance.sign("-u", ED_KEY, "-p", token="tiny-rate") for _index in range(3)]
    assert [r.returncode for r in results] == [0, 0, 1]
    assert b"rate limited" in results[2].stderr and b"Retry-After" in results[2].stderr


def test_token_changes_apply_without_restart(instance):
    from pkgsign_testlib import run_admin

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
    assert proc.returncode == 1 and b"junk.rpm: not an RPM package" in proc.stderr, proc.stderr
    query = ["rpm", "-qp", "--qf", "%{DSAHEADER:pgpsig}", str(good)]
    assert "Key ID" in subprocess.run(query, stdout=subprocess.PIPE, text=True, check=False).stdout
    missing = instance.sign("-u", ED_KEY, "-r", str(tmp_path / "absent.rpm"))
    assert missing.returncode == 1 and b"no such file" in missing.stderr
    assert not [name for name in os.listdir(tempfile_dir()) if name.startswith("pkgsign-rpm-")]


def tempfile_dir():
    import tempfile

    return tempfile.gettempdir()


def test_a_key_replaced_behind_its_name_signs_with_the_new_key(instance, tmp_path):
    """Nothing of a key is kept between runs: a key replaced behind the same name signs at once."""
    email = "replaced@copr.test"
    env = child_env(SIGN_CONF=instance.sign_conf)
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


def test_one_request_per_run_and_the_servers_creation_time(instance, verifier, tmp_path):
    """A one-file run sends exactly one POST /sign (the audit log has one new line) and the
    signature's creation time is the server's clock when it signed."""
    data = tmp_path / "once"
    data.write_bytes(b"once\n")
    with open(instance.audit_log) as handle:
        before = len(handle.readlines())
    started = time.time()
    proc = instance.sign("-u", ED_KEY, "-D", str(data))
    assert proc.returncode == 0, proc.stderr
    with open(instance.audit_log) as handle:
        lines = handle.readlines()[before:]
    signs = [json.loads(line) for line in lines if '"operation": "sign"' in line or '"operation":"sign"' in line]
    assert len(signs) == 1 and signs[0]["result"] == "ok" and signs[0]["sig_type"] == "binary", lines
    created = signature_creation_time(str(data) + ".sig", verifier)
    assert int(started) <= created <= time.time() + 1 and created == signs[0]["created"]
    gpg_verify(verifier, str(data) + ".sig", data)


def signature_creation_time(path, gpg):
    listing = subprocess.run(["gpg", "--list-packets", path], stdout=subprocess.PIPE, text=True, check=False,
                             env={"LC_ALL": "C", "GNUPGHOME": gpg.homedir, "PATH": os.environ["PATH"]}).stdout
    return int(re.search(r"created (\d+)", listing).group(1))


# -- file safety ----------------------------------------------------------------------------

def _snapshot(*paths):
    return {str(p): (os.lstat(str(p)).st_ino, open(str(p), "rb").read()) for p in paths}


def test_symbolic_links_are_never_followed(instance, tmp_path):
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"not for you\n")
    os.chmod(str(secret), 0o600)
    link = tmp_path / "innocent.txt"
    link.symlink_to(secret)
    before = _snapshot(secret)
    for args in (["-d", str(link)], ["-D", str(link)], ["-c", str(link)]):
        proc = instance.sign("-u", ED_KEY, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.decode().strip() == "sign: %s: is a symbolic link (refused)" % link, proc.stderr
        assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert _snapshot(secret) == before and os.path.islink(str(link))
    assert not os.path.exists(str(link) + ".asc") and not os.path.exists(str(link) + ".sig")
    # an output name that is a link to someone's file: the link is replaced, the file is untouched
    data = tmp_path / "data"
    data.write_bytes(b"data\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim\n")
    (tmp_path / "data.asc").symlink_to(victim)
    proc = instance.sign("-u", ED_KEY, "-d", str(data))
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"victim\n"
    assert not os.path.islink(str(tmp_path / "data.asc"))
    assert (tmp_path / "data.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    # a directory or a FIFO is not an input
    os.mkfifo(str(tmp_path / "fifo"))
    for path in (tmp_path, tmp_path / "fifo"):
        proc = instance.sign("-u", ED_KEY, "-d", str(path))
        assert proc.returncode == 1 and b"not a regular file" in proc.stderr, proc.stderr


def test_in_place_output_needs_a_file_of_ones_own_with_one_link(instance, tiny_rpm, tmp_path):
    text = tmp_path / "note.txt"
    text.write_bytes(b"note\n")
    linked = tmp_path / "linked.txt"
    os.link(str(text), str(linked))
    rpm = tmp_path / "p.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    rpm_link = tmp_path / "p-link.rpm"
    os.link(str(rpm), str(rpm_link))
    before = _snapshot(text, rpm)
    for args in (["-c", str(linked)], ["-r", str(rpm_link)]):
        proc = instance.sign("-u", ED_KEY, *args)
        assert proc.returncode == 1 and b"hard links: not rewritten in place" in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    assert _snapshot(text, rpm) == before
    rpm_symlink = tmp_path / "sym.rpm"
    rpm_symlink.symlink_to(rpm)
    for conf_text in ("", "rpm_signing: rpmsign\n"):
        conf = tmp_path / "c.conf"
        conf.write_text(open(instance.sign_conf).read() + conf_text)
        proc = instance.sign("-u", ED_KEY, "-r", str(rpm_symlink), conf=str(conf))
        assert proc.returncode == 1 and b"is a symbolic link (refused)" in proc.stderr, proc.stderr
    assert _snapshot(rpm) == {str(rpm): before[str(rpm)]}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file owned by another user")
def test_in_place_output_refused_on_a_file_of_another_user(instance, tiny_rpm, tmp_path):
    other = 65534  # nobody
    text = tmp_path / "theirs.txt"
    text.write_bytes(b"theirs\n")
    rpm = tmp_path / "theirs.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    for path in (text, rpm):
        os.chown(str(path), other, other)
    before = _snapshot(text, rpm)
    for args in (["-c", str(text)], ["-r", str(rpm)]):
        for conf_text in ("", "rpm_signing: rpmsign\n"):
            conf = tmp_path / "c.conf"
            conf.write_text(open(instance.sign_conf).read() + conf_text)
            proc = instance.sign("-u", ED_KEY, *args, conf=str(conf))
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.decode().strip().endswith("not by you (uid %d): not rewritten in place" % os.geteuid())
            assert len(proc.stderr.splitlines()) == 1
    assert _snapshot(text, rpm) == before
    # reading it for a detached signature is fine (the output is a new file of the caller's own)
    proc = instance.sign("-u", ED_KEY, "-d", str(text))
    assert proc.returncode == 0 and os.stat(str(text) + ".asc").st_uid == os.geteuid()


def test_new_outputs_are_owner_only_until_complete_and_keep_modes(instance, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x" * 1000)
    proc = subprocess.run(["sh", "-c", "umask 027; exec \"$@\"", "sh", sys.executable, "-m", "pkgsign.client",
                           "-u", ED_KEY, "-d", str(data)], env=child_env(SIGN_CONF=instance.sign_conf),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.stat(str(data) + ".asc").st_mode & 0o777 == 0o640  # the umask's mode, as a plain creation
    note = tmp_path / "note.txt"
    note.write_bytes(b"note\n")
    os.chmod(str(note), 0o604)
    assert instance.sign("-u", ED_KEY, "-c", str(note)).returncode == 0
    assert os.stat(str(note)).st_mode & 0o777 == 0o604  # clearsigned in place: its mode is kept
    assert not [name for name in os.listdir(str(tmp_path)) if name.endswith(".sign-tmp")]


# -- other verifiers -----------------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("sqv"), reason="sqv (Sequoia's verifier) not installed")
@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
def test_sequoia_sqv_accepts_detached_and_clearsigned(instance, tmp_path, key):
    pubkey = tmp_path / "key.asc"
    pubkey.write_bytes(instance.sign("-u", key, "-p").stdout)
    keyring = tmp_path / "key.gpg"
    subprocess.run(["gpg", "--dearmor", "--output", str(keyring), str(pubkey)], check=True,
                   env=child_env(GNUPGHOME=str(tmp_path)))
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(5000))
    for digest_algo in ("sha256", "sha512"):
        for flag, suffix in (("-d", ".asc"), ("-D", ".sig")):
            assert instance.sign("-u", key, "-h", digest_algo, flag, str(data)).returncode == 0
            proc = subprocess.run(["sqv", "--keyring", str(keyring), str(data) + suffix, str(data)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
            assert proc.returncode == 0, (digest_algo, flag, proc.stderr)
        # a changed byte is refused by sqv as well
        tampered = tmp_path / "tampered.bin"
        tampered.write_bytes(data.read_bytes()[:-1] + b"\0")
        proc = subprocess.run(["sqv", "--keyring", str(keyring), str(data) + ".sig", str(tampered)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        assert proc.returncode != 0
    # clearsigned: sqv verifies a detached signature, so check it against the canonical text
    note = tmp_path / "note.txt"
    note.write_bytes(b"Line one\n- dash\ntrailing blanks   \nend\n")
    proc = instance.sign("-u", key, "-c", str(note))
    assert proc.returncode == 0, proc.stderr
    signed = note.read_bytes()
    text_part, _sep, armor = signed.partition(b"\n-----BEGIN PGP SIGNATURE-----")
    body = text_part.split(b"\n\n", 1)[1]
    cleartext = b"\n".join(line[2:] if line.startswith(b"- ") else line for line in body.split(b"\n"))
    from pkgsign import wire

    (tmp_path / "clear.txt").write_bytes(wire.canonical_text(cleartext))
    (tmp_path / "clear.asc").write_bytes(b"-----BEGIN PGP SIGNATURE-----" + armor)
    proc = subprocess.run(["sqv", "--keyring", str(keyring), str(tmp_path / "clear.asc"), str(tmp_path / "clear.txt")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_whoami_needs_a_token_and_names_it(instance):
    assert instance.request("GET", "/whoami", token=None)[0] == 401
    status, _headers, body = instance.request("GET", "/whoami", token="limited")
    assert status == 200 and body == {"token": "limited", "scopes": ["sign"], "keys": ["alice#*@copr.test"]}
