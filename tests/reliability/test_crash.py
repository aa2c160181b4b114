# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kill -9 of the server while it generates keys and signs, then restart on the same state:
nothing half-made is visible, readiness comes back, nothing answered 201 is lost, the audit
chain still verifies."""

import http.client
import json
import os
import threading
import time
import urllib.request

import pytest

from conftest import assert_consistent, soak_enabled
from pkgsign_testlib import run_admin

ROUNDS = 6 if soak_enabled() else 2


def _fire(inst, make_body, path, stop, answered, workers=6):
    """Keep ``workers`` threads sending requests until ``stop`` is set; record answers."""
    counter = iter(range(10 ** 9))
    lock = threading.Lock()

    def loop():
        while not stop.is_set():
            with lock:
                number = next(counter)
            try:
                status, _ignored, body = inst.request("POST", path, make_body(number))
            except (OSError, http.client.HTTPException):
                continue  # the connection died with the server (even mid-answer): no promise
            answered.append((number, status, body))

    threads = [threading.Thread(target=loop, daemon=True) for _ignored in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def _wait_ready(inst, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(inst.url + "/health/ready", timeout=10) as response:
                body = json.loads(response.read())
                if response.status == 200 and body["ready"]:
                    return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("not ready after restart")


@pytest.mark.parametrize("kill", ["server", "group"])
def test_kill9_during_key_generation(new_instance, kill):
    inst = new_instance()
    inst.start()
    promised = {}
    for round_number in range(ROUNDS):
        stop, answered = threading.Event(), []
        threads = _fire(inst, lambda n, r=round_number: {
            "name_real": "crash", "name_email": "k%d-%d#p@copr.test" % (r, n), "algorithm": "rsa2048"},
            "/gen_key", stop, answered)
        deadline = time.time() + 30
        while sum(1 for _ignored, status, _ignored in answered if status == 201) < 3 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # land the kill in the middle of further generations
        inst.kill9() if kill == "server" else inst.kill9_group()
        stop.set()
        for thread in threads:
            thread.join(30)
        errors = [(status, body) for _ignored, status, body in answered if status not in (200, 201)]
        assert errors == [], errors[:3]
        for _ignored, status, body in answered:
            if status == 201:
                promised[body["name_email"]] = body["fingerprint"]
        assert promised, "no key was made before the kill"
        interrupted = [name for name in os.listdir(os.path.join(inst.root, "pending")) if not name.startswith(".")]
        print("round %d (%s): %d answered 201 so far, %d generation(s) interrupted"
              % (round_number, kill, len(promised), len(interrupted)))
        inst.start()
        _wait_ready(inst)
        metadata = assert_consistent(inst)
        lost = {email: fpr for email, fpr in promised.items() if metadata.get(email) != fpr}
        assert lost == {}, "answered 201 but gone after the restart: %s" % lost
    # A recovered server keeps working: a new key, and an interrupted email can be asked for again.
    status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "after", "name_email": "after#p@copr.test"})
    assert status == 201, body
    assert run_admin("audit", "verify", "--config", inst.config, check=False).returncode == 0


def _state(n, i):
    """A hash state of 64 * (n + 1) + i bytes (any chaining value is a possible one)."""
    return {"chaining_value": "%064x" % (n * 1000 + i), "byte_count": 64 * (n + 1) + i, "tail": "00" * i}


def test_kill9_during_signing(new_instance):
    inst = new_instance()
    inst.start()
    key = "signer#p@copr.test"
    status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "signer", "name_email": key})
    assert status == 201, body
    for _ignored in range(ROUNDS + 1):
        stop, answered = threading.Event(), []
        threads = _fire(inst, lambda n: {"key": key, "states": [_state(n, i) for i in range(20)]},
                        "/sign", stop, answered, workers=8)
        deadline = time.time() + 30
        while len(answered) < 10 and time.time() < deadline:
            time.sleep(0.02)
        inst.kill9()
        stop.set()
        for thread in threads:
            thread.join(30)
        assert answered and all(status == 200 for _ignored, status, _ignored in answered), \
            [a for a in answered if a[1] != 200][:3]
        inst.start()
        _wait_ready(inst)
        assert_consistent(inst)
        verify = run_admin("audit", "verify", "--config", inst.config, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        status, _ignored, body = inst.request("POST", "/sign", {"key": key, "states": [
            {"chaining_value": "00" * 32, "byte_count": 0, "tail": ""}]})
        assert status == 200, body
