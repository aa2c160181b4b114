"""apt and dnf repositories signed through the service, checked by the real clients:
apt-get update (a file: repository with signed-by, private state directories) accepts an
InRelease made by `sign -c` and a Release.gpg made by `sign -d` and refuses tampered ones;
dnf (--installroot, gpgcheck=1, repo_gpgcheck=1) installs from a repository whose packages were
signed by `sign -r` and whose repomd.xml by `sign -d`, and refuses a tampered repomd.xml and an
unsigned package."""

import hashlib
import os
import shutil
import subprocess

import pytest
from pkgsign_testlib import ED_KEY, RSA_KEY

from pkgsign import _gnupg


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                          env=dict(os.environ, LC_ALL="C"), **kwargs)


def signed_ok(instance, *args):
    proc = instance.sign(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


# -- apt -----------------------------------------------------------------------------------

needs_apt = pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")
                                    and shutil.which("dpkg-scanpackages")), reason="apt-get/dpkg tools missing")


@pytest.fixture(scope="module")
def apt_keyring(instance, tmp_path_factory):
    """The published key as a binary keyring file for signed-by (what `gpg --export` writes)."""
    root = tmp_path_factory.mktemp("apt-key")
    home = _gnupg.GnuPG(str(root / "gnupg"))
    home.import_keys(signed_ok(instance, "-u", ED_KEY, "-p").stdout)
    proc = subprocess.run(["gpg", "--homedir", home.homedir, "--batch", "--export"], stdout=subprocess.PIPE, check=True)
    path = root / "release-key.gpg"
    path.write_bytes(proc.stdout)
    path.chmod(0o644)
    yield path
    home.kill_agent()


def flat_apt_repository(root):
    """A flat repository (`deb file:/DIR ./`): one tiny .deb, Packages, Release."""
    pkg = root / "build" / "hello-pkgsign"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: hello-pkgsign\nVersion: 1.0\nArchitecture: all\nMaintainer: Release Team <r@example.org>\n"
        "Description: test package\n")
    (pkg / "usr" / "share" / "hello-pkgsign").mkdir(parents=True)
    (pkg / "usr" / "share" / "hello-pkgsign" / "hello").write_text("hello\n")
    repo = root / "repo"
    repo.mkdir()
    assert run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(repo / "hello-pkgsign_1.0_all.deb")]).returncode == 0
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=str(repo), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, check=True).stdout
    (repo / "Packages").write_text(packages)
    data = (repo / "Packages").read_bytes()
    (repo / "Release").write_text(
        "Origin: pkgsign-test\nLabel: pkgsign-test\nSuite: stable\nCodename: stable\n"
        "Date: Sat, 02 Jan 2026 03:04:05 UTC\nArchitectures: all amd64\n"
        "SHA256:\n %s %d Packages\n" % (hashlib.sha256(data).hexdigest(), len(data)))
    return repo


def apt_update(root, repo, keyring, name):
    """apt-get update against ``repo`` only, with its own state, cache and source list."""
    base = root / name
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/trusted.gpg.d"):
        (base / sub).mkdir(parents=True)
    sources = base / "etc" / "sources.list"
    sources.write_text("deb [signed-by=%s] file:%s ./\n" % (keyring, repo))
    options = ["-o", "Dir::State=%s" % (base / "state"), "-o", "Dir::Cache=%s" % (base / "cache"),
               "-o", "Dir::Etc::sourcelist=%s" % sources, "-o", "Dir::Etc::sourceparts=-",
               "-o", "Dir::Etc::trusted=%s" % (base / "etc" / "trusted.gpg"),
               "-o", "Dir::Etc::trustedparts=%s" % (base / "etc" / "trusted.gpg.d"),
               "-o", "Dir::Etc::preferencesparts=%s" % (base / "etc" / "preferences.d"),
               "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1", "-o", "Acquire::Languages=none"]
    update = run(["apt-get"] + options + ["update"])
    show = run(["apt-cache"] + options + ["show", "hello-pkgsign"])
    return update, show


def copy_repo(repo, dest):
    shutil.copytree(str(repo), str(dest))
    return dest


