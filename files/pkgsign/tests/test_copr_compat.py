"""copr-keygen compatibility of /gen_key and /pubkey (issue 15): Copr's own call shapes against a
real served instance, for a user project and a group project; the name forms copr-keygen refuses;
JSON without its Content-Type; gpg's expire forms; the bounded keygen queue."""

import ast
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from pkgsign_testlib import Instance, rpm_checksig

MIRROR = "/work/.mirror/fedora-copr+copr/repo"


@pytest.fixture(scope="module")
def copr(tmp_path_factory):
    inst = Instance.create(tmp_path_factory.mktemp("copr"), options=[
        # Copr's keygen calls come without a token from the backend's network (as copr-keygen's do).
        ("keygen", "allow_without_token_from", "127.0.0.0/8"),
        ("rate_limit", "anonymous", "1/1"),
        # The backend's address waits in the queue; 127.0.0.2 stands for any other client.
        ("budget", "keygen_queue_from", "127.0.0.1/32"),
        ("budget", "keygen_queue_depth", "2"),
        ("budget", "keygen_queue_wait", "20s")])
    yield inst.start()
    inst.close()


def raw_post(inst, path, data, headers=None, source="127.0.0.1"):
    """A POST with exactly these bytes and headers (no Content-Type unless given), from ``source``."""
    port = int(inst.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=(source, 0))
    try:
        conn.request("POST", path, body=data, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        ctype = response.getheader("Content-Type", "")
        return response.status, dict(response.getheaders()), json.loads(body) if ctype.startswith("application/json") else body
    finally:
        conn.close()


def copr_gen_key(inst, email, name_real="x", **extra):
    """What Copr's create_user_keys sends: a JSON body, no token."""
    body = dict({"name_real": name_real, "name_email": email}, **extra)
    for _attempt in range(20):  # the anonymous rate (1/s) may still be spent by an earlier test
        status, headers, answer = raw_post(inst, "/gen_key", json.dumps(body).encode(),
                                           {"Content-Type": "application/json"})
        if status != 503:
            return status, answer
        time.sleep(int(headers.get("Retry-After", "1")))
    return status, answer


@pytest.mark.parametrize("owner, project", [("alice", "hello"), ("@copr", "ping-pong")])
def test_copr_backend_sequence_user_and_group_project(copr, tiny_rpm, tmp_path, owner, project):
    """sign_rpms_in_dir: `sign -u E -p` -> "unknown key:" -> create_user_keys -> `sign -4 -h sha256
    -u E -r` -> the package verifies with the key `sign -p` gives (rpmkeys, private rpmdb)."""
    email = "%s#%s@copr.copr.test" % (owner, project)
    lookup = copr.sign("-u", email, "-p", token="client")
    assert lookup.returncode != 0 and b"unknown key:" in lookup.stderr, lookup.stderr
    status, answer = copr_gen_key(copr, email, "%s_%s" % (owner, project))
    assert status == 201, answer
    assert answer["name_email"] == email
    package = tmp_path / "pkg.rpm"
    shutil.copy(str(tiny_rpm), str(package))
    signed = copr.sign("-4", "-h", "sha256", "-u", email, "-r", str(package), token="client")
    assert signed.returncode == 0, signed.stderr
    pubkey = copr.sign("-u", email, "-p", token="client")
    assert pubkey.returncode == 0 and pubkey.stdout.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    key_file = tmp_path / "key.asc"
    key_file.write_bytes(pubkey.stdout)
    rc, output = rpm_checksig(package, [key_file], tmp_path / "rpmdb")
    assert rc == 0 and re.search(r"Header V4 \S+ Signature, key ID [0-9a-f]+: OK", output), output
    # create_user_keys again (a fork, copr_fix_gpg.py, copr_sign_unsigned.py): 200, the same key.
    status, again = copr_gen_key(copr, email, "%s_%s" % (owner, project))
    assert status == 200 and again["fingerprint"] == answer["fingerprint"], again


def test_case_is_kept_and_lookups_fold_it(copr):
    email = "@Grp#MixedCase@copr.copr.test"
    status, first = copr_gen_key(copr, email)
    assert status == 201 and first["name_email"] == email
    status, again = copr_gen_key(copr, email.lower())
    assert status == 200 and again["fingerprint"] == first["fingerprint"]
    assert again["name_email"] == email  # the key's own spelling, not the caller's
    status, _h, info = copr.request("GET", "/keys/" + email.lower().replace("#", "%23"))
    assert status == 200 and info["uids"] == ["x <%s>" % email], info
    public = copr.sign("-u", email.upper(), "-p", token="client")
    assert public.returncode == 0, public.stderr


def test_json_without_content_type(copr):
    body = json.dumps({"name_real": "nohdr", "name_email": "nohdr#p@copr.copr.test"}).encode()
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        for _attempt in range(20):
            status, h, answer = raw_post(copr, "/gen_key", body, headers)
            if status != 503:
                break
            time.sleep(int(h.get("Retry-After", "1")))
        assert status in (200, 201), (headers, answer)
        assert answer["name_email"] == "nohdr#p@copr.copr.test"
    status, _h, answer = raw_post(copr, "/gen_key", b'{"name_real": "x", "name_email": ', {})
    assert status == 400 and answer["error"]


@pytest.mark.parametrize("expire, days", [("5y", 5 * 365), ("0", None), (0, None), ("30", 30), (30, 30),
                                          ("2w", 14), ("6m", 180)])
def test_copr_keygen_expire_forms(copr, expire, days):
    email = "exp-%s-%s#p@copr.copr.test" % (type(expire).__name__, expire)
    before = int(time.time())
    status, answer = copr_gen_key(copr, email, expire=expire)
    assert status == 201, answer
    status, _h, info = copr.request("GET", "/keys/" + email.replace("#", "%23"))
    if days is None:
        assert info["expires"] is None
    else:
        assert before + days * 86400 - 86400 <= info["expires"] <= int(time.time()) + days * 86400 + 86400, info


@pytest.mark.parametrize("expire", ["soon", "-1", "5x", "1.5", "2001-01-01", 1.5, True, "40000", "300y"])
def test_bad_expire_forms_are_400(copr, expire):
    status, answer = copr_gen_key(copr, "badexp#p@copr.copr.test", expire=expire)
    assert status == 400 and "expire" in answer["error"], answer


# Forms copr-keygen's validate_name_email refuses (a "#" is required; before it, after any leading
# "@": word characters, "." and "-"; after it: word characters, ".", "-" and exactly one "@") -- and
# what is never safe in a user id whatever copr-keygen does (control characters).
REFUSED = ["", "#p@copr.test", "@#p@copr.test", "a b#p@copr.test", "a+b#p@copr.test", "a/b#p@copr.test",
           "a#p@x@copr.test", "a#p#q@copr.test", "a#p", "a#p q@copr.test", "a#p@copr.test/x", "a$#p@copr.test",
           "a#p@copr.test\n", "a\n#p@copr.test", "a#<p>@copr.test", "a(b)#p@copr.test", "grp@#p@copr.test",
           "a#p@copr.test;rm", "a#p@copr!test"]
ACCEPTED = ["alice#hello@copr.copr.test", "@copr#ping-pong@copr.copr.test", "a.b-c_d#e.f@g", "a-#-@-", "_#_@_"]
# copr-keygen takes these, Copr never sends them, and we refuse them (README.md, name_email_pattern):
# more than one leading "@", an empty project or domain, an owner or project of dots only, an empty
# domain label, and non-ASCII letters (str.lower() folds some onto ASCII: KELVIN SIGN to "k").
STRICTER = ["@@x#y@z", "a#@", "a#b@", "a#b@.", "a#b@c..d", "a#b@.c", "..#p@c", "a#.@c", "j\u00fcrgen#p@copr.test",
            "\u212aate#p@copr.test", "a#p@copr.t\u0435st"]


@pytest.mark.parametrize("email", REFUSED + STRICTER)
def test_names_copr_keygen_refuses_are_400(copr, email):
    status, answer = copr_gen_key(copr, email)
    assert status == 400 and answer["error"], answer


def _copr_validator():
    """copr-keygen's own validate_name_email, read from a local mirror of fedora-copr/copr (run, not copied)."""
    if not os.path.isdir(MIRROR):
        pytest.skip("no local mirror of fedora-copr/copr")
    source = subprocess.run(["git", "--git-dir", MIRROR, "show", "HEAD:keygen/src/copr_keygen/logic.py"],
                            stdout=subprocess.PIPE, check=True, text=True).stdout
    tree = ast.parse(source)
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "validate_name_email")
    namespace = {"re": __import__("re")}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "copr_keygen/logic.py", "exec"), namespace)
    return namespace["validate_name_email"]


