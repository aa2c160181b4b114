"""pkgsign-admin: set up, serve and maintain a pkgsign instance."""

import argparse
import json
import os
import sys
import time

from . import _gnupg
from .config import ConfigError, load_config, parse_duration
from .tokens import (SCOPES, TokenFileError, add_token, certificate_sha256, read_tokens, remove_idle_rate_limit_files,
                     revoke_token)

DEFAULT_BIND = "127.0.0.1:5003"


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


def cmd_init(args):
    directory = os.path.abspath(args.dir)
    config_path = os.path.join(directory, "pkgsign.conf")
    if os.path.exists(config_path) and not args.force:
        raise AdminError("%s exists (use --force to overwrite the instance's config and client token)" % config_path)
    _gnupg.ensure_private_dir(directory)
    for sub in ("gnupg", "phrases"):
        _gnupg.ensure_private_dir(os.path.join(directory, sub))
    _gnupg.write_private_file(config_path, CONFIG_TEMPLATE.format(dir=directory, algorithm=args.algorithm).encode())
    config = load_config(config_path)
    secret = add_token(config.tokens_file, "client", ["sign", "keygen"], ["*"], replace=True)
    token_path = os.path.join(directory, "client.token")
    _gnupg.write_private_file(token_path, (secret + "\n").encode())
    server = args.server or "http://%s" % DEFAULT_BIND
    _gnupg.write_private_file(os.path.join(directory, "sign.conf"),
                              ("server: %s\ntoken_file: %s\nhash: sha256\n" % (server, token_path)).encode())
    print("created %s\n  serve:  pkgsign-admin serve --config %s --bind %s\n  client: SIGN_CONF=%s sign -t"
          % (directory, config_path, DEFAULT_BIND, os.path.join(directory, "sign.conf")))


# -- serve -------------------------------------------------------------------------------

def cmd_serve(args):
    from werkzeug.serving import WSGIRequestHandler, make_server

    from .app import create_app

    host, _colon, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        raise AdminError("--bind must be HOST:PORT")
    config = load_config(args.config)
    os.umask(0o077)  # as the role's WSGI daemon: whatever gpg creates (pubring.kbx ...) stays owner-only
    app = create_app(config)

    class KeepAliveHandler(WSGIRequestHandler):
        # HTTP/1.1 keeps the client's connection open between its requests (batches, -p then -r).
        protocol_version = "HTTP/1.1"

        def log_request(self, code="-", size="-"):
            if args.access_log:
                super().log_request(code, size)

    server = make_server(host.strip("[]"), int(port), app, threaded=True, request_handler=KeepAliveHandler)
    server.daemon_threads = True
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
    created = add_token(config.tokens_file, args.id, _split(args.scopes), _split(args.keys), secret=secret,
                        rate=args.rate, replace=replace or args.replace, client_cert_sha256=binding)
    if not args.stdin:
        print(created)  # shown once; only its hash is stored
    _say("token %s %s" % (args.id, "rotated" if (replace or args.replace) else "added"))


def cmd_token_rotate(args):
    config = load_config(args.config)
    entry = read_tokens(config.tokens_file).get(args.id)
    if entry is None:
        raise AdminError("no token %r" % args.id)
    args.scopes = ",".join(entry.get("scopes", []))
    args.keys = ",".join(entry.get("keys", []))
    args.rate = entry.get("rate")
    if not (args.client_cert or args.client_cert_sha256 or args.unbind_client_cert):
        args.client_cert_sha256 = entry.get("client_cert_sha256")  # a rotation keeps the binding
    cmd_token_add(args, replace=True)


def cmd_token_revoke(args):
    config = load_config(args.config)
    revoke_token(config.tokens_file, args.id)
    _say("token %s revoked" % args.id)


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
    from .audit import verify

    config = load_config(args.config)
    count, problems = verify(config.audit_log)
    if problems:
        for problem in problems:
            print("audit log %s: %s" % (config.audit_log, problem))
        return 1
    print("audit log %s: %d lines, chain intact" % (config.audit_log, count))
    return 0


# -- maintain ----------------------------------------------------------------------------

