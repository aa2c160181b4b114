"""Signing for the `sign` client: hash states, batched POST /sign requests over a pool of
threads, and the detached (-d, -D) and clearsigned (-c) outputs.

The client hashes each input and sends where its hash stands after the data (chaining value,
byte count, last partial block: hashstate.py); the server appends the signature's hashed area,
which it builds itself, finishes the hash and signs. One POST /sign per file or per batch.
RPMs: rpmsigning.py.
"""

import os
import sys

from .clientfiles import check_in_place, check_input, creation_mode, open_input, write_new
from .clienterrors import SignError

MIN_BATCH = 32  # hash states per /sign request when signing many inputs (see sign_blobs)


class Signer:
    def __init__(self, api, user, digest_algo, sig_type="binary"):
        self.api = api
        self.user = user
        self.digest_algo = digest_algo
        self.sig_type = sig_type

    def state_of(self, item):
        """The hash state after ``item``: bytes, or the path (str) of a regular file."""
        from . import hashstate

        hasher = hashstate.Hasher(self.digest_algo)
        if not isinstance(item, str):
            return hasher.update(item).state()
        fd = open_input(item)
        try:
            hasher.update_fd(fd)
        except OSError as err:
            raise SignError("%s: %s" % (item, err.strerror)) from None
        finally:
            os.close(fd)
        return hasher.state()

    def sign_states(self, states):
        """Signature packets for hash states, in one request."""
        answer = self.api.call("POST", "/sign", {
            "key": self.user, "digest_algo": self.digest_algo, "sig_type": self.sig_type,
            "states": [state.to_json() for state in states]}, key=self.user)
        from binascii import a2b_base64  # the base64 module imports re

        try:
            packets = [a2b_base64(item["signature"]) for item in answer["signatures"]]
        except (TypeError, KeyError, ValueError):
            raise SignError("the server's answer to POST /sign has no signatures") from None
        if len(packets) != len(states):
            raise SignError("the server returned %d signatures for %d files" % (len(packets), len(states)))
        return packets

    def sign_blobs(self, blobs, jobs=8, chunk=200, deliver=None):
        """Signature packets for a list of byte strings or file paths (str), in order.

        ``deliver(index, packet)``, when given, is called from the worker threads as soon as a
        batch is signed, so writing results overlaps with signing the rest.
        """

        def sign_batch(indexes):
            packets = self.sign_states([self.state_of(blobs[i]) for i in indexes])
            if deliver is not None:
                for index, packet in zip(indexes, packets):
                    deliver(index, packet)
            return packets

        if len(blobs) == 1:
            return sign_batch([0])
        # Bare _thread: concurrent.futures imports logging (~20 ms before the first request),
        # threading functools and collections (~5 ms).
        import _thread

        # Each worker takes the next batch, hashes it, has it signed and delivers it. Twice as
        # many batches as workers: while the server signs some, the others hash and write, and
        # the agent always has a request waiting. No batch smaller than MIN_BATCH: the server
        # pipelines a request's digests to the agent, while every request costs a round trip
        # and its share of HTTP, JSON and the audit log's fdatasync.
        size = max(1, min(chunk, max(MIN_BATCH, -(-len(blobs) // (2 * jobs)))))
        packets = [None] * len(blobs)
        lock = _thread.allocate_lock()
        state = {"next": 0}
        failures = []  # the first error of any worker, raised in the calling thread

        def take():
            with lock:
                start = state["next"]
                if start >= len(blobs) or failures:
                    return None
                state["next"] = min(len(blobs), start + size)
                return list(range(start, state["next"]))

        def work(finished):
            try:
                while True:
                    indexes = take()
                    if indexes is None:
                        return
                    for index, packet in zip(indexes, sign_batch(indexes)):
                        packets[index] = packet
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                with lock:
                    failures.append(err)
            finally:
                finished.release()

        running = []
        for _worker in range(min(jobs, len(blobs))):
            finished = _thread.allocate_lock()
            finished.acquire()  # released by the worker when it ends
            _thread.start_new_thread(work, (finished,))
            running.append(finished)
        for finished in running:
            finished.acquire()
        if failures:
            raise failures[0]
        return packets


def detached(signer, files, armored, jobs):
    from . import wire
    if not files:
        packet = signer.sign_blobs([sys.stdin.buffer.read()], jobs)[0]
        sys.stdout.write(wire.armor(packet)) if armored else sys.stdout.buffer.write(packet)
        return
    for path in files:
        check_input(path)
    files = list(files)
    mode = creation_mode()

    def write(index, packet):
        if armored:
            write_new(files[index] + ".asc", wire.armor(packet).encode("ascii"), mode)
        else:
            write_new(files[index] + ".sig", packet, mode)

    signer.sign_blobs(files, jobs, deliver=write)


def _clearsigned(text_bytes, packet, digest_algo):
    from . import wire
    # Bytes throughout: the text is shown exactly as it was signed, whatever its encoding.
    return (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: " + digest_algo.upper().encode("ascii") + b"\n\n"
            + wire.dash_escape(text_bytes) + b"\n" + wire.armor(packet).encode("ascii"))


def _clear_text(data):
    # The line end before the signature armor belongs to the armor, not to the signed text.
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data.replace(b"\r\n", b"\n")


CLEARSIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"


def binary_reason(data):
    """Why ``data`` is not text to clearsign, or None. obs-sign's rule (more than three control
    characters other than tab, CR and LF in the first 8 KiB), and a NUL byte anywhere."""
    if b"\0" in data:
        return "binary data (NUL bytes)"
    head = data[:8192]
    controls = sum(head.count(bytes((c,))) for c in range(32) if c not in (9, 10, 13))
    if controls > 3:
        return "binary data (%d control characters in the first 8 KiB)" % controls
    return None


def prepare_clearsign(files, explicit=True):
    """Read and judge every file to clearsign before any is signed: [(path, text, mode)].
    A file that is clearsigned already is left as it is ("FILE: already signed" on standard
    output, as obs-sign); binary data refuses the whole call (obs-sign refuses it only without
    -c; clearsigning it would destroy the file)."""
    for path in files:  # every file is checked before any is read
        check_in_place(path)
    prepared = []
    for path in files:
        fd = open_input(path)
        try:
            info = check_in_place(path, os.fstat(fd))  # the file actually opened
            from _io import FileIO

            with FileIO(fd, "rb", closefd=False) as handle:
                data = handle.readall()
        except OSError as err:
            raise SignError("%s: %s" % (path, err.strerror)) from None
        finally:
            os.close(fd)
        if data.startswith(CLEARSIGNED):
            print("%s: already signed" % path)
            continue
        reason = binary_reason(data)
        if reason:
            raise SignError("%s: %s: not clearsigned%s (use -d or -D for a detached signature)"
                            % (path, reason, "" if explicit else " (no mode option; the name is not .rpm)"))
        prepared.append((path, _clear_text(data), info.st_mode & 0o777))
    return prepared


def clearsign(signer, prepared, jobs):
    """Clearsign ``prepared`` (prepare_clearsign) in place; None: standard input to output."""
    from . import wire
    if prepared is None:
        data = sys.stdin.buffer.read()
        if data.startswith(CLEARSIGNED):
            raise SignError("<stdin>: already signed")
        reason = binary_reason(data)
        if reason:
            raise SignError("<stdin>: %s: not clearsigned (use -d or -D for a detached signature)" % reason)
        text = _clear_text(data)
        packet = signer.sign_blobs([wire.canonical_text(text)], jobs)[0]
        sys.stdout.buffer.write(_clearsigned(text, packet, signer.digest_algo))
        return
    if not prepared:
        return
    packets = signer.sign_blobs([wire.canonical_text(text) for _path, text, _mode in prepared], jobs)
    for (path, text, mode), packet in zip(prepared, packets):
        write_new(path, _clearsigned(text, packet, signer.digest_algo), mode)
