"""The remote-signing wire format shared by the server and the `sign` client.

Standard library only and cheap to import: the client loads it on every run.

An OpenPGP v4 signature (RFC 4880 5.2.4) is made over

    H( data || hashed_area || 0x04 0xFF || len(hashed_area) as 4 bytes big-endian )

where ``hashed_area`` is the start of the signature packet body: version (4), signature type,
public-key algorithm, hash algorithm, the 2-byte length of the hashed subpackets, and the
subpackets themselves. The server hands out the hashed area (``POST /sign/prepare``), the client
feeds its file and that trailer into the hash and sends only the digest (``POST /sign``).
"""

import struct

# OpenPGP hash algorithm ids (RFC 4880 9.4); libgcrypt uses the same numbers.
HASH_IDS = {"sha1": 2, "sha256": 8, "sha384": 9, "sha512": 10, "sha224": 11}
HASH_NAMES = {number: name for name, number in HASH_IDS.items()}
DIGEST_SIZES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}

# Signature types the service produces (RFC 4880 5.2.1).
SIG_TYPES = {"binary": 0x00, "text": 0x01}

CHUNK = 1 << 20


def trailer(hashed_area: bytes) -> bytes:
    """The v4 trailer hashed after the hashed area."""
    return b"\x04\xff" + struct.pack(">I", len(hashed_area))


# Inputs up to this size use the interpreter's built-in SHA code: loading OpenSSL through
# hashlib costs a `sign` run more start-up time than hashing a few MiB; larger inputs (ISO
# images) are hashed faster by OpenSSL.
SMALL_INPUT = 4 << 20


def new_hash(digest_algo: str, size=None, builtin_limit=SMALL_INPUT):
    """A hash object; ``size`` (bytes to come, when known) up to ``builtin_limit`` selects the
    built-in code (callers hashing many inputs pass 0: OpenSSL then pays for its loading)."""
    if digest_algo not in HASH_IDS:
        raise ValueError("unknown digest algorithm %r" % digest_algo)
    if size is not None and size <= builtin_limit:
        builtin = _builtin_hash(digest_algo)
        if builtin is not None:
            return builtin()
    import hashlib

    return hashlib.new(digest_algo)


_BUILTIN_HASHES = {}  # Python does not remember failed imports: each would scan sys.path again


def _builtin_hash(digest_algo):
    """The constructor from CPython's own hash modules (_sha2 from 3.12, _sha256/_sha512 before)."""
    if digest_algo not in _BUILTIN_HASHES:
        _BUILTIN_HASHES[digest_algo] = _find_builtin_hash(digest_algo)
    return _BUILTIN_HASHES[digest_algo]


def _find_builtin_hash(digest_algo):
    modules = {"sha1": ("_sha1",), "sha224": ("_sha2", "_sha256"), "sha256": ("_sha2", "_sha256"),
               "sha384": ("_sha2", "_sha512"), "sha512": ("_sha2", "_sha512")}[digest_algo]
    for name in modules:
        try:
            module = __import__(name)
        except ImportError:
            continue
        constructor = getattr(module, digest_algo, None)
        if constructor is not None:
            return constructor
    return None


def finish_digest(hasher, hashed_area: bytes) -> str:
    """Complete a hash that has consumed the signed data; returns the hex digest to send."""
    hasher.update(hashed_area)
    hasher.update(trailer(hashed_area))
    return hasher.hexdigest()


def hash_bytes(data: bytes, digest_algo: str, builtin_limit=SMALL_INPUT):
    """A hash that has consumed ``data`` (finish it with finish_digest)."""
    hasher = new_hash(digest_algo, len(data), builtin_limit)
    hasher.update(data)
    return hasher


def hash_file(path: str, digest_algo: str, builtin_limit=SMALL_INPUT):
    """A hash that has consumed the file's content (finish it with finish_digest)."""
    with open(path, "rb") as handle:
        hasher = new_hash(digest_algo, _size_of(handle), builtin_limit)
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            hasher.update(block)
    return hasher


def digest_bytes(data: bytes, digest_algo: str, hashed_area: bytes, builtin_limit=SMALL_INPUT) -> str:
    return finish_digest(hash_bytes(data, digest_algo, builtin_limit), hashed_area)


def digest_file(path: str, digest_algo: str, hashed_area: bytes, builtin_limit=SMALL_INPUT) -> str:
    return finish_digest(hash_file(path, digest_algo, builtin_limit), hashed_area)


def _size_of(handle):
    import os

    try:
        return os.fstat(handle.fileno()).st_size
    except OSError:
        return None


def canonical_text(data: bytes) -> bytes:
    """Canonical form for a text (0x01) signature: CRLF line ends, trailing blanks removed.

    RFC 4880 7.1 says cleartext signatures hash lines without trailing spaces and tabs, joined
    by CRLF, with no line end after the last line.
    """
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    return b"\r\n".join(line.rstrip(b" \t\r") for line in lines)


def dash_escape(text: bytes) -> bytes:
    """Dash-escape the cleartext of a clearsigned message (RFC 4880 7.1)."""
    return b"\n".join(b"- " + line if line.startswith(b"-") else line for line in text.split(b"\n"))


_CRC24_TABLE = []


def _crc24_table():
    """The CRC-24 of each byte value, bit by bit as RFC 4880 6.1 writes it (made once)."""
    if not _CRC24_TABLE:
        for value in range(256):
            crc = value << 16
            for _bit in range(8):
                crc <<= 1
                if crc & 0x1000000:
                    crc ^= 0x1864CFB
            _CRC24_TABLE.append(crc & 0xFFFFFF)
    return _CRC24_TABLE


def crc24(data: bytes) -> int:
    """ASCII armor checksum (RFC 4880 6.1), a byte at a time through a table (eight times fewer
    steps than bit by bit: `sign -d` with many files computes one per signature)."""
    table = _crc24_table()
    crc = 0xB704CE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


def armor(packet: bytes, kind: str = "SIGNATURE") -> str:
    from binascii import b2a_base64  # the base64 module imports re

    body = b2a_base64(packet, newline=False).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    checksum = b2a_base64(struct.pack(">I", crc24(packet))[1:], newline=False).decode("ascii")
    return "-----BEGIN PGP %s-----\n\n%s\n=%s\n-----END PGP %s-----\n" % (kind, "\n".join(lines), checksum, kind)
