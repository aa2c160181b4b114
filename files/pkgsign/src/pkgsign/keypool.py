"""Key material for POST /gen_key: made in scratch homes, raced when the pool is empty, pooled ahead.

Key material is an unprotected gpg-agent key file (``private-keys-v1.d/<keygrip>.key``) with no
OpenPGP key around it. A key /gen_key makes takes two pieces (``KEY_PARTS``): gpg binds the user id
to one as a certify-only primary (``Key-Grip:``) and adds the other as a sign-only subkey, which
takes milliseconds. It is made by a gpg-agent that runs as our child in a scratch home
(``state_dir/keygen/<random>``, 0700, locked while in use), never by the service's own agent:
RSA prime search keeps an agent busy for seconds, and several scratch agents run on several
cores while the service's agent keeps signing.

``KeyMaker.start`` can race several generations for the pieces of one key (RSA generation time
varies by a factor of 3-10 from key to key): the first ones to finish are used, the others go into
the pool when it has room for them (at full priority: the next request may take one before its own
generations finish), otherwise they are stopped and their homes shredded.

The pool keeps ready key files in ``state_dir/pool/ready`` as ``<algorithm>-<keygrip>.key`` (0700
inside the 0700 state directory, files 0600: protected like any key), ``KEY_PARTS`` per pooled key:
every piece is interchangeable, so files made before keys had subkeys serve as either part. A
request claims one by renaming it into the service's ``private-keys-v1.d`` (atomic: two processes
never get the same file). One refill thread per process, at a lower CPU priority; an flock makes
only one process refill at a time.
"""

import atexit
import errno
import fcntl
import logging
import os
import queue
import tempfile
import threading
import time

from . import _gnupg
from .agent import KeyMaterialGeneration, agent_binary_for

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "gen-"
LOCK_NAME = "lock"
# A scratch home without its lock file is being set up, unless it is this old.
UNLOCKED_SCRATCH_GRACE = 600
# Racing pays off where generation time is long and random (prime search).
RACED_ALGORITHMS = ("rsa2048", "rsa3072", "rsa4096")
# Pieces of key material per key /gen_key makes: a certify-only primary and a sign-only subkey.
KEY_PARTS = 2
REFILL_NICENESS = 10


def move_private_file(source, target):
    """Rename ``source`` to ``target``; across file systems copy it (0600) and shred the source."""
    try:
        os.rename(source, target)
        return
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
    with open(source, "rb") as handle:
        _gnupg.write_private_file(target, handle.read())
    _gnupg.shred_file(source)


