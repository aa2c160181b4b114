"""The HTTP API through the Flask test client and over real HTTP."""

import base64
import hashlib
import time

import pytest

from pkgsign_testlib import ED_KEY, RSA_KEY, bearer, gpg_verify, state_json
from pkgsign import openpgp, wire


def test_ping_and_health(app_client, instance):
    response = app_client.get("/ping")
    assert response.status_code == 200 and response.data == b"pong\n"
    assert app_client.get("/health/live").get_json()["status"] == "live"
    ready = app_client.get("/health/ready")
    assert ready.status_code == 200 and ready.get_json()["ready"] is True
    status, _headers, body = instance.request("GET", "/health/ready", token=None)
    assert status == 200 and body["checks"] == {"keyring": True, "agent": True, "state_dir": True}


def test_openapi_served_and_lists_every_route(app_client):
    spec = app_client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path in ("/ping", "/gen_key", "/pubkey/{key}", "/keys/{key}", "/sign",
                 "/health/live", "/health/ready"):
        assert path in spec["paths"], path
    assert "/sign/prepare" not in spec["paths"]
    assert set(spec["components"]["schemas"]["SignRequest"]["properties"]) == {"key", "digest_algo", "sig_type", "states", "armor"}


def test_gen_key_created_then_exists_json_and_form(app_client, instance):
    headers = bearer(instance)
    first = app_client.post("/gen_key", json={"name_real": "carol", "name_email": "carol#p1@copr.test"},
                            headers=headers)
    assert first.status_code == 201, first.get_json()
    again = app_client.post("/gen_key", data={"name_real": "carol", "name_email": "carol#p1@copr.test"},
                            headers=headers)
    assert again.status_code == 200
    assert again.get_json()["fingerprint"] == first.get_json()["fingerprint"]
    assert first.get_json()["algorithm"] == "ed25519"  # the instance's configured default


def test_gen_key_over_http_with_rsa_length(instance):
    status, _headers, body = instance.request("POST", "/gen_key", {"name_real": "bob_rsa", "name_email": RSA_KEY,
                                                                   "key_length": 2048})
    assert status == 200 and body["algorithm"] == "rsa2048"


@pytest.mark.parametrize("body, fragment", [
    ({"name_email": "x#y@copr.test"}, "name_real is required"),
    ({"name_real": "x"}, "name_email is required"),
    ({"name_real": "evil\nKey-Type: DSA", "name_email": "x#y@copr.test"}, "newlines"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "name_comment": "a\rb"}, "newlines"),
    ({"name_real": "x" * 300, "name_email": "x#y@copr.test"}, "longer than"),
    ({"name_real": "x", "name_email": "no-at-sign"}, "name_email"),
    ({"name_real": "x", "name_email": "a b#c@copr.test"}, "name_email"),
    ({"name_real": "x", "name_email": "x#y@copr.test\n"}, "name_email"),
    ({"name_real": 5, "name_email": "x#y@copr.test"}, "must be a string"),
    ({"name_real": ["x"], "name_email": "x#y@copr.test"}, "must be a string"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "key_length": 1024}, "key_length"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "key_length": "big"}, "key_length"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "key_length": True}, "key_length"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "expire": -1}, "expire"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "expire": "soon"}, "expire"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "algorithm": "dsa1024"}, "algorithm"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "algorithm": "ed25519", "key_length": 4096}, "contradicts"),
    ({"name_real": "x", "name_email": "x#y@copr.test", "surprise": 1}, "unknown field"),
    ({"name_real": "a <b>", "name_email": "x#y@copr.test"}, "must not contain"),
])
def test_gen_key_bad_input_is_400_with_message(app_client, instance, body, fragment):
    response = app_client.post("/gen_key", json=body, headers=bearer(instance))
    assert response.status_code == 400, response.get_json()
    assert fragment in response.get_json()["error"]


