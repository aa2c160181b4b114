# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one GnuPG layer of pkgsign.signer.

Both the Ansible modules (through ``plugins/module_utils/_openpgp.py``) and the signing
service (``files/pkgsign``, where this file is reachable as ``pkgsign._gnupg`` through a
symlink) run gpg only through this module, so that every invocation gets the same safety
rules:

* ``--batch`` and ``LC_ALL=C`` always (parsable, never interactive);
* passphrases and interactive answers travel on pipe file descriptors, never in argv;
* user-id fields are validated before anything is written into a gpg batch file.

Pure standard library, Python >= 3.8, no Ansible import.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import datetime
import fcntl
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import unicodedata


class GpgError(Exception):
    """gpg failed; ``message`` is one readable line, ``stderr`` the diagnostics."""

    def __init__(self, message, returncode=None, stderr=""):
        super(GpgError, self).__init__(message)
        self.message = message
        self.returncode = returncode
        self.stderr = stderr


class KeyNotFound(GpgError):
    """No key matches the selector."""


class BadPassphrase(GpgError):
    """The passphrase does not unlock the key (or none was given for a protected key)."""


class InvalidInput(ValueError):
    """A parameter was rejected before it reached gpg."""


# Algorithms we offer, as gpg spells them for --quick-* commands and batch files.
ALGORITHMS = {
    "rsa2048": {"batch": {"Key-Type": "RSA", "Key-Length": "2048"}, "quick": "rsa2048"},
    "rsa3072": {"batch": {"Key-Type": "RSA", "Key-Length": "3072"}, "quick": "rsa3072"},
    "rsa4096": {"batch": {"Key-Type": "RSA", "Key-Length": "4096"}, "quick": "rsa4096"},
    "ed25519": {"batch": {"Key-Type": "EDDSA", "Key-Curve": "ed25519"}, "quick": "ed25519"},
}

# OpenPGP public-key algorithm ids (RFC 4880 9.1, RFC 6637, RFC 4880bis).
PUBKEY_ALGORITHM_NAMES = {1: "rsa", 2: "rsa", 3: "rsa", 16: "elg", 17: "dsa", 18: "ecdh", 19: "ecdsa", 22: "eddsa"}

# The digest of every self-signature (user-id certification, subkey binding, back-signature) gpg
# makes for us: Sequoia's standard policy (rpm-sequoia, dnf5, sqv) rejects SHA-1 ones.
CERT_DIGEST = "SHA256"

USAGE_LETTERS = {"c": "cert", "s": "sign", "e": "encrypt", "a": "auth"}

MAX_UID_FIELD_LENGTH = 256
_EXPIRES_RE = re.compile(r"^([1-9][0-9]{0,5})([dwmy])$")
_ISO_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_ISO_TIME_RE = re.compile(r"^[0-9]{8}t[0-9]{6}$")  # gpg's isotime (UTC), lower-cased
_HEX_RE = re.compile(r"^(0x)?[0-9A-Fa-f]+$")


# The length of user-id fields (MAX_UID_FIELD_LENGTH) is in bytes of UTF-8, as gpg counts it.
# gpg reads a batch parameter line into 1024 bytes ("line too long" beyond): the longest value
# that fits after the longest keyword ("Name-Comment: ") and the newline, with some margin.
GPG_BATCH_VALUE_MAX = 1000
# Characters that look like the brackets gpg puts around a user id's email and comment, so that a
# name could pass for another user id: those whose compatibility form is one of <>() (full-width,
# small, superscript, subscript) are found by NFKC; these look alike without being equivalent.
_BRACKET_LOOKALIKES = frozenset(
    u"\u2039\u203a\u2329\u232a\u3008\u3009\u27e8\u27e9\u27ea\u27eb\u276c\u276d\u276e\u276f"
    u"\u2768\u2769\u276a\u276b\u2985\u2986\u29fc\u29fd\u2e28\u2e29\u02c2\u02c3\u1438\u1433"
    u"\u3014\u3015\uff5f\uff60")
# Unicode categories refused in user-id fields: controls (C0 and C1), format characters (bidi
# overrides and isolates, zero-width joiners and spaces, ...), line and paragraph separators,
# surrogates and private use.
_UID_FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")


def validate_uid_field(value, field, required=False, max_length=MAX_UID_FIELD_LENGTH):
    """Return ``value`` if it may go into a user id, else raise InvalidInput.

    Control characters (newline included) would let a value inject lines into a gpg batch
    file; angle brackets and parentheses would make the user id ambiguous, and so would
    characters that look like them or that reorder or hide text (bidi controls, other format
    characters). The length is counted in UTF-8 bytes, as gpg counts it.
    """
    if value is None or value == "":
        if required:
            raise InvalidInput("%s is required" % field)
        return value
    if not isinstance(value, str):
        raise InvalidInput("%s must be a string" % field)
    limit = min(max_length, GPG_BATCH_VALUE_MAX)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("%s must be valid Unicode (no lone surrogates)" % field)
    if size > limit:
        raise InvalidInput("%s is longer than %d bytes (UTF-8)" % (field, limit))
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InvalidInput("%s must not contain newlines or control characters" % field)
    for char in value:
        if unicodedata.category(char) in _UID_FORBIDDEN_CATEGORIES:
            raise InvalidInput("%s must not contain invisible, bidi or control characters (U+%04X)" % (field, ord(char)))
    if value != value.strip():
        raise InvalidInput("%s must not start or end with white space" % field)
    forbidden = "<>()" if field != "email" else "<>() \t"
    if any(char in forbidden for char in value):
        raise InvalidInput("%s must not contain any of %s" % (field, " ".join(repr(c) for c in forbidden.strip())))
    for char in value:
        if char in _BRACKET_LOOKALIKES or (ord(char) > 0x7F and any(
                c in "<>()" for c in unicodedata.normalize("NFKC", char))):
            raise InvalidInput("%s must not contain characters that look like < > ( ) (U+%04X)" % (field, ord(char)))
    if field == "email" and "@" not in value:
        # Only that an address has an "@": its form is the caller's rule (the signing service's
        # [keygen] name_email_pattern; Copr's group keys "@group#project@copr.<domain>" hold two,
        # "user#project@" none after it), gpg takes any of them.
        raise InvalidInput("email %r is not of the form local@domain" % value)
    return value


def validate_algorithm(algorithm):
    if algorithm not in ALGORITHMS:
        raise InvalidInput("unsupported algorithm %r (supported: %s)" % (algorithm, ", ".join(sorted(ALGORITHMS))))
    return algorithm


