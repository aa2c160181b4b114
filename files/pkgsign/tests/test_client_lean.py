"""The `sign` client's start-up savings: JSON through _json and HTTP over a raw _socket.

They must behave exactly like the json package and the socket module they replace.
"""

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from pkgsign.client import Api, SignError, _json_dumps, _json_loads

from pkgsign_testlib import ED_KEY, RSA_KEY, child_env, gpg_verify, rpm_checksig

VALUES = [
    {"key": "user#project@copr.test", "digests": ["ab" * 32] * 3, "armor": False, "count": 5, "none": None},
    {"text": "é \u2028 \U0001F600 \" \\ \n \t \x7f", "nested": [1, [2, {"a": [None, True]}]]},
    [], {}, "", "plain", 0, -3, True, False, None,
]


@pytest.mark.parametrize("value", VALUES)
def test_lean_json_round_trips_like_the_json_package(value):
    assert json.loads(_json_dumps(value)) == value
    assert _json_loads(json.dumps(value)) == value
    assert _json_loads(" \n" + json.dumps(value, indent=2) + "\r\n") == value
    assert _json_loads(json.dumps(value, ensure_ascii=False)) == value


@pytest.mark.parametrize("text", ["", " ", "{", "[1,]", "{} x", "NaN", "Infinity", '"\x01"', "{'a': 1}", "tru"])
def test_lean_json_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        _json_loads(text)


def test_lean_json_refuses_unsendable_values():
    with pytest.raises(TypeError):
        _json_dumps({"x": object()})


