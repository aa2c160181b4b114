"""Encrypted backup and restore of a pkgsign instance (``pkgsign-admin backup|restore``).

A backup is a tar archive encrypted with gpg to one or more operator public keys (given as
files, never imported into the service keyring), so the backup host and the media it travels
on can read nothing. It holds what a fresh signer needs to continue where this one stopped:

``gnupg/``      the GnuPG home (secret keys, public keyring, trustdb, revocation certificates);
``keys/``       per-key metadata; ``pending/`` markers of unfinished key operations;
``phrases/``    passphrase files of imported keys; ``tokens.json`` (hashes only);
``audit.log``, ``audit.log.head``, ``audit-files/`` (rotated logs) and ``audit-gnupg/`` (the
checkpoint key); ``MANIFEST.json`` (what the archive must contain).

The snapshot is consistent with a running server: the GnuPG home is copied under the keyring
lock (no key generation or deletion in between), then the pending markers, then the
metadata. A key in the copied keyring either has its metadata in the archive or a pending
marker that ``reconcile`` completes after the restore; the audit log and its head are copied
under the log's own lock.

The backup key (an ed25519 signing subkey made for that only, in the audit GnuPG home;
``pkgsign-admin backup-key`` prints its public key for the operator to keep off the host) signs
twice. Inside: the tar archive is an OpenPGP signed message before it is encrypted, so whoever
decrypts it still holds a signed message. Outside: the encrypted archive is signed again, so the
file is an OpenPGP signed message whose content is the encrypted archive. Every door checks the
signature it can see against the pinned public key (``--backup-key FILE``), in a throw-away
keyring holding that key only, before it goes on:

- ``restore --gnupghome G --backup-key PUB`` (decrypt and restore in one step): the outer
  signature before anything is decrypted, then the inner one before anything is extracted;
- ``backup-decrypt --backup-key PUB`` (on the operator's machine): the outer signature before
  decrypting, the inner one before writing; its output is the inner signed message;
- ``restore --archive SIGNED --backup-key PUB`` (on the signer, which holds no operator key): the
  inner signature before anything is extracted. A bare tar archive is refused.

An archive planted by someone who knows the operators' public keys (encrypted to them, unsigned
or signed by another key), or a plaintext handed to the signer, is refused and nothing is
installed. Archives of the previous format (signed outside only) still restore through
``--gnupghome``, where the outer signature was verified; their plaintext never does.

Restore refuses to overwrite an instance that already holds keys (``--force`` to do it),
validates every archive member (regular files and directories below the instance only),
checks the manifest, then finishes interrupted operations (``reconcile``).
"""

import io
import json
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time

from . import _gnupg
from .config import CONFIG_HELP, load_config

FORMAT = 1
ARCHIVE_PREFIX = "pkgsign-backup-"
# Never archived: agent sockets and runtime files, lock files, temporary files.
_SKIP_NAMES = {"S.gpg-agent", "S.gpg-agent.browser", "S.gpg-agent.extra", "S.gpg-agent.ssh", "S.scdaemon",
               "S.dirmngr", "random_seed", ".gpg-v21-migrated"}


class BackupError(Exception):
    """Backup or restore cannot go on; the message says why."""


def _skipped(name):
    return name in _SKIP_NAMES or name.startswith(".tmp-") or name.startswith(".#lk") or name.endswith(".lock")


def _copy_tree(source, target):
    """Copy regular files and directories of ``source`` (0700/0600), skipping runtime files."""
    count = 0
    if not os.path.isdir(source):
        return 0
    _gnupg.ensure_private_dir(target)
    for directory, dirs, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        dirs[:] = [d for d in dirs if not _skipped(d)]
        for name in dirs:
            _gnupg.ensure_private_dir(os.path.join(target, relative, name))
        for name in files:
            path = os.path.join(directory, name)
            if _skipped(name) or not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            _copy_file(path, os.path.join(target, relative, name))
            count += 1
    return count


def _copy_file(source, target):
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)