@pytest.mark.parametrize("raw, content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"\xff\xfe", "application/json"),
])
def test_malformed_bodies_are_400(app_client, instance, raw, content_type):
    for path in ("/gen_key", "/sign"):
        response = app_client.post(path, data=raw, content_type=content_type, headers=bearer(instance, "admin"))
        assert response.status_code == 400, (path, response.get_json())
        assert response.get_json()["error"]


def test_pubkey_and_key_info(app_client, instance):
    response = app_client.get("/pubkey/" + ED_KEY.replace("#", "%23"), headers=bearer(instance))
    assert response.status_code == 200
    assert response.data.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    info = app_client.get("/keys/modern", headers=bearer(instance)).get_json()
    assert info["name_email"] == ED_KEY and info["algorithm"] == "ed25519"
    by_fpr = app_client.get("/keys/" + info["fingerprint"], headers=bearer(instance)).get_json()
    assert by_fpr["fingerprint"] == info["fingerprint"]
    # an alias of an alias (el10-x86_64 -> modern -> email)
    assert app_client.get("/keys/el10-x86_64", headers=bearer(instance)).get_json()["fingerprint"] == info["fingerprint"]
    missing = app_client.get("/pubkey/nobody%23x@copr.test", headers=bearer(instance))
    assert missing.status_code == 404 and "unknown key" in missing.get_json()["error"]


def test_unknown_route_and_method_are_json_errors(app_client, instance):
    assert app_client.get("/nothing-here").status_code == 404
    response = app_client.get("/gen_key")
    assert response.status_code == 405 and response.get_json()["error"]


# -- remote signing through the API -------------------------------------------------------

def _sign(app_client, instance, key=ED_KEY, digest_algo="sha256", datas=(b"x",), token="client", **extra):
    body = {"key": key, "digest_algo": digest_algo, "states": [state_json(data, digest_algo) for data in datas]}
    body.update(extra)
    return app_client.post("/sign", json=body, headers=bearer(instance, token))


@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY])
@pytest.mark.parametrize("digest_algo", ["sha256", "sha384", "sha512"])
def test_sign_states_verify_with_stock_gpg(app_client, instance, verifier, tmp_path, key, digest_algo):
    files = []
    for number in range(3):
        path = tmp_path / ("file%d" % number)
        path.write_bytes(b"content %d\n" % number * (100 + 37 * number))
        files.append(path)
    started = int(time.time())
    response = _sign(app_client, instance, key, digest_algo, [path.read_bytes() for path in files], armor=True)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["sig_type"] == "binary" and answer["digest_algo"] == digest_algo
    assert started <= answer["creation_time"] <= time.time() + 1
    signatures = answer["signatures"]
    assert len(signatures) == 3
    # the digest the server signed is the data's hash finished with the server's own hashed area
    area = openpgp.build_hashed_area(0, answer["pubkey_algo"], digest_algo, answer["signing_fingerprint"],
                                     answer["creation_time"])
    for path, item in zip(files, signatures):
        expected = hashlib.new(digest_algo, path.read_bytes() + area + wire.trailer(area)).hexdigest()
        assert item["digest"] == expected
        packet = base64.b64decode(item["signature"])
        assert area in packet
        (tmp_path / (path.name + ".sig")).write_bytes(packet)
        (tmp_path / (path.name + ".asc")).write_text(item["armored"])
        assert gpg_verify(verifier, tmp_path / (path.name + ".sig"), path) == [answer["fingerprint"]]
        assert gpg_verify(verifier, tmp_path / (path.name + ".asc"), path) == [answer["fingerprint"]]
    # a signature is bound to its file: another file does not verify
    with pytest.raises(Exception):
        gpg_verify(verifier, tmp_path / "file0.sig", files[1])