def _one_shot_server(answer):
    """A listening socket that records one request and sends ``answer`` (bytes) in small pieces."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen = {}

    def serve():
        conn, _peer = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, _sep, body = data.partition(b"\r\n\r\n")
        length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += conn.recv(4096)
        seen["head"], seen["body"] = head, body
        for index in range(0, len(answer), 7):  # split lines across reads
            conn.sendall(answer[index:index + 7])
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], seen, thread


def test_raw_socket_http_exchange_with_chunked_answer():
    body = json.dumps({"signatures": [{"digest": "00", "signature": "AAA="}]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 10]), body[i:i + 10]) for i in range(0, len(body), 10))
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
              + chunked + b"0\r\n\r\n")
    port, seen, thread = _one_shot_server(answer)
    api = Api("http://127.0.0.1:%d" % port, token="t0ken")
    request = {"key": "k", "states": [{"chaining_value": "00" * 32, "byte_count": 0, "tail": ""}]}
    result = api.call("POST", "/sign", request)
    thread.join(5)
    assert result == json.loads(body)
    assert json.loads(seen["body"]) == request
    assert b"Authorization: Bearer t0ken" in seen["head"]


def test_raw_socket_error_answer_and_unreachable_server():
    answer = b'HTTP/1.1 403 FORBIDDEN\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{"error": "no, sorry"}'
    port, _seen, thread = _one_shot_server(answer[:-1])
    with pytest.raises(SignError, match="403.*no, sorr"):
        Api("http://127.0.0.1:%d" % port).call("POST", "/sign", {})
    thread.join(5)
    with pytest.raises(SignError, match="cannot reach"):
        Api("http://127.0.0.1:%d" % port, timeout=2).call("GET", "/ping")


LEAN_PROBE = """
import sys
from pkgsign.client import main
status = main(sys.argv[1:])
heavy = ('json', 're', 'enum', 'socket', 'hashlib', 'ctypes', 'base64', 'concurrent.futures', 'subprocess', 'tempfile')
print(status, ' '.join(sorted(m for m in heavy if m in sys.modules)), 'libcrypto' if '_ctypes' in sys.modules else '')
"""


@pytest.mark.parametrize("args", [["-t"], ["-u", ED_KEY, "-D", "DATA"], ["-u", ED_KEY, "-d", "DATA"],
                                  ["-u", ED_KEY, "-r", "RPM"]])
def test_one_file_runs_import_nothing_heavy(instance, tmp_path, request, args):
    """json, re, enum, socket, hashlib (OpenSSL), the ctypes package, subprocess, tempfile each
    cost start-up time in every `sign` run; libcrypto (through _ctypes) is loaded only to hash."""
    data = tmp_path / "data"
    data.write_bytes(b"lean\n" * 1000)
    package = tmp_path / "lean.rpm"
    if "RPM" in args:
        shutil.copy(str(request.getfixturevalue("tiny_rpm")), str(package))
    argv = [str(data) if arg == "DATA" else str(package) if arg == "RPM" else arg for arg in args]
    proc = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path[:0] = %r\n" % sys.path + LEAN_PROBE] + argv,
                          env=child_env(SIGN_CONF=instance.sign_conf), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    # the probe's own line comes last (sign -t prints which server and token it used first)
    probe = proc.stdout.strip().splitlines()[-1].split()
    assert probe == (["0"] if args == ["-t"] else ["0", "libcrypto"]), proc.stdout + proc.stderr
    if "-d" in args:
        assert (tmp_path / "data.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    if "-r" in args:
        rc, output = rpm_checksig(package, [], tmp_path / "rpmdb")
        assert "Header V4 EdDSA/SHA256 Signature" in output, output


MODULES_PROBE = """
import sys
from pkgsign.client import main
status = main(sys.argv[1:])
print(status, ' '.join(sorted(m[8:] for m in sys.modules if m.startswith('pkgsign.'))))
"""
QUERY_MODULES = ["cli", "client", "clientconf", "clienterrors", "leanjson", "obsopts", "transport"]


@pytest.mark.parametrize("args, modules", [
    (["-t"], QUERY_MODULES),
    (["-u", ED_KEY, "-k"], QUERY_MODULES),
    (["-u", ED_KEY, "-D", "DATA"], sorted(QUERY_MODULES + ["clientfiles", "hashstate", "signing", "wire"])),
])
def test_each_mode_loads_only_the_client_modules_it_needs(instance, tmp_path, args, modules):
    """The client is split by concern and imported lazily: -t and -k load the configuration and
    the transport, never signing, RPM or file code; nothing loads the GnuPG layer or the service."""
    data = tmp_path / "data"
    data.write_bytes(b"modules\n")
    argv = [str(data) if arg == "DATA" else arg for arg in args]
    proc = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path[:0] = %r\n" % sys.path + MODULES_PROBE] + argv,
                          env=child_env(SIGN_CONF=instance.sign_conf), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert proc.stdout.strip().splitlines()[-1].split() == ["0"] + modules, proc.stdout + proc.stderr


def test_missing_rpmsign_is_one_clear_line(instance, tmp_path, tiny_rpm):
    conf = tmp_path / "sign.conf"
    conf.write_text(open(instance.sign_conf).read() + "rpmsign: %s\n" % (tmp_path / "no-rpmsign"))
    package = tmp_path / "p.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    # A package with reserved space is signed in place: rpmsign is not needed for it.
    proc = instance.sign("-u", ED_KEY, "-r", str(package), conf=str(conf))
    assert proc.returncode == 0, proc.stderr
    # Signing it again with another key replaces a signature: that is rpmsign's job.
    proc = instance.sign("-u", RSA_KEY, "-r", str(package), conf=str(conf))
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == "sign: cannot run %s: No such file or directory" % (tmp_path / "no-rpmsign")
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith("p.rpm.")]


def test_many_files_are_written_as_their_batches_come_back(instance, verifier, tmp_path):
    """Results are delivered from worker threads: each file must get its own signature."""
    files = []
    for index in range(40):
        path = tmp_path / ("f%02d" % index)
        path.write_bytes(b"file %d\n" % index * (index + 1))
        files.append(str(path))
    proc = instance.sign("-u", ED_KEY, "--jobs", "4", "-D", *(files + [files[0]]))  # a name twice
    assert proc.returncode == 0, proc.stderr
    for path in files:
        assert gpg_verify(verifier, path + ".sig", path)
    assert not [name for name in os.listdir(str(tmp_path)) if ".sign-tmp" in name]


def test_launcher_starts_the_client_isolated(instance, tmp_path):
    """The `sign` launcher the roles install: -I -S, idempotent, and it really runs the client."""
    from pkgsign import launcher

    dest = tmp_path / "sign"
    dest.symlink_to("/nonexistent/console-script")  # an older deployment linked the console script
    assert launcher.write_launcher(str(dest), launcher.launcher_text()) is True
    assert not dest.is_symlink() and os.stat(str(dest)).st_mode & 0o777 == 0o755
    assert launcher.write_launcher(str(dest), launcher.launcher_text()) is False
    assert dest.read_text().startswith("#!%s -IS\n" % sys.executable)
    # PYTHONPATH pointing at a poisoned `pkgsign` must not be used (-I ignores PYTHON* variables).
    poisoned = tmp_path / "poison" / "pkgsign"
    poisoned.mkdir(parents=True)
    (poisoned / "__init__.py").write_text("raise SystemExit('poisoned')\n")
    env = child_env(SIGN_CONF=instance.sign_conf, PYTHONPATH=str(poisoned.parent))
    proc = subprocess.run([str(dest), "-t"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(dest), "-u", ED_KEY, "-k"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 8, proc.stderr
    # The module's command line, as the role runs it: changed once, then unchanged.
    by_role = tmp_path / "sign-by-role"
    outputs = [subprocess.run([sys.executable, "-m", "pkgsign.launcher", str(by_role)], env=child_env(),
                              stdout=subprocess.PIPE, text=True, check=True).stdout.strip() for _run in range(2)]
    assert outputs == ["changed", "unchanged"]
