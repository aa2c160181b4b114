"""Red team, the `sign` client's obs-sign options and mode selection by file name, and the
gpg-compatible git signing program (issue 15), attacked by a build user:

* ``--config`` run through the client identity (the sudo rule's ``pkgsign-client``) to send the
  identity's token to a server of the build user's choice;
* ``-T`` (a client-chosen signature time), ``-S`` (a checksum file written as the identity),
  ``-P`` (a private key file): never a request, never a file written;
* a name that says ``.rpm`` on something else (text, a link to another user's package, a FIFO, a
  directory), binary data without a mode option, ``--delsign`` on a non-RPM: non-zero, one line,
  the file byte-identical, no hang;
* ``pkgsign-git-sign`` given arguments git never passes: a file to sign instead of standard input,
  ``--verify`` with options that make gpg run a program of the caller's choice.

Real processes (two unprivileged uids when run as root), the real client against the session's
served instance, a loopback listener standing in for the attacker's server. Tests of features the
branch adds skip while the client does not have them (compat-client not merged).
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import threading

import pytest

from pkgsign_testlib import ED_KEY, PYTHON, RSA_KEY, child_env
from test_redteam_client import BUILD_UID, CLIENT_UID, _as_build_user, identity, needs_root, run_sign  # noqa: F401  # pylint: disable=unused-import

OBS_OPTIONS = importlib.util.find_spec("pkgsign.obsopts") is not None
GITSIGN = importlib.util.find_spec("pkgsign.gitsign") is not None
needs_obs = pytest.mark.skipif(not OBS_OPTIONS, reason="obs-sign options not in this client (compat-client not merged)")
needs_gitsign = pytest.mark.skipif(not GITSIGN, reason="no pkgsign-git-sign (compat-client not merged)")


class Listener:
    """A loopback TCP server that records every byte sent to it (the attacker's 'signer')."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(2)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.received += chunk
                    if b"\r\n\r\n" in self.received:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                        break
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def snapshot(path):
    info = os.lstat(str(path))
    data = open(str(path), "rb").read() if os.path.isfile(str(path)) and not os.path.islink(str(path)) else None
    return info.st_ino, info.st_mode, info.st_size, data


def one_line(proc):
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode != 0, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1, err
    return err


# -- --config through the client identity ---------------------------------------------------------

@needs_root
def test_config_through_the_identity_never_sends_its_token_elsewhere(instance, identity, tmp_path):  # noqa: F811
    """The build user runs `sudo -u pkgsign-client sign --config MINE.conf`: MINE.conf names the
    identity's token file and a server of the build user's. obs-sign lets only root name another
    configuration; the identity's token must never reach that server, in any spelling of the option."""
    listener = Listener()
    evil = os.path.join(identity["build"], "evil.conf")

    def plant():
        with open(evil, "w") as handle:
            handle.write("server: http://127.0.0.1:%d\ntoken_file: %s\nhash: sha256\n" % (listener.port, identity["token"]))

    assert _as_build_user(plant)
    secret = instance.tokens["client"]
    try:
        for args in (["--config", evil, "-t"], ["--config=" + evil, "-t"], ["-t", "--config", evil],
                     ["--config", evil, "-u", ED_KEY, "-p"], ["--conf", evil, "-t"], ["--config", evil, "--", "-t"]):
            proc = run_sign(instance, *args, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=BUILD_UID)
            assert proc.returncode != 0 or b"evil" not in proc.stdout, (args, proc.stdout, proc.stderr)
        # SIGN_TOKEN_FILE/SIGN_CONF would be dropped by sudo's env_reset; --config is the client's own door
    finally:
        listener.close()
    assert secret.encode() not in listener.received, "the identity's token was sent to the build user's server"
    assert b"Authorization" not in listener.received, listener.received[:300]


# -- options that would choose the signature or write files ------------------------------------

@pytest.mark.parametrize("option", [["-T", "1000000000"], ["-T", "mtime"], ["-T", "buildtime"], ["-T0"],
                                    ["-3"], ["-P", "key.sec"], ["-A", "rsa"], ["--noheaderonly"],
                                    ["-T", "-d"], ["-dT", "1"]])
def test_options_that_would_choose_the_signature_are_refused_before_any_request(instance, tiny_rpm, tmp_path, option):
    """-T would let the client back-date signatures (before a revocation, before a key's expiry);
    the server writes the creation time. Refused with one line, the package byte-identical, and
    nothing sent to the server (a listener in its place receives no request)."""
    package = tmp_path / "p.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    before = snapshot(package)
    listener = Listener()
    conf = tmp_path / "sign.conf"
    conf.write_text("server: http://127.0.0.1:%d\ntoken_file: %s\nhash: sha256\n"
                    % (listener.port, os.path.join(instance.root, "client.token")))
    try:
        proc = instance.sign(*(option + ["-u", ED_KEY, "-r", str(package)]), conf=str(conf))
    finally:
        listener.close()
    assert proc.returncode != 0, proc.stderr
    if OBS_OPTIONS:  # before compat-client, an unknown option also printed the usage
        one_line(proc)
    assert snapshot(package) == before
    assert listener.received == b"", listener.received[:200]


@needs_root
def test_a_checksum_file_is_never_written_as_the_identity(instance, identity, tiny_rpm):  # noqa: F811
    """obs-sign's -S appends checksums to a file. Run as the identity, -S naming the identity's token
    (directly, through a link the build user planted, or '-') must write nothing."""
    package = os.path.join(identity["build"], "p.rpm")
    link = os.path.join(identity["build"], "sums")
    shutil.copy(str(tiny_rpm), package)
    os.chown(package, BUILD_UID, BUILD_UID)
    assert _as_build_user(os.symlink, identity["token"], link)
    token_before = snapshot(identity["token"])
    package_before = snapshot(package)
    for target in (identity["token"], link, "-", os.path.join(identity["etc"], "new-file")):
        proc = run_sign(instance, "-S", target, "-u", ED_KEY, "-r", package, uid=CLIENT_UID, conf=identity["conf"],
                        sudo_uid=BUILD_UID)
        one_line(proc)
        assert snapshot(identity["token"]) == token_before
        assert snapshot(package) == package_before
        assert not os.path.exists(os.path.join(identity["etc"], "new-file"))


# -- the mode from the file name ------------------------------------------------------------------

@needs_obs
def test_a_name_that_lies_about_the_type_rewrites_nothing(instance, tiny_rpm, tmp_path):
    """`sign FILE` without a mode option: .rpm/.spm are RPMs, other text is clearsigned, binary data is
    refused. A text file named .rpm, binary data named .txt, an RPM named .txt that holds NUL bytes,
    a link named .rpm to someone's package, a FIFO (no hang), a directory: non-zero, one line, and
    every file byte-identical."""
    text_rpm = tmp_path / "notes.rpm"
    text_rpm.write_bytes(b"just text, not a package\n")
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 64)
    rpm_as_txt = tmp_path / "package.txt"
    shutil.copy(str(tiny_rpm), str(rpm_as_txt))
    spm = tmp_path / "fake.spm"
    spm.write_bytes(b"\xed\xab\xee\xdb" + b"\x00" * 92 + b"not really")
    theirs = tmp_path / "theirs.rpm"
    shutil.copy(str(tiny_rpm), str(theirs))
    link = tmp_path / "link.rpm"
    link.symlink_to(theirs)
    fifo = tmp_path / "pipe.rpm"
    os.mkfifo(str(fifo))
    fifo_txt = tmp_path / "pipe.txt"
    os.mkfifo(str(fifo_txt))
    directory = tmp_path / "dir.rpm"
    directory.mkdir()
    targets = [text_rpm, blob, rpm_as_txt, spm, link, fifo, fifo_txt, directory]
    before = {str(p): snapshot(p) for p in targets + [theirs]}
    for path in targets:
        proc = instance.sign("-u", ED_KEY, str(path))
        one_line(proc)
        for name, state in before.items():
            assert snapshot(name) == state, (path, name)
    for args in (["--delsign", str(text_rpm)], ["--delsign", str(link)], ["--delsign", str(blob)],
                 ["-r", str(text_rpm)], ["-c", str(blob)], ["-c", str(rpm_as_txt)], ["--delsign", "-r", str(spm)]):
        proc = instance.sign("-u", ED_KEY, *args)
        one_line(proc)
        for name, state in before.items():
            assert snapshot(name) == state, (args, name)
    # one bad file among good ones: nothing is signed (all names judged first)
    good = tmp_path / "good.txt"
    good.write_text("text to clearsign\n")
    good_before = snapshot(good)
    proc = instance.sign("-u", ED_KEY, str(good), str(blob))
    one_line(proc)
    assert snapshot(good) == good_before


