"""Header-only signatures of RPM packages, written in place (standard library only).

rpmsign 4.x signs an RPM by adding one OpenPGP signature over the package's main header to its
signature header (tag RSAHEADER for RSA keys, DSAHEADER for DSA and EdDSA keys) and takes the
bytes for it from the signature header's reserved space (tag RESERVEDSPACE), so that the
signature header keeps its size and nothing after it moves. This module does exactly that,
without starting rpmsign and a signing command per package, so that ``sign -r`` costs one
request per batch of packages rather than four process starts per package. The signature itself
comes from gpg-agent on the signer, like every other signature of the service.

Packages this module does not sign in place raise :class:`Unsupported`; the client then hands
them to rpmsign, which handles every layout rpm knows (already signed packages, packages without
reserved space, other lead formats).

Layout (rpm's lib/header.c and lib/signature.c): a 96-byte lead; the signature header; zero
padding to a multiple of 8; the main header; the payload. A header is the magic 8E AD E8 01,
4 reserved bytes, the entry count and the data size (32-bit big-endian), then per entry
(tag, type, offset, count), then the data. The signature header's first entry is the region
tag HEADERSIGNATURES whose 16-byte data, at the end of the data, repeats the tag, the type and
minus the size of the index.
"""

LEAD_MAGIC = b"\xed\xab\xee\xdb"
LEAD_SIZE = 96
HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
SIGTYPE_HEADERSIG = 5  # the lead's signature type of every rpm since 3.0

TAG_HEADERSIGNATURES = 62
SIGTAG_DSA = 267  # header-only OpenPGP signature, DSA or EdDSA key
SIGTAG_RSA = 268  # header-only OpenPGP signature, RSA key
SIGTAG_SHA256 = 273  # SHA-256 of the main header, hex
SIGTAG_RESERVEDSPACE = 1008
# Any of these means the package is already signed: rpmsign decides what to replace.
SIGNATURE_TAGS = {SIGTAG_DSA, SIGTAG_RSA, 1002, 1005, 1006, 278}

TYPE_STRING, TYPE_BIN, TYPE_STRING_ARRAY, TYPE_I18NSTRING = 6, 7, 8, 9
TYPE_SIZES = {0: 0, 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, TYPE_BIN: 1}
TYPE_ALIGN = {3: 2, 4: 4, 5: 8}

# OpenPGP public-key algorithm (RFC 4880 9.1) -> the signature tag rpm uses for it.
SIGTAG_BY_PUBKEY_ALGO = {1: SIGTAG_RSA, 17: SIGTAG_DSA, 22: SIGTAG_DSA}

MAX_HEADER_BYTES = 256 << 20  # rpm's own limit for a header


class Unsupported(Exception):
    """A package this module does not sign in place; rpmsign should."""


class NotAnRpm(ValueError):
    """The file is not an RPM package (or is damaged)."""


def _u32(data, offset):
    return int.from_bytes(data[offset:offset + 4], "big")


def _s32(data, offset):
    return int.from_bytes(data[offset:offset + 4], "big", signed=True)


def _be32(value):
    return (value & 0xFFFFFFFF).to_bytes(4, "big")


def _entry_size(entry_type, count, data, offset):
    """Bytes an entry's data takes; strings are measured up to their terminating NULs."""
    if entry_type in TYPE_SIZES:
        return TYPE_SIZES[entry_type] * count
    if entry_type == TYPE_STRING:
        count = 1
    elif entry_type not in (TYPE_STRING_ARRAY, TYPE_I18NSTRING):
        raise NotAnRpm("unknown header entry type %d" % entry_type)
    end = offset
    for _index in range(count):
        end = data.find(b"\0", end) + 1
        if end == 0:  # a string without its NUL: damaged or hostile, never a traceback
            raise NotAnRpm("unterminated string in header entry")
    return end - offset


def _read_exact(handle, size, what):
    data = handle.read(size)
    if len(data) != size:
        raise NotAnRpm("truncated %s" % what)
    return data


def _read_header(handle, what):
    intro = _read_exact(handle, 16, what)
    if intro[:8] != HEADER_MAGIC:
        raise NotAnRpm("bad %s magic" % what)
    count, size = _u32(intro, 8), _u32(intro, 12)
    if count > 0xFFFF or 16 * count + size > MAX_HEADER_BYTES:
        raise NotAnRpm("implausible %s size" % what)
    return intro + _read_exact(handle, 16 * count + size, what)


