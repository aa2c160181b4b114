"""sign: obs-sign compatible client of the pkgsign service (standard library only).

    sign [-u USER] [-h sha256|sha512] [-4] -r FILE.rpm...      sign RPMs in place
    sign [-u USER] [-h ...] -d FILE...                          armored detached: FILE.asc
    sign [-u USER] [-h ...] -D FILE...                          binary detached: FILE.sig
    sign [-u USER] [-h ...] -c [FILE...]                        clearsign text in place (stdin -> stdout)
    sign [-u USER] [-h ...] FILE...                             by name: .rpm/.spm as -r, text as -c
    sign [-u USER] -p                                           print the public key
    sign [-u USER] -k | --full-keyid | --fingerprint            the signing (sub)key: 8/16/40 hex digits
    sign -t                                                     check the server and your token
    sign --delsign FILE.rpm... (or --unsign)                    remove RPM signatures

The file never leaves this host: the client hashes it and sends only the state of the hash
(POST /sign); the server appends the signature's hashed area, which it makes itself, finishes
the hash and signs. Configuration comes from
$SIGN_CONF or /etc/sign.conf (``server:``, ``token_file:``, ``hash:``, ``user:``).

This module is the command line; the work is done by one module per concern: clientconf
(sign.conf, token), transport (JSON over HTTP(S)), signing (hash states, /sign batches,
detached and clearsigned outputs), rpmsigning (RPMs), clientfiles (which files may be read and
rewritten), clienterrors. `sign` starts through client.main (the console script, the launcher,
`python -m pkgsign.client`).

Kept free of heavy imports: one run of `sign` per file must start fast. -t, -k and -p load
only the configuration and the transport; signing modules are imported when a mode needs them.
"""

import os
import sys

from .clientconf import read_conf, read_token, request_timeout, tls_settings, token_path
from .clienterrors import SignError, UnknownKey
from .obsopts import REFUSED, RPM_SUFFIXES, UNSIGNED_SUFFIXES, takes_value
from .transport import Api, _quote

USAGE = __doc__.split("\n\n")[1]
HELP = """usage: sign [options] [FILE...]

%s

Options:
    -u USER      the key: an email, fingerprint, key id or alias (default: 'user:' in sign.conf)
    -h HASH      digest algorithm, sha256 (default) or sha512
    -4           OpenPGP v4 signature (the only format produced)
    -v           print what is signed ("rpm sign FILE", as obs-sign)
    --config F   another sign.conf (root only, as obs-sign; others: $SIGN_CONF)
    --jobs N     files signed at the same time (default 8)
    --version    print the version

-t contacts the server with your token and prints which server and which token it used;
it fails when the server is unreachable or refuses the token.

Without a mode option the mode comes from the file name, as in obs-sign: .rpm and .spm are
signed as RPMs, other files are clearsigned if they are text; binary data is refused. Options of
obs-sign that sign does not implement (-T, -S, -P, -3, -O, -a, -g, -x, -C, ...) are refused
with one line saying why, before any file is touched (README.md: "obs-sign options").

Only a digest of each file is sent to the signing server; the file stays on this host.
Configuration: $SIGN_CONF, else /etc/sign.conf, with 'server:', 'token_file:' (or
$SIGN_TOKEN_FILE), 'hash:' and 'user:' lines.""" % USAGE.rstrip()


# -- command line ----------------------------------------------------------------------

