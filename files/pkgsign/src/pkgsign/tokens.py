"""Bearer tokens: stored hashed in a JSON file, re-read when it changes; per-token rate limits.

tokens.json::

    {"tokens": {"<id>": {"sha256": "<hex of sha256(secret)>", "scopes": ["sign", "keygen"],
                         "keys": ["*#*@copr", "modern"], "rate": "600/60", "created": 1700000000}}}

Only the hash is stored, so a stolen tokens file signs nothing. Lookup is by the hash of the
presented secret, so comparing secrets never leaks timing about a stored one.
"""

import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from contextlib import contextmanager

from . import _gnupg
from .config import parse_rate

log = logging.getLogger(__name__)

SCOPES = ("sign", "keygen", "admin")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class TokenFileError(ValueError):
    pass


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return "pks_" + secrets.token_urlsafe(32)


class Token:
    def __init__(self, token_id, entry, default_rate):
        self.id = token_id
        self.scopes = frozenset(entry.get("scopes", ()))
        self.key_patterns = [p.lower() for p in entry.get("keys", ())]
        rate = entry.get("rate")
        self.rate = parse_rate(rate) if rate not in (None, "") else default_rate

    def allows_key(self, names) -> bool:
        """True when a key pattern matches any name of the key (email, fingerprint, alias)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.key_patterns for name in names)


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


class RateLimiter:
    """Sliding-window request counter per key (token id or client address), per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events = {}

    def check(self, key, rate):
        """None if the request may proceed, else the seconds to wait (Retry-After)."""
        if rate is None:
            return None
        limit, window = rate
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - window:
                events.popleft()
            if len(events) >= limit:
                return max(1, int(events[0] + window - now + 0.999))
            events.append(now)
            return None


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


@contextmanager
def editing(path):
    """Read-modify-write of the tokens file under an exclusive lock; written atomically 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        _gnupg.ensure_private_dir(directory)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        tokens = read_tokens(path)
        yield tokens
        _gnupg.write_private_file(path, (json.dumps({"tokens": tokens}, indent=1, sort_keys=True) + "\n").encode())
    finally:
        os.close(lock_fd)


def validate_token_fields(token_id, scopes, key_patterns, rate=None):
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


def add_token(path, token_id, scopes, key_patterns, secret=None, rate=None, replace=False):
    """Add (or with ``replace`` rotate) a token; returns the secret."""
    validate_token_fields(token_id, scopes, key_patterns, rate)
    secret = secret if secret is not None else new_secret()
    if len(secret) < 16:
        raise TokenFileError("a token secret must be at least 16 characters")
    with editing(path) as tokens:
        if token_id in tokens and not tokens[token_id].get("revoked") and not replace:
            raise TokenFileError("token %r exists (revoke it or use --replace to rotate)" % token_id)
        digest = hash_secret(secret)
        for other_id, entry in tokens.items():
            if other_id != token_id and entry.get("sha256") == digest:
                raise TokenFileError("that secret is already used by token %r" % other_id)
        entry = {"sha256": digest, "scopes": sorted(set(scopes)), "keys": list(key_patterns),
                 "created": int(time.time())}
        if rate not in (None, ""):
            entry["rate"] = rate
        tokens[token_id] = entry
    return secret


def revoke_token(path, token_id):
    with editing(path) as tokens:
        if token_id not in tokens:
            raise TokenFileError("no token %r" % token_id)
        tokens[token_id]["revoked"] = int(time.time())
        tokens[token_id]["sha256"] = "revoked:" + tokens[token_id]["sha256"]
