"""Red team, key selection: with a `sign` token, try to make the service sign with a part of a key
that must not sign (a certify-only primary, a signing subkey whose secret is gone), with a key
just deleted, or with a key outside the token's patterns under another of its names. Every
attempt must be refused with a 4xx (never a 500, never a signature) and leave an audit line.

Real gpg and gpg-agent in a private instance; the WSGI application through Flask's test client
(the same code mod_wsgi runs)."""

import pytest

from pkgsign_testlib import audit_lines, in_process_lab, run_admin
from pkgsign import _gnupg
from pkgsign.hashstate import Hasher

STATE = Hasher("sha256").update(b"attacker data").state().to_json()


@pytest.fixture
def lab(tmp_path):
    yield from in_process_lab(tmp_path / "rk", {
        "all": ("red-all", ["sign"], ["*"]),
        "admin": ("red-admin", ["sign", "keygen", "admin"], ["*"]),
        "alice": ("red-alice", ["sign"], ["alice#*@copr.test"]),
    })


def refused(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True))
    assert "signatures" not in (response.get_json() or {})
    return response.status_code


def sign(client, headers, key):
    return client.post("/sign", json={"key": key, "states": [STATE]}, headers=headers)


def test_a_certify_only_key_in_the_keyring_is_never_signed_with(lab):
    """An operator imported (or made by hand) a key whose primary may only certify and which has
    no signing subkey. Resolved by fingerprint, its record names the primary as the signing part
    (with a signing_problem): the service must refuse, not ask gpg-agent to sign with a
    certification key."""
    client, headers, config, gpg = lab
    fingerprint = gpg.generate_key("cert only", "certonly@x.test", algorithm="ed25519", usage=("cert",))
    before = len(audit_lines(config))
    for name in (fingerprint, fingerprint[-16:], "certonly@x.test"):
        response = sign(client, headers["all"], name)
        assert refused(response) == 409, response.get_json()
        assert "sign" in response.get_json()["error"]
    lines = audit_lines(config)[before:]
    assert [line["result"] for line in lines if line["operation"] == "sign"] == ["refused"] * 3, lines


def test_a_key_whose_signing_subkey_secret_is_gone_is_refused_not_500(lab):
    """A certify primary whose sign-only subkey has no secret on this server (exported elsewhere,
    ssb#): gpg-agent cannot sign with it; the service must say so with 409, not fail with 500,
    and must not fall back to the primary."""
    client, headers, config, gpg = lab
    fingerprint = gpg.generate_key("stub", "stub@x.test", algorithm="ed25519", usage=("cert",),
                                   subkey_usage=("sign",))
    subkey = _gnupg.find_secret_key_by(gpg, fingerprint).subkeys[0].fingerprint
    gpg.run(["--yes", "--delete-secret-keys", subkey + "!"])
    response = sign(client, headers["all"], fingerprint)
    assert refused(response) == 409, response.get_json()
    assert audit_lines(config)[-1]["result"] == "refused"


def test_a_deleted_key_does_not_sign_from_a_cached_lookup(lab):
    """Sign by fingerprint (the service resolves it through gpg and remembers the answer), delete
    the key, sign again by the same names: refused with 404, never signed, never a 500."""
    client, headers, config, gpg = lab
    made = client.post("/gen_key", json={"name_real": "gone", "name_email": "gone#p@copr.test"},
                       headers=headers["admin"])
    assert made.status_code == 201
    info = made.get_json()
    record = client.get("/keys/gone%23p@copr.test", headers=headers["admin"]).get_json()
    names = (info["fingerprint"], record["key_id"], record["signing_fingerprint"], "0x" + record["key_id"].lower())
    for name in names:
        assert sign(client, headers["all"], name).status_code == 200, name
    deleted = client.delete("/keys/gone%23p@copr.test", headers=headers["admin"])
    assert deleted.status_code == 200, deleted.get_json()
    for name in names + ("gone#p@copr.test",):
        response = sign(client, headers["all"], name)
        assert refused(response) == 404, (name, response.get_json())


