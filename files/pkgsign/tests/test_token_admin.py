"""pkgsign-admin token add/rotate/revoke: each decision is an audit line, a revoked token stays
revoked, secrets carry at least 128 bits (issue 14)."""

import json
import math
import secrets

import pytest

from pkgsign_testlib import Instance, run_admin
from pkgsign.audit import verify
from pkgsign.tokens import secret_strength_problem


@pytest.fixture
def inst(tmp_path):
    run_admin("init", str(tmp_path / "i"), "--algorithm", "ed25519")
    return Instance(tmp_path / "i")


def _audit_lines(inst):
    try:
        with open(inst.audit_log, "rb") as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []


def test_token_add_rotate_revoke_each_append_an_audit_line(inst):
    strong = "pks_" + secrets.token_urlsafe(24)
    run_admin("token", "add", "--config", inst.config, "--id", "ci", "--scopes", "sign", "--keys", "a#*@copr.test",
              "--rate", "10/60", "--stdin", input=strong + "\n")
    generated = run_admin("token", "rotate", "--config", inst.config, "--id", "ci").stdout.strip()
    run_admin("token", "revoke", "--config", inst.config, "--id", "ci")
    lines = _audit_lines(inst)
    assert [(line["operation"], line["result"], line["token_id"]) for line in lines] == [
        ("token_add", "ok", "ci"), ("token_rotate", "ok", "ci"), ("token_revoke", "ok", "ci")]
    assert lines[0]["scopes"] == ["sign"] and lines[0]["keys"] == ["a#*@copr.test"] and lines[0]["rate"] == "10/60"
    assert all(line["client"] == "pkgsign-admin" and line["user"] for line in lines)
    text = open(inst.audit_log).read()
    assert strong not in text and generated not in text
    assert verify(inst.audit_log) == (3, [])
    # rotate kept the scopes, patterns and limit
    tokens = json.load(open(inst.tokens_file))["tokens"]
    assert tokens["ci"]["scopes"] == ["sign"] and tokens["ci"]["keys"] == ["a#*@copr.test"]
    assert tokens["ci"]["rate"] == "10/60" and tokens["ci"]["revoked"]


def test_rotating_a_revoked_token_is_refused_and_audited(inst):
    run_admin("token", "add", "--config", inst.config, "--id", "gone", "--scopes", "sign,admin", "--keys", "*")
    run_admin("token", "revoke", "--config", inst.config, "--id", "gone")
    before = open(inst.tokens_file, "rb").read()
    for extra, stdin in (((), None), (("--stdin",), "pks_" + secrets.token_urlsafe(24) + "\n")):
        proc = run_admin("token", "rotate", "--config", inst.config, "--id", "gone", *extra, input=stdin, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "revoked" in proc.stderr and proc.stdout == ""
        assert open(inst.tokens_file, "rb").read() == before  # still revoked, byte for byte
    last = _audit_lines(inst)[-1]
    assert (last["operation"], last["result"], last["token_id"]) == ("token_rotate", "refused", "gone")
    assert "revoked" in last["reason"]
    proc = run_admin("token", "rotate", "--config", inst.config, "--id", "never-was", check=False)
    assert proc.returncode == 2 and "no token" in proc.stderr


def test_token_add_never_brings_a_revoked_secret_back(inst):
    """`token add` (with --replace too) refuses the secret of a revoked token, under its id or
    another: a revoked secret may have leaked (issue 14, "a revoked token stays revoked")."""
    old = "pks_" + secrets.token_urlsafe(24)
    run_admin("token", "add", "--config", inst.config, "--id", "ci", "--scopes", "sign", "--keys", "*",
              "--stdin", input=old + "\n")
    run_admin("token", "revoke", "--config", inst.config, "--id", "ci")
    before = open(inst.tokens_file, "rb").read()
    for token_id, extra in (("ci", ()), ("ci", ("--replace",)), ("other", ())):
        proc = run_admin("token", "add", "--config", inst.config, "--id", token_id, "--scopes", "sign", "--keys", "*",
                         "--stdin", *extra, input=old + "\n", check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "revoked secret stays revoked" in proc.stderr and old not in proc.stderr + proc.stdout
        assert open(inst.tokens_file, "rb").read() == before
    fresh = "pks_" + secrets.token_urlsafe(24)  # a new secret under the old id is a new token
    run_admin("token", "add", "--config", inst.config, "--id", "ci", "--scopes", "sign", "--keys", "*",
              "--stdin", input=fresh + "\n")
    assert not json.load(open(inst.tokens_file))["tokens"]["ci"].get("revoked")


@pytest.mark.parametrize("weak", ["0123456789abcdef", "pks_rotated-secret-" + "x" * 20, "a" * 200,
                                  secrets.token_hex(8), "correct-horse-battery"])
def test_weak_operator_secrets_are_refused(inst, weak):
    before = open(inst.tokens_file, "rb").read()
    for command in (("add", "--scopes", "sign", "--keys", "*"), ("rotate",)):
        proc = run_admin("token", command[0], "--config", inst.config, "--id", "client", *command[1:], "--replace"
                         if command[0] == "add" else "--stdin", *(("--stdin",) if command[0] == "add" else ()),
                         input=weak + "\n", check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "too weak" in proc.stderr and "bits" in proc.stderr and "distinct characters" in proc.stderr
        assert weak not in proc.stderr
        assert open(inst.tokens_file, "rb").read() == before
    assert all(weak not in json.dumps(line) for line in _audit_lines(inst))


def test_generated_and_strong_secrets_pass(inst):
    proc = run_admin("token", "add", "--config", inst.config, "--id", "gen", "--scopes", "sign", "--keys", "*")
    secret = proc.stdout.strip()
    body = secret[len("pks_"):]
    # secrets.token_urlsafe(32): 43 base64url characters, 256 random bits
    assert secret.startswith("pks_") and len(body) * math.log2(64) >= 256 - 6
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert secret_strength_problem(secret) is None
    strong = secrets.token_urlsafe(30)
    run_admin("token", "add", "--config", inst.config, "--id", "mine", "--scopes", "sign", "--keys", "*", "--stdin",
              input=strong + "\n")
