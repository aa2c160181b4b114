# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrency over real HTTP: many callers at once, one key per email, nothing lost."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import assert_consistent, soak_enabled


def _together(count, call):
    """Run ``call(i)`` for i in range(count) in ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def worker(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def _burst_instance(new_instance, burst):
    """An instance whose workers take a burst of ``burst`` requests at once: /gen_key may hold
    serve_workers - reserved_workers of them ([budget], beyond that a 503 at once, which protects
    signing); these tests are about the key store under full concurrency, not that share."""
    inst = new_instance()
    inst.set_option("server", "serve_workers", str(burst + 8))
    inst.set_option("budget", "reserved_workers", "8")
    return inst


def test_twenty_callers_one_email_make_exactly_one_key(new_instance):
    inst = _burst_instance(new_instance, 20)
    inst.start()
    email = "same#project@copr.test"
    results = _together(20, lambda i: inst.request("POST", "/gen_key", {"name_real": "same", "name_email": email}))
    statuses = sorted(status for status, _ignored, _ignored in results)
    assert set(statuses) <= {200, 201}, [body for status, _ignored, body in results if status not in (200, 201)]
    assert statuses.count(201) == 1, statuses
    fingerprints = {body["fingerprint"] for _ignored, _ignored, body in results}
    assert len(fingerprints) == 1
    metadata = assert_consistent(inst)
    assert metadata == {email: fingerprints.pop()}


def test_distinct_emails_at_once_all_get_their_key(new_instance):
    count = 400 if soak_enabled() else 200
    inst = _burst_instance(new_instance, count)
    inst.start()
    started = time.monotonic()
    results = _together(count, lambda i: inst.request(
        "POST", "/gen_key", {"name_real": "user%d" % i, "name_email": "user%d#p@copr.test" % i}))
    elapsed = time.monotonic() - started
    failures = [(status, body) for status, _ignored, body in results if status != 201]
    assert failures == [], failures[:5]
    metadata = assert_consistent(inst)
    assert len(metadata) == count
    assert {body["fingerprint"] for _ignored, _ignored, body in results} == set(metadata.values())
    print("%d concurrent /gen_key (ed25519): %.1f s, %.1f keys/s" % (count, elapsed, count / elapsed))


def _sign_one(inst, key, digest_byte):
    # the hash state after one 64-byte block (any chaining value) and digest_byte % 64 more bytes
    size = digest_byte % 64
    state = {"chaining_value": "%02x" % digest_byte * 32, "byte_count": 64 + size, "tail": "ab" * size}
    status, _ignored, body = inst.request("POST", "/sign", {"key": key, "states": [state]})
    return status, body


def test_signing_while_keys_are_generated(new_instance):
    inst = _burst_instance(new_instance, 180)
    inst.start()
    emails = ["signer%d#p@copr.test" % i for i in range(3)]
    signing_keys = list(emails)
    for email in emails:
        status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "signer", "name_email": email})
        assert status == 201, body
        # Also by fingerprint and key id: those names are looked up in the keyring, not the metadata.
        signing_keys += [body["fingerprint"], body["fingerprint"][-16:]]
    generators, signers = 60, 120

    def call(i):
        if i < generators:
            status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "gen", "name_email": "gen%d#p@copr.test" % i})
            return "gen_key", status, body
        status, body = _sign_one(inst, signing_keys[i % len(signing_keys)], i % 256)
        return "sign", status, body

    results = _together(generators + signers, call)
    failures = [r for r in results if r[1] not in (200, 201)]
    assert failures == [], failures[:5]
    assert sum(1 for r in results if r[0] == "sign" and len(r[2]["signatures"]) == 1) == signers
    assert len(assert_consistent(inst)) == generators + 3
