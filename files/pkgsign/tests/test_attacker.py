"""The signer is no oracle: with a `sign`-scoped token only, every attempt to obtain anything but
a binary/text data signature with the server's creation time fails, or yields a signature that
stock gpg does not accept as what the attacker wanted.

The attacker (real HTTP, real gpg, real gpg-agent) wants, from the served key:
a subkey binding (0x18) attaching the attacker's encryption subkey, a key revocation (0x20),
certifications (0x10-0x13) of the attacker's user id, a backdated data signature, and a data
signature with a notation. For each target the attacker builds the exact packet it wants and
the exact bytes a verifier hashes for it, then tries every way the wire format gives to get the
service to sign those bytes: honest states of the whole message, states of the message without
its hashed area, crafted chaining values, byte counts and tails, other signature types and extra
fields. The packet is finished with each signature value the service returned, and a fresh gpg
home decides whether it is accepted.

Every check has a positive control: the same packet signed over the right digest by the key's
own gpg-agent (what the raw-digest oracle of old gave to anyone with a token) *is* accepted,
so a check that refuses the forgeries could have failed.
"""

import base64
import hashlib
import os
import random
import struct
import subprocess
import time

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, child_env
from pkgsign import _gnupg, openpgp
from pkgsign.agent import AgentConnection
from pkgsign.hashstate import Hasher

HASH_ID_SHA256 = 8


# -- OpenPGP packets, as an attacker would write them ---------------------------------------

def parse_packets(data):
    packets, pos = [], 0
    while pos < len(data):
        head = data[pos]
        if head & 0x40:
            tag, first = head & 0x3F, data[pos + 1]
            if first < 192:
                size, header = first, 2
            elif first < 224:
                size, header = ((first - 192) << 8) + data[pos + 2] + 192, 3
            else:
                size, header = int.from_bytes(data[pos + 2:pos + 6], "big"), 6
        else:
            tag, header = (head >> 2) & 0x0F, 1 + {0: 1, 1: 2, 2: 4}[head & 3]
            size = int.from_bytes(data[pos + 1:pos + header], "big")
        packets.append((tag, data[pos + header:pos + header + size]))
        pos += header + size
    return packets


def packet(tag, body):
    if len(body) < 192:
        length = bytes([len(body)])
    elif len(body) < 8384:
        length = bytes([((len(body) - 192) >> 8) + 192, (len(body) - 192) & 0xFF])
    else:
        length = b"\xff" + struct.pack(">I", len(body))
    return bytes([0xC0 | tag]) + length + body


def dearmor(text):
    lines = text.strip().splitlines()
    body = lines[lines.index("") + 1:]
    return base64.b64decode("".join(line for line in body if not line.startswith(("=", "-----"))))


def subpacket(kind, body):
    return bytes([len(body) + 1, kind]) + body


def hashed_area(sig_type, pubkey_algo, subpackets):
    data = b"".join(subpackets)
    return bytes([4, sig_type, pubkey_algo, HASH_ID_SHA256]) + struct.pack(">H", len(data)) + data


def trailer(area):
    return b"\x04\xff" + struct.pack(">I", len(area))


def key_material(body):
    """What a signature over a key hashes for it (RFC 4880 5.2.4)."""
    return b"\x99" + struct.pack(">H", len(body)) + body


def uid_material(uid):
    return b"\xb4" + struct.pack(">I", len(uid)) + uid


def signature_packet(area, issuer_key_id, digest, mpis):
    unhashed = subpacket(16, bytes.fromhex(issuer_key_id))
    return packet(2, area + struct.pack(">H", len(unhashed)) + unhashed + digest[:2] + mpis)


def split_signature(body):
    """(hashed area, MPIs) of a v4 signature packet body."""
    hashed_len = struct.unpack(">H", body[4:6])[0]
    area = body[:6 + hashed_len]
    unhashed_len = struct.unpack(">H", body[6 + hashed_len:8 + hashed_len])[0]
    return area, body[8 + hashed_len + unhashed_len + 2:]


