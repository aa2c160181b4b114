# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The key model and gpg's colon listing: parsing, secret presence, finding keys."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import datetime
import re
import time

from .errors import GpgError

PUBKEY_ALGORITHM_NAMES = {1: "rsa", 2: "rsa", 3: "rsa", 16: "elg", 17: "dsa", 18: "ecdh", 19: "ecdsa", 22: "eddsa"}

USAGE_LETTERS = {"c": "cert", "s": "sign", "e": "encrypt", "a": "auth"}

# The options of every key listing we parse. A second --with-fingerprint is what makes gpg print
# the subkeys' fingerprints in its human-readable listing (gpg 2.2.40 checked: one prints only
# the primary's). In colon mode gpg 2.2 writes a subkey's 'fpr' record with or without it, and
# parse_colons needs that record: the second flag asks for it explicitly rather than relying on
# colon mode's default.
LISTING = ["--with-colons", "--fixed-list-mode", "--with-fingerprint", "--with-fingerprint", "--with-keygrip"]


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


def mark_secret_presence(public, secrets):
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


def valid_signers(result):
    """Fingerprints of the primary keys of the good signatures a gpg run reports (VALIDSIG's last
    argument is the primary key's fingerprint)."""
    return [args[-1] for args in result.status_lines("VALIDSIG") if args]


def list_colons(gpg, command, selector=None, check=True):
    """Keys of one colon listing (``--list-keys`` or ``--list-secret-keys``), all of them or those gpg
    finds for ``selector``. With ``check=False`` a failed listing (gpg fails when nothing matches a
    selector) is empty."""
    result = gpg.run(LISTING + [command] + (["--", selector] if selector is not None else []), check=check)
    return parse_colons(result.stdout.decode("utf-8", "replace")) if result.returncode == 0 else []


def find_keys_by(gpg, selector, secret=False, check_secret=True):
    """Keys matching ``selector``, asking gpg for that selector only.

    Unlike ``GnuPG.list_keys`` this never lists the whole keyring, so its cost stays flat with
    thousands of keys (the signing service's per-project keyrings). ``secret_present`` is filled
    in; with ``secret=True`` only keys with secret material are returned: the primary's, or a
    subkey's for a signing-subkey-only key (``sec#``, what the key ceremony installs on signers).
    ``check_secret=False`` skips the secret listing (one gpg run instead of two;
    ``secret_present`` stays None).
    """
    public = list_colons(gpg, "--list-keys", selector, check=False)
    if not check_secret and not secret:
        return public
    mark_secret_presence(public, list_colons(gpg, "--list-secret-keys", selector, check=False))
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
