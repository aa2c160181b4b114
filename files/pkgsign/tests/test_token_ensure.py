"""pkgsign-admin token ensure / revoke --json (issue 16): configuration management states the token
it wants and gets an answer (created, updated, unchanged), never reads tokens.json itself. The file
is written only when something differs, patterns the token has keep their binding, a revoked token
stays revoked, and no secret or hash reaches the output. Real pkgsign-admin, real gpg; the WSGI
application through Flask's test client for the signing checks."""

import json
import os
import secrets

import pytest

from pkgsign_testlib import run_admin
from pkgsign import _gnupg
from pkgsign.hashstate import Hasher
from pkgsign.tokens import hash_secret

STATE = Hasher("sha256").update(b"ensured data").state().to_json()


def new_secret():
    return "pks_" + secrets.token_urlsafe(32)


class Inst:
    def __init__(self, root):
        self.root = root
        self.conf = str(root / "pkgsign.conf")
        self.tokens_file = str(root / "tokens.json")
        self.audit_log = str(root / "audit.log")

    def ensure(self, token_id, secret, scopes="sign", keys="*", *extra, check=True):
        proc = run_admin("token", "ensure", "--config", self.conf, "--id", token_id, "--scopes", scopes, "--keys", keys,
                         "--stdin", "--json", *extra, input=secret + "\n", check=False)
        assert secret not in proc.stdout + proc.stderr and hash_secret(secret) not in proc.stdout + proc.stderr
        if check:
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.count("\n") == 1
            return json.loads(proc.stdout)
        return proc

    def revoke(self, token_id, *extra, check=True):
        proc = run_admin("token", "revoke", "--config", self.conf, "--id", token_id, "--json", *extra, check=False)
        if check:
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)
        return proc

    def snapshot(self):
        """The tokens file's bytes and mtime: an unchanged answer must leave both as they were."""
        with open(self.tokens_file, "rb") as handle:
            return handle.read(), os.stat(self.tokens_file).st_mtime_ns

    def entry(self, token_id):
        with open(self.tokens_file, encoding="utf-8") as handle:
            return json.load(handle)["tokens"][token_id]

    def audit(self):
        try:
            with open(self.audit_log, encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:  # nothing audited yet
            return []

    def app_client(self):
        from pkgsign.app import create_app
        from pkgsign.config import load_config

        app = create_app(load_config(self.conf))
        app.testing = True
        return app.test_client()


@pytest.fixture
def inst(tmp_path):
    root = tmp_path / "te"  # short: agent socket paths under <root>/audit-gnupg must fit 108 bytes
    run_admin("init", str(root), "--algorithm", "ed25519")
    yield Inst(root)
    from pkgsign.config import load_config

    _gnupg.GnuPG(load_config(str(root / "pkgsign.conf")).gnupg_home, create=False).kill_agent()


def test_created_unchanged_updated_then_refused_once_revoked(inst):
    secret = new_secret()
    answer = inst.ensure("ci", secret, "sign", "a#*@copr.test", "--rate", "10/60")
    assert (answer["id"], answer["changed"], answer["action"]) == ("ci", True, "created")
    assert answer["changes"] == ["keys", "rate", "scopes", "secret"]
    audit_count = len(inst.audit())

    before = inst.snapshot()
    answer = inst.ensure("ci", secret, "sign", "a#*@copr.test", "--rate", "10/60")
    assert (answer["changed"], answer["action"], answer["changes"]) == (False, "unchanged", [])
    assert inst.snapshot() == before  # not rewritten: same bytes, same mtime
    assert len(inst.audit()) == audit_count  # nothing written, nothing to audit

    answer = inst.ensure("ci", secret, "sign,keygen", "a#*@copr.test", "--rate", "10/60")
    assert (answer["changed"], answer["action"], answer["changes"]) == (True, "updated", ["scopes"])
    entry = inst.entry("ci")
    assert entry["scopes"] == ["keygen", "sign"] and entry["sha256"] == hash_secret(secret)
    # dropping the rate is a change too: the configuration is the whole token
    answer = inst.ensure("ci", secret, "sign,keygen", "a#*@copr.test")
    assert answer["changes"] == ["rate"] and "rate" not in inst.entry("ci")

    assert inst.revoke("ci") == {"id": "ci", "changed": True, "action": "revoked", "check": False}
    revoked = inst.snapshot()
    assert inst.revoke("ci") == {"id": "ci", "changed": False, "action": "unchanged", "check": False}
    assert inst.snapshot() == revoked  # revoked once, not prefixed again
    for extra, secret_given, why in (((), secret, "revoked and stays revoked"),
                                     ((), new_secret(), "revoked and stays revoked"),
                                     (("--replace-revoked",), secret, "revoked secret stays revoked")):
        proc = inst.ensure("ci", secret_given, "sign,keygen", "a#*@copr.test", *extra, check=False)
        assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
        assert why in proc.stderr
        assert inst.snapshot() == revoked
    lines = inst.audit()
    assert [(line["operation"], line["result"]) for line in lines[audit_count:]] == [
        ("token_ensure", "ok"), ("token_ensure", "ok"), ("token_revoke", "ok"),
        ("token_ensure", "refused"), ("token_ensure", "refused"), ("token_ensure", "refused")]
    assert lines[audit_count]["action"] == "updated" and lines[audit_count]["changes"] == ["scopes"]
    assert all(secret not in json.dumps(line) and hash_secret(secret) not in json.dumps(line) for line in lines)

    # asked for explicitly, with a new secret: a new token under that id
    fresh = new_secret()
    answer = inst.ensure("ci", fresh, "sign", "a#*@copr.test", "--replace-revoked")
    assert (answer["changed"], answer["action"]) == (True, "created")
    assert "revoked" not in inst.entry("ci") and inst.entry("ci")["sha256"] == hash_secret(fresh)
    assert inst.ensure("ci", fresh, "sign", "a#*@copr.test", "--replace-revoked")["action"] == "unchanged"


def test_check_mode_answers_the_same_and_writes_nothing(inst):
    secret = new_secret()
    before = inst.snapshot()
    audit_count = len(inst.audit())
    answer = inst.ensure("ci", secret, "sign", "*", "--check")
    assert (answer["changed"], answer["action"], answer["check"]) == (True, "created", True)
    assert inst.snapshot() == before and len(inst.audit()) == audit_count
    inst.ensure("ci", secret, "sign", "*")
    before = inst.snapshot()
    assert inst.ensure("ci", new_secret(), "sign", "*", "--check")["changes"] == ["secret"]
    assert inst.ensure("ci", secret, "sign", "*", "--check")["action"] == "unchanged"
    assert inst.revoke("ci", "--check") == {"id": "ci", "changed": True, "action": "revoked", "check": True}
    assert inst.snapshot() == before and "revoked" not in inst.entry("ci")


def test_revoke_of_an_unknown_id(inst):
    before = inst.snapshot()
    proc = inst.revoke("never-was", check=False)
    assert proc.returncode == 2 and "no token 'never-was'" in proc.stderr and proc.stderr.count("\n") == 1
    assert inst.revoke("never-was", "--missing-ok") == {"id": "never-was", "changed": False, "action": "missing",
                                                        "check": False}
    assert inst.snapshot() == before


def test_refusals_are_one_line_and_write_nothing(inst):
    secret, revoked = new_secret(), new_secret()
    inst.ensure("gone", revoked, "sign", "*")
    inst.revoke("gone")
    inst.ensure("ci", secret, "sign", "*")
    before = inst.snapshot()
    for token_id, secret_given, scopes, extra, why in (
            ("other", secret, "sign", (), "already used by token 'ci'"),  # one secret, one token
            ("other", revoked, "sign", (), "revoked with token 'gone'"),  # a revoked secret under any id
            ("ci", "a" * 60, "sign", (), "too weak"),
            ("ci", secret, "sign,root", (), "unknown scope"),
            ("ci", secret, "sign", ("--rate", "fast"), "rate"),
            ("ci", secret, "sign", ("--client-cert-sha256", "abc"), "64 hex digits")):
        proc = inst.ensure(token_id, secret_given, scopes, "*", *extra, check=False)
        assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
        assert why in proc.stderr
        assert inst.snapshot() == before
    proc = run_admin("token", "ensure", "--config", inst.conf, "--id", "ci", "--scopes", "sign", "--keys", "*",
                     check=False)
    assert proc.returncode == 2 and "--stdin" in proc.stderr


def test_binding_is_compared_normalized(inst):
    secret, fingerprint = new_secret(), secrets.token_hex(32)
    colons = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    assert inst.ensure("ci", secret, "sign", "*", "--client-cert-sha256", colons)["action"] == "created"
    assert inst.ensure("ci", secret, "sign", "*", "--client-cert-sha256", fingerprint)["action"] == "unchanged"
    answer = inst.ensure("ci", secret, "sign", "*")
    assert answer["changes"] == ["client_cert_sha256"] and "client_cert_sha256" not in inst.entry("ci")


def _gen(client, email, headers):
    response = client.post("/gen_key", json={"name_real": "n", "name_email": email}, headers=headers)
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()["fingerprint"]


def test_patterns_the_token_has_are_never_re_pinned_or_widened(inst):
    """A pinned pattern keeps the keys it was bound to when the token was made: re-running ensure,
    and changing anything else (scopes, another pattern), binds no key made since."""
    operator = new_secret()
    inst.ensure("operator", operator, "sign,keygen,admin", "future:*")
    client = inst.app_client()
    admin = {"Authorization": "Bearer " + operator}
    first = _gen(client, "one#p@copr.test", admin)

    secret = new_secret()
    answer = inst.ensure("ci", secret, "sign", "*#p@copr.test")
    assert answer["pinned"] == {"*#p@copr.test": 1}
    assert inst.entry("ci")["pinned"] == {"*#p@copr.test": [first]}
    second = _gen(client, "two#p@copr.test", admin)  # matches the pattern, made later

    before = inst.snapshot()
    assert inst.ensure("ci", secret, "sign", "*#p@copr.test")["action"] == "unchanged"
    assert inst.snapshot() == before
    assert inst.ensure("ci", secret, "sign,keygen", "*#p@copr.test")["pinned"] == {}
    answer = inst.ensure("ci", secret, "sign,keygen", "*#p@copr.test,*#q@copr.test")
    assert answer["changes"] == ["keys"] and answer["pinned"] == {"*#q@copr.test": 0}
    assert inst.entry("ci")["pinned"] == {"*#p@copr.test": [first], "*#q@copr.test": []}

    ci = {"Authorization": "Bearer " + secret}
    client = inst.app_client()
    assert client.post("/sign", json={"key": "one#p@copr.test", "states": [STATE]}, headers=ci).status_code == 200
    assert client.post("/sign", json={"key": "two#p@copr.test", "states": [STATE]}, headers=ci).status_code == 403
    assert second not in json.dumps(inst.entry("ci"))


def test_granted_keys_the_new_patterns_still_name_are_kept(inst):
    """A key granted to the token (here: one it made through /gen_key) survives a change of the
    patterns that still names it, and is dropped when no pattern names it any more."""
    secret = new_secret()
    inst.ensure("frontend", secret, "sign,keygen", "*#*@copr.test,*#*@other.test")
    client = inst.app_client()
    made = _gen(client, "mine#p@copr.test", {"Authorization": "Bearer " + secret})
    assert made in inst.entry("frontend")["granted"]
    inst.ensure("frontend", secret, "sign,keygen", "*#*@copr.test")
    assert made in inst.entry("frontend")["granted"]
    inst.ensure("frontend", secret, "sign,keygen", "*#*@other.test")
    assert inst.entry("frontend")["granted"] == {}
