"""Red team, issue 16's declarative token command (`pkgsign-admin token ensure ... --json`, which
the signer role runs on every converge): can a re-run, a check run or a changed description bring
a revoked secret back, widen a pattern bound to a key, keep a replaced secret working, leak the
secret or its hash, or write while it answers "unchanged"?

Real pkgsign-admin processes on a real instance; what a token may do is asked of the service
itself (Flask's test client on the same state, real gpg). Skips while this pkgsign-admin has no
`token ensure` (role-tokens not merged)."""

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from pkgsign_testlib import PYTHON, child_env, in_process_lab, run_admin, state_json
from pkgsign.tokens import TokenStore, hash_secret, new_secret

HAS_ENSURE = run_admin("token", "ensure", "--help", check=False).returncode == 0
needs_ensure = pytest.mark.skipif(not HAS_ENSURE, reason="no `pkgsign-admin token ensure` (role-tokens not merged)")

PROJECT = "proj#p@copr.test"
OTHER = "other#p@copr.test"


@pytest.fixture
def lab(tmp_path):
    yield from in_process_lab(tmp_path / "e", {"admin": ("admin", ["sign", "keygen", "admin"], ["*"])})


def ensure(config, token_id, secret, scopes="sign", keys=PROJECT, *extra):
    """`token ensure --json` with the secret on stdin; (exit status, answer dict or None, stdout+stderr)."""
    proc = run_admin("token", "ensure", "--config", config.path, "--id", token_id, "--scopes", scopes, "--keys", keys,
                     "--stdin", "--json", *extra, input=secret + "\n", check=False)
    answer = None
    if proc.returncode == 0:
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout
        answer = json.loads(lines[0])
    else:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.returncode, answer, proc.stdout + proc.stderr


def snapshot(config):
    """What a write would change: the tokens file's bytes and mtime, the audit log's length."""
    info = os.stat(config.tokens_file)
    with open(config.tokens_file, "rb") as handle:
        data = handle.read()
    return data, info.st_mtime_ns, info.st_ino, os.path.getsize(config.audit_log) if os.path.exists(config.audit_log) else 0


def works(config, secret):
    return TokenStore(config.tokens_file).authenticate(secret) is not None


def make_key(client, headers, email):
    answer = client.post("/gen_key", json={"name_real": "x", "name_email": email}, headers=headers["admin"])
    assert answer.status_code in (200, 201), answer.get_json()
    return answer.get_json()["fingerprint"]


def signs(client, secret, email):
    answer = client.post("/sign", json={"key": email, "states": [state_json(b"d")]},
                         headers={"Authorization": "Bearer " + secret})
    return answer.status_code, answer.get_json()


@needs_ensure
def test_a_revoked_secret_never_works_again_whatever_ensure_is_asked(lab):
    """Revoked, then ensured again under its id (with or without ``--replace-revoked``) or under
    another id: the secret stays dead; a new secret makes a new token under the id."""
    _client, _headers, config, _gpg = lab
    first, second = new_secret(), new_secret()
    assert ensure(config, "ci", first)[1]["action"] == "created"
    run_admin("token", "revoke", "--config", config.path, "--id", "ci")
    for extra in ((), ("--replace-revoked",)):
        status, _answer, output = ensure(config, "ci", first, "sign", PROJECT, *extra)
        assert status != 0 and not works(config, first), (extra, output)
    status, _answer, output = ensure(config, "ci-again", first)
    assert status != 0 and not works(config, first), output
    assert ensure(config, "ci", second, "sign", PROJECT, "--replace-revoked")[1]["action"] == "created"
    assert works(config, second) and not works(config, first)


@needs_ensure
def test_a_secret_revoked_two_generations_ago_stays_revoked(lab):
    """The id revoked twice: neither earlier secret comes back under it or under another id."""
    _client, _headers, config, _gpg = lab
    first, second = new_secret(), new_secret()
    ensure(config, "ci", first)
    run_admin("token", "revoke", "--config", config.path, "--id", "ci")
    assert ensure(config, "ci", second, "sign", PROJECT, "--replace-revoked")[1]["action"] == "created"
    run_admin("token", "revoke", "--config", config.path, "--id", "ci")
    for secret in (first, second):
        for token_id in ("ci", "ci-third"):
            status, _answer, output = ensure(config, token_id, secret, "sign", PROJECT, "--replace-revoked")
            assert not works(config, secret), ("revoked secret works again", token_id, status, output)


