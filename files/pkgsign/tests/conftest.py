"""Fixtures: one real pkgsign instance per session (GnuPG home, tokens, keys), served over real
HTTP on 127.0.0.1 by ``pkgsign-admin serve``, plus a Flask test client on the same state."""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if importlib.util.find_spec("pkgsign") is None:  # running from a checkout without installing
    sys.path.insert(0, SRC)

from pkgsign import _gnupg  # noqa: E402
from pkgsign.tokens import add_token  # noqa: E402

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


def run_admin(*args, input=None, check=True):
    proc = subprocess.run([PYTHON, "-m", "pkgsign.admin"] + list(args), input=input, env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("pkgsign-admin %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr))
    return proc


class Instance:
    """An initialised instance directory and, once started, its server."""

    def __init__(self, root):
        self.root = str(root)
        self.config = os.path.join(self.root, "pkgsign.conf")
        self.sign_conf = os.path.join(self.root, "sign.conf")
        self.process = None
        self.url = None
        self.tokens = {}

    @property
    def tokens_file(self):
        return os.path.join(self.root, "tokens.json")

    @property
    def audit_log(self):
        return os.path.join(self.root, "audit.log")

    def add_token(self, token_id, scopes, keys, rate=None):
        secret = add_token(self.tokens_file, token_id, scopes, keys, rate=rate, replace=True)
        path = os.path.join(self.root, token_id + ".token")
        _gnupg.write_private_file(path, (secret + "\n").encode())
        self.tokens[token_id] = secret
        return secret

    def set_option(self, section, key, value):
        import configparser

        parser = configparser.ConfigParser()
        parser.read(self.config)
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
        with open(self.config, "w") as handle:
            parser.write(handle)

    def start(self):
        port = _free_port()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "pkgsign.admin", "serve", "--config", self.config, "--bind", "127.0.0.1:%d" % port],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("server exited: %s" % self.process.stderr.read())
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        with open(self.sign_conf, "w") as handle:
            handle.write("server: %s\ntoken_file: %s\nhash: sha256\n" % (self.url, os.path.join(self.root, "client.token")))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def sign(self, *args, token=None, input=None, cwd=None, conf=None):
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
            from urllib.parse import urlencode

            data = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            secret = self.tokens.get(token) or open(os.path.join(self.root, token + ".token")).read().strip()
            all_headers["Authorization"] = "Bearer " + secret
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, response.headers, _decode(response)
        except urllib.error.HTTPError as err:
            return err.code, err.headers, _decode(err)


def _decode(response):
    raw = response.read()
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(raw)
    return raw.decode("utf-8", "replace")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    root = tmp_path_factory.mktemp("inst")
    run_admin("init", str(root), "--algorithm", "ed25519")
    inst = Instance(root)
    with open(os.path.join(root, "client.token")) as handle:
        inst.tokens["client"] = handle.read().strip()
    inst.add_token("admin", ["sign", "keygen", "admin"], ["*"])
    inst.add_token("limited", ["sign"], ["alice#*@copr.test"])
    inst.add_token("keygen-only", ["keygen"], ["*"])
    inst.add_token("slow", ["sign", "keygen"], ["*"], rate="3/3600")
    inst.set_option("aliases", "modern", ED_KEY)
    inst.set_option("aliases", "el10-x86_64", "modern")
    inst.start()
    status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "alice_ed", "name_email": ED_KEY})
    assert status in (200, 201), body
    status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "bob_rsa", "name_email": RSA_KEY,
                                                               "key_length": 2048})
    assert status in (200, 201), body
    yield inst
    inst.stop()
    _gnupg.GnuPG(os.path.join(inst.root, "gnupg"), create=False).kill_agent()


@pytest.fixture(scope="session")
def app_client(instance):
    """Flask test client over the same state as the served instance."""
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    app = create_app(load_config(instance.config))
    app.testing = True
    return app.test_client()


def bearer(instance, token="client"):
    return {"Authorization": "Bearer " + instance.tokens[token]}


@pytest.fixture(scope="session")
def verifier(instance, tmp_path_factory):
    """A separate GnuPG home holding the instance's public keys, to verify with stock gpg."""
    home = tmp_path_factory.mktemp("verify-gnupg")
    gpg = _gnupg.GnuPG(str(home))
    for key in (ED_KEY, RSA_KEY):
        status, _headers, text = instance.request("GET", "/pubkey/" + key.replace("#", "%23"))
        assert status == 200
        gpg.import_keys(text.encode())
    yield gpg
    gpg.kill_agent()


def gpg_verify(gpg, signature, data=None):
    """VALIDSIG fingerprint list from stock `gpg --verify` (raises if the signature is bad)."""
    return gpg.verify(str(signature), str(data) if data else None)


@pytest.fixture(scope="session")
def tiny_rpm(tmp_path_factory):
    if not shutil.which("rpmbuild"):
        pytest.skip("rpmbuild not installed")
    top = tmp_path_factory.mktemp("rpmbuild")
    spec = top / "tiny.spec"
    spec.write_text(
        "Name: tiny\nVersion: 1.0\nRelease: 1\nSummary: tiny test package\nLicense: MIT\nBuildArch: noarch\n"
        "%description\ntiny\n%install\nmkdir -p %{buildroot}/usr/share/tiny\n"
        "echo hello > %{buildroot}/usr/share/tiny/hello\n%files\n/usr/share/tiny/hello\n")
    proc = subprocess.run(["rpmbuild", "-bb", "--define", "_topdir %s" % top, "--define", "_rpmdir %s" % top,
                           "--define", "_build_name_fmt %%{NAME}.rpm", str(spec)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return top / "tiny.rpm"


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


def _agents_under(root):
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


@pytest.fixture(scope="session", autouse=True)
def no_agent_left_behind(tmp_path_factory):
    """Every gpg run in a scratch home of this session starts a gpg-agent that would outlive the
    tests (hundreds in the attacker test): stop them when the session ends."""
    yield
    root = str(tmp_path_factory.getbasetemp())
    for pid in _agents_under(root):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


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
