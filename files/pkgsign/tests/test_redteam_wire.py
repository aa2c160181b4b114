"""Red team, the wire: a `sign`-scoped token (restricted to one key pattern) throws malformed,
hostile and borderline requests at POST /sign. Whatever it sends:

* the answer is 200 or a 4xx with a JSON message, never a 500, and every 4xx leaves an audit line;
* a 200 carries only v4 binary/text signatures whose hashed area is exactly the server's own
  (version 4, type 0x00/0x01, the key's algorithm, the requested hash, creation time = now,
  issuer fingerprint = the signing subkey; nothing else), and the digest signed is the hash of
  the client's bytes followed by that area and the v4 trailer (checked with hashlib on the
  bytes behind honest states);
* a token bound to a TLS client certificate is not unlocked by a request header carrying that
  certificate, through the WSGI application or over real HTTP to ``pkgsign-admin serve``.

Real gpg-agent signing (RSA and EdDSA); hypothesis drives the fuzzing.
"""

import base64
import hashlib
import json
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkgsign_testlib import audit_count, run_admin
from pkgsign import _gnupg
from pkgsign.hashstate import ALGORITHMS, MAX_BYTE_COUNT, Hasher
from pkgsign.wire import HASH_IDS

EXAMPLES = int(os.environ.get("PKGSIGN_REDTEAM_EXAMPLES", "150"))
ED, RSA = "red#ed@copr.test", "red#rsa@copr.test"


@pytest.fixture(scope="module")
def wire_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam-wire")
    run_admin("init", str(root), "--algorithm", "ed25519")
    import configparser

    parser = configparser.ConfigParser()
    parser.read(root / "pkgsign.conf")
    if not parser.has_section("signing"):
        parser.add_section("signing")
    parser.set("signing", "allowed_digests", "sha224, sha256, sha384, sha512")
    parser.set("signing", "max_digests_per_request", "50")
    with open(root / "pkgsign.conf", "w") as handle:
        parser.write(handle)
    from pkgsign.app import create_app
    from pkgsign.config import load_config
    from pkgsign.tokens import add_token

    config = load_config(str(root / "pkgsign.conf"))
    admin = add_token(config.tokens_file, "wire-admin", ["sign", "keygen", "admin"], ["*"])
    restricted = add_token(config.tokens_file, "wire-red", ["sign"], ["red#*@copr.test"], rate="100000/1")
    app = create_app(config)
    app.testing = True
    client = app.test_client()
    records = {}
    for email, extra in ((ED, {}), (RSA, {"key_length": 2048})):
        made = client.post("/gen_key", json=dict({"name_real": "red", "name_email": email}, **extra),
                           headers={"Authorization": "Bearer " + admin})
        assert made.status_code == 201, made.get_json()
        records[email] = client.get("/keys/" + email.replace("#", "%23"),
                                    headers={"Authorization": "Bearer " + admin}).get_json()
    yield client, {"Authorization": "Bearer " + restricted}, config, records
    _gnupg.GnuPG(config.gnupg_home, create=False).kill_agent()


def parse_signature(packet):
    """(hashed area, hashed subpackets [(type, body)], unhashed bytes, left16) of one v4 packet."""
    if packet[0] == 0x88:
        body = packet[2:2 + packet[1]]
        assert len(body) == packet[1]
    else:
        assert packet[0] == 0x89
        size = struct.unpack(">H", packet[1:3])[0]
        body = packet[3:3 + size]
        assert len(body) == size
    hashed_len = struct.unpack(">H", body[4:6])[0]
    area = body[:6 + hashed_len]
    subpackets, pos = [], 6
    while pos < len(area):
        length = area[pos]
        assert length < 192
        subpackets.append((area[pos + 1], area[pos + 2:pos + 1 + length]))
        pos += 1 + length
    unhashed_len = struct.unpack(">H", body[6 + hashed_len:8 + hashed_len])[0]
    unhashed = body[8 + hashed_len:8 + hashed_len + unhashed_len]
    left16 = body[8 + hashed_len + unhashed_len:10 + hashed_len + unhashed_len]
    return area, subpackets, unhashed, left16