@needs_root
def test_mode_by_name_through_the_identity_rewrites_only_the_caller_s_files(instance, identity, tiny_rpm):  # noqa: F811
    """Through the identity, `sign NAME` rewrites only a regular file of the build user's own: not
    the identity's files (its sign.conf is text: it would be clearsigned in place), not a link to
    them named .rpm or .txt."""
    conf_before = snapshot(identity["conf"])
    token_before = snapshot(identity["token"])
    links = []
    for name, target in (("conf.txt", identity["conf"]), ("token.rpm", identity["token"]), ("conf", identity["conf"])):
        link = os.path.join(identity["build"], name)
        assert _as_build_user(os.symlink, target, link)
        links.append(link)
    for path in links + [identity["conf"], identity["token"]]:
        proc = run_sign(instance, "-u", ED_KEY, path, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=BUILD_UID)
        one_line(proc)
        assert snapshot(identity["conf"]) == conf_before and snapshot(identity["token"]) == token_before, path


# -- pkgsign-git-sign ------------------------------------------------------------------------------

def run_git_sign(instance, *args, input=b"tree 0\n", uid=None, conf=None, sudo_uid=None, env_extra=None):
    env = child_env(SIGN_CONF=conf or instance.sign_conf)
    env.pop("SUDO_UID", None)
    if sudo_uid is not None:
        env["SUDO_UID"] = str(sudo_uid)
    env.update(env_extra or {})

    def drop():
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return subprocess.run([PYTHON, "-m", "pkgsign.gitsign"] + list(args), input=input, env=env, preexec_fn=drop,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)


