"""TLS: the real `sign` client over real TLS (a TLS front end to the served instance, as httpd's
mod_ssl is in production), client certificates, and tokens bound to a client certificate."""

import datetime
import json
import os
import socket
import ssl
import subprocess
import threading

import pytest

from pkgsign_testlib import ED_KEY, PYTHON, child_env, gpg_verify, run_admin

from pkgsign.tokens import TokenFileError, add_token, certificate_sha256, normalize_fingerprint, read_tokens

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


# -- certificates ------------------------------------------------------------------------

def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


class _Ca:
    def __init__(self, directory, name):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.file = _write(directory / (name + ".crt"), self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name, dns=(), ips=(), client=False):
        """(cert path, key path, PEM text) of a leaf certificate."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                         else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if dns or ips:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_path = _write(self.directory / (name + ".crt"), pem)
        key_path = _write(self.directory / (name + ".key"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        return cert_path, key_path, pem.decode("ascii")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca, other_ca = _Ca(directory, "lab-ca"), _Ca(directory, "other-ca")
    return {
        "ca": ca, "other_ca": other_ca,
        "server": ca.issue("server", dns=["localhost"], ips=["127.0.0.1"]),
        "wrong_name": ca.issue("wrong-name", dns=["signer.elsewhere.test"]),
        "client": ca.issue("client", client=True),
        "client2": ca.issue("client2", client=True),
        "foreign_client": other_ca.issue("foreign", client=True),
    }


# -- a TLS front end to the served instance ----------------------------------------------

class _TlsFrontEnd:
    """Terminates TLS on 127.0.0.1 and relays bytes to the plain-HTTP instance."""

    def __init__(self, backend_url, cert, key, client_ca=None):
        self.backend = backend_url.split("://", 1)[1].split(":")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        if client_ca:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(client_ca)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            front = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        back = socket.create_connection((self.backend[0], int(self.backend[1])))

        def pump(source, sink):
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(back, front), daemon=True).start()
        pump(front, back)

    def close(self):
        self.listener.close()


@pytest.fixture(scope="module")
def https(instance, pki):
    cert, key, _pem = pki["server"]
    front = _TlsFrontEnd(instance.url, cert, key)
    yield "https://127.0.0.1:%d" % front.port
    front.close()


@pytest.fixture(scope="module")
def https_mutual(instance, pki):
    cert, key, _pem = pki["server"]
    front = _TlsFrontEnd(instance.url, cert, key, client_ca=pki["ca"].file)
    yield "https://localhost:%d" % front.port
    front.close()


def _conf(instance, tmp_path, server, **settings):
    path = tmp_path / "sign.conf"
    lines = ["server: %s" % server, "token_file: %s" % os.path.join(instance.root, "client.token"),
             "user: %s" % ED_KEY]
    lines += ["%s: %s" % item for item in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _error_line(proc):
    assert proc.returncode == 1, proc
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- the client over TLS ------------------------------------------------------------------

def test_sign_over_https_verifies_with_gpg(instance, verifier, pki, https, tmp_path):
    conf = _conf(instance, tmp_path, https, ca_file=pki["ca"].file)
    assert instance.sign("-t", conf=conf).returncode == 0
    data = tmp_path / "payload.bin"
    data.write_bytes(os.urandom(5000))
    proc = instance.sign("-d", str(data), conf=conf)
    assert proc.returncode == 0, proc.stderr
    gpg_verify(verifier, tmp_path / "payload.bin.asc", data)


def test_ca_file_relative_to_sign_conf(instance, pki, https, tmp_path):
    os.symlink(pki["ca"].file, str(tmp_path / "ca.pem"))
    conf = _conf(instance, tmp_path, https, ca_file="ca.pem")
    proc = instance.sign("-p", conf=conf)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("ca", ["other", "system"])
def test_server_certificate_that_cannot_be_verified_is_refused(instance, pki, https, tmp_path, ca):
    settings = {"ca_file": pki["other_ca"].file} if ca == "other" else {}
    conf = _conf(instance, tmp_path, https, **settings)
    data = tmp_path / "payload.bin"
    data.write_bytes(b"never signed\n")
    proc = instance.sign("-d", str(data), conf=conf)
    line = _error_line(proc)
    assert "server certificate not accepted: unable to get local issuer certificate" in line, line
    assert not (tmp_path / "payload.bin.asc").exists()


def test_server_certificate_for_another_name_is_refused(instance, pki, tmp_path):
    cert, key, _pem = pki["wrong_name"]
    front = _TlsFrontEnd(instance.url, cert, key)
    try:
        conf = _conf(instance, tmp_path, "https://127.0.0.1:%d" % front.port, ca_file=pki["ca"].file)
        line = _error_line(instance.sign("-p", conf=conf))
    finally:
        front.close()
    assert "server certificate not accepted: IP address mismatch" in line, line


def test_tls_settings_with_plain_http_are_refused(instance, pki, tmp_path):
    conf = _conf(instance, tmp_path, instance.url, ca_file=pki["ca"].file)
    line = _error_line(instance.sign("-p", conf=conf))
    assert "plain http but ca_file/client_cert is set" in line


def test_unreadable_ca_file_is_one_line(instance, https, tmp_path):
    conf = _conf(instance, tmp_path, https, ca_file=str(tmp_path / "missing.pem"))
    assert "cannot use ca_file" in _error_line(instance.sign("-p", conf=conf))


def test_mutual_tls_client_certificate(instance, pki, https_mutual, tmp_path):
    cert, key, _pem = pki["client"]
    good = _conf(instance, tmp_path, https_mutual, ca_file=pki["ca"].file, client_cert=cert, client_key=key)
    proc = instance.sign("-p", conf=good)
    assert proc.returncode == 0, proc.stderr
    missing = _conf(instance, tmp_path, https_mutual, ca_file=pki["ca"].file)
    # (TLS 1.3: the alert, or the closed connection, arrives with the first answer)
    assert "client certificate" in _error_line(instance.sign("-p", conf=missing))
    foreign_cert, foreign_key, _pem = pki["foreign_client"]
    foreign = _conf(instance, tmp_path, https_mutual, ca_file=pki["ca"].file,
                    client_cert=foreign_cert, client_key=foreign_key)
    assert "client certificate" in _error_line(instance.sign("-p", conf=foreign))


def _imports_after_sign_t(instance, conf):
    code = ("import sys\nfrom pkgsign import client\nrc = client.main(['-t'])\n"
            "print(rc, 'ssl' in sys.modules)\n")
    proc = subprocess.run([PYTHON, "-c", code], env=child_env(SIGN_CONF=conf), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    return proc.stdout.strip().splitlines()[-1].split()  # (sign -t prints a line of its own first)


def test_ssl_is_imported_for_https_servers_only(instance, pki, https, tmp_path):
    assert _imports_after_sign_t(instance, instance.sign_conf) == ["0", "False"]
    conf = _conf(instance, tmp_path, https, ca_file=pki["ca"].file)
    assert _imports_after_sign_t(instance, conf) == ["0", "True"]


# -- tokens bound to a client certificate ----------------------------------------------------

def test_certificate_fingerprint(pki):
    cert, _key, pem = pki["client"]
    der = ssl.PEM_cert_to_DER_cert(pem)
    import hashlib

    assert certificate_sha256(pem) == hashlib.sha256(der).hexdigest()
    # folded onto one line (as some environments pass it) it is the same certificate
    assert certificate_sha256(" ".join(pem.split("\n"))) == hashlib.sha256(der).hexdigest()
    with pytest.raises(ValueError):
        certificate_sha256("not a certificate")
    colons = ":".join(hashlib.sha256(der).hexdigest().upper()[i:i + 2] for i in range(0, 64, 2))
    assert normalize_fingerprint(colons) == hashlib.sha256(der).hexdigest()
    with pytest.raises(TokenFileError):
        normalize_fingerprint("abcd")


@pytest.fixture(scope="module")
def bound_token(instance, pki):
    cert, _key, _pem = pki["client"]
    proc = run_admin("token", "add", "--config", instance.config, "--id", "bound", "--scopes", "sign,keygen",
                     "--keys", "*", "--client-cert", cert, "--replace", "--stdin", input="bound-token-Xq7LmN2pRt9vWz4kYb8cHd3fJg6sAe1uBo5i\n")
    assert proc.returncode == 0
    return "bound-token-Xq7LmN2pRt9vWz4kYb8cHd3fJg6sAe1uBo5i"


def _get_pubkey(app_client, secret, environ):
    return app_client.get("/pubkey/" + ED_KEY.replace("#", "%23"), headers={"Authorization": "Bearer " + secret},
                          environ_base=environ)


def test_token_bound_to_a_certificate(instance, app_client, pki, bound_token):
    entry = read_tokens(instance.tokens_file)["bound"]
    assert entry["client_cert_sha256"] == certificate_sha256(pki["client"][2])
    ok = _get_pubkey(app_client, bound_token, {"SSL_CLIENT_CERT": pki["client"][2]})
    assert ok.status_code == 200, ok.get_json()
    missing = _get_pubkey(app_client, bound_token, {})
    assert missing.status_code == 403
    assert missing.get_json()["error"] == "token bound is bound to a client certificate; the connection presented none"
    other = _get_pubkey(app_client, bound_token, {"SSL_CLIENT_CERT": pki["client2"][2]})
    assert other.status_code == 403
    assert other.get_json()["error"] == "token bound is bound to another client certificate"
    # A request header of that name is the client's word, not the server's: it counts for nothing.
    folded = " ".join(pki["client"][2].split("\n"))  # (a header has one line; the parser accepts folding)
    spoofed = app_client.get("/pubkey/" + ED_KEY.replace("#", "%23"),
                             headers={"Authorization": "Bearer " + bound_token, "SSL-Client-Cert": folded,
                                      "SSL_CLIENT_CERT": folded})
    assert spoofed.status_code == 403
    # refusals are audited like the others
    with open(instance.audit_log) as handle:
        last = [json.loads(line) for line in handle][-1]
    assert (last["operation"], last["result"], last["token"]) == ("authenticate", "denied", "bound")


def test_unbound_tokens_accept_any_connection(app_client, instance, pki):
    answer = _get_pubkey(app_client, instance.tokens["client"], {"SSL_CLIENT_CERT": pki["client2"][2]})
    assert answer.status_code == 200


def test_rotation_keeps_the_binding_unless_dropped(instance, pki, bound_token):
    fingerprint = certificate_sha256(pki["client"][2])
    run_admin("token", "rotate", "--config", instance.config, "--id", "bound", "--stdin",
              input="bound-rotated-Vn3Qs8Lk2Zx7Wc5Rb9Mj4Hd6Tf1Gy0Pe\n")
    assert read_tokens(instance.tokens_file)["bound"]["client_cert_sha256"] == fingerprint
    run_admin("token", "rotate", "--config", instance.config, "--id", "bound", "--stdin",
              "--client-cert-sha256", certificate_sha256(pki["client2"][2]), input="bound-rotated2-Kp6Yt1Nw8Ds3Fh7Jm2Lq9Xc4Vb5Rz0Ga\n")
    assert read_tokens(instance.tokens_file)["bound"]["client_cert_sha256"] == certificate_sha256(pki["client2"][2])
    run_admin("token", "rotate", "--config", instance.config, "--id", "bound", "--stdin", "--unbind-client-cert",
              input="bound-rotated3-Ue4Io9Pa2Sd7Fg1Hj6Kl3Zx8Cv5Bn0Mq\n")
    assert "client_cert_sha256" not in read_tokens(instance.tokens_file)["bound"]
    bad = run_admin("token", "add", "--config", instance.config, "--id", "bad", "--scopes", "sign", "--keys", "*",
                    "--client-cert", "/nonexistent.pem", check=False)
    assert bad.returncode != 0 and "cannot read client certificate /nonexistent.pem" in bad.stderr
    with pytest.raises(TokenFileError):
        add_token(instance.tokens_file, "bad", ["sign"], ["*"], client_cert_sha256="zz")
