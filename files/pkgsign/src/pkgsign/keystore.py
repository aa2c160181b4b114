"""Keys of the service: per-project keys made by /gen_key, imported keys, aliases.

Every key the service made or imported has a metadata file ``state_dir/keys/<name_email>.json``
(written atomically) holding what signing needs (signing subkey fingerprint, keygrip, public-key
algorithm), so a signature never has to list the keyring: the cost of signing does not grow with
the number of keys.

Crash safety (the server may be killed at any moment): before gpg starts generating a key, a
``pending`` marker is written; after the metadata is in place the marker goes. Deleting renames
the metadata to a ``deleting`` marker first. ``reconcile()`` (run when the service starts)
finishes or undoes whatever a marker says was in progress, so every key has its metadata and
every metadata entry its key.
"""

import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from urllib.parse import quote

from . import _gnupg
from .config import KEYGEN_ALGORITHMS, ascii_lower
from .keymaterial import add_subkey_from_keygrip, generate_key_from_keygrip
from .keypool import KEY_PARTS, RACED_ALGORITHMS, KeyMaker, KeyPool

log = logging.getLogger(__name__)

LOCK_BUCKETS = 4096
# OpenPGP times are unsigned 32-bit seconds: nothing can expire after 2106-02-07 06:28:15 UTC.
LAST_OPENPGP_TIME = 0xFFFFFFFF
# What a key's listing decides in its metadata (refreshed by maintain and add-subkey); the rest
# (origin, created_by, protected ...) is the service's own.
RECORD_KEY_FIELDS = ("uids", "expires", "revoked", "signing_fingerprint", "signing_key_id", "signing_keygrip",
                     "pubkey_algo", "signing_algorithm", "signing_problem")
# How often a generation looks whether a pool key has become ready meanwhile.
POOL_WATCH_SECONDS = 0.05
# How often a generation asks whether its client is still there (``generate(cancelled=...)``).
CANCEL_WATCH_SECONDS = 0.25


class KeyStoreError(Exception):
    """A key operation failed on the server side (500)."""


class UnknownKey(LookupError):
    """No key answers to that name."""


class GenerationCancelled(Exception):
    """The client that asked for a key went away while its key material was being generated: the
    generations were stopped (or handed to the pool) and nothing was bound."""


class NotOurKey(Exception):
    """A key with that email is in the keyring but the service did not make or import it (no
    metadata): /gen_key refuses rather than take it over (after which DELETE could remove it)."""

    def __init__(self, email, fingerprint):
        super().__init__("a key for %s (%s) is in the keyring but was not made by this service nor imported with "
                         "pkgsign-admin import-copr; it is not handed out or taken over" % (email, fingerprint))
        self.fingerprint = fingerprint


# The longest metadata file name stem kept as it is: "<stem>.json" within NAME_MAX (255 bytes).
# Longer stems (a non-ASCII name quotes to three characters a byte) end in the name's digest.
_MAX_FILE_STEM = 255 - len(".json")


def _file_name(name_email: str) -> str:
    """The metadata file name of a key: its name folded (ascii_lower) and quoted, so never a path
    component, whatever pattern an operator allows. A leading "." is quoted too: no key's file is
    hidden, nor taken for a temporary file (".tmp-") that reconcile() sweeps."""
    stem = quote(ascii_lower(name_email), safe="@#+-_.")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > _MAX_FILE_STEM:
        digest = _name_digest(name_email)
        head = stem[:_MAX_FILE_STEM - len(digest) - 1]
        head = head[:head.rfind("%")] if "%" in head[-2:] else head  # never half an escape
        stem = head + "=" + digest  # quote() never writes "=": no short name's file
    return stem + ".json"


def _name_digest(name_email: str) -> str:
    return hashlib.sha256(ascii_lower(name_email).encode("utf-8")).hexdigest()


def _marker_name(operation: str, name_email: str) -> str:
    """A pending marker's file name: ``operation``, then the key's file name (its digest when both
    would not fit NAME_MAX). Every operation has its prefix, so no name makes one operation's marker
    another's ("deleting-x#p@c" is a name copr-keygen takes): reconcile() reads it from the prefix."""
    name = "%s-%s" % (operation, _file_name(name_email))
    return name if len(name) <= 255 else "%s-%s.json" % (operation, _name_digest(name_email))


