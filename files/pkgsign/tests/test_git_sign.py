"""pkgsign-git-sign as git's gpg.program: real git signs tags and commits through a real
service with no secret key on the host; git verify-tag / verify-commit pass with the published
public key and fail on a tampered object."""

import os
import re
import shutil
import subprocess

import pytest
from pkgsign_testlib import ED_KEY, PYTHON, RSA_KEY, SRC

from pkgsign import _gnupg

pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="git not installed")


@pytest.fixture()
def setup(instance, tmp_path):
    """A repository whose gpg.program is pkgsign-git-sign, an empty GNUPGHOME (no keys at all),
    and a verifying GnuPG home holding only the published public keys."""
    verify_home = _gnupg.GnuPG(str(tmp_path / "verify-gnupg"))
    for key in (ED_KEY, RSA_KEY):
        proc = instance.sign("-u", key, "-p")
        assert proc.returncode == 0, proc.stderr
        verify_home.import_keys(proc.stdout)
    conf = tmp_path / "sign.conf"
    conf.write_text(open(instance.sign_conf).read() + "git_verify_homedir: %s\n" % verify_home.homedir)
    program = tmp_path / "pkgsign-git-sign"
    program.write_text("#!/bin/sh\nexec %s -m pkgsign.gitsign \"$@\"\n" % PYTHON)
    program.chmod(0o755)
    empty_home = tmp_path / "empty-gnupg"
    empty_home.mkdir(mode=0o700)
    env = dict(os.environ, PYTHONPATH=SRC, SIGN_CONF=str(conf), GNUPGHOME=str(empty_home), LC_ALL="C",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path), GIT_AUTHOR_DATE="2026-01-02T03:04:05Z",
               GIT_COMMITTER_DATE="2026-01-02T03:04:05Z")
    env.pop("SIGN_TOKEN_FILE", None)
    repo = tmp_path / "repo"

    def git(*args, check=True, input=None):
        proc = subprocess.run(["git", "-C", str(repo)] + list(args), env=env, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        if check:
            assert proc.returncode == 0, (args, proc.stderr.decode())
        return proc

    subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
    git("config", "user.name", "Release Team")
    git("config", "user.email", ED_KEY)
    git("config", "gpg.program", str(program))
    (repo / "README").write_text("release\n")
    git("add", "README")
    git("commit", "-q", "-m", "unsigned start")
    yield {"git": git, "repo": repo, "env": env, "verify": verify_home, "empty": empty_home, "conf": conf,
           "program": program}
    verify_home.kill_agent()


def fingerprint_of(instance, key):
    return instance.sign("-u", key, "--fingerprint").stdout.decode().strip()


def tamper(git, kind, name, old, new):
    raw = git("cat-file", kind, name).stdout
    assert old in raw
    return git("hash-object", "-t", kind, "-w", "--stdin", input=raw.replace(old, new, 1)).stdout.decode().strip()


@pytest.mark.parametrize("program_key", ["gpg.program", "gpg.openpgp.program"])
def test_signed_tag_and_commit_verify_and_tampering_fails(instance, setup, program_key):
    git = setup["git"]
    if program_key != "gpg.program":
        git("config", "--unset", "gpg.program")
        git("config", program_key, str(setup["program"]))
    git("config", "user.signingkey", ED_KEY)
    git("commit", "-q", "--allow-empty", "-S", "-m", "release 1.0")
    git("tag", "-s", "-m", "version 1.0", "v1.0")
    tag = git("cat-file", "tag", "v1.0").stdout.decode()
    assert "-----BEGIN PGP SIGNATURE-----" in tag
    expected = fingerprint_of(instance, ED_KEY)
    for args in (["verify-tag", "--raw", "v1.0"], ["verify-commit", "--raw", "HEAD"]):
        proc = git(*args)
        assert re.search(r"^\[GNUPG:\] VALIDSIG %s " % expected, proc.stderr.decode(), re.M), proc.stderr
    # No secret key anywhere on this host's GnuPG homes.
    for home in (setup["empty"], setup["verify"].homedir):
        listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--list-secret-keys"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        assert listing.stdout.strip() == ""
    bad_tag = tamper(git, "tag", "v1.0", b"version 1.0", b"version 6.6")
    proc = git("verify-tag", "--raw", bad_tag, check=False)
    assert proc.returncode != 0 and "BADSIG" in proc.stderr.decode(), proc.stderr
    bad_commit = tamper(git, "commit", "HEAD", b"release 1.0", b"release 6.6")
    proc = git("verify-commit", "--raw", bad_commit, check=False)
    assert proc.returncode != 0 and "BADSIG" in proc.stderr.decode(), proc.stderr


def test_committer_email_names_the_key_without_signingkey(instance, setup):
    """Without user.signingkey git passes "Name <email>": the e-mail is the key."""
    git = setup["git"]
    git("commit", "-q", "--allow-empty", "-S", "-m", "by e-mail")
    proc = git("verify-commit", "--raw", "HEAD")
    assert "VALIDSIG %s " % fingerprint_of(instance, ED_KEY) in proc.stderr.decode()


def test_verification_needs_the_published_key(instance, setup, tmp_path):
    git = setup["git"]
    git("config", "user.signingkey", RSA_KEY)
    git("tag", "-s", "-m", "rsa", "v-rsa")
    assert git("verify-tag", "v-rsa").returncode == 0
    other = _gnupg.GnuPG(str(tmp_path / "other-gnupg"))  # holds only the ed25519 key
    other.import_keys(instance.sign("-u", ED_KEY, "-p").stdout)
    setup["conf"].write_text(open(instance.sign_conf).read() + "git_verify_homedir: %s\n" % other.homedir)
    proc = git("verify-tag", "--raw", "v-rsa", check=False)
    assert proc.returncode != 0 and "NO_PUBKEY" in proc.stderr.decode(), proc.stderr
    other.kill_agent()


def test_a_token_cannot_sign_with_a_key_it_may_not_use(instance, setup):
    """The weakest credential: a token for alice#* asks git to sign as bob's key: refused by
    the service, git reports the failure and makes no tag."""
    git = setup["git"]
    git("config", "user.signingkey", RSA_KEY)
    setup["env"]["SIGN_TOKEN_FILE"] = os.path.join(instance.root, "limited.token")
    proc = git("tag", "-s", "-m", "forged", "v-forged", check=False)
    assert proc.returncode != 0 and "failed to sign" in proc.stderr.decode(), proc.stderr
    assert git("tag", "-l", "v-forged").stdout == b""


def test_status_fd_contract_and_refusals(instance, setup, tmp_path):
    """What git reads: an armored signature on stdout, [GNUPG:] SIG_CREATED on the status fd
    after a newline; anything but a detached signature is refused with one line."""
    env = setup["env"]

    def run(*args, data=b"object\n"):
        return subprocess.run([str(setup["program"])] + list(args), input=data, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)

    proc = run("--status-fd=2", "-bsau", ED_KEY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert re.search(rb"\n\[GNUPG:\] SIG_CREATED D \d+ 8 00 \d+ %s\n" % fingerprint_of(instance, ED_KEY).encode(),
                     proc.stderr), proc.stderr
    (tmp_path / "obj").write_bytes(b"object\n")
    (tmp_path / "obj.asc").write_bytes(proc.stdout)
    assert subprocess.run(["gpgv", "--keyring", os.path.join(setup["verify"].homedir, "pubring.kbx"),
                           str(tmp_path / "obj.asc"), str(tmp_path / "obj")], stderr=subprocess.PIPE,
                          check=False).returncode == 0
    for args in (["-sau", ED_KEY], ["--encrypt", "-r", ED_KEY], ["-bsau", ED_KEY, "--clearsign"]):
        proc = run(*args)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and len(err.strip().splitlines()) == 1 and proc.stdout == b"", err


@pytest.mark.parametrize("argv", [["--keyid-format=long", "--status-fd=1", "--verify", "sig.asc", "-"],
                                  ["--status-fd=1", "--verify", "sig.asc", "-"],
                                  ["--keyid-format", "long", "--status-fd", "2", "--verify", "sig", "-"]])
def test_verify_takes_the_argument_shapes_git_passes(argv):
    from pkgsign import gitsign

    mode, _key, status_fd, files = gitsign._parse(argv)
    assert mode == "verify" and files == [argv[-2]] and status_fd == int(argv[argv.index("--verify") - 1][-1])


@pytest.mark.parametrize("after", [["--homedir", "h", "sig", "-"], ["sig", "data"], ["sig"], [], ["-", "-"],
                                   ["--dirmngr-program", "x", "--auto-key-retrieve", "sig", "-"], ["sig", "-", "x"]])
def test_verify_refuses_any_other_argument_in_one_line(after):
    from pkgsign import gitsign
    from pkgsign.clienterrors import SignError

    with pytest.raises(SignError) as refused:
        gitsign._parse(["--status-fd=1", "--verify"] + after)
    assert "\n" not in str(refused.value) and "--verify" in str(refused.value)


def test_a_timeout_that_is_no_number_ends_git_sign_and_sign_in_one_line(instance, setup):
    """sign.conf's timeout: has one parser (clientconf.request_timeout): a value that is no number
    of seconds ends pkgsign-git-sign as it ends `sign`, with one line and nothing signed (it
    was a Python traceback in pkgsign-git-sign)."""
    conf = setup["conf"]
    conf.write_text(conf.read_text() + "timeout: two minutes\n")
    proc = subprocess.run([str(setup["program"]), "-bsau", ED_KEY], input=b"object\n", env=setup["env"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 1 and proc.stdout == b"", proc.stderr
    assert proc.stderr.decode() == "pkgsign-git-sign: timeout must be a number of seconds\n"
    proc = instance.sign("-t", conf=str(conf))
    assert proc.returncode == 1 and proc.stderr.decode() == "sign: timeout must be a number of seconds\n", proc.stderr
