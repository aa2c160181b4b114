"""End to end from the build client: it signs through the signer and holds no private key."""

import uuid

import pytest

from conftest import run_ok

testinfra_hosts = ["podman://build-client"]

WORK = "/root/e2e"
PROJECT_EMAIL = "molecule#e2e-%s@copr" % uuid.uuid4().hex[:8]

SPEC = """\
Name: pkgsign-e2e
Version: 1.0
Release: 1
Summary: pkgsign end-to-end test package
License: MIT
BuildArch: noarch
%description
Signed remotely by the molecule scenario.
%files
"""

GEN_KEY = """\
import json, ssl, sys, urllib.request, urllib.error
token = open('/etc/pkgsign/sign.token').read().strip()
context = ssl.create_default_context(cafile="/etc/pkgsign/ca.crt")
context.load_cert_chain("/etc/pkgsign/client.crt", "/etc/pkgsign/client.key")
body = json.dumps({"name_real": "Molecule e2e", "name_email": sys.argv[1], "algorithm": "ed25519"}).encode()
req = urllib.request.Request("https://signer:5003/gen_key", data=body, method="POST",
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    resp = urllib.request.urlopen(req, timeout=120, context=context)
    print(resp.status)
except urllib.error.HTTPError as err:
    print(err.code)
    print(err.read().decode())
"""


def gen_key(host, email):
    return run_ok(host, "python3 -c %s %s", GEN_KEY, email).stdout.split("\n", 1)


@pytest.fixture(scope="module")
def project_key(host):
    """A new project key made through POST /gen_key, and its public key fetched with sign -p."""
    run_ok(host, "rm -rf %s && mkdir -p %s/gnupg && chmod 0700 %s/gnupg", WORK, WORK, WORK)
    first = gen_key(host, PROJECT_EMAIL)
    assert first[0] == "201", first
    again = gen_key(host, PROJECT_EMAIL)
    assert again[0] == "200", "a second request returns the existing key: %s" % again
    public = run_ok(host, "sign -u %s -p", PROJECT_EMAIL).stdout
    assert public.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    host.run("cat > %s/project.asc <<'EOF'\n%s\nEOF" % (WORK, public))
    run_ok(host, "LC_ALL=C gpg --batch --homedir %s/gnupg --import %s/project.asc", WORK, WORK)
    return PROJECT_EMAIL


def test_sign_conf_and_token_file(host):
    conf = host.file("/etc/sign.conf")
    assert conf.contains("^server: https://signer:5003$")
    assert conf.contains("^ca_file: /etc/pkgsign/ca.crt$")
    assert conf.contains("^client_cert: /etc/pkgsign/client.crt$")
    assert host.file("/etc/pkgsign/client.key").mode == 0o600
    token = host.file("/etc/pkgsign/sign.token")
    assert token.mode == 0o600 and token.user == "root"
    launcher = host.file("/usr/local/bin/sign")
    assert launcher.mode == 0o755 and launcher.content_string.startswith("#!/opt/pkgsign/venv/bin/python3 -IS\n")


def test_sign_connection(host):
    run_ok(host, "sign -t")


def test_rpm_signed_remotely_verifies_with_rpmkeys(host, project_key):
    # (host.run quotes its arguments, so the here-document is put together here)
    run_ok(host, "mkdir -p " + WORK + "/rpmbuild/SPECS && cat > " + WORK + "/rpmbuild/SPECS/e2e.spec <<'EOF'\n" + SPEC + "EOF")
    run_ok(host, "rpmbuild --define '_topdir %s/rpmbuild' -bb %s/rpmbuild/SPECS/e2e.spec", WORK, WORK)
    rpm = run_ok(host, "ls %s/rpmbuild/RPMS/noarch/*.rpm", WORK).stdout.strip()
    unsigned = host.run("rpmkeys --dbpath %s/rpmdb --checksig %s", WORK, rpm)
    assert "signatures" not in unsigned.stdout
    run_ok(host, "sign -u %s -4 -h sha256 -r %s", project_key, rpm)
    run_ok(host, "mkdir -p %s/rpmdb && rpmkeys --dbpath %s/rpmdb --import %s/project.asc", WORK, WORK, WORK)
    checked = run_ok(host, "rpmkeys --dbpath %s/rpmdb --checksig %s", WORK, rpm).stdout
    assert "digests signatures OK" in checked


def test_detached_signature_verifies_with_gpg(host, project_key):
    run_ok(host, "tar -C /etc -czf %s/payload.tar.gz sign.conf", WORK)
    run_ok(host, "sign -u %s -d %s/payload.tar.gz", project_key, WORK)
    verified = run_ok(host, "LC_ALL=C gpg --batch --homedir %s/gnupg --status-fd 1 --verify %s/payload.tar.gz.asc %s/payload.tar.gz",
                      WORK, WORK, WORK).stdout
    assert "[GNUPG:] GOODSIG" in verified and "[GNUPG:] VALIDSIG" in verified
    # A changed file must not verify.
    run_ok(host, "echo tampered >> %s/payload.tar.gz", WORK)
    assert host.run("gpg --batch --homedir %s/gnupg --verify %s/payload.tar.gz.asc %s/payload.tar.gz",
                    WORK, WORK, WORK).rc != 0


def test_release_subkey_signs_by_alias(host):
    """The operator-installed release key (subkey-only keyring) signs through its alias."""
    run_ok(host, "mkdir -p %s/release && chmod 0700 %s/release", WORK, WORK)
    public = run_ok(host, "sign -p").stdout  # default key: `user: release` in sign.conf
    host.run("cat > %s/release.asc <<'EOF'\n%s\nEOF" % (WORK, public))
    run_ok(host, "LC_ALL=C gpg --batch --homedir %s/release --import %s/release.asc", WORK, WORK)
    run_ok(host, "echo release > %s/release.txt && sign -d %s/release.txt", WORK, WORK)
    verified = run_ok(host, "LC_ALL=C gpg --batch --homedir %s/release --status-fd 1 --verify %s/release.txt.asc %s/release.txt",
                      WORK, WORK, WORK).stdout
    assert "[GNUPG:] GOODSIG" in verified


def test_no_private_key_material_on_the_client(host):
    # No secret key in any GnuPG home and no exported secret key anywhere on the filesystem.
    keyrings = run_ok(host, "find / -xdev -type d -name private-keys-v1.d").stdout.split()
    for keyring in keyrings:
        assert run_ok(host, "find %s -type f", keyring).stdout.strip() == "", keyring
    exported = host.run("grep -rls -- '-----BEGIN PGP PRIVATE KEY BLOCK-----' /etc /root /home /opt /var /tmp /usr/local")
    assert exported.stdout.strip() == ""
    assert host.run("LC_ALL=C gpg --batch --homedir %s/gnupg -K --with-colons", WORK).stdout.count("sec:") == 0
