"""pkgsign-admin: set up, serve and maintain a pkgsign instance.

The configuration is --config, else $PKGSIGN_CONFIG, else /etc/pkgsign/pkgsign.conf. Started as
root, it runs as the owner of the instance's state directory (the service user), so that what it
writes stays the service's."""

import argparse
import json
import os
import sys
import time

from . import _gnupg
from .config import CONFIG_HELP, ConfigError, ascii_lower, load_config
from .tokens import (SCOPES, TokenFileError, add_token, certificate_sha256, ensure_token, grant_key, read_tokens,
                     remove_idle_rate_limit_files, revoke_token, validate_token_fields)

DEFAULT_BIND = "127.0.0.1:5003"
# Commands that work without an existing instance: they run as whoever started them.
NO_INSTANCE_COMMANDS = ("init", "backup-decrypt")


class AdminError(Exception):
    pass


def _say(message):
    print(message, file=sys.stderr, flush=True)


# -- init --------------------------------------------------------------------------------

CONFIG_TEMPLATE = """\
# pkgsign service configuration (keys documented in files/pkgsign/README.md).
[server]
state_dir = {dir}
gnupg_home = {dir}/gnupg
phrases_dir = {dir}/phrases
tokens_file = {dir}/tokens.json
audit_log = {dir}/audit.log
log_level = INFO

[keygen]
algorithm = {algorithm}
expire = 0
# Client networks allowed to call POST /gen_key without a token (copr-keygen's model):
allow_without_token_from =

[signing]
default_digest = sha256
allow_sha1 = no

[rate_limit]
default = 600/60

[aliases]
"""


# The longest socket name gpg-agent binds in its socket directory, and what a Unix socket path may
# hold (sun_path is 108 bytes with its terminating NUL).
LONGEST_AGENT_SOCKET = "S.gpg-agent.browser"
MAX_SOCKET_PATH = 107


