"""sign.conf: the `sign` client's configuration ($SIGN_CONF or /etc/sign.conf) and its token.

    server:, token_file: ($SIGN_TOKEN_FILE), ca_file:, client_cert:, client_key: (relative paths:
    from sign.conf's directory), hash:, user:, jobs:, timeout:, rpm_signing:, rpmsign:

(README.md, "Client configuration: sign.conf", says what each key means.)

Standard library only (os): loaded by every `sign` run.
"""

import os

from .clienterrors import SignError

DEFAULT_CONF = "/etc/sign.conf"
DEFAULT_TIMEOUT = 120.0  # seconds one request may take (timeout:)


def read_conf(path=None):
    path = path or os.environ.get("SIGN_CONF") or DEFAULT_CONF
    conf = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                key, _sep, value = line.partition(":")
                conf[key.strip().lower()] = value.strip()
    except FileNotFoundError:
        raise SignError("no configuration: %s does not exist (set SIGN_CONF)" % path) from None
    except OSError as err:
        raise SignError("cannot read %s: %s" % (path, err.strerror)) from None
    if not conf.get("server"):
        raise SignError("%s has no 'server:' line" % path)
    conf["_path"] = path
    return conf


TLS_KEYS = ("ca_file", "client_cert", "client_key")


def tls_settings(conf):
    """The TLS keys of sign.conf as Api keyword arguments (relative paths: from sign.conf's directory)."""
    base = os.path.dirname(os.path.abspath(conf["_path"])) if conf.get("_path") else ""
    return {key: os.path.join(base, conf[key]) for key in TLS_KEYS if conf.get(key)}


def request_timeout(conf):
    """sign.conf's timeout: in seconds (DEFAULT_TIMEOUT when absent), for every client that reads it."""
    try:
        return float(conf.get("timeout") or DEFAULT_TIMEOUT)
    except ValueError:
        raise SignError("timeout must be a number of seconds") from None


def token_path(conf):
    return os.environ.get("SIGN_TOKEN_FILE") or conf.get("token_file")


def read_token(conf):
    path = token_path(conf)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as err:
        raise SignError("cannot read token file %s: %s" % (path, err.strerror)) from None
