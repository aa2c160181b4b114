# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throw-away GnuPG homes that a killed run cannot leave behind."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import fcntl
import os
import stat
import tempfile
import time

from .errors import GpgError
from .files import shred_tree
from .operations import GnuPG


SCRATCH_ROOT_PREFIX = "pkgsign-scratch-"
_SCRATCH_LOCK = ".pkgsign-scratch.lock"
_SCRATCH_GRACE = 60  # seconds a scratch home may exist before it holds its lock


def scratch_root():
    """The owner-only directory every scratch GnuPG home of this user lives in.

    Its place is predictable (``<temp dir>/pkgsign-scratch-<uid>``), so that the next run finds and
    shreds what a killed run left behind. It must be a real directory of this user, mode 0700: a
    name squatted by someone else is refused, never used.
    """
    root = os.path.join(tempfile.gettempdir(), "%s%d" % (SCRATCH_ROOT_PREFIX, os.geteuid()))
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise GpgError("scratch directory %s is not a private directory of uid %d (a symlink, another "
                       "owner or open permissions): remove it" % (root, os.geteuid()))
    return root


def sweep_scratch(root):
    """Shred the scratch homes under ``root`` that no live process holds (a run killed with SIGKILL
    cannot clean up; the lock it held died with it). Stops their gpg-agent first.

    A home is made as ``.new-*`` and renamed to its name once its lock is held, and renamed to
    ``.dead-*`` before it is shredded, so a home with its final name always has its lock file."""
    swept = 0
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        fd = None
        if not name.startswith(".dead-"):  # half-shredded: nobody needs it any more
            try:
                fd = os.open(os.path.join(path, _SCRATCH_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                try:  # just made and not locked yet: only an old one is abandoned
                    if time.time() - os.lstat(path).st_mtime < _SCRATCH_GRACE:
                        continue
                except FileNotFoundError:
                    continue
            except OSError:
                continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    continue  # in use by a running process
            GnuPG(path, create=False).kill_agent()
            shred_tree(path)
            swept += 1
        except GpgError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    return swept


class TemporaryGnuPG:
    """A throw-away GnuPG home (0700) whose agent is stopped and files shredded on exit.

    Without ``base`` it lives under ``scratch_root()`` and holds a lock for as long as it is in use,
    so a run killed before its exit (SIGKILL) leaves it to the next run, which shreds it first.
    """

    def __init__(self, prefix="pkgsign-gnupg-", base=None):
        self._lock_fd = None
        if base is None:
            base = scratch_root()
            sweep_scratch(base)
            made = tempfile.mkdtemp(prefix=".new-", dir=base)
            try:
                # Not inherited by gpg or gpg-agent (PEP 446): only this process holds the lock.
                self._lock_fd = os.open(os.path.join(made, _SCRATCH_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                self.path = os.path.join(base, prefix + os.path.basename(made)[len(".new-"):])
                os.rename(made, self.path)
            except BaseException:
                self.path = made
                self._cleanup()
                raise
        else:
            self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        try:
            self.gpg = GnuPG(self.path)
        except BaseException:
            self._cleanup()
            raise

    def __enter__(self):
        return self.gpg

    def __exit__(self, *exc):
        self._cleanup()
        return False

    def _cleanup(self):
        try:
            GnuPG(self.path, create=False).kill_agent()
        except GpgError:
            pass
        if self._lock_fd is not None:  # a run killed while shredding leaves a .dead- home: swept at once
            dead = os.path.join(os.path.dirname(self.path), ".dead-" + os.path.basename(self.path))
            try:
                os.rename(self.path, dead)
                self.path = dead
            except OSError:
                pass
        shred_tree(self.path)
        for _attempt in range(20):  # an agent still shutting down may remove or add a socket meanwhile
            if not os.path.exists(self.path):
                break
            time.sleep(0.05)
            shred_tree(self.path)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
