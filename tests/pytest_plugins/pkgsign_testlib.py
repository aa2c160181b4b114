# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service's test instances and their HTTP clients, shared by the service suite
(files/pkgsign/tests), the reliability suite (tests/reliability) and the benchmark (bench/run.py).

``Instance``: a directory made by ``pkgsign-admin init``, its tokens and options, served over real
HTTP on 127.0.0.1 by ``pkgsign-admin serve``, driven with real requests and the real ``sign``
client. ``Api``: a keep-alive JSON client for harnesses that send many requests. The fixtures
stay in each suite's conftest.py; this module is imported by name (scripts/pytest-suite.sh puts
tests/pytest_plugins on PYTHONPATH, pytest.ini does the same for a plain ``pytest``).
"""

import configparser
import http.client
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(CHECKOUT, "files", "pkgsign", "src")
SERVICE_TESTS = os.path.join(CHECKOUT, "files", "pkgsign", "tests")
if importlib.util.find_spec("pkgsign") is None:  # running from a checkout without installing
    sys.path.insert(0, SRC)

from pkgsign import _gnupg  # noqa: E402
from pkgsign.tokens import add_token, hash_secret, new_secret  # noqa: E402

PYTHON = sys.executable
CHILD_SRC = SRC  # what the processes the tests start import pkgsign from (see below)


def _reachable_by_others(path):
    """True when every directory above ``path`` lets other users through (o+x)."""
    path = os.path.abspath(path)
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        if not os.stat(path).st_mode & 0o001:
            return False
    return True


if os.geteuid() == 0 and not (_reachable_by_others(PYTHON) and _reachable_by_others(SRC)):
    # Tests run the client and the service as other uids (nobody, a build user, the client
    # identity). A checkout under a 0700 home (/root; Debian 12's adduser makes homes 0700) lets
    # them neither run its .venv nor read its sources: every process the tests start runs from
    # a world-readable copy of the package with the system's Python instead (Flask from
    # python3-flask, as on the signer hosts; the client needs the standard library only).
    import atexit
    import tempfile

    _COPY = tempfile.mkdtemp(prefix="pkgsign-tests-src-")
    os.chmod(_COPY, 0o755)
    shutil.copytree(os.path.join(SRC, "pkgsign"), os.path.join(_COPY, "pkgsign"), symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for _root, _dirs, _files in os.walk(_COPY):
        for _name in _dirs:
            os.chmod(os.path.join(_root, _name), 0o755)
        for _name in _files:
            os.chmod(os.path.join(_root, _name), 0o644)
    atexit.register(shutil.rmtree, _COPY, True)
    CHILD_SRC, PYTHON = _COPY, "/usr/bin/python3"

ED_KEY = "alice#ed@copr.test"
RSA_KEY = "bob#rsa@copr.test"


def child_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHILD_SRC, env.get("PYTHONPATH")) if p)
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def run_admin(*args, input=None, check=True):  # pylint: disable=redefined-builtin
    proc = subprocess.run([PYTHON, "-m", "pkgsign.admin"] + list(args), input=input, env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("pkgsign-admin %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr))
    return proc


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instance:
    """An initialised instance directory and, once started, its server."""

    # Where the server's stdout/stderr go; a harness that never reads them says DEVNULL (a full
    # pipe would stall the server).
    server_output = subprocess.PIPE

    def __init__(self, root):
        self.root = str(root)
        self.config = os.path.join(self.root, "pkgsign.conf")
        self.sign_conf = os.path.join(self.root, "sign.conf")
        self.process = None
        self.url = None
        self.tokens = {}

    @classmethod
    def create(cls, root, algorithm="ed25519", options=()):
        """``pkgsign-admin init`` at ``root``: the instance (not started) with its client token and
        ``options``, (section, key, value) each."""
        run_admin("init", str(root), "--algorithm", algorithm)
        inst = cls(root)
        with open(os.path.join(inst.root, "client.token"), encoding="utf-8") as handle:
            inst.tokens["client"] = handle.read().strip()
        for section, key, value in options:
            inst.set_option(section, key, value)
        return inst

    @property
    def tokens_file(self):
        return os.path.join(self.root, "tokens.json")

    @property
    def audit_log(self):
        return os.path.join(self.root, "audit.log")

    @property
    def gnupg_home(self):
        return os.path.join(self.root, "gnupg")

    def add_token(self, token_id, scopes, keys, rate=None):
        secret = add_token(self.tokens_file, token_id, scopes, keys, rate=rate, replace=True)
        path = os.path.join(self.root, token_id + ".token")
        _gnupg.write_private_file(path, (secret + "\n").encode())
        self.tokens[token_id] = secret
        return secret

    def set_option(self, section, key, value):
        parser = configparser.ConfigParser()
        parser.read(self.config)
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
        with open(self.config, "w", encoding="utf-8") as handle:
            parser.write(handle)

    def serve_command(self, bind):
        """The command that serves this instance on ``bind`` (host:port), and its environment."""
        return [PYTHON, "-m", "pkgsign.admin", "serve", "--config", self.config, "--bind", bind], child_env()

    def start(self):
        port = free_port()
        argv, env = self.serve_command("127.0.0.1:%d" % port)
        self.process = subprocess.Popen(argv, env=env, stdout=self.server_output, stderr=self.server_output,
                                        text=True, start_new_session=True)
        self.url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("server exited: %s" % (self.process.stderr.read() if self.process.stderr else ""))
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        self.write_sign_conf()
        return self

    def write_sign_conf(self):
        """The `sign` client's configuration for the served instance, with the client token."""
        with open(self.sign_conf, "w", encoding="utf-8") as handle:
            handle.write("server: %s\ntoken_file: %s\nhash: sha256\n" % (self.url, os.path.join(self.root, "client.token")))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self):
        """Stop the server and the gpg-agent of the service's GnuPG home."""
        self.stop()
        if os.path.isdir(self.gnupg_home):
            _gnupg.GnuPG(self.gnupg_home, create=False).kill_agent()

    def sign(self, *args, token=None, input=None, cwd=None, conf=None):  # pylint: disable=redefined-builtin
        """Run the real `sign` client; returns CompletedProcess (bytes output)."""
        env = child_env(SIGN_CONF=conf or self.sign_conf)
        if token:
            env["SIGN_TOKEN_FILE"] = os.path.join(self.root, token + ".token")
        return subprocess.run([PYTHON, "-m", "pkgsign.client"] + list(args), env=env, input=input, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, check=False)

    def request(self, method, path, body=None, token="client", form=None, headers=None):
        """Real HTTP request; returns (status, headers, parsed JSON or text)."""
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            all_headers["Authorization"] = "Bearer " + self.secret(token)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, response.headers, _decode(response)
        except urllib.error.HTTPError as err:
            return err.code, err.headers, _decode(err)

    def secret(self, token):
        """The secret of ``token``: made by add_token, or read from its <root>/<token>.token file."""
        if token not in self.tokens:
            with open(os.path.join(self.root, token + ".token"), encoding="utf-8") as handle:
                return handle.read().strip()
        return self.tokens[token]


