"""Private gpg-agents: each pooled connection is an agent process of its own reading the homedir's
key files, so concurrent signatures use every core (real gpg-agent processes, real key files)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pkgsign_testlib import child_env
from pkgsign import _gnupg
from pkgsign.agent import AgentError, AgentPool


@pytest.fixture(scope="module")
def signing_home(tmp_path_factory):
    gpg = _gnupg.GnuPG(str(tmp_path_factory.mktemp("private-agents") / "gnupg"))
    fingerprint = gpg.generate_key("private agents", "private@agents.test", algorithm="ed25519")
    yield gpg, fingerprint, _gnupg.find_secret_key_by(gpg, fingerprint).keygrip
    gpg.kill_agent()


def _is_server_agent(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except FileNotFoundError:
        return False
    return os.path.basename(argv[0]) == b"gpg-agent" and b"--server" in argv


def _gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _is_server_agent(pid):
            return True
        time.sleep(0.05)
    return False


def test_concurrent_requests_sign_on_separate_agent_processes(signing_home):
    gpg, _fingerprint, keygrip = signing_home
    pool = AgentPool(gpg, size=2)
    digest = os.urandom(32).hex()
    both_connected = threading.Barrier(2, timeout=30)
    seen = {}

    def sign(name):
        def operation(conn):
            both_connected.wait()  # two requests at once: the pool must open a second connection
            return conn.process.pid, conn.pksign_many(keygrip, "sha256", [digest] * 3)
        seen[name] = pool.run(operation)

    threads = [threading.Thread(target=sign, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = {pid for pid, _signatures in seen.values()}
    assert len(pids) == 2 and all(_is_server_agent(pid) for pid in pids)
    # Both agents sign with the same key: ed25519 signatures of one digest are identical.
    signatures = [signature for _pid, batch in seen.values() for signature in batch]
    assert len(set(signatures)) == 1 and signatures[0].startswith(b"(7:sig-val(5:eddsa")
    pool.close()
    assert all(_gone_within(pid, 5) for pid in pids)


def test_shared_agent_mode_uses_the_homedir_agent(signing_home):
    gpg, _fingerprint, keygrip = signing_home
    pool = AgentPool(gpg, size=2, private=False)
    try:
        processes = pool.run(lambda conn: conn.process)
        assert processes is None
        assert pool.sign_many(keygrip, "sha256", [os.urandom(32).hex()])[0].startswith(b"(7:sig-val")
    finally:
        pool.close()


def test_a_killed_private_agent_is_replaced_and_reaped(signing_home):
    gpg, _fingerprint, keygrip = signing_home
    pool = AgentPool(gpg, size=1)
    try:
        digest = os.urandom(32).hex()
        first = pool.sign_many(keygrip, "sha256", [digest])
        victim = pool.run(lambda conn: conn.process)
        os.kill(victim.pid, signal.SIGKILL)
        # The broken connection is dropped and the request retried on a new agent.
        assert pool.sign_many(keygrip, "sha256", [digest]) == first
        assert not os.path.exists("/proc/%d" % victim.pid)  # waited for: no zombie left
        replacement = pool.run(lambda conn: conn.process)
        assert replacement.pid != victim.pid and replacement.poll() is None
    finally:
        pool.close()


def test_a_private_agent_stops_signing_with_a_key_deleted_meanwhile(tmp_path):
    gpg = _gnupg.GnuPG(str(tmp_path / "gnupg"))
    try:
        fingerprint = gpg.generate_key("doomed", "doomed@agents.test", algorithm="ed25519")
        keygrip = _gnupg.find_secret_key_by(gpg, fingerprint).keygrip
        pool = AgentPool(gpg, size=1)
        assert len(pool.sign_many(keygrip, "sha256", [os.urandom(32).hex()])) == 1
        gpg.delete_key(fingerprint, secret=True)
        # The same agent process, still running, has no copy of the key left to sign with.
        with pytest.raises(AgentError, match="No secret key"):
            pool.sign_many(keygrip, "sha256", [os.urandom(32).hex()])
        pool.close()
    finally:
        gpg.kill_agent()


def test_private_agents_exit_when_their_server_process_is_killed(signing_home):
    gpg, _fingerprint, keygrip = signing_home
    script = textwrap.dedent("""
        import os, sys, time
        from pkgsign import _gnupg
        from pkgsign.agent import AgentPool
        pool = AgentPool(_gnupg.GnuPG(sys.argv[1]), size=1)
        pool.sign_many(sys.argv[2], "sha256", [os.urandom(32).hex()])
        print(pool.run(lambda conn: conn.process.pid), flush=True)
        time.sleep(600)
    """)
    server = subprocess.Popen([sys.executable, "-c", script, gpg.homedir, keygrip], stdout=subprocess.PIPE,
                              env=child_env())
    try:
        agent_pid = int(server.stdout.readline())
        assert _is_server_agent(agent_pid)
        server.send_signal(signal.SIGKILL)
        server.wait()
        # Nobody closed the socket politely; the agent sees end-of-file and exits: no orphan.
        assert _gone_within(agent_pid, 10)
    finally:
        if server.poll() is None:
            server.kill()


def test_an_agent_that_cannot_start_is_a_clear_error(tmp_path):
    gpg = _gnupg.GnuPG(str(tmp_path / "gnupg"), binary=str(tmp_path / "bin" / "gpg"))
    os.makedirs(str(tmp_path / "bin"))
    with open(str(tmp_path / "bin" / "gpg-agent"), "w") as handle:
        handle.write("#!/bin/sh\necho 'ERR 1 not an agent' ; exit 1\n")
    os.chmod(str(tmp_path / "bin" / "gpg-agent"), 0o755)
    pool = AgentPool(gpg, size=1)
    with pytest.raises(AgentError, match="cannot start a gpg-agent"):
        pool.sign_many("F" * 40, "sha256", [os.urandom(32).hex()])
    assert pool._created == 0  # pylint: disable=protected-access
