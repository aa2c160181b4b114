"""copr-keygen compatibility of /gen_key and /pubkey (issue 15): Copr's own call shapes against a
real served instance, for a user project and a group project; the name forms copr-keygen refuses;
JSON without its Content-Type; gpg's expire forms; the bounded keygen queue."""

import ast
import http.client
import json
import os
import random
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
# "@": word characters, "." and "-"; after it: word characters, ".", "-" and exactly one "@").
REFUSED = ["", "#p@copr.test", "@#p@copr.test", "a b#p@copr.test", "a+b#p@copr.test", "a/b#p@copr.test",
           "a#p@x@copr.test", "a#p#q@copr.test", "a#p", "a#p q@copr.test", "a#p@copr.test/x", "a$#p@copr.test",
           "a#<p>@copr.test", "a(b)#p@copr.test", "grp@#p@copr.test", "a#p@copr.test;rm", "a#p@copr!test",
           "cafe\u0301#p@copr.test"]  # a combining mark is no word character: copr-keygen refuses NFD
# What copr-keygen takes and no user id may hold (README.md, name_email_pattern): control characters
# (its "$" lets one trailing newline through) and look-alikes of "(" and ")" that are word characters.
UID_REFUSED = ["a#p@copr.test\n", "a\n#p@copr.test", "a\u2474#p@copr.test", "\u1438a\u1433#p@copr.test",
               "a#\u3220@copr.test"]
ACCEPTED = ["alice#hello@copr.copr.test", "@copr#ping-pong@copr.copr.test", "a.b-c_d#e.f@g", "a-#-@-", "_#_@_"]
# copr-keygen takes these and Copr never sends most of them (several leading "@", an empty project
# or domain, dots only, an empty domain label); Copr's project names are Unicode (its forms.py:
# ^[\w.-]+$), so "caf\u00e9" is a project that needs its key. A name is kept as given: KELVIN SIGN
# is not "K", the Cyrillic "\u0435" not "e" (test_redteam_compat.py: they never reach those keys).
COPR_ONLY = ["@@x#y@z", "a#@", "a#b@", "a#b@.", "a#b@c..d", "a#b@.c", "..#p@c", "a#.@c", "j\u00fcrgen#p@copr.test",
             "\u212aate#p@copr.test", "a#p@copr.t\u0435st", "caf\u00e9#caf\u00e9@copr.test", "\u0646\u0627\u0645#p@x",
             "\u4e00\u4e8c#\u00b2@copr.test", ".tmp-x#p@c", "deleting-x#p@c"]


@pytest.mark.parametrize("email", REFUSED + UID_REFUSED)
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


# The generated names' alphabet: the form's punctuation, ASCII, letters and digits of other scripts
# (Latin-1, Arabic, CJK, superscript two, a Roman numeral), combining marks, KELVIN SIGN, Cyrillic,
# word characters that look like brackets, white space, controls, bidi and format characters.
ALPHABET = ("@#.-_" * 6 + "abcXYZ019" * 2 + "\u00e9\u00fc\u00df\u0646\u4e00\u00b2\u2167\u0661"
            + "\u0301\u0308\u212a\u0435\u0430" + "\u2474\u1438\u3220" + " \t\n\x00\x7f\u0085\u202e\u200b\ufeff"
            + "+/<>()$!")
# Mostly what copr-keygen takes in a part, with a few of everything else.
WORDLIKE = "._-" * 3 + "abcXYZ019\u00e9\u00fc\u0646\u4e00\u00b2\u212a\u0435\u2474\u1438" * 3 + "#@ \n<\u202e\u0301"
# The user-id rule's documented reasons (_gnupg.validate_uid_field): what it refuses and copr-keygen takes.
UID_REASONS = ("control characters", "invisible, bidi or control", "look like < > ( )")


def _generated_names(count, seed=15):
    rng = random.Random(seed)

    def part(low, high, alphabet=ALPHABET):
        return "".join(rng.choice(alphabet) for _index in range(rng.randint(low, high)))

    names = []
    for index in range(count):
        if index % 2:
            names.append(part(0, 14))
        else:  # copr-keygen's shape, its parts mostly of characters it takes: near the boundary of its rule
            alphabet = WORDLIKE if index % 4 else ALPHABET
            names.append("@" * rng.choice((0, 0, 1, 2)) + part(0, 5, alphabet) + "#" + part(0, 5, alphabet) + "@"
                         + part(0, 5, alphabet))
    return names