def check_answer(response, config, before, request_body, records, sent_at, data=None):
    """The invariants every answer must keep (see the module docstring)."""
    status = response.status_code
    assert status != 500 and status < 500, (request_body, response.get_data(as_text=True))
    payload = response.get_json(silent=True)
    if status != 200:
        assert 400 <= status < 500 and isinstance(payload, dict) and payload.get("error"), (status, payload)
        assert audit_count(config) > before, ("refusal not audited", status, payload)
        return None
    record = records[payload["key"]] if payload["key"] in records else \
        next(r for r in records.values() if r["fingerprint"] == payload["fingerprint"])
    algo = payload["digest_algo"]
    assert algo in ALGORITHMS and payload["sig_type"] in ("binary", "text")
    assert abs(payload["creation_time"] - sent_at) <= 5
    for index, item in enumerate(payload["signatures"]):
        packet = base64.b64decode(item["signature"])
        area, subpackets, unhashed, left16 = parse_signature(packet)
        assert area[0] == 4 and area[1] == {"binary": 0, "text": 1}[payload["sig_type"]]
        assert area[2] == record["pubkey_algo"] and area[3] == HASH_IDS[algo]
        assert subpackets == [(2, struct.pack(">I", payload["creation_time"])),
                              (33, b"\x04" + bytes.fromhex(record["signing_fingerprint"]))], subpackets
        assert unhashed == bytes([9, 16]) + bytes.fromhex(record["signing_key_id"])
        assert left16 == bytes.fromhex(item["digest"])[:2]
        if data is not None:
            expected = hashlib.new(algo, data[index] + area + b"\x04\xff" + struct.pack(">I", len(area))).hexdigest()
            assert item["digest"] == expected
    return payload


def post(client, headers, body=None, raw=None, content_type="application/json"):
    if raw is not None:
        return client.post("/sign", data=raw, headers=dict(headers, **{"Content-Type": content_type}))
    return client.post("/sign", json=body, headers=headers)


# -- strategies ------------------------------------------------------------------------------

def hex_of(n):
    return st.binary(min_size=n, max_size=n).map(bytes.hex)


COUNTS = st.one_of(
    st.integers(min_value=0, max_value=4096),
    st.sampled_from([MAX_BYTE_COUNT - 1, MAX_BYTE_COUNT, MAX_BYTE_COUNT + 1, (1 << 61) - 1, 1 << 61, (1 << 64) - 1,
                     1 << 64, (1 << 125), (1 << 128) - 1, -1, -(1 << 63), 2 ** 1000]),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.text(max_size=8), st.just([0]))
CHAINING = st.one_of(hex_of(32), hex_of(64), hex_of(28), hex_of(48), st.binary(max_size=70).map(bytes.hex),
                     hex_of(32).map(str.upper), st.text(max_size=70), st.integers(), st.none(),
                     hex_of(32).map(lambda h: h[:-1] + "g"), hex_of(32).map(lambda h: " " + h[1:]),
                     hex_of(32).map(lambda h: "0x" + h[2:]))
TAILS = st.one_of(st.binary(max_size=140).map(bytes.hex), st.text(max_size=20), st.none(),
                  st.binary(max_size=8).map(lambda b: b.hex().upper()))
STATE = st.fixed_dictionaries({"chaining_value": CHAINING, "byte_count": COUNTS, "tail": TAILS},
                              optional={"hashed_area": st.text(max_size=10), "digest": hex_of(32),
                                        "sig_type": st.just("0x18"), "algo": st.just("sha1")})


def consistent_state(algo):
    """A state the server accepts: any chaining value, a byte count and the matching tail."""
    block, size = ALGORITHMS[algo][0], ALGORITHMS[algo][1]
    return st.tuples(st.binary(min_size=size, max_size=size),
                     st.one_of(st.integers(0, 1 << 20), st.integers(MAX_BYTE_COUNT - 300, MAX_BYTE_COUNT))
                     ).flatmap(lambda t: st.binary(min_size=t[1] % block, max_size=t[1] % block).map(
                         lambda tail: {"chaining_value": t[0].hex(), "byte_count": t[1], "tail": tail.hex()}))


ALGOS = st.one_of(st.sampled_from(["sha256", "sha384", "sha512", "sha224", "SHA256", "Sha512", "sha1", "md5",
                                   "sha-256", "SHA2-256", "sha256 ", "\u017fha256", "sha256\x00", "", "ripemd160",
                                   "sha3-256"]), st.none(), st.integers(), st.booleans(), st.lists(st.just("sha256")))
