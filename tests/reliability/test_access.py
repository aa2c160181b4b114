# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Access control over real HTTP: every token kind x every operation x every key, revocation
and rotation while the server runs, and the audit chain against every single-line tampering."""

import json
import os
import secrets
import shutil

import pytest

from pkgsign_testlib import run_admin
from pkgsign.audit import verify

KEY_A = "a#one@copr.test"    # alias "modern" points at it
KEY_B = "b#two@copr.test"
NEW_A = "a#new@copr.test"    # made by /gen_key in the matrix
NEW_B = "b#new@copr.test"
# The hash state of empty data (SHA-256's initial value): what POST /sign takes per file.
EMPTY_STATE = {"chaining_value": "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19",
               "byte_count": 0, "tail": ""}


def sign_body(key):
    return {"key": key, "states": [EMPTY_STATE]}


# token id -> (scopes, key patterns); "fpr-b" gets KEY_B's fingerprint as its pattern.
TOKENS = {
    "admin": (["sign", "keygen", "admin"], ["*"]),
    "sign-a": (["sign"], ["a#*@copr.test"]),
    "keygen-a": (["keygen"], ["a#*@copr.test"]),
    "alias-modern": (["sign"], ["modern"]),
    "fpr-b": (["sign"], None),
    "admin-a": (["admin"], ["a#*"]),
}


def expected(token, operation, key):
    """The status the README promises for this token, operation and key."""
    if token in ("none", "garbage", "revoked"):
        return 401
    scopes, patterns = TOKENS[token]
    needed = {"gen_key": "keygen", "delete": "admin", "sign": "sign"}.get(operation)
    if needed and needed not in scopes:
        return 403
    names = {KEY_A: {KEY_A, "modern"}, KEY_B: {KEY_B, "fpr"}, NEW_A: {NEW_A}, NEW_B: {NEW_B}}[key]
    if token == "admin":
        allowed = True
    elif token in ("sign-a", "keygen-a"):
        allowed = any(name.startswith("a#") for name in names)
    elif token == "alias-modern":
        allowed = "modern" in names
    elif token == "fpr-b":
        allowed = "fpr" in names
    else:  # admin-a
        allowed = any(name.startswith("a#") for name in names)
    if not allowed:
        return 403
    if operation == "gen_key":
        return (201, 200)
    if operation == "delete":
        return 200
    return 200


@pytest.fixture(scope="module")
def served(new_instance_module):
    inst = new_instance_module
    inst.set_option("aliases", "modern", KEY_A)
    inst.add_token("boot", ["keygen"], ["*"])
    inst.start()
    fingerprints = {}
    for email in (KEY_A, KEY_B):
        status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "acl", "name_email": email}, token="boot")
        assert status == 201, body
        fingerprints[email] = body["fingerprint"]
    for token_id, (scopes, patterns) in TOKENS.items():
        inst.add_token(token_id, scopes, patterns or [fingerprints[KEY_B]])
    inst.add_token("revoked", ["sign", "keygen", "admin"], ["*"])
    run_admin("token", "revoke", "--config", inst.config, "--id", "revoked")
    inst.tokens["garbage"] = "pks_not-a-token-of-this-server-000000"
    return inst, fingerprints


def _call(inst, token, operation, key):
    token_arg = None if token == "none" else token
    quoted = key.replace("#", "%23")
    if operation == "gen_key":
        return inst.request("POST", "/gen_key", {"name_real": "acl", "name_email": key}, token=token_arg)
    if operation == "pubkey":
        return inst.request("GET", "/pubkey/" + quoted, token=token_arg)
    if operation == "info":
        return inst.request("GET", "/keys/" + quoted, token=token_arg)
    if operation == "delete":
        return inst.request("DELETE", "/keys/" + quoted, token=token_arg)
    return inst.request("POST", "/sign", sign_body(key), token=token_arg)


def test_access_matrix(served):
    inst, fingerprints = served
    tokens = list(TOKENS) + ["none", "garbage", "revoked"]
    checked, mismatches = 0, []
    for token in tokens:
        for operation in ("gen_key", "pubkey", "info", "sign"):
            keys = (NEW_A, NEW_B) if operation == "gen_key" else (KEY_A, KEY_B)
            for key in keys:
                status, headers, body = _call(inst, token, operation, key)
                want = expected(token, operation, key)
                checked += 1
                if status not in (want if isinstance(want, tuple) else (want,)):
                    mismatches.append((token, operation, key, status, want, body))
                if status == 401:
                    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
                if status in (401, 403):
                    assert isinstance(body, dict) and body["error"]
    # Keys by fingerprint and alias obey the same patterns.
    for token, key, want in (("fpr-b", fingerprints[KEY_B], 200), ("fpr-b", fingerprints[KEY_A], 403),
                             ("alias-modern", "modern", 200), ("alias-modern", fingerprints[KEY_A], 200),
                             ("alias-modern", fingerprints[KEY_B], 403), ("sign-a", "modern", 200)):
        status, _ignored, body = inst.request("POST", "/sign", sign_body(key), token=token)
        checked += 1
        if status != want:
            mismatches.append((token, "sign", key, status, want, body))
    # Unknown keys: 404 only for a token that could use such a name, else 403 (no existence oracle).
    for token, key, want in (("sign-a", "a#missing@copr.test", 404), ("sign-a", "b#missing@copr.test", 403),
                             ("sign-a", KEY_B, 403), ("admin", "b#missing@copr.test", 404),
                             ("fpr-b", "c#missing@copr.test", 403)):
        status, _ignored, body = inst.request("POST", "/sign", sign_body(key), token=token)
        checked += 1
        if status != want:
            mismatches.append((token, "sign", key, status, want, body))
    print("access matrix: %d combinations checked" % checked)
    assert mismatches == []


def test_delete_needs_admin_scope_and_pattern(served):
    inst, _ignored = served
    for email in ("a#del@copr.test", "b#del@copr.test"):
        assert inst.request("POST", "/gen_key", {"name_real": "d", "name_email": email}, token="boot")[0] == 201
    for token, key, want in (("sign-a", "a#del@copr.test", 403), ("keygen-a", "a#del@copr.test", 403),
                             ("admin-a", "b#del@copr.test", 403), ("none", "a#del@copr.test", 401),
                             ("revoked", "a#del@copr.test", 401), ("admin-a", "a#del@copr.test", 200),
                             ("admin-a", "a#del@copr.test", 404), ("admin", "b#del@copr.test", 200)):
        status, _ignored, body = _call(inst, token, "delete", key)
        assert status == want, (token, key, status, body)


def test_rate_limit_answers_429_with_retry_after(served):
    inst, _ignored = served
    inst.add_token("slow", ["sign"], ["*"], rate="3/3600")
    answers = [inst.request("POST", "/sign", sign_body(KEY_A), token="slow") for _ignored in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3][1]["Retry-After"]) > 0
    # Another token is not affected.
    assert inst.request("POST", "/sign", sign_body(KEY_A), token="admin")[0] == 200


def test_revoke_and_rotate_while_running(served):
    inst, _ignored = served
    inst.add_token("short-lived", ["sign"], ["*"])
    assert inst.request("POST", "/sign", sign_body(KEY_A), token="short-lived")[0] == 200
    run_admin("token", "revoke", "--config", inst.config, "--id", "short-lived")
    status, _ignored, body = inst.request("POST", "/sign", sign_body(KEY_A), token="short-lived")
    assert status == 401, body  # the very next request, no restart
    inst.add_token("rotating", ["sign"], ["*"])
    old = inst.tokens["rotating"]
    new = "pks_rotated-" + secrets.token_urlsafe(24)
    run_admin("token", "rotate", "--config", inst.config, "--id", "rotating", "--stdin", input=new + "\n")
    inst.tokens["rotating"] = old
    assert inst.request("POST", "/sign", sign_body(KEY_A), token="rotating")[0] == 401
    inst.tokens["rotating"] = new
    assert inst.request("POST", "/sign", sign_body(KEY_A), token="rotating")[0] == 200


def test_audit_chain_detects_every_single_line_tampering(served, tmp_path):
    inst, _ignored = served
    for number in range(3):
        state = dict(EMPTY_STATE, byte_count=64 + number, tail="00" * number)
        assert inst.request("POST", "/sign", {"key": KEY_B, "states": [state]}, token="admin")[0] == 200
    result = run_admin("audit", "verify", "--config", inst.config, check=False)
    assert result.returncode == 0, result.stdout
    with open(inst.audit_log, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    with open(inst.audit_log + ".head", "rb") as handle:
        head = handle.read()
    assert len(lines) >= 10
    operations = {json.loads(line)["operation"] for line in lines}
    assert {"gen_key", "sign"} <= operations
    assert any(json.loads(line)["result"] == "denied" for line in lines)

    def detected(variant):
        path = str(tmp_path / "audit.log")
        with open(path, "wb") as handle:
            handle.write(b"".join(variant))
        with open(path + ".head", "wb") as handle:
            handle.write(head)
        return bool(verify(path)[1])

    tried = 0
    for index, line in enumerate(lines):
        record = json.loads(line)
        altered = dict(record, result="ok" if record.get("result") != "ok" else "denied")
        edited = json.dumps(altered, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        variants = [lines[:index] + [edited] + lines[index + 1:],          # altered
                    lines[:index] + lines[index + 1:]]                      # deleted
        if index + 1 < len(lines):
            variants.append(lines[:index] + [lines[index + 1], line] + lines[index + 2:])  # reordered
        for variant in variants:
            tried += 1
            assert detected(variant), "undetected tampering at line %d" % (index + 1)
    assert not detected(lines)  # the untouched copy verifies
    print("audit tampering: %d variants of %d lines, all detected" % (tried, len(lines)))
    # The CLI says which line broke and exits 1.
    backup = inst.audit_log + ".orig"
    shutil.copy(inst.audit_log, backup)
    try:
        with open(inst.audit_log, "wb") as handle:
            handle.write(b"".join(lines[:2] + lines[3:]))
        result = run_admin("audit", "verify", "--config", inst.config, check=False)
        assert result.returncode == 1 and "line 3" in result.stdout, result.stdout
    finally:
        os.replace(backup, inst.audit_log)
