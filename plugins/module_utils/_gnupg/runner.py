# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running gpg and its helpers: pipes for secrets, status lines, errors from diagnostics."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import os
import subprocess

from .errors import BadPassphrase, GpgError, KeyNotFound
from .files import ensure_private_dir
from .validation import check_passphrase


class Result:
    def __init__(self, returncode, stdout, stderr, status):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.status = status

    def status_lines(self, keyword):
        """Arguments of every ``[GNUPG:] KEYWORD ...`` status line."""
        return [line.split()[1:] for line in self.status if line.split()[:1] == [keyword]]


def _pipe_with(data):
    """A pipe's read end pre-filled with ``data`` (small: passphrases, answers)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def gnupg_environment(homedir):
    """The environment every GnuPG program of ours runs with: C locale (parsable output), the
    given home, and no inherited agent address."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env["GNUPGHOME"] = homedir
    env.pop("GPG_AGENT_INFO", None)
    return env


class Runner:
    """A GnuPG home directory and the one way pkgsign runs gpg (and gpgconf, gpg-connect-agent) in it."""

    def __init__(self, homedir, binary="gpg", create=True):
        self.homedir = os.path.abspath(os.path.expanduser(homedir))
        self.binary = binary
        if create:
            ensure_private_dir(self.homedir)
        elif not os.path.isdir(self.homedir):
            raise GpgError("GnuPG home %s does not exist" % self.homedir)

    # -- running gpg -------------------------------------------------------------------

    def environment(self):
        return gnupg_environment(self.homedir)

    def run(self, args, input=None, passphrase=None, command_input=None, check=True, timeout=None,  # pylint: disable=redefined-builtin
            batch=True, keep_fds=()):
        """Run gpg with ``args``; status lines go to stderr and are split out.

        ``passphrase`` (str) is given on a pipe fd with loopback pinentry;
        ``command_input`` (list of answers) on a pipe fd as ``--command-fd``.
        ``batch=False`` only for the one command gpg refuses in batch mode (--gen-revoke):
        it still never prompts, since ``--no-tty`` plus ``--command-fd`` answer everything.
        ``keep_fds``: descriptors gpg inherits, e.g. a lock that must stay held while gpg runs
        even if the caller dies.
        """
        fds = []
        argv = [self.binary, "--homedir", self.homedir] + (["--batch"] if batch else []) + [
            "--no-tty", "--status-fd", "2", "--pinentry-mode", "loopback"]
        try:
            if passphrase is not None:
                check_passphrase(passphrase)
                fd = _pipe_with(passphrase.encode("utf-8") + b"\n")
                fds.append(fd)
                argv += ["--passphrase-fd", str(fd)]
            if command_input is not None:
                fd = _pipe_with("".join(answer + "\n" for answer in command_input).encode("utf-8"))
                fds.append(fd)
                argv += ["--command-fd", str(fd)]
            argv += list(args)
            proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=self.environment(), pass_fds=fds + list(keep_fds), timeout=timeout, check=False)
        except OSError as exc:
            raise GpgError("cannot run %s: %s" % (self.binary, exc))
        finally:
            for fd in fds:
                os.close(fd)
        status, messages = [], []
        for line in proc.stderr.decode("utf-8", "replace").splitlines():
            if line.startswith("[GNUPG:] "):
                status.append(line[len("[GNUPG:] "):])
            else:
                messages.append(line)
        result = Result(proc.returncode, proc.stdout, "\n".join(messages), status)
        if check and proc.returncode != 0:
            raise self._error(result, args)
        return result

    @staticmethod
    def _error(result, args):
        operation = next((a for a in args if a.startswith("--") and a not in ("--yes", "--armor")), "gpg")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else "exit status %s" % result.returncode
        if detail.startswith("gpg: "):
            detail = detail[5:]
        text = result.stderr.lower() + " " + " ".join(result.status).lower()
        if "bad passphrase" in text or "bad_passphrase" in text or "no passphrase given" in text \
                or "missing_passphrase" in text:
            return BadPassphrase("wrong or missing passphrase (%s)" % operation.lstrip("-"), result.returncode, result.stderr)
        if "no public key" in text or "not found" in text or "no secret key" in text or "no_pubkey" in text:
            return KeyNotFound("key not found (%s): %s" % (operation.lstrip("-"), detail), result.returncode, result.stderr)
        return GpgError("gpg %s failed: %s" % (operation.lstrip("-"), detail), result.returncode, result.stderr)

    def agent_socket(self):
        proc = subprocess.run(["gpgconf", "--list-dirs", "agent-socket"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.environment(), check=False)
        if proc.returncode != 0:
            raise GpgError("gpgconf cannot tell the agent socket: %s" % proc.stderr.decode("utf-8", "replace").strip())
        return proc.stdout.decode("utf-8").strip()

    def launch_agent(self):
        subprocess.run(["gpgconf", "--launch", "gpg-agent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=self.environment(), check=False)

    def kill_agent(self):
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=self.environment(), check=False)

    def _agent_command(self, *commands):
        """Lines of gpg-connect-agent's answer; no agent is started just to be asked."""
        proc = subprocess.run(["gpg-connect-agent", "--homedir", self.homedir, "--no-autostart"] + list(commands) + ["/bye"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment(), check=False)
        return proc.stdout.decode("utf-8", "replace").splitlines()

    def forget_passphrases(self):
        """Flush the agent's passphrase cache: a wrong passphrase must fail, not be rescued by the cache."""
        self._agent_command("RELOADAGENT")