def test_other_names_of_a_key_outside_the_token_patterns_are_refused(lab):
    """A token for alice#* asks for bob's key by fingerprint, key id, signing subkey fingerprint,
    0x-prefixed and upper/lower-cased forms, a uid email in other case, and path tricks: 403
    (the key exists) and never a signature; an audit line for each."""
    client, headers, config, gpg = lab
    made = client.post("/gen_key", json={"name_real": "bob", "name_email": "bob#p@copr.test"},
                       headers=headers["admin"])
    assert made.status_code == 201
    record = client.get("/keys/bob%23p@copr.test", headers=headers["admin"]).get_json()
    names = [record["fingerprint"], record["fingerprint"].lower(), record["key_id"], "0x" + record["key_id"],
             record["signing_fingerprint"], record["signing_key_id"], "BOB#P@COPR.TEST", "Bob#P@Copr.Test"]
    before = len(audit_lines(config))
    for name in names:
        response = sign(client, headers["alice"], name)
        assert refused(response) == 403, (name, response.get_json())
    lines = [line for line in audit_lines(config)[before:] if line["operation"] == "sign"]
    assert len(lines) == len(names) and {line["result"] for line in lines} == {"denied"}, lines
    # names that look like alice's to a pattern but are not a key name the service resolves
    for name in ("alice#x@copr.test/../bob#p@copr.test", "alice#x@copr.test\x00bob#p@copr.test",
                 "alice#x@copr.test%2f..%2fbob#p@copr.test", "../keys/bob#p@copr.test",
                 "alice#*@copr.test", "alice#[a-z]@copr.test", "<bob#p@copr.test>", "=bob#p@copr.test",
                 "*bob#p@copr.test", "bob", "@copr.test"):
        response = sign(client, headers["alice"], name)
        assert refused(response) in (400, 403, 404), (name, response.get_json())


def test_a_key_deleted_behind_the_service_s_back_is_not_signed_with(lab):
    """The key is deleted by another process (another mod_wsgi daemon, or gpg by hand): this
    process's remembered lookup must not outlive the keyring it came from (404 or 409, not 500)."""
    client, headers, config, gpg = lab
    fingerprint = gpg.generate_key("hand", "hand@x.test", algorithm="ed25519", usage=("cert",),
                                   subkey_usage=("sign",))
    assert sign(client, headers["all"], fingerprint).status_code == 200
    gpg.delete_key(fingerprint, secret=True)
    response = sign(client, headers["all"], fingerprint)
    assert refused(response) in (404, 409), response.get_json()


def test_every_refusal_of_sign_is_audited(lab):
    """No token, a bad token, the wrong scope, malformed input, an unknown key: 4xx and one audit
    line each, with the status."""
    client, headers, config, gpg = lab
    from pkgsign.tokens import add_token

    keygen = {"Authorization": "Bearer " + add_token(config.tokens_file, "red-keygen", ["keygen"], ["*"])}
    cases = [({}, {"key": "a@x.test", "states": [STATE]}, 401),
             ({"Authorization": "Bearer pks_not-a-token-at-all"}, {"key": "a@x.test", "states": [STATE]}, 401),
             ({"Authorization": "Basic YTpi"}, {"key": "a@x.test", "states": [STATE]}, 401),
             (keygen, {"key": "a@x.test", "states": [STATE]}, 403),
             (headers["all"], {"key": "nobody@x.test", "states": [STATE]}, 404),
             (headers["alice"], {"key": "nobody@x.test", "states": [STATE]}, 403),
             (headers["all"], {"key": "", "states": [STATE]}, 400),
             (headers["all"], {"key": 5, "states": [STATE]}, 400)]
    for auth, body, status in cases:
        before = len(audit_lines(config))
        response = client.post("/sign", json=body, headers=auth)
        assert response.status_code == status, (auth, body, response.get_json())
        lines = audit_lines(config)[before:]
        assert len(lines) == 1 and lines[0]["operation"] == "sign" and lines[0]["status"] == status, lines
        assert lines[0]["result"] == "refused"
    # the audit log stays a valid chain
    proc = run_admin("audit", "verify", "--config", str(config.path))
    assert proc.returncode == 0


