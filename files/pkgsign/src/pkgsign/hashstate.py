"""SHA-2 hash states: exported by the `sign` client, continued and finished by the server.

A Merkle-Damgard hash such as SHA-256 is, after any number of bytes, fully described by its
chaining value (the eight words of the internal state), the number of bytes consumed so far and
the bytes of the last, incomplete block. The client hashes a file and exports that *state*;
the server rebuilds a hash context from it, appends the bytes it chooses itself (the signature's
hashed area and the v4 trailer) and finishes the hash. The digest never comes from the client.

The hashing is done by the platform's libcrypto (OpenSSL 1.1/3, whose SHA*_Init/Update/Final
and SHA256_CTX/SHA512_CTX layouts are public API in <openssl/sha.h>), loaded through ctypes
the first time a hash is made (through ``_ctypes``, the C half of ctypes, which loads in a
fraction of the time of the ctypes package): bulk hashing runs at the speed of hashlib, which
uses the same library, and `sign -t` and the other commands that hash nothing do not pay for
loading it.
``python -m pytest files/pkgsign/tests/test_hashstate.py`` checks every algorithm against
hashlib over many lengths around block boundaries.

Standard library only.
"""

import struct

# name: (block size, chaining value size, libcrypto function prefix, first word of the IV)
ALGORITHMS = {
    "sha224": (64, 32, "SHA224", 0xC1059ED8),
    "sha256": (64, 32, "SHA256", 0x6A09E667),
    "sha384": (128, 64, "SHA384", 0xCBBB9D5DC1059ED8),
    "sha512": (128, 64, "SHA512", 0x6A09E667F3BCC908),
}
DIGEST_SIZES = {"sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
# SHA-224/256 count bits in 64 bits (2^61 bytes): a state claims at most 2^60 bytes, which leaves
# room for the server's suffix (the same limit for SHA-384/512; no real file comes near it).
MAX_BYTE_COUNT = 1 << 60
READ_SIZE = 1 << 20


class StateError(ValueError):
    """A hash state the server refuses (the message says why)."""


class HashState:
    """Chaining value (big-endian words), total byte count, and the final partial block."""

    __slots__ = ("algo", "chaining_value", "byte_count", "tail")

    def __init__(self, algo, chaining_value, byte_count, tail):
        self.algo = algo
        self.chaining_value = chaining_value
        self.byte_count = byte_count
        self.tail = tail

    def to_json(self):
        return {"chaining_value": self.chaining_value.hex(), "byte_count": self.byte_count,
                "tail": self.tail.hex()}

    def __eq__(self, other):
        return isinstance(other, HashState) and (self.algo, self.chaining_value, self.byte_count, self.tail) == \
            (other.algo, other.chaining_value, other.byte_count, other.tail)

    def __repr__(self):
        return "HashState(%s, %s, %d, %s)" % (self.algo, self.chaining_value.hex(), self.byte_count, self.tail.hex())


STATE_FIELDS = ("chaining_value", "byte_count", "tail")
_HEX = frozenset("0123456789abcdefABCDEF")


def _hex_field(value, name, index):
    if not isinstance(value, str) or len(value) % 2 or not _HEX.issuperset(value):
        raise StateError("states[%d].%s must be a string of hex digit pairs" % (index, name))
    return bytes.fromhex(value)


def parse_state(algo, item, index=0):
    """A HashState from its JSON form; StateError for anything the client could not have made."""
    if algo not in ALGORITHMS:
        raise StateError("hash states of %s are not accepted (use %s)" % (algo, ", ".join(ALGORITHMS)))
    block, size = ALGORITHMS[algo][0], ALGORITHMS[algo][1]
    if not isinstance(item, dict):
        raise StateError("states[%d] must be an object with %s" % (index, ", ".join(STATE_FIELDS)))
    unknown = set(item) - set(STATE_FIELDS)
    missing = set(STATE_FIELDS) - set(item)
    if unknown or missing:
        raise StateError("states[%d] must have exactly the fields %s" % (index, ", ".join(STATE_FIELDS)))
    chaining_value = _hex_field(item["chaining_value"], "chaining_value", index)
    if len(chaining_value) != size:
        raise StateError("states[%d].chaining_value must be %d bytes (%d hex digits) for %s"
                         % (index, size, 2 * size, algo))
    tail = _hex_field(item["tail"], "tail", index)
    if len(tail) >= block:
        raise StateError("states[%d].tail must be shorter than the %d-byte block of %s" % (index, block, algo))
    count = item["byte_count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > MAX_BYTE_COUNT:
        raise StateError("states[%d].byte_count must be an integer from 0 to %d" % (index, MAX_BYTE_COUNT))
    if count % block != len(tail):
        raise StateError("states[%d]: byte_count %d leaves %d bytes in the last block, the tail has %d"
                         % (index, count, count % block, len(tail)))
    return HashState(algo, chaining_value, count, tail)


# -- libcrypto -------------------------------------------------------------------------

_LIB = {}


def _library():
    """libcrypto and the C types of its SHA contexts, made on the first hash.

    Straight from ``_ctypes``, the C half of the ctypes package: ``import ctypes`` builds dozens
    of classes this module does not use and costs a one-file `sign` run about 3 ms, three
    times the rest of this set-up (dlopen of libcrypto included)."""
    if not _LIB:
        import _ctypes

        class Library:  # what _ctypes.CFuncPtr looks symbols up in (ctypes.CDLL's role)
            def __init__(self, handle):
                self._handle = handle

        for name in ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"):
            try:
                library = Library(_ctypes.dlopen(name))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("libcrypto (OpenSSL) is not installed: cannot hash")

        # The C scalar types used below, made the way ctypes makes its own (a _SimpleCData
        # subclass with a one-letter struct code).
        size_t_code = "L" if struct.calcsize("L") == struct.calcsize("P") else "Q"
        CInt, CUInt32, CUInt64, CUByte, CChar, CVoidP, CSizeT = (
            type(name, (_ctypes._SimpleCData,), {"_type_": code})  # pylint: disable=protected-access
            for name, code in (("c_int", "i"), ("c_uint32", "I"), ("c_uint64", "Q"), ("c_ubyte", "B"),
                               ("c_char", "c"), ("c_void_p", "P"), ("c_size_t", size_t_code)))

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = CInt

        class Sha256Ctx(_ctypes.Structure):  # <openssl/sha.h> SHA256_CTX (also SHA-224)
            _fields_ = [("h", CUInt32 * 8), ("Nl", CUInt32), ("Nh", CUInt32),
                        ("data", CUByte * 64), ("num", CUInt32), ("md_len", CUInt32)]

        class Sha512Ctx(_ctypes.Structure):  # <openssl/sha.h> SHA512_CTX (also SHA-384)
            _fields_ = [("h", CUInt64 * 8), ("Nl", CUInt64), ("Nh", CUInt64),
                        ("data", CUByte * 128), ("num", CUInt32), ("md_len", CUInt32)]

        if struct.calcsize("I") != 4 or _ctypes.sizeof(Sha256Ctx) != 112 or _ctypes.sizeof(Sha512Ctx) != 216:
            raise RuntimeError("unexpected C type sizes on this platform: cannot hash")
        _LIB.update(library=library, function=Function, pointer=_ctypes.POINTER, char=CChar,
                    void_p=CVoidP, size_t=CSizeT, ctx64=Sha256Ctx, ctx128=Sha512Ctx)
    return _LIB


def _bindings(algo):
    """(context type, Init, Update, Final) of one algorithm, checked once against the layout."""
    found = _LIB.get(algo)
    if found is None:
        lib = _library()
        block, size, prefix, iv0 = ALGORITHMS[algo]
        ctx_type = lib["ctx64"] if block == 64 else lib["ctx128"]
        pointer = lib["pointer"](ctx_type)
        init, update, final = (lib["function"]((prefix + suffix, lib["library"])) for suffix in ("_Init", "_Update", "_Final"))
        init.argtypes = [pointer]
        update.argtypes = [pointer, lib["void_p"], lib["size_t"]]
        final.argtypes = [lib["void_p"], pointer]
        # What Init writes must be where <openssl/sha.h> says, or nothing is hashed at all.
        probe = ctx_type()
        init(probe)
        if probe.h[0] != iv0 or probe.num != 0 or probe.Nl != 0 or probe.md_len != DIGEST_SIZES[algo]:
            raise RuntimeError("libcrypto's %s context does not have the documented layout" % prefix)
        found = _LIB[algo] = (ctx_type, init, update, final)
    return found


class Hasher:
    """A libcrypto SHA-2 context: update with bytes or a file descriptor, then export the state
    (the client) or finish (a plain digest)."""

    def __init__(self, algo):
        if algo not in ALGORITHMS:
            raise ValueError("unsupported hash algorithm %r (use %s)" % (algo, ", ".join(ALGORITHMS)))
        self._ctx_type, init, self._update, self._final = _bindings(algo)
        self._char = _LIB["char"]
        self.algo = algo
        self._ctx = self._ctx_type()
        init(self._ctx)

    def update(self, data):
        """Hash ``data`` (bytes or bytearray)."""
        if isinstance(data, bytearray):
            if data:
                self._update(self._ctx, (self._char * len(data)).from_buffer(data), len(data))
        else:
            self._update(self._ctx, bytes(data), len(data))
        return self

    def update_fd(self, fd, read_size=READ_SIZE):
        """Hash everything that can be read from ``fd`` (its position moves to the end)."""
        import os
        from _io import FileIO  # the io module's C part, loaded at interpreter start

        try:  # a small file needs no 1 MiB buffer (many files: one buffer each)
            read_size = max(1, min(read_size, os.fstat(fd).st_size + 1))
        except OSError:
            pass
        buffer = bytearray(read_size)
        pointer = (self._char * read_size).from_buffer(buffer)
        reader = FileIO(fd, "rb", closefd=False)
        while True:
            count = reader.readinto(buffer)
            if not count:
                break
            self._update(self._ctx, pointer, count)
        del pointer  # the buffer may be resized or freed only without an exported pointer
        return self

    def state(self):
        """The HashState after the bytes hashed so far (the context may go on)."""
        ctx = self._ctx
        block, size = ALGORITHMS[self.algo][0], ALGORITHMS[self.algo][1]
        word = "I" if block == 64 else "Q"
        bits = (ctx.Nh << (32 if block == 64 else 64)) | ctx.Nl
        count, partial = bits >> 3, ctx.num
        if bits & 7 or partial != count % block:
            raise RuntimeError("libcrypto's %s context is inconsistent" % self.algo)
        return HashState(self.algo, struct.pack(">8" + word, *ctx.h), count, bytes(ctx.data[:partial]))

    def digest(self):
        """Finish the hash (the context is used up)."""
        out = (self._char * ALGORITHMS[self.algo][1])()
        self._final(out, self._ctx)
        return out.raw[:DIGEST_SIZES[self.algo]]

    def hexdigest(self):
        return self.digest().hex()

    @classmethod
    def resume(cls, state):
        """A context that continues ``state`` (validated by parse_state)."""
        hasher = cls(state.algo)
        block = ALGORITHMS[state.algo][0]
        word = "I" if block == 64 else "Q"
        ctx = hasher._ctx
        ctx.h[:] = struct.unpack(">8" + word, state.chaining_value)
        bits = (state.byte_count - len(state.tail)) << 3  # whole blocks only; the tail is hashed again
        shift = 32 if block == 64 else 64
        ctx.Nl, ctx.Nh, ctx.num = bits & ((1 << shift) - 1), bits >> shift, 0
        return hasher.update(state.tail)


def finish(state, suffix):
    """The digest of (the bytes behind ``state``) || ``suffix``: what the server signs."""
    return Hasher.resume(state).update(suffix).digest()