def cmd_maintain(args):
    from .keystore import KeyStore, key_record

    config = load_config(args.config)
    within = args.within_days if args.within_days is not None else config.maintain_within_days
    extend = args.extend or config.maintain_extend
    extend_days = max(1, parse_duration(extend) // 86400)
    store = KeyStore(config)
    gnupg = store.gnupg
    by_fingerprint = {record["fingerprint"]: record for record in store.all_metadata()}
    with store.keyring_lock():
        expiring = gnupg.keys_expiring_within(within)
    _say("%d key(s) expire within %d days; extending to %d days from now" % (len(expiring), within, extend_days))
    failures = 0
    for number, key in enumerate(expiring, 1):
        record = by_fingerprint.get(key.fingerprint)
        passphrase = store.passphrase_for(record) if record else None
        # One absolute moment for the primary and its subkeys: they keep expiring together.
        until = _gnupg.isotime(time.time() + extend_days * 86400)
        try:
            with store.keyring_lock(exclusive=True):  # the server may be running
                gnupg.set_expire(key.fingerprint, until, passphrase=passphrase)
                subkeys = [sub.fingerprint for sub in key.subkeys if not sub.revoked and sub.expires]
                if subkeys:
                    gnupg.set_expire(key.fingerprint, until, subkeys=subkeys, passphrase=passphrase)
            if record:
                refreshed = store.lookup_gpg(key.fingerprint)
                fields = {k: v for k, v in record.items() if k not in key_record(refreshed)}
                store.save_metadata(key_record(refreshed, record["name_email"], record.get("origin", "generated"),
                                               **fields))
            _say("[%d/%d] extended %s %s" % (number, len(expiring), key.fingerprint, ", ".join(key.emails)))
        except _gnupg.GpgError as err:
            failures += 1
            _say("[%d/%d] FAILED %s: %s" % (number, len(expiring), key.fingerprint, err.message))
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
    from .keystore import KeyStore, key_record

    config = load_config(args.config)
    store = KeyStore(config)
    source = _gnupg.GnuPG(args.gnupghome, create=False)
    keys = source.list_keys(secret=True)
    _say("importing %d key(s) from %s" % (len(keys), args.gnupghome))
    imported = failures = 0
    for number, key in enumerate(keys, 1):
        email = (key.emails[0] if key.emails else "").lower()
        if not email:
            _say("[%d/%d] skipped %s: no email in its user ids" % (number, len(keys), key.fingerprint))
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
        except _gnupg.GpgError as err:
            failures += 1
            _say("[%d/%d] FAILED %s %s: %s" % (number, len(keys), key.fingerprint, email, err.message))
    _say("%d imported, %d failed" % (imported, failures))
    return 1 if failures else 0


# -- entry point -------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="pkgsign-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a self-contained instance in DIR")
    init.add_argument("dir")
    init.add_argument("--algorithm", default="rsa4096", choices=("rsa2048", "rsa3072", "rsa4096", "ed25519"))
    init.add_argument("--server", help="URL written into DIR/sign.conf (default http://%s)" % DEFAULT_BIND)
    init.add_argument("--force", action="store_true")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="run the service on a multi-threaded HTTP server")
    serve.add_argument("--config", required=True)
    serve.add_argument("--bind", default=DEFAULT_BIND, help="HOST:PORT (port 0 picks a free one)")
    serve.add_argument("--access-log", action="store_true", help="log every request to standard error")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="manage bearer tokens (no restart needed)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    for name, helptext in (("add", "add a token"), ("rotate", "give a token a new secret")):
        tok = token_sub.add_parser(name, help=helptext)
        tok.add_argument("--config", required=True)
        tok.add_argument("--id", required=True)
        if name == "add":
            tok.add_argument("--scopes", required=True, help="comma-separated: %s" % ", ".join(SCOPES))
            tok.add_argument("--keys", required=True, help="comma-separated key patterns (fnmatch), '*' for all")
            tok.add_argument("--rate", help="rate limit REQUESTS/SECONDS for this token")
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
    revoke = token_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("--config", required=True)
    revoke.add_argument("--id", required=True)
    revoke.set_defaults(func=cmd_token_revoke)
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--config", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_token_list)

    audit = sub.add_parser("audit", help="audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain of the audit log")
    verify.add_argument("--config", required=True)
    verify.set_defaults(func=cmd_audit_verify)

    maintain = sub.add_parser("maintain", help="prolong expiring keys, check the trustdb, recover interrupted work")
    maintain.add_argument("--config", required=True)
    maintain.add_argument("--within-days", type=int)
    maintain.add_argument("--extend", help="new lifetime, e.g. 1825d")
    maintain.set_defaults(func=cmd_maintain)

    pool = sub.add_parser("pool", help="the pool of pre-generated keys ([keygen] pool_size)")
    pool_sub = pool.add_subparsers(dest="pool_command", required=True)
    for name, helptext in (("status", "ready keys per algorithm"), ("fill", "generate until the pool is full")):
        pool_cmd = pool_sub.add_parser(name, help=helptext)
        pool_cmd.add_argument("--config", required=True)
        pool_cmd.set_defaults(func=cmd_pool)

    add_subkey = sub.add_parser("add-subkey", help="give a key a sign-only subkey (e.g. an imported copr-keygen key)")
    add_subkey.add_argument("--config", required=True)
    add_subkey.add_argument("--check", action="store_true", help="only say whether a subkey would be added")
    add_subkey.add_argument("key", help="email, fingerprint or key id")
    add_subkey.set_defaults(func=cmd_add_subkey)

    from .backup import add_commands as add_backup_commands

    add_backup_commands(sub, _say, AdminError)

    imp = sub.add_parser("import-copr", help="import a copr-keygen keyring and its phrase files")
    imp.add_argument("--config", required=True)
    imp.add_argument("--gnupghome", required=True)
    imp.add_argument("--phrases", help="copr-keygen's phrases directory (one file per name_email)")
    imp.set_defaults(func=cmd_import_copr)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
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