def _revoke_signing_subkey(gpg, fingerprint):
    # --edit-key: "key 1" selects the subkey (one command), revkey, confirm, reason 0, no text, confirm
    gpg.run(["--edit-key", fingerprint, "key 1", "revkey", "save"], command_input=["y", "0", "", "y"])


def test_a_subkey_revoked_by_hand_is_refused_by_fingerprint_at_once(lab):
    """The operator revokes a key's signing subkey in the service's keyring with gpg. Named by
    fingerprint (looked up in the keyring, which changed) the key is refused at once."""
    client, headers, config, gpg = lab
    made = client.post("/gen_key", json={"name_real": "r", "name_email": "revhand#p@copr.test"},
                       headers=headers["admin"])
    assert made.status_code == 201
    fingerprint = made.get_json()["fingerprint"]
    assert sign(client, headers["all"], fingerprint).status_code == 200
    _revoke_signing_subkey(gpg, fingerprint)
    assert _gnupg.find_secret_key_by(gpg, fingerprint).subkeys[0].revoked
    response = sign(client, headers["all"], fingerprint)
    assert refused(response) == 409, response.get_json()


def test_a_subkey_revoked_by_hand_is_refused_by_email_before_maintain(lab):
    """Named by its email the key is signed from its metadata; the service must still notice that
    the keyring changed and that the signing subkey is revoked, before `maintain` runs."""
    client, headers, config, gpg = lab
    made = client.post("/gen_key", json={"name_real": "r", "name_email": "revmail#p@copr.test"},
                       headers=headers["admin"])
    assert made.status_code == 201
    _revoke_signing_subkey(gpg, made.get_json()["fingerprint"])
    response = sign(client, headers["all"], "revmail#p@copr.test")
    assert refused(response) == 409, response.get_json()


@pytest.fixture
def flood_lab(tmp_path):
    import configparser

    root = tmp_path / "rf"  # short, as in lab()
    run_admin("init", str(root), "--algorithm", "ed25519")
    parser = configparser.ConfigParser()
    parser.read(root / "pkgsign.conf")
    if not parser.has_section("rate_limit"):
        parser.add_section("rate_limit")
    parser.set("rate_limit", "anonymous", "5/2")
    with open(root / "pkgsign.conf", "w") as handle:
        parser.write(handle)
    from pkgsign.app import create_app
    from pkgsign.config import load_config
    from pkgsign.tokens import add_token

    config = load_config(str(root / "pkgsign.conf"))
    slow = add_token(config.tokens_file, "red-slow", ["sign"], ["*"], rate="2/3600")
    app = create_app(config)
    app.testing = True
    yield app.test_client(), {"Authorization": "Bearer " + slow}, config
    _gnupg.GnuPG(config.gnupg_home, create=False).kill_agent()


def test_a_refusal_flood_costs_a_bounded_number_of_audit_lines_and_is_counted(flood_lab):
    """Auditing every refusal must not give a client without a valid token, or a token beyond its
    rate, one synced audit write per request: at most the anonymous rate of lines per token or
    address and status, and the next line carries how many were not written."""
    import time

    client, slow, config = flood_lab
    body = {"key": "nobody@x.test", "states": [STATE]}
    for auth, status in (({}, 401), (slow, 429)):
        before = len(audit_lines(config))
        answers = [client.post("/sign", json=body, headers=auth).status_code for _attempt in range(30)]
        assert answers.count(status) >= 28, answers
        lines = [line for line in audit_lines(config)[before:] if line.get("status") == status]
        assert 1 <= len(lines) <= 5, len(lines)
        time.sleep(2.2)
        assert client.post("/sign", json=body, headers=auth).status_code == status
        lines = [line for line in audit_lines(config)[before:] if line.get("status") == status]
        assert len(lines) + sum(line.get("suppressed", 0) for line in lines) == answers.count(status) + 1, lines
    assert run_admin("audit", "verify", "--config", str(config.path)).returncode == 0
