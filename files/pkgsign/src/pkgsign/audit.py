"""Append-only audit log: JSON lines chained by hash.

Each line carries ``seq`` (1, 2, ...) and ``prev``, the SHA-256 of the previous line's bytes
(64 zeros for the first). Editing a line breaks the next line's ``prev``; removing or reordering
lines breaks ``seq`` and ``prev``. Removing lines at the end is caught by the head file
(``<audit_log>.head``: sequence number and hash of the last line), written after every append.
The line is fdatasync'ed before the head names it and both before append() returns, so a
request the service answered is on disk; a crash in between leaves the head one line behind.

Appends from several threads and processes (mod_wsgi daemons) are serialized with flock on the
log itself; the chain state is re-read from the file's tail when another process wrote last.
"""

import fcntl
import hashlib
import json
import os
import threading
import time

from . import _gnupg

GENESIS = "0" * 64
_TAIL = 65536
_HEAD_SIZE = 128  # bytes of the head file: '{"seq": N, "hash": "<64 hex>"}' padded with blanks


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _last_line(fd, size):
    """Bytes of the last complete line of the file open as ``fd`` (size ``size``)."""
    start = max(0, size - _TAIL)
    while True:
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, size - start)
        body = chunk.rstrip(b"\n")
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return body[cut + 1:]
        start = max(0, start - _TAIL)


class AuditLog:
    def __init__(self, path):
        self.path = path
        self.head_path = path + ".head"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            _gnupg.ensure_private_dir(directory)
        self._lock = threading.Lock()
        self._known = None  # (size, inode, seq, hash) after our own last append

    def append(self, **entry):
        entry.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stat = os.fstat(fd)
                if self._known and self._known[:2] == (stat.st_size, stat.st_ino):
                    seq, prev = self._known[2], self._known[3]
                elif stat.st_size == 0:
                    seq, prev = 0, GENESIS
                else:
                    last = _last_line(fd, stat.st_size)
                    seq, prev = json.loads(last)["seq"], _line_hash(last)
                record = dict(entry, seq=seq + 1, prev=prev)
                line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")
                os.write(fd, line + b"\n")
                # The line is on disk before the head names it, and both before the caller answers.
                os.fdatasync(fd)
                digest = _line_hash(line)
                self._known = (stat.st_size + len(line) + 1, stat.st_ino, seq + 1, digest)
                self._write_head(seq + 1, digest)
            finally:
                os.close(fd)

    def _write_head(self, seq, digest):
        """Overwrite the head in place: one small write at offset 0 and an fdatasync (a write
        within the first disk sector is atomic); a new file and a rename per request cost three
        times as much. The record is padded to a fixed size, so no bytes of a longer head remain."""
        record = json.dumps({"seq": seq, "hash": digest}).encode("ascii").ljust(_HEAD_SIZE - 1) + b"\n"
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, record, 0)
            if os.fstat(fd).st_size > len(record):
                os.ftruncate(fd, len(record))
            os.fdatasync(fd)
        finally:
            os.close(fd)


def verify(path):
    """Check the chain; returns (number of lines, list of problems)."""
    problems = []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        handle = None
    try:
        if handle is not None:
            # Shared lock: the service appends a line and updates the head under the exclusive one.
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        count, seq, prev, before_last = _read_chain(handle or (), problems)
        _check_head(path, count, seq, prev, before_last, problems)
    finally:
        if handle is not None:
            handle.close()
    return count, problems


def _read_chain(lines, problems):
    """(lines, last seq, hash of the last line, (seq, hash) before the last line)."""
    prev, seq, count = GENESIS, 0, 0
    before_last = None
    for number, raw in enumerate(lines, 1):
        count = number
        line = raw.rstrip(b"\n")
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append("line %d: not a JSON object" % number)
            prev, seq = _line_hash(line), seq + 1
            continue
        if record.get("prev") != prev:
            problems.append("line %d: does not follow the line before it (edited, removed or reordered)" % number)
        if record.get("seq") != seq + 1:
            problems.append("line %d: sequence number %r, expected %d" % (number, record.get("seq"), seq + 1))
        before_last = (seq, prev)
        prev = _line_hash(line)
        seq = record.get("seq") if isinstance(record.get("seq"), int) else seq + 1
    return count, seq, prev, before_last


def _check_head(path, count, seq, prev, before_last, problems):
    try:
        with open(path + ".head", encoding="utf-8") as head_file:
            head = json.load(head_file)
        # A crash between writing a line and the head leaves the head one line behind.
        crashed_before_head = before_last is not None and (head.get("seq"), head.get("hash")) == before_last
        if (head.get("seq") != seq or head.get("hash") != prev) and not crashed_before_head:
            problems.append("the log ends at line %d but the head file records line %s: lines were removed "
                            "or the last line was changed" % (count, head.get("seq")))
    except FileNotFoundError:
        if count > 1:  # one line: a crash before the first head was written
            problems.append("head file %s.head is missing" % path)
    except (ValueError, AttributeError):
        problems.append("head file %s.head is unreadable" % path)
