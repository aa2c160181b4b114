"""Budgets on work (issue 14): key generations per token, signatures per token charged per digest,
and a cap on concurrent RSA key generations per instance with 503 + Retry-After instead of a pile."""

import json
import threading

import pytest

from pkgsign_testlib import Instance, run_admin
from pkgsign.budget import BudgetExceeded, Budgets
from pkgsign.config import load_config
from pkgsign.tokens import RateLimiter


def _instance(tmp_path, options):
    run_admin("init", str(tmp_path / "i"), "--algorithm", "ed25519")
    inst = Instance(tmp_path / "i")
    inst.tokens["client"] = open(str(tmp_path / "i" / "client.token")).read().strip()
    inst.set_option("audit", "checkpoint_interval", "0")
    for (section, key), value in options.items():
        inst.set_option(section, key, value)
    inst.start()
    return inst


def test_keygen_budget_per_token(tmp_path):
    inst = _instance(tmp_path, {("budget", "keygen"): "2/3600"})
    try:
        statuses = []
        for number in range(3):
            status, headers, body = inst.request("POST", "/gen_key", {"name_real": "b", "name_email": "p%d#b@copr.test"
                                                                      % number})
            statuses.append(status)
        assert statuses == [201, 201, 429], body
        assert int(headers["Retry-After"]) > 0 and "key generation budget" in body["error"]
        # A key that exists costs nothing: still 200.
        status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "b", "name_email": "p0#b@copr.test"})
        assert status == 200, body
        refused = [json.loads(line) for line in open(inst.audit_log)][-2]
        assert (refused["operation"], refused["result"], refused["status"]) == ("gen_key", "refused", 429)
    finally:
        inst.stop()


def _two_rsa_at_once(inst):
    barrier = threading.Barrier(2)
    results = []

    def gen(number):
        barrier.wait()
        results.append(inst.request("POST", "/gen_key", {"name_real": "r", "name_email": "r%d#c@copr.test" % number,
                                                         "algorithm": "rsa2048"}))

    threads = [threading.Thread(target=gen, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results, key=lambda result: result[0])


def test_concurrent_rsa_generations_are_capped(tmp_path):
    inst = _instance(tmp_path, {("budget", "concurrent_keygen"): "1", ("budget", "keygen_wait"): "0",
                                ("keygen", "generation_race"): "1"})
    try:
        (first, _h1, body1), (second, headers, body2) = _two_rsa_at_once(inst)
        assert (first, second) == (201, 503), (body1, body2)
        assert int(headers["Retry-After"]) >= 5 and "at once" in body2["error"]
    finally:
        inst.stop()


def test_capped_generation_waits_for_a_slot(tmp_path):
    inst = _instance(tmp_path, {("budget", "concurrent_keygen"): "1", ("budget", "keygen_wait"): "60s",
                                ("keygen", "generation_race"): "1"})
    try:
        assert [status for status, _headers, _body in _two_rsa_at_once(inst)] == [201, 201]
    finally:
        inst.stop()


def test_signature_budget_is_charged_per_digest(tmp_path):
    run_admin("init", str(tmp_path / "j"), "--algorithm", "ed25519")
    conf = str(tmp_path / "j" / "pkgsign.conf")
    with open(conf, "a") as handle:
        handle.write("\n[budget]\nsignatures = 10/60\n")
    budgets = Budgets(load_config(conf), RateLimiter(str(tmp_path / "j")))
    budgets.charge_signatures("ci", 4)
    budgets.charge_signatures("ci", 4)
    with pytest.raises(BudgetExceeded) as refused:
        budgets.charge_signatures("ci", 4)
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    budgets.charge_signatures("other", 10)  # per token
    with pytest.raises(BudgetExceeded, match="exceed the budget"):
        budgets.charge_signatures("big", 11)


def test_signature_budget_over_http(tmp_path):
    inst = _instance(tmp_path, {("budget", "signatures"): "3/3600"})
    try:
        status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "s", "name_email": "s#b@copr.test"})
        assert status == 201, body
        data = tmp_path / "data.txt"
        data.write_text("budget")
        runs = [inst.sign("-u", "s#b@copr.test", "-d", str(data)) for _number in range(4)]
        assert [run.returncode for run in runs[:3]] == [0, 0, 0], runs[0].stderr
        assert runs[3].returncode != 0 and b"budget" in runs[3].stderr, runs[3].stderr
        refused = [json.loads(line) for line in open(inst.audit_log)][-1]
        assert (refused["operation"], refused["result"], refused["status"]) == ("sign", "refused", 429)
    finally:
        inst.stop()


def _config(tmp_path, text):
    path = tmp_path / "pkgsign.conf"
    path.write_text("[server]\nstate_dir = %s\n%s" % (tmp_path / "state", text))
    return load_config(str(path))


def test_gen_key_holds_at_most_its_share_of_the_workers(tmp_path):
    """A /gen_key request holds a worker for its whole life (queue, slot, generation): at most
    serve_workers - reserved_workers of them per process; one more is a 503 with Retry-After at
    once, and a worker given back can be taken again."""
    config = _config(tmp_path, "serve_workers = 4\n[budget]\nreserved_workers = 1\n")
    budgets = Budgets(config, RateLimiter(str(tmp_path / "state" / "ratelimit")))
    for _number in range(3):
        budgets.take_keygen_worker()
    with pytest.raises(BudgetExceeded) as refused:
        budgets.take_keygen_worker()
    assert refused.value.status == 503 and refused.value.retry_after >= 5 and "3 key generation" in refused.value.message
    budgets.free_keygen_worker()
    budgets.take_keygen_worker()


def test_reserved_workers_are_validated(tmp_path):
    from pkgsign.config import ConfigError

    assert _config(tmp_path, "").reserved_workers == 4  # auto: a quarter of the default 16
    assert _config(tmp_path, "serve_workers = 2\n").reserved_workers == 1
    assert _config(tmp_path, "serve_workers = 1\n").reserved_workers == 0
    assert _config(tmp_path, "serve_workers = 8\n[budget]\nreserved_workers = 0\n").reserved_workers == 0
    for bad in ("reserved_workers = 8", "reserved_workers = -1", "reserved_workers = some"):
        with pytest.raises(ConfigError, match="reserved_workers"):
            _config(tmp_path, "serve_workers = 8\n[budget]\n%s\n" % bad)
    # the keygen queue's waiters hold workers of the keygen share: it must fit in it
    with pytest.raises(ConfigError, match="keygen_queue_depth"):
        _config(tmp_path, "serve_workers = 8\n[budget]\nreserved_workers = 2\nkeygen_queue_from = 10.0.0.0/8\n"
                          "keygen_queue_depth = 7\n")
    assert _config(tmp_path, "serve_workers = 8\n[budget]\nreserved_workers = 2\nkeygen_queue_from = 10.0.0.0/8\n"
                             "keygen_queue_depth = 6\n").keygen_queue_depth == 6
