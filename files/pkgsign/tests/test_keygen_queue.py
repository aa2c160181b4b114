"""The keygen queue of budget.py (issue 15) without a server: who waits, who gets 429 at once,
and the two bounds (depth, longest wait) that turn a wait into a 503 Copr retries."""

import pytest

from pkgsign.budget import BudgetExceeded, Budgets
from pkgsign.config import load_config
from pkgsign.tokens import RateLimiter


def budgets_for(tmp_path, depth=1, wait="5s"):
    path = tmp_path / "pkgsign.conf"
    path.write_text("[server]\nstate_dir = state\n[budget]\nkeygen_queue_from = 192.0.2.0/24, 2001:db8::/32\n"
                    "keygen_queue_depth = %d\nkeygen_queue_wait = %s\n" % (depth, wait))
    config = load_config(str(path))
    (tmp_path / "state").mkdir(exist_ok=True)
    return Budgets(config, RateLimiter(config.state_dir)), config


def test_only_listed_networks_queue(tmp_path):
    budgets, _config = budgets_for(tmp_path)
    assert budgets.queues("192.0.2.7") and budgets.queues("::ffff:192.0.2.7") and budgets.queues("2001:db8::1")
    assert not budgets.queues("198.51.100.1") and not budgets.queues("-") and not budgets.queues(None)


def test_an_unlisted_client_gets_429_at_once(tmp_path):
    budgets, _config = budgets_for(tmp_path)
    calls = []
    with pytest.raises(BudgetExceeded) as refused:
        budgets.admit("198.51.100.1", lambda: calls.append(1) or 7, "spent; retry in %d s")
    assert refused.value.status == 429 and refused.value.retry_after == 7 and calls == [1]


def test_a_wait_beyond_the_queues_bound_is_503(tmp_path):
    budgets, _config = budgets_for(tmp_path, wait="5s")
    with pytest.raises(BudgetExceeded) as refused:
        budgets.admit("192.0.2.7", lambda: 3600, "spent; retry in %d s")
    assert refused.value.status == 503 and "longer than the keygen queue waits" in refused.value.message


def test_a_full_queue_is_503(tmp_path):
    budgets, _config = budgets_for(tmp_path, depth=1)
    other, _config = budgets_for(tmp_path, depth=1)  # another server process of the instance
    held = other._queue_position()
    assert held is not None
    try:
        with pytest.raises(BudgetExceeded) as refused:
            budgets.admit("192.0.2.7", lambda: 1, "spent; retry in %d s")
        assert refused.value.status == 503 and "queue is full" in refused.value.message
    finally:
        import os

        os.close(held)
    assert budgets._queue_position() is not None  # released: the next one gets the position


def test_a_listed_client_waits_for_the_real_limiter_and_is_charged_once(tmp_path):
    budgets, config = budgets_for(tmp_path, depth=1, wait="10s")
    limiter = budgets.limiter
    rate = (1, 1)  # one per second
    assert limiter.check("addr:192.0.2.7", rate) is None  # spends the one
    told = []
    budgets.admit("192.0.2.7", lambda: limiter.check("addr:192.0.2.7", rate), "spent; retry in %d s", told.append)
    assert len(told) == 1 and told[0] >= 1  # it was queued (and audited by the caller), then admitted
    # The admitted request was charged: the limit is spent again.
    assert limiter.check("addr:192.0.2.7", rate)
