"""sign: obs-sign compatible client of the pkgsign service; `sign --help` (cli.py) says how to use it.

This module is where `sign` starts: the console script (pkgsign.client:main), the launcher
that pkgsign.launcher writes and ``python -m pkgsign.client`` all call main(). The client is
split by concern, one module each:

    cli           the command line (options, modes, sign -t)
    clientconf    sign.conf and the token file
    transport     JSON over HTTP(S) with keep-alive connections (leanjson: JSON without re)
    signing       hash states, batched POST /sign requests, detached and clearsigned outputs
    rpmsigning    RPMs: in place (rpmheader.py) or through rpmsign; --delsign
    clientfiles   which files may be read and rewritten, and how outputs are written
    clienterrors  SignError and its kinds

The names this module used to define are still reachable here (``client.SignError``,
``client.Api``, ...), looked up on first use: importing this module imports nothing else, so
the start-up of `sign` pays only for the modules its mode needs.
"""

import sys

# name -> module that owns it, for callers that import them from pkgsign.client
_MOVED = {
    "SignError": "clienterrors", "UnknownKey": "clienterrors", "ServerRefused": "clienterrors",
    "DEFAULT_CONF": "clientconf", "read_conf": "clientconf", "TLS_KEYS": "clientconf",
    "tls_settings": "clientconf", "token_path": "clientconf", "read_token": "clientconf",
    "Api": "transport", "parse_server": "transport", "_quote": "transport",
    "_json_dumps": ("leanjson", "lean_dumps"), "_json_loads": ("leanjson", "loads"),
    "MIN_BATCH": "signing", "Signer": "signing", "detached": "signing", "CLEARSIGNED": "signing",
    "binary_reason": "signing", "prepare_clearsign": "signing", "clearsign": "signing",
    "check_input": "clientfiles", "invoking_uid": "clientfiles", "check_in_place": "clientfiles",
    "open_input": "clientfiles", "creation_mode": "clientfiles", "write_new": "clientfiles",
    "HELPER_SCRIPT": "rpmsigning", "sign_rpms": "rpmsigning", "rpm_lead_error": "rpmsigning",
    "unsign_rpms": "rpmsigning",
    "USAGE": "cli", "HELP": "cli", "check_credentials": "cli", "parse_args": "cli",
    "MODE_OPTIONS": "cli", "VERBOSE_NAMES": "cli", "mode_from_name": "cli",
}


def __getattr__(name):
    owner = _MOVED.get(name)
    if owner is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    module, attribute = owner if isinstance(owner, tuple) else (owner, name)
    value = getattr(__import__("pkgsign." + module, fromlist=[attribute]), attribute)
    globals()[name] = value  # looked up once
    return value


def main(argv=None):
    from .cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
