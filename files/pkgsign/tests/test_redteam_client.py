"""Red team, the `sign` client run for someone else: a build user who may run `sign` as the client
identity (the sudo rule: `pkgsign-client`, env_reset) names paths to make it read or rewrite files
the build user cannot touch: the identity's own token file, through direct paths, symbolic links
and hard links, FIFOs, devices and /proc; and `--unsign`, the one mode that rewrites files and
used to skip the in-place checks.

Real processes under real uids (the test runs as root and drops to two unprivileged uids without
passwd entries), the real client against the served instance.
"""

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from pkgsign_testlib import ED_KEY, PYTHON, child_env

CLIENT_UID = 64123  # the client identity (pkgsign-client)
BUILD_UID = 64124   # a build user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes under other uids")


def _snapshot(*paths):
    return {str(p): (os.lstat(str(p)).st_ino, open(str(p), "rb").read()) for p in paths}


def run_sign(instance, *args, uid=None, conf=None, token_file=None, sudo_uid=None):
    env = child_env(SIGN_CONF=conf or instance.sign_conf)
    env.pop("SUDO_UID", None)
    if sudo_uid is not None:  # what sudo sets for the identity it runs (env_reset keeps SUDO_*)
        env["SUDO_UID"] = str(sudo_uid)
    if token_file:
        env["SIGN_TOKEN_FILE"] = token_file

    def drop():
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.umask(0o022)

    return subprocess.run([PYTHON, "-m", "pkgsign.client"] + list(args), env=env, preexec_fn=drop,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                          check=False)


def one_line_refusal(proc, *words):
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("sign: "), err
    for word in words:
        assert word in err, err


def test_unsign_refuses_links_and_files_of_others(instance, tiny_rpm, tmp_path):
    """`sign --unsign` rewrites packages in place (rpmsign --delsign) like `-r`: the same rules,
    a regular file of one's own with one link, or nothing is touched."""
    signed = tmp_path / "signed.rpm"
    shutil.copy(str(tiny_rpm), str(signed))
    assert instance.sign("-u", ED_KEY, "-r", str(signed)).returncode == 0
    symlink = tmp_path / "sym.rpm"
    symlink.symlink_to(signed)
    hardlink = tmp_path / "hard.rpm"
    os.link(str(signed), str(hardlink))
    before = _snapshot(signed)
    for path, words in ((symlink, ("symbolic link",)), (hardlink, ("hard links",))):
        proc = instance.sign("--unsign", str(path))
        one_line_refusal(proc, *words)
        assert _snapshot(signed) == before and os.path.islink(str(symlink))
    os.unlink(str(hardlink))
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs.rpm"
        shutil.copy(str(signed), str(theirs))
        os.chown(str(theirs), 65534, 65534)
        mine = _snapshot(theirs)
        one_line_refusal(instance.sign("--unsign", str(theirs)), "not by you")
        assert _snapshot(theirs) == mine
    fifo = tmp_path / "fifo.rpm"
    os.mkfifo(str(fifo))
    one_line_refusal(instance.sign("--unsign", str(fifo)), "not a regular file")
    # control: one's own single-link package is unsigned
    assert instance.sign("--unsign", str(signed)).returncode == 0
    assert _snapshot(signed) != before


@pytest.fixture
def identity(instance):
    """The client identity's files as the signer role lays them out: a root-owned 0750 directory of
    the identity's group holding its token (0600, its own); a world-writable sticky scratch
    directory and a build user's own directory that the identity may write (outputs must land
    somewhere)."""
    base = tempfile.mkdtemp(prefix="redteam-client-", dir="/tmp")
    os.chmod(base, 0o755)
    etc = os.path.join(base, "etc-pkgsign-client")
    os.mkdir(etc)
    os.chown(etc, 0, CLIENT_UID)
    os.chmod(etc, 0o750)
    token = os.path.join(etc, "sign.token")
    with open(token, "w") as handle:
        handle.write(instance.tokens["client"] + "\n")
    os.chown(token, CLIENT_UID, CLIENT_UID)
    os.chmod(token, 0o600)
    conf = os.path.join(etc, "sign.conf")
    with open(conf, "w") as handle:
        handle.write("server: %s\ntoken_file: %s\nhash: sha256\n" % (instance.url, token))
    os.chmod(conf, 0o644)
    build = os.path.join(base, "build")
    os.mkdir(build)
    os.chown(build, BUILD_UID, BUILD_UID)
    os.chmod(build, 0o777)  # the build user lets the identity write its outputs here
    yield {"base": base, "etc": etc, "token": token, "conf": conf, "build": build}
    shutil.rmtree(base)


