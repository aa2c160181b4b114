"""The Blind Oracle API (POST /sign/rpm, POST /sign/repodata, GET /health) end to end over real
HTTP, its Python client (pkgsign.oracle_client), and the weakest credential's attacks on it."""

import os
import re
import shutil

import pytest

from pkgsign_testlib import Instance, rpm_checksig, state_json

MODERN = "modern#oracle@copr.test"
LEGACY = "legacy#oracle@copr.test"
SECRET = "other#secret@copr.test"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    inst = Instance.create(tmp_path_factory.mktemp("oracle"), options=[
        ("oracle", "el10-x86_64/modern", MODERN), ("oracle", "el10-x86_64/legacy", LEGACY),
        ("oracle", "default/modern", MODERN), ("oracle", "el9-x86_64/modern", SECRET)])
    inst.add_token("builder", ["sign"], ["modern#*@copr.test", "legacy#*@copr.test"])
    inst.add_token("keygen", ["keygen"], ["*"])
    inst.start()
    for email in (MODERN, LEGACY, SECRET):
        status, _h, body = inst.request("POST", "/gen_key", {"name_real": "o", "name_email": email})
        assert status == 201, body
    yield inst
    inst.close()


def client_for(inst, token, **options):
    from pkgsign.oracle_client import Oracle

    return Oracle(inst.url, inst.tokens[token], **options)


def public_key(inst, email, tmp_path):
    status, _h, text = inst.request("GET", "/pubkey/" + email.replace("#", "%23"))
    assert status == 200
    path = tmp_path / (email.split("#")[0] + ".asc")
    path.write_text(text)
    return path


def test_health(oracle):
    status, _h, body = oracle.request("GET", "/health", token=None)
    assert status == 200 and body["status"] == "ok"
    assert client_for(oracle, "builder").health()["status"] == "ok"


@pytest.mark.parametrize("key_type, email, in_body", [("modern", MODERN, False), ("legacy", LEGACY, True)])
def test_sign_rpm_verifies_with_rpmkeys(oracle, tiny_rpm, tmp_path, key_type, email, in_body):
    package = tmp_path / "pkg.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    answer = client_for(oracle, "builder", token_in_body=in_body).sign_rpm(str(package), "el10-x86_64", key_type)
    assert set(answer) >= {"signature", "key_id", "timestamp"}
    assert answer["signature"].startswith("-----BEGIN PGP SIGNATURE-----")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answer["timestamp"])
    status, _h, info = oracle.request("GET", "/keys/" + email.replace("#", "%23"))
    assert answer["key_id"] == info["signing_key_id"].upper()
    rc, output = rpm_checksig(package, [public_key(oracle, email, tmp_path)], tmp_path / "rpmdb")
    assert rc == 0 and re.search(r"Header V4 \S+ Signature, key ID %s: OK" % info["signing_key_id"][-8:].lower(),
                                 output), output
    with open(oracle.audit_log) as handle:
        assert any('"oracle_sign_rpm"' in line and '"ok"' in line and '"el10-x86_64"' in line for line in handle)


def test_sign_repodata_verifies_with_gpg(oracle, tmp_path):
    from pkgsign import _gnupg

    repomd = tmp_path / "repomd.xml"
    repomd.write_bytes(b"<?xml version='1.0'?>\n<repomd><revision>1</revision></repomd>\n")
    answer = client_for(oracle, "builder").sign_repodata(str(repomd), "modern")
    assert (tmp_path / "repomd.xml.asc").read_text() == answer["signature"]
    gpg = _gnupg.GnuPG(str(tmp_path / "verify"))
    try:
        gpg.import_keys(public_key(oracle, MODERN, tmp_path).read_bytes())
        assert gpg.verify(str(tmp_path / "repomd.xml.asc"), str(repomd))
        repomd.write_bytes(repomd.read_bytes() + b"<!-- tampered -->\n")
        with pytest.raises(Exception):
            gpg.verify(str(tmp_path / "repomd.xml.asc"), str(repomd))
    finally:
        gpg.kill_agent()


