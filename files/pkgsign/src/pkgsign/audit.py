"""Append-only audit log: JSON lines chained by hash, rotated by size, sealed by signed checkpoints.

Each line carries ``seq`` (1, 2, ...) and ``prev``, the SHA-256 of the previous line's bytes
(64 zeros for the very first). Editing a line breaks the next line's ``prev``; removing or
reordering lines breaks ``seq`` and ``prev``. The head file (``<audit_log>.head``: sequence number
and hash of the last line) is written after every append. The line is fdatasync'ed before the
head names it and both before append() returns, so a request the service answered is on disk; a
crash in between leaves the head one line behind.

Rotation (``[audit] rotate_size``): when the current file reaches the size, it is renamed
``<audit_log>.<n>`` (n = 1, 2, ... in order) and a new current file starts with one
``audit_rotated`` line whose ``prev`` is the hash of the previous file's last line and whose
``file`` is the new file's number: the chain, and ``seq``, run on across files. Rotated files
are gzip-compressed and the oldest beyond ``[audit] keep`` removed, in the background.

Checkpoints (``[audit] checkpoint_interval``): the chain head -- file number, line number in that
file, ``seq`` and hash -- signed with the dedicated audit key (an ed25519 signing subkey in its
own GnuPG home, ``[audit] gnupg_home``, that signs nothing else) and sent to the system log
(``[audit] checkpoint_target``), one line::

    pkgsign-audit-checkpoint v=1 time=... file=N line=L seq=S hash=H key=FPR sig=BASE64

``check()`` verifies the chain across the rotated files and against the checkpoints it is given:
a checkpoint shipped off the host makes rewriting anything up to it detectable (docs/security.md).

Appends from several threads and processes (mod_wsgi daemons) are serialized with flock on the
current file; the chain state is re-read from the file's tail when another process wrote last.
"""

import base64
import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import logging.handlers
import os
import re
import shutil
import socket
import tempfile
import threading
import time

from . import _gnupg

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_TAIL = 65536
_HEAD_SIZE = 128  # bytes of the head file: '{"seq": N, "hash": "<64 hex>"}' padded with blanks
ROTATED_OPERATION = "audit_rotated"
CHECKPOINT_TAG = "pkgsign-audit-checkpoint"
_CHECKPOINT_RE = re.compile(
    CHECKPOINT_TAG + r" v=1 time=(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) file=(?P<file>\d{1,9}) "
    r"line=(?P<line>\d{1,12}) seq=(?P<seq>\d{1,15}) hash=(?P<hash>[0-9a-f]{64}) key=(?P<key>[0-9A-F]{40}) "
    r"sig=(?P<sig>[A-Za-z0-9+/]+=*)")
AUDIT_KEY_FILE = "audit-key.json"


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _encode(record) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


def _first_record(fd):
    """The first line of the file open as ``fd``, parsed (None if empty or not JSON)."""
    data = os.pread(fd, _TAIL, 0)
    line = data.split(b"\n", 1)[0]
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _file_number(first):
    """Number of the file whose first line is ``first`` (1 unless it starts after a rotation)."""
    if first and first.get("operation") == ROTATED_OPERATION and isinstance(first.get("file"), int):
        return first["file"]
    return 1


