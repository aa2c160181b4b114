"""Red team, hostile packages: `sign -r` parses the package a build user hands it (possibly as the
client identity, through sudo) before anything is signed. Mutated signature headers and main
headers of a real rpm must end in NotAnRpm/Unsupported (the client then reports one line or hands
the package to rpmsign), never in another exception (a traceback instead of one line), and the
file is never changed by parsing."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkgsign_testlib import ED_KEY
from pkgsign import rpmheader

EXAMPLES = int(os.environ.get("PKGSIGN_REDTEAM_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def rpm_bytes(tiny_rpm):
    with open(str(tiny_rpm), "rb") as handle:
        return handle.read()


@settings(max_examples=EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_packages_fail_only_with_the_documented_errors(rpm_bytes, tmp_path_factory, data):
    blob = bytearray(rpm_bytes)
    # mutations aimed at the lead, the signature header's index and data and the main header's intro
    limit = min(len(blob), 96 + 16 + 16 * 12 + 2048)
    for _mutation in range(data.draw(st.integers(1, 6))):
        where = data.draw(st.integers(0, limit - 1))
        how = data.draw(st.sampled_from(["byte", "word", "cut", "zero"]))
        if how == "byte":
            blob[where] = data.draw(st.integers(0, 255))
        elif how == "word":
            value = data.draw(st.sampled_from([0, 1, 6, 7, 8, 9, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 16,
                                               rpmheader.SIGTAG_RESERVEDSPACE, rpmheader.TAG_HEADERSIGNATURES]))
            blob[where:where + 4] = value.to_bytes(4, "big")
        elif how == "cut":
            del blob[where:]
            break
        else:
            blob[where:where + 16] = bytes(16)
    path = tmp_path_factory.mktemp("rpm") / "m.rpm"
    path.write_bytes(bytes(blob))
    try:
        package = rpmheader.load(str(path))
        package.check_signable()
        package.signed_signature_header(rpmheader.SIGTAG_RSA, b"\x88\x10" + bytes(16))
    except (rpmheader.NotAnRpm, rpmheader.Unsupported):
        pass
    assert path.read_bytes() == bytes(blob)


def test_string_entries_without_their_nul_are_not_an_rpm(rpm_bytes, tmp_path):
    """A STRING entry whose data runs to the end of the signature header without a NUL."""
    blob = bytearray(rpm_bytes)
    count = int.from_bytes(blob[96 + 8:96 + 12], "big")
    size = int.from_bytes(blob[96 + 12:96 + 16], "big")
    data_start = 96 + 16 + 16 * count
    blob[data_start:data_start + size] = b"A" * size  # no NUL anywhere in the data
    for index in range(count):  # make every entry a string
        base = 96 + 16 + 16 * index
        blob[base + 4:base + 8] = rpmheader.TYPE_STRING.to_bytes(4, "big")
    path = tmp_path / "nonul.rpm"
    path.write_bytes(bytes(blob))
    with pytest.raises((rpmheader.NotAnRpm, rpmheader.Unsupported)):
        rpmheader.load(str(path))


def test_sign_reports_a_hostile_package_in_one_line(instance, rpm_bytes, tmp_path):
    blob = bytearray(rpm_bytes)
    count = int.from_bytes(blob[96 + 8:96 + 12], "big")
    size = int.from_bytes(blob[96 + 12:96 + 16], "big")
    data_start = 96 + 16 + 16 * count
    blob[data_start:data_start + size] = b"A" * size
    base = 96 + 16 + 16 * 1
    blob[base + 4:base + 8] = rpmheader.TYPE_STRING.to_bytes(4, "big")
    path = tmp_path / "hostile.rpm"
    path.write_bytes(bytes(blob))
    before = path.read_bytes()
    proc = instance.sign("-u", ED_KEY, "-r", str(path))
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert path.read_bytes() == before
