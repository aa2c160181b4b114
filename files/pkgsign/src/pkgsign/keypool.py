"""A pool of pre-generated key material, so POST /gen_key does not wait for RSA generation.

Pool keys are made in a separate GnuPG home (``state_dir/pool/gnupg``); their unprotected
private key files (``private-keys-v1.d/<keygrip>.key``) are moved to ``state_dir/pool/ready``
as ``<algorithm>-<keygrip>.key`` and the throw-away OpenPGP key around them is deleted. A
request claims one by renaming it into the service's ``private-keys-v1.d`` (atomic: two
processes never get the same file) and gpg binds the user id to it (``Key-Grip:``), which takes
milliseconds. The ready directory is inside the 0700 state directory: protected like any key.

One refill thread per process; an flock makes only one process refill at a time.
"""

import errno
import fcntl
import logging
import os
import threading

from . import _gnupg

log = logging.getLogger(__name__)

POOL_UID_NAME = "pkgsign pool"
POOL_UID_EMAIL = "pool@pkgsign.invalid"


class KeyPool:
    def __init__(self, config, main_gnupg):
        self.config = config
        self.sizes = {algorithm: config.pool_size for algorithm in config.pool_algorithms}
        self.root = os.path.join(config.state_dir, "pool")
        self.ready_dir = os.path.join(self.root, "ready")
        for directory in (self.root, self.ready_dir):
            _gnupg.ensure_private_dir(directory)
        self.target_dir = _gnupg.ensure_private_dir(os.path.join(main_gnupg.homedir, "private-keys-v1.d"))
        self._gnupg = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    @property
    def gnupg(self):
        if self._gnupg is None:
            home = os.path.join(self.root, "gnupg")
            self._gnupg = _gnupg.GnuPG(home)
            from .keystore import _ensure_gpg_conf

            _ensure_gpg_conf(home)
        return self._gnupg

    def available(self, algorithm):
        prefix = algorithm + "-"
        return sorted(name for name in os.listdir(self.ready_dir) if name.startswith(prefix) and name.endswith(".key"))

    def counts(self):
        return {algorithm: len(self.available(algorithm)) for algorithm in self.sizes}

    def claim(self, algorithm):
        """Move one ready key file into the service's keyring; its keygrip, or None if empty."""
        if algorithm not in self.sizes:
            return None
        try:
            for name in self.available(algorithm):
                keygrip = name[len(algorithm) + 1:-len(".key")]
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
        path = os.path.join(self.target_dir, keygrip + ".key")
        if os.path.exists(path):
            os.unlink(path)

    def make_one(self, algorithm):
        gpg = self.gnupg
        fingerprint = gpg.generate_key(POOL_UID_NAME, POOL_UID_EMAIL, algorithm=algorithm)
        key = _gnupg.find_secret_key_by(gpg, fingerprint)
        if key is None or not key.keygrip:
            raise _gnupg.GpgError("pool key %s vanished" % fingerprint)
        source = os.path.join(gpg.homedir, "private-keys-v1.d", key.keygrip + ".key")
        os.rename(source, os.path.join(self.ready_dir, "%s-%s.key" % (algorithm, key.keygrip)))
        # Without its secret part the throw-away OpenPGP key can go.
        gpg.run(["--yes", "--delete-keys", fingerprint], check=False)
        revocation = os.path.join(gpg.homedir, "openpgp-revocs.d", fingerprint + ".rev")
        if os.path.exists(revocation):
            os.unlink(revocation)
        return key.keygrip

    def refill(self, progress=None):
        """Top every algorithm up to its size; returns the number made (0 if another process refills)."""
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
            # Linux nice values are per thread and inherited by children: the pool's gpg and the
            # gpg-agent it starts (which does the generation) yield the CPU to requests.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while not self._stop.is_set():
            try:
                made = self.refill()
                if made:
                    log.info("key pool refilled with %d key(s): %s", made, self.counts())
            except (_gnupg.GpgError, OSError) as err:
                log.error("key pool refill failed: %s", getattr(err, "message", err))
            self._wake.wait(30)
            self._wake.clear()