def rotated_files(path):
    """[(number, file name)] of the rotated files of ``path``, oldest first (plain before .gz)."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    pattern = re.compile(re.escape(base) + r"\.([1-9][0-9]{0,8})(\.gz)?")
    found = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            number = int(match.group(1))
            if number not in found or not match.group(2):
                found[number] = os.path.join(directory, name)
    return sorted(found.items())


def _open_rotated(name):
    """Binary line iterator over a rotated file; a plain file compressed meanwhile is read as .gz."""
    try:
        if name.endswith(".gz"):
            return gzip.open(name, "rb")
        return open(name, "rb")
    except FileNotFoundError:
        if not name.endswith(".gz"):
            return gzip.open(name + ".gz", "rb")
        raise


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _like_directory_owner(path):
    """Run as root (pkgsign-admin), give a new file to the owner of its directory: the service user
    must still append to the log, rotate it and rewrite the head."""
    if os.geteuid() != 0:
        return
    stat = os.stat(os.path.dirname(os.path.abspath(path)))
    if stat.st_uid != 0:
        os.chown(path, stat.st_uid, stat.st_gid)


def _like_directory_owner_of(path, home):
    """chown ``path`` to the owner of the directory holding ``home`` (when that is not root)."""
    stat = os.stat(os.path.dirname(os.path.abspath(home)))
    if stat.st_uid != 0:
        os.chown(path, stat.st_uid, stat.st_gid)


class AuditLog:
    def __init__(self, path, rotate_size=0, keep=0, compress=True):
        self.path = path
        self.head_path = path + ".head"
        self.rotate_size = rotate_size
        self.keep = keep
        self.compress = compress
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            _gnupg.ensure_private_dir(directory)
        self._lock = threading.Lock()
        self._known = None  # (size, inode, seq, hash) after our own last append
        self.checkpointer = None

    @classmethod
    def from_config(cls, config, checkpoints=False):
        """The instance's log; with ``checkpoints`` (the service) a thread also signs and ships
        checkpoints every ``[audit] checkpoint_interval``."""
        audit = cls(config.audit_log, rotate_size=config.audit_rotate_size, keep=config.audit_keep,
                    compress=config.audit_compress)
        if checkpoints and config.checkpoint_interval > 0:
            audit.checkpointer = Checkpointer(config)
            audit.checkpointer.start()
        return audit

    def _open_current(self):
        """The current file, open and exclusively locked (reopened if it was rotated meanwhile)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stat = os.fstat(fd)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = None
                if current == stat.st_ino:
                    if stat.st_size == 0:
                        _like_directory_owner(self.path)
                    return fd, stat
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # rotated while we waited for the lock: the new file is the one to write

    def append(self, **entry):
        entry.setdefault("time", _now())
        rotated = False
        with self._lock:
            fd, stat = self._open_current()
            try:
                if self._known and self._known[:2] == (stat.st_size, stat.st_ino):
                    seq, prev = self._known[2], self._known[3]
                elif stat.st_size == 0:
                    seq, prev = 0, GENESIS
                else:
                    last = _last_line(fd, stat.st_size)
                    seq, prev = json.loads(last)["seq"], _line_hash(last)
                record = dict(entry, seq=seq + 1, prev=prev)
                line = _encode(record)
                os.write(fd, line + b"\n")
                # The line is on disk before the head names it, and both before the caller answers.
                os.fdatasync(fd)
                digest = _line_hash(line)
                size = stat.st_size + len(line) + 1
                self._known = (size, stat.st_ino, seq + 1, digest)
                self._write_head(seq + 1, digest)
                if self.rotate_size and size >= self.rotate_size:
                    rotated = self._rotate(fd, seq + 1, digest)
            finally:
                os.close(fd)
        if rotated:
            threading.Thread(target=self.tidy, name="pkgsign-audit-tidy", daemon=True).start()

    def _rotate(self, fd, seq, digest):
        """Called under the lock of the full current file: rename it to ``.<n>`` and start the next
        file with the line that links the two. Nothing ever sees the log missing: the old file is
        hard-linked to its new name, then the new file replaces it by rename."""
        number = _file_number(_first_record(fd))
        target = "%s.%d" % (self.path, number)
        if os.path.exists(target) or os.path.exists(target + ".gz"):
            if not (os.path.exists(target) and os.path.samefile(target, self.path)):
                log.error("audit log not rotated: %s exists already", target)
                return False
        else:
            os.link(self.path, target)  # an interrupted rotation left it linked: carry on
        link = {"operation": ROTATED_OPERATION, "result": "ok", "file": number + 1,
                "previous_file": os.path.basename(target), "time": _now(), "seq": seq + 1, "prev": digest}
        line = _encode(link)
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp_fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-audit-")
        try:
            os.write(tmp_fd, line + b"\n")
            os.fdatasync(tmp_fd)
            os.fchmod(tmp_fd, 0o600)
        finally:
            os.close(tmp_fd)
        _like_directory_owner(temporary)
        os.rename(temporary, self.path)
        _fsync_dir(directory)
        new_inode = os.stat(self.path).st_ino
        self._known = (len(line) + 1, new_inode, seq + 1, _line_hash(line))
        self._write_head(seq + 1, _line_hash(line))
        return True

    def tidy(self):
        """Compress rotated files and remove those beyond ``keep`` (one process at a time)."""
        lock_path = self.path + ".tidy.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            _like_directory_owner(lock_path)
        except OSError as err:
            log.error("cannot tidy the rotated audit logs: %s", err)
            return
        try:
            # Waits for a tidy in progress, then looks afresh: a file rotated meanwhile is not skipped.
            fcntl.flock(fd, fcntl.LOCK_EX)
            files = rotated_files(self.path)
            if self.keep > 0 and len(files) > self.keep:
                for _number, name in files[:-self.keep]:
                    for candidate in (name, name[:-3] if name.endswith(".gz") else name + ".gz"):
                        if os.path.exists(candidate):
                            os.unlink(candidate)
                files = files[-self.keep:]
            for _number, name in files:
                if name.endswith(".gz"):
                    continue
                if os.path.exists(name + ".gz"):  # compressed before a crash: the .gz is complete
                    os.unlink(name)
                elif self.compress:
                    _compress(name)
        except OSError as err:
            log.error("tidying the rotated audit logs failed: %s", err)
        finally:
            os.close(fd)

    def _write_head(self, seq, digest):
        """Overwrite the head in place: one small write at offset 0 and an fdatasync (a write
        within the first disk sector is atomic); a new file and a rename per request cost three
        times as much. The record is padded to a fixed size, so no bytes of a longer head remain."""
        record = json.dumps({"seq": seq, "hash": digest}).encode("ascii").ljust(_HEAD_SIZE - 1) + b"\n"
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size == 0:
                _like_directory_owner(self.head_path)
            os.pwrite(fd, record, 0)
            if os.fstat(fd).st_size > len(record):
                os.ftruncate(fd, len(record))
            os.fdatasync(fd)
        finally:
            os.close(fd)


