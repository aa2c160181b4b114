"""Red team, re-using what the service returns: the signature values (MPIs) of a real data
signature, put into other packets that hash the very same bytes, checked by stock gpg and by
Sequoia's sqv (the policy of rpm-sequoia and dnf5).

The server signs H(D || area || 04 FF || len(area)). Besides re-typing the v4 packet (the hashed
area is covered by the hash, so that fails), an old format reads the same bytes differently: a
**v3** signature hashes ``data || class || time(4)``, so with data = D || area || 04, class 0xFF
and time = len(area) (35 s after 1970) it verifies over the same digest, as a signature over
*other data* dated 1970. Every verifier must refuse it (class 0xFF, v3, a time before the key).

Positive controls: the server's own packet verifies over D with gpg and sqv.
"""

import base64
import shutil
import struct
import subprocess

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, child_env
from pkgsign.hashstate import Hasher


def gpg_verify(home, signature, data, *extra):
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", "--status-fd", "1"] + list(extra)
                          + ["--verify", str(signature), str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=child_env(LC_ALL="C"), check=False)
    return proc.returncode == 0 and b"[GNUPG:] VALIDSIG" in proc.stdout, proc


def sqv_verify(keyring, signature, data):
    proc = subprocess.run(["sqv", "--keyring", str(keyring), str(signature), str(data)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    return proc.returncode == 0, proc


def split_v4(packet):
    """(hashed area, unhashed area, left16, MPIs) of an old-format v4 signature packet."""
    header = 2 if packet[0] == 0x88 else 3
    body = packet[header:]
    hashed_len = struct.unpack(">H", body[4:6])[0]
    area = body[:6 + hashed_len]
    unhashed_len = struct.unpack(">H", body[6 + hashed_len:8 + hashed_len])[0]
    unhashed = body[8 + hashed_len:8 + hashed_len + unhashed_len]
    rest = body[8 + hashed_len + unhashed_len:]
    return area, unhashed, rest[:2], rest[2:]


def old_packet(tag, body):
    if len(body) < 256:
        return bytes([0x80 | (tag << 2), len(body)]) + body
    return bytes([0x80 | (tag << 2) | 1]) + struct.pack(">H", len(body)) + body


def v3_signature(sig_class, time, key_id, pubkey_algo, hash_algo, left16, mpis):
    body = bytes([3, 5, sig_class]) + struct.pack(">I", time) + bytes.fromhex(key_id) + bytes([pubkey_algo, hash_algo]) \
        + left16 + mpis
    return old_packet(2, body)


@pytest.fixture(scope="module")
def world(instance, verifier, tmp_path_factory):
    """Public keys for sqv, and a sign-only token per key (one pattern each)."""
    root = tmp_path_factory.mktemp("reuse")
    keyring = root / "keyring.pgp"
    with open(keyring, "wb") as handle:
        for key in (ED_KEY, RSA_KEY):
            status, _headers, text = instance.request("GET", "/pubkey/" + key.replace("#", "%23"))
            assert status == 200
            lines = text.strip().splitlines()
            handle.write(base64.b64decode("".join(l for l in lines[lines.index("") + 1:]
                                                  if not l.startswith(("=", "-----")))))
    instance.add_token("reuse-ed", ["sign"], [ED_KEY])
    instance.add_token("reuse-rsa", ["sign"], [RSA_KEY])
    return {"root": root, "keyring": keyring, "home": verifier.homedir, "tokens": {ED_KEY: "reuse-ed", RSA_KEY: "reuse-rsa"}}


@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
@pytest.mark.parametrize("sig_type", ["binary", "text"])
def test_returned_signature_values_verify_only_as_the_server_s_data_signature(instance, world, key, sig_type):
    root = world["root"]
    data = b"red-team-data-for-%s-%s" % (key.encode(), sig_type.encode())  # no line end: canonical as text too
    status, _headers, answer = instance.request(
        "POST", "/sign", {"key": key, "sig_type": sig_type, "states": [Hasher("sha256").update(data).state().to_json()]},
        token=world["tokens"][key])
    assert status == 200, answer
    packet = base64.b64decode(answer["signatures"][0]["signature"])
    area, _unhashed, left16, mpis = split_v4(packet)
    name = "%s-%s" % (key.split("@")[0].replace("#", "-"), sig_type)
    data_path, sig_path = root / (name + ".dat"), root / (name + ".sig")
    data_path.write_bytes(data)
    sig_path.write_bytes(packet)
    # positive controls: the server's own signature over D
    ok, proc = gpg_verify(world["home"], sig_path, data_path)
    assert ok, proc.stderr
    if shutil.which("sqv"):
        ok, proc = sqv_verify(world["keyring"], sig_path, data_path)
        assert ok, proc.stderr

    # the v3 reading of the same bytes: data' = D || area || 04, class 0xFF, time = len(area)
    other = root / (name + ".v3.dat")
    other.write_bytes(data + area + b"\x04")
    for sig_class, time in ((0xFF, len(area)),):
        forged = root / (name + ".v3.sig")
        forged.write_bytes(v3_signature(sig_class, time, answer["key_id"], answer["pubkey_algo"], area[3], left16, mpis))
        for extra in ((), ("--ignore-time-conflict",), ("--ignore-time-conflict", "--allow-weak-digest-algos")):
            ok, proc = gpg_verify(world["home"], forged, other, *extra)
            assert not ok, ("gpg accepted a v3 re-reading", extra, proc.stdout)
        if shutil.which("sqv"):
            ok, proc = sqv_verify(world["keyring"], forged, other)
            assert not ok, ("sqv accepted a v3 re-reading", proc.stdout)

    # v4 packets around the same values with anything changed in the hashed area: refused
    variants = {
        "backdated": area[:8] + struct.pack(">I", struct.unpack(">I", area[8:12])[0] - 86400 * 365) + area[12:],
        "retyped": area[:1] + bytes([area[1] ^ 1]) + area[2:],
        "other hash id": area[:3] + bytes([12 if area[3] == 8 else 8]) + area[4:],
    }
    for label, changed in variants.items():
        body = changed + struct.pack(">H", 10) + bytes([9, 16]) + bytes.fromhex(answer["key_id"]) + left16 + mpis
        forged = root / ("%s.%s.sig" % (name, label.replace(" ", "-")))
        forged.write_bytes(old_packet(2, body))
        ok, proc = gpg_verify(world["home"], forged, data_path)
        assert not ok, (label, proc.stdout)
        if shutil.which("sqv"):
            ok, proc = sqv_verify(world["keyring"], forged, data_path)
            assert not ok, (label, proc.stdout)
