"""OpenPGP v4 signature packets around a signature value made by gpg-agent.

No cryptography happens here: gpg-agent computes the signature (``PKSIGN``); this module only
lays out the bytes RFC 4880 5.2.3 prescribes around it. The hashed area is always built here, by
the server, for the request at hand (app.py); clients never send one.
"""

import struct

from .wire import HASH_IDS, SIG_TYPES

SUBPACKET_CREATION_TIME = 2
SUBPACKET_ISSUER_KEY_ID = 16
SUBPACKET_ISSUER_FINGERPRINT = 33

PUBKEY_RSA = 1
PUBKEY_ECDSA = 19
PUBKEY_EDDSA = 22


def _subpacket(kind: int, body: bytes) -> bytes:
    length = len(body) + 1
    if length >= 192:
        raise ValueError("subpacket too long")
    return bytes([length, kind]) + body


def build_hashed_area(sig_type: int, pubkey_algo: int, digest_algo: str, fingerprint: str,
                      creation_time: int) -> bytes:
    """The hashed part of a v4 signature the service makes: version 4, a binary or text
    signature, creation time and issuer fingerprint; nothing else is ever signed."""
    if sig_type not in SIG_TYPES.values():
        raise ValueError("the service makes binary and text signatures only, not 0x%02x" % sig_type)
    fpr = bytes.fromhex(fingerprint)
    subpackets = (_subpacket(SUBPACKET_CREATION_TIME, struct.pack(">I", creation_time))
                  + _subpacket(SUBPACKET_ISSUER_FINGERPRINT, b"\x04" + fpr))
    return (bytes([4, sig_type, pubkey_algo, HASH_IDS[digest_algo]])
            + struct.pack(">H", len(subpackets)) + subpackets)


# -- S-expressions from gpg-agent -----------------------------------------------------------

def parse_sexp(data: bytes):
    """Parse a canonical S-expression into nested lists of bytes.

    One pass with a stack and integer byte values (no recursion, no one-byte slices): the
    service parses one per signature."""
    if data[:1] != b"(":
        raise ValueError("S-expression must start with (")
    stack, items, pos, size = [], [], 1, len(data)
    while True:
        if pos >= size:
            raise ValueError("truncated S-expression")
        char = data[pos]
        if char == 0x29:  # )
            pos += 1
            if not stack:
                return items
            parent = stack.pop()
            parent.append(items)
            items = parent
        elif char == 0x28:  # (
            stack.append(items)
            items = []
            pos += 1
        else:
            colon = data.index(b":", pos)
            start = colon + 1
            end = start + int(data[pos:colon])
            if end > size:
                raise ValueError("truncated S-expression atom")
            items.append(data[start:end])
            pos = end


def signature_values(sexp: bytes):
    """(algorithm name, {param: integer bytes}) from a ``(sig-val (ALGO (s ..)))`` answer."""
    tree = parse_sexp(sexp)
    if not tree or tree[0] != b"sig-val" or len(tree) < 2 or not isinstance(tree[1], list):
        raise ValueError("unexpected answer from gpg-agent")
    algo = tree[1][0].decode("ascii")
    params = {}
    for item in tree[1][1:]:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes):
            params[item[0].decode("ascii")] = item[1]
    return algo, params


def mpi(value: bytes) -> bytes:
    value = value.lstrip(b"\0")
    bits = (len(value) - 1) * 8 + value[0].bit_length() if value else 0
    return struct.pack(">H", bits) + value


def signature_mpis(pubkey_algo: int, sexp: bytes) -> bytes:
    algo, params = signature_values(sexp)
    if pubkey_algo in (1, 3):
        if "s" not in params:
            raise ValueError("gpg-agent answer lacks the RSA signature value")
        return mpi(params["s"])
    if "r" not in params or "s" not in params:
        raise ValueError("gpg-agent %s answer lacks r or s" % algo)
    return mpi(params["r"]) + mpi(params["s"])


def signature_packets(hashed_area: bytes, key_id: str, pubkey_algo: int, digests_hex, sexps) -> list:
    """Complete signature packets (old-format header, as gpg writes it) for many digests signed
    with one hashed area and key (the parts all packets share are laid out once)."""
    unhashed = _subpacket(SUBPACKET_ISSUER_KEY_ID, bytes.fromhex(key_id))
    prefix = hashed_area + struct.pack(">H", len(unhashed)) + unhashed
    packets = []
    for digest_hex, sexp in zip(digests_hex, sexps):
        body = prefix + bytes.fromhex(digest_hex[:4]) + signature_mpis(pubkey_algo, sexp)
        if len(body) < 256:
            packets.append(bytes([0x88, len(body)]) + body)
        else:
            packets.append(b"\x89" + struct.pack(">H", len(body)) + body)
    return packets