def _compress(name):
    """``name`` -> ``name.gz`` (complete before it appears), then the plain file goes."""
    directory = os.path.dirname(os.path.abspath(name))
    tmp_fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-audit-gz-")
    try:
        with open(name, "rb") as source, os.fdopen(tmp_fd, "wb") as raw:
            with gzip.GzipFile(filename=os.path.basename(name), mode="wb", fileobj=raw, mtime=0) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temporary, 0o600)
        _like_directory_owner(temporary)
        os.rename(temporary, name + ".gz")
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_dir(directory)
    os.unlink(name)


# -- reading and verifying ------------------------------------------------------------------

class Report:
    """What ``check`` found: ``problems`` (tampering or damage), ``notes`` (information), and
    ``uncovered``: lines after the latest checkpoint given, which no checkpoint vouches for."""

    def __init__(self):
        self.count = 0
        self.files = 0
        self.problems = []
        self.notes = []
        self.uncovered = 0
        self.checkpoint = None


def verify(path):
    """Check the chain (all files) and the head; returns (number of lines, list of problems)."""
    report = check(path)
    return report.count, report.problems


def _lock_current_shared(path):
    """An fd of the current file under a shared lock (the service rotates under the exclusive one),
    or None when there is no log."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def check(path, checkpoints=(), audit_key=None, gpg_binary="gpg"):
    """Verify the chain across rotated files, the head file, and the given checkpoint lines
    (signatures against ``audit_key``, armored public key bytes). Returns a Report."""
    report = Report()
    parsed = _parse_checkpoints(checkpoints, audit_key, gpg_binary, report)
    wanted = {cp["seq"]: cp for cp in parsed}
    found = {}  # seq -> (file number, line in file, hash)
    fd = _lock_current_shared(path)
    try:
        chain = _Chain(report, wanted, found)
        files = rotated_files(path)
        expected_number = None
        for number, name in files:
            try:
                handle = _open_rotated(name)
            except FileNotFoundError:
                report.problems.append("%s disappeared while it was read" % name)
                continue
            with handle:
                expected_number = chain.read_file(handle, number, os.path.basename(name), expected_number)
        if fd is not None:
            with os.fdopen(os.dup(fd), "rb") as handle:
                handle.seek(0)
                chain.read_file(handle, None, os.path.basename(path), expected_number)
        elif files:
            report.problems.append("%s is missing (rotated files exist)" % path)
        report.count = chain.count
        report.files = chain.files
        _check_head(path, chain, report.problems)
    finally:
        if fd is not None:
            os.close(fd)
    _check_against_checkpoints(parsed, found, chain, report)
    return report


class _Chain:
    def __init__(self, report, wanted, found):
        self.report = report
        self.problems = report.problems
        self.wanted = wanted
        self.found = found
        self.prev = None
        self.seq = 0
        self.count = 0
        self.files = 0
        self.before_last = None
        self.last_name = None

    def read_file(self, handle, number, name, expected_number):
        """Read one file of the chain; returns the number the next file must have."""
        self.files += 1
        line_number = 0
        for raw in handle:
            line_number += 1
            self.count += 1
            line = raw.rstrip(b"\n")
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.problems.append("%s line %d: not a JSON object" % (name, line_number))
                self.prev, self.seq = _line_hash(line), self.seq + 1
                continue
            if line_number == 1:
                number = self._start_of_file(record, number, name, expected_number)
            if self.prev is None:  # the oldest file kept: the files before it were removed (keep)
                self.prev = record.get("prev")
                self.seq = record.get("seq", 1) - 1 if isinstance(record.get("seq"), int) else 0
            if record.get("prev") != self.prev:
                self.problems.append("%s line %d: does not follow the line before it (edited, removed or reordered)"
                                     % (name, line_number))
            if record.get("seq") != self.seq + 1:
                self.problems.append("%s line %d: sequence number %r, expected %d"
                                     % (name, line_number, record.get("seq"), self.seq + 1))
            self.before_last = (self.seq, self.prev)
            self.prev = _line_hash(line)
            self.seq = record.get("seq") if isinstance(record.get("seq"), int) else self.seq + 1
            if self.seq in self.wanted:
                self.found[self.seq] = (number, line_number, self.prev)
        if line_number == 0 and number is not None:
            self.problems.append("%s is empty" % name)
        self.last_name = name
        return (number or 0) + 1

    def _start_of_file(self, record, number, name, expected_number):
        rotated = record.get("operation") == ROTATED_OPERATION
        own = record.get("file") if rotated else 1
        if number is None:  # the current file names its own number
            number = own if isinstance(own, int) else 1
        elif own != number:
            self.problems.append("%s: its first line says file %r" % (name, own))
        if self.prev is None and self.files == 1:
            if number == 1 and record.get("prev") == GENESIS:
                self.prev = GENESIS
            elif number > 1 and rotated:
                self.report.notes.append("the chain starts at file %d (%s): the files before it were removed"
                                         % (number, name))
            else:
                self.problems.append("%s: the first line of the log does not start the chain" % name)
                self.prev = GENESIS
        elif expected_number is not None and number != expected_number:
            self.problems.append("%s: file %d follows file %d (files missing in between)"
                                 % (name, number, expected_number - 1))
        elif self.prev is not None and not rotated:
            self.problems.append("%s: does not start with the link to the file before it" % name)
        return number


def _check_head(path, chain, problems):
    try:
        with open(path + ".head", encoding="utf-8") as head_file:
            head = json.load(head_file)
        # A crash between writing a line and the head leaves the head one line behind.
        crashed_before_head = chain.before_last is not None and (head.get("seq"), head.get("hash")) == chain.before_last
        if (head.get("seq") != chain.seq or head.get("hash") != chain.prev) and not crashed_before_head:
            problems.append("the log ends at line %d but the head file records line %s: lines were removed "
                            "or the last line was changed" % (chain.seq, head.get("seq")))
    except FileNotFoundError:
        if chain.count > 1:  # one line: a crash before the first head was written
            problems.append("head file %s.head is missing" % path)
    except (ValueError, AttributeError):
        problems.append("head file %s.head is unreadable" % path)


def find_checkpoints(text):
    """Every checkpoint line in ``text`` (a syslog or journal export, or the line itself)."""
    return [match.group(0) for match in _CHECKPOINT_RE.finditer(text)]


def _parse_checkpoints(lines, audit_key, gpg_binary, report):
    parsed = []
    if not lines:
        return parsed
    if audit_key is None:
        report.problems.append("no audit key to check the checkpoint signatures with")
        return parsed
    with _gnupg.TemporaryGnuPG(prefix="pkgsign-audit-verify-") as gpg:
        gpg.binary = gpg_binary
        try:
            pinned = gpg.import_keys(audit_key)
        except _gnupg.GpgError as err:
            report.problems.append("the audit key cannot be read: %s" % err.message)
            return parsed
        if len(pinned) != 1:
            report.problems.append("the audit key file must hold exactly one key (it holds %d)" % len(pinned))
            return parsed
        scratch = gpg.homedir
        for text in lines:
            match = _CHECKPOINT_RE.fullmatch(text.strip())
            if not match:
                report.problems.append("not a checkpoint line: %.80r" % text)
                continue
            payload, _sep, _sig = match.group(0).rpartition(" sig=")
            data_path = os.path.join(scratch, "checkpoint.txt")
            sig_path = os.path.join(scratch, "checkpoint.sig")
            with open(data_path, "wb") as handle:
                handle.write(payload.encode("ascii"))
            try:
                with open(sig_path, "wb") as handle:
                    handle.write(base64.b64decode(match.group("sig")))
                valid = gpg.verify(sig_path, data_path)
            except (_gnupg.GpgError, ValueError):
                valid = []
            if pinned[0] not in valid or match.group("key") != pinned[0]:
                report.problems.append("checkpoint seq=%s of %s: the signature is not by the audit key %s"
                                       % (match.group("seq"), match.group("time"), pinned[0]))
                continue
            parsed.append({"seq": int(match.group("seq")), "file": int(match.group("file")),
                           "line": int(match.group("line")), "hash": match.group("hash"),
                           "time": match.group("time")})
    return parsed


def _check_against_checkpoints(parsed, found, chain, report):
    if not parsed:
        return
    for cp in sorted(parsed, key=lambda item: item["seq"]):
        where = "checkpoint seq=%d of %s" % (cp["seq"], cp["time"])
        if cp["seq"] > chain.seq:
            report.problems.append("%s: the log ends at seq %d, before the checkpoint: lines were removed "
                                   "from the end" % (where, chain.seq))
        elif cp["seq"] not in found:
            report.notes.append("%s: its file was removed (keep), not checked" % where)
        elif found[cp["seq"]] != (cp["file"], cp["line"], cp["hash"]):
            number, line, digest = found[cp["seq"]]
            report.problems.append("%s names file %d line %d hash %s..., the log has file %d line %d hash %s...: "
                                   "lines up to it were changed, removed or reordered"
                                   % (where, cp["file"], cp["line"], cp["hash"][:12], number, line, digest[:12]))
    latest = max(parsed, key=lambda item: item["seq"])
    report.checkpoint = latest
    report.uncovered = max(0, chain.seq - latest["seq"])


# -- the audit key and checkpoints ------------------------------------------------------------

def audit_gnupg(config):
    return _gnupg.GnuPG(config.audit_gnupg_home, binary=config.gpg_binary)


# The service's own keys in the audit GnuPG home, each an ed25519 certify-only primary with one
# signing subkey used for one purpose only: (record file, user id name, email).
SERVICE_KEYS = {"audit": (AUDIT_KEY_FILE, "pkgsign audit checkpoints", "audit@pkgsign.invalid"),
                "backup": ("backup-key.json", "pkgsign backups", "backup@pkgsign.invalid")}


def read_audit_key(config, kind="audit"):
    """{"fingerprint", "signing_fingerprint"} of the instance's audit key (or its backup key), or None."""
    try:
        with open(os.path.join(config.audit_gnupg_home, SERVICE_KEYS[kind][0]), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _private_umask():
    """gpg creates its files (pubring.kbx, tofu.db, ...) with the umask: owner-only here, also when
    pkgsign-admin runs with a looser one (the service itself runs with 077)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def ensure_audit_key(config, kind="audit"):
    """The instance's audit key (``kind="backup"``: its backup key, which signs backups only), made
    on first use: an ed25519 certification-only primary with one ed25519 signing subkey, in a GnuPG
    home of its own (never the signing keyring: no token can reach it). Returns (record, created?)."""
    with _private_umask():
        return _ensure_audit_key(config, kind)


def _ensure_audit_key(config, kind="audit"):
    record_file, uid_name, uid_email = SERVICE_KEYS[kind]
    gpg = audit_gnupg(config)
    lock_fd = os.open(os.path.join(gpg.homedir, ".audit-key.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        record = read_audit_key(config, kind)
        if record is not None:
            return record, False
        try:
            fingerprint = gpg.generate_key(uid_name, uid_email,
                                           comment=_host_comment(), algorithm="ed25519", usage=("cert",))
            subkey = gpg.add_subkey(fingerprint, algorithm="ed25519", usage="sign")
        finally:
            gpg.kill_agent()
        record = {"fingerprint": fingerprint, "signing_fingerprint": subkey, "created": int(time.time())}
        _gnupg.write_private_file(os.path.join(gpg.homedir, record_file),
                                  (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        if os.geteuid() == 0:  # made by root (pkgsign-admin): the service user signs with it
            for directory, _dirs, files in os.walk(gpg.homedir):
                for path in [directory] + [os.path.join(directory, name) for name in files]:
                    if not os.path.islink(path):
                        _like_directory_owner_of(path, gpg.homedir)
        return record, True
    finally:
        os.close(lock_fd)


def _host_comment():
    name = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:64]
    return name or None


def audit_public_key(config, kind="audit"):
    """Armored public audit (or backup) key of the instance (to pin off the host), or None."""
    record = read_audit_key(config, kind)
    if record is None:
        return None
    return audit_gnupg(config).export_public(record["fingerprint"], armor=True)


def head_of(path):
    """(file number, line in file, seq, hash) of the last line of the log, read under the lock."""
    fd = _lock_current_shared(path)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        last = _last_line(fd, size)
        first = _first_record(fd) or {}
        seq = json.loads(last)["seq"]
        first_seq = first.get("seq") if isinstance(first.get("seq"), int) else 1
        return _file_number(first), seq - first_seq + 1, seq, _line_hash(last)
    finally:
        os.close(fd)


def make_checkpoint(config):
    """Sign the current chain head with the audit key; returns the checkpoint line (or None: empty log)."""
    head = head_of(config.audit_log)
    if head is None:
        return None
    record, _created = ensure_audit_key(config)
    number, line, seq, digest = head
    payload = "%s v=1 time=%s file=%d line=%d seq=%d hash=%s key=%s" % (
        CHECKPOINT_TAG, _now(), number, line, seq, digest, record["fingerprint"])
    gpg = audit_gnupg(config)
    try:
        with _private_umask():
            signature = gpg.sign(payload.encode("ascii"), [record["signing_fingerprint"] + "!"], armor=False)
    finally:
        gpg.kill_agent()  # no agent left behind between checkpoints
    return "%s sig=%s" % (payload, base64.b64encode(signature).decode("ascii"))


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    """Errors reach ship() instead of being printed; every checkpoint is a notice."""

    def handleError(self, record):
        raise  # pylint: disable=misplaced-bare-raise

    def mapPriority(self, levelName):
        return "notice"


_FACILITIES = logging.handlers.SysLogHandler.facility_names


def ship(line, targets, facility="authpriv"):
    """Send ``line`` to every target: ``syslog`` (/dev/log: syslog or journald), ``unix:PATH``,
    ``udp:HOST:PORT``, ``tcp:HOST:PORT``, ``file:PATH``; returns the targets that failed."""
    failed = []
    for target in targets:
        try:
            if target == "none":
                continue
            if target.startswith("file:"):
                fd = os.open(target[5:], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (line + "\n").encode("ascii"))
                finally:
                    os.close(fd)
                continue
            if target == "syslog":
                address, kind = "/dev/log", None
            elif target.startswith("unix:"):
                address, kind = target[5:], None
            else:
                scheme, host, port = target.split(":", 2)
                address = (host.strip("[]"), int(port))
                kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
            handler = _RaisingSysLogHandler(address=address, facility=_FACILITIES[facility],
                                            **({"socktype": kind} if kind else {}))
            handler.ident = "pkgsign-audit: "
            try:
                handler.emit(logging.LogRecord("pkgsign.audit", logging.INFO, __file__, 0, line, None, None))
            finally:
                handler.close()
        except (OSError, ValueError) as err:
            failed.append("%s (%s)" % (target, err))
    return failed


class Checkpointer:
    """Signs and ships a checkpoint every ``checkpoint_interval`` seconds; with several server
    processes one of them does it (flock and the time of the last checkpoint in
    ``<audit_log>.checkpoint``)."""

    def __init__(self, config):
        self.config = config
        self.state_path = config.audit_log + ".checkpoint"
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="pkgsign-audit-checkpoint", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self.config.checkpoint_interval):
            try:
                self.maybe_checkpoint()
            except Exception:  # noqa: BLE001 - the thread must survive; the log says why
                log.exception("audit checkpoint failed")

    def maybe_checkpoint(self, force=False):
        """Make and ship a checkpoint unless another process did within the interval; the line or None."""
        fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _like_directory_owner(self.state_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if force else fcntl.LOCK_NB))
            except BlockingIOError:
                return None
            if not force and time.time() - os.fstat(fd).st_mtime < self.config.checkpoint_interval * 0.9 \
                    and os.fstat(fd).st_size > 0:
                return None
            line = make_checkpoint(self.config)
            if line is None:
                return None
            failed = ship(line, self.config.checkpoint_targets, self.config.checkpoint_facility)
            for failure in failed:
                log.error("audit checkpoint not shipped to %s", failure)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (line + "\n").encode("ascii"), 0)
            return line
        finally:
            os.close(fd)