# -- the parties ------------------------------------------------------------------------------

def gpg(home, *args, input=None, status=False):
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty"] + (["--status-fd", "1"] if status else [])
                          + list(args),
                          input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                          env=child_env(LC_ALL="C"))


def fresh_home(tmp_path, name):
    home = tmp_path / name
    home.mkdir(mode=0o700)
    return home


DATA_KINDS = ("backdated", "notation")


class Victim:
    """The served key as the world sees it (its public key), plus its own agent for the controls."""

    def __init__(self, instance, name):
        status, _headers, text = instance.request("GET", "/pubkey/" + name.replace("#", "%23"))
        assert status == 200
        self.name = name
        self.public = dearmor(text)
        packets = parse_packets(self.public)
        assert packets[0][0] == 6
        self.primary_body = packets[0][1]
        self.pubkey_algo = self.primary_body[5]
        self.created = struct.unpack(">I", self.primary_body[1:5])[0]
        status, _headers, info = instance.request("GET", "/keys/" + name.replace("#", "%23"))
        self.fingerprint = info["fingerprint"]
        self.key_id = info["key_id"]
        # Data signatures come from the signing subkey (the primary only certifies).
        self.signing_fingerprint = info["signing_fingerprint"]
        self.signing_key_id = info["signing_key_id"]
        self.instance = instance

    def issuer_of(self, target):
        """(fingerprint, key id) of the part that would make ``target``: the signing subkey for
        data signatures, the primary for bindings, revocations and certifications."""
        if target.kind in DATA_KINDS:
            return self.signing_fingerprint, self.signing_key_id
        return self.fingerprint, self.key_id

    def control_signature(self, target):
        """The signature value the right part of the key would give over ``target`` (the positive control)."""
        home = os.path.join(self.instance.root, "gnupg")
        key = _gnupg.find_secret_key_by(_gnupg.GnuPG(home, create=False), self.fingerprint)
        fingerprint = self.issuer_of(target)[0]
        keygrip = next(part.keygrip for part in [key] + list(key.subkeys) if part.fingerprint == fingerprint)
        digest = target.digest
        socket_path = subprocess.run(["gpgconf", "--list-dirs", "agent-socket"], stdout=subprocess.PIPE, check=True,
                                     env=child_env(GNUPGHOME=home)).stdout.decode().strip()
        conn = AgentConnection(socket_path)
        try:
            return openpgp.signature_mpis(self.pubkey_algo, conn.pksign(keygrip, "sha256", digest.hex()))
        finally:
            conn.close()


@pytest.fixture(scope="module")
def mallory(tmp_path_factory):
    """The attacker's own key: a primary with a user id and an encryption subkey."""
    home = tmp_path_factory.mktemp("mallory")
    os.chmod(str(home), 0o700)
    # no protection: an empty passphrase on a descriptor (never a --passphrase argument)
    nopass = ("--pinentry-mode", "loopback", "--passphrase-fd", "0")
    assert gpg(home, *nopass, "--quick-gen-key", "Mallory <mallory@evil.test>", "ed25519",
               "cert,sign", "never", input=b"").returncode == 0
    fpr = [line.split(":")[9] for line in gpg(home, "--with-colons", "--list-keys").stdout.decode().splitlines()
           if line.startswith("fpr:")][0]
    assert gpg(home, *nopass, "--quick-add-key", fpr, "cv25519", "encr", "never", input=b"").returncode == 0
    exported = gpg(home, "--export", fpr).stdout
    packets = parse_packets(exported)
    yield {"fpr": fpr, "public": exported, "packets": packets,
           "primary": packets[0][1], "uid": [b for t, b in packets if t == 13][0],
           "subkey": [b for t, b in packets if t == 14][0],
           "subkey_fpr": [line.split(":")[9] for line in
                          gpg(home, "--with-colons", "--with-subkey-fingerprints", "--list-keys", fpr).stdout.decode()
                          .splitlines() if line.startswith("fpr:")][1]}
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=child_env(GNUPGHOME=str(home)), check=False)


