"""The HTTP server of ``pkgsign-admin serve``: a bounded worker pool behind a header stage.

Werkzeug's threaded server gives every connection a thread for as long as it is open, so 300
half-sent requests (slowloris) held 300 threads and nothing bounded them. Here one selector thread
owns every connection that is between requests: it reads until the request head is complete
(``[server] serve_header_timeout`` from the connection's start, or from the first byte of the
next request on a keep-alive connection; idle keep-alive connections close after
``serve_idle_timeout``). Only a complete head goes to one of ``serve_workers`` threads, which
reads the body within ``serve_request_timeout``, runs the application and answers; a keep-alive
connection then goes back to the selector. Open connections are capped at
``serve_max_connections`` (the listening socket is not read beyond that). A half-sent request costs
a socket and its bytes so far, never a thread; ``/ping`` keeps answering.
"""

import io
import logging
import queue
import select
import selectors
import socket
import threading
import time
from collections import deque

from werkzeug.serving import BaseWSGIServer

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 65536
# WSGI environ key: a callable answering whether the client has closed its connection (long work,
# such as a key generation, stops when nobody waits for its answer). mod_wsgi sets no such key.
CLIENT_GONE = "pkgsign.client_gone"


def connection_closed(sock):
    """True when the peer has closed ``sock`` (end of stream or an error), without consuming data:
    bytes of a next request waiting on a keep-alive connection mean the client is still there."""
    try:
        readable, _writable, _errors = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):
        return True


_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


class _Reader(io.RawIOBase):
    """The request as the handler reads it: the bytes the selector already has, then the socket
    with a deadline for the whole request. Never reads beyond what is asked, so what follows
    (a pipelined next request) stays with the connection."""

    def __init__(self, sock, prefix, deadline, write_timeout):
        super().__init__()
        self.sock = sock
        self.prefix = prefix
        self.deadline = deadline
        self.write_timeout = write_timeout

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.prefix:
            count = min(len(buffer), len(self.prefix))
            buffer[:count] = self.prefix[:count]
            self.prefix = self.prefix[count:]
            return count
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("request not received within the request timeout")
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(self.write_timeout)

    def read(self, size=-1):
        """``size`` bytes unless the peer closes first (werkzeug takes a short read for a disconnect)."""
        if size is None or size < 0:
            return self.readall()
        chunks, wanted = [], size
        while wanted > 0:
            chunk = bytearray(min(wanted, 65536))
            count = self.readinto(chunk)
            if not count:
                break
            chunks.append(bytes(chunk[:count]))
            wanted -= count
        return b"".join(chunks)

    def readline(self, size=-1):
        end = self.prefix.find(b"\n")
        if end >= 0 and (size is None or size < 0 or end < size):
            line, self.prefix = self.prefix[:end + 1], self.prefix[end + 1:]
            return line
        return super().readline(size)


