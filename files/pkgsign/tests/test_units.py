"""Pieces without a server: hashed areas, packet framing, config parsing, the WSGI entry point,
the client's option parser and URL handling."""

import os
import struct
import subprocess
import sys
import time

import pytest

from pkgsign_testlib import SRC, child_env, run_admin
from pkgsign import client, openpgp, wire
from pkgsign.config import ConfigError, load_config, parse_duration, parse_rate

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_hashed_area_is_a_binary_or_text_signature_only():
    now = int(time.time())
    area = openpgp.build_hashed_area(0, 22, "sha512", FPR, now)
    assert area[:4] == bytes([4, 0, 22, 10])
    assert area[6:] == b"\x05\x02" + struct.pack(">I", now) + b"\x16\x21\x04" + bytes.fromhex(FPR)
    assert struct.unpack(">H", area[4:6])[0] == len(area) - 6
    assert openpgp.build_hashed_area(1, 1, "sha256", FPR, now)[1] == 1
    for sig_type in (0x02, 0x10, 0x13, 0x18, 0x19, 0x1F, 0x20, 0x28, 0x30, 0x40, 0x50):
        with pytest.raises(ValueError):
            openpgp.build_hashed_area(sig_type, 1, "sha256", FPR, now)


def test_trailer_and_text_canonicalisation():
    area = b"\x04\x00\x01\x08\x00\x00"
    assert wire.trailer(area) == b"\x04\xff" + struct.pack(">I", 6)
    assert wire.canonical_text(b"a  \nb\t\r\nc") == b"a\r\nb\r\nc"
    assert wire.dash_escape(b"-x\ny\n--z") == b"- -x\ny\n- --z"
    assert wire.crc24(b"") == 0xB704CE


def test_mpi_and_sexp():
    assert openpgp.mpi(b"\x00\x01") == b"\x00\x01\x01"
    assert openpgp.mpi(b"\x80") == b"\x00\x08\x80"
    algo, params = openpgp.signature_values(b"(7:sig-val(5:eddsa(1:r2:\x00\x05)(1:s1:\x07)))")
    assert algo == "eddsa" and params == {"r": b"\x00\x05", "s": b"\x07"}
    assert openpgp.signature_mpis(22, b"(7:sig-val(5:eddsa(1:r2:\x00\x05)(1:s1:\x07)))") == b"\x00\x03\x05\x00\x03\x07"
    with pytest.raises(ValueError):
        openpgp.signature_values(b"(7:sig-val(3:rsa(1:s3:ab")


def test_config_values(tmp_path):
    assert parse_duration("5m") == 300 and parse_duration("1825d") == 1825 * 86400
    assert parse_rate("600/60") == (600, 60) and parse_rate("0") is None and parse_rate("10/1h") == (10, 3600)
    for bad in ("x", "5/", "-1/60"):
        with pytest.raises(ConfigError):
            parse_rate(bad)
    conf = tmp_path / "c.conf"
    conf.write_text("[server]\nstate_dir = st\n[signing]\nallow_sha1 = yes\n[aliases]\nModern = abc@example.org\n")
    config = load_config(str(conf))
    assert config.state_dir == str(tmp_path / "st") and config.gnupg_home == str(tmp_path / "st" / "gnupg")
    assert "sha1" in config.allowed_digests and config.aliases == {"modern": "abc@example.org"}
    assert config.private_agents is True
    conf.write_text("[server]\nstate_dir = st\nprivate_agents = no\n")
    assert load_config(str(conf)).private_agents is False
    for text, fragment in (("[server]\n", "state_dir"), ("[server]\nstate_dir=s\n[keygen]\nalgorithm=dsa\n", "algorithm"),
                           ("[server]\nstate_dir=s\n[keygen]\nallow_without_token_from = 10.0.0.300/8\n", "network"),
                           ("[server]\nstate_dir=s\n[signing]\ndefault_digest = sha1\n", "default_digest"),
                           ("[server]\nstate_dir=s\nprivate_agents = sometimes\n", "private_agents"),
                           ("not ini", "invalid configuration")):
        conf.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(str(conf))
        assert fragment in str(err.value)