def _write_json(path: str, data: dict):
    _gnupg.write_private_file(path, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8"))


class NoSigningKey(Exception):
    """A key that cannot sign here: its signing subkeys are all revoked, expired or without secret
    material on this server, or it has neither a signing subkey nor a signing primary."""


def key_record(key, email=None, origin="generated", **extra) -> dict:
    """Metadata for a gpg Key: what signing and listing need.

    The ``signing_*`` fields, ``pubkey_algo`` and ``signing_algorithm`` name the part the service
    signs with (``signing_part``). ``expires`` is when the key stops signing: the earlier of the
    primary's and that part's expiry. A key that cannot sign gets ``signing_problem`` (a readable
    reason, else None); its ``signing_*`` fields then name the signing subkey that is unusable (never
    the primary in its place), and ``revoked``/``expires`` say so where that is the reason.
    """
    problem = None
    try:
        signing = signing_part(key)
    except NoSigningKey as err:
        problem = str(err)
        signing = _unusable_signing_part(key)
    expiries = [when for when in (key.expires, signing.expires) if when]
    record = {
        "name_email": email or (key.emails[0] if key.emails else ""),
        "uids": list(key.uids),
        "fingerprint": key.fingerprint,
        "key_id": key.key_id,
        "algorithm": key.algorithm,
        "created": key.created,
        "expires": min(expiries) if expiries else None,
        "signing_fingerprint": signing.fingerprint,
        "signing_key_id": signing.key_id,
        "signing_keygrip": signing.keygrip,
        "pubkey_algo": signing.pubkey_algo,
        "signing_algorithm": signing.algorithm,
        "signing_problem": problem,
        "origin": origin,
        "revoked": bool(key.revoked or signing.revoked),
    }
    record.update(extra)
    return record


def bound_key_record(fingerprint, signing_fingerprint, signing_keygrip, algorithm, uid, created, expire_days, email,
                     origin="generated", **extra):
    """Metadata of a key just bound from key material (a certify-only primary and a sign-only
    subkey of ``algorithm``, both created at ``created`` and expiring after ``expire_days``): every
    field is known, so no listing is needed. tests/test_keygen.py checks it against key_record of
    gpg's own listing."""
    pubkey_algo = 22 if algorithm == "ed25519" else 1  # EdDSA, RSA (RFC 4880 9.1, RFC 4880bis)
    record = {
        "name_email": email,
        "uids": [uid],
        "fingerprint": fingerprint,
        "key_id": fingerprint[-16:],
        "algorithm": algorithm,
        "created": int(created),
        "expires": int(created) + expire_days * 86400 if expire_days else None,
        "signing_fingerprint": signing_fingerprint,
        "signing_key_id": signing_fingerprint[-16:],
        "signing_keygrip": signing_keygrip.upper(),
        "pubkey_algo": pubkey_algo,
        "signing_algorithm": algorithm,
        "signing_problem": None,
        "origin": origin,
        "revoked": False,
    }
    record.update(extra)
    return record


def user_id(name, comment, email):
    """The user id gpg makes of Name-Real, Name-Comment and Name-Email."""
    return "%s%s <%s>" % (name, " (%s)" % comment if comment else "", email)


def signing_part(key):
    """The (sub)key the service signs with; NoSigningKey when there is none.

    The newest usable signing subkey whose secret is here (``secret_present`` None = not looked
    at). A key with signing subkeys never signs with its primary, even when none of them is
    usable; only a key with no signing subkey at all (copr-keygen's one RSA primary) signs with
    its primary, if that has sign usage and its secret is here.
    """
    subkeys = [sub for sub in key.subkeys if "sign" in sub.usage]
    if subkeys:
        usable = [sub for sub in subkeys if sub.usable and sub.secret_present is not False]
        if usable:
            return max(usable, key=lambda sub: sub.created or 0)
        states = sorted({"revoked" if sub.revoked else "expired" if sub.expired else "disabled"
                         if "D" in sub.capabilities else "without its secret on this server" for sub in subkeys})
        raise NoSigningKey("every signing subkey of %s is %s; add one (pkgsign-admin add-subkey), or prolong it "
                           "(pkgsign-admin maintain)" % (key.fingerprint, " or ".join(states)))
    if "sign" not in key.usage:
        raise NoSigningKey("key %s has no signing subkey and its primary key may not sign; add one "
                           "(pkgsign-admin add-subkey)" % key.fingerprint)
    if key.secret_present is False:
        raise NoSigningKey("the secret of key %s is not on this server" % key.fingerprint)
    return key


def _unusable_signing_part(key):
    """What the record of a key that cannot sign names: its newest signing subkey, else the primary."""
    subkeys = [sub for sub in key.subkeys if "sign" in sub.usage]
    return max(subkeys, key=lambda sub: sub.created or 0) if subkeys else key


class KeyStore:
    def __init__(self, config, gnupg=None):
        self.config = config
        self.gnupg = gnupg or _gnupg.GnuPG(config.gnupg_home, binary=config.gpg_binary)
        for directory in (config.state_dir, config.metadata_dir, config.locks_dir, self.pending_dir,
                          config.phrases_dir):
            _gnupg.ensure_private_dir(directory)
        self._thread_locks = {}
        self._thread_locks_guard = threading.Lock()
        self._alias_cache = {}
        self._alias_cache_lock = threading.Lock()
        self._current = {}  # fingerprint -> (keyring stamp, the key's signing fields as listed then)
        self._email_re = re.compile(config.name_email_pattern, re.ASCII)
        _ensure_gpg_conf(config.gnupg_home)
        self.maker = KeyMaker(config, self.gnupg.binary)
        self.private_keys_dir = _gnupg.ensure_private_dir(os.path.join(self.gnupg.homedir, "private-keys-v1.d"))
        self.pool = None
        if config.pool_size > 0:
            self.pool = KeyPool(config, self.gnupg, self.maker)

    @property
    def pending_dir(self):
        return os.path.join(self.config.state_dir, "pending")

    # -- locking -------------------------------------------------------------------------

    @contextmanager
    def email_lock(self, name_email: str):
        """Serialize work on one email: a thread lock in this process, flock across processes.

        Yields the locked descriptor: gpg children inherit it (``keep_fds``), so when the server
        is killed mid-generation the lock stays held until its orphaned gpg has finished, and
        ``reconcile`` after a restart never judges a key that is still being written.
        """
        name_email = ascii_lower(name_email)
        with self._thread_locks_guard:
            lock = self._thread_locks.setdefault(name_email, threading.Lock())
        bucket = int(hashlib.sha256(name_email.encode("utf-8")).hexdigest()[:8], 16) % LOCK_BUCKETS
        with lock:
            path = os.path.join(self.config.locks_dir, "%03x.lock" % bucket)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)

    @contextmanager
    def keyring_lock(self, exclusive=False, blocking=True):
        """Writers of the keyring exclusive, readers shared (flock, across threads and processes).

        gpg 2.2 replaces pubring.kbx by renaming the old file away before renaming the new one
        in: a gpg reading in between finds no keyring ("keydb_search failed: No such file or
        directory"), and a concurrent --gen-key then fails after making its key. Yields the
        locked descriptor, or None when ``blocking`` is off and a writer holds the lock.
        """
        fd = os.open(os.path.join(self.config.locks_dir, "keyring.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
            yield fd
        finally:
            os.close(fd)

    # -- metadata ------------------------------------------------------------------------

    def metadata_path(self, name_email: str) -> str:
        return os.path.join(self.config.metadata_dir, _file_name(name_email))

    def get_metadata(self, name_email: str):
        try:
            with open(self.metadata_path(name_email), encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def all_metadata(self):
        records = []
        for name in sorted(os.listdir(self.config.metadata_dir)):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.config.metadata_dir, name), encoding="utf-8") as handle:
                        records.append(json.load(handle))
                except (OSError, ValueError):
                    log.warning("unreadable key metadata %s", name)
        return records

    def save_metadata(self, record: dict):
        _write_json(self.metadata_path(record["name_email"]), record)

    # -- lookup --------------------------------------------------------------------------

    def lookup_gpg(self, selector: str):
        """A key with secret material in the keyring, asking gpg for just that selector."""
        with self.keyring_lock():
            return _gnupg.find_secret_key_by(self.gnupg, selector)

    def resolve(self, name: str) -> dict:
        """Metadata of the key ``name`` designates: alias, email, fingerprint or key id."""
        original = name
        for _attempt in range(6):
            if ascii_lower(name) in self.config.aliases:
                name = self.config.aliases[ascii_lower(name)]
                continue
            break
        else:
            raise UnknownKey(original)
        if "@" in name:
            record = self.get_metadata(name)
            if record is not None:
                return record
        stamp = self._keyring_stamp()
        with self._alias_cache_lock:
            cached = self._alias_cache.get(name.upper())
        # A remembered lookup holds only while the keyring is unchanged: a key deleted, revoked or
        # given a subkey (by this process, another server process or gpg by hand) is looked up again.
        if cached and cached[0] > time.monotonic() and cached[2] == stamp:
            return cached[1]
        # Exact selectors only: gpg matches a bare "bob@x" as a substring (it would find
        # "alice-bob@x"), and hex strings other than key ids and fingerprints likewise.
        if "@" in name:
            if any(c in name for c in "<> \t"):
                raise UnknownKey(original)
            selector = "<%s>" % name
        elif re.fullmatch(r"(0[xX])?([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})", name):
            selector = name[2:] if name[:2] in ("0x", "0X") else name
        else:
            raise UnknownKey(original)
        try:
            # Most misses are unknown per-project emails (Copr's first `sign -p`): one gpg run.
            with self.keyring_lock():  # a read racing a key generation would see no keyring at all
                listed = _gnupg.find_keys_by(self.gnupg, selector, check_secret=False)
            key = self.lookup_gpg(selector) if listed else None
        except _gnupg.GpgError as err:
            log.info("lookup of %r failed: %s", name, err.message)
            key = None
        if key is None:
            raise UnknownKey(original)
        record = key_record(key, origin="keyring")
        with self._alias_cache_lock:
            self._alias_cache[name.upper()] = (time.monotonic() + 60, record, stamp)
        return record

    _CURRENT_PRUNE_AT = 4096

    def current(self, record: dict) -> dict:
        """``record`` with its signing fields (signing subkey, revoked, expires, signing_problem) as
        the keyring has them now: a signing subkey revoked or expired by hand, or a key deleted,
        stops signing at once, not after ``maintain`` refreshes the metadata.

        Two gpg runs (public and secret listing of this key) per change of the keyring (keyed on pubring.kbx's inode, size
        and times, which every gpg write changes), so a steady signer runs no gpg. UnknownKey when
        the key is gone."""
        fingerprint = record["fingerprint"]
        stamp = self._keyring_stamp()
        with self._alias_cache_lock:
            cached = self._current.get(fingerprint)
        if cached is None or cached[0] != stamp or stamp is None:
            with self.keyring_lock():
                listed = _gnupg.find_keys_by(self.gnupg, fingerprint)  # secrets too: a ssb# subkey never signs
            listed = [key for key in listed if key.fingerprint == fingerprint]
            if not listed:
                raise UnknownKey(fingerprint)
            fresh = key_record(listed[0], record.get("name_email") or None, record.get("origin", "generated"))
            cached = (stamp, {field: fresh[field] for field in RECORD_KEY_FIELDS if field != "uids"})
            with self._alias_cache_lock:
                if len(self._current) >= self._CURRENT_PRUNE_AT:
                    self._current.clear()
                self._current[fingerprint] = cached
        return dict(record, **cached[1])

    def _keyring_stamp(self):
        """What changes whenever gpg writes the public keyring (None when there is none)."""
        try:
            info = os.stat(os.path.join(self.gnupg.homedir, "pubring.kbx"))
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def names_of(self, record: dict, requested: str):
        """Every name a token key pattern may match for this key."""
        names = {ascii_lower(requested), ascii_lower(record["fingerprint"]), ascii_lower(record["key_id"])}
        if record.get("name_email"):
            names.add(ascii_lower(record["name_email"]))
        for uid in record.get("uids", []):
            match = re.search(r"<([^<>]*)>\s*$", uid)
            if match:
                names.add(ascii_lower(match.group(1)))
        for alias, target in self.config.aliases.items():
            if ascii_lower(target) in names:
                names.add(alias)
        return names

    def pin_patterns(self, patterns):
        """pattern -> primary fingerprints of the keys with secret material here that the pattern
        matches now (by any name: email, uid email, fingerprint, key id, alias), for every pattern
        that binds (tokens.pattern_is_pinned). Lists the whole keyring once: an admin operation."""
        from .tokens import pattern_is_pinned

        wanted = [ascii_lower(p) for p in patterns if pattern_is_pinned(p)]
        if not wanted:
            return {}
        by_fingerprint = {record["fingerprint"]: record for record in self.all_metadata()}
        with self.keyring_lock():
            keys = self.gnupg.list_keys(secret=True)
        pins = {pattern: [] for pattern in wanted}
        for key in keys:
            record = by_fingerprint.get(key.fingerprint) or key_record(key, origin="keyring")
            names = self.names_of(record, record["fingerprint"])
            for pattern in wanted:
                if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                    pins[pattern].append(key.fingerprint)
        return pins

    # -- generation ----------------------------------------------------------------------

    def validate_request(self, name_real, name_email, name_comment=None, key_length=None, expire=None,
                         algorithm=None):
        """Check a /gen_key request; returns (algorithm, expire days) or raises InvalidInput."""
        limit = self.config.max_field_length
        for field, value, required in (("name_real", name_real, True), ("name_email", name_email, True),
                                       ("name_comment", name_comment, False)):
            if value is None or value == "":
                if required:
                    raise _gnupg.InvalidInput("%s is required" % field)
                continue
            if not isinstance(value, str):
                raise _gnupg.InvalidInput("%s must be a string" % field)
            _gnupg.validate_uid_field(value, field, max_length=limit)
        if not self._email_re.fullmatch(name_email):
            raise _gnupg.InvalidInput("name_email %r is not of the form user#project@domain" % name_email)
        _gnupg.validate_uid_field(name_email, "email", max_length=limit)
        if algorithm is not None:
            if not isinstance(algorithm, str) or algorithm.lower() not in KEYGEN_ALGORITHMS:
                raise _gnupg.InvalidInput("algorithm must be one of %s" % ", ".join(KEYGEN_ALGORITHMS))
            algorithm = algorithm.lower()
        if key_length not in (None, ""):
            length = _as_int(key_length, "key_length")
            if length not in (2048, 3072, 4096):
                raise _gnupg.InvalidInput("key_length must be 2048, 3072 or 4096")
            if algorithm is None:
                algorithm = "rsa%d" % length
            elif algorithm != "rsa%d" % length:
                raise _gnupg.InvalidInput("key_length %d contradicts algorithm %s" % (length, algorithm))
        if algorithm is None:
            algorithm = self.config.keygen_algorithm
        if expire in (None, ""):
            days = self.config.keygen_expire_days
        else:
            days = expire_days(expire)
        return algorithm, days

    def generate(self, name_real, name_email, name_comment=None, algorithm="rsa4096", expire_days=0,
                 created_by=None, cancelled=None):
        """Create the key for ``name_email`` unless it exists; returns (created?, metadata).

        A key is a certify-only primary and a sign-only subkey of ``algorithm``: two pieces of key
        material. RSA material comes from the pool, else from generations in scratch homes (raced
        when cores are idle); only binding the user id to it takes the keyring lock, so keys for
        different emails are generated in parallel. ed25519 keys (milliseconds) come from the pool
        or the service's own agent. The email lock makes one key per email.

        ``cancelled``: a callable asked a few times a second while key material is generated; when
        it answers True (the client has gone) the generations are stopped, what they made is
        shredded and GenerationCancelled raised.
        """
        # The case stays as given (the user id, the passphrase file, what /keys shows); the file,
        # the lock and every lookup fold it: one key per address whatever its case (README.md).
        with self.email_lock(name_email) as email_fd:
            record = self.get_metadata(name_email)
            if record is not None:
                return False, record
            # One gpg run for the common case (no such key); the secret check only when one exists.
            existing = None
            with self.keyring_lock():
                listed = _gnupg.find_keys_by(self.gnupg, "<%s>" % name_email, check_secret=False)
            if listed:
                existing = self.lookup_gpg("<%s>" % name_email)
            if existing is not None:
                # In the keyring without metadata (a release key imported by hand, say): never the
                # service's to hand out or delete. import-copr writes metadata for what it imports.
                raise NotOurKey(name_email, existing.fingerprint)
            marker = os.path.join(self.pending_dir, _marker_name("generating", name_email))
            started = int(time.time())

            def in_flight(keygrips=()):
                # Written before the service's keyring or key files change: reconcile() then
                # finishes or undoes the generation, and shreds key files that were never bound.
                entry = {"name_email": name_email, "started": started}
                if keygrips:
                    entry["keygrips"] = list(keygrips)
                _write_json(marker, entry)

            bind = {"name_real": name_real, "name_email": name_email, "name_comment": name_comment or None,
                    "algorithm": algorithm, "expire_days": expire_days or 0, "email_fd": email_fd,
                    "created_by": created_by}
            record = None
            keygrips = self._claim(algorithm, KEY_PARTS, in_flight) if self.pool is not None else []
            if len(keygrips) == KEY_PARTS:
                try:
                    record = self._bind(keygrips, **bind)
                except _gnupg.GpgError as err:
                    log.error("binding pool key material %s failed (%s); generating afresh", ", ".join(keygrips),
                              err.message)
                    self._shred_material(keygrips)
                    keygrips = []
            if record is None and not keygrips and algorithm not in RACED_ALGORITHMS:
                # Made in milliseconds: by the service's own agent (seeded already), in one gpg run.
                in_flight()
                record = self._generate_here(**bind)
            elif record is None:
                try:
                    keygrips = self._new_material(algorithm, KEY_PARTS - len(keygrips), keygrips, in_flight,
                                                  cancelled)
                    record = self._bind(keygrips, **bind)
                except GenerationCancelled:
                    self._shred_material(keygrips)
                    if os.path.exists(marker):  # nothing was bound: nothing for reconcile() to finish
                        os.unlink(marker)
                    raise
                except BaseException:
                    self._shred_material(keygrips)
                    raise
            self.save_metadata(record)
            os.unlink(marker)
            return True, record

    def _claim(self, algorithm, count, in_flight, have=()):
        """Up to ``count`` pieces of pool material (fewer when the pool runs dry); their keygrips."""
        claimed = list(have)
        for _index in range(count):
            keygrip = self.pool.claim(algorithm, lambda grip: in_flight(claimed + [grip]))
            if keygrip is None:
                break
            claimed.append(keygrip)
        return claimed[len(have):]

    def _shred_material(self, keygrips):
        """Remove claimed or generated key files that were not bound (never reuse them elsewhere)."""
        for keygrip in keygrips:
            _gnupg.shred_file(os.path.join(self.private_keys_dir, keygrip + ".key"))

    def _generate_here(self, name_real, name_email, name_comment, algorithm, expire_days, email_fd, created_by):
        with self.keyring_lock(exclusive=True) as keyring_fd:
            fingerprint = self.gnupg.generate_key(name_real, name_email, comment=name_comment, algorithm=algorithm,
                                                  usage=("cert",), subkey_usage=("sign",), expires=expire_days,
                                                  keep_fds=(email_fd, keyring_fd))
        with self.keyring_lock():
            found = _gnupg.find_keys_by(self.gnupg, fingerprint, check_secret=False)
        if len(found) != 1:
            raise KeyStoreError("gpg reported key %s but it is not in the keyring" % fingerprint)
        return key_record(found[0], name_email, origin="generated", created_by=created_by)

    def _new_material(self, algorithm, count, have, in_flight, cancelled=None):
        """Generate ``count`` pieces of key material (racing when cores are idle) into the service's
        key files; ``have`` (keygrips already claimed) plus theirs.

        While it runs, material that lands in the pool first (the refill had a head start, or another
        request's spare) is taken instead, and the generations go to the pool.
        """
        keygrips = list(have)
        race = self.maker.start(algorithm, width=max(count, self.maker.width_for(algorithm)), spare=self.pool,
                                wanted=count)
        watch_pool = self.pool is not None and algorithm in self.pool.sizes
        try:
            while len(keygrips) < len(have) + count:
                winner = race.wait(POOL_WATCH_SECONDS if watch_pool else CANCEL_WATCH_SECONDS if cancelled else None)
                if winner is None and cancelled is not None and cancelled():
                    raise GenerationCancelled("the client went away during key generation")
                if winner is not None:
                    keygrips.append(winner.keygrip)
                    in_flight(keygrips)
                    try:
                        winner.move_key(os.path.join(self.private_keys_dir, winner.keygrip + ".key"))
                    finally:
                        winner.discard()
                    continue
                taken = self._claim(algorithm, 1, in_flight, keygrips) \
                    if watch_pool and self.pool.available(algorithm) else []
                if taken:
                    keygrips += taken
                    race.reduce()
                    log.info("pool %s key material became ready during generation; took it", algorithm)
        except BaseException:
            race.abandon()
            self._shred_material(keygrips[len(have):])
            raise
        race.abandon()
        return keygrips

    def _bind(self, keygrips, name_real, name_email, name_comment, algorithm, expire_days, email_fd, created_by):
        """Make a certify-only primary of ``keygrips[0]`` with the user id and a sign-only subkey of
        ``keygrips[1]``, both created now; the new key's metadata (no listing needed)."""
        primary_grip, signing_grip = keygrips
        # One second back: gpg freezes its clock at a faked time only when it differs from now
        # (add_subkey_from_keygrip), and both parts must get exactly this creation time.
        created = int(time.time()) - 1
        with self.keyring_lock(exclusive=True) as keyring_fd:
            fingerprint = generate_key_from_keygrip(self.gnupg, primary_grip, name_real, name_email,
                                                    comment=name_comment, algorithm=algorithm,
                                                    usage=("cert",), expires=expire_days,
                                                    keep_fds=(email_fd, keyring_fd), created=created)
            try:
                signing_fingerprint = add_subkey_from_keygrip(self.gnupg, fingerprint, signing_grip,
                                                              usage="sign", expires=expire_days,
                                                              created=created, keep_fds=(email_fd, keyring_fd))
            except _gnupg.GpgError:
                # A certify-only key cannot sign: never keep it half made.
                self.gnupg.delete_key(fingerprint, secret=True)
                raise
        return bound_key_record(fingerprint, signing_fingerprint, signing_grip, algorithm,
                                user_id(name_real, name_comment, name_email), created, expire_days, name_email,
                                created_by=created_by)

    # -- signing subkeys -----------------------------------------------------------------

    def add_signing_subkey(self, name, dry_run=False):
        """Give the key ``name`` (email, fingerprint or key id) a sign-only subkey of its primary's
        algorithm that expires with the primary, unless it has a usable one; refreshes metadata and
        the public-key cache. Returns (added?, record, message)."""
        record = self.resolve(name)
        email = record.get("name_email") or ""
        with self.email_lock(email or record["fingerprint"]):
            key = self.lookup_gpg(record["fingerprint"])
            if key is None:
                raise UnknownKey(name)
            usable = [sub for sub in key.subkeys if "sign" in sub.usage and sub.usable and sub.secret_present]
            if usable:
                newest = max(usable, key=lambda sub: sub.created or 0)
                return False, record, "%s already has a usable signing subkey %s" % (key.fingerprint, newest.fingerprint)
            if key.revoked or key.expired:
                raise KeyStoreError("key %s is %s: prolong or replace it first" % (
                    key.fingerprint, "revoked" if key.revoked else "expired"))
            if not key.secret_present:
                raise KeyStoreError("the primary secret of %s is not on this server (an offline primary): add the "
                                    "subkey where the primary is kept" % key.fingerprint)
            algorithm = key.algorithm
            if algorithm not in _gnupg.ALGORITHMS:
                raise KeyStoreError("key %s is %s; a subkey can be added to %s keys only" % (
                    key.fingerprint, algorithm, ", ".join(sorted(_gnupg.ALGORITHMS))))
            if dry_run:
                return False, record, "%s would get a %s signing subkey%s" % (
                    key.fingerprint, algorithm, " expiring with the primary" if key.expires else "")
            expires = _gnupg.isotime(key.expires) if key.expires else "0"
            metadata = self.get_metadata(email) if email else None
            passphrase = self.passphrase_for(metadata) if metadata else None
            with self.keyring_lock(exclusive=True):
                added = self.gnupg.add_subkey(key.fingerprint, algorithm=algorithm, usage="sign", expires=expires,
                                              passphrase=passphrase)
            refreshed = self.lookup_gpg(key.fingerprint)
            if metadata is not None:
                fresh = key_record(refreshed, email, metadata.get("origin", "generated"))
                record = dict(metadata, **{k: fresh[k] for k in RECORD_KEY_FIELDS})
                self.save_metadata(record)
            else:
                record = key_record(refreshed, email or None, origin="keyring")
            with self._alias_cache_lock:
                self._alias_cache.clear()
            self.forget_public_key(key.fingerprint)
            return True, record, "%s: added signing subkey %s (%s)" % (key.fingerprint, added, algorithm)

    def delete(self, name_email: str) -> dict:
        name_email = ascii_lower(name_email)
        with self.email_lock(name_email):
            record = self.get_metadata(name_email)
            if record is None:
                raise UnknownKey(name_email)
            marker = os.path.join(self.pending_dir, _marker_name("deleting", name_email))
            os.replace(self.metadata_path(name_email), marker)
            self._delete_from_keyring(record["fingerprint"])
            with self._alias_cache_lock:
                self._alias_cache.clear()
            self.forget_public_key(record["fingerprint"])
            os.unlink(marker)
            phrase = os.path.join(self.config.phrases_dir, record.get("name_email") or name_email)
            if os.path.exists(phrase):
                os.unlink(phrase)
            return record

    def _delete_from_keyring(self, fingerprint):
        try:
            with self.keyring_lock(exclusive=True):
                self.gnupg.delete_key(fingerprint, secret=True)
        except _gnupg.KeyNotFound:
            pass

    # -- public keys ---------------------------------------------------------------------

    @property
    def pubkey_cache_dir(self):
        return os.path.join(self.config.state_dir, "pubkeys")

    def public_key(self, record: dict) -> bytes:
        """Armored public key; cached per fingerprint so `sign -p` never scans a large keyring.

        The cache is dropped when the key changes through the service (delete, maintain)."""
        path = os.path.join(self.pubkey_cache_dir, record["fingerprint"] + ".asc")
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            pass
        data = self.gnupg.export_public(record["fingerprint"], armor=True)  # callers hold keyring_lock()
        _gnupg.ensure_private_dir(self.pubkey_cache_dir)
        _gnupg.write_private_file(path, data)
        return data

    def forget_public_key(self, fingerprint):
        path = os.path.join(self.pubkey_cache_dir, fingerprint + ".asc")
        if os.path.exists(path):
            os.unlink(path)

    def passphrase_for(self, record: dict):
        """Passphrase of an imported protected key (copr-keygen phrase file), else None."""
        path = os.path.join(self.config.phrases_dir, record.get("name_email") or "-")
        if record.get("protected") and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip("\n")
        return None

    # -- crash recovery ------------------------------------------------------------------

    def reconcile(self):
        """Finish or undo key operations a crash interrupted (see the module docstring)."""
        fixed = []
        self.maker.sweep()
        self._restore_keybox()
        for name in sorted(os.listdir(self.pending_dir)):
            path = os.path.join(self.pending_dir, name)
            if name.startswith(".tmp-"):
                os.unlink(path)
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    record = json.load(handle)
            except (OSError, ValueError):
                os.unlink(path)
                continue
            email = record.get("name_email", "")
            with self.email_lock(email):
                if not os.path.exists(path):
                    continue
                # A marker of an older version is named after the key: "deleting-x#p@c" may name a
                # generation, which has no fingerprint.
                if name.startswith("deleting-") and "fingerprint" in record:
                    self._delete_from_keyring(record["fingerprint"])
                    fixed.append(("deleted", email))
                elif self.get_metadata(email) is None:
                    # "keygrip": a marker written before keys had a signing subkey (one piece).
                    keygrips = record.get("keygrips") or ([record["keygrip"]] if record.get("keygrip") else [])
                    self._finish_generation(email, keygrips)
                    fixed.append(("generation", email))
                os.unlink(path)
        for name in os.listdir(self.config.metadata_dir):
            if name.startswith(".") and name.endswith(".json"):
                self._rename_hidden_metadata(name)
            elif name.startswith(".tmp-"):
                os.unlink(os.path.join(self.config.metadata_dir, name))
        return fixed

    def _rename_hidden_metadata(self, name):
        """Metadata an older version wrote under a hidden name (a key named ".x#p@c"): to the name
        _file_name gives it now, before the ".tmp-" sweep could take it for a leftover."""
        path = os.path.join(self.config.metadata_dir, name)
        try:
            with open(path, encoding="utf-8") as handle:
                email = json.load(handle)["name_email"]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable key metadata %s", name)
            return
        with self.email_lock(email):
            if os.path.exists(path) and not os.path.exists(self.metadata_path(email)):
                os.replace(path, self.metadata_path(email))

    def _restore_keybox(self):
        """Undo gpg's keybox update cut short by a kill between its two renames.

        gpg writes ``pubring.kbx.tmp`` in full, renames ``pubring.kbx`` to ``pubring.kbx~``, then
        the new file into place; killed in between, the next gpg would start an empty keyring.
        Without ``pubring.kbx`` the temporary file is complete (it is renamed only once written).
        """
        home = self.gnupg.homedir
        current = os.path.join(home, "pubring.kbx")
        with self.keyring_lock(exclusive=True):
            if os.path.exists(current):
                return False
            for candidate in (current + ".tmp", current + "~"):
                if os.path.exists(candidate):
                    os.rename(candidate, current)
                    log.warning("restored the keyring %s from %s (a gpg was killed while writing it)", current,
                                os.path.basename(candidate))
                    return True
        return False

    def _finish_generation(self, email, keygrips=()):
        """After a crash during generation: keep a complete key (one that can sign), drop a
        public-only or certify-only half, and shred key material that was claimed or generated but
        never bound."""
        with self.keyring_lock():
            listed = _gnupg.find_keys_by(self.gnupg, "<%s>" % email, secret=False)
        kept = []
        for key in listed:
            try:
                if key.secret_present:
                    signing_part(key)
                    kept.append(key)
                    continue
            except NoSigningKey:
                pass  # killed between binding the primary and adding its signing subkey
            self._delete_from_keyring(key.fingerprint)
        if kept:
            self.save_metadata(key_record(kept[0], email, origin="generated", recovered=True))
        bound = {part.keygrip.upper() for key in kept for part in [key] + key.subkeys}
        for keygrip in keygrips:
            if re.fullmatch(r"[0-9A-Fa-f]{40}", keygrip or "") and keygrip.upper() not in bound:
                _gnupg.shred_file(os.path.join(self.private_keys_dir, keygrip.upper() + ".key"))


GPG_CONF_LINES = (
    # Every generated key is ultimately trusted; re-checking the trustdb on each gpg call grows
    # with the number of keys. The service needs no trust computation; `maintain` checks it daily.
    "no-auto-check-trustdb",
)


def _ensure_gpg_conf(gnupg_home):
    path = os.path.join(gnupg_home, "gpg.conf")
    try:
        with open(path, encoding="utf-8") as handle:
            present = {line.strip() for line in handle}
    except FileNotFoundError:
        present = set()
    missing = [line for line in GPG_CONF_LINES if line not in present]
    if missing:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in missing))