def test_token_add_does_not_bring_a_revoked_secret_back(lab):
    """The older door: `token add` under a revoked id with the revoked secret (what `token ensure`
    refuses, and what issue 14's "a revoked token stays revoked" asks)."""
    _client, _headers, config, _gpg = lab
    secret = new_secret()
    run_admin("token", "add", "--config", config.path, "--id", "old", "--scopes", "sign", "--keys", PROJECT, "--stdin",
              input=secret + "\n")
    run_admin("token", "revoke", "--config", config.path, "--id", "old")
    for extra in ((), ("--replace",)):
        run_admin("token", "add", "--config", config.path, "--id", "old", "--scopes", "sign", "--keys", PROJECT,
                  "--stdin", *extra, input=secret + "\n", check=False)
        assert not works(config, secret), ("token add %s revived a revoked secret" % " ".join(extra))


def test_token_add_does_not_bring_back_a_secret_revoked_two_generations_ago(lab):
    _client, _headers, config, _gpg = lab
    first, second = new_secret(), new_secret()
    for secret in (first, second):
        run_admin("token", "add", "--config", config.path, "--id", "old", "--scopes", "sign", "--keys", PROJECT,
                  "--stdin", input=secret + "\n")
        run_admin("token", "revoke", "--config", config.path, "--id", "old")
    for token_id in ("old", "other"):
        for secret in (first, second):
            run_admin("token", "add", "--config", config.path, "--id", token_id, "--scopes", "sign", "--keys", PROJECT,
                      "--stdin", input=secret + "\n", check=False)
            assert not works(config, secret), ("revived", token_id)


@needs_ensure
def test_unchanged_and_check_runs_write_nothing(lab):
    _client, _headers, config, _gpg = lab
    secret = new_secret()
    before = snapshot(config)
    status, answer, output = ensure(config, "ci", secret, "sign", PROJECT, "--check")
    assert status == 0 and answer["changed"] is True and answer["action"] == "created", output
    assert snapshot(config) == before and not works(config, secret)
    assert ensure(config, "ci", secret)[1]["action"] == "created"
    written = snapshot(config)
    for args in ((secret,), (secret, "sign,keygen", PROJECT, "--check"), (new_secret(), "sign", PROJECT, "--check"),
                 (secret, "sign", PROJECT + "," + OTHER, "--check"), (secret,)):
        status, answer, output = ensure(config, "ci", *args)
        assert status == 0, output
        assert answer["changed"] is (args != (secret,)), (args, answer)
        assert snapshot(config) == written, ("written", args, answer)
    run_admin("token", "revoke", "--config", config.path, "--id", "ci")
    revoked = snapshot(config)
    fresh = new_secret()
    status, answer, output = ensure(config, "ci", fresh, "sign", PROJECT, "--replace-revoked", "--check")
    assert snapshot(config) == revoked and not works(config, fresh), output
    for args in (("--check",), ("--json",)):
        proc = run_admin("token", "revoke", "--config", config.path, "--id", "ci", *args, check=False)
        assert proc.returncode == 0 and snapshot(config)[:3] == revoked[:3], proc.stdout + proc.stderr


@needs_ensure
def test_a_replaced_secret_stops_working_at_once(lab):
    client, headers, config, _gpg = lab
    make_key(client, headers, PROJECT)
    old, new = new_secret(), new_secret()
    ensure(config, "ci", old)
    assert signs(client, old, PROJECT)[0] == 200
    status, answer, output = ensure(config, "ci", new)
    assert status == 0 and answer["action"] == "updated" and answer["changes"] == ["secret"], output
    assert signs(client, old, PROJECT)[0] == 401
    assert signs(client, new, PROJECT)[0] == 200


