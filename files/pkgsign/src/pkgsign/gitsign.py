"""pkgsign-git-sign: a gpg-compatible program for git's ``gpg.program`` (``gpg.openpgp.program``).

git signs a tag or a commit by running

    PROGRAM --status-fd=2 -bsau KEY            the object on standard input

and expects an armored detached signature on standard output and, on the status descriptor,
a ``[GNUPG:] SIG_CREATED`` line. This program signs through the pkgsign service as `sign -d`
does (the object is hashed here, the server builds the signature's hashed area, finishes the
hash and signs), so no key is needed on the host. KEY is what git passes: ``user.signingkey``, else the
committer's ``Name <email>`` (the e-mail is then used); ``git_key:`` in sign.conf, when set,
overrides it (one release key whoever commits).

Verification (``--verify``, what ``git verify-tag``, ``verify-commit`` and ``log
--show-signature`` run) is handed to real gpg (``git_gpg:``, default ``gpg``), with ``--homedir``
of sign.conf's ``git_verify_homedir:`` when set: a GnuPG home holding the published public key
(``sign -p``), nothing secret. Only git's own argument shapes pass (``[--keyid-format=long]
--status-fd=N --verify SIGFILE -``): where this program runs for others (a sudo identity), an
option of the caller's (``--dirmngr-program``, ``--homedir``) must not make gpg run a program of
its choice.

Configuration: $SIGN_CONF or /etc/sign.conf, as `sign`.
"""

import os
import sys

from .clientconf import read_conf, read_token, request_timeout, tls_settings
from .clienterrors import SignError, UnknownKey
from .transport import Api

HASH_IDS = {"sha256": 8, "sha384": 9, "sha512": 10, "sha224": 11}
SIGN_FLAGS = frozenset("bsa")


def _parse(argv):
    """(mode, key, status_fd, rest) from gpg's options as git passes them."""
    mode, key, status_fd, flags = None, None, None, set()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--verify":
            return "verify", None, status_fd, _verify_files(args)
        if arg.startswith("--status-fd"):
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not value.isdigit():
                raise SignError("--status-fd needs a descriptor number")
            status_fd = int(value)
        elif arg in ("--local-user", "-u"):
            if not args:
                raise SignError("%s needs a key" % arg)
            key = args.pop(0)
        elif arg.startswith("--local-user="):
            key = arg.partition("=")[2]
        elif arg in ("--detach-sign", "--sign", "--armor", "--armour"):
            flags.add({"--detach-sign": "b", "--sign": "s"}.get(arg, "a"))
        elif arg.startswith("--keyid-format") or arg in ("--batch", "--no-tty", "--yes"):
            if arg == "--keyid-format" and args:
                args.pop(0)
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            cluster = arg[1:]
            while cluster:
                letter, cluster = cluster[0], cluster[1:]
                if letter == "u":
                    key = cluster or (args.pop(0) if args else None)
                    if not key:
                        raise SignError("-u needs a key")
                    break
                if letter not in SIGN_FLAGS:
                    raise SignError("option -%s is not supported (this program only makes armored "
                                    "detached signatures for git, and verifies through gpg)" % letter)
                flags.add(letter)
        else:
            raise SignError("%s is not supported (this program only makes armored detached signatures "
                            "for git, and verifies through gpg)" % arg)
    if flags:
        if not {"b", "s"} <= flags:
            raise SignError("only detached signatures are made (git passes -bsau KEY)")
        mode = "sign"
    return mode, key, status_fd, None


def _verify_files(args):
    """What git passes after ``--verify``: the signature file and ``-`` (the object on standard
    input); nothing else reaches gpg."""
    if len(args) != 2 or args[1] != "-" or not args[0] or args[0].startswith("-"):
        raise SignError("--verify takes what git passes (--verify SIGFILE -), not %s"
                        % " ".join(args or ["nothing"]))
    return [args[0]]


def key_of(git_key):
    """git passes ``Name <email>`` when user.signingkey is unset: the service knows the e-mail."""
    if git_key and git_key.endswith(">") and "<" in git_key:
        return git_key[git_key.rindex("<") + 1:-1]
    return git_key


def verify(status_fd, files, conf):
    """gpg --verify with git's arguments only, rebuilt here (``_parse`` refused any other)."""
    gpg = conf.get("git_gpg") or "gpg"
    extra = []
    if conf.get("git_verify_homedir"):
        extra = ["--homedir", conf["git_verify_homedir"]]
    if status_fd is not None:
        extra.append("--status-fd=%d" % status_fd)
    try:
        os.execvp(gpg, [gpg] + extra + ["--keyid-format=long", "--verify", "--"] + files + ["-"])
    except OSError as err:
        raise SignError("cannot run %s: %s" % (gpg, err.strerror)) from None


def sign(key, status_fd, conf):
    from binascii import a2b_base64

    from . import hashstate, wire

    digest_algo = (conf.get("hash") or "sha256").lower()
    if digest_algo not in HASH_IDS or digest_algo not in hashstate.ALGORITHMS:
        raise SignError("hash %s in %s is not usable for git signatures (sha256, sha384, sha512)"
                        % (digest_algo, conf["_path"]))
    if status_fd is not None:
        try:  # before anything is signed: a signature without its status line is of no use to git
            os.fstat(status_fd)
        except OSError:
            raise SignError("--status-fd=%d is not an open file descriptor" % status_fd) from None
    user = conf.get("git_key") or key_of(key) or conf.get("user")
    if not user:
        raise SignError("no key: git passed none (-u) and %s has no 'git_key:' or 'user:'" % conf["_path"])
    api = Api(conf["server"], read_token(conf), timeout=request_timeout(conf), **tls_settings(conf))
    data = sys.stdin.buffer.read()
    state = hashstate.Hasher(digest_algo).update(data).state()
    answer = api.call("POST", "/sign", {"key": user, "digest_algo": digest_algo, "sig_type": "binary",
                                        "states": [state.to_json()]}, key=user)
    try:
        packet = a2b_base64(answer["signatures"][0]["signature"])
        fingerprint = answer["signing_fingerprint"].upper()
        pubkey_algo = int(answer["pubkey_algo"])
        created = int(answer["creation_time"])
    except (TypeError, KeyError, IndexError, ValueError):
        raise SignError("the server's answer to POST /sign has no signature") from None
    sys.stdout.write(wire.armor(packet))
    sys.stdout.flush()
    if status_fd is not None:
        # gpg's status lines; git looks for "\n[GNUPG:] SIG_CREATED " (a line before it).
        lines = ("[GNUPG:] KEY_CONSIDERED %s 0\n" % fingerprint,
                 "[GNUPG:] BEGIN_SIGNING H%d\n" % HASH_IDS[digest_algo],
                 "[GNUPG:] SIG_CREATED D %d %d 00 %d %s\n" % (pubkey_algo, HASH_IDS[digest_algo], created, fingerprint))
        try:
            os.write(status_fd, "".join(lines).encode("ascii"))
        except OSError as err:
            raise SignError("cannot write the status lines to descriptor %d: %s"
                            % (status_fd, err.strerror)) from None
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        mode, key, status_fd, files = _parse(argv)
        conf = read_conf()
        if mode == "verify":
            return verify(status_fd, files, conf)
        if mode != "sign":
            raise SignError("nothing to do: git runs this program with -bsau KEY (sign) or --verify")
        return sign(key, status_fd, conf)
    except UnknownKey as err:
        print("pkgsign-git-sign: %s" % err, file=sys.stderr)
        return 1
    except SignError as err:
        print("pkgsign-git-sign: %s" % err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
