# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one GnuPG layer of pkgsign.signer.

Both the Ansible modules (through ``plugins/module_utils/_openpgp.py``) and the signing
service (``files/pkgsign``, where this package is reachable as ``pkgsign._gnupg`` through one
symlink per file) run gpg only through this package, so that every invocation gets the same
safety rules:

* ``--batch`` and ``LC_ALL=C`` always (parsable, never interactive);
* passphrases and interactive answers travel on pipe file descriptors, never in argv;
* user-id fields are validated before anything is written into a gpg batch file.

One owner per concern: ``errors``, ``validation`` (the algorithm table, the expiry grammar,
user-id fields), ``listing`` (the key model and colon listings), ``runner`` (running gpg),
``operations`` (what the modules and the service do with keys), ``files`` (private files) and
``scratch`` (throw-away homes). What only the service needs (private agents, key material made
by gpg-agent) lives in the service package. Callers use the names re-exported here.

Pure standard library, Python >= 3.8, no Ansible import.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

from .errors import BadPassphrase, GpgError, InvalidInput, KeyNotFound  # noqa: F401
from .files import ensure_private_dir, shred_file, shred_tree, write_private_file  # noqa: F401
from .listing import (LISTING, PUBKEY_ALGORITHM_NAMES, USAGE_LETTERS, Key, Subkey,  # noqa: F401
                      find_keys_by, find_secret_key_by, parse_colons, valid_signers)
from .operations import IMPORT_RES_FIELDS, REVOCATION_REASONS, GnuPG  # noqa: F401
from .runner import Result, Runner, gnupg_environment  # noqa: F401
from .scratch import SCRATCH_ROOT_PREFIX, TemporaryGnuPG, scratch_root, sweep_scratch  # noqa: F401
from .validation import (ALGORITHMS, CERT_DIGEST, GPG_BATCH_VALUE_MAX, MAX_UID_FIELD_LENGTH,  # noqa: F401
                         check_passphrase, expires_to_epoch, isotime, parse_expires,
                         validate_algorithm, validate_uid_field)
