"""A small client of the Blind Oracle API (``POST /sign/rpm``, ``POST /sign/repodata``,
``GET /health``; README.md, "Blind Oracle API") for build scripts.

    from pkgsign.oracle_client import Oracle

    oracle = Oracle.from_conf()                  # server, token and TLS settings of sign.conf
    oracle.health()                              # {"status": "ok", "version": ...}
    oracle.sign_rpm("pkg.rpm", "el10-x86_64", "modern")        # signs the package in place
    oracle.sign_repodata("repo/repodata/repomd.xml", "modern") # writes repomd.xml.asc

From a shell script (same sign.conf; one line on stderr and exit status 1 on any error):

    python3 -m pkgsign.oracle_client rpm --distribution el10-x86_64 --key-type modern pkg.rpm...
    python3 -m pkgsign.oracle_client repodata --key-type modern repo/repodata/repomd.xml
    python3 -m pkgsign.oracle_client health

Each call hashes the data here and sends its hash *state*, never the data and never a digest:
the server adds the signature's hashed area and finishes the hash (hashstate.py). The answer's
``signature`` is checked to be a v4 binary signature of the key the server names before
anything is written; a package is rewritten only in place, through the same header code as
``sign -r`` (rpmheader.py), and only when it is a regular file of the caller's with one link.

The transport is the ``sign`` client's (client.Api: HTTPS with the server always verified,
optional client certificate). The token goes in the Authorization header; ``token_in_body=True``
sends it as the document's ``token`` field instead (the same token, the same checks).
"""

import base64
import json
import os
import sys

from . import client, hashstate, rpmheader
from .client import SignError

__all__ = ["Oracle", "SignError"]


class Oracle:
    def __init__(self, server, token, ca_file=None, client_cert=None, client_key=None, timeout=120.0,
                 digest_algo="sha256", token_in_body=False):
        if not token:
            raise SignError("the Blind Oracle API needs a token")
        self.token = token
        self.token_in_body = token_in_body
        self.digest_algo = digest_algo
        self.api = client.Api(server, token=None if token_in_body else token, timeout=timeout, ca_file=ca_file,
                              client_cert=client_cert, client_key=client_key)

    @classmethod
    def from_conf(cls, path=None, **options):
        """An Oracle from sign.conf (``path``, else $SIGN_CONF, else /etc/sign.conf): its server,
        token file ($SIGN_TOKEN_FILE overrides) and TLS settings."""
        conf = client.read_conf(path)
        options.setdefault("digest_algo", conf.get("hash", "sha256").lower())
        return cls(conf["server"], client.read_token(conf), **dict(client.tls_settings(conf), **options))

    def health(self):
        """The server's ``GET /health`` answer."""
        return self.api.call("GET", "/health")

    def _sign(self, path, hash_field, state, distribution, key_type):
        body = {hash_field: state.to_json(), "key_type": key_type, "digest_algo": self.digest_algo}
        if distribution is not None:
            body["distribution"] = distribution
        if self.token_in_body:
            body["token"] = self.token
        answer = self.api.call("POST", path, body)
        if not isinstance(answer, dict) or not isinstance(answer.get("signature"), str):
            raise SignError("the server's answer to %s has no signature" % path)
        return answer

    def sign_rpm_header(self, package, distribution, key_type):
        """The server's answer (signature, key_id, timestamp, ...) for a parsed package
        (rpmheader.Package): its main header is what the signature covers."""
        state = hashstate.Hasher(self.digest_algo).update(package.header).state()
        return self._sign("/sign/rpm", "package_hash", state, distribution, key_type)

    def sign_rpm(self, path, distribution, key_type):
        """Sign the RPM at ``path`` in place with the key of (distribution, key_type); returns the
        server's answer. Refuses (SignError, file untouched) what is not an unsigned RPM with room
        for the signature, or a signature that is not the key's binary v4 signature."""
        client.check_in_place(path)
        try:
            package = rpmheader.load(path)
            package.check_signable()
        except rpmheader.NotAnRpm as err:
            raise SignError("%s: %s" % (path, err)) from None
        except rpmheader.Unsupported as err:
            raise SignError("%s: cannot sign in place (%s)" % (path, err)) from None
        answer = self.sign_rpm_header(package, distribution, key_type)
        packet = _packet(answer)
        try:
            package.write_signature(rpmheader.sigtag_for_packet(packet), packet,
                                    check=lambda name, fd: client.check_in_place(name, os.fstat(fd)))
        except (rpmheader.Unsupported, rpmheader.NotAnRpm) as err:
            raise SignError("%s: %s" % (path, err)) from None
        return answer

    def sign_repodata(self, path, key_type, distribution=None, output=None):
        """A detached, armored signature of ``path`` (repomd.xml) written to ``output`` (default
        ``path + '.asc'``, dnf's name); returns the server's answer."""
        hasher = hashstate.Hasher(self.digest_algo)
        with open(path, "rb") as handle:
            hasher.update_fd(handle.fileno())
        answer = self._sign("/sign/repodata", "repodata_hash", hasher.state(), distribution, key_type)
        _packet(answer)
        client.write_new(output or path + ".asc", answer["signature"].encode("ascii"), client.creation_mode())
        return answer


