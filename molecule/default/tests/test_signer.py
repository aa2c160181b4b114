"""The signer host as deploy-signer leaves it."""

import json

import pytest

from conftest import run_ok

testinfra_hosts = ["podman://signer"]

STATE = "/var/lib/pkgsign"
GNUPG = STATE + "/gnupg"
PHRASES = STATE + "/phrases"
TOKENS = ("molecule-client-token-0123456789", "molecule-local-token-0123456789")


CLIENT_DIR = "/etc/pkgsign-client"

# HTTPS as the local client sees it: the private CA and (mutual TLS) the client identity's certificate.
HTTPS_GET = """\
import http.client, ssl, sys
url, src = sys.argv[1], sys.argv[2] or None
context = ssl.create_default_context(cafile="%s/ca.crt")
context.load_cert_chain("%s/client.crt", "%s/client.key")
# 'signer' is the container's own network address (/etc/hosts); the certificate names it
host = "signer" if src else "127.0.0.1"
conn = http.client.HTTPSConnection(host, 5003, timeout=10, context=context,
                                   source_address=(src, 0) if src else None)
conn.request(sys.argv[3] if len(sys.argv) > 3 else "GET", url)
resp = conn.getresponse()
print(resp.status)
print(resp.getheader("Server"))
sys.stdout.write(resp.read().decode())
""" % (CLIENT_DIR, CLIENT_DIR, CLIENT_DIR)


def https_request(host, url, source=None, method="GET"):
    """Status, Server header and body of a request to the service over HTTPS from host."""
    result = run_ok(host, "python3 -c %s %s %s %s", HTTPS_GET, url, source or "", method)
    status, server, body = result.stdout.split("\n", 2)
    return int(status), server, body


def http_get(host, url, source=None):
    status, _server, body = https_request(host, url, source)
    return status, body


def test_signer_user_has_no_login_shell(host):
    user = host.user("pkgsign")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "a system user"
    assert user.home == STATE


@pytest.mark.parametrize("path", [STATE, GNUPG, PHRASES])
def test_state_directories_are_owner_only(host, path):
    directory = host.file(path)
    assert directory.is_directory
    assert directory.user == "pkgsign"
    assert directory.mode == 0o700


def test_no_state_file_is_group_or_world_accessible_where_it_matters(host):
    # Every directory under the state dir is 0700; secret files are 0600.
    dirs = run_ok(host, "find %s -type d ! -perm 0700", STATE).stdout.split()
    assert dirs == []
    secrets = run_ok(host, "find %s/private-keys-v1.d %s %s/tokens.json -type f ! -perm 0600",
                     GNUPG, PHRASES, STATE).stdout.split()
    assert secrets == []
    not_owned = run_ok(host, "find %s ! -user pkgsign", STATE).stdout.split()
    assert not_owned == []


def test_gnupg_is_tuned_for_unattended_signing(host):
    gpg_conf = host.file(GNUPG + "/gpg.conf")
    assert gpg_conf.mode == 0o600
    assert gpg_conf.contains("^no-auto-check-trustdb$")
    agent_conf = host.file(GNUPG + "/gpg-agent.conf")
    assert agent_conf.contains("^allow-loopback-pinentry$")
    assert agent_conf.contains("^max-cache-ttl 31536000$")


def test_tokens_are_stored_hashed_only(host):
    content = host.file(STATE + "/tokens.json").content_string
    tokens = json.loads(content)["tokens"]
    # (tokens other tests add are revoked when they end)
    assert {token_id for token_id, entry in tokens.items() if not entry.get("revoked")} == {"build-client", "local-signer"}
    for secret in TOKENS:
        assert secret not in content


