"""Fixtures: one real pkgsign instance per session (GnuPG home, tokens, keys), served over real
HTTP on 127.0.0.1 by ``pkgsign-admin serve``, plus a Flask test client on the same state. The
helpers (Instance, run_admin, child_env ...) are in pkgsign_testlib (tests/pytest_plugins), shared
with the reliability suite and the benchmark."""

import os
import shutil
import signal
import subprocess

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, Instance, agents_under, signed_backup
from pkgsign import _gnupg


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    inst = Instance.create(tmp_path_factory.mktemp("inst"))
    inst.add_token("admin", ["sign", "keygen", "admin"], ["*"])
    inst.add_token("limited", ["sign"], ["alice#*@copr.test"])
    inst.add_token("keygen-only", ["keygen"], ["*"])
    inst.add_token("slow", ["sign", "keygen"], ["*"], rate="3/3600")
    inst.set_option("aliases", "modern", ED_KEY)
    inst.set_option("aliases", "el10-x86_64", "modern")
    inst.start()
    status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "alice_ed", "name_email": ED_KEY})
    assert status in (200, 201), body
    status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "bob_rsa", "name_email": RSA_KEY,
                                                               "key_length": 2048})
    assert status in (200, 201), body
    yield inst
    inst.close()


@pytest.fixture(scope="session")
def app_client(instance):
    """Flask test client over the same state as the served instance."""
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    app = create_app(load_config(instance.config))
    app.testing = True
    return app.test_client()


@pytest.fixture(scope="session")
def verifier(instance, tmp_path_factory):
    """A separate GnuPG home holding the instance's public keys, to verify with stock gpg."""
    home = tmp_path_factory.mktemp("verify-gnupg")
    gpg = _gnupg.GnuPG(str(home))
    for key in (ED_KEY, RSA_KEY):
        status, _headers, text = instance.request("GET", "/pubkey/" + key.replace("#", "%23"))
        assert status == 200
        gpg.import_keys(text.encode())
    yield gpg
    gpg.kill_agent()


@pytest.fixture(scope="session")
def tiny_rpm(tmp_path_factory):
    if not shutil.which("rpmbuild"):
        pytest.skip("rpmbuild not installed")
    top = tmp_path_factory.mktemp("rpmbuild")
    spec = top / "tiny.spec"
    spec.write_text(
        "Name: tiny\nVersion: 1.0\nRelease: 1\nSummary: tiny test package\nLicense: MIT\nBuildArch: noarch\n"
        "%description\ntiny\n%install\nmkdir -p %{buildroot}/usr/share/tiny\n"
        "echo hello > %{buildroot}/usr/share/tiny/hello\n%files\n/usr/share/tiny/hello\n")
    proc = subprocess.run(["rpmbuild", "-bb", "--define", "_topdir %s" % top, "--define", "_rpmdir %s" % top,
                           "--define", "_build_name_fmt %%{NAME}.rpm", str(spec)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return top / "tiny.rpm"


@pytest.fixture
def backup(tmp_path):
    """A signed backup of an instance holding the token "genuine" and a fresh instance to restore
    it into (pkgsign_testlib.signed_backup)."""
    yield from signed_backup(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def no_agent_left_behind(tmp_path_factory):
    """Every gpg run in a scratch home of this session starts a gpg-agent that would outlive the
    tests (hundreds in the attacker test): stop them when the session ends."""
    yield
    root = str(tmp_path_factory.getbasetemp())
    for pid in agents_under(root):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