SIG_TYPES = st.one_of(st.sampled_from(["binary", "text", "BINARY", "Text", "0x18", "subkey_binding", "standalone",
                                       "certification", "revocation", "timestamp", "0", "1", "binary\x00", ""]),
                      st.integers(min_value=-1, max_value=0x40), st.none(), st.booleans())
KEYS = st.one_of(st.sampled_from([ED, RSA, ED.upper(), "red#ED@copr.test", "nobody#x@copr.test", "other@copr.test",
                                  "red#*@copr.test", "red#ed@copr.test/../x", "red#ed@copr.test\x00", "*", "",
                                  "0x" + "0" * 16, "0" * 40, "red#ed@copr.test" * 20]),
                 st.text(max_size=40), st.integers(), st.none(), st.lists(st.just(ED)))
EXTRA = st.dictionaries(st.sampled_from(["hashed_area", "digests", "creation_time", "notations", "subpackets",
                                         "sig_class", "version", "trailer", "prepare", "key_id", "hash"]),
                        st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=2)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(key=KEYS, algo=ALGOS, sig_type=SIG_TYPES, states=st.one_of(st.lists(STATE, max_size=3), st.none(),
       st.text(max_size=5), STATE), armor=st.one_of(st.booleans(), st.none(), st.integers(0, 2)), extra=EXTRA,
       drop=st.sets(st.sampled_from(["digest_algo", "sig_type", "armor"])))
def test_fuzzed_requests_never_500_and_are_audited(wire_lab, key, algo, sig_type, states, armor, extra, drop):
    client, headers, config, records = wire_lab
    body = dict({"key": key, "digest_algo": algo, "sig_type": sig_type, "states": states, "armor": armor}, **extra)
    for name in drop:
        body.pop(name)
    before = audit_count(config)
    check_answer(post(client, headers, body), config, before, body, records, time.time())


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), algo=st.sampled_from(sorted(ALGORITHMS)), key=st.sampled_from([ED, RSA]),
       sig_type=st.sampled_from(["binary", "text"]), count=st.integers(1, 4))
def test_any_consistent_state_yields_only_the_server_s_data_signature(wire_lab, data, algo, key, sig_type, count):
    """Arbitrary chaining values, counts up to the 2^60 limit and their tails: signed, but only
    ever as the server's hashed area (the suffix is the server's, whatever came before)."""
    client, headers, config, records = wire_lab
    states = [data.draw(consistent_state(algo)) for _index in range(count)]
    body = {"key": key, "digest_algo": algo, "sig_type": sig_type, "states": states}
    before = audit_count(config)
    payload = check_answer(post(client, headers, body), config, before, body, records, time.time())
    assert payload is not None, "a consistent state was refused"


@settings(max_examples=max(20, EXAMPLES // 3), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(blobs=st.lists(st.binary(max_size=600), min_size=1, max_size=3), algo=st.sampled_from(sorted(ALGORITHMS)),
       key=st.sampled_from([ED, RSA]), sig_type=st.sampled_from(["binary", "text"]))
def test_honest_states_sign_hash_of_data_then_server_area(wire_lab, blobs, algo, key, sig_type):
    client, headers, config, records = wire_lab
    states = [Hasher(algo).update(blob).state().to_json() for blob in blobs]
    body = {"key": key, "digest_algo": algo, "sig_type": sig_type, "states": states, "armor": True}
    payload = check_answer(post(client, headers, body), config, audit_count(config), body, records, time.time(),
                           data=blobs)
    assert payload is not None


RAW_BODIES = [
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": NaN, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": Infinity, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": -Infinity, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 1e400, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0.0, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 1' + b"0" * 5000 + b', "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "byte_count": -64, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "sig_type": "binary", "sig_type": "x", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "key": "other@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": "\\ud800"}]}',
    b'{"key": "red#ed@copr.test\\ud800", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": "", "\\u0074ail": "00"}]}',
    b'\xef\xbb\xbf{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]',
    b'[{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}]',
    b'{"key": "red#ed@copr.test", "states": ' + b"[" * 100000 + b"]" * 100000 + b'}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}], "\xff": 1}',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]}\x00',
    b'{"key": "red#ed@copr.test", "states": [{"chaining_value": "%s", "byte_count": 0, "tail": ""}]} {}',
    b'',
    b'null',
]