def _packet(answer):
    """The binary packet of the answer's armored signature, checked to be a v4 binary (0x00)
    signature whose issuer is the key id the answer names."""
    text = answer["signature"]
    lines = text.strip().splitlines()
    if len(lines) < 4 or lines[0] != "-----BEGIN PGP SIGNATURE-----" or lines[-1] != "-----END PGP SIGNATURE-----":
        raise SignError("the server's signature is not an armored OpenPGP signature")
    body = "".join(line for line in lines[1:-1] if line and not line.startswith("=") and ":" not in line)
    try:
        packet = base64.b64decode(body, validate=True)
    except ValueError:
        raise SignError("the server's signature is not valid base64") from None
    if len(packet) < 8:
        raise SignError("the server's answer is not a signature packet")
    if packet[0] & 0x40:  # new packet format (RFC 4880 4.2.2)
        tag, start = packet[0] & 0x3F, 2 if packet[1] < 192 else 3 if packet[1] < 224 else 6
    else:
        tag, start = (packet[0] >> 2) & 0x0F, 1 + {0: 1, 1: 2, 2: 4}.get(packet[0] & 3, len(packet))
    if tag != 2 or start + 2 > len(packet):
        raise SignError("the server's answer is not a signature packet")
    if packet[start] != 4 or packet[start + 1] != 0x00:
        raise SignError("the server's signature is not a v4 binary signature")
    key_id = (answer.get("key_id") or "").upper()
    if len(key_id) != 16 or bytes.fromhex(key_id) not in packet:
        raise SignError("the server's signature does not name the key id it answered (%s)" % key_id)
    return packet


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m pkgsign.oracle_client",
                                     description="Blind Oracle API client (server, token, TLS: sign.conf)")
    parser.add_argument("--conf", help="sign.conf (default: $SIGN_CONF, else /etc/sign.conf)")
    parser.add_argument("--token-in-body", action="store_true", help="send the token as the body's 'token' field")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("health", help="GET /health")
    rpm = sub.add_parser("rpm", help="sign RPM packages in place (POST /sign/rpm)")
    rpm.add_argument("--distribution", required=True)
    rpm.add_argument("--key-type", required=True)
    rpm.add_argument("packages", nargs="+")
    repodata = sub.add_parser("repodata", help="write repomd.xml.asc (POST /sign/repodata)")
    repodata.add_argument("--distribution")
    repodata.add_argument("--key-type", required=True)
    repodata.add_argument("--output", help="default: FILE.asc")
    repodata.add_argument("file")
    args = parser.parse_args(argv)
    try:
        oracle = Oracle.from_conf(args.conf, token_in_body=args.token_in_body)
        if args.command == "health":
            print(json.dumps(oracle.health()))
        elif args.command == "rpm":
            for path in args.packages:
                answer = oracle.sign_rpm(path, args.distribution, args.key_type)
                print("%s: signed by %s at %s" % (path, answer["key_id"], answer["timestamp"]))
        else:
            answer = oracle.sign_repodata(args.file, args.key_type, args.distribution, args.output)
            print("%s: signed by %s at %s" % (args.output or args.file + ".asc", answer["key_id"], answer["timestamp"]))
    except SignError as err:
        print("oracle: %s" % err, file=sys.stderr)
        return 1
    except OSError as err:
        print("oracle: %s: %s" % (getattr(err, "filename", None) or "", err.strerror or err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
