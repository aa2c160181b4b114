"""TLS, mutual TLS, tokens bound to client certificates, and the client identity on the signer,
checked on the deployed containers (real httpd + mod_ssl, the real `sign`, tcpdump on the wire)."""

import base64
import hashlib
import json
import time

import pytest

from conftest import run_ok

testinfra_hosts = ["podman://signer"]

STATE = "/var/lib/pkgsign"
CLIENT_TOKEN = "molecule-client-token-0123456789"
ADMIN = "sudo -u pkgsign /usr/local/bin/pkgsign-admin"
CONFIG = "/etc/pkgsign/pkgsign.conf"

RAW_HTTP = """\
import socket, sys
sock = socket.create_connection(("signer", 5003), timeout=10)
sock.sendall(b"GET /ping HTTP/1.0\\r\\nHost: signer\\r\\nAuthorization: Bearer not-a-real-token-0000\\r\\n\\r\\n")
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode("latin-1"))
"""

TLS_PROBE = """\
import socket, ssl, sys
version, ciphers = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile="/etc/pkgsign/ca.crt")
context.load_cert_chain("/etc/pkgsign/client.crt", "/etc/pkgsign/client.key")
context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
if ciphers:
    context.set_ciphers(ciphers)
try:
    with context.wrap_socket(socket.create_connection(("signer", 5003), timeout=10), server_hostname="signer") as tls:
        tls.sendall(sys.argv[3].encode() + b" /ping HTTP/1.1\\r\\nHost: signer\\r\\nConnection: close\\r\\n\\r\\n")
        print(tls.version(), tls.cipher()[0])
        answer = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        sys.stdout.write(answer.decode("latin-1"))
except (ssl.SSLError, OSError) as err:
    print("refused", type(err).__name__)
"""


def sign_on_client(client, conf_lines, *args, token_file=None):
    """Run sign on the build client with a sign.conf of the given lines."""
    client.run("rm -f /tmp/tls-test.conf")
    run_ok(client, "printf '%%s\\n' %s > /tmp/tls-test.conf" % " ".join("'%s'" % line for line in conf_lines))
    env = "SIGN_CONF=/tmp/tls-test.conf" + (" SIGN_TOKEN_FILE=%s" % token_file if token_file else "")
    return client.run("env %s /usr/local/bin/sign %s" % (env, " ".join(args)))


BASE = ["server: https://signer:5003", "token_file: /etc/pkgsign/sign.token", "user: release"]
CA = "ca_file: /etc/pkgsign/ca.crt"
CERT = ["client_cert: /etc/pkgsign/client.crt", "client_key: /etc/pkgsign/client.key"]


def one_line_failure(result):
    assert result.rc == 1, (result.rc, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- the service answers over TLS only ------------------------------------------------------

def test_plain_http_gets_no_service_answer(client):
    answer = run_ok(client, "python3 -c %s", RAW_HTTP).stdout
    assert answer.startswith("HTTP/1.1 400 "), answer[:200]
    assert "pong" not in answer
    # the request never reached the service: no JSON, no pkgsign answer
    assert "application/json" not in answer


def test_tls_versions_ciphers_and_headers(client):
    for version in ("TLSv1_2", "TLSv1_3"):
        answer = run_ok(client, "python3 -c %s %s '' GET", TLS_PROBE, version).stdout
        assert answer.startswith(version.replace("_", ".")), answer[:200]
        head, _sep, body = answer.partition("\r\n\r\n")
        assert " 200 " in head.split("\n")[1] and body == "pong\n", answer[:300]
        server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
        assert server == ["Server: Apache"], "no version in headers: %s" % server
    # a TLS 1.2 suite without forward secrecy is refused by the server
    weak = run_ok(client, "python3 -c %s TLSv1_2 'AES128-SHA:@SECLEVEL=0' GET", TLS_PROBE).stdout
    assert weak.startswith("refused"), weak[:200]
    old = run_ok(client, "python3 -c %s TLSv1_1 'DEFAULT:@SECLEVEL=0' GET", TLS_PROBE).stdout
    assert old.startswith("refused"), old[:200]
    trace = run_ok(client, "python3 -c %s TLSv1_3 '' TRACE", TLS_PROBE).stdout
    assert trace.split("\n")[1].startswith("HTTP/1.1 405 "), trace[:300]


# -- the client verifies the server ---------------------------------------------------------

@pytest.mark.parametrize("ca", ["system store", "another CA"])
def test_client_refuses_a_server_certificate_it_cannot_verify(client, ca):
    ca_line = [] if ca == "system store" else ["ca_file: /etc/ssl/certs/ca-certificates.crt"]
    run_ok(client, "echo unsigned > /tmp/unverified.txt && rm -f /tmp/unverified.txt.asc")
    result = sign_on_client(client, BASE + ca_line + CERT, "-d", "/tmp/unverified.txt")
    line = one_line_failure(result)
    assert "server certificate not accepted" in line, line
    assert not client.file("/tmp/unverified.txt.asc").exists


def test_deployed_configuration_signs(client):
    result = sign_on_client(client, BASE + [CA] + CERT, "-p")
    assert result.rc == 0 and result.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), result.stderr


