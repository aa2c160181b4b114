# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options and attributes shared by the pkgsign.signer.openpgp_* modules."""

    DOCUMENTATION = r'''
options:
  homedir:
    description:
      - The GnuPG home directory holding the keyring.
      - Created with mode C(0700) when missing (an existing one is tightened to C(0700)).
    type: path
    required: true
notes:
  - gpg runs with C(--batch) and C(LC_ALL=C); passphrases reach it on a pipe file descriptor
    with loopback pinentry, never on its command line.
  - Keys are selected by fingerprint, key id, or the email address of one of their user ids.
    A selector matching several keys is an error; use the fingerprint then.
  - The gpg-agent passphrase cache of O(homedir) is flushed before and after an operation that
    uses a passphrase, so a wrong passphrase fails instead of being rescued by a cached one.
requirements:
  - GnuPG 2.2 or later (C(gpg), C(gpg-connect-agent), C(gpgconf)) on the target.
'''

    # Modules that change the keyring or write files.
    ATTRIBUTES = r'''
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows key metadata (fingerprints, user ids, algorithms, usage, dates),
        never key material or passphrases.
  platform:
    platforms: posix
'''

    # Read-only modules.
    INFO_ATTRIBUTES = r'''
attributes:
  check_mode:
    support: full
    details:
      - This module never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''
