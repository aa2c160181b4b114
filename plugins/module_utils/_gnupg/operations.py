# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gpg operations of the modules and the service, on a Runner's home."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import re
import time

from .errors import GpgError, InvalidInput, KeyNotFound
from .listing import LISTING, _unescape_colons, list_colons, mark_secret_presence, parse_colons, valid_signers
from .runner import Runner
from .validation import (ALGORITHMS, CERT_DIGEST, _as_list, check_passphrase, _validate_usage, parse_expires,
                         validate_algorithm, validate_uid_field)


REVOCATION_REASONS = {
    "unspecified": {"menu": "0", "code": 0},
    "compromised": {"menu": "1", "code": 2},
    "superseded": {"menu": "2", "code": 1},
    "retired": {"menu": "3", "code": 3},
}

IMPORT_RES_FIELDS = ("count", "no_user_id", "imported", "imported_rsa", "unchanged", "n_uids", "n_subk", "n_sigs",
                     "n_revoc", "sec_read", "sec_imported", "sec_dups", "skipped_new_keys", "not_imported",
                     "skipped_v3_keys")


class GnuPG(Runner):
    """A GnuPG home directory and the gpg operations pkgsign needs on it."""

    # -- reading -------------------------------------------------------------------------

    def list_keys(self, secret=False, selector=None):
        """Every public key (or only those with secret material) with secret presence filled in;
        ``selector`` keeps the keys it names (see Key.matches). find_keys_by asks gpg for one
        selector instead of listing the whole keyring."""
        public = list_colons(self, "--list-keys")
        present = mark_secret_presence(public, list_colons(self, "--list-secret-keys"))
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
        check_passphrase(passphrase)
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
        valid = valid_signers(result)
        if result.returncode != 0 or not valid:
            raise GpgError("signature does not verify: %s" % (result.stderr.strip().splitlines() or ["no signature"])[-1],
                           result.returncode, result.stderr)
        return valid

    # -- lifecycle operations of the key modules (openpgp_*) ------------------------------

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
            check_passphrase(value)
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
        out = self.run([opt for opt in LISTING if opt != "--with-keygrip"] + ["--import-options", "show-only", "--import"], input=data).stdout
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
        valid = valid_signers(result)
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