def test_wsgi_application_reads_pkgsign_config(tmp_path):
    run_admin("init", str(tmp_path / "w"), "--algorithm", "ed25519")
    script = ("import os, io; from pkgsign.wsgi import application; out = {}\n"
              "def start(status, headers): out['status'] = status\n"
              "body = b''.join(application({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/ping', 'SERVER_NAME': 'x',"
              " 'SERVER_PORT': '80', 'wsgi.url_scheme': 'http', 'wsgi.input': io.BytesIO(), 'wsgi.errors': io.StringIO()},"
              " start))\nprint(out['status'], body)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=child_env(PKGSIGN_CONFIG=str(tmp_path / "w" / "pkgsign.conf")),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert proc.stdout.strip() == "200 OK b'pong\\n'", proc.stderr


def test_client_option_parser_and_urls():
    opts, files = client.parse_args(["-4", "-h", "sha512", "-uuser@x", "-r", "a.rpm", "b.rpm", "--jobs=3", "--", "-c"])
    assert ("-h", "sha512") in opts and ("-u", "user@x") in opts and ("--jobs", "3") in opts
    assert files == ["a.rpm", "b.rpm", "-c"]
    assert client.parse_args(["-4pu", "k"])[0] == [("-4", ""), ("-p", ""), ("-u", "k")]
    for bad in (["-x"], ["--nope"], ["-u"], ["--jobs"]):
        with pytest.raises(client.SignError):
            client.parse_args(bad)
    assert client.parse_server("signer.example.org") == ("http", "signer.example.org", 80, "")
    assert client.parse_server("https://[::1]:8443/pkgsign/") == ("https", "::1", 8443, "/pkgsign")
    with pytest.raises(client.SignError):
        client.parse_server("ftp://x")
    assert client._quote("a#b@c d/e") == "a%23b@c%20d%2Fe"


def test_client_imports_only_the_standard_library():
    # the client must not import Flask (or the server modules) at start-up
    script = ("import sys, pkgsign.client; print(sorted(m for m in sys.modules"
              " if m.split('.')[0] in ('flask', 'werkzeug', 'http', 'email', 'urllib') or m.startswith('pkgsign.')))")
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), stdout=subprocess.PIPE, text=True, check=False).stdout
    assert out.strip() == "['pkgsign.client']"
    assert os.path.isdir(SRC)


CLIENT_MODULES = ("client", "cli", "clientconf", "clienterrors", "clientfiles", "leanjson", "transport", "signing",
                  "rpmsigning", "obsopts", "gitsign", "oracle_client")


def test_client_modules_import_nothing_of_the_service():
    # the split client (and the programs reusing it) stays standard library only: no Flask, no
    # http/email/urllib, no server module and not the GnuPG layer
    script = ("import sys\nfor name in %r: __import__('pkgsign.' + name)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'http', 'email', 'urllib')"
              " or m.startswith('pkgsign.') and m[8:] not in %r + ('hashstate', 'wire', 'rpmheader')))"
              % (CLIENT_MODULES, CLIENT_MODULES))
    proc = subprocess.run([sys.executable, "-c", script], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_client_module_still_offers_the_names_it_moved():
    # pkgsign.client.X, as importers used it before the split, is the owner module's own object
    import importlib

    for name, owner in client._MOVED.items():
        module, attribute = owner if isinstance(owner, tuple) else (owner, name)
        assert getattr(client, name) is getattr(importlib.import_module("pkgsign." + module), attribute), name
    assert issubclass(client.UnknownKey, client.SignError)
    with pytest.raises(AttributeError):
        client.no_such_name  # noqa: B018


def test_shipped_openapi_matches_its_generator():
    root = os.path.dirname(SRC)
    generated = subprocess.run([sys.executable, os.path.join(root, "tools", "openapi.py")], stdout=subprocess.PIPE,
                               text=True, check=True).stdout
    with open(os.path.join(SRC, "pkgsign", "openapi.json")) as handle:
        assert handle.read() == generated, "run tools/openapi.py > src/pkgsign/openapi.json"
