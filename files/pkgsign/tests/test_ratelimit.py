"""Rate limits shared by every process of one instance: GCRA state in <state_dir>/ratelimit,
one flock-protected file per key, checked with real OS processes and real servers."""

import fcntl
import hashlib
import logging
import os
import stat
import struct
import subprocess
import threading
import time

import pytest
from pkgsign_testlib import ED_KEY, PYTHON, Instance, child_env, run_admin

from pkgsign import _gnupg
from pkgsign.tokens import RateLimiter, rate_limit_dir, remove_idle_rate_limit_files


def _key_file(state_dir, key):
    return os.path.join(rate_limit_dir(str(state_dir)), hashlib.sha256(key.encode()).hexdigest())


def _write_tat(path, nanoseconds):
    with open(path, "wb") as handle:
        handle.write(struct.pack("<q", nanoseconds))


@pytest.fixture(params=["memory", "shared"])
def limiter(request, tmp_path):
    return RateLimiter() if request.param == "memory" else RateLimiter(str(tmp_path))


def test_burst_of_n_then_retry_after_then_refill(limiter):
    # 3 per hour: a burst of 3, then the next request is one interval (1200 s) away
    assert [limiter.check("token:slow", (3, 3600)) for _index in range(3)] == [None, None, None]
    assert limiter.check("token:slow", (3, 3600)) == 1200
    # other keys and unlimited tokens are not affected
    assert limiter.check("token:other", (3, 3600)) is None and limiter.check("token:slow", None) is None
    # 2 per second: after the burst one request every half second
    assert [limiter.check("addr:127.0.0.1", (2, 1)) for _index in range(3)] == [None, None, 1]
    time.sleep(0.55)
    assert limiter.check("addr:127.0.0.1", (2, 1)) is None
    assert limiter.check("addr:127.0.0.1", (2, 1)) == 1


def test_state_is_private_and_names_no_client(tmp_path):
    limiter = RateLimiter(str(tmp_path))
    assert limiter.check("addr:192.0.2.7", (5, 60)) is None
    directory = rate_limit_dir(str(tmp_path))
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    names = os.listdir(directory)
    assert names == [hashlib.sha256(b"addr:192.0.2.7").hexdigest()]
    assert stat.S_IMODE(os.stat(os.path.join(directory, names[0])).st_mode) == 0o600
    # a second limiter (another process, in effect) sees the same count
    other = RateLimiter(str(tmp_path))
    assert [other.check("addr:192.0.2.7", (5, 60)) for _index in range(5)] == [None] * 4 + [12]


_HAMMER = """
import sys, time
from pkgsign.tokens import RateLimiter
limiter = RateLimiter(sys.argv[1])
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
print(sum(limiter.check("token:shared", (50, 3600)) is None for _index in range(int(sys.argv[3]))))
"""