def body_for(inst, token="builder", **fields):
    body = {"package_hash": state_json(b"header"), "distribution": "el10-x86_64", "key_type": "modern",
            "token": inst.tokens[token]}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("fields, status, fragment", [
    ({"distribution": "el8-x86_64"}, 400, "no modern key for distribution"),
    ({"key_type": "ancient"}, 400, "unknown key_type"),
    ({"distribution": "../../etc"}, 400, "distribution must be"),
    ({"key_type": ["modern"]}, 400, "key_type must be"),
    ({"distribution": None}, 400, "distribution must be"),
    ({"package_hash": "sha256:" + "ab" * 32}, 400, "cannot be signed"),
    ({"package_hash": {"chaining_value": "00", "byte_count": 1, "tail": "00"}}, 400, "package_hash"),
    ({"key": SECRET}, 400, "unknown field"),
    ({"digest_algo": "sha1"}, 400, "digest_algo"),
])
def test_bad_oracle_requests_are_4xx_with_a_message(oracle, fields, status, fragment):
    got, _h, body = oracle.request("POST", "/sign/rpm", body_for(oracle, **fields), token=None)
    assert got == status and fragment in body["error"], body


def test_a_sign_token_cannot_reach_other_keys_through_distribution(oracle):
    """builder may use modern#* and legacy#*; el9-x86_64/modern names other#secret: 403, audited."""
    got, _h, body = oracle.request("POST", "/sign/rpm", body_for(oracle, distribution="el9-x86_64"), token=None)
    assert got == 403 and "may not use key" in body["error"], body
    with open(oracle.audit_log) as handle:
        assert any('"oracle_sign_rpm"' in line and '"denied"' in line and SECRET in line for line in handle)


def test_token_in_header_or_body_not_both_and_never_anonymous(oracle):
    body = body_for(oracle)
    del body["token"]
    assert oracle.request("POST", "/sign/rpm", body, token="builder")[0] == 200
    assert oracle.request("POST", "/sign/rpm", body, token=None)[0] == 401
    both = oracle.request("POST", "/sign/rpm", body_for(oracle), token="builder")
    assert both[0] == 400 and "not both" in both[2]["error"]
    for secret, status in (("not-a-token", 401), ("", 400), (None, 401), (5, 400)):
        body = dict(body_for(oracle), token=secret)
        assert oracle.request("POST", "/sign/rpm", body, token=None)[0] == status, secret
    with open(oracle.audit_log) as handle:  # a token sent in the body is never written down
        assert oracle.tokens["builder"] not in handle.read()


def test_a_keygen_token_cannot_sign(oracle):
    got, _h, body = oracle.request("POST", "/sign/repodata",
                                   {"repodata_hash": state_json(b"x"), "key_type": "modern",
                                    "token": oracle.tokens["keygen"]}, token=None)
    assert got == 403 and "sign scope" in body["error"], body


def test_the_client_refuses_to_rewrite_what_is_not_an_rpm(oracle, tmp_path):
    from pkgsign.oracle_client import SignError

    target = tmp_path / "not.rpm"
    target.write_bytes(b"just text\n" * 10)
    before = target.read_bytes()
    with pytest.raises(SignError):
        client_for(oracle, "builder").sign_rpm(str(target), "el10-x86_64", "modern")
    assert target.read_bytes() == before


def run_cli(inst, *args, token="builder"):
    import subprocess
    import sys

    from pkgsign_testlib import child_env

    env = child_env(SIGN_CONF=inst.sign_conf, SIGN_TOKEN_FILE=os.path.join(inst.root, token + ".token"))
    return subprocess.run([sys.executable, "-m", "pkgsign.oracle_client"] + list(args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, check=False)


def test_the_command_line_client(oracle, tiny_rpm, tmp_path):
    package = tmp_path / "cli.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    before = package.read_bytes()
    refused = run_cli(oracle, "rpm", "--distribution", "el10-x86_64", "--key-type", "ancient", str(package))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1 and "key_type" in refused.stderr
    assert package.read_bytes() == before
    denied = run_cli(oracle, "rpm", "--distribution", "el9-x86_64", "--key-type", "modern", str(package))
    assert denied.returncode == 1 and "may not use key" in denied.stderr and package.read_bytes() == before
    done = run_cli(oracle, "--token-in-body", "rpm", "--distribution", "el10-x86_64", "--key-type", "modern",
                   str(package))
    assert done.returncode == 0, done.stderr
    rc, output = rpm_checksig(package, [public_key(oracle, MODERN, tmp_path)], tmp_path / "rpmdb")
    assert rc == 0 and re.search(r"Header V4 \S+ Signature, key ID [0-9a-f]+: OK", output), output
    assert run_cli(oracle, "health").returncode == 0