@needs_apt
def test_apt_accepts_inrelease_and_release_gpg_and_refuses_tampered(instance, apt_keyring, tmp_path):
    repo = flat_apt_repository(tmp_path)
    # InRelease: the Release file clearsigned in place by `sign -c`.
    inrelease_repo = copy_repo(repo, tmp_path / "inrelease")
    shutil.move(str(inrelease_repo / "Release"), str(inrelease_repo / "InRelease"))
    signed_ok(instance, "-u", ED_KEY, "-c", str(inrelease_repo / "InRelease"))
    update, show = apt_update(tmp_path, inrelease_repo, apt_keyring, "apt-inrelease")
    assert update.returncode == 0 and "W:" not in update.stdout and "E:" not in update.stdout, update.stdout
    assert "Package: hello-pkgsign" in show.stdout, show.stdout
    # Release + Release.gpg: an armored detached signature made by `sign -d`.
    detached_repo = copy_repo(repo, tmp_path / "detached")
    signed_ok(instance, "-u", ED_KEY, "-d", str(detached_repo / "Release"))
    shutil.move(str(detached_repo / "Release.asc"), str(detached_repo / "Release.gpg"))
    update, show = apt_update(tmp_path, detached_repo, apt_keyring, "apt-detached")
    assert update.returncode == 0 and "W:" not in update.stdout and "E:" not in update.stdout, update.stdout
    assert "Package: hello-pkgsign" in show.stdout, show.stdout

    # Tampered: one character of the signed text changed in each form.
    for signed_repo, signed_file, genuine, changed in ((inrelease_repo, "InRelease", "Label: pkgsign-test", "Label: pkgsign-tesT"),
                                                       (detached_repo, "Release", "Suite: stable", "Suite: stablE")):
        tampered = copy_repo(signed_repo, tmp_path / (signed_repo.name + "-tampered"))
        text = (tampered / signed_file).read_text()
        (tampered / signed_file).write_text(text.replace(genuine, changed))
        update, show = apt_update(tmp_path, tampered, apt_keyring, "apt-%s-tampered" % signed_repo.name)
        assert update.returncode != 0 and ("BADSIG" in update.stdout or "invalid" in update.stdout), (signed_file, update.stdout)
        assert "Package: hello-pkgsign" not in show.stdout, signed_file


@needs_apt
def test_apt_refuses_a_repository_signed_by_another_key(instance, apt_keyring, tmp_path):
    """signed-by names the release key: an InRelease signed by another key of the same service
    (what a token for that other key could make) is refused."""
    repo = flat_apt_repository(tmp_path)
    shutil.move(str(repo / "Release"), str(repo / "InRelease"))
    signed_ok(instance, "-u", RSA_KEY, "-c", str(repo / "InRelease"))
    update, show = apt_update(tmp_path, repo, apt_keyring, "apt-other-key")
    assert update.returncode != 0 and "NO_PUBKEY" in update.stdout, update.stdout
    assert "Package: hello-pkgsign" not in show.stdout


# -- dnf -----------------------------------------------------------------------------------

needs_dnf = pytest.mark.skipif(not (shutil.which("dnf") and shutil.which("createrepo_c")),
                               reason="dnf/createrepo_c missing (scripts/bootstrap.sh installs them)")


def dnf_repository(instance, root, tiny_rpm, sign_package=True):
    repo = root / "repo"
    repo.mkdir()
    package = repo / "tiny-1.0-1.noarch.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    if sign_package:
        signed_ok(instance, "-u", ED_KEY, "-r", str(package))
    assert run(["createrepo_c", "--quiet", str(repo)]).returncode == 0
    signed_ok(instance, "-u", ED_KEY, "-d", str(repo / "repodata" / "repomd.xml"))
    return repo


def dnf_install(instance, root, repo):
    pubkey = root / "RPM-GPG-KEY-pkgsign"
    pubkey.write_bytes(signed_ok(instance, "-u", ED_KEY, "-p").stdout)
    installroot = root / "installroot"
    installroot.mkdir()
    conf = root / "dnf.conf"
    conf.write_text(
        "[main]\ngpgcheck=1\nrepo_gpgcheck=1\nreposdir=%s\ncachedir=%s\ninstall_weak_deps=0\n"
        "[pkgsign-test]\nname=pkgsign test\nbaseurl=file://%s\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\n"
        "gpgkey=file://%s\nmetadata_expire=0\n" % (root / "no-repos.d", root / "dnf-cache", repo, pubkey))
    proc = run(["dnf", "-y", "--config", str(conf), "--installroot", str(installroot), "--releasever", "1",
                "--setopt=cachedir=%s" % (root / "dnf-cache"), "--nodocs", "install", "tiny"])
    installed = (installroot / "usr" / "share" / "tiny" / "hello").exists()
    return proc, installed


@needs_dnf
def test_dnf_installs_from_a_signed_repository(instance, tiny_rpm, tmp_path):
    repo = dnf_repository(instance, tmp_path, tiny_rpm)
    proc, installed = dnf_install(instance, tmp_path, repo)
    assert proc.returncode == 0 and installed, proc.stdout


@needs_dnf
def test_dnf_refuses_a_tampered_repomd(instance, tiny_rpm, tmp_path):
    repo = dnf_repository(instance, tmp_path, tiny_rpm)
    repomd = repo / "repodata" / "repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>6", 1))
    proc, installed = dnf_install(instance, tmp_path, repo)
    assert proc.returncode != 0 and not installed, proc.stdout
    assert "repomd.xml GPG signature verification error: Bad GPG signature" in proc.stdout, proc.stdout


@needs_dnf
def test_dnf_refuses_an_unsigned_package_in_a_signed_repository(instance, tiny_rpm, tmp_path):
    repo = dnf_repository(instance, tmp_path, tiny_rpm, sign_package=False)
    proc, installed = dnf_install(instance, tmp_path, repo)
    assert proc.returncode != 0 and not installed, proc.stdout
    assert "tiny-1.0-1.noarch.rpm is not signed" in proc.stdout, proc.stdout