def test_text_signature_type(app_client, instance, verifier, tmp_path):
    text = b"a text\r\nsigned as text"
    response = _sign(app_client, instance, RSA_KEY, "sha256", [text], sig_type="text")
    assert response.status_code == 200, response.get_json()
    packet = base64.b64decode(response.get_json()["signatures"][0]["signature"])
    body = 2 if packet[0] & 3 == 0 else 3  # old-format packet, 1- or 2-byte length
    assert packet[body:body + 2] == b"\x04\x01"  # version 4, signature type 0x01 (text)
    (tmp_path / "t.txt").write_bytes(text)
    (tmp_path / "t.sig").write_bytes(packet)
    gpg_verify(verifier, tmp_path / "t.sig", tmp_path / "t.txt")


def _sign_body(**changes):
    body = {"key": ED_KEY, "digest_algo": "sha256", "states": [state_json(b"abc")]}
    body.update(changes)
    return body


def test_sign_rejects_malformed_requests(app_client, instance):
    good = state_json(b"x" * 100)
    cases = [
        (_sign_body(states=[]), "states"),
        (_sign_body(states=good), "states"),
        (_sign_body(states=None), "states"),
        (_sign_body(states=[5]), "states[0] must be an object"),
        (_sign_body(states=[good, dict(good, chaining_value="zz" * 32)]), "states[1].chaining_value"),
        (_sign_body(states=[dict(good, chaining_value="ab" * 64)]), "32 bytes"),
        (_sign_body(states=[dict(good, tail="00" * 64, byte_count=128)]), "shorter than"),
        (_sign_body(states=[dict(good, byte_count=101)]), "leaves 37"),
        (_sign_body(states=[dict(good, byte_count=-28)]), "integer"),
        (_sign_body(states=[dict(good, digest="00" * 32)]), "exactly the fields"),
        (_sign_body(states=[state_json(b"x" * 100, "sha512")]), "32 bytes"),
        (_sign_body(digest_algo="md5"), "not allowed"),
        (_sign_body(digest_algo="sha1"), "not allowed"),
        (_sign_body(digest_algo=7), "string"),
        (_sign_body(sig_type="cert"), "binary or text"),
        (_sign_body(sig_type=0x18), "binary or text"),
        (_sign_body(sig_type=None), "binary or text"),
        (_sign_body(armor="yes"), "armor"),
        (_sign_body(hashed_area="04001608"), "no longer signed"),
        (_sign_body(digests=["ab" * 32]), "no longer signed"),
        (_sign_body(creation_time=1), "unknown field"),
        (_sign_body(notations={"a@b": "c"}), "unknown field"),
        (_sign_body(key=None), "key must be"),
        (_sign_body(key=["x"]), "key must be"),
        (_sign_body(key="k" * 300), "key must be"),
    ]
    for body, fragment in cases:
        response = app_client.post("/sign", json=body, headers=bearer(instance))
        assert response.status_code == 400, (body, response.get_json())
        assert fragment in response.get_json()["error"], (fragment, response.get_json())
    from pkgsign.config import DEFAULT_MAX_DIGESTS

    too_many = _sign_body(states=[good] * (DEFAULT_MAX_DIGESTS + 1))
    response = app_client.post("/sign", json=too_many, headers=bearer(instance))
    assert response.status_code == 400 and "at most %d states" % DEFAULT_MAX_DIGESTS in response.get_json()["error"]


def test_the_client_never_sends_more_states_than_the_default_limit():
    """The default limit (sized by the bench) must not refuse the `sign` client's own batches."""
    import inspect

    from pkgsign.client import MIN_BATCH, Signer
    from pkgsign.config import DEFAULT_MAX_DIGESTS

    chunk = inspect.signature(Signer.sign_blobs).parameters["chunk"].default
    assert MIN_BATCH <= chunk <= DEFAULT_MAX_DIGESTS


def test_sign_unknown_keys_and_the_removed_prepare_route(app_client, instance):
    for name in ("nobody@nowhere.test", "DEADBEEF"):
        response = app_client.post("/sign", json=_sign_body(key=name), headers=bearer(instance))
        assert response.status_code == 404, response.get_json()
    assert app_client.post("/sign", json={}, headers=bearer(instance)).status_code == 400
    # the raw-digest route and the client-built hashed area are gone
    response = app_client.post("/sign/prepare", json={"key": ED_KEY}, headers=bearer(instance))
    assert response.status_code == 404