def parse_expires(value):
    """Normalise an expiry to what gpg accepts: '0', '<n>d|w|m|y' or an ISO date.

    Accepts 0/'0'/'never'/'none', an integer number of days, '<n>d|w|m|y', 'YYYY-MM-DD' and an
    exact moment as gpg writes it, 'YYYYMMDDTHHMMSS' (UTC; see ``isotime``).
    """
    if value is None:
        return "0"
    if isinstance(value, bool):
        raise InvalidInput("expires must be 0, never, <n>d|w|m|y or YYYY-MM-DD, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput("expires must not be negative")
        return "0" if value == 0 else "%dd" % value
    text = str(value).strip().lower()
    if text in ("0", "never", "none", ""):
        return "0"
    if text.isdigit():
        return "%dd" % int(text)
    if _EXPIRES_RE.fullmatch(text):
        return text
    if _ISO_DATE_RE.fullmatch(text):
        try:
            datetime.date.fromisoformat(text)
        except ValueError:
            raise InvalidInput("expires %r is not a valid date" % value)
        return text
    if _ISO_TIME_RE.match(text):
        try:
            datetime.datetime.strptime(text, "%Y%m%dt%H%M%S")
        except ValueError:
            raise InvalidInput("expires %r is not a valid time" % value)
        return text.upper()
    raise InvalidInput("expires %r is not 0, never, <n>d|w|m|y or YYYY-MM-DD" % value)


def isotime(epoch):
    """``epoch`` as gpg's isotime 'YYYYMMDDTHHMMSS' (UTC): an expiry that means this exact second,
    e.g. to make a subkey expire together with its primary."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")


def expires_to_epoch(value, now=None):
    """The absolute expiry (epoch seconds) that ``parse_expires(value)`` means, None for never.

    Months count as 30 days and years as 365 days, the way gpg counts them.
    """
    spec = parse_expires(value)
    if spec == "0":
        return None
    now = int(time.time()) if now is None else int(now)
    if _ISO_DATE_RE.fullmatch(spec):
        day = datetime.datetime.strptime(spec, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
        return int(day.timestamp())
    if _ISO_TIME_RE.match(spec.lower()):
        return int(datetime.datetime.strptime(spec, "%Y%m%dT%H%M%S").replace(tzinfo=datetime.timezone.utc).timestamp())
    count, unit = int(spec[:-1]), spec[-1]
    return now + count * {"d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}[unit]


def _unescape_colons(text):
    # --with-colons escapes ':' and other specials as \xNN.
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _timestamp(field):
    if not field:
        return None
    if field.isdigit():
        return int(field)
    try:  # ISO 8601 basic form, used by some gpg versions
        return int(datetime.datetime.strptime(field, "%Y%m%dT%H%M%S").replace(tzinfo=datetime.timezone.utc).timestamp())
    except ValueError:
        return None


class Subkey:
    """A primary key or subkey as gpg lists it."""

    def __init__(self, record):
        fields = record + [""] * (20 - len(record))
        self.record_type = fields[0]
        self.validity = fields[1]
        self.length = int(fields[2]) if fields[2].isdigit() else 0
        self.pubkey_algo = int(fields[3]) if fields[3].isdigit() else 0
        self.key_id = fields[4]
        self.created = _timestamp(fields[5])
        self.expires = _timestamp(fields[6])
        self.capabilities = fields[11]
        self.curve = fields[16]
        self.token = fields[14]  # secret listings: '#' = stub only, '+' or a serial = present
        self.fingerprint = ""
        self.keygrip = ""
        self.secret_present = None  # filled from the secret listing

    @property
    def algorithm(self):
        family = PUBKEY_ALGORITHM_NAMES.get(self.pubkey_algo, str(self.pubkey_algo))
        if family in ("rsa", "dsa", "elg"):
            return "%s%d" % (family, self.length)
        return self.curve or family

    @property
    def revoked(self):
        return self.validity == "r"

    @property
    def expired(self):
        return self.validity == "e" or (self.expires is not None and self.expires <= time.time())

    @property
    def usage(self):
        # Lower-case letters are this (sub)key's own capabilities.
        return sorted(USAGE_LETTERS[c] for c in set(self.capabilities) if c in USAGE_LETTERS)

    @property
    def usable(self):
        return not (self.revoked or self.expired or "D" in self.capabilities)

    def as_dict(self):
        return {
            "fingerprint": self.fingerprint,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "length": self.length,
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
            "expired": self.expired,
            "usage": self.usage,
            "keygrip": self.keygrip,
            "secret_present": bool(self.secret_present),
        }


class Key(Subkey):
    """A primary key with its user ids and subkeys."""

    def __init__(self, record):
        super(Key, self).__init__(record)
        self.uids = []
        self.subkeys = []

    @property
    def emails(self):
        found = []
        for uid in self.uids:
            match = re.search(r"<([^<>]*)>\s*$", uid)
            if match:
                found.append(match.group(1))
        return found

    def matches(self, selector):
        """True when ``selector`` names this key: fingerprint, key id (long/short) or uid email."""
        if not selector:
            return False
        wanted = selector.strip()
        if wanted.startswith("<") and wanted.endswith(">"):
            wanted = wanted[1:-1]
        if "@" in wanted:
            return wanted.lower() in (email.lower() for email in self.emails)
        wanted = wanted.upper().replace(" ", "")
        if wanted.startswith("0X"):
            wanted = wanted[2:]
        wanted = wanted.rstrip("!")
        for key in [self] + self.subkeys:
            if wanted and (key.fingerprint.upper() == wanted or key.fingerprint.upper().endswith(wanted) and len(wanted) in (8, 16)):
                return True
        return False

    def signing_subkeys(self, usable_only=True):
        return [sub for sub in self.subkeys if "sign" in sub.usage and (sub.usable or not usable_only)]

    def as_dict(self):
        data = super(Key, self).as_dict()
        data["uids"] = list(self.uids)
        data["secret_primary_present"] = bool(self.secret_present)
        data["subkeys"] = [sub.as_dict() for sub in self.subkeys]
        return data


def parse_colons(text):
    """Parse ``--with-colons --with-fingerprint --with-keygrip`` output into Key objects."""
    keys = []
    current = None
    last = None
    for line in text.splitlines():
        record = line.split(":")
        kind = record[0]
        if kind in ("pub", "sec"):
            current = Key(record)
            keys.append(current)
            last = current
        elif kind in ("sub", "ssb") and current is not None:
            last = Subkey(record)
            current.subkeys.append(last)
        elif kind == "fpr" and last is not None and not last.fingerprint:
            last.fingerprint = record[9]
        elif kind == "grp" and last is not None and not last.keygrip:
            last.keygrip = record[9]
        elif kind == "uid" and current is not None:
            # A revoked key lists every uid as 'r': keep them (its owner stays known); on a
            # valid key 'r' marks a revoked user id, which is left out.
            if record[1] != "r" or current.revoked:
                current.uids.append(_unescape_colons(record[9]))
    return keys


class Result:
    def __init__(self, returncode, stdout, stderr, status):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.status = status

    def status_lines(self, keyword):
        """Arguments of every ``[GNUPG:] KEYWORD ...`` status line."""
        return [line.split()[1:] for line in self.status if line.split()[:1] == [keyword]]


def _pipe_with(data):
    """A pipe's read end pre-filled with ``data`` (small: passphrases, answers)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def gnupg_environment(homedir):
    """The environment every GnuPG program of ours runs with: C locale (parsable output), the
    given home, and no inherited agent address."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env["GNUPGHOME"] = homedir
    env.pop("GPG_AGENT_INFO", None)
    return env


class GnuPG:
    """A GnuPG home directory and the gpg operations pkgsign needs on it."""

    def __init__(self, homedir, binary="gpg", create=True):
        self.homedir = os.path.abspath(os.path.expanduser(homedir))
        self.binary = binary
        if create:
            ensure_private_dir(self.homedir)
        elif not os.path.isdir(self.homedir):
            raise GpgError("GnuPG home %s does not exist" % self.homedir)

    # -- running gpg -------------------------------------------------------------------

    def environment(self):
        return gnupg_environment(self.homedir)

    def run(self, args, input=None, passphrase=None, command_input=None, check=True, timeout=None,  # pylint: disable=redefined-builtin
            batch=True, keep_fds=()):
        """Run gpg with ``args``; status lines go to stderr and are split out.

        ``passphrase`` (str) is given on a pipe fd with loopback pinentry;
        ``command_input`` (list of answers) on a pipe fd as ``--command-fd``.
        ``batch=False`` only for the one command gpg refuses in batch mode (--gen-revoke):
        it still never prompts, since ``--no-tty`` plus ``--command-fd`` answer everything.
        ``keep_fds``: descriptors gpg inherits, e.g. a lock that must stay held while gpg runs
        even if the caller dies.
        """
        fds = []
        argv = [self.binary, "--homedir", self.homedir] + (["--batch"] if batch else []) + [
            "--no-tty", "--status-fd", "2", "--pinentry-mode", "loopback"]
        try:
            if passphrase is not None:
                _check_passphrase(passphrase)
                fd = _pipe_with(passphrase.encode("utf-8") + b"\n")
                fds.append(fd)
                argv += ["--passphrase-fd", str(fd)]
            if command_input is not None:
                fd = _pipe_with("".join(answer + "\n" for answer in command_input).encode("utf-8"))
                fds.append(fd)
                argv += ["--command-fd", str(fd)]
            argv += list(args)
            proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=self.environment(), pass_fds=fds + list(keep_fds), timeout=timeout, check=False)
        except OSError as exc:
            raise GpgError("cannot run %s: %s" % (self.binary, exc))
        finally:
            for fd in fds:
                os.close(fd)
        status, messages = [], []
        for line in proc.stderr.decode("utf-8", "replace").splitlines():
            if line.startswith("[GNUPG:] "):
                status.append(line[len("[GNUPG:] "):])
            else:
                messages.append(line)
        result = Result(proc.returncode, proc.stdout, "\n".join(messages), status)
        if check and proc.returncode != 0:
            raise self._error(result, args)
        return result

    @staticmethod
    def _error(result, args):
        operation = next((a for a in args if a.startswith("--") and a not in ("--yes", "--armor")), "gpg")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else "exit status %s" % result.returncode
        if detail.startswith("gpg: "):
            detail = detail[5:]
        text = result.stderr.lower() + " " + " ".join(result.status).lower()
        if "bad passphrase" in text or "bad_passphrase" in text or "no passphrase given" in text \
                or "missing_passphrase" in text:
            return BadPassphrase("wrong or missing passphrase (%s)" % operation.lstrip("-"), result.returncode, result.stderr)
        if "no public key" in text or "not found" in text or "no secret key" in text or "no_pubkey" in text:
            return KeyNotFound("key not found (%s): %s" % (operation.lstrip("-"), detail), result.returncode, result.stderr)
        return GpgError("gpg %s failed: %s" % (operation.lstrip("-"), detail), result.returncode, result.stderr)

    # -- reading -------------------------------------------------------------------------

    def list_keys(self, secret=False, selector=None):
        """Every public key (or only those with secret material) with secret presence filled in."""
        listing = ["--with-colons", "--fixed-list-mode", "--with-fingerprint", "--with-fingerprint",
                   "--with-keygrip"]
        public = parse_colons(self.run(listing + ["--list-keys"]).stdout.decode("utf-8", "replace"))
        secrets = parse_colons(self.run(listing + ["--list-secret-keys"]).stdout.decode("utf-8", "replace"))
        present = _mark_secret_presence(public, secrets)
        if secret:
            public = [key for key in public if key.fingerprint in present]
        if selector is not None:
            public = [key for key in public if key.matches(selector)]
        return public

    def find_key(self, selector, secret=False):
        """The one key ``selector`` names, or None; more than one match is an error."""
        found = self.list_keys(secret=secret, selector=selector)
        if len(found) > 1:
            raise GpgError("%r matches %d keys; use a fingerprint" % (selector, len(found)))
        return found[0] if found else None

    def get_key(self, selector, secret=False):
        key = self.find_key(selector, secret=secret)
        if key is None:
            raise KeyNotFound("no %skey matches %r in %s" % ("secret " if secret else "", selector, self.homedir))
        return key

    def keys_expiring_within(self, days, now=None, subkeys=True):
        """Keys (with secret material) whose primary, or a subkey, expires within ``days`` days."""
        limit = (time.time() if now is None else now) + days * 86400
        found = []
        for key in self.list_keys(secret=True):
            if key.revoked:
                continue
            parts = [key] + ([sub for sub in key.subkeys if not sub.revoked] if subkeys else [])
            if any(part.expires is not None and part.expires <= limit for part in parts):
                found.append(key)
        return found

    def agent_socket(self):
        proc = subprocess.run(["gpgconf", "--list-dirs", "agent-socket"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.environment(), check=False)
        if proc.returncode != 0:
            raise GpgError("gpgconf cannot tell the agent socket: %s" % proc.stderr.decode("utf-8", "replace").strip())
        return proc.stdout.decode("utf-8").strip()

    def launch_agent(self):
        subprocess.run(["gpgconf", "--launch", "gpg-agent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=self.environment(), check=False)

    def start_private_agent(self):
        """A gpg-agent of our own for this homedir, serving Assuan on a socket pair: (process, socket).

        The agent reads the same ``private-keys-v1.d`` as the homedir's shared agent but is a
        separate process, so several of them sign on several cores at once (one agent signs one
        signature at a time). It exits when our end of the socket closes, also when we are killed.
        """
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen([agent_binary_for(self.binary), "--homedir", self.homedir, "--server"],
                                    stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL,
                                    env=self.environment(), close_fds=True)
        except OSError as exc:
            ours.close()
            raise GpgError("cannot run gpg-agent: %s" % exc)
        finally:
            theirs.close()
        return proc, ours

    def kill_agent(self):
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=self.environment(), check=False)

    # -- key generation ----------------------------------------------------------------

    def generate_key(self, name, email, comment=None, algorithm="rsa4096", usage=("cert", "sign"),
                     expires="0", passphrase=None, keep_fds=(), subkey_usage=None):
        """Create a primary key from a validated batch file; returns its fingerprint.

        ``subkey_usage`` (e.g. ``("sign",)``) adds one subkey of the same algorithm with that usage,
        made in the same gpg run, with the primary's creation time and expiry.
        """
        validate_uid_field(name, "name", required=True)
        validate_uid_field(email, "email", required=True)
        validate_uid_field(comment, "comment")
        validate_algorithm(algorithm)
        expiry = parse_expires(expires)
        usage = _validate_usage(usage, ("cert", "sign", "auth"))
        _check_passphrase(passphrase)
        lines = ["%s: %s" % item for item in ALGORITHMS[algorithm]["batch"].items()]
        lines.append("Key-Usage: %s" % ",".join(usage))
        if subkey_usage:
            subkey_usage = _validate_usage(subkey_usage, ("sign", "auth"))
            # Key-Type -> Subkey-Type, Key-Length -> Subkey-Length, Key-Curve -> Subkey-Curve
            lines += ["Sub%s: %s" % (item[0][0].lower() + item[0][1:], item[1])
                      for item in ALGORITHMS[algorithm]["batch"].items()]
            lines.append("Subkey-Usage: %s" % ",".join(subkey_usage))
        lines.append("Name-Real: %s" % name)
        if comment:
            lines.append("Name-Comment: %s" % comment)
        lines.append("Name-Email: %s" % email)
        lines.append("Expire-Date: %s" % expiry)
        if passphrase:
            lines.append("Passphrase: %s" % passphrase)
        else:
            lines.append("%no-protection")
        lines.append("%commit")
        batch = ("\n".join(lines) + "\n").encode("utf-8")
        # The batch file goes on stdin: it may carry the passphrase.
        result = self.run(["--gen-key"], input=batch, keep_fds=keep_fds)
        created = [args[1] for args in result.status_lines("KEY_CREATED") if len(args) > 1]
        if not created:
            raise GpgError("gpg did not report a created key: %s" % result.stderr.strip().splitlines()[-1:])
        return created[0]

    def add_subkey(self, fingerprint, algorithm="rsa4096", usage="sign", expires="0", passphrase=None):
        """Add a subkey to the primary ``fingerprint``; returns the subkey's fingerprint."""
        validate_algorithm(algorithm)
        _validate_usage([usage], ("sign", "encrypt", "auth"))
        quick = ALGORITHMS[algorithm]["quick"]
        if usage == "encrypt" and algorithm == "ed25519":
            quick = "cv25519"  # the encryption half of the 25519 family
        result = self.run(["--quick-add-key", fingerprint, quick, usage, parse_expires(expires)],
                          passphrase=passphrase if passphrase is not None else "")
        created = [args[1] for args in result.status_lines("KEY_CREATED") if len(args) > 1]
        if not created:
            raise GpgError("gpg did not report the created subkey")
        return created[0]

    def set_expire(self, fingerprint, expires, subkeys=None, passphrase=None, cert_digest=CERT_DIGEST, at=None):
        """Set the expiry of the primary, or of ``subkeys`` (list of fingerprints, or ['*']).

        The new self-signatures are made with ``cert_digest`` whatever digest the old ones used
        (a key prolonged with SHA-1 is refused by Sequoia's policy, as rpm-sequoia and dnf5 use
        it). ``at`` (epoch seconds, an earlier second than now) dates them at that moment.
        """
        args = ["--cert-digest-algo", cert_digest]
        if at is not None:
            if int(at) >= int(time.time()):
                raise InvalidInput("at must be an earlier second than now (gpg ignores a faked time of now)")
            args += ["--faked-system-time", "%d!" % int(at)]
        args += ["--quick-set-expire", fingerprint, parse_expires(expires)]
        if subkeys:
            args += list(subkeys)
        self.run(args, passphrase=passphrase if passphrase is not None else "")

    def delete_key(self, fingerprint, secret=True):
        """Delete a key (its secret part too when present); needs a full fingerprint."""
        key = self.get_key(fingerprint)
        if secret and any(part.secret_present is not False for part in [key] + key.subkeys) \
                and fingerprint in [k.fingerprint for k in self.list_keys(secret=True)]:
            # gpg 2.2 leaves a subkey's secret behind when the primary is only a stub (sec#):
            # delete each present secret subkey explicitly first.
            if not key.secret_present:
                self.delete_secret(key.fingerprint)
            self.run(["--yes", "--delete-secret-and-public-key", key.fingerprint])
        else:
            self.run(["--yes", "--delete-keys", key.fingerprint])

    def delete_secret(self, fingerprint, subkeys=None):
        """Delete the secret parts (subkeys, then primary) of a key and keep its public key.

        ``subkeys``: only these subkeys' secrets (fingerprints); None: every part's, the
        primary's too. What stays verifies the key's earlier signatures and can no longer make
        new ones. Returns the fingerprints of the parts whose secret was deleted.
        """
        key = self.get_key(fingerprint)
        parts = key.subkeys + [key] if subkeys is None else [sub for sub in key.subkeys if sub.fingerprint in subkeys]
        removed = []
        # One part at a time ('!'): gpg 2.2 leaves a subkey's secret behind when the primary
        # is only a stub (sec#) and the whole key is named.
        for part in parts:
            if part.secret_present:
                self.run(["--yes", "--delete-secret-keys", part.fingerprint + "!"])
                removed.append(part.fingerprint)
        return removed

    # -- import / export -----------------------------------------------------------------

    def export_public(self, selectors, armor=True, minimal=False):
        args = ["--armor"] if armor else []
        if minimal:
            args += ["--export-options", "export-clean,export-minimal"]
        data = self.run(args + ["--export"] + _as_list(selectors)).stdout
        if not data:
            raise KeyNotFound("nothing to export for %s" % ", ".join(_as_list(selectors)))
        return data

    def export_secret_subkeys(self, subkey_fingerprints, armor=True, passphrase=None):
        """Export only the named subkeys' secret parts (the primary stays a stub)."""
        args = ["--armor"] if armor else []
        names = [fpr if fpr.endswith("!") else fpr + "!" for fpr in _as_list(subkey_fingerprints)]
        data = self.run(args + ["--export-secret-subkeys"] + names,
                        passphrase=passphrase if passphrase is not None else "").stdout
        if not data:
            raise KeyNotFound("no secret subkey to export for %s" % ", ".join(names))
        return data

    def import_keys(self, data):
        """Import key material; returns the fingerprints gpg reports as imported or unchanged."""
        return self.import_with_counts(data)[0]

    # -- signing -------------------------------------------------------------------------

    def sign(self, data, keys, mode="detached", armor=True, digest_algo="SHA256", passphrase=None):
        """Sign ``data`` (bytes) with every key in ``keys``: one output carrying each signature."""
        if mode not in ("detached", "clearsign", "inline"):
            raise InvalidInput("mode must be detached, clearsign or inline")
        args = ["--digest-algo", digest_algo]
        for key in _as_list(keys):
            args += ["--local-user", key]
        if armor or mode == "clearsign":
            args.append("--armor")
        args.append({"detached": "--detach-sign", "clearsign": "--clearsign", "inline": "--sign"}[mode])
        return self.run(args, input=data, passphrase=passphrase if passphrase is not None else "").stdout

    def verify(self, signature_path, data_path=None):
        """Verify a signature; returns the fingerprints of the primary keys of valid signatures."""
        args = ["--verify", signature_path] + ([data_path] if data_path else [])
        result = self.run(args, check=False)
        valid = [a[-1] for a in result.status_lines("VALIDSIG") if a]
        if result.returncode != 0 or not valid:
            raise GpgError("signature does not verify: %s" % (result.stderr.strip().splitlines() or ["no signature"])[-1],
                           result.returncode, result.stderr)
        return valid

    # -- lifecycle operations of the key modules (openpgp_*) ------------------------------

    def _agent_command(self, *commands):
        """Lines of gpg-connect-agent's answer; no agent is started just to be asked."""
        proc = subprocess.run(["gpg-connect-agent", "--homedir", self.homedir, "--no-autostart"] + list(commands) + ["/bye"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment(), check=False)
        return proc.stdout.decode("utf-8", "replace").splitlines()

    def forget_passphrases(self):
        """Flush the agent's passphrase cache: a wrong passphrase must fail, not be rescued by the cache."""
        self._agent_command("RELOADAGENT")

    def secret_protection(self):
        """``{keygrip: 'protected'|'clear'|'unknown'}`` for every secret key the agent holds."""
        self.launch_agent()
        found = {}
        for line in self._agent_command("KEYINFO --list"):
            fields = line.split()
            # S KEYINFO <keygrip> <type> <serialno> <idstr> <cached> <protection> ...
            if len(fields) > 7 and fields[:2] == ["S", "KEYINFO"]:
                found[fields[2]] = {"P": "protected", "C": "clear"}.get(fields[7], "unknown")
        return found

    def change_passphrase(self, fingerprint, old_passphrase, new_passphrase):
        """Change (or with an empty new one, remove) the passphrase of every secret part of a key.

        Both passphrases go through the command fd: the agent asks for the old one, then the new.
        """
        for value in (old_passphrase, new_passphrase):
            _check_passphrase(value)
        self.forget_passphrases()
        self.run(["--change-passphrase", fingerprint], command_input=[old_passphrase or "", new_passphrase or ""])
        self.forget_passphrases()

    def generate_revocation(self, fingerprint, reason="compromised", description="", passphrase=None):
        """An armored revocation certificate for the primary ``fingerprint``.

        gpg refuses --gen-revoke in batch mode; every question is answered on the command fd.
        """
        if reason not in REVOCATION_REASONS:
            raise InvalidInput("reason must be one of %s" % ", ".join(REVOCATION_REASONS))
        lines = [line.strip() for line in (description or "").splitlines() if line.strip()]
        for line in lines:
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in line):
                raise InvalidInput("description must not contain control characters")
        # gpg's menu numbers: 0 no reason, 1 compromised, 2 superseded, 3 no longer used.
        answers = ["y", REVOCATION_REASONS[reason]["menu"]] + lines + ["", "y"]
        self.forget_passphrases()
        result = self.run(["--armor", "--gen-revoke", fingerprint], input=b"", command_input=answers,
                          passphrase=passphrase if passphrase is not None else "", batch=False)
        self.forget_passphrases()
        if b"BEGIN PGP" not in result.stdout:
            raise GpgError("gpg did not produce a revocation certificate: %s" % (result.stderr.strip().splitlines() or [""])[-1])
        return result.stdout

    def revocation_details(self, data):
        """``{"issuer": fpr, "reason": name, "description": text}`` of a revocation certificate, or None."""
        result = self.run(["--list-packets"], input=data, check=False)
        text = result.stdout.decode("utf-8", "replace")
        if "sigclass 0x20" not in text:
            return None
        issuer = re.search(r"issuer fpr v4 ([0-9A-F]{40})", text)
        reason = re.search(r"revocation reason 0x([0-9a-f]{2}) \((.*)\)\)\s*$", text, re.MULTILINE) \
            or re.search(r"revocation reason 0x([0-9a-f]{2})", text)
        code = int(reason.group(1), 16) if reason else 0
        names = dict((value["code"], name) for name, value in REVOCATION_REASONS.items())
        return {
            "issuer": issuer.group(1) if issuer else None,
            "reason": names.get(code, "unspecified"),
            "description": reason.group(2).replace("\\n", "\n") if reason and reason.lastindex == 2 else "",
        }

    def certify(self, fingerprint, signer, uids=None, exportable=True, passphrase=None):
        """Certify the user ids of ``fingerprint`` (all when ``uids`` is empty) with the key ``signer``."""
        command = "--quick-sign-key" if exportable else "--quick-lsign-key"
        self.forget_passphrases()
        self.run(["--local-user", signer, command, fingerprint] + list(uids or []),
                 passphrase=passphrase if passphrase is not None else "")
        self.forget_passphrases()

    def list_signatures(self, fingerprint):
        """``{uid: [{"issuer": fpr or key id, "class": "10x", "revocation": bool}]}`` of a key's user ids."""
        out = self.run(["--with-colons", "--fixed-list-mode", "--list-sigs", fingerprint]).stdout.decode("utf-8", "replace")
        found, uid = {}, None
        for line in out.splitlines():
            record = line.split(":") + [""] * 20
            if record[0] in ("sub", "pub"):
                uid = None
            elif record[0] == "uid":
                uid = _unescape_colons(record[9]) if record[1] != "r" else None
                if uid is not None:
                    found.setdefault(uid, [])
            elif record[0] in ("sig", "rev") and uid is not None:
                found[uid].append({"issuer": record[12] or record[4], "class": record[10],
                                   "revocation": record[0] == "rev"})
        return found

    def checked_certifications(self, fingerprint):
        """``{uid: [{"issuer": fpr or key id, "class": "10x", "revocation": bool, "valid": bool}]}``.

        Like list_signatures, but every signature is verified (``--check-sigs``): ``valid`` is
        true only for a good signature by a key in this keyring, so a certification claimed by
        an issuer whose key is absent, or forged, never counts.
        """
        out = self.run(["--with-colons", "--fixed-list-mode", "--check-sigs", fingerprint],
                       check=False).stdout.decode("utf-8", "replace")
        found, uid = {}, None
        for line in out.splitlines():
            record = line.split(":") + [""] * 20
            if record[0] in ("sub", "pub"):
                uid = None
            elif record[0] == "uid":
                uid = _unescape_colons(record[9])
                found.setdefault(uid, [])
            elif record[0] in ("sig", "rev") and uid is not None:
                found[uid].append({"issuer": record[12] or record[4], "class": record[10],
                                   "revocation": record[0] == "rev", "valid": record[1] == "!"})
        return found

    def delete_subkey(self, subkey_fingerprint):
        """Delete one subkey (public and secret part) from this keyring."""
        self.run(["--yes", "--delete-secret-and-public-keys", subkey_fingerprint.rstrip("!") + "!"])

    def show_keys(self, data):
        """The keys in ``data`` (bytes) as Key objects, without importing them."""
        out = self.run(["--with-colons", "--fixed-list-mode", "--with-fingerprint", "--with-fingerprint",
                        "--import-options", "show-only", "--import"], input=data).stdout
        # Secret presence is not filled in: show-only reports it for this keyring, not for ``data``.
        return parse_colons(out.decode("utf-8", "replace"))

    def import_with_counts(self, data):
        """Import ``data``; returns (fingerprints, counts) with gpg's IMPORT_RES counters by name."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        result = self.run(["--import"], input=data, check=False)
        fingerprints = []
        for args in result.status_lines("IMPORT_OK"):
            if len(args) > 1 and args[1] not in fingerprints:
                fingerprints.append(args[1])
        counts = {}
        for args in result.status_lines("IMPORT_RES"):
            counts = dict(zip(IMPORT_RES_FIELDS, [int(a) for a in args if a.isdigit()]))
        if result.returncode != 0 and not fingerprints:
            raise self._error(result, ["--import"])
        return fingerprints, counts

    def decrypt_clearsigned(self, data):
        """(text, fingerprints of valid signers' primaries) of a clearsigned message."""
        result = self.run(["--decrypt"], input=data, check=False)
        valid = [a[-1] for a in result.status_lines("VALIDSIG") if a]
        if result.returncode != 0 or not valid:
            raise GpgError("signature does not verify: %s" % (result.stderr.strip().splitlines() or ["no signature"])[-1],
                           result.returncode, result.stderr)
        return result.stdout, valid

    def encrypt(self, data, recipient_files, armor=False):
        """Encrypt ``data`` (bytes) to the public keys in ``recipient_files`` (never imported).

        Keys given by file are used as they are, without the web of trust: the operator who
        names the file vouches for it. ``--compliance gnupg`` keeps gpg from picking a legacy
        cipher for an old recipient key.
        """
        args = ["--armor"] if armor else []
        for path in _as_list(recipient_files):
            args += ["--recipient-file", path]
        result = self.run(args + ["--compliance", "gnupg", "--encrypt"], input=data)
        if not result.stdout:
            raise GpgError("gpg produced no ciphertext")
        return result.stdout

    def decrypt(self, data, passphrase=None):
        """Plaintext of ``data`` encrypted to a secret key in this home (passphrase on a pipe)."""
        result = self.run(["--decrypt"], input=data, passphrase=passphrase, check=False)
        if result.returncode != 0 or not result.status_lines("DECRYPTION_OKAY"):
            raise self._error(result, ["--decrypt"])
        return result.stdout


REVOCATION_REASONS = {
    "unspecified": {"menu": "0", "code": 0},
    "compromised": {"menu": "1", "code": 2},
    "superseded": {"menu": "2", "code": 1},
    "retired": {"menu": "3", "code": 3},
}

IMPORT_RES_FIELDS = ("count", "no_user_id", "imported", "imported_rsa", "unchanged", "n_uids", "n_subk", "n_sigs",
                     "n_revoc", "sec_read", "sec_imported", "sec_dups", "skipped_new_keys", "not_imported",
                     "skipped_v3_keys")


def _check_passphrase(passphrase):
    """gpg reads a passphrase up to a newline and as a C string: a newline or NUL would cut it
    short, and the key would be protected by (or unlocked with) only the part before it."""
    if passphrase is not None and any(char in passphrase for char in "\n\r\0"):
        raise InvalidInput("passphrase must not contain newlines or NUL characters")


def _mark_secret_presence(public, secrets):
    """Fill ``secret_present`` of every part of ``public`` from a secret listing.

    Returns {fingerprint: available} for every part the secret listing names (stubs included,
    as False: a '#' token field is gpg's sec# / ssb#).
    """
    present = {}
    for key in secrets:
        for part in [key] + key.subkeys:
            present[part.fingerprint] = _secret_available(part)
    for key in public:
        for part in [key] + key.subkeys:
            part.secret_present = present.get(part.fingerprint, False)
    return present


def _secret_available(part):
    # Field 15 of a sec/ssb record: '#' = stub (no secret), '+' or a card serial = present.
    return part.token != "#"


def _validate_usage(usage, allowed):
    usage = list(usage)
    for item in usage:
        if item not in allowed:
            raise InvalidInput("usage %r is not one of %s" % (item, ", ".join(allowed)))
    return usage


def _as_list(value):
    return [value] if isinstance(value, str) else list(value)


def ensure_private_dir(path):
    """Create ``path`` as 0700 (parents too) or tighten an existing one to 0700."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private_file(path, data):
    """Write ``data`` atomically as a 0600 file (the temporary file is 0600 from the start)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _overwrite_with_zeros(path):
    """Overwrite a regular file (not a symlink) with zeros and sync it; best effort."""
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        pass


def shred_file(path):
    """Overwrite one key file with zeros, then remove it (best effort, see shred_tree)."""
    _overwrite_with_zeros(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def shred_tree(path):
    """Overwrite every regular file under ``path`` with zeros, then remove the tree.

    Best effort on journaling or copy-on-write file systems, as shred(1) warns; it still
    keeps unencrypted key material from lingering in plain files.
    """
    if not os.path.exists(path):
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            _overwrite_with_zeros(os.path.join(root, name))
    shutil.rmtree(path, ignore_errors=True)


SCRATCH_ROOT_PREFIX = "pkgsign-scratch-"
_SCRATCH_LOCK = ".pkgsign-scratch.lock"
_SCRATCH_GRACE = 60  # seconds a scratch home may exist before it holds its lock


def scratch_root():
    """The owner-only directory every scratch GnuPG home of this user lives in.

    Its place is predictable (``<temp dir>/pkgsign-scratch-<uid>``), so that the next run finds and
    shreds what a killed run left behind. It must be a real directory of this user, mode 0700: a
    name squatted by someone else is refused, never used.
    """
    root = os.path.join(tempfile.gettempdir(), "%s%d" % (SCRATCH_ROOT_PREFIX, os.geteuid()))
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise GpgError("scratch directory %s is not a private directory of uid %d (a symlink, another "
                       "owner or open permissions): remove it" % (root, os.geteuid()))
    return root


def sweep_scratch(root):
    """Shred the scratch homes under ``root`` that no live process holds (a run killed with SIGKILL
    cannot clean up; the lock it held died with it). Stops their gpg-agent first.

    A home is made as ``.new-*`` and renamed to its name once its lock is held, and renamed to
    ``.dead-*`` before it is shredded, so a home with its final name always has its lock file."""
    swept = 0
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        fd = None
        if not name.startswith(".dead-"):  # half-shredded: nobody needs it any more
            try:
                fd = os.open(os.path.join(path, _SCRATCH_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                try:  # just made and not locked yet: only an old one is abandoned
                    if time.time() - os.lstat(path).st_mtime < _SCRATCH_GRACE:
                        continue
                except FileNotFoundError:
                    continue
            except OSError:
                continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    continue  # in use by a running process
            GnuPG(path, create=False).kill_agent()
            shred_tree(path)
            swept += 1
        except GpgError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    return swept


class TemporaryGnuPG:
    """A throw-away GnuPG home (0700) whose agent is stopped and files shredded on exit.

    Without ``base`` it lives under ``scratch_root()`` and holds a lock for as long as it is in use,
    so a run killed before its exit (SIGKILL) leaves it to the next run, which shreds it first.
    """

    def __init__(self, prefix="pkgsign-gnupg-", base=None):
        self._lock_fd = None
        if base is None:
            base = scratch_root()
            sweep_scratch(base)
            made = tempfile.mkdtemp(prefix=".new-", dir=base)
            try:
                # Not inherited by gpg or gpg-agent (PEP 446): only this process holds the lock.
                self._lock_fd = os.open(os.path.join(made, _SCRATCH_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                self.path = os.path.join(base, prefix + os.path.basename(made)[len(".new-"):])
                os.rename(made, self.path)
            except BaseException:
                self.path = made
                self._cleanup()
                raise
        else:
            self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        try:
            self.gpg = GnuPG(self.path)
        except BaseException:
            self._cleanup()
            raise

    def __enter__(self):
        return self.gpg

    def __exit__(self, *exc):
        self._cleanup()
        return False

    def _cleanup(self):
        try:
            GnuPG(self.path, create=False).kill_agent()
        except GpgError:
            pass
        if self._lock_fd is not None:  # a run killed while shredding leaves a .dead- home: swept at once
            dead = os.path.join(os.path.dirname(self.path), ".dead-" + os.path.basename(self.path))
            try:
                os.rename(self.path, dead)
                self.path = dead
            except OSError:
                pass
        shred_tree(self.path)
        for _attempt in range(20):  # an agent still shutting down may remove or add a socket meanwhile
            if not os.path.exists(self.path):
                break
            time.sleep(0.05)
            shred_tree(self.path)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def find_keys_by(gpg, selector, secret=False, check_secret=True):
    """Keys matching ``selector``, asking gpg for that selector only.

    Unlike ``GnuPG.list_keys`` this never lists the whole keyring, so its cost stays flat with
    thousands of keys (the signing service's per-project keyrings). ``secret_present`` is filled
    in; with ``secret=True`` only keys with secret material are returned: the primary's, or a
    subkey's for a signing-subkey-only key (``sec#``, what the key ceremony installs on signers).
    ``check_secret=False`` skips the secret listing (one gpg run instead of two;
    ``secret_present`` stays None).
    """
    listing = ["--with-colons", "--fixed-list-mode", "--with-fingerprint", "--with-fingerprint",
               "--with-keygrip"]

    def listed(command):
        result = gpg.run(listing + [command, "--", selector], check=False)
        return parse_colons(result.stdout.decode("utf-8", "replace")) if result.returncode == 0 else []

    public = listed("--list-keys")
    if not check_secret and not secret:
        return public
    _mark_secret_presence(public, listed("--list-secret-keys"))
    if secret:
        public = [key for key in public
                  if key.secret_present or any(sub.secret_present for sub in key.subkeys)]
    return public


def find_secret_key_by(gpg, selector):
    """The one key with secret material that ``selector`` names, or None (see find_keys_by)."""
    found = find_keys_by(gpg, selector, secret=True)
    if len(found) > 1:
        raise GpgError("%r matches %d keys; use a fingerprint" % (selector, len(found)))
    return found[0] if found else None


def generate_key_from_keygrip(gpg, keygrip, name, email, comment=None, algorithm="rsa4096",
                              usage=("cert", "sign"), expires="0", keep_fds=(), created=None):
    """Make an OpenPGP primary key around secret key material already in the agent.

    A subkey from key material is added by add_subkey_from_keygrip (gpg 2.2's batch keyword
    ``Subkey-Grip`` crashes gpg 2.2.40 for a signing subkey: it makes the back-signature with a
    subkey it never looked up).

    ``keygrip`` names an unprotected key file in ``private-keys-v1.d`` (made ahead of time, e.g.
    by a pool of pre-generated keys); gpg only binds the user id and self-signs, which takes
    milliseconds instead of the seconds RSA-4096 generation needs. Returns the fingerprint.
    ``created`` (epoch seconds, default now) fixes the creation time, so that a caller knows
    every listed field of the new key without listing it.
    """
    validate_uid_field(name, "name", required=True)
    validate_uid_field(email, "email", required=True)
    validate_uid_field(comment, "comment")
    validate_algorithm(algorithm)
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", keygrip or ""):
        raise InvalidInput("keygrip must be 40 hex digits")
    usage = _validate_usage(usage, ("cert", "sign", "auth"))
    lines = ["Key-Type: %s" % ALGORITHMS[algorithm]["batch"]["Key-Type"], "Key-Grip: %s" % keygrip.upper(),
             "Key-Usage: %s" % ",".join(usage), "Name-Real: %s" % name]
    if comment:
        lines.append("Name-Comment: %s" % comment)
    lines += ["Name-Email: %s" % email, "Expire-Date: %s" % parse_expires(expires)]
    if created is not None:
        lines.append("Creation-Date: seconds=%d" % int(created))
    lines += ["%no-protection", "%commit"]
    result = gpg.run(["--gen-key"], input=("\n".join(lines) + "\n").encode("utf-8"), keep_fds=keep_fds)
    created = [args[1] for args in result.status_lines("KEY_CREATED") if len(args) > 1]
    if not created:
        raise GpgError("gpg did not report a key made from keygrip %s" % keygrip)
    return created[0]


def add_subkey_from_keygrip(gpg, fingerprint, keygrip, usage="sign", expires="0", created=None, keep_fds=()):
    """Add a subkey made of key material already in the agent (``keygrip``) to the unprotected
    primary ``fingerprint``; returns the subkey's fingerprint.

    gpg 2.2 takes existing material for a subkey only in --edit-key's ``addkey`` ("Existing key",
    an expert choice): every question is answered on the command fd. ``created`` (epoch seconds)
    fixes the subkey's creation time (and its binding signatures'), so that with the primary's
    ``Creation-Date`` and the same ``expires`` both parts expire at the same second, and a caller
    knows every listed field without listing the key. It must lie in the past: gpg 2.2 ignores a
    ``--faked-system-time`` equal to the current second and runs on the real clock, which may
    have moved on by the time it makes the subkey.
    """
    if created is not None and int(created) >= int(time.time()):
        raise InvalidInput("created must be an earlier second than now (gpg ignores a faked time of now)")
    if not re.match(r"^[0-9A-Fa-f]{40}$", keygrip or ""):
        raise InvalidInput("keygrip must be 40 hex digits")
    if not re.match(r"^[0-9A-Fa-f]{40}$", fingerprint or ""):
        raise InvalidInput("fingerprint must be 40 hex digits")
    usage = _validate_usage(_as_list(usage), ("sign", "encrypt", "auth"))
    letters = "".join({"sign": "s", "encrypt": "e", "auth": "a"}[item] for item in usage)
    # keygen.algo: 13 = "Existing key"; keygen.flags: '=' sets the capabilities directly.
    answers = ["13", keygrip.upper(), "=" + letters, parse_expires(expires)]
    args = ["--expert"]
    if created is not None:
        args += ["--faked-system-time", "%d!" % int(created)]
    result = gpg.run(args + ["--edit-key", fingerprint.upper(), "addkey", "save"], command_input=answers,
                     keep_fds=keep_fds)
    made = [args[1] for args in result.status_lines("KEY_CREATED") if len(args) > 1 and args[0] == "S"]
    if not made:
        raise GpgError("gpg did not add a subkey from keygrip %s: %s" % (
            keygrip, (result.stderr.strip().splitlines() or ["no KEY_CREATED status"])[-1]))
    return made[0]


# The KEYPARAM gpg itself sends gpg-agent's GENKEY for each algorithm.
AGENT_KEY_PARAMETERS = {
    "rsa2048": "(genkey(rsa(nbits 4:2048)))",
    "rsa3072": "(genkey(rsa(nbits 4:3072)))",
    "rsa4096": "(genkey(rsa(nbits 4:4096)))",
    "ed25519": "(genkey(ecc(curve 7:Ed25519)(flags eddsa comp)))",
}


def agent_binary_for(gpg_binary):
    """The gpg-agent that belongs to ``gpg_binary`` (its sibling when given as a path)."""
    if os.path.dirname(gpg_binary):
        sibling = os.path.join(os.path.dirname(gpg_binary), "gpg-agent")
        if os.path.exists(sibling):
            return sibling
    return "gpg-agent"


class KeyMaterialGeneration:
    """One unprotected secret key made by a gpg-agent of our own, with no OpenPGP key around it.

    The agent runs in server mode (the Assuan protocol on its stdin and stdout, no socket) as
    our child in ``homedir`` (private, fresh): the key lands in ``homedir/private-keys-v1.d`` as
    ``<keygrip>.key``, ready for generate_key_from_keygrip. Being our child, the agent inherits
    the caller's CPU priority, and ``cancel()`` stops it at once, even in the middle of an RSA
    prime search (an agent behind a socket answers nothing until such a search ends). gpg's
    --gen-key would also self-sign and write a keyring and a revocation certificate: wasted
    work for material that is bound to its user id later. ``keep_fds`` stay open in the agent
    until it exits (a lock telling others that the home is still being written).
    """

    def __init__(self, homedir, algorithm, agent_binary="gpg-agent", keep_fds=()):
        validate_algorithm(algorithm)
        self.homedir = ensure_private_dir(os.path.abspath(homedir))
        env = gnupg_environment(self.homedir)
        # The inquired KEYPARAM is answered ahead: the agent reads it when it asks.
        self._commands = ("GENKEY --no-protection\nD %s\nEND\nBYE\n" % AGENT_KEY_PARAMETERS[algorithm]).encode("ascii")
        self.cancelled = False
        try:
            self.proc = subprocess.Popen([agent_binary, "--homedir", self.homedir, "--server"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, pass_fds=list(keep_fds))
        except OSError as exc:
            raise GpgError("cannot run %s: %s" % (agent_binary, exc))

    @property
    def pid(self):
        return self.proc.pid

    def wait(self, timeout=None):
        """The keygrip of the new key; GpgError when the agent failed or was cancelled."""
        try:
            out, err = self.proc.communicate(self._commands, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            self.proc.communicate()
            raise GpgError("gpg-agent did not generate a key within %s s" % timeout)
        if self.cancelled:
            raise GpgError("key generation cancelled")
        replies = out.decode("utf-8", "replace").splitlines()
        failures = [line[4:] for line in replies if line.startswith("ERR ")]
        if failures or self.proc.returncode != 0 or "OK" not in replies:
            detail = failures[-1] if failures else (err.decode("utf-8", "replace").strip().splitlines() or [
                "exit status %s" % self.proc.returncode])[-1]
            raise GpgError("gpg-agent GENKEY failed: %s" % detail, self.proc.returncode, err.decode("utf-8", "replace"))
        directory = os.path.join(self.homedir, "private-keys-v1.d")
        made = [name for name in os.listdir(directory) if re.match(r"^[0-9A-F]{40}\.key$", name)]
        if len(made) != 1:
            raise GpgError("gpg-agent left %d key files in %s, expected one" % (len(made), directory))
        return made[0][:-len(".key")]

    def cancel(self):
        self.cancelled = True
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