def _as_build_user(fn, *args):
    """Run ``fn(*args)`` in a child process as the build user (planting links)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(BUILD_UID)
            os.setuid(BUILD_UID)
            fn(*args)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _secret_leaked(directory, secret):
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            try:
                if secret.encode() in open(path, "rb").read():
                    return path
            except OSError:
                continue
    return None


@needs_root
def test_the_build_user_cannot_make_the_client_identity_read_or_rewrite_its_token(instance, identity):
    secret = instance.tokens["client"]
    token, build = identity["token"], identity["build"]
    before = _snapshot(token)
    # the build user can neither read the token nor link to it
    assert not _as_build_user(lambda: open(token).read())
    assert not _as_build_user(os.link, token, os.path.join(build, "hard"))
    assert _as_build_user(os.symlink, token, os.path.join(build, "sym"))
    assert _as_build_user(os.symlink, identity["etc"], os.path.join(build, "dirlink"))
    os.mkfifo(os.path.join(build, "fifo"))
    targets = [token, os.path.join(build, "sym"), os.path.join(build, "dirlink", "sign.token"),
               os.path.join(build, "dirlink", "..", "etc-pkgsign-client", "sign.token"),
               os.path.join(build, "fifo"), "/proc/self/environ", "/dev/zero"]
    for target in targets:
        for mode in (["-c"], ["-d"], ["-D"], ["-r"], ["--unsign"]):
            proc = run_sign(instance, "-u", ED_KEY, *mode, target, uid=CLIENT_UID, conf=identity["conf"])
            assert proc.returncode != 0, (mode, target, proc.stderr)
            assert secret.encode() not in proc.stderr + proc.stdout
            assert len(proc.stderr.decode().strip().splitlines()) == 1, proc.stderr
            assert _snapshot(token) == before, (mode, target)
    assert _secret_leaked(build, secret) is None
    assert sorted(os.listdir(identity["etc"])) == ["sign.conf", "sign.token"]
    # control: the identity signs the build user's data (stdin and a detached output in build/)
    data = os.path.join(build, "data")
    with open(data, "wb") as handle:
        handle.write(b"build output\n")
    os.chown(data, BUILD_UID, BUILD_UID)
    proc = run_sign(instance, "-u", ED_KEY, "-d", data, uid=CLIENT_UID, conf=identity["conf"])
    assert proc.returncode == 0, proc.stderr
    assert os.stat(data + ".asc").st_uid == CLIENT_UID
    assert stat.S_IMODE(os.stat(data + ".asc").st_mode) == 0o644


OTHER_BUILD_UID = 64125  # another build user of the same sudo rule


@needs_root
def test_one_build_user_cannot_rewrite_another_s_outputs_through_the_shared_identity(instance, identity, tiny_rpm):
    """Every build user of the sudo rule runs `sign` as the same identity, so files that identity
    made for one of them (detached outputs, clearsigned files) belong to it, not to the build
    user. In place, `sign` rewrites only files of the user who ran sudo (SUDO_UID): another build
    user's files made by the identity are refused; the caller's own are signed."""
    shared = os.path.join(identity["base"], "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)  # a results directory both build users and the identity write
    theirs = os.path.join(shared, "theirs.txt")
    with open(theirs, "wb") as handle:
        handle.write(b"made by the identity for the other build user\n")
    theirs_rpm = os.path.join(shared, "theirs.rpm")
    shutil.copy(str(tiny_rpm), theirs_rpm)
    for path in (theirs, theirs_rpm):
        os.chown(path, CLIENT_UID, CLIENT_UID)
        os.chmod(path, 0o644)
    before = _snapshot(theirs, theirs_rpm)
    for args in (["-c", theirs], ["-r", theirs_rpm], ["--unsign", theirs_rpm]):
        proc = run_sign(instance, "-u", ED_KEY, *args, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=BUILD_UID)
        one_line_refusal(proc, "not by you (uid %d)" % BUILD_UID)
    assert _snapshot(theirs, theirs_rpm) == before
    # the caller's own file is clearsigned in place (the identity may write the directory)
    mine = os.path.join(shared, "mine.txt")
    with open(mine, "wb") as handle:
        handle.write(b"mine\n")
    os.chown(mine, BUILD_UID, BUILD_UID)
    proc = run_sign(instance, "-u", ED_KEY, "-c", mine, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=BUILD_UID)
    assert proc.returncode == 0, proc.stderr
    assert open(mine, "rb").read().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    # without sudo (or sudo by root) the effective user's own files, as before
    proc = run_sign(instance, "-u", ED_KEY, "-c", theirs, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=0)
    assert proc.returncode == 0, proc.stderr
