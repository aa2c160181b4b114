# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private files: 0700 directories, atomic 0600 writes, shredding."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import os
import shutil
import tempfile


def ensure_private_dir(path):
    """Create ``path`` as 0700 (parents too) or tighten an existing one to 0700."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private_file(path, data, mode=0o600):
    """Write ``data`` atomically as a ``mode`` (0600) file (the temporary file is 0600 from the start)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _overwrite_with_zeros(path):
    """Overwrite a regular file (not a symlink) with zeros and sync it; best effort."""
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        pass


def shred_file(path):
    """Overwrite one key file with zeros, then remove it (best effort, see shred_tree)."""
    _overwrite_with_zeros(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def shred_tree(path):
    """Overwrite every regular file under ``path`` with zeros, then remove the tree.

    Best effort on journaling or copy-on-write file systems, as shred(1) warns; it still
    keeps unencrypted key material from lingering in plain files.
    """
    if not os.path.exists(path):
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            _overwrite_with_zeros(os.path.join(root, name))
    shutil.rmtree(path, ignore_errors=True)
