# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend of the ``pkgsign.signer.openpgp_*`` modules.

Every operation is a function ``operation(params, check_mode) -> result dict`` built on the
shared GnuPG layer (``_gnupg``): it decides idempotently whether something has to change,
builds a diff of key *metadata* (fingerprints, user ids, algorithms, dates; never key
material or passphrases) and only touches the keyring or files when not in check mode.
The modules are thin wrappers around :func:`run_module`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import base64
import contextlib
import datetime
import grp
import os
import pwd
import re
import shutil
import stat
import tempfile
import time

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

DAY = 86400
# The one algorithm table (_gnupg.validation.ALGORITHMS): the modules' choices come from it.
PRIMARY_ALGORITHMS = tuple(gnupg.ALGORITHMS)
SUBKEY_USAGES = ("sign", "encrypt", "auth")
# gpg's import counters that mean the keyring got something new.
IMPORT_CHANGE_COUNTERS = ("imported", "n_uids", "n_subk", "n_sigs", "n_revoc", "sec_imported")


class ModuleFailure(Exception):
    """A reason to fail the module, in one readable sentence."""


def common_argument_spec(passphrase=True):
    spec = {"homedir": {"type": "path", "required": True}}
    if passphrase:
        spec["passphrase"] = {"type": "str", "no_log": True}
    return spec


