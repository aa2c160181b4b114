# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Input checks before anything reaches gpg: the one algorithm table, the one expiry grammar,
user-id fields, passphrases and usages."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import datetime
import re
import time
import unicodedata

from .errors import InvalidInput


# The one table of the algorithms we offer (module choices, service config, admin CLI and the
# OpenAPI enum derive from it): as gpg spells them for batch files and --quick-* commands, and
# the KEYPARAM gpg itself sends gpg-agent's GENKEY (the service makes key material that way).
ALGORITHMS = {
    "rsa2048": {"batch": {"Key-Type": "RSA", "Key-Length": "2048"}, "quick": "rsa2048",
                "agent": "(genkey(rsa(nbits 4:2048)))"},
    "rsa3072": {"batch": {"Key-Type": "RSA", "Key-Length": "3072"}, "quick": "rsa3072",
                "agent": "(genkey(rsa(nbits 4:3072)))"},
    "rsa4096": {"batch": {"Key-Type": "RSA", "Key-Length": "4096"}, "quick": "rsa4096",
                "agent": "(genkey(rsa(nbits 4:4096)))"},
    "ed25519": {"batch": {"Key-Type": "EDDSA", "Key-Curve": "ed25519"}, "quick": "ed25519",
                "agent": "(genkey(ecc(curve 7:Ed25519)(flags eddsa comp)))"},
}


# The digest of every self-signature (user-id certification, subkey binding, back-signature) gpg
# makes for us: Sequoia's standard policy (rpm-sequoia, dnf5, sqv) rejects SHA-1 ones.
CERT_DIGEST = "SHA256"

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


def check_passphrase(passphrase):
    """gpg reads a passphrase up to a newline and as a C string: a newline or NUL would cut it
    short, and the key would be protected by (or unlocked with) only the part before it."""
    if passphrase is not None and any(char in passphrase for char in "\n\r\0"):
        raise InvalidInput("passphrase must not contain newlines or NUL characters")


def _validate_usage(usage, allowed):
    usage = list(usage)
    for item in usage:
        if item not in allowed:
            raise InvalidInput("usage %r is not one of %s" % (item, ", ".join(allowed)))
    return usage


def _as_list(value):
    return [value] if isinstance(value, str) else list(value)
