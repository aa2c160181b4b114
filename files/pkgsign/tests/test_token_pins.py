"""Token key patterns bind to fingerprints (issue 14): a pattern given to `pkgsign-admin token add`
covers the keys it matches then, not a later key with the same email (a new rotation cycle) or a
key an alias is moved to, until the operator grants it (`token grant`). `future:` patterns and
keys a token made itself are the two ways a token covers keys made later. Real pkgsign-admin,
real gpg; the WSGI application through Flask's test client."""

import configparser
import json

import pytest

from pkgsign_testlib import run_admin
from pkgsign import _gnupg
from pkgsign.hashstate import Hasher

STATE = Hasher("sha256").update(b"pinned data").state().to_json()


class Lab:
    def __init__(self, root):
        self.root = root
        self.conf = str(root / "pkgsign.conf")
        from pkgsign.config import load_config
        from pkgsign.tokens import add_token

        self.config = load_config(self.conf)
        # the operator's own token, written the old way (name matching): makes and deletes keys
        self.admin = {"Authorization": "Bearer " + add_token(self.config.tokens_file, "pin-admin",
                                                             ["sign", "keygen", "admin"], ["*"])}
        self.start()

    def start(self):
        from pkgsign.app import create_app
        from pkgsign.config import load_config

        self.config = load_config(self.conf)
        app = create_app(self.config)
        app.testing = True
        self.client = app.test_client()

    def token(self, token_id, scopes, keys):
        proc = run_admin("token", "add", "--config", self.conf, "--id", token_id, "--scopes", scopes, "--keys", keys)
        return {"Authorization": "Bearer " + proc.stdout.strip()}

    def gen(self, email, headers=None):
        response = self.client.post("/gen_key", json={"name_real": "n", "name_email": email},
                                    headers=headers or self.admin)
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()["fingerprint"]

    def delete(self, email):
        response = self.client.delete("/keys/" + email.replace("#", "%23"), headers=self.admin)
        assert response.status_code == 200, response.get_json()

    def sign(self, headers, key):
        return self.client.post("/sign", json={"key": key, "states": [STATE]}, headers=headers)

    def audit(self):
        with open(self.config.audit_log, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "tp"  # short: agent socket paths under <root>/audit-gnupg must fit 108 bytes
    run_admin("init", str(root), "--algorithm", "ed25519")
    lab = Lab(root)
    yield lab
    _gnupg.GnuPG(lab.config.gnupg_home, create=False).kill_agent()


def test_a_new_rotation_cycle_with_the_same_email_needs_a_grant(lab):
    """The token was made for the project's key of this cycle; the key is deleted and a new one made
    for the same email: the token must not sign with the new key (403, audited) until
    `pkgsign-admin token grant` (itself audited), and a rotation of the token keeps the binding."""
    old = lab.gen("cyc#p@copr.test")
    ci = lab.token("ci", "sign", "cyc#*@copr.test")
    assert lab.sign(ci, "cyc#p@copr.test").status_code == 200
    lab.delete("cyc#p@copr.test")
    new = lab.gen("cyc#p@copr.test")
    assert new != old
    before = len(lab.audit())
    for name in ("cyc#p@copr.test", new, new[-16:]):
        response = lab.sign(ci, name)
        assert response.status_code == 403, (name, response.get_json())
    assert [line["result"] for line in lab.audit()[before:] if line["operation"] == "sign"] == ["denied"] * 3
    # a rotation (new secret) is not a grant
    proc = run_admin("token", "rotate", "--config", lab.conf, "--id", "ci")
    ci = {"Authorization": "Bearer " + proc.stdout.strip()}
    assert lab.sign(ci, "cyc#p@copr.test").status_code == 403
    run_admin("token", "grant", "--config", lab.conf, "--id", "ci", "--key", "cyc#p@copr.test")
    assert lab.sign(ci, "cyc#p@copr.test").status_code == 200
    grants = [line for line in lab.audit() if line["operation"] == "token_grant"]
    assert grants and grants[-1]["result"] == "ok" and grants[-1]["fingerprint"] == new, grants


def test_grant_of_an_unknown_key_or_to_a_revoked_token_is_refused_in_one_line(lab):
    lab.token("gone", "sign", "x#*@copr.test")
    run_admin("token", "revoke", "--config", lab.conf, "--id", "gone")
    lab.gen("x#p@copr.test")
    for token_id, key in (("gone", "x#p@copr.test"), ("nobody", "x#p@copr.test")):
        proc = run_admin("token", "grant", "--config", lab.conf, "--id", token_id, "--key", key, check=False)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    lab.token("live", "sign", "x#*@copr.test")
    proc = run_admin("token", "grant", "--config", lab.conf, "--id", "live", "--key", "nokey#p@copr.test", check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    refused = [line for line in lab.audit() if line["operation"] == "token_grant"]
    assert [line["result"] for line in refused] == ["refused"] * 3, refused


def test_a_future_pattern_covers_keys_made_later(lab):
    """`future:<pattern>` is the operator's explicit choice for a per-project token that signs
    with keys /gen_key makes later (a Copr backend)."""
    backend = lab.token("backend", "sign", "future:fut#*@copr.test")
    lab.gen("fut#a@copr.test")
    assert lab.sign(backend, "fut#a@copr.test").status_code == 200
    assert lab.sign(backend, "fut#a@copr.test").get_json()["key"] == "fut#a@copr.test"
    lab.gen("other#a@copr.test")
    assert lab.sign(backend, "other#a@copr.test").status_code == 403


def test_keys_a_token_makes_are_granted_to_it_and_to_no_other(lab):
    """A keygen+sign token with a bound pattern that matched nothing when it was made: the keys it
    makes through /gen_key are granted to it (audited); another token made at the same time with
    the same pattern does not get them; asking /gen_key for an existing key grants nothing."""
    maker = lab.token("maker", "sign,keygen", "own#*@copr.test")
    bystander = lab.token("bystander", "sign,keygen", "own#*@copr.test")
    fingerprint = lab.gen("own#a@copr.test", headers=maker)
    assert lab.sign(maker, "own#a@copr.test").status_code == 200
    assert lab.sign(bystander, "own#a@copr.test").status_code == 403
    # the bystander asks /gen_key for the key that exists: 200 "exists", still not its key
    again = lab.client.post("/gen_key", json={"name_real": "n", "name_email": "own#a@copr.test"}, headers=bystander)
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert lab.sign(bystander, "own#a@copr.test").status_code == 403
    made = [line for line in lab.audit() if line["operation"] == "gen_key" and line.get("result") == "created"]
    assert made[-1]["granted"] == "maker" and made[-1]["fingerprint"] == fingerprint


def test_an_alias_moved_to_another_key_does_not_carry_the_token(lab):
    """A token made for the alias `release` (pointing at key A) is bound to A: when the operator
    moves the alias to key B, the token does not sign with B."""
    first = lab.gen("rel#a@copr.test")
    second = lab.gen("rel#b@copr.test")
    parser = configparser.ConfigParser()
    parser.read(lab.conf)
    parser["aliases"] = {"release": "rel#a@copr.test"}
    with open(lab.conf, "w") as handle:
        parser.write(handle)
    lab.start()
    rel = lab.token("rel", "sign", "release")
    assert lab.sign(rel, "release").get_json()["fingerprint"] == first
    parser["aliases"] = {"release": "rel#b@copr.test"}
    with open(lab.conf, "w") as handle:
        parser.write(handle)
    lab.start()
    response = lab.sign(rel, "release")
    assert response.status_code == 403, response.get_json()
    assert lab.sign(rel, second).status_code == 403


def test_token_list_shows_bound_keys_and_old_entries_keep_matching_by_name(lab):
    """Entries written before pinning (no `pinned`) keep matching by name: the upgrade locks no
    client out. New entries record what each pattern was bound to."""
    from pkgsign.tokens import add_token

    legacy = {"Authorization": "Bearer " + add_token(lab.config.tokens_file, "legacy", ["sign"], ["leg#*@copr.test"])}
    lab.gen("leg#a@copr.test")
    assert lab.sign(legacy, "leg#a@copr.test").status_code == 200
    lab.token("bound", "sign", "leg#*@copr.test,future:new#*@copr.test,*#zz@x.test")
    entry = json.load(open(lab.config.tokens_file))["tokens"]["bound"]
    assert set(entry["pinned"]) == {"leg#*@copr.test", "*#zz@x.test"}
    assert len(entry["pinned"]["leg#*@copr.test"]) == 1 and entry["pinned"]["*#zz@x.test"] == []
    added = [line for line in lab.audit() if line["operation"] == "token_add" and line.get("token_id") == "bound"]
    assert added[-1]["pinned"] == {"leg#*@copr.test": 1, "*#zz@x.test": 0}
