# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors of the GnuPG layer: one readable line each, gpg's diagnostics kept aside."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name


class GpgError(Exception):
    """gpg failed; ``message`` is one readable line, ``stderr`` the diagnostics."""

    def __init__(self, message, returncode=None, stderr=""):
        super(GpgError, self).__init__(message)
        self.message = message
        self.returncode = returncode
        self.stderr = stderr


class KeyNotFound(GpgError):
    """No key matches the selector."""


class BadPassphrase(GpgError):
    """The passphrase does not unlock the key (or none was given for a protected key)."""


class InvalidInput(ValueError):
    """A parameter was rejected before it reached gpg."""
