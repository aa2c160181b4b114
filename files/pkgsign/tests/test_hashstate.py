"""Hash states (pkgsign.hashstate) against hashlib: export after the data, continue with a
suffix, finish == hashlib over the whole, for every algorithm and many lengths."""

import hashlib
import os
import random

import pytest

from pkgsign import hashstate
from pkgsign.hashstate import ALGORITHMS, HashState, Hasher, StateError, finish, parse_state


def _lengths(block):
    """0 .. several blocks: every length around each of the first block boundaries, plus random ones."""
    rng = random.Random(block)
    lengths = set(range(0, 3 * block + 2))
    for boundary in range(block, 9 * block, block):
        lengths.update(range(boundary - 3, boundary + 4))
    lengths.update(rng.randrange(0, 12 * block) for _draw in range(100))
    lengths.update((1 << 20) + delta for delta in (-1, 0, 1, 55, 56, 111, 112))  # the client's read size
    return sorted(lengths)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_export_then_continue_equals_hashlib(algo):
    block, size = ALGORITHMS[algo][0], ALGORITHMS[algo][1]
    rng = random.Random(algo)
    data_all = os.urandom(9 * block + (1 << 20) + block)
    checked = 0
    for length in _lengths(block):
        data = data_all[:length]
        hasher = Hasher(algo)
        # in pieces of random sizes: the state must not depend on how the data arrived
        offset = 0
        while offset < length:
            step = rng.choice((1, 7, block - 1, block, block + 1, 1000, length))
            hasher.update(data[offset:offset + step])
            offset += step
        state = hasher.state()
        assert state.byte_count == length and len(state.tail) == length % block and len(state.chaining_value) == size
        assert state.tail == data[length - length % block:]
        for suffix_length in (0, 1, rng.randrange(0, 3 * block), 2 * block):
            suffix = os.urandom(suffix_length)
            # through the JSON form, as the server receives it
            rebuilt = parse_state(algo, state.to_json())
            assert finish(rebuilt, suffix) == hashlib.new(algo, data + suffix).digest(), (algo, length, suffix_length)
            checked += 1
        # the context goes on after an export
        hasher.update(b"more")
        assert hasher.digest() == hashlib.new(algo, data + b"more").digest()
    assert checked > 4 * 200


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_file_descriptor_hashing_equals_hashlib(algo, tmp_path):
    block = ALGORITHMS[algo][0]
    for length in (0, 1, block - 1, block, 3 * (1 << 20) + 5):
        path = tmp_path / ("f%d" % length)
        data = os.urandom(length)
        path.write_bytes(data)
        fd = os.open(str(path), os.O_RDONLY)
        try:
            state = Hasher(algo).update_fd(fd, read_size=1 << 16).state()
        finally:
            os.close(fd)
        assert finish(state, b"x") == hashlib.new(algo, data + b"x").digest()


def test_plain_digest_and_bytes_kinds():
    for algo in ALGORITHMS:
        for data in (b"", b"abc", bytearray(b"abc" * 100), memoryview(b"xyz" * 50)):
            assert Hasher(algo).update(data).hexdigest() == hashlib.new(algo, bytes(data)).hexdigest()


def _good(algo="sha256", length=100):
    return Hasher(algo).update(os.urandom(length)).state().to_json()


@pytest.mark.parametrize("change, fragment", [
    ({"chaining_value": "ab" * 31}, "32 bytes"),
    ({"chaining_value": "ab" * 33}, "32 bytes"),
    ({"chaining_value": "ab" * 64}, "32 bytes"),
    ({"chaining_value": "zz" * 32}, "hex"),
    ({"chaining_value": "a" * 63}, "hex"),
    ({"chaining_value": 5}, "hex"),
    ({"tail": "00" * 64}, "shorter than"),
    ({"tail": "00" * 37}, "leaves 36"),
    ({"tail": "0"}, "hex"),
    ({"tail": None}, "hex"),
    ({"byte_count": 35}, "leaves 35"),
    ({"byte_count": 36 - 64}, "integer"),
    ({"byte_count": -1}, "integer"),
    ({"byte_count": 1 << 61}, "integer"),
    ({"byte_count": 36.0}, "integer"),
    ({"byte_count": True}, "integer"),
    ({"byte_count": "100"}, "integer"),
    ({"extra": 1}, "exactly the fields"),
])
def test_states_are_validated_strictly(change, fragment):
    item = _good()  # 100 bytes: 36 in the tail
    item.update(change)
    with pytest.raises(StateError) as err:
        parse_state("sha256", item)
    assert fragment in str(err.value)


def test_state_shape_per_algorithm():
    for algo in ("sha384", "sha512"):
        item = _good(algo, 300)
        assert len(item["tail"]) == 2 * (300 % 128) and len(item["chaining_value"]) == 128
        parse_state(algo, item)
        with pytest.raises(StateError):
            parse_state("sha256", item)  # a SHA-512 state is not a SHA-256 state
    with pytest.raises(StateError):
        parse_state("sha1", _good())
    with pytest.raises(StateError):
        parse_state("sha256", ["not", "an", "object"])
    missing = _good()
    del missing["tail"]
    with pytest.raises(StateError):
        parse_state("sha256", missing)
    # the largest count accepted is still a consistent state
    big = {"chaining_value": "00" * 32, "byte_count": hashstate.MAX_BYTE_COUNT - hashstate.MAX_BYTE_COUNT % 64,
           "tail": ""}
    assert parse_state("sha256", big).byte_count == big["byte_count"]
    empty = {"chaining_value": "00" * 32, "byte_count": 0, "tail": ""}
    assert HashState("sha256", b"\0" * 32, 0, b"") == parse_state("sha256", empty)
