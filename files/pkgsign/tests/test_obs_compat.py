"""obs-sign's command line, row by row of README.md's table (pkgsign/obsopts.py): supported
options make what obs-sign would make, checked with stock tools (gpg --verify, rpmkeys
--checksig, sqv); refused ones exit 1 with one line naming the option and leave the file
byte-identical. The call shapes are OBS's signer's (`sign FILE.rpm` with no mode option, the
`-S /dev/null -k` probe, `-r -T buildtime` for delta RPMs, `-D` for Arch packages, `--project`)
and Copr's (`-4 -h HASH -u E -r`, `-u E -p`)."""

import hashlib
import os
import re
import shutil
import subprocess

import pytest
from pkgsign_testlib import ED_KEY, RSA_KEY, PYTHON, child_env, rpm_checksig

from pkgsign import obsopts

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def digest(path):
    with open(str(path), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def one_line_refusal(proc, *words):
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err, proc.stdout)
    assert len(err.strip().splitlines()) == 1 and err.startswith("sign: "), err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture()
def files(tmp_path, tiny_rpm):
    rpm = tmp_path / "tiny-1.0-1.noarch.rpm"
    shutil.copy(str(tiny_rpm), str(rpm))
    text = tmp_path / "SHA256SUMS"
    text.write_bytes(b"0123abcd  tiny-1.0-1.noarch.rpm\n")
    binary = tmp_path / "image.raw"
    binary.write_bytes(bytes(range(256)) * 16)
    return {"rpm": rpm, "text": text, "binary": binary}


@pytest.fixture(scope="module")
def published(instance, tmp_path_factory):
    """The public keys as `sign -p` publishes them, and a GnuPG home holding them."""
    from pkgsign import _gnupg

    root = tmp_path_factory.mktemp("published")
    keys = {}
    home = _gnupg.GnuPG(str(root / "gnupg"))
    for key in (ED_KEY, RSA_KEY):
        proc = instance.sign("-u", key, "-p")
        assert proc.returncode == 0, proc.stderr
        path = root / ("%s.asc" % key.split("@", maxsplit=1)[0].replace("#", "-"))
        path.write_bytes(proc.stdout)
        home.import_keys(proc.stdout)
        keys[key] = path
    yield keys, home
    home.kill_agent()


def gpg_validsig(home, signature, data=None):
    """The signing key's fingerprint from stock gpg's VALIDSIG status line (exit 0 required)."""
    argv = ["gpg", "--homedir", home.homedir, "--batch", "--status-fd", "1", "--verify", str(signature)]
    if data:
        argv.append(str(data))
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return re.search(r"^\[GNUPG:\] VALIDSIG ([0-9A-F]{40}) ", proc.stdout, re.M).group(1)