@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_raw_json_tricks_are_4xx_and_audited(wire_lab, raw):
    """NaN/Infinity/huge numbers, duplicated keys (the last wins, and it is validated), lone
    surrogates, a BOM, truncated or trailing data, deep nesting: a 4xx or an ordinary data
    signature, never a 500; a duplicated key never smuggles a second value past the checks."""
    client, headers, config, records = wire_lab
    iv = Hasher("sha256").state().chaining_value.hex().encode()
    body = raw.replace(b"%s", iv)
    before = audit_count(config)
    response = post(client, headers, raw=body)
    payload = check_answer(response, config, before, body, records, time.time())
    if payload is not None:  # only the duplicated sig_type/key cases parse; the last value counts
        assert b'"key": "other@copr.test"' not in body and payload["sig_type"] == "binary"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=utf-16"])
def test_other_content_types_are_4xx(wire_lab, content_type):
    client, headers, config, records = wire_lab
    iv = Hasher("sha256").state().chaining_value.hex()
    raw = json.dumps({"key": ED, "states": [{"chaining_value": iv, "byte_count": 0, "tail": ""}]}).encode()
    before = audit_count(config)
    response = post(client, headers, raw=raw, content_type=content_type)
    check_answer(response, config, before, raw, records, time.time())


# -- a token bound to a client certificate --------------------------------------------------

FAKE_DER = b"\x30\x82\x01\x00" + bytes(range(256))
FAKE_PEM = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % base64.b64encode(FAKE_DER).decode()


def test_a_header_does_not_stand_in_for_the_client_certificate(wire_lab):
    """The certificate comes from mod_ssl (SSL_CLIENT_CERT in the WSGI environment). A client
    that sends it as a header (any spelling) reaches the application as HTTP_* and is refused."""
    client, _headers, config, records = wire_lab
    from pkgsign.tokens import add_token

    secret = add_token(config.tokens_file, "wire-bound", ["sign"], ["red#*@copr.test"],
                       client_cert_sha256=hashlib.sha256(FAKE_DER).hexdigest())
    iv = Hasher("sha256").state().chaining_value.hex()
    body = {"key": ED, "states": [{"chaining_value": iv, "byte_count": 0, "tail": ""}]}
    folded = FAKE_PEM.replace("\n", " ")
    auth = {"Authorization": "Bearer " + secret}
    for name in ("SSL_CLIENT_CERT", "SSL-Client-Cert", "X-SSL-Client-Cert", "X-Client-Cert", "Client-Cert"):
        before = audit_count(config)
        response = client.post("/sign", json=body, headers=dict(auth, **{name: folded}))
        assert response.status_code == 403, (name, response.get_json())
        assert audit_count(config) > before
    # control: the environment variable mod_ssl sets is what unlocks it
    response = client.post("/sign", json=body, headers=auth, environ_base={"SSL_CLIENT_CERT": FAKE_PEM})
    assert response.status_code == 200, response.get_json()


def test_a_header_does_not_unlock_a_bound_token_over_http(instance):
    """The same over a real socket to `pkgsign-admin serve` (werkzeug), which an operator might
    run behind a proxy: no request header becomes SSL_CLIENT_CERT."""
    import http.client
    from urllib.parse import urlparse

    from pkgsign_testlib import ED_KEY
    from pkgsign.tokens import add_token

    secret = add_token(instance.tokens_file, "wire-bound-http", ["sign"], ["*"],
                       client_cert_sha256=hashlib.sha256(FAKE_DER).hexdigest(), replace=True)
    iv = Hasher("sha256").state().chaining_value.hex()
    body = json.dumps({"key": ED_KEY, "states": [{"chaining_value": iv, "byte_count": 0, "tail": ""}]})
    url = urlparse(instance.url)
    folded = FAKE_PEM.replace("\n", " ")
    for name in ("SSL_CLIENT_CERT", "SSL-CLIENT-CERT", "Ssl_Client_Cert"):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.request("POST", "/sign", body=body, headers={"Authorization": "Bearer " + secret, name: folded,
                                                          "Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        assert response.status == 403, (name, response.status, answer)
