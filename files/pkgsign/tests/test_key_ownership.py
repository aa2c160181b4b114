"""Red team, ownership of keys (issue 14): /gen_key never takes over a key the service did not make
or import, and a signing subkey revoked by hand stops signing at once, whatever name the key is
asked for by. Real gpg and gpg-agent in a private instance; the WSGI application through Flask's
test client (the code mod_wsgi runs)."""

import os

import pytest

from pkgsign_testlib import audit_lines, in_process_lab, run_admin
from pkgsign import _gnupg
from pkgsign.hashstate import Hasher

STATE = Hasher("sha256").update(b"owner data").state().to_json()


@pytest.fixture
def lab(tmp_path):
    yield from in_process_lab(tmp_path / "ko", {
        "all": ("own-all", ["sign"], ["*"]),
        "admin": ("own-admin", ["sign", "keygen", "admin"], ["*"]),
    })


def sign(client, headers, key):
    return client.post("/sign", json={"key": key, "states": [STATE]}, headers=headers)


def test_gen_key_refuses_a_key_imported_by_hand_and_delete_stays_refused(lab, tmp_path):
    """A release key imported into the service's keyring by hand has the email a /gen_key caller
    asks for: the service must answer 409 (not hand it out as its own), write an audit line, write
    no metadata, and DELETE /keys/<email> must still refuse to delete it."""
    client, headers, config, gpg = lab
    email = "release#p@copr.test"
    outside = _gnupg.GnuPG(str(tmp_path / "outside"))
    fingerprint = outside.generate_key("release", email, algorithm="ed25519", usage=("cert",),
                                       subkey_usage=("sign",))
    gpg.import_keys(outside.run(["--armor", "--export-secret-keys", fingerprint]).stdout)
    outside.kill_agent()
    before = len(audit_lines(config))
    response = client.post("/gen_key", json={"name_real": "attacker", "name_email": email},
                           headers=headers["admin"])
    assert response.status_code == 409, response.get_json()
    assert "not made by this service" in response.get_json()["error"]
    assert not os.path.exists(os.path.join(config.metadata_dir, email + ".json"))
    lines = [line for line in audit_lines(config)[before:] if line["operation"] == "gen_key"]
    assert len(lines) == 1 and lines[0]["result"] == "refused" and lines[0]["status"] == 409, lines
    # asked again (a retry, another token): still refused, nothing adopted
    assert client.post("/gen_key", json={"name_real": "x", "name_email": email},
                       headers=headers["admin"]).status_code == 409
    deleted = client.delete("/keys/release%23p@copr.test", headers=headers["admin"])
    assert 400 <= deleted.status_code < 500, deleted.get_json()
    assert _gnupg.find_secret_key_by(gpg, fingerprint) is not None, "the hand-imported key was deleted"


def test_gen_key_still_answers_for_a_key_imported_with_import_copr(lab, tmp_path):
    """Keys imported with `pkgsign-admin import-copr` are the service's by the operator's act
    (they get metadata): /gen_key answers 200 with that key, as copr-keygen did."""
    client, headers, config, gpg = lab
    email = "old#proj@copr.test"
    copr = _gnupg.GnuPG(str(tmp_path / "copr"))
    fingerprint = copr.generate_key("old", email, algorithm="ed25519", usage=("cert", "sign"))
    copr.kill_agent()
    run_admin("import-copr", "--config", str(config.path), "--gnupghome", copr.homedir)
    copr.kill_agent()
    response = client.post("/gen_key", json={"name_real": "old", "name_email": email}, headers=headers["admin"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["fingerprint"] == fingerprint and response.get_json()["created"] is False


def test_a_signing_subkey_added_and_revoked_by_hand_is_followed_by_email(lab):
    """The operator revokes the signing subkey and adds a new one by hand: signing by email uses
    the new subkey at once (no maintain), never the revoked one."""
    client, headers, config, gpg = lab
    made = client.post("/gen_key", json={"name_real": "s", "name_email": "swap#p@copr.test"},
                       headers=headers["admin"])
    assert made.status_code == 201
    fingerprint = made.get_json()["fingerprint"]
    first = sign(client, headers["all"], "swap#p@copr.test")
    assert first.status_code == 200
    old = first.get_json()["signing_fingerprint"]
    gpg.run(["--edit-key", fingerprint, "key 1", "revkey", "save"], command_input=["y", "0", "", "y"])
    assert sign(client, headers["all"], "swap#p@copr.test").status_code == 409
    gpg.add_subkey(fingerprint, algorithm="ed25519", usage="sign", expires="0")
    again = sign(client, headers["all"], "swap#p@copr.test")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["signing_fingerprint"] != old
