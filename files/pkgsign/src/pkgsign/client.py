"""sign: obs-sign compatible client of the pkgsign service (standard library only).

    sign [-u USER] [-h sha256|sha512] [-4] -r FILE.rpm...      sign RPMs in place
    sign [-u USER] [-h ...] -d FILE...                          armored detached: FILE.asc
    sign [-u USER] [-h ...] -D FILE...                          binary detached: FILE.sig
    sign [-u USER] [-h ...] -c [FILE...]                        clearsign text in place (stdin -> stdout)
    sign [-u USER] [-h ...] FILE...                             by name: .rpm/.spm as -r, text as -c
    sign [-u USER] -p                                           print the public key
    sign [-u USER] -k | --full-keyid | --fingerprint            the signing (sub)key: 8/16/40 hex digits
    sign -t                                                     check the server and your token
    sign --delsign FILE.rpm... (or --unsign)                    remove RPM signatures

The file never leaves this host: the client hashes it and sends only the state of the hash
(POST /sign); the server appends the signature's hashed area, which it makes itself, finishes
the hash and signs. Configuration comes from
$SIGN_CONF or /etc/sign.conf (``server:``, ``token_file:``, ``hash:``, ``user:``).

Kept free of heavy imports: one run of `sign` per file must start fast.
"""

import os
import sys

USAGE = __doc__.split("\n\n")[1]
DEFAULT_CONF = "/etc/sign.conf"
HELP = """usage: sign [options] [FILE...]

%s

Options:
    -u USER      the key: an email, fingerprint, key id or alias (default: 'user:' in sign.conf)
    -h HASH      digest algorithm, sha256 (default) or sha512
    -4           OpenPGP v4 signature (the only format produced)
    -v           print what is signed ("rpm sign FILE", as obs-sign)
    --config F   another sign.conf (root only, as obs-sign; others: $SIGN_CONF)
    --jobs N     files signed at the same time (default 8)
    --version    print the version

-t contacts the server with your token and prints which server and which token it used;
it fails when the server is unreachable or refuses the token.

Without a mode option the mode comes from the file name, as in obs-sign: .rpm and .spm are
signed as RPMs, other files are clearsigned if they are text; binary data is refused. Options of
obs-sign that sign does not implement (-T, -S, -P, -3, -O, -a, -g, -x, -C, ...) are refused
with one line saying why, before any file is touched (README.md: "obs-sign options").

Only a digest of each file is sent to the signing server; the file stays on this host.
Configuration: $SIGN_CONF, else /etc/sign.conf, with 'server:', 'token_file:' (or
$SIGN_TOKEN_FILE), 'hash:' and 'user:' lines.""" % USAGE.rstrip()


class SignError(Exception):
    """One readable line for standard error; exit status 1."""


class UnknownKey(SignError):
    pass


class ServerRefused(SignError):
    """The server answered with an error status (kept for callers that may retry)."""

    def __init__(self, message, status):
        SignError.__init__(self, message)
        self.status = status


# -- configuration ---------------------------------------------------------------------

def read_conf(path=None):
    path = path or os.environ.get("SIGN_CONF") or DEFAULT_CONF
    conf = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                key, _sep, value = line.partition(":")
                conf[key.strip().lower()] = value.strip()
    except FileNotFoundError:
        raise SignError("no configuration: %s does not exist (set SIGN_CONF)" % path) from None
    except OSError as err:
        raise SignError("cannot read %s: %s" % (path, err.strerror)) from None
    if not conf.get("server"):
        raise SignError("%s has no 'server:' line" % path)
    conf["_path"] = path
    return conf


TLS_KEYS = ("ca_file", "client_cert", "client_key")


def tls_settings(conf):
    """The TLS keys of sign.conf as Api keyword arguments (relative paths: from sign.conf's directory)."""
    base = os.path.dirname(os.path.abspath(conf["_path"])) if conf.get("_path") else ""
    return {key: os.path.join(base, conf[key]) for key in TLS_KEYS if conf.get(key)}


def token_path(conf):
    return os.environ.get("SIGN_TOKEN_FILE") or conf.get("token_file")


def read_token(conf):
    path = token_path(conf)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as err:
        raise SignError("cannot read token file %s: %s" % (path, err.strerror)) from None