def check_credentials(api, conf):
    """sign -t: an authenticated request proves the server and the token; says which ones."""
    server = conf["server"]
    if not api.token:
        raise SignError("%s: no token (set 'token_file:' in %s or SIGN_TOKEN_FILE)" % (server, conf["_path"]))
    try:
        who = api.call("GET", "/whoami")
    except SignError as err:
        raise SignError("%s: %s (token file %s)" % (server, err, token_path(conf))) from None
    if not isinstance(who, dict) or not who.get("token"):
        raise SignError("%s: the server does not confirm the token (is it a pkgsign server?)" % server)
    print("%s: token %s accepted (scopes %s; keys %s; token file %s)"
          % (server, who["token"], ",".join(who.get("scopes") or []) or "none",
             ",".join(who.get("keys") or []) or "none", token_path(conf)))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except UnknownKey as err:
        print(str(err), file=sys.stderr)
        return 1
    except SignError as err:
        print("sign: %s" % err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _unknown(option):
    return SignError("unknown option %s (sign --help lists the options)" % option)


def parse_args(argv):
    """GNU-style options in any order among the files (getopt would cost start-up time). The
    options are obs-sign's (obsopts.py): one that `sign` refuses ends the run here, with one
    line naming it, before any file is opened."""
    opts, files = [], []
    args = list(argv)

    def add(option, value):
        if option in REFUSED:
            raise SignError("%s is not supported: %s" % (option, REFUSED[option][1]))
        opts.append((option, value))

    while args:
        arg = args.pop(0)
        if arg == "--":
            files.extend(args)
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            kind = takes_value(name)
            if kind is None:
                raise _unknown(name)
            if kind and not eq:
                if not args:
                    raise SignError("option %s needs a value" % name)
                value = args.pop(0)
            elif not kind and eq:
                raise SignError("option %s takes no value" % name)
            add(name, value)
        elif arg.startswith("-") and len(arg) > 1:
            cluster = arg[1:]
            while cluster:
                letter, cluster = "-" + cluster[0], cluster[1:]
                kind = takes_value(letter)
                if kind is None or letter.startswith("--"):
                    raise _unknown(letter)
                if kind:
                    if not cluster:
                        if not args:
                            raise SignError("option %s needs a value" % letter)
                        cluster = args.pop(0)
                    add(letter, cluster)
                    break
                add(letter, "")
        else:
            files.append(arg)
    return opts, files


MODE_OPTIONS = {"-p": "pubkey", "-r": "rpm", "-d": "detached", "-D": "binary", "-c": "clearsign",
                "-t": "test", "-k": "keyid", "--full-keyid": "keyid", "--fingerprint": "fingerprint",
                "--unsign": "unsign"}
# What obs-sign's -v prints before each file.
VERBOSE_NAMES = {"rpm": "rpm sign", "clearsign": "clear sign", "detached": "detached sign",
                 "binary": "detached sign", "unsign": "rpm delsign"}


def mode_from_name(path):
    """obs-sign's rule when no mode option is given: .rpm/.spm are RPMs, anything else is
    clearsigned (clearsign() then refuses binary data). Types obs-sign signs and `sign` does not
    are refused here, by name."""
    if len(path) > 4 and path.endswith(RPM_SUFFIXES):
        return "rpm"
    for suffix, why in UNSIGNED_SUFFIXES.items():
        if len(path) > len(suffix) and path.endswith(suffix):
            raise SignError("%s: %s" % (path, why))
    return "clearsign"


def _check_digest(digest_algo):
    from . import hashstate

    if digest_algo == "sha1":
        raise SignError("-h sha1 is refused: SHA-1 signatures are not made (forgeable with chosen-prefix "
                        "collisions; rpm-sequoia and dnf5 reject them): use -h sha256")
    if digest_algo not in hashstate.ALGORITHMS:
        raise SignError("-h %s: unknown hash algorithm (use sha256, sha384 or sha512)" % digest_algo)


def _main(argv):
    opts, files = parse_args(argv)
    mode = None
    user = None
    digest_algo = None
    jobs = None
    config = None
    delsign = False
    full_keyid = False
    verbose = False
    for opt, value in opts:
        if opt == "--help":
            print(HELP)
            return 0
        if opt == "--version":
            from . import __version__

            print("sign (pkgsign) %s" % __version__)
            return 0
        if opt == "-u":
            user = value
        elif opt == "-h":
            digest_algo = value.lower()
        elif opt == "-4":
            pass  # v4 is the only signature format produced
        elif opt == "-v":
            verbose = True
        elif opt == "--jobs":
            jobs = value
        elif opt == "--config":
            # obs-sign: only root may name another configuration (sign may run for others).
            if os.getuid() != 0:
                raise SignError("--config: only root may use --config (others: SIGN_CONF)")
            config = value
        elif opt == "--delsign":
            delsign = True
        else:
            new_mode = MODE_OPTIONS[opt]
            full_keyid = full_keyid or opt == "--full-keyid"
            if mode and mode != new_mode:
                raise SignError("choose one of -p, -k, --fingerprint, -t, -r, -d, -D, -c, --unsign")
            mode = new_mode
    if delsign:
        # obs-sign: --delsign removes signatures instead of signing, from RPMs only.
        if mode not in (None, "rpm", "unsign") or any(mode is None and mode_from_name(f) != "rpm" for f in files):
            raise SignError("--delsign works on RPMs only (name them .rpm or add -r)")
        mode = "unsign"
    if mode in ("pubkey", "keyid", "fingerprint", "test") and files:
        raise SignError("%s takes no files" % {"pubkey": "-p", "keyid": "-k", "fingerprint": "--fingerprint",
                                               "test": "-t"}[mode])
    if mode is None:
        if not files:
            raise SignError("please name a mode for standard input (-c, -d or -D; see sign --help)")
        by_mode = {}
        for path in files:  # every name is judged before anything is read or signed
            by_mode.setdefault(mode_from_name(path), []).append(path)
    else:
        by_mode = {mode: files}
    conf = read_conf(config)
    if mode == "unsign":
        if not files:
            raise SignError("--unsign needs RPM files")
        if verbose:
            for path in files:
                print("rpm delsign %s" % path)
        from .rpmsigning import unsign_rpms

        unsign_rpms(conf, files)
        return 0
    try:
        jobs = max(1, int(jobs or conf.get("jobs") or 8))
    except ValueError:
        raise SignError("jobs must be a number") from None
    api = Api(conf["server"], read_token(conf), timeout=request_timeout(conf), **tls_settings(conf))
    if mode == "test":
        return check_credentials(api, conf)
    user = user or conf.get("user")
    if not user:
        raise SignError("no key: use -u USER or 'user:' in %s" % conf["_path"])
    if mode == "pubkey":
        data = api.call("GET", "/pubkey/" + _quote(user), key=user)
        sys.stdout.write(data.decode("ascii") if isinstance(data, bytes) else str(data))
        sys.stdout.flush()
        return 0
    if mode in ("keyid", "fingerprint"):
        # obs-sign prints the issuer of a signature: the signing (sub)key, upper-case hex.
        info = api.call("GET", "/keys/" + _quote(user), key=user)
        if mode == "fingerprint":
            print(info["signing_fingerprint"].upper())
        else:
            print(info["signing_key_id"].upper()[-16 if full_keyid else -8:])
        return 0
    digest_algo = digest_algo or conf.get("hash", "sha256").lower()
    _check_digest(digest_algo)
    from .signing import Signer, clearsign, detached, prepare_clearsign

    # Text to clearsign is read and judged first: a binary file refuses the whole call before
    # any other file is signed.
    texts = prepare_clearsign(by_mode["clearsign"], explicit=mode == "clearsign") \
        if by_mode.get("clearsign") else None
    if verbose:
        for each_mode, paths in by_mode.items():
            for path in paths:
                print("%s %s" % (VERBOSE_NAMES[each_mode], path))
        sys.stdout.flush()
    if "rpm" in by_mode:
        if not by_mode["rpm"]:
            raise SignError("-r needs RPM files")
        from .rpmsigning import sign_rpms

        sign_rpms(Signer(api, user, digest_algo), conf, by_mode["rpm"], jobs)
    if mode in ("detached", "binary"):
        detached(Signer(api, user, digest_algo), files, mode == "detached", jobs)
    if "clearsign" in by_mode:
        clearsign(Signer(api, user, digest_algo, sig_type="text"), texts, jobs)
    return 0
