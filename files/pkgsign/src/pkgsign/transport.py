"""The `sign` client's transport: JSON over HTTP/1.1 or HTTPS (the server always verified),
with a small pool of keep-alive connections. Used by `sign`, pkgsign-git-sign and the
oracle client.

A minimal HTTP/1.1 client: http.client and urllib pull in the email package, re and more,
which would double the start-up time of a `sign` run. ssl is imported for https servers only.
"""

from .clienterrors import ServerRefused, SignError, UnknownKey
from .leanjson import dumps, loads

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@+-_.")


def _quote(name):
    return "".join(chr(b) if b in _SAFE else "%%%02X" % b for b in name.encode("utf-8"))


def parse_server(server):
    """'http://host:port/base' (or a bare host) -> (scheme, host, port, base path)."""
    scheme, sep, rest = server.partition("://")
    if not sep:
        scheme, rest = "http", server
    scheme = scheme.lower()
    hostport, slash, path = rest.partition("/")
    base = ("/" + path).rstrip("/") if slash else ""
    if hostport.startswith("["):
        host, _bracket, port = hostport[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _colon, port = hostport.partition(":")
    if scheme not in ("http", "https") or not host or (port and not port.isdigit()):
        raise SignError("server %r is not an http(s) URL" % server)
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), base


class _Reader:
    """readline/read over a raw _socket (socket.makefile would import the socket module)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _fill(self):
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def readline(self, limit=-1):
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0 or (0 <= limit <= len(self.buffer)) or not self._fill():
                break
        cut = len(self.buffer) if end < 0 else end + 1
        if limit >= 0:
            cut = min(cut, limit)
        line, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return line

    def read(self, size=-1):
        while (size < 0 or len(self.buffer) < size) and self._fill():
            pass
        cut = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        data, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return data

    def close(self):
        self.buffer = b""


def _plain_socket(host, port, timeout):
    """A connected _socket: the socket module costs ~9 ms of start-up (enum, selectors)."""
    import _socket

    # A str host goes through the idna codec (stringprep, unicodedata); ASCII bytes do not.
    name = host.encode("ascii") if host.isascii() else host
    error = OSError("no address for %s" % host)
    for family, kind, proto, _canonname, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as err:
            error = err
            sock.close()
    raise error


def _tls_context(ca_file=None, client_cert=None, client_key=None):
    """Client TLS context: the server's certificate and name are always verified (against
    ca_file, or the system's CAs without one); TLS 1.2 or later; optional client certificate."""
    import ssl

    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise SignError("cannot use ca_file %s: %s" % (ca_file, getattr(err, "strerror", None) or err)) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as err:
            raise SignError("cannot use client_cert %s%s: %s" % (
                client_cert, " / client_key %s" % client_key if client_key else "",
                getattr(err, "strerror", None) or err)) from None
    elif client_key:
        raise SignError("client_key is set without client_cert")
    return context


def _tls_error(err):
    """One readable line for a TLS failure (ssl's own messages carry a C file and line)."""
    if getattr(err, "verify_message", None):
        return "server certificate not accepted: %s (check ca_file in sign.conf)" % err.verify_message
    reason = getattr(err, "reason", None) or ""
    if "CERTIFICATE_REQUIRED" in reason:
        return "the server requires a client certificate (client_cert in sign.conf)"
    if reason.endswith(("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR")):
        return "the server refused the client certificate (%s)" % reason.replace("_", " ").lower()
    if reason == "UNEXPECTED_EOF_WHILE_READING" or type(err).__name__ == "SSLEOFError":
        return "the server closed the TLS connection (does it require a client certificate? client_cert in sign.conf)"
    if reason:
        return "TLS failure: %s" % reason.replace("_", " ").lower()
    return "TLS failure: %s" % err


