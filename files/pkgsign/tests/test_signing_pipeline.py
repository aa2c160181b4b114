"""The throughput paths of signing: a request's digests pipelined on one gpg-agent connection,
the audit log's in-place head, and the `sign` client's worker threads (real gpg-agent, real
files, real HTTP)."""

import json
import os
import subprocess
import threading
import time

import pytest

from pkgsign_testlib import ED_KEY, child_env, gpg_verify
from pkgsign import _gnupg
from pkgsign.agent import PIPELINE_WINDOW, AgentConnection, AgentError, AgentPool
from pkgsign.audit import AuditLog, verify
from pkgsign.client import Api, SignError, Signer


def _agent_socket(home):
    return subprocess.run(["gpgconf", "--list-dirs", "agent-socket"], stdout=subprocess.PIPE, check=True,
                          env=child_env(GNUPGHOME=home)).stdout.decode().strip()


@pytest.fixture
def ed_agent(instance):
    with open(os.path.join(instance.root, "keys", ED_KEY + ".json")) as handle:
        keygrip = json.load(handle)["signing_keygrip"]
    conn = AgentConnection(_agent_socket(os.path.join(instance.root, "gnupg")))
    yield conn, keygrip
    conn.close()


def test_pipelined_signatures_equal_one_by_one_and_errors_keep_the_stream_in_step(ed_agent):
    conn, keygrip = ed_agent
    # More than two windows, so the refill path runs; ed25519 signatures are deterministic.
    digests = [os.urandom(32).hex() for _digest in range(2 * PIPELINE_WINDOW + 7)]
    pipelined = conn.pksign_many(keygrip, "sha256", digests)
    assert len(pipelined) == len(digests)
    assert pipelined[0] == conn.pksign(keygrip, "sha256", digests[0])
    assert pipelined[-1] == conn.pksign(keygrip, "sha256", digests[-1])
    assert len(set(pipelined)) == len(digests)
    broken = list(digests)
    broken[PIPELINE_WINDOW + 3] = "zz"
    with pytest.raises(AgentError, match="invalid hexstring"):
        conn.pksign_many(keygrip, "sha256", broken)
    assert not conn.broken
    with pytest.raises(AgentError, match="No secret key"):
        conn.pksign_many("F" * 40, "sha256", digests[:3])
    # Every answer of the failed batches was consumed: the next batch gets its own answers.
    assert conn.pksign_many(keygrip, "sha256", digests[:5]) == pipelined[:5]
    assert conn.pksign(keygrip, "sha256", digests[7]) == pipelined[7]


def test_pipeline_refuses_a_protected_key_and_the_pool_drops_the_connection(tmp_path):
    gpg = _gnupg.GnuPG(str(tmp_path / "protected"))
    try:
        fingerprint = gpg.generate_key("locked", "locked@pipeline.test", algorithm="ed25519", passphrase="s3cret-phrase")
        keygrip = _gnupg.find_secret_key_by(gpg, fingerprint).keygrip  # the primary key signs
        pool = AgentPool(gpg, size=2)
        digests = [os.urandom(32).hex() for _digest in range(3)]
        with pytest.raises(AgentError, match="passphrase"):
            pool.sign_many(keygrip, "sha256", digests)
        # The out-of-step connection is gone.
        assert pool._created == 0  # pylint: disable=protected-access
        # With its passphrase the key signs, one round trip per digest.
        signed = pool.sign_many(keygrip, "sha256", digests, passphrase="s3cret-phrase")
        assert len(signed) == 3 and all(sexp.startswith(b"(7:sig-val") for sexp in signed)
        pool.close()
    finally:
        gpg.kill_agent()


