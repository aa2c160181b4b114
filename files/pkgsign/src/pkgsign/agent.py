"""Everything the service says to gpg-agent in its Assuan protocol.

Persistent connections used to sign digests: gpg itself asks the agent to sign exactly this way
(SIGKEY, SETHASH, PKSIGN); keeping a few connections open avoids starting a gpg process per
signature, which is what makes obs-signd slow. Private agents of our own (one per connection),
and key material made by an agent of ours (GENKEY) for the keygen pool.
"""

import logging
import os
import queue
import re
import socket
import subprocess
import threading
import time
from urllib.parse import unquote_to_bytes

from ._gnupg import ALGORITHMS, GpgError, ensure_private_dir, gnupg_environment, validate_algorithm
from .wire import HASH_IDS

log = logging.getLogger(__name__)

# Signatures whose commands are in flight on one connection (at most ~10 KiB of commands and,
# for RSA-4096, ~45 KiB of answers: well inside the socket buffers, so neither side blocks).
PIPELINE_WINDOW = 64


class AgentError(Exception):
    """gpg-agent refused or failed an operation (the message is safe to show)."""


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class AgentConnection:
    """One Assuan session with gpg-agent: the homedir's shared agent (``socket_path``) or, made
    by ``private()``, an agent process of our own that serves only this connection."""

    def __init__(self, socket_path: str, timeout: float = 120.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except OSError:
            sock.close()
            raise
        self._open(sock, process=None)

    @classmethod
    def private(cls, gnupg, timeout: float = 120.0):
        """A connection to a new gpg-agent in server mode for ``gnupg``'s homedir (its own process:
        signatures on separate private agents run on separate cores)."""
        process, sock = start_private_agent(gnupg)
        sock.settimeout(timeout)
        conn = cls.__new__(cls)
        conn._open(sock, process)
        return conn

    def _open(self, sock, process):
        self.sock = sock
        self.process = process
        self.reader = sock.makefile("rb")
        self.broken = False
        try:
            self._expect_ok()
            # Passphrases of protected keys are answered over this connection, never a pinentry.
            self.command("OPTION pinentry-mode=loopback")
        except BaseException:
            self.close()
            raise

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass
        if self.process is not None:
            # A private agent exits when its socket closes; one that hangs is not left behind.
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _send(self, line: str):
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def _expect_ok(self, passphrase=None):
        """The data of one command's answer; an ERR line raises AgentError."""
        answer = self._answer(passphrase, pipelined=False)
        if isinstance(answer, AgentError):
            raise answer
        return answer

    def command(self, line: str, passphrase=None) -> bytes:
        self._send(line)
        return self._expect_ok(passphrase)

    def pksign(self, keygrip: str, digest_algo: str, digest_hex: str, passphrase=None) -> bytes:
        # The four commands go out in one write and the agent answers them in order: one round
        # trip instead of four (ed25519 signatures: ~18 % more per second). After RESET a failed
        # SIGKEY or SETHASH makes PKSIGN fail too, never sign with something stale.
        self._send("RESET\nSIGKEY %s\nSETHASH %d %s\nPKSIGN" % (keygrip, HASH_IDS[digest_algo], digest_hex))
        error, data = None, b""
        for last in (False, False, False, True):
            try:
                data = self._expect_ok(passphrase if last else None)
            except AgentError as err:
                error = error or err  # keep reading: every command gets its answer
        if error is not None:
            raise error
        return data

    def pksign_many(self, keygrip: str, digest_algo: str, digests, window: int = PIPELINE_WINDOW):
        """Signatures (S-expressions) of many digests with one key that has no passphrase.

        The commands of up to ``window`` signatures are in flight at once, so the agent finds
        the next signature queued when it finishes one instead of waiting for this process
        (and the answers of many signatures arrive in one read). RESET and SIGKEY go once
        before the batch, then SETHASH and PKSIGN per digest: half the commands the agent
        handles per signature (~15 % less agent CPU for ed25519). Errors are collected in order
        and the first is raised after every answer is read, so a failed batch leaves the
        connection in step; a signature whose SETHASH failed is never returned (its PKSIGN
        would have used the digest before it).
        """
        hash_id = HASH_IDS[digest_algo]
        commands = ["SETHASH %d %s\nPKSIGN\n" % (hash_id, digest) for digest in digests]
        sent = min(window, len(commands))
        self.sock.sendall(("RESET\nSIGKEY %s\n" % keygrip + "".join(commands[:sent])).encode("ascii"))
        error = None
        for _command in range(2):  # RESET, SIGKEY: if the key is unknown, every PKSIGN fails too
            answer = self._answer()
            if isinstance(answer, AgentError):
                error = error or answer
        results = []
        refill = max(1, window // 2)
        for index in range(len(commands)):
            # Top up before reading: the agent always has the next signatures queued.
            if sent < len(commands) and sent - index <= window - refill:
                upto = min(len(commands), index + window)
                self.sock.sendall("".join(commands[sent:upto]).encode("ascii"))
                sent = upto
            digest_set, signature = self._answer(), self._answer()
            for answer in (digest_set, signature):
                if isinstance(answer, AgentError):
                    error = error or answer
            results.append(signature)
        if error is not None:
            raise error
        return results

    def _answer(self, passphrase=None, pipelined=True):
        """One command's answer: its data (bytes) or an AgentError (returned, not raised, so a
        pipelined stream can be read to its end). A passphrase inquiry is answered with
        ``passphrase`` (or cancelled); in a pipelined stream it cannot be answered at all."""
        data = []
        readline = self.reader.readline
        while True:
            line = readline()
            if line[:2] == b"OK":
                return b"".join(data)
            if line[:2] == b"D ":
                chunk = line[2:].rstrip(b"\n")
                data.append(unquote_to_bytes(chunk) if b"%" in chunk else chunk)
            elif line[:3] == b"ERR":
                return AgentError(line.rstrip(b"\n").decode("utf-8", "replace"))
            elif not line:
                raise ConnectionError("gpg-agent closed the connection")
            elif line.startswith(b"INQUIRE"):
                if pipelined:
                    # The agent would take the next pipelined command as the inquiry's answer: the
                    # stream is out of step and the connection must not be used again.
                    self.broken = True
                    raise AgentError("gpg-agent asks for a passphrase of a key that has none configured")
                words = line.split()
                if len(words) > 1 and words[1] == b"PASSPHRASE" and passphrase is not None:
                    self._send("D " + _escape(passphrase))
                    self._send("END")
                else:
                    self._send("CAN")
            # S (status) and # (comment) lines carry nothing we need.


class AgentPool:
    """A bounded pool of agent connections, shared by the request threads of one process.

    With ``private`` (the default) every connection is a gpg-agent process of its own: one agent
    signs one signature at a time, so concurrent requests on a shared agent queue behind each
    other on one core, while private agents sign on all cores (RSA-4096 on 2 cores: 59 instead of
    29 signatures per second). Without, all connections go to the homedir's shared agent.
    """

    def __init__(self, gnupg, size: int = 4, private: bool = True):
        self.gnupg = gnupg
        self.size = size
        self.private = private
        self._idle = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._socket_path = None

    def socket_path(self):
        if self._socket_path is None:
            self._socket_path = self.gnupg.agent_socket()
        return self._socket_path

    def _connect(self):
        if self.private:
            try:
                return AgentConnection.private(self.gnupg)
            except (OSError, ConnectionError, GpgError, AgentError) as err:
                raise AgentError("cannot start a gpg-agent for %s: %s" % (self.gnupg.homedir, err)) from err
        try:
            return AgentConnection(self.socket_path())
        except (FileNotFoundError, ConnectionRefusedError):
            # The agent is not running (first use, or it was restarted): start it once.
            self.gnupg.launch_agent()
            for _attempt in range(50):
                try:
                    return AgentConnection(self.socket_path())
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.1)
            raise AgentError("gpg-agent does not answer on %s" % self.socket_path())

    def _acquire(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.size:
                self._created += 1
                try:
                    return self._connect()
                except BaseException:
                    self._created -= 1
                    raise
        return self._idle.get(timeout=300)

    def _release(self, conn, broken=False):
        if broken:
            conn.close()
            with self._lock:
                self._created -= 1
        else:
            self._idle.put(conn)

    def run(self, operation):
        """Run ``operation(conn)`` on a pooled connection, reconnecting once if it broke."""
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                result = operation(conn)
            except (OSError, ConnectionError) as err:
                self._release(conn, broken=True)
                if attempt == 2:
                    raise AgentError("lost the connection to gpg-agent: %s" % err) from err
                log.warning("gpg-agent connection broke (%s); reconnecting", err)
                continue
            except AgentError:
                # After an ERR line the connection is still in step; after an unexpected inquiry not.
                self._release(conn, broken=conn.broken)
                raise
            except BaseException:
                self._release(conn, broken=True)
                raise
            self._release(conn)
            return result
        raise AgentError("unreachable")

    def sign_many(self, keygrip, digest_algo, digests, passphrase=None) -> list:
        """Signatures of ``digests`` (hex) in order, all on one connection.

        Without a passphrase the commands are pipelined; a protected key signs one digest per
        round trip, because the agent's passphrase inquiry must be answered before the next
        command is sent.
        """
        if passphrase is None:
            return self.run(lambda conn: conn.pksign_many(keygrip, digest_algo, digests))
        return self.run(lambda conn: [conn.pksign(keygrip, digest_algo, digest, passphrase) for digest in digests])

    def ping(self) -> bool:
        try:
            self.run(lambda conn: conn.command("GETINFO version"))
            return True
        except (AgentError, OSError):
            return False

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break


def start_private_agent(gnupg):
    """A gpg-agent of our own for ``gnupg``'s homedir, serving Assuan on a socket pair: (process, socket).

    The agent reads the same ``private-keys-v1.d`` as the homedir's shared agent but is a
    separate process, so several of them sign on several cores at once (one agent signs one
    signature at a time). It exits when our end of the socket closes, also when we are killed.
    """
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen([agent_binary_for(gnupg.binary), "--homedir", gnupg.homedir, "--server"],
                                stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL,
                                env=gnupg.environment(), close_fds=True)
    except OSError as exc:
        ours.close()
        raise GpgError("cannot run gpg-agent: %s" % exc)
    finally:
        theirs.close()
    return proc, ours


def agent_binary_for(gpg_binary):
    """The gpg-agent that belongs to ``gpg_binary`` (its sibling when given as a path)."""
    if os.path.dirname(gpg_binary):
        sibling = os.path.join(os.path.dirname(gpg_binary), "gpg-agent")
        if os.path.exists(sibling):
            return sibling
    return "gpg-agent"


class KeyMaterialGeneration:
    """One unprotected secret key made by a gpg-agent of our own, with no OpenPGP key around it.

    The agent runs in server mode (the Assuan protocol on its stdin and stdout, no socket) as
    our child in ``homedir`` (private, fresh): the key lands in ``homedir/private-keys-v1.d`` as
    ``<keygrip>.key``, ready for generate_key_from_keygrip. Being our child, the agent inherits
    the caller's CPU priority, and ``cancel()`` stops it at once, even in the middle of an RSA
    prime search (an agent behind a socket answers nothing until such a search ends). gpg's
    --gen-key would also self-sign and write a keyring and a revocation certificate: wasted
    work for material that is bound to its user id later. ``keep_fds`` stay open in the agent
    until it exits (a lock telling others that the home is still being written).
    """

    def __init__(self, homedir, algorithm, agent_binary="gpg-agent", keep_fds=()):
        validate_algorithm(algorithm)
        self.homedir = ensure_private_dir(os.path.abspath(homedir))
        env = gnupg_environment(self.homedir)
        # The inquired KEYPARAM is answered ahead: the agent reads it when it asks.
        self._commands = ("GENKEY --no-protection\nD %s\nEND\nBYE\n" % ALGORITHMS[algorithm]["agent"]).encode("ascii")
        self.cancelled = False
        try:
            self.proc = subprocess.Popen([agent_binary, "--homedir", self.homedir, "--server"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, pass_fds=list(keep_fds))
        except OSError as exc:
            raise GpgError("cannot run %s: %s" % (agent_binary, exc))

    @property
    def pid(self):
        return self.proc.pid

    def wait(self, timeout=None):
        """The keygrip of the new key; GpgError when the agent failed or was cancelled."""
        try:
            out, err = self.proc.communicate(self._commands, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            self.proc.communicate()
            raise GpgError("gpg-agent did not generate a key within %s s" % timeout)
        if self.cancelled:
            raise GpgError("key generation cancelled")
        replies = out.decode("utf-8", "replace").splitlines()
        failures = [line[4:] for line in replies if line.startswith("ERR ")]
        if failures or self.proc.returncode != 0 or "OK" not in replies:
            detail = failures[-1] if failures else (err.decode("utf-8", "replace").strip().splitlines() or [
                "exit status %s" % self.proc.returncode])[-1]
            raise GpgError("gpg-agent GENKEY failed: %s" % detail, self.proc.returncode, err.decode("utf-8", "replace"))
        directory = os.path.join(self.homedir, "private-keys-v1.d")
        made = [name for name in os.listdir(directory) if re.match(r"^[0-9A-F]{40}\.key$", name)]
        if len(made) != 1:
            raise GpgError("gpg-agent left %d key files in %s, expected one" % (len(made), directory))
        return made[0][:-len(".key")]

    def cancel(self):
        self.cancelled = True
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
