"""Bearer tokens: stored hashed in a JSON file, re-read when it changes; per-token rate limits.

tokens.json::

    {"tokens": {"<id>": {"sha256": "<hex of sha256(secret)>", "scopes": ["sign", "keygen"],
                         "keys": ["*#*@copr", "modern"], "rate": "600/60", "created": 1700000000,
                         "client_cert_sha256": "<hex of sha256(DER client certificate)>"}}}

Only the hash is stored, so a stolen tokens file signs nothing. Lookup is by the hash of the
presented secret, so comparing secrets never leaks timing about a stored one.

Key patterns bind to fingerprints (docs/security.md, "Tokens bind to keys"): ``pkgsign-admin token
add`` resolves each pattern to the keys it matches then and stores them in ``pinned``
(pattern -> primary fingerprints); a pinned pattern covers those keys only, so a later key with the
same email (a new rotation cycle, an alias moved) needs ``pkgsign-admin token grant``. ``granted``
(fingerprint -> the key's names at the time) lists keys granted since, among them the keys the
token made itself through /gen_key. Two kinds of pattern are not pinned, by the operator's explicit
choice: ``*`` (every key) and a pattern written ``future:<pattern>`` (the keys it matches now and
later, for per-project tokens that must sign with keys /gen_key makes later). An entry without
``pinned`` (written before this rule) matches every pattern by name, as it always did.

A token with ``client_cert_sha256`` is bound to that TLS client certificate: it is accepted
only on a connection whose verified client certificate (mod_ssl's ``SSL_CLIENT_CERT``, never a
request header) has that fingerprint, so a copied secret alone is useless.
"""

import base64
import binascii
import fcntl
import fnmatch
import hashlib
import json
import logging
import math
import os
import secrets
import struct
import threading
import time
from contextlib import contextmanager

from . import _gnupg
from .config import ascii_lower, parse_rate

log = logging.getLogger(__name__)

SCOPES = ("sign", "keygen", "admin")
FUTURE_PREFIX = "future:"  # a key pattern that covers keys made later too (never pinned)


def pattern_is_pinned(pattern: str) -> bool:
    """True for a key pattern that binds to the fingerprints it matches when the token is made."""
    return pattern != "*" and not ascii_lower(pattern).startswith(FUTURE_PREFIX)


_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class TokenFileError(ValueError):
    pass


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def certificate_sha256(pem: str) -> str:
    """SHA-256 (lower-case hex) of the DER form of the first certificate in a PEM text."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate")
    try:
        # Whitespace-insensitive: proxies and environments sometimes fold the PEM lines.
        der = base64.b64decode("".join(pem[start + len(begin):stop].split()), validate=True)
    except (ValueError, binascii.Error) as err:
        raise ValueError("unreadable PEM certificate: %s" % err) from None
    if not der:
        raise ValueError("empty PEM certificate")
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons and spaces dropped)."""
    value = "".join(text.split()).replace(":", "").lower()
    if len(value) != 64 or not set(value) <= set("0123456789abcdef"):
        raise TokenFileError("a client certificate fingerprint is 64 hex digits (SHA-256), got %r" % text)
    return value


def new_secret() -> str:
    return "pks_" + secrets.token_urlsafe(32)  # 256 random bits


MIN_SECRET_BITS = 128


def secret_strength_problem(secret: str):
    """Why an operator-chosen secret is too weak to be a token, or None.

    A conservative estimate, not a measure: characters counted once per run of repeats, each worth
    log2 of the number of distinct characters the secret uses (``aaaa`` is one character of an
    alphabet of one; 32 hex digits come to at most 32 x 4 bits).
    """
    runs = sum(1 for index, char in enumerate(secret) if index == 0 or char != secret[index - 1])
    distinct = len(set(secret))
    bits = runs * math.log2(distinct) if distinct > 1 else 0.0
    if bits >= MIN_SECRET_BITS:
        return None
    return ("token secret too weak: about %d bits estimated, %d needed (estimate: %d characters not counting "
            "repeats x log2 of the %d distinct characters used); use 40 or more random letters and digits "
            "(e.g. openssl rand -base64 32), or let pkgsign-admin generate one" % (bits, MIN_SECRET_BITS, runs, distinct))


