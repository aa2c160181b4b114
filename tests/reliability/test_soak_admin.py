# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Soak (issue 14): concurrent signers, key generations AND token administration through
pkgsign-admin (add, grant, rotate, revoke) against one served instance, over real HTTP on
loopback. At the end the audit chain verifies and accounts for every request the clients saw
answered (one line per answered request, or a count of it in a later line's `suppressed`) and
for every pkgsign-admin decision. Bounded in count: a few hundred requests (PKGSIGN_SOAK=1: more)."""

import json
import threading
import urllib.error
import urllib.request
from collections import Counter

from conftest import assert_consistent, soak_enabled
from pkgsign_testlib import run_admin

ROUNDS = 12 if soak_enabled() else 4          # token life cycles by the admin thread
SIGNERS, SIGNS = (6, 60) if soak_enabled() else (4, 25)   # threads, requests each
GENERATORS, GENS = (3, 20) if soak_enabled() else (2, 8)


def _state(number):
    size = number % 64
    return {"chaining_value": "%02x" % (number % 256) * 32, "byte_count": 64 + size, "tail": "ab" * size}


class Client:
    """Real HTTP requests; every answer is recorded as (operation, status)."""

    def __init__(self, inst):
        self.inst = inst
        self.answered = Counter()
        self.lock = threading.Lock()
        self.errors = []

    def call(self, operation, path, body, secret):
        request = urllib.request.Request(self.inst.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": "Bearer " + secret})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, payload = response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            status, payload = err.code, json.loads(err.read() or b"{}")
        except OSError as err:  # not answered: not counted
            with self.lock:
                self.errors.append((operation, repr(err)))
            return None, None
        with self.lock:
            self.answered[operation, status] += 1
        return status, payload


def test_signers_keygens_and_token_admin_leave_a_complete_verifying_chain(new_instance):
    inst = new_instance()
    inst.start()
    client = Client(inst)
    secret = inst.tokens["client"]
    for number in range(2):
        body = {"name_real": "s", "name_email": "soak%d#p@copr.test" % number}
        status, _payload = client.call("gen_key", "/gen_key", body, secret)
        assert status == 201
    admin_results = Counter()
    stop = threading.Event()

    def signer(index):
        for number in range(SIGNS):
            body = {"key": "soak%d#p@copr.test" % (number % 2), "states": [_state(index * 1000 + number)]}
            status, _payload = client.call("sign", "/sign", body, secret)
            assert status in (200, None), status

    def generator(index):
        for number in range(GENS):
            body = {"name_real": "g", "name_email": "gen%d-%d#p@copr.test" % (index, number)}
            status, _payload = client.call("gen_key", "/gen_key", body, secret)
            assert status in (201, None), status

    def admin():
        def admin_run(*args, expect_ok=True):
            proc = run_admin("token", *args, "--config", inst.config, check=False)
            admin_results["token_" + args[0], "ok" if proc.returncode == 0 else "refused"] += 1
            assert (proc.returncode == 0) == expect_ok, proc.stderr
            return proc.stdout.strip()

        for number in range(ROUNDS):
            token_id = "soak-admin-%d" % number
            first = admin_run("add", "--id", token_id, "--scopes", "sign", "--keys", "soak0#p@copr.test")
            body = {"key": "soak0#p@copr.test", "states": [_state(number)]}
            assert client.call("sign", "/sign", body, first)[0] == 200
            assert client.call("sign", "/sign", dict(body, key="soak1#p@copr.test"), first)[0] == 403
            admin_run("grant", "--id", token_id, "--key", "soak1#p@copr.test")
            assert client.call("sign", "/sign", dict(body, key="soak1#p@copr.test"), first)[0] == 200
            second = admin_run("rotate", "--id", token_id)
            assert client.call("sign", "/sign", body, first)[0] == 401
            assert client.call("sign", "/sign", body, second)[0] == 200
            admin_run("revoke", "--id", token_id)
            assert client.call("sign", "/sign", body, second)[0] == 401
            admin_run("rotate", "--id", token_id, expect_ok=False)  # a revoked token stays revoked
            if stop.is_set():
                break

    threads = [threading.Thread(target=signer, args=(n,)) for n in range(SIGNERS)]
    threads += [threading.Thread(target=generator, args=(n,)) for n in range(GENERATORS)]
    threads.append(threading.Thread(target=admin))
    failures = []

    def guarded(thread):
        original = thread.run

        def run():
            try:
                original()
            except BaseException as err:  # noqa: BLE001 - reported below
                failures.append((thread.name, repr(err)))
                stop.set()
        thread.run = run
        return thread

    for thread in threads:
        guarded(thread).start()
    for thread in threads:
        thread.join(900)
    assert not failures, failures
    assert not client.errors, client.errors[:5]

    verify = run_admin("audit", "verify", "--config", inst.config, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    from pkgsign.config import load_config

    with open(load_config(inst.config).audit_log, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    audited = Counter()
    for line in lines:
        if line.get("operation") in ("sign", "gen_key"):
            status = line.get("status") or {"ok": 200, "created": 201, "exists": 200, "denied": 403}[line["result"]]
            audited[line["operation"], status] += 1 + line.get("suppressed", 0)
        elif line.get("operation", "").startswith("token_"):
            audited[line["operation"], line["result"]] += 1
    seen = Counter(client.answered)
    seen.update(admin_results)
    assert audited == seen, {"audited": dict(audited), "answered": dict(seen)}
    assert len(assert_consistent(inst)) == 2 + GENERATORS * GENS
    print("soak: %d answered requests, %d admin decisions, %d audit lines; chain verifies"
          % (sum(client.answered.values()), sum(admin_results.values()), len(lines)))
