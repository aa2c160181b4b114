"""The remote-signing wire format shared by the server and the `sign` client.

Standard library only and cheap to import: the client loads it on every run.

An OpenPGP v4 signature (RFC 4880 5.2.4) is made over

    H( data || hashed_area || 0x04 0xFF || len(hashed_area) as 4 bytes big-endian )

where ``hashed_area`` is the start of the signature packet body: version (4), signature type,
public-key algorithm, hash algorithm, the 2-byte length of the hashed subpackets, and the
subpackets themselves. The client hashes ``data`` and sends the hash *state* (hashstate.py);
the server builds the hashed area, appends it and the trailer and finishes the hash
(``POST /sign``, README.md). The client never chooses the hashed area or the digest.
"""

import struct

# OpenPGP hash algorithm ids (RFC 4880 9.4); libgcrypt uses the same numbers.
HASH_IDS = {"sha1": 2, "sha256": 8, "sha384": 9, "sha512": 10, "sha224": 11}

# Signature types the service produces (RFC 4880 5.2.1).
SIG_TYPES = {"binary": 0x00, "text": 0x01}


def trailer(hashed_area: bytes) -> bytes:
    """The v4 trailer hashed after the hashed area."""
    return b"\x04\xff" + struct.pack(">I", len(hashed_area))


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