# -- access control -----------------------------------------------------------------------

def test_401_without_or_with_bad_token(app_client):
    for method, path, body in (("POST", "/gen_key", {"name_real": "x", "name_email": "x#y@copr.test"}),
                               ("GET", "/pubkey/modern", None),
                               ("POST", "/sign", {"key": "modern"}), ("DELETE", "/keys/modern", None)):
        for headers in ({}, {"Authorization": "Bearer wrong-secret-value"}, {"Authorization": "Basic abc"},
                        {"Authorization": "Bearer "}):
            response = app_client.open(path, method=method, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert "WWW-Authenticate" in response.headers


def test_403_outside_scope_or_keys(app_client, instance):
    # keygen-only token cannot sign; limited token (sign, alice#*) cannot sign with bob's key
    response = _sign(app_client, instance, ED_KEY, token="keygen-only")
    assert response.status_code == 403 and "scope" in response.get_json()["error"]
    response = _sign(app_client, instance, RSA_KEY, token="limited")
    assert response.status_code == 403 and "may not use key" in response.get_json()["error"]
    assert _sign(app_client, instance, ED_KEY, token="limited").status_code == 200
    # the alias of alice's key is allowed too: patterns see every name of the key
    assert _sign(app_client, instance, "modern", token="limited").status_code == 200
    response = app_client.post("/gen_key", json={"name_real": "x", "name_email": "alice#new@copr.test"},
                               headers=bearer(instance, "limited"))
    assert response.status_code == 403
    response = app_client.delete("/keys/" + ED_KEY.replace("#", "%23"), headers=bearer(instance, "client"))
    assert response.status_code == 403


def test_429_with_retry_after(instance):
    # 'slow' allows 3 requests per hour: a burst of 3, then one every 20 minutes
    statuses = []
    for _index in range(5):
        status, headers, _body = instance.request("GET", "/keys/modern", token="slow")
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) > 0
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]


def test_delete_key_needs_admin_and_removes_everything(app_client, instance):
    email = "dave#gone@copr.test"
    assert app_client.post("/gen_key", json={"name_real": "dave", "name_email": email},
                           headers=bearer(instance)).status_code == 201
    quoted = email.replace("#", "%23")
    assert app_client.delete("/keys/" + quoted, headers=bearer(instance, "admin")).status_code == 200
    assert app_client.get("/pubkey/" + quoted, headers=bearer(instance)).status_code == 404
    assert app_client.delete("/keys/" + quoted, headers=bearer(instance, "admin")).status_code == 404
    # it can be made again afresh
    assert app_client.post("/gen_key", json={"name_real": "dave", "name_email": email},
                           headers=bearer(instance)).status_code == 201


