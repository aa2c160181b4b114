"""Budgets on work, not on requests (``[budget]``, issue 14).

* Key generations per token (``keygen``) and signatures per token (``signatures``, charged one per
  digest), N per W seconds with a burst of N: the instance's shared rate limiter
  (``tokens.RateLimiter``, flock'd files in ``<state_dir>/ratelimit``) charged by units of work.
* At most ``concurrent_keygen`` RSA key generations at once per instance: one flock'd slot file
  each in ``<state_dir>/keygen-slots``, shared by every server process. A request waits up to
  ``keygen_wait`` for a slot, then gets 503 with Retry-After; requests never pile up behind the
  cap. Keys already made (200) and keys taken from the pool cost no slot.
* A quota of keys per token (``keys_per_token``, or the token's own ``max_keys``): how many keys
  the token has made through /gen_key and not deleted. One count per token in
  ``<state_dir>/key-quota/<sha256 of the token id>``, changed under flock: a generation reserves
  one before it starts (two parallel requests cannot both take the last one), gives it back
  when no key was made (an existing key, a failure, a cancelled generation); deleting a key gives
  its maker one back. Beyond the quota: 403 (it does not free up by waiting).
* The keygen queue (``keygen_queue_from``, ``keygen_queue_depth``, ``keygen_queue_wait``): a
  /gen_key from a listed network that is over a limit (the anonymous request rate, its token's
  request rate, its key generation budget) waits for the limit to let it through instead of a
  429, which Copr's client does not retry. At most ``keygen_queue_depth`` requests wait at once
  per instance (one flock'd position file each in ``<state_dir>/keygen-queue``, shared by every
  server process; each holds a worker thread, so the depth stays below ``serve_workers``), none
  longer than ``keygen_queue_wait`` per limit; beyond either bound: 503 with Retry-After, which
  Copr's client does retry. Clients of other networks get today's 429 at once.
* Worker threads (``reserved_workers``): a /gen_key request holds a worker of its process from
  its start until its answer, through every wait above and the generation itself. At most
  ``serve_workers - reserved_workers`` of them are served at once per process (``take_keygen_worker``);
  one more gets 503 with Retry-After at once, so a keygen flood never takes the workers that
  answer /ping and /sign. Under httpd + mod_wsgi ``serve_workers`` is the daemon's ``threads``.
"""

import fcntl
import hashlib
import ipaddress
import os
import threading
import time

from . import _gnupg
from .keypool import RACED_ALGORITHMS


class BudgetExceeded(Exception):
    def __init__(self, status, message, retry_after):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = max(1, int(retry_after))


class QuotaExceeded(Exception):
    """The token has made as many keys as it may have (403)."""


def _per(rate):
    return "%d per %d s" % rate