class BoundedWSGIServer(BaseWSGIServer):
    """See the module docstring. ``serve_forever``/``shutdown`` as socketserver's."""

    multithread = True

    def __init__(self, host, port, app, handler, workers=16, header_timeout=10, request_timeout=60,
                 idle_timeout=30, max_connections=512):
        super().__init__(host, port, app, handler)
        self.workers = workers
        self.header_timeout = header_timeout
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._local = threading.local()
        self._jobs = queue.Queue()
        self._returned = deque()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._open = 0  # connections anywhere: waiting for a head, queued or with a worker
        self._open_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name="pkgsign-http-%d" % number, daemon=True)
                         for number in range(workers)]

    # -- the selector thread -------------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        for thread in self._threads:
            thread.start()
        selector = selectors.DefaultSelector()
        self.socket.setblocking(False)
        selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        listening = False
        waiting = {}  # socket -> [address, buffer, deadline, idle?]
        try:
            while not self._stop.is_set():
                if not listening and self._open < self.max_connections:
                    selector.register(self.socket, selectors.EVENT_READ, "listen")
                    listening = True
                elif listening and self._open >= self.max_connections:
                    selector.unregister(self.socket)
                    listening = False
                now = time.monotonic()
                timeout = min([entry[2] for entry in waiting.values()] + [now + poll_interval]) - now
                for key, _events in selector.select(max(0.0, timeout)):
                    if key.data == "listen":
                        self._accept(selector, waiting)
                    elif key.data == "wake":
                        self._take_back(selector, waiting)
                    else:
                        self._read_head(selector, waiting, key.fileobj)
                now = time.monotonic()
                for sock in [sock for sock, entry in waiting.items() if entry[2] <= now]:
                    selector.unregister(sock)
                    del waiting[sock]
                    self._close(sock)  # no head within the header timeout, or idle too long
        finally:
            for sock in list(waiting):
                self._close(sock)
            for _thread in self._threads:
                self._jobs.put(None)
            selector.close()
            self._stopped.set()

    def shutdown(self):
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def _wake(self):
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass

    def _accept(self, selector, waiting):
        for _attempt in range(64):
            if self._open >= self.max_connections:
                return
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of descriptors: the next round tries again
                log.error("accept failed: %s", err)
                return
            sock.setblocking(False)
            with self._open_lock:
                self._open += 1
            waiting[sock] = [address, b"", time.monotonic() + self.header_timeout, False]
            selector.register(sock, selectors.EVENT_READ, "conn")

    def _take_back(self, selector, waiting):
        try:
            while self._wake_read.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            sock, address, leftover = self._returned.popleft()
            if self._head_complete(leftover):
                self._dispatch(sock, address, leftover)
                continue
            sock.setblocking(False)
            idle = not leftover
            deadline = time.monotonic() + (self.idle_timeout if idle else self.header_timeout)
            waiting[sock] = [address, leftover, deadline, idle]
            selector.register(sock, selectors.EVENT_READ, "conn")

    def _read_head(self, selector, waiting, sock):
        entry = waiting[sock]
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(sock)
            del waiting[sock]
            self._close(sock)
            return
        if entry[3]:  # the first byte of the next request on a kept-alive connection
            entry[2], entry[3] = time.monotonic() + self.header_timeout, False
        entry[1] += data
        if self._head_complete(entry[1]):
            selector.unregister(sock)
            del waiting[sock]
            self._dispatch(sock, entry[0], entry[1])
        elif len(entry[1]) > MAX_HEAD_BYTES:
            selector.unregister(sock)
            del waiting[sock]
            try:
                sock.setblocking(True)
                sock.settimeout(1)
                sock.sendall(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self._close(sock)

    @staticmethod
    def _head_complete(data):
        return any(end in data[:MAX_HEAD_BYTES + 4] for end in _HEAD_ENDS)

    def _dispatch(self, sock, address, prefix):
        self._jobs.put((sock, address, prefix))

    def _close(self, sock):
        with self._open_lock:
            self._open -= 1
        try:
            sock.close()
        except OSError:
            pass

    # -- the workers ---------------------------------------------------------------------

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            sock, address, prefix = job
            keep, leftover = False, b""
            try:
                sock.setblocking(True)
                sock.settimeout(self.request_timeout)
                self._local.reader_args = (prefix, time.monotonic() + self.request_timeout, self.request_timeout)
                handler = self.RequestHandlerClass(sock, address, self)
                keep = not handler.close_connection and not self._stop.is_set()
                leftover = handler.rfile.prefix if keep else b""
            except Exception:  # noqa: BLE001 - one broken connection must not end the worker
                self.handle_error(sock, address)
            if keep:
                self._returned.append((sock, address, leftover))
                self._wake()
            else:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self._close(sock)

    def reader_for(self, sock):
        """The handler's rfile for the request this worker thread is serving."""
        prefix, deadline, write_timeout = self._local.reader_args
        return _Reader(sock, prefix, deadline, write_timeout)


class OneRequestHandlerMixin:
    """For a WSGIRequestHandler: read through the server's reader and serve one request per
    dispatch (the connection returns to the selector between keep-alive requests)."""

    def setup(self):
        super().setup()
        self.rfile.close()
        self.rfile = self.server.reader_for(self.connection)

    def make_environ(self):
        environ = super().make_environ()
        environ[CLIENT_GONE] = lambda sock=self.connection: connection_closed(sock)
        return environ

    def handle(self):
        self.close_connection = True
        try:
            self.handle_one_request()
        except (ConnectionError, socket.timeout) as err:
            self.close_connection = True
            self.connection_dropped(err)


def make_bounded_server(host, port, app, handler, config):
    """The server for ``pkgsign-admin serve`` with the limits of ``config`` ([server] serve_*)."""
    bounded = type("Bounded" + handler.__name__, (OneRequestHandlerMixin, handler), {})
    return BoundedWSGIServer(host, port, app, bounded, workers=config.serve_workers,
                             header_timeout=config.serve_header_timeout,
                             request_timeout=config.serve_request_timeout, idle_timeout=config.serve_idle_timeout,
                             max_connections=config.serve_max_connections)
