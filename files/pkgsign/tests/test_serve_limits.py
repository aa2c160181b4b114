"""pkgsign-admin serve under a slowloris (issue 14): half-sent requests hold no thread, /ping keeps
answering, heads and bodies that do not arrive in time are cut off, keep-alive still works.
Loopback only; bounded in time and count."""

import http.client
import socket
import time
import urllib.request

import pytest

from pkgsign_testlib import Instance

SLOW_CONNECTIONS = 300


def _threads(pid):
    with open("/proc/%d/status" % pid) as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("Threads:")))


@pytest.fixture
def served(tmp_path):
    inst = Instance.create(tmp_path / "i", options=[
        ("server", "serve_workers", "8"), ("server", "serve_header_timeout", "4s"),
        ("server", "serve_request_timeout", "3s"), ("audit", "checkpoint_interval", "0")])
    yield inst.start()
    inst.close()


def _ping(inst):
    started = time.monotonic()
    with urllib.request.urlopen(inst.url + "/ping", timeout=10) as response:
        assert response.status == 200 and response.read() == b"pong\n"
    return time.monotonic() - started


def _closed_by_server(sock, deadline):
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(4096) is not None  # b"" (closed) or an error answer
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_slowloris_holds_no_threads_and_ping_answers(served):
    port = int(served.url.rsplit(":", 1)[1])
    pid = served.process.pid
    _ping(served)
    before = _threads(pid)
    slow = []
    try:
        for _number in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
            slow.append(sock)
        time.sleep(0.5)
        during = _threads(pid)
        elapsed = _ping(served)
        print("slowloris: %d half-sent requests, server threads %d before, %d during; /ping in %.3f s"
              % (len(slow), before, during, elapsed))
        assert during <= before + 1, (before, during)
        assert elapsed < 2
        # Cut off after the header timeout (4 s): every half-sent request is closed by the server.
        deadline = time.monotonic() + 4 + 4
        closed = sum(1 for sock in slow if _closed_by_server(sock, deadline))
        assert closed == SLOW_CONNECTIONS
    finally:
        for sock in slow:
            sock.close()
    assert _threads(pid) <= before + 1


def test_slow_body_is_cut_off_and_frees_its_worker(served):
    port = int(served.url.rsplit(":", 1)[1])
    slow = []
    try:
        for _number in range(8):  # as many as there are workers
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /gen_key HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"name_real\"")
            slow.append(sock)
        started = time.monotonic()
        # The workers are busy until the request timeout (3 s) cuts the bodies off; then /ping answers.
        assert _ping(served) < 3 + 3
        deadline = started + 3 + 5
        assert all(_closed_by_server(sock, deadline) for sock in slow)
        assert time.monotonic() - started < 3 + 5
    finally:
        for sock in slow:
            sock.close()


def test_keep_alive_serves_several_requests_on_one_connection(served):
    host, port = served.url[len("http://"):].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _number in range(5):
            conn.request("GET", "/ping")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"pong\n"
            first = first if _number else conn.sock
            assert conn.sock is first  # the same connection, not reopened
        # A request with a body on the kept connection.
        conn.request("POST", "/gen_key", body=b'{"name_real": "k", "name_email": "k#a@copr.test"}',
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer " + open(served.root + "/client.token").read().strip()})
        response = conn.getresponse()
        assert response.status == 201, response.read()
        response.read()
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"pong\n" and conn.sock is first
    finally:
        conn.close()