def snapshot(config, target, say=lambda message: None):
    """Copy the instance's state into ``target`` (a private directory); returns the manifest."""
    from .keystore import KeyStore

    store = KeyStore(config)
    with store.keyring_lock(exclusive=True):
        files = _copy_tree(config.gnupg_home, os.path.join(target, "gnupg"))
        say("keyring copied (%d files)" % files)
        _copy_tree(store.pending_dir, os.path.join(target, "pending"))
        _copy_tree(config.metadata_dir, os.path.join(target, "keys"))
    records = store.all_metadata()
    _copy_tree(config.phrases_dir, os.path.join(target, "phrases"))
    if os.path.isfile(config.tokens_file):
        _copy_file(config.tokens_file, os.path.join(target, "tokens.json"))
    audit_lines = 0
    from .audit import _lock_current_shared as _lock_audit_log, rotated_files

    fd = _lock_audit_log(config.audit_log)  # AuditLog.append writes line and head, and rotates, under this lock
    if fd is not None:
        try:
            _copy_file(config.audit_log, os.path.join(target, "audit.log"))
            if os.path.isfile(config.audit_log + ".head"):
                _copy_file(config.audit_log + ".head", os.path.join(target, "audit.log.head"))
            for _number, name in rotated_files(config.audit_log):  # as audit-files/audit.log.N[.gz]
                _gnupg.ensure_private_dir(os.path.join(target, "audit-files"))
                if not os.path.exists(name):  # compressed meanwhile
                    name += ".gz"
                _copy_file(name, os.path.join(target, "audit-files", "audit.log" + name[len(config.audit_log):]))
        finally:
            os.close(fd)
        with open(os.path.join(target, "audit.log"), "rb") as handle:
            audit_lines = sum(1 for _ignored in handle)
    _copy_tree(config.audit_gnupg_home, os.path.join(target, "audit-gnupg"))  # the checkpoint key
    copied = set()
    for name in os.listdir(os.path.join(target, "keys")) if os.path.isdir(os.path.join(target, "keys")) else []:
        with open(os.path.join(target, "keys", name), encoding="utf-8") as handle:
            copied.add(json.load(handle)["fingerprint"])
    manifest = {"format": FORMAT, "created": int(time.time()), "host": socket.gethostname(),
                "keys": sorted(copied), "audit_lines": audit_lines,
                "tokens": sorted(_token_ids(os.path.join(target, "tokens.json")))}
    _gnupg.write_private_file(os.path.join(target, "MANIFEST.json"),
                              (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    say("snapshot: %d key(s) with metadata (%d in the live store), %d token(s), %d audit line(s)"
        % (len(copied), len(records), len(manifest["tokens"]), audit_lines))
    return manifest


def _token_ids(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return list(json.load(handle).get("tokens", {}))
    except (OSError, ValueError):
        return []


def _tar(directory):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in sorted(os.listdir(directory)):
            archive.add(os.path.join(directory, name), arcname=name, filter=_normalize)
    return buffer.getvalue()


def _normalize(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o700 if info.isdir() else 0o600
    return info


def backup(config_path, recipient_files, output_dir, keep=0, say=lambda message: None):
    """Write an encrypted backup into ``output_dir``; returns (path, manifest)."""
    config = load_config(config_path)
    for path in recipient_files:
        if not os.path.isfile(path):
            raise BackupError("recipient key file %s does not exist" % path)
    _gnupg.ensure_private_dir(output_dir)
    from .audit import ensure_audit_key

    signer, _created = ensure_audit_key(config, "backup")  # before the snapshot: the archive carries it
    work = tempfile.mkdtemp(prefix="pkgsign-backup-", dir=config.state_dir)
    try:
        manifest = snapshot(config, os.path.join(work, "state"), say)
        plaintext = _sign_with_backup_key(config, signer, _tar(os.path.join(work, "state")))
        say("archive: %d bytes, signed by the backup key; encrypting to %s"
            % (len(plaintext), ", ".join(recipient_files)))
        # A throw-away home: encryption needs no key of the service, and touches no keyring.
        with _gnupg.TemporaryGnuPG(base=work) as gpg:
            ciphertext = gpg.encrypt(plaintext, recipient_files)
    finally:
        _gnupg.shred_tree(work)
    ciphertext = _sign_with_backup_key(config, signer, ciphertext)
    say("signed by backup key %s (inside and outside)" % signer["fingerprint"])
    name = "%s%s.tar.gz.gpg" % (ARCHIVE_PREFIX, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    path = os.path.join(output_dir, name)
    _gnupg.write_private_file(path, ciphertext)
    say("wrote %s (%d bytes)" % (path, len(ciphertext)))
    if keep > 0:
        archives = sorted(n for n in os.listdir(output_dir) if n.startswith(ARCHIVE_PREFIX) and n.endswith(".gpg"))
        for old in archives[:-keep]:
            os.unlink(os.path.join(output_dir, old))
            say("removed old backup %s" % old)
    return path, manifest


def _sign_with_backup_key(config, signer, data):
    """``data`` as an OpenPGP signed message (binary) made by the instance's backup key."""
    from .audit import _private_umask, audit_gnupg

    gpg = audit_gnupg(config)
    try:
        with _private_umask():
            return gpg.sign(data, [signer["signing_fingerprint"] + "!"], mode="inline", armor=False)
    except _gnupg.GpgError as err:
        raise BackupError("signing the backup with the backup key failed: %s" % err.message)
    finally:
        gpg.kill_agent()


# -- restore ------------------------------------------------------------------------------

def _safe_members(archive):
    members = []
    for member in archive.getmembers():
        name = member.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise BackupError("refusing archive member %r (only files and directories inside the archive)" % name)
        if parts[0] not in ("gnupg", "keys", "pending", "phrases", "tokens.json", "audit.log", "audit.log.head",
                            "audit-files", "audit-gnupg", "MANIFEST.json"):
            raise BackupError("unexpected archive member %r" % name)
        members.append(member)
    return members


GZIP_MAGIC = b"\x1f\x8b"
_KEY_REQUIRED = ("--backup-key FILE is required: the backup key's public key pinned off the signer "
                 "(pkgsign-admin backup-key prints it)")


def _signed_content(data, backup_key_file):
    """The content of the OpenPGP signed message ``data`` if it verifies with the pinned key, else None.

    Runs in a throw-away GnuPG home that holds the pinned key and nothing else, so no other key
    (not the operator's, not one an attacker imported somewhere) can make it verify, and no
    secret key is there to decrypt anything. Every signature gpg saw must be a valid one by the
    pinned key, and there must be one."""
    if not backup_key_file:
        raise BackupError(_KEY_REQUIRED)
    try:
        with open(backup_key_file, "rb") as handle:
            pinned = handle.read()
    except OSError as err:
        raise BackupError("cannot read backup key %s: %s" % (backup_key_file, err.strerror or err))
    with _gnupg.TemporaryGnuPG() as gpg:
        try:
            imported = gpg.import_keys(pinned)
        except _gnupg.GpgError as err:
            raise BackupError("backup key %s is not an OpenPGP public key: %s" % (backup_key_file, err.message))
        if not imported:
            raise BackupError("backup key %s holds no OpenPGP key" % backup_key_file)
        result = gpg.run(["--decrypt"], input=data, check=False)
    valid = [fields[-1].upper() for fields in result.status_lines("VALIDSIG") if fields]
    if result.returncode != 0 or not valid or not set(valid) <= {f.upper() for f in imported} \
            or result.status_lines("BADSIG") or result.status_lines("ERRSIG"):
        return None
    # One signed message and nothing else: a literal packet (or a second message) before or after
    # the signed one would end up in gpg's output next to the signed data.
    if len(result.status_lines("PLAINTEXT")) != 1 or len(result.status_lines("NEWSIG")) != len(valid):
        return None
    return result.stdout


def verify_archive(data, backup_key_file):
    """The encrypted archive inside a signed backup, once its (outer) signature verifies with the
    backup key the operator pinned (``backup_key_file``, armored or binary); BackupError otherwise."""
    content = _signed_content(data, backup_key_file)
    if content is None:
        raise BackupError("the archive is not signed by the pinned backup key %s: refused, nothing decrypted or "
                          "installed" % backup_key_file)
    return content


def verify_plaintext(signed, backup_key_file):
    """The tar archive inside a decrypted backup (the inner signed message that ``backup-decrypt``
    writes), once its signature verifies with the pinned backup key; BackupError otherwise (a bare
    tar archive included: nobody vouched for it)."""
    if not backup_key_file:
        raise BackupError(_KEY_REQUIRED)
    if signed[:2] == GZIP_MAGIC:
        raise BackupError("a bare tar archive, not signed by the backup key: refused, nothing installed "
                          "(restore only what backup-decrypt --backup-key wrote, or the encrypted backup with "
                          "--gnupghome)")
    content = _signed_content(signed, backup_key_file)
    if content is None:
        raise BackupError("the decrypted archive is not signed by the pinned backup key %s: refused, nothing "
                          "installed" % backup_key_file)
    if content[:2] != GZIP_MAGIC:
        raise BackupError("the signed content is not a tar archive (an encrypted backup? give --gnupghome, or "
                          "decrypt it with backup-decrypt first): refused, nothing installed")
    return content


def decrypt_archive(data, gnupghome, passphrase=None, backup_key_file=None):
    """The decrypted content of a signed, encrypted backup: the outer signature is checked against
    the pinned backup key first (``verify_archive``), then the archive decrypted with the operator's
    key in ``gnupghome``. That content is the inner signed message (``verify_plaintext`` opens it),
    or for an archive of the previous format the bare tar archive."""
    ciphertext = verify_archive(data, backup_key_file)
    gpg = _gnupg.GnuPG(gnupghome, create=False)
    return gpg.decrypt(ciphertext, passphrase=passphrase)


def open_backup(data, backup_key_file, gnupghome=None, passphrase=None):
    """(tar archive, which signatures vouched for it) of what ``restore`` was given.

    With ``gnupghome`` ``data`` is the encrypted backup: outer signature, decryption, inner
    signature ("outer+inner"); an archive of the previous format has none inside, and its outer
    signature alone vouches for it ("outer"). Without, ``data`` is what ``backup-decrypt`` wrote:
    the inner signature must verify ("inner"); a bare tar archive is refused."""
    if not backup_key_file:
        raise BackupError(_KEY_REQUIRED)
    if gnupghome:
        decrypted = decrypt_archive(data, gnupghome, passphrase, backup_key_file)
        if decrypted[:2] == GZIP_MAGIC:
            return decrypted, "outer"
        return verify_plaintext(decrypted, backup_key_file), "outer+inner"
    return verify_plaintext(data, backup_key_file), "inner"


def restore(config_path, archive_bytes, force=False, say=lambda message: None):
    """Bring the instance of ``config_path`` to the archive's state; returns the manifest.

    ``archive_bytes`` is a tar archive the pinned backup key vouched for (``open_backup``): this
    checks its members, not where it came from."""
    from .keystore import KeyStore

    config = load_config(config_path)
    if archive_bytes[:2] != GZIP_MAGIC:
        raise BackupError("not a tar archive of a pkgsign backup")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz")
        members = _safe_members(archive)
    except (tarfile.TarError, EOFError) as err:
        raise BackupError("the archive is damaged: %s" % err)
    names = {member.name for member in members}
    if "MANIFEST.json" not in names:
        raise BackupError("the archive has no MANIFEST.json: not a pkgsign backup")
    manifest = json.loads(archive.extractfile("MANIFEST.json").read())
    if manifest.get("format") != FORMAT:
        raise BackupError("backup format %r is not supported (expected %d)" % (manifest.get("format"), FORMAT))
    if os.path.isdir(config.metadata_dir) and any(n.endswith(".json") for n in os.listdir(config.metadata_dir)) \
            and not force:
        raise BackupError("%s already holds keys; restore only into a fresh instance (or --force)"
                          % config.state_dir)

    targets = {"gnupg": config.gnupg_home, "keys": config.metadata_dir,
               "pending": os.path.join(config.state_dir, "pending"), "phrases": config.phrases_dir,
               "audit-gnupg": config.audit_gnupg_home}
    files = {"tokens.json": config.tokens_file, "audit.log": config.audit_log,
             "audit.log.head": config.audit_log + ".head"}
    _gnupg.ensure_private_dir(config.state_dir)
    _gnupg.GnuPG(config.gnupg_home).kill_agent()  # the agent must not keep serving the old keys
    if force:
        for directory in targets.values():
            shutil.rmtree(directory, ignore_errors=True)
    restored = 0
    for member in members:
        top, _ignored, rest = member.name.partition("/")
        if top == "MANIFEST.json":
            continue
        if top in files:
            destination = files[top]
        elif top == "audit-files":  # rotated audit logs: audit.log.N[.gz] beside the configured log
            if member.isdir():
                continue
            if not re.fullmatch(r"audit\.log\.[1-9][0-9]{0,8}(\.gz)?", rest):
                raise BackupError("unexpected archive member %r" % member.name)
            destination = config.audit_log + rest[len("audit.log"):]
        else:
            destination = os.path.join(targets[top], rest) if rest else targets[top]
        if member.isdir():
            _gnupg.ensure_private_dir(destination)
            continue
        _gnupg.ensure_private_dir(os.path.dirname(destination))
        _gnupg.write_private_file(destination, archive.extractfile(member).read())
        restored += 1
    say("restored %d files into %s" % (restored, config.state_dir))

    store = KeyStore(config)
    for what, email in store.reconcile():
        say("finished interrupted key %s for %s" % (what, email))
    present = {key.fingerprint for key in store.gnupg.list_keys(secret=True)}
    missing = [fpr for fpr in manifest.get("keys", []) if fpr not in present]
    if missing:
        raise BackupError("restored keyring lacks the secret part of %s" % ", ".join(missing))
    store.gnupg.run(["--check-trustdb"], check=False)
    say("%d key(s), %d token(s), %d audit line(s) restored from the backup of %s made %s"
        % (len(manifest.get("keys", [])), len(manifest.get("tokens", [])), manifest.get("audit_lines", 0),
           manifest.get("host", "?"), time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(manifest.get("created", 0)))))
    return manifest


# -- pkgsign-admin subcommands -------------------------------------------------------------

def add_commands(sub, say, error_class):
    """Register ``backup`` and ``restore`` on pkgsign-admin's sub-parser.

    ``error_class`` is the exception pkgsign-admin turns into one line and exit status 2.
    """
    parser = sub.add_parser("backup", help="write an encrypted backup of keys, metadata, tokens and audit log")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--recipient-file", action="append", required=True,
                        help="operator public key file to encrypt to (repeatable)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--keep", type=int, default=0, help="keep only the newest N backups (0: all)")
    parser.set_defaults(func=lambda args: _cmd_backup(args, say, error_class))

    parser = sub.add_parser("restore", help="restore a backup into a fresh instance")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--archive", required=True,
                        help="the encrypted backup (with --gnupghome), or what backup-decrypt wrote ('-' for "
                             "standard input)")
    parser.add_argument("--gnupghome", help="GnuPG home with the operator's secret key, to decrypt the archive")
    parser.add_argument("--passphrase-stdin", action="store_true",
                        help="read the operator key's passphrase from the first line of standard input")
    parser.add_argument("--backup-key", metavar="FILE",
                        help="the backup key's public key, pinned off the signer (required): the archive's "
                             "signatures must verify with it before anything is decrypted or installed")
    parser.add_argument("--force", action="store_true", help="overwrite an instance that already holds keys")
    parser.set_defaults(func=lambda args: _cmd_restore(args, say, error_class))

    parser = sub.add_parser("backup-key", help="print the public key that signs this instance's backups "
                                               "(made on first use; pin it off the signer)")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.set_defaults(func=_cmd_backup_key)

    parser = sub.add_parser("backup-decrypt", help="decrypt a backup with the operator's key (on the operator's "
                                                   "machine; needs neither Flask nor an instance)")
    parser.add_argument("--archive", required=True)
    parser.add_argument("--gnupghome", required=True, help="GnuPG home with the operator's secret key")
    parser.add_argument("--output", required=True,
                        help="decrypted archive, still signed by the backup key (restore --archive takes it), "
                             "written 0600")
    parser.add_argument("--backup-key", metavar="FILE", required=True,
                        help="the backup key's public key, pinned off the signer (pkgsign-admin backup-key)")
    parser.add_argument("--passphrase-stdin", action="store_true")
    parser.set_defaults(func=lambda args: _cmd_decrypt(args, say, error_class))


def _cmd_decrypt(args, say, error_class):
    import sys

    try:
        passphrase = sys.stdin.readline().rstrip("\n") if args.passphrase_stdin else None
        with open(args.archive, "rb") as handle:
            data = decrypt_archive(handle.read(), args.gnupghome, passphrase, args.backup_key)
        previous_format = data[:2] == GZIP_MAGIC
        if not previous_format:
            verify_plaintext(data, args.backup_key)  # refused here already, not only on the signer
        _gnupg.write_private_file(args.output, data)
    except (OSError, _gnupg.GpgError, BackupError) as err:
        raise _admin_error(err, error_class)
    say("decrypted %s into %s (%d bytes, %s)" % (
        args.archive, args.output, len(data),
        "a bare tar archive of the previous format, signed outside only: restore --archive refuses it, restore "
        "the encrypted backup with --gnupghome and --backup-key instead" if previous_format
        else "signed by the backup key inside: restore --archive FILE --backup-key PUB takes it"))
    return 0


def _cmd_backup(args, say, error_class):
    try:
        path, _ignored = backup(args.config, args.recipient_file, args.output_dir, keep=args.keep, say=say)
    except (BackupError, OSError) as err:
        raise _admin_error(err, error_class)
    print(path)
    return 0


def _cmd_restore(args, say, error_class):
    import sys

    if args.archive == "-" and args.passphrase_stdin:
        raise error_class("--passphrase-stdin needs --archive FILE (standard input holds one of them)")
    try:
        passphrase = sys.stdin.readline().rstrip("\n") if args.passphrase_stdin else None
        if args.archive == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.archive, "rb") as handle:
                data = handle.read()
        data, signatures = open_backup(data, args.backup_key, args.gnupghome, passphrase)
        manifest = restore(args.config, data, force=args.force, say=say)
    except (BackupError, OSError, _gnupg.GpgError) as err:
        error = _admin_error(err, error_class)
        _audit_restore(args, "refused", reason=str(error))
        raise error
    say("the archive was signed by the pinned backup key %s (%s)" % (args.backup_key, signatures))
    # The first line after the restored chain: what was restored, from where, by whom.
    _audit_restore(args, "ok", keys=len(manifest.get("keys", [])), backup_host=manifest.get("host"),
                   backup_created=manifest.get("created"), verified_with=args.backup_key, signatures=signatures)
    return 0


def _audit_restore(args, result, **fields):
    """One audit line for a restore decision, in the instance's log (a refusal goes to the log the
    instance has now, which a later restore replaces with the archive's). Never fails the command."""
    import pwd

    from .audit import AuditLog

    try:
        config = load_config(args.config)
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        AuditLog.from_config(config).append(operation="restore", result=result, token=None, client="pkgsign-admin",
                                            user=user, archive=os.path.basename(args.archive), **fields)
    except Exception:  # noqa: BLE001 - the restore's own outcome is what the operator needs to see
        pass


def _cmd_backup_key(args):
    from .audit import audit_public_key, ensure_audit_key

    config = load_config(args.config)
    ensure_audit_key(config, "backup")
    print(audit_public_key(config, "backup").decode("ascii"), end="")
    return 0


def _admin_error(err, error_class):
    if isinstance(err, OSError):
        return error_class("%s: %s" % (getattr(err, "filename", None) or "file", err.strerror or err))
    if isinstance(err, _gnupg.GpgError):
        return error_class("cannot decrypt the backup: %s" % err.message)
    return error_class(str(err))