@pytest.fixture(scope="module")
def attacker_token(instance):
    instance.add_token("attacker", ["sign"], ["*"])
    return "attacker"


# -- what the attacker asks for -----------------------------------------------------------------

class Target:
    """A packet the attacker wants: its hashed area and the bytes a verifier hashes before it."""

    def __init__(self, kind, prefix, area):
        self.kind, self.prefix, self.area = kind, prefix, area

    @property
    def message(self):
        return self.prefix + self.area + trailer(self.area)

    @property
    def digest(self):
        return hashlib.sha256(self.message).digest()


def targets(victim, mallory, data):
    now = int(time.time())
    issuer = subpacket(33, b"\x04" + bytes.fromhex(victim.fingerprint))
    data_issuer = subpacket(33, b"\x04" + bytes.fromhex(victim.signing_fingerprint))
    created = subpacket(2, struct.pack(">I", now))
    found = [
        Target("binding", key_material(victim.primary_body) + key_material(mallory["subkey"]),
               hashed_area(0x18, victim.pubkey_algo, [created, subpacket(27, b"\x0c"), issuer])),
        Target("revocation", key_material(victim.primary_body),
               hashed_area(0x20, victim.pubkey_algo, [created, subpacket(29, b"\x00"), issuer])),
    ]
    for sig_type in (0x10, 0x11, 0x12, 0x13):
        found.append(Target("certification-%02x" % sig_type, key_material(mallory["primary"]) + uid_material(mallory["uid"]),
                            hashed_area(sig_type, victim.pubkey_algo, [created, issuer])))
    name, value = b"mallory@evil.test", b"approved-by-the-project"
    notation = b"\x80\x00\x00\x00" + struct.pack(">HH", len(name), len(value)) + name + value  # human-readable
    found += [
        # as early as a signature by this key can be: the key's own creation time
        Target("backdated", data, hashed_area(0x00, victim.pubkey_algo,
                                              [subpacket(2, struct.pack(">I", victim.created)), data_issuer])),
        Target("notation", data, hashed_area(0x00, victim.pubkey_algo,
                                             [created, subpacket(20, notation), data_issuer])),
    ]
    return found


def crafted_states(target):
    """Every state the attacker can think of for ``target`` (all pass the server's validation)."""
    rng = random.Random(target.kind)
    states = [Hasher("sha256").update(target.message).state().to_json(),           # the whole message
              Hasher("sha256").update(target.prefix).state().to_json()]            # all but its hashed area
    # The state after the message's last whole block, with the rest as the tail, pretending to
    # be at the very start or very far on (byte counts that are consistent but false).
    whole = len(target.message) - len(target.message) % 64
    real = Hasher("sha256").update(target.message[:whole]).state()
    tail = target.message[whole:]
    for count in (len(tail), whole + len(tail), (1 << 40) + len(tail)):
        states.append({"chaining_value": real.chaining_value.hex(), "byte_count": count, "tail": tail.hex()})
    # The message's own final compression input, as far as it fits a tail, from the SHA-256 IV.
    iv = "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19"
    states.append({"chaining_value": iv, "byte_count": len(target.message) % 64,
                   "tail": target.message[-(len(target.message) % 64):].hex() if len(target.message) % 64 else ""})
    # Random chaining values, counts and tails.
    for _draw in range(4):
        size = rng.randrange(0, 64)
        states.append({"chaining_value": os.urandom(32).hex(), "byte_count": 64 * rng.randrange(0, 1 << 20) + size,
                       "tail": os.urandom(size).hex()})
    return states


def ask(instance, token, key, states, **extra):
    body = {"key": key, "digest_algo": "sha256", "states": states}
    body.update(extra)
    return instance.request("POST", "/sign", body, token=token)


# -- what gpg accepts ---------------------------------------------------------------------------