class _Connection:
    def __init__(self, scheme, host, port, timeout, tls_context=None):
        if scheme == "https":
            import socket
            import ssl

            sock = socket.create_connection((host, port), timeout)
            try:
                sock = tls_context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLError as err:
                sock.close()
                raise OSError(_tls_error(err)) from None
            except OSError:
                sock.close()
                raise
            self.reader = sock.makefile("rb")
            self.tls = True
        else:
            sock = _plain_socket(host, port, timeout)
            self.reader = _Reader(sock)
            self.tls = False
        self.sock = sock
        self.open = True

    def close(self):
        self.open = False
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def exchange(self, request_bytes, method):
        try:
            return self._exchange(request_bytes, method)
        except OSError as err:
            # With TLS 1.3 a refused client certificate shows up on the first read, not in the
            # handshake. (ssl is imported already on a TLS connection.)
            if self.tls:
                import ssl

                if isinstance(err, ssl.SSLError):
                    raise OSError(_tls_error(err)) from None
            raise

    def _exchange(self, request_bytes, method):
        self.sock.sendall(request_bytes)
        status_line = self.reader.readline(65537)
        if not status_line:
            raise ConnectionResetError("server closed the connection")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise SignError("not an HTTP answer: %r" % status_line[:80])
        status = int(parts[1])
        headers = {}
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _sep, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.reader.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.reader.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.reader.read(size))
                self.reader.readline()
            body = b"".join(chunks)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            body = self.reader.read(length)
            if len(body) != length:
                raise ConnectionResetError("short answer from the server")
        else:
            body = self.reader.read()
            self.open = False
        if headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0":
            self.open = False
        return status, headers, body


class Api:
    """JSON over HTTP with a small pool of keep-alive connections (one per thread in use)."""

    def __init__(self, server, token=None, timeout=120.0, ca_file=None, client_cert=None, client_key=None):
        self.scheme, self.host, self.port, self.base = parse_server(server)
        self.token = token
        self.timeout = timeout
        self.tls_context = None
        if self.scheme == "https":
            # ssl costs ~10 ms of start-up: imported for https servers only.
            self.tls_context = _tls_context(ca_file, client_cert, client_key)
        elif ca_file or client_cert or client_key:
            # A TLS setting with a plain-HTTP server is a mistake that would send the token in clear.
            raise SignError("server %s is plain http but ca_file/client_cert is set: use https://" % server)
        import _thread

        self._lock = _thread.allocate_lock()
        self._idle = []

    def _host_header(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else "%s:%d" % (host, self.port)

    def request(self, method, path, body=None):
        """(status, headers with lower-case names, bytes); retries once on a stale connection."""
        head = ["%s %s%s HTTP/1.1" % (method, self.base, path), "Host: " + self._host_header(),
                "Accept: application/json", "User-Agent: pkgsign-sign"]
        data = b""
        if body is not None:
            data = dumps(body).encode("utf-8")
            head.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            head.append("Content-Length: %d" % len(data))
        if self.token:
            head.append("Authorization: Bearer " + self.token)
        request_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + data
        for attempt in (1, 2):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = _Connection(self.scheme, self.host, self.port, self.timeout, self.tls_context)
                status, headers, payload = conn.exchange(request_bytes, method)
            except OSError as err:
                if conn is not None:
                    conn.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle kept-alive connection
                raise SignError("cannot reach %s://%s: %s" % (self.scheme, self._host_header(), err)) from None
            if conn.open:
                with self._lock:
                    self._idle.append(conn)
            else:
                conn.close()
            return status, headers, payload
        raise SignError("unreachable")

    def call(self, method, path, body=None, key=None):
        """JSON answer of a successful call; errors become SignError (404 on a key: UnknownKey)."""
        status, headers, payload = self.request(method, path, body)
        if 200 <= status < 300:
            if headers.get("content-type", "").startswith("application/json"):
                try:
                    return loads(payload.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raise SignError("the server's answer to %s %s is not JSON" % (method, path)) from None
            return payload
        message = _error_message(payload) or "HTTP %d" % status
        if status == 404 and key is not None:
            raise UnknownKey("unknown key: %s" % key)
        if status == 401:
            raise SignError("authentication failed: %s (check the token file)" % message)
        if status == 429:
            raise SignError("rate limited by the server: %s (Retry-After: %s s)"
                            % (message, headers.get("retry-after", "?")))
        raise ServerRefused("server refused (%d): %s" % (status, message), status)


def _error_message(payload):
    try:
        return loads(payload.decode("utf-8")).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace").strip()[:200]