@needs_ensure
def test_re_running_ensure_never_rebinds_a_pattern_to_a_key_made_since(lab):
    """The pattern names the project's key F1; the key is deleted and made again (F2, say by
    whoever holds a keygen token for the name). No re-run of the same description, nor a change of
    scopes, rate or order, binds the token to F2: that takes `token grant`."""
    client, headers, config, _gpg = lab
    secret = new_secret()
    make_key(client, headers, PROJECT)
    make_key(client, headers, OTHER)
    assert ensure(config, "ci", secret)[1]["action"] == "created"
    assert signs(client, secret, PROJECT)[0] == 200
    assert client.delete("/keys/" + PROJECT.replace("#", "%23"), headers=headers["admin"]).status_code == 200
    replaced = make_key(client, headers, PROJECT)
    runs = [("sign", PROJECT, ()), ("sign,keygen", PROJECT, ()), ("sign", PROJECT, ("--rate", "10/1")),
            ("sign", PROJECT.upper(), ()), ("sign", OTHER + "," + PROJECT, ()), ("sign", PROJECT, ())]
    for scopes, keys, extra in runs:
        status, answer, output = ensure(config, "ci", secret, scopes, keys, *extra)
        assert status == 0, output
        status, body = signs(client, secret, PROJECT)
        assert status == 403, ("re-bound to the new key", scopes, keys, extra, body)
    assert ensure(config, "ci", secret, "sign", PROJECT)[1]["changed"] is False
    entry = json.load(open(config.tokens_file))["tokens"]["ci"]
    assert replaced not in json.dumps(entry), entry


@needs_ensure
def test_a_token_may_not_take_another_token_s_secret(lab):
    """Another token's secret under a new id (a copy-paste in the inventory, or someone who knows
    the admin's secret and may edit a token description): refused, and the two never share it."""
    _client, headers, config, _gpg = lab
    admin_secret = headers["admin"]["Authorization"].split()[1]
    status, _answer, output = ensure(config, "ci", admin_secret)
    assert status != 0, output
    token = TokenStore(config.tokens_file).authenticate(admin_secret)
    assert token is not None and token.id == "admin"


@needs_ensure
def test_no_secret_nor_its_hash_in_answers_or_audit(lab):
    _client, _headers, config, _gpg = lab
    secrets = [new_secret() for _number in range(3)]
    outputs = [ensure(config, "ci", secrets[0])[2], ensure(config, "ci", secrets[0])[2],
               ensure(config, "ci", secrets[1], "sign", PROJECT, "--check")[2], ensure(config, "ci", secrets[1])[2],
               ensure(config, "admin", secrets[1])[2]]
    run_admin("token", "revoke", "--config", config.path, "--id", "ci")
    outputs.append(ensure(config, "ci", secrets[1])[2])
    outputs.append(ensure(config, "ci", secrets[1], "sign", PROJECT, "--replace-revoked")[2])
    outputs.append(ensure(config, "ci", secrets[2], "sign", PROJECT, "--replace-revoked")[2])
    outputs.append(ensure(config, "ci", "short")[2])
    with open(config.audit_log, encoding="utf-8") as handle:
        audit = handle.read()
    for secret in secrets + ["short"]:
        for needle in (secret, hash_secret(secret), hash_secret(secret)[:16]):
            assert needle not in audit
            for output in outputs:
                assert needle not in output, output


@needs_ensure
def test_a_build_user_on_the_signer_host_cannot_ensure_a_token(tmp_path):
    """The instance as a service account makes it (state 0700, tokens 0600), in a directory other
    users can reach: a build user (nobody) running `token ensure` changes nothing and learns nothing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="pkgsign-ensure-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        run_admin("init", os.path.join(base, "i"), "--algorithm", "ed25519")
        config_path = os.path.join(base, "pkgsign.conf")  # readable by all, as /etc/pkgsign's may be
        shutil.copy(os.path.join(base, "i", "pkgsign.conf"), config_path)
        os.chmod(config_path, 0o644)
        tokens = os.path.join(base, "i", "tokens.json")
        with open(tokens, "rb") as handle:
            before = handle.read()
        secret = new_secret()
        proc = subprocess.run([PYTHON, "-m", "pkgsign.admin", "token", "ensure", "--config", config_path, "--id", "evil",
                               "--scopes", "sign,keygen,admin", "--keys", "*", "--stdin", "--json"],
                              input=secret + "\n", env=child_env(HOME=base), user=nobody.pw_uid, group=nobody.pw_gid,
                              extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False)
        assert proc.returncode != 0, proc.stdout
        with open(tokens, "rb") as handle:
            assert handle.read() == before
        assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    finally:
        shutil.rmtree(base, ignore_errors=True)