@needs_gitsign
def test_git_sign_signs_standard_input_only_and_only_the_token_s_keys(instance, tmp_path):
    """git passes the object on standard input. A file named on the command line is not signed in
    its place (git never names one); a key outside the token's patterns (as user.signingkey, as
    'Name <email>', in every option spelling) gives no signature."""
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("not the object\n")
    limited_conf = tmp_path / "limited.conf"
    limited_conf.write_text("server: %s\ntoken_file: %s\nhash: sha256\n"
                            % (instance.url, os.path.join(instance.root, "limited.token")))
    for args in (["--status-fd=2", "-bsau", ED_KEY, str(secret_file)], ["-bsau", ED_KEY, "--", str(secret_file)],
                 ["-bsau", ED_KEY, "--output", str(tmp_path / "out")], ["-bsau", ED_KEY, "-o", str(tmp_path / "out")],
                 ["--clearsign", "-u", ED_KEY], ["-sau", ED_KEY], ["-bau", ED_KEY], ["-bsau", ED_KEY, "--textmode"]):
        proc = run_git_sign(instance, *args)
        assert proc.returncode != 0 and b"BEGIN PGP" not in proc.stdout, (args, proc.stdout, proc.stderr)
        assert not os.path.exists(str(tmp_path / "out"))
    for key in (RSA_KEY, "Bob <%s>" % RSA_KEY, "Alice <alice#ed@copr.test> <%s>" % RSA_KEY, RSA_KEY.upper()):
        for args in (["--status-fd=2", "-bsau", key], ["-bsa", "-u", key], ["--local-user=" + key, "-bsa"]):
            proc = run_git_sign(instance, *args, conf=str(limited_conf))
            assert proc.returncode != 0 and b"BEGIN PGP" not in proc.stdout, (key, args, proc.stdout, proc.stderr)
    # control: the token's own key signs
    proc = run_git_sign(instance, "--status-fd=2", "-bsau", ED_KEY, conf=str(limited_conf))
    assert proc.returncode == 0 and b"BEGIN PGP SIGNATURE" in proc.stdout, proc.stderr
    assert b"[GNUPG:] SIG_CREATED " in proc.stderr


@needs_gitsign
@needs_root
def test_git_verify_runs_no_program_of_the_caller_s_choice(instance, identity, tmp_path):  # noqa: F811
    """git runs ``PROGRAM --keyid-format=long --status-fd=1 --verify SIG -``. Options git never
    passes (a dirmngr or agent program, another home) must not reach gpg: gpg starts
    ``--dirmngr-program`` to fetch an unknown signer's key."""
    build = identity["build"]
    marker = os.path.join(build, "ran-as")
    evil = os.path.join(build, "evil.sh")
    home = os.path.join(build, "home")

    def plant():
        with open(evil, "w") as handle:
            handle.write("#!/bin/sh\nid -u > %s\ncat %s >> %s 2>/dev/null\nexit 1\n" % (marker, identity["token"], marker))
        os.chmod(evil, 0o755)
        os.mkdir(home)
        os.chmod(home, 0o777)

    assert _as_build_user(plant)
    # a signature by a key nobody has: gpg wants to fetch it
    signer_home = tmp_path / "mallory"
    signer_home.mkdir(mode=0o700)
    # No passphrase (never one in argv: test_secrets samples every command line during the soak).
    subprocess.run(["gpg", "--homedir", str(signer_home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase-fd", "0", "--quick-gen-key", "m <m@evil.test>", "ed25519", "sign"],
                   input=b"\n", check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = os.path.join(build, "object")
    with open(data, "wb") as handle:
        handle.write(b"tree 0\n")
    sig = os.path.join(build, "object.asc")
    subprocess.run(["gpg", "--homedir", str(signer_home), "--batch", "-u", "m@evil.test", "--detach-sign", "-a", "-o",
                    sig, data], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(sig, 0o644)
    os.chmod(data, 0o644)
    # git's own options first (the program reads those), then gpg's own after --verify
    run_git_sign(instance, "--keyid-format=long", "--status-fd=1", "--verify", "--homedir", home,
                 "--dirmngr-program", evil, "--auto-key-retrieve", sig, data, uid=CLIENT_UID, conf=identity["conf"], sudo_uid=BUILD_UID,
                 env_extra={"HOME": home})
    ran = open(marker).read() if os.path.exists(marker) else ""
    assert not ran, "gpg ran the build user's program as uid %s%s" % (
        ran.split()[0], " and it read the identity's token" if instance.tokens["client"] in ran else "")


@needs_gitsign
def test_git_sign_with_a_closed_status_descriptor_fails_in_one_line(instance):
    proc = run_git_sign(instance, "--status-fd=97", "-bsau", ED_KEY)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()[-400:]
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