class Package:
    """An RPM's signature header, parsed, and its main header's bytes (what gets signed)."""

    def __init__(self, path):
        self.path = path
        import os

        # A symbolic link is not followed (`sign` may run for someone else on paths they name).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            lead = handle.read(LEAD_SIZE)
            if lead[:4] != LEAD_MAGIC:
                raise NotAnRpm("not an RPM package")
            if len(lead) != LEAD_SIZE:
                raise NotAnRpm("truncated lead")
            if lead[4] != 3 or int.from_bytes(lead[78:80], "big") != SIGTYPE_HEADERSIG:
                raise Unsupported("lead version %d / signature type %d" % (lead[4], int.from_bytes(lead[78:80], "big")))
            self.signature_header = _read_header(handle, "signature header")
            padding = (8 - len(self.signature_header) % 8) % 8
            _read_exact(handle, padding, "signature header padding")
            self.header = _read_header(handle, "header")
        self.entries = self._parse_signature_entries()

    def _parse_signature_entries(self):
        blob = self.signature_header
        count, size = _u32(blob, 8), _u32(blob, 12)
        data = blob[16 + 16 * count:]
        entries = []
        for index in range(count):
            base = 16 + 16 * index
            tag, entry_type, offset, entry_count = _u32(blob, base), _u32(blob, base + 4), _s32(blob, base + 8), _u32(blob, base + 12)
            if offset < 0 or offset > size:
                raise NotAnRpm("signature header entry %d out of range" % tag)
            length = _entry_size(entry_type, entry_count, data, offset)
            if offset + length > size:
                raise NotAnRpm("signature header entry %d out of range" % tag)
            entries.append((tag, entry_type, entry_count, data[offset:offset + length]))
        if not entries or entries[0][0] != TAG_HEADERSIGNATURES:
            raise Unsupported("signature header without its region tag")
        region = entries[0][3]
        if entries[0][1] != TYPE_BIN or len(region) != 16 or _u32(region, 0) != TAG_HEADERSIGNATURES \
                or _s32(region, 8) != -16 * count:
            raise Unsupported("signature header region is not the whole header")
        return entries

    def tags(self):
        return [entry[0] for entry in self.entries]

    def check_signable(self, sigtag=None):
        """Raise Unsupported unless a new signature (under ``sigtag``, when known) can go into
        the reserved space."""
        tags = self.tags()
        if SIGNATURE_TAGS.intersection(tags):
            raise Unsupported("already signed")
        if SIGTAG_RESERVEDSPACE not in tags or tags[-1] != SIGTAG_RESERVEDSPACE:
            raise Unsupported("no reserved space at the end of the signature header")
        if sigtag is not None and sigtag not in SIGTAG_BY_PUBKEY_ALGO.values():
            raise Unsupported("signature tag %d" % sigtag)

    def verify_header_digest(self):
        """The main header must match the SHA-256 recorded when the package was built."""
        from .hashstate import Hasher

        for tag, entry_type, _count, value in self.entries:
            if tag == SIGTAG_SHA256 and entry_type == TYPE_STRING:
                if Hasher("sha256").update(self.header).hexdigest().encode("ascii") != value.rstrip(b"\0"):
                    raise NotAnRpm("header digest mismatch (damaged package)")
                return
        raise Unsupported("no SHA-256 header digest")

    def signed_signature_header(self, sigtag, packet):
        """The signature header with ``packet`` under ``sigtag``, exactly as long as before."""
        self.check_signable(sigtag)
        entries = [e for e in self.entries[1:] if e[0] != SIGTAG_RESERVEDSPACE]
        entries.append((sigtag, TYPE_BIN, len(packet), bytes(packet)))
        entries.sort(key=lambda entry: entry[0])
        count = len(entries) + 2  # + region + reserved space
        data = bytearray()
        index = []
        for tag, entry_type, entry_count, value in entries:
            align = TYPE_ALIGN.get(entry_type, 1)
            data += b"\0" * ((align - len(data) % align) % align)
            index.append(_be32(tag) + _be32(entry_type) + _be32(len(data)) + _be32(entry_count))
            data += value
        old_length = len(self.signature_header)
        reserved = old_length - (16 + 16 * count + len(data) + 16)
        if reserved < 1:
            raise Unsupported("not enough reserved space for the signature")
        index.append(_be32(SIGTAG_RESERVEDSPACE) + _be32(TYPE_BIN) + _be32(len(data)) + _be32(reserved))
        data += b"\0" * reserved
        region_offset = len(data)
        data += _be32(TAG_HEADERSIGNATURES) + _be32(TYPE_BIN) + _be32(-16 * count) + _be32(16)
        region_entry = _be32(TAG_HEADERSIGNATURES) + _be32(TYPE_BIN) + _be32(region_offset) + _be32(16)
        blob = HEADER_MAGIC + _be32(count) + _be32(len(data)) + region_entry + b"".join(index) + bytes(data)
        if len(blob) != old_length:  # cannot happen: the reserved space absorbs the difference
            raise Unsupported("signature header would change size")
        return blob

    def write_signature(self, sigtag, packet, check=None):
        """Put ``packet`` into the package file in place; the file must not have changed.
        ``check(path, fd)``, when given, may refuse the opened file by raising."""
        import os

        blob = self.signed_signature_header(sigtag, packet)
        fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if check is not None:
                check(self.path, fd)
        except BaseException:
            os.close(fd)
            raise
        with open(fd, "r+b") as handle:
            handle.seek(LEAD_SIZE)
            if handle.read(len(self.signature_header)) != self.signature_header:
                raise NotAnRpm("the package changed while it was being signed")
            handle.seek(LEAD_SIZE)
            handle.write(blob)


def sigtag_for(hashed_area):
    """The signature tag for a signature whose hashed area (version, type, pubkey algo, ...) starts here."""
    try:
        return SIGTAG_BY_PUBKEY_ALGO[hashed_area[2]]
    except (IndexError, KeyError):
        raise Unsupported("public-key algorithm %r" % (hashed_area[2:3],)) from None


def sigtag_for_packet(packet):
    """The signature tag for a signature packet (old or new OpenPGP packet format)."""
    if len(packet) < 2:
        raise Unsupported("not a signature packet")
    if packet[0] & 0x40:  # new format: 1, 2 or 5 length octets (RFC 4880 4.2.2)
        first = packet[1]
        body = 2 if first < 192 else 3 if first < 224 else 6
    else:  # old format: the length type in the low two bits
        body = 1 + {0: 1, 1: 2, 2: 4}.get(packet[0] & 3, 0)
    return sigtag_for(packet[body:body + 3])


def load(path):
    """A :class:`Package` ready to sign, or Unsupported/NotAnRpm/OSError."""
    package = Package(path)
    package.verify_header_digest()
    return package
