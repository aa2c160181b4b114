"""OpenPGP keys around key material already in the agent (service only).

The keygen pool has gpg-agent make the secret key material ahead of time (agent.KeyMaterialGeneration);
these bind it to a user id and self-sign it, which takes milliseconds.
"""

import re
import time

from ._gnupg import ALGORITHMS, GpgError, InvalidInput, parse_expires, validate_algorithm, validate_uid_field
from ._gnupg.validation import _as_list, _validate_usage


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
