# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest plugin (``-p no_leftovers``, loaded by scripts/test-*.sh): a suite fails when it leaves
a process behind.

Every test works under pytest's base temporary directory (GnuPG homes, service instances,
lab configurations), so a process still running at the end of the session with that
directory in its command line (a gpg-agent of a test's homedir, a service a fixture did not
stop) was left by the suite. It is reported, killed so that it does not outlive the run, and
the session's exit status becomes 1.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import time

GRACE_SECONDS = 5.0  # gpg-agents stop on their own a moment after their homedir's last client


def _processes_mentioning(text):
    needle = text.encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if needle in cmdline:
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return found


def pytest_sessionfinish(session, exitstatus):
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None) if factory is not None else None
    if basetemp is None:
        return  # no test asked for a temporary directory
    basetemp = str(basetemp)
    deadline = time.monotonic() + GRACE_SECONDS
    left = _processes_mentioning(basetemp)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _processes_mentioning(basetemp)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["no_leftovers: %d process(es) left running by this suite (killed now):" % len(left)]
    lines += ["  pid %d: %s" % (pid, cmdline[:300]) for pid, cmdline in sorted(left.items())]
    for line in lines:
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, red=True)
        else:
            print(line)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if exitstatus == 0:
        session.exitstatus = 1