def test_release_key_is_a_subkey_only_keyring(host):
    listing = run_ok(host, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -K", GNUPG).stdout
    primary, signing_subkeys = None, []
    for fields in (line.split(":") for line in listing.splitlines()):
        if fields[0] == "sec":
            current, current_subkeys = fields, []
        elif fields[0] == "ssb":
            current_subkeys.append(fields)
        elif fields[0] == "uid" and "<release@pkgsign.test>" in fields[9]:
            primary, signing_subkeys = current, current_subkeys
    assert primary is not None, "release key missing from the keyring"
    # Field 15 is '#' when the secret part is absent (what gpg -K shows as `sec#`).
    assert primary[14] == "#", "the release key's secret primary must not be on the signer"
    assert any("s" in sub[11] and sub[14] != "#" for sub in signing_subkeys), "usable secret signing subkey"


def test_sudo_lets_the_build_user_run_only_sign_as_the_client_identity(host):
    sudoers = host.file("/etc/sudoers.d/pkgsign")
    assert sudoers.mode == 0o440
    run_ok(host, "visudo -c")
    listing = run_ok(host, "sudo -l -U builder").stdout
    assert "(pkgsign-client) NOPASSWD: /usr/local/bin/sign" in listing
    assert "(pkgsign)" not in listing, "no build user runs anything as the key owner"
    allowed = host.run("su builder -c 'sudo -n -u pkgsign-client /usr/local/bin/sign -t'")
    assert allowed.rc == 0, allowed.stderr
    assert host.run("su builder -c 'sudo -n -u pkgsign /usr/local/bin/sign -t'").rc != 0
    denied = host.run("su builder -c 'sudo -n -u pkgsign-client /usr/bin/gpg --version'")
    assert denied.rc != 0
    # The builder cannot read the token it signs with.
    assert host.run("su builder -c 'cat %s/sign.token'" % CLIENT_DIR).rc != 0


def test_client_identity_is_unprivileged(host):
    user = host.user("pkgsign-client")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    assert user.home == "/nonexistent" and not host.file("/nonexistent").exists
    assert user.groups == ["pkgsign-client"], "in no group of the signer user"
    token = host.file(CLIENT_DIR + "/sign.token")
    assert token.user == "pkgsign-client" and token.mode == 0o600
    assert host.file(CLIENT_DIR).user == "root" and host.file(CLIENT_DIR).mode == 0o750
    assert host.run("sudo -u pkgsign-client ls %s", STATE).rc != 0
    # The signer user holds no client token any more.
    assert not host.file(STATE + "/sign.token").exists


def test_sign_conf_points_at_the_local_service(host):
    conf = host.file("/etc/sign.conf")
    assert conf.contains("^server: https://127.0.0.1:5003$")
    assert conf.contains("^ca_file: %s/ca.crt$" % CLIENT_DIR)
    assert conf.contains("^client_cert: %s/client.crt$" % CLIENT_DIR)
    assert conf.contains("^token_file: %s/sign.token$" % CLIENT_DIR)


def test_httpd_serves_the_health_endpoints(host):
    apache = host.service("apache2")
    assert apache.is_running and apache.is_enabled
    assert host.socket("tcp://0.0.0.0:5003").is_listening
    # ... and nothing else: the distribution's port 80 and 443 listeners are gone.
    listeners = run_ok(host, "ss -Hltnp").stdout.split("\n")
    httpd = [line.split()[3] for line in listeners if "apache2" in line]
    assert httpd == ["0.0.0.0:5003"], httpd
    assert http_get(host, "/ping") == (200, "pong\n")
    status, body = http_get(host, "/health/ready")
    assert status == 200 and json.loads(body)["ready"] is True


def test_service_runs_as_the_signer_user(host):
    processes = run_ok(host, "ps -eo user:20,args").stdout.splitlines()
    wsgi = [line for line in processes if "(wsgi:pkgsign)" in line]
    assert wsgi and all(line.split()[0] == "pkgsign" for line in wsgi)


def test_signatures_come_from_private_agents_of_the_service(host):
    run_ok(host, "echo private-agents > /tmp/private-agents.txt && sign -d /tmp/private-agents.txt")
    processes = [line.split(None, 3) for line in run_ok(host, "ps -eo pid=,ppid=,user:20=,args=").stdout.splitlines()]
    wsgi = {pid for pid, _ppid, _user, args in processes if "(wsgi:pkgsign)" in args}
    agents = [(ppid, user) for _pid, ppid, user, args in processes
              if args.split()[0].endswith("gpg-agent") and args.endswith("--homedir %s --server" % GNUPG)]
    # signer_private_agents (default): the service's own agent processes, children of mod_wsgi.
    assert agents and all(ppid in wsgi and user == "pkgsign" for ppid, user in agents)


def test_only_allowed_networks_reach_the_service(host):
    own_address = run_ok(host, "hostname -I").stdout.split()[0]
    # The signer's own network address is not in signer_allowed_networks (only the client is) ...
    status, _body = http_get(host, "/openapi.json", source=own_address)
    assert status == 403
    # ... yet the health endpoints answer everybody, and loopback is allowed.
    assert http_get(host, "/ping", source=own_address)[0] == 200
    assert http_get(host, "/openapi.json")[0] == 200


def test_haveged_runs(host):
    haveged = host.service("haveged")
    assert haveged.is_running and haveged.is_enabled


def test_maintenance_timer_is_scheduled_and_its_job_works(host):
    timer = host.service("pkgsign-maintain.timer")
    assert timer.is_enabled and timer.is_running
    run_ok(host, "systemctl start pkgsign-maintain.service")
    result = run_ok(host, "systemctl show -p Result --value pkgsign-maintain.service").stdout.strip()
    assert result == "success"


def test_logrotate_rule_is_valid(host):
    assert host.file("/etc/logrotate.d/pkgsign").contains("copytruncate")
    run_ok(host, "logrotate -d /etc/logrotate.d/pkgsign")