def test_keygen_without_token_only_from_listed_networks(tmp_path):
    from pkgsign_testlib import run_admin
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    run_admin("init", str(tmp_path / "open"), "--algorithm", "ed25519")
    conf = tmp_path / "open" / "pkgsign.conf"
    body = {"name_real": "copr", "name_email": "copr#open@copr.test"}
    closed = create_app(load_config(str(conf))).test_client()
    assert closed.post("/gen_key", json=body).status_code == 401
    conf.write_text(conf.read_text().replace("allow_without_token_from =", "allow_without_token_from = 10.0.0.0/8, 127.0.0.1/32"))
    app = create_app(load_config(str(conf))).test_client()
    assert app.post("/gen_key", json=body).status_code == 201  # test client's address is 127.0.0.1
    outside = app.post("/gen_key", json=body, environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    assert outside.status_code == 401
    # only /gen_key is open; signing still needs a token
    assert app.post("/sign", json={"key": "copr#open@copr.test", "states": [state_json(b"x")]}).status_code == 401
    from pkgsign import _gnupg

    _gnupg.GnuPG(str(tmp_path / "open" / "gnupg"), create=False).kill_agent()


def test_pathological_input_is_400_not_500(app_client, instance):
    headers = dict(bearer(instance, "admin"), **{"Content-Type": "application/json"})
    nested = b"[" * 100000 + b"]" * 100000
    surrogate = b'{"name_real": "x\\ud800", "name_email": "x#y@copr.test"}'
    cases = [("/gen_key", nested), ("/sign", nested), ("/gen_key", surrogate),
             ("/sign", b'{"key": "\\udfff@x"}'), ("/sign", b'{"key": "modern", "states": ["\\ud800"]}'),
             ("/sign", b'{"key": "modern", "states": [{"chaining_value": "\\ud800", "byte_count": 0, "tail": ""}]}'),
             ("/sign", b'{"key": "modern", "states": [{"chaining_value": "00", "byte_count": 1e400, "tail": ""}]}'),
             ("/gen_key", b'{"name_real": "x", "name_email": "x#y@copr.test", "key_length": 1e400}'),
             ("/gen_key", b'{"name_real": "x", "name_email": "x#y@copr.test", "expire": 99999999999}'),
             ("/gen_key", b'{"name_real": null, "name_email": "x#y@copr.test"}'),
             ("/sign", b'null'), ("/sign", b'{"key": "modern", "digest_algo": null}')]
    for path, raw in cases:
        response = app_client.post(path, data=raw, headers=headers)
        assert response.status_code == 400, (path, raw[:60], response.status_code, response.get_json())
    for path in ("/pubkey/%00", "/keys/%7F", "/pubkey/" + "a" * 400, "/keys/%ED%A0%80"):
        response = app_client.get(path, headers=headers)
        assert response.status_code in (400, 404), (path, response.status_code)
    huge = app_client.post("/gen_key", data=b"x" * 2_000_000, headers=headers)
    assert huge.status_code == 413


def test_a_broken_token_entry_does_not_lock_out_others(tmp_path):
    import json as jsonlib

    from pkgsign.tokens import TokenStore, add_token

    path = str(tmp_path / "tokens.json")
    secret = add_token(path, "good", ["sign"], ["*"])
    data = jsonlib.load(open(path))
    data["tokens"]["bad-rate"] = {"sha256": "00" * 32, "scopes": ["sign"], "keys": ["*"], "rate": "fast"}
    data["tokens"]["no-hash"] = {"scopes": ["sign"], "keys": ["*"]}
    data["tokens"]["not-an-object"] = 5
    jsonlib.dump(data, open(path, "w"))
    store = TokenStore(path)
    assert store.authenticate(secret).id == "good"
    assert store.authenticate("anything else") is None


def test_key_names_resolve_exactly_never_by_substring(app_client, instance, tmp_path):
    """gpg matches 'bob@x' as a substring of 'alice-bob@x': the service must not."""
    from pkgsign import _gnupg

    gpg = _gnupg.GnuPG(f"{instance.root}/gnupg", create=False)
    # a key in the keyring without service metadata (imported or made by hand)
    gpg.generate_key("Hand Made", "release-team@example.org", algorithm="ed25519")
    headers = bearer(instance)
    assert app_client.get("/keys/release-team@example.org", headers=headers).status_code == 200
    for name in ("team@example.org", "eam@example.org", "release-team@example.or", "<release-team@example.org>",
                 "*release-team@example.org", "Hand Made", "=Hand Made <release-team@example.org>"):
        response = app_client.get("/keys/" + name.replace("#", "%23"), headers=headers)
        assert response.status_code in (400, 404), (name, response.get_json())
    fpr = app_client.get("/keys/release-team@example.org", headers=headers).get_json()["fingerprint"]
    assert app_client.get("/keys/" + fpr[-16:], headers=headers).status_code == 200
    assert app_client.get("/keys/0x" + fpr[-8:], headers=headers).status_code == 200
    assert app_client.get("/keys/" + fpr[-10:], headers=headers).status_code == 404