def accepted(target, victim, mallory, signature, tmp_path, data_path):
    """Whether stock gpg, in a fresh home, accepts ``signature`` (a packet) as ``target`` wants it."""
    home = fresh_home(tmp_path, "check-%s" % os.urandom(4).hex())
    if target.kind == "binding":
        keyring = victim.public + packet(14, mallory["subkey"]) + signature
        gpg(home, "--import", input=keyring)
        # What a binding is for: mail to the victim's key goes to the attacker's subkey.
        encrypt = gpg(home, "--trust-model", "always", "--encrypt", "--recipient", victim.fingerprint,
                      "--output", "-", input=b"secret")
        listed = gpg(home, "--with-colons", "--with-subkey-fingerprints", "--list-keys", victim.fingerprint).stdout
        return encrypt.returncode == 0 or mallory["subkey_fpr"].encode() in listed
    if target.kind == "revocation":
        gpg(home, "--import", input=victim.public)
        gpg(home, "--import", input=signature)
        listing = gpg(home, "--with-colons", "--list-keys", victim.fingerprint).stdout.decode()
        return any(line.startswith("pub:r:") for line in listing.splitlines())
    if target.kind.startswith("certification"):
        gpg(home, "--import", input=victim.public)
        packets = mallory["packets"]
        uid_index = [i for i, (tag, _body) in enumerate(packets) if tag == 13][0]
        # the forged certification right after Mallory's self-signature on the user id
        blob = b"".join(packet(t, b) for t, b in packets[:uid_index + 2]) + signature + \
            b"".join(packet(t, b) for t, b in packets[uid_index + 2:])
        gpg(home, "--import", "--import-options", "import-local-sigs", input=blob)
        listing = gpg(home, "--with-colons", "--check-sigs", mallory["fpr"]).stdout.decode()
        return any(line.split(":")[1] == "!" and line.split(":")[4] == victim.key_id
                   for line in listing.splitlines() if line.startswith("sig:"))
    # data signatures: good, and with the creation time or the notation the attacker chose
    gpg(home, "--import", input=victim.public)
    sig_path = tmp_path / ("forged-%s.sig" % os.urandom(4).hex())
    sig_path.write_bytes(signature)
    status = gpg(home, "--verify", str(sig_path), str(data_path), status=True).stdout.decode()
    if "[GNUPG:] GOODSIG" not in status:
        return False
    created = int([line.split()[4] for line in status.splitlines() if line.startswith("[GNUPG:] VALIDSIG")][0])
    if target.kind == "backdated":
        return created == struct.unpack(">I", target.area[8:12])[0]
    return "NOTATION_NAME mallory@evil.test" in status and "approved-by-the-project" in \
        gpg(home, "--verify-options", "show-notations", "--verify", str(sig_path), str(data_path)).stderr.decode()