def _uid_refusal(value):
    from pkgsign import _gnupg

    try:
        _gnupg.validate_uid_field(value, "email")
    except _gnupg.InvalidInput as err:
        return str(err)
    return None


def _without_dollar_newlines(email):
    """copr-keygen matches owner and project with "^...$", and "$" also matches before a final
    newline: ``email`` without such a newline at the end of either part."""
    owner, _sep, rest = email.partition("#")
    return owner[:-1 if owner.endswith("\n") else None] + "#" + rest[:-1 if rest.endswith("\n") else None]


def test_default_pattern_agrees_with_copr_keygen():
    """Over 40 000 generated names and every list above: the default name_email_pattern takes a
    "#" form iff copr-keygen's validate_name_email does (but for the newline its "$" lets through
    at the end of the owner or of the name); with the user-id rule, /gen_key takes exactly what copr-keygen takes less what no user
    id may hold, for one of the documented reasons. Names without "#" are plain ASCII addresses, as
    before."""
    from pkgsign.config import DEFAULT_EMAIL_PATTERN

    copr_accepts = _copr_validator()
    ours = re.compile(DEFAULT_EMAIL_PATTERN, re.ASCII)
    plain = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+")
    counts = {"copr accepts": 0, "both accept": 0, "user-id rule": 0, "plain": 0}
    for email in _generated_names(40000) + REFUSED + UID_REFUSED + ACCEPTED + COPR_ONLY:
        pattern_accepts = bool(ours.fullmatch(email))
        if "#" not in email:
            assert pattern_accepts == bool(plain.fullmatch(email)), email
            counts["plain"] += pattern_accepts
            continue
        theirs = bool(copr_accepts(email))
        counts["copr accepts"] += theirs
        if pattern_accepts != theirs:
            assert theirs and _without_dollar_newlines(email) != email, email
            assert ours.fullmatch(_without_dollar_newlines(email)), email
        refusal = _uid_refusal(email)
        if pattern_accepts and refusal is None:
            assert theirs, email
            counts["both accept"] += 1
        elif theirs:
            assert refusal and any(reason in refusal for reason in UID_REASONS), (email, refusal)
            counts["user-id rule"] += 1
    # the generator reaches every branch, many times
    assert counts["both accept"] > 2000 and counts["user-id rule"] > 1000 and counts["plain"] > 20, counts
    for email in COPR_ONLY + ACCEPTED:
        assert copr_accepts(email) and ours.fullmatch(email) and _uid_refusal(email) is None, email
    for email in UID_REFUSED:
        assert copr_accepts(email) and _uid_refusal(email), email


@pytest.mark.parametrize("hostile", ["@" * 255 + "!", "a" * 255 + "!", "a#" + "a" * 253 + "!", "a#" + "@" * 254,
                                     "a" * 127 + "#" * 129, "a." * 127 + "@\n", "\u00e9" * 255 + "#",
                                     "@" * 128 + "a" * 127 + "$", "a#" + "a." * 126 + "@@"])
def test_default_pattern_is_linear_on_hostile_input(hostile):
    """256 characters built to make a backtracking pattern try every split: a thousand matches take
    milliseconds (a pattern with nested or overlapping repeats takes ages on some of them)."""
    from pkgsign.config import DEFAULT_EMAIL_PATTERN

    ours = re.compile(DEFAULT_EMAIL_PATTERN, re.ASCII)
    started = time.perf_counter()
    for _index in range(1000):
        ours.fullmatch(hostile)
    assert time.perf_counter() - started < 2.0, hostile


def test_copr_keygen_on_unicode_spellings():
    """What copr-keygen does with the spellings the security tests (test_redteam_compat.py) use: it
    takes a precomposed "\u00e9" and refuses "e" + U+0301 (a combining mark is no word character);
    it takes KELVIN SIGN and "K" as two names, and both Hangul spellings (precomposed and jamo, all
    word characters). It folds nothing: neither do we."""
    copr_accepts = _copr_validator()
    assert copr_accepts("caf\u00e9#p@copr.test") and not copr_accepts("cafe\u0301#p@copr.test")
    assert copr_accepts("\u212aate#p@copr.test") and copr_accepts("Kate#p@copr.test")
    assert copr_accepts("\ud55c#p@copr.test") and copr_accepts("\u1112\u1161\u11ab#p@copr.test")


@pytest.mark.parametrize("email", ACCEPTED + COPR_ONLY)
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