def sqv_accepts(keyring, signature, data):
    if not shutil.which("sqv"):
        pytest.skip("sqv not installed")
    proc = subprocess.run(["sqv", "--keyring", str(keyring), str(signature), str(data)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    return proc.returncode == 0


# -- the table -----------------------------------------------------------------------------

def test_readme_table_lists_every_option_and_says_why():
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index("### obs-sign options"):]
    section = section[:section.index("\n## ")] if "\n## " in section else section
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`-"):
            for name in re.findall(r"`(-[-a-zA-Z0-9]+)", cells[0]):
                rows[name] = cells[1]
    for option in obsopts.SUPPORTED:
        assert rows.get(option, "").startswith("supported"), option
    for option in obsopts.REFUSED:
        assert rows.get(option, "").startswith("refused"), option


# -- supported rows ------------------------------------------------------------------------

@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
def test_rpm_mode_from_the_file_name_as_obs_signer_calls_it(instance, files, published, tmp_path, key):
    """`sign FILE.rpm` (OBS's signer: no mode option) signs the package; .spm too."""
    keys, _home = published
    spm = tmp_path / "tiny-1.0-1.spm"
    shutil.copy(str(files["rpm"]), str(spm))
    proc = instance.sign("-u", key, "-v", str(files["rpm"]), str(spm))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == ["rpm sign %s" % files["rpm"], "rpm sign %s" % spm]
    for package in (files["rpm"], spm):
        code, out = rpm_checksig(package, [keys[key]], tmp_path / ("db-" + package.name))
        assert code == 0, out
        assert re.search(r"(RSA|EdDSA)/SHA256 Signature, key ID [0-9a-f]{8}: OK", out), out


@pytest.mark.parametrize("digest_algo", ["sha256", "sha512"])
def test_copr_call_shape(instance, files, published, tmp_path, digest_algo):
    """Copr's backend: `sign -4 -h HASH -u E -r FILE` and `sign -u E -p`."""
    keys, _home = published
    proc = instance.sign("-4", "-h", digest_algo, "-u", RSA_KEY, "-r", str(files["rpm"]))
    assert proc.returncode == 0 and proc.stdout == b"", proc.stderr
    code, out = rpm_checksig(files["rpm"], [keys[RSA_KEY]], tmp_path / "db")
    assert code == 0 and "RSA/%s Signature" % digest_algo.upper() in out, out


def test_text_without_mode_is_clearsigned_once(instance, files, published):
    """obs-sign clearsigns other names (OBS: *.sha256 files); a clearsigned file is left alone
    with "FILE: already signed" on standard output and exit 0, as obs-sign does."""
    keys, home = published
    proc = instance.sign("-u", ED_KEY, str(files["text"]))
    assert proc.returncode == 0, proc.stderr
    signed = files["text"].read_bytes()
    assert signed.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n0123abcd")
    gpg_validsig(home, files["text"])
    before = digest(files["text"])
    for args in ([str(files["text"])], ["-c", str(files["text"])]):
        again = instance.sign("-u", ED_KEY, *args)
        assert again.returncode == 0 and again.stdout.decode() == "%s: already signed\n" % files["text"], again
        assert digest(files["text"]) == before


def test_detached_armored_and_binary(instance, files, published):
    """-d: FILE.asc (repomd.xml.asc, Release.gpg's armored twin); -D: FILE.sig (OBS: Arch
    packages). gpg and Sequoia's sqv accept both; the file itself is untouched."""
    keys, home = published
    before = digest(files["binary"])
    for option, suffix in (("-d", ".asc"), ("-D", ".sig")):
        proc = instance.sign("-u", ED_KEY, option, str(files["binary"]))
        assert proc.returncode == 0, proc.stderr
        signature = str(files["binary"]) + suffix
        gpg_validsig(home, signature, files["binary"])
        assert sqv_accepts(keys[ED_KEY], signature, files["binary"])
    assert digest(files["binary"]) == before
    assert open(str(files["binary"]) + ".asc", "rb").read().startswith(b"-----BEGIN PGP SIGNATURE-----")


def test_stdin_filters(instance, published, tmp_path):
    """-d and -c as filters (OBS signs ISO checksum blocks through `sign -d` on a pipe)."""
    _keys, home = published
    data = tmp_path / "data"
    data.write_bytes(b"piped\n")
    proc = instance.sign("-u", ED_KEY, "-d", input=data.read_bytes())
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "data.asc").write_bytes(proc.stdout)
    gpg_validsig(home, tmp_path / "data.asc", data)
    proc = instance.sign("-u", ED_KEY, "-c", input=b"piped text\n")
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "clear").write_bytes(proc.stdout)
    gpg_validsig(home, tmp_path / "clear")


def test_key_id_and_fingerprint_in_obs_signs_format(instance, published, tmp_path):
    """-k: the signing key's id as 8 upper-case hex digits (obs-sign prints the issuer of a
    signature), --full-keyid 16, --fingerprint 40: the key gpg names in VALIDSIG."""
    _keys, home = published
    data = tmp_path / "probe"
    data.write_bytes(b"probe\n")
    for key in (ED_KEY, RSA_KEY):
        assert instance.sign("-u", key, "-d", str(data)).returncode == 0
        issuer = gpg_validsig(home, str(data) + ".asc", data)
        short = instance.sign("-u", key, "-k")
        full = instance.sign("-u", key, "--full-keyid")
        fingerprint = instance.sign("-u", key, "--fingerprint")
        assert short.stdout.decode() == issuer[-8:] + "\n", short
        assert full.stdout.decode() == issuer[-16:] + "\n", full
        assert fingerprint.stdout.decode() == issuer + "\n", fingerprint
        os.unlink(str(data) + ".asc")


def test_pubkey_and_ping(instance, published):
    keys, _home = published
    proc = instance.sign("-u", ED_KEY, "-p")
    assert proc.returncode == 0 and proc.stdout == keys[ED_KEY].read_bytes()
    assert instance.sign("-t").returncode == 0
    one_line_refusal(instance.sign("-u", ED_KEY, "-p", "extra-file"), "-p takes no files")
    usage = instance.sign("--help")
    assert usage.returncode == 0 and b"usage: sign" in usage.stdout and b"-T, -S, -P" in usage.stdout


