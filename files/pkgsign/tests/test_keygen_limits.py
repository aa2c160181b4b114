"""Issue 14, cost of key generation: a per-token key quota, and a generation that stops when its
client is gone (under `pkgsign-admin serve`). Real gpg, real HTTP on loopback for the latter;
waits are bounded, nothing here asserts a speed."""

import json
import os
import socket
import threading
import time

import pytest

from pkgsign_testlib import Instance, agents_under, run_admin
from pkgsign import _gnupg


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "kq"  # short: agent socket paths under <root>/audit-gnupg must fit 108 bytes
    run_admin("init", str(root), "--algorithm", "ed25519")
    from pkgsign.app import create_app
    from pkgsign.config import load_config
    from pkgsign.tokens import add_token

    config = load_config(str(root / "pkgsign.conf"))
    tokens = {"two": add_token(config.tokens_file, "two", ["keygen", "sign"], ["*"], max_keys=2),
              "admin": add_token(config.tokens_file, "quota-admin", ["keygen", "admin"], ["*"])}
    app = create_app(config)
    app.testing = True
    yield app, {k: {"Authorization": "Bearer " + v} for k, v in tokens.items()}, config
    _gnupg.GnuPG(config.gnupg_home, create=False).kill_agent()


def _gen(client, headers, email):
    return client.post("/gen_key", json={"name_real": "q", "name_email": email}, headers=headers)


def _audit(config):
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_a_token_makes_no_more_keys_than_its_quota(lab):
    """max_keys=2: two keys made, the third refused with 403 (audited, no key, no pending marker);
    asking for an existing key costs nothing; deleting one of its keys frees one."""
    app, headers, config = lab
    client = app.test_client()
    assert _gen(client, headers["two"], "q#a@copr.test").status_code == 201
    assert _gen(client, headers["two"], "q#b@copr.test").status_code == 201
    third = _gen(client, headers["two"], "q#c@copr.test")
    assert third.status_code == 403 and "quota" in third.get_json()["error"], third.get_json()
    line = _audit(config)[-1]
    assert line["operation"] == "gen_key" and line["result"] == "refused" and line["status"] == 403, line
    assert not os.path.exists(os.path.join(config.metadata_dir, "q#c@copr.test.json"))
    assert _gen(client, headers["two"], "q#a@copr.test").status_code == 200  # exists: free
    assert _gen(client, headers["admin"], "q#x@copr.test").status_code == 201  # another token's quota
    deleted = client.delete("/keys/q%23a@copr.test", headers=headers["admin"])
    assert deleted.status_code == 200
    assert _gen(client, headers["two"], "q#c@copr.test").status_code == 201
    assert _gen(client, headers["two"], "q#d@copr.test").status_code == 403


def test_parallel_requests_cannot_both_take_the_last_key(lab):
    app, headers, config = lab
    assert _gen(app.test_client(), headers["two"], "p#first@copr.test").status_code == 201
    statuses = []

    def ask(number):
        statuses.append(_gen(app.test_client(), headers["two"], "p#%d@copr.test" % number).status_code)

    threads = [threading.Thread(target=ask, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(statuses) == [201] + [403] * 5, statuses


def test_max_keys_is_set_and_checked_by_pkgsign_admin(lab):
    _app, _headers, config = lab
    bad = run_admin("token", "add", "--config", str(config.path), "--id", "m", "--scopes", "keygen", "--keys", "*",
                    "--max-keys", "many", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "max keys" in bad.stderr
    run_admin("token", "add", "--config", str(config.path), "--id", "m", "--scopes", "keygen", "--keys", "*",
              "--max-keys", "5")
    run_admin("token", "rotate", "--config", str(config.path), "--id", "m")
    assert json.load(open(config.tokens_file))["tokens"]["m"]["max_keys"] == 5  # a rotation keeps it


def _generations(root):
    return agents_under(os.path.join(root, "keygen"))


def test_a_generation_stops_when_its_client_goes_away(tmp_path):
    """Under `pkgsign-admin serve`: a client asks for an RSA-4096 key and closes its connection
    while the key material is being generated. The generation processes end (bounded wait), no
    key or pending marker is left for that email, the audit log says `cancelled`, and the server
    still answers."""
    root = tmp_path / "kc"
    run_admin("init", str(root), "--algorithm", "rsa4096")
    inst = Instance(root)
    inst.set_option("keygen", "pool_size", "0")
    inst.start()
    try:
        # a client that waits gets its RSA key (the watch for a gone client ends nothing else)
        status, _headers, made = inst.request("POST", "/gen_key", {"name_real": "stays", "name_email": "stays#p@copr.test",
                                                                   "algorithm": "rsa2048"})
        assert status == 201, made
        secret = open(os.path.join(inst.root, "client.token")).read().strip()
        body = json.dumps({"name_real": "gone", "name_email": "gone#p@copr.test", "algorithm": "rsa4096"}).encode()
        port = int(inst.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /gen_key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (secret.encode(), len(body), body))
        deadline = time.monotonic() + 60
        while not _generations(inst.root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _generations(inst.root), "no key generation started"
        sock.close()
        deadline = time.monotonic() + 60
        while _generations(inst.root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _generations(inst.root), "the generation went on after the client left"
        deadline = time.monotonic() + 30
        lines = []
        from pkgsign.config import load_config

        audit_log = load_config(inst.config).audit_log
        while time.monotonic() < deadline:
            lines = [json.loads(line) for line in open(audit_log) if '"gen_key"' in line and "gone#p" in line] \
                if os.path.exists(audit_log) else []
            if lines:
                break
            time.sleep(0.2)
        if not lines:
            inst.stop()
        assert lines and lines[-1]["result"] == "cancelled", (lines, audit_log, os.listdir(inst.root),
                                                              inst.process.stderr.read()[-3000:])
        assert not os.path.exists(os.path.join(inst.root, "keys", "gone#p@copr.test.json"))
        assert not [n for n in os.listdir(os.path.join(inst.root, "pending")) if "gone" in n]
        assert not [n for n in os.listdir(os.path.join(inst.root, "keygen")) if not n.startswith(".")]
        status, _headers, _body = inst.request("GET", "/whoami")
        assert status == 200
    finally:
        inst.stop()
        _gnupg.GnuPG(os.path.join(inst.root, "gnupg"), create=False).kill_agent()