# -- HTTP ----------------------------------------------------------------------------
# A minimal HTTP/1.1 client: http.client and urllib pull in the email package, re and more,
# which would double the start-up time of a `sign` run.

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


# JSON through the C accelerator module: the json package imports re and enum, which cost
# about as much CPU as the rest of a one-file `sign` run. Falls back to json without _json.

def _json_dumps(value):
    from _json import encode_basestring_ascii as quote_string

    if isinstance(value, str):
        return quote_string(value)
    if value is True or value is False or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(quote_string(str(k)) + ":" + _json_dumps(v) for k, v in value.items()) + "}"
    raise TypeError("cannot send %r as JSON" % type(value).__name__)


class _JsonContext:
    # The attributes json.JSONDecoder hands to the C scanner.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError("JSON constant %s is not accepted" % name)


def _json_loads(text):
    try:
        from _json import make_scanner
    except ImportError:  # another interpreter: the json package is fine there
        import json

        return json.loads(text)
    blank = " \t\n\r"
    start = len(text) - len(text.lstrip(blank))
    try:
        value, end = make_scanner(_JsonContext)(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(blank):
        raise ValueError("extra data after the JSON value")
    return value


def _dumps(value):
    try:
        return _json_dumps(value)
    except ImportError:
        import json

        return json.dumps(value)


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
            data = _dumps(body).encode("utf-8")
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
                    return _json_loads(payload.decode("utf-8"))
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
        return _json_loads(payload.decode("utf-8")).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace").strip()[:200]


# -- signing ---------------------------------------------------------------------------
# The client hashes each input and sends where its hash stands after the data (chaining value,
# byte count, last partial block: hashstate.py); the server appends the signature's hashed area,
# which it builds itself, finishes the hash and signs. One POST /sign per file or per batch.

MIN_BATCH = 32  # hash states per /sign request when signing many inputs (see sign_blobs)


class Signer:
    def __init__(self, api, user, digest_algo, sig_type="binary"):
        self.api = api
        self.user = user
        self.digest_algo = digest_algo
        self.sig_type = sig_type

    def state_of(self, item):
        """The hash state after ``item``: bytes, or the path (str) of a regular file."""
        from . import hashstate

        hasher = hashstate.Hasher(self.digest_algo)
        if not isinstance(item, str):
            return hasher.update(item).state()
        fd = open_input(item)
        try:
            hasher.update_fd(fd)
        except OSError as err:
            raise SignError("%s: %s" % (item, err.strerror)) from None
        finally:
            os.close(fd)
        return hasher.state()

    def sign_states(self, states):
        """Signature packets for hash states, in one request."""
        answer = self.api.call("POST", "/sign", {
            "key": self.user, "digest_algo": self.digest_algo, "sig_type": self.sig_type,
            "states": [state.to_json() for state in states]}, key=self.user)
        from binascii import a2b_base64  # the base64 module imports re

        try:
            packets = [a2b_base64(item["signature"]) for item in answer["signatures"]]
        except (TypeError, KeyError, ValueError):
            raise SignError("the server's answer to POST /sign has no signatures") from None
        if len(packets) != len(states):
            raise SignError("the server returned %d signatures for %d files" % (len(packets), len(states)))
        return packets

    def sign_blobs(self, blobs, jobs=8, chunk=200, deliver=None):
        """Signature packets for a list of byte strings or file paths (str), in order.

        ``deliver(index, packet)``, when given, is called from the worker threads as soon as a
        batch is signed, so writing results overlaps with signing the rest.
        """

        def sign_batch(indexes):
            packets = self.sign_states([self.state_of(blobs[i]) for i in indexes])
            if deliver is not None:
                for index, packet in zip(indexes, packets):
                    deliver(index, packet)
            return packets

        if len(blobs) == 1:
            return sign_batch([0])
        # Bare _thread: concurrent.futures imports logging (~20 ms before the first request),
        # threading functools and collections (~5 ms).
        import _thread

        # Each worker takes the next batch, hashes it, has it signed and delivers it. Twice as
        # many batches as workers: while the server signs some, the others hash and write, and
        # the agent always has a request waiting. No batch smaller than MIN_BATCH: the server
        # pipelines a request's digests to the agent, while every request costs a round trip
        # and its share of HTTP, JSON and the audit log's fdatasync.
        size = max(1, min(chunk, max(MIN_BATCH, -(-len(blobs) // (2 * jobs)))))
        packets = [None] * len(blobs)
        lock = _thread.allocate_lock()
        state = {"next": 0}
        failures = []  # the first error of any worker, raised in the calling thread

        def take():
            with lock:
                start = state["next"]
                if start >= len(blobs) or failures:
                    return None
                state["next"] = min(len(blobs), start + size)
                return list(range(start, state["next"]))

        def work(finished):
            try:
                while True:
                    indexes = take()
                    if indexes is None:
                        return
                    for index, packet in zip(indexes, sign_batch(indexes)):
                        packets[index] = packet
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                with lock:
                    failures.append(err)
            finally:
                finished.release()

        running = []
        for _worker in range(min(jobs, len(blobs))):
            finished = _thread.allocate_lock()
            finished.acquire()  # released by the worker when it ends
            _thread.start_new_thread(work, (finished,))
            running.append(finished)
        for finished in running:
            finished.acquire()
        if failures:
            raise failures[0]
        return packets


# -- files -----------------------------------------------------------------------------
# `sign` may run for someone else (a sudo rule) on paths they name: inputs are opened without
# following a symbolic link, files are rewritten in place only when they are the caller's own
# with a single link, and every output is written to a new file (O_EXCL, owner-only until it is
# complete) that is then renamed over the target, which never follows a link either.

_S_IFMT, _S_IFREG, _S_IFLNK = 0o170000, 0o100000, 0o120000


def _kind_error(path, info):
    if info.st_mode & _S_IFMT == _S_IFLNK:
        return "%s: is a symbolic link (refused)" % path
    if info.st_mode & _S_IFMT != _S_IFREG:
        return "%s: not a regular file" % path
    return None


def check_input(path):
    """Refuse, before anything is signed, a path that is missing, a link or not a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SignError("%s: no such file" % path) from None
    except OSError as err:
        raise SignError("%s: %s" % (path, err.strerror)) from None
    error = _kind_error(path, info)
    if error:
        raise SignError(error)
    return info


def invoking_uid():
    """The user `sign` works for. Run by sudo as an unprivileged identity (the signer's
    `pkgsign-client`, shared by every build user the sudo rule names), that is the user who ran
    sudo (SUDO_UID, which sudo sets itself): files of the identity are other build users' outputs,
    never the caller's. Otherwise (no sudo, sudo to root, or root acting as someone through sudo)
    the effective user."""
    euid = os.geteuid()
    sudo_uid = os.environ.get("SUDO_UID", "")
    if euid != 0 and sudo_uid.isdigit() and int(sudo_uid) not in (0, euid):
        return int(sudo_uid)
    return euid


def check_in_place(path, info=None):
    """Refuse to rewrite ``path`` unless it is a regular file of the invoking user with one link."""
    info = info or check_input(path)
    error = _kind_error(path, info)
    if error:
        raise SignError(error)
    owner = invoking_uid()
    if info.st_uid != owner:
        raise SignError("%s: owned by uid %d, not by you (uid %d): not rewritten in place"
                        % (path, info.st_uid, owner))
    if info.st_nlink != 1:
        raise SignError("%s: has %d hard links: not rewritten in place" % (path, info.st_nlink))
    return info


def open_input(path):
    """A read-only descriptor of the regular file ``path`` (a symbolic link is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        import errno  # built into the interpreter

        if err.errno == errno.ELOOP:  # the last component is a symbolic link
            raise SignError("%s: is a symbolic link (refused)" % path) from None
        raise SignError("%s: %s" % (path, err.strerror)) from None
    error = _kind_error(path, os.fstat(fd))
    if error:
        os.close(fd)
        raise SignError(error)
    return fd


_UMASK = []


def creation_mode():
    """The mode a new file gets (0666 less the umask); call it before starting threads."""
    if not _UMASK:
        mask = os.umask(0o077)
        os.umask(mask)
        _UMASK.append(0o666 & ~mask)
    return _UMASK[0]


def write_new(path, data, mode):
    """Replace ``path`` by a new file holding ``data``: written under a fresh name in the same
    directory (O_EXCL, O_NOFOLLOW, mode 0600), then given ``mode`` and renamed over ``path``."""
    directory, base = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        tmp = os.path.join(directory, ".%s.%s.sign-tmp" % (base[:64], os.urandom(6).hex()))
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise SignError("%s: %s" % (path, err.strerror)) from None
    else:
        raise SignError("%s: cannot make a temporary file next to it" % path)
    try:
        try:
            # os-level calls: no buffered file object per signature (many files: ~20 % less CPU).
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SignError("%s: %s" % (path, err.strerror)) from None


def detached(signer, files, armored, jobs):
    from . import wire
    if not files:
        packet = signer.sign_blobs([sys.stdin.buffer.read()], jobs)[0]
        sys.stdout.write(wire.armor(packet)) if armored else sys.stdout.buffer.write(packet)
        return
    for path in files:
        check_input(path)
    files = list(files)
    mode = creation_mode()

    def write(index, packet):
        if armored:
            write_new(files[index] + ".asc", wire.armor(packet).encode("ascii"), mode)
        else:
            write_new(files[index] + ".sig", packet, mode)

    signer.sign_blobs(files, jobs, deliver=write)


def _clearsigned(text_bytes, packet, digest_algo):
    from . import wire
    # Bytes throughout: the text is shown exactly as it was signed, whatever its encoding.
    return (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: " + digest_algo.upper().encode("ascii") + b"\n\n"
            + wire.dash_escape(text_bytes) + b"\n" + wire.armor(packet).encode("ascii"))


def _clear_text(data):
    # The line end before the signature armor belongs to the armor, not to the signed text.
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data.replace(b"\r\n", b"\n")


CLEARSIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"


def binary_reason(data):
    """Why ``data`` is not text to clearsign, or None. obs-sign's rule (more than three control
    characters other than tab, CR and LF in the first 8 KiB), and a NUL byte anywhere."""
    if b"\0" in data:
        return "binary data (NUL bytes)"
    head = data[:8192]
    controls = sum(head.count(bytes((c,))) for c in range(32) if c not in (9, 10, 13))
    if controls > 3:
        return "binary data (%d control characters in the first 8 KiB)" % controls
    return None


def prepare_clearsign(files, explicit=True):
    """Read and judge every file to clearsign before any is signed: [(path, text, mode)].
    A file that is clearsigned already is left as it is ("FILE: already signed" on standard
    output, as obs-sign); binary data refuses the whole call (obs-sign refuses it only without
    -c; clearsigning it would destroy the file)."""
    for path in files:  # every file is checked before any is read
        check_in_place(path)
    prepared = []
    for path in files:
        fd = open_input(path)
        try:
            info = check_in_place(path, os.fstat(fd))  # the file actually opened
            from _io import FileIO

            with FileIO(fd, "rb", closefd=False) as handle:
                data = handle.readall()
        except OSError as err:
            raise SignError("%s: %s" % (path, err.strerror)) from None
        finally:
            os.close(fd)
        if data.startswith(CLEARSIGNED):
            print("%s: already signed" % path)
            continue
        reason = binary_reason(data)
        if reason:
            raise SignError("%s: %s: not clearsigned%s (use -d or -D for a detached signature)"
                            % (path, reason, "" if explicit else " (no mode option; the name is not .rpm)"))
        prepared.append((path, _clear_text(data), info.st_mode & 0o777))
    return prepared


def clearsign(signer, prepared, jobs):
    """Clearsign ``prepared`` (prepare_clearsign) in place; None: standard input to output."""
    from . import wire
    if prepared is None:
        data = sys.stdin.buffer.read()
        if data.startswith(CLEARSIGNED):
            raise SignError("<stdin>: already signed")
        reason = binary_reason(data)
        if reason:
            raise SignError("<stdin>: %s: not clearsigned (use -d or -D for a detached signature)" % reason)
        text = _clear_text(data)
        packet = signer.sign_blobs([wire.canonical_text(text)], jobs)[0]
        sys.stdout.buffer.write(_clearsigned(text, packet, signer.digest_algo))
        return
    if not prepared:
        return
    packets = signer.sign_blobs([wire.canonical_text(text) for _path, text, _mode in prepared], jobs)
    for (path, text, mode), packet in zip(prepared, packets):
        write_new(path, _clearsigned(text, packet, signer.digest_algo), mode)


# -- RPM -------------------------------------------------------------------------------
# rpmsign does the header work. It execs argv[0] of %__gpg_sign_cmd with the rest as the
# argument vector, writes the header to sign on the command's standard input and expects the
# binary signature in %{__signature_filename}. Our command is `sh` + `cat` over two FIFOs to
# this process, which hashes, asks the server and answers: no interpreter starts per package.

HELPER_SCRIPT = 'cat > "$0"; cat "$1" > "$2"'


def _rpmsign_command(conf, user, digest_algo, fifo_in, fifo_out, files):
    helper = "/bin/sh sh -c %s %s %s %%{shescape:%%{?__signature_filename}}" % (
        _shell_word(HELPER_SCRIPT), _shell_word(fifo_in), _shell_word(fifo_out))
    return [conf.get("rpmsign", "rpmsign"), "--addsign",
            "--define", "__gpg /usr/bin/gpg",
            "--define", "_gpg_name %s" % user,
            "--define", "_gpg_digest_algo %s" % digest_algo,
            "--define", "__gpg_sign_cmd %s" % helper,
            "--"] + list(files)


def _shell_word(text):
    if text and all(c.isalnum() or c in "/._-+" for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _read_fifo(path):
    with open(path, "rb") as handle:  # blocks until the helper (or the wake-up) opens it
        return handle.read()


def _open_fifo_for_writing(path, finished):
    """Open the answer FIFO once the helper reads it; None if rpmsign ended meanwhile."""
    import errno
    import time

    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
        if finished.is_set():
            return None
        time.sleep(0.0005)


# subprocess and tempfile each add ~13 ms of imports to a `sign -r` run (random, shutil, re,
# selectors): the private directory and the rpmsign process are made with os directly.

def _private_workdir():
    """A new 0700 directory under $TMPDIR or /tmp."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _attempt in range(100):
        path = os.path.join(base, "pkgsign-rpm-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise SignError("cannot make a private directory in %s" % base)


def _spawn(argv, output_path):
    """Start ``argv`` (searched in PATH) with standard input from /dev/null and standard output
    and error into ``output_path``; returns the pid."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1


def _rpmsign_group(signer, conf, group):
    """Run one rpmsign over ``group`` and serve its signing requests; returns an error or None
    (an unknown key is raised)."""
    import threading

    workdir = _private_workdir()
    fifo_in, fifo_out = os.path.join(workdir, "header"), os.path.join(workdir, "signature")
    output = os.path.join(workdir, "output")
    errors = []
    try:
        os.mkfifo(fifo_in, 0o600)
        os.mkfifo(fifo_out, 0o600)
        argv = _rpmsign_command(conf, signer.user, signer.digest_algo, fifo_in, fifo_out, group)
        try:
            pid = _spawn(argv, output)
        except OSError as err:
            return "cannot run %s: %s" % (argv[0], err.strerror)
        finished = threading.Event()

        def serve():
            while not finished.is_set():
                header = _read_fifo(fifo_in)
                if finished.is_set() and not header:
                    break
                packet = b""
                try:
                    packet = signer.sign_states([signer.state_of(header)])[0]
                except SignError as err:
                    errors.append(err)
                fd = _open_fifo_for_writing(fifo_out, finished)
                if fd is None:
                    break
                try:
                    os.set_blocking(fd, True)
                    os.write(fd, packet)
                except BrokenPipeError:
                    pass
                finally:
                    os.close(fd)

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        _pid, status = os.waitpid(pid, 0)
        finished.set()
        # The serving loop may wait in open(fifo_in): open the other end so it returns.
        while serving.is_alive():
            try:
                os.close(os.open(fifo_in, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            serving.join(0.01)
        if errors:
            if isinstance(errors[0], UnknownKey):
                raise errors[0]
            return str(errors[0])
        code = _exit_code(status)
        if code != 0:
            with open(output, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            lines = [line for line in text.splitlines() if line.strip()]
            return "rpmsign failed for %s: %s" % (", ".join(group), " / ".join(lines[-3:]) or "exit %d" % code)
        return None
    finally:
        for path in (fifo_in, fifo_out, output):
            if os.path.lexists(path):
                os.unlink(path)
        os.rmdir(workdir)


def _sign_rpms_with_rpmsign(signer, conf, files, jobs):
    """Errors of running rpmsign over ``files`` in up to ``jobs`` groups at once."""
    groups = [files[i::jobs] for i in range(min(jobs, len(files)))]
    if len(groups) == 1:
        return [_rpmsign_group(signer, conf, groups[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        return list(pool.map(lambda group: _rpmsign_group(signer, conf, group), groups))


def _check_rewritable_fd(path, fd):
    check_in_place(path, os.fstat(fd))


def _sign_rpms_in_place(signer, packages, jobs, unsupported):
    """Sign the main headers of parsed packages in shared /sign requests; returns errors.
    Packages that turn out not to take the signature in place are added to ``unsupported``."""
    from . import rpmheader

    errors = []

    def write(index, packet):
        package = packages[index]
        try:
            # The tag follows the key that signed: RSA or EdDSA, as the server's packet says.
            package.write_signature(rpmheader.sigtag_for_packet(packet), packet, check=_check_rewritable_fd)
        except rpmheader.Unsupported:
            unsupported.append(package.path)  # left untouched: rpmsign signs it
        except rpmheader.NotAnRpm as err:
            errors.append("%s: %s" % (package.path, err))
        except SignError as err:
            errors.append(str(err))
        except OSError as err:
            errors.append("%s: %s" % (package.path, err.strerror))

    signer.sign_blobs([package.header for package in packages], jobs, deliver=write)
    return errors


def sign_rpms(signer, conf, files, jobs):
    """Sign RPMs in place: packages rpm 4.x laid out with reserved space get their header
    signature written directly (what rpmsign would write, byte for byte); the rest (already
    signed, old layouts) and everything when sign.conf says ``rpm_signing: rpmsign`` go
    through rpmsign. Only regular files of the caller's own, with one link, are rewritten."""
    for path in files:
        check_in_place(path)
    method = conf.get("rpm_signing", "native").lower()
    if method not in ("native", "rpmsign"):
        raise SignError("rpm_signing must be native or rpmsign, not %r" % method)
    packages, through_rpmsign, errors = [], [], []
    if method == "rpmsign":
        for path in files:  # rpmsign is handed only files that start with an RPM lead
            error = rpm_lead_error(path)
            if error:
                errors.append(error)
            else:
                through_rpmsign.append(path)
    if method == "native":
        from . import rpmheader

        through_rpmsign = []
        for path in files:
            try:
                package = rpmheader.load(path)
                package.check_signable()
                packages.append(package)
            except rpmheader.Unsupported:
                through_rpmsign.append(path)
            except rpmheader.NotAnRpm as err:  # reported; the other packages are still signed
                errors.append("%s: %s" % (path, err))
            except OSError as err:
                errors.append("%s: %s" % (path, err.strerror))
    if packages:
        errors += _sign_rpms_in_place(signer, packages, jobs, through_rpmsign)
    if through_rpmsign:
        errors += _sign_rpms_with_rpmsign(signer, conf, through_rpmsign, jobs)
    errors = [e for e in errors if e]
    if errors:
        raise SignError("; ".join(errors))


def rpm_lead_error(path):
    """None when ``path`` starts with an RPM lead (magic, binary or source package), else why not."""
    fd = open_input(path)
    try:
        lead = os.read(fd, 96)
    except OSError as err:
        return "%s: %s" % (path, err.strerror)
    finally:
        os.close(fd)
    if len(lead) < 96 or lead[:4] != b"\xed\xab\xee\xdb":
        return "%s: not an RPM package" % path
    return None


def unsign_rpms(conf, files):
    """rpmsign --delsign rewrites the packages: the rules of every in-place output apply first
    (a regular file of the caller's own with one link; no link, FIFO or device is opened)."""
    import subprocess

    for path in files:
        check_in_place(path)
    for path in files:
        error = rpm_lead_error(path)
        if error:
            raise SignError(error)
    proc = subprocess.run([conf.get("rpmsign", "rpmsign"), "--delsign", "--"] + list(files),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise SignError("rpmsign --delsign failed: %s" % proc.stderr.decode("utf-8", "replace").strip())


# -- command line ----------------------------------------------------------------------

def check_credentials(api, conf):
    """sign -t: an authenticated request proves the server and the token; says which ones."""
    server = conf["server"]
    if not api.token:
        raise SignError("%s: no token (set 'token_file:' in %s or SIGN_TOKEN_FILE)" % (server, conf["_path"]))
    try:
        who = api.call("GET", "/whoami")
    except SignError as err:
        raise SignError("%s: %s (token file %s)" % (server, err, token_path(conf))) from None
    if not isinstance(who, dict) or not who.get("token"):
        raise SignError("%s: the server does not confirm the token (is it a pkgsign server?)" % server)
    print("%s: token %s accepted (scopes %s; keys %s; token file %s)"
          % (server, who["token"], ",".join(who.get("scopes") or []) or "none",
             ",".join(who.get("keys") or []) or "none", token_path(conf)))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except UnknownKey as err:
        print(str(err), file=sys.stderr)
        return 1
    except SignError as err:
        print("sign: %s" % err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _unknown(option):
    return SignError("unknown option %s (sign --help lists the options)" % option)


def parse_args(argv):
    """GNU-style options in any order among the files (getopt would cost start-up time). The
    options are obs-sign's (obsopts.py): one that `sign` refuses ends the run here, with one
    line naming it, before any file is opened."""
    from .obsopts import REFUSED, takes_value

    opts, files = [], []
    args = list(argv)

    def add(option, value):
        if option in REFUSED:
            raise SignError("%s is not supported: %s" % (option, REFUSED[option][1]))
        opts.append((option, value))

    while args:
        arg = args.pop(0)
        if arg == "--":
            files.extend(args)
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            kind = takes_value(name)
            if kind is None:
                raise _unknown(name)
            if kind and not eq:
                if not args:
                    raise SignError("option %s needs a value" % name)
                value = args.pop(0)
            elif not kind and eq:
                raise SignError("option %s takes no value" % name)
            add(name, value)
        elif arg.startswith("-") and len(arg) > 1:
            cluster = arg[1:]
            while cluster:
                letter, cluster = "-" + cluster[0], cluster[1:]
                kind = takes_value(letter)
                if kind is None or letter.startswith("--"):
                    raise _unknown(letter)
                if kind:
                    if not cluster:
                        if not args:
                            raise SignError("option %s needs a value" % letter)
                        cluster = args.pop(0)
                    add(letter, cluster)
                    break
                add(letter, "")
        else:
            files.append(arg)
    return opts, files


MODE_OPTIONS = {"-p": "pubkey", "-r": "rpm", "-d": "detached", "-D": "binary", "-c": "clearsign",
                "-t": "test", "-k": "keyid", "--full-keyid": "keyid", "--fingerprint": "fingerprint",
                "--unsign": "unsign"}
# What obs-sign's -v prints before each file.
VERBOSE_NAMES = {"rpm": "rpm sign", "clearsign": "clear sign", "detached": "detached sign",
                 "binary": "detached sign", "unsign": "rpm delsign"}


def mode_from_name(path):
    """obs-sign's rule when no mode option is given: .rpm/.spm are RPMs, anything else is
    clearsigned (clearsign() then refuses binary data). Types obs-sign signs and `sign` does not
    are refused here, by name."""
    from .obsopts import RPM_SUFFIXES, UNSIGNED_SUFFIXES

    if len(path) > 4 and path.endswith(RPM_SUFFIXES):
        return "rpm"
    for suffix, why in UNSIGNED_SUFFIXES.items():
        if len(path) > len(suffix) and path.endswith(suffix):
            raise SignError("%s: %s" % (path, why))
    return "clearsign"


def _check_digest(digest_algo):
    from . import hashstate

    if digest_algo == "sha1":
        raise SignError("-h sha1 is refused: SHA-1 signatures are not made (forgeable with chosen-prefix "
                        "collisions; rpm-sequoia and dnf5 reject them): use -h sha256")
    if digest_algo not in hashstate.ALGORITHMS:
        raise SignError("-h %s: unknown hash algorithm (use sha256, sha384 or sha512)" % digest_algo)


def _main(argv):
    opts, files = parse_args(argv)
    mode = None
    user = None
    digest_algo = None
    jobs = None
    config = None
    delsign = False
    full_keyid = False
    verbose = False
    for opt, value in opts:
        if opt == "--help":
            print(HELP)
            return 0
        if opt == "--version":
            from . import __version__

            print("sign (pkgsign) %s" % __version__)
            return 0
        if opt == "-u":
            user = value
        elif opt == "-h":
            digest_algo = value.lower()
        elif opt == "-4":
            pass  # v4 is the only signature format produced
        elif opt == "-v":
            verbose = True
        elif opt == "--jobs":
            jobs = value
        elif opt == "--config":
            # obs-sign: only root may name another configuration (sign may run for others).
            if os.getuid() != 0:
                raise SignError("--config: only root may use --config (others: SIGN_CONF)")
            config = value
        elif opt == "--delsign":
            delsign = True
        else:
            new_mode = MODE_OPTIONS[opt]
            full_keyid = full_keyid or opt == "--full-keyid"
            if mode and mode != new_mode:
                raise SignError("choose one of -p, -k, --fingerprint, -t, -r, -d, -D, -c, --unsign")
            mode = new_mode
    if delsign:
        # obs-sign: --delsign removes signatures instead of signing, from RPMs only.
        if mode not in (None, "rpm", "unsign") or any(mode is None and mode_from_name(f) != "rpm" for f in files):
            raise SignError("--delsign works on RPMs only (name them .rpm or add -r)")
        mode = "unsign"
    if mode in ("pubkey", "keyid", "fingerprint", "test") and files:
        raise SignError("%s takes no files" % {"pubkey": "-p", "keyid": "-k", "fingerprint": "--fingerprint",
                                               "test": "-t"}[mode])
    if mode is None:
        if not files:
            raise SignError("please name a mode for standard input (-c, -d or -D; see sign --help)")
        by_mode = {}
        for path in files:  # every name is judged before anything is read or signed
            by_mode.setdefault(mode_from_name(path), []).append(path)
    else:
        by_mode = {mode: files}
    conf = read_conf(config)
    if mode == "unsign":
        if not files:
            raise SignError("--unsign needs RPM files")
        if verbose:
            for path in files:
                print("rpm delsign %s" % path)
        unsign_rpms(conf, files)
        return 0
    try:
        jobs = max(1, int(jobs or conf.get("jobs") or 8))
    except ValueError:
        raise SignError("jobs must be a number") from None
    try:
        timeout = float(conf.get("timeout") or 120)
    except ValueError:
        raise SignError("timeout must be a number of seconds") from None
    api = Api(conf["server"], read_token(conf), timeout=timeout, **tls_settings(conf))
    if mode == "test":
        return check_credentials(api, conf)
    user = user or conf.get("user")
    if not user:
        raise SignError("no key: use -u USER or 'user:' in %s" % conf["_path"])
    if mode == "pubkey":
        data = api.call("GET", "/pubkey/" + _quote(user), key=user)
        sys.stdout.write(data.decode("ascii") if isinstance(data, bytes) else str(data))
        sys.stdout.flush()
        return 0
    if mode in ("keyid", "fingerprint"):
        # obs-sign prints the issuer of a signature: the signing (sub)key, upper-case hex.
        info = api.call("GET", "/keys/" + _quote(user), key=user)
        if mode == "fingerprint":
            print(info["signing_fingerprint"].upper())
        else:
            print(info["signing_key_id"].upper()[-16 if full_keyid else -8:])
        return 0
    digest_algo = digest_algo or conf.get("hash", "sha256").lower()
    _check_digest(digest_algo)
    # Text to clearsign is read and judged first: a binary file refuses the whole call before
    # any other file is signed.
    texts = prepare_clearsign(by_mode["clearsign"], explicit=mode == "clearsign") \
        if by_mode.get("clearsign") else None
    if verbose:
        for each_mode, paths in by_mode.items():
            for path in paths:
                print("%s %s" % (VERBOSE_NAMES[each_mode], path))
        sys.stdout.flush()
    if "rpm" in by_mode:
        if not by_mode["rpm"]:
            raise SignError("-r needs RPM files")
        sign_rpms(Signer(api, user, digest_algo), conf, by_mode["rpm"], jobs)
    if mode in ("detached", "binary"):
        detached(Signer(api, user, digest_algo), files, mode == "detached", jobs)
    if "clearsign" in by_mode:
        clearsign(Signer(api, user, digest_algo, sig_type="text"), texts, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