def test_delsign_removes_rpm_signatures(instance, files, published, tmp_path):
    """--delsign (obs-sign) / --unsign: RPMs only, by name or with -r."""
    keys, _home = published
    assert instance.sign("-u", ED_KEY, str(files["rpm"])).returncode == 0
    code, _out = rpm_checksig(files["rpm"], [keys[ED_KEY]], tmp_path / "db1")
    assert code == 0
    proc = instance.sign("--delsign", str(files["rpm"]))
    assert proc.returncode == 0, proc.stderr
    query = subprocess.run(["rpm", "-qp", "--qf", "%{RSAHEADER}|%{DSAHEADER}", str(files["rpm"])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert query.stdout == "(none)|(none)", query.stdout
    before = digest(files["text"])
    one_line_refusal(instance.sign("--delsign", str(files["text"])), "--delsign", "RPMs only")
    assert digest(files["text"]) == before


def test_config_is_for_root_only(instance, tmp_path):
    """--config FILE, as obs-sign: root may name another sign.conf; anyone else is refused
    (sign may run for another user through sudo: their configuration must not pick the server
    that gets the token)."""
    conf = tmp_path / "other.conf"
    conf.write_text(open(instance.sign_conf).read())
    if os.geteuid() == 0:
        env = child_env(SIGN_CONF="/nonexistent/sign.conf")
        proc = subprocess.run([PYTHON, "-m", "pkgsign.client", "--config", str(conf), "-u", ED_KEY, "-k"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        assert proc.returncode == 0 and re.fullmatch(rb"[0-9A-F]{8}\n", proc.stdout), proc.stderr

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
    else:
        drop = None
    proc = subprocess.run([PYTHON, "-m", "pkgsign.client", "--config", str(conf), "-u", ED_KEY, "-k"],
                          env=child_env(), preexec_fn=drop, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    one_line_refusal(proc, "--config", "only root")


# -- refused rows --------------------------------------------------------------------------

REFUSED_VALUES = {"-T": "buildtime", "-S": "/dev/null", "-P": "/tmp/privkey", "-A": "rsa", "--cert": "c.der",
                  "--othercerts": "o.der", "--project": "home:user", "--test-sign": "x"}


@pytest.mark.parametrize("option", sorted(obsopts.REFUSED))
def test_refused_option_one_line_and_file_untouched(instance, files, option):
    value = [REFUSED_VALUES[option]] if obsopts.REFUSED[option][0] else []
    for target in ("rpm", "text", "binary"):
        before = digest(files[target])
        proc = instance.sign("-u", ED_KEY, option, *value, str(files[target]))
        one_line_refusal(proc, option + " is not supported")
        assert digest(files[target]) == before
        assert not os.path.exists(str(files[target]) + ".asc")


def test_obs_signer_probe_for_checksum_files_fails(instance):
    """OBS's signer runs `sign -S /dev/null -k` once and passes -S only when that succeeds."""
    proc = instance.sign("-u", ED_KEY, "-S", "/dev/null", "-k")
    one_line_refusal(proc, "-S is not supported")
    assert proc.stdout == b""


@pytest.mark.parametrize("args,words", [
    (["-h", "sha1", "-r"], ["-h sha1", "refused"]),           # Copr's gently_gpg_sha256 chroots
    (["-h", "md5", "-r"], ["-h md5", "unknown hash"]),
    (["-Z", "-r"], ["unknown option -Z"]),
    (["--nope", "-r"], ["unknown option --nope"]),
])
def test_refused_hashes_and_unknown_options(instance, files, args, words):
    before = digest(files["rpm"])
    one_line_refusal(instance.sign("-u", ED_KEY, *(args + [str(files["rpm"])])), *words)
    assert digest(files["rpm"]) == before


def test_binary_data_is_never_clearsigned(instance, files, tmp_path):
    """The bug this guards: `sign FILE` on a binary file (or -c on one) would replace it with a
    clearsigned copy and exit 0. Refused with one line; every named file byte-identical, also
    the text file of the same call (nothing is signed when one file is refused)."""
    elf = tmp_path / "tool"
    shutil.copy("/bin/true", str(elf))
    for args in ([str(files["binary"])], ["-c", str(files["binary"])], [str(elf)],
                 [str(files["text"]), str(elf)], [str(files["rpm"]), str(elf)]):
        hashes = {name: digest(path) for name, path in files.items()}
        elf_before = digest(elf)
        one_line_refusal(instance.sign("-u", ED_KEY, *args), "binary data", "not clearsigned")
        assert {name: digest(path) for name, path in files.items()} == hashes
        assert digest(elf) == elf_before
    proc = instance.sign("-u", ED_KEY, "-c", input=open("/bin/true", "rb").read())
    one_line_refusal(proc, "<stdin>", "binary data")
    assert proc.stdout == b""
    one_line_refusal(instance.sign("-u", ED_KEY, input=b"text\n"), "mode")  # obs-sign: no filter without a mode


@pytest.mark.parametrize("name", ["app.AppImage", "app.appx", "tiny-1.0-1.noarch.drpm"])
def test_types_obs_sign_signs_and_we_do_not(instance, files, tmp_path, name):
    path = tmp_path / name
    shutil.copy(str(files["rpm"]), str(path))
    before = digest(path)
    one_line_refusal(instance.sign("-u", ED_KEY, str(path)), name, "not")
    assert digest(path) == before


@pytest.mark.parametrize("rpm_signing", ["native", "rpmsign"])
def test_a_non_rpm_named_rpm_is_not_rewritten(instance, files, tmp_path, rpm_signing):
    fake = tmp_path / "fake.rpm"
    shutil.copy(str(files["text"]), str(fake))
    conf = tmp_path / "sign.conf"
    conf.write_text(open(instance.sign_conf).read() + "rpm_signing: %s\n" % rpm_signing)
    before = digest(fake)
    for args in ([str(fake)], ["-r", str(fake)], ["--delsign", str(fake)]):
        one_line_refusal(instance.sign("-u", ED_KEY, *args, conf=str(conf)), "fake.rpm: not an RPM package")
        assert digest(fake) == before