# -- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
def test_no_request_yields_anything_but_a_fresh_data_signature(instance, mallory, attacker_token, tmp_path, key):
    victim = Victim(instance, key)
    while time.time() - victim.created < 3:  # a backdated signature must be told from a fresh one
        time.sleep(0.5)
    data = b"the data of a release\n"
    data_path = tmp_path / "data"
    data_path.write_bytes(data)
    for target in targets(victim, mallory, data):
        # Positive control: the right digest, signed by the key itself, IS accepted by gpg.
        control = signature_packet(target.area, victim.issuer_of(target)[1], target.digest,
                                   victim.control_signature(target))
        assert accepted(target, victim, mallory, control, tmp_path, data_path), target.kind
        states = crafted_states(target)
        started = time.time()
        status, _headers, answer = ask(instance, attacker_token, key, states)
        assert status == 200, answer
        # What the server made: its own hashed area, type binary, created now, for each state.
        assert abs(answer["creation_time"] - started) <= 5 and answer["sig_type"] == "binary"
        for item in answer["signatures"]:
            raw = base64.b64decode(item["signature"])
            body = parse_packets(raw)[0][1]
            area, mpis = split_signature(body)
            assert area[1] == 0x00 and int.from_bytes(area[8:12], "big") == answer["creation_time"]
            assert area == openpgp.build_hashed_area(0, victim.pubkey_algo, "sha256", answer["signing_fingerprint"],
                                                     answer["creation_time"])
            # ... the attacker's packet with that signature value, and the server's packet
            # re-typed as the target: neither is accepted.
            forged = signature_packet(target.area, victim.issuer_of(target)[1], target.digest, mpis)
            assert not accepted(target, victim, mallory, forged, tmp_path, data_path), (target.kind, item)
            retyped_area = area[:1] + bytes([target.area[1]]) + area[2:]
            retyped = signature_packet(retyped_area, answer["key_id"],
                                       hashlib.sha256(target.prefix + retyped_area + trailer(retyped_area)).digest(), mpis)
            assert not accepted(target, victim, mallory, retyped, tmp_path, data_path), (target.kind, "retyped")
        # As text signatures: the same.
        status, _headers, answer = ask(instance, attacker_token, key, states[:2], sig_type="text")
        assert status == 200 and answer["sig_type"] == "text"
        for item in answer["signatures"]:
            _area, mpis = split_signature(parse_packets(base64.b64decode(item["signature"]))[0][1])
            forged = signature_packet(target.area, victim.issuer_of(target)[1], target.digest, mpis)
            assert not accepted(target, victim, mallory, forged, tmp_path, data_path), (target.kind, "text")


def test_requests_that_would_choose_the_signature_are_refused(instance, mallory, attacker_token):
    state = Hasher("sha256").update(b"x" * 100).state().to_json()
    for sig_type in ("subkey_binding", "key_revocation", "certification", "0x18", "24", 24, 0x20, 0x13, 0, 1,
                     "Binary", "standalone", "timestamp", "", None, ["binary"]):
        status, _headers, answer = ask(instance, attacker_token, ED_KEY, [state], sig_type=sig_type)
        assert status == 400 and "binary or text" in answer["error"], (sig_type, answer)
    for field, value in (("hashed_area", "0418"), ("digests", ["00" * 32]), ("creation_time", 0),
                         ("notations", {"mallory@evil.test": "x"}), ("subpackets", ["0502"]), ("sig_class", 0x18),
                         ("issuer", "00" * 8), ("hash_prefix", "0000"), ("trailer", "04ff")):
        status, _headers, answer = ask(instance, attacker_token, ED_KEY, [state], **{field: value})
        assert status == 400 and field not in ("",) and answer["error"], (field, answer)
    # fields inside a state other than the three of a hash state
    for extra in ({"suffix": "00"}, {"digest": "00" * 32}, {"hashed_area": "04"}, {"final": True}):
        status, _headers, answer = ask(instance, attacker_token, ED_KEY, [dict(state, **extra)])
        assert status == 400 and "exactly the fields" in answer["error"], (extra, answer)
    # states that no hash of real data can be in
    broken = [dict(state, tail="00" * 64, byte_count=128), dict(state, byte_count=99),
              dict(state, chaining_value=state["chaining_value"] * 2), dict(state, byte_count=1 << 61),
              dict(state, chaining_value=state["chaining_value"][:-2])]
    for item in broken:
        status, _headers, answer = ask(instance, attacker_token, ED_KEY, [item])
        assert status == 400, (item, answer)
    # the digest algorithms with practical free-start attacks, or none of the server's
    for algo in ("sha1", "md5", "sha224", "SHA-256"):
        body = {"key": ED_KEY, "digest_algo": algo, "states": [state]}
        status, _headers, answer = instance.request("POST", "/sign", body, token=attacker_token)
        assert status == 400, (algo, answer)
    # the old raw-digest form is gone
    status, _headers, _answer = instance.request("POST", "/sign/prepare", {"key": ED_KEY}, token=attacker_token)
    assert status == 404