class Candidate:
    """One key generation in its own scratch home."""

    def __init__(self, maker, algorithm, finished, counted=True):
        self.maker = maker
        self.algorithm = algorithm
        self._finished = finished
        self.counted = counted
        self.home = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=maker.scratch_root)
        self.keygrip = None
        self.error = None
        self.done = threading.Event()
        # Locked before it gets the name sweep() looks for: a sweeper never sees it unlocked.
        unnamed = os.path.join(self.home, "." + LOCK_NAME)
        self._lock_fd = os.open(unnamed, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(unnamed, os.path.join(self.home, LOCK_NAME))
        try:
            # The agent inherits the lock: if we die, the home stays "in use" until it exits.
            self.generation = KeyMaterialGeneration(os.path.join(self.home, "gnupg"), algorithm,
                                                    agent_binary=maker.agent_binary, keep_fds=(self._lock_fd,))
        except BaseException:
            self.discard()
            raise
        self.started = time.monotonic()
        self.seconds = None

    def run(self):
        """Wait for the agent (in a thread of its own); sets keygrip or error, then done."""
        try:
            self.keygrip = self.generation.wait()
        except _gnupg.GpgError as err:
            self.error = err
        finally:
            self.seconds = time.monotonic() - self.started
            self.maker.ended(self)
            self.done.set()
            self._finished.put(self)

    @property
    def key_file(self):
        return os.path.join(self.generation.homedir, "private-keys-v1.d", self.keygrip + ".key")

    def cancel(self):
        self.generation.cancel()

    def move_key(self, target):
        move_private_file(self.key_file, target)

    def discard(self):
        """Shred the scratch home (key material included, if still there) and release it."""
        _gnupg.shred_tree(self.home)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class KeyMaker:
    """Makes key material in scratch homes; several at once for one key when cores are idle."""

    def __init__(self, config, gpg_binary="gpg"):
        self.scratch_root = _gnupg.ensure_private_dir(os.path.join(config.state_dir, "keygen"))
        self.agent_binary = agent_binary_for(gpg_binary)
        self.race_width = max(1, config.generation_race)
        self._active = 0
        self._active_lock = threading.Lock()
        self._running = set()
        atexit.register(self.close)

    def close(self):
        """Stop every generation still running (spares included) and shred its home."""
        with self._active_lock:
            running = list(self._running)
        for candidate in running:
            candidate.cancel()
            candidate.done.wait(5)
            candidate.discard()

    def ended(self, candidate):
        with self._active_lock:
            self._running.discard(candidate)
        self.uncount(candidate)

    def uncount(self, candidate):
        """The candidate has ended: it no longer occupies a core."""
        with self._active_lock:
            if candidate.counted:
                candidate.counted = False
                self._active -= 1

    def _start(self, algorithm, finished, counted):
        if counted:
            with self._active_lock:
                self._active += 1
        try:
            candidate = Candidate(self, algorithm, finished, counted)
        except BaseException:
            if counted:
                with self._active_lock:
                    self._active -= 1
            raise
        with self._active_lock:
            self._running.add(candidate)
        threading.Thread(target=candidate.run, name="pkgsign-keygen", daemon=True).start()
        return candidate

    def width_for(self, algorithm):
        """How many generations to race now: extra ones only on cores no other generation uses."""
        if algorithm not in RACED_ALGORITHMS:
            return 1
        with self._active_lock:
            idle = self.race_width - self._active
        return max(1, min(self.race_width, idle))

    def make(self, algorithm, width=1, spare=None, background=False):
        """A finished Candidate (call ``discard()`` once its key file is moved away); see start()."""
        return self.start(algorithm, width, spare, background).wait()

    def start(self, algorithm, width=1, spare=None, background=False, wanted=1):
        """Start ``width`` generations racing for ``wanted`` pieces of key material; a Race to wait on.

        The first ``wanted`` to finish win. Each other one goes to ``spare(candidate)`` when that returns
        True for its algorithm (called once it has finished; ``spare.accepts(algorithm)`` is asked
        at once), otherwise it is stopped. ``background`` generations (the pool's refill, at a low
        CPU priority) do not count against the race width: requests may still race meanwhile.
        """
        self.sweep()
        candidates, finished = [], queue.Queue()
        try:
            for _index in range(max(1, width)):
                candidates.append(self._start(algorithm, finished, counted=not background))
        except (_gnupg.GpgError, OSError) as err:
            if not candidates:
                raise
            log.warning("could only start %d of %d key generations: %s", len(candidates), width,
                        getattr(err, "message", err))
        return Race(self, algorithm, candidates, finished, spare, wanted)

    def dispose(self, candidate, spare):
        """A generation that lost the race: into the pool if it takes it, else stopped and shredded."""
        if spare is not None and spare.accepts(candidate.algorithm):
            # At full priority, still counted: the next request may well take it from the pool
            # before its own generations finish (it had a head start).

            def hand_over():
                candidate.done.wait()
                try:
                    if not (candidate.keygrip and spare(candidate)):
                        log.info("a spare %s generation was discarded (%s)", candidate.algorithm,
                                 "failed: %s" % candidate.error.message if candidate.error else "pool full")
                finally:
                    candidate.discard()

            threading.Thread(target=hand_over, name="pkgsign-keygen-spare", daemon=True).start()
            return
        candidate.cancel()
        candidate.done.wait()
        candidate.discard()
        log.info("stopped a %s generation that lost the race after %.2f s (no pool to keep it)",
                 candidate.algorithm, candidate.seconds or 0.0)

    def sweep(self):
        """Shred scratch homes nobody holds any more (left by a killed process); returns how many."""
        removed = 0
        for name in os.listdir(self.scratch_root):
            home = os.path.join(self.scratch_root, name)
            if not name.startswith(SCRATCH_PREFIX) or not os.path.isdir(home):
                continue
            try:
                fd = os.open(os.path.join(home, LOCK_NAME), os.O_RDWR)
            except FileNotFoundError:
                try:
                    stale = time.time() - os.stat(home).st_mtime > UNLOCKED_SCRATCH_GRACE
                except FileNotFoundError:
                    continue
                if stale:
                    _gnupg.shred_tree(home)
                    removed += 1
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a generation (maybe an orphaned agent) still works there
            try:
                _gnupg.shred_tree(home)
                removed += 1
            finally:
                os.close(fd)
        return removed


class Race:
    """Generations racing for ``wanted`` pieces of key material (KeyMaker.start)."""

    def __init__(self, maker, algorithm, candidates, finished, spare, wanted=1):
        self.maker = maker
        self.algorithm = algorithm
        self.candidates = candidates
        self.spare = spare
        self.wanted = wanted
        self.winners = []
        self._finished = finished
        self._pending = len(candidates)

    @property
    def winner(self):
        return self.winners[0] if self.winners else None

    def wait(self, timeout=None):
        """The next generation to finish (once ``wanted`` have, the others are disposed of), or None
        after ``timeout`` seconds; GpgError when too many generations failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            try:
                candidate = self._finished.get(timeout=None if deadline is None else max(0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            self._pending -= 1
            if candidate.keygrip:
                raced = len(self.candidates)
                self.winners.append(candidate)
                if len(self.winners) >= self.wanted:
                    self.abandon()
                if raced > self.wanted and len(self.winners) == 1:
                    log.info("raced %d %s generations; the first took %.2f s", raced, self.algorithm, candidate.seconds)
                return candidate
        errors = [candidate.error for candidate in self.candidates if candidate.error is not None]
        raise errors[0] if errors else _gnupg.GpgError("key generation failed")

    def reduce(self):
        """One piece fewer is wanted (the caller found it elsewhere)."""
        self.wanted -= 1
        if len(self.winners) >= self.wanted:
            self.abandon()

    def abandon(self):
        """Give up every generation that has not won (to the spare, or stopped and shredded)."""
        candidates, self.candidates = self.candidates, list(self.winners)
        for candidate in candidates:
            if candidate not in self.winners:
                self.maker.dispose(candidate, self.spare)
        self._pending = 0


class KeyPool:
    def __init__(self, config, main_gnupg, maker=None):
        self.config = config
        # In pieces of key material: pool_size keys of KEY_PARTS pieces each.
        self.sizes = {algorithm: config.pool_size * KEY_PARTS for algorithm in config.pool_algorithms}
        self.root = os.path.join(config.state_dir, "pool")
        self.ready_dir = os.path.join(self.root, "ready")
        for directory in (self.root, self.ready_dir):
            _gnupg.ensure_private_dir(directory)
        self.target_dir = _gnupg.ensure_private_dir(os.path.join(main_gnupg.homedir, "private-keys-v1.d"))
        self.maker = maker or KeyMaker(config, main_gnupg.binary)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._retire_old_home()

    def _retire_old_home(self):
        """Earlier versions generated pool keys in ``pool/gnupg`` with gpg --gen-key."""
        home = os.path.join(self.root, "gnupg")
        if os.path.isdir(home):
            _gnupg.GnuPG(home, create=False).kill_agent()
            _gnupg.shred_tree(home)

    def available(self, algorithm):
        prefix = algorithm + "-"
        return sorted(name for name in os.listdir(self.ready_dir) if name.startswith(prefix) and name.endswith(".key"))

    def counts(self):
        """Ready pieces of key material per algorithm (``KEY_PARTS`` make one key)."""
        return {algorithm: len(self.available(algorithm)) for algorithm in self.sizes}

    def claim(self, algorithm, before_take=None):
        """Move one ready key file into the service's keyring; its keygrip, or None if empty.

        ``before_take(keygrip)`` runs before the file moves (to record which key is in flight).
        """
        if algorithm not in self.sizes:
            return None
        try:
            for name in self.available(algorithm):
                keygrip = name[len(algorithm) + 1:-len(".key")]
                if before_take is not None:
                    before_take(keygrip)
                try:
                    os.rename(os.path.join(self.ready_dir, name), os.path.join(self.target_dir, keygrip + ".key"))
                except FileNotFoundError:
                    continue  # another request or process took it
                except OSError as err:
                    if err.errno == errno.EXDEV:
                        log.warning("key pool %s and %s are on different file systems; pool disabled",
                                    self.ready_dir, self.target_dir)
                        self.sizes = {}
                        return None
                    raise
                return keygrip
            return None
        finally:
            self._wake.set()

    def release_unused(self, keygrip):
        """Remove a claimed key file that could not be bound (never reuse it elsewhere)."""
        _gnupg.shred_file(os.path.join(self.target_dir, keygrip + ".key"))

    # -- spares: generations that lost a race --------------------------------------------

    def accepts(self, algorithm):
        return algorithm in self.sizes and len(self.available(algorithm)) < self.sizes[algorithm]

    def __call__(self, candidate):
        """Keep a finished spare generation; False when the pool has no room for it."""
        if not self.accepts(candidate.algorithm):
            return False
        self._store(candidate)
        log.info("a spare %s generation went into the key pool (%s ready)", candidate.algorithm,
                 len(self.available(candidate.algorithm)))
        return True

    def _store(self, candidate):
        name = "%s-%s.key" % (candidate.algorithm, candidate.keygrip)
        candidate.move_key(os.path.join(self.ready_dir, name))

    # -- refill --------------------------------------------------------------------------

    def make_one(self, algorithm):
        candidate = self.maker.make(algorithm, background=True)
        try:
            self._store(candidate)
            return candidate.keygrip
        finally:
            candidate.discard()

    def refill(self, progress=None):
        """Top every algorithm up to its size; returns the pieces of key material made (0 if another
        process refills)."""
        lock_fd = os.open(os.path.join(self.root, "refill.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        made = 0
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            for algorithm, size in list(self.sizes.items()):
                while not self._stop.is_set() and len(self.available(algorithm)) < size:
                    self.make_one(algorithm)
                    made += 1
                    if progress:
                        progress(algorithm, len(self.available(algorithm)), size)
        finally:
            os.close(lock_fd)
        return made

    def start(self):
        if self._thread is None and any(self.sizes.values()):
            self._thread = threading.Thread(target=self._run, name="pkgsign-keypool", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()

    def _run(self):
        try:
            # Linux nice values are per thread and inherited by children: the scratch agents
            # this thread starts (which do the generation) yield the CPU to requests.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REFILL_NICENESS)
        except (AttributeError, OSError):
            pass
        while not self._stop.is_set():
            try:
                made = self.refill()
                if made:
                    log.info("key pool refilled with %d piece(s) of key material: %s", made, self.counts())
            except (_gnupg.GpgError, OSError) as err:
                log.error("key pool refill failed: %s", getattr(err, "message", err))
            self._wake.wait(30)
            self._wake.clear()