class Token:
    def __init__(self, token_id, entry, default_rate):
        self.id = token_id
        self.scopes = frozenset(entry.get("scopes", ()))
        self.key_patterns = [ascii_lower(p) for p in entry.get("keys", ())]
        pinned = entry.get("pinned")
        self._open, self._pinned = [], []
        for pattern in self.key_patterns:
            if pinned is None or not pattern_is_pinned(pattern):
                self._open.append(pattern[len(FUTURE_PREFIX):] if pattern.startswith(FUTURE_PREFIX) else pattern)
            else:  # a pinned pattern missing from ``pinned`` (edited by hand) covers no key
                fingerprints = pinned.get(pattern, ())
                self._pinned.append((pattern, frozenset(f.upper() for f in fingerprints)))
        granted = entry.get("granted") or {}
        self._granted = frozenset(f.upper() for f in granted)
        self._granted_names = frozenset(ascii_lower(n) for names in granted.values() for n in names) | \
            frozenset(ascii_lower(f) for f in granted)
        rate = entry.get("rate")
        self.rate = parse_rate(rate) if rate not in (None, "") else default_rate
        self.client_cert_sha256 = entry.get("client_cert_sha256") or None
        max_keys = entry.get("max_keys")  # its own key quota (budget.py); None: [budget] keys_per_token
        self.max_keys = max_keys if isinstance(max_keys, int) and not isinstance(max_keys, bool) and max_keys >= 0 \
            else None

    def certificate_refusal(self, client_cert_pem):
        """None when this token may be used with the connection's client certificate (PEM or
        None), else why not. Tokens without a binding accept any connection."""
        if self.client_cert_sha256 is None:
            return None
        if not client_cert_pem:
            return "token %s is bound to a client certificate; the connection presented none" % self.id
        try:
            presented = certificate_sha256(client_cert_pem)
        except ValueError:
            return "token %s is bound to a client certificate; the connection's is unreadable" % self.id
        if not secrets.compare_digest(presented, self.client_cert_sha256):
            return "token %s is bound to another client certificate" % self.id
        return None

    def allows_key(self, names, fingerprint=None) -> bool:
        """True when this token may use the key with these names (email, fingerprint, alias ...)
        and primary ``fingerprint``: an open pattern matches a name, or the key was granted, or a
        pinned pattern matches a name and was pinned to that fingerprint.

        Without ``fingerprint`` (before any key lookup, or for a key not made yet) the answer is
        whether the names could be covered: a refusal then is final, a consent is not."""
        names = [ascii_lower(name) for name in names]
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self._open for name in names):
            return True
        if fingerprint is None:
            return any(name in self._granted_names for name in names) or \
                any(fnmatch.fnmatchcase(name, pattern) for pattern, _fps in self._pinned for name in names)
        fingerprint = fingerprint.upper()
        if fingerprint in self._granted:
            return True
        return any(fingerprint in fps and any(fnmatch.fnmatchcase(name, pattern) for name in names)
                   for pattern, fps in self._pinned)

    @property
    def pins_keys(self):
        """True when this token's patterns bind to fingerprints (a key it makes is granted to it)."""
        return bool(self._pinned)


class TokenStore:
    """The tokens file as the server sees it; cheap to consult on every request."""

    def __init__(self, path, default_rate=None):
        self.path = path
        self.default_rate = default_rate
        self._lock = threading.Lock()
        self._stamp = None
        self._by_hash = {}

    def _reload_if_changed(self):
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            by_hash = {}
            if stamp is not None:
                for token_id, entry in read_tokens(self.path).items():
                    if not isinstance(entry, dict) or entry.get("revoked"):
                        continue
                    try:
                        by_hash[entry["sha256"]] = Token(token_id, entry, self.default_rate)
                    except (KeyError, TypeError, ValueError) as err:
                        # One bad entry (edited by hand) must not lock every other client out.
                        log.error("ignoring token %r in %s: %s", token_id, self.path, err)
            self._by_hash = by_hash
            self._stamp = stamp

    def authenticate(self, secret: str):
        """The Token for a presented secret, or None."""
        self._reload_if_changed()
        return self._by_hash.get(hash_secret(secret))


RATE_LIMIT_SUBDIR = "ratelimit"
_NS = 1000000000
_TAT = struct.Struct("<q")  # a key file holds one signed 64-bit wall-clock time in nanoseconds


def rate_limit_dir(state_dir):
    """Where the shared rate-limit state of the instance with this state_dir lives."""
    return os.path.join(state_dir, RATE_LIMIT_SUBDIR)