def agent_socket_problem(homedir):
    """Why gpg-agent could not listen for a GnuPG home, or None: gpg puts its sockets in
    /run/user/<uid>/gnupg when that directory exists, else in the home itself, and a socket path
    longer than 107 bytes cannot be bound (gpg then fails with "No agent running")."""
    import subprocess

    try:
        proc = subprocess.run(["gpgconf", "--homedir", homedir, "--list-dirs", "agent-socket"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no gpgconf: gpg itself will say what is wrong
    socket_path = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not socket_path:
        return None
    longest = os.path.join(os.path.dirname(socket_path), LONGEST_AGENT_SOCKET)
    if len(longest.encode("utf-8")) <= MAX_SOCKET_PATH:
        return None
    return ("%s is too deep for gpg-agent: its socket %s would be %d bytes, more than the %d a Unix socket path may "
            "have; use a shorter directory, or create /run/user/%d (mode 0700, owned by you), where gpg then puts "
            "its sockets" % (homedir, longest, len(longest.encode("utf-8")), MAX_SOCKET_PATH, os.getuid()))


def cmd_init(args):
    directory = os.path.abspath(args.dir)
    config_path = os.path.join(directory, "pkgsign.conf")
    if os.path.exists(config_path) and not args.force:
        raise AdminError("%s exists (use --force to overwrite the instance's config and client token)" % config_path)
    for home in ("gnupg", "audit-gnupg"):  # before anything is written: a refusal leaves nothing behind
        problem = agent_socket_problem(os.path.join(directory, home))
        if problem:
            raise AdminError(problem)
    _gnupg.ensure_private_dir(directory)
    for sub in ("gnupg", "phrases"):
        _gnupg.ensure_private_dir(os.path.join(directory, sub))
    _gnupg.write_private_file(config_path, CONFIG_TEMPLATE.format(dir=directory, algorithm=args.algorithm).encode())
    config = load_config(config_path)
    secret = add_token(config.tokens_file, "client", ["sign", "keygen"], ["*"], replace=True)
    from .audit import ensure_audit_key

    ensure_audit_key(config)  # the key audit checkpoints are signed with
    token_path = os.path.join(directory, "client.token")
    _gnupg.write_private_file(token_path, (secret + "\n").encode())
    server = args.server or "http://%s" % DEFAULT_BIND
    _gnupg.write_private_file(os.path.join(directory, "sign.conf"),
                              ("server: %s\ntoken_file: %s\nhash: sha256\n" % (server, token_path)).encode())
    print("created %s\n  serve:  pkgsign-admin serve --config %s --bind %s\n  client: SIGN_CONF=%s sign -t"
          % (directory, config_path, DEFAULT_BIND, os.path.join(directory, "sign.conf")))


# -- serve -------------------------------------------------------------------------------

def cmd_serve(args):
    from werkzeug.serving import WSGIRequestHandler

    from .app import create_app

    host, _colon, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        raise AdminError("--bind must be HOST:PORT")
    config = load_config(args.config)
    for home in (config.gnupg_home, config.audit_gnupg_home):
        problem = agent_socket_problem(home) if home else None
        if problem:
            raise AdminError(problem)
    os.umask(0o077)  # as the role's WSGI daemon: whatever gpg creates (pubring.kbx ...) stays owner-only
    app = create_app(config)

    class KeepAliveHandler(WSGIRequestHandler):
        # HTTP/1.1 keeps the client's connection open between its requests (batches, -p then -r).
        protocol_version = "HTTP/1.1"

        def log_request(self, code="-", size="-"):
            if args.access_log:
                super().log_request(code, size)

    from .serving import make_bounded_server  # read/header timeouts, bounded worker pool

    server = make_bounded_server(host.strip("[]"), int(port), app, KeepAliveHandler, config)
    import signal
    import threading

    # SIGTERM (systemd stop, kill): finish the loop cleanly instead of dying mid-write.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print("pkgsign: serving on http://%s:%d" % (host, server.server_port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.extensions["pkgsign"].agent.close()


# -- tokens ------------------------------------------------------------------------------

def _split(text):
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _read_secret_from_stdin():
    secret = sys.stdin.readline().strip()
    if not secret:
        raise AdminError("no token secret on standard input")
    return secret


def _client_cert_binding(args):
    """The SHA-256 fingerprint a token is bound to: --client-cert FILE or --client-cert-sha256."""
    if args.client_cert and args.client_cert_sha256:
        raise AdminError("use --client-cert or --client-cert-sha256, not both")
    if args.client_cert:
        try:
            with open(args.client_cert, encoding="ascii") as handle:
                return certificate_sha256(handle.read())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise AdminError("cannot read client certificate %s: %s" % (args.client_cert, getattr(err, "strerror", None) or err)) from None
    return args.client_cert_sha256


def cmd_token_add(args, replace=False):
    config = load_config(args.config)
    binding = _client_cert_binding(args)
    secret = _read_secret_from_stdin() if args.stdin else None
    keep = getattr(args, "keep_pins", None)
    if keep is not None:  # a rotation: the keys stay those the token was bound to
        pinned, granted = keep
    else:  # each pattern bound to the fingerprints it matches now (tokens.py, docs/security.md)
        from .keystore import KeyStore

        validate_token_fields(args.id, _split(args.scopes), _split(args.keys), args.rate, args.max_keys)
        pinned, granted = KeyStore(config).pin_patterns(_split(args.keys)), {}
        args.pinned = {pattern: len(fps) for pattern, fps in pinned.items()}
    created = add_token(config.tokens_file, args.id, _split(args.scopes), _split(args.keys), secret=secret,
                        rate=args.rate, replace=replace or args.replace, client_cert_sha256=binding,
                        pinned=pinned, granted=granted, max_keys=getattr(args, "max_keys", None))
    if not args.stdin:
        print(created)  # shown once; only its hash is stored
    _say("token %s %s" % (args.id, "rotated" if (replace or args.replace) else "added"))


def cmd_token_rotate(args):
    config = load_config(args.config)
    entry = read_tokens(config.tokens_file).get(args.id)
    if entry is None:
        raise AdminError("no token %r" % args.id)
    if entry.get("revoked"):
        raise AdminError("token %r is revoked and stays revoked: add a new token under another id" % args.id)
    args.scopes = ",".join(entry.get("scopes", []))
    args.keys = ",".join(entry.get("keys", []))
    args.rate = entry.get("rate")
    args.max_keys = entry.get("max_keys")
    args.keep_pins = (entry["pinned"], entry.get("granted") or {}) if "pinned" in entry else (None, None)
    if not (args.client_cert or args.client_cert_sha256 or args.unbind_client_cert):
        args.client_cert_sha256 = entry.get("client_cert_sha256")  # a rotation keeps the binding
    cmd_token_add(args, replace=True)


def cmd_token_grant(args):
    """Grant one key (named by email, fingerprint, key id or alias; resolved now) to a token whose
    patterns bind to fingerprints: the explicit act a new rotation cycle needs."""
    from .keystore import KeyStore, UnknownKey

    config = load_config(args.config)
    store = KeyStore(config)
    try:
        record = store.resolve(args.key)
    except UnknownKey:
        raise AdminError("no key %r on this server" % args.key) from None
    entry = read_tokens(config.tokens_file).get(args.id)
    if not isinstance(entry, dict) or entry.get("revoked"):
        raise AdminError("no active token %r" % args.id)
    names = store.names_of(record, args.key)
    grant_key(config.tokens_file, args.id, record["fingerprint"], names)
    args.fingerprint = record["fingerprint"]
    _say("token %s granted key %s (%s)" % (args.id, record["fingerprint"], record.get("name_email") or args.key))


def _answer(args, answer):
    """A declarative command's answer: one JSON line with --json, else one readable line; the
    audit line follows only when something was written."""
    args.audit_skip = args.check or not answer["changed"]
    if args.json:
        print(json.dumps(dict(answer, check=args.check), sort_keys=True))
    else:
        print("token %s %s%s" % (answer["id"], answer["action"], " (check: nothing written)" if args.check else ""))


def cmd_token_ensure(args):
    """Make a token exactly as given (configuration management): compared with the registered
    one, written only when something differs."""
    if not args.stdin:
        raise AdminError("token ensure reads the secret from standard input only: give --stdin")
    config = load_config(args.config)
    binding = _client_cert_binding(args)
    secret = _read_secret_from_stdin()

    def resolve_pins(patterns):
        from .keystore import KeyStore

        return KeyStore(config).pin_patterns(patterns)

    answer = ensure_token(config.tokens_file, args.id, _split(args.scopes), _split(args.keys), secret, rate=args.rate,
                          client_cert_sha256=binding, max_keys=args.max_keys, resolve_pins=resolve_pins,
                          replace_revoked=args.replace_revoked, dry_run=args.check)
    args.action, args.changes, args.pinned = answer["action"], answer["changes"], answer["pinned"]
    _answer(args, answer)


def cmd_token_revoke(args):
    config = load_config(args.config)
    action = revoke_token(config.tokens_file, args.id, missing_ok=args.missing_ok, dry_run=args.check)
    args.action = action
    if args.json or args.check:
        _answer(args, {"id": args.id, "changed": action == "revoked", "action": action})
    else:
        args.audit_skip = action != "revoked"
        _say("token %s %s" % (args.id, {"revoked": "revoked", "unchanged": "was revoked already",
                                        "missing": "is not registered"}[action]))


def cmd_token_list(args):
    config = load_config(args.config)
    tokens = read_tokens(config.tokens_file)
    if args.json:
        print(json.dumps({tid: {k: v for k, v in e.items() if k != "sha256"} for tid, e in tokens.items()},
                         indent=1, sort_keys=True))
        return
    print("%-24s %-20s %-30s %-10s %s" % ("ID", "SCOPES", "KEYS", "RATE", "STATE"))
    for token_id, entry in sorted(tokens.items()):
        print("%-24s %-20s %-30s %-10s %s" % (token_id, ",".join(entry.get("scopes", [])),
                                              ",".join(entry.get("keys", [])), entry.get("rate", "default"),
                                              "revoked" if entry.get("revoked") else
                                              "active, client-cert bound" if entry.get("client_cert_sha256") else "active"))


# -- audit -------------------------------------------------------------------------------

def cmd_audit_verify(args):
    from .audit import audit_public_key, check, find_checkpoints

    config = load_config(args.config)
    checkpoints = []
    for given in args.checkpoint or ():
        text = given
        if os.path.isfile(given):
            with open(given, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        found = find_checkpoints(text)
        if not found:
            raise AdminError("no checkpoint line (pkgsign-audit-checkpoint ...) in %s" % given[:80])
        checkpoints.extend(found)
    key = None
    if args.audit_key:
        with open(args.audit_key, "rb") as handle:
            key = handle.read()
    elif checkpoints:
        key = audit_public_key(config)
        print("audit log %s: checkpoint signatures checked against this instance's own audit key "
              "(give the key pinned off the host with --audit-key)" % config.audit_log)
    report = check(config.audit_log, checkpoints, key, gpg_binary=config.gpg_binary)
    for note in report.notes:
        print("audit log %s: %s" % (config.audit_log, note))
    if report.problems:
        for problem in report.problems:
            print("audit log %s: %s" % (config.audit_log, problem))
        return 1
    summary = "audit log %s: %d lines in %d file(s), chain intact" % (config.audit_log, report.count, report.files)
    if report.checkpoint:
        summary += ", matches the checkpoint of %s (seq %d)" % (report.checkpoint["time"], report.checkpoint["seq"])
    print(summary)
    if report.uncovered:
        print("audit log %s: %d line(s) after that checkpoint are covered by none (appended since, or "
              "forged): give a later checkpoint" % (config.audit_log, report.uncovered))
        return 0 if args.allow_uncovered else 3
    return 0


def cmd_audit_checkpoint(args):
    from .audit import Checkpointer

    config = load_config(args.config)
    line = Checkpointer(config).maybe_checkpoint(force=True)
    if line is None:
        raise AdminError("the audit log %s is empty: nothing to checkpoint" % config.audit_log)
    print(line)
    return 0


def cmd_audit_key(args):
    from .audit import audit_public_key, ensure_audit_key

    config = load_config(args.config)
    record, created = ensure_audit_key(config)
    sys.stdout.write(audit_public_key(config).decode("ascii"))
    _say("audit key %s (signing subkey %s)%s" % (record["fingerprint"], record["signing_fingerprint"],
                                                 ", created" if created else ""))
    return 0


# -- maintain ----------------------------------------------------------------------------

def cmd_maintain(args):
    """Prolong the keys this signer may prolong; report the ones whose expiry belongs elsewhere.

    Only a key whose primary secret is in the keyring can get a new expiry (gpg signs the new
    self-signature with the primary). A ceremony key is held as ``sec#`` (signing subkey only):
    its expiry is the bastion's business, so it is reported as skipped with its expiry date, as a
    warning once it is within ``warn_days``. Exit status 1 only when a prolongation failed.
    """
    import datetime

    from .config import parse_lifetime
    from .keystore import KeyStore, key_record

    config = load_config(args.config)
    within = args.within_days if args.within_days is not None else config.maintain_within_days
    warn_days = args.warn_days if args.warn_days is not None else config.maintain_warn_days
    extend = parse_lifetime(args.extend or config.maintain_extend)
    store = KeyStore(config)
    gnupg = store.gnupg
    by_fingerprint = {record["fingerprint"]: record for record in store.all_metadata()}
    with store.keyring_lock():
        expiring = gnupg.keys_expiring_within(max(within, warn_days))
    now = time.time()

    def first_expiry(key):
        dates = [part.expires for part in [key] + [sub for sub in key.subkeys if not sub.revoked] if part.expires]
        return min(dates)

    prolong = [key for key in expiring if key.secret_present and first_expiry(key) <= now + within * 86400]
    held_elsewhere = [key for key in expiring if not key.secret_present]
    until = datetime.datetime.fromtimestamp(_gnupg.expires_to_epoch(extend, now), datetime.timezone.utc)
    _say("%d key(s) expire within %d days with their primary secret key here: new expiry %s from now (%s)"
         % (len(prolong), within, extend, until.strftime("%Y-%m-%d")))
    failures = 0
    for number, key in enumerate(prolong, 1):
        record = by_fingerprint.get(key.fingerprint)
        passphrase = store.passphrase_for(record) if record else None
        # One absolute moment for the primary and its subkeys: they keep expiring together.
        stamp = _gnupg.isotime(_gnupg.expires_to_epoch(extend, time.time()))
        try:
            with store.keyring_lock(exclusive=True):  # the server may be running
                gnupg.set_expire(key.fingerprint, stamp, passphrase=passphrase)
                subkeys = [sub.fingerprint for sub in key.subkeys if not sub.revoked and sub.expires]
                if subkeys:
                    gnupg.set_expire(key.fingerprint, stamp, subkeys=subkeys, passphrase=passphrase)
            if record:
                refreshed = store.lookup_gpg(key.fingerprint)
                fields = {k: v for k, v in record.items() if k not in key_record(refreshed)}
                store.save_metadata(key_record(refreshed, record["name_email"], record.get("origin", "generated"),
                                               **fields))
            _say("[%d/%d] extended %s %s" % (number, len(prolong), key.fingerprint, ", ".join(key.emails)))
        except _gnupg.GpgError as err:
            failures += 1
            _say("[%d/%d] FAILED %s: %s" % (number, len(prolong), key.fingerprint, err.message))
    for key in held_elsewhere:
        expires = first_expiry(key)
        date = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).strftime("%Y-%m-%d")
        days = int((expires - now) // 86400)
        late = expires <= now + warn_days * 86400
        if not late and expires > now + within * 86400:
            continue
        _say("%sskipped %s %s: primary secret key not here (sec#), %s %s (%s); prolong it where the primary "
             "key is kept (playbooks/rotate-key.yml on the bastion) and import the new public key"
             % ("WARNING: " if late else "", key.fingerprint, ", ".join(key.emails),
                "expired" if days < 0 else "expires", date,
                "%d days ago" % -days if days < 0 else "in %d days" % days))
    failures += _remake_weak_self_signatures(config, store, by_fingerprint)
    refreshed_count = _refresh_metadata(store)
    _say("metadata of %d key(s) refreshed from the keyring (expiry, revocation)" % refreshed_count)
    gnupg.run(["--check-trustdb"], check=False)
    _say("trustdb checked")
    fixed = store.reconcile()
    for what, email in fixed:
        _say("recovered interrupted key %s for %s" % (what, email))
    removed, kept = remove_idle_rate_limit_files(config.state_dir)
    _say("rate-limit state: %d idle key file(s) removed, %d in use" % (removed, kept))
    return 1 if failures else 0


def _remake_weak_self_signatures(config, store, by_fingerprint):
    """Re-make SHA-1 (or weaker) self-signatures of the keys whose primary secret is here; say
    which keys need their offline primary. Returns the number of failures."""
    from .keystore import describe_parts, weak_self_signatures_of

    with store.keyring_lock():
        keys = [key for key in store.gnupg.list_keys(secret=True) if not key.revoked]
        found = weak_self_signatures_of(store.gnupg, keys)
    weak = [(key, found[key.fingerprint]) for key in keys if key.fingerprint in found]
    if not weak:
        _say("self-signatures: all %d key(s) use %s or better, nothing to re-make" % (len(keys), _gnupg.CERT_DIGEST))
        return 0
    here = [(key, parts) for key, parts in weak if key.secret_present]
    _say("self-signatures: %d key(s) carry self-signatures weaker than %s, %d of them with their primary "
         "secret key here" % (len(weak), _gnupg.CERT_DIGEST, len(here)))
    failures = 0
    for number, (key, parts) in enumerate(here, 1):
        outcome = _remake_one(config, store, key, by_fingerprint.get(key.fingerprint))
        if outcome is None:
            record = by_fingerprint.get(key.fingerprint) or {}
            _say("[%d/%d] re-made self-signatures of %s %s with %s: %s; clients need the refreshed public "
                 "key (GET /pubkey/%s, then rpmkeys --import)"
                 % (number, len(here), key.fingerprint, ", ".join(key.emails), _gnupg.CERT_DIGEST,
                    describe_parts(parts), record.get("name_email") or key.fingerprint))
        else:
            failures += 1
            _say("[%d/%d] FAILED to re-make self-signatures of %s: %s" % (number, len(here), key.fingerprint, outcome))
    for key, parts in weak:
        if key.secret_present:
            continue
        _say("WARNING: %s %s needs the offline primary key: its self-signatures use a weak digest (%s) and only "
             "the primary key can re-make them; run `gpg --cert-digest-algo SHA256 --quick-set-expire` where the "
             "primary is kept and import the new public key" % (key.fingerprint, ", ".join(key.emails),
                                                                describe_parts(parts)))
        _audit_admin(config, "remake_self_signatures", "refused", fingerprint=key.fingerprint,
                     reason="primary secret key not here (sec#)", parts=[p["name"] for p in parts])
    return failures


def _remake_one(config, store, key, record):
    """Re-make one key's weak self-signatures (audited); None when done, else the reason it failed."""
    from .keystore import RemakeError, remake_self_signatures

    passphrase = store.passphrase_for(record) if record else None
    try:
        done = remake_self_signatures(store.gnupg, key, passphrase=passphrase,
                                      lock=store.keyring_lock(exclusive=True))
    except (RemakeError, _gnupg.GpgError, _gnupg.InvalidInput) as err:
        reason = getattr(err, "message", None) or str(err)
        _audit_admin(config, "remake_self_signatures", "failed", fingerprint=key.fingerprint, reason=reason)
        return reason
    if done:
        store.forget_public_key(key.fingerprint)
        _audit_admin(config, "remake_self_signatures", "ok", fingerprint=key.fingerprint,
                     digest=_gnupg.CERT_DIGEST, parts=[part["name"] for part in done])
    return None


def _refresh_metadata(store):
    """Bring expiry, revocation and the signing part in the metadata in line with the keyring
    (changed by hand: a revoked or expired signing subkey is refused from then on)."""
    from .keystore import RECORD_KEY_FIELDS, key_record

    with store.keyring_lock():
        listed = {key.fingerprint: key for key in store.gnupg.list_keys(secret=True)}
    changed = 0
    for record in store.all_metadata():
        key = listed.get(record["fingerprint"])
        if key is None:
            continue
        with store.email_lock(record["name_email"]):
            fresh = key_record(key, record["name_email"], record.get("origin", "generated"))
            merged = dict(record, **{k: fresh[k] for k in RECORD_KEY_FIELDS})
            if merged != record:
                store.save_metadata(merged)
                changed += 1
    # Expiry and revocation live in the public key: export afresh on the next request.
    for name in os.listdir(store.pubkey_cache_dir) if os.path.isdir(store.pubkey_cache_dir) else ():
        os.unlink(os.path.join(store.pubkey_cache_dir, name))
    return changed


# -- key pool ----------------------------------------------------------------------------

def cmd_pool(args):
    from .keystore import KeyStore

    config = load_config(args.config)
    store = KeyStore(config)
    if store.pool is None:
        raise AdminError("the key pool is off ([keygen] pool_size = 0)")
    if args.pool_command == "fill":
        _say("filling the key pool to %d per algorithm: %s" % (config.pool_size, ", ".join(config.pool_algorithms)))
        made = store.pool.refill(progress=lambda algo, have, want: _say("  %s %d/%d" % (algo, have, want)))
        _say("made %d key(s)" % made)
    from .keypool import KEY_PARTS

    for algorithm, count in sorted(store.pool.counts().items()):
        # A key takes KEY_PARTS pieces of material (certify-only primary, sign-only subkey).
        print("%s %d/%d (%d pieces of key material)" % (algorithm, count // KEY_PARTS, config.pool_size, count))
    return 0


# -- add-subkey --------------------------------------------------------------------------

def cmd_add_subkey(args):
    from .keystore import KeyStore, KeyStoreError, UnknownKey

    config = load_config(args.config)
    store = KeyStore(config)
    try:
        added, record, message = store.add_signing_subkey(args.key, dry_run=args.check)
    except UnknownKey:
        raise AdminError("no key %r in %s" % (args.key, config.gnupg_home))
    except KeyStoreError as err:
        raise AdminError(str(err))
    _say(message)
    if added:
        _say("clients that imported the old public key need the new one: re-import it into rpm "
             "(rpmkeys --import), re-publish it for apt/dnf repositories (GET /pubkey/%s)"
             % (record.get("name_email") or record["fingerprint"]))
    return 0


# -- import-copr -------------------------------------------------------------------------

def cmd_import_copr(args):
    from .keystore import KeyStore, describe_parts, key_record, weak_self_signatures

    config = load_config(args.config)
    store = KeyStore(config)
    source = _gnupg.GnuPG(args.gnupghome, create=False)
    keys = source.list_keys(secret=True)
    _say("importing %d key(s) from %s" % (len(keys), args.gnupghome))
    imported = failures = remade = 0
    for number, key in enumerate(keys, 1):
        email = ascii_lower(key.emails[0] if key.emails else "")
        if not email:
            _say("[%d/%d] skipped %s: no email in its user ids" % (number, len(keys), key.fingerprint))
            continue
        problem = _phrase_file_name_problem(email)
        if problem:  # a crafted keyring must not steer a read or a write outside the phrase directories
            failures += 1
            _say("[%d/%d] FAILED %s: its email %r %s" % (number, len(keys), key.fingerprint, email, problem))
            continue
        phrase_file = os.path.join(args.phrases, email) if args.phrases else None
        passphrase = None
        if phrase_file and os.path.isfile(phrase_file):
            with open(phrase_file, encoding="utf-8") as handle:
                passphrase = handle.read().strip("\n") or None
        try:
            with store.email_lock(email):
                if store.get_metadata(email) is not None:
                    _say("[%d/%d] %s already present, kept" % (number, len(keys), email))
                    continue
                secret = source.run(["--armor", "--export-secret-keys", key.fingerprint],
                                    passphrase=passphrase if passphrase is not None else "").stdout
                with store.keyring_lock(exclusive=True):
                    store.gnupg.import_keys(secret)
                if passphrase:
                    _gnupg.write_private_file(os.path.join(config.phrases_dir, email), (passphrase + "\n").encode())
                mine = store.lookup_gpg(key.fingerprint)
                if mine is None:
                    raise _gnupg.GpgError("the key did not arrive in %s" % config.gnupg_home)
                store.save_metadata(key_record(mine, email, origin="copr-keygen", protected=bool(passphrase)))
                imported += 1
                _say("[%d/%d] imported %s %s" % (number, len(keys), key.fingerprint, email))
                # Old copr-keygen keys carry SHA-1 self-signatures, which Sequoia's policy refuses.
                with store.keyring_lock():
                    parts = weak_self_signatures(store.gnupg, mine)
                if parts:
                    outcome = _remake_one(config, store, mine, store.get_metadata(email))
                    if outcome is None:
                        remade += 1
                        _say("[%d/%d] re-made its self-signatures with %s (%s): clients need the refreshed public "
                             "key (GET /pubkey/%s), the copr-keygen copy is refused by rpm-sequoia and dnf5"
                             % (number, len(keys), _gnupg.CERT_DIGEST, describe_parts(parts), email))
                    else:
                        failures += 1
                        _say("[%d/%d] FAILED to re-make the self-signatures of %s: %s"
                             % (number, len(keys), email, outcome))
        except _gnupg.GpgError as err:
            failures += 1
            _say("[%d/%d] FAILED %s %s: %s" % (number, len(keys), key.fingerprint, email, err.message))
    _say("%d imported, %d failed" % (imported, failures))
    if remade:
        _say("%d key(s) got %s self-signatures instead of SHA-1: publish their refreshed public keys "
             "(clients that imported the copr-keygen copy need the new one)" % (remade, _gnupg.CERT_DIGEST))
    return 1 if failures else 0


def _phrase_file_name_problem(email):
    """Why ``email`` cannot name a phrase file (copr-keygen's layout: one file per name_email in
    its phrases directory, and ours), or None. An imported keyring's user ids were never checked
    against name_email_pattern: "<../../x#p@c>" is a user id gpg makes without complaint."""
    if "/" in email or "\0" in email or email in (".", ".."):
        return "is not a single file name"
    if len(email.encode("utf-8")) > 255:
        return "is longer than a file name may be (255 bytes)"
    try:
        _gnupg.validate_uid_field(email, "email")
    except _gnupg.InvalidInput as err:
        return "is refused: %s" % err
    return None


# -- audit of administration -------------------------------------------------------------

AUDITED_TOKEN_COMMANDS = ("add", "rotate", "revoke", "grant", "ensure")


def _audit_admin(config, operation, result, **fields):
    """One audit line for a decision of pkgsign-admin (never a secret)."""
    import pwd

    from .audit import AuditLog

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    if os.environ.get("SUDO_USER"):
        user += " (sudo by %s)" % os.environ["SUDO_USER"]
    AuditLog.from_config(config).append(operation=operation, result=result, token=None, client="pkgsign-admin",
                                        user=user, **fields)


def _audited_token_command(func):
    """``func`` (token add/rotate/revoke/grant/ensure) with one audit line for its outcome (a refusal with its
    reason); an outcome that wrote nothing (unchanged, --check) sets ``args.audit_skip``."""
    def run(args):
        config = load_config(args.config)
        operation = "token_" + args.token_command
        try:
            status = func(args)
        except (AdminError, TokenFileError) as err:
            _audit_admin(config, operation, "refused", token_id=args.id, reason=str(err))
            raise
        if getattr(args, "audit_skip", False):
            return status
        fields = {name: getattr(args, name) for name in ("scopes", "keys", "rate", "replace", "pinned", "key",
                                                         "fingerprint", "max_keys", "action", "changes")
                  if getattr(args, name, None) not in (None, "")}
        for name in ("scopes", "keys"):
            if name in fields:
                fields[name] = _split(fields[name])
        _audit_admin(config, operation, "ok", token_id=args.id, **fields)
        return status
    return run


# -- entry point -------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="pkgsign-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a self-contained instance in DIR")
    init.add_argument("dir")
    init.add_argument("--algorithm", default="rsa4096", choices=tuple(_gnupg.ALGORITHMS))
    init.add_argument("--server", help="URL written into DIR/sign.conf (default http://%s)" % DEFAULT_BIND)
    init.add_argument("--force", action="store_true")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="run the service on a multi-threaded HTTP server")
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--bind", default=DEFAULT_BIND, help="HOST:PORT (port 0 picks a free one)")
    serve.add_argument("--access-log", action="store_true", help="log every request to standard error")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="manage bearer tokens (no restart needed)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    for name, helptext in (("add", "add a token"), ("rotate", "give a token a new secret")):
        tok = token_sub.add_parser(name, help=helptext)
        tok.add_argument("--config", help=CONFIG_HELP)
        tok.add_argument("--id", required=True)
        if name == "add":
            tok.add_argument("--scopes", required=True, help="comma-separated: %s" % ", ".join(SCOPES))
            tok.add_argument("--keys", required=True, help="comma-separated key patterns (fnmatch), '*' for all")
            tok.add_argument("--rate", help="rate limit REQUESTS/SECONDS for this token")
            tok.add_argument("--max-keys", help="most keys this token may have made through /gen_key and not "
                                                "deleted (default: [budget] keys_per_token)")
            tok.add_argument("--replace", action="store_true", help="replace an existing token of that id")
            tok.set_defaults(func=cmd_token_add)
        else:
            tok.add_argument("--unbind-client-cert", action="store_true",
                             help="drop the token's client certificate binding")
            tok.set_defaults(func=cmd_token_rotate, replace=True)
        tok.add_argument("--stdin", action="store_true", help="read the secret from standard input")
        tok.add_argument("--client-cert", metavar="FILE",
                         help="bind the token to this TLS client certificate (PEM): refused on any other connection")
        tok.add_argument("--client-cert-sha256", metavar="HEX",
                         help="bind the token to the client certificate with this SHA-256 fingerprint")
    grant = token_sub.add_parser("grant", help="grant a token one more key (a new rotation cycle of its keys)")
    grant.add_argument("--config", help=CONFIG_HELP)
    grant.add_argument("--id", required=True)
    grant.add_argument("--key", required=True, help="the key: email, fingerprint, key id or alias (resolved now)")
    grant.set_defaults(func=cmd_token_grant)
    ensure = token_sub.add_parser("ensure", help="make a token exactly as given, writing only what differs "
                                                 "(configuration management; answers changed/unchanged)")
    ensure.add_argument("--config", help=CONFIG_HELP)
    ensure.add_argument("--id", required=True)
    ensure.add_argument("--scopes", required=True, help="comma-separated: %s" % ", ".join(SCOPES))
    ensure.add_argument("--keys", required=True, help="comma-separated key patterns (fnmatch), '*' for all; "
                                                      "patterns the token has keep their binding")
    ensure.add_argument("--rate", help="rate limit REQUESTS/SECONDS for this token (none: the default)")
    ensure.add_argument("--max-keys", help="most keys this token may have made through /gen_key and not deleted "
                                           "(none: [budget] keys_per_token)")
    ensure.add_argument("--stdin", action="store_true", help="read the secret from standard input (required)")
    ensure.add_argument("--client-cert", metavar="FILE", help="bind the token to this TLS client certificate (PEM)")
    ensure.add_argument("--client-cert-sha256", metavar="HEX",
                        help="bind the token to the client certificate with this SHA-256 fingerprint (none: unbound)")
    ensure.add_argument("--replace-revoked", action="store_true",
                        help="the id is revoked: make a new token under it (a secret never used before)")
    ensure.add_argument("--check", action="store_true", help="say what would be done, write nothing")
    ensure.add_argument("--json", action="store_true", help="answer one JSON line")
    ensure.set_defaults(func=cmd_token_ensure)
    revoke = token_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("--config", help=CONFIG_HELP)
    revoke.add_argument("--id", required=True)
    revoke.add_argument("--missing-ok", action="store_true", help="an unknown id is no error (nothing to revoke)")
    revoke.add_argument("--check", action="store_true", help="say what would be done, write nothing")
    revoke.add_argument("--json", action="store_true", help="answer one JSON line")
    revoke.set_defaults(func=cmd_token_revoke)
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--config", help=CONFIG_HELP)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_token_list)
    for name in AUDITED_TOKEN_COMMANDS:  # each decision of these is an audit line
        command = token_sub.choices[name]
        command.set_defaults(func=_audited_token_command(command.get_default("func")))

    audit = sub.add_parser("audit", help="audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain of the audit log")
    verify.add_argument("--config", help=CONFIG_HELP)
    verify.set_defaults(func=cmd_audit_verify)
    verify.add_argument("--checkpoint", action="append", metavar="FILE|TEXT",
                        help="a checkpoint line, or a file (syslog, journal export) holding them; repeatable")
    verify.add_argument("--audit-key", metavar="FILE", help="the audit public key pinned off the host")
    verify.add_argument("--allow-uncovered", action="store_true",
                        help="exit 0, not 3, when lines follow the latest checkpoint")
    checkpoint = audit_sub.add_parser("checkpoint", help="sign the chain head now, ship it and print it")
    checkpoint.add_argument("--config", required=True)
    checkpoint.set_defaults(func=cmd_audit_checkpoint)
    audit_key = audit_sub.add_parser("key", help="print the audit public key (made if missing) to pin off the host")
    audit_key.add_argument("--config", required=True)
    audit_key.set_defaults(func=cmd_audit_key)

    maintain = sub.add_parser("maintain", help="prolong expiring keys, check the trustdb, recover interrupted work")
    maintain.add_argument("--config", help=CONFIG_HELP)
    maintain.add_argument("--within-days", type=int)
    maintain.add_argument("--extend", help="new lifetime from today: N days or <n>d|w|m|y (m = months), e.g. 5y")
    maintain.add_argument("--warn-days", type=int,
                          help="warn about keys held as sec# (not prolonged here) this many days before they expire")
    maintain.set_defaults(func=cmd_maintain)

    pool = sub.add_parser("pool", help="the pool of pre-generated keys ([keygen] pool_size)")
    pool_sub = pool.add_subparsers(dest="pool_command", required=True)
    for name, helptext in (("status", "ready keys per algorithm"), ("fill", "generate until the pool is full")):
        pool_cmd = pool_sub.add_parser(name, help=helptext)
        pool_cmd.add_argument("--config", help=CONFIG_HELP)
        pool_cmd.set_defaults(func=cmd_pool)

    add_subkey = sub.add_parser("add-subkey", help="give a key a sign-only subkey (e.g. an imported copr-keygen key)")
    add_subkey.add_argument("--config", help=CONFIG_HELP)
    add_subkey.add_argument("--check", action="store_true", help="only say whether a subkey would be added")
    add_subkey.add_argument("key", help="email, fingerprint or key id")
    add_subkey.set_defaults(func=cmd_add_subkey)

    from .backup import add_commands as add_backup_commands

    add_backup_commands(sub, _say, AdminError)

    imp = sub.add_parser("import-copr", help="import a copr-keygen keyring and its phrase files")
    imp.add_argument("--config", help=CONFIG_HELP)
    imp.add_argument("--gnupghome", required=True)
    imp.add_argument("--phrases", help="copr-keygen's phrases directory (one file per name_email)")
    imp.set_defaults(func=cmd_import_copr)
    return parser


def run_as_state_owner(config_path):
    """Started as root: become the owner of the state directory before anything is touched.

    tokens.json, the keyring and the audit log are the service user's; a file rewritten by root
    would be root's, and the service could not read it any more. Refuses (AdminError) when the
    state directory is missing, since what root would create there would be root's too.
    """
    if os.geteuid() != 0:
        return
    import pwd

    config = load_config(config_path)
    try:
        owner = os.stat(config.state_dir)
    except OSError as err:
        raise AdminError("started as root and the state directory %s cannot be read (%s): create it for the "
                         "service user, or run as that user (sudo -u USER pkgsign-admin ...)"
                         % (config.state_dir, err.strerror)) from None
    if owner.st_uid == 0:
        return  # an instance of root's own
    try:
        entry = pwd.getpwuid(owner.st_uid)
    except KeyError:
        entry = None
    try:
        if entry is not None:
            os.initgroups(entry.pw_name, owner.st_gid)
        else:
            os.setgroups([owner.st_gid])
        os.setgid(owner.st_gid)
        os.setuid(owner.st_uid)
    except OSError as err:
        raise AdminError("started as root and cannot become the state directory's owner (uid %d): %s; run as "
                         "that user (sudo -u USER pkgsign-admin ...)" % (owner.st_uid, err.strerror)) from None
    if os.getuid() != owner.st_uid or os.geteuid() != owner.st_uid:
        raise AdminError("started as root and could not drop to uid %d; run as that user" % owner.st_uid)
    if entry is not None:
        os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    os.umask(0o077)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command not in NO_INSTANCE_COMMANDS:
            run_as_state_owner(getattr(args, "config", None))
        status = args.func(args)
    except (AdminError, ConfigError, TokenFileError, _gnupg.InvalidInput) as err:
        print("pkgsign-admin: %s" % err, file=sys.stderr)
        return 2
    except _gnupg.GpgError as err:
        print("pkgsign-admin: %s" % err.message, file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