# -- mutual TLS ----------------------------------------------------------------------------

def test_missing_client_certificate_is_refused(client):
    line = one_line_failure(sign_on_client(client, BASE + [CA], "-p"))
    assert "client certificate" in line, line


def test_client_certificate_from_another_ca_is_refused(client):
    run_ok(client, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                   "-subj /CN=intruder -keyout /tmp/intruder.key -out /tmp/intruder.crt 2>/dev/null")
    line = one_line_failure(sign_on_client(client, BASE + [CA, "client_cert: /tmp/intruder.crt",
                                                          "client_key: /tmp/intruder.key"], "-p"))
    assert "client certificate" in line, line


@pytest.fixture()
def bound_tokens(host, client):
    """Two tokens: one bound to the build client's certificate, one to another certificate."""
    run_ok(host, "install -m 0644 /etc/pkgsign-client/client.crt /tmp/other-client.crt")
    pem = run_ok(client, "cat /etc/pkgsign/client.crt").stdout
    run_ok(host, "cat > /tmp/build-client.crt <<'EOF'\n%sEOF" % pem)
    run_ok(host, "chmod 0644 /tmp/build-client.crt")
    secrets = {"bound-here": "bound-here-token-0123456789abcdef", "bound-elsewhere": "bound-elsewhere-0123456789abcdef"}
    for token_id, cert in (("bound-here", "/tmp/build-client.crt"), ("bound-elsewhere", "/tmp/other-client.crt")):
        run_ok(host, "echo %s | " + ADMIN + " token add --config " + CONFIG + " --id %s --scopes sign --keys '*' "
                     "--replace --stdin --client-cert %s", secrets[token_id], token_id, cert)
        run_ok(client, "echo %s > /tmp/%s.token && chmod 0600 /tmp/%s.token", secrets[token_id], token_id, token_id)
    yield secrets
    for token_id in secrets:
        host.run(ADMIN + " token revoke --config " + CONFIG + " --id %s", token_id)


def test_token_bound_to_another_certificate_is_refused(host, client, bound_tokens):
    good = sign_on_client(client, BASE + [CA] + CERT, "-p", token_file="/tmp/bound-here.token")
    assert good.rc == 0, good.stderr
    line = one_line_failure(sign_on_client(client, BASE + [CA] + CERT, "-p", token_file="/tmp/bound-elsewhere.token"))
    assert "403" in line and "token bound-elsewhere is bound to another client certificate" in line, line
    # audited like the other refusals, and the chain still verifies
    last = json.loads(run_ok(host, "tail -n 1 %s/audit.log", STATE).stdout)
    assert (last["operation"], last["result"], last["token"]) == ("authenticate", "denied", "bound-elsewhere")
    run_ok(host, ADMIN + " audit verify --config " + CONFIG)


# -- no token on the wire -------------------------------------------------------------------

def test_tokens_never_cross_the_network_in_clear_text(host, client):
    """tcpdump on the signer while the build client signs with the deployed configuration."""
    host.run("pkill -x tcpdump; rm -f /tmp/wire.pcap /tmp/tcpdump.log")
    run_ok(host, "setsid nohup tcpdump -i any -U -s 0 -w /tmp/wire.pcap 'tcp port 5003' >/tmp/tcpdump.log 2>&1 &")
    for _attempt in range(50):
        if "listening on" in host.run("cat /tmp/tcpdump.log").stdout:
            break
        time.sleep(0.2)
    else:
        pytest.fail("tcpdump did not start: %s" % host.run("cat /tmp/tcpdump.log").stdout)
    run_ok(client, "head -c 100000 /dev/urandom > /tmp/wire.bin && sign -d /tmp/wire.bin && sign -p > /dev/null")
    # and a plain-HTTP request with a (fake) token, to show what the capture sees in clear text
    run_ok(client, "python3 -c %s", RAW_HTTP)
    time.sleep(1)
    run_ok(host, "pkill -INT -x tcpdump")
    time.sleep(1)
    capture = base64.b64decode(run_ok(host, "base64 -w0 /tmp/wire.pcap").stdout)
    assert len(capture) > 5000, "the capture holds the exchange"
    assert b"not-a-real-token-0000" in capture, "plain text is visible in the capture (positive control)"
    assert b"signer" in capture, "the TLS server name is visible in the capture (positive control)"
    assert CLIENT_TOKEN.encode() not in capture
    assert base64.b64encode(CLIENT_TOKEN.encode()) not in capture
    assert b"Bearer " + CLIENT_TOKEN.encode() not in capture