def run_module(module, operation, files=False):
    """Run ``operation`` for an AnsibleModule and exit with its result or a clear failure.

    ``files``: the module takes Ansible's file common arguments (``add_file_common_args``) and
    ``operation`` receives a :class:`FileOutput` as third argument to write its file with.
    """
    try:
        if files:
            result = operation(module.params, module.check_mode, FileOutput(module))
        else:
            result = operation(module.params, module.check_mode)
    except (ModuleFailure, gnupg.GpgError, gnupg.InvalidInput) as exc:
        module.fail_json(msg=_message(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="file system error: %s" % exc)
    warnings = result.pop("warnings", [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


def _message(exc):
    if isinstance(exc, gnupg.BadPassphrase):
        return "wrong or missing passphrase: %s" % exc
    return str(exc)


# -- small helpers ----------------------------------------------------------------------

def iso(timestamp):
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def part_summary(part):
    """Metadata of a primary key or subkey: what diffs and return values show."""
    return {
        "fingerprint": part.fingerprint,
        "key_id": part.key_id,
        "algorithm": algorithm_name(part),
        "usage": part.usage,
        "created": iso(part.created),
        "expires": iso(part.expires),
        "revoked": part.revoked,
        "expired": part.expired,
        "secret_present": bool(part.secret_present),
    }


def key_summary(key):
    data = part_summary(key)
    data.pop("secret_present")
    data["uids"] = list(key.uids)
    data["secret_primary_present"] = bool(key.secret_present)
    data["subkeys"] = [part_summary(sub) for sub in key.subkeys]
    return data


def algorithm_name(part):
    name = part.algorithm
    return "cv25519" if name == "curve25519" else name


def build_uid(name, email, comment=None):
    gnupg.validate_uid_field(name, "name", required=True)
    gnupg.validate_uid_field(email, "email", required=True)
    gnupg.validate_uid_field(comment, "comment")
    if comment:
        return "%s (%s) <%s>" % (name, comment, email)
    return "%s <%s>" % (name, email)


def read_file(path):
    if path is None or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        return handle.read()


class FileOutput(object):
    """Writes a module's file the way Ansible's own file modules do.

    The data goes to a temporary file in the destination's directory, which ``atomic_move``
    puts in place (keeping SELinux contexts right); owner, group, mode and SELinux context come
    from the file common arguments, ``default_mode`` when the task gives no mode. The new file
    is never readable by others before its attributes are set: the temporary file is 0600, an
    existing destination is narrowed to owner-only before the move (``atomic_move`` copies its
    mode), and a new one is created under umask 077.
    """

    def __init__(self, module):
        self._module = module

    def _file_args(self, path, default_mode):
        args = self._module.load_file_common_arguments(self._module.params, path=path)
        if args.get("mode") is None:
            args["mode"] = default_mode
        return args

    def attributes_differ(self, path, default_mode):
        """Whether an existing ``path`` needs other attributes (check mode: nothing is changed)."""
        if not os.path.lexists(path):
            return False
        if self._module.check_mode:
            return self._module.set_fs_attributes_if_different(self._file_args(path, default_mode), False)
        return False

    def settle(self, path, default_mode, changed):
        """Apply owner, group, mode and SELinux context to ``path``; ``changed`` or'ed with theirs."""
        if self._module.check_mode:
            return changed or self.attributes_differ(path, default_mode)
        return self._module.set_fs_attributes_if_different(self._file_args(path, default_mode), changed)

    # chmod's symbolic modes, as Ansible's file arguments take them ("u=rw,g=r,o=", "a-x").
    _SYMBOLIC_MODE = re.compile(r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+(?:,[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+)*")

    def check_arguments(self):
        """Refuse a mode, owner or group that cannot be applied before anything is written:
        ``set_fs_attributes_if_different`` finds them only after the new file replaced the old one."""
        params = self._module.params
        mode = params.get("mode")
        if mode is not None and not isinstance(mode, int) \
                and not (re.match(r"[0-7]+\Z", str(mode)) or self._SYMBOLIC_MODE.fullmatch(str(mode))):
            raise ModuleFailure("mode %r is neither an octal nor a symbolic file mode (e.g. '0640' or 'u=rw,g=r,o=')"
                                % (mode,))
        for name, lookup in (("owner", pwd.getpwnam), ("group", grp.getgrnam)):
            value = params.get(name)
            if value and not str(value).isdigit():
                try:
                    lookup(value)
                except KeyError:
                    raise ModuleFailure("%s %r does not exist on this host" % (name, value))

    def write(self, path, data):
        self.check_arguments()
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ModuleFailure("directory %s does not exist" % directory)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".pkgsign-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if os.path.isfile(path) and not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & 0o700)
            umask = os.umask(0o077)
            try:
                self._module.atomic_move(temporary, path, unsafe_writes=self._module.params.get("unsafe_writes", False))
            finally:
                os.umask(umask)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise


def dearmor(data):
    """The binary OpenPGP packets of ``data`` (armored or not): key material compared, not bytes."""
    if data is None:
        return None
    if not is_armored(data):
        return data
    lines = data.decode("ascii", "replace").splitlines()
    body, in_block, in_headers = [], False, False
    for line in lines:
        if line.startswith("-----BEGIN PGP"):
            in_block, in_headers = True, True
            continue
        if line.startswith("-----END PGP"):
            in_block = False
            continue
        if not in_block:
            continue
        if in_headers:
            if not line.strip():
                in_headers = False
            continue
        if line.startswith("="):  # CRC-24 line
            continue
        body.append(line.strip())
    try:
        return base64.b64decode("".join(body))
    except (ValueError, TypeError):
        return None


def is_armored(data):
    return data is not None and data.lstrip()[:15] == b"-----BEGIN PGP "


@contextlib.contextmanager
def keyring(params, check_mode, read_only=False):
    """The GnuPG of ``homedir``; created 0700 when missing, except in check mode or for reads.

    A missing homedir in those cases is looked at as an empty temporary one, so every
    operation sees "no keys yet" and reports the change it would make.
    """
    homedir = params["homedir"]
    if os.path.isdir(homedir):
        # Only a run that may change things tightens an existing homedir to 0700.
        yield gnupg.GnuPG(homedir, create=not (check_mode or read_only))
        return
    if not (check_mode or read_only):
        yield gnupg.GnuPG(homedir)
        return
    with gnupg.TemporaryGnuPG(prefix="pkgsign-empty-") as empty:
        yield empty


def get_key(gpg, selector, secret_primary=False, what="key"):
    if not selector:
        raise ModuleFailure("%s must name a key (fingerprint, key id or email)" % what)
    found = gpg.list_keys(selector=selector)
    if not found:
        raise ModuleFailure("no key matches %s %r in %s" % (what, selector, gpg.homedir))
    if len(found) > 1:
        raise ModuleFailure("%s %r matches %d keys (%s); use a fingerprint"
                            % (what, selector, len(found), ", ".join(k.fingerprint for k in found)))
    key = found[0]
    if secret_primary and not key.secret_present:
        raise ModuleFailure("the secret part of the primary key %s is not in %s" % (key.fingerprint, gpg.homedir))
    return key


def check_passphrase(passphrase):
    try:
        gnupg.check_passphrase(passphrase)
    except gnupg.InvalidInput as err:
        raise ModuleFailure("%s (gpg would cut it short)" % err)
    return passphrase


# -- openpgp_key --------------------------------------------------------------------------

def ensure_key(params, check_mode):
    state = params["state"]
    email = params["email"]
    if state == "absent":
        return _remove_keys(params, check_mode)
    uid = build_uid(params["name"], email, params.get("comment"))
    algorithm = gnupg.validate_algorithm(params["algorithm"])
    usage = sorted(set(params["usage"] or []) | {"cert"})
    gnupg.parse_expires(params["expires"])
    passphrase = check_passphrase(params.get("passphrase"))
    regenerate = params["regenerate"]

    with keyring(params, check_mode) as gpg:
        existing = [key for key in gpg.list_keys() if uid in key.uids]
        warnings = []
        if len(existing) > 1 and regenerate != "always":
            raise ModuleFailure("%d keys carry the user id %r (%s); remove all but one first"
                                % (len(existing), uid, ", ".join(k.fingerprint for k in existing)))
        if existing and regenerate != "always":
            key = existing[0]
            differences = _key_differences(key, algorithm, usage)
            if differences and regenerate == "fail":
                raise ModuleFailure("key %s for %r differs from the requested one: %s (regenerate=fail)"
                                    % (key.fingerprint, uid, "; ".join(differences)))
            if differences:
                warnings.append("key %s for %r is kept although it differs: %s (regenerate=never)"
                                % (key.fingerprint, uid, "; ".join(differences)))
            result = _key_result(key, changed=False)
            result["diff"] = {"before": key_summary(key), "after": key_summary(key)}
            result["warnings"] = warnings
            return result

        before = [key_summary(key) for key in existing]
        planned = {"uids": [uid], "algorithm": algorithm, "usage": usage,
                   "expires": iso(gnupg.expires_to_epoch(params["expires"]))}
        if check_mode:
            return {"changed": True, "fingerprint": None, "replaced": [k.fingerprint for k in existing],
                    "diff": {"before": before[0] if len(before) == 1 else {"keys": before}, "after": planned}}
        for old in existing:  # regenerate=always: the old key is replaced, by explicit choice
            gpg.delete_key(old.fingerprint)
        fingerprint = gpg.generate_key(params["name"], email, comment=params.get("comment"), algorithm=algorithm,
                                       usage=usage, expires=params["expires"], passphrase=passphrase)
        key = gpg.get_key(fingerprint)
        result = _key_result(key, changed=True)
        result["replaced"] = [k.fingerprint for k in existing]
        result["diff"] = {"before": before[0] if len(before) == 1 else ({"keys": before} if before else {}),
                          "after": key_summary(key)}
        return result


def _key_differences(key, algorithm, usage):
    found = []
    if algorithm_name(key) != algorithm:
        found.append("algorithm is %s, not %s" % (algorithm_name(key), algorithm))
    if sorted(key.usage) != usage:
        found.append("usage is %s, not %s" % (",".join(key.usage), ",".join(usage)))
    if key.revoked:
        found.append("it is revoked")
    if not key.secret_present:
        found.append("its secret primary key is not in this homedir")
    return found


def _key_result(key, changed):
    summary = key_summary(key)
    result = {"changed": changed}
    for name in ("fingerprint", "key_id", "algorithm", "usage", "created", "expires", "uids", "subkeys",
                 "secret_primary_present"):
        result[name] = summary[name]
    return result


def _remove_keys(params, check_mode):
    email = params["email"]
    gnupg.validate_uid_field(email, "email", required=True)
    uid = build_uid(params["name"], email, params.get("comment")) if params.get("name") else None
    with keyring(params, check_mode) as gpg:
        doomed = [key for key in gpg.list_keys(selector=email) if uid is None or uid in key.uids]
        if doomed and not check_mode:
            for key in doomed:
                gpg.delete_key(key.fingerprint)
        return {"changed": bool(doomed), "removed": [k.fingerprint for k in doomed],
                "diff": {"before": {"keys": [key_summary(k) for k in doomed]}, "after": {"keys": []}}}


# -- openpgp_subkey -----------------------------------------------------------------------

def subkey_algorithm(primary, usage, algorithm):
    """The algorithm name gpg lists for a subkey we would create (ed25519 encrypts as cv25519)."""
    if algorithm is None:
        algorithm = algorithm_name(primary)
        if algorithm not in PRIMARY_ALGORITHMS:
            raise ModuleFailure("the primary key's algorithm %s cannot be reused for a subkey; set algorithm"
                                % algorithm)
    gnupg.validate_algorithm(algorithm)
    listed = "cv25519" if (algorithm == "ed25519" and usage == "encrypt") else algorithm
    return algorithm, listed


def ensure_subkey(params, check_mode):
    usage = params["usage"]
    if usage not in SUBKEY_USAGES:
        raise ModuleFailure("usage must be one of %s" % ", ".join(SUBKEY_USAGES))
    gnupg.parse_expires(params["expires"])
    passphrase = check_passphrase(params.get("passphrase"))
    with keyring(params, check_mode) as gpg:
        if params["state"] == "secret_absent":
            return _retire_subkey_secrets(gpg, params, check_mode)
        primary = get_key(gpg, params["key"])
        algorithm, listed = subkey_algorithm(primary, usage, params.get("algorithm"))
        matching = [sub for sub in primary.subkeys
                    if sub.usage == [usage] and algorithm_name(sub) == listed and sub.usable]
        if params["state"] == "absent":
            doomed = [sub for sub in primary.subkeys if sub.usage == [usage]
                      and (params.get("algorithm") is None or algorithm_name(sub) == listed)]
            if doomed and not check_mode:
                for sub in doomed:
                    gpg.delete_subkey(sub.fingerprint)
            after = gpg.get_key(primary.fingerprint) if doomed and not check_mode else primary
            return {"changed": bool(doomed), "removed": [s.fingerprint for s in doomed],
                    "primary_fingerprint": primary.fingerprint,
                    "diff": {"before": key_summary(primary),
                             "after": _without_subkeys(key_summary(after), [s.fingerprint for s in doomed])}}
        if matching:
            sub = matching[-1]
            return _subkey_result(primary, sub, False, {"before": key_summary(primary), "after": key_summary(primary)})
        if not primary.secret_present:
            raise ModuleFailure("the secret part of the primary key %s is not in %s: cannot add a subkey"
                                % (primary.fingerprint, gpg.homedir))
        if check_mode:
            planned = key_summary(primary)
            planned["subkeys"].append({"fingerprint": None, "algorithm": listed, "usage": [usage],
                                       "expires": iso(gnupg.expires_to_epoch(params["expires"]))})
            return {"changed": True, "fingerprint": None, "primary_fingerprint": primary.fingerprint,
                    "diff": {"before": key_summary(primary), "after": planned}}
        gpg.forget_passphrases()
        fingerprint = gpg.add_subkey(primary.fingerprint, algorithm=algorithm, usage=usage,
                                     expires=params["expires"], passphrase=passphrase)
        gpg.forget_passphrases()
        after = gpg.get_key(primary.fingerprint)
        sub = next(s for s in after.subkeys if s.fingerprint == fingerprint)
        return _subkey_result(after, sub, True, {"before": key_summary(primary), "after": key_summary(after)})


def _retire_subkey_secrets(gpg, params, check_mode):
    """state=secret_absent: the secret parts of the key's subkeys of that usage are deleted, the
    public key stays (earlier signatures keep verifying). A key not in the keyring has nothing
    to delete."""
    primary = gpg.find_key(params["key"])
    if primary is None:
        return {"changed": False, "removed": [], "primary_fingerprint": None, "diff": {"before": {}, "after": {}}}
    listed = None
    if params.get("algorithm"):
        listed = subkey_algorithm(primary, params["usage"], params["algorithm"])[1]
    doomed = [sub for sub in primary.subkeys if sub.usage == [params["usage"]] and sub.secret_present
              and (listed is None or algorithm_name(sub) == listed)]
    before = key_summary(primary)
    if doomed and not check_mode:
        gpg.delete_secret(primary.fingerprint, subkeys=[sub.fingerprint for sub in doomed])
        after = key_summary(gpg.get_key(primary.fingerprint))
    else:
        after = key_summary(primary)
        for sub in after["subkeys"]:
            if sub["fingerprint"] in [d.fingerprint for d in doomed]:
                sub["secret_present"] = False
    return {"changed": bool(doomed), "removed": [sub.fingerprint for sub in doomed],
            "primary_fingerprint": primary.fingerprint, "diff": {"before": before, "after": after}}


def _without_subkeys(summary, fingerprints):
    summary["subkeys"] = [s for s in summary["subkeys"] if s["fingerprint"] not in fingerprints]
    return summary


def _subkey_result(primary, sub, changed, diff):
    result = part_summary(sub)
    result.update({"changed": changed, "primary_fingerprint": primary.fingerprint, "diff": diff})
    return result


# -- openpgp_export -----------------------------------------------------------------------

def export_key(params, check_mode, output):
    kind = params["kind"]
    path = params["path"]
    armor = params["armor"]
    passphrase = check_passphrase(params.get("passphrase"))
    if kind == "public" and (params.get("strip_passphrase") or params.get("subkeys")):
        raise ModuleFailure("strip_passphrase and subkeys only apply to kind=secret_subkeys")
    default_mode = 0o600 if kind == "secret_subkeys" else 0o644
    with keyring(params, check_mode) as gpg:
        key = get_key(gpg, params["key"])
        existing = read_file(path)
        if kind == "public":
            wanted = gpg.export_public(key.fingerprint, armor=armor, minimal=params["minimal"])
            current = _public_export_state(gpg, existing)
            desired = _public_export_state(gpg, wanted)
            up_to_date = existing is not None and is_armored(existing) == armor and dearmor(existing) == dearmor(wanted)
        else:
            subkeys = _select_secret_subkeys(key, params.get("subkeys"))
            protection = gpg.secret_protection()
            source_clear = all(protection.get(sub.keygrip) == "clear" for sub in subkeys)
            desired = _secret_export_description(key, subkeys, clear=source_clear or params["strip_passphrase"],
                                                 armor=armor)
            current = _secret_export_state(existing, key.fingerprint)
            up_to_date = current == desired
            wanted = None
        changed = not up_to_date
        result = {"changed": changed, "path": path, "fingerprint": key.fingerprint,
                  "kind": kind, "diff": {"before": current or {}, "after": desired}}
        if kind == "secret_subkeys":
            result["subkeys"] = [sub.fingerprint for sub in _select_secret_subkeys(key, params.get("subkeys"))]
        if changed and not check_mode:
            if kind == "secret_subkeys":
                wanted = _export_secret_subkeys(gpg, key, _select_secret_subkeys(key, params.get("subkeys")),
                                                armor, passphrase, params["strip_passphrase"])
            output.write(path, wanted)
        result["changed"] = output.settle(path, default_mode, changed)
        return result


def _public_export_state(gpg, data):
    if not data:
        return None
    try:
        keys = gpg.show_keys(data)
    except gnupg.GpgError:
        return {"keys": [], "note": "not an OpenPGP key file"}
    return {"armored": is_armored(data), "keys": [_public_metadata(k) for k in keys]}


def _public_metadata(key):
    return {"fingerprint": key.fingerprint, "uids": list(key.uids), "expires": iso(key.expires),
            "revoked": key.revoked,
            "subkeys": [{"fingerprint": s.fingerprint, "usage": s.usage, "expires": iso(s.expires), "revoked": s.revoked}
                        for s in key.subkeys]}


def _select_secret_subkeys(key, selectors):
    if selectors:
        chosen = []
        for selector in selectors:
            wanted = selector.upper().replace(" ", "").rstrip("!")
            wanted = wanted[2:] if wanted.startswith("0X") else wanted
            match = [s for s in key.subkeys if s.fingerprint == wanted or (len(wanted) in (8, 16) and s.fingerprint.endswith(wanted))]
            if not match:
                raise ModuleFailure("%r is not a subkey of %s" % (selector, key.fingerprint))
            if not match[0].secret_present:
                raise ModuleFailure("the secret part of subkey %s is not in this homedir" % match[0].fingerprint)
            chosen.append(match[0])
    else:
        chosen = [s for s in key.subkeys if "sign" in s.usage and s.usable and s.secret_present]
        if not chosen:
            raise ModuleFailure("key %s has no usable signing subkey with its secret part here; add one with "
                                "pkgsign.signer.openpgp_subkey or name subkeys" % key.fingerprint)
    return sorted(chosen, key=lambda s: s.fingerprint)


def _secret_export_description(key, subkeys, clear, armor):
    return {
        "armored": armor,
        "primary": key.fingerprint,
        "secret_primary_included": False,
        "uids": sorted(key.uids),
        "primary_expires": iso(key.expires),
        "secret_subkeys": [{"fingerprint": s.fingerprint, "usage": s.usage, "expires": iso(s.expires)} for s in subkeys],
        "passphrase_protected": not clear,
    }


def _secret_export_state(data, primary_fingerprint):
    """What a secret-subkey export at ``path`` holds, learnt by importing it into a scratch homedir."""
    if not data:
        return None
    with gnupg.TemporaryGnuPG(prefix="pkgsign-inspect-") as scratch:
        try:
            scratch.import_keys(data)
        except gnupg.GpgError:
            return {"note": "not an OpenPGP key file"}
        keys = scratch.list_keys()
        key = next((k for k in keys if k.fingerprint == primary_fingerprint), None)
        if key is None:
            return {"primary": [k.fingerprint for k in keys]}
        subkeys = sorted((s for s in key.subkeys if s.secret_present), key=lambda s: s.fingerprint)
        protection = scratch.secret_protection()
        state = _secret_export_description(key, subkeys, clear=bool(subkeys) and all(
            protection.get(s.keygrip) == "clear" for s in subkeys), armor=is_armored(data))
        state["secret_primary_included"] = bool(key.secret_present)
        return state


def _export_secret_subkeys(gpg, key, subkeys, armor, passphrase, strip):
    fingerprints = [sub.fingerprint for sub in subkeys]
    gpg.forget_passphrases()
    try:
        if not strip:
            return gpg.export_secret_subkeys(fingerprints, armor=armor, passphrase=passphrase)
        # Re-protecting happens in a throw-away homedir, shredded afterwards, so the source
        # keyring never holds an unprotected copy.
        exported = gpg.export_secret_subkeys(fingerprints, armor=False, passphrase=passphrase)
        with gnupg.TemporaryGnuPG(prefix="pkgsign-strip-") as scratch:
            scratch.import_keys(exported)
            scratch.change_passphrase(key.fingerprint, passphrase or "", "")
            return scratch.export_secret_subkeys(fingerprints, armor=armor, passphrase="")
    finally:
        gpg.forget_passphrases()


# -- openpgp_import -----------------------------------------------------------------------

def import_keys(params, check_mode):
    if params.get("src"):
        data = read_file(params["src"])
        if data is None:
            raise ModuleFailure("src %s is not a readable file" % params["src"])
    else:
        data = params["content"].encode("utf-8")
    if not data.strip():
        raise ModuleFailure("nothing to import: the key data is empty")
    with keyring(params, check_mode) as gpg:
        before_keys = {k.fingerprint: k for k in gpg.list_keys()}
        try:
            if check_mode:
                with _scratch_copy(gpg) as scratch:
                    fingerprints, counts = scratch.import_with_counts(data)
                    after_keys = {k.fingerprint: k for k in scratch.list_keys()}
            else:
                fingerprints, counts = gpg.import_with_counts(data)
                after_keys = {k.fingerprint: k for k in gpg.list_keys()}
        except gnupg.GpgError as exc:
            raise ModuleFailure("nothing could be imported: %s" % _gpg_reason(exc))
        if not counts.get("count"):
            raise ModuleFailure("no OpenPGP key found in the data to import")
        if not fingerprints:
            # A bare revocation certificate names no key in IMPORT_OK; its issuer is the key.
            details = gpg.revocation_details(data)
            if details and details["issuer"]:
                fingerprints = [details["issuer"]]
        changed = any(counts.get(name, 0) for name in IMPORT_CHANGE_COUNTERS)
        return {
            "changed": changed,
            "fingerprints": fingerprints,
            "counts": counts,
            "diff": {"before": {fpr: key_summary(before_keys[fpr]) for fpr in fingerprints if fpr in before_keys},
                     "after": {fpr: key_summary(after_keys[fpr]) for fpr in fingerprints if fpr in after_keys}},
        }


def _gpg_reason(exc):
    """The line of gpg's diagnostics that says why, rather than its closing statistics."""
    for line in (exc.stderr or "").splitlines():
        line = line.strip()
        if line.startswith("gpg: "):
            line = line[5:]
        if not line or line.startswith(("Total number", "keybox ", "no ultimately trusted")) or "created" in line \
                or line[:1] == " ":
            continue
        return line
    return str(exc)


@contextlib.contextmanager
def _scratch_copy(gpg):
    """A throw-away copy of ``gpg``'s keyrings (check mode imports there, then it is shredded)."""
    with gnupg.TemporaryGnuPG(prefix="pkgsign-check-") as scratch:
        for name in ("pubring.kbx", "pubring.gpg", "trustdb.gpg"):
            source = os.path.join(gpg.homedir, name)
            if os.path.isfile(source):
                shutil.copy2(source, os.path.join(scratch.homedir, name))
        secrets = os.path.join(gpg.homedir, "private-keys-v1.d")
        if os.path.isdir(secrets):
            target = os.path.join(scratch.homedir, "private-keys-v1.d")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(secrets, target)
        yield scratch


# -- openpgp_revocation -------------------------------------------------------------------

REVOCATION_GUARD_NOTE = (
    "Revocation certificate of the OpenPGP key %s.\n"
    "A colon precedes its armor header line, so that importing this file by accident does not\n"
    "revoke the key. To revoke it: delete that colon (sed 's/^:-----BEGIN/-----BEGIN/' this file)\n"
    "and import the result with gpg --import.\n\n")


def revocation_armor(data):
    """The armored certificate alone: without the guard and the text before the armor."""
    lines = unguard_revocation(data).splitlines(True)
    start = next((i for i, line in enumerate(lines) if line.startswith(b"-----BEGIN PGP ")), 0)
    return b"".join(lines[start:])


def guard_revocation(data, fingerprint):
    """The certificate with an explanation and a ':' before its armor header line (gpg's guard)."""
    return (REVOCATION_GUARD_NOTE % fingerprint).encode("ascii") + b":" + revocation_armor(data)


def unguard_revocation(data):
    """The certificate gpg would import: the guarding ':' before an armor header line removed."""
    return re.sub(br"(?m)^:(-----BEGIN PGP )", br"\1", data)


def is_guarded(data):
    return re.search(br"(?m)^:-----BEGIN PGP ", data) is not None


def ensure_revocation(params, check_mode, output):
    path = params["path"]
    guard = params.get("import_guard", True)
    passphrase = check_passphrase(params.get("passphrase"))
    description = "\n".join(line.strip() for line in (params.get("description") or "").splitlines() if line.strip())
    for char in description:
        if char != "\n" and (ord(char) < 0x20 or ord(char) == 0x7F):
            raise ModuleFailure("description must not contain control characters")
    with keyring(params, check_mode) as gpg:
        key = get_key(gpg, params["key"], secret_primary=True)
        existing = read_file(path)
        current = _revocation_state(gpg, key, existing, path)
        if current and current.get("fingerprint") not in (None, key.fingerprint):
            # It may be the last resort of another key: never overwritten implicitly.
            raise ModuleFailure("%s holds the revocation certificate of another key (%s); refusing to overwrite it"
                                % (path, current["fingerprint"]))
        desired = {"path": path, "fingerprint": key.fingerprint, "reason": params["reason"],
                   "description": description, "valid": True, "import_guard": guard}
        changed = current != desired
        # Only the guard differs: the certificate is kept, no passphrase needed.
        reguard = changed and current is not None and dict(current, import_guard=guard) == desired
        result = {"changed": changed, "path": path, "fingerprint": key.fingerprint,
                  "reason": params["reason"], "import_guard": guard,
                  "diff": {"before": current or {}, "after": desired}}
        if check_mode:
            result["changed"] = output.settle(path, 0o600, changed)
            return result
        if reguard:
            data = unguard_revocation(existing)
        elif changed:
            data = gpg.generate_revocation(key.fingerprint, reason=params["reason"], description=description,
                                           passphrase=passphrase)
        if changed:
            output.write(path, guard_revocation(data, key.fingerprint) if guard else revocation_armor(data))
        result["changed"] = output.settle(path, 0o600, changed)
        return result


def _revocation_state(gpg, key, data, path):
    if not data:
        return None
    guarded = is_guarded(data)
    data = unguard_revocation(data)
    details = gpg.revocation_details(data)
    if details is None:
        return {"path": path, "note": "not a revocation certificate"}
    state = {"path": path, "fingerprint": details["issuer"], "reason": details["reason"],
             "description": "\n".join(l.strip() for l in details["description"].splitlines() if l.strip()),
             "valid": False, "import_guard": guarded}
    if details["issuer"] == key.fingerprint:
        # The certificate counts only if it really revokes this key: try it on a scratch copy.
        with gnupg.TemporaryGnuPG(prefix="pkgsign-revcheck-") as scratch:
            scratch.import_keys(gpg.export_public(key.fingerprint, armor=False))
            scratch.import_keys(data)
            state["valid"] = scratch.get_key(key.fingerprint).revoked
    return state


# -- openpgp_certify ----------------------------------------------------------------------

def ensure_certification(params, check_mode):
    passphrase = check_passphrase(params.get("passphrase"))
    exportable = params["exportable"]
    with keyring(params, check_mode) as gpg:
        target = get_key(gpg, params["key"])
        signer = get_key(gpg, params["signer"], secret_primary=True, what="signer")
        if signer.fingerprint == target.fingerprint:
            raise ModuleFailure("a key cannot certify itself: key and signer are both %s" % target.fingerprint)
        if "cert" not in signer.usage or not signer.usable:
            raise ModuleFailure("signer %s cannot certify (revoked, expired or without cert usage)" % signer.fingerprint)
        if target.revoked or target.expired:
            raise ModuleFailure("key %s is %s and cannot be certified"
                                % (target.fingerprint, "revoked" if target.revoked else "expired"))
        wanted = params.get("uids") or list(target.uids)
        unknown = [uid for uid in wanted if uid not in target.uids]
        if unknown:
            raise ModuleFailure("key %s has no user id %s" % (target.fingerprint, ", ".join(repr(u) for u in unknown)))
        before = _certifications(gpg, target.fingerprint, signer)
        missing = [uid for uid in wanted if not _certified(before.get(uid, []), exportable)]
        result = {"changed": bool(missing), "fingerprint": target.fingerprint, "signer": signer.fingerprint,
                  "certified_uids": missing}
        after = before
        if missing and not check_mode:
            gpg.certify(target.fingerprint, signer.fingerprint, uids=missing, exportable=exportable,
                        passphrase=passphrase)
            after = _certifications(gpg, target.fingerprint, signer)
            still = [uid for uid in wanted if not _certified(after.get(uid, []), exportable)]
            if still:
                raise ModuleFailure("gpg did not certify %s" % ", ".join(still))
        elif missing:
            after = dict(before)
            for uid in missing:
                after[uid] = after.get(uid, []) + ["exportable" if exportable else "local"]
        result["diff"] = {"before": {"fingerprint": target.fingerprint, "certified_by_signer": before},
                          "after": {"fingerprint": target.fingerprint, "certified_by_signer": after}}
        return result


def _certifications(gpg, fingerprint, signer):
    """``{uid: ['exportable'|'local', ...]}``: the signer's standing certifications per user id."""
    found = {}
    for uid, signatures in gpg.list_signatures(fingerprint).items():
        kinds = []
        for sig in signatures:
            issuer = sig["issuer"].upper()
            if issuer not in (signer.fingerprint, signer.key_id) or not sig["class"][:2] in ("10", "11", "12", "13"):
                continue
            if sig["revocation"]:
                kinds = []
                continue
            kinds.append("local" if sig["class"].endswith("l") else "exportable")
        found[uid] = sorted(set(kinds))
    return found


def _certified(kinds, exportable):
    return "exportable" in kinds if exportable else bool(kinds)


# -- openpgp_expire -----------------------------------------------------------------------

def ensure_expiry(params, check_mode):
    gnupg.parse_expires(params["expires"])
    passphrase = check_passphrase(params.get("passphrase"))
    within = params.get("within")
    if within is not None and within < 0:
        raise ModuleFailure("within must be a number of days >= 0")
    now = time.time()
    target = gnupg.expires_to_epoch(params["expires"], now=now)
    with keyring(params, check_mode) as gpg:
        if params.get("key"):
            keys = [get_key(gpg, params["key"], secret_primary=True)]
            skipped = []
        else:
            everything = [k for k in gpg.list_keys() if not k.revoked]
            keys = [k for k in everything if k.secret_present]
            skipped = [k.fingerprint for k in everything if not k.secret_present]
        updates = []
        for key in keys:
            primary = _needs_new_expiry(key, target, within, now)
            subs = [sub for sub in key.subkeys if params["subkeys"] and sub.expires is not None and not sub.revoked
                    and _needs_new_expiry(sub, target, within, now)]
            if primary or subs:
                updates.append((key, primary, subs))
        result = {"changed": bool(updates), "skipped": skipped,
                  "updated": [{"fingerprint": key.fingerprint,
                               "parts": ([key.fingerprint] if primary else []) + [s.fingerprint for s in subs]}
                              for key, primary, subs in updates],
                  "expires": iso(target)}
        before = {key.fingerprint: _expiry_view(key) for key, _p, _s in updates}
        after = {}
        for key, primary, subs in updates:
            view = _expiry_view(key)
            for part in ([key] if primary else []) + subs:
                view[part.fingerprint] = iso(target)
            after[key.fingerprint] = view
        if updates and not check_mode:
            gpg.forget_passphrases()
            try:
                for key, primary, subs in updates:
                    if primary:
                        gpg.set_expire(key.fingerprint, params["expires"], passphrase=passphrase)
                    if subs:
                        gpg.set_expire(key.fingerprint, params["expires"], subkeys=[s.fingerprint for s in subs],
                                       passphrase=passphrase)
            finally:
                gpg.forget_passphrases()
            after = {key.fingerprint: _expiry_view(gpg.get_key(key.fingerprint)) for key, _p, _s in updates}
        result["diff"] = {"before": before, "after": after}
        return result


def _needs_new_expiry(part, target, within, now):
    if part.revoked:
        return False
    if within is not None:
        # A prolong job: only what expires within that many days (or has expired) is extended.
        return part.expires is not None and part.expires <= now + within * DAY and _differs(part.expires, target)
    return _differs(part.expires, target)


def _differs(current, target):
    if current is None or target is None:
        return current != target
    return abs(current - target) >= DAY  # dates are compared by the day, so a relative expiry is idempotent


def _expiry_view(key):
    view = {key.fingerprint: iso(key.expires)}
    for sub in key.subkeys:
        view[sub.fingerprint] = iso(sub.expires)
    return view


# -- openpgp_key_info ---------------------------------------------------------------------

def key_info(params, check_mode):
    with keyring(params, check_mode, read_only=True) as gpg:
        if params.get("key"):
            keys = [get_key(gpg, params["key"])]
        else:
            keys = gpg.list_keys()
        return {"changed": False, "keys": [key_summary(k) for k in keys]}


# -- openpgp_sign -------------------------------------------------------------------------

def sign_file(params, check_mode, output):
    src, dest, mode, armor = params["src"], params["dest"], params["signature_mode"], params["armor"]
    passphrase = check_passphrase(params.get("passphrase"))
    selectors = params["key"]
    if not selectors:
        raise ModuleFailure("key must name at least one signing key")
    content = read_file(src)
    if content is None:
        raise ModuleFailure("src %s is not a readable file" % src)
    if mode == "clearsign" and not armor:
        raise ModuleFailure("a clearsigned message is always armored; leave armor at true")
    with keyring(params, check_mode) as gpg:
        signers = []
        for selector in selectors:
            key = get_key(gpg, selector)
            if not any("sign" in part.usage and part.usable and part.secret_present for part in [key] + key.subkeys):
                raise ModuleFailure("key %s has no usable signing key with its secret part in %s"
                                    % (key.fingerprint, gpg.homedir))
            if key.fingerprint not in signers:
                signers.append(key.fingerprint)
        current = _current_signers(gpg, src, dest, content, mode, armor)
        changed = current != sorted(signers)
        result = {"changed": changed, "dest": dest, "signers": sorted(signers), "signature_mode": mode,
                  "diff": {"before": {"dest": dest, "signers": current or []},
                           "after": {"dest": dest, "signers": sorted(signers)}}}
        if changed and not check_mode:
            gpg.forget_passphrases()
            try:
                data = gpg.sign(content, signers, mode=mode, armor=armor, passphrase=passphrase)
            finally:
                gpg.forget_passphrases()
            output.write(dest, data)
        result["changed"] = output.settle(dest, 0o644, changed)
        return result


def _current_signers(gpg, src, dest, content, mode, armor):
    existing = read_file(dest)
    if not existing or is_armored(existing) != (armor or mode == "clearsign"):
        return None
    try:
        if mode == "detached":
            return sorted(set(gpg.verify(dest, src)))
        if not existing.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
            return None
        text, signers = gpg.decrypt_clearsigned(existing)
    except gnupg.GpgError:
        return None
    if _normalise_text(text) != _normalise_text(content):
        return None
    return sorted(set(signers))


def _normalise_text(data):
    # Clearsigning canonicalises line endings and trailing white space.
    return [line.rstrip() for line in data.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")]