class Budgets:
    def __init__(self, config, limiter):
        self.config = config
        self.limiter = limiter
        self.slots_dir = os.path.join(config.state_dir, "keygen-slots")
        if config.concurrent_keygen:
            _gnupg.ensure_private_dir(self.slots_dir)
        self.queue_dir = os.path.join(config.state_dir, "keygen-queue")
        if config.keygen_queue_networks:
            _gnupg.ensure_private_dir(self.queue_dir)
        self._share = threading.BoundedSemaphore(max(1, config.serve_workers - config.reserved_workers))

    def take_keygen_worker(self):
        """Take one of this process's workers that /gen_key may hold (give it back with
        ``free_keygen_worker``); 503 with Retry-After at once when all are taken: never a wait,
        which would hold a worker."""
        if not self._share.acquire(blocking=False):
            share = self.config.serve_workers - self.config.reserved_workers
            raise BudgetExceeded(503, "%d key generation requests are being served, the most this server "
                                      "serves at once; retry later" % share,
                                 max(5, min(self.config.keygen_wait, 60)))

    def free_keygen_worker(self):
        self._share.release()

    def queues(self, address):
        """True when ``address`` is in a network whose key generations wait in the queue."""
        return in_networks(address, self.config.keygen_queue_networks)

    def admit(self, address, check, refusal, on_queued=None):
        """Let a key-generation request pass a limit: ``check()`` charges it and returns None, or
        the seconds until it would pass. Outside the queue's networks a refusal is a 429 at once
        (``refusal % seconds`` is its message); inside, the request waits in the bounded queue
        (``on_queued(seconds)`` is told, for the audit) and is charged when the limit lets it
        through. Returns the seconds waited."""
        wait = check()
        if not wait:
            return 0
        if not self.queues(address):
            raise BudgetExceeded(429, refusal % wait, wait)
        limit = self.config.keygen_queue_wait
        if wait > limit:
            raise BudgetExceeded(503, "%s; that is longer than the keygen queue waits (%d s)" % (refusal % wait, limit),
                                 wait)
        position = self._queue_position()
        if position is None:
            raise BudgetExceeded(503, "the keygen queue is full (%d requests wait); retry later"
                                 % self.config.keygen_queue_depth, max(1, min(wait, limit)))
        started = time.monotonic()
        try:
            if on_queued is not None:
                on_queued(wait)
            while wait:
                left = started + limit - time.monotonic()
                if left <= 0:
                    raise BudgetExceeded(503, "%s; waited %d s in the keygen queue, its most" % (refusal % wait, limit),
                                         wait)
                time.sleep(min(wait, left))
                wait = check()
        finally:
            os.close(position)
        return time.monotonic() - started

    def _queue_position(self):
        """A held position (fd) among ``keygen_queue_depth`` files, or None when all are taken."""
        return _take_lock_file(self.queue_dir, self.config.keygen_queue_depth)

    def charge_keygen(self, who, address=None, on_queued=None):
        """Spend one key generation of ``who`` (a token id, or "addr:<ip>"); raises BudgetExceeded
        (429; from the queue's networks, waits in the queue first, then 503)."""
        rate = self.config.budget_keygen
        self.admit(address, lambda: self.limiter.check("keygen:" + who, rate),
                   "key generation budget of %s (%s) spent; retry in %%d s" % (who, _per(rate) if rate else "-"),
                   on_queued)

    def charge_signatures(self, who, count):
        """Spend ``count`` signatures of ``who``; raises BudgetExceeded (429)."""
        rate = self.config.budget_signatures
        if rate is None:
            return
        if count > rate[0]:
            raise BudgetExceeded(429, "%d signatures in one request exceed the budget of %s; send fewer digests per "
                                      "request" % (count, _per(rate)), rate[1])
        wait = self.limiter.check("signatures:" + who, rate, cost=count)
        if wait:
            raise BudgetExceeded(429, "signature budget of %s (%s) spent; retry in %d s" % (who, _per(rate), wait), wait)

    # -- key quota per token ---------------------------------------------------------------

    def _count(self, token_id, change, limit=0):
        """Add ``change`` to the token's key count under flock; QuotaExceeded when an increase
        would go beyond ``limit`` (0: none). Returns the new count."""
        directory = os.path.join(self.config.state_dir, "key-quota")
        if not os.path.isdir(directory):
            try:  # two first requests at once: one makes it, the other finds it made (never a 500)
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except FileExistsError:
                pass
        path = os.path.join(directory, hashlib.sha256(token_id.encode("utf-8")).hexdigest())
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 32, 0).strip()
            count = int(raw) if raw.isdigit() else 0
            if change > 0 and limit and count + change > limit:
                raise QuotaExceeded("token %s has made %d key(s), its quota; delete one or ask the operator for a "
                                    "higher quota (pkgsign-admin token add --max-keys)" % (token_id, count))
            count = max(0, count + change)
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % count, 0)
            return count
        finally:
            os.close(fd)

    def reserve_key(self, token):
        """Take one key of the token's quota before a generation (None for token-less requests);
        give it back with ``return_key`` unless a key was made."""
        if token is None:
            return None
        limit = token.max_keys if token.max_keys is not None else self.config.keys_per_token
        self._count(token.id, 1, limit)
        return token.id

    def return_key(self, token_id):
        """A reserved key that was not made, or a key its maker's token had made was deleted."""
        if token_id:
            self._count(token_id, -1)

    def keys_made(self, token_id):
        return self._count(token_id, 0)

    def keygen_slot(self, algorithm, pool=None):
        """A held slot (an fd; give it to ``release``) for an RSA generation, or None when none is
        needed (ed25519, a pool key ready, no cap); raises BudgetExceeded (503) when none frees up
        within ``keygen_wait``."""
        cap = self.config.concurrent_keygen
        if not cap or algorithm not in RACED_ALGORITHMS or (pool is not None and pool.available(algorithm)):
            return None
        deadline = time.monotonic() + self.config.keygen_wait
        while True:
            fd = _take_lock_file(self.slots_dir, cap)
            if fd is not None:
                return fd
            if time.monotonic() >= deadline:
                raise BudgetExceeded(503, "%d RSA key generations are running, the most this service runs at once; "
                                          "retry later" % cap, max(5, self.config.keygen_wait))
            time.sleep(0.05)

    @staticmethod
    def release(slot):
        if slot is not None:
            os.close(slot)


def in_networks(address, networks):
    """True when the IP ``address`` lies in one of ``networks`` (an IPv4-mapped IPv6 address counts
    as its IPv4 address)."""
    if not networks or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _take_lock_file(directory, count):
    """A held lock (fd) on one of ``count`` files ``<n>.lock`` in ``directory``, shared by every
    server process (the lock goes with the fd), or None when all are held."""
    for number in range(count):
        fd = os.open(os.path.join(directory, "%d.lock" % number), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
    return None