# -- a build user cannot read the state directory through sign ------------------------------

def _as_builder(host, command):
    return host.run("su builder -s /bin/sh -c %s" % _quote("sudo -n -u pkgsign-client /usr/local/bin/sign " + command))


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _digest(host, path):
    return run_ok(host, "sha256sum %s", path).stdout.split()[0]


def test_build_user_cannot_read_the_state_directory_through_sign(host):
    targets = [STATE + "/tokens.json", STATE + "/audit.log"]
    targets += run_ok(host, "find %s/gnupg/private-keys-v1.d -type f", STATE).stdout.split()
    assert len(targets) >= 3
    before = {path: _digest(host, path) for path in targets}
    listing = run_ok(host, "find %s -name '*.asc' -o -name '*.sig' -o -name '*tmp*' | sort", STATE).stdout
    secret_markers = ["sha256", "private-key", "Key:", '"seq"']
    # /var/tmp: on the state directory's file system (/tmp is a tmpfs: a hard link would fail there anyway)
    run_ok(host, "rm -rf /var/tmp/steal && install -d -o builder -m 0755 /var/tmp/steal")
    devices = run_ok(host, "stat -c %%d /var/tmp %s", STATE).stdout.split()
    assert devices[0] == devices[1], devices
    for number, target in enumerate(targets):
        # directly, through a symlink the build user makes, and through a hard link (made by root:
        # the build user cannot even make one, having no search permission on the state directory)
        refused = host.run("su builder -s /bin/sh -c %s", "ln %s /var/tmp/steal/try%d" % (target, number))
        assert refused.rc != 0 and "Permission denied" in refused.stderr, refused.stderr
        run_ok(host, "su builder -s /bin/sh -c %s", "ln -s %s /var/tmp/steal/sym%d" % (target, number))
        run_ok(host, "ln %s /var/tmp/steal/hard%d" % (target, number))
        for path in (target, "/var/tmp/steal/sym%d" % number, "/var/tmp/steal/hard%d" % number):
            for mode in ("-c", "-d", "-D"):
                result = _as_builder(host, "%s %s" % (mode, path))
                assert result.rc != 0, (mode, path, result.stdout[:200])
                for marker in secret_markers:
                    assert marker not in result.stdout, (mode, path)
            # clear-signing standard input: the build user's shell opens the file, and cannot
            stdin = host.run("su builder -s /bin/sh -c %s", "sudo -n -u pkgsign-client /usr/local/bin/sign -c < %s" % path)
            assert stdin.rc != 0 and not any(marker in stdin.stdout for marker in secret_markers)
    run_ok(host, "rm -rf /var/tmp/steal")
    # nothing was written next to the targets, nothing changed
    assert run_ok(host, "find %s -name '*.asc' -o -name '*.sig' -o -name '*tmp*' | sort", STATE).stdout == listing
    for path in targets:
        if path.endswith("audit.log"):
            continue  # the service appended its own lines for the refused requests (if any)
        assert _digest(host, path) == before[path], path
    assert "BEGIN PGP SIGNATURE" not in run_ok(host, "cat %s/audit.log", STATE).stdout


def test_build_user_cannot_make_sign_write_into_the_state_directory(host):
    run_ok(host, "rm -rf /tmp/plant && install -d -o builder -m 0755 /tmp/plant")
    run_ok(host, "su builder -s /bin/sh -c %s", "echo data > /tmp/plant/file && ln -s %s/tokens.json /tmp/plant/file.asc" % STATE)
    before = _digest(host, STATE + "/tokens.json")
    _as_builder(host, "-d /tmp/plant/file")
    assert _digest(host, STATE + "/tokens.json") == before
    run_ok(host, "rm -rf /tmp/plant")
