"""pkgsign.rpmheader against the real rpmsign: the same bytes for the same signature packet."""

import os
import shutil
import subprocess

import pytest

from pkgsign import rpmheader

KEYS = {
    "ed25519": "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n",
    "rsa2048": "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\n",
}


@pytest.fixture(scope="module")
def gnupg_home(tmp_path_factory):
    """A throw-away GnuPG home with an unprotected ed25519 and an RSA-2048 signing key."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(str(home), 0o700)
    batch = "".join("%sName-Email: %s@example.org\n%%no-protection\n%%commit\n" % (params, name)
                    for name, params in KEYS.items())
    subprocess.run(["gpg", "--batch", "--homedir", str(home), "--gen-key"], input=batch.encode(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    yield str(home)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def rpmsign(home, path, name):
    """Sign ``path`` in place with the stock rpmsign and gpg."""
    env = dict(os.environ, GNUPGHOME=home, LC_ALL="C")
    proc = subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg", "--define", "_gpg_name %s@example.org" % name,
                           str(path)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    assert proc.returncode == 0, proc.stdout


def header_signature(path):
    """(tag, packet) of the package's header signature."""
    found = [(entry[0], entry[3]) for entry in rpmheader.Package(str(path)).entries if entry[0] in (267, 268)]
    assert len(found) == 1
    return found[0]


@pytest.fixture(autouse=True)
def need_rpmsign():
    if not shutil.which("rpmsign"):
        pytest.skip("rpmsign not installed")


@pytest.mark.parametrize("name,tag", [("ed25519", 267), ("rsa2048", 268)])
def test_same_bytes_as_rpmsign(gnupg_home, tiny_rpm, tmp_path, name, tag):
    by_rpmsign, in_place = tmp_path / "rpmsign.rpm", tmp_path / "in-place.rpm"
    shutil.copy(str(tiny_rpm), str(by_rpmsign))
    shutil.copy(str(tiny_rpm), str(in_place))
    rpmsign(gnupg_home, by_rpmsign, name)
    sigtag, packet = header_signature(by_rpmsign)
    assert sigtag == tag
    body = packet[2:] if packet[0] & 3 == 0 else packet[3:]  # old-format packet, 1- or 2-byte length
    assert rpmheader.sigtag_for(body) == tag
    assert rpmheader.sigtag_for_packet(packet) == tag
    assert rpmheader.sigtag_for_packet(b"\xc2" + bytes([min(len(body), 191)]) + body) == tag  # new format, one-octet length
    assert rpmheader.sigtag_for_packet(b"\xc2\xc0\x10" + body) == tag  # new format, two-octet length
    package = rpmheader.load(str(in_place))
    package.write_signature(sigtag, packet)
    assert in_place.read_bytes() == by_rpmsign.read_bytes()
    assert os.path.getsize(str(in_place)) == os.path.getsize(str(tiny_rpm))


def test_signed_package_is_left_to_rpmsign(gnupg_home, tiny_rpm, tmp_path):
    path = tmp_path / "signed.rpm"
    shutil.copy(str(tiny_rpm), str(path))
    rpmsign(gnupg_home, path, "ed25519")
    with pytest.raises(rpmheader.Unsupported, match="already signed"):
        rpmheader.load(str(path)).check_signable(rpmheader.SIGTAG_RSA)


def test_signature_larger_than_reserved_space_is_left_to_rpmsign(tiny_rpm, tmp_path):
    path = tmp_path / "p.rpm"
    shutil.copy(str(tiny_rpm), str(path))
    before = path.read_bytes()
    package = rpmheader.load(str(path))
    with pytest.raises(rpmheader.Unsupported, match="reserved space"):
        package.write_signature(rpmheader.SIGTAG_RSA, b"\x89" * 8192)
    assert path.read_bytes() == before


def test_damaged_packages_are_refused(tiny_rpm, tmp_path):
    original = tiny_rpm.read_bytes()
    package = rpmheader.Package(str(tiny_rpm))
    header_at = rpmheader.LEAD_SIZE + len(package.signature_header)
    header_at += (8 - header_at % 8) % 8
    tampered = bytearray(original)
    tampered[header_at + len(package.header) - 1] ^= 0x01  # last byte of the main header's data
    cases = {
        "header digest mismatch": bytes(tampered),
        "truncated": original[:rpmheader.LEAD_SIZE + 40],
        "not an RPM package": b"not an rpm at all\n" * 10,
    }
    for message, content in cases.items():
        path = tmp_path / "bad.rpm"
        path.write_bytes(content)
        with pytest.raises(rpmheader.NotAnRpm, match=message):
            rpmheader.load(str(path))


def test_package_changed_after_reading_is_not_written(tiny_rpm, tmp_path):
    path = tmp_path / "p.rpm"
    shutil.copy(str(tiny_rpm), str(path))
    package = rpmheader.load(str(path))
    with open(str(path), "r+b") as handle:  # someone else rewrites the signature header meanwhile
        handle.seek(rpmheader.LEAD_SIZE + 20)
        handle.write(b"\xff")
    changed = path.read_bytes()
    with pytest.raises(rpmheader.NotAnRpm, match="changed"):
        package.write_signature(rpmheader.SIGTAG_DSA, b"\x88" * 100)
    assert path.read_bytes() == changed