def test_default_pattern_agrees_with_copr_keygen():
    """Every "#" form: our default name_email_pattern accepts exactly what copr-keygen accepts
    (less what no user id may hold: control characters), but for the degenerate forms of STRICTER,
    which copr-keygen takes and we refuse."""
    import re

    from pkgsign import _gnupg
    from pkgsign.config import DEFAULT_EMAIL_PATTERN

    copr_accepts = _copr_validator()
    ours = re.compile(DEFAULT_EMAIL_PATTERN, re.ASCII)
    for email in STRICTER:
        assert copr_accepts(email) and not ours.fullmatch(email), email
    for email in REFUSED + ACCEPTED + ["x#y@copr.test", "Foo#Bar@Copr.Test", "a#b@c.d.e", "_#_@_", "a-#-@-"]:
        if "#" not in email:
            continue

        def accepted(value):
            if not ours.fullmatch(value):
                return False
            try:
                _gnupg.validate_uid_field(value, "email")
            except _gnupg.InvalidInput:
                return False
            return True

        if any(ord(c) < 0x20 for c in email):
            assert not accepted(email)
        else:
            assert accepted(email) == bool(copr_accepts(email)), email


@pytest.mark.parametrize("email", ACCEPTED)
def test_names_copr_keygen_accepts_are_made(copr, email):
    status, answer = copr_gen_key(copr, email)
    assert status in (200, 201) and answer["name_email"] == email, answer
    from urllib.parse import quote

    status, _h, text = copr.request("GET", "/pubkey/" + quote(email, safe="@"))
    assert status == 200 and text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def _burst(copr, source, count, email):
    results = []

    def one():
        body = json.dumps({"name_real": "b", "name_email": email}).encode()
        status, headers, answer = raw_post(copr, "/gen_key", body, {"Content-Type": "application/json"}, source)
        results.append((status, headers.get("Retry-After"), answer))

    threads = [threading.Thread(target=one) for _index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_keygen_burst_from_a_listed_network_waits_in_the_bounded_queue(copr):
    """The anonymous rate is one request per second. Four requests at once from the queue's network:
    one passes, two wait in the queue (its depth) and pass, one finds the queue full: 503, which
    Copr's client retries; never a 429, which it does not."""
    status, _answer = copr_gen_key(copr, "burst#p@copr.copr.test")
    assert status in (200, 201)
    time.sleep(1.1)  # the rate's one request is free again
    results = _burst(copr, "127.0.0.1", 4, "burst#p@copr.copr.test")
    statuses = sorted(status for status, _retry, _answer in results)
    assert 429 not in statuses, results
    assert statuses.count(200) >= 3 and len(statuses) == 4, results
    for status, retry, answer in results:
        if status == 503:
            assert int(retry) >= 1 and "queue is full" in answer["error"], answer
    with open(copr.audit_log) as handle:
        assert any('"queued"' in line for line in handle)


def test_unlisted_clients_keep_the_429(copr):
    time.sleep(1.1)
    results = _burst(copr, "127.0.0.2", 3, "burst#p@copr.copr.test")
    statuses = sorted(status for status, _retry, _answer in results)
    assert statuses.count(429) == 2 and statuses.count(200) == 1, results


def test_queue_depth_must_leave_a_worker(tmp_path):
    from pkgsign.config import ConfigError, load_config

    path = tmp_path / "pkgsign.conf"
    path.write_text("[server]\nstate_dir = s\nserve_workers = 4\n[budget]\nkeygen_queue_from = 10.0.0.0/8\n"
                    "keygen_queue_depth = 4\n")
    with pytest.raises(ConfigError, match="keygen_queue_depth"):
        load_config(str(path))
    path.write_text("[server]\nstate_dir = s\nserve_workers = 4\n[budget]\nkeygen_queue_from = 10.0.0.0/8\n"
                    "keygen_queue_depth = 3\nkeygen_queue_wait = 2m\n")
    config = load_config(str(path))
    assert config.keygen_queue_depth == 3 and config.keygen_queue_wait == 120


def test_case_never_widens_a_token(copr, tmp_path):
    """Token patterns compare without case, like lookups: a token for carol#* gets Carol#P's key
    under any spelling, a token for mallory#* gets it under none (not even for the public key)."""
    copr.add_token("carol", ["keygen", "sign"], ["carol#*@copr.copr.test"])
    copr.add_token("mallory", ["keygen", "sign"], ["mallory#*@copr.copr.test"])
    status, _h, made = copr.request("POST", "/gen_key", {"name_real": "c", "name_email": "Carol#P@copr.copr.test"},
                                    token="carol")
    assert status == 201, made
    status, _h, again = copr.request("POST", "/gen_key", {"name_real": "c", "name_email": "CAROL#P@COPR.COPR.TEST"},
                                     token="carol")
    assert status == 200 and again["fingerprint"] == made["fingerprint"] and again["name_email"] == "Carol#P@copr.copr.test"
    for spelling in ("Carol#P@copr.copr.test", "carol#p@copr.copr.test", "CAROL#P@COPR.COPR.TEST"):
        assert copr.request("GET", "/pubkey/" + spelling.replace("#", "%23"), token="mallory")[0] == 403, spelling
        assert copr.request("POST", "/gen_key", {"name_real": "m", "name_email": spelling}, token="mallory")[0] == 403
        assert copr.request("GET", "/pubkey/" + spelling.replace("#", "%23"), token="carol")[0] == 200
    data = tmp_path / "data.txt"
    data.write_bytes(b"payload\n")
    signed = copr.sign("-u", "cArOl#p@copr.copr.test", "-d", str(data), token="mallory")
    assert signed.returncode != 0 and b"may not use key" in signed.stderr, signed.stderr
    assert not os.path.exists(str(data) + ".asc")
    signed = copr.sign("-u", "cArOl#p@copr.copr.test", "-d", str(data), token="carol")
    assert signed.returncode == 0 and os.path.exists(str(data) + ".asc"), signed.stderr