def _decode(response):
    raw = response.read()
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(raw)
    return raw.decode("utf-8", "replace")


class Api:
    """A keep-alive JSON client (one connection, reopened once when the server closed it) for
    harnesses that send many requests; returns (status, body bytes)."""

    def __init__(self, url, token):
        parts = urlsplit(url)
        self.host, self.port, self.token = parts.hostname, parts.port or 80, token
        self.conn = None

    def call(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def bearer(instance, token="client"):
    return {"Authorization": "Bearer " + instance.tokens[token]}


def gpg_verify(gpg, signature, data=None):
    """VALIDSIG fingerprint list from stock `gpg --verify` (raises if the signature is bad)."""
    return gpg.verify(str(signature), str(data) if data else None)


def payload_digest(path):
    out = subprocess.run(["rpm", "-qp", "--qf", "%{PAYLOADDIGEST}", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, check=False).stdout
    return out


def rpm_checksig(path, pubkeys, dbpath):
    """rpmkeys --checksig against a private rpmdb holding ``pubkeys``; returns (rc, output)."""
    os.makedirs(str(dbpath), exist_ok=True)
    for key in pubkeys:
        subprocess.run(["rpmkeys", "--dbpath", str(dbpath), "--import", str(key)], check=True)
    proc = subprocess.run(["rpmkeys", "--dbpath", str(dbpath), "--checksig", "-v", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    return proc.returncode, proc.stdout


def state_json(data, digest_algo="sha256"):
    """The hash state of ``data`` as POST /sign takes it (what the `sign` client sends)."""
    from pkgsign.hashstate import Hasher

    return Hasher(digest_algo).update(data).state().to_json()


def hex_re(n):
    return re.compile("^[0-9a-f]{%d}$" % n)


def agents_under(root):
    """pids of gpg-agents whose --homedir lies under ``root`` (started by gpg in test homes)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"gpg-agent" and b"--homedir" in argv:
            home = argv[argv.index(b"--homedir") + 1].decode("utf-8", "replace")
            if home == root or home.startswith(root.rstrip("/") + "/"):
                found.append(int(pid))
    return found


def audit_count(config):
    """Lines in the instance's current audit log file."""
    if not os.path.exists(config.audit_log):
        return 0
    with open(config.audit_log, "rb") as handle:
        return sum(1 for _line in handle)


def audit_lines(config):
    """The instance's current audit log file, one dict per line."""
    if not os.path.exists(config.audit_log):
        return []
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def in_process_lab(root, tokens):
    """An instance made by `pkgsign-admin init` at ``root`` (keep it short: gpg-agent's socket
    paths under <root>/audit-gnupg must fit 108 bytes), served in-process by Flask's test client.
    ``tokens``: {name: (token id, scopes, key patterns)}. Yields (client, {name: headers}, config,
    the service's GnuPG); use it as a fixture body with ``yield from``."""
    run_admin("init", str(root), "--algorithm", "ed25519")
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    config = load_config(str(root / "pkgsign.conf"))
    secrets = {name: add_token(config.tokens_file, token_id, scopes, patterns)
               for name, (token_id, scopes, patterns) in tokens.items()}
    app = create_app(config)
    app.testing = True
    gpg = _gnupg.GnuPG(config.gnupg_home, create=False)
    yield app.test_client(), {k: {"Authorization": "Bearer " + v} for k, v in secrets.items()}, config, gpg
    gpg.kill_agent()


def signed_backup(tmp_path):
    """A signed backup of an instance holding one token ("genuine"), encrypted to an operator's
    key, and a fresh instance to restore it into. Yields a dict: operator (GnuPG), recipient (the
    operator's public key file), archive, pinned (the backup key's public key file), target
    (Config of the fresh instance), tmp; use it as a fixture body with ``yield from``."""
    from pkgsign.config import load_config

    operator = _gnupg.GnuPG(str(tmp_path / "op"))
    fpr = operator.generate_key("Backup Operator", "backup@example.org", algorithm="ed25519", usage=["cert"])
    operator.add_subkey(fpr, "ed25519", "encrypt")
    recipient = tmp_path / "op.asc"
    recipient.write_bytes(operator.export_public(fpr))
    run_admin("init", str(tmp_path / "src"), "--algorithm", "ed25519")
    source = str(tmp_path / "src" / "pkgsign.conf")
    add_token(load_config(source).tokens_file, "genuine", ["sign"], ["*"])
    archive = run_admin("backup", "--config", source, "--recipient-file", str(recipient),
                        "--output-dir", str(tmp_path / "backups")).stdout.strip().split()[-1]
    pinned = tmp_path / "backup-key.asc"
    pinned.write_text(run_admin("backup-key", "--config", source).stdout)
    run_admin("init", str(tmp_path / "dst"), "--algorithm", "ed25519")
    target = load_config(str(tmp_path / "dst" / "pkgsign.conf"))
    yield {"operator": operator, "archive": archive, "pinned": str(pinned), "target": target,
           "recipient": str(recipient), "tmp": tmp_path}
    operator.kill_agent()
    for home in (tmp_path / "src" / "audit-gnupg", tmp_path / "src" / "gnupg", tmp_path / "dst" / "gnupg"):
        if home.is_dir():
            _gnupg.GnuPG(str(home), create=False).kill_agent()


def planted_backup_plaintext(backup, scopes=("sign",)):
    """What an attacker would put in a backup: the genuine archive's layout (decrypted, its inner
    signature checked and removed) with a token of their own, with ``scopes``, in place of the
    genuine tokens."""
    from pkgsign.backup import GZIP_MAGIC, verify_archive, verify_plaintext

    genuine = backup["operator"].decrypt(verify_archive(open(backup["archive"], "rb").read(), backup["pinned"]))
    if genuine[:2] != GZIP_MAGIC:  # signed inside the encryption too
        genuine = verify_plaintext(genuine, backup["pinned"])
    planted = json.dumps({"tokens": {"planted": {"sha256": hash_secret(new_secret()), "scopes": list(scopes),
                                                 "keys": ["*"]}}}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(genuine), mode="r:gz") as source, \
            tarfile.open(fileobj=buffer, mode="w:gz") as out:
        for member in source.getmembers():
            if member.name == "tokens.json":
                member.size = len(planted)
                out.addfile(member, io.BytesIO(planted))
            else:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    return buffer.getvalue()
