"""`pkgsign-admin init` in a directory too deep for gpg-agent's sockets (issue 14): one readable
line and nothing created, instead of gpg's "No agent running" half-way through. Run as an
unprivileged uid that has no /run/user/<uid> (then gpg puts its sockets in the GnuPG home)."""

import os
import shutil
import subprocess
import tempfile

import pytest

from pkgsign_testlib import CHILD_SRC, PYTHON

NOBODY = 65534


def _as_nobody(*args, home):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "PYTHONPATH": CHILD_SRC, "LC_ALL": "C"}
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                           PYTHON, "-m", "pkgsign.admin"] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300, check=False)


@pytest.fixture
def base():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as an unprivileged uid")
    if os.path.exists("/run/user/%d" % NOBODY):
        pytest.skip("/run/user/%d exists: gpg would put the sockets there" % NOBODY)
    path = tempfile.mkdtemp(prefix="pkdeep-")
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    for root, _dirs, _files in os.walk(path):
        if os.path.basename(root) in ("gnupg", "audit-gnupg"):
            subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "gpgconf",
                            "--homedir", root, "--kill", "gpg-agent"], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def test_init_in_a_too_deep_directory_says_so_in_one_line(base):
    deep = os.path.join(base, "a" * 50, "b" * 30)
    proc = _as_nobody("init", deep, "--algorithm", "ed25519", home=base)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "too deep for gpg-agent" in proc.stderr and "No agent running" not in proc.stderr, proc.stderr
    assert not os.path.exists(deep)


def test_init_in_a_short_directory_still_works_for_that_user(base):
    short = os.path.join(base, "s")
    proc = _as_nobody("init", short, "--algorithm", "ed25519", home=base)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(os.path.join(short, "pkgsign.conf"))