def test_audit_appends_from_two_writers_chain_and_head_stays_fixed_size(tmp_path):
    path = str(tmp_path / "audit" / "audit.log")
    first = AuditLog(path)
    # A head written by an earlier version (a shorter file replaced by rename) is overwritten.
    first.append(operation="sign", result="ok", digests=["00" * 32])
    _gnupg.write_private_file(path + ".head", open(path + ".head", "rb").read().rstrip())
    second = AuditLog(path)  # another process's view of the same log

    def writer(log, count):
        for number in range(count):
            log.append(operation="sign", result="ok", digests=["%064x" % number])

    threads = [threading.Thread(target=writer, args=(log, 40)) for log in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count, problems = verify(path)
    assert (count, problems) == (161, [])
    assert os.path.getsize(path + ".head") == 128 and os.stat(path + ".head").st_mode & 0o077 == 0
    with open(path + ".head") as handle:
        assert json.load(handle)["seq"] == 161
    # Removing the last line is still caught.
    with open(path, "rb") as handle:
        lines = handle.readlines()
    with open(path, "wb") as handle:
        handle.writelines(lines[:-2])
    assert "lines were removed" in " ".join(verify(path)[1])


def test_many_files_signed_by_worker_threads_each_verifies(instance, verifier, tmp_path):
    files = []
    for number in range(37):  # several batches per worker with -j 3
        path = tmp_path / ("f%02d.txt" % number)
        path.write_bytes(b"file %d\n" % number * (number + 1))
        files.append(str(path))
    proc = instance.sign("-u", ED_KEY, "--jobs", "3", "-D", *files)
    assert proc.returncode == 0, proc.stderr
    for path in (files[0], files[18], files[-1]):
        gpg_verify(verifier, path + ".sig", path)
    # An error in one worker (a file gone after the start) reaches the caller; the others stop.
    signer = Signer(Api(instance.url, token=instance.tokens["client"]), ED_KEY, "sha256")
    delivered = []
    with pytest.raises(SignError, match="gone.txt: No such file"):
        signer.sign_blobs(files[:4] + [str(tmp_path / "gone.txt")] + files[4:], jobs=2, chunk=1,
                          deliver=lambda index, packet: delivered.append(index))
    assert 4 not in delivered and len(delivered) < len(files)


def _crc24_bitwise(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def test_table_crc24_equals_the_bitwise_definition():
    from pkgsign import wire

    assert wire.crc24(b"123456789") == 0x21CF02  # the published check value of CRC-24/OpenPGP
    for size in list(range(40)) + [119, 600, 4096]:
        data = os.urandom(size)
        assert wire.crc24(data) == _crc24_bitwise(data), size


def test_each_batch_is_one_request_with_the_servers_time(instance, verifier, tmp_path):
    """Many files: one POST /sign per batch of hash states, nothing else; every signature
    carries the creation time the server chose when it signed that batch."""
    signer = Signer(Api(instance.url, token=instance.tokens["client"]), ED_KEY, "sha256")
    calls = []
    real_call = signer.api.call

    def counting_call(method, path, body=None, key=None):
        calls.append((method, path, len(body["states"])))
        assert set(body) == {"key", "digest_algo", "sig_type", "states"}
        return real_call(method, path, body, key=key)

    signer.api.call = counting_call
    files = []
    for number in range(80):
        path = tmp_path / ("late%02d" % number)
        path.write_bytes(b"late %d\n" % number)
        files.append(str(path))
    started = time.time()
    packets = signer.sign_blobs(files, jobs=1)  # two batches of 40
    assert calls == [("POST", "/sign", 40), ("POST", "/sign", 40)]
    for path, packet in zip(files, packets):
        with open(path + ".sig", "wb") as handle:
            handle.write(packet)
    for path in (files[0], files[-1]):
        gpg_verify(verifier, path + ".sig", path)
    for packet in packets:
        body = 2 if packet[0] & 3 == 0 else 3
        created = int.from_bytes(packet[body + 8:body + 12], "big")  # the first subpacket: creation time
        assert packet[body + 6:body + 8] == b"\x05\x02" and int(started) <= created <= time.time() + 1