def test_processes_share_one_limit(tmp_path):
    # 4 OS processes, 100 attempts each, started at the same instant: 50 admitted in all, not 4 x 50
    start = time.time() + 1.5
    procs = [subprocess.Popen([PYTHON, "-c", _HAMMER, str(tmp_path), repr(start), "100"], env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _index in range(4)]
    admitted = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        admitted.append(int(out))
    assert sum(admitted) == 50, admitted
    assert RateLimiter(str(tmp_path)).check("token:shared", (50, 3600)) == 72


def test_clock_set_back_refuses_no_longer_than_one_window(tmp_path):
    limiter = RateLimiter(str(tmp_path))
    _gnupg.ensure_private_dir(rate_limit_dir(str(tmp_path)))
    _write_tat(_key_file(tmp_path, "token:t"), time.time_ns() + 10 * 86400 * 10**9)
    wait = limiter.check("token:t", (10, 60))
    assert wait is not None and wait <= 60


def test_idle_files_removed_busy_and_recent_kept(tmp_path):
    limiter = RateLimiter(str(tmp_path))
    directory = rate_limit_dir(str(tmp_path))
    assert limiter.check("token:recent", (10, 3600)) is None
    idle, busy = _key_file(tmp_path, "token:idle"), _key_file(tmp_path, "token:busy")
    _write_tat(idle, time.time_ns() - 10**9)
    _write_tat(busy, time.time_ns() - 10**9)
    open(os.path.join(directory, "unrelated"), "w").close()
    with open(busy, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert remove_idle_rate_limit_files(str(tmp_path)) == (1, 2)
    assert not os.path.exists(idle) and os.path.exists(busy)
    assert os.path.exists(os.path.join(directory, "unrelated"))
    assert remove_idle_rate_limit_files(str(tmp_path)) == (1, 1)
    assert remove_idle_rate_limit_files(str(tmp_path / "none")) == (0, 0)


def test_request_waiting_on_a_removed_file_uses_the_new_one(tmp_path):
    limiter = RateLimiter(str(tmp_path))
    path = _key_file(tmp_path, "token:t")
    _write_tat(path, time.time_ns() - 10**9)
    results = []
    with open(path, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: results.append(limiter.check("token:t", (1, 3600))))
        waiter.start()
        time.sleep(0.2)
        assert not results  # blocked on the lock
        os.unlink(path)  # what maintain does, under the lock
    waiter.join(10)
    assert results == [None]
    # the admission landed in the file other processes open, so the next one is refused
    assert os.path.exists(path) and RateLimiter(str(tmp_path)).check("token:t", (1, 3600)) == 3600


def test_unusable_state_dir_falls_back_to_per_process_limit(tmp_path, caplog):
    limiter = RateLimiter(str(tmp_path))
    directory = rate_limit_dir(str(tmp_path))
    os.rmdir(directory)
    open(directory, "w").close()  # a file where the directory should be: every open fails
    with caplog.at_level(logging.ERROR, logger="pkgsign.tokens"):
        assert [limiter.check("token:t", (2, 60)) for _index in range(3)] == [None, None, 30]
    assert sum("limiting per process" in record.getMessage() for record in caplog.records) == 1


def test_maintain_removes_idle_rate_limit_files(tmp_path):
    root = tmp_path / "m"
    run_admin("init", str(root), "--algorithm", "ed25519")
    limiter = RateLimiter(str(root))
    assert limiter.check("token:recent", (10, 3600)) is None
    idle = _key_file(root, "addr:192.0.2.9")
    _write_tat(idle, time.time_ns() - 10**9)
    proc = run_admin("maintain", "--config", str(root / "pkgsign.conf"))
    assert "rate-limit state: 1 idle key file(s) removed, 1 in use" in proc.stderr, proc.stderr
    assert not os.path.exists(idle) and os.path.exists(_key_file(root, "token:recent"))
    _gnupg.GnuPG(str(root / "gnupg"), create=False).kill_agent()


def test_two_servers_on_one_instance_share_the_limits(tmp_path):
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    root = tmp_path / "two"
    run_admin("init", str(root), "--algorithm", "ed25519")
    first, second = Instance(root), Instance(root)
    first.add_token("four", ["sign", "keygen"], ["*"], rate="4/3600")
    first.set_option("keygen", "allow_without_token_from", "127.0.0.1/32")
    first.set_option("rate_limit", "anonymous", "1/3600")
    if create_app(load_config(first.config)).extensions["pkgsign"].limiter.directory is None:
        _gnupg.GnuPG(str(root / "gnupg"), create=False).kill_agent()
        pytest.skip("app.py does not give RateLimiter the state_dir yet")
    second.tokens = first.tokens
    first.start()
    try:
        second.start()
        try:
            # admitted requests reach the lookup (404), refused ones stop at the limit (429)
            statuses = [server.request("GET", "/keys/nobody@copr.test", token="four")[0] for server in (first, second) * 4]
            assert statuses == [404] * 4 + [429] * 4
            body = {"name_real": "anon", "name_email": ED_KEY}
            assert first.request("POST", "/gen_key", body, token=None)[0] in (200, 201)
            status, headers, _body = second.request("POST", "/gen_key", body, token=None)
            assert status == 429 and int(headers["Retry-After"]) > 3000
        finally:
            second.stop()
    finally:
        first.stop()
        _gnupg.GnuPG(str(root / "gnupg"), create=False).kill_agent()


def test_uncreatable_state_dir_still_limits(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    limiter = RateLimiter(str(blocker))  # <state_dir>/ratelimit cannot be made under a file
    assert [limiter.check("token:t", (1, 60)) for _index in range(2)] == [None, 60]