def expire_days(expire, now=None):
    """Days from now until ``expire``, in copr-keygen's forms (its value goes into gpg's Expire-Date):
    0/never, N (days), <n>d|w|m|y (gpg's units: a month is 30 days, a year 365) or YYYY-MM-DD, read
    by the one expiry grammar (_gnupg.parse_expires). 0 means never. A date counts as the whole
    days until it, rounded up."""
    if isinstance(expire, float):
        raise _gnupg.InvalidInput("expire must be 0, a number of days, <n>d|w|m|y or YYYY-MM-DD")
    try:
        spec = _gnupg.parse_expires(expire)
    except _gnupg.InvalidInput as err:
        raise _gnupg.InvalidInput("expire: %s" % err) from None
    if spec == "0":
        return 0
    now = time.time() if now is None else now
    days = -(-(_gnupg.expires_to_epoch(spec, now) - int(now)) // 86400)
    if days <= 0:
        raise _gnupg.InvalidInput("expire %r is not in the future" % (expire,))
    if days > 36500:
        raise _gnupg.InvalidInput("expire must be at most 36500 days (100 years) from now, or 0 for never")
    if now + (days + 1) * 86400 > LAST_OPENPGP_TIME:
        # gpg wraps such a date around: batch generation made a key that expired one second
        # after its creation, and addkey (the RSA subkey) refused it (a 500).
        raise _gnupg.InvalidInput("expire: %d days from now is after 2106-02-07, the last date an OpenPGP "
                                  "key can expire (use fewer days, or 0 for never)" % days)
    return days


def _as_int(value, field):
    if isinstance(value, bool):
        raise _gnupg.InvalidInput("%s must be an integer" % field)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        return int(value)
    raise _gnupg.InvalidInput("%s must be an integer" % field)


# -- self-signature digests (old copr-keygen keys) ------------------------------------------

# OpenPGP hash ids (RFC 4880 9.4, RFC 9580) of SHA-256 or better: SHA256, SHA384, SHA512,
# SHA3-256, SHA3-512. A self-signature with any other digest (MD5, SHA-1, RIPEMD-160, SHA224)
# is re-made: Sequoia's standard policy (rpm-sequoia, dnf5, sqv) rejects SHA-1 ones.
STRONG_CERT_DIGESTS = (8, 9, 10, 12, 14)
DIGEST_NAMES = {1: "MD5", 2: "SHA1", 3: "RIPEMD160", 8: "SHA256", 9: "SHA384", 10: "SHA512", 11: "SHA224",
                12: "SHA3-256", 14: "SHA3-512"}
_PACKET_SIG_RE = re.compile(r"^:signature packet: algo \d+, keyid ([0-9A-F]{16})")
_PACKET_SIG_INFO_RE = re.compile(r"^\s+version \d+, created (\d+), md5len \d+, sigclass 0x([0-9a-f]{2})")
_PACKET_DIGEST_RE = re.compile(r"^\s+digest algo (\d+),")
_PACKET_BACKSIG_RE = re.compile(r"^\s+(?:hashed )?subpkt 32 len \d+ \(signature: v\d+, class 0x19, algo \d+, digest algo (\d+)\)")
_PACKET_KEYID_RE = re.compile(r"^\s+keyid: ([0-9A-F]{16})")


class RemakeError(Exception):
    """A key's self-signatures cannot be re-made here (one readable reason)."""


# How many keys one `gpg --export | gpg --list-packets` reads (a Copr keyring holds thousands).
SELF_SIGNATURE_BATCH = 200


def self_signatures(gnupg, key):
    """The self-signatures in force on ``key`` (a listed Key): what gpg and Sequoia go by.

    A list of ``{"part": "uid"|"subkey", "name": user id or subkey fingerprint, "digest": hash id,
    "backsig": hash id of a signing subkey's back-signature or None, "created": epoch,
    "weak": bool}``, one per user id and per subkey that is neither revoked nor expired; plus
    the newest self-signature time over all parts (the re-made ones must be newer still).
    """
    return self_signatures_of(gnupg, [key])[key.fingerprint]


def self_signatures_of(gnupg, keys):
    """``{fingerprint: self_signatures(...)}`` for many keys, two gpg runs per batch of keys."""
    found = {}
    for start in range(0, len(keys), SELF_SIGNATURE_BATCH):
        batch = {key.fingerprint[-16:].upper(): key for key in keys[start:start + SELF_SIGNATURE_BATCH]}
        data = gnupg.run(["--export"] + [key.fingerprint for key in batch.values()]).stdout
        text = gnupg.run(["--list-packets"], input=data).stdout.decode("utf-8", "replace") if data else ""
        blocks, current = [], None
        for line in text.splitlines():
            if line.startswith(":public key packet:"):
                current = []
                blocks.append(current)
            if current is not None:
                current.append(line)
        for lines in blocks:
            primary_id = next((m.group(1) for m in map(_PACKET_KEYID_RE.match, lines) if m), None)
            if primary_id in batch:
                found[batch[primary_id].fingerprint] = _parse_self_signatures(lines, batch[primary_id], primary_id)
    for key in keys:
        found.setdefault(key.fingerprint, ([], 0))
    return found


def _parse_self_signatures(lines, key, primary_id):
    subkeys = {sub.fingerprint[-16:].upper(): sub for sub in key.subkeys}
    parts, order, owner, sig = {}, [], None, None
    for line in lines:
        if line.startswith(":"):
            sig = None
            if line.startswith(":user ID packet:"):
                owner = ("uid", line[len(":user ID packet: "):].strip().strip('"'))
            elif line.startswith(":public sub key packet:"):
                owner = ("subkey", None)
            elif line.startswith(":public key packet:"):
                owner = None
            else:
                match = _PACKET_SIG_RE.match(line)
                if match and owner is not None and match.group(1) == primary_id:
                    sig = {"created": 0, "class": None, "digest": None, "backsig": None}
                    parts.setdefault(owner, []).append(sig)
                    if owner not in order:
                        order.append(owner)
            continue
        if owner == ("subkey", None):
            match = _PACKET_KEYID_RE.match(line)
            if match:
                owner = ("subkey", match.group(1))
            continue
        if sig is None:
            continue
        for regex, field in ((_PACKET_SIG_INFO_RE, "info"), (_PACKET_DIGEST_RE, "digest"),
                             (_PACKET_BACKSIG_RE, "backsig")):
            match = regex.match(line)
            if match and field == "info":
                sig["created"], sig["class"] = int(match.group(1)), int(match.group(2), 16)
            elif match:
                sig[field] = int(match.group(1))
    found, newest = [], 0
    for owner in order:
        sigs = parts[owner]
        kind, name = owner
        binding = (0x18,) if kind == "subkey" else (0x10, 0x11, 0x12, 0x13)
        revocation = 0x28 if kind == "subkey" else 0x30
        certs = [s for s in sigs if s["class"] in binding]
        if not certs:
            continue
        current = max(certs, key=lambda s: s["created"])
        newest = max([newest] + [s["created"] for s in certs])
        if any(s["class"] == revocation for s in sigs):
            continue  # a revoked user id or subkey: nothing to re-make
        if kind == "subkey":
            sub = subkeys.get(name)
            if sub is None or sub.revoked or sub.expired:
                continue
            name = sub.fingerprint
            signs = "sign" in sub.usage
        else:
            signs = False
        weak = current["digest"] not in STRONG_CERT_DIGESTS or (
            signs and current["backsig"] is not None and current["backsig"] not in STRONG_CERT_DIGESTS)
        found.append({"part": kind, "name": name, "digest": current["digest"],
                      "backsig": current["backsig"] if signs else None, "created": current["created"], "weak": weak})
    return found, newest


def weak_self_signatures(gnupg, key):
    """The parts of ``key`` whose self-signature in force uses a digest weaker than SHA-256."""
    return [part for part in self_signatures(gnupg, key)[0] if part["weak"]]


def weak_self_signatures_of(gnupg, keys):
    """``{fingerprint: weak parts}`` for many keys (only those with weak parts)."""
    found = {}
    for fingerprint, (parts, _newest) in self_signatures_of(gnupg, keys).items():
        weak = [part for part in parts if part["weak"]]
        if weak:
            found[fingerprint] = weak
    return found


def describe_parts(parts):
    """``user id "x" (SHA1), subkey F00 (SHA256, back-signature SHA1)`` for a report line."""
    words = []
    for part in parts:
        digests = DIGEST_NAMES.get(part["digest"], str(part["digest"]))
        if part.get("backsig") is not None:
            digests += ", back-signature " + DIGEST_NAMES.get(part["backsig"], str(part["backsig"]))
        if part["part"] == "uid":
            words.append("user id %r (%s)" % (part["name"], digests))
        else:
            words.append("subkey %s (%s)" % (part["name"], digests))
    return ", ".join(words)


def remake_self_signatures(gnupg, key, passphrase=None, lock=None):
    """Re-make ``key``'s weak self-signatures with ``_gnupg.CERT_DIGEST``; returns the parts re-made.

    Expiry stays what it is (a key that does not expire stays so) and fingerprints stay the same.
    The work happens in a scratch GnuPG home holding a copy of the key; only public packets come
    back (an import that adds signatures), after the copy was checked:

    * user ids: new certifications dated one second after the newest self-signature of the key,
      so that they are the ones in force for gpg too (a later prolongation copies them, not the
      SHA-1 ones);
    * subkeys: gpg keeps a signing subkey's back-signature (made by the subkey) when it re-signs a
      binding, so the subkey is taken off the copy and bound again from its own key material
      (same creation time, hence the same fingerprint): a binding and back-signature dated at its
      creation (Sequoia's sqv judges a signature by the self-signatures of its own moment, so
      what the subkey signed before stays verifiable), then one dated like the user ids.

    User-id certifications can only be dated after the newest existing self-signature (gpg
    replaces the one in force); signatures made before that moment keep depending on the old
    SHA-1 certification under sqv (rpm-sequoia falls back to the key as it is now).

    Needs the primary secret (``sec#`` raises RemakeError) and, for a subkey, its secret.
    ``lock``: a context manager held while the store's keyring changes.
    """
    weak = weak_self_signatures(gnupg, key)
    if not weak:
        return []
    if not key.secret_present:
        raise RemakeError("the primary secret key is not here (sec#)")
    subkeys = {sub.fingerprint: sub for sub in key.subkeys}
    for part in weak:
        if part["part"] == "subkey" and not subkeys[part["name"]].secret_present:
            raise RemakeError("the secret of subkey %s is not here" % part["name"])
    _parts, newest = self_signatures(gnupg, key)
    moment = max([newest, key.created or 0] + [sub.created or 0 for sub in key.subkeys]) + 1
    if moment > time.time() + 60:
        raise RemakeError("its self-signatures are dated in the future (%s); check the clocks"
                          % _gnupg.isotime(moment - 1))
    while int(time.time()) <= moment:  # gpg only fakes a time that lies in the past
        time.sleep(0.2)
    secret = gnupg.run(["--armor", "--export-secret-keys", key.fingerprint],
                       passphrase=passphrase if passphrase is not None else "").stdout

    def expiry(part):
        return _gnupg.isotime(part.expires) if part.expires else "0"

    with _gnupg.TemporaryGnuPG(prefix="pkgsign-remake-") as scratch:
        # Also the back-signatures gpg makes while binding a subkey: they follow cert-digest-algo.
        _gnupg.write_private_file(os.path.join(scratch.homedir, "gpg.conf"),
                                  ("cert-digest-algo %s\n" % _gnupg.CERT_DIGEST).encode())
        scratch.import_keys(secret)
        if passphrase:
            scratch.change_passphrase(key.fingerprint, passphrase, "")
        rebound = []
        for part in weak:
            if part["part"] != "subkey":
                continue
            sub = subkeys[part["name"]]
            scratch.run(["--edit-key", key.fingerprint, "key %s" % sub.fingerprint, "delkey", "save"],
                        command_input=["y"])
            made = add_subkey_from_keygrip(scratch, key.fingerprint, sub.keygrip, usage=sub.usage,
                                           expires=expiry(sub), created=sub.created)
            if made.upper() != sub.fingerprint.upper():
                raise RemakeError("subkey %s came back as %s" % (sub.fingerprint, made))
            rebound.append(sub)
        # The bindings dated at each subkey's creation: the next step replaces them in the copy.
        exports = [scratch.export_public(key.fingerprint, armor=False)] if rebound else []
        if any(part["part"] == "uid" for part in weak):
            scratch.set_expire(key.fingerprint, expiry(key), at=moment)
        for sub in rebound:
            scratch.set_expire(key.fingerprint, expiry(sub), subkeys=[sub.fingerprint], at=moment)
        copy = scratch.get_key(key.fingerprint)
        _check_same_key(key, copy)
        left = weak_self_signatures(scratch, copy)
        if left:
            raise RemakeError("still weak after re-making: %s" % describe_parts(left))
        exports.append(scratch.export_public(key.fingerprint, armor=False))
    with lock if lock is not None else _nothing():
        for public in exports:
            gnupg.import_keys(public)
        fresh = gnupg.get_key(key.fingerprint, secret=True)
    _check_same_key(key, fresh)
    left = weak_self_signatures(gnupg, fresh)
    if left:
        raise RemakeError("still weak in the keyring after the import: %s" % describe_parts(left))
    return weak


def _check_same_key(before, after):
    """The re-made key must have the same parts with the same expiry."""
    def shape(key):
        return [(part.fingerprint.upper(), part.expires, part.revoked) for part in [key] + key.subkeys]
    if sorted(shape(before)) != sorted(shape(after)):
        raise RemakeError("the re-made key differs from the original (parts or expiry): %s != %s"
                          % (sorted(shape(after)), sorted(shape(before))))


@contextmanager
def _nothing():
    yield