def _gcra(stored_tat, now, rate, cost=1):
    """One GCRA step: (new theoretical arrival time, None) to admit, or (None, seconds to wait).

    N requests per W seconds with a burst of N: each admitted request moves the key's
    theoretical arrival time (TAT) on by W/N; a request is refused while that would put the
    TAT more than N intervals ahead of now. Integer nanoseconds, so a burst is exactly N.
    """
    limit, window = rate
    interval = max(1, window * _NS // limit)
    tolerance = interval * limit
    # max(): an idle key starts from a full burst; min(): a wall clock set back leaves no key
    # refused for longer than one window.
    tat = min(max(stored_tat, now), now + tolerance) + interval * cost  # cost: units of work (budgets)
    if tat - now > tolerance:
        return None, max(1, -(-(tat - tolerance - now) // _NS))
    return tat, None


class RateLimiter:
    """Request limit per key (token id or client address): N requests per W seconds, burst N.

    With a state_dir, the one number each key needs lives in ``<state_dir>/ratelimit/<sha256 of
    the key>`` (0600 in a 0700 directory), read and rewritten under flock, so every process of
    the instance (mod_wsgi runs several) counts against the same limit. Without one (tests,
    tools) the state is this process's. A key file whose time is past carries nothing a missing
    file would not; ``remove_idle_rate_limit_files`` (pkgsign-admin maintain) deletes those.
    """

    _MEMORY_PRUNE_AT = 4096

    def __init__(self, state_dir=None):
        self.directory = None if state_dir is None else rate_limit_dir(state_dir)
        self._lock = threading.Lock()
        self._memory = {}
        self._file_error_logged = None
        if self.directory is not None:
            try:
                _gnupg.ensure_private_dir(self.directory)
            except OSError as err:  # serve anyway; check() falls back to a per-process limit and says so
                log.error("cannot create rate-limit state directory %s: %s", self.directory, err)

    def check(self, key, rate, cost=1):
        """None if the request may proceed, else the seconds to wait (Retry-After). ``cost``: how
        many units of ``rate`` this request spends (a budget of signatures charges one per digest)."""
        if rate is None:
            return None
        if self.directory is not None:
            try:
                return self._check_file(key, rate, cost)
            except OSError as err:
                # Broken state directory (full, permissions): keep limiting, per process, and say so.
                now = time.monotonic()
                if self._file_error_logged is None or now - self._file_error_logged > 60:
                    self._file_error_logged = now
                    log.error("shared rate-limit state in %s unusable (%s); limiting per process", self.directory, err)
        return self._check_memory(key, rate, cost)

    def _check_memory(self, key, rate, cost=1):
        with self._lock:
            now = time.time_ns()
            tat, wait = _gcra(self._memory.get(key, 0), now, rate, cost)
            if tat is not None:
                if len(self._memory) >= self._MEMORY_PRUNE_AT:
                    self._memory = {k: v for k, v in self._memory.items() if v > now}
                self._memory[key] = tat
            return wait

    def _check_file(self, key, rate, cost=1):
        path = os.path.join(self.directory, hashlib.sha256(key.encode("utf-8")).hexdigest())
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:
                    continue  # removed as idle while we waited for the lock: use the new file
                raw = os.pread(fd, _TAT.size, 0)
                tat, wait = _gcra(_TAT.unpack(raw)[0] if len(raw) == _TAT.size else 0, time.time_ns(), rate, cost)
                if tat is not None:
                    os.pwrite(fd, _TAT.pack(tat), 0)
                return wait
            finally:
                os.close(fd)  # also releases the lock


def remove_idle_rate_limit_files(state_dir):
    """Delete key files whose time is past (their keys are back at a full burst): (removed, kept)."""
    directory = rate_limit_dir(state_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0, 0
    removed = kept = 0
    for name in names:
        if len(name) != 64 or not set(name) <= set("0123456789abcdef"):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                kept += 1  # in use right now, so not idle
                continue
            raw = os.pread(fd, _TAT.size, 0)
            if len(raw) == _TAT.size and _TAT.unpack(raw)[0] > time.time_ns():
                kept += 1
                continue
            # Unlinked under the lock: a request waiting on this file sees st_nlink 0 and reopens.
            os.unlink(path)
            removed += 1
        finally:
            os.close(fd)
    return removed, kept


# -- the file, as pkgsign-admin edits it ----------------------------------------------------

def read_tokens(path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise TokenFileError("cannot read tokens file %s: %s" % (path, err)) from err
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict):
        raise TokenFileError("tokens file %s has no 'tokens' object" % path)
    return tokens


def _serialized(tokens) -> bytes:
    return (json.dumps({"tokens": tokens}, indent=1, sort_keys=True) + "\n").encode()


@contextmanager
def editing(path):
    """Read-modify-write of the tokens file under an exclusive lock; written atomically 0600, and
    only when the content changed (an unchanged file keeps its bytes and mtime, so the server
    does not even reload it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        _gnupg.ensure_private_dir(directory)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        tokens = read_tokens(path)
        before = _serialized(tokens)
        yield tokens
        after = _serialized(tokens)
        if after != before:
            _gnupg.write_private_file(path, after)
    finally:
        os.close(lock_fd)


def validate_token_fields(token_id, scopes, key_patterns, rate=None, max_keys=None):
    if not token_id or len(token_id) > 64 or not set(token_id) <= _ID_CHARS:
        raise TokenFileError("token id must be 1-64 characters of letters, digits, '.', '_', '-'")
    if not scopes:
        raise TokenFileError("a token needs at least one scope (%s)" % ", ".join(SCOPES))
    for scope in scopes:
        if scope not in SCOPES:
            raise TokenFileError("unknown scope %r (use %s)" % (scope, ", ".join(SCOPES)))
    if not key_patterns:
        raise TokenFileError("a token needs at least one key pattern (use '*' for every key)")
    for pattern in key_patterns:
        if not pattern or any(ord(c) < 0x21 for c in pattern):
            raise TokenFileError("invalid key pattern %r" % pattern)
    if rate not in (None, ""):
        parse_rate(rate)
    if max_keys not in (None, "") and (not str(max_keys).isdigit() or int(max_keys) > 10 ** 9):
        raise TokenFileError("max keys must be a number of keys, 1 to 1000000000 (0: no quota of its own), not %r" % max_keys)


def add_token(path, token_id, scopes, key_patterns, secret=None, rate=None, replace=False, client_cert_sha256=None,
              pinned=None, granted=None, max_keys=None):
    """Add (or with ``replace`` rotate) a token; returns the secret. ``client_cert_sha256``
    binds it to one TLS client certificate. ``pinned`` (pattern -> fingerprints, from
    ``KeyStore.pin_patterns``) binds the patterns to keys; None writes a name-matching entry
    (the behaviour of tokens written before pinning). ``granted``: keys granted since."""
    validate_token_fields(token_id, scopes, key_patterns, rate, max_keys)
    if client_cert_sha256 not in (None, ""):
        client_cert_sha256 = normalize_fingerprint(client_cert_sha256)
    secret = secret if secret is not None else new_secret()
    if secret_strength_problem(secret):
        raise TokenFileError(secret_strength_problem(secret))
    with editing(path) as tokens:
        if token_id in tokens and not tokens[token_id].get("revoked") and not replace:
            raise TokenFileError("token %r exists (revoke it or use --replace to rotate)" % token_id)
        digest = hash_secret(secret)
        if digest in revoked_hashes(tokens.get(token_id)):
            raise TokenFileError("that secret was revoked with token %r: a revoked secret stays revoked" % token_id)
        problem = _secret_taken_elsewhere(tokens, token_id, digest)
        if problem:
            raise TokenFileError(problem)
        entry = {"sha256": digest, "scopes": sorted(set(scopes)), "keys": list(key_patterns),
                 "created": int(time.time())}
        if rate not in (None, ""):
            entry["rate"] = rate
        if client_cert_sha256:
            entry["client_cert_sha256"] = client_cert_sha256
        if max_keys not in (None, ""):
            entry["max_keys"] = int(max_keys)
        if pinned is not None:
            entry["pinned"] = {ascii_lower(pattern): sorted(set(fps)) for pattern, fps in pinned.items()}
            entry["granted"] = dict(granted or {})
        tokens[token_id] = _carry_revoked(tokens.get(token_id), entry)
    return secret


def revoke_token(path, token_id, missing_ok=False, dry_run=False):
    """Revoke a token: "revoked", or "unchanged" when it already was (its entry is left as it is),
    or with ``missing_ok`` "missing" for an id never registered. ``dry_run`` writes nothing."""
    def decide(tokens):
        if token_id not in tokens:
            if missing_ok:
                return "missing"
            raise TokenFileError("no token %r" % token_id)
        return "unchanged" if tokens[token_id].get("revoked") else "revoked"

    if dry_run:
        return decide(read_tokens(path))
    with editing(path) as tokens:
        action = decide(tokens)
        if action == "revoked":
            tokens[token_id]["revoked"] = int(time.time())
            tokens[token_id]["sha256"] = "revoked:" + tokens[token_id]["sha256"]
    return action


# -- ensure: the token exactly as configuration management describes it ----------------------

def _unrevoked_hash(stored):
    """The secret hash of an entry, revoked or not (a revoked one is stored as revoked:<hash>)."""
    while stored.startswith("revoked:"):
        stored = stored[len("revoked:"):]
    return stored


def revoked_hashes(entry):
    """Every secret hash revoked under this entry's id: its own when it is revoked, and those of
    the revoked tokens it replaced (``revoked_sha256``, carried from entry to entry, so a secret
    revoked two generations ago is still known)."""
    if not isinstance(entry, dict):
        return set()
    found = {value for value in entry.get("revoked_sha256") or () if isinstance(value, str)}
    if entry.get("revoked"):
        found.add(_unrevoked_hash(entry.get("sha256", "")))
    return found


def _secret_taken_elsewhere(tokens, token_id, digest):
    """Why the secret hash ``digest`` cannot be ``token_id``'s because of another id, or None:
    revoked there (a revoked secret may have leaked: never valid again) or in use there (one
    secret, one token)."""
    for other_id, entry in tokens.items():
        if other_id == token_id or not isinstance(entry, dict):
            continue
        if digest in revoked_hashes(entry):
            return "that secret was revoked with token %r: a revoked secret stays revoked" % other_id
        if entry.get("sha256") == digest:
            return "that secret is already used by token %r" % other_id
    return None


def _carry_revoked(old, new):
    """``new`` replaces ``old`` under one id: it keeps the list of secrets revoked there."""
    history = revoked_hashes(old)
    if history:
        new["revoked_sha256"] = sorted(history)
    return new


def _wanted_fields(digest, scopes, key_patterns, rate, binding, max_keys):
    return {"secret": digest, "scopes": sorted(set(scopes)), "keys": list(key_patterns), "rate": rate or None,
            "client_cert_sha256": binding or None, "max_keys": None if max_keys in (None, "") else int(max_keys)}


def _registered_fields(entry):
    return {"secret": entry.get("sha256"), "scopes": sorted(set(entry.get("scopes", ()))),
            "keys": list(entry.get("keys", ())), "rate": entry.get("rate") or None,
            "client_cert_sha256": entry.get("client_cert_sha256") or None, "max_keys": entry.get("max_keys")}


def _plan_ensure(tokens, token_id, wanted, replace_revoked):
    """(action, changed field names, patterns to pin now) for making ``token_id`` as ``wanted``,
    or TokenFileError when that is refused. A revoked token stays revoked: only with
    ``replace_revoked`` and a secret never used before does its id become a new token."""
    digest = wanted["secret"]
    problem = _secret_taken_elsewhere(tokens, token_id, digest)
    if problem:
        raise TokenFileError(problem)
    entry = tokens.get(token_id)
    revoked = isinstance(entry, dict) and entry.get("revoked")
    if revoked and not replace_revoked:
        raise TokenFileError("token %r is revoked and stays revoked: give a new secret and --replace-revoked to "
                             "make a new token under that id, or use another id" % token_id)
    if digest in revoked_hashes(entry):  # its own revoked secret, now or generations ago
        raise TokenFileError("token %r was revoked with that secret: a revoked secret stays revoked, give a new "
                             "one" % token_id)
    if revoked:
        entry = None  # a new token: nothing of the revoked one carries over (but its revoked secrets)
    if not isinstance(entry, dict):
        return "created", sorted(name for name, value in wanted.items() if value is not None), [p for p in wanted["keys"] if pattern_is_pinned(p)]
    registered = _registered_fields(entry)
    changes = [name for name in wanted if wanted[name] != registered[name]]
    if not changes:
        return "unchanged", [], []
    if "keys" not in changes:
        return "updated", changes, []  # the patterns stay bound as they were
    kept = entry.get("pinned") or {}
    return "updated", changes, [p for p in wanted["keys"] if pattern_is_pinned(p) and ascii_lower(p) not in kept]


def _granted_still_covered(granted, key_patterns):
    """The granted keys one of whose names a pattern of the new list still matches: a change of
    patterns never widens the token, and keeps the keys it made or was granted that it still names."""
    patterns = [ascii_lower(p)[len(FUTURE_PREFIX):] if ascii_lower(p).startswith(FUTURE_PREFIX) else ascii_lower(p)
                for p in key_patterns]
    return {fingerprint: names for fingerprint, names in granted.items()
            if any(fnmatch.fnmatchcase(ascii_lower(name), pattern) for name in list(names) + [fingerprint]
                   for pattern in patterns)}


def _ensured_entry(entry, action, wanted, pins_now):
    now = int(time.time())
    new = {"sha256": wanted["secret"], "scopes": wanted["scopes"], "keys": wanted["keys"],
           "created": entry.get("created", now) if action == "updated" else now}
    if action == "updated":
        new["updated"] = now
    for name in ("rate", "client_cert_sha256", "max_keys"):
        if wanted[name] is not None:
            new[name] = wanted[name]
    if action == "updated" and entry.get("keys") == wanted["keys"]:
        for name in ("pinned", "granted"):  # the same patterns: bound exactly as before (never re-pinned)
            if name in entry:
                new[name] = entry[name]
        return new
    kept = entry.get("pinned") or {} if action == "updated" else {}
    new["pinned"] = {ascii_lower(p): kept[ascii_lower(p)] if ascii_lower(p) in kept
                     else sorted(set(pins_now.get(ascii_lower(p), ())))
                     for p in wanted["keys"] if pattern_is_pinned(p)}
    new["granted"] = _granted_still_covered(entry.get("granted") or {}, wanted["keys"]) if action == "updated" else {}
    return new


def ensure_token(path, token_id, scopes, key_patterns, secret, rate=None, client_cert_sha256=None, max_keys=None,
                 resolve_pins=None, replace_revoked=False, dry_run=False):
    """Make the token ``token_id`` exactly this (secret, scopes, patterns as given, rate, client
    certificate binding, key quota), writing only when something differs. Returns the answer
    ``{"id", "changed", "action": created|updated|unchanged, "changes": [field names], "pinned":
    {pattern: keys bound}}`` (never the secret or its hash).

    Patterns the token had already keep their binding (``pinned``, ``granted``); only patterns
    new to it are bound, by ``resolve_pins(patterns) -> {pattern: fingerprints}``
    (``KeyStore.pin_patterns``), to the keys they match now. ``dry_run`` decides the same without
    writing (check mode)."""
    validate_token_fields(token_id, scopes, key_patterns, rate, max_keys)
    if client_cert_sha256 not in (None, ""):
        client_cert_sha256 = normalize_fingerprint(client_cert_sha256)
    wanted = _wanted_fields(hash_secret(secret), scopes, key_patterns, rate, client_cert_sha256, max_keys)
    # Pins are resolved before the tokens file is locked (the key store takes locks of its own).
    action, changes, to_pin = _plan_ensure(read_tokens(path), token_id, wanted, replace_revoked)
    if "secret" in changes and secret_strength_problem(secret):
        raise TokenFileError(secret_strength_problem(secret))
    pins_now = {ascii_lower(p): fps for p, fps in (resolve_pins(to_pin) if to_pin and resolve_pins else {}).items()}
    if not dry_run and action != "unchanged":
        with editing(path) as tokens:
            again = _plan_ensure(tokens, token_id, wanted, replace_revoked)
            if again != (action, changes, to_pin):
                raise TokenFileError("the tokens file changed while token %r was being compared: run again" % token_id)
            made = _ensured_entry(tokens.get(token_id) or {}, action, wanted, pins_now)
            tokens[token_id] = _carry_revoked(tokens.get(token_id), made)
    return {"id": token_id, "changed": action != "unchanged", "action": action, "changes": changes,
            "pinned": {ascii_lower(p): len(pins_now.get(ascii_lower(p), ())) for p in to_pin}}


def grant_key(path, token_id, fingerprint, names, only_if_pinning=False):
    """Grant the key ``fingerprint`` (known by ``names``) to the token: an explicit act of the
    operator (``pkgsign-admin token grant``) or /gen_key granting a key a token made to it.
    Returns False when there was nothing to do (no such token, revoked, name-matching entry with
    ``only_if_pinning``)."""
    with editing(path) as tokens:
        entry = tokens.get(token_id)
        if not isinstance(entry, dict) or entry.get("revoked"):
            if only_if_pinning:
                return False
            raise TokenFileError("no active token %r" % token_id)
        if "pinned" not in entry and only_if_pinning:
            return False  # a name-matching entry (written before pinning) covers its names anyway
        granted = entry.setdefault("granted", {})
        granted[fingerprint.upper()] = sorted({ascii_lower(name) for name in names})
    return True
